/* ddn — tests of the IED layer's IFT_E solve (declarative/ied_backward.c): the fixed-point
 * (Neumann) iteration against the LU fallback on the paper's matrices, the fallback on a nearly
 * tied spectrum (direct and through the layer, against a closed form from syevd), and a tie that
 * the right-hand side does not see, which must still be refused as singular. Expected values come
 * from LAPACK and residuals computed here, or from the other path.
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

/* ---- IFT_E's two solvers: the fixed-point (Neumann) iteration and the LU fallback -------------
 * ied_backward.c solves H^T k = v (H = I - P A / lambda) by k <- v + A^T P k / lambda when that
 * converges within its budget, else by the LU with its condition check. Both paths against each
 * other and against the residual computed here; which path ran is reported by
 * ddn_ied_ift_solve_. */

/* ||H^T k - v|| / ||v|| for H^T = I - A^T P / lambda, lambda = sign(y.Ay) ||A y||, in float64. */
static double ift_residual(int m, const double *A, const double *y, const double *v,
                           const double *k)
{
    double nay = 0, rq = 0, yk = 0, r = 0, nv = 0;
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < m; j++) s += A[i * m + j] * y[j];
        nay += s * s, rq += y[i] * s, yk += y[i] * k[i];
    }
    double lam = rq < 0 ? -sqrt(nay) : sqrt(nay);
    for (int j = 0; j < m; j++) {
        double s = 0; /* (A^T P k)_j */
        for (int i = 0; i < m; i++) s += A[i * m + j] * (k[i] - y[i] * yk);
        double e = k[j] - s / lam - v[j];
        r += e * e, nv += v[j] * v[j];
    }
    return sqrt(r / nv);
}

