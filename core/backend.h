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

#include "ied_power.h"
#include "ied_solver.h"
#include "nn.h"
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

struct ddn_less_opts; /* declarative/less_solver.h */
struct ddn_less_item; /* declarative/less_kern.h */
/* One item's outcome of the ied_vjp_e kernel (below). */
typedef struct ddn_ied_vjp_item {
    int code;       /* declarative/ied_backward_blk.h's DDN_IEDB_*: LU, NEUMANN (solved),
                     * SINGULAR, AY_ZERO, NONFINITE_A, NONFINITE_V (failed) */
    int64_t sweeps; /* fixed-point sweeps run (IFT) */
    double rcond;   /* the LU's reciprocal 1-norm condition estimate, 0 when not factorised */
} ddn_ied_vjp_item;

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
    /* x, y, dx, dy are contiguous (N, C, H, W) of one float dtype; per-channel vectors (C) share
     * it and may be strided; weight / bias NULL mean 1 / 0 (no affine). */
    /* Batch-norm training forward over (N, H, W) per channel: y = (x - mean) invstd w + b with
     * the batch mean and biased variance (accumulated in double), invstd = 1 / sqrt(var + eps);
     * save_mean and save_invstd (C) receive them. running_mean and running_var (C, both or
     * neither NULL) are updated in place: r = (1 - momentum) r + momentum s, the variance
     * unbiased (n / (n - 1), n = N H W >= 2), as PyTorch and cuDNN. */
    ddn_status (*batch_norm_train)(ddn_tensor *y, ddn_tensor *save_mean, ddn_tensor *save_invstd,
                                   ddn_tensor *running_mean, ddn_tensor *running_var,
                                   const ddn_tensor *x, const ddn_tensor *weight,
                                   const ddn_tensor *bias, double momentum, double eps);
    /* Evaluation forward: y = (x - mean) / sqrt(var + eps) w + b with the given statistics. */
    ddn_status (*batch_norm_eval)(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                  const ddn_tensor *bias, const ddn_tensor *mean,
                                  const ddn_tensor *var, double eps);
    /* dx, dweight, dbias (each may be NULL) += the gradients of y = (x - mean) invstd w + b.
     * training: mean and invstd are x's batch statistics, differentiated through (the fused
     * formula); otherwise they are constants (evaluation with running statistics). */
    ddn_status (*batch_norm_backward_acc)(ddn_tensor *dx, ddn_tensor *dweight, ddn_tensor *dbias,
                                          const ddn_tensor *x, const ddn_tensor *dy,
                                          const ddn_tensor *weight, const ddn_tensor *mean,
                                          const ddn_tensor *invstd, bool training);
    /* Pooling over each (n, c) plane; x, y, dx, dy contiguous (N, C, H, W) / (N, C, OH, OW) and
     * p's stride already resolved (>= 1). y's shape gives the output size; every window overlaps
     * the input (front ends apply PyTorch's ceil_mode rule). */
    /* y = window maximum, padding counting as -inf and NaN winning (as PyTorch); idx (int64, y's
     * shape, may be NULL) gets the flat index h * W + w of the first maximum in its plane. */
    ddn_status (*max_pool2d)(ddn_tensor *y, ddn_tensor *idx, const ddn_tensor *x,
                             const ddn_pool2d_params *p);
    /* dx[n, c, idx] += dy: the gradient goes to the saved argmax. */
    ddn_status (*max_pool2d_backward_acc)(ddn_tensor *dx, const ddn_tensor *dy,
                                          const ddn_tensor *idx);
    /* y = window sum / divisor: with count_include_pad the window clipped to the padded input,
     * else the number of input elements in it (PyTorch's avg_pool2d). */
    ddn_status (*avg_pool2d)(ddn_tensor *y, const ddn_tensor *x, const ddn_pool2d_params *p);
    ddn_status (*avg_pool2d_backward_acc)(ddn_tensor *dx, const ddn_tensor *dy,
                                          const ddn_pool2d_params *p);
    /* Adaptive bins: output row i averages input rows floor(i H / OH) .. ceil((i + 1) H / OH) - 1,
     * columns alike (bins may overlap when OH does not divide H). */
    ddn_status (*adaptive_avg_pool2d)(ddn_tensor *y, const ddn_tensor *x);
    ddn_status (*adaptive_avg_pool2d_backward_acc)(ddn_tensor *dx, const ddn_tensor *dy);
    /* Inverted-dropout mask (float, contiguous): 0 with probability p, else 1 / (1 - p). Element i
     * depends only on (seed, i) (a counter-based hash), never on the thread split. */
    ddn_status (*dropout_mask)(ddn_tensor *mask, double p, uint64_t seed);

    /* ---- optimizer updates (core/cpu/optim_kernels.c) ---- */
    /* Fused in-place updates, computed in p's dtype with torch.optim's operation order. p, g
     * and every state tensor are contiguous, of one shape and float dtype. */
    /* torch.optim.SGD (_single_tensor_sgd): d = g + wd p; buf = first ? d : momentum buf +
     * (1 - dampening) d; d = nesterov ? d + momentum buf : buf; p -= lr d. buf is NULL when
     * momentum is 0. */
    ddn_status (*sgd_update)(ddn_tensor *p, ddn_tensor *buf, const ddn_tensor *g, double lr,
                             double momentum, double dampening, double weight_decay,
                             bool nesterov, bool first);
    /* torch.optim.Adam (decoupled false: g += wd p) or AdamW (true: p *= 1 - lr wd); m, v the
     * moments, vmax the running max of v (amsgrad) or NULL; step >= 1 is this update's count
     * for the bias corrections. */
    ddn_status (*adam_update)(ddn_tensor *p, ddn_tensor *m, ddn_tensor *v, ddn_tensor *vmax,
                              const ddn_tensor *g, double lr, double beta1, double beta2,
                              double eps, double weight_decay, bool decoupled, int64_t step);
    /* *out = sum of x^2, accumulated in double in an order that depends only on numel(x). */
    ddn_status (*sum_squares)(const ddn_tensor *x, double *out);

    /* ---- dense linear algebra (core/cpu/linalg.c; CUDA: cuSOLVER, cuda/cuda_solver.c) ---- */
    /* Every operand contiguous and of one float dtype, batch dims B.. equal; inputs are not
     * modified (x may be b, q may be a). Checks: core/linalg_check.c, shared by the backends. */
    /* x = A^-1 b per item: a (B.., n, n) general (LU with partial pivoting) or, for
     * cholesky_solve, symmetric positive definite (its lower triangle is read); b, x (B.., n, k).
     * A singular (not positive definite) item fails with DDN_ERR_SINGULAR naming the item. */
    ddn_status (*lu_solve)(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);
    ddn_status (*cholesky_solve)(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);
    /* Symmetric eigendecomposition: a (B.., n, n) (lower triangle read); w (B.., n) the
     * eigenvalues ascending; v (B.., n, n) the unit eigenvectors as columns, or NULL. Each
     * eigenvector's sign is the library's (compare |v| or projectors across backends). */
    ddn_status (*eigh)(ddn_tensor *w, ddn_tensor *v, const ddn_tensor *a);
    /* Thin QR (Householder): a (B.., m, k), m >= k; q (B.., m, k) with orthonormal columns
     * spanning a's (column signs are the library's). */
    ddn_status (*qr)(ddn_tensor *q, const ddn_tensor *a);

    /* ---- declarative solvers (block code, declarative/blk.h: an item per CUDA block) ---- */
    /* IED's power iteration (declarative/ied_power.h): a (B, m, m), y (B, m), rnd (B, m) the
     * items' seeded N(0,1) vectors, ref (m) or NULL, gstart (m) the gap check's start, all
     * contiguous of one float dtype on the device; info and err: host arrays of B entries. An
     * item's failure is reported in err, not as the status (the caller words it). */
    ddn_status (*ied_power)(ddn_tensor *y, const ddn_tensor *a, const ddn_tensor *rnd,
                            const ddn_tensor *ref, const ddn_tensor *gstart,
                            const ddn_ied_power_params *p, ddn_ied_info *info,
                            ddn_ied_power_err *err);
    /* ---- LESS per item (declarative/less_blk.c; CUDA: cuda/less.cu) ---- */
    /* Block code (declarative/blk.h): one CUDA block, or one CPU thread, per item. Every tensor is
     * contiguous, of A's float dtype unless said otherwise; checks: ddn_less_check_iterate /
     * _vjp_e (less_blk.c), shared by the backends. item (B) is host memory and receives each
     * item's outcome (less_kern.h); a failed item is not an error of the call: the caller (less.c)
     * reports it with the host path's message. */
    /* The iterative LESS methods of o (validated; not EXACT) from y (B, n) (in: the unit start,
     * out: the last iterate), A (B, m, n), b (B, m), uc (B, n) = pinv(A) b: iterations,
     * converged, and fpd / objective / nu of the returned y accumulated in float64. */
    ddn_status (*less_iterate)(ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                               const ddn_tensor *uc, const struct ddn_less_opts *o,
                               struct ddn_less_item *item);
    /* LESS backward E (PMAF-MATH §1): dA (B, m, n) and db (B, m), either NULL, are overwritten
     * with the gradient for v = dL/dy (B, n) at the solution y (B, n), nu (B, float64) the
     * multipliers; computed in float64 (H = A^T A - 2 nu I factorised per item), rounded once. */
    ddn_status (*less_vjp_e)(ddn_tensor *dA, ddn_tensor *db, const ddn_tensor *A,
                             const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                             const ddn_tensor *nu, struct ddn_less_item *item);
    /* ---- IED implicit backward, E modes (declarative/ied_backward_blk.h: CPU instance
     * declarative/ied_backward_blk.c, CUDA instance cuda/ied_backward.cu) ---- */
    /* Per item b, float64 inside, y_b renormalised (PMAF-MATH §2): ift: lambda = sign(y^T A y)
     * ||A y||, H^T k = v (H = I - P A / lambda) by the fixed-point iteration with the probe z
     * (host, m doubles: ied_backward.c's) or else LU with the condition check, u = P k / lambda,
     * dA += u y^T; !ift (DDN): the bordered system [H 2y; 2y^T 0] [w; mu] = [v; 0] by LU with the
     * condition check, dA += w y^T + y w^T. A (B, m, m), y and v (B, m): contiguous, of one float
     * dtype; dA: NULL (solve only) or contiguous (B, m, m) of a float dtype, added in its dtype.
     * items (host, B) receives every item's outcome. A failed item is not a kernel failure: dA is
     * then left untouched and the kernel returns DDN_OK; the caller words the message
     * (ied_backward.c). Non-OK only for bad arguments or a backend error, with the message set. */
    ddn_status (*ied_vjp_e)(ddn_tensor *dA, const ddn_tensor *A, const ddn_tensor *y,
                            const ddn_tensor *v, bool ift, const double *z,
                            ddn_ied_vjp_item *items);
} ddn_kernels;

