/* ddn — batched IED solvers (PI, SI): argument checks, scratch, the batch loop.
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

#include "ied_solver.h"
#include "solver_util.h"

/* One thread's buffers; the typed ones are float or double as the dtype. */
typedef struct ied_ws {
    void *Q, *Z, *tau, *work, *x, *w; /* (m*k), (m*k), (k), (lwork), (m), (m) */
    double *ay;                       /* (m) */
    int64_t lwork;
} ied_ws;

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
    size_t per = 2 * ddn_solver_align((size_t)(m * k) * ts) + ddn_solver_align((size_t)k * ts) +
                 ddn_solver_align((size_t)lwork * ts) + 2 * ddn_solver_align((size_t)m * ts) +
                 ddn_solver_align((size_t)m * sizeof(double));
    const int nth = ddn_solver_threads(B);
    const int nws = nth < 64 ? nth : 64;

    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *cur = ddn_ctx_scratch(ctx, per * (size_t)nws + 64 +
                                                  (size_t)nws * sizeof(ied_thread_rec));
    if (!cur) return ddn_ctx_status(ctx);
    ied_thread_rec *rec = ddn_solver_carve(&cur, (size_t)nws * sizeof(ied_thread_rec));
    ied_ws ws[64];
    for (int t = 0; t < nws; t++) {
        ied_ws *w = &ws[t];
        w->Q = ddn_solver_carve(&cur, (size_t)(m * k) * ts);
        w->Z = ddn_solver_carve(&cur, (size_t)(m * k) * ts);
        w->tau = ddn_solver_carve(&cur, (size_t)k * ts);
        w->work = ddn_solver_carve(&cur, (size_t)lwork * ts);
        w->lwork = lwork;
        w->x = ddn_solver_carve(&cur, (size_t)m * ts);
        w->w = ddn_solver_carve(&cur, (size_t)m * ts);
        w->ay = ddn_solver_carve(&cur, (size_t)m * sizeof(double));
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
