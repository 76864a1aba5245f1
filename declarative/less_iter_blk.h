/* ddn — the iterative LESS methods for one item as block code (blk.h): one CUDA block, or one
 * CPU thread.
 *
 * The same iteration as less_iterate in less_solver_tmpl.h (PGD, +RM, +BLS, +TWD, +DW; the stop
 * on the objective change; PMAF-MATH §1), followed by less_diag's float64 diagnostics. Iterates
 * and vectors are stored in T (float32 problems iterate in float32); every dot product and
 * matrix-vector product is accumulated in double (blk.h) and rounded once to T, where the host
 * path accumulates in T. So float64 runs agree with the host to round-off, and float32 runs to
 * float32 round-off per step, which can move the stopping iteration by a step or two.
 * The start (the minimum-norm least-squares centre and its projection) is not here: it stays on
 * the host (less_solver.c, ddn_less_solve_start), once per forward.
 *
 * Included once per T by the instance files (less_blk.c, cuda/less.cu) after blk.h and
 * blk_tmpl.h for that T. Method flags: less_solver.h (the values are repeated below so that this
 * file needs no host header).
 */
#include "blk.h"
#include "less_kern.h"

#ifndef DDN_LESS_ITER_BLK_ONCE
#define DDN_LESS_ITER_BLK_ONCE
/* DDN_LESS_RM, _BLS_ONE, _BLS_GRAD, _TWD, _DW of less_solver.h (less_blk.c asserts they agree) */
#define DDN_LESS_BLK_RM (1u << 1)
#define DDN_LESS_BLK_BLS_ONE (1u << 2)
#define DDN_LESS_BLK_BLS_GRAD (1u << 3)
#define DDN_LESS_BLK_TWD (1u << 4)
#define DDN_LESS_BLK_DW (1u << 5)
#endif

/* Runs o->method from u (n; in: the unit start, out: the last iterate). uc (n) = pinv(A) b.
 * w: DDN_LESS_ITER_WORK(m, n) elements. The leader writes iterations and converged into *out.
 * Returns 0 when a step gave a zero or non-finite point (the same on every thread). */
