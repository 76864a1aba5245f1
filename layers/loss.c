/* ddn — softmax, log-softmax and the losses: cross-entropy (log-softmax + NLL) and mean squared
 * error.
 *
 * Softmax runs on a contiguous input (a strided one is copied first; the node stays on the
 * original, whose gradient buffer is contiguous anyway). Cross-entropy is one node: it keeps the
 * log-probabilities, and its backward scatters -dy into a buffer at the labels and applies the
 * log-softmax backward. MSE keeps a - b; its sum of squares and its gradient are gemms on that
 * flat vector (a dot product and a rank-1 update), so it needs no elementwise kernel.
 * Tests: tests/test_loss.c, tests/test_reduce_torch.c.
 */
#include <math.h>

#include "ddn_impl.h"
#include "ops.h"

/* One dim of x, normalised (a 0-dim tensor accepts 0 and -1, as PyTorch); -1 with an error. */
static int norm_dim(ddn_ctx *ctx, const char *op, const ddn_tensor *x, int dim)
{
    int nd = x->ndim ? x->ndim : 1;
    int d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: dim %d is out of range for shape %s (%d dims)",
                          op, dim, ddn_shape_str(x, s, sizeof s), x->ndim);
        return -1;
    }
    return d;
}

/* x itself when contiguous, else a contiguous copy (not recorded: callers record on x). */
static ddn_tensor *dense(ddn_ctx *ctx, ddn_tensor *x)
{
    if (ddn_tensor_is_contiguous(x)) return x;
    ddn_tensor *c = ddn_tensor_new_like(ctx, x);
    return c && ddn_k(x)->copy(c, x) == DDN_OK ? c : NULL;
}

static bool check_reduction(ddn_ctx *ctx, const char *op, ddn_reduction r)
{
    if (r == DDN_REDUCTION_MEAN || r == DDN_REDUCTION_SUM) return true;
    ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: unknown reduction %d (expected DDN_REDUCTION_MEAN "
                      "or DDN_REDUCTION_SUM)", op, (int)r);
    return false;
}

/* ---- softmax / log_softmax -------------------------------------------------------------------- */
typedef struct {
    int dim;
    bool log;
} softmax_saved;

static ddn_status softmax_backward(ddn_ctx *ctx, ddn_node *node)
{
    const softmax_saved *sv = node->saved;
    ddn_tensor *gx = ddn_grad_buffer(ctx, node->in[0]), *y = node->out;
    return gx ? ddn_k(gx)->softmax_backward_acc(gx, y, y->grad, sv->dim, sv->log)
              : ddn_ctx_status(ctx);
}

static ddn_tensor *softmax_forward(ddn_ctx *ctx, const char *op, ddn_tensor *x, int dim, bool log)
{
    if (!ddn_check_float(ctx, op, x)) return NULL;
    int d = norm_dim(ctx, op, x, dim);
    if (d < 0) return NULL;
    ddn_tensor *xc = dense(ctx, x);
    ddn_tensor *y = xc ? ddn_tensor_new_like(ctx, x) : NULL;
    if (!y || ddn_k(x)->softmax(y, xc, d, log) != DDN_OK) return NULL;
    ddn_node *node = ddn_tape_record(ctx, op, softmax_backward, y, 1, &x, sizeof(softmax_saved));
    if (node) *(softmax_saved *)node->saved = (softmax_saved){d, log};
    return ddn_op_finish(ctx, op, y);
}

ddn_tensor *ddn_softmax(ddn_ctx *ctx, ddn_tensor *x, int dim)
{
    return softmax_forward(ctx, "softmax", x, dim, false);
}

ddn_tensor *ddn_log_softmax(ddn_ctx *ctx, ddn_tensor *x, int dim)
{
    return softmax_forward(ctx, "log_softmax", x, dim, true);
}

/* ---- cross-entropy ---------------------------------------------------------------------------- */
typedef struct {
    ddn_tensor *logp; /* (N, C) log-softmax of the logits */
    double scale;     /* 1/N (mean) or 1 (sum) */
} ce_saved;

