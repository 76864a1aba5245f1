/* ddn — the C launchers of the CUDA backend's custom kernels (internal).
 *
 * The kernels live in .cu files (elementwise.cu, reduce.cu, pool.cu, norm.cu, ied_power.cu,
 * ied_backward.cu, less.cu), compiled by nvcc; everything else of the backend is C (cuda_*.c).
 * This header is the whole interface between the two, so it uses only C types: operands are raw
 * device pointers to element 0 (offset applied) plus a layout of shape and per-operand strides in
 * elements. dtype codes are ddn_dtype's (0 float32, 1 float64, 2 int64). Every launcher enqueues
 * on the given stream and returns cudaGetLastError() (an int, cudaError_t), which the C side
 * checks and turns into a ddn status.
 */
#ifndef DDN_CUDA_LAUNCH_H
#define DDN_CUDA_LAUNCH_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "ied_power.h"
#include "less_kern.h" /* ddn_less_item, ddn_less_iter_params: plain C structs */

#ifdef __cplusplus
extern "C" {
#endif

#define DDN_CUDA_MAX_DIMS 6 /* DDN_MAX_DIMS */
#define DDN_CUDA_MAX_OPERANDS 5

/* Operands of one shape walked together; stride 0 is a broadcast dim. When `contiguous` is set
 * every operand is row-major contiguous and element i sits at offset i (the fast path). */
typedef struct ddn_cuda_layout {
    int ndim, n_ops, contiguous;
    int64_t numel;
    int64_t shape[DDN_CUDA_MAX_DIMS];
    int64_t stride[DDN_CUDA_MAX_OPERANDS][DDN_CUDA_MAX_DIMS];
} ddn_cuda_layout;

/* ---- elementwise.cu ---- */
/* out[i] = (out dtype) x[i]; any dtypes. */
int ddn_cuda_launch_copy(cudaStream_t s, const ddn_cuda_layout *l, int out_dt, void *out,
                         int x_dt, const void *x);
int ddn_cuda_launch_fill(cudaStream_t s, const ddn_cuda_layout *l, int dt, void *out,
                         double value);
/* out[i] += alpha x[i]; float dtypes. */
int ddn_cuda_launch_axpy(cudaStream_t s, const ddn_cuda_layout *l, int dt, void *out,
                         const void *x, double alpha);
/* *flag (device int) is set to 1 when any x[i] is NaN or Inf; the caller zeroes it first. */
int ddn_cuda_launch_nonfinite(cudaStream_t s, const ddn_cuda_layout *l, int dt, const void *x,
                              int *flag);
/* op is a ddn_unary_op / ddn_binary_op; the per-element math is core/cpu/elementwise_math.h. */
int ddn_cuda_launch_unary(cudaStream_t s, const ddn_cuda_layout *l, int dt, int op, void *out,
                          const void *x, double p0, double p1);
/* dx += dy f'(x) (operands dx, x, y, dy). */
int ddn_cuda_launch_unary_backward_acc(cudaStream_t s, const ddn_cuda_layout *l, int dt, int op,
                                       void *dx, const void *x, const void *y, const void *dy,
                                       double p0, double p1);
int ddn_cuda_launch_binary(cudaStream_t s, const ddn_cuda_layout *l, int dt, int op, void *out,
                           const void *a, const void *b);
/* out = dy d(a op b)/d(a) (which 0) or /d(b) (which 1) (operands out, a, b, y, dy). */
int ddn_cuda_launch_binary_backward(cudaStream_t s, const ddn_cuda_layout *l, int dt, int op,
                                    int which, void *out, const void *a, const void *b,
                                    const void *y, const void *dy);

/* ---- reduce.cu ---- */
/* Reduction plan: one output per combination of the kept dims (k_*), each reducing over the
 * reduced dims (r_*). Kept strides per operand: 0 x, 1 out (or y, the max), 2 dy, 3 dx; reduced
 * strides: 0 x, 1 dx. Size-1 dims are left out. */
typedef struct ddn_cuda_reduce_plan {
    int nk, nr;
    int64_t outer, inner; /* number of outputs; elements reduced per output */
    int64_t k_shape[DDN_CUDA_MAX_DIMS], k_stride[4][DDN_CUDA_MAX_DIMS];
    int64_t r_shape[DDN_CUDA_MAX_DIMS], r_stride[2][DDN_CUDA_MAX_DIMS];
} ddn_cuda_reduce_plan;
/* op 0 sum (accumulated in double), 1 max (NaN wins). One block per output. */
int ddn_cuda_launch_reduce(cudaStream_t s, const ddn_cuda_reduce_plan *p, int dt, int op,
                           void *out, const void *x);
/* dx += dy / t at the t entries of each block equal to its maximum y; a NaN maximum (t = 0) adds
 * NaN to the whole block, as torch's 0/0. */
int ddn_cuda_launch_max_backward_acc(cudaStream_t s, const ddn_cuda_reduce_plan *p, int dt,
                                     void *dx, const void *x, const void *y, const void *dy);
/* out (int64) = index of the first maximum along a dim of n elements with stride st; the plan
 * gives the kept dims (strides 0 x, 1 out; nr = 0). NaN wins, as in PyTorch. */
int ddn_cuda_launch_argmax(cudaStream_t s, const ddn_cuda_reduce_plan *p, int dt, int64_t *out,
                           const void *x, int64_t n, int64_t st);
/* Softmax over contiguous x viewed as (outer, n, inner), along n. */
int ddn_cuda_launch_softmax(cudaStream_t s, int dt, void *out, const void *x, int64_t outer,
                            int64_t n, int64_t inner, int log);
int ddn_cuda_launch_softmax_backward_acc(cudaStream_t s, int dt, void *dx, const void *y,
                                         const void *dy, int64_t outer, int64_t n, int64_t inner,
                                         int log);
/* NLL in one block: *bad (device) receives the smallest item index whose label is outside
 * [0, C), or -1; only when it is -1 is out (0-dim) = scale * sum_i -logp[i, label_i] written
 * (nll) or dlogp[i, label_i] += -scale dy added (nll_backward_acc). */
int ddn_cuda_launch_nll(cudaStream_t s, int dt, void *out, const void *logp, int64_t rs,
                        int64_t cs, const int64_t *labels, int64_t ls, int64_t N, int64_t C,
                        double scale, long long *bad);
int ddn_cuda_launch_nll_backward_acc(cudaStream_t s, int dt, void *dlogp, int64_t rs, int64_t cs,
                                     const int64_t *labels, int64_t ls, int64_t N, int64_t C,
                                     const void *dy, double scale, long long *bad);
/* Fused optimizer updates over n contiguous elements (see ddn_kernels.sgd_update/adam_update). */
int ddn_cuda_launch_sgd(cudaStream_t s, int dt, void *p, void *buf, const void *g, int64_t n,
                        double lr, double momentum, double dampening, double weight_decay,
                        int nesterov, int first);
int ddn_cuda_launch_adam(cudaStream_t s, int dt, void *p, void *m, void *v, void *vmax,
                         const void *g, int64_t n, double lr, double beta1, double beta2,
                         double eps, double weight_decay, int decoupled, int64_t step);
/* *out (device double) = sum of x^2 over n contiguous elements, in DDN_CUDA_SUMSQ_BLOCKS fixed
 * chunks added in a fixed order (deterministic); partial is device scratch of that many doubles. */
#define DDN_CUDA_SUMSQ_BLOCKS 256
int ddn_cuda_launch_sum_squares(cudaStream_t s, int dt, const void *x, int64_t n, double *partial,
                                double *out);

/* ---- pool.cu ---- */
/* Pooling over planes (N C of them) of contiguous NCHW tensors; kernel/stride/padding as resolved
 * by the front end (the max-pool backward uses only planes, H, W, OH, OW). */
typedef struct ddn_cuda_pool_geom {
    int64_t planes, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw;
    int count_include_pad;
} ddn_cuda_pool_geom;
int ddn_cuda_launch_max_pool(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt, void *y,
                             int64_t *idx, const void *x);
int ddn_cuda_launch_max_pool_backward_acc(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt,
                                          void *dx, const void *dy, const int64_t *idx);
int ddn_cuda_launch_avg_pool(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt, void *y,
                             const void *x);
int ddn_cuda_launch_avg_pool_backward_acc(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt,
                                          void *dx, const void *dy);
int ddn_cuda_launch_adaptive_avg_pool(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt,
                                      void *y, const void *x);
int ddn_cuda_launch_adaptive_avg_pool_backward_acc(cudaStream_t s, const ddn_cuda_pool_geom *g,
                                                   int dt, void *dx, const void *dy);
/* mask[i] = u(seed, i) >= p ? 1 / (1 - p) : 0 over n contiguous elements (pool_math.h's hash). */
int ddn_cuda_launch_dropout_mask(cudaStream_t s, int dt, void *mask, int64_t n, double p,
                                 uint64_t seed);

/* ---- ied_power.cu ---- */
/* IED's power iteration (declarative/ied_power.h), one block per item: A (B, m, m), rnd (B, m),
 * ref (m) or NULL, gstart (m), y (B, m) of dtype dt; info (B ddn_ied_info) and err (B
 * ddn_ied_power_err) device arrays; scratch: B * p->scratch bytes, each slice 256-aligned. */
int ddn_cuda_launch_ied_power(cudaStream_t s, const ddn_ied_power_params *p, int dt,
                              const void *A, const void *rnd, const void *ref,
                              const void *gstart, void *y, void *info, void *err, void *scratch);
/* ---- less.cu ---- */
/* The LESS block algorithms, one block of DDN_BLK_THREADS threads per item (B blocks). Every
 * array is contiguous device memory of dtype dt (0 float32, 1 float64) unless typed; item (B,
 * device, zeroed by the caller) receives each item's outcome. work: B * DDN_LESS_ITER_WORK(m, n)
 * elements of dt. */
int ddn_cuda_launch_less_iterate(cudaStream_t s, int dt, int64_t B, int64_t m, int64_t n,
                                 void *y, const void *A, const void *b, const void *uc,
                                 const ddn_less_iter_params *p, void *work, ddn_less_item *item);
/* dA (B, m, n), db (B, m) may be NULL. work: B * DDN_LESS_VJP_WORK(m, n) doubles, iwork:
 * B * DDN_LESS_VJP_IWORK(n) ints; nu (B) doubles. */
int ddn_cuda_launch_less_vjp_e(cudaStream_t s, int dt, int64_t B, int64_t m, int64_t n, void *dA,
                               void *db, const void *A, const void *b, const void *y,
                               const void *v, const double *nu, double *work, int *iwork,
                               ddn_less_item *item);
/* ---- ied_backward.cu ---- */
/* The IED E-mode backward (declarative/ied_backward_blk.h; ift 1: IFT_E, 0: DDN_E), one block of
 * DDN_BLK_THREADS per item, `blocks` blocks walking the B items. A (B, m, m), y and v (B, m)
 * contiguous of float dtype dt; z (m) the probe (IFT); ws: blocks * ddn_iedb_ws_doubles(m)
 * doubles and piv: blocks * ddn_iedb_ws_ints(m) ints of scratch; yd, u (B, m) and out (B
 * ddn_iedb_out records) receive each item's renormalised y, its u and its outcome. */
int ddn_cuda_launch_ied_vjp_e(cudaStream_t s, int dt, int ift, int64_t B, int64_t m,
                              const void *A, const void *y, const void *v, const double *z,
                              int blocks, double *ws, int *piv, double *yd, double *u, void *out);
/* dA (B, m, m) contiguous of float dtype dt += u y^T, + y u^T when sym2; u, y (B, m) float64. */
int ddn_cuda_launch_ied_grad_acc(cudaStream_t s, int dt, int sym2, int64_t B, int64_t m, void *dA,
                                 const double *u, const double *y);
/* ---- norm.cu: batch normalisation where cuDNN cannot (cuda_norm.c) ---- */
/* Element c of a per-channel vector is ((T *)p)[c * s]; p NULL means absent (the default). */
typedef struct ddn_cuda_vec {
    void *p;
    int64_t s;
} ddn_cuda_vec;
/* x, y, dx, dy contiguous (N, C, H W) of one float dtype; the vectors share it. One block per
 * channel folds its N H W values in double in a fixed tree (deterministic); the arithmetic is
 * core/cpu/norm_math.h's, as on the CPU. */
typedef struct ddn_cuda_bn_args {
    int64_t N, C, HW;
    ddn_cuda_vec w, b;         /* weight (default 1) and bias (default 0) */
    ddn_cuda_vec mean, invstd; /* train: written (save_*); backward: read */
    ddn_cuda_vec rmean, rvar;  /* train: updated when present; eval: the statistics */
    ddn_cuda_vec dw, db;       /* backward: accumulated when present */
} ddn_cuda_bn_args;
/* Training forward: batch mean and biased variance (two passes), y = x scale + shift, the running
 * statistics updated with the unbiased variance. N H W >= 2 (the caller checks). */
int ddn_cuda_launch_bn_train(cudaStream_t s, int dt, const ddn_cuda_bn_args *a, void *y,
                             const void *x, double momentum, double eps);
/* Evaluation forward with the running statistics (rmean, rvar). */
int ddn_cuda_launch_bn_eval(cudaStream_t s, int dt, const ddn_cuda_bn_args *a, void *y,
                            const void *x, double eps);
/* dx (may be NULL), dw, db += the gradients (training: through the batch statistics). */
int ddn_cuda_launch_bn_backward_acc(cudaStream_t s, int dt, const ddn_cuda_bn_args *a, void *dx,
                                    const void *x, const void *dy, int training);

#ifdef __cplusplus
}
#endif
#endif
