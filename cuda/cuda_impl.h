/* ddn — the CUDA backend's per-context state and error checking (internal, C only).
 *
 * Everything the backend keeps lives in one ddn_cuda_state per context (ctx->backend_state),
 * created by the backend's init in ddn_ctx_new and destroyed in ddn_ctx_free; there are no
 * globals. Library handles and the workspace are created on first use, so a context that only
 * runs elementwise kernels never loads cuDNN. Every CUDA runtime, cuBLAS, cuDNN and cuSOLVER
 * status goes through one of the DDN_CU*_CHECK macros, which record "<call> at <file>:<line>:
 * <library message>" on the context as DDN_ERR_BACKEND (DDN_ERR_OOM for allocation failures).
 */
#ifndef DDN_CUDA_IMPL_H
#define DDN_CUDA_IMPL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <cusolverDn.h>

#include "cuda_launch.h"
#include "ddn_impl.h"

/* One cached convolution configuration: its cuDNN descriptors and, once chosen, the algorithm
 * and workspace size of each direction (cuda_dnn.c). */
typedef struct ddn_cuda_conv_key {
    int64_t n, c, h, w, oc, kh, kw, oh, ow;
    int stride[2], padding[2], dilation[2], groups, dtype;
} ddn_cuda_conv_key;

typedef struct ddn_cuda_conv_entry {
    bool used;
    ddn_cuda_conv_key key;
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    bool have_fwd, have_bwd_data, have_bwd_filter;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws;
} ddn_cuda_conv_entry;

#define DDN_CUDA_CONV_CACHE 32 /* a ResNet-50 has about 20 distinct convolution shapes */

typedef struct ddn_cuda_state {
    int device;
    cudaStream_t stream;    /* every kernel and copy of the context is ordered on it */
    cublasHandle_t cublas;  /* lazily created; NULL until first use */
    cudnnHandle_t cudnn;
    cusolverDnHandle_t cusolver;
    void *workspace;        /* library workspace, grown on demand, never shrunk */
    size_t workspace_bytes;
    ddn_cuda_conv_entry conv_cache[DDN_CUDA_CONV_CACHE]; /* replaced round-robin when full */
    int conv_next;
} ddn_cuda_state;

/* Destroys the cached cuDNN descriptors (cuda_dnn.c); called when the context goes. */
void ddn_cuda_dnn_release(ddn_cuda_state *s);

static inline ddn_cuda_state *ddn_cuda_state_of(ddn_ctx *ctx)
{
    return (ddn_cuda_state *)ctx->backend_state;
}

ddn_status ddn_cuda_check_rt(ddn_ctx *ctx, cudaError_t e, const char *call, const char *file,
                             int line);
ddn_status ddn_cuda_check_cublas(ddn_ctx *ctx, cublasStatus_t e, const char *call,
                                 const char *file, int line);
ddn_status ddn_cuda_check_cudnn(ddn_ctx *ctx, cudnnStatus_t e, const char *call,
                                const char *file, int line);
ddn_status ddn_cuda_check_cusolver(ddn_ctx *ctx, cusolverStatus_t e, const char *call,
                                   const char *file, int line);
