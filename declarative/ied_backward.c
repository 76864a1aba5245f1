/* ddn — the IED layer's implicit VJPs (PMAF-MATH.md §2), per item, in float64 whatever the input
 * dtype (a float32 forward keeps float32; the small dense solve is done in double for accuracy,
 * then the gradient is rounded to the input's dtype):
 *   DDN  bordered KKT system [H 2y; 2y^T 0] [w; mu] = [v; 0], H = 2 lambda I - (A + A^T)
 *        (= 2(lambda I - A), singular on y: never inverted), dL/dA = w y^T + y w^T (Eq. 33);
 *        one LU factorisation per item;
 *   IFT  fixed point y = A y / ||A y||: H = I - P A / lambda, P = I - y y^T, H^T k = v,
 *        dL/dA = (P k) y^T / lambda (Eq. 39), lambda = sign(y^T A y) ||A y||. IFT_E solves
 *        H^T k = v by the fixed-point (Neumann) iteration, O(m^2) per sweep, and falls back to
 *        the LU with its condition check when that does not converge (ift_neumann);
 *   J    the explicit Jacobian dy/dA (m x m^2, memory m^3: Eq. 30-32, 40) contracted with v;
 *   EIGH (lambda I - A)^+ v y^T from the saved syevd factorisation, symmetrised as torch does.
 * Items run in parallel (OpenMP) by solver_util.h's rule, except the J modes (m^3 scratch).
 * A on a device other than the CPU, in the E modes: the backend's ied_vjp_e kernel (the block
 * algorithm of ied_backward_blk.h) solves every item where A lives (ddn_ied_vjp_e_device_).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "ddn_impl.h"
#include "ied_backward_blk.h" /* (T undefined: the constants the device path shares) */
#include "ied_impl.h"
#include "solver_util.h"

/* An item's failure, formatted inside the parallel loop (ddn_ctx_set_error is not thread-safe)
 * and reported after it, lowest item first: the message the serial loop gave. */
typedef struct bwd_err {
    ddn_status status;
    char msg[400];
} bwd_err;

static ddn_status bwd_fail(bwd_err *e, ddn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ddn_status bwd_fail(bwd_err *e, ddn_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = s;
    return s;
}

/* LU (column-major, n x n) in place, then a 1-norm condition estimate. The systems are scaled to
 * be independent of A's scale, and lambda, y, A y carry rounding of about m eps, so an exactly
 * singular system (a tied eigenvalue) shows up with rcond of a few eps (measured: 1.1e-15 at
 * n = 4 for diag(5, 5, 1), 0 for its IFT H; the tests' random matrices: >= 4e-3). Below
 * SINGULAR_RCOND n eps it is DDN_ERR_SINGULAR naming the item. Near ties well above that are the
 * solver's gap check's job (tie_tol, on by default). */
#define SINGULAR_RCOND DDN_IED_SINGULAR_RCOND

static ddn_status fail_singular(bwd_err *err, ddn_ied_backward mode, const char *what,
                                int64_t item, int64_t B, int64_t n, double rcond)
{
    return bwd_fail(err, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld: the %s (%lldx%lld) is "
                    "singular (reciprocal condition %.3g): the dominant eigenvalue is repeated or "
                    "not separated, so y has no derivative", ddn_ied_mode_name_(mode),
                    (long long)item, (long long)B, what, (long long)n, (long long)n, rcond);
}

static ddn_status fail_ay_zero(bwd_err *err, ddn_ied_backward mode, int64_t item, int64_t B)
{
    return bwd_fail(err, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld: A y = 0: the fixed "
                    "point y = A y / ||A y|| is undefined", ddn_ied_mode_name_(mode),
                    (long long)item, (long long)B);
}

/* Non-finite input gives a status, never NaN gradients (DESIGN.md): A y (A or y; the forward
 * refuses a non-finite A, so only a direct call or an overflow gets here) and the upstream v. */
static ddn_status fail_nonfinite(bwd_err *err, ddn_ied_backward mode, bool in_v, int64_t item,
                                 int64_t B, int64_t m)
{
    return bwd_fail(err, DDN_ERR_NUMERIC, "ied (%s): item %lld of %lld (A %lldx%lld): %s",
                    ddn_ied_mode_name_(mode), (long long)item, (long long)B, (long long)m,
                    (long long)m, in_v ? "the upstream gradient dL/dy contains NaN or Inf"
                                       : "A y is not finite (A or y contains NaN or Inf)");
}

/* The two checks in that order; false (err set) when one fails. ay = A y (m). */
static bool inputs_finite(bwd_err *err, ddn_ied_backward mode, int64_t item, int64_t B,
                          int64_t m, const double *ay, const double *v)
{
    bool v_ok = true;
    for (int64_t i = 0; i < m; i++) v_ok &= isfinite(v[i]) != 0;
    const bool a_ok = isfinite(cblas_dnrm2((int)m, ay, 1)) != 0;
    if (!a_ok || !v_ok) fail_nonfinite(err, mode, a_ok, item, B, m);
    return a_ok && v_ok;
}

static ddn_status fail_tied(bwd_err *err, const ied_node_opts *no, ddn_ied_backward mode,
                            int64_t item, int64_t B, int64_t m)
{
    const bool ddn = mode == DDN_IED_BACKWARD_DDN_E || mode == DDN_IED_BACKWARD_DDN_J;
    return bwd_fail(err, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld (A %lldx%lld): the "
                    "dominant eigenvalue is repeated or nearly so (the solver's gap check, "
                    "tie_tol %g): y is not unique and the %s system is singular",
                    ddn_ied_mode_name_(mode), (long long)item, (long long)B, (long long)m,
                    (long long)m, no->o.tie_tol, ddn ? "bordered KKT" : "IFT");
}

static const char *const KKT_SYSTEM = "bordered KKT system [H 2y; 2y^T 0]";
static const char *const IFT_SYSTEM = "IFT Jacobian H = I - P A / lambda";

static ddn_status lu_checked(bwd_err *err, ddn_ied_backward mode, const char *what, int64_t item,
                             int64_t B, int64_t n, double *K, lapack_int *piv)
{
    double anorm = LAPACKE_dlange(LAPACK_COL_MAJOR, '1', (lapack_int)n, (lapack_int)n, K,
                                  (lapack_int)n);
    lapack_int info = LAPACKE_dgetrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)n, K,
                                     (lapack_int)n, piv);
    double rcond = 0;
    if (info == 0)
        info = LAPACKE_dgecon(LAPACK_COL_MAJOR, '1', (lapack_int)n, K, (lapack_int)n, anorm,
                              &rcond);
    if (info < 0)
        return bwd_fail(err, DDN_ERR_BACKEND, "ied (%s): item %lld of %lld: LAPACK "
                                 "getrf/gecon (%lldx%lld) returned info %d",
                                 ddn_ied_mode_name_(mode), (long long)item, (long long)B,
                                 (long long)n, (long long)n, (int)info);
    if (info > 0 || !(rcond > SINGULAR_RCOND * (double)n * DBL_EPSILON))
        return fail_singular(err, mode, what, item, B, n, rcond);
    return DDN_OK;
}

