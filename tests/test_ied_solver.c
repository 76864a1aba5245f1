/* ddn — tests of the batched IED solvers (declarative/ied_solver.h), float64 and float32.
 *
 * Expected values are independent of the solver: LAPACK syevd (symmetric) and geev (non-symmetric
 * Perron vectors) on the same matrices in float64, constructed spectra A = Q diag(l) Q^T, and
 * identities (a positive matrix has a strictly positive Perron vector; Eq. 42 is 2 for an
 * eigenvector of a negative eigenvalue).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "ied_solver.h"
#include "test_util.h"

/* ---- helpers --------------------------------------------------------------------------------- */
/* A = |G| + |G|^T with G ~ N(0, 1): the paper's symmetric non-negative input (App. G.1). */
static void sym_abs(ddn_rng *rng, int m, double *A)
{
    for (int i = 0; i < m * m; i++) A[i] = fabs(ddn_rng_normal(rng));
    for (int i = 0; i < m; i++)
        for (int j = 0; j <= i; j++) A[i * m + j] = A[j * m + i] = A[i * m + j] + A[j * m + i];
}

/* A = Q diag(l) Q^T with Q a random orthogonal matrix (QR of a Gaussian one). */
static void with_spectrum(ddn_rng *rng, int m, const double *l, double *A)
{
    double *Q = malloc(sizeof(double) * m * m), *tau = malloc(sizeof(double) * m);
    for (int i = 0; i < m * m; i++) Q[i] = ddn_rng_normal(rng);
    assert_int_equal(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, m, Q, m, tau), 0);
    assert_int_equal(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, m, m, Q, m, tau), 0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int k = 0; k < m; k++) s += Q[i * m + k] * l[k] * Q[j * m + k];
            A[i * m + j] = s;
        }
    for (int i = 0; i < m; i++) /* exactly symmetric */
        for (int j = 0; j < i; j++) A[i * m + j] = A[j * m + i];
    free(Q), free(tau);
}

/* sin of the angle between unit-ish vectors y and v: ||y - (y.v) v|| / ||y||, computed without
 * the cancellation of sqrt(1 - (y.v)^2). */
static double sin_angle(int m, const double *y, const double *v)
{
    double d = 0, yy = 0, vv = 0, r = 0;
    for (int i = 0; i < m; i++) d += y[i] * v[i], yy += y[i] * y[i], vv += v[i] * v[i];
    for (int i = 0; i < m; i++) {
        double e = y[i] - d / vv * v[i];
        r += e * e;
    }
    return sqrt(r / yy);
}

/* Eigenvectors of symmetric A (row-major, m x m) by LAPACK syevd: w ascending, column j of Z is
 * the eigenvector of w[j]; Z row-major (m, m). */
