/* ddn — the tape: recording nodes, the reverse walk, gradient buffers and accumulation. */
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"

bool ddn_set_grad_enabled(ddn_ctx *ctx, bool on)
{
    bool prev = ctx->grad_enabled;
    ctx->grad_enabled = on;
    return prev;
}

bool ddn_grad_enabled(const ddn_ctx *ctx) { return ctx->grad_enabled; }
int64_t ddn_tape_len(const ddn_ctx *ctx) { return ctx->tape_len; }

ddn_status ddn_tape_record(ddn_ctx *ctx, const char *op, ddn_backward_fn backward, ddn_tensor *out,
                           int n_in, ddn_tensor *const *in, const void *saved, size_t saved_bytes)
{
    if (!out) return ddn_ctx_status(ctx) != DDN_OK ? ddn_ctx_status(ctx) : DDN_ERR_ARG;
    if (!ctx->grad_enabled) return DDN_OK;
    bool needed = false;
    for (int i = 0; i < n_in; i++) needed |= in[i] && in[i]->requires_grad;
    if (!needed) return DDN_OK;
    if (ctx->tape_len == ctx->tape_cap) {
        int64_t cap = ctx->tape_cap ? 2 * ctx->tape_cap : 256;
        ddn_node **t = realloc(ctx->tape, (size_t)cap * sizeof *t);
        if (!t) return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: cannot grow the tape", op);
        ctx->tape = t;
        ctx->tape_cap = cap;
    }
    ddn_node *node = ddn_ctx_scratch(ctx, sizeof *node);
    ddn_tensor **ins = ddn_ctx_scratch(ctx, (size_t)(n_in ? n_in : 1) * sizeof *ins);
    void *copy = saved_bytes ? ddn_ctx_scratch(ctx, saved_bytes) : NULL;
    if (!node || !ins || (saved_bytes && !copy)) return ddn_ctx_status(ctx);
    memcpy(ins, in, (size_t)n_in * sizeof *ins);
    if (copy && saved) memcpy(copy, saved, saved_bytes);
    else if (copy) memset(copy, 0, saved_bytes);
    *node = (ddn_node){.op = op, .backward = backward, .n_in = n_in, .in = ins, .out = out,
                       .saved = copy};
    out->requires_grad = true;
    out->node = node;
    ctx->tape[ctx->tape_len++] = node;
    return DDN_OK;
}

/* ---- recycling gradient buffers during backward ----------------------------------------------
 * The gradient of an intermediate (a node's output) is complete once every node that consumed it
 * has run its backward, and dead once its own node has: the reverse walk then hands the buffer
 * to this pool, and the next ddn_grad_buffer of the same dtype and size takes it instead of
 * growing the arena. Without it a backward pass holds a gradient for every activation of the
 * step at once (ResNet-50: as much again as the forward). The pool lives in the step arena for
 * one walk; its buffers were all made before any mark a backward function opens, so a rewind
 * inside one never frees a pooled buffer. */
typedef struct ddn_grad_pool {
    int64_t n, cap;
    ddn_tensor **dead; /* contiguous step tensors (offset 0) whose memory is free for reuse */
} ddn_grad_pool;

/* A zero-filled gradient for t from a dead buffer of t's dtype and element count; NULL when
 * the pool has none (or no pool is open). The most recently freed match is taken: its memory
 * is the most likely to be in cache. */
static ddn_tensor *recycled_grad(ddn_ctx *ctx, const ddn_tensor *t)
{
    ddn_grad_pool *pool = ctx->grad_pool;
    if (!pool) return NULL;
    int64_t numel = ddn_tensor_numel(t);
    for (int64_t i = pool->n - 1; i >= 0; i--) {
        ddn_tensor *d = pool->dead[i];
        if (d->dtype != t->dtype || ddn_tensor_numel(d) != numel) continue;
        int64_t stride[DDN_MAX_DIMS];
        ddn_contiguous_strides(t->ndim, t->shape, stride);
        ddn_tensor *g = ddn_view_raw(ctx, d, t->ndim, t->shape, stride, 0);
        if (!g || ddn_tensor_fill(g, 0.0) != DDN_OK) return NULL;
        pool->dead[i] = pool->dead[--pool->n];
        return g;
    }
    return NULL;
}

