/* ddn — 2-D batch normalisation, PyTorch's semantics (nn.BatchNorm2d / F.batch_norm).
 *
 * Training normalises with the batch mean and biased variance and updates the running
 * statistics in place (momentum, unbiased variance); evaluation uses the running statistics.
 * One tape node per call, on x and the affine weight and bias; the running statistics are
 * buffers, never differentiated. The node saves the batch (or running) mean and 1/sqrt(var +
 * eps), so backward needs no recomputation of statistics and is unaffected by later updates of
 * the running buffers. Backward accumulates. Tests: tests/test_norm_pool.c,
 * tests/test_norm_pool_torch.c.
 *
 * ddn_batch_norm2d_relu fuses BN, an optional residual add and a ReLU into one node with one
 * output tensor (ResNet's bn-relu and bn-add-relu): the add and the ReLU run in place on the BN
 * output, which nothing else reads, and ReLU's backward needs only its output (y > 0 exactly
 * where its input was > 0). The three separate ops keep three activations alive until the step
 * ends; the fused node keeps one, as PyTorch's in-place ReLU does. Same kernels, same order, so
 * the same values and gradients. Tests: tests/test_norm_pool.c.
 */
#include <math.h>

#include "ddn_impl.h"
#include "nn.h"
#include "nn_impl.h"
#include "ops.h"

typedef struct {
    ddn_tensor *x;             /* (N, C, H, W) contiguous: the input or its copy */
    ddn_tensor *weight, *bias; /* (C) or NULL */
    ddn_tensor *mean, *invstd; /* (C) statistics used by the forward */
    bool training;
    ddn_tensor *residual;      /* fused form: the tensor added before the ReLU, or NULL */
    bool relu;                 /* fused form: a ReLU on the sum */
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

/* relu(bn(x) + residual), the relu optional: g = dy where y > 0 (ReLU's backward, computed as
 * the separate op does: into a zeroed buffer), the residual gets g (the add's backward) and BN's
 * backward runs on g. When the residual's gradient buffer is new (ResNet: this node is the last
 * consumer of the block's identity on the tape, so the first in the reverse walk), g is made
 * right in it, as it equals g; otherwise g is a temporary. The input gradient buffers are made
 * before the mark, so the rewind keeps them. */
static ddn_status batch_norm_relu_backward(ddn_ctx *ctx, ddn_node *node)
{
    const bn_saved *sv = node->saved;
    ddn_tensor *y = node->out, *r = sv->residual;
    bool r_fresh = r && r->requires_grad && !r->grad && r != node->in[0];
    ddn_tensor *dx = ddn_grad_buffer(ctx, node->in[0]);
    ddn_tensor *dw = sv->weight ? ddn_grad_buffer(ctx, sv->weight) : NULL;
    ddn_tensor *db = sv->bias ? ddn_grad_buffer(ctx, sv->bias) : NULL;
    ddn_tensor *dr = r ? ddn_grad_buffer(ctx, r) : NULL;
    if (ddn_ctx_status(ctx) != DDN_OK) return ddn_ctx_status(ctx);
    const ddn_kernels *k = ddn_k(y);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *g = y->grad;
    ddn_status st = DDN_OK;
    if (sv->relu) {
        g = r_fresh ? dr : ddn_zeros(ctx, y->dtype, y->ndim, y->shape);
        st = g ? k->unary_backward_acc(DDN_UNARY_RELU, g, y, y, y->grad, 0, 0)
               : ddn_ctx_status(ctx);
    }
    if (st == DDN_OK && dr && g != dr) st = ddn_grad_accumulate(ctx, r, g, 1.0);
    if (st == DDN_OK && (dx || dw || db))
        st = k->batch_norm_backward_acc(dx, dw, db, sv->x, g, sv->weight, sv->mean, sv->invstd,
                                        sv->training);
    ddn_ctx_rewind(ctx, mark);
    return st;
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

/* The residual of the fused form: x's dtype and shape exactly (no broadcasting). */
static bool check_residual(ddn_ctx *ctx, const ddn_tensor *x, const ddn_tensor *r)
{
    if (!r) return true;
    if (!ddn_check_pair(ctx, "batch_norm2d_relu", x, r)) return false;
    if (ddn_tensor_same_shape(x, r)) return true;
    char sx[96], sr[96];
    ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "batch_norm2d_relu: residual %s must have x's shape %s",
                      ddn_shape_str(r, sr, sizeof sr), ddn_shape_str(x, sx, sizeof sx));
    return false;
}

/* A caller's output buffer: contiguous with x's dtype and shape; x itself only when nothing is
 * recorded (the node would save x, and the kernels would overwrite it). */
static bool check_out(ddn_ctx *ctx, const ddn_tensor *x, const ddn_tensor *out, bool record)
{
    if (!out) return true;
    char sx[96], so[96];
    if (out->dtype != x->dtype || !ddn_tensor_same_shape(out, x) ||
        !ddn_tensor_is_contiguous(out) || out->persistent) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "batch_norm2d: out %s %s must be a contiguous "
                          "step tensor like x %s %s", ddn_dtype_name(out->dtype),
                          ddn_shape_str(out, so, sizeof so), ddn_dtype_name(x->dtype),
                          ddn_shape_str(x, sx, sizeof sx));
        return false;
    }
    if (record && out->data == x->data) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "batch_norm2d: out may share x's memory only "
                          "when nothing is recorded (backward needs x)");
        return false;
    }
    return true;
}