static void syevd_ref(int m, const double *A, double *w, double *Z)
{
    memcpy(Z, A, sizeof(double) * m * m);
    assert_int_equal(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', m, Z, m, w), 0);
}

static void column(int m, const double *Z, int j, double *v)
{
    for (int i = 0; i < m; i++) v[i] = Z[i * m + j];
}

/* Solves one batch in dtype dt from float64 data (rounded to float for float32): returns y and
 * lambda as float64. A is rounded in place for float32 so that references see the same input. */
static ddn_status solve(ddn_ctx *ctx, ddn_dtype dt, int B, int m, double *A, const ddn_ied_opts *o,
                        double *y, double *lam, ddn_ied_info *info)
{
    ddn_status st;
    if (dt == DDN_DTYPE_F64) {
        ddn_ied_out out = {.y = y, .lambda = lam, .info = info};
        st = ddn_ied_solve(ctx, dt, B, m, A, o, &out);
    } else {
        float *Af = malloc(sizeof(float) * B * m * m), *yf = malloc(sizeof(float) * B * m);
        float *lf = malloc(sizeof(float) * B);
        for (int i = 0; i < B * m * m; i++) A[i] = (double)(Af[i] = (float)A[i]);
        ddn_ied_out out = {.y = yf, .lambda = lf, .info = info};
        st = ddn_ied_solve(ctx, dt, B, m, Af, o, &out);
        for (int i = 0; i < B * m; i++) y[i] = yf[i];
        for (int i = 0; i < B; i++) lam[i] = lf[i];
        free(Af), free(yf), free(lf);
    }
    return st;
}

static ddn_ied_opts opts_method(ddn_ied_method meth, int64_t k)
{
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.method = meth;
    o.k = k;
    return o;
}

/* ---- PI and SI vs LAPACK syevd on |N(0,1)| + transpose ---------------------------------------- */
static void vs_syevd(ddn_dtype dt)
{
    enum { B = 6 };
    static const int ms[] = {4, 32, 128};
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, dt == DDN_DTYPE_F64 ? 101 : 102);
    const bool f64 = dt == DDN_DTYPE_F64;
    /* The brief's bounds: angle < 1e-10 (float64), < 1e-5 (float32). Solver tolerance: float64
     * 1e-14 (the measured step floor is ~2e-16; the angle left is ~tol rho / (1 - rho)); float32:
     * the default 1e-6 (step floor ~1e-7). */
    const double angle_tol = f64 ? 1e-10 : 1e-5;
    for (int mi = 0; mi < 3; mi++) {
        int m = ms[mi];
        double *A = malloc(sizeof(double) * B * m * m), *Z = malloc(sizeof(double) * m * m);
        double *y = malloc(sizeof(double) * B * m), w[128], v[128], lam[B];
        for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
        const struct { ddn_ied_method meth; int64_t k; } runs[] = {
            {DDN_IED_PI, 1}, {DDN_IED_SI, 1}, {DDN_IED_SI, m <= 4 ? 2 : 4}, {DDN_IED_SI, m}};
        for (int r = 0; r < 4; r++) {
            ddn_ied_opts o = opts_method(runs[r].meth, runs[r].k);
            if (f64) o.tol = 1e-14;
            ddn_ied_info info[B];
            assert_ok(ctx, solve(ctx, dt, B, m, A, &o, y, lam, info));
            double worst = 0;
            for (int b = 0; b < B; b++) {
                syevd_ref(m, A + b * m * m, w, Z);
                column(m, Z, m - 1, v); /* Perron: the largest eigenvalue is the largest |.| */
                double s = sin_angle(m, y + b * m, v);
                worst = fmax(worst, s);
                if (!(s < angle_tol) || !info[b].converged)
                    fail_msg("%s m=%d %s k=%lld item %d: sin(angle) %.3e (converged %d, %lld "
                             "iterations)", ddn_dtype_name(dt), m,
                             runs[r].meth == DDN_IED_PI ? "PI" : "SI", (long long)runs[r].k, b,
                             s, info[b].converged, (long long)info[b].iterations);
                double lt = w[m - 1];
                assert_true(fabs(info[b].lambda - lt) <= (f64 ? 1e-12 : 1e-6) * lt);
                assert_true(fabs(lam[b] - lt) <= (f64 ? 1e-12 : 1e-6) * lt);
                /* Eq. 43 / Eq. 42 on the answer: float64 residuals of y's rounding */
                assert_true(info[b].eigen_dist <= (f64 ? 1e-10 : 1e-5) * lt);
                assert_true(info[b].fpd <= (f64 ? 1e-10 : 1e-5));
                /* a positive matrix has a strictly positive Perron vector; the default reference
                 * sign (all ones) picks it */
                for (int i = 0; i < m; i++) assert_true(y[b * m + i] > 0);
                assert_true(info[b].symmetric && !info[b].tied && info[b].gap_ratio < 0.9);
                /* the gap estimate is |lambda_2| / |lambda_1| from syevd */
                double l2 = fmax(fabs(w[0]), m > 1 ? fabs(w[m - 2]) : 0);
                assert_true(fabs(info[b].gap_ratio - l2 / lt) <= 1e-2 * l2 / lt + 1e-12);
            }
            print_message("%s m=%3d %s k=%3lld: worst sin(angle) vs syevd %.2e\n",
                          ddn_dtype_name(dt), m, runs[r].meth == DDN_IED_PI ? "PI" : "SI",
                          (long long)runs[r].k, worst);
        }
        free(A), free(Z), free(y);
    }
    ddn_ctx_free(ctx);
}
static void test_vs_syevd_f64(void **s) { (void)s, vs_syevd(DDN_DTYPE_F64); }
static void test_vs_syevd_f32(void **s) { (void)s, vs_syevd(DDN_DTYPE_F32); }