/* After node's backward: its output's gradient is dead (every consumer ran before it), so it goes
 * to the pool and out->grad is cleared, as PyTorch keeps no .grad on non-leaf tensors. */
static void release_output_grad(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *out = node->out;
    ddn_grad_pool *pool = ctx->grad_pool;
    if (!pool || !out->grad || out->persistent || out->grad->persistent || out->node != node)
        return;
    if (pool->n < pool->cap && ddn_tensor_is_contiguous(out->grad) && out->grad->offset == 0)
        pool->dead[pool->n++] = out->grad;
    out->grad = NULL;
}

ddn_tensor *ddn_grad_buffer(ddn_ctx *ctx, ddn_tensor *t)
{
    if (!t->requires_grad) return NULL;
    if (!t->grad) {
        if (t->persistent) t->grad = ddn_tensor_new_persistent(ctx, t->dtype, t->ndim, t->shape);
        else if (!(t->grad = recycled_grad(ctx, t)) && ddn_ctx_status(ctx) == DDN_OK)
            t->grad = ddn_zeros(ctx, t->dtype, t->ndim, t->shape);
    }
    return t->grad;
}

ddn_status ddn_grad_accumulate(ddn_ctx *ctx, ddn_tensor *t, const ddn_tensor *g, double alpha)
{
    if (!t->requires_grad) return DDN_OK;
    ddn_tensor *buf = ddn_grad_buffer(ctx, t);
    if (!buf) return ddn_ctx_status(ctx);
    if (g->dtype != t->dtype) {
        return ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "grad_accumulate: gradient is %s, tensor %s",
                                 ddn_dtype_name(g->dtype), ddn_dtype_name(t->dtype));
    }
    if (ddn_tensor_same_shape(buf, g)) return ddn_k(buf)->axpy(buf, g, alpha);

    /* g has the broadcast shape: sum over the leading dims t lacks and the dims where t has 1. */
    int lead = g->ndim - t->ndim;
    uint32_t mask = 0;
    bool ok = lead >= 0;
    for (int d = 0; d < g->ndim && ok; d++) {
        int dt = d - lead;
        if (dt < 0 || (t->shape[dt] == 1 && g->shape[d] != 1)) mask |= 1u << d;
        else ok = t->shape[dt] == g->shape[d];
    }
    if (!ok) {
        char a[96], b[96];
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "grad_accumulate: gradient %s does not "
                                 "reduce to tensor shape %s", ddn_shape_str(g, a, sizeof a),
                                 ddn_shape_str(t, b, sizeof b));
    }
    int64_t kshape[DDN_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) kshape[d] = (mask >> d) & 1 ? 1 : g->shape[d];
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *sum = ddn_tensor_new(ctx, g->dtype, g->ndim, kshape);
    ddn_status st = sum ? ddn_k(g)->reduce(DDN_REDUCE_SUM, sum, g, mask) : ddn_ctx_status(ctx);
    if (st == DDN_OK) {
        ddn_tensor *v = ddn_view_raw(ctx, sum, t->ndim, t->shape, buf->stride, 0);
        st = v ? ddn_k(buf)->axpy(buf, v, alpha) : ddn_ctx_status(ctx);
    }
    /* The temporaries die here; buf was made before the mark and survives. */
    ddn_ctx_rewind(ctx, mark);
    return st;
}

