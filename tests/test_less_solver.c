/* ddn — tests of the batched LESS solvers (declarative/less_solver.h), float64 and float32.
 *
 * Expected values are independent of the solver: a brute-force search over the circle for 2x2
 * problems, the optimality certificate of PMAF-MATH §1 (KKT A^T(Ay - b) = 2 nu y with
 * A^T A - 2 nu I positive semidefinite, checked with LAPACK syevd here), LAPACK SVD for b = 0, and
 * the failure counts of the paper's Table 1/4 as measured with the reference code (PMAF-MATH §6).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "less_solver.h"
#include "test_util.h"

#define PI 3.14159265358979323846

/* ---- helpers --------------------------------------------------------------------------------- */
static void randn(ddn_rng *rng, double *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = scale * ddn_rng_normal(rng);
}

static void to_f32(const double *x, float *xf, int64_t n)
{
    for (int64_t i = 0; i < n; i++) xf[i] = (float)x[i];
}

static void round_f32(double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = (double)(float)x[i];
}

/* 1/2 ||A y - b||^2 in double; A (m, n), y (n) */
static double objective(const double *A, const double *b, const double *y, int m, int n)
{
    double s = 0;
    for (int j = 0; j < m; j++) {
        double r = -b[j];
        for (int i = 0; i < n; i++) r += A[j * n + i] * y[i];
        s += r * r;
    }
    return 0.5 * s;
}

static double norm(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s);
}

/* Brute force over the unit circle for 2x2: a grid of 3600 angles, then golden-section refinement
 * around every grid local minimum (a LESS objective on the circle has at most two). */
static double f_angle(const double *A, const double *b, double t)
{
    double u[2] = {cos(t), sin(t)};
    return objective(A, b, u, 2, 2);
}

static double brute_2x2(const double *A, const double *b)
{
    enum { N = 3600 };
    const double h = 2 * PI / N;
    double best = INFINITY;
    for (int k = 0; k < N; k++) {
        double f0 = f_angle(A, b, (k - 1) * h), f1 = f_angle(A, b, k * h),
               f2 = f_angle(A, b, (k + 1) * h);
        if (!(f1 <= f0 && f1 <= f2)) continue;
        double lo = (k - 1) * h, hi = (k + 1) * h, g = (sqrt(5.0) - 1) / 2;
        double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
        double y1 = f_angle(A, b, x1), y2 = f_angle(A, b, x2);
        for (int it = 0; it < 200 && hi - lo > 1e-15; it++) {
            if (y1 < y2) {
                hi = x2, x2 = x1, y2 = y1;
                x1 = hi - g * (hi - lo), y1 = f_angle(A, b, x1);
            } else {
                lo = x1, x1 = x2, y1 = y2;
                x2 = lo + g * (hi - lo), y2 = f_angle(A, b, x2);
            }
        }
        double f = fmin(fmin(y1, y2), f1);
        if (f < best) best = f;
    }
    return best;
}

/* Certificate of global optimality (PMAF-MATH §1): returns the KKT residual
 * ||A^T(Ay - b) - 2 nu y|| with nu = 1/2 y^T A^T (A y - b) recomputed here, and in *psd_margin the
 * smallest eigenvalue of A^T A - 2 nu I (must be >= 0 up to round-off). */
static double kkt_residual(const double *A, const double *b, const double *y, int m, int n,
                           double *nu_out, double *psd_margin)
{
    double *r = malloc(sizeof(double) * m), *g = malloc(sizeof(double) * n);
    double *M = malloc(sizeof(double) * n * n), *w = malloc(sizeof(double) * n);
    for (int j = 0; j < m; j++) {
        r[j] = -b[j];
        for (int i = 0; i < n; i++) r[j] += A[j * n + i] * y[i];
    }
    double nu = 0;
    for (int i = 0; i < n; i++) {
        g[i] = 0;
        for (int j = 0; j < m; j++) g[i] += A[j * n + i] * r[j];
        nu += 0.5 * y[i] * g[i];
    }
    double res = 0;
    for (int i = 0; i < n; i++) res += (g[i] - 2 * nu * y[i]) * (g[i] - 2 * nu * y[i]);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double s = 0;
            for (int j = 0; j < m; j++) s += A[j * n + i] * A[j * n + k];
            M[i * n + k] = s;
        }
    assert_int_equal(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, M, n, w), 0);
    *psd_margin = w[0] - 2 * nu;
    if (nu_out) *nu_out = nu;
    free(r), free(g), free(M), free(w);
    return sqrt(res);
}

/* Frobenius norm of A, for scale-aware tolerances. */
static double fro(const double *A, int64_t n)
{
    return norm(A, (int)n);
}


static ddn_less_opts opts_for(unsigned method)
{
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.method = method;
    return o;
}

