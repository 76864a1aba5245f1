/* ddn — tests of the IED layer (declarative/ied.h): every backward mode (DDN_E/J, IFT_E/J, UNROLL,
 * EIGH) gradient-checked in float64 against central differences of a tightly converged solve, the
 * modes against each other and against closed forms built from LAPACK (syevd, geev), the
 * differentiable eigenvalue, the errors, and the float32 gradient accuracy (PMAF-MATH.md §6).
 * Expected values never come from ddn's own output: finite differences, LAPACK, or another mode.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "ied.h"
#include "ied_impl.h"
#include "ied_test_util.h"
#include "test_util.h"

static const ddn_ied_backward all_modes[] = {
    DDN_IED_BACKWARD_DDN_E, DDN_IED_BACKWARD_DDN_J,  DDN_IED_BACKWARD_IFT_E,
    DDN_IED_BACKWARD_IFT_J, DDN_IED_BACKWARD_UNROLL, DDN_IED_BACKWARD_EIGH};
static const char *mode_str[] = {"DDN_E", "DDN_J", "IFT_E", "IFT_J", "UNROLL", "EIGH"};

/* helpers (sym_abs, abs_n, tight, leaf, run_mode, top_eig, closed_form_G, rel_max):
 * ied_test_util.h, shared with test_ied_ift.c */

/* (G + G^T) / 2 per item, in place */
static void symmetrise(int B, int m, double *G)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < i; j++) {
                double *x = G + b * m * m;
                double a = 0.5 * (x[i * m + j] + x[j * m + i]);
                x[i * m + j] = x[j * m + i] = a;
            }
}

/* ---- gradient checks --------------------------------------------------------------------------
 * Central differences perturb one entry of the input at a time. A perturbed symmetric A is no
 * longer symmetric: DDN (and EIGH) refuse such input, and rightly so (they differentiate the top
 * eigenvector of (A + A^T)/2, which is not what PI returns for non-symmetric A). So for them the
 * check function takes S and builds A = S + S^T with ddn ops: every perturbation of S is a
 * symmetric perturbation of A, A stays exactly symmetric (a + b == b + a in floating point), and
 * the checked gradient is dL/dS = G + G^T. IFT and UNROLL differentiate what PI computes for any
 * A, so they are also checked entrywise on A itself (symmetric and non-symmetric values). */
typedef struct {
    ddn_ied_backward mode;
    bool sym;   /* input is S, A = S + S^T */
    int out;    /* 0: y, 1: lambda, 2: y * lambda (a loss using both) */
    ddn_ied_opts o;
} gc_user;

static ddn_tensor *gc_fn(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    const gc_user *u = user;
    ddn_tensor *A = u->sym ? ddn_add(ctx, in[0], ddn_transpose(ctx, in[0], 1, 2)) : in[0];
    ddn_tensor *lam = NULL;
    ddn_tensor *y = ddn_ied(ctx, A, &u->o, u->mode, u->out ? &lam : NULL, NULL);
    if (!y || u->out == 0) return y;
    if (u->out == 1) return lam;
    return ddn_mul(ctx, y, ddn_reshape(ctx, lam, DDN_SHAPE(y->shape[0], 1)));
}

/* eps 1e-6 central differences of a 1e-14 solve: truncation ~1e-12, rounding and solver noise
 * ~1e-9 relative; atol 1e-7 / rtol 1e-5 (tighter than gradcheck's defaults). Every entry. */
static const ddn_gradcheck_opts gc_opts = {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5,
                                           .max_entries = 1000};