/* SI's extra outputs: V orthonormal with V[:,0] = y, lambdas[0] = lambda; PI gives k = 1. */
static void test_si_outputs(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 111);
    enum { B = 3, m = 16, k = 5 };
    double A[B * m * m], y[B * m], lam[B], V[B * m * k], lams[B * k], w[m], Z[m * m];
    for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
    ddn_ied_opts o = opts_method(DDN_IED_SI, k);
    o.tol = 1e-14;
    o.max_iter = 5000;
    ddn_ied_info info[B];
    ddn_ied_out out = {.y = y, .lambda = lam, .V = V, .lambdas = lams, .info = info};
    assert_ok(ctx, ddn_ied_solve(ctx, DDN_DTYPE_F64, B, m, A, &o, &out));
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) {
                double d = 0;
                for (int r = 0; r < m; r++) d += V[b * m * k + r * k + i] * V[b * m * k + r * k + j];
                assert_true(fabs(d - (i == j)) < 1e-13);
            }
        for (int r = 0; r < m; r++) assert_true(V[b * m * k + r * k] == y[b * m + r]);
        assert_true(lams[b * k] == lam[b]);
        /* the Rayleigh quotients are ordered by magnitude and bounded by the spectrum */
        syevd_ref(m, A + b * m * m, w, Z);
        for (int j = 0; j < k; j++)
            assert_true(lams[b * k + j] <= w[m - 1] + 1e-12 && lams[b * k + j] >= w[0] - 1e-12);
        for (int j = 1; j < k; j++) assert_true(fabs(lams[b * k + j]) <= fabs(lams[b * k]));
        /* each column follows the reference sign (all ones) */
        for (int j = 0; j < k; j++) {
            double d = 0;
            for (int r = 0; r < m; r++) d += V[b * m * k + r * k + j];
            assert_true(d >= 0);
        }
    }
    /* PI with the V / lambdas outputs: k = 1 */
    o = DDN_IED_OPTS_DEFAULT;
    assert_ok(ctx, ddn_ied_solve(ctx, DDN_DTYPE_F64, B, m, A, &o, &out));
    for (int b = 0; b < B; b++) {
        assert_memory_equal(V + b * m, y + b * m, sizeof(double) * m);
        assert_true(lams[b] == lam[b]);
    }
    ddn_ctx_free(ctx);
}

/* ---- the Gershgorin shift: largest algebraic vs largest magnitude (PMAF-MATH §6) ------------- */
static void test_shift(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 121);
    /* Constructed: spectrum {-5, 3, 1, 0.5, -0.2, 0.1}. Unshifted PI converges to the -5
     * eigenvector (largest magnitude), where Eq. 42 is ||y + y|| = 2; the shift finds 3. */
    enum { m = 6 };
    const double l[m] = {-5, 3, 1, 0.5, -0.2, 0.1};
    double A[m * m], y[m], lam, w[m], Z[m * m], v[m];
    with_spectrum(&rng, m, l, A);
    syevd_ref(m, A, w, Z);
    for (int meth = DDN_IED_PI; meth <= DDN_IED_SI; meth++) {
        ddn_ied_opts o = opts_method((ddn_ied_method)meth, meth == DDN_IED_SI ? 2 : 1);
        o.tol = 1e-14;
        o.max_iter = 10000;
        ddn_ied_info info;
        assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, m, A, &o, y, &lam, &info));
        column(m, Z, 0, v); /* w[0] = -5 */
        assert_true(info.converged && fabs(lam + 5) < 1e-12 && sin_angle(m, y, v) < 1e-10);
        assert_true(fabs(info.fpd - 2) < 1e-10 && info.eigen_dist < 1e-10);
        o.shift = true;
        assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, m, A, &o, y, &lam, &info));
        column(m, Z, m - 1, v); /* w[m-1] = 3 */
        assert_true(info.converged && fabs(lam - 3) < 1e-12 && sin_angle(m, y, v) < 1e-10);
        assert_true(info.shift > 0 && info.fpd < 1e-10);
    }
    /* Plain symmetric N(0,1) matrices: count how often the largest-magnitude eigenvalue is not
     * the largest one (PMAF-MATH §6 measured 80 of 100 misses for the reference code); the
     * unshifted PI must track the former and the shifted PI the latter, every time. */
    enum { K = 40, n = 8 };
    int differ = 0;
    for (int s = 0; s < K; s++) {
        double G[n * n], An[n * n], yn[n], wn[n], Zn[n * n], vn[n], ln;
        for (int i = 0; i < n * n; i++) G[i] = ddn_rng_normal(&rng);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) An[i * n + j] = 0.5 * (G[i * n + j] + G[j * n + i]);
        syevd_ref(n, An, wn, Zn);
        bool neg = fabs(wn[0]) > fabs(wn[n - 1]);
        differ += neg;
        ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
        o.tol = 1e-14;
        o.max_iter = 200000;
        ddn_ied_info info;
        assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, n, An, &o, yn, &ln, &info));
        double target = neg ? wn[0] : wn[n - 1];
        if (info.converged) assert_true(fabs(ln - target) <= 1e-9 * fabs(target));
        o.shift = true;
        assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, n, An, &o, yn, &ln, &info));
        column(n, Zn, n - 1, vn);
        if (!info.converged || fabs(ln - wn[n - 1]) > 1e-9 * fabs(wn[n - 1]))
            fail_msg("sample %d: shifted PI lambda %.15g, largest eigenvalue %.15g (%lld it, "
                     "ratio %.6f)", s, ln, wn[n - 1], (long long)info.iterations,
                     info.gap_ratio);
    }
    print_message("symmetric N(0,1) 8x8: largest |eigenvalue| is negative in %d of %d\n", differ,
                  K);
    assert_true(differ >= 5); /* about half by symmetry of the distribution */
    ddn_ctx_free(ctx);
}

