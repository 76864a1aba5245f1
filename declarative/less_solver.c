/* ddn — batched LESS solvers: argument checks, scratch, the batch loop, and the EXACT solver.
 *
 * The iterative methods (less_solver_tmpl.h) are written once and compiled for float and double:
 * a float32 problem is iterated in float32, because the stopping rule and the paper's comparisons
 * concern what the method does in the working precision. The EXACT solver (PMAF-MATH §1,
 * Gander 1981) always computes in float64, also for float32 input (converted exactly), and
 * rounds the answer once: it is the oracle the tests and benchmarks certify against, and the
 * secular equation loses digits near its pole (the hard case) in float32.
 * Threading and error slots: solver_util.h. Tests: tests/test_less_solver.c.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "less_impl.h"
#include "less_solver.h"
#include "solver_util.h"

/* One thread's buffers. The typed ones (void *) are float or double as the iterative dtype. */
typedef struct less_ws {
    void *a_cm, *bx, *sv, *work, *uc, *iter; /* gelsd: (m*n), (max(m,n)), (min(m,n)), (lwork) */
    lapack_int *iwork;                       /* (liwork) */
    int64_t lwork;
    /* EXACT (float64): input copies (float32 input only), A^T A -> V, eigenvalues, c, d, u */
    double *Ad, *bd, *M, *lam, *c, *dv, *uu, *yd, *ework; /* (m*n), (m), (n*n), (n) x 5 */
    lapack_int *eiwork;
    int64_t elwork, eliwork;
} less_ws;

/* Scratch (elements) of one iteration: u_new, g, d (n each), r, A d, trial residual (m each). */
#define LESS_ITER_SCRATCH(m, n) (3 * (n) + 3 * (m))

#define T float
#define TS(name) name##_f32
#define XB(fn) cblas_s##fn
#define XL(fn) LAPACKE_s##fn##_work
#include "less_solver_tmpl.h"
#undef T
#undef TS
#undef XB
#undef XL

#define T double
#define TS(name) name##_f64
#define XB(fn) cblas_d##fn
#define XL(fn) LAPACKE_d##fn##_work
#include "less_solver_tmpl.h"
#undef T
#undef TS
#undef XB
#undef XL

/* ---- EXACT: the global minimum (PMAF-MATH §1 "Exact solver") --------------------------------- */
/* With M = A^T A = V diag(l) V^T (l ascending), c = A^T b, d = V^T c, the minimiser is
 * u = V (d / (l - mu)) with mu <= l_1 the root of sum d_i^2 / (l_i - mu)^2 = 1; H = M - mu I is
 * then positive semidefinite, which certifies the global optimum, and nu = mu / 2.
 * We solve in s = l_1 - mu >= 0 with delta_i = l_i - l_1 (no cancellation near the pole):
 *     phi(s) = sum_i d_i^2 / (delta_i + s)^2,   h(s) = 1/sqrt(phi(s)) - 1   (increasing in s),
 * which is nearly linear in s near the pole (each term alone gives (delta + s)/|d| - 1), so
 * Newton converges fast; it is safeguarded by the bracket [D_K, ||d||]: phi(||d||) <= 1 since
 * delta >= 0, and phi(D_K) >= 1 where D_K = ||d_K|| over the cluster K of eigenvalues equal to
 * l_1 within their accuracy (2 max(m,n) eps l_n), whose deltas are snapped to 0.
 * Hard case (D_K = 0 exactly and psi = sum_{i not in K} d_i^2 / delta_i^2 <= 1): mu = l_1, the
 * components outside K as above, and the rest of the unit norm along v_1 (sign fixed so that its
 * largest entry is positive; both signs are optimal). A merely tiny D_K goes through Newton,
 * which then returns s ~ D_K / sqrt(1 - psi) and the same point up to round-off. */
static lapack_int less_syevd_query(int64_t n, int64_t *lwork, int64_t *liwork)
{
    double a[1] = {0}, w[1] = {0}, wq = 0;
    lapack_int iwq = 0;
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)n, a,
                                          (lapack_int)n, w, &wq, -1, &iwq, -1);
    *lwork = ddn_solver_lwork(wq);
    *liwork = (int64_t)iwq + 8;
    return info;
}