static void gradcheck_case(ddn_ctx *ctx, ddn_rng *rng, int B, int m, bool sym_values, gc_user u)
{
    double *S = malloc(sizeof(double) * B * m * m);
    for (int b = 0; b < B; b++) {
        if (u.sym) abs_n(rng, m * m, S + b * m * m); /* A = S + S^T = |G| + |G|^T */
        else if (sym_values) sym_abs(rng, m, S + b * m * m);
        else abs_n(rng, m * m, S + b * m * m);
    }
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *in[1] = {leaf(ctx, DDN_DTYPE_F64, B, m, S)};
    ddn_gradcheck_result r;
    assert_ok(ctx, ddn_gradcheck(ctx, gc_fn, &u, 1, in, &gc_opts, &r));
    if (!r.passed || r.checked != B * m * m)
        fail_msg("gradcheck %s m=%d sym_param=%d sym=%d out=%d: entry %lld analytic %.12g "
                 "numeric %.12g (max abs %.3g, max rel %.3g, %lld checked)", mode_str[u.mode], m,
                 u.sym, sym_values, u.out, (long long)r.worst_index, r.worst_analytic,
                 r.worst_numeric, r.max_abs_err, r.max_rel_err, (long long)r.checked);
    ddn_ctx_rewind(ctx, mark);
    free(S);
}

static void test_gradcheck_symmetric(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 7);
    for (int mi = 0; mi < 2; mi++)
        for (int k = 0; k < 6; k++) {
            int m = mi ? 6 : 3;
            gc_user u = {.mode = all_modes[k], .sym = true, .o = tight()};
            if (u.mode == DDN_IED_BACKWARD_UNROLL) u.o.max_iter = 300; /* the tape holds them */
            gradcheck_case(ctx, &rng, 2, m, true, u);
            if (u.mode == DDN_IED_BACKWARD_IFT_E || u.mode == DDN_IED_BACKWARD_IFT_J ||
                u.mode == DDN_IED_BACKWARD_UNROLL) { /* entrywise on symmetric values */
                u.sym = false;
                gradcheck_case(ctx, &rng, 2, m, true, u);
            }
        }
    ddn_ctx_free(ctx);
}

/* IFT and UNROLL on non-symmetric A = |N(0,1)| (Perron: a simple, positive dominant
 * eigenvalue); the shifted PI too. */
static void test_gradcheck_nonsymmetric(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 8);
    const ddn_ied_backward modes[] = {DDN_IED_BACKWARD_IFT_E, DDN_IED_BACKWARD_IFT_J,
                                      DDN_IED_BACKWARD_UNROLL};
    for (int mi = 0; mi < 2; mi++)
        for (int k = 0; k < 3; k++) {
            gc_user u = {.mode = modes[k], .o = tight()};
            if (u.mode == DDN_IED_BACKWARD_UNROLL) u.o.max_iter = 300;
            gradcheck_case(ctx, &rng, 2, mi ? 6 : 3, false, u);
        }
    gc_user u = {.mode = DDN_IED_BACKWARD_IFT_E, .o = tight()};
    u.o.shift = true;
    gradcheck_case(ctx, &rng, 2, 5, false, u);
    ddn_ctx_free(ctx);
}

/* SI: the solver's SI (k = 2, then k = m) under DDN_E and IFT_E, the unrolled SI (through the QR
 * node), and the QR node itself on all its columns (y only ever uses the first). */
static ddn_tensor *qr_fn(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    (void)user;
    return ddn_ied_qr_(ctx, in[0]);
}

static void test_gradcheck_si_and_qr(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 9);
    const int m = 5;
    const ddn_ied_backward modes[] = {DDN_IED_BACKWARD_DDN_E, DDN_IED_BACKWARD_IFT_E,
                                      DDN_IED_BACKWARD_UNROLL};
    for (int k = 0; k < 3; k++)
        for (int kk = 2; kk <= m; kk += m - 2) {
            gc_user u = {.mode = modes[k], .sym = modes[k] == DDN_IED_BACKWARD_DDN_E,
                         .o = tight()};
            u.o.method = DDN_IED_SI;
            u.o.k = kk;
            if (u.mode == DDN_IED_BACKWARD_UNROLL) u.o.max_iter = 300;
            gradcheck_case(ctx, &rng, 2, m, true, u);
        }
    /* QR: (B, m, k) = (2, 5, 3) and square (2, 4, 4) */
    const int shapes[2][2] = {{5, 3}, {4, 4}};
    for (int s = 0; s < 2; s++) {
        int64_t mm = shapes[s][0], kk = shapes[s][1];
        ddn_mark mark = ddn_ctx_mark(ctx);
        ddn_tensor *in[1] = {test_leaf(ctx, DDN_SHAPE(2, mm, kk), -1, 1)};
        assert_gradcheck(ctx, qr_fn, NULL, 1, in, &gc_opts);
        ddn_ctx_rewind(ctx, mark);
    }
    ddn_ctx_free(ctx);
}