static ddn_status solve_failed(bwd_err *err, ddn_ied_backward mode, int64_t item, lapack_int info)
{
    return bwd_fail(err, DDN_ERR_BACKEND, "ied (%s): item %lld: LAPACK getrs returned "
                             "info %d", ddn_ied_mode_name_(mode), (long long)item, (int)info);
}

/* DDN, one item: DDN_E writes w (m), the gradient being w y^T + y w^T; DDN_J writes g (m x m,
 * row-major) = dL/dA. y of unit norm. K, X: scratch of (m+1)^2 and (m+1) m^2 (J). */
static ddn_status ddn_item(bwd_err *err, ddn_ied_backward mode, int64_t b, int64_t B, int64_t m,
                           const double *A, const double *y, const double *v, double *K,
                           double *X, double *tmp, lapack_int *piv, double *g)
{
    const int64_t n = m + 1;
    /* The multiplier: lambda = y^T A y, the Rayleigh quotient of the unit y (Prop. 3.2). */
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, tmp, 1);
    const double lam = cblas_ddot((int)m, y, 1, tmp, 1);
    if (!inputs_finite(err, mode, b, B, m, tmp, v)) return err->status;
    /* K = [H 2sy; 2sy^T 0] column-major, H = 2 lam I - (A + A^T) (PMAF-MATH §2; K symmetric).
     * The border is scaled by s = |lambda| (the solution's mu by 1/s, w unchanged) so that the
     * condition estimate does not depend on A's scale. */
    const double s = lam != 0 ? fabs(lam) : 1;
    for (int64_t j = 0; j < m; j++) {
        for (int64_t i = 0; i < m; i++)
            K[i + j * n] = -(A[i * m + j] + A[j * m + i]) + (i == j ? 2 * lam : 0);
        K[m + j * n] = 2 * s * y[j];
        K[j + m * n] = 2 * s * y[j];
    }
    K[m + m * n] = 0;
    ddn_status st = lu_checked(err, mode, KKT_SYSTEM, b, B, n, K, piv);
    if (st != DDN_OK) return st;
    lapack_int info;
    if (mode == DDN_IED_BACKWARD_DDN_E) {
        double *w = X; /* [w; mu] */
        memcpy(w, v, (size_t)m * sizeof *w);
        w[m] = 0;
        info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', (lapack_int)n, 1, K, (lapack_int)n, piv, w,
                              (lapack_int)n);
        if (info != 0) return solve_failed(err, mode, b, info);
        memcpy(g, w, (size_t)m * sizeof *g); /* the gradient is w y^T + y w^T */
        return DDN_OK;
    }
    /* DDN_J: column (j,k) of the right-hand side is -[B; 0] with B_{i,(j,k)} = -(d_ij y_k +
     * d_ik y_j) (Eq. 30-32); the solution's top m rows are the Jacobian dy/dA_{jk}. */
    const int64_t c = m * m;
    memset(X, 0, (size_t)(n * c) * sizeof *X);
    for (int64_t j = 0; j < m; j++)
        for (int64_t k = 0; k < m; k++) {
            double *col = X + (j * m + k) * n;
            col[j] += y[k];
            col[k] += y[j];
        }
    info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)c, K, (lapack_int)n,
                          piv, X, (lapack_int)n);
    if (info != 0) return solve_failed(err, mode, b, info);
    cblas_dgemv(CblasColMajor, CblasTrans, (int)m, (int)c, 1.0, X, (int)n, v, 1, 0.0, g, 1);
    return DDN_OK;
}