/* ---- EXACT vs brute force on 2x2 ------------------------------------------------------------- */
static void exact_2x2(ddn_dtype dt)
{
    enum { K = 600 };
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, dt == DDN_DTYPE_F64 ? 11 : 12);
    double *A = malloc(sizeof(double) * K * 4), *b = malloc(sizeof(double) * K * 2);
    double *y = malloc(sizeof(double) * K * 2);
    float *Af = malloc(sizeof(float) * K * 4), *bf = malloc(sizeof(float) * K * 2);
    float *yf = malloc(sizeof(float) * K * 2);
    ddn_less_info *info = malloc(sizeof *info * K);
    /* b scaled by 0.2, 1 or 5 so that both the inner and the outer case are frequent */
    for (int k = 0; k < K; k++) {
        randn(&rng, A + 4 * k, 4, 1.0);
        randn(&rng, b + 2 * k, 2, k % 3 == 0 ? 0.2 : k % 3 == 1 ? 1.0 : 5.0);
    }
    ddn_less_opts o = opts_for(DDN_LESS_EXACT);
    if (dt == DDN_DTYPE_F32) {
        round_f32(A, K * 4), round_f32(b, K * 2);
        to_f32(A, Af, K * 4), to_f32(b, bf, K * 2);
        assert_ok(ctx, ddn_less_solve(ctx, dt, K, 2, 2, Af, bf, yf, &o, info));
        for (int i = 0; i < K * 2; i++) y[i] = yf[i];
    } else {
        assert_ok(ctx, ddn_less_solve(ctx, dt, K, 2, 2, A, b, y, &o, info));
    }
    int inner = 0, outer = 0;
    double worst = 0;
    for (int k = 0; k < K; k++) {
        const double *Ak = A + 4 * k, *bk = b + 2 * k, *yk = y + 2 * k;
        double fb = brute_2x2(Ak, bk), f = objective(Ak, bk, yk, 2, 2);
        /* float64: the brief's 1e-10 (relative for large objectives). float32: y is rounded to
         * float, which moves the objective by |g . dy| <= ||A||(||A|| + ||b||) * eps_f32 * few. */
        double na = fro(Ak, 4), nb = norm(bk, 2);
        double tol = dt == DDN_DTYPE_F64 ? 1e-10 * fmax(1, fb) : 8 * FLT_EPSILON * na * (na + nb);
        if (fabs(f - fb) > tol)
            fail_msg("item %d: exact objective %.17g, brute force %.17g (tol %g)", k, f, fb, tol);
        worst = fmax(worst, fabs(f - fb) / fmax(1, fb));
        assert_true(fabs(norm(yk, 2) - 1) <= (dt == DDN_DTYPE_F64 ? 1e-14 : 1e-6));
        assert_true(fabs(info[k].objective - f) <= 1e-12 * fmax(1, f));
        assert_true(info[k].converged && info[k].iterations == 0);
        if (info[k].inner) inner++;
        else outer++;
    }
    print_message("exact 2x2 %s: worst |f - brute|/max(1,f) = %.2e; %d inner, %d outer\n",
                  ddn_dtype_name(dt), worst, inner, outer);
    assert_true(inner >= 50 && outer >= 50);
    free(A), free(b), free(y), free(Af), free(bf), free(yf), free(info);
    ddn_ctx_free(ctx);
}
static void test_exact_2x2_f64(void **s) { (void)s, exact_2x2(DDN_DTYPE_F64); }
static void test_exact_2x2_f32(void **s) { (void)s, exact_2x2(DDN_DTYPE_F32); }

