/* ddn — 2-D batch normalisation, PyTorch's semantics (nn.BatchNorm2d / F.batch_norm).
 *
 * Training normalises with the batch mean and biased variance and updates the running
 * statistics in place (momentum, unbiased variance); evaluation uses the running statistics.
 * One tape node per call, on x and the affine weight and bias; the running statistics are
 * buffers, never differentiated. The node saves the batch (or running) mean and 1/sqrt(var +
 * eps), so backward needs no recomputation of statistics and is unaffected by later updates of
 * the running buffers. Backward accumulates. Tests: tests/test_norm_pool.c,
 * tests/test_norm_pool_torch.c.
 */
#include <math.h>

#include "ddn_impl.h"
#include "nn.h"

typedef struct {
    ddn_tensor *x;             /* (N, C, H, W) contiguous: the input or its copy */
    ddn_tensor *weight, *bias; /* (C) or NULL */
    ddn_tensor *mean, *invstd; /* (C) statistics used by the forward */
    bool training;
} bn_saved;

/* x itself when contiguous, else a contiguous copy (not recorded: callers record on x). */
static ddn_tensor *dense(ddn_ctx *ctx, ddn_tensor *x)
{
    if (ddn_tensor_is_contiguous(x)) return x;
    ddn_tensor *c = ddn_tensor_new_like(ctx, x);
    return c && ddn_k(x)->copy(c, x) == DDN_OK ? c : NULL;
}

static ddn_status batch_norm_backward(ddn_ctx *ctx, ddn_node *node)
{
    const bn_saved *sv = node->saved;
    ddn_tensor *dx = ddn_grad_buffer(ctx, node->in[0]);
    ddn_tensor *dw = sv->weight ? ddn_grad_buffer(ctx, sv->weight) : NULL;
    ddn_tensor *db = sv->bias ? ddn_grad_buffer(ctx, sv->bias) : NULL;
    if (ddn_ctx_status(ctx) != DDN_OK) return ddn_ctx_status(ctx);
    return ddn_k(sv->x)->batch_norm_backward_acc(dx, dw, db, sv->x, node->out->grad, sv->weight,
                                                 sv->mean, sv->invstd, sv->training);
}

/* A per-channel vector (weight, bias, running statistic): absent, or (C) of x's dtype. */
static bool check_vec(ddn_ctx *ctx, const ddn_tensor *x, const ddn_tensor *v, const char *what)
{
    if (!v) return true;
    char sx[96], sv[96];
    ddn_shape_str(x, sx, sizeof sx);
    ddn_shape_str(v, sv, sizeof sv);
    if (!ddn_check_float(ctx, "batch_norm2d", v)) return false;
    if (v->dtype != x->dtype) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "batch_norm2d: x %s is %s but %s %s is %s", sx,
                          ddn_dtype_name(x->dtype), what, sv, ddn_dtype_name(v->dtype));
        return false;
    }
    if (v->ndim != 1 || v->shape[0] != x->shape[1]) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "batch_norm2d: x %s has %lld channels but %s has "
                          "shape %s (expected (%lld))", sx, (long long)x->shape[1], what, sv,
                          (long long)x->shape[1]);
        return false;
    }
    return true;
}

static bool check_args(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight, ddn_tensor *bias,
                       ddn_tensor *rm, ddn_tensor *rv, bool training, double momentum,
                       double eps)
{
    if (!ddn_check_float(ctx, "batch_norm2d", x)) return false;
    char sx[96];
    ddn_shape_str(x, sx, sizeof sx);
    if (x->ndim != 4) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "batch_norm2d: x must be (N, C, H, W), got %s", sx);
        return false;
    }
    if (!check_vec(ctx, x, weight, "weight") || !check_vec(ctx, x, bias, "bias") ||
        !check_vec(ctx, x, rm, "running_mean") || !check_vec(ctx, x, rv, "running_var"))
        return false;
    if (!rm != !rv) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "batch_norm2d: running_mean and running_var must be "
                          "given together (got only %s)", rm ? "running_mean" : "running_var");
        return false;
    }
    if (!training && !rm) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "batch_norm2d: evaluation mode normalises with the "
                          "running statistics, but running_mean and running_var are NULL");
        return false;
    }
    if (!(eps >= 0) || !isfinite(eps) || !(momentum >= 0 && momentum <= 1)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "batch_norm2d: need eps >= 0 and momentum in [0, 1], "
                          "got eps %g, momentum %g", eps, momentum);
        return false;
    }
    int64_t per_channel = x->shape[0] * x->shape[2] * x->shape[3];
    if (training && per_channel < 2 && x->shape[1] > 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "batch_norm2d: training needs more than one value "
                          "per channel, got x %s (N*H*W = %lld)", sx, (long long)per_channel);
        return false;
    }
    return true;
}

ddn_tensor *ddn_batch_norm2d(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight, ddn_tensor *bias,
                             ddn_tensor *running_mean, ddn_tensor *running_var, bool training,
                             double momentum, double eps)
{
    const char *op = "batch_norm2d";
    if (!x) return NULL;
    if (!check_args(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps))
        return NULL;
    const ddn_kernels *k = ddn_k(x);
    int64_t C = x->shape[1];
    ddn_tensor *xc = dense(ctx, x);
    ddn_tensor *y = xc ? ddn_tensor_new_like(ctx, x) : NULL;
    if (!y) return NULL;
    bn_saved sv = {xc, weight, bias, NULL, NULL, training};
    bool record = ddn_grad_enabled(ctx) && (x->requires_grad || (weight && weight->requires_grad)
                                            || (bias && bias->requires_grad));
    if (training) {
        /* the batch statistics are kept only for a backward pass */
        if (record) {
            sv.mean = ddn_tensor_new(ctx, x->dtype, 1, &C);
            sv.invstd = sv.mean ? ddn_tensor_new(ctx, x->dtype, 1, &C) : NULL;
            if (!sv.invstd) return NULL;
        }
        if (k->batch_norm_train(y, sv.mean, sv.invstd, running_mean, running_var, xc, weight,
                                bias, momentum, eps) != DDN_OK)
            return NULL;
    } else {
        if (k->batch_norm_eval(y, xc, weight, bias, running_mean, running_var, eps) != DDN_OK)
            return NULL;
        if (record) {
            /* the statistics are constants of this node: copy them, so that a later update of
             * the running buffers cannot change this node's gradient */
            sv.mean = ddn_tensor_new(ctx, x->dtype, 1, &C);
            ddn_tensor *ve = sv.mean ? ddn_tensor_new(ctx, x->dtype, 1, &C) : NULL;
            sv.invstd = ve ? ddn_tensor_new(ctx, x->dtype, 1, &C) : NULL;
            if (!sv.invstd || k->copy(sv.mean, running_mean) != DDN_OK ||
                k->unary(DDN_UNARY_ADD_SCALAR, ve, running_var, eps, 0) != DDN_OK ||
                k->unary(DDN_UNARY_POW_SCALAR, sv.invstd, ve, -0.5, 0) != DDN_OK)
                return NULL;
        }
    }
    if (record) {
        ddn_tensor *in[3] = {x, NULL, NULL};
        int n_in = 1;
        if (weight) in[n_in++] = weight;
        if (bias) in[n_in++] = bias;
        if (ddn_tape_record(ctx, op, batch_norm_backward, y, n_in, in, &sv, sizeof sv) != DDN_OK)
            return NULL;
    }
    return ddn_op_finish(ctx, op, y);
}