/* ---- sign consistency (Eq. 16-17) ------------------------------------------------------------ */
static void test_sign_modes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_ied_info info;
    double y[3], lam;
    /* diag(-3, 1, 0.5): dominant eigenvalue negative, u flips every step without alignment */
    double A[9] = {-3, 0, 0, 0, 1, 0, 0, 0, 0.5};
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.sign = 0;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 3, A, &o, y, &lam, &info));
    assert_true(info.converged && fabs(fabs(y[0]) - 1) < 1e-12 && fabs(lam + 3) < 1e-12);
    /* start ones/sqrt(3) > 0; after t steps the e_1 part has sign (-1)^t */
    assert_true((y[0] > 0) == (info.iterations % 2 == 0));
    o.sign = DDN_IED_SIGN_HISTORICAL; /* stays on the start's side */
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 3, A, &o, y, &lam, &info));
    assert_true(y[0] > 0);
    /* reference direction r = (-1, 0, 0): y . r >= 0 */
    const double r[3] = {-1, 0, 0};
    o.sign = DDN_IED_SIGN_HISTORICAL | DDN_IED_SIGN_REFERENCE;
    o.ref = r;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 3, A, &o, y, &lam, &info));
    assert_true(y[0] < 0);
    /* r orthogonal to y: the dot product is exactly 0 (diag(3, 0, 0) maps the start to e_1 in
     * one step), the sign is kept (+1) rather than multiplied by sign(0) = 0 */
    const double r0[3] = {0, 1, 0};
    double D[9] = {3, 0, 0, 0, 0, 0, 0, 0, 0};
    o.ref = r0;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 3, D, &o, y, &lam, &info));
    assert_true(y[0] == 1 && y[1] == 0 && y[2] == 0);
    /* float32, reference given in float32 */
    float Af[9], yf[3];
    for (int i = 0; i < 9; i++) Af[i] = (float)A[i];
    const float rf[3] = {-1, 0, 0};
    o.ref = rf;
    ddn_ied_out out = {.y = yf, .info = &info};
    assert_ok(ctx, ddn_ied_solve(ctx, DDN_DTYPE_F32, 1, 3, Af, &o, &out));
    assert_true(yf[0] < 0 && fabsf(yf[0] + 1) < 1e-6f);
    /* SI without historical alignment: Householder QR flips columns; the step test aligns */
    ddn_rng rng;
    ddn_rng_seed(&rng, 131);
    double S[16 * 16], ys[16], ls;
    sym_abs(&rng, 16, S);
    o = opts_method(DDN_IED_SI, 3);
    o.sign = 0;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 16, S, &o, ys, &ls, &info));
    assert_true(info.converged && info.eigen_dist < 1e-9 * ls);
    ddn_ctx_free(ctx);
}

