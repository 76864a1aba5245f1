/* ddn — dense float64 LU of one item as block code (blk.h): LAPACK's getrf, getrs, gecon ('1').
 *
 * Why block code: the declarative layers' device backward solves one small system per batch item
 * inside a per-item algorithm (iterations, decisions, then the solve), one item per CUDA block,
 * so the factorisation is written against blk.h's primitives like the rest, and its CPU instance
 * (one thread) is what the tests compare with LAPACK. Used by the IED E-mode backward
 * (ied_backward_blk.h: the IFT Jacobian and the bordered KKT system) and the LESS backward E
 * (less_vjp_blk.h: H = A^T A - 2 nu I).
 *
 * Unblocked, one column at a time with a barrier per step (the block's threads share each step's
 * vector work). K is row-major (n, n), factored in place: P K = L U, L unit lower below the
 * diagonal, U on and above; piv[k] = the row swapped with row k at step k (getrf's order,
 * 0-based). Pivots are getrf's (the first entry of largest magnitude), but the rounding is not
 * LAPACK's blocked code's, so near-ties may pick differently. The condition estimate is dlacn2
 * (Hager / Higham, ITMAX 5) as dgecon runs it, without dgecon's dlatrs overflow scaling: where
 * that would matter the plain solves overflow, the estimate is Inf or NaN and rcond 0 or NaN,
 * which a caller's `rcond > threshold` refuses alike.
 */
#ifndef DDN_BLK_LU_H
#define DDN_BLK_LU_H

#include <float.h>

#include "blk.h"

/* ddn_blk_lu_solve's flags */
#define DDN_BLK_LU_TRANS 1   /* solve with K^T (getrs 'T') */
#define DDN_BLK_LU_NO_PERM 2 /* leave P out: solve with L U or (L U)^T (gecon's products) */
#define DDN_BLK_LU_MAX_RHS 2 /* right-hand sides one solve takes */

/* ||K||_1 of row-major K (n, n): the largest column sum, NaN when K holds one (dlange '1'). */
DDN_BLK_FN double ddn_blk_norm1(const ddn_blk *b, int64_t n, const double *K)
{
    double an = 0;
    DDN_BLK_FOR(b, j, n)
    {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += fabs(K[i * n + j]);
        an = ddn_nanmax(an, s);
    }
    return ddn_blk_max(b, an);
}

/* P K = L U in place (getrf). Returns 0, or k + 1 for the first exactly zero pivot (getrf's info),
 * where it stops: getrf would go on, but no caller uses a singular item's factors. A NaN column
 * picks the diagonal (ddn_blk_iamax) and the NaN spreads to the estimate, which refuses it. The
 * pivot search is shared by the block's threads, not run by one: one thread's scan down a
 * row-major column is n - k strided reads per step while the others wait, O(n^2) serial reads in
 * all, about what all the trailing updates cost when n is near the block size. */
DDN_BLK_FN int64_t ddn_blk_lu(const ddn_blk *b, int64_t n, double *K, int *piv)
{
    for (int64_t k = 0; k < n; k++) {
        const int64_t p = k + ddn_blk_iamax(b, n - k, K + k * n + k, n), r = n - k - 1;
        if (ddn_blk_leader(b)) piv[k] = (int)p;
        if (p != k) {
            DDN_BLK_FOR(b, j, n)
            {
                const double t = K[k * n + j];
                K[k * n + j] = K[p * n + j];
                K[p * n + j] = t;
            }
            DDN_BLK_SYNC(b);
        }
        const double d = K[k * n + k];
        if (d == 0) return k + 1;
        DDN_BLK_FOR(b, i, r) K[(k + 1 + i) * n + k] /= d;
        DDN_BLK_SYNC(b);
        /* trailing update, flat over (i, j) so that a warp reads a row segment */
        DDN_BLK_FOR(b, e, r * r)
        {
            const int64_t i = k + 1 + e / r, j = k + 1 + e % r;
            K[i * n + j] -= K[i * n + k] * K[k * n + j];
        }
        DDN_BLK_SYNC(b);
    }
    return 0;
}

