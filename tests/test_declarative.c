/* ddn — tests of the declarative-node machinery: one tape node per call, the generic
 * equality-constrained adjoint (dense and Hessian-apply forms, singular systems), and the
 * user-defined weighted projection of examples/declarative_projection.c, gradient-checked. */
#define DDN_EXAMPLE_NO_MAIN
#include "../examples/declarative_projection.c"

#include <string.h>

#include "test_util.h"

static ddn_tensor *f_projection(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    (void)user;
    return weighted_projection(ctx, in[0], in[1], NULL);
}

static void test_projection_gradcheck(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *in[2] = {test_leaf(ctx, DDN_SHAPE(3, 6), -1, 1),
                         test_leaf(ctx, DDN_SHAPE(3, 6), 0.5, 2)};
    assert_gradcheck(ctx, f_projection, NULL, 2, in, NULL);
    ddn_ctx_free(ctx);
}

/* With unit weights the node is y = x / ||x||, whose VJP is (v - y y^T v) / ||x||. */
static void test_unit_weights_match_closed_form(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(2, 4), -2, 2);
    ddn_tensor *d = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4));
    ddn_decl_info info;
    int64_t tape0 = ddn_tape_len(ctx);
    ddn_tensor *y = weighted_projection(ctx, x, d, &info);
    assert_non_null(y);
    assert_int_equal(ddn_tape_len(ctx) - tape0, 1); /* the bisection recorded nothing */
    ddn_tensor *v = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 4), 0, 1);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, v));
    for (int64_t b = 0; b < 2; b++) {
        double nx = 0, yv = 0;
        for (int64_t i = 0; i < 4; i++) {
            double xi = ddn_tensor_get(x, (int64_t[]){b, i});
            nx += xi * xi;
        }
        nx = sqrt(nx);
        for (int64_t i = 0; i < 4; i++)
            yv += ddn_tensor_get(y, (int64_t[]){b, i}) * ddn_tensor_get(v, (int64_t[]){b, i});
        for (int64_t i = 0; i < 4; i++) {
            double yi = ddn_tensor_get(x, (int64_t[]){b, i}) / nx;
            assert_true(fabs(ddn_tensor_get(y, (int64_t[]){b, i}) - yi) < 1e-12);
            double expect = (ddn_tensor_get(v, (int64_t[]){b, i}) - yi * yv) / nx;
            assert_true(fabs(ddn_tensor_get(x->grad, (int64_t[]){b, i}) - expect) < 1e-10);
        }
        assert_int_equal((int)ddn_tensor_get(info.converged, &b), 1);
        assert_true(ddn_tensor_get(info.iterations, &b) > 0);
        assert_true(ddn_tensor_get(info.fpd, &b) < 1e-12);
    }
    ddn_ctx_free(ctx);
}

/* ---- the generic adjoint on its own ---------------------------------------------------------- */
typedef struct { double h[9]; double a[3]; } small_problem;

static ddn_status small_hessian(void *user, int64_t item, const double *y, const double *nu,
                                double *H)
{
    (void)item, (void)y, (void)nu;
    memcpy(H, ((small_problem *)user)->h, sizeof(double) * 9);
    return DDN_OK;
}

static ddn_status small_apply(void *user, int64_t item, const double *y, const double *nu,
                              const double *d, double *out)
{
    (void)item, (void)y, (void)nu;
    const double *h = ((small_problem *)user)->h;
    for (int i = 0; i < 3; i++) out[i] = h[3 * i] * d[0] + h[3 * i + 1] * d[1] + h[3 * i + 2] * d[2];
    return DDN_OK;
}

static ddn_status small_jacobian(void *user, int64_t item, const double *y, double *A)
{
    (void)item, (void)y;
    memcpy(A, ((small_problem *)user)->a, sizeof(double) * 3);
    return DDN_OK;
}

static void test_eqc_adjoint_dense_apply_and_singular(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* H = diag(2, 3, 0) is singular, but definite on the tangent space {d : d3 = 0} of the
     * constraint A = e3^T, so the bordered system is regular (the IED situation). */
    small_problem sp = {.h = {2, 0, 0, 0, 3, 0, 0, 0, 0}, .a = {0, 0, 1}};
    double y[3] = {0}, nu[1] = {0}, v[3] = {4, 9, 5}, w[3], mu[1];
    ddn_eqc_problem dense = {.n = 3, .p = 1, .hessian = small_hessian,
                             .constraint_jacobian = small_jacobian};
    assert_ok(ctx, ddn_eqc_adjoint(ctx, &dense, &sp, 1, y, nu, v, w, mu));
    /* [H A^T; A 0][w; mu] = [v; 0]: w = (2, 3, 0), mu = 5 */
    assert_true(fabs(w[0] - 2) < 1e-14 && fabs(w[1] - 3) < 1e-14 && fabs(w[2]) < 1e-14);
    assert_true(fabs(mu[0] - 5) < 1e-14);
    ddn_eqc_problem applied = {.n = 3, .p = 1, .hessian_apply = small_apply,
                               .constraint_jacobian = small_jacobian};
    double w2[3], mu2[1];
    assert_ok(ctx, ddn_eqc_adjoint(ctx, &applied, &sp, 1, y, nu, v, w2, mu2));
    for (int i = 0; i < 3; i++) assert_true(w2[i] == w[i]);
    /* A constraint along e1 leaves e3 (H's null space) unconstrained: K is singular. */
    sp.a[0] = 1, sp.a[2] = 0;
    assert_int_equal(ddn_eqc_adjoint(ctx, &dense, &sp, 1, y, nu, v, w, mu), DDN_ERR_SINGULAR);
    assert_error(ctx, DDN_ERR_SINGULAR, "item 0");
    ddn_eqc_problem bad = {.n = 3, .p = 1, .hessian = small_hessian};
    assert_int_equal(ddn_eqc_adjoint(ctx, &bad, &sp, 1, y, nu, v, w, mu), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "constraint Jacobian");
    ddn_ctx_free(ctx);
}

static void test_solver_errors_and_float32(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 3), 0, 1);
    ddn_tensor *d = ddn_full(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3), -1);
    assert_null(weighted_projection(ctx, x, d, NULL));
    assert_error(ctx, DDN_ERR_ARG, "weights must be positive");
    assert_null(weighted_projection(ctx, x, ddn_ones(ctx, DDN_DTYPE_F32, DDN_SHAPE(3, 2)), NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "(2,3) and d (3,2)");
    /* float32 in, float32 out and float32 gradients */
    ddn_tensor_set_requires_grad(x, true);
    ddn_tensor *y = weighted_projection(ctx, x, ddn_ones(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3)),
                                        NULL);
    assert_non_null(y);
    assert_int_equal(y->dtype, DDN_DTYPE_F32);
    assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, y, 0, NULL, false)));
    assert_int_equal(x->grad->dtype, DDN_DTYPE_F32);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_projection_gradcheck),
        cmocka_unit_test(test_unit_weights_match_closed_form),
        cmocka_unit_test(test_eqc_adjoint_dense_apply_and_singular),
        cmocka_unit_test(test_solver_errors_and_float32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
