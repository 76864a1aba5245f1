/* ddn — CPU elementwise kernels: unary ops and their accumulating backward, binary ops and the
 * full-shape partials of their backward.
 *
 * The per-element math lives in elementwise_math.h (shared with CUDA); this file only walks
 * operands with the strided iterator. Each op gets its own loop (the switch sits outside the
 * loops), with a unit-stride path the compiler vectorises and, for binary ops, paths for a
 * broadcast scalar along the run. OpenMP splits the iterator's units. Tests:
 * tests/test_elementwise.c and tests/test_elementwise_torch.c.
 */
#include <math.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"
#include "elementwise_math.h"

#define NAME_OF(OP, name, ...) [DDN_UNARY_##OP] = #name,
static const char *const unary_names[DDN_UNARY_COUNT] = {DDN_EW_UNARY_OPS(NAME_OF, _)};
#undef NAME_OF
#define NAME_OF(OP, name, ...) [DDN_BINARY_##OP] = #name,
static const char *const binary_names[DDN_BINARY_COUNT] = {DDN_EW_BINARY_OPS(NAME_OF, _)};
#undef NAME_OF


/* ---- unary forward: out = f(x) ---------------------------------------------------------------- */
#define UNARY_RUN(T, F)                                                                        \
    do {                                                                                       \
        T *o_ = (T *)p[0];                                                                     \
        const T *x_ = (const T *)p[1];                                                         \
        if (s0 == 1 && s1 == 1)                                                                \
            for (int64_t i = 0; i < len; i++) o_[i] = F(x_[i], q0, q1);                        \
        else                                                                                   \
            for (int64_t i = 0; i < len; i++) o_[i * s0] = F(x_[i * s1], q0, q1);              \
    } while (0)

#define UNARY_CASE(OP, name, T, S)                                                             \
    case DDN_UNARY_##OP: DDN_ITER_FOR(it, UNARY_RUN(T, ddn_ew_##name##_##S);); break;

/* ---- unary backward: dx += dy * f'(x), from x and y = f(x) ----------------------------------- */
#define UGRAD_RUN(T, G)                                                                        \
    do {                                                                                       \
        T *dx_ = (T *)p[0];                                                                    \
        const T *x_ = (const T *)p[1], *y_ = (const T *)p[2], *dy_ = (const T *)p[3];          \
        if (s0 == 1 && s1 == 1 && s2 == 1 && s3 == 1)                                          \
            for (int64_t i = 0; i < len; i++) dx_[i] += G(dy_[i], x_[i], y_[i], q0, q1);      \
        else                                                                                   \
            for (int64_t i = 0; i < len; i++)                                                  \
                dx_[i * s0] += G(dy_[i * s3], x_[i * s1], y_[i * s2], q0, q1);                 \
    } while (0)

#define UGRAD_CASE(OP, name, T, S)                                                             \
    case DDN_UNARY_##OP: DDN_ITER_FOR(it, UGRAD_RUN(T, ddn_ew_##name##_grad_##S);); break;

#define UNARY_IMPL(T, S)                                                                       \
    static void unary_##S(ddn_unary_op op, const ddn_iter *it, T q0, T q1)                     \
    {                                                                                          \
        switch (op) {                                                                          \
            DDN_EW_UNARY_OPS(UNARY_CASE, T, S)                                                 \
        default: break;                                                                        \
        }                                                                                      \
    }                                                                                          \
    static void unary_grad_##S(ddn_unary_op op, const ddn_iter *it, T q0, T q1)                \
    {                                                                                          \
        switch (op) {                                                                          \
            DDN_EW_UNARY_OPS(UGRAD_CASE, T, S)                                                 \
        default: break;                                                                        \
        }                                                                                      \
    }

UNARY_IMPL(float, f32)
UNARY_IMPL(double, f64)

ddn_status ddn_cpu_unary(ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0,
                         double p1)
{
    if ((unsigned)op >= DDN_UNARY_COUNT)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "unary: invalid op %d", (int)op);
    ddn_status st = ddn_check_ew_operands("unary", unary_names[op], out, 1, &x);
    if (st != DDN_OK) return st;
    ddn_iter it;
    ddn_iter_init(&it, 2, (const ddn_tensor *[]){out, x});
    if (out->dtype == DDN_DTYPE_F32) unary_f32(op, &it, (float)p0, (float)p1);
    else unary_f64(op, &it, p0, p1);
    return DDN_OK;
}

/* Whether op's derivative reads y = f(x) (the rest read x, or neither). */
static bool unary_grad_uses_y(ddn_unary_op op)
{
    return op == DDN_UNARY_EXP || op == DDN_UNARY_SQRT || op == DDN_UNARY_RELU ||
           op == DDN_UNARY_SIGMOID || op == DDN_UNARY_TANH;
}

ddn_status ddn_cpu_unary_backward_acc(ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
                                      const ddn_tensor *y, const ddn_tensor *dy, double p0,
                                      double p1)
{
    if ((unsigned)op >= DDN_UNARY_COUNT)
        return ddn_ctx_set_error(dx->ctx, DDN_ERR_ARG, "unary backward: invalid op %d", (int)op);
    if (!y && unary_grad_uses_y(op))
        return ddn_ctx_set_error(dx->ctx, DDN_ERR_ARG, "unary backward %s: needs the forward "
                                 "output y", unary_names[op]);
    /* y stands in for itself when given, else x takes its slot (it is never read then). */
    const ddn_tensor *ops[] = {x, y ? y : x, dy};
    ddn_status st = ddn_check_ew_operands("unary backward", unary_names[op], dx, 3, ops);
    if (st != DDN_OK) return st;
    ddn_iter it;
    ddn_iter_init(&it, 4, (const ddn_tensor *[]){dx, ops[0], ops[1], ops[2]});
    if (dx->dtype == DDN_DTYPE_F32) unary_grad_f32(op, &it, (float)p0, (float)p1);
    else unary_grad_f64(op, &it, p0, p1);
    return DDN_OK;
}

