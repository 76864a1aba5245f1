/* ddn — the CPU kernel functions behind ddn_cpu_backend (internal). One file per family:
 * copy.c, elementwise.c, reduce.c, reduce_backward.c, blas.c,
 * softmax.c. Signatures are those of ddn_kernels. */
#ifndef DDN_CPU_KERNELS_H
#define DDN_CPU_KERNELS_H

#include "backend.h"

ddn_status ddn_cpu_copy(ddn_tensor *out, const ddn_tensor *x);
ddn_status ddn_cpu_fill(ddn_tensor *out, double value);
ddn_status ddn_cpu_axpy(ddn_tensor *out, const ddn_tensor *x, double alpha);
bool ddn_cpu_has_nonfinite(const ddn_tensor *x);

ddn_status ddn_cpu_unary(ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0,
                         double p1);
ddn_status ddn_cpu_unary_backward_acc(ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
                                      const ddn_tensor *y, const ddn_tensor *dy, double p0,
                                      double p1);
ddn_status ddn_cpu_binary(ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a,
                          const ddn_tensor *b);
ddn_status ddn_cpu_binary_backward(ddn_binary_op op, int which, ddn_tensor *out,
                                   const ddn_tensor *a, const ddn_tensor *b, const ddn_tensor *y,
                                   const ddn_tensor *dy);

ddn_status ddn_cpu_reduce(ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x, uint32_t mask);
ddn_status ddn_cpu_argmax(ddn_tensor *out, const ddn_tensor *x, int dim);

ddn_status ddn_cpu_matmul(ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b, double alpha,
                          double beta);

ddn_status ddn_cpu_softmax(ddn_tensor *out, const ddn_tensor *x, int dim, bool log);
ddn_status ddn_cpu_softmax_backward_acc(ddn_tensor *dx, const ddn_tensor *y, const ddn_tensor *dy,
                                        int dim, bool log);
ddn_status ddn_cpu_nll(ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels,
                       double scale);
ddn_status ddn_cpu_nll_backward_acc(ddn_tensor *dlogp, const ddn_tensor *labels,
                                    const ddn_tensor *dy, double scale);

ddn_status ddn_cpu_max_backward_acc(ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
                                    const ddn_tensor *dy, uint32_t mask);

/* convolution (conv.c) */
ddn_status ddn_cpu_conv2d(ddn_tensor *out, const ddn_tensor *x, const ddn_tensor *w,
                          const ddn_tensor *bias, const int stride[2], const int padding[2],
                          const int dilation[2], int groups);
ddn_status ddn_cpu_conv2d_backward_data_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                            const ddn_tensor *w, const int stride[2],
                                            const int padding[2], const int dilation[2],
                                            int groups);
ddn_status ddn_cpu_conv2d_backward_filter_acc(ddn_tensor *dw, ddn_tensor *dbias,
                                              const ddn_tensor *dy, const ddn_tensor *x,
                                              const ddn_tensor *w, const int stride[2],
                                              const int padding[2], const int dilation[2],
                                              int groups);
/* The column-buffer budget of one conv call in bytes, shared by its threads (default 16 MB);
 * 0 leaves it unchanged. Returns the previous value. Tests lower it to force many blocks. */
size_t ddn_cpu_conv_col_budget(size_t bytes);

/* normalisation, pooling, dropout (norm_pool.c) */
ddn_status ddn_cpu_batch_norm_train(ddn_tensor *y, ddn_tensor *save_mean, ddn_tensor *save_invstd,
                                    ddn_tensor *running_mean, ddn_tensor *running_var,
                                    const ddn_tensor *x, const ddn_tensor *weight,
                                    const ddn_tensor *bias, double momentum, double eps);
ddn_status ddn_cpu_batch_norm_eval(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                   const ddn_tensor *bias, const ddn_tensor *mean,
                                   const ddn_tensor *var, double eps);
ddn_status ddn_cpu_batch_norm_backward_acc(ddn_tensor *dx, ddn_tensor *dweight, ddn_tensor *dbias,
                                           const ddn_tensor *x, const ddn_tensor *dy,
                                           const ddn_tensor *weight, const ddn_tensor *mean,
                                           const ddn_tensor *invstd, bool training);
ddn_status ddn_cpu_max_pool2d(ddn_tensor *y, ddn_tensor *idx, const ddn_tensor *x,
                              const ddn_pool2d_params *p);
ddn_status ddn_cpu_max_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                           const ddn_tensor *idx);
ddn_status ddn_cpu_avg_pool2d(ddn_tensor *y, const ddn_tensor *x, const ddn_pool2d_params *p);
ddn_status ddn_cpu_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                           const ddn_pool2d_params *p);
ddn_status ddn_cpu_adaptive_avg_pool2d(ddn_tensor *y, const ddn_tensor *x);
ddn_status ddn_cpu_adaptive_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy);
ddn_status ddn_cpu_dropout_mask(ddn_tensor *mask, double p, uint64_t seed);

/* optimizer updates (optim_kernels.c) */
ddn_status ddn_cpu_sgd_update(ddn_tensor *p, ddn_tensor *buf, const ddn_tensor *g, double lr,
                              double momentum, double dampening, double weight_decay,
                              bool nesterov, bool first);
ddn_status ddn_cpu_adam_update(ddn_tensor *p, ddn_tensor *m, ddn_tensor *v, ddn_tensor *vmax,
                               const ddn_tensor *g, double lr, double beta1, double beta2,
                               double eps, double weight_decay, bool decoupled, int64_t step);
ddn_status ddn_cpu_sum_squares(const ddn_tensor *x, double *out);


ddn_status ddn_cpu_lu_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);
ddn_status ddn_cpu_cholesky_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);
ddn_status ddn_cpu_eigh(ddn_tensor *w, ddn_tensor *v, const ddn_tensor *a);
ddn_status ddn_cpu_qr(ddn_tensor *q, const ddn_tensor *a);

/* declarative solvers: the block code on one thread (declarative/ied_power.c) */
ddn_status ddn_cpu_ied_power(ddn_tensor *y, const ddn_tensor *a, const ddn_tensor *rnd,
                             const ddn_tensor *ref, const ddn_tensor *gstart,
                             const ddn_ied_power_params *p, ddn_ied_info *info,
                             ddn_ied_power_err *err);
/* LESS per item (declarative/less_blk.c) */
ddn_status ddn_cpu_less_iterate(ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                                const ddn_tensor *uc, const struct ddn_less_opts *o,
                                struct ddn_less_item *item);
ddn_status ddn_cpu_less_vjp_e(ddn_tensor *dA, ddn_tensor *db, const ddn_tensor *A,
                              const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                              const ddn_tensor *nu, struct ddn_less_item *item);
/* The IED E-mode backward's block algorithm on the CPU (declarative/ied_backward_blk.c). */
ddn_status ddn_cpu_ied_vjp_e(ddn_tensor *dA, const ddn_tensor *A, const ddn_tensor *y,
                             const ddn_tensor *v, bool ift, const double *z,
                             ddn_ied_vjp_item *items);

#endif