static void test_ift_solvers(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 17);
    /* (1) The paper's matrices, symmetric and not: both paths, agreeing to 1e-10; AUTO takes
     * the Neumann path in few sweeps (|lambda_2 / lambda| ~ 0.07-0.3 here). The y of the
     * non-symmetric |G| is its Perron vector, by a power iteration written here. */
    const int ms[] = {16, 64, 200};
    for (int mi = 0; mi < 3; mi++)
        for (int sym = 1; sym >= 0; sym--) {
            const int m = ms[mi];
            double *A = malloc(sizeof(double) * m * m), *y = malloc(sizeof(double) * m);
            double *v = malloc(sizeof(double) * m), *k[3], *t = malloc(sizeof(double) * m);
            for (int p = 0; p < 3; p++) k[p] = malloc(sizeof(double) * m);
            if (sym) {
                sym_abs(&rng, m, A);
                top_eig(m, A, y);
            } else {
                abs_n(&rng, m * m, A);
                for (int i = 0; i < m; i++) y[i] = 1 / sqrt(m);
                for (int it = 0; it < 200; it++) {
                    double n2 = 0;
                    for (int i = 0; i < m; i++) {
                        t[i] = 0;
                        for (int j = 0; j < m; j++) t[i] += A[i * m + j] * y[j];
                        n2 += t[i] * t[i];
                    }
                    for (int i = 0; i < m; i++) y[i] = t[i] / sqrt(n2);
                }
            }
            for (int i = 0; i < m; i++) v[i] = ddn_rng_normal(&rng);
            const ddn_ied_ift_path paths[3] = {DDN_IED_IFT_AUTO, DDN_IED_IFT_NEUMANN,
                                               DDN_IED_IFT_LU};
            ddn_ied_ift_path used[3];
            int64_t sweeps[3];
            for (int p = 0; p < 3; p++)
                assert_ok(ctx, ddn_ied_ift_solve_(ctx, paths[p], m, A, y, v, k[p], &used[p],
                                                  &sweeps[p]));
            assert_int_equal(used[0], DDN_IED_IFT_NEUMANN);
            assert_int_equal(used[1], DDN_IED_IFT_NEUMANN);
            assert_int_equal(used[2], DDN_IED_IFT_LU);
            double e = rel_max(m, k[0], k[2]), r0 = ift_residual(m, A, y, v, k[0]);
            double r2 = ift_residual(m, A, y, v, k[2]);
            print_message("m=%3d %s: Neumann %2lld sweeps, |k_N - k_LU| / |k_LU| = %.1e, "
                          "residuals %.1e (Neumann) %.1e (LU)\n", m,
                          sym ? "symmetric    " : "non-symmetric", (long long)sweeps[0], e, r0,
                          r2);
            assert_true(e < 1e-10 && r0 < 1e-11 && r2 < 1e-11);
            assert_true(sweeps[0] <= 30);
            free(A), free(y), free(v), free(t);
            for (int p = 0; p < 3; p++) free(k[p]);
        }

    /* (2) |lambda_2 / lambda| = 0.998: the iteration would need ~14000 sweeps; it gives up after
     * a few (its observed contraction predicts that the budget will not do) and the LU, well
     * conditioned here (cond ~ 1 / (1 - 0.998)), answers. A forced Neumann solve says so. */
    {
        enum { m = 40 };
        double l[m], A[m * m], y[m], v[m], k[m];
        l[0] = 1, l[1] = 0.998;
        for (int i = 2; i < m; i++) l[i] = 0.5 - (double)(i - 2) / (m - 3);
        spectrum_matrix(&rng, m, l, A, y);
        for (int i = 0; i < m; i++) v[i] = ddn_rng_normal(&rng);
        ddn_ied_ift_path used;
        int64_t sweeps;
        assert_ok(ctx, ddn_ied_ift_solve_(ctx, DDN_IED_IFT_AUTO, m, A, y, v, k, &used, &sweeps));
        assert_int_equal(used, DDN_IED_IFT_LU);
        assert_true(sweeps >= 4 && sweeps <= 8);
        assert_true(ift_residual(m, A, y, v, k) < 1e-12);
        assert_int_equal(ddn_ied_ift_solve_(ctx, DDN_IED_IFT_NEUMANN, m, A, y, v, k, &used,
                                            &sweeps), DDN_ERR_NOT_CONVERGED);
        assert_error(ctx, DDN_ERR_NOT_CONVERGED, "did not converge");
        /* the layer takes the same fallback: IFT_E's gradient against the closed form (relative
         * error ~ eps cond^2: bound 1e-8) */
        double G[m * m], g[m * m];
        ddn_ied_opts o = tight();
        o.max_iter = 200000;
        run_mode(ctx, DDN_DTYPE_F64, 1, m, A, v, &o, DDN_IED_BACKWARD_IFT_E, NULL, NULL, g);
        closed_form_G(m, A, v, G);
        double e = rel_max(m * m, g, G);
        print_message("ratio 0.998, LU fallback: |IFT_E - closed form| / |closed form| = %.1e\n",
                      e);
        assert_true(e < 1e-8);
    }

    /* (3) A tie the right-hand side does not see: A = diag(5, 5, 1, 0.5), y = e_1, v = e_1 +
     * e_3 has no component along e_2, the tied direction, so k <- v + M k on v alone converges
     * (M = diag(0, 1, 0.2, 0.1)). The probe column does see it: no convergence, the LU, and
     * its condition check reports the singular H as before. */
    {
        double A[16] = {5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0.5};
        double y[4] = {1, 0, 0, 0}, v[4] = {1, 0, 1, 0}, k[4];
        ddn_ied_ift_path used;
        int64_t sweeps;
        assert_int_equal(ddn_ied_ift_solve_(ctx, DDN_IED_IFT_AUTO, 4, A, y, v, k, &used,
                                            &sweeps), DDN_ERR_SINGULAR);
        assert_error(ctx, DDN_ERR_SINGULAR, "is singular");
        assert_true(sweeps <= 8);
        /* through the layer, gap check off: PI converges to y = (1, 1, 0, 0) / sqrt 2 in the
         * tied eigenspace; v = y + e_3 misses (1, -1, 0, 0) */
        ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
        o.check_gap = false;
        const double s = 1 / sqrt(2.0), vv[4] = {s, s, 1, 0};
        ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, 1, 4, A);
        ddn_tensor *yt = ddn_ied(ctx, At, &o, DDN_IED_BACKWARD_IFT_E, NULL, NULL);
        assert_non_null(yt);
        ddn_tensor *vt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 4), vv);
        assert_int_equal(ddn_backward_with_grad(ctx, yt, vt), DDN_ERR_SINGULAR);
        assert_error(ctx, DDN_ERR_SINGULAR, "item 0 of 1");
    }
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ift_solvers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