/* lambda alone, and a loss using y and lambda together; every mode (sym parametrisation where
 * needed, entrywise non-symmetric for IFT and UNROLL). */
static void test_gradcheck_lambda(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 10);
    for (int k = 0; k < 6; k++)
        for (int out = 1; out <= 2; out++) {
            ddn_ied_backward mode = all_modes[k];
            bool ddn_like = mode == DDN_IED_BACKWARD_DDN_E || mode == DDN_IED_BACKWARD_DDN_J ||
                            mode == DDN_IED_BACKWARD_EIGH;
            gc_user u = {.mode = mode, .sym = ddn_like, .out = out, .o = tight()};
            if (mode == DDN_IED_BACKWARD_UNROLL) u.o.max_iter = 300;
            gradcheck_case(ctx, &rng, 2, 4, true, u);
            if (!ddn_like) gradcheck_case(ctx, &rng, 2, 4, false, u);
        }
    ddn_ctx_free(ctx);
}

/* ---- forward vs LAPACK, tape, info ----------------------------------------------------------- */
static void test_forward_vs_lapack(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 11);
    enum { B = 3, m = 9 };
    double A[B * m * m], yref[m];
    for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
    ddn_ied_opts o = tight();
    for (int k = 0; k < 6; k++) {
        ddn_mark mark = ddn_ctx_mark(ctx);
        ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, B, m, A);
        ddn_decl_info info;
        int64_t t0 = ddn_tape_len(ctx);
        ddn_tensor *y = ddn_ied(ctx, At, &o, all_modes[k], NULL, &info);
        assert_non_null(y);
        if (all_modes[k] != DDN_IED_BACKWARD_UNROLL)
            assert_int_equal(ddn_tape_len(ctx) - t0, 1); /* exactly one node; nothing recorded */
        else
            assert_true(ddn_tape_len(ctx) - t0 > 10); /* every iteration on the tape */
        ddn_tensor *lam = NULL;
        ddn_tensor *y2 = ddn_ied(ctx, At, &o, all_modes[k], &lam, NULL);
        assert_non_null(y2);
        assert_non_null(lam);
        assert_int_equal(lam->ndim, 1);
        assert_int_equal(lam->shape[0], B);
        assert_true(lam->requires_grad);
        for (int64_t b = 0; b < B; b++) {
            double lt = top_eig(m, A + b * m * m, yref);
            for (int i = 0; i < m; i++) {
                assert_true(fabs(ddn_tensor_get(y, (int64_t[]){b, i}) - yref[i]) < 1e-12);
                assert_true(ddn_tensor_get(y2, (int64_t[]){b, i}) ==
                            ddn_tensor_get(y, (int64_t[]){b, i}));
            }
            assert_true(fabs(ddn_tensor_get(lam, &b) - lt) < 1e-12 * lt);
            assert_int_equal((int)ddn_tensor_get(info.converged, &b), 1);
            assert_true(ddn_tensor_get(info.fpd, &b) < 1e-13);
            if (all_modes[k] != DDN_IED_BACKWARD_EIGH)
                assert_true(ddn_tensor_get(info.iterations, &b) > 2);
        }
        /* a non-contiguous input (a transposed view of the same symmetric values) gives the
         * same y, and its gradient reaches A through the transpose: G^T, equal to G for the
         * symmetric modes */
        double v[B * m], g1[B * m * m], g2[B * m * m];
        for (int i = 0; i < B * m; i++) v[i] = ddn_rng_normal(&rng);
        ddn_tensor *At2 = leaf(ctx, DDN_DTYPE_F64, B, m, A);
        ddn_tensor *yv = ddn_ied(ctx, ddn_transpose(ctx, At2, 1, 2), &o, all_modes[k], NULL,
                                 NULL);
        assert_non_null(yv);
        for (int64_t i = 0; i < B * m; i++)
            assert_true(ddn_tensor_get(yv, (int64_t[]){i / m, i % m}) ==
                        ddn_tensor_get(y, (int64_t[]){i / m, i % m}));
        ddn_tensor *vt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), v);
        assert_ok(ctx, ddn_backward_with_grad(ctx, yv, vt));
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, vt));
        assert_ok(ctx, ddn_tensor_to_host(At2->grad, DDN_DTYPE_F64, g1));
        assert_ok(ctx, ddn_tensor_to_host(At->grad, DDN_DTYPE_F64, g2));
        for (int b = 0; b < B; b++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < m; j++)
                    assert_true(fabs(g1[b * m * m + i * m + j] - g2[b * m * m + j * m + i]) <
                                1e-12);
        ddn_ctx_rewind(ctx, mark);
    }
    ddn_ctx_free(ctx);
}

