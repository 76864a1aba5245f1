/* ddn — the backend table (internal).
 *
 * A tensor lives on one device; every op reaches the device's memory and kernels through this
 * table, never through #ifdefs. The CPU instance is in core/cpu/cpu_backend.c; the CUDA instance
 * registers itself in core/backend.c (the only #ifdef DDN_HAVE_CUDA).
 *
 * Kernel conventions:
 * - Outputs first, then inputs, then parameters. Kernels never allocate step tensors and never
 *   record tape nodes; front ends in layers/ do that.
 * - Inputs may be any strided view (stride 0 for broadcast dims) unless a kernel says otherwise.
 *   Outputs are written through their strides too, but front ends pass contiguous outputs.
 * - "acc" kernels add into their output (gradient accumulation); others overwrite it.
 * - A kernel that fails sets the message on out->ctx and returns its status.
 */
#ifndef DDN_BACKEND_H
#define DDN_BACKEND_H

#include "tensor.h"

typedef enum ddn_unary_op {
    DDN_UNARY_NEG,
    DDN_UNARY_ABS,
    DDN_UNARY_EXP,
    DDN_UNARY_LOG,
    DDN_UNARY_SQRT,
    DDN_UNARY_RELU,
    DDN_UNARY_SIGMOID,
    DDN_UNARY_TANH,
    DDN_UNARY_CLAMP,      /* p0 = lo, p1 = hi */
    DDN_UNARY_POW_SCALAR, /* p0 = exponent */
    DDN_UNARY_ADD_SCALAR, /* p0 = addend */
    DDN_UNARY_MUL_SCALAR, /* p0 = factor */
    DDN_UNARY_COUNT
} ddn_unary_op;

typedef enum ddn_binary_op {
    DDN_BINARY_ADD,
    DDN_BINARY_SUB,
    DDN_BINARY_MUL,
    DDN_BINARY_DIV,
    DDN_BINARY_POW,
    DDN_BINARY_EQ, /* 1 where a == b else 0, in the float dtype; not differentiable */
    DDN_BINARY_COUNT
} ddn_binary_op;

typedef enum ddn_reduce_op {
    DDN_REDUCE_SUM,
    DDN_REDUCE_MAX,
    DDN_REDUCE_COUNT
} ddn_reduce_op;

