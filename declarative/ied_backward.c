/* ddn — the IED layer's implicit VJPs (PMAF-MATH.md §2), per item, in float64 whatever the input
 * dtype (a float32 forward keeps float32; the small dense solve is done in double for accuracy,
 * then the gradient is rounded to the input's dtype). One LU factorisation per item, reused:
 *   DDN  bordered KKT system [H 2y; 2y^T 0] [w; mu] = [v; 0], H = 2 lambda I - (A + A^T)
 *        (= 2(lambda I - A), singular on y: never inverted), dL/dA = w y^T + y w^T (Eq. 33);
 *   IFT  fixed point y = A y / ||A y||: H = I - P A / lambda, P = I - y y^T, H^T k = v,
 *        dL/dA = (P k) y^T / lambda (Eq. 39), lambda = sign(y^T A y) ||A y||;
 *   J    the explicit Jacobian dy/dA (m x m^2, memory m^3: Eq. 30-32, 40) contracted with v;
 *   EIGH (lambda I - A)^+ v y^T from the saved syevd factorisation, symmetrised as torch does.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "ddn_impl.h"
#include "ied_impl.h"

/* LU (column-major, n x n) in place, then a 1-norm condition estimate. The systems are scaled to
 * be independent of A's scale, and lambda, y, A y carry rounding of about m eps, so an exactly
 * singular system (a tied eigenvalue) shows up with rcond of a few eps (measured: 1.1e-15 at
 * n = 4 for diag(5, 5, 1), 0 for its IFT H; the tests' random matrices: >= 4e-3). Below
 * SINGULAR_RCOND n eps it is DDN_ERR_SINGULAR naming the item. Near ties well above that are the
 * solver's gap check's job (tie_tol, on by default). */
#define SINGULAR_RCOND 64.0

static ddn_status lu_checked(ddn_ctx *ctx, ddn_ied_backward mode, const char *what, int64_t item,
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
        return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "ied (%s): item %lld of %lld: LAPACK "
                                 "getrf/gecon (%lldx%lld) returned info %d",
                                 ddn_ied_mode_name_(mode), (long long)item, (long long)B,
                                 (long long)n, (long long)n, (int)info);
    if (info > 0 || !(rcond > SINGULAR_RCOND * (double)n * DBL_EPSILON))
        return ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld: the %s "
                                 "(%lldx%lld) is singular (reciprocal condition %.3g): the "
                                 "dominant eigenvalue is repeated or not separated, so y has no "
                                 "derivative", ddn_ied_mode_name_(mode), (long long)item,
                                 (long long)B, what, (long long)n, (long long)n, rcond);
    return DDN_OK;
}

static ddn_status solve_failed(ddn_ctx *ctx, ddn_ied_backward mode, int64_t item, lapack_int info)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "ied (%s): item %lld: LAPACK getrs returned "
                             "info %d", ddn_ied_mode_name_(mode), (long long)item, (int)info);
}

/* DDN, one item: g (m x m, row-major) = dL/dA. y of unit norm. K, X: scratch of (m+1)^2 and
 * (m+1) m^2 (J). */
static ddn_status ddn_item(ddn_ctx *ctx, ddn_ied_backward mode, int64_t b, int64_t B, int64_t m,
                           const double *A, const double *y, const double *v, double *K,
                           double *X, double *tmp, lapack_int *piv, double *g)
{
    const int64_t n = m + 1;
    /* The multiplier: lambda = y^T A y, the Rayleigh quotient of the unit y (Prop. 3.2). */
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, tmp, 1);
    const double lam = cblas_ddot((int)m, y, 1, tmp, 1);
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
    ddn_status st = lu_checked(ctx, mode, "bordered KKT system [H 2y; 2y^T 0]", b, B, n, K, piv);
    if (st != DDN_OK) return st;
    lapack_int info;
    if (mode == DDN_IED_BACKWARD_DDN_E) {
        double *w = X; /* [w; mu] */
        memcpy(w, v, (size_t)m * sizeof *w);
        w[m] = 0;
        info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', (lapack_int)n, 1, K, (lapack_int)n, piv, w,
                              (lapack_int)n);
        if (info != 0) return solve_failed(ctx, mode, b, info);
        for (int64_t j = 0; j < m; j++)
            for (int64_t k = 0; k < m; k++) g[j * m + k] = w[j] * y[k] + y[j] * w[k];
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
    if (info != 0) return solve_failed(ctx, mode, b, info);
    cblas_dgemv(CblasColMajor, CblasTrans, (int)m, (int)c, 1.0, X, (int)n, v, 1, 0.0, g, 1);
    return DDN_OK;
}

