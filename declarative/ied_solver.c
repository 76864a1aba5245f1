/* ddn — batched IED solvers (PI, SI): argument checks, scratch, the batch loop, and the extreme
 * Ritz values the symmetric gap check needs (ied_ritz.h: a Laguerre iteration, dsterf fallback).
 *
 * The per-item kernels (ied_solver_tmpl.h) are written once and compiled for float and double;
 * float32 input is iterated in float32 (the paper's float32 precision comparisons, Fig. 2, 5-7),
 * while the diagnostics are accumulated in float64 so that they measure the float32 answer
 * exactly. Threading and error slots: solver_util.h. Tests: tests/test_ied_solver.c.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "ied_power.h"
#include "ied_ritz.h"
#include "ied_solver.h"
#include "solver_util.h"

/* One thread's buffers; the typed ones are float or double as the dtype. */
typedef struct ied_ws {
    void *Q, *Z, *tau, *work; /* (m*k), (m*k), (k), (lwork) */
    void *V, *h;              /* gap check: [y, Lanczos basis] (m, kgap + 2) column-major,
                               * (kgap + 2) */
    const void *start;        /* gap check: the fixed pseudo-random start (m), shared */
    double *ay;               /* (3 m): A y, q in double, A q */
    double *H, *rw;           /* gap check: Lanczos (kgap + 1, kgap), Ritz scratch (2 kgap) */
    int64_t lwork, kgap;
} ied_ws;

/* The symmetric gap check's Lanczos steps at most (ied_gap_lanczos in ied_solver_tmpl.h): on the
 * paper's matrices it stops after 19-57 (m = 32-1024); the cap bounds the O(m k^2)
 * reorthogonalisation and the basis (m x 81 values per thread). */

/* max |Ritz value| of the leading n x n block of the Lanczos matrix H (column-major, leading
 * dimension ld, symmetric tridiagonal): ied_ritz_ends (ied_ritz.h), dsterf (rw: 2 n doubles) if
 * that fails, and if that fails too the Gershgorin bound (an overestimate: it can only flag a
 * tie that is not there, never miss one). */
static double ied_ritz_max(int64_t n, const double *H, int64_t ld, double *rw, ied_ritz_track *tr)
{
    double est;
    if (ied_ritz_ends(n, H, ld, tr, &est)) return est;
    double *d = rw, *e = rw + n, best = 0;
    for (int64_t i = 0; i < n; i++) d[i] = H[i + i * ld];
    for (int64_t i = 0; i + 1 < n; i++) e[i] = H[i + 1 + i * ld];
    if (LAPACKE_dsterf_work((lapack_int)n, d, e) == 0) {
        for (int64_t i = 0; i < n; i++) best = fmax(best, fabs(d[i]));
        return best;
    }
    return ied_ritz_gershgorin(n, H, ld);
}

#define T float
#define TS(name) name##_f32
#define XB(fn) cblas_s##fn
#define XL(fn) LAPACKE_s##fn##_work
#include "ied_solver_tmpl.h"
#undef T
#undef TS
#undef XB
#undef XL

#define T double
#define TS(name) name##_f64
#define XB(fn) cblas_d##fn
#define XL(fn) LAPACKE_d##fn##_work
#include "ied_solver_tmpl.h"
#undef T
#undef TS
#undef XB
#undef XL

typedef struct ied_thread_rec {
    int64_t fail_item, nc_item; /* lowest failing / non-converged item of this thread, or -1 */
    double nc_step;
    ddn_solver_err fail;
} ied_thread_rec;