/* A (m, n) row-major double, b (m); y (n) out. Uses ws->M, lam, c, dv, uu, ework, eiwork. */
static bool less_exact_core(int64_t m, int64_t n, const double *A, const double *b, double *y,
                            const less_ws *ws, bool *hard, ddn_solver_err *err)
{
    double *M = ws->M, *lam = ws->lam, *c = ws->c, *dv = ws->dv, *uu = ws->uu;
    /* M = A^T A: row-major A is the column-major n x m matrix A^T, and A^T (A^T)^T = A^T A. */
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)n, (int)m, 1.0, A, (int)n, 0.0, M,
                (int)n);
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, 1.0, A, (int)n, b, 1, 0.0, c, 1);
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)n, M,
                                          (lapack_int)n, lam, ws->ework, (lapack_int)ws->elwork,
                                          ws->eiwork, (lapack_int)ws->eliwork);
    if (info != 0) {
        ddn_solver_fail(err, DDN_ERR_BACKEND,
                        "LAPACK syevd (A^T A, %lldx%lld) returned info %d%s", (long long)n,
                        (long long)n, (int)info, info > 0 ? " (did not converge)" : "");
        return false;
    }
    /* M now holds V column-major: v_j = M[j*n .. j*n + n). d = V^T c. */
    cblas_dgemv(CblasColMajor, CblasTrans, (int)n, (int)n, 1.0, M, (int)n, c, 1, 0.0, dv, 1);

    const double l1 = lam[0], ln = lam[n - 1] > 0 ? lam[n - 1] : 0;
    const double tau = 2.0 * (double)(m > n ? m : n) * DBL_EPSILON * ln;
    double dk2 = 0, dnorm2 = 0, psi = 0;
    for (int64_t i = 0; i < n; i++) {
        double delta = lam[i] - l1;
        uu[i] = delta <= tau ? 0.0 : delta; /* snapped deltas, kept in uu for now */
        dnorm2 += dv[i] * dv[i];
        if (uu[i] == 0) dk2 += dv[i] * dv[i];
        else psi += (dv[i] / uu[i]) * (dv[i] / uu[i]);
    }
    const double dk = sqrt(dk2), dnorm = sqrt(dnorm2);
    *hard = dk == 0 && psi <= 1;
    if (*hard) {
        /* mu = l_1: u_i = d_i / delta_i off the cluster, the remaining norm on v_1. */
        double *v1 = M;
        int64_t imax = 0;
        for (int64_t i = 1; i < n; i++)
            if (fabs(v1[i]) > fabs(v1[imax])) imax = i;
        double sgn = v1[imax] < 0 ? -1.0 : 1.0;
        for (int64_t i = 0; i < n; i++) uu[i] = uu[i] == 0 ? 0.0 : dv[i] / uu[i];
        uu[0] = sgn * sqrt(1.0 - psi);
    } else {
        double lo = dk, hi = dnorm, s = dk;
        for (int iter = 0; iter < 300; iter++) {
            double phi = 0, dphi = 0; /* phi and sum p_i^2 / (delta_i + s) */
            for (int64_t i = 0; i < n; i++) {
                if (dv[i] == 0) continue;
                double den = uu[i] + s, p = dv[i] / den;
                phi += p * p;
                dphi += p * p / den;
            }
            double h = 1.0 / sqrt(phi) - 1.0;
            if (h == 0) break;
            if (h < 0) lo = s > lo ? s : lo;
            else hi = s < hi ? s : hi;
            double hp = dphi / (phi * sqrt(phi)); /* h'(s) > 0 */
            double sn = s - h / hp;
            if (!(sn > lo && sn < hi)) sn = 0.5 * (lo + hi);
            bool done = fabs(sn - s) <= 4 * DBL_EPSILON * sn || hi - lo <= 4 * DBL_EPSILON * hi;
            s = sn;
            if (done) break;
        }
        for (int64_t i = 0; i < n; i++) uu[i] = dv[i] / (uu[i] + s);
    }
    double un = cblas_dnrm2((int)n, uu, 1);
    for (int64_t i = 0; i < n; i++) uu[i] /= un;
    cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)n, 1.0, M, (int)n, uu, 1, 0.0, y, 1);
    double yn = cblas_dnrm2((int)n, y, 1);
    for (int64_t i = 0; i < n; i++) y[i] /= yn;
    return true;
}

