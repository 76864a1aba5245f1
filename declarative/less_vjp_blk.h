/* ddn — LESS backward E for one item as block code (blk.h): one CUDA block, or one CPU thread.
 *
 * The same computation as less_backward_e in less.c (PMAF-MATH §1 "Backward"), in float64 for
 * either input dtype (inputs converted exactly, gradients rounded once to T):
 *     H = A^T A - 2 nu I,  LU with partial pivoting (the factorisation the host path gets from
 *     getrf), the same singularity decisions: a zero pivot, or rcond_1(H) <= n eps, where rcond
 *     is estimated as LAPACK's gecon does (Hager / Higham's 1-norm estimator dlacn2 on the
 *     factors); then w = H^{-1} v, a = H^{-1} y, the check |y.a| > n eps ||a||,
 *     K = (y.w / y.a) a - w,  dA = r K^T + (A K) y^T,  db = -A K,  r = A y - b.
 * gecon's dlatrs scaling (which only guards against overflow) is left out: where it would
 * matter the plain solves overflow, the estimate is Inf or NaN and rcond is 0: the same decision.
 * Pivots may still differ from LAPACK's blocked getrf on near-ties (different rounding).
 *
 * Included once per T by the instance files (less_blk.c, cuda/less.cu) after blk.h and
 * blk_tmpl.h for that T. The T-independent part is guarded so it is defined once.
 */
#include <float.h>

#include "blk.h"
#include "less_kern.h"

#ifndef DDN_LESS_VJP_BLK_ONCE
#define DDN_LESS_VJP_BLK_ONCE

/* sum |x_i| (n) in double. */
DDN_BLK_FN double less_blk_asum(const ddn_blk *b, int64_t n, const double *x)
{
    double s = 0;
    DDN_BLK_FOR(b, i, n) s += fabs(x[i]);
    return ddn_blk_sum(b, s);
}

DDN_BLK_FN double less_blk_ddot(const ddn_blk *b, int64_t n, const double *x, const double *y)
{
    double s = 0;
    DDN_BLK_FOR(b, i, n) s += x[i] * y[i];
    return ddn_blk_sum(b, s);
}

/* The first index of the largest |x_i| (BLAS idamax), found by one thread: O(n), and only called
 * O(n) times next to O(n^3) work. Ends with a barrier (the broadcast). */
DDN_BLK_FN int64_t less_blk_iamax(const ddn_blk *b, int64_t n, const double *x)
{
    double k = 0;
    if (ddn_blk_leader(b)) {
        double mx = fabs(x[0]);
        for (int64_t i = 1; i < n; i++)
            if (fabs(x[i]) > mx) mx = fabs(x[i]), k = (double)i;
    }
    return (int64_t)ddn_blk_bcast(b, k);
}

/* In-place LU with partial pivoting of row-major H (n, n): P H = L U, L unit lower (below the
 * diagonal), U upper; piv[k] = the row swapped with k at step k. Returns 0, or k + 1 for the first
 * zero pivot (getrf's info; that column is skipped, as getrf does). H is symmetric here, so this
 * is also the factorisation the host path computes column-major. */
DDN_BLK_FN int64_t less_blk_getrf(const ddn_blk *b, int64_t n, double *H, int *piv)
{
    int64_t info = 0;
    for (int64_t k = 0; k < n; k++) {
        double pk = (double)k;
        if (ddn_blk_leader(b)) {
            double mx = fabs(H[k * n + k]);
            for (int64_t i = k + 1; i < n; i++)
                if (fabs(H[i * n + k]) > mx) mx = fabs(H[i * n + k]), pk = (double)i;
            piv[k] = (int)pk;
        }
        const int64_t p = (int64_t)ddn_blk_bcast(b, pk);
        if (p != k) {
            DDN_BLK_FOR(b, j, n)
            {
                double t = H[k * n + j];
                H[k * n + j] = H[p * n + j];
                H[p * n + j] = t;
            }
            DDN_BLK_SYNC(b);
        }
        const double ukk = H[k * n + k];
        if (ukk == 0) { /* the whole column below is zero: nothing to eliminate */
            if (info == 0) info = k + 1;
            continue;
        }
        const int64_t rest = n - k - 1;
        DDN_BLK_FOR(b, i, rest) H[(k + 1 + i) * n + k] /= ukk;
        DDN_BLK_SYNC(b);
        DDN_BLK_FOR(b, t, rest * rest)
        {
            const int64_t i = k + 1 + t / rest, j = k + 1 + t % rest;
            H[i * n + j] -= H[i * n + k] * H[k * n + j];
        }
        DDN_BLK_SYNC(b);
    }
    return info;
}