/* ---- IFT_E without the O(m^3) LU: the fixed-point (Neumann) iteration ------------------------
 * H^T = I - M, M = A^T P / lambda, so H^T k = v is the fixed point of k <- v + M k, and the step
 * k_{t+1} - k_t = v - H^T k_t is exactly the residual of k_t: no extra matvec to check it. M's
 * spectrum is {0 (on y)} plus the rest of A's spectrum over lambda (P A is block triangular in
 * the basis [y, complement], PMAF-MATH §2), so the sweeps converge at PI's own rate
 * |lambda_2 / lambda| (0.07-0.2 on the paper's matrices: 12-20 sweeps to 1e-12). One sweep is one
 * m x m matvec (O(m^2)) instead of the LU's (2/3) m^3 + a condition estimate.
 *
 * Guarantees kept: a tie (|lambda_2| = |lambda|) means rho(M) = 1 and H singular; then the
 * iteration cannot converge and the LU's condition check reports DDN_ERR_SINGULAR as before. But
 * an iteration on v alone could converge for a v that happens to miss the tied direction; so a
 * second column, a fixed pseudo-random probe z (components on every eigenvector with probability
 * 1), is iterated alongside (one dgemm with two columns costs what one dgemv does: measured 10 us
 * either way at m = 256), and the Neumann answer is taken only when both columns meet the
 * tolerance. Convergence of z within the budget bounds rho(M) well below 1 (1e-12 in 64 sweeps:
 * rho <~ 0.7 unless z nearly misses the slow eigenvector; for symmetric A then cond(H) <~ 6), so
 * every case it accepts is one the LU's condition check accepts (it refuses cond >~ 1e11), and
 * every case it rejects goes to that check. The iteration gives up
 * early when its observed contraction (over the last 3 sweeps) predicts that it will not make
 * the budget, so a hopeless case costs a few sweeps on top of the LU. */
#define IFT_NEUMANN_TOL DDN_IED_NEUMANN_TOL /* relative residual ||H^T k - v|| / ||v|| (and z) */

/* The sweep budget (ddn_iedb_budget), m/4 and at least 32: at m = 256, 64 sweeps (~12 us each,
 * measured) cost about half the LU + gecon they replace (~1.6 ms), so even a case that exhausts
 * the budget and falls back costs at most ~1.5x the LU alone; at small m both are cheap. */
static int64_t ift_budget(int64_t m) { return ddn_iedb_budget(m); }

/* The probe z (m): fixed pseudo-random N(0,1) entries, made once per backward call. */
void ddn_ied_ift_probe_(int64_t m, double *z)
{
    ddn_rng g;
    ddn_rng_seed(&g, 0x1F7E5EEDULL);
    for (int64_t i = 0; i < m; i++) z[i] = ddn_rng_normal(&g);
}

/* k (m) <- the Neumann solution of H^T k = v; z: the probe (ift_probe); w: 6 m scratch. Returns
 * whether it converged; *sweeps: sweeps run. A row-major, y unit, lam = sign(y^T A y) ||A y||. */