/* ---- hard cases (d_1 = 0: the multiplier sits at the smallest eigenvalue) ------------------ */
static void test_exact_hard_cases(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_less_opts o = opts_for(DDN_LESS_EXACT);
    ddn_less_info inf;
    /* A = diag(1, 2), b = (0, 1): M = diag(1, 4), c = (0, 2), d_1 = 0 and psi = (2/3)^2 < 1, so
     * y = (+-sqrt(5)/3, 2/3) exactly. */
    double A1[4] = {1, 0, 0, 2}, b1[2] = {0, 1}, y1[2];
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, 2, 2, A1, b1, y1, &o, &inf));
    assert_true(inf.hard_case);
    assert_true(fabs(fabs(y1[0]) - sqrt(5.0) / 3) < 1e-15 && fabs(y1[1] - 2.0 / 3) < 1e-15);
    assert_true(fabs(objective(A1, b1, y1, 2, 2) - brute_2x2(A1, b1)) < 1e-12);
    assert_true(fabs(inf.nu - 0.5) < 1e-15); /* mu = l_1 = 1, nu = mu / 2 */
    float A1f[4] = {1, 0, 0, 2}, b1f[2] = {0, 1}, y1f[2];
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F32, 1, 2, 2, A1f, b1f, y1f, &o, &inf));
    assert_true(inf.hard_case && fabs(y1f[1] - 2.0f / 3) < 1e-7f);
    /* b = 0: the right singular vector of the smallest singular value (here e_2 of diag(3,1,2)) */
    double A2[9] = {3, 0, 0, 0, 1, 0, 0, 0, 2}, b2[3] = {0, 0, 0}, y2[3];
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, 3, 3, A2, b2, y2, &o, &inf));
    assert_true(inf.hard_case && fabs(fabs(y2[1]) - 1) < 1e-15 && fabs(inf.nu - 0.5) < 1e-15);

    /* Rotated 2x2 hard and near-hard cases: A = U diag(s1, s2) V^T with s1 < s2 and b = beta u_2
     * (no component along u_1, so d_1 = 0 up to round-off); beta sweeps psi = (s2 beta /
     * (s2^2 - s1^2))^2 through 1. Checked against brute force. */
    ddn_rng rng;
    ddn_rng_seed(&rng, 21);
    for (int k = 0; k < 60; k++) {
        double tu = 2 * PI * ddn_rng_uniform(&rng), tv = 2 * PI * ddn_rng_uniform(&rng);
        double s1 = 0.2 + ddn_rng_uniform(&rng), s2 = s1 + 0.1 + 2 * ddn_rng_uniform(&rng);
        double U[4] = {cos(tu), -sin(tu), sin(tu), cos(tu)};
        double V[4] = {cos(tv), -sin(tv), sin(tv), cos(tv)};
        double A[4], b[2], y[2];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) A[i * 2 + j] = U[i * 2] * s1 * V[j * 2] +
                                                       U[i * 2 + 1] * s2 * V[j * 2 + 1];
        double beta = (0.5 + k / 40.0) * (s2 * s2 - s1 * s1) / s2; /* psi from 0.25 to ~3.8 */
        b[0] = beta * U[1], b[1] = beta * U[3];
        assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, 2, 2, A, b, y, &o, &inf));
        double fb = brute_2x2(A, b), f = objective(A, b, y, 2, 2);
        if (fabs(f - fb) > 1e-10 * fmax(1, fb))
            fail_msg("hard case %d: objective %.17g, brute force %.17g", k, f, fb);
    }

    /* A 64x32 hard case: A = Q1 diag(sigma) Q2^T with sigma_1 the smallest, b built from the
     * other left singular vectors only; certified by KKT + PSD (PMAF-MATH §1). */
    enum { m = 64, n = 32 };
    double *Q1 = malloc(sizeof(double) * m * m), *Q2 = malloc(sizeof(double) * n * n);
    double tau[m], sig[n], b[m], y[n];
    double *A = malloc(sizeof(double) * m * n);
    randn(&rng, Q1, m * m, 1), randn(&rng, Q2, n * n, 1);
    assert_int_equal(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, m, Q1, m, tau), 0);
    assert_int_equal(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, m, m, Q1, m, tau), 0);
    assert_int_equal(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, Q2, n, tau), 0);
    assert_int_equal(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, Q2, n, tau), 0);
    for (int i = 0; i < n; i++) sig[i] = 1.0 + i * 0.1;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < n; l++) s += Q1[i * m + l] * sig[l] * Q2[j * n + l];
            A[i * n + j] = s;
        }
    for (int i = 0; i < m; i++) {
        b[i] = 0;
        for (int l = 1; l < n; l++) b[i] += Q1[i * m + l] * 0.02; /* psi well below 1 */
    }
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A, b, y, &o, &inf));
    double margin, nu, na = fro(A, m * n), nb = norm(b, m);
    double res = kkt_residual(A, b, y, m, n, &nu, &margin);
    print_message("64x32 hard case: KKT residual %.2e, PSD margin %.2e, hard flag %d\n", res,
                  margin, inf.hard_case);
    assert_true(res <= 1e-12 * na * (na + nb));
    assert_true(margin >= -1e-12 * na * na);
    assert_true(fabs(nu - 0.5) < 1e-10); /* mu = sigma_1^2 = 1 */
    free(Q1), free(Q2), free(A);
    ddn_ctx_free(ctx);
}

/* ---- certificates on many shapes: m < n, rank deficiency, n = 1, both dtypes ---------------- */
typedef struct shape_case {
    int m, n, rank; /* rank < min(m, n): A = L R with L (m, rank), R (rank, n) */
    double bscale;
} shape_case;

