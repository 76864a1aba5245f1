/* ddn — the CPU instances of the LESS block algorithms (less_iter_blk.h, less_vjp_blk.h) as the
 * CPU backend's kernel entries less_iterate and less_vjp_e, and the argument checks both backends
 * share.
 *
 * Each item runs as one "block" of one thread (blk.h), items spread over OpenMP threads. The CPU
 * layer does not call these (it keeps its LAPACK/BLAS path, less.c / less_solver.c): they exist so
 * that the algorithm the GPU runs (cuda/less.cu compiles the same headers) is tested here against
 * that path (tests/test_less_blk.c), and so that the table is complete.
 */
#include <string.h>

#include "blk.h"
#include "cpu_kernels.h"
#include "less_impl.h"

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "less_iter_blk.h"
#include "less_vjp_blk.h"
#undef T
#undef TS

#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "less_iter_blk.h"
#include "less_vjp_blk.h"
#undef T
#undef TS

_Static_assert(DDN_LESS_BLK_RM == DDN_LESS_RM && DDN_LESS_BLK_BLS_ONE == DDN_LESS_BLS_ONE &&
                   DDN_LESS_BLK_BLS_GRAD == DDN_LESS_BLS_GRAD &&
                   DDN_LESS_BLK_TWD == DDN_LESS_TWD && DDN_LESS_BLK_DW == DDN_LESS_DW,
               "less_iter_blk.h's method bits must equal less_solver.h's");


/* ---- argument checks (shared with cuda/cuda_less.c) ----------------------------------------- */
static bool dense(const ddn_tensor *t, ddn_dtype dt, int ndim)
{
    return t && t->dtype == dt && t->ndim == ndim && ddn_tensor_is_contiguous(t);
}

static bool dims(const ddn_tensor *t, int64_t d0, int64_t d1)
{
    return t->shape[0] == d0 && t->shape[1] == d1;
}

static ddn_status bad_args(ddn_ctx *ctx, const char *op, const char *expected,
                           const ddn_tensor *A, const ddn_tensor *b, const ddn_tensor *x,
                           const ddn_tensor *y)
{
    char sa[96], sb[96], sx[96] = "-", sy[96] = "-";
    ddn_shape_str(A, sa, sizeof sa);
    ddn_shape_str(b, sb, sizeof sb);
    if (x) ddn_shape_str(x, sx, sizeof sx);
    if (y) ddn_shape_str(y, sy, sizeof sy);
    return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: expected %s, every tensor contiguous and of "
                             "one float dtype (A's, %s); got A %s, b %s, %s, %s", op, expected,
                             ddn_dtype_name(A->dtype), sa, sb, sx, sy);
}

ddn_status ddn_less_check_iterate(const ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                                  const ddn_tensor *uc, const ddn_less_opts *o,
                                  const ddn_less_item *item, int64_t *B, int64_t *m, int64_t *n)
{
    ddn_ctx *ctx = y->ctx;
    const ddn_dtype dt = A->dtype;
    if (!ddn_dtype_is_float(dt) || !dense(A, dt, 3) || !dense(b, dt, 2) || !dense(y, dt, 2) ||
        !dense(uc, dt, 2) || !dims(b, A->shape[0], A->shape[1]) ||
        !dims(y, A->shape[0], A->shape[2]) || !dims(uc, A->shape[0], A->shape[2]))
        return bad_args(ctx, "less_iterate", "A (B,m,n), b (B,m), y and uc (B,n)", A, b, y, uc);
    if (!o || !item)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less_iterate: opts and item must not be "
                                 "NULL");
    ddn_status st = ddn_less_check_opts(ctx, "less_iterate", o);
    if (st != DDN_OK) return st;
    if (o->method == DDN_LESS_EXACT)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less_iterate: EXACT is not an iterative "
                                 "method (it runs on the host, less_solver.c)");
    *B = A->shape[0], *m = A->shape[1], *n = A->shape[2];
    return DDN_OK;
}

ddn_status ddn_less_check_vjp_e(const ddn_tensor *dA, const ddn_tensor *db, const ddn_tensor *A,
                                const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                                const ddn_tensor *nu, const ddn_less_item *item, int64_t *B,
                                int64_t *m, int64_t *n)
{
    ddn_ctx *ctx = A->ctx;
    const ddn_dtype dt = A->dtype;
    const int64_t B0 = A->ndim == 3 ? A->shape[0] : -1;
    if (!ddn_dtype_is_float(dt) || !dense(A, dt, 3) || !dense(b, dt, 2) || !dense(y, dt, 2) ||
        !dense(v, dt, 2) || !dims(b, B0, A->shape[1]) || !dims(y, B0, A->shape[2]) ||
        !dims(v, B0, A->shape[2]) || (dA && (!dense(dA, dt, 3) || !ddn_tensor_same_shape(dA, A))) ||
        (db && (!dense(db, dt, 2) || !ddn_tensor_same_shape(db, b))))
        return bad_args(ctx, "less_vjp_e", "A and dA (B,m,n), b and db (B,m), y and v (B,n)", A,
                        b, y, v);
    if (!dense(nu, DDN_DTYPE_F64, 1) || nu->shape[0] != B0)
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "less_vjp_e: nu must be contiguous float64 "
                                 "(B) = (%lld), one multiplier per item", (long long)B0);
    if (!item)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less_vjp_e: item must not be NULL");
    *B = B0, *m = A->shape[1], *n = A->shape[2];
    return DDN_OK;
}