/* UNROLL replays the solver: same start (ones or seeded random, PI or SI), signs, shift and stop
 * test, so after 1, 3 or all iterations its y equals the solver's (IFT_E's forward). */
static void test_unroll_replays_solver(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 17);
    enum { B = 3, m = 6 };
    double A[B * m * m], y1[B * m], y2[B * m];
    for (int b = 0; b < B; b++) abs_n(&rng, m * m, A + b * m * m);
    A[m * m + 3] = -4; /* item 1 gets a negative entry: the shift has work to do */
    for (int r = 0; r < 2; r++)
        for (int si = 0; si < 2; si++)
            for (int sh = 0; sh < 2; sh++)
                for (int it = 0; it < 3; it++) {
                    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
                    o.random_init = r, o.seed = 42, o.shift = sh;
                    o.method = si ? DDN_IED_SI : DDN_IED_PI, o.k = si ? 3 : 1;
                    o.max_iter = it == 0 ? 1 : it == 1 ? 3 : 1000;
                    ddn_decl_info i1, i2;
                    ddn_mark mark = ddn_ctx_mark(ctx);
                    ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, B, m, A);
                    ddn_tensor *ya = ddn_ied(ctx, At, &o, DDN_IED_BACKWARD_IFT_E, NULL, &i1);
                    ddn_tensor *yb = ddn_ied(ctx, At, &o, DDN_IED_BACKWARD_UNROLL, NULL, &i2);
                    assert_non_null(ya);
                    assert_non_null(yb);
                    assert_ok(ctx, ddn_tensor_to_host(ya, DDN_DTYPE_F64, y1));
                    assert_ok(ctx, ddn_tensor_to_host(yb, DDN_DTYPE_F64, y2));
                    for (int i = 0; i < B * m; i++)
                        if (!(fabs(y1[i] - y2[i]) < 1e-13))
                            fail_msg("random %d SI %d shift %d max_iter %lld: y[%d] solver "
                                     "%.17g unrolled %.17g", r, si, sh, (long long)o.max_iter,
                                     i, y1[i], y2[i]);
                    for (int64_t b = 0; b < B; b++) {
                        assert_int_equal((int)ddn_tensor_get(i1.iterations, &b),
                                         (int)ddn_tensor_get(i2.iterations, &b));
                        assert_int_equal((int)ddn_tensor_get(i1.converged, &b),
                                         (int)ddn_tensor_get(i2.converged, &b));
                        assert_true(fabs(ddn_tensor_get(i1.fpd, &b) -
                                         ddn_tensor_get(i2.fpd, &b)) < 1e-12);
                    }
                    ddn_ctx_rewind(ctx, mark);
                }
    ddn_ctx_free(ctx);
}

/* d lambda / dA, independent closed forms: y y^T for symmetric A (syevd), x y^T / (x^T y) with
 * x the left Perron vector for non-symmetric A (geev). */