/* The forward of both forms: y = bn(x) (fused: then += residual, then relu, in place on y). */
static ddn_tensor *bn_forward(ddn_ctx *ctx, const char *op, ddn_tensor *x, ddn_tensor *weight,
                              ddn_tensor *bias, ddn_tensor *running_mean, ddn_tensor *running_var,
                              bool training, double momentum, double eps,
                              ddn_tensor *residual, bool relu, ddn_tensor *out)
{
    bool fused = relu || residual;
    if (!x) return NULL;
    if (!check_args(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps))
        return NULL;
    if (!check_residual(ctx, x, residual)) return NULL;
    const ddn_kernels *k = ddn_k(x);
    int64_t C = x->shape[1];
    bool record = ddn_grad_enabled(ctx) && (x->requires_grad || (weight && weight->requires_grad)
                                            || (bias && bias->requires_grad) ||
                                            (residual && residual->requires_grad));
    if (!check_out(ctx, x, out, record)) return NULL;
    ddn_tensor *xc = dense(ctx, x);
    ddn_tensor *y = !xc ? NULL : out ? out : ddn_tensor_new_like(ctx, x);
    if (!y) return NULL;
    bn_saved sv = {xc, weight, bias, NULL, NULL, training, residual, relu};
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
    if (fused) {
        /* elementwise in place: each element is read before it is written */
        ddn_tensor *r = residual ? dense(ctx, residual) : NULL;
        if ((residual && (!r || k->binary(DDN_BINARY_ADD, y, y, r) != DDN_OK)) ||
            (relu && k->unary(DDN_UNARY_RELU, y, y, 0, 0) != DDN_OK))
            return NULL;
    }
    if (record) {
        ddn_tensor *in[4] = {x, NULL, NULL, NULL};
        int n_in = 1;
        if (weight) in[n_in++] = weight;
        if (bias) in[n_in++] = bias;
        if (residual) in[n_in++] = residual;
        ddn_backward_fn bwd = fused ? batch_norm_relu_backward : batch_norm_backward;
        if (ddn_tape_record(ctx, op, bwd, y, n_in, in, &sv, sizeof sv) != DDN_OK) return NULL;
    }
    return ddn_op_finish(ctx, op, y);
}

ddn_tensor *ddn_batch_norm2d(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight, ddn_tensor *bias,
                             ddn_tensor *running_mean, ddn_tensor *running_var, bool training,
                             double momentum, double eps)
{
    return bn_forward(ctx, "batch_norm2d", x, weight, bias, running_mean, running_var, training,
                      momentum, eps, NULL, false, NULL);
}

ddn_tensor *ddn_batch_norm2d_relu(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight,
                                  ddn_tensor *bias, ddn_tensor *running_mean,
                                  ddn_tensor *running_var, bool training, double momentum,
                                  double eps, ddn_tensor *residual)
{
    return bn_forward(ctx, "batch_norm2d_relu", x, weight, bias, running_mean, running_var,
                      training, momentum, eps, residual, true, NULL);
}

ddn_tensor *ddn_batch_norm2d_into(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight,
                                  ddn_tensor *bias, ddn_tensor *running_mean,
                                  ddn_tensor *running_var, bool training, double momentum,
                                  double eps, ddn_tensor *residual, bool relu, ddn_tensor *out)
{
    return bn_forward(ctx, relu || residual ? "batch_norm2d_relu" : "batch_norm2d", x, weight,
                      bias, running_mean, running_var, training, momentum, eps, residual, relu,
                      out);
}