/* ---- non-symmetric non-negative input: the Perron vector vs LAPACK geev ---------------------- */
static void nonsymmetric(ddn_dtype dt)
{
    enum { B = 4 };
    static const int ms[] = {4, 32, 128};
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, dt == DDN_DTYPE_F64 ? 141 : 142);
    const bool f64 = dt == DDN_DTYPE_F64;
    for (int mi = 0; mi < 3; mi++) {
        int m = ms[mi];
        double *A = malloc(sizeof(double) * B * m * m), *y = malloc(sizeof(double) * B * m);
        double *Ac = malloc(sizeof(double) * m * m), *VR = malloc(sizeof(double) * m * m);
        double wr[128], wi[128], v[128], lam[B], vl[1];
        for (int i = 0; i < B * m * m; i++) A[i] = fabs(ddn_rng_normal(&rng));
        for (int r = 0; r < 2; r++) {
            ddn_ied_opts o = r == 0 ? opts_method(DDN_IED_PI, 1) : opts_method(DDN_IED_SI, 3);
            if (f64) o.tol = 1e-14;
            ddn_ied_info info[B];
            assert_ok(ctx, solve(ctx, dt, B, m, A, &o, y, lam, info));
            double worst = 0;
            for (int b = 0; b < B; b++) {
                memcpy(Ac, A + b * m * m, sizeof(double) * m * m);
                assert_int_equal(LAPACKE_dgeev(LAPACK_ROW_MAJOR, 'N', 'V', m, Ac, m, wr, wi, vl,
                                               1, VR, m), 0);
                int j = 0; /* the Perron root: real, largest real part and modulus */
                for (int i = 1; i < m; i++)
                    if (wr[i] > wr[j]) j = i;
                assert_true(wi[j] == 0);
                column(m, VR, j, v);
                double s = sin_angle(m, y + b * m, v);
                worst = fmax(worst, s);
                /* A positive matrix's Perron vector is well conditioned (simple root with a
                 * large gap here), so the symmetric case's bounds apply. */
                if (!(s < (f64 ? 1e-10 : 1e-5)) || !info[b].converged)
                    fail_msg("%s m=%d %s item %d: sin(angle) %.3e vs geev", ddn_dtype_name(dt), m,
                             r ? "SI" : "PI", b, s);
                assert_true(fabs(info[b].lambda - wr[j]) <= (f64 ? 1e-12 : 1e-6) * wr[j]);
                assert_true(!info[b].symmetric && info[b].eigen_dist <= (f64 ? 1e-10 : 1e-5) * wr[j]);
                for (int i = 0; i < m; i++) assert_true(y[b * m + i] > 0);
            }
            print_message("%s m=%3d %s non-symmetric: worst sin(angle) vs geev %.2e\n",
                          ddn_dtype_name(dt), m, r ? "SI k=3" : "PI", worst);
        }
        free(A), free(y), free(Ac), free(VR);
    }
    ddn_ctx_free(ctx);
}
static void test_nonsymmetric_f64(void **s) { (void)s, nonsymmetric(DDN_DTYPE_F64); }
static void test_nonsymmetric_f32(void **s) { (void)s, nonsymmetric(DDN_DTYPE_F32); }

