/* ddn — CPU dense linear algebra (LAPACKE, row-major), item by item over the batch: LU and
 * Cholesky solves, the symmetric eigensolver, thin QR. The CUDA backend does the same through
 * cuSOLVER (cuda/cuda_solver.c); argument checks are shared (core/linalg_check.c). Inputs are
 * never modified: factorizations work on step-arena copies. Tests: tests/test_linalg_kernels.c
 * and tests/test_cuda.c. */
#include <lapacke.h>
#include <string.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"

/* LAPACK's info for item i: 0 fine, > 0 the matrix's numerical failure (reported with `what`
 * and status s), < 0 a bad argument (a bug here). */
static ddn_status item_info(ddn_ctx *ctx, const char *op, int64_t item, lapack_int info,
                            ddn_status s, const char *what)
{
    if (info == 0) return DDN_OK;
    if (info < 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "%s: LAPACK rejected argument %d (item "
                                 "%lld)", op, (int)-info, (long long)item);
    return ddn_ctx_set_error(ctx, s, "%s: item %lld %s (LAPACK info %d)", op, (long long)item,
                             what, (int)info);
}

/* One definition per dtype: T the element, P LAPACKE's prefix (s or d). */
#define LINALG_IMPL(T, P)                                                                      \
    static ddn_status lu_solve_##P(ddn_ctx *ctx, T *x, const T *a, const T *b,                 \
                                   ddn_linalg_dims d, T *lu, lapack_int *ipiv)                 \
    {                                                                                          \
        size_t nn = (size_t)(d.n * d.n), nk = (size_t)(d.n * d.k);                             \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            memcpy(lu, a + i * nn, nn * sizeof(T));                                            \
            if (x != b) memcpy(x + i * nk, b + i * nk, nk * sizeof(T));                        \
            lapack_int info = LAPACKE_##P##gesv(LAPACK_ROW_MAJOR, (lapack_int)d.n,             \
                                                (lapack_int)d.k, lu, (lapack_int)d.n, ipiv,    \
                                                x + i * nk, (lapack_int)d.k);                  \
            ddn_status st = item_info(ctx, "lu_solve", i, info, DDN_ERR_SINGULAR,              \
                                      "is singular");                                          \
            if (st != DDN_OK) return st;                                                       \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }                                                                                          \
    static ddn_status cholesky_solve_##P(ddn_ctx *ctx, T *x, const T *a, const T *b,           \
                                         ddn_linalg_dims d, T *l)                              \
    {                                                                                          \
        size_t nn = (size_t)(d.n * d.n), nk = (size_t)(d.n * d.k);                             \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            memcpy(l, a + i * nn, nn * sizeof(T));                                             \
            if (x != b) memcpy(x + i * nk, b + i * nk, nk * sizeof(T));                        \
            lapack_int info = LAPACKE_##P##potrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)d.n, l,    \
                                                 (lapack_int)d.n);                             \
            ddn_status st = item_info(ctx, "cholesky_solve", i, info, DDN_ERR_SINGULAR,        \
                                      "is not positive definite");                             \
            if (st == DDN_OK)                                                                  \
                st = item_info(ctx, "cholesky_solve", i,                                       \
                               LAPACKE_##P##potrs(LAPACK_ROW_MAJOR, 'L', (lapack_int)d.n,      \
                                                  (lapack_int)d.k, l, (lapack_int)d.n,         \
                                                  x + i * nk, (lapack_int)d.k),                \
                               DDN_ERR_BACKEND, "failed");                                     \
            if (st != DDN_OK) return st;                                                       \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }                                                                                          \
    static ddn_status eigh_##P(ddn_ctx *ctx, T *w, T *v, const T *a, ddn_linalg_dims d, T *s)  \
    {                                                                                          \
        size_t nn = (size_t)(d.n * d.n);                                                       \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            T *m = v ? v + i * nn : s;                                                         \
            memcpy(m, a + i * nn, nn * sizeof(T));                                             \
            lapack_int info = LAPACKE_##P##syevd(LAPACK_ROW_MAJOR, v ? 'V' : 'N', 'L',         \
                                                 (lapack_int)d.n, m, (lapack_int)d.n,          \
                                                 w + i * d.n);                                 \
            ddn_status st = item_info(ctx, "eigh", i, info, DDN_ERR_NOT_CONVERGED,             \
                                      "did not converge");                                     \
            if (st != DDN_OK) return st;                                                       \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }                                                                                          \
    static ddn_status qr_##P(ddn_ctx *ctx, T *q, const T *a, ddn_linalg_dims d, T *tau)        \
    {                                                                                          \
        size_t mk = (size_t)(d.n * d.k);                                                       \
        lapack_int m = (lapack_int)d.n, k = (lapack_int)d.k;                                   \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            if (q != a) memcpy(q + i * mk, a + i * mk, mk * sizeof(T));                        \
            ddn_status st = item_info(ctx, "qr", i,                                            \
                                      LAPACKE_##P##geqrf(LAPACK_ROW_MAJOR, m, k, q + i * mk,   \
                                                         k, tau),                              \
                                      DDN_ERR_BACKEND, "failed");                              \
            if (st == DDN_OK)                                                                  \
                st = item_info(ctx, "qr", i,                                                   \
                               LAPACKE_##P##orgqr(LAPACK_ROW_MAJOR, m, k, k, q + i * mk, k,    \
                                                  tau),                                        \
                               DDN_ERR_BACKEND, "failed");                                     \
            if (st != DDN_OK) return st;                                                       \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }

LINALG_IMPL(float, s)
LINALG_IMPL(double, d)

/* Step-arena scratch of n elements of dt, rewound by the caller. */
static void *scratch(ddn_ctx *ctx, ddn_dtype dt, int64_t n)
{
    return ddn_ctx_scratch(ctx, (size_t)(n > 0 ? n : 1) * ddn_dtype_size(dt));
}

ddn_status ddn_cpu_lu_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_solve("lu_solve", x, a, b, &d);
    if (st != DDN_OK || d.batch == 0 || d.n == 0) return st;
    ddn_ctx *ctx = x->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *lu = scratch(ctx, a->dtype, d.n * d.n);
    lapack_int *ipiv = ddn_ctx_scratch(ctx, (size_t)d.n * sizeof *ipiv);
    if (!lu || !ipiv) st = ddn_ctx_status(ctx);
    else if (a->dtype == DDN_DTYPE_F32)
        st = lu_solve_s(ctx, ddn_tensor_ptr(x), ddn_tensor_ptr(a), ddn_tensor_ptr(b), d, lu, ipiv);
    else st = lu_solve_d(ctx, ddn_tensor_ptr(x), ddn_tensor_ptr(a), ddn_tensor_ptr(b), d, lu, ipiv);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cpu_cholesky_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_solve("cholesky_solve", x, a, b, &d);
    if (st != DDN_OK || d.batch == 0 || d.n == 0) return st;
    ddn_ctx *ctx = x->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *l = scratch(ctx, a->dtype, d.n * d.n);
    if (!l) st = ddn_ctx_status(ctx);
    else if (a->dtype == DDN_DTYPE_F32)
        st = cholesky_solve_s(ctx, ddn_tensor_ptr(x), ddn_tensor_ptr(a), ddn_tensor_ptr(b), d, l);
    else st = cholesky_solve_d(ctx, ddn_tensor_ptr(x), ddn_tensor_ptr(a), ddn_tensor_ptr(b), d, l);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cpu_eigh(ddn_tensor *w, ddn_tensor *v, const ddn_tensor *a)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_eigh(w, v, a, &d);
    if (st != DDN_OK || d.batch == 0 || d.n == 0) return st;
    ddn_ctx *ctx = w->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *s = v ? NULL : scratch(ctx, a->dtype, d.n * d.n);
    void *vp = v ? ddn_tensor_ptr(v) : NULL;
    if (!v && !s) st = ddn_ctx_status(ctx);
    else if (a->dtype == DDN_DTYPE_F32)
        st = eigh_s(ctx, ddn_tensor_ptr(w), vp, ddn_tensor_ptr(a), d, s);
    else st = eigh_d(ctx, ddn_tensor_ptr(w), vp, ddn_tensor_ptr(a), d, s);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cpu_qr(ddn_tensor *q, const ddn_tensor *a)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_qr(q, a, &d);
    if (st != DDN_OK || d.batch == 0 || d.k == 0) return st;
    ddn_ctx *ctx = q->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *tau = scratch(ctx, a->dtype, d.k);
    if (!tau) st = ddn_ctx_status(ctx);
    else if (a->dtype == DDN_DTYPE_F32)
        st = qr_s(ctx, ddn_tensor_ptr(q), ddn_tensor_ptr(a), d, tau);
    else st = qr_d(ctx, ddn_tensor_ptr(q), ddn_tensor_ptr(a), d, tau);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