static bool ift_neumann(int64_t m, const double *A, const double *y, double lam, const double *v,
                        const double *z, double *w, double *k, int64_t *sweeps)
{
    double *K0 = w, *K1 = w + 2 * m, *PK = w + 4 * m; /* (m, 2) column-major */
    memcpy(K0, v, (size_t)m * sizeof *K0);
    memcpy(K0 + m, z, (size_t)m * sizeof *K0);
    const double nv = cblas_dnrm2((int)m, v, 1), nz = cblas_dnrm2((int)m, z, 1);
    const int64_t budget = ift_budget(m);
    double hist[4] = {0};
    *sweeps = 0;
    for (int64_t t = 1; t <= budget; t++) {
        for (int c = 0; c < 2; c++) {
            const double *kc = K0 + c * m;
            double s = cblas_ddot((int)m, y, 1, kc, 1);
            for (int64_t i = 0; i < m; i++) PK[c * m + i] = kc[i] - s * y[i];
        }
        /* K1 = A^T P K / lambda: row-major A read as column-major is A^T */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, 2, (int)m, 1 / lam, A,
                    (int)m, PK, (int)m, 0.0, K1, (int)m);
        double r0 = 0, r1 = 0;
        for (int64_t i = 0; i < m; i++) {
            K1[i] += v[i];
            K1[m + i] += z[i];
            double d0 = K1[i] - K0[i], d1 = K1[m + i] - K0[m + i];
            r0 += d0 * d0, r1 += d1 * d1;
        }
        double *tmp = K0;
        K0 = K1, K1 = tmp;
        *sweeps = t;
        /* v = 0 keeps its column exactly 0 (r0 = 0) */
        double rel = fmax(nv > 0 ? sqrt(r0) / nv : sqrt(r0), sqrt(r1) / nz);
        if (rel <= IFT_NEUMANN_TOL) {
            memcpy(k, K0, (size_t)m * sizeof *k);
            return true;
        }
        if (!isfinite(rel)) return false;
        hist[t % 4] = rel;
        if (t >= 4) {
            double rate = cbrt(rel / hist[(t - 3) % 4]);
            if (!(rate < 1)) return false; /* not contracting: rho(M) >= 1 or transient growth */
            if ((double)t + log(IFT_NEUMANN_TOL / rel) / log(rate) > (double)budget) return false;
        }
    }
    return false;
}

/* Solves H^T k = v for one item by `path`; sets *lam_out (the IFT lambda), *used and *sweeps.
 * z: the probe; K: m^2, piv: m, w: 8 m scratch. */
static ddn_status ift_solve(bwd_err *err, ddn_ied_backward mode, ddn_ied_ift_path path, int64_t b,
                            int64_t B, int64_t m, const double *A, const double *y,
                            const double *v, const double *z, double *K, lapack_int *piv,
                            double *w, double *k, double *lam_out, ddn_ied_ift_path *used,
                            int64_t *sweeps)
{
    double *ay = w + 6 * m, *ya = w + 7 * m;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, ay, 1);
    double nay = cblas_dnrm2((int)m, ay, 1), rq = cblas_ddot((int)m, y, 1, ay, 1);
    /* lambda = ||A y|| (PMAF-MATH §2) with the sign of the eigenvalue: the historical-sign PI
     * converges to y = sign(lambda) A y / ||A y|| when the dominant eigenvalue is negative. */
    const double lam = rq < 0 ? -nay : nay;
    *lam_out = lam;
    *sweeps = 0;
    if (!inputs_finite(err, mode, b, B, m, ay, v)) return err->status;
    if (!(nay > 0)) return fail_ay_zero(err, mode, b, B);
    if (path != DDN_IED_IFT_LU && ift_neumann(m, A, y, lam, v, z, w, k, sweeps)) {
        *used = DDN_IED_IFT_NEUMANN;
        return DDN_OK;
    }
    if (path == DDN_IED_IFT_NEUMANN)
        return bwd_fail(err, DDN_ERR_NOT_CONVERGED, "ied (%s): item %lld of %lld: the fixed-point "
                        "iteration for H^T k = v did not converge in %lld sweeps",
                        ddn_ied_mode_name_(mode), (long long)b, (long long)B, (long long)*sweeps);
    /* H = I - P A / lambda, (P A)_ij = A_ij - y_i (y^T A)_j; column-major. */
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, ya, 1);
    for (int64_t j = 0; j < m; j++)
        for (int64_t i = 0; i < m; i++)
            K[i + j * m] = (i == j ? 1.0 : 0.0) - (A[i * m + j] - y[i] * ya[j]) / lam;
    ddn_status st = lu_checked(err, mode, IFT_SYSTEM, b, B, m, K, piv);
    if (st != DDN_OK) return st;
    memcpy(k, v, (size_t)m * sizeof *k);
    lapack_int info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'T', (lapack_int)m, 1, K, (lapack_int)m,
                                     piv, k, (lapack_int)m);
    if (info != 0) return solve_failed(err, mode, b, info);
    *used = DDN_IED_IFT_LU;
    return DDN_OK;
}