ddn_less_iter_params ddn_less_iter_params_of(const ddn_less_opts *o)
{
    return (ddn_less_iter_params){.method = o->method, .max_iter = o->max_iter, .tol = o->tol,
                                  .bls_alpha = o->bls_alpha, .bls_beta = o->bls_beta,
                                  .twd_beta = o->twd_beta};
}

/* ---- the CPU instances ---------------------------------------------------------------------- */
/* Threads for B independent items: no BLAS runs inside, so no nesting to avoid. */
static int item_threads(int64_t B)
{
#ifdef _OPENMP
    if (B < 2 || omp_in_parallel()) return 1;
    int t = omp_get_max_threads();
    return t < B ? t : (int)B;
#else
    (void)B;
    return 1;
#endif
}

ddn_status ddn_cpu_less_iterate(ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                                const ddn_tensor *uc, const struct ddn_less_opts *o,
                                struct ddn_less_item *item)
{
    int64_t B, m, n;
    ddn_status st = ddn_less_check_iterate(y, A, b, uc, o, item, &B, &m, &n);
    if (st != DDN_OK || B == 0) return st;
    ddn_ctx *ctx = y->ctx;
    const ddn_less_iter_params p = ddn_less_iter_params_of(o);
    const bool f32 = A->dtype == DDN_DTYPE_F32;
    const size_t es = f32 ? sizeof(float) : sizeof(double);
    const int nth = item_threads(B);
    const size_t per = ddn_solver_align((size_t)DDN_LESS_ITER_WORK(m, n) * es);
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *work = ddn_ctx_scratch(ctx, per * (size_t)nth);
    if (!work) return ddn_ctx_status(ctx);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1)
#endif
    for (int64_t i = 0; i < B; i++) {
        const ddn_blk blk = {0, 1};
        void *w = work + per * (size_t)ddn_solver_thread_id();
        item[i] = (ddn_less_item){0};
        if (f32)
            less_blk_iterate_item_f32(&blk, m, n, (const float *)ddn_tensor_ptr(A) + i * m * n,
                                      (const float *)ddn_tensor_ptr(b) + i * m,
                                      (const float *)ddn_tensor_ptr(uc) + i * n, &p,
                                      (float *)ddn_tensor_ptr(y) + i * n, w, &item[i]);
        else
            less_blk_iterate_item_f64(&blk, m, n, (const double *)ddn_tensor_ptr(A) + i * m * n,
                                      (const double *)ddn_tensor_ptr(b) + i * m,
                                      (const double *)ddn_tensor_ptr(uc) + i * n, &p,
                                      (double *)ddn_tensor_ptr(y) + i * n, w, &item[i]);
    }
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}

ddn_status ddn_cpu_less_vjp_e(ddn_tensor *dA, ddn_tensor *db, const ddn_tensor *A,
                              const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                              const ddn_tensor *nu, struct ddn_less_item *item)
{
    int64_t B, m, n;
    ddn_status st = ddn_less_check_vjp_e(dA, db, A, b, y, v, nu, item, &B, &m, &n);
    if (st != DDN_OK || B == 0) return st;
    ddn_ctx *ctx = A->ctx;
    const bool f32 = A->dtype == DDN_DTYPE_F32;
    const int nth = item_threads(B);
    const size_t per = ddn_solver_align((size_t)DDN_LESS_VJP_WORK(m, n) * sizeof(double));
    const size_t iper = ddn_solver_align((size_t)DDN_LESS_VJP_IWORK(n) * sizeof(int));
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *work = ddn_ctx_scratch(ctx, (per + iper) * (size_t)nth);
    if (!work) return ddn_ctx_status(ctx);
    const double *nuh = ddn_tensor_ptr(nu);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1)
#endif
    for (int64_t i = 0; i < B; i++) {
        const ddn_blk blk = {0, 1};
        unsigned char *w = work + (per + iper) * (size_t)ddn_solver_thread_id();
        item[i] = (ddn_less_item){0};
        if (f32) {
            float *dAi = dA ? (float *)ddn_tensor_ptr(dA) + i * m * n : NULL;
            float *dbi = db ? (float *)ddn_tensor_ptr(db) + i * m : NULL;
            less_blk_vjp_e_f32(&blk, m, n, (const float *)ddn_tensor_ptr(A) + i * m * n,
                               (const float *)ddn_tensor_ptr(b) + i * m,
                               (const float *)ddn_tensor_ptr(y) + i * n,
                               (const float *)ddn_tensor_ptr(v) + i * n, nuh[i], dAi, dbi,
                               (double *)w, (int *)(w + per), &item[i]);
        } else {
            double *dAi = dA ? (double *)ddn_tensor_ptr(dA) + i * m * n : NULL;
            double *dbi = db ? (double *)ddn_tensor_ptr(db) + i * m : NULL;
            less_blk_vjp_e_f64(&blk, m, n, (const double *)ddn_tensor_ptr(A) + i * m * n,
                               (const double *)ddn_tensor_ptr(b) + i * m,
                               (const double *)ddn_tensor_ptr(y) + i * n,
                               (const double *)ddn_tensor_ptr(v) + i * n, nuh[i], dAi, dbi,
                               (double *)w, (int *)(w + per), &item[i]);
        }
    }
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}