DDN_BLK_FN int TS(less_blk_iterate)(const ddn_blk *b, int64_t m, int64_t n, const T *A,
                                    const T *bv, const T *uc, const ddn_less_iter_params *o,
                                    T *u, T *w, ddn_less_item *out)
{
    T *un = w, *g = un + n, *d = g + n;     /* (n) each */
    T *r = d + n, *Ad = r + m, *rt = Ad + m; /* (m) each */
    const unsigned meth = o->method;
    const int rm = (meth & DDN_LESS_BLK_RM) != 0, twd = (meth & DDN_LESS_BLK_TWD) != 0;
    const int dw = (meth & DDN_LESS_BLK_DW) != 0;
    const int bls = (meth & (DDN_LESS_BLK_BLS_ONE | DDN_LESS_BLK_BLS_GRAD)) != 0;
    const T cn = (T)sqrt(TS(blk_dot)(b, n, uc, uc));
    /* DW (Eq. 3): d_t = -g when the centre is outside the sphere, +g inside. */
    const T dw_sign = cn >= 1 ? (T)-1 : (T)1;
    T tw = 1; /* TWD's running step weight (less_solver_tmpl.h explains the reading of Eq. 8-9) */
    int ok = 1, conv = 0;
    int64_t it = 0;

    /* r = A u - b (blk_mv with beta -1 on r = b), g = A^T r, f = 1/2 ||r||^2 */
    DDN_BLK_FOR(b, j, m) r[j] = bv[j];
    DDN_BLK_SYNC(b);
    TS(blk_mv)(b, m, n, A, n, u, NULL, 1, -1, r, NULL);
    TS(blk_mvt)(b, m, n, A, n, r, NULL, 1, 0, g, NULL);
    T f = (T)(0.5 * TS(blk_dot)(b, m, r, r));

    while (it < o->max_iter) {
        /* Direction: d = g (PGD) or its tangent part P g = g - (u.g) u (RM, Eq. 4 / 52). */
        const T ug = rm ? (T)TS(blk_dot)(b, n, u, g) : (T)0;
        DDN_BLK_FOR(b, i, n) d[i] = g[i] - ug * u[i];
        DDN_BLK_SYNC(b);
        const T gd = (T)TS(blk_dot)(b, n, g, d);
        if (!(gd > 0)) { /* a stationary point: KKT holds */
            conv = 1;
            break;
        }
        TS(blk_mv)(b, m, n, A, n, d, NULL, 1, 0, Ad, NULL);
        const T den = (T)TS(blk_dot)(b, m, Ad, Ad);
        if (!(den > 0)) { /* A d = 0 forces g.d = 0: stationary up to round-off */
            conv = 1;
            break;
        }
        const T eta_ls = gd / den; /* exact line search: Eq. 49 (PGD), Eq. 6 (RM) */
        T wt = 1;
        if (dw && cn > 0) {
            const T gn = (T)sqrt(TS(blk_dot)(b, n, g, g));
            wt = 1 - dw_sign * (T)TS(blk_dot)(b, n, g, uc) / (gn * cn); /* Eq. 2 */
        }
        T eta;
        if (bls) {
            /* Backtracking (Eq. 7) on the projected point: A Proj(v) - b from A u = r + b and
             * A d, so a trial costs no matrix product. */
            eta = (meth & DDN_LESS_BLK_BLS_ONE) ? (T)1 : eta_ls;
            for (int k = 0; k < 200; k++) {
                const T s = wt * eta;
                DDN_BLK_FOR(b, i, n) un[i] = u[i] - s * d[i];
                DDN_BLK_SYNC(b);
                const T nv = (T)sqrt(TS(blk_dot)(b, n, un, un));
                DDN_BLK_FOR(b, j, m) rt[j] = ((r[j] + bv[j]) - s * Ad[j]) / nv - bv[j];
                DDN_BLK_SYNC(b);
                const T ft = (T)(0.5 * TS(blk_dot)(b, m, rt, rt));
                if (ft <= f - (T)o->bls_alpha * s * gd) break;
                eta *= (T)o->bls_beta;
            }
        } else if (twd) {
            eta = tw * eta_ls;
        } else {
            eta = eta_ls;
        }
        const T s = wt * eta;
        DDN_BLK_FOR(b, i, n) un[i] = u[i] - s * d[i];
        DDN_BLK_SYNC(b);
        const T nv = (T)sqrt(TS(blk_dot)(b, n, un, un));
        if (!(nv > 0) || !isfinite(nv)) {
            ok = 0;
            break;
        }
        DDN_BLK_FOR(b, i, n) un[i] /= nv; /* Proj onto the sphere (Eq. 48) */
        DDN_BLK_FOR(b, j, m) r[j] = bv[j];
        DDN_BLK_SYNC(b);
        TS(blk_mv)(b, m, n, A, n, un, NULL, 1, -1, r, NULL); /* r, g now belong to u_{t+1} */
        TS(blk_mvt)(b, m, n, A, n, r, NULL, 1, 0, g, NULL);
        const T fn = (T)(0.5 * TS(blk_dot)(b, m, r, r));
        if (twd) {
            /* cos(P_t(-g_t), P_{t+1}(-g_{t+1})) < 0  <=>  d_t . (g' - (u'.g') u') < 0 (Eq. 8) */
            const T gu = (T)TS(blk_dot)(b, n, un, g);
            const T dg = (T)TS(blk_dot)(b, n, d, g), du = (T)TS(blk_dot)(b, n, d, un);
            if (dg - gu * du < 0) tw *= (T)o->twd_beta;
        }
        DDN_BLK_FOR(b, i, n) u[i] = un[i];
        DDN_BLK_SYNC(b);
        it++;
        /* Stop on the objective change (App. B.1); an increase larger than tol is not
         * convergence. */
        const T df = f - fn;
        f = fn;
        if (!isfinite(f)) {
            ok = 0;
            break;
        }
        if ((df < 0 ? -df : df) <= (T)o->tol) {
            conv = 1;
            break;
        }
    }
    if (ddn_blk_leader(b)) {
        out->iterations = it;
        out->converged = conv && ok;
    }
    return ok;
}

/* less_diag: fpd, objective and nu of y, accumulated in double, into *out (leader). Returns 0
 * when y is not finite. A row per thread: it runs once per forward. */
DDN_BLK_FN int TS(less_blk_diag)(const ddn_blk *b, int64_t m, int64_t n, const T *A,
                                 const T *bv, const T *y, ddn_less_item *out)
{
    double bad = 0;
    DDN_BLK_FOR(b, i, n) bad += !isfinite((double)y[i]);
    if (ddn_blk_sum(b, bad) > 0) return 0;
    double rr = 0, yAr = 0; /* nu = 1/2 y^T A^T r = 1/2 (A y).r */
    DDN_BLK_FOR(b, j, m)
    {
        double ay = 0;
        for (int64_t i = 0; i < n; i++) ay += (double)A[j * n + i] * (double)y[i];
        const double rj = ay - (double)bv[j];
        rr += rj * rj;
        yAr += ay * rj;
    }
    rr = ddn_blk_sum(b, rr);
    yAr = ddn_blk_sum(b, yAr);
    if (ddn_blk_leader(b)) {
        out->fpd = sqrt(rr);
        out->objective = 0.5 * rr;
        out->nu = 0.5 * yAr;
    }
    return 1;
}

/* One item of the iterative forward: iterate from y, then the diagnostics. */
DDN_BLK_FN void TS(less_blk_iterate_item)(const ddn_blk *b, int64_t m, int64_t n, const T *A,
                                          const T *bv, const T *uc,
                                          const ddn_less_iter_params *o, T *y, T *w,
                                          ddn_less_item *out)
{
    int code = DDN_LESS_ITEM_OK;
    if (!TS(less_blk_iterate)(b, m, n, A, bv, uc, o, y, w, out)) code = DDN_LESS_ITEM_STEP;
    else if (!TS(less_blk_diag)(b, m, n, A, bv, y, out)) code = DDN_LESS_ITEM_NONFINITE;
    if (ddn_blk_leader(b)) out->code = code;
}