static void test_lambda_gradient_closed_form(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 12);
    enum { B = 2, m = 7 };
    double A[B * m * m], g[B * m * m], yref[m];
    for (int sym = 1; sym >= 0; sym--) {
        for (int b = 0; b < B; b++)
            if (sym) sym_abs(&rng, m, A + b * m * m);
            else abs_n(&rng, m * m, A + b * m * m);
        for (int k = 0; k < 6; k++) {
            ddn_ied_backward mode = all_modes[k];
            if (!sym && (mode == DDN_IED_BACKWARD_DDN_E || mode == DDN_IED_BACKWARD_DDN_J ||
                         mode == DDN_IED_BACKWARD_EIGH))
                continue;
            ddn_mark mark = ddn_ctx_mark(ctx);
            ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, B, m, A), *lam = NULL;
            ddn_ied_opts o = tight();
            assert_non_null(ddn_ied(ctx, At, &o, mode, &lam, NULL));
            assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, lam, 0, NULL, false)));
            assert_ok(ctx, ddn_tensor_to_host(At->grad, DDN_DTYPE_F64, g));
            ddn_ctx_rewind(ctx, mark);
            for (int b = 0; b < B; b++) {
                double ex[m * m];
                const double *Ab = A + b * m * m;
                if (sym) {
                    top_eig(m, Ab, yref);
                    for (int i = 0; i < m * m; i++) ex[i] = yref[i / m] * yref[i % m];
                } else {
                    double a[m * m], wr[m], wi[m], vl[m * m], vr[m * m];
                    memcpy(a, Ab, sizeof a);
                    assert_int_equal(LAPACKE_dgeev(LAPACK_ROW_MAJOR, 'V', 'V', m, a, m, wr, wi,
                                                   vl, m, vr, m), 0);
                    int p = 0;
                    for (int i = 1; i < m; i++)
                        if (wr[i] > wr[p]) p = i;
                    assert_true(wi[p] == 0);
                    double xy = 0;
                    for (int i = 0; i < m; i++) xy += vl[i * m + p] * vr[i * m + p];
                    for (int i = 0; i < m * m; i++)
                        ex[i] = vl[(i / m) * m + p] * vr[(i % m) * m + p] / xy;
                }
                double e = rel_max(m * m, g + b * m * m, ex);
                if (!(e < 1e-9))
                    fail_msg("dlambda/dA %s sym=%d item %d: rel err %.3e", mode_str[mode], sym,
                             b, e);
            }
        }
    }
    ddn_ctx_free(ctx);
}

/* ---- the modes against each other and against the closed form -------------------------------- */
static void test_modes_agree(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 13);
    enum { B = 3 };
    const int ms[] = {6, 20};
    for (int mi = 0; mi < 2; mi++) {
        const int m = ms[mi];
        double *A = malloc(sizeof(double) * B * m * m), *v = malloc(sizeof(double) * B * m);
        double *g[6], *G = malloc(sizeof(double) * B * m * m);
        for (int k = 0; k < 6; k++) g[k] = malloc(sizeof(double) * B * m * m);
        for (int i = 0; i < B * m; i++) v[i] = ddn_rng_normal(&rng);
        for (int sym = 1; sym >= 0; sym--) {
            for (int b = 0; b < B; b++)
                if (sym) sym_abs(&rng, m, A + b * m * m);
                else abs_n(&rng, m * m, A + b * m * m);
            ddn_ied_opts o = DDN_IED_OPTS_DEFAULT; /* the default float64 tolerance, 1e-12 */
            for (int k = 0; k < 6; k++)
                if (sym || k >= 2) {
                    if (!sym && k == 5) continue;
                    run_mode(ctx, DDN_DTYPE_F64, B, m, A, v, &o, all_modes[k], NULL, NULL, g[k]);
                }
            const int n = B * m * m;
            double e;
            /* E == J: the same linear algebra, explicit Jacobian or not */
            if (sym) assert_true((e = rel_max(n, g[1], g[0])) < 1e-10);
            assert_true((e = rel_max(n, g[3], g[2])) < 1e-10);
            /* UNROLL vs IFT: the unrolled derivative converges to the implicit one; stopped at
             * step <= 1e-12 the difference measured here is ~1e-10; bound 1e-8 relative. */
            e = rel_max(n, g[4], g[2]);
            print_message("m=%2d %s: |UNROLL - IFT_E| / |IFT_E| = %.2e\n", m,
                          sym ? "symmetric" : "non-symmetric", e);
            assert_true(e < 1e-8);
            if (!sym) continue;
            /* Closed form from syevd: IFT gives G itself (derivative for any perturbation);
             * DDN and EIGH give (G + G^T)/2 (the symmetric problem; torch's eigh convention). */
            for (int b = 0; b < B; b++)
                closed_form_G(m, A + b * m * m, v + b * m, G + b * m * m);
            assert_true((e = rel_max(n, g[2], G)) < 1e-9);
            symmetrise(B, m, G);
            assert_true((e = rel_max(n, g[0], G)) < 1e-9);
            assert_true((e = rel_max(n, g[5], G)) < 1e-9);
            /* DDN == EIGH == sym(IFT) directly */
            assert_true((e = rel_max(n, g[5], g[0])) < 1e-9);
            symmetrise(B, m, g[2]);
            assert_true((e = rel_max(n, g[2], g[0])) < 1e-9);
        }
        for (int k = 0; k < 6; k++) free(g[k]);
        free(A), free(v), free(G);
    }
    ddn_ctx_free(ctx);
}

