/* ddn — the IED layer's E-mode implicit backward (PMAF-MATH.md §2) as one block algorithm (blk.h):
 * one batch item per CUDA thread block (cuda/ied_backward.cu), or per CPU thread
 * (declarative/ied_backward_blk.c, which the tests run against ied_backward.c's LAPACK path).
 *   IFT_E  lambda = sign(y^T A y) ||A y||; H^T k = v, H = I - P A / lambda, by the fixed-point
 *          (Neumann) iteration with the probe column exactly as ied_backward.c's ift_neumann
 *          (same tolerance, budget, give-up rule), else by LU + condition check; u = P k / lambda.
 *   DDN_E  the bordered KKT system [H 2sy; 2sy^T 0] [w; mu] = [v; 0], H = 2 lambda I - (A + A^T),
 *          s = |lambda| (as ddn_item), by LU + condition check; u = w.
 * All arithmetic is float64 whatever A's dtype (as the CPU path). The LU, its solves and the
 * condition estimate are blk_lu.h's (getrf, getrs, gecon), shared with the LESS backward.
 *
 * The untyped part (codes, constants) is guarded; the typed part (what reads A, y, v of type T) is
 * compiled once per T when the includer defines T and TS(name) and has included blk_tmpl.h for
 * that T, and skipped when T is not defined (ied_backward.c includes this for the constants).
 */
#ifndef DDN_IED_BACKWARD_BLK_H
#define DDN_IED_BACKWARD_BLK_H

#include <float.h>

#include "blk.h"
#include "blk_lu.h"

/* Shared with ied_backward.c's LAPACK path, so both paths decide alike (see the rationale there). */
#define DDN_IED_NEUMANN_TOL 1e-12 /* relative residual ||H^T k - v|| / ||v|| (and for the probe) */
#define DDN_IED_NEUMANN_MIN_SWEEPS 32
#define DDN_IED_SINGULAR_RCOND 64.0 /* singular below this times n eps */

/* An item's outcome (ddn_iedb_out.code). */
#define DDN_IEDB_LU 0       /* solved by the LU (DDN_E always; IFT_E's fallback) */
#define DDN_IEDB_NEUMANN 1  /* IFT_E solved by the fixed-point iteration */
#define DDN_IEDB_SINGULAR 2 /* a zero pivot, or rcond not above the threshold (NaN included) */
#define DDN_IEDB_AY_ZERO 3  /* IFT_E: ||A y|| is 0: the fixed point is undefined */
#define DDN_IEDB_NONFINITE_A 4 /* A y is not finite: A or y holds NaN or Inf (or it overflows) */
#define DDN_IEDB_NONFINITE_V 5 /* the upstream gradient v holds NaN or Inf */

typedef struct ddn_iedb_out {
    int code;       /* DDN_IEDB_* */
    int64_t sweeps; /* Neumann sweeps run (IFT_E) */
    double rcond;   /* the LU's reciprocal condition estimate; 0 when not factorised */
} ddn_iedb_out;

/* The Neumann sweep budget: m/4 and at least 32 (rationale at ift_budget's use in
 * ied_backward.c). */
DDN_BLK_FN int64_t ddn_iedb_budget(int64_t m)
{
    return m / 4 > DDN_IED_NEUMANN_MIN_SWEEPS ? m / 4 : DDN_IED_NEUMANN_MIN_SWEEPS;
}

/* Per-block scratch: doubles and ints (pivots). Item outputs yd and u (m each) are apart. */
DDN_BLK_FN int64_t ddn_iedb_ws_doubles(int64_t m) { return (m + 1) * (m + 1) + 8 * m + 3 * (m + 1); }
DDN_BLK_FN int64_t ddn_iedb_ws_ints(int64_t m) { return m + 1; }

DDN_BLK_FN int iedb_singular(int64_t n, double rcond)
{
    return !(rcond > DDN_IED_SINGULAR_RCOND * (double)n * DBL_EPSILON);
}

#endif /* DDN_IED_BACKWARD_BLK_H */

/* ---- typed part: one per T ------------------------------------------------------------------- */
#ifdef T

/* o0 = alpha A^T x0 and, when x1 is given, o1 = alpha A^T x1, in one pass over A (a thread per
 * column: coalesced across a warp). */