/* One item, EXACT. A, b, y of `dtype`; rcond for the centre from the input's precision. */
static void less_exact_item(ddn_dtype dtype, int64_t m, int64_t n, const void *A, const void *b,
                            void *y, double rcond, const less_ws *ws, ddn_less_info *inf,
                            ddn_solver_err *err)
{
    const double *Ad, *bd;
    int bad;
    if (dtype == DDN_DTYPE_F32) {
        const float *Af = A, *bf = b;
        bad = less_check_input_f32(m, n, Af, bf);
        for (int64_t i = 0; i < m * n; i++) ws->Ad[i] = Af[i];
        for (int64_t j = 0; j < m; j++) ws->bd[j] = bf[j];
        Ad = ws->Ad;
        bd = ws->bd;
    } else {
        Ad = A;
        bd = b;
        bad = less_check_input_f64(m, n, Ad, bd);
    }
    if (bad) {
        ddn_solver_fail(err, bad == 1 ? DDN_ERR_NUMERIC : DDN_ERR_SINGULAR,
                        bad == 1 ? "A or b contains NaN or Inf"
                                 : "A is zero: every unit vector is optimal, no unique solution");
        return;
    }
    double *uc = ws->uc;
    lapack_int info = less_center_f64(m, n, Ad, bd, rcond, ws->a_cm, ws->bx, ws->sv, ws->work,
                                      ws->lwork, ws->iwork, uc);
    if (info != 0) {
        ddn_solver_fail(err, DDN_ERR_BACKEND,
                        "LAPACK gelsd (least-squares centre, %lldx%lld) returned info %d",
                        (long long)m, (long long)n, (int)info);
        return;
    }
    inf->center_norm = cblas_dnrm2((int)n, uc, 1);
    inf->inner = inf->center_norm < 1;
    inf->iterations = 0;
    inf->converged = true;
    double *yd = dtype == DDN_DTYPE_F32 ? ws->yd : y;
    if (!less_exact_core(m, n, Ad, bd, yd, ws, &inf->hard_case, err)) return;
    if (dtype == DDN_DTYPE_F32) {
        float *yf = y;
        for (int64_t i = 0; i < n; i++) yf[i] = (float)yd[i];
        if (!less_diag_f32(m, n, A, b, yf, inf))
            ddn_solver_fail(err, DDN_ERR_NUMERIC, "the solution is not finite (overflow?)");
    } else if (!less_diag_f64(m, n, Ad, bd, yd, inf)) {
        ddn_solver_fail(err, DDN_ERR_NUMERIC, "the solution is not finite (overflow?)");
    }
}

/* ---- options ------------------------------------------------------------------------------- */
const unsigned ddn_less_table4[DDN_LESS_TABLE4_COUNT] = {
    DDN_LESS_PGD,
    DDN_LESS_PGD | DDN_LESS_DW,
    DDN_LESS_PGD | DDN_LESS_RM,
    DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE,
    DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE | DDN_LESS_DW,
    DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_GRAD,
    DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_GRAD | DDN_LESS_DW,
    DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD,
    DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD | DDN_LESS_DW,
};

const char *ddn_less_method_name(unsigned method, char *buf, size_t size)
{
    if (!buf || size == 0) return "";
    buf[0] = '\0';
    if (method == DDN_LESS_EXACT) {
        snprintf(buf, size, "EXACT");
        return buf;
    }
    snprintf(buf, size, "%s%s%s%s%s%s", (method & DDN_LESS_PGD) ? "PGD" : "?",
             (method & DDN_LESS_RM) ? "+RM" : "", (method & DDN_LESS_BLS_ONE) ? "+BLSOne" : "",
             (method & DDN_LESS_BLS_GRAD) ? "+BLSGrad" : "", (method & DDN_LESS_TWD) ? "+TWD" : "",
             (method & DDN_LESS_DW) ? "+DW" : "");
    return buf;
}