/* Gradients accumulate: a second forward + backward on the same leaf doubles its gradient. */
static void test_gradients_accumulate(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 14);
    enum { B = 2, m = 5 };
    double A[B * m * m], g[2][B * m * m];
    for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
    for (int k = 0; k < 6; k++) {
        ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, B, m, A);
        for (int pass = 0; pass < 2; pass++) {
            ddn_tensor *y = ddn_ied(ctx, At, NULL, all_modes[k], NULL, NULL);
            assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, y, 0, NULL, false)));
            assert_ok(ctx, ddn_tensor_to_host(At->grad, DDN_DTYPE_F64, g[pass]));
        }
        for (int i = 0; i < B * m * m; i++) assert_true(fabs(g[1][i] - 2 * g[0][i]) < 1e-12);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* ---- errors ---------------------------------------------------------------------------------- */
static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 15);
    enum { m = 3 };
    assert_null(ddn_ied(ctx, NULL, NULL, DDN_IED_BACKWARD_DDN_E, NULL, NULL));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK); /* NULL in: NULL out, quietly */

    /* shapes and dtypes */
    ddn_tensor *bad2 = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(3, 3));
    assert_null(ddn_ied(ctx, bad2, NULL, DDN_IED_BACKWARD_DDN_E, NULL, NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "ied: A (3,3)");
    ddn_tensor *bad3 = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3, 4));
    ddn_tensor *lam = (ddn_tensor *)1;
    assert_null(ddn_ied(ctx, bad3, NULL, DDN_IED_BACKWARD_IFT_E, &lam, NULL));
    assert_null(lam);
    assert_error(ctx, DDN_ERR_SHAPE, "(2,3,4)");
    ddn_tensor *bi = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(1, 2, 2));
    assert_null(ddn_ied(ctx, bi, NULL, DDN_IED_BACKWARD_DDN_E, NULL, NULL));
    assert_int_equal(ddn_ctx_status(ctx), DDN_ERR_DTYPE);
    ddn_ctx_clear_error(ctx);
    ddn_tensor *ok = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 2, 2));
    assert_null(ddn_ied(ctx, ok, NULL, (ddn_ied_backward)9, NULL, NULL));
    assert_error(ctx, DDN_ERR_ARG, "backward mode 9");
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.method = DDN_IED_SI, o.k = 3;
    for (int k = 0; k < 6; k++) { /* the solver's option rules hold for every mode */
        assert_null(ddn_ied(ctx, ok, &o, all_modes[k], NULL, NULL));
        assert_error(ctx, DDN_ERR_ARG, "k = 3");
    }

    /* non-symmetric A: DDN (and EIGH) refuse, pointing to IFT; IFT accepts it */
    double A[2 * m * m];
    sym_abs(&rng, m, A);
    abs_n(&rng, m * m, A + m * m);
    const ddn_ied_backward refusing[] = {DDN_IED_BACKWARD_DDN_E, DDN_IED_BACKWARD_DDN_J,
                                         DDN_IED_BACKWARD_EIGH};
    for (int k = 0; k < 3; k++) {
        ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, 2, m, A);
        assert_null(ddn_ied(ctx, At, NULL, refusing[k], NULL, NULL));
        assert_error(ctx, DDN_ERR_ARG, "item 1 of A (2,3,3) is not symmetric");
        assert_null(ddn_ied(ctx, At, NULL, refusing[k], NULL, NULL));
        assert_error(ctx, DDN_ERR_ARG, "IFT_E");
    }
    assert_non_null(ddn_ied(ctx, leaf(ctx, DDN_DTYPE_F64, 2, m, A), NULL,
                            DDN_IED_BACKWARD_IFT_E, NULL, NULL));

    /* a tied top eigenvalue, diag(5, 5, 1) in item 1: the forward returns some eigenvector, the
     * backward refuses naming the item. Without the gap check the bordered / IFT system itself
     * is found singular. */
    double T[2 * m * m] = {0};
    sym_abs(&rng, m, T);
    T[m * m + 0] = 5, T[m * m + 4] = 5, T[m * m + 8] = 1;
    for (int gap = 1; gap >= 0; gap--)
        for (int k = 0; k < 6; k++) {
            if (all_modes[k] == DDN_IED_BACKWARD_UNROLL) continue; /* differentiable as is */
            o = DDN_IED_OPTS_DEFAULT;
            o.check_gap = gap;
            ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, 2, m, T);
            ddn_tensor *y = ddn_ied(ctx, At, &o, all_modes[k], NULL, NULL);
            assert_non_null(y);
            ddn_status bst = ddn_backward(ctx, ddn_sum(ctx, y, 0, NULL, false));
            const char *msg = ddn_ctx_errmsg(ctx);
            if (bst != DDN_ERR_SINGULAR || !strstr(msg, mode_str[k]) ||
                !strstr(msg, gap && k != 5 ? "gap check" : k == 5 ? "repeated" : "is singular"))
                fail_msg("tied, %s, gap check %d: backward gave %s (%s)", mode_str[k], gap,
                         ddn_status_str(bst), msg);
            assert_error(ctx, DDN_ERR_SINGULAR, "item 1 of 2");
        }

    /* an empty batch is not an error */
    for (int k = 0; k < 6; k++) {
        ddn_tensor *E = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(0, m, m)), *el = NULL;
        assert_ok(ctx, ddn_tensor_set_requires_grad(E, true));
        ddn_tensor *y = ddn_ied(ctx, E, NULL, all_modes[k], &el, NULL);
        if (!y) fail_msg("empty batch, %s: %s", mode_str[k], ddn_ctx_errmsg(ctx));
        assert_int_equal(y->shape[0], 0);
        assert_int_equal(y->shape[1], m);
        assert_non_null(el);
    }

    /* zero and NaN input, every mode */
    double Z[m * m] = {0}, N[m * m];
    sym_abs(&rng, m, N);
    N[1] = NAN; /* off the diagonal: the symmetry check must not mistake it for asymmetry */
    for (int k = 0; k < 6; k++) {
        assert_null(ddn_ied(ctx, leaf(ctx, DDN_DTYPE_F64, 1, m, Z), NULL, all_modes[k], NULL,
                            NULL));
        assert_error(ctx, DDN_ERR_SINGULAR, "zero");
        assert_null(ddn_ied(ctx, leaf(ctx, DDN_DTYPE_F64, 1, m, N), NULL, all_modes[k], NULL,
                            NULL));
        assert_error(ctx, DDN_ERR_NUMERIC, "NaN");
    }

    /* strict non-convergence: 2 iterations cannot meet 1e-14 */
    double S[m * m];
    sym_abs(&rng, m, S);
    o = DDN_IED_OPTS_DEFAULT;
    o.strict = true, o.max_iter = 2, o.tol = 1e-14;
    for (int k = 0; k < 5; k++) {
        ddn_decl_info info;
        assert_null(ddn_ied(ctx, leaf(ctx, DDN_DTYPE_F64, 1, m, S), &o, all_modes[k], NULL,
                            &info));
        assert_error(ctx, DDN_ERR_NOT_CONVERGED, "did not converge in 2 iterations");
    }
    o.strict = false; /* not strict: a result, flagged */
    for (int k = 0; k < 5; k++) {
        ddn_decl_info info;
        assert_non_null(ddn_ied(ctx, leaf(ctx, DDN_DTYPE_F64, 1, m, S), &o, all_modes[k], NULL,
                                &info));
        assert_int_equal((int)ddn_tensor_get(info.converged, (int64_t[]){0}), 0);
        assert_int_equal((int)ddn_tensor_get(info.iterations, (int64_t[]){0}), 2);
    }
    ddn_ctx_free(ctx);
}