/* ---- binary forward: out = a op b ------------------------------------------------------------- */
#define BINARY_RUN(T, F)                                                                       \
    do {                                                                                       \
        T *o_ = (T *)p[0];                                                                     \
        const T *a_ = (const T *)p[1], *b_ = (const T *)p[2];                                  \
        if (s0 == 1 && s1 == 1 && s2 == 1) {                                                   \
            for (int64_t i = 0; i < len; i++) o_[i] = F(a_[i], b_[i]);                         \
        } else if (s0 == 1 && s1 == 1 && s2 == 0) { /* b broadcast along the run */            \
            const T bv_ = b_[0];                                                               \
            for (int64_t i = 0; i < len; i++) o_[i] = F(a_[i], bv_);                           \
        } else if (s0 == 1 && s1 == 0 && s2 == 1) { /* a broadcast along the run */            \
            const T av_ = a_[0];                                                               \
            for (int64_t i = 0; i < len; i++) o_[i] = F(av_, b_[i]);                           \
        } else {                                                                               \
            for (int64_t i = 0; i < len; i++) o_[i * s0] = F(a_[i * s1], b_[i * s2]);          \
        }                                                                                      \
    } while (0)

#define BINARY_CASE(OP, name, T, S)                                                            \
    case DDN_BINARY_##OP: DDN_ITER_FOR(it, BINARY_RUN(T, ddn_ew_##name##_##S);); break;

/* ---- binary backward: out = dy * d(a op b)/d(a or b), overwriting ---------------------------- */
#define BGRAD_RUN(T, G)                                                                        \
    do {                                                                                       \
        T *o_ = (T *)p[0];                                                                     \
        const T *a_ = (const T *)p[1], *b_ = (const T *)p[2];                                  \
        const T *y_ = (const T *)p[3], *dy_ = (const T *)p[4];                                 \
        if (s0 == 1 && s1 == 1 && s2 == 1 && s3 == 1 && s4 == 1)                               \
            for (int64_t i = 0; i < len; i++) o_[i] = G(dy_[i], a_[i], b_[i], y_[i]);          \
        else                                                                                   \
            for (int64_t i = 0; i < len; i++)                                                  \
                o_[i * s0] = G(dy_[i * s4], a_[i * s1], b_[i * s2], y_[i * s3]);               \
    } while (0)

#define BGRAD_CASE(OP, name, T, S)                                                             \
    case DDN_BINARY_##OP:                                                                      \
        if (which == 0) DDN_ITER_FOR(it, BGRAD_RUN(T, ddn_ew_##name##_grad_a_##S););           \
        else DDN_ITER_FOR(it, BGRAD_RUN(T, ddn_ew_##name##_grad_b_##S););                      \
        break;

#define BINARY_IMPL(T, S)                                                                      \
    static void binary_##S(ddn_binary_op op, const ddn_iter *it)                               \
    {                                                                                          \
        switch (op) {                                                                          \
            DDN_EW_BINARY_OPS(BINARY_CASE, T, S)                                               \
        default: break;                                                                        \
        }                                                                                      \
    }                                                                                          \
    static void binary_grad_##S(ddn_binary_op op, int which, const ddn_iter *it)               \
    {                                                                                          \
        switch (op) {                                                                          \
            DDN_EW_BINARY_GRAD_OPS(BGRAD_CASE, T, S)                                           \
        default: break;                                                                        \
        }                                                                                      \
    }

BINARY_IMPL(float, f32)
BINARY_IMPL(double, f64)

ddn_status ddn_cpu_binary(ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a,
                          const ddn_tensor *b)
{
    if ((unsigned)op >= DDN_BINARY_COUNT)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "binary: invalid op %d", (int)op);
    ddn_status st = ddn_check_ew_operands("binary", binary_names[op], out, 2,
                                   (const ddn_tensor *[]){a, b});
    if (st != DDN_OK) return st;
    ddn_iter it;
    ddn_iter_init(&it, 3, (const ddn_tensor *[]){out, a, b});
    if (out->dtype == DDN_DTYPE_F32) binary_f32(op, &it);
    else binary_f64(op, &it);
    return DDN_OK;
}

ddn_status ddn_cpu_binary_backward(ddn_binary_op op, int which, ddn_tensor *out,
                                   const ddn_tensor *a, const ddn_tensor *b, const ddn_tensor *y,
                                   const ddn_tensor *dy)
{
    if ((unsigned)op >= DDN_BINARY_COUNT || (which != 0 && which != 1))
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "binary backward: invalid op %d or "
                                 "operand %d", (int)op, which);
    if (op == DDN_BINARY_EQ)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "binary backward: eq is not "
                                 "differentiable");
    if (!y && op == DDN_BINARY_POW && which == 1)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "binary backward pow: the exponent's "
                                 "gradient needs the forward output y");
    /* Only pow's exponent gradient reads y; elsewhere dy fills its slot. */
    const ddn_tensor *ops[] = {a, b, y ? y : dy, dy};
    ddn_status st = ddn_check_ew_operands("binary backward", binary_names[op], out, 4, ops);
    if (st != DDN_OK) return st;
    ddn_iter it;
    ddn_iter_init(&it, 5, (const ddn_tensor *[]){out, a, b, ops[2], dy});
    if (out->dtype == DDN_DTYPE_F32) binary_grad_f32(op, which, &it);
    else binary_grad_f64(op, which, &it);
    return DDN_OK;
}