typedef struct ddn_backend {
    const char *name;
    ddn_device device;
    /* Per-context state (CUDA: device, stream, library handles, workspace), kept in
     * ctx->backend_state. init runs in ddn_ctx_new before anything is allocated; on failure it
     * returns non-OK and sets *why to a static message (the context is then not created). destroy
     * runs last in ddn_ctx_free. Either may be NULL (the CPU needs no state). */
    ddn_status (*init)(ddn_ctx *ctx, const char **why);
    void (*destroy)(ddn_ctx *ctx);
    /* Device memory. alloc returns NULL on failure (the caller sets the error). Copies are
     * complete when they return (d2h waits for the context's queued kernels first). */
    void *(*alloc)(ddn_ctx *ctx, size_t bytes);
    void (*free)(ddn_ctx *ctx, void *p);
    ddn_status (*copy_h2d)(ddn_ctx *ctx, void *dst, const void *src, size_t bytes);
    ddn_status (*copy_d2h)(ddn_ctx *ctx, void *dst, const void *src, size_t bytes);
    ddn_status (*sync)(ddn_ctx *ctx);
    /* Events for timing queued work (core/event.h). create returns a handle, or NULL with the
     * error set; record marks the current end of the context's queue; elapsed_ms waits for end
     * and gives the milliseconds between the two marks. All four NULL (the CPU): core/event.c
     * synchronises and reads the host clock instead. */
    void *(*event_create)(ddn_ctx *ctx);
    void (*event_destroy)(ddn_ctx *ctx, void *ev);
    ddn_status (*event_record)(ddn_ctx *ctx, void *ev);
    ddn_status (*event_elapsed_ms)(ddn_ctx *ctx, void *start, void *end, double *ms);
    /* The backend's kernels. An entry may be NULL: ddn_ctx_new copies the table into the context
     * with every NULL replaced by a stub that fails with DDN_ERR_UNSUPPORTED ("conv2d is not
     * implemented on cuda yet"), so ops never test for NULL themselves (core/backend.c). */
    const ddn_kernels *k;
} ddn_backend;

/* The backend of a device, or NULL when this build has none. Whether a device is present is
 * decided by the backend's init when a context is created. */
const ddn_backend *ddn_backend_get(ddn_device device);
extern const ddn_backend ddn_cpu_backend;

/* out = k with every NULL entry replaced by the "not implemented on <backend> yet" stub. */
void ddn_kernels_complete(ddn_kernels *out, const ddn_kernels *k);

#endif
