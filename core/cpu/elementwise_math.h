/* ddn — the per-element math of the elementwise ops, shared by the CPU kernels
 * (core/cpu/elementwise.c) and, later, the CUDA kernels: plain C, static inline, math.h only.
 *
 * Each op has its forward and its derivative side by side; derivatives take the upstream gradient
 * dy and return dy * df/dx (unary) or dy * d(a op b)/da, /db (binary). Edge cases follow PyTorch
 * 1.13's autograd formulas exactly (relu'(0) = 0, abs'(0) = 0, clamp' = 1 on the closed interval,
 * sqrt'(0) = inf, pow's exponent gradient 0 where a == 0 and b >= 0). Functions exist for float
 * (suffix _f32, float math: expf, ...) and double (_f64); DDN_EW_DEFINE writes both from one text.
 * Tests: tests/test_elementwise.c, tests/test_elementwise_torch.c.
 */
#ifndef DDN_ELEMENTWISE_MATH_H
#define DDN_ELEMENTWISE_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define DDN_HD __host__ __device__
#else
#define DDN_HD
#endif

/* The ops, as X(ENUM_SUFFIX, name, ...): ENUM_SUFFIX completes DDN_UNARY_ / DDN_BINARY_, name
 * completes ddn_ew_<name>_<type>. Extra arguments are passed through to X. */
#define DDN_EW_UNARY_OPS(X, ...)                                                               \
    X(NEG, neg, __VA_ARGS__)                                                                   \
    X(ABS, abs, __VA_ARGS__)                                                                   \
    X(EXP, exp, __VA_ARGS__)                                                                   \
    X(LOG, log, __VA_ARGS__)                                                                   \
    X(SQRT, sqrt, __VA_ARGS__)                                                                 \
    X(RELU, relu, __VA_ARGS__)                                                                 \
    X(SIGMOID, sigmoid, __VA_ARGS__)                                                           \
    X(TANH, tanh, __VA_ARGS__)                                                                 \
    X(CLAMP, clamp, __VA_ARGS__)                                                               \
    X(POW_SCALAR, pow_scalar, __VA_ARGS__)                                                     \
    X(ADD_SCALAR, add_scalar, __VA_ARGS__)                                                     \
    X(MUL_SCALAR, mul_scalar, __VA_ARGS__)

/* Binary ops with a gradient; EQ (ddn_ew_eq_*) has a forward only. */
#define DDN_EW_BINARY_GRAD_OPS(X, ...)                                                         \
    X(ADD, add, __VA_ARGS__)                                                                   \
    X(SUB, sub, __VA_ARGS__)                                                                   \
    X(MUL, mul, __VA_ARGS__)                                                                   \
    X(DIV, div, __VA_ARGS__)                                                                   \
    X(POW, pow, __VA_ARGS__)

#define DDN_EW_BINARY_OPS(X, ...) DDN_EW_BINARY_GRAD_OPS(X, __VA_ARGS__) X(EQ, eq, __VA_ARGS__)

/* libm name for type T: DDN_EW_M_f32(exp) is expf. */
#define DDN_EW_M_f32(fn) fn##f
#define DDN_EW_M_f64(fn) fn

/* Writes every ddn_ew_* function for type T with suffix S (f32 or f64). Unary forwards take
 * (x, p0, p1) and derivatives (dy, x, y, p0, p1), y = f(x), so one kernel loop serves all ops;
 * unused arguments cost nothing once inlined. */