ddn_status ddn_ied_ift_solve_(ddn_ctx *ctx, ddn_ied_ift_path path, int64_t m, const double *A,
                              const double *y, const double *v, double *k,
                              ddn_ied_ift_path *used, int64_t *sweeps)
{
    if (!ctx) return DDN_ERR_ARG;
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *K = ddn_ctx_scratch(ctx, (size_t)(m * m + 9 * m) * sizeof *K);
    lapack_int *piv = ddn_ctx_scratch(ctx, (size_t)m * sizeof *piv);
    if (!K || !piv) return ddn_ctx_status(ctx);
    double *z = K + m * m + 8 * m;
    ddn_ied_ift_probe_(m, z);
    bwd_err err = {.status = DDN_OK};
    double lam;
    ddn_ied_ift_path u = DDN_IED_IFT_AUTO;
    int64_t sw = 0;
    ddn_status st = ift_solve(&err, DDN_IED_BACKWARD_IFT_E, path, 0, 1, m, A, y, v, z, K, piv,
                              K + m * m, k, &lam, &u, &sw);
    if (used) *used = u;
    if (sweeps) *sweeps = sw;
    ddn_ctx_rewind(ctx, mark);
    return st == DDN_OK ? DDN_OK : ddn_ctx_set_error(ctx, st, "%s", err.msg);
}

/* IFT, one item. z: the probe (IFT_E); K: m^2 (LU), X: m (IFT_E) or m^3 (IFT_J), w: 8 m.
 * IFT_E writes u = P k / lambda (m), the gradient being u y^T; IFT_J writes the gradient g. */
static ddn_status ift_item(bwd_err *err, ddn_ied_backward mode, int64_t b, int64_t B, int64_t m,
                           const double *A, const double *y, const double *v, const double *z,
                           double *K, double *X, double *w, lapack_int *piv, double *g)
{
    double lam;
    if (mode == DDN_IED_BACKWARD_IFT_E) {
        double *k = X, *u = g;
        ddn_ied_ift_path used;
        int64_t sweeps;
        ddn_status st = ift_solve(err, mode, DDN_IED_IFT_AUTO, b, B, m, A, y, v, z, K, piv, w,
                                  k, &lam, &used, &sweeps);
        if (st != DDN_OK) return st;
        double yk = cblas_ddot((int)m, y, 1, k, 1);
        for (int64_t i = 0; i < m; i++) u[i] = (k[i] - y[i] * yk) / lam;
        return DDN_OK;
    }
    /* IFT_J: -B_{i,(j,k)} = P_ij y_k / lambda (Eq. 40); H X = -B gives dy/dA (Eq. 37). The LU
     * is needed for the m^2 right-hand sides anyway. */
    double *ay = w, *ya = w + m;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, ay, 1);
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, ya, 1);
    double nay = cblas_dnrm2((int)m, ay, 1), rq = cblas_ddot((int)m, y, 1, ay, 1);
    lam = rq < 0 ? -nay : nay;
    if (!inputs_finite(err, mode, b, B, m, ay, v)) return err->status;
    if (!(nay > 0)) return fail_ay_zero(err, mode, b, B);
    for (int64_t j = 0; j < m; j++)
        for (int64_t i = 0; i < m; i++)
            K[i + j * m] = (i == j ? 1.0 : 0.0) - (A[i * m + j] - y[i] * ya[j]) / lam;
    ddn_status st = lu_checked(err, mode, IFT_SYSTEM, b, B, m, K, piv);
    if (st != DDN_OK) return st;
    const int64_t c = m * m;
    for (int64_t j = 0; j < m; j++)
        for (int64_t k = 0; k < m; k++) {
            double *col = X + (j * m + k) * m;
            for (int64_t i = 0; i < m; i++)
                col[i] = ((i == j ? 1.0 : 0.0) - y[i] * y[j]) * y[k] / lam;
        }
    lapack_int info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', (lapack_int)m, (lapack_int)c, K,
                                     (lapack_int)m, piv, X, (lapack_int)m);
    if (info != 0) return solve_failed(err, mode, b, info);
    cblas_dgemv(CblasColMajor, CblasTrans, (int)m, (int)c, 1.0, X, (int)m, v, 1, 0.0, g, 1);
    return DDN_OK;
}

/* A->grad += the E modes' gradients, u_b y_b^T (IFT) or u_b y_b^T + y_b u_b^T (DDN), u and y
 * (B, m) float64. Written straight into the gradient buffer in its dtype when it is contiguous
 * CPU memory (each entry rounded once, as the float64 matrix path would): the (B, m, m) float64
 * matrix, its copy and its conversion were ~15% of the float32 forward + backward at m = 256
 * (perf); otherwise through that matrix and ddn_ied_accumulate_. */