#define DDN_CUDA_CHECK(ctx, call) ddn_cuda_check_rt((ctx), (call), #call, __FILE__, __LINE__)
#define DDN_CUBLAS_CHECK(ctx, call) ddn_cuda_check_cublas((ctx), (call), #call, __FILE__, __LINE__)
#define DDN_CUDNN_CHECK(ctx, call) ddn_cuda_check_cudnn((ctx), (call), #call, __FILE__, __LINE__)
#define DDN_CUSOLVER_CHECK(ctx, call)                                                          \
    ddn_cuda_check_cusolver((ctx), (call), #call, __FILE__, __LINE__)
/* A launcher's result (an int holding cudaError_t), named after the kernel. */
#define DDN_CUDA_LAUNCH_CHECK(ctx, kernel, result)                                             \
    ddn_cuda_check_rt((ctx), (cudaError_t)(result), kernel " kernel launch", __FILE__, __LINE__)

/* The library handles, created on first use and bound to the context's stream; NULL with the
 * error recorded when creation fails. cuBLAS runs with CUBLAS_DEFAULT_MATH (no TF32), so results
 * compare strictly with the CPU. */
cublasHandle_t ddn_cuda_cublas(ddn_ctx *ctx);
cudnnHandle_t ddn_cuda_cudnn(ddn_ctx *ctx);
cusolverDnHandle_t ddn_cuda_cusolver(ddn_ctx *ctx);
/* At least bytes of device workspace (valid until the next call); NULL with the error on failure. */
void *ddn_cuda_workspace(ddn_ctx *ctx, size_t bytes);
/* Device scratch from the step arena (rewind with ddn_ctx_rewind); NULL with the error. */
void *ddn_cuda_scratch(ddn_ctx *ctx, size_t bytes);
/* Waits for the context's stream, then copies device -> host. */
ddn_status ddn_cuda_read(ddn_ctx *ctx, void *host, const void *dev, size_t bytes,
                         const char *what);

/* The kernel entries (cuda_kernels.c, cuda_blas.c, ...; ied_vjp_e: cuda_ied_backward.c). */
ddn_status ddn_cuda_copy(ddn_tensor *out, const ddn_tensor *x);
ddn_status ddn_cuda_fill(ddn_tensor *out, double value);
ddn_status ddn_cuda_axpy(ddn_tensor *out, const ddn_tensor *x, double alpha);
bool ddn_cuda_has_nonfinite(const ddn_tensor *x);
ddn_status ddn_cuda_unary(ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0,
                          double p1);
ddn_status ddn_cuda_unary_backward_acc(ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
                                       const ddn_tensor *y, const ddn_tensor *dy, double p0,
                                       double p1);
ddn_status ddn_cuda_binary(ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a,
                           const ddn_tensor *b);
ddn_status ddn_cuda_binary_backward(ddn_binary_op op, int which, ddn_tensor *out,
                                    const ddn_tensor *a, const ddn_tensor *b, const ddn_tensor *y,
                                    const ddn_tensor *dy);
ddn_status ddn_cuda_reduce(ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x,
                           uint32_t dims_mask);
ddn_status ddn_cuda_argmax(ddn_tensor *out, const ddn_tensor *x, int dim);
ddn_status ddn_cuda_max_backward_acc(ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
                                     const ddn_tensor *dy, uint32_t dims_mask);
ddn_status ddn_cuda_softmax(ddn_tensor *out, const ddn_tensor *x, int dim, bool log);
ddn_status ddn_cuda_softmax_backward_acc(ddn_tensor *dx, const ddn_tensor *y,
                                         const ddn_tensor *dy, int dim, bool log);
ddn_status ddn_cuda_nll(ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels,
                        double scale);
ddn_status ddn_cuda_nll_backward_acc(ddn_tensor *dlogp, const ddn_tensor *labels,
                                     const ddn_tensor *dy, double scale);
ddn_status ddn_cuda_sgd_update(ddn_tensor *p, ddn_tensor *buf, const ddn_tensor *g, double lr,
                               double momentum, double dampening, double weight_decay,
                               bool nesterov, bool first);
ddn_status ddn_cuda_adam_update(ddn_tensor *p, ddn_tensor *m, ddn_tensor *v, ddn_tensor *vmax,
                                const ddn_tensor *g, double lr, double beta1, double beta2,
                                double eps, double weight_decay, bool decoupled, int64_t step);
ddn_status ddn_cuda_sum_squares(const ddn_tensor *x, double *out);
ddn_status ddn_cuda_conv2d(ddn_tensor *out, const ddn_tensor *x, const ddn_tensor *w,
                           const ddn_tensor *bias, const int stride[2], const int padding[2],
                           const int dilation[2], int groups);
ddn_status ddn_cuda_conv2d_backward_data_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                             const ddn_tensor *w, const int stride[2],
                                             const int padding[2], const int dilation[2],
                                             int groups);
ddn_status ddn_cuda_conv2d_backward_filter_acc(ddn_tensor *dw, ddn_tensor *dbias,
                                               const ddn_tensor *dy, const ddn_tensor *x,
                                               const ddn_tensor *w, const int stride[2],
                                               const int padding[2], const int dilation[2],
                                               int groups);