/* ---- repeated / tied top eigenvalues ---------------------------------------------------------- */
static void test_ties(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 151);
    ddn_ied_info info;
    double lam;
    /* lambda_1 = lambda_2 = 5: PI converges to some unit vector of the eigenspace (an eigenvector,
     * but not unique), and the tie is flagged. */
    enum { m = 6 };
    const double l[m] = {5, 5, 1, 0.5, -0.3, 2};
    double A[m * m], y[m];
    with_spectrum(&rng, m, l, A);
    for (int meth = DDN_IED_PI; meth <= DDN_IED_SI; meth++) {
        ddn_ied_opts o = opts_method((ddn_ied_method)meth, meth == DDN_IED_SI ? 3 : 1);
        assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, m, A, &o, y, &lam, &info));
        assert_true(info.converged && fabs(lam - 5) < 1e-10 && info.eigen_dist < 1e-9);
        assert_true(info.tied && fabs(info.gap_ratio - 1) < 1e-6 && fabs(info.lambda2 - 5) < 1e-5);
    }
    /* [[0, 1], [1, 0]]: the ones start is already the +1 eigenvector, so PI converges at once,
     * but -1 ties in magnitude: flagged. With the shift (sigma = 1) it is no longer a tie. */
    double P[4] = {0, 1, 1, 0}, yp[2];
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 2, P, &o, yp, &lam, &info));
    assert_true(info.converged && info.iterations == 1 && fabs(lam - 1) < 1e-15);
    assert_true(info.tied && fabs(info.lambda2 - 1) < 1e-12);
    o.shift = true;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 2, P, &o, yp, &lam, &info));
    assert_true(info.converged && !info.tied && info.shift == 1 && fabs(info.lambda2 + 1) < 1e-12);
    /* spectrum {4, -4, 1}: PI oscillates between the two and never converges; flagged, and
     * strict mode turns it into an error naming the item. */
    const double l2[3] = {4, -4, 1};
    double A2[2 * 9], y2[2 * 3], lam2[2];
    ddn_ied_info info2[2];
    sym_abs(&rng, 3, A2);
    with_spectrum(&rng, 3, l2, A2 + 9);
    o = DDN_IED_OPTS_DEFAULT;
    o.max_iter = 300;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 2, 3, A2, &o, y2, lam2, info2));
    assert_true(info2[0].converged && !info2[0].tied);
    assert_true(!info2[1].converged && info2[1].tied && info2[1].iterations == 300);
    o.strict = true;
    assert_int_equal(solve(ctx, DDN_DTYPE_F64, 2, 3, A2, &o, y2, lam2, info2),
                     DDN_ERR_NOT_CONVERGED);
    assert_error(ctx, DDN_ERR_NOT_CONVERGED, "ied_solve: item 1 of 2 (A 3x3, float64): PI did "
                                             "not converge in 300 iterations");
    /* float32 sees the same tie */
    o = DDN_IED_OPTS_DEFAULT;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F32, 1, m, A, &o, y, &lam, &info));
    assert_true(info.converged && info.tied);
    ddn_ctx_free(ctx);
}

/* ---- the gap check (ied_gap: Lanczos / Arnoldi on the deflated operator) ----------------------
 * Its estimate decides ties at tie_tol (1e-3: tied when |lambda_2 / lambda| >= 0.999), so it is
 * checked right next to the threshold on both sides; and on the paper's matrices, what it costs
 * (matvecs: the power iteration it replaced took 70-200) and how close it is to syevd. */
static void test_gap_check(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 181);
    enum { m = 40 };
    for (int c = 0; c < 2; c++)
        for (int d = 0; d < 2; d++) {
            const ddn_dtype dt = d ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
            double l[m], A[m * m], y[m], lam;
            l[0] = 1, l[1] = c ? 0.998 : 0.9995; /* the rest spread over [-0.5, 0.5] */
            for (int i = 2; i < m; i++) l[i] = 0.5 - (double)(i - 2) / (m - 3);
            with_spectrum(&rng, m, l, A);
            ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
            o.max_iter = 200000; /* PI itself converges at rate 0.9995 */
            ddn_ied_info info;
            assert_ok(ctx, solve(ctx, dt, 1, m, A, &o, y, &lam, &info));
            if (!(fabs(info.gap_ratio - l[1]) < 1e-4 && info.tied == (c == 0)))
                fail_msg("%s, lambda_2 = %g: gap ratio %.6f, tied %d (%lld steps)",
                         ddn_dtype_name(dt), l[1], info.gap_ratio, info.tied,
                         (long long)info.gap_steps);
            print_message("%s lambda_2 = %g: gap ratio %.7f, tied %d, %lld steps (PI: %lld "
                          "iterations)\n", ddn_dtype_name(dt), l[1], info.gap_ratio, info.tied,
                          (long long)info.gap_steps, (long long)info.iterations);
        }
    const int ms[] = {64, 256};
    for (int mi = 0; mi < 2; mi++)
        for (int d = 0; d < 2; d++) {
            enum { B = 3 };
            const int n = ms[mi];
            const ddn_dtype dt = d ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
            double *A = malloc(sizeof(double) * B * n * n), *y = malloc(sizeof(double) * B * n);
            double *w = malloc(sizeof(double) * n), *Z = malloc(sizeof(double) * n * n), lam[B];
            for (int b = 0; b < B; b++) sym_abs(&rng, n, A + b * n * n);
            ddn_ied_info info[B];
            assert_ok(ctx, solve(ctx, dt, B, n, A, NULL, y, lam, info));
            for (int b = 0; b < B; b++) {
                syevd_ref(n, A + b * n * n, w, Z);
                double want = fmax(fabs(w[0]), fabs(w[n - 2])) / w[n - 1];
                double e = fabs(info[b].gap_ratio - want) / want;
                print_message("%s m=%3d item %d: gap ratio %.6f (syevd %.6f, rel. diff %.1e) in "
                              "%lld steps\n", ddn_dtype_name(dt), n, b, info[b].gap_ratio, want,
                              e, (long long)info[b].gap_steps);
                assert_true(e < 1e-3 && !info[b].tied);
                assert_true(info[b].gap_steps >= 4 && info[b].gap_steps <= 60);
            }
            free(A), free(y), free(w), free(Z);
        }
    ddn_ctx_free(ctx);
}