static ddn_status add_low_rank(ddn_ctx *ctx, ddn_tensor *A, bool sym2, int64_t B, int64_t m,
                               const double *u, const double *y)
{
    ddn_tensor *gr = A->requires_grad ? A->grad : NULL;
    if (!gr) return DDN_OK;
    const bool f32 = gr->dtype == DDN_DTYPE_F32;
    if (gr->device == DDN_DEVICE_CPU && ddn_tensor_is_contiguous(gr) &&
        (f32 || gr->dtype == DDN_DTYPE_F64)) {
        void *p = ddn_tensor_ptr(gr);
        for (int64_t b = 0; b < B; b++) {
            const double *ub = u + b * m, *yb = y + b * m;
            for (int64_t j = 0; j < m; j++) {
                const int64_t o = (b * m + j) * m;
                if (f32) {
                    float *r = (float *)p + o;
                    for (int64_t k = 0; k < m; k++)
                        r[k] += (float)(ub[j] * yb[k] + (sym2 ? yb[j] * ub[k] : 0));
                } else {
                    double *r = (double *)p + o;
                    for (int64_t k = 0; k < m; k++)
                        r[k] += ub[j] * yb[k] + (sym2 ? yb[j] * ub[k] : 0);
                }
            }
        }
        return DDN_OK;
    }
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *g = ddn_ctx_scratch(ctx, (size_t)(B * m * m) * sizeof *g);
    if (!g) return ddn_ctx_status(ctx);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t k = 0; k < m; k++)
                g[(b * m + j) * m + k] = u[b * m + j] * y[b * m + k] +
                                         (sym2 ? y[b * m + j] * u[b * m + k] : 0);
    ddn_status st = ddn_ied_accumulate_(ctx, A, g);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

/* ---- A on a device: the E modes without host copies ------------------------------------------
 * The backend's ied_vjp_e kernel (the block algorithm of ied_backward_blk.h: one CUDA block per
 * item) solves every item where A lives and adds the gradient there; only the per-item outcomes
 * (B small records) and the probe (m doubles, host -> device) cross. The CPU keeps the LAPACK
 * path above (dgemm, getrf, gecon beat the plain loops). The J modes (m^3 right-hand sides) and
 * EIGH (its saved syevd factors live on the host) still take host copies. Failures are reported
 * as the CPU path reports them: the lowest failing item, the tie check first for its item. */

/* t, contiguous and of dtype dt on its own device: t itself, or a step copy. */
static const ddn_tensor *dense_as(ddn_ctx *ctx, const ddn_tensor *t, ddn_dtype dt)
{
    if (t->dtype == dt && ddn_tensor_is_contiguous(t)) return t;
    ddn_tensor *c = ddn_tensor_new(ctx, dt, t->ndim, t->shape);
    return c && ddn_tensor_copy_(c, t) == DDN_OK ? c : NULL;
}

ddn_status ddn_ied_vjp_e_device_(ddn_ctx *ctx, const ied_node_opts *no, const ied_saved *sv,
                                 ddn_tensor *A, const ddn_tensor *y, const ddn_tensor *dy)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    const ddn_ied_backward mode = no->mode;
    const bool ift = mode == DDN_IED_BACKWARD_IFT_E;
    int64_t tie = -1; /* the solver's gap check, as the CPU path applies it */
    for (int64_t b = 0; no->o.check_gap && b < B && tie < 0; b++)
        if (sv->tied[b]) tie = b;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_ied_vjp_item *items = ddn_ctx_scratch(ctx, (size_t)(B ? B : 1) * sizeof *items);
    double *z = ift ? ddn_ctx_scratch(ctx, (size_t)(m ? m : 1) * sizeof *z) : NULL;
    const ddn_tensor *Ad = dense_as(ctx, A, A->dtype), *yd = Ad ? dense_as(ctx, y, A->dtype) : NULL;
    const ddn_tensor *vd = yd ? dense_as(ctx, dy, A->dtype) : NULL;
    if (!items || (ift && !z) || !vd) return ddn_ctx_status(ctx);
    if (ift) ddn_ied_ift_probe_(m, z);
    /* a tie fails the call: then solve only, to find a lower failing item (the CPU's order) */
    ddn_tensor *dA = A->requires_grad && tie < 0 ? A->grad : NULL;
    ddn_status st = ddn_k(A)->ied_vjp_e(dA, Ad, yd, vd, ift, z, items);
    int64_t fail = -1;
    for (int64_t b = 0; st == DDN_OK && b < B && fail < 0; b++)
        if (items[b].code != DDN_IEDB_LU && items[b].code != DDN_IEDB_NEUMANN) fail = b;
    bwd_err err = {.status = DDN_OK};
    if (st != DDN_OK) {
        /* the kernel's own message is set */
    } else if (tie >= 0 && (fail < 0 || tie <= fail)) {
        fail_tied(&err, no, mode, tie, B, m);
    } else if (fail >= 0 && items[fail].code == DDN_IEDB_AY_ZERO) {
        fail_ay_zero(&err, mode, fail, B);
    } else if (fail >= 0 && (items[fail].code == DDN_IEDB_NONFINITE_A ||
                             items[fail].code == DDN_IEDB_NONFINITE_V)) {
        fail_nonfinite(&err, mode, items[fail].code == DDN_IEDB_NONFINITE_V, fail, B, m);
    } else if (fail >= 0) {
        fail_singular(&err, mode, ift ? IFT_SYSTEM : KKT_SYSTEM, fail, B, ift ? m : m + 1,
                      items[fail].rcond);
    }
    if (err.status != DDN_OK) st = ddn_ctx_set_error(ctx, err.status, "%s", err.msg);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

