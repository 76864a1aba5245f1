/* ddn — tests of the autograd engine itself: shared inputs, diamonds, reused parameters,
 * accumulation across backward calls, no-grad scopes, DDN_CHECK_NUMERICS in forward and
 * backward, the gradcheck function's own ability to fail, and the step arena over many steps. */
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv */
#include <math.h>
#include <stdlib.h>

#include "test_util.h"

/* y = x*x + x*x*x: x reaches the output along three paths that share nodes. */
static ddn_tensor *f_diamond(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_tensor *x = in[0];
    ddn_tensor *sq = ddn_mul(ctx, x, x);
    return ddn_add(ctx, sq, ddn_mul(ctx, sq, x));
}

static void test_diamond_matches_calculus(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(5), -2, 2);
    assert_gradcheck(ctx, f_diamond, NULL, 1, &x, NULL);
    /* and against the derivative 2x + 3x^2 written out */
    ddn_tensor *y = f_diamond(ctx, &x, NULL);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(5))));
    for (int64_t i = 0; i < 5; i++) {
        double v = ddn_tensor_get(x, &i);
        assert_true(fabs(ddn_tensor_get(x->grad, &i) - (2 * v + 3 * v * v)) < 1e-12);
    }
    ddn_ctx_free(ctx);
}

/* The same parameter used twice in one graph (as a shared weight). */
static ddn_tensor *f_reused_weight(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_tensor *h = ddn_tanh(ctx, ddn_matmul(ctx, in[0], in[1]));
    return ddn_sum(ctx, ddn_matmul(ctx, h, in[1]), 0, NULL, false);
}

static void test_reused_parameter(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *in[2] = {test_leaf(ctx, DDN_SHAPE(3, 4), -1, 1),
                         test_leaf(ctx, DDN_SHAPE(4, 4), -1, 1)};
    assert_gradcheck(ctx, f_reused_weight, NULL, 2, in, NULL);
    ddn_ctx_free(ctx);
}

static void test_accumulation_and_second_backward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *w = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
    assert_ok(ctx, ddn_tensor_fill(w, 2.0));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w, true));
    for (int step = 0; step < 3; step++) {
        ddn_tensor *loss = ddn_sum(ctx, ddn_mul(ctx, w, w), 0, NULL, false); /* d/dw = 2w */
        assert_ok(ctx, ddn_backward(ctx, loss));
        ddn_ctx_reset_step(ctx);
    }
    assert_true(ddn_tensor_get(w->grad, (int64_t[]){1}) == 12.0); /* 3 x 2w accumulated */
    /* backward twice over one graph: leaf accumulates twice, intermediates are not doubled */
    ddn_tensor_zero_grad(w);
    ddn_tensor *t = ddn_mul_scalar(ctx, w, 3.0);
    ddn_tensor *loss = ddn_sum(ctx, ddn_mul(ctx, t, t), 0, NULL, false); /* d/dw = 18w */
    assert_ok(ctx, ddn_backward(ctx, loss));
    assert_ok(ctx, ddn_backward(ctx, loss));
    assert_true(ddn_tensor_get(w->grad, (int64_t[]){0}) == 2 * 36.0);
    ddn_tensor_free(w);
    ddn_ctx_free(ctx);
}

static void test_branch_not_reaching_loss(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(4), 0.5, 1);
    ddn_tensor *unused = ddn_exp(ctx, x); /* recorded, but not part of the loss */
    assert_non_null(unused);
    ddn_tensor *loss = ddn_sum(ctx, ddn_mul_scalar(ctx, x, 2.0), 0, NULL, false);
    assert_ok(ctx, ddn_backward(ctx, loss));
    assert_null(unused->grad);
    assert_true(ddn_tensor_get(x->grad, (int64_t[]){2}) == 2.0);
    ddn_ctx_free(ctx);
}