/* x_r <- M^{-1} x_r (r < nrhs, x_r = x + r n) for M the unit lower L (upper = 0) or the upper U
 * (upper = 1) of the LU in H, or its transpose (trans = 1). Substitution column by column: two
 * barriers per column (x_k is read by every thread before it is overwritten). */
DDN_BLK_FN void less_blk_trsv(const ddn_blk *b, int64_t n, const double *H, int upper, int trans,
                              double *x, int nrhs)
{
    const int unit = !upper, fwd = upper == trans; /* L and U^T are lower: forward */
    for (int64_t s = 0; s < n; s++) {
        const int64_t k = fwd ? s : n - 1 - s;
        double xk[2] = {0, 0};
        for (int r = 0; r < nrhs; r++) xk[r] = unit ? x[r * n + k] : x[r * n + k] / H[k * n + k];
        if (!unit) DDN_BLK_SYNC(b);
        const int64_t i0 = fwd ? k + 1 : 0, cnt = fwd ? n - 1 - k : k;
        DDN_BLK_FOR(b, t, cnt)
        {
            const int64_t i = i0 + t;
            const double mik = trans ? H[k * n + i] : H[i * n + k];
            for (int r = 0; r < nrhs; r++) x[r * n + i] -= mik * xk[r];
        }
        if (!unit && ddn_blk_leader(b))
            for (int r = 0; r < nrhs; r++) x[r * n + k] = xk[r];
        DDN_BLK_SYNC(b);
    }
}

/* x <- (P^T L U)^{-1} x for nrhs (<= 2) right-hand sides: getrs. */
DDN_BLK_FN void less_blk_getrs(const ddn_blk *b, int64_t n, const double *H, const int *piv,
                               double *x, int nrhs)
{
    if (ddn_blk_leader(b))
        for (int64_t k = 0; k < n; k++)
            if (piv[k] != k)
                for (int r = 0; r < nrhs; r++) {
                    double t = x[r * n + k];
                    x[r * n + k] = x[r * n + piv[k]];
                    x[r * n + piv[k]] = t;
                }
    DDN_BLK_SYNC(b);
    less_blk_trsv(b, n, H, 0, 0, x, nrhs);
    less_blk_trsv(b, n, H, 1, 0, x, nrhs);
}

/* gecon's products: kase 1 x <- U^{-1} L^{-1} x, kase 2 x <- L^{-T} U^{-T} x (no permutation:
 * ||(LU)^{-1}||_1 = ||H^{-1} P^T||_1 = ||H^{-1}||_1). */
DDN_BLK_FN void less_blk_kase(const ddn_blk *b, int64_t n, const double *H, double *x, int kase)
{
    if (kase == 1) {
        less_blk_trsv(b, n, H, 0, 0, x, 1);
        less_blk_trsv(b, n, H, 1, 0, x, 1);
    } else {
        less_blk_trsv(b, n, H, 1, 1, x, 1);
        less_blk_trsv(b, n, H, 0, 1, x, 1);
    }
}

/* An estimate of ||H^{-1}||_1 from the LU in H: LAPACK's dlacn2 (Higham, ACM TOMS 14, 1988) step
 * by step, so rcond = 1 / (||H||_1 est) is what dgecon reports. x (n) and isgn (n) scratch. */
DDN_BLK_FN double less_blk_inv_norm1(const ddn_blk *b, int64_t n, const double *H, double *x,
                                     int *isgn)
{
    DDN_BLK_FOR(b, i, n) x[i] = 1.0 / (double)n;
    DDN_BLK_SYNC(b);
    less_blk_kase(b, n, H, x, 1);
    if (n == 1) return fabs(x[0]);
    double est = less_blk_asum(b, n, x);
    DDN_BLK_FOR(b, i, n)
    {
        x[i] = x[i] >= 0 ? 1.0 : -1.0;
        isgn[i] = x[i] >= 0 ? 1 : -1;
    }
    DDN_BLK_SYNC(b);
    less_blk_kase(b, n, H, x, 2);
    int64_t j = less_blk_iamax(b, n, x);
    for (int iter = 2;; iter++) {
        DDN_BLK_FOR(b, i, n) x[i] = i == j ? 1.0 : 0.0;
        DDN_BLK_SYNC(b);
        less_blk_kase(b, n, H, x, 1);
        const double estold = est;
        est = less_blk_asum(b, n, x);
        double changed = 0;
        DDN_BLK_FOR(b, i, n) changed += (x[i] >= 0 ? 1 : -1) != isgn[i];
        /* a repeated sign vector (converged), or no increase (cycling): stop */
        if (ddn_blk_sum(b, changed) == 0 || est <= estold) break;
        DDN_BLK_FOR(b, i, n)
        {
            x[i] = x[i] >= 0 ? 1.0 : -1.0;
            isgn[i] = x[i] >= 0 ? 1 : -1;
        }
        DDN_BLK_SYNC(b);
        less_blk_kase(b, n, H, x, 2);
        const int64_t jlast = j;
        j = less_blk_iamax(b, n, x);
        const int more = x[jlast] != fabs(x[j]) && iter < 5; /* dlacn2's ITMAX = 5 */
        DDN_BLK_SYNC(b); /* every thread has read x before the next pass writes it */
        if (!more) break;
    }
    /* the alternating-sign test vector, which catches what the iteration can miss */
    DDN_BLK_FOR(b, i, n) x[i] = (i % 2 ? -1.0 : 1.0) * (1.0 + (double)i / (double)(n - 1));
    DDN_BLK_SYNC(b);
    less_blk_kase(b, n, H, x, 1);
    const double temp = 2.0 * (less_blk_asum(b, n, x) / (double)(3 * n));
    return temp > est ? temp : est;
}