static void exact_shapes(ddn_dtype dt)
{
    static const shape_case cases[] = {
        {64, 32, 32, 1}, {64, 32, 32, 0.05}, {32, 32, 32, 1}, {16, 32, 16, 1},
        {16, 32, 16, 0.1}, {5, 9, 5, 3}, {1, 4, 1, 1}, {4, 1, 1, 1}, {64, 32, 20, 1},
        {64, 32, 20, 0.01}, {32, 32, 1, 2}, {3, 3, 2, 0.5}, {128, 64, 64, 1},
    };
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 31);
    const double eps = dt == DDN_DTYPE_F64 ? DBL_EPSILON : FLT_EPSILON;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const shape_case *sc = &cases[c];
        int m = sc->m, n = sc->n, B = 3;
        double *A = calloc((size_t)B * m * n, sizeof(double)), *b = malloc(sizeof(double) * B * m);
        double *y = malloc(sizeof(double) * B * n), *yi = malloc(sizeof(double) * B * n);
        double *L = malloc(sizeof(double) * m * sc->rank),
               *R = malloc(sizeof(double) * sc->rank * n);
        float *Af = malloc(sizeof(float) * B * m * n), *bf = malloc(sizeof(float) * B * m);
        float *yf = malloc(sizeof(float) * B * n);
        for (int k = 0; k < B; k++) {
            randn(&rng, L, m * sc->rank, 1), randn(&rng, R, sc->rank * n, 1);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    for (int l = 0; l < sc->rank; l++)
                        A[(size_t)k * m * n + i * n + j] += L[i * sc->rank + l] * R[l * n + j];
            randn(&rng, b + k * m, m, sc->bscale);
        }
        ddn_less_info info[3], infi[3];
        ddn_less_opts o = opts_for(DDN_LESS_EXACT);
        /* the default iterative method, run tight, must not beat the certified optimum */
        ddn_less_opts oi = DDN_LESS_OPTS_DEFAULT;
        oi.tol = 0, oi.max_iter = 3000;
        if (dt == DDN_DTYPE_F32) {
            round_f32(A, B * m * n), round_f32(b, B * m);
            to_f32(A, Af, B * m * n), to_f32(b, bf, B * m);
            assert_ok(ctx, ddn_less_solve(ctx, dt, B, m, n, Af, bf, yf, &o, info));
            for (int i = 0; i < B * n; i++) y[i] = yf[i];
            assert_ok(ctx, ddn_less_solve(ctx, dt, B, m, n, Af, bf, yf, &oi, infi));
            for (int i = 0; i < B * n; i++) yi[i] = yf[i];
        } else {
            assert_ok(ctx, ddn_less_solve(ctx, dt, B, m, n, A, b, y, &o, info));
            assert_ok(ctx, ddn_less_solve(ctx, dt, B, m, n, A, b, yi, &oi, infi));
        }
        for (int k = 0; k < B; k++) {
            const double *Ak = A + (size_t)k * m * n, *bk = b + k * m, *yk = y + k * n;
            double na = fro(Ak, m * n), nb = norm(bk, m), nu, margin;
            double res = kkt_residual(Ak, bk, yk, m, n, &nu, &margin);
            /* round-off of an O(eps) perturbed optimum: ||H dy|| <= ||A||^2 ||dy||, and the
             * float32 answer is rounded once (dy ~ eps_f32) */
            double tol = (dt == DDN_DTYPE_F64 ? 1e3 : 8) * eps * na * (na + nb);
            if (!(res <= tol && margin >= -tol && fabs(norm(yk, n) - 1) <= 4 * eps * sqrt(n)))
                fail_msg("%s %dx%d rank %d item %d: KKT residual %.3e (tol %.3e), PSD margin "
                         "%.3e, ||y|| - 1 = %.2e", ddn_dtype_name(dt), m, n, sc->rank, k, res,
                         tol, margin, norm(yk, n) - 1);
            assert_true(fabs(info[k].nu - nu) <= 1e-10 * fmax(1, fabs(nu)));
            double f = objective(Ak, bk, yk, m, n), fi = objective(Ak, bk, yi + k * n, m, n);
            assert_true(fabs(info[k].fpd - sqrt(2 * f)) <= 1e-12 * fmax(1, info[k].fpd));
            /* never below the certified optimum (by more than the float rounding of y) */
            if (fi < f - (dt == DDN_DTYPE_F64 ? 1e-10 : 8 * FLT_EPSILON) * fmax(1, f) * (na + nb))
                fail_msg("%dx%d item %d: iterative %.17g below exact %.17g", m, n, k, fi, f);
        }
        free(A), free(b), free(y), free(yi), free(L), free(R), free(Af), free(bf), free(yf);
    }
    ddn_ctx_free(ctx);
}
static void test_exact_shapes_f64(void **s) { (void)s, exact_shapes(DDN_DTYPE_F64); }
static void test_exact_shapes_f32(void **s) { (void)s, exact_shapes(DDN_DTYPE_F32); }

