/* ddn — neural-network layers as differentiable functional ops: convolution, batch
 * normalisation, pooling, dropout. Shapes and semantics are PyTorch's (NCHW activations,
 * (OC, IC/groups, KH, KW) weights); parameters are ordinary tensors (see params.h for a model's
 * named, long-lived parameter block). float32 and float64 on the CPU; every op dispatches through
 * the backend table. Errors name the op, the shapes and what was expected.
 * Tests: tests/test_conv.c, tests/test_norm_pool.c (float64 gradchecks, PyTorch fixtures).
 */
#ifndef DDN_NN_H
#define DDN_NN_H

#include "autograd.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convolution (layers/conv2d.c) -------------------------------------------------------------- */
typedef struct ddn_conv2d_params {
    int stride[2];   /* (h, w), >= 1 */
    int padding[2];  /* zero padding (h, w), >= 0 */
    int dilation[2]; /* >= 1 */
    int groups;      /* >= 1, divides IC and OC */
} ddn_conv2d_params;

#define DDN_CONV2D_DEFAULT ((ddn_conv2d_params){{1, 1}, {0, 0}, {1, 1}, 1})

/* x (N, IC, H, W), w (OC, IC/groups, KH, KW), bias (OC) or NULL -> (N, OC, OH, OW) with
 * OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1 (floor), as torch.nn.functional.conv2d. 1x1
 * convolutions (stride 1, no padding) are a direct GEMM; others go through im2col + GEMM in
 * blocks, so the column buffer stays below a fixed size per call. */
ddn_tensor *ddn_conv2d(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *w, ddn_tensor *bias,
                       ddn_conv2d_params p);

/* ---- batch normalisation (layers/batchnorm.c) --------------------------------------------------- */
/* x (N, C, H, W); weight, bias (C) (may be NULL: no affine); running_mean, running_var (C)
 * persistent buffers (may be NULL in training: batch statistics only). training: normalise with
 * the batch mean and biased variance, then update the running statistics in place with
 * momentum (new = (1 - momentum) old + momentum stat, the variance unbiased), as PyTorch.
 * Evaluation: normalise with the running statistics. */
ddn_tensor *ddn_batch_norm2d(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight, ddn_tensor *bias,
                             ddn_tensor *running_mean, ddn_tensor *running_var, bool training,
                             double momentum, double eps);
/* relu(batch_norm2d(x) + residual) as one op with one output tensor (ResNet's bn-relu and
 * bn-add-relu units); residual may be NULL (no add), else it has x's dtype and shape. The same
 * values and gradients as the three separate ops, but only x, the statistics and the output stay
 * alive for backward (the separate ops keep the BN output and the sum as well). */
ddn_tensor *ddn_batch_norm2d_relu(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight,
                                  ddn_tensor *bias, ddn_tensor *running_mean,
                                  ddn_tensor *running_var, bool training, double momentum,
                                  double eps, ddn_tensor *residual);

/* ---- pooling and dropout (layers/pool.c) ------------------------------------------------------- */
typedef struct ddn_pool2d_params {
    int kernel[2];
    int stride[2];          /* 0: the kernel size, as PyTorch's default */
    int padding[2];         /* <= kernel / 2 */
    bool ceil_mode;
    bool count_include_pad; /* avg pool only; PyTorch's default is true */
} ddn_pool2d_params;

/* x (N, C, H, W) -> (N, C, OH, OW); padding counts as -inf for max pooling. */
ddn_tensor *ddn_max_pool2d(ddn_ctx *ctx, ddn_tensor *x, ddn_pool2d_params p);
ddn_tensor *ddn_avg_pool2d(ddn_ctx *ctx, ddn_tensor *x, ddn_pool2d_params p);
/* x (N, C, H, W) -> (N, C, out_h, out_w) with PyTorch's adaptive bins (global pooling: 1, 1). */
ddn_tensor *ddn_adaptive_avg_pool2d(ddn_ctx *ctx, ddn_tensor *x, int out_h, int out_w);
/* Inverted dropout: in training, zero each element with probability p (drawn from rng, NULL:
 * the context's) and scale the rest by 1 / (1 - p); identity in evaluation. One draw from rng
 * seeds the whole mask, so a seeded rng reproduces it; evaluation and p = 0 return x itself
 * without drawing. */
ddn_tensor *ddn_dropout(ddn_ctx *ctx, ddn_tensor *x, double p, bool training, ddn_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