#define DDN_EW_DEFINE(T, S)                                                                    \
    /* -x */                                                                                   \
    DDN_HD static inline T ddn_ew_neg_##S(T x, T p0, T p1) { return -x; }                      \
    DDN_HD static inline T ddn_ew_neg_grad_##S(T dy, T x, T y, T p0, T p1) { return -dy; }     \
    /* |x|; the gradient multiplies by sgn(x), which is 0 at 0 and at NaN (as torch.sgn) */    \
    DDN_HD static inline T ddn_ew_abs_##S(T x, T p0, T p1) { return DDN_EW_M_##S(fabs)(x); }   \
    DDN_HD static inline T ddn_ew_abs_grad_##S(T dy, T x, T y, T p0, T p1)                     \
    {                                                                                          \
        return dy * (T)((x > 0) - (x < 0));                                                    \
    }                                                                                          \
    /* e^x; dy/dx = y */                                                                       \
    DDN_HD static inline T ddn_ew_exp_##S(T x, T p0, T p1) { return DDN_EW_M_##S(exp)(x); }    \
    DDN_HD static inline T ddn_ew_exp_grad_##S(T dy, T x, T y, T p0, T p1) { return dy * y; }  \
    /* log x; dy / x (inf at 0, NaN below, as torch) */                                        \
    DDN_HD static inline T ddn_ew_log_##S(T x, T p0, T p1) { return DDN_EW_M_##S(log)(x); }    \
    DDN_HD static inline T ddn_ew_log_grad_##S(T dy, T x, T y, T p0, T p1) { return dy / x; }  \
    /* sqrt x; dy / (2y), so inf at 0 as torch */                                              \
    DDN_HD static inline T ddn_ew_sqrt_##S(T x, T p0, T p1) { return DDN_EW_M_##S(sqrt)(x); }  \
    DDN_HD static inline T ddn_ew_sqrt_grad_##S(T dy, T x, T y, T p0, T p1)                    \
    {                                                                                          \
        return dy / (2 * y);                                                                   \
    }                                                                                          \
    /* max(x, 0) keeping NaN and -0 (torch's clamp_min); the gradient selects dy where y > 0   \
     * or y is NaN (torch's threshold_backward on the result), so relu'(0) = 0 */              \
    DDN_HD static inline T ddn_ew_relu_##S(T x, T p0, T p1) { return x < 0 ? (T)0 : x; }       \
    DDN_HD static inline T ddn_ew_relu_grad_##S(T dy, T x, T y, T p0, T p1)                    \
    {                                                                                          \
        return y <= 0 ? (T)0 : dy;                                                             \
    }                                                                                          \
    /* 1 / (1 + e^-x), never exponentiating a large positive number: for x < 0 it is written   \
     * e^x / (1 + e^x), which keeps full relative precision down to e^x's underflow */         \
    DDN_HD static inline T ddn_ew_sigmoid_##S(T x, T p0, T p1)                                 \
    {                                                                                          \
        if (x >= 0) return 1 / (1 + DDN_EW_M_##S(exp)(-x));                                    \
        T e = DDN_EW_M_##S(exp)(x);                                                            \
        return e / (1 + e);                                                                    \
    }                                                                                          \
    DDN_HD static inline T ddn_ew_sigmoid_grad_##S(T dy, T x, T y, T p0, T p1)                 \
    {                                                                                          \
        return dy * (1 - y) * y;                                                               \
    }                                                                                          \
    /* tanh x; dy (1 - y^2) */                                                                 \
    DDN_HD static inline T ddn_ew_tanh_##S(T x, T p0, T p1) { return DDN_EW_M_##S(tanh)(x); }  \
    DDN_HD static inline T ddn_ew_tanh_grad_##S(T dy, T x, T y, T p0, T p1)                    \
    {                                                                                          \
        return dy * (1 - y * y);                                                               \
    }                                                                                          \
    /* min(max(x, lo), hi), NaN kept (lo > hi gives hi, as torch); gradient dy on the closed   \
     * interval lo <= x <= hi, else 0 (NaN included) */                                        \
    DDN_HD static inline T ddn_ew_clamp_##S(T x, T lo, T hi)                                   \
    {                                                                                          \
        T v = x < lo ? lo : x;                                                                 \
        return v > hi ? hi : v;                                                                \
    }                                                                                          \
    DDN_HD static inline T ddn_ew_clamp_grad_##S(T dy, T x, T y, T lo, T hi)                   \
    {                                                                                          \
        return x >= lo && x <= hi ? dy : (T)0;                                                 \
    }                                                                                          \
    /* x^p with torch's exact special cases (square, cube, sqrt, reciprocal...); the branch is \
     * loop-invariant, so compilers hoist it. Gradient dy (p x^(p-1)), exactly 0 when p == 0 */ \
    DDN_HD static inline T ddn_ew_pow_scalar_##S(T x, T p, T p1)                               \
    {                                                                                          \
        if (p == 2) return x * x;                                                              \
        if (p == 3) return x * x * x;                                                          \
        if (p == (T)0.5) return DDN_EW_M_##S(sqrt)(x);                                         \
        if (p == -1) return 1 / x;                                                             \
        if (p == -2) return 1 / (x * x);                                                       \
        if (p == (T)-0.5) return 1 / DDN_EW_M_##S(sqrt)(x);                                    \
        return DDN_EW_M_##S(pow)(x, p);                                                        \
    }                                                                                          \
    DDN_HD static inline T ddn_ew_pow_scalar_grad_##S(T dy, T x, T y, T p, T p1)               \
    {                                                                                          \
        if (p == 0) return 0;                                                                  \
        return dy * (p * ddn_ew_pow_scalar_##S(x, p - 1, p1));                                 \
    }                                                                                          \
    /* x + s; dy */                                                                            \
    DDN_HD static inline T ddn_ew_add_scalar_##S(T x, T s, T p1) { return x + s; }             \
    DDN_HD static inline T ddn_ew_add_scalar_grad_##S(T dy, T x, T y, T s, T p1) { return dy; } \
    /* x * s; dy s */                                                                          \
    DDN_HD static inline T ddn_ew_mul_scalar_##S(T x, T s, T p1) { return x * s; }             \
    DDN_HD static inline T ddn_ew_mul_scalar_grad_##S(T dy, T x, T y, T s, T p1)               \
    {                                                                                          \
        return dy * s;                                                                         \
    }                                                                                          \
                                                                                               \
    /* ---- binary: forward (a, b); partials (dy, a, b, y) with y = a op b ---- */              \
    DDN_HD static inline T ddn_ew_add_##S(T a, T b) { return a + b; }                          \
    DDN_HD static inline T ddn_ew_add_grad_a_##S(T dy, T a, T b, T y) { return dy; }           \
    DDN_HD static inline T ddn_ew_add_grad_b_##S(T dy, T a, T b, T y) { return dy; }           \
    DDN_HD static inline T ddn_ew_sub_##S(T a, T b) { return a - b; }                          \
    DDN_HD static inline T ddn_ew_sub_grad_a_##S(T dy, T a, T b, T y) { return dy; }           \
    DDN_HD static inline T ddn_ew_sub_grad_b_##S(T dy, T a, T b, T y) { return -dy; }          \
    DDN_HD static inline T ddn_ew_mul_##S(T a, T b) { return a * b; }                          \
    DDN_HD static inline T ddn_ew_mul_grad_a_##S(T dy, T a, T b, T y) { return dy * b; }       \
    DDN_HD static inline T ddn_ew_mul_grad_b_##S(T dy, T a, T b, T y) { return dy * a; }       \
    /* a / b; dy / b and -dy (a / b) / b, grouped as torch groups them */                      \
    DDN_HD static inline T ddn_ew_div_##S(T a, T b) { return a / b; }                          \
    DDN_HD static inline T ddn_ew_div_grad_a_##S(T dy, T a, T b, T y) { return dy / b; }       \
    DDN_HD static inline T ddn_ew_div_grad_b_##S(T dy, T a, T b, T y)                          \
    {                                                                                          \
        return -dy * ((a / b) / b);                                                            \
    }                                                                                          \
    /* a^b. d/da = dy (b a^(b-1)), exactly 0 where b == 0 (even for dy NaN: torch selects).    \
     * d/db = dy (y log a), with the factor 0 where a == 0 and b >= 0 (the limit as a -> +0);  \
     * a == 0, b < 0 gives -inf and a < 0 NaN, as torch's pow_backward_exponent */             \
    DDN_HD static inline T ddn_ew_pow_##S(T a, T b) { return DDN_EW_M_##S(pow)(a, b); }        \
    DDN_HD static inline T ddn_ew_pow_grad_a_##S(T dy, T a, T b, T y)                          \
    {                                                                                          \
        return b == 0 ? (T)0 : dy * (b * DDN_EW_M_##S(pow)(a, b - 1));                         \
    }                                                                                          \
    DDN_HD static inline T ddn_ew_pow_grad_b_##S(T dy, T a, T b, T y)                          \
    {                                                                                          \
        return dy * (a == 0 && b >= 0 ? (T)0 : y * DDN_EW_M_##S(log)(a));                      \
    }                                                                                          \
    /* 1 where a == b else 0 (NaN equals nothing); no gradient */                              \
    DDN_HD static inline T ddn_ew_eq_##S(T a, T b) { return a == b ? (T)1 : (T)0; }

DDN_EW_DEFINE(float, f32)
DDN_EW_DEFINE(double, f64)

#endif