/* ---- every iterative method vs EXACT on random 64x32 ---------------------------------------- */
static void iterative_vs_exact(ddn_dtype dt)
{
    enum { K = 24, m = 64, n = 32 };
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, dt == DDN_DTYPE_F64 ? 41 : 42);
    double *A = malloc(sizeof(double) * K * m * n), *b = malloc(sizeof(double) * K * m);
    double ye[K * n], yi[K * n], fe[K];
    float *Af = malloc(sizeof(float) * K * m * n), bf[K * m], yf[K * n];
    ddn_less_info info[K];
    randn(&rng, A, K * m * n, 1), randn(&rng, b, K * m, 1);
    round_f32(A, K * m * n), round_f32(b, K * m);
    to_f32(A, Af, K * m * n), to_f32(b, bf, K * m);
    ddn_less_opts oe = opts_for(DDN_LESS_EXACT);
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, K, m, n, A, b, ye, &oe, info));
    for (int k = 0; k < K; k++) fe[k] = objective(A + k * m * n, b + k * m, ye + k * n, m, n);
    for (int mi = 0; mi < DDN_LESS_TABLE4_COUNT; mi++) {
        unsigned meth = ddn_less_table4[mi];
        ddn_less_opts o = opts_for(meth);
        /* float64: stop on |df| <= 1e-12 so that a converged run is within
         * 1e-12 rho / (1 - rho) <= 1e-9 of its limit for any rate rho <= 0.999; float32: the
         * paper's 1e-7, below the float resolution of f ~ 30 (the run stops when f stalls). */
        o.tol = dt == DDN_DTYPE_F64 ? 1e-12 : 1e-7;
        o.max_iter = 3000;
        if (dt == DDN_DTYPE_F64) {
            assert_ok(ctx, ddn_less_solve(ctx, dt, K, m, n, A, b, yi, &o, info));
        } else {
            assert_ok(ctx, ddn_less_solve(ctx, dt, K, m, n, Af, bf, yf, &o, info));
            for (int i = 0; i < K * n; i++) yi[i] = yf[i];
        }
        char name[64];
        ddn_less_method_name(meth, name, sizeof name);
        int nconv = 0, off = 0;
        double worst = 0;
        for (int k = 0; k < K; k++) {
            double f = objective(A + k * m * n, b + k * m, yi + k * n, m, n);
            /* nothing beats the global optimum (float32: by more than rounding y, ~eps*f*m) */
            double below = dt == DDN_DTYPE_F64 ? 1e-10 : 1e-5;
            if (f < fe[k] - below * fmax(1, fe[k]))
                fail_msg("%s item %d: %.17g below the exact optimum %.17g", name, k, f, fe[k]);
            if (!info[k].converged) continue;
            nconv++;
            double gap = (f - fe[k]) / fmax(1, fe[k]);
            worst = fmax(worst, gap);
            /* DW multiplies the step by 1 - cos(d_t, u_c), which vanishes away from the optimum:
             * its "converged" runs may stall (Table 4: DW rows have few "Imp." cases). */
            if (meth & DDN_LESS_DW) continue;
            /* float64: the 1e-9 above; float32: the objective is resolved to ~m eps_f32 f
             * (64 * 6e-8 = 4e-6), so 1e-5 relative. */
            if (gap > (dt == DDN_DTYPE_F64 ? 1e-9 : 1e-5)) off++;
        }
        print_message("%-22s %s: %2d/%d converged, worst relative gap to exact %.2e%s\n", name,
                      ddn_dtype_name(dt), nconv, K, worst, (meth & DDN_LESS_DW) ? " (DW)" : "");
        if (off) fail_msg("%s: %d converged runs off the optimum", name, off);
        if (!(meth & DDN_LESS_DW) && (meth & DDN_LESS_RM)) assert_true(nconv >= K / 2);
    }
    free(A), free(b), free(Af);
    ddn_ctx_free(ctx);
}
static void test_iterative_vs_exact_f64(void **s) { (void)s, iterative_vs_exact(DDN_DTYPE_F64); }
static void test_iterative_vs_exact_f32(void **s) { (void)s, iterative_vs_exact(DDN_DTYPE_F32); }