/* ---- float32 ------------------------------------------------------------------------------------
 * The forward stays float32 (solver / syevd / recorded ops in float32); the DDN / IFT backward
 * solves its small dense system in float64 from the float32 values. Measured: the median relative
 * gradient error of DDN_E and IFT_E against float64 on the same (float32-rounded) matrices. The
 * paper's reference code measures 0.16-1.5 for DDN-E (PMAF-MATH §6); the bound here is 1e-4. */
static double median(int n, double *x)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j - 1] > x[j]; j--) {
            double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static void test_float32_accuracy(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 16);
    enum { B = 5 };
    const int ms[] = {32, 64, 128, 256}; /* all four stay fast, under the sanitizers too */
    const ddn_ied_backward modes[] = {DDN_IED_BACKWARD_DDN_E, DDN_IED_BACKWARD_IFT_E};
    for (int mi = 0; mi < 4; mi++) {
        const int m = ms[mi], n = m * m;
        double *A = malloc(sizeof(double) * B * n), *v = malloc(sizeof(double) * B * m);
        double *g32 = malloc(sizeof(double) * B * n), *g64 = malloc(sizeof(double) * B * n);
        for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * n);
        for (int i = 0; i < B * n; i++) A[i] = (float)A[i]; /* the same matrices in both */
        for (int i = 0; i < B * m; i++) v[i] = (float)ddn_rng_normal(&rng);
        double med[2];
        for (int k = 0; k < 2; k++) {
            run_mode(ctx, DDN_DTYPE_F32, B, m, A, v, NULL, modes[k], NULL, NULL, g32);
            run_mode(ctx, DDN_DTYPE_F64, B, m, A, v, NULL, modes[k], NULL, NULL, g64);
            double rel[B];
            for (int b = 0; b < B; b++) {
                double d = 0, s = 0;
                for (int i = 0; i < n; i++) {
                    double e = g32[b * n + i] - g64[b * n + i];
                    d += e * e;
                    s += g64[b * n + i] * g64[b * n + i];
                }
                rel[b] = sqrt(d / s);
            }
            med[k] = median(B, rel);
            assert_true(med[k] <= 1e-4);
        }
        print_message("float32 m=%3d: median relative gradient error vs float64: DDN_E %.2e, "
                      "IFT_E %.2e\n", m, med[0], med[1]);
        free(A), free(v), free(g32), free(g64);
    }
    /* the other modes give float32 gradients too (dtype checked in run_mode) */
    double A[2 * 16], v[2 * 4], g[2 * 16];
    for (int b = 0; b < 2; b++) sym_abs(&rng, 4, A + b * 16);
    for (int i = 0; i < 8; i++) v[i] = ddn_rng_normal(&rng);
    for (int k = 0; k < 6; k++)
        run_mode(ctx, DDN_DTYPE_F32, 2, 4, A, v, NULL, all_modes[k], NULL, NULL, g);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_symmetric),
        cmocka_unit_test(test_gradcheck_nonsymmetric),
        cmocka_unit_test(test_gradcheck_si_and_qr),
        cmocka_unit_test(test_gradcheck_lambda),
        cmocka_unit_test(test_forward_vs_lapack),
        cmocka_unit_test(test_unroll_replays_solver),
        cmocka_unit_test(test_lambda_gradient_closed_form),
        cmocka_unit_test(test_modes_agree),
        cmocka_unit_test(test_gradients_accumulate),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_float32_accuracy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
