/* ddn — the per-element arithmetic of the fused optimizer updates, shared by the CPU kernels
 * (core/cpu/optim_kernels.c) and the CUDA kernels (cuda/reduce.cu): plain C, static inline,
 * compiled for host and device (DDN_HD), so the CPU tests exercise the exact arithmetic the GPU
 * runs. Each function updates element i in place, in T with torch.optim's operation order; the
 * scalars are precomputed once per update by the caller (ddn_sgd_consts / ddn_adam_consts).
 */
#ifndef DDN_OPTIM_MATH_H
#define DDN_OPTIM_MATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "elementwise_math.h" /* DDN_HD */

#define DDN_OPTIM_DEFINE(T, S)                                                                 \
    typedef struct ddn_sgd_consts_##S {                                                        \
        T wd, mom, damp1, neg_lr;                                                              \
        bool use_wd, use_mom, nesterov, first;                                                 \
    } ddn_sgd_consts_##S;                                                                      \
    static inline ddn_sgd_consts_##S ddn_sgd_consts_##S##_make(                                \
        double lr, double momentum, double dampening, double weight_decay, bool nesterov,      \
        bool first)                                                                            \
    {                                                                                          \
        ddn_sgd_consts_##S c = {(T)weight_decay, (T)momentum, (T)(1 - dampening), (T)(-lr),    \
                                weight_decay != 0, momentum != 0, nesterov, first};            \
        return c;                                                                              \
    }                                                                                          \
    /* torch.optim.SGD's _single_tensor_sgd; buf is unused (may be NULL) without momentum */   \
    DDN_HD static inline void ddn_sgd_elem_##S(T *p, T *buf, const T *g, int64_t i,            \
                                               ddn_sgd_consts_##S c)                           \
    {                                                                                          \
        T d = g[i];                                                                            \
        if (c.use_wd) d = d + c.wd * p[i];        /* d_p.add(param, alpha=wd) */               \
        if (c.use_mom) {                                                                       \
            T b;                                                                               \
            if (c.first) b = d;                   /* buf = clone(d_p) */                       \
            else {                                                                             \
                b = buf[i] * c.mom;               /* buf.mul_(momentum) */                     \
                b = b + c.damp1 * d;              /* .add_(d_p, alpha=1-dampening) */          \
            }                                                                                  \
            buf[i] = b;                                                                        \
            d = c.nesterov ? d + c.mom * b : b;                                                \
        }                                                                                      \
        p[i] = p[i] + c.neg_lr * d;               /* param.add_(d_p, alpha=-lr) */             \
    }                                                                                          \
    typedef struct ddn_adam_consts_##S {                                                       \
        T neg_step, bc2_sqrt, eps, b1, b2, omb1, omb2, wd, decay;                              \
        bool decoupled, coupled_wd;                                                            \
    } ddn_adam_consts_##S;                                                                     \
    static inline ddn_adam_consts_##S ddn_adam_consts_##S##_make(                              \
        double lr, double beta1, double beta2, double eps, double weight_decay,                \
        bool decoupled, int64_t step)                                                          \
    {                                                                                          \
        const double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);  \
        ddn_adam_consts_##S c = {(T)(-(lr / bc1)), (T)sqrt(bc2), (T)eps, (T)beta1, (T)beta2,   \
                                 (T)(1 - beta1), (T)(1 - beta2), (T)weight_decay,              \
                                 (T)(1 - lr * weight_decay), decoupled,                        \
                                 !decoupled && weight_decay != 0};                             \
        return c;                                                                              \
    }                                                                                          \
    /* torch.optim.Adam / AdamW (_single_tensor_adam(w), PyTorch 1.13); vmax NULL: no amsgrad */ \
    DDN_HD static inline void ddn_adam_elem_##S(T *p, T *m, T *v, T *vmax, const T *g,         \
                                                int64_t i, ddn_adam_consts_##S c)              \
    {                                                                                          \
        T pi = p[i], gi = g[i];                                                                \
        if (c.decoupled) pi = pi * c.decay;       /* param.mul_(1 - lr * wd) */                \
        else if (c.coupled_wd) gi = gi + c.wd * pi; /* grad.add(param, alpha=wd) */           \
        T mi = m[i] * c.b1;                       /* exp_avg.mul_(beta1) */                    \
        mi = mi + c.omb1 * gi;                    /* .add_(grad, alpha=1-beta1) */             \
        T vi = v[i] * c.b2;                       /* exp_avg_sq.mul_(beta2) */                 \
        vi = vi + c.omb2 * gi * gi;               /* .addcmul_(grad, grad, 1-beta2) */         \
        m[i] = mi;                                                                             \
        v[i] = vi;                                                                             \
        T s = vi;                                                                              \
        if (vmax) {                               /* torch.maximum(max, v, out=max) */         \
            T mx = vmax[i];                                                                    \
            s = (mx > vi || mx != mx) ? mx : vi;                                               \
            vmax[i] = s;                                                                       \
        }                                                                                      \
        T denom = DDN_EW_M_##S(sqrt)(s) / c.bc2_sqrt + c.eps; /* (sqrt / bc2_sqrt).add_(eps) */ \
        p[i] = pi + c.neg_step * mi / denom;      /* addcdiv_(m, denom, -step_size) */         \
    }

DDN_OPTIM_DEFINE(float, f32)
DDN_OPTIM_DEFINE(double, f64)

#endif