ddn_status ddn_cuda_batch_norm_train(ddn_tensor *y, ddn_tensor *save_mean,
                                     ddn_tensor *save_invstd, ddn_tensor *running_mean,
                                     ddn_tensor *running_var, const ddn_tensor *x,
                                     const ddn_tensor *weight, const ddn_tensor *bias,
                                     double momentum, double eps);
ddn_status ddn_cuda_batch_norm_eval(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                    const ddn_tensor *bias, const ddn_tensor *mean,
                                    const ddn_tensor *var, double eps);
ddn_status ddn_cuda_batch_norm_backward_acc(ddn_tensor *dx, ddn_tensor *dweight,
                                            ddn_tensor *dbias, const ddn_tensor *x,
                                            const ddn_tensor *dy, const ddn_tensor *weight,
                                            const ddn_tensor *mean, const ddn_tensor *invstd,
                                            bool training);
/* The same three with our kernels (cuda_norm.c, norm.cu), for eps below CUDNN_BN_MIN_EPSILON and
 * the evaluation-mode backward; the entries above dispatch to them. */
ddn_status ddn_cuda_bn_train_kernels(ddn_tensor *y, ddn_tensor *save_mean,
                                     ddn_tensor *save_invstd, ddn_tensor *running_mean,
                                     ddn_tensor *running_var, const ddn_tensor *x,
                                     const ddn_tensor *weight, const ddn_tensor *bias,
                                     double momentum, double eps);
ddn_status ddn_cuda_bn_eval_kernels(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                    const ddn_tensor *bias, const ddn_tensor *mean,
                                    const ddn_tensor *var, double eps);
ddn_status ddn_cuda_bn_backward_kernels(ddn_tensor *dx, ddn_tensor *dweight, ddn_tensor *dbias,
                                        const ddn_tensor *x, const ddn_tensor *dy,
                                        const ddn_tensor *weight, const ddn_tensor *mean,
                                        const ddn_tensor *invstd, bool training);
ddn_status ddn_cuda_max_pool2d(ddn_tensor *y, ddn_tensor *idx, const ddn_tensor *x,
                               const ddn_pool2d_params *p);
ddn_status ddn_cuda_max_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                            const ddn_tensor *idx);
ddn_status ddn_cuda_avg_pool2d(ddn_tensor *y, const ddn_tensor *x, const ddn_pool2d_params *p);
ddn_status ddn_cuda_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                            const ddn_pool2d_params *p);
ddn_status ddn_cuda_adaptive_avg_pool2d(ddn_tensor *y, const ddn_tensor *x);
ddn_status ddn_cuda_adaptive_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy);
ddn_status ddn_cuda_dropout_mask(ddn_tensor *mask, double p, uint64_t seed);
ddn_status ddn_cuda_lu_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);
ddn_status ddn_cuda_cholesky_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);
ddn_status ddn_cuda_eigh(ddn_tensor *w, ddn_tensor *v, const ddn_tensor *a);
ddn_status ddn_cuda_qr(ddn_tensor *q, const ddn_tensor *a);
/* declarative solvers (cuda_declarative.c) */
ddn_status ddn_cuda_ied_power(ddn_tensor *y, const ddn_tensor *a, const ddn_tensor *rnd,
                              const ddn_tensor *ref, const ddn_tensor *gstart,
                              const ddn_ied_power_params *p, ddn_ied_info *info,
                              ddn_ied_power_err *err);
ddn_status ddn_cuda_ied_vjp_e(ddn_tensor *dA, const ddn_tensor *A, const ddn_tensor *y,
                              const ddn_tensor *v, bool ift, const double *z,
                              ddn_ied_vjp_item *items);
ddn_status ddn_cuda_matmul(ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b,
                           double alpha, double beta);
/* LESS per item (cuda_less.c, kernels in less.cu) */
ddn_status ddn_cuda_less_iterate(ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                                 const ddn_tensor *uc, const struct ddn_less_opts *o,
                                 struct ddn_less_item *item);
ddn_status ddn_cuda_less_vjp_e(ddn_tensor *dA, ddn_tensor *db, const ddn_tensor *A,
                               const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                               const ddn_tensor *nu, struct ddn_less_item *item);

#endif