#endif /* DDN_LESS_VJP_BLK_ONCE */

/* out (rows) = A x - sub in double: A (rows, cols) row-major of T, x double, sub (T) or NULL.
 * On the device a warp per row (coalesced reads of A), as blk_mv. */
DDN_BLK_FN void TS(less_blk_amv)(const ddn_blk *b, int64_t rows, int64_t cols, const T *A,
                                 const double *x, const T *sub, double *out)
{
#ifdef __CUDACC__
    const int lane = b->tid & 31, nw = b->nth >> 5;
    for (int64_t i = b->tid >> 5; i < rows; i += nw) {
        double acc = 0;
        for (int64_t j = lane; j < cols; j += 32) acc += (double)A[i * cols + j] * x[j];
        acc = ddn_blk_warp_sum(acc);
        if (lane == 0) out[i] = acc - (sub ? (double)sub[i] : 0.0);
    }
    __syncthreads();
#else
    (void)b;
    for (int64_t i = 0; i < rows; i++) {
        double acc = 0;
        for (int64_t j = 0; j < cols; j++) acc += (double)A[i * cols + j] * x[j];
        out[i] = acc - (sub ? (double)sub[i] : 0.0);
    }
#endif
}

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
    int *piv = iwork, *isgn = iwork + n;

    /* H = A^T A - 2 nu I (Eq. 22); each entry summed over c in order, so H is exactly symmetric */
    DDN_BLK_FOR(b, t, n * n)
    {
        const int64_t p = t / n, q = t % n;
        double s = 0;
        for (int64_t c = 0; c < m; c++) s += (double)A[c * n + p] * (double)A[c * n + q];
        H[t] = p == q ? s - 2 * nu : s;
    }
    DDN_BLK_SYNC(b);
    /* ||H||_1: column sums in parallel, their maximum (NaN kept, as dlange) by one thread */
    DDN_BLK_FOR(b, q, n)
    {
        double s = 0;
        for (int64_t p = 0; p < n; p++) s += fabs(H[p * n + q]);
        x[q] = s;
    }
    DDN_BLK_SYNC(b);
    double anorm = 0;
    if (ddn_blk_leader(b))
        for (int64_t q = 0; q < n && !isnan(anorm); q++)
            if (isnan(x[q]) || x[q] > anorm) anorm = x[q];
    anorm = ddn_blk_bcast(b, anorm);

    const int64_t info = less_blk_getrf(b, n, H, piv);
    const double thresh = (double)n * DBL_EPSILON;
    double rcond = 0;
    int code = DDN_LESS_ITEM_OK;
    if (info == 0 && !(anorm <= DBL_MAX)) {
        code = DDN_LESS_ITEM_BAD_NORM;
    } else if (info == 0 && anorm > 0) {
        const double est = less_blk_inv_norm1(b, n, H, x, isgn);
        if (est != 0) rcond = (1.0 / est) / anorm;
    }
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
    less_blk_getrs(b, n, H, piv, w, 2);
    const double ya = less_blk_ddot(b, n, yd, a), yw = less_blk_ddot(b, n, yd, w);
    const double an = sqrt(less_blk_ddot(b, n, a, a));
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
    TS(less_blk_amv)(b, m, n, A, K, NULL, AK);
    if (dA) {
        TS(less_blk_amv)(b, m, n, A, yd, bv, r); /* r = A y - b */
        DDN_BLK_FOR(b, t, m * n)
        {
            const int64_t c = t / n, j = t % n;
            dA[t] = (T)(r[c] * K[j] + AK[c] * yd[j]);
        }
    }
    if (db) DDN_BLK_FOR(b, c, m) db[c] = (T)(-AK[c]);
    if (ddn_blk_leader(b)) out->code = DDN_LESS_ITEM_OK;
}