/* ---- degenerate inputs and errors ------------------------------------------------------------ */
static void test_degenerate(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 51);
    enum { m = 6, n = 4 };
    double A[3 * m * n], b[3 * m], y[3 * n];
    ddn_less_info info[3];
    randn(&rng, A, 3 * m * n, 1), randn(&rng, b, 3 * m, 1);
    ddn_less_opts oe = opts_for(DDN_LESS_EXACT);
    unsigned methods[] = {DDN_LESS_EXACT, DDN_LESS_DEFAULT_METHOD};
    for (int mi = 0; mi < 2; mi++) {
        ddn_less_opts o = opts_for(methods[mi]);
        /* A = 0 in item 1: a status naming the item; items 0 and 2 are still solved */
        double Az[3 * m * n];
        memcpy(Az, A, sizeof Az);
        memset(Az + m * n, 0, sizeof(double) * m * n);
        assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 3, m, n, Az, b, y, &o, info),
                         DDN_ERR_SINGULAR);
        assert_error(ctx, DDN_ERR_SINGULAR, "item 1 of 3");
        assert_true(fabs(norm(y, n) - 1) < 1e-12 && fabs(norm(y + 2 * n, n) - 1) < 1e-12);
        /* NaN in A of item 2, Inf in b of item 0: the lowest failing item is reported */
        double An[3 * m * n], bn[3 * m];
        memcpy(An, A, sizeof An), memcpy(bn, b, sizeof bn);
        An[2 * m * n + 5] = NAN;
        assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 3, m, n, An, b, y, &o, info),
                         DDN_ERR_NUMERIC);
        assert_error(ctx, DDN_ERR_NUMERIC, "item 2 of 3 (A 6x4, float64): A or b contains NaN");
        bn[3] = INFINITY;
        assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 3, m, n, An, bn, y, &o, info),
                         DDN_ERR_NUMERIC);
        assert_error(ctx, DDN_ERR_NUMERIC, "item 0 of 3");
        float Af[m * n], bf[m], yf[n];
        to_f32(A, Af, m * n), to_f32(b, bf, m);
        Af[0] = NAN;
        assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F32, 1, m, n, Af, bf, yf, &o, NULL),
                         DDN_ERR_NUMERIC);
        assert_error(ctx, DDN_ERR_NUMERIC, "float32");
    }
    /* b = 0: the smallest right singular vector of A, checked against LAPACK's SVD */
    double bz[m] = {0}, Ac[m * n], s[n], U[1], VT[n * n], sup[n];
    memcpy(Ac, A, sizeof Ac);
    assert_int_equal(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'A', m, n, Ac, n, s, U, 1, VT, n, sup),
                     0);
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A, bz, y, &oe, info));
    double dot = 0;
    for (int i = 0; i < n; i++) dot += y[i] * VT[(n - 1) * n + i];
    assert_true(fabs(fabs(dot) - 1) < 1e-12);
    assert_true(fabs(info[0].nu - 0.5 * s[n - 1] * s[n - 1]) < 1e-12); /* mu = sigma_min^2 */
    assert_true(info[0].inner && info[0].center_norm == 0);
    /* the iterative methods start from 1/sqrt(n) * ones there and reach the same objective */
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.tol = 1e-14, o.max_iter = 5000;
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A, bz, y, &o, info));
    assert_true(fabs(info[0].objective - 0.5 * s[n - 1] * s[n - 1]) < 1e-9);
    ddn_ctx_free(ctx);
}

static void test_strict_and_options(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 61);
    enum { m = 64, n = 32 };
    double A[2 * m * n], b[2 * m], y[2 * n];
    ddn_less_info info[2];
    randn(&rng, A, 2 * m * n, 1), randn(&rng, b, 2 * m, 1);
    ddn_less_opts o = opts_for(DDN_LESS_PGD);
    o.max_iter = 2; /* PGD needs far more than 2 iterations on 64x32 */
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 2, m, n, A, b, y, &o, info));
    assert_false(info[0].converged);
    assert_int_equal(info[0].iterations, 2);
    o.strict = true;
    assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 2, m, n, A, b, y, &o, info),
                     DDN_ERR_NOT_CONVERGED);
    assert_error(ctx, DDN_ERR_NOT_CONVERGED, "item 0 of 2 (A 64x32, float64): PGD did not "
                                             "converge in 2 iterations");
    o.max_iter = 0; /* returns the projected least-squares start */
    o.strict = false;
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A, b, y, &o, info));
    assert_true(info[0].iterations == 0 && !info[0].converged);
    /* NULL options are the paper's defaults: PGD+RM+TWD */
    double y2[2 * n];
    ddn_less_opts d = DDN_LESS_OPTS_DEFAULT;
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 2, m, n, A, b, y, NULL, NULL));
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 2, m, n, A, b, y2, &d, NULL));
    assert_memory_equal(y, y2, sizeof y);

    /* invalid requests */
    const struct { unsigned method; const char *needle; } bad[] = {
        {0, "method is 0"},
        {DDN_LESS_RM, "includes DDN_LESS_PGD"},
        {DDN_LESS_EXACT | DDN_LESS_PGD, "EXACT takes no other flag"},
        {DDN_LESS_PGD | DDN_LESS_BLS_ONE, "need DDN_LESS_RM"},
        {DDN_LESS_PGD | DDN_LESS_TWD, "need DDN_LESS_RM"},
        {DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD, "exclusive"},
        {DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE | DDN_LESS_TWD, "exclusive"},
        {1u << 12, "unknown"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = opts_for(bad[i].method);
        assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A, b, y, &o, NULL),
                         DDN_ERR_ARG);
        assert_error(ctx, DDN_ERR_ARG, bad[i].needle);
    }
    o = DDN_LESS_OPTS_DEFAULT;
    o.twd_beta = 1.5;
    assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A, b, y, &o, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "twd_beta 1.5");
    assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 1, 0, n, A, b, y, NULL, NULL),
                     DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "less_solve: A (1,0,32)");
    assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_I64, 1, m, n, A, b, y, NULL, NULL),
                     DDN_ERR_DTYPE);
    assert_error(ctx, DDN_ERR_DTYPE, "not float32 or float64");
    assert_int_equal(ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, NULL, b, y, NULL, NULL),
                     DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "must not be NULL");
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 0, m, n, A, b, y, NULL, NULL));
    char name[64];
    assert_string_equal(ddn_less_method_name(DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE |
                                                 DDN_LESS_DW, name, sizeof name),
                        "PGD+RM+BLSOne+DW");
    /* the step arena is rewound: solving leaves nothing behind */
    ddn_stats st0 = ddn_ctx_stats(ctx);
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 2, m, n, A, b, y, NULL, NULL));
    assert_int_equal(ddn_ctx_stats(ctx).arena_in_use, st0.arena_in_use);
    ddn_ctx_free(ctx);
}

