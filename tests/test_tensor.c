/* ddn — tests of the core: context and errors, arena and stats, tensor creation, RNG, views,
 * copies and the basic tape (view ops' gradients). */
#include <math.h>
#include <string.h>

#include "test_util.h"

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = 0; s < DDN_STATUS_COUNT; s++) assert_non_null(ddn_status_str((ddn_status)s));
    assert_string_equal(ddn_status_str(DDN_ERR_SHAPE), "shape error");
    assert_string_equal(ddn_status_str((ddn_status)999), "unknown status");
}

static void test_sticky_error(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    assert_string_equal(ddn_ctx_errmsg(ctx), "");
    ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "first %d", 1);
    ddn_ctx_set_error(ctx, DDN_ERR_IO, "second");
    assert_error(ctx, DDN_ERR_SHAPE, "first 1");
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
    ddn_ctx_free(NULL);
}

static void test_creation(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *z = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3));
    assert_non_null(z);
    assert_int_equal(z->ndim, 2);
    assert_int_equal(ddn_tensor_numel(z), 6);
    assert_int_equal(z->stride[0], 3);
    assert_true(ddn_tensor_is_contiguous(z));
    ddn_tensor *f = ddn_full(ctx, DDN_DTYPE_F64, DDN_SHAPE(4), 2.5);
    assert_true(ddn_tensor_get(f, (int64_t[]){3}) == 2.5);
    ddn_tensor *s = ddn_scalar(ctx, DDN_DTYPE_I64, 7);
    assert_int_equal(s->ndim, 0);
    assert_true(ddn_tensor_item(s) == 7);
    ddn_tensor *a = ddn_arange(ctx, DDN_DTYPE_F32, 1, 2, 0.25);
    assert_int_equal(a->shape[0], 4);
    assert_true(ddn_tensor_get(a, (int64_t[]){3}) == 1.75);
    assert_null(ddn_arange(ctx, DDN_DTYPE_F32, 0, 1, 0));
    assert_error(ctx, DDN_ERR_ARG, "step must be non-zero");
    double host[6] = {1, 2, 3, 4, 5, 6};
    ddn_tensor *h = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3), host);
    assert_true(ddn_tensor_get(h, (int64_t[]){1, 2}) == 6);
    float out[6];
    assert_ok(ctx, ddn_tensor_to_host(h, DDN_DTYPE_F32, out));
    assert_true(out[4] == 5.0f);
    char buf[32];
    assert_string_equal(ddn_shape_str(h, buf, sizeof buf), "(2,3)");
    assert_string_equal(ddn_shape_str(s, buf, sizeof buf), "()");
    ddn_ctx_free(ctx);
}

static void test_bad_shapes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    assert_null(ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, -3)));
    assert_error(ctx, DDN_ERR_SHAPE, "negative size");
    assert_null(ddn_zeros(ctx, DDN_DTYPE_F32, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}));
    assert_error(ctx, DDN_ERR_SHAPE, "at most 6");
    assert_null(ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(INT64_MAX / 2, 4)));
    assert_error(ctx, DDN_ERR_SHAPE, "overflows");
    assert_null(ddn_zeros(ctx, (ddn_dtype)9, DDN_SHAPE(2)));
    assert_error(ctx, DDN_ERR_DTYPE, "invalid dtype");
    ddn_ctx_free(ctx);
}

static void test_rng_reproducible(void **state)
{
    (void)state;
    ddn_rng a, b;
    ddn_rng_seed(&a, 42);
    ddn_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) assert_true(ddn_rng_u64(&a) == ddn_rng_u64(&b));
    /* moments of 20000 normals: mean ~ 0 (se 0.007), variance ~ 1 (se 0.01) */
    double s = 0, s2 = 0;
    int n = 20000;
    for (int i = 0; i < n; i++) {
        double x = ddn_rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    assert_true(fabs(s / n) < 0.05);
    assert_true(fabs(s2 / n - 1) < 0.05);
    for (int i = 0; i < 1000; i++) assert_true(ddn_rng_below(&a, 7) < 7);
    ddn_ctx *ctx = test_ctx();
    ddn_rng r1, r2;
    ddn_rng_seed(&r1, 5);
    ddn_rng_seed(&r2, 5);
    ddn_tensor *u1 = ddn_rand_uniform(ctx, &r1, DDN_DTYPE_F32, DDN_SHAPE(50), -2, 3);
    ddn_tensor *u2 = ddn_rand_uniform(ctx, &r2, DDN_DTYPE_F32, DDN_SHAPE(50), -2, 3);
    assert_tensor_close(u1, u2, 0, 0);
    for (int64_t i = 0; i < 50; i++) {
        double v = ddn_tensor_get(u1, &i);
        assert_true(v >= -2 && v < 3);
    }
    ddn_ctx_free(ctx);
}