static ddn_status run_backward(ddn_ctx *ctx, ddn_tensor *y, const ddn_tensor *dy)
{
    if (!y->requires_grad)
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "backward: the tensor does not require grad "
                                 "(no input was marked with ddn_tensor_set_requires_grad, or it "
                                 "was computed with grad disabled)");
    if (!ddn_tensor_same_shape(y, dy) || y->dtype != dy->dtype) {
        char a[96], b[96];
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "backward: gradient %s %s does not match "
                                 "the tensor %s %s", ddn_dtype_name(dy->dtype),
                                 ddn_shape_str(dy, a, sizeof a), ddn_dtype_name(y->dtype),
                                 ddn_shape_str(y, b, sizeof b));
    }
    /* Forget gradients of intermediates from an earlier backward; leaves keep accumulating. */
    for (int64_t i = 0; i < ctx->tape_len; i++) ctx->tape[i]->out->grad = NULL;
    ddn_status st = ddn_grad_accumulate(ctx, y, dy, 1.0);
    if (st != DDN_OK) return st;

    int64_t start = ctx->tape_len - 1;
    while (start >= 0 && ctx->tape[start] != y->node) start--;
    /* one dead buffer at most per node */
    ddn_grad_pool *pool = ddn_ctx_scratch(ctx, sizeof *pool);
    ddn_tensor **dead = pool ? ddn_ctx_scratch(ctx, (size_t)(start + 2) * sizeof *dead) : NULL;
    if (!dead) return ddn_ctx_status(ctx);
    *pool = (ddn_grad_pool){.n = 0, .cap = start + 2, .dead = dead};
    ddn_grad_pool *outer = ctx->grad_pool; /* a backward run from inside a backward function */
    ctx->grad_pool = pool;
    for (int64_t i = start; i >= 0 && st == DDN_OK; i--) {
        ddn_node *node = ctx->tape[i];
        if (!node->out->grad) continue; /* nothing downstream of this node reached the loss */
        st = node->backward(ctx, node);
        if (st != DDN_OK) {
            if (ddn_ctx_status(ctx) == DDN_OK)
                ddn_ctx_set_error(ctx, st, "%s: backward failed", node->op);
            break;
        }
        for (int k = 0; k < node->n_in && st == DDN_OK; k++)
            st = ddn_check_grad_numerics(ctx, node->op, node->in[k]->grad);
        if (st == DDN_OK) release_output_grad(ctx, node);
    }
    ctx->grad_pool = outer;
    return st;
}

ddn_status ddn_backward_with_grad(ddn_ctx *ctx, ddn_tensor *y, const ddn_tensor *dy)
{
    if (!y || !dy)
        return ddn_ctx_status(ctx) != DDN_OK
                   ? ddn_ctx_status(ctx)
                   : ddn_ctx_set_error(ctx, DDN_ERR_ARG, "backward: tensor or gradient is NULL");
    if (ddn_ctx_status(ctx) != DDN_OK) return ddn_ctx_status(ctx); /* the tape may be partial */
    bool prev = ddn_set_grad_enabled(ctx, false); /* backward math is never recorded */
    ddn_status st = run_backward(ctx, y, dy);
    ddn_set_grad_enabled(ctx, prev);
    return st;
}

ddn_status ddn_backward(ddn_ctx *ctx, ddn_tensor *loss)
{
    if (!loss)
        return ddn_ctx_status(ctx) != DDN_OK
                   ? ddn_ctx_status(ctx)
                   : ddn_ctx_set_error(ctx, DDN_ERR_ARG, "backward: loss is NULL");
    if (ddn_tensor_numel(loss) != 1) {
        char s[96];
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "backward: loss has shape %s; it must have "
                                 "one element (use ddn_backward_with_grad otherwise)",
                                 ddn_shape_str(loss, s, sizeof s));
    }
    ddn_tensor *one = ddn_full(ctx, loss->dtype, loss->ndim, loss->shape, 1.0);
    if (!one) return ddn_ctx_status(ctx);
    return ddn_backward_with_grad(ctx, loss, one);
}