DDN_BLK_FN void TS(iedb_mvt2)(const ddn_blk *b, int64_t m, const T *A, const double *x0,
                              const double *x1, double alpha, double *o0, double *o1)
{
    DDN_BLK_FOR(b, j, m)
    {
        double a0 = 0, a1 = 0;
        for (int64_t i = 0; i < m; i++) {
            const double a = (double)A[i * m + j];
            a0 += a * x0[i];
            if (x1) a1 += a * x1[i];
        }
        o0[j] = alpha * a0;
        if (x1) o1[j] = alpha * a1;
    }
    DDN_BLK_SYNC(b);
}

/* ift_neumann (ied_backward.c) in block form: the columns [k; kz] <- [v; z] + A^T P [k; kz] /
 * lambda until both relative steps are <= the tolerance; w: 6 m scratch. Returns the converged k
 * (inside w), or NULL when it did not converge or gave up; *sweeps: sweeps run. */
DDN_BLK_FN const double *TS(iedb_neumann)(const ddn_blk *b, int64_t m, const T *A,
                                          const double *y, double lam, const T *v,
                                          const double *z, double *w, int64_t *sweeps)
{
    double *K0 = w, *K1 = w + 2 * m, *PK = w + 4 * m; /* two columns of m each */
    double sv = 0, sz = 0;
    DDN_BLK_FOR(b, i, m)
    {
        K0[i] = (double)v[i];
        K0[m + i] = z[i];
        sv += K0[i] * K0[i];
        sz += z[i] * z[i];
    }
    const double nv = sqrt(ddn_blk_sum(b, sv)), nz = sqrt(ddn_blk_sum(b, sz));
    const int64_t budget = ddn_iedb_budget(m);
    double hist[4] = {0, 0, 0, 0};
    *sweeps = 0;
    for (int64_t t = 1; t <= budget; t++) {
        double s0 = 0, s1 = 0;
        DDN_BLK_FOR(b, i, m) s0 += y[i] * K0[i], s1 += y[i] * K0[m + i];
        s0 = ddn_blk_sum(b, s0);
        s1 = ddn_blk_sum(b, s1);
        DDN_BLK_FOR(b, i, m) PK[i] = K0[i] - s0 * y[i], PK[m + i] = K0[m + i] - s1 * y[i];
        DDN_BLK_SYNC(b);
        TS(iedb_mvt2)(b, m, A, PK, PK + m, 1 / lam, K1, K1 + m);
        double r0 = 0, r1 = 0;
        DDN_BLK_FOR(b, i, m)
        {
            K1[i] += (double)v[i];
            K1[m + i] += z[i];
            const double d0 = K1[i] - K0[i], d1 = K1[m + i] - K0[m + i];
            r0 += d0 * d0, r1 += d1 * d1;
        }
        r0 = ddn_blk_sum(b, r0); /* also the barrier after K1's update */
        r1 = ddn_blk_sum(b, r1);
        double *tmp = K0;
        K0 = K1, K1 = tmp;
        *sweeps = t;
        /* v = 0 keeps its column exactly 0 (r0 = 0) */
        const double rel = fmax(nv > 0 ? sqrt(r0) / nv : sqrt(r0), sqrt(r1) / nz);
        if (rel <= DDN_IED_NEUMANN_TOL) return K0;
        if (!isfinite(rel)) return NULL;
        hist[t % 4] = rel;
        if (t >= 4) {
            const double rate = cbrt(rel / hist[(t - 3) % 4]);
            if (!(rate < 1)) return NULL; /* not contracting: rho(M) >= 1 or transient growth */
            if ((double)t + log(DDN_IED_NEUMANN_TOL / rel) / log(rate) > (double)budget)
                return NULL;
        }
    }
    return NULL;
}

/* One item: A (m, m), y, v (m) of type T; z the IFT probe (m, float64; unused for DDN); ws and
 * piv: ddn_iedb_ws_doubles / _ints of scratch. Writes yd = y / ||y|| and u (m, float64): the
 * gradient is u yd^T (IFT) or u yd^T + yd u^T (DDN); *out (leader) the outcome. u is left
 * unwritten when the item fails. */