/* IFT, one item (same scratch as ddn_item). */
static ddn_status ift_item(ddn_ctx *ctx, ddn_ied_backward mode, int64_t b, int64_t B, int64_t m,
                           const double *A, const double *y, const double *v, double *K,
                           double *X, double *tmp, lapack_int *piv, double *g)
{
    double *ay = tmp, *ya = tmp + m, *pk = tmp + 2 * m;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, ay, 1);
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)m, 1.0, A, (int)m, y, 1, 0.0, ya, 1);
    double nay = cblas_dnrm2((int)m, ay, 1), rq = cblas_ddot((int)m, y, 1, ay, 1);
    /* lambda = ||A y|| (PMAF-MATH §2) with the sign of the eigenvalue: the historical-sign PI
     * converges to y = sign(lambda) A y / ||A y|| when the dominant eigenvalue is negative. */
    const double lam = rq < 0 ? -nay : nay;
    if (!(nay > 0))
        return ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld: A y = 0: "
                                 "the fixed point y = A y / ||A y|| is undefined",
                                 ddn_ied_mode_name_(mode), (long long)b, (long long)B);
    /* H = I - P A / lambda, (P A)_ij = A_ij - y_i (y^T A)_j; column-major. */
    for (int64_t j = 0; j < m; j++)
        for (int64_t i = 0; i < m; i++)
            K[i + j * m] = (i == j ? 1.0 : 0.0) - (A[i * m + j] - y[i] * ya[j]) / lam;
    ddn_status st = lu_checked(ctx, mode, "IFT Jacobian H = I - P A / lambda", b, B, m, K, piv);
    if (st != DDN_OK) return st;
    lapack_int info;
    if (mode == DDN_IED_BACKWARD_IFT_E) {
        double *k = X;
        memcpy(k, v, (size_t)m * sizeof *k);
        info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'T', (lapack_int)m, 1, K, (lapack_int)m, piv, k,
                              (lapack_int)m);
        if (info != 0) return solve_failed(ctx, mode, b, info);
        double yk = cblas_ddot((int)m, y, 1, k, 1);
        for (int64_t i = 0; i < m; i++) pk[i] = k[i] - y[i] * yk;
        for (int64_t j = 0; j < m; j++)
            for (int64_t kk = 0; kk < m; kk++) g[j * m + kk] = pk[j] * y[kk] / lam;
        return DDN_OK;
    }
    /* IFT_J: -B_{i,(j,k)} = P_ij y_k / lambda (Eq. 40); H X = -B gives dy/dA (Eq. 37). */
    const int64_t c = m * m;
    for (int64_t j = 0; j < m; j++)
        for (int64_t k = 0; k < m; k++) {
            double *col = X + (j * m + k) * m;
            for (int64_t i = 0; i < m; i++)
                col[i] = ((i == j ? 1.0 : 0.0) - y[i] * y[j]) * y[k] / lam;
        }
    info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', (lapack_int)m, (lapack_int)c, K, (lapack_int)m,
                          piv, X, (lapack_int)m);
    if (info != 0) return solve_failed(ctx, mode, b, info);
    cblas_dgemv(CblasColMajor, CblasTrans, (int)m, (int)c, 1.0, X, (int)m, v, 1, 0.0, g, 1);
    return DDN_OK;
}

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

    ddn_mark mark = ddn_ctx_mark(ctx);
    const size_t xs = jac ? (size_t)(n * m * m) : (size_t)n;
    double *buf = ddn_ctx_scratch(ctx, (size_t)(B * m * m * 2 + 2 * B * m + n * n + 3 * m) *
                                           sizeof *buf);
    double *X = ddn_ctx_scratch(ctx, xs * sizeof *X);
    lapack_int *piv = ddn_ctx_scratch(ctx, (size_t)n * sizeof *piv);
    if (!buf || !X || !piv) return ddn_ctx_status(ctx);
    double *Ad = buf, *g = Ad + B * m * m, *yd = g + B * m * m, *vd = yd + B * m;
    double *K = vd + B * m, *tmp = K + n * n;
    ddn_status st = ddn_tensor_to_host(A, DDN_DTYPE_F64, Ad);
    if (st == DDN_OK) st = ddn_tensor_to_host(y, DDN_DTYPE_F64, yd);
    if (st == DDN_OK) st = ddn_tensor_to_host(dy, DDN_DTYPE_F64, vd);
    /* The formulas assume ||y|| = 1: a float32 y is only unit to ~1e-7, which would put the
     * Rayleigh quotient (and H's null eigenvalue) off by as much; renormalise in float64. */
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        double ny = cblas_dnrm2((int)m, yd + b * m, 1);
        if (ny > 0)
            for (int64_t i = 0; i < m; i++) yd[b * m + i] /= ny;
    }
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        if (no->o.check_gap && sv->tied[b]) {
            st = ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld (A "
                                   "%lldx%lld): the dominant eigenvalue is repeated or nearly so "
                                   "(the solver's gap check, tie_tol %g): y is not unique and the "
                                   "%s system is singular", ddn_ied_mode_name_(mode), (long long)b,
                                   (long long)B, (long long)m, (long long)m, no->o.tie_tol,
                                   ddn ? "bordered KKT" : "IFT");
            break;
        }
        const double *Ab = Ad + b * m * m, *yb = yd + b * m, *vb = vd + b * m;
        double *gb = g + b * m * m;
        st = ddn ? ddn_item(ctx, mode, b, B, m, Ab, yb, vb, K, X, tmp, piv, gb)
                 : ift_item(ctx, mode, b, B, m, Ab, yb, vb, K, X, tmp, piv, gb);
    }
    if (st == DDN_OK) st = ddn_ied_accumulate_(ctx, A, g);
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
    (void)y;
    const ddn_ied_opts *o = &((const ied_node_opts *)opts)->o;
    const ied_saved *sv = saved;
    ddn_tensor *A = in[0];
    const int64_t B = A->shape[0], m = A->shape[1];
    const double tie = o->check_gap ? o->tie_tol : 0;
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