/* The interchanges of piv applied to the columns x_r = x + r n, in getrf's order (fwd) or in
 * reverse, by one thread. */
DDN_BLK_FN void ddn_blk_lu_perm_(const ddn_blk *b, int64_t n, const int *piv, int fwd, int nrhs,
                                 double *x)
{
    if (ddn_blk_leader(b))
        for (int64_t s = 0; s < n; s++) {
            const int64_t k = fwd ? s : n - 1 - s;
            for (int r = 0; r < nrhs; r++) {
                const double t = x[r * n + k];
                x[r * n + k] = x[r * n + piv[k]];
                x[r * n + piv[k]] = t;
            }
        }
    DDN_BLK_SYNC(b);
}

/* x_r <- M^-1 x_r for M the unit lower L (upper 0) or the upper U (upper 1) of the factors, or its
 * transpose (trans 1). Column-oriented substitution: at step k every thread reads x_r[k] and
 * updates only the entries after it (L, U^T) or before it (U, L^T), so one barrier a step; U's
 * divisions of x_r[k] itself are done in one pass at the end (x_r[k] is final after step k). The
 * transposed products read rows of K, so a warp's reads are contiguous. */
DDN_BLK_FN void ddn_blk_lu_trsv_(const ddn_blk *b, int64_t n, const double *K, int upper,
                                 int trans, int nrhs, double *x)
{
    const int fwd = upper == trans; /* L and U^T are lower triangular */
    for (int64_t s = 0; s < n; s++) {
        const int64_t k = fwd ? s : n - 1 - s, i0 = fwd ? k + 1 : 0;
        double xk[DDN_BLK_LU_MAX_RHS];
        for (int r = 0; r < nrhs; r++) xk[r] = upper ? x[r * n + k] / K[k * n + k] : x[r * n + k];
        DDN_BLK_FOR(b, t, fwd ? n - 1 - k : k)
        {
            const int64_t i = i0 + t;
            const double mik = trans ? K[k * n + i] : K[i * n + k];
            for (int r = 0; r < nrhs; r++) x[r * n + i] -= mik * xk[r];
        }
        DDN_BLK_SYNC(b);
    }
    if (upper) {
        DDN_BLK_FOR(b, k, n)
        {
            for (int r = 0; r < nrhs; r++) x[r * n + k] /= K[k * n + k];
        }
        DDN_BLK_SYNC(b);
    }
}

/* x_r <- K^-1 x_r (flags 0) or K^-T x_r (DDN_BLK_LU_TRANS) for the nrhs <= DDN_BLK_LU_MAX_RHS
 * columns x_r = x + r n, from ddn_blk_lu's factors (getrs); with DDN_BLK_LU_NO_PERM, (L U)^-1 or
 * (L U)^-T (piv unread, may be NULL). x's writes must be behind a barrier on entry; on return they
 * are. */
DDN_BLK_FN void ddn_blk_lu_solve(const ddn_blk *b, int64_t n, const double *K, const int *piv,
                                 int flags, int nrhs, double *x)
{
    const int trans = (flags & DDN_BLK_LU_TRANS) != 0, perm = !(flags & DDN_BLK_LU_NO_PERM);
    if (perm && !trans) ddn_blk_lu_perm_(b, n, piv, 1, nrhs, x);
    ddn_blk_lu_trsv_(b, n, K, trans, trans, nrhs, x); /* L, or U^T */
    ddn_blk_lu_trsv_(b, n, K, !trans, trans, nrhs, x); /* U, or L^T */
    if (perm && trans) ddn_blk_lu_perm_(b, n, piv, 0, nrhs, x);
}

/* x[i] <- sign(x[i]) (+1 for 0, -1 for NaN, as dlacn2), kept in xs; returns how many signs differ
 * from xs's previous ones (when cmp; else 0). */