ddn_status ddn_ied_solve(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, const void *A,
                         const ddn_ied_opts *opts, const ddn_ied_out *out)
{
    if (!ctx) return DDN_ERR_ARG;
    if (!A || !out || !out->y)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied_solve: A, out and out->y must not be "
                                                   "NULL");
    if (dtype != DDN_DTYPE_F32 && dtype != DDN_DTYPE_F64)
        return ddn_ctx_set_error(ctx, DDN_ERR_DTYPE,
                                 "ied_solve: dtype %d is not float32 or float64", (int)dtype);
    if (B < 0 || m < 1 || m > INT32_MAX / m)
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE,
                                 "ied_solve: A (%lld,%lld,%lld): expected B >= 0, m >= 1 and "
                                 "m*m < 2^31", (long long)B, (long long)m, (long long)m);
    ddn_ied_opts o = opts ? *opts : DDN_IED_OPTS_DEFAULT;
    if (o.method != DDN_IED_PI && o.method != DDN_IED_SI)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied_solve: method %d is not DDN_IED_PI or "
                                 "DDN_IED_SI (start from DDN_IED_OPTS_DEFAULT)", (int)o.method);
    if (o.method == DDN_IED_PI && o.k == 0) o.k = 1;
    if ((o.method == DDN_IED_PI && o.k != 1) || o.k < 1 || o.k > m)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied_solve: k = %lld: expected 1..%lld for "
                                 "SI and 1 for PI", (long long)o.k, (long long)m);
    if (o.max_iter < 1 || !(o.tie_tol >= 0 && o.tie_tol < 1) || !(o.tol >= 0) ||
        (o.sign & ~(unsigned)(DDN_IED_SIGN_HISTORICAL | DDN_IED_SIGN_REFERENCE)))
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied_solve: invalid options: max_iter %lld "
                                 "(>= 1), tol %g (>= 0), tie_tol %g (in [0,1)), sign 0x%x",
                                 (long long)o.max_iter, o.tol, o.tie_tol, o.sign);
    if (B == 0) return DDN_OK;

    const bool f32 = dtype == DDN_DTYPE_F32;
    const size_t ts = f32 ? sizeof(float) : sizeof(double);
    const int64_t k = o.k;
    const double tol = o.tol > 0 ? o.tol : (f32 ? DDN_IED_TOL_F32 : DDN_IED_TOL_F64);
    int64_t lwork = 1;
    if (k > 1) {
        lapack_int qi = f32 ? ied_qr_query_f32(m, k, &lwork) : ied_qr_query_f64(m, k, &lwork);
        if (qi != 0)
            return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "ied_solve: LAPACK geqrf/orgqr "
                                     "workspace query (%lldx%lld) returned %d", (long long)m,
                                     (long long)k, (int)qi);
    }
    const int64_t kg = !o.check_gap || m < 2          ? 1
                       : m - 1 < DDN_IED_GAP_KMAX ? m - 1
                                                  : DDN_IED_GAP_KMAX;
    const int64_t lrw = 2 * kg; /* ied_ritz_max's dsterf */
    size_t per = 2 * ddn_solver_align((size_t)(m * k) * ts) + ddn_solver_align((size_t)k * ts) +
                 ddn_solver_align((size_t)lwork * ts) +
                 ddn_solver_align((size_t)(m * (kg + 2)) * ts) +
                 ddn_solver_align((size_t)(kg + 2) * ts) +
                 ddn_solver_align((size_t)(3 * m) * sizeof(double)) +
                 ddn_solver_align((size_t)((kg + 1) * kg) * sizeof(double)) +
                 ddn_solver_align((size_t)lrw * sizeof(double));
    const int nth = ddn_solver_threads(B);
    const int nws = nth < 64 ? nth : 64;

    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *cur = ddn_ctx_scratch(ctx, per * (size_t)nws + 64 +
                                                  (size_t)nws * sizeof(ied_thread_rec) +
                                                  ddn_solver_align((size_t)m * ts));
    if (!cur) return ddn_ctx_status(ctx);
    ied_thread_rec *rec = ddn_solver_carve(&cur, (size_t)nws * sizeof(ied_thread_rec));
    /* The gap check's start: N(0,1) draws from a fixed seed, the same for every item */
    void *start = ddn_solver_carve(&cur, (size_t)m * ts);
    {
        ddn_rng g;
        ddn_rng_seed(&g, 0x5DEECE66DULL);
        for (int64_t i = 0; i < m; i++) {
            double r = ddn_rng_normal(&g);
            if (f32) ((float *)start)[i] = (float)r;
            else ((double *)start)[i] = r;
        }
    }
    ied_ws ws[64];
    for (int t = 0; t < nws; t++) {
        ied_ws *w = &ws[t];
        w->Q = ddn_solver_carve(&cur, (size_t)(m * k) * ts);
        w->Z = ddn_solver_carve(&cur, (size_t)(m * k) * ts);
        w->tau = ddn_solver_carve(&cur, (size_t)k * ts);
        w->work = ddn_solver_carve(&cur, (size_t)lwork * ts);
        w->lwork = lwork;
        w->V = ddn_solver_carve(&cur, (size_t)(m * (kg + 2)) * ts);
        w->h = ddn_solver_carve(&cur, (size_t)(kg + 2) * ts);
        w->ay = ddn_solver_carve(&cur, (size_t)(3 * m) * sizeof(double));
        w->H = ddn_solver_carve(&cur, (size_t)((kg + 1) * kg) * sizeof(double));
        w->rw = ddn_solver_carve(&cur, (size_t)lrw * sizeof(double));
        w->kgap = kg, w->start = start;
        rec[t] = (ied_thread_rec){.fail_item = -1, .nc_item = -1};
    }

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nws) if (nws > 1)
#endif
    for (int64_t i = 0; i < B; i++) {
        int t = ddn_solver_thread_id();
        ddn_ied_info local;
        ddn_ied_info *inf = out->info ? &out->info[i] : &local;
        *inf = (ddn_ied_info){0};
        ddn_solver_err err = {.status = DDN_OK};
        if (f32) {
            float *lam = out->lambda ? (float *)out->lambda + i : NULL;
            float *V = out->V ? (float *)out->V + i * m * k : NULL;
            float *lams = out->lambdas ? (float *)out->lambdas + i * k : NULL;
            ied_item_f32(i, m, (const float *)A + i * m * m, &o, (float)tol, o.ref,
                         (float *)out->y + i * m, lam, V, lams, &ws[t], inf, &err);
        } else {
            double *lam = out->lambda ? (double *)out->lambda + i : NULL;
            double *V = out->V ? (double *)out->V + i * m * k : NULL;
            double *lams = out->lambdas ? (double *)out->lambdas + i * k : NULL;
            ied_item_f64(i, m, (const double *)A + i * m * m, &o, tol, o.ref,
                         (double *)out->y + i * m, lam, V, lams, &ws[t], inf, &err);
        }
        if (err.status != DDN_OK && rec[t].fail_item < 0) {
            rec[t].fail_item = i;
            rec[t].fail = err;
        } else if (err.status == DDN_OK && !inf->converged && rec[t].nc_item < 0) {
            rec[t].nc_item = i;
            rec[t].nc_step = inf->step;
        }
    }

    int64_t fail = -1, nc = -1;
    double nc_step = 0;
    ddn_solver_err *ferr = NULL;
    for (int t = 0; t < nws; t++) {
        if (rec[t].fail_item >= 0 && (fail < 0 || rec[t].fail_item < fail)) {
            fail = rec[t].fail_item;
            ferr = &rec[t].fail;
        }
        if (rec[t].nc_item >= 0 && (nc < 0 || rec[t].nc_item < nc)) {
            nc = rec[t].nc_item;
            nc_step = rec[t].nc_step;
        }
    }
    const char *meth = o.method == DDN_IED_PI ? "PI" : "SI";
    ddn_status st = DDN_OK;
    if (ferr) {
        st = ddn_ctx_set_error(ctx, ferr->status, "ied_solve: item %lld of %lld (A %lldx%lld, "
                               "%s, %s): %s", (long long)fail, (long long)B, (long long)m,
                               (long long)m, ddn_dtype_name(dtype), meth, ferr->msg);
    } else if (o.strict && nc >= 0) {
        st = ddn_ctx_set_error(ctx, DDN_ERR_NOT_CONVERGED,
                               "ied_solve: item %lld of %lld (A %lldx%lld, %s): %s did not "
                               "converge in %lld iterations (last step %.3g, tol %g)",
                               (long long)nc, (long long)B, (long long)m, (long long)m,
                               ddn_dtype_name(dtype), meth, (long long)o.max_iter, nc_step, tol);
    }
    ddn_ctx_rewind(ctx, mark);
    return st;
}
