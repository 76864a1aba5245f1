/* ddn — differentiable tensor ops.
 *
 * Every op returns a new step tensor (or a view), records one tape node when an input requires a
 * gradient, and returns NULL with a message on the context when its inputs are unsuitable. An op
 * given a NULL input returns NULL without touching the error, so a chain of ops is checked once.
 * Inputs must share dtype and device. Float ops take float32 or float64.
 *
 * Broadcasting follows NumPy/PyTorch: shapes are aligned at the trailing dim; each dim pair must
 * be equal or one of them 1. Gradients flowing to a broadcast input are summed back to its shape.
 * Dims may be negative (counted from the end), as in PyTorch.
 */
#ifndef DDN_OPS_H
#define DDN_OPS_H

#include "autograd.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- views (layers/view.c); share memory with their input ------------------------------------ */
/* One dim of the new shape may be -1 (inferred). A non-contiguous input is copied first. */
ddn_tensor *ddn_reshape(ddn_ctx *ctx, ddn_tensor *x, int ndim, const int64_t *shape);
ddn_tensor *ddn_flatten(ddn_ctx *ctx, ddn_tensor *x, int start_dim); /* dims start.. -> one dim */
ddn_tensor *ddn_permute(ddn_ctx *ctx, ddn_tensor *x, const int *perm); /* perm has x->ndim items */
ddn_tensor *ddn_transpose(ddn_ctx *ctx, ddn_tensor *x, int dim0, int dim1);
/* x[..., start:stop:step, ...] along dim; step > 0; start/stop clamped like Python slices. */
ddn_tensor *ddn_slice(ddn_ctx *ctx, ddn_tensor *x, int dim, int64_t start, int64_t stop,
                      int64_t step);
/* Broadcasts size-1 dims (and new leading dims) to shape, with stride 0: no copy. */
ddn_tensor *ddn_expand(ddn_ctx *ctx, ddn_tensor *x, int ndim, const int64_t *shape);
ddn_tensor *ddn_contiguous(ddn_ctx *ctx, ddn_tensor *x); /* x itself when already contiguous */
ddn_tensor *ddn_cast(ddn_ctx *ctx, ddn_tensor *x, ddn_dtype dt); /* differentiable float<->float */

/* ---- elementwise (layers/elementwise.c) ------------------------------------------------------- */
ddn_tensor *ddn_add(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b);
ddn_tensor *ddn_sub(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b);
ddn_tensor *ddn_mul(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b);
ddn_tensor *ddn_div(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b);
ddn_tensor *ddn_pow(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b);      /* a^b, a > 0 where b varies */
ddn_tensor *ddn_add_scalar(ddn_ctx *ctx, ddn_tensor *x, double s);
ddn_tensor *ddn_mul_scalar(ddn_ctx *ctx, ddn_tensor *x, double s);
ddn_tensor *ddn_pow_scalar(ddn_ctx *ctx, ddn_tensor *x, double p);   /* x^p */
ddn_tensor *ddn_neg(ddn_ctx *ctx, ddn_tensor *x);
ddn_tensor *ddn_abs(ddn_ctx *ctx, ddn_tensor *x);     /* gradient sign(x), 0 at 0 (as PyTorch) */
ddn_tensor *ddn_exp(ddn_ctx *ctx, ddn_tensor *x);
ddn_tensor *ddn_log(ddn_ctx *ctx, ddn_tensor *x);
ddn_tensor *ddn_sqrt(ddn_ctx *ctx, ddn_tensor *x);
ddn_tensor *ddn_relu(ddn_ctx *ctx, ddn_tensor *x);    /* gradient 0 at 0 (as PyTorch) */
ddn_tensor *ddn_sigmoid(ddn_ctx *ctx, ddn_tensor *x);
ddn_tensor *ddn_tanh(ddn_ctx *ctx, ddn_tensor *x);
/* min(max(x, lo), hi); gradient 1 where lo <= x <= hi (as PyTorch). Pass -INFINITY/INFINITY for
 * a one-sided clamp. */
ddn_tensor *ddn_clamp(ddn_ctx *ctx, ddn_tensor *x, double lo, double hi);

/* ---- reductions (layers/reduce.c) ------------------------------------------------------------- */
/* dims: n_dims dims to reduce (n_dims = 0: all dims). keepdim keeps them as size 1. */
ddn_tensor *ddn_sum(ddn_ctx *ctx, ddn_tensor *x, int n_dims, const int *dims, bool keepdim);
ddn_tensor *ddn_mean(ddn_ctx *ctx, ddn_tensor *x, int n_dims, const int *dims, bool keepdim);
/* Maximum over dims; the gradient is shared equally among tied maxima (as torch.amax). */
ddn_tensor *ddn_max(ddn_ctx *ctx, ddn_tensor *x, int n_dims, const int *dims, bool keepdim);
/* Index of the first maximum along one dim, int64; not differentiable. */
ddn_tensor *ddn_argmax(ddn_ctx *ctx, ddn_tensor *x, int dim, bool keepdim);

/* ---- matrix products (layers/matmul.c) -------------------------------------------------------- */
/* a (..., M, K) @ b (..., K, N) -> (..., M, N) through BLAS gemm; batch dims broadcast; 1-D
 * operands are promoted as in torch.matmul (and the added dim removed). Transposed views are
 * passed to BLAS without a copy. */
ddn_tensor *ddn_matmul(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b);
/* x (N, in) @ w^T (out, in) + bias (out) -> (N, out); bias may be NULL. */
ddn_tensor *ddn_linear(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *w, ddn_tensor *bias);

/* ---- softmax and losses (layers/loss.c) ------------------------------------------------------- */
ddn_tensor *ddn_softmax(ddn_ctx *ctx, ddn_tensor *x, int dim);
ddn_tensor *ddn_log_softmax(ddn_ctx *ctx, ddn_tensor *x, int dim);

typedef enum ddn_reduction {
    DDN_REDUCTION_MEAN = 0,
    DDN_REDUCTION_SUM = 1,
} ddn_reduction;

/* logits (N, C) float, labels (N) int64 in [0, C) -> scalar loss. A label out of range is a
 * DDN_ERR_ARG naming the item and the label. */
ddn_tensor *ddn_cross_entropy(ddn_ctx *ctx, ddn_tensor *logits, ddn_tensor *labels,
                              ddn_reduction reduction);
/* mean or sum of (a - b)^2 over all elements; a and b of the same shape. */
ddn_tensor *ddn_mse(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b, ddn_reduction reduction);

#ifdef __cplusplus
}
#endif
#endif