static void test_arena_reset_and_stats(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_stats s0 = ddn_ctx_stats(ctx);
    assert_int_equal(s0.arena_in_use, 0);
    for (int i = 0; i < 10; i++) assert_non_null(ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(1 << 20)));
    ddn_stats s1 = ddn_ctx_stats(ctx);
    assert_true(s1.arena_in_use >= (size_t)40 << 20);
    assert_true(s1.arena_high_water >= s1.arena_in_use);
    ddn_ctx_reset_step(ctx);
    ddn_stats s2 = ddn_ctx_stats(ctx);
    assert_int_equal(s2.arena_in_use, 0);
    assert_true(s2.arena_high_water == s1.arena_high_water);
    assert_true(s2.arena_reserved == s1.arena_reserved); /* blocks are kept for reuse */
    ddn_mark m = ddn_ctx_mark(ctx);
    assert_non_null(ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(1000)));
    ddn_ctx_rewind(ctx, m);
    assert_int_equal(ddn_ctx_stats(ctx).arena_in_use, 0);

    ddn_tensor *p = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(256));
    assert_int_equal(ddn_ctx_stats(ctx).persistent_bytes, 1024);
    ddn_tensor_free(p);
    assert_int_equal(ddn_ctx_stats(ctx).persistent_bytes, 0);
    assert_int_equal(ddn_ctx_stats(ctx).persistent_high_water, 1024);
    ddn_tensor_free(NULL);
    ddn_ctx_free(ctx);
}

static void test_copy_strided(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *a = ddn_arange(ctx, DDN_DTYPE_F64, 0, 24, 1);
    ddn_tensor *x = ddn_reshape(ctx, a, DDN_SHAPE(2, 3, 4));
    ddn_tensor *t = ddn_permute(ctx, x, (int[]){2, 0, 1}); /* (4, 2, 3) */
    assert_false(ddn_tensor_is_contiguous(t));
    ddn_tensor *c = ddn_contiguous(ctx, t);
    assert_true(ddn_tensor_is_contiguous(c));
    for (int64_t i = 0; i < 4; i++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t k = 0; k < 3; k++)
                assert_true(ddn_tensor_get(c, (int64_t[]){i, j, k}) == j * 12 + k * 4 + i);
    ddn_tensor *f = ddn_cast(ctx, c, DDN_DTYPE_F32);
    assert_int_equal(f->dtype, DDN_DTYPE_F32);
    assert_tensor_close(f, c, 0, 0);
    ddn_tensor *s = ddn_slice(ctx, x, 2, 1, 4, 2); /* (2, 3, 2): columns 1 and 3 */
    assert_int_equal(s->shape[2], 2);
    assert_true(ddn_tensor_get(s, (int64_t[]){1, 2, 1}) == 12 + 8 + 3);
    ddn_tensor *e = ddn_expand(ctx, ddn_reshape(ctx, ddn_arange(ctx, DDN_DTYPE_F64, 0, 3, 1),
                                                DDN_SHAPE(3, 1)), DDN_SHAPE(2, 3, 4));
    assert_int_equal(e->stride[0], 0);
    assert_true(ddn_tensor_get(e, (int64_t[]){1, 2, 3}) == 2);
    assert_null(ddn_expand(ctx, x, DDN_SHAPE(2, 5, 4)));
    assert_error(ctx, DDN_ERR_SHAPE, "cannot expand (2,3,4) to (2,5,4)");
    assert_null(ddn_reshape(ctx, x, DDN_SHAPE(5, -1)));
    assert_error(ctx, DDN_ERR_SHAPE, "cannot view (2,3,4)");
    assert_non_null(ddn_reshape(ctx, x, DDN_SHAPE(-1, 6)));
    assert_null(ddn_permute(ctx, x, (int[]){0, 0, 1}));
    assert_error(ctx, DDN_ERR_ARG, "permutation");
    assert_null(ddn_slice(ctx, x, 5, 0, 1, 1));
    assert_error(ctx, DDN_ERR_ARG, "dim 5 is out of range");
    ddn_ctx_free(ctx);
}