DDN_BLK_FN double ddn_blk_lu_signs_(const ddn_blk *b, int64_t n, double *x, double *xs, int cmp)
{
    double changed = 0;
    DDN_BLK_FOR(b, i, n)
    {
        const double sg = x[i] >= 0 ? 1.0 : -1.0;
        if (cmp && sg != xs[i]) changed += 1;
        x[i] = sg;
    }
    changed = cmp ? ddn_blk_sum(b, changed) : 0;
    DDN_BLK_FOR(b, i, n) xs[i] = x[i];
    DDN_BLK_SYNC(b);
    return changed;
}

/* An estimate of ||K^-1||_1 = ||(L U)^-1||_1 (P permutes columns of the inverse, not its 1-norm)
 * from ddn_blk_lu's factors: dlacn2 step by step, as dgecon drives it. x, xs: n scratch. */
DDN_BLK_FN double ddn_blk_lu_inv_norm1(const ddn_blk *b, int64_t n, const double *K, double *x,
                                       double *xs)
{
    const int lu = DDN_BLK_LU_NO_PERM, lut = DDN_BLK_LU_NO_PERM | DDN_BLK_LU_TRANS;
    DDN_BLK_FOR(b, i, n) x[i] = 1.0 / (double)n;
    DDN_BLK_SYNC(b);
    ddn_blk_lu_solve(b, n, K, NULL, lu, 1, x);
    if (n == 1) return fabs(x[0]);
    double est = ddn_blk_dasum(b, n, x);
    ddn_blk_lu_signs_(b, n, x, xs, 0);
    ddn_blk_lu_solve(b, n, K, NULL, lut, 1, x);
    int64_t j = ddn_blk_iamax(b, n, x, 1);
    for (int iter = 2;; iter++) {
        DDN_BLK_FOR(b, i, n) x[i] = i == j ? 1.0 : 0.0;
        DDN_BLK_SYNC(b);
        ddn_blk_lu_solve(b, n, K, NULL, lu, 1, x);
        const double estold = est;
        est = ddn_blk_dasum(b, n, x);
        /* a repeated sign vector (converged), or no increase (cycling): stop */
        if (ddn_blk_lu_signs_(b, n, x, xs, 1) == 0 || est <= estold) break;
        ddn_blk_lu_solve(b, n, K, NULL, lut, 1, x);
        const int64_t jlast = j;
        j = ddn_blk_iamax(b, n, x, 1);
        const int more = x[jlast] != fabs(x[j]) && iter < 5;
        DDN_BLK_SYNC(b); /* every thread has read x before the next pass writes it */
        if (!more) break;
    }
    /* the alternating-sign vector guards against the iteration's known bad cases */
    DDN_BLK_FOR(b, i, n) x[i] = (i % 2 ? -1.0 : 1.0) * (1.0 + (double)i / (double)(n - 1));
    DDN_BLK_SYNC(b);
    ddn_blk_lu_solve(b, n, K, NULL, lu, 1, x);
    const double temp = 2.0 * (ddn_blk_dasum(b, n, x) / (double)(3 * n));
    return temp > est ? temp : est;
}

/* dgecon ('1'): 1 / (||K||_1 est(||K^-1||_1)) from ddn_blk_lu's factors (info 0) and anorm =
 * ddn_blk_norm1 of K before the factorisation. 0 when anorm is 0 or not finite (dgecon's info -5
 * there: a caller that must tell that case apart tests anorm itself) or the estimate is 0. x, xs:
 * n scratch. */
DDN_BLK_FN double ddn_blk_lu_rcond(const ddn_blk *b, int64_t n, const double *K, double anorm,
                                   double *x, double *xs)
{
    if (!(anorm > 0 && anorm <= DBL_MAX)) return 0;
    const double est = ddn_blk_lu_inv_norm1(b, n, K, x, xs);
    return est != 0 ? (1.0 / est) / anorm : 0;
}

#endif /* DDN_BLK_LU_H */
