/* ddn — LESS backward E for one item as block code (blk.h): one CUDA block, or one CPU thread.
 *
 * The same computation as less_backward_e in less.c (PMAF-MATH §1 "Backward"), in float64 for
 * either input dtype (inputs converted exactly, gradients rounded once to T):
 *     H = A^T A - 2 nu I,  LU with partial pivoting (the factorisation the host path gets from
 *     getrf), the same singularity decisions: a zero pivot, or rcond_1(H) <= n eps, where rcond
 *     is estimated as LAPACK's gecon does; then w = H^{-1} v, a = H^{-1} y, the check
 *     |y.a| > n eps ||a||,
 *     K = (y.w / y.a) a - w,  dA = r K^T + (A K) y^T,  db = -A K,  r = A y - b.
 * The LU, solves and estimate are blk_lu.h's (shared with the IED backward; its notes on pivots
 * and gecon's scaling apply).
 *
 * Included once per T by the instance files (less_blk.c, cuda/less.cu) after blk.h and
 * blk_tmpl.h for that T.
 */
#include <float.h>

#include "blk.h"
#include "blk_lu.h"
#include "less_kern.h"

/* One item of backward E. A (m, n), bv (m), y (n), v = dL/dy (n) of T; nu the item's multiplier.
 * dA (m, n) and db (m) are overwritten in T; either may be NULL. work: DDN_LESS_VJP_WORK(m, n)
 * doubles, iwork: DDN_LESS_VJP_IWORK(n) ints. The leader writes *out (code and details); on a
 * failure dA and db are left unwritten. */
DDN_BLK_FN void TS(less_blk_vjp_e)(const ddn_blk *b, int64_t m, int64_t n, const T *A,
                                   const T *bv, const T *y, const T *v, double nu, T *dA, T *db,
                                   double *work, int *iwork, ddn_less_item *out)
{
    double *H = work, *w = H + n * n, *a = w + n, *yd = a + n, *K = yd + n, *x = K + n;
    double *r = x + n, *AK = r + m;
    int *piv = iwork;

    /* H = A^T A - 2 nu I (Eq. 22); each entry summed over c in order, so H is exactly symmetric */
    DDN_BLK_FOR(b, t, n * n)
    {
        const int64_t p = t / n, q = t % n;
        double s = 0;
        for (int64_t c = 0; c < m; c++) s += (double)A[c * n + p] * (double)A[c * n + q];
        H[t] = p == q ? s - 2 * nu : s;
    }
    DDN_BLK_SYNC(b);
    const double anorm = ddn_blk_norm1(b, n, H); /* NaN kept, as dlange */
    const int64_t info = ddn_blk_lu(b, n, H, piv);
    const double thresh = (double)n * DBL_EPSILON;
    double rcond = 0;
    int code = DDN_LESS_ITEM_OK;
    if (info == 0 && !(anorm <= DBL_MAX))
        code = DDN_LESS_ITEM_BAD_NORM;
    else if (info == 0)
        rcond = ddn_blk_lu_rcond(b, n, H, anorm, x, w); /* w: scratch until the solve */
    if (code == DDN_LESS_ITEM_OK && (info > 0 || !(rcond > thresh)))
        code = info > 0 ? DDN_LESS_ITEM_ZERO_PIVOT : DDN_LESS_ITEM_RCOND;
    if (code != DDN_LESS_ITEM_OK) {
        if (ddn_blk_leader(b)) {
            out->code = code;
            out->detail[0] = rcond;
            out->detail[1] = thresh;
        }
        return;
    }

    /* w = H^{-1} v and a = H^{-1} y in one solve (w and a are adjacent) */
    DDN_BLK_FOR(b, i, n)
    {
        w[i] = (double)v[i];
        a[i] = yd[i] = (double)y[i];
    }
    DDN_BLK_SYNC(b);
    ddn_blk_lu_solve(b, n, H, piv, 0, 2, w);
    const double ya = ddn_blk_ddot(b, n, yd, a), yw = ddn_blk_ddot(b, n, yd, w);
    const double an = sqrt(ddn_blk_ddot(b, n, a, a));
    if (!(fabs(ya) > (double)n * DBL_EPSILON * an)) {
        if (ddn_blk_leader(b)) {
            out->code = DDN_LESS_ITEM_YA;
            out->detail[0] = ya;
            out->detail[1] = an;
        }
        return;
    }
    DDN_BLK_FOR(b, j, n) K[j] = (yw / ya) * a[j] - w[j];
    DDN_BLK_SYNC(b);
    TS(blk_mv)(b, m, n, A, n, NULL, K, 1, 0, NULL, AK);
    if (dA) {
        DDN_BLK_FOR(b, c, m) r[c] = (double)bv[c];
        TS(blk_mv)(b, m, n, A, n, NULL, yd, 1, -1, NULL, r); /* r = A y - b */
        DDN_BLK_FOR(b, t, m * n)
        {
            const int64_t c = t / n, j = t % n;
            dA[t] = (T)(r[c] * K[j] + AK[c] * yd[j]);
        }
    }
    if (db) DDN_BLK_FOR(b, c, m) db[c] = (T)(-AK[c]);
    if (ddn_blk_leader(b)) out->code = DDN_LESS_ITEM_OK;
}