typedef struct bwd_thread_rec {
    int64_t fail_item; /* this thread's lowest failing item, or -1 */
    bwd_err err;
} bwd_thread_rec;

ddn_status ddn_ied_vjp_(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                        const ddn_tensor *y, const ddn_tensor *dy, void *saved)
{
    const ied_node_opts *no = opts;
    const ied_saved *sv = saved;
    ddn_tensor *A = in[0];
    const int64_t B = A->shape[0], m = A->shape[1], n = m + 1;
    const ddn_ied_backward mode = no->mode;
    const bool ddn = mode == DDN_IED_BACKWARD_DDN_E || mode == DDN_IED_BACKWARD_DDN_J;
    const bool jac = mode == DDN_IED_BACKWARD_DDN_J || mode == DDN_IED_BACKWARD_IFT_J;
    if (!ddn_grad_buffer(ctx, A)) return ddn_ctx_status(ctx); /* made before the mark below */
    if (ddn_device_path(ctx, A->device) && !jac)
        return ddn_ied_vjp_e_device_(ctx, no, sv, A, y, dy);

    /* one level of parallelism (solver_util.h); the J modes keep one thread (m^3 scratch) */
    const int nth = jac ? 1 : ddn_solver_threads(B);
    const int nws = nth < 64 ? nth : 64;
    ddn_mark mark = ddn_ctx_mark(ctx);
    const size_t xs = jac ? (size_t)(n * m * m) : (size_t)n;
    /* A in float64, item by item: the tensor's own memory when it already is (CPU, contiguous,
     * float64); a contiguous CPU float32 A is converted per item into the thread's buffer (one
     * pass, and the item's A is then in cache for its solve: converting the whole batch through
     * ddn_tensor_to_host's temporary took two passes, ~10% of the float32 backward at m = 256);
     * anything else is copied whole first. */
    const bool cpu = A->device == DDN_DEVICE_CPU && ddn_tensor_is_contiguous(A);
    const bool a64 = cpu && A->dtype == DDN_DTYPE_F64, a32 = cpu && A->dtype == DDN_DTYPE_F32;
    const size_t pd = (size_t)(n * n + xs + 8 * m + (a32 ? m * m : 0));
    const size_t per = ddn_solver_align(pd * sizeof(double)) +
                       ddn_solver_align((size_t)n * sizeof(lapack_int));
    /* per item: the E modes' vector u (m), the J modes' full gradient (m x m) */
    const int64_t gs = jac ? m * m : m, whole = a64 || a32 ? 0 : B * m * m;
    double *buf = ddn_ctx_scratch(ctx, (size_t)(whole + B * gs + 2 * B * m + m) * sizeof *buf);
    unsigned char *cur = ddn_ctx_scratch(ctx, per * (size_t)nws + 64 +
                                                  (size_t)nws * sizeof(bwd_thread_rec));
    if (!buf || !cur) return ddn_ctx_status(ctx);
    bwd_thread_rec *rec = ddn_solver_carve(&cur, (size_t)nws * sizeof *rec);
    double *g = buf + whole, *yd = g + B * gs, *vd = yd + B * m, *z = vd + B * m;
    ddn_status st = a64 || a32 ? DDN_OK : ddn_tensor_to_host(A, DDN_DTYPE_F64, buf);
    if (st == DDN_OK) st = ddn_tensor_to_host(y, DDN_DTYPE_F64, yd);
    if (st == DDN_OK) st = ddn_tensor_to_host(dy, DDN_DTYPE_F64, vd);
    if (st != DDN_OK) {
        ddn_ctx_rewind(ctx, mark);
        return st;
    }
    /* The formulas assume ||y|| = 1: a float32 y is only unit to ~1e-7, which would put the
     * Rayleigh quotient (and H's null eigenvalue) off by as much; renormalise in float64. */
    for (int64_t b = 0; b < B; b++) {
        double ny = cblas_dnrm2((int)m, yd + b * m, 1);
        if (ny > 0)
            for (int64_t i = 0; i < m; i++) yd[b * m + i] /= ny;
    }
    for (int t = 0; t < nws; t++) rec[t].fail_item = -1;
    if (mode == DDN_IED_BACKWARD_IFT_E) ddn_ied_ift_probe_(m, z);

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nws) if (nws > 1)
#endif
    for (int64_t b = 0; b < B; b++) {
        const int t = ddn_solver_thread_id();
        unsigned char *mine = cur + (size_t)t * per;
        double *K = (double *)mine, *X = K + n * n, *w = X + xs, *Ab = w + 8 * m;
        lapack_int *piv = (lapack_int *)(mine + ddn_solver_align(pd * sizeof(double)));
        bwd_err err = {.status = DDN_OK};
        if (no->o.check_gap && sv->tied[b]) {
            fail_tied(&err, no, mode, b, B, m);
        } else {
            if (a64) {
                Ab = (double *)ddn_tensor_ptr(A) + b * m * m;
            } else if (a32) {
                const float *src = (const float *)ddn_tensor_ptr(A) + b * m * m;
                for (int64_t i = 0; i < m * m; i++) Ab[i] = src[i];
            } else {
                Ab = buf + b * m * m;
            }
            const double *yb = yd + b * m, *vb = vd + b * m;
            double *gb = g + b * gs;
            if (ddn)
                ddn_item(&err, mode, b, B, m, Ab, yb, vb, K, X, w, piv, gb);
            else
                ift_item(&err, mode, b, B, m, Ab, yb, vb, z, K, X, w, piv, gb);
        }
        if (err.status != DDN_OK && rec[t].fail_item < 0) {
            rec[t].fail_item = b;
            rec[t].err = err;
        }
    }
    const bwd_err *first = NULL;
    int64_t fail = -1;
    for (int t = 0; t < nws; t++)
        if (rec[t].fail_item >= 0 && (fail < 0 || rec[t].fail_item < fail))
            fail = rec[t].fail_item, first = &rec[t].err;
    if (first) st = ddn_ctx_set_error(ctx, first->status, "%s", first->msg);
    if (st == DDN_OK)
        st = jac ? ddn_ied_accumulate_(ctx, A, g) : add_low_rank(ctx, A, ddn, B, m, g, yd);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