/* ---- degenerate input, options, reproducibility ------------------------------------------- */
static void test_degenerate_and_options(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 161);
    enum { m = 5 };
    double A[3 * m * m], y[3 * m], lam[3];
    ddn_ied_info info[3];
    for (int b = 0; b < 3; b++) sym_abs(&rng, m, A + b * m * m);
    for (int meth = DDN_IED_PI; meth <= DDN_IED_SI; meth++) {
        ddn_ied_opts o = opts_method((ddn_ied_method)meth, meth == DDN_IED_SI ? 2 : 1);
        double Az[3 * m * m];
        memcpy(Az, A, sizeof Az);
        memset(Az + m * m, 0, sizeof(double) * m * m);
        assert_int_equal(solve(ctx, DDN_DTYPE_F64, 3, m, Az, &o, y, lam, info), DDN_ERR_SINGULAR);
        assert_error(ctx, DDN_ERR_SINGULAR, "item 1 of 3 (A 5x5, float64");
        assert_true(info[0].converged && info[2].converged); /* the others are solved */
        memcpy(Az, A, sizeof Az);
        Az[2 * m * m + 7] = NAN;
        assert_int_equal(solve(ctx, DDN_DTYPE_F32, 3, m, Az, &o, y, lam, info), DDN_ERR_NUMERIC);
        assert_error(ctx, DDN_ERR_NUMERIC, "item 2 of 3 (A 5x5, float32");
        Az[2 * m * m + 7] = -INFINITY;
        assert_int_equal(solve(ctx, DDN_DTYPE_F64, 3, m, Az, &o, y, lam, info), DDN_ERR_NUMERIC);
        assert_error(ctx, DDN_ERR_NUMERIC, "NaN or Inf");
        /* nilpotent: [[0, 1], [0, 0]] maps everything to zero in two steps */
        double N[4] = {0, 1, 0, 0}, yn[2], ln;
        ddn_ied_opts on = opts_method((ddn_ied_method)meth, 1);
        assert_int_equal(solve(ctx, DDN_DTYPE_F64, 1, 2, N, &on, yn, &ln, info), DDN_ERR_SINGULAR);
        assert_error(ctx, DDN_ERR_SINGULAR, "nilpotent");
    }
    /* A u = 0 only for the ones start: [[1, -1], [-1, 1]] ones = 0; the random restart finds 2 */
    double K2[4] = {1, -1, -1, 1}, yk[2], lk;
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, 2, K2, &o, yk, &lk, info));
    assert_true(info[0].converged && fabs(lk - 2) < 1e-12);

    /* invalid options */
    ddn_ied_out out = {.y = y};
    const struct { ddn_ied_opts o; const char *needle; } bad[] = {
        {{.method = 0}, "not DDN_IED_PI or DDN_IED_SI"},
        {{.method = DDN_IED_SI, .k = 0, .max_iter = 10}, "k = 0"},
        {{.method = DDN_IED_SI, .k = m + 1, .max_iter = 10}, "expected 1..5"},
        {{.method = DDN_IED_PI, .k = 2, .max_iter = 10}, "k = 2"},
        {{.method = DDN_IED_PI, .k = 1, .max_iter = 0}, "max_iter 0"},
        {{.method = DDN_IED_PI, .k = 1, .max_iter = 10, .sign = 8}, "sign 0x8"},
        {{.method = DDN_IED_PI, .k = 1, .max_iter = 10, .tie_tol = 1}, "tie_tol 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ddn_ied_solve(ctx, DDN_DTYPE_F64, 1, m, A, &bad[i].o, &out), DDN_ERR_ARG);
        assert_error(ctx, DDN_ERR_ARG, bad[i].needle);
    }
    assert_int_equal(ddn_ied_solve(ctx, DDN_DTYPE_I64, 1, m, A, NULL, &out), DDN_ERR_DTYPE);
    assert_error(ctx, DDN_ERR_DTYPE, "ied_solve: dtype");
    assert_int_equal(ddn_ied_solve(ctx, DDN_DTYPE_F64, 1, 0, A, NULL, &out), DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "A (1,0,0)");
    ddn_ied_out noy = {.y = NULL};
    assert_int_equal(ddn_ied_solve(ctx, DDN_DTYPE_F64, 1, m, A, NULL, &noy), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "must not be NULL");
    assert_ok(ctx, ddn_ied_solve(ctx, DDN_DTYPE_F64, 0, m, A, NULL, &out));
    /* m = 1: y = +1 */
    double one = -2.5, y1 = 0;
    ddn_ied_out o1 = {.y = &y1, .info = info};
    assert_ok(ctx, ddn_ied_solve(ctx, DDN_DTYPE_F64, 1, 1, &one, NULL, &o1));
    assert_true(y1 == 1 && info[0].lambda == -2.5 && info[0].converged && !info[0].tied);

    /* the arena is rewound */
    ddn_stats st0 = ddn_ctx_stats(ctx);
    assert_ok(ctx, ddn_ied_solve(ctx, DDN_DTYPE_F64, 3, m, A, NULL, &out));
    assert_int_equal(ddn_ctx_stats(ctx).arena_in_use, st0.arena_in_use);
    ddn_ctx_free(ctx);
}