typedef struct ddn_kernels {
    /* ---- memory-shaped (core/cpu/copy.c) ---- */
    /* out <- x elementwise, same shape; dtypes may differ (converted). */
    ddn_status (*copy)(ddn_tensor *out, const ddn_tensor *x);
    ddn_status (*fill)(ddn_tensor *out, double value);
    /* out += alpha * x, same shape and dtype (float). */
    ddn_status (*axpy)(ddn_tensor *out, const ddn_tensor *x, double alpha);
    /* true when any element is NaN or Inf (float tensors). */
    bool (*has_nonfinite)(const ddn_tensor *x);

    /* ---- elementwise (core/cpu/elementwise.c) ---- */
    /* out, x same shape. */
    ddn_status (*unary)(ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0,
                        double p1);
    /* dx += dy * f'(x); y = f(x) is given for ops whose derivative is cheaper from it. */
    ddn_status (*unary_backward_acc)(ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
                                     const ddn_tensor *y, const ddn_tensor *dy, double p0,
                                     double p1);
    /* out, a, b all of out's shape (front ends expand a and b with stride-0 views). */
    ddn_status (*binary)(ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a,
                         const ddn_tensor *b);
    /* The full-shape partial for one operand (which = 0: dL/da, 1: dL/db), overwriting out:
     * out = dy * d(a op b)/d(which). y = a op b. All of out's shape. */
    ddn_status (*binary_backward)(ddn_binary_op op, int which, ddn_tensor *out,
                                  const ddn_tensor *a, const ddn_tensor *b, const ddn_tensor *y,
                                  const ddn_tensor *dy);

    /* ---- reductions (core/cpu/reduce.c) ---- */
    /* out has x's ndim with size 1 on the reduced dims (bit i of dims_mask = dim i). */
    ddn_status (*reduce)(ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x,
                         uint32_t dims_mask);
    /* out (int64) has x's ndim with size 1 on dim: index of the first maximum along dim. */
    ddn_status (*argmax)(ddn_tensor *out, const ddn_tensor *x, int dim);

    /* ---- BLAS (core/cpu/blas.c) ---- */
    /* out = alpha * a @ b + beta * out. a (B.., M, K), b (B.., K, N), out (B.., M, N) with equal
     * batch dims (stride 0 allowed there); out is contiguous. An operand whose last or
     * second-to-last dim has unit stride (row-major or transposed view) is used in place; any
     * other layout is copied to scratch by the kernel. beta = 0 ignores out's contents
     * (NaN-safe). */
    ddn_status (*matmul)(ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b, double alpha,
                         double beta);

    /* ---- softmax and losses (core/cpu/softmax.c) ---- */
    /* out = softmax or log-softmax of x along dim; x contiguous. */
    ddn_status (*softmax)(ddn_tensor *out, const ddn_tensor *x, int dim, bool log);
    /* dx += softmax/log-softmax backward from y (the forward output) and dy along dim. */
    ddn_status (*softmax_backward_acc)(ddn_tensor *dx, const ddn_tensor *y, const ddn_tensor *dy,
                                       int dim, bool log);
    /* out (0-dim) = scale * sum_i -logp[i, labels[i]]; logp (N, C), labels (N) int64. A label out
     * of [0, C) fails with DDN_ERR_ARG naming the item. */
    ddn_status (*nll)(ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels,
                      double scale);
    /* dlogp[i, labels[i]] += -scale * dy (dy 0-dim). */
    ddn_status (*nll_backward_acc)(ddn_tensor *dlogp, const ddn_tensor *labels,
                                   const ddn_tensor *dy, double scale);

    /* ---- reduction gradients (core/cpu/reduce_backward.c) ---- */
    /* Max backward: y (the max) and dy have x's ndim with size 1 on the reduced dims (bit i of
     * dims_mask = dim i). dx += dy / t at the t entries of each block equal to its maximum
     * (ties share equally, as torch.amax); a block whose maximum is NaN gets NaN. */
    ddn_status (*max_backward_acc)(ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
                                   const ddn_tensor *dy, uint32_t dims_mask);

    /* ---- convolution (core/cpu/conv.c) ---- */
    /* 2-D convolution as torch.nn.functional.conv2d: x (N, C, H, W), w (OC, C/groups, KH, KW),
     * bias (OC) or NULL, out and dy (N, OC, OH, OW); every tensor contiguous and of one float
     * dtype, shapes already checked by the front end. stride, padding and dilation are (h, w).
     * Scratch (column buffers) comes from out's step arena and is rewound before returning. */
    ddn_status (*conv2d)(ddn_tensor *out, const ddn_tensor *x, const ddn_tensor *w,
                         const ddn_tensor *bias, const int stride[2], const int padding[2],
                         const int dilation[2], int groups);
    /* dx (N, C, H, W) += the input gradient of conv2d from dy and w. */
    ddn_status (*conv2d_backward_data_acc)(ddn_tensor *dx, const ddn_tensor *dy,
                                           const ddn_tensor *w, const int stride[2],
                                           const int padding[2], const int dilation[2],
                                           int groups);
    /* dw (w's shape) += the weight gradient from dy and x; dbias (OC) += dy summed over N, OH,
     * OW. Either may be NULL; w only gives the kernel's shape. */
    ddn_status (*conv2d_backward_filter_acc)(ddn_tensor *dw, ddn_tensor *dbias,
                                             const ddn_tensor *dy, const ddn_tensor *x,
                                             const ddn_tensor *w, const int stride[2],
                                             const int padding[2], const int dilation[2],
                                             int groups);

    /* ---- normalisation, pooling, dropout (core/cpu/norm_pool.c) ---- */

    /* ---- optimizer updates (core/cpu/optim_kernels.c) ---- */
} ddn_kernels;

typedef struct ddn_backend {
    const char *name;
    ddn_device device;
    /* Device memory. alloc returns NULL on failure (the caller sets the error). */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    ddn_status (*copy_h2d)(void *dst, const void *src, size_t bytes);
    ddn_status (*copy_d2h)(void *dst, const void *src, size_t bytes);
    ddn_status (*sync)(void);
    const ddn_kernels *k;
} ddn_backend;

/* The backend of a device, or NULL when this build or machine has none. */
const ddn_backend *ddn_backend_get(ddn_device device);
extern const ddn_backend ddn_cpu_backend;

#endif