/* ---- EIGH: the dense baseline ------------------------------------------------------------------
 * G = (lambda I - A)^+ v y^T = sum_{j != p} q_j (q_j . v) / (lambda - w_j) y^T. torch's eigh
 * backward returns V (skew(V^T gV) / E) V^T, which for a gradient on one eigenvector is exactly
 * (G + G^T) / 2 (checked numerically against torch 1.13's torch.linalg.eigh, float64): the
 * symmetric, not the triangle-doubled, convention. That is also what DDN gives (PMAF-MATH §2). */
ddn_status ddn_ied_eigh_vjp_(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                             const ddn_tensor *y, const ddn_tensor *dy, void *saved)
{
    const ddn_ied_opts *o = &((const ied_node_opts *)opts)->o;
    const ied_saved *sv = saved;
    ddn_tensor *A = in[0];
    const int64_t B = A->shape[0], m = A->shape[1];
    const double tie = o->check_gap ? o->tie_tol : 0;
    if (sv->Vt) return ddn_ied_eigh_vjp_device_(ctx, o, A, y, dy, sv);
    if (!ddn_grad_buffer(ctx, A)) return ddn_ctx_status(ctx);
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *buf = ddn_ctx_scratch(ctx, (size_t)(B * m * m + B * m + 3 * m) * sizeof *buf);
    if (!buf) return ddn_ctx_status(ctx);
    double *g = buf, *vd = g + B * m * m, *c = vd + B * m, *u = c + m, *yb = u + m;
    ddn_status st = ddn_tensor_to_host(dy, DDN_DTYPE_F64, vd);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        const double *V = sv->V + b * m * m, *w = sv->w + b * m;
        const int64_t p = sv->idx[b];
        const double lam = w[p];
        /* c = V^T v, then divided by lambda - w_j (the pseudo-inverse drops j = p) */
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)m, 1.0, V, (int)m, vd + b * m, 1,
                    0.0, c, 1);
        for (int64_t j = 0; j < m && st == DDN_OK; j++) {
            if (j == p) {
                c[j] = 0;
                continue;
            }
            double gap = lam - w[j];
            if (!(fabs(gap) > tie * fabs(lam)))
                st = ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (EIGH): item %lld of %lld (A "
                                       "%lldx%lld): eigenvalue %.17g is repeated (another is "
                                       "%.17g, tie_tol %g): y has no derivative", (long long)b,
                                       (long long)B, (long long)m, (long long)m, lam, w[j], tie);
            else
                c[j] /= gap;
        }
        if (st != DDN_OK) break;
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, V, (int)m, c, 1, 0.0, u,
                    1);
        for (int64_t i = 0; i < m; i++) yb[i] = sv->sign[b] * V[i * m + p];
        double *gb = g + b * m * m;
        for (int64_t i = 0; i < m; i++)
            for (int64_t k = 0; k < m; k++) gb[i * m + k] = 0.5 * (u[i] * yb[k] + yb[i] * u[k]);
    }
    if (st == DDN_OK) st = ddn_ied_accumulate_(ctx, A, g);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