/* The batch loop (OpenMP when BLAS is single-threaded) gives exactly what one-by-one solves do. */
static void test_batch_matches_single(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 71);
    enum { B = 17, m = 24, n = 12 };
    double A[B * m * n], b[B * m], y[B * n], y1[n];
    randn(&rng, A, B * m * n, 1), randn(&rng, b, B * m, 1);
    unsigned methods[] = {DDN_LESS_EXACT, DDN_LESS_DEFAULT_METHOD,
                          DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_GRAD | DDN_LESS_DW};
    for (int mi = 0; mi < 3; mi++) {
        ddn_less_opts o = opts_for(methods[mi]);
        ddn_less_info info[B], inf1;
        assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, B, m, n, A, b, y, &o, info));
        for (int k = 0; k < B; k++) {
            assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, 1, m, n, A + k * m * n, b + k * m,
                                          y1, &o, &inf1));
            assert_memory_equal(y + k * n, y1, sizeof y1);
            assert_int_equal(info[k].iterations, inf1.iterations);
        }
    }
    ddn_ctx_free(ctx);
}

/* ---- the paper's Table 1/4 in miniature ------------------------------------------------------
 * 200 samples of A, b ~ N(0, 1) per size; a failure is a run that hits the 100-iteration cap
 * (default tol 1e-7), counted as inner or outer by ||pinv(A) b|| < 1. The thresholds come from
 * the counts PMAF-MATH §6 reports for the reference code on this kind of machine (200 samples,
 * float32), not from this implementation's output:
 *   2x2:   PGD 26/72, +RM 0/31, +RM+BLSOne 0/5, +RM+TWD 0/0
 *   64x32: PGD 108/88, +RM 7/0, +RM+BLSOne 2/0, +RM+TWD 7/0
 * Asserted (qualitative, with room for sampling noise, float64 vs float32 and our projected BLS
 * test of PMAF-MATH §1): 2x2 — +RM+TWD has no failure at all; the RM family never fails inner;
 * PGD fails at least 40 times (reference 98, i.e. 49%; a binomial s.d. is ~7) and at least twice
 * as often as +RM; +RM fails outer more often than +RM+BLSOne. 64x32 — PGD fails at least 100
 * times (reference 196 = 98%), +RM+TWD at most 20 (reference 7), the RM family never fails
 * outer, +RM+BLSOne fails no more often than +RM. */
typedef struct table_row {
    int in, out, imp;
    double mre;
} table_row;