static void test_random_init_and_batch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 171);
    enum { B = 13, m = 24 };
    double A[B * m * m], y[B * m], y2[B * m], y1[m], lam[B], lam1;
    ddn_ied_info info[B], inf1;
    for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
    /* the batch loop gives exactly the one-by-one results (deterministic start) */
    for (int meth = DDN_IED_PI; meth <= DDN_IED_SI; meth++) {
        ddn_ied_opts o = opts_method((ddn_ied_method)meth, meth == DDN_IED_SI ? 4 : 1);
        assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, B, m, A, &o, y, lam, info));
        for (int b = 0; b < B; b++) {
            assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, 1, m, A + b * m * m, &o, y1, &lam1, &inf1));
            assert_memory_equal(y + b * m, y1, sizeof y1);
            assert_int_equal(info[b].iterations, inf1.iterations);
        }
    }
    /* seeded random starts: reproducible, and the same eigenvector (reference sign) */
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.random_init = true;
    o.seed = 7;
    o.tol = 1e-14;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, B, m, A, &o, y, lam, info));
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, B, m, A, &o, y2, lam, info));
    assert_memory_equal(y, y2, sizeof y);
    o.seed = 8;
    assert_ok(ctx, solve(ctx, DDN_DTYPE_F64, B, m, A, &o, y2, lam, info));
    for (int b = 0; b < B; b++) assert_true(sin_angle(m, y + b * m, y2 + b * m) < 1e-12);
    assert_true(memcmp(y, y2, sizeof y) != 0 || info[0].iterations == 0);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_syevd_f64),
        cmocka_unit_test(test_vs_syevd_f32),
        cmocka_unit_test(test_si_outputs),
        cmocka_unit_test(test_shift),
        cmocka_unit_test(test_sign_modes),
        cmocka_unit_test(test_nonsymmetric_f64),
        cmocka_unit_test(test_nonsymmetric_f32),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_gap_check),
        cmocka_unit_test(test_degenerate_and_options),
        cmocka_unit_test(test_random_init_and_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