/* ---- view gradients, checked by finite differences -------------------------------------------- */
static ddn_tensor *f_permute_slice(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_tensor *t = ddn_transpose(ctx, in[0], 0, 2);     /* (4, 3, 2) */
    t = ddn_slice(ctx, t, 0, 1, 4, 2);                   /* (2, 3, 2) */
    t = ddn_reshape(ctx, ddn_contiguous(ctx, t), DDN_SHAPE(3, 4));
    return ddn_flatten(ctx, t, 0);
}

static ddn_tensor *f_expand_cast(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_tensor *e = ddn_expand(ctx, in[0], DDN_SHAPE(2, 3, 4)); /* in: (3, 1) */
    ddn_tensor *f = ddn_cast(ctx, ddn_cast(ctx, e, DDN_DTYPE_F32), DDN_DTYPE_F64);
    return ddn_contiguous(ctx, f);
}

static void test_view_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(2, 3, 4), -1, 1);
    assert_gradcheck(ctx, f_permute_slice, NULL, 1, &x, NULL);
    ddn_tensor *y = test_leaf(ctx, DDN_SHAPE(3, 1), -1, 1);
    /* through float32: round-off of 1e-7 relative over eps 1e-3 */
    ddn_gradcheck_opts o = {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3};
    assert_gradcheck(ctx, f_expand_cast, NULL, 1, &y, &o);
    ddn_ctx_free(ctx);
}

static void test_backward_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2));
    assert_int_equal(ddn_backward(ctx, x), DDN_ERR_STATE);
    assert_error(ctx, DDN_ERR_STATE, "one element");
    ddn_tensor *s = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(1));
    assert_int_equal(ddn_backward(ctx, s), DDN_ERR_STATE);
    assert_error(ctx, DDN_ERR_STATE, "does not require grad");
    assert_int_equal(ddn_backward(ctx, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "NULL");
    ddn_tensor *i = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2));
    assert_int_equal(ddn_tensor_set_requires_grad(i, true), DDN_ERR_DTYPE);
    assert_error(ctx, DDN_ERR_DTYPE, "int64");
    ddn_ctx_free(ctx);
}

static void test_no_grad_and_accumulation(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *p = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2));
    assert_ok(ctx, ddn_tensor_set_requires_grad(p, true));
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *t = ddn_transpose(ctx, p, 0, 1);
    assert_false(t->requires_grad);
    assert_int_equal(ddn_tape_len(ctx), 0);
    ddn_set_grad_enabled(ctx, prev);
    /* two backward passes through a reshape accumulate into the persistent leaf */
    for (int k = 0; k < 2; k++) {
        ddn_tensor *y = ddn_reshape(ctx, p, DDN_SHAPE(4));
        ddn_tensor *dy = ddn_arange(ctx, DDN_DTYPE_F64, 1, 5, 1);
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
        ddn_ctx_reset_step(ctx);
    }
    assert_true(p->grad->persistent);
    assert_true(ddn_tensor_get(p->grad, (int64_t[]){1, 1}) == 8);
    ddn_tensor_zero_grad(p);
    assert_true(ddn_tensor_get(p->grad, (int64_t[]){1, 1}) == 0);
    ddn_tensor_free(p);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_sticky_error),
        cmocka_unit_test(test_creation),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_rng_reproducible),
        cmocka_unit_test(test_arena_reset_and_stats),
        cmocka_unit_test(test_copy_strided),
        cmocka_unit_test(test_view_gradients),
        cmocka_unit_test(test_backward_errors),
        cmocka_unit_test(test_no_grad_and_accumulation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