static void table_run(ddn_ctx *ctx, ddn_dtype dt, int m, int n,
                      table_row rows[DDN_LESS_TABLE4_COUNT], int *n_inner) {
    enum { K = 200 };
    ddn_rng rng;
    ddn_rng_seed(&rng, 1000 + m);
    double *A = malloc(sizeof(double) * K * m * n), *b = malloc(sizeof(double) * K * m);
    double *y = malloc(sizeof(double) * K * n), *fe = malloc(sizeof(double) * K);
    float *Af = malloc(sizeof(float) * K * m * n), *bf = malloc(sizeof(float) * K * m);
    float *yf = malloc(sizeof(float) * K * n);
    ddn_less_info *info = malloc(sizeof *info * K);
    randn(&rng, A, K * m * n, 1), randn(&rng, b, K * m, 1);
    if (dt == DDN_DTYPE_F32) round_f32(A, K * m * n), round_f32(b, K * m);
    to_f32(A, Af, K * m * n), to_f32(b, bf, K * m);
    ddn_less_opts oe = opts_for(DDN_LESS_EXACT);
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, K, m, n, A, b, y, &oe, info));
    *n_inner = 0;
    for (int k = 0; k < K; k++) {
        fe[k] = info[k].fpd;
        *n_inner += info[k].inner;
    }
    for (int mi = 0; mi < DDN_LESS_TABLE4_COUNT; mi++) {
        ddn_less_opts o = opts_for(ddn_less_table4[mi]);
        if (dt == DDN_DTYPE_F64)
            assert_ok(ctx, ddn_less_solve(ctx, dt, K, m, n, A, b, y, &o, info));
        else
            assert_ok(ctx, ddn_less_solve(ctx, dt, K, m, n, Af, bf, yf, &o, info));
        table_row *r = &rows[mi];
        *r = (table_row){0};
        for (int k = 0; k < K; k++) {
            if (!info[k].converged) {
                if (info[k].inner) r->in++;
                else r->out++;
            }
            /* "Imp." and MRE (Eq. 44) against the exact optimum rather than SciPy */
            if (info[k].fpd <= fe[k] * (1 + 1e-9)) r->imp++;
            r->mre += 100.0 * (info[k].fpd - fe[k]) / fe[k] / K;
        }
    }
    free(A), free(b), free(y), free(fe), free(Af), free(bf), free(yf), free(info);
}

static void table_check(ddn_dtype dt)
{
    ddn_ctx *ctx = test_ctx();
    table_row t2[DDN_LESS_TABLE4_COUNT], t64[DDN_LESS_TABLE4_COUNT];
    int in2, in64;
    table_run(ctx, dt, 2, 2, t2, &in2);
    table_run(ctx, dt, 64, 32, t64, &in64);
    print_message("mini Table 4, %s, 200 samples (2x2: %d inner; 64x32: %d inner); failures "
                  "in/out, Imp. (FPD <= exact * (1 + 1e-9)), MRE %% vs exact\n",
                  ddn_dtype_name(dt), in2, in64);
    for (int mi = 0; mi < DDN_LESS_TABLE4_COUNT; mi++) {
        char name[64];
        ddn_less_method_name(ddn_less_table4[mi], name, sizeof name);
        print_message("  %-18s 2x2 %3d/%3d imp %3d mre %7.3f | 64x32 %3d/%3d imp %3d mre %7.4f\n",
                      name, t2[mi].in, t2[mi].out, t2[mi].imp, t2[mi].mre, t64[mi].in,
                      t64[mi].out, t64[mi].imp, t64[mi].mre);
    }
    /* rows: 0 PGD, 2 +RM, 3 +RM+BLSOne, 5 +RM+BLSGrad, 7 +RM+TWD */
    const table_row *pgd = &t2[0], *rm = &t2[2], *bls1 = &t2[3], *twd = &t2[7];
    assert_true(twd->in == 0 && twd->out == 0);
    assert_true(rm->in == 0 && bls1->in == 0 && t2[5].in == 0);
    assert_true(pgd->in + pgd->out >= 40);
    assert_true(pgd->in + pgd->out >= 2 * (rm->in + rm->out));
    assert_true(rm->out > bls1->out);
    pgd = &t64[0], rm = &t64[2], bls1 = &t64[3], twd = &t64[7];
    assert_true(pgd->in + pgd->out >= 100);
    assert_true(twd->in + twd->out <= 20);
    assert_true(rm->out == 0 && bls1->out == 0 && t64[5].out == 0 && twd->out == 0);
    assert_true(bls1->in + bls1->out <= rm->in + rm->out);
    ddn_ctx_free(ctx);
}
static void test_table4_f64(void **s) { (void)s, table_check(DDN_DTYPE_F64); }
static void test_table4_f32(void **s) { (void)s, table_check(DDN_DTYPE_F32); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_2x2_f64),
        cmocka_unit_test(test_exact_2x2_f32),
        cmocka_unit_test(test_exact_hard_cases),
        cmocka_unit_test(test_exact_shapes_f64),
        cmocka_unit_test(test_exact_shapes_f32),
        cmocka_unit_test(test_iterative_vs_exact_f64),
        cmocka_unit_test(test_iterative_vs_exact_f32),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_strict_and_options),
        cmocka_unit_test(test_batch_matches_single),
        cmocka_unit_test(test_table4_f64),
        cmocka_unit_test(test_table4_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