static ddn_status cross_entropy_backward(ddn_ctx *ctx, ddn_node *node)
{
    const ce_saved *sv = node->saved;
    ddn_tensor *glogits = ddn_grad_buffer(ctx, node->in[0]), *labels = node->in[1];
    if (!glogits) return ddn_ctx_status(ctx);
    const ddn_kernels *k = ddn_k(glogits);
    /* dL/dlogp is -scale*dy at each item's label and 0 elsewhere; log-softmax backward turns it
     * into scale*dy*(softmax - onehot) for the logits. */
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *glogp = ddn_zeros(ctx, sv->logp->dtype, 2, sv->logp->shape);
    ddn_status st = glogp ? k->nll_backward_acc(glogp, labels, node->out->grad, sv->scale)
                          : ddn_ctx_status(ctx);
    if (st == DDN_OK) st = k->softmax_backward_acc(glogits, sv->logp, glogp, 1, true);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_tensor *ddn_cross_entropy(ddn_ctx *ctx, ddn_tensor *logits, ddn_tensor *labels,
                              ddn_reduction reduction)
{
    const char *op = "cross_entropy";
    if (!logits || !labels) return NULL;
    if (!ddn_check_float(ctx, op, logits) || !check_reduction(ctx, op, reduction)) return NULL;
    char sl[96], sy[96];
    ddn_shape_str(logits, sl, sizeof sl);
    ddn_shape_str(labels, sy, sizeof sy);
    if (labels->dtype != DDN_DTYPE_I64) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "cross_entropy: labels must be int64 class "
                          "indices, got %s %s", ddn_dtype_name(labels->dtype), sy);
        return NULL;
    }
    if (labels->ctx != ctx || labels->device != ctx->device) {
        ddn_ctx_set_error(ctx, DDN_ERR_DEVICE, "cross_entropy: labels live on another context "
                          "or device");
        return NULL;
    }
    if (logits->ndim != 2) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "cross_entropy: logits must be (N, C), got %s", sl);
        return NULL;
    }
    int64_t N = logits->shape[0];
    if (labels->ndim != 1 || labels->shape[0] != N) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "cross_entropy: logits %s need labels (%lld), got "
                          "%s", sl, (long long)N, sy);
        return NULL;
    }
    double scale = reduction == DDN_REDUCTION_SUM ? 1.0 : N ? 1.0 / (double)N : NAN;
    const ddn_kernels *k = ddn_k(logits);
    ddn_tensor *xc = dense(ctx, logits);
    ddn_tensor *logp = xc ? ddn_tensor_new_like(ctx, logits) : NULL;
    ddn_tensor *loss = logp ? ddn_tensor_new(ctx, logits->dtype, 0, NULL) : NULL;
    if (!loss || k->softmax(logp, xc, 1, true) != DDN_OK ||
        k->nll(loss, logp, labels, scale) != DDN_OK)
        return NULL;
    ddn_tensor *in[2] = {logits, labels};
    ddn_node *node = ddn_tape_record(ctx, op, cross_entropy_backward, loss, 2, in,
                                     sizeof(ce_saved));
    if (node) *(ce_saved *)node->saved = (ce_saved){logp, scale};
    return ddn_op_finish(ctx, op, loss);
}

/* ---- mean squared error ----------------------------------------------------------------------- */
typedef struct {
    ddn_tensor *diff; /* a - b, contiguous, a's shape */
    double scale;     /* 1/n (mean) or 1 (sum) */
} mse_saved;

/* t (contiguous, n elements) as an (n, 1) column, or a (1, n) row. */
static ddn_tensor *flat2(ddn_ctx *ctx, const ddn_tensor *t, bool row)
{
    int64_t n = ddn_tensor_numel(t);
    int64_t shape[2] = {row ? 1 : n, row ? n : 1}, stride[2] = {row ? n : 1, 1};
    return ddn_view_raw(ctx, t, 2, shape, stride, t->offset);
}

static ddn_status mse_backward(ddn_ctx *ctx, ddn_node *node)
{
    const mse_saved *sv = node->saved;
    ddn_tensor *dy = flat2(ctx, node->out->grad, true); /* (1, 1) */
    ddn_tensor *dcol = flat2(ctx, sv->diff, false);     /* (n, 1) */
    if (!dy || !dcol) return ddn_ctx_status(ctx);
    /* d/da = 2 scale dy (a - b), d/db = its negative: a rank-1 gemm (n,1)@(1,1) with beta = 1
     * adds it straight into each gradient buffer. */
    for (int i = 0; i < 2; i++) {
        ddn_tensor *t = node->in[i];
        if (!t->requires_grad) continue;
        ddn_tensor *g = ddn_grad_buffer(ctx, t);
        ddn_tensor *gcol = g ? flat2(ctx, g, false) : NULL;
        ddn_status st = gcol ? ddn_k(g)->matmul(gcol, dcol, dy, (i ? -2.0 : 2.0) * sv->scale, 1.0)
                             : ddn_ctx_status(ctx);
        if (st != DDN_OK) return st;
    }
    return DDN_OK;
}

ddn_tensor *ddn_mse(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b, ddn_reduction reduction)
{
    const char *op = "mse";
    if (!ddn_check_pair(ctx, op, a, b) || !check_reduction(ctx, op, reduction)) return NULL;
    if (!ddn_tensor_same_shape(a, b)) {
        char sa[96], sb[96];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "mse: shapes %s and %s differ; mse needs inputs "
                          "of the same shape", ddn_shape_str(a, sa, sizeof sa),
                          ddn_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    int64_t n = ddn_tensor_numel(a);
    double scale = reduction == DDN_REDUCTION_SUM ? 1.0 : n ? 1.0 / (double)n : NAN;
    const ddn_kernels *k = ddn_k(a);
    ddn_tensor *diff = ddn_tensor_new_like(ctx, a);
    ddn_tensor *loss = diff ? ddn_tensor_new(ctx, a->dtype, 0, NULL) : NULL;
    if (!loss || k->copy(diff, a) != DDN_OK || k->axpy(diff, b, -1.0) != DDN_OK) return NULL;
    /* scale * (a-b)^T (a-b) as a (1,n)@(n,1) gemm into the 0-dim loss viewed as (1,1) */
    ddn_tensor *drow = flat2(ctx, diff, true), *dcol = flat2(ctx, diff, false);
    ddn_tensor *l11 = flat2(ctx, loss, true);
    if (!drow || !dcol || !l11 || k->matmul(l11, drow, dcol, scale, 0.0) != DDN_OK) return NULL;
    /* an empty input sums to 0 (the gemm wrote it); its mean is NaN, as in PyTorch */
    if (n == 0 && reduction == DDN_REDUCTION_MEAN && k->fill(loss, NAN) != DDN_OK) return NULL;
    ddn_tensor *in[2] = {a, b};
    ddn_node *node = ddn_tape_record(ctx, op, mse_backward, loss, 2, in, sizeof(mse_saved));
    if (node) *(mse_saved *)node->saved = (mse_saved){diff, scale};
    return ddn_op_finish(ctx, op, loss);
}
