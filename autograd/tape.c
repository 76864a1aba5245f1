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

ddn_tensor *ddn_grad_buffer(ddn_ctx *ctx, ddn_tensor *t)
{
    if (!t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = t->persistent ? ddn_tensor_new_persistent(ctx, t->dtype, t->ndim, t->shape)
                                : ddn_zeros(ctx, t->dtype, t->ndim, t->shape);
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
    for (int64_t i = start; i >= 0; i--) {
        ddn_node *node = ctx->tape[i];
        if (!node->out->grad) continue; /* nothing downstream of this node reached the loss */
        st = node->backward(ctx, node);
        if (st != DDN_OK) {
            if (ddn_ctx_status(ctx) == DDN_OK)
                ddn_ctx_set_error(ctx, st, "%s: backward failed", node->op);
            return st;
        }
        for (int k = 0; k < node->n_in; k++) {
            st = ddn_check_grad_numerics(ctx, node->op, node->in[k]->grad);
            if (st != DDN_OK) return st;
        }
    }
    return DDN_OK;
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