/* NULL when the set is valid, else why not. */
static const char *less_method_problem(unsigned m)
{
    const unsigned all = DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD |
                         DDN_LESS_TWD | DDN_LESS_DW | DDN_LESS_EXACT;
    if (m == 0) return "method is 0 (start from DDN_LESS_OPTS_DEFAULT)";
    if (m & ~all) return "unknown method bits";
    if (m & DDN_LESS_EXACT) return m == DDN_LESS_EXACT ? NULL : "EXACT takes no other flag";
    if (!(m & DDN_LESS_PGD)) return "every iterative method includes DDN_LESS_PGD";
    if ((m & DDN_LESS_BLS_ONE) && (m & DDN_LESS_BLS_GRAD))
        return "BLS_ONE and BLS_GRAD are exclusive";
    bool bls = m & (DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD), twd = m & DDN_LESS_TWD;
    if ((bls || twd) && !(m & DDN_LESS_RM))
        return "BLS and TWD act in the tangent space and need DDN_LESS_RM (Table 4)";
    if (bls && twd) return "BLS and TWD are exclusive (no Table 4 row combines them)";
    return NULL;
}

/* ---- the batched entry point ---------------------------------------------------------------- */
typedef struct less_thread_rec {
    int64_t fail_item, nc_item; /* lowest failing / non-converged item of this thread, or -1 */
    ddn_solver_err fail;
} less_thread_rec;

ddn_status ddn_less_check_opts(ddn_ctx *ctx, const char *op, const ddn_less_opts *o)
{
    const char *why = less_method_problem(o->method);
    if (why) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: invalid method: %s", op, why);
    if (!(o->tol >= 0) || o->max_iter < 0 || !(o->bls_alpha > 0 && o->bls_alpha < 1) ||
        !(o->bls_beta > 0 && o->bls_beta < 1) || !(o->twd_beta > 0 && o->twd_beta < 1))
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG,
                                 "%s: invalid options: tol %g (>= 0), max_iter %lld "
                                 "(>= 0), bls_alpha %g, bls_beta %g, twd_beta %g (each in (0,1))",
                                 op, o->tol, (long long)o->max_iter, o->bls_alpha, o->bls_beta,
                                 o->twd_beta);
    return DDN_OK;
}

ddn_status ddn_less_report(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                           const ddn_less_opts *o, int64_t fail, const ddn_solver_err *ferr,
                           int64_t nc)
{
    char name[64];
    if (fail >= 0)
        return ddn_ctx_set_error(ctx, ferr->status, "less_solve: item %lld of %lld (A "
                                 "%lldx%lld, %s): %s", (long long)fail, (long long)B,
                                 (long long)m, (long long)n, ddn_dtype_name(dtype), ferr->msg);
    if (o->strict && nc >= 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_NOT_CONVERGED,
                                 "less_solve: item %lld of %lld (A %lldx%lld, %s): %s did not "
                                 "converge in %lld iterations (tol %g on the objective change)",
                                 (long long)nc, (long long)B, (long long)m, (long long)n,
                                 ddn_dtype_name(dtype),
                                 ddn_less_method_name(o->method, name, sizeof name),
                                 (long long)o->max_iter, o->tol);
    return DDN_OK;
}

/* The batch: every item solved (uc NULL), or only started (uc (B, n) receives pinv(A) b, y the
 * projected start, and errs (B) each item's start failure, reported by the caller). */
