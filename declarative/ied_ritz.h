/* ddn — the extreme Ritz values of IED's symmetric gap check (ied_gap_lanczos), shared by the
 * CPU solver (ied_solver.c) and the per-item block code that also runs on the device
 * (ied_power_blk.h): plain arithmetic on the small Lanczos tridiagonal, no library calls. What
 * each does when the Laguerre iteration fails to settle differs (the CPU has LAPACK's dsterf), so
 * the fallback is the caller's.
 */
#ifndef DDN_IED_RITZ_H
#define DDN_IED_RITZ_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "blk.h"

/* The largest eigenvalue of the symmetric tridiagonal s T, T = the leading n x n block of H
 * (column-major, leading dimension ld; diagonal H_ii, off-diagonal H_{i+1,i}), s = +-1. Laguerre's
 * iteration on p(x) = det(s T - x I): from any upper bound of the largest root it decreases
 * monotonically to that root and converges cubically (p has real roots), and p'/p and its
 * derivative come from the LDL^T pivots q_i of s T - x I in O(n) per step. x is an upper bound
 * exactly when every pivot is negative (Sturm), so a guess (the previous step's value plus twice
 * its last change: Ritz values grow monotonically and settle) is tried first and verified by the
 * same sweep, else the Gershgorin bound is used. 2-3 sweeps from a good guess, ~6 from
 * Gershgorin, against dsterf's O(n^2) (measured 18 ns n^2: most of the gap check's time at
 * m = 32). A pivot >= 0 at a verified bound means x reached the root to working accuracy.
 * Returns false when it fails to settle (the caller falls back). */
DDN_BLK_FN bool ied_tridiag_top(int64_t n, const double *H, int64_t ld, double s, double guess,
                                double *top)
{
    double gersh = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double r = (i ? fabs(H[i + (i - 1) * ld]) : 0) + (i + 1 < n ? fabs(H[i + 1 + i * ld]) : 0);
        gersh = fmax(gersh, s * H[i + i * ld] + r);
    }
    bool upper = !(isfinite(guess) && guess < gersh);
    double x = upper ? gersh : guess;
    for (int it = 0; it < 50 && isfinite(x); it++) {
        double G = 0, Hs = 0, r = 0, dq = 0, ddq = 0; /* r = 1 / q_{i-1}, dq, ddq: q_{i-1}', '' */
        bool below = false;
        for (int64_t i = 0; i < n; i++) {
            double e = i ? H[i + (i - 1) * ld] : 0, e2 = e * e;
            double q = (s * H[i + i * ld] - x) - e2 * r;
            double dqi = -1 + e2 * dq * r * r;
            double ddqi = e2 * r * r * (ddq - 2 * dq * dq * r);
            if (!(q < 0)) {
                below = true;
                break;
            }
            r = 1 / q, dq = dqi, ddq = ddqi;
            double g = dq * r;
            G += g, Hs += g * g - ddq * r;
        }
        if (below) {
            if (upper) { /* at the root (rounding): p(x) = 0 */
                *top = x;
                return true;
            }
            upper = true, x = gersh; /* the guess was not an upper bound */
            continue;
        }
        upper = true;
        const double nn = (double)n;
        double dx = nn / (G + sqrt(fmax(0, (nn - 1) * (nn * Hs - G * G))));
        if (!(dx >= 0)) return false;
        x -= dx;
        if (dx <= 4 * DBL_EPSILON * fabs(x) || dx == 0) {
            *top = x;
            return true;
        }
    }
    return false;
}

/* The last extreme Ritz values of the symmetric case and their last changes (ied_tridiag_top's
 * guesses): index 0 the largest, 1 minus the smallest. */
typedef struct ied_ritz_track {
    double top[2], step[2];
    bool have;
} ied_ritz_track;

/* *est = max |Ritz value| of the leading n x n block of the Lanczos matrix H (column-major,
 * leading dimension ld, symmetric tridiagonal) by ied_tridiag_top at both ends, guessing from
 * the track. Returns false (and forgets the track) when either end fails to settle. */
DDN_BLK_FN bool ied_ritz_ends(int64_t n, const double *H, int64_t ld, ied_ritz_track *tr,
                              double *est)
{
    double t[2];
    bool ok = true;
    for (int e = 0; e < 2 && ok; e++) {
        double guess = tr->have ? tr->top[e] + 2 * tr->step[e] + 1e-9 * fabs(tr->top[e]) : NAN;
        ok = ied_tridiag_top(n, H, ld, e ? -1 : 1, guess, &t[e]);
    }
    if (!ok) {
        tr->have = false;
        return false;
    }
    for (int e = 0; e < 2; e++) {
        tr->step[e] = tr->have ? fabs(t[e] - tr->top[e]) : 0;
        tr->top[e] = t[e];
    }
    tr->have = true;
    *est = fmax(fabs(t[0]), fabs(t[1]));
    return true;
}

/* The Gershgorin bound on max |eigenvalue| of that tridiagonal: an overestimate, so as a
 * fallback it can only flag a tie that is not there, never miss one. */
DDN_BLK_FN double ied_ritz_gershgorin(int64_t n, const double *H, int64_t ld)
{
    double best = 0;
    for (int64_t i = 0; i < n; i++)
        best = fmax(best, fabs(H[i + i * ld]) + (i ? fabs(H[i + (i - 1) * ld]) : 0) +
                              (i + 1 < n ? fabs(H[i + 1 + i * ld]) : 0));
    return best;
}

#endif