static void test_check_numerics_forward_and_backward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_ctx_set_check_numerics(ctx, true);
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(3), 1, 2);
    ddn_tensor *bad = ddn_div(ctx, x, ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(3)));
    assert_null(bad);
    assert_error(ctx, DDN_ERR_NUMERIC, "div");
    /* sqrt is finite at 0, its gradient is not: the backward check names the op */
    ddn_tensor *z = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2));
    assert_ok(ctx, ddn_tensor_set_requires_grad(z, true));
    ddn_tensor *loss = ddn_sum(ctx, ddn_sqrt(ctx, z), 0, NULL, false);
    assert_non_null(loss);
    assert_int_equal(ddn_backward(ctx, loss), DDN_ERR_NUMERIC);
    assert_error(ctx, DDN_ERR_NUMERIC, "sqrt: backward");
    ddn_ctx_free(ctx);

    setenv("DDN_CHECK_NUMERICS", "1", 1);
    ctx = test_ctx();
    assert_true(ddn_ctx_check_numerics(ctx));
    ddn_ctx_free(ctx);
    unsetenv("DDN_CHECK_NUMERICS");
    ctx = test_ctx();
    assert_false(ddn_ctx_check_numerics(ctx));
    ddn_ctx_free(ctx);
}

/* A deliberately wrong backward: gradcheck must catch it (a check that cannot fail is no check). */
static ddn_status wrong_backward(ddn_ctx *ctx, ddn_node *node)
{
    return ddn_grad_accumulate(ctx, node->in[0], node->out->grad, 1.01);
}

static ddn_tensor *f_wrong(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_tensor *x = in[0];
    ddn_tensor *y = ddn_tensor_new(ctx, x->dtype, x->ndim, x->shape);
    if (!y || ddn_tensor_copy_(y, x) != DDN_OK) return NULL;
    ddn_tape_record(ctx, "wrong_identity", wrong_backward, y, 1, &x, 0);
    return y;
}

static void test_gradcheck_catches_wrong_backward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(4, 3), -1, 1);
    ddn_gradcheck_result r;
    assert_ok(ctx, ddn_gradcheck(ctx, f_wrong, NULL, 1, &x, NULL, &r));
    assert_false(r.passed);
    assert_int_equal(r.checked, 12);
    assert_int_equal(r.worst_input, 0);
    assert_true(fabs(r.worst_analytic / r.worst_numeric - 1.01) < 1e-6);
    /* sampled mode: a big input checks max_entries of its entries */
    ddn_tensor *big = test_leaf(ctx, DDN_SHAPE(100, 100), -1, 1);
    ddn_gradcheck_opts o = {.max_entries = 20};
    assert_ok(ctx, ddn_gradcheck(ctx, f_wrong, NULL, 1, &big, &o, &r));
    assert_int_equal(r.checked, 20);
    assert_false(r.passed);
    /* unsuitable inputs are refused with a message */
    ddn_tensor *f32 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2));
    assert_int_equal(ddn_gradcheck(ctx, f_wrong, NULL, 1, &f32, NULL, &r), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "float64");
    ddn_ctx_free(ctx);
}

/* Many steps of forward/backward/reset: the arena must not grow after the first step. */
static void test_arena_stable_over_steps(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *w = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(64, 64));
    assert_ok(ctx, ddn_tensor_fill_normal(w, NULL, 0, 0.1));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w, true));
    size_t reserved_after_first = 0;
    for (int step = 0; step < 50; step++) {
        ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(32, 64), 0, 1);
        ddn_tensor *loss = ddn_mean(ctx, ddn_relu(ctx, ddn_matmul(ctx, x, w)), 0, NULL, false);
        assert_ok(ctx, ddn_backward(ctx, loss));
        ddn_ctx_reset_step(ctx);
        if (step == 0) reserved_after_first = ddn_ctx_stats(ctx).arena_reserved;
    }
    ddn_stats s = ddn_ctx_stats(ctx);
    assert_int_equal(s.arena_reserved, reserved_after_first);
    assert_int_equal(s.tape_nodes, 0);
    assert_true(s.arena_high_water > 0);
    ddn_tensor_free(w);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond_matches_calculus),
        cmocka_unit_test(test_reused_parameter),
        cmocka_unit_test(test_accumulation_and_second_backward),
        cmocka_unit_test(test_branch_not_reaching_loss),
        cmocka_unit_test(test_check_numerics_forward_and_backward),
        cmocka_unit_test(test_gradcheck_catches_wrong_backward),
        cmocka_unit_test(test_arena_stable_over_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
