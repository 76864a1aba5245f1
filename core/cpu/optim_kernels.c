/* ddn — CPU optimizer kernels: fused SGD and Adam/AdamW updates, and a sum of squares for
 * gradient clipping.
 *
 * One pass over memory per update instead of a chain of axpy calls. Each element is computed in
 * the parameter's own dtype with torch's operation order (scalars cast to the dtype as ATen casts
 * a Python scalar), so float64 agrees with torch.optim to rounding and float32 to a few ulps.
 * The sum of squares adds fixed blocks in a fixed order, so its result depends only on the data,
 * never on the thread count. Operands are contiguous (the front end in layers/optim.c checks).
 * Tests: tests/test_optim.c, tests/test_adam.c (against torch.optim).
 */
#include <math.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"
#include "optim_math.h"

/* The per-element arithmetic is in optim_math.h (shared with CUDA); these loops only split the
 * elements over threads. */
#define DEFINE_SGD(T, SUF)                                                                     \
    static void sgd_##SUF(T *restrict p, T *restrict buf, const T *restrict g, int64_t n,      \
                          double lr, double momentum, double dampening, double weight_decay,   \
                          bool nesterov, bool first)                                           \
    {                                                                                          \
        const ddn_sgd_consts_##SUF c = ddn_sgd_consts_##SUF##_make(lr, momentum, dampening,    \
                                                                   weight_decay, nesterov,     \
                                                                   first);                     \
        DDN_OMP_FOR(n)                                                                         \
        for (int64_t i = 0; i < n; i++) ddn_sgd_elem_##SUF(p, buf, g, i, c);                   \
    }

DEFINE_SGD(float, f32)
DEFINE_SGD(double, f64)

#define DEFINE_ADAM(T, SUF)                                                                    \
    static void adam_##SUF(T *restrict p, T *restrict m, T *restrict v, T *restrict vmax,      \
                           const T *restrict g, int64_t n, double lr, double beta1,            \
                           double beta2, double eps, double weight_decay, bool decoupled,      \
                           int64_t step)                                                       \
    {                                                                                          \
        const ddn_adam_consts_##SUF c = ddn_adam_consts_##SUF##_make(                          \
            lr, beta1, beta2, eps, weight_decay, decoupled, step);                             \
        DDN_OMP_FOR(n)                                                                         \
        for (int64_t i = 0; i < n; i++) ddn_adam_elem_##SUF(p, m, v, vmax, g, i, c);           \
    }

DEFINE_ADAM(float, f32)
DEFINE_ADAM(double, f64)

#define F32(t) ((float *)ddn_tensor_ptr(t))
#define F64(t) ((double *)ddn_tensor_ptr(t))


ddn_status ddn_cpu_sgd_update(ddn_tensor *p, ddn_tensor *buf, const ddn_tensor *g, double lr,
                              double momentum, double dampening, double weight_decay,
                              bool nesterov, bool first)
{
    if (!g || (momentum != 0 && !buf))
        return ddn_ctx_set_error(p->ctx, DDN_ERR_ARG, "sgd_update: %s is NULL",
                                 g ? "the momentum buffer" : "the gradient");
    ddn_status st = ddn_check_optim_operands("sgd_update", p, 2, (const ddn_tensor *[]){buf, g});
    if (st != DDN_OK) return st;
    int64_t n = ddn_tensor_numel(p);
    if (p->dtype == DDN_DTYPE_F32)
        sgd_f32(F32(p), buf ? F32(buf) : NULL, F32(g), n, lr, momentum, dampening, weight_decay,
                nesterov, first);
    else
        sgd_f64(F64(p), buf ? F64(buf) : NULL, F64(g), n, lr, momentum, dampening, weight_decay,
                nesterov, first);
    return DDN_OK;
}

ddn_status ddn_cpu_adam_update(ddn_tensor *p, ddn_tensor *m, ddn_tensor *v, ddn_tensor *vmax,
                               const ddn_tensor *g, double lr, double beta1, double beta2,
                               double eps, double weight_decay, bool decoupled, int64_t step)
{
    if (!m || !v || !g || step < 1)
        return ddn_ctx_set_error(p->ctx, DDN_ERR_ARG, "adam_update: %s",
                                 step < 1 ? "step must be >= 1"
                                          : "a moment or the gradient is NULL");
    ddn_status st = ddn_check_optim_operands("adam_update", p, 4, (const ddn_tensor *[]){m, v, vmax, g});
    if (st != DDN_OK) return st;
    int64_t n = ddn_tensor_numel(p);
    if (p->dtype == DDN_DTYPE_F32)
        adam_f32(F32(p), F32(m), F32(v), vmax ? F32(vmax) : NULL, F32(g), n, lr, beta1, beta2, eps,
               weight_decay, decoupled, step);
    else
        adam_f64(F64(p), F64(m), F64(v), vmax ? F64(vmax) : NULL, F64(g), n, lr, beta1, beta2, eps,
               weight_decay, decoupled, step);
    return DDN_OK;
}

#define SUMSQ_BLOCKS 256

ddn_status ddn_cpu_sum_squares(const ddn_tensor *x, double *out)
{
    if (!ddn_dtype_is_float(x->dtype) || !ddn_tensor_is_contiguous(x))
        return ddn_ctx_set_error(x->ctx, DDN_ERR_ARG, "sum_squares: expected a contiguous float "
                                 "tensor, got %s%s", ddn_dtype_name(x->dtype),
                                 ddn_tensor_is_contiguous(x) ? "" : " (strided)");
    int64_t n = ddn_tensor_numel(x);
    int64_t per = (n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS;
    double part[SUMSQ_BLOCKS] = {0};
    const void *base = ddn_tensor_ptr(x);
    bool f32 = x->dtype == DDN_DTYPE_F32;
    DDN_OMP_FOR(n)
    for (int b = 0; b < SUMSQ_BLOCKS; b++) {
        int64_t lo = b * per, hi = lo + per < n ? lo + per : n;
        double s = 0;
        if (f32)
            for (int64_t i = lo; i < hi; i++) s += (double)((const float *)base)[i] *
                                                   ((const float *)base)[i];
        else
            for (int64_t i = lo; i < hi; i++) s += ((const double *)base)[i] *
                                                   ((const double *)base)[i];
        part[b] = s;
    }
    double s = 0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++) s += part[b];
    *out = s;
    return DDN_OK;
}