DDN_BLK_FN void TS(ddn_iedb_item)(const ddn_blk *b, int ift, int64_t m, const T *A, const T *y,
                                  const T *v, const double *z, double *ws, int *piv, double *yd,
                                  double *u, ddn_iedb_out *out)
{
    const int64_t n = ift ? m : m + 1;
    double *K = ws, *nm = K + (m + 1) * (m + 1), *ay = nm + 6 * m, *ya = ay + m, *r = ya + m;
    double *cx = r + (m + 1), *cs = cx + (m + 1);
    /* the formulas assume ||y|| = 1: a float32 y is unit to ~1e-7 only */
    double ny = 0;
    DDN_BLK_FOR(b, i, m) ny += (double)y[i] * (double)y[i];
    ny = sqrt(ddn_blk_sum(b, ny));
    DDN_BLK_FOR(b, i, m) yd[i] = ny > 0 ? (double)y[i] / ny : (double)y[i];
    DDN_BLK_SYNC(b);
    TS(blk_mv)(b, m, m, A, m, NULL, yd, 1, 0, NULL, ay);
    double nay = 0, rq = 0, vbad = 0;
    DDN_BLK_FOR(b, i, m)
    {
        nay += ay[i] * ay[i], rq += yd[i] * ay[i];
        vbad += isfinite((double)v[i]) ? 0.0 : 1.0;
    }
    nay = sqrt(ddn_blk_sum(b, nay));
    rq = ddn_blk_sum(b, rq);
    vbad = ddn_blk_sum(b, vbad);
    ddn_iedb_out o = {DDN_IEDB_LU, 0, 0};
    /* non-finite input is refused with a status, never turned into NaN gradients (DESIGN.md) */
    if (!isfinite(nay) || vbad > 0) {
        o.code = !isfinite(nay) ? DDN_IEDB_NONFINITE_A : DDN_IEDB_NONFINITE_V;
        if (ddn_blk_leader(b)) *out = o;
        return;
    }
    const double *k = r;
    double lam;
    if (ift) {
        /* lambda with the eigenvalue's sign (ied_backward.c's ift_solve) */
        lam = rq < 0 ? -nay : nay;
        if (!(nay > 0)) {
            o.code = DDN_IEDB_AY_ZERO;
            if (ddn_blk_leader(b)) *out = o;
            return;
        }
        const double *kn = TS(iedb_neumann)(b, m, A, yd, lam, v, z, nm, &o.sweeps);
        if (kn) {
            o.code = DDN_IEDB_NEUMANN;
            k = kn;
        } else { /* H = I - P A / lambda, (P A)_ij = A_ij - y_i (y^T A)_j */
            TS(iedb_mvt2)(b, m, A, yd, NULL, 1.0, ya, NULL);
            DDN_BLK_FOR(b, e, m * m)
            {
                const int64_t i = e / m, j = e % m;
                K[e] = (i == j ? 1.0 : 0.0) - ((double)A[e] - yd[i] * ya[j]) / lam;
            }
            DDN_BLK_SYNC(b);
        }
    } else {
        /* K = [H 2sy; 2sy^T 0], H = 2 lam I - (A + A^T), s = |lam| (ddn_item) */
        lam = rq;
        const double s = lam != 0 ? fabs(lam) : 1;
        DDN_BLK_FOR(b, e, n * n)
        {
            const int64_t i = e / n, j = e % n;
            double kij = 0;
            if (i < m && j < m)
                kij = -((double)A[i * m + j] + (double)A[j * m + i]) + (i == j ? 2 * lam : 0);
            else if (i < m)
                kij = 2 * s * yd[i];
            else if (j < m)
                kij = 2 * s * yd[j];
            K[e] = kij;
        }
        DDN_BLK_SYNC(b);
    }
    if (o.code == DDN_IEDB_LU) {
        const double an = ddn_blk_norm1(b, n, K);
        o.rcond = ddn_blk_lu(b, n, K, piv) == 0 ? ddn_blk_lu_rcond(b, n, K, an, cx, cs) : 0;
        if (iedb_singular(n, o.rcond)) {
            o.code = DDN_IEDB_SINGULAR;
            if (ddn_blk_leader(b)) *out = o;
            return;
        }
        DDN_BLK_FOR(b, i, n) r[i] = i < m ? (double)v[i] : 0.0;
        DDN_BLK_SYNC(b);
        /* H^T k = v (IFT), or [w; mu] (DDN) */
        ddn_blk_lu_solve(b, n, K, piv, ift ? DDN_BLK_LU_TRANS : 0, 1, r);
    }
    if (ift) { /* u = P k / lambda */
        double yk = 0;
        DDN_BLK_FOR(b, i, m) yk += yd[i] * k[i];
        yk = ddn_blk_sum(b, yk);
        DDN_BLK_FOR(b, i, m) u[i] = (k[i] - yd[i] * yk) / lam;
    } else {
        DDN_BLK_FOR(b, i, m) u[i] = k[i];
    }
    DDN_BLK_SYNC(b);
    if (ddn_blk_leader(b)) *out = o;
}

#endif /* T */