static ddn_status less_batch(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                             const void *A, const void *b, void *y, const ddn_less_opts *opts,
                             ddn_less_info *info, void *uc_out, ddn_solver_err *errs)
{
    if (!ctx) return DDN_ERR_ARG;
    if (!A || !b || !y)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less_solve: A, b and y must not be NULL");
    if (dtype != DDN_DTYPE_F32 && dtype != DDN_DTYPE_F64)
        return ddn_ctx_set_error(ctx, DDN_ERR_DTYPE,
                                 "less_solve: dtype %d is not float32 or float64", (int)dtype);
    /* LAPACK/CBLAS take 32-bit sizes; m*n must also fit (leading dimensions, gelsd copies). */
    if (B < 0 || m < 1 || n < 1 || m > INT32_MAX / n)
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE,
                                 "less_solve: A (%lld,%lld,%lld): expected B >= 0, m, n >= 1 and "
                                 "m*n < 2^31",
                                 (long long)B, (long long)m, (long long)n);
    ddn_less_opts o = opts ? *opts : DDN_LESS_OPTS_DEFAULT;
    ddn_status cst = ddn_less_check_opts(ctx, "less_solve", &o);
    if (cst != DDN_OK) return cst;
    if (uc_out && o.method == DDN_LESS_EXACT)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less_solve: EXACT has no iterative start");
    if (B == 0) return DDN_OK;

    const bool exact = o.method == DDN_LESS_EXACT;
    const bool f32 = dtype == DDN_DTYPE_F32;
    /* The iterative path works in the dtype; EXACT runs everything (centre too) in float64. */
    const bool work_f32 = f32 && !exact;
    const size_t ts = work_f32 ? sizeof(float) : sizeof(double);
    const int64_t mx = m > n ? m : n, mn = m < n ? m : n;
    /* Singular values below max(m,n) eps sigma_max are noise at the input's precision. */
    const double rcond = (double)mx * (f32 ? FLT_EPSILON : DBL_EPSILON);

    int64_t lwork = 0, liwork = 0, elwork = 0, eliwork = 0;
    lapack_int qinfo = work_f32 ? less_gelsd_query_f32(m, n, &lwork, &liwork)
                                : less_gelsd_query_f64(m, n, &lwork, &liwork);
    if (qinfo == 0 && exact) qinfo = less_syevd_query(n, &elwork, &eliwork);
    if (qinfo != 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND,
                                 "less_solve: LAPACK workspace query for %lldx%lld returned %d",
                                 (long long)m, (long long)n, (int)qinfo);

    size_t per = ddn_solver_align((size_t)(m * n) * ts) + ddn_solver_align((size_t)mx * ts) +
                 ddn_solver_align((size_t)mn * ts) + ddn_solver_align((size_t)lwork * ts) +
                 ddn_solver_align((size_t)liwork * sizeof(lapack_int)) +
                 ddn_solver_align((size_t)n * ts) +
                 ddn_solver_align((size_t)LESS_ITER_SCRATCH(m, n) * ts);
    if (exact)
        per += (f32 ? ddn_solver_align((size_t)(m * n + m) * sizeof(double)) : 0) +
               ddn_solver_align((size_t)(n * n + 5 * n) * sizeof(double)) +
               ddn_solver_align((size_t)elwork * sizeof(double)) +
               ddn_solver_align((size_t)eliwork * sizeof(lapack_int));
    const int nth = ddn_solver_threads(B);

    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *cur = ddn_ctx_scratch(ctx, per * (size_t)nth + 64 +
                                                  (size_t)nth * sizeof(less_thread_rec));
    if (!cur) return ddn_ctx_status(ctx);
    less_thread_rec *rec = ddn_solver_carve(&cur, (size_t)nth * sizeof(less_thread_rec));
    less_ws ws[64];
    int nws = nth < 64 ? nth : 64;
    for (int t = 0; t < nws; t++) {
        less_ws *w = &ws[t];
        memset(w, 0, sizeof *w);
        w->a_cm = ddn_solver_carve(&cur, (size_t)(m * n) * ts);
        w->bx = ddn_solver_carve(&cur, (size_t)mx * ts);
        w->sv = ddn_solver_carve(&cur, (size_t)mn * ts);
        w->work = ddn_solver_carve(&cur, (size_t)lwork * ts);
        w->lwork = lwork;
        w->iwork = ddn_solver_carve(&cur, (size_t)liwork * sizeof(lapack_int));
        w->uc = ddn_solver_carve(&cur, (size_t)n * ts);
        w->iter = ddn_solver_carve(&cur, (size_t)LESS_ITER_SCRATCH(m, n) * ts);
        if (exact) {
            if (f32) {
                w->Ad = ddn_solver_carve(&cur, (size_t)(m * n + m) * sizeof(double));
                w->bd = w->Ad + m * n;
            }
            w->M = ddn_solver_carve(&cur, (size_t)(n * n + 5 * n) * sizeof(double));
            w->lam = w->M + n * n;
            w->c = w->lam + n;
            w->dv = w->c + n;
            w->uu = w->dv + n;
            w->yd = w->uu + n;
            w->ework = ddn_solver_carve(&cur, (size_t)elwork * sizeof(double));
            w->elwork = elwork;
            w->eiwork = ddn_solver_carve(&cur, (size_t)eliwork * sizeof(lapack_int));
            w->eliwork = eliwork;
        }
        rec[t] = (less_thread_rec){.fail_item = -1, .nc_item = -1};
    }

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nws) if (nws > 1)
#endif
    for (int64_t i = 0; i < B; i++) {
        int t = ddn_solver_thread_id();
        const less_ws *w = &ws[t];
        ddn_less_info local = {0};
        ddn_less_info *inf = info ? &info[i] : &local;
        *inf = (ddn_less_info){0};
        ddn_solver_err err = {.status = DDN_OK};
        if (exact) {
            size_t es = f32 ? sizeof(float) : sizeof(double);
            less_exact_item(dtype, m, n, (const char *)A + (size_t)(i * m * n) * es,
                            (const char *)b + (size_t)(i * m) * es,
                            (char *)y + (size_t)(i * n) * es, rcond, w, inf, &err);
        } else if (uc_out) {
            /* start only: the iterations run elsewhere (the device forward, less.c) */
            size_t es = f32 ? sizeof(float) : sizeof(double);
            bool ok = f32 ? less_start_f32(m, n, (const float *)A + i * m * n,
                                           (const float *)b + i * m, (float *)y + i * n,
                                           (float)rcond, w, inf, &err)
                          : less_start_f64(m, n, (const double *)A + i * m * n,
                                           (const double *)b + i * m, (double *)y + i * n,
                                           rcond, w, inf, &err);
            memcpy((char *)uc_out + (size_t)(i * n) * es, w->uc, (size_t)n * es);
            if (!ok) memset((char *)y + (size_t)(i * n) * es, 0, (size_t)n * es);
            errs[i] = err;
            continue;
        } else if (f32) {
            less_item_f32(i, m, n, (const float *)A + i * m * n, (const float *)b + i * m,
                          (float *)y + i * n, &o, (float)rcond, w, inf, &err);
        } else {
            less_item_f64(i, m, n, (const double *)A + i * m * n, (const double *)b + i * m,
                          (double *)y + i * n, &o, rcond, w, inf, &err);
        }
        /* Items run in increasing order within a thread, so the first record is the lowest. */
        if (err.status != DDN_OK && rec[t].fail_item < 0) {
            rec[t].fail_item = i;
            rec[t].fail = err;
        } else if (err.status == DDN_OK && !inf->converged && rec[t].nc_item < 0) {
            rec[t].nc_item = i;
        }
    }

    int64_t fail = -1, nc = -1;
    ddn_solver_err *ferr = NULL;
    for (int t = 0; t < nws; t++) {
        if (rec[t].fail_item >= 0 && (fail < 0 || rec[t].fail_item < fail)) {
            fail = rec[t].fail_item;
            ferr = &rec[t].fail;
        }
        if (rec[t].nc_item >= 0 && (nc < 0 || rec[t].nc_item < nc)) nc = rec[t].nc_item;
    }
    ddn_status st = uc_out ? DDN_OK : ddn_less_report(ctx, dtype, B, m, n, &o, fail, ferr, nc);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_less_solve(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                          const void *A, const void *b, void *y, const ddn_less_opts *opts,
                          ddn_less_info *info)
{
    return less_batch(ctx, dtype, B, m, n, A, b, y, opts, info, NULL, NULL);
}

ddn_status ddn_less_solve_start(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                                const void *A, const void *b, void *uc, void *y,
                                const ddn_less_opts *opts, ddn_less_info *info,
                                ddn_solver_err *errs)
{
    if (!uc || !info || !errs)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less_solve start: uc, info and errs must "
                                 "not be NULL");
    return less_batch(ctx, dtype, B, m, n, A, b, y, opts, info, uc, errs);
}
