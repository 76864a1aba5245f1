/* ddn — tests of the reductions (layers/reduce.c, core/cpu/reduce_backward.c): sum, mean, max and
 * argmax forward against naive loops in float32 and float64, float64 gradient checks over single,
 * several, negative and all dims with keepdim on and off, max's tie rule computed by hand, and
 * every bad-input error. PyTorch comparisons are in test_reduce_torch.c. */
#include <math.h>
#include <string.h>

#include "test_util.h"

typedef enum { K_SUM, K_MEAN, K_MAX } kind;

typedef struct {
    kind k;
    int n_dims;
    int dims[DDN_MAX_DIMS];
    bool keepdim;
    bool transpose_first; /* reduce a non-contiguous view of the input */
} red_case;

static ddn_tensor *apply(ddn_ctx *ctx, const red_case *c, ddn_tensor *x)
{
    if (c->transpose_first) x = ddn_transpose(ctx, x, 0, -1);
    switch (c->k) {
    case K_SUM: return ddn_sum(ctx, x, c->n_dims, c->dims, c->keepdim);
    case K_MEAN: return ddn_mean(ctx, x, c->n_dims, c->dims, c->keepdim);
    default: return ddn_max(ctx, x, c->n_dims, c->dims, c->keepdim);
    }
}

static ddn_tensor *f_reduce(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    return apply(ctx, u, in[0]);
}

/* The expected keepdim-shaped result of reducing row-major x (shape, nd) over mask, by brute
 * force: every element is added (or compared) into the output slot with its reduced coords 0. */
static void naive_reduce(kind k, const double *x, int nd, const int64_t *shape, uint32_t mask,
                         double *out, int64_t *n_out)
{
    int64_t oshape[DDN_MAX_DIMS], n = 1, no = 1, count = 1;
    for (int d = 0; d < nd; d++) {
        oshape[d] = (mask >> d) & 1 ? 1 : shape[d];
        n *= shape[d];
        no *= oshape[d];
        if ((mask >> d) & 1) count *= shape[d];
    }
    for (int64_t o = 0; o < no; o++) out[o] = k == K_MAX ? -INFINITY : 0.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, o = 0, mul = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t idx = rem % shape[d];
            rem /= shape[d];
            if (!((mask >> d) & 1)) o += idx * mul;
            mul *= oshape[d];
        }
        if (k == K_MAX) out[o] = fmax(out[o], x[i]);
        else out[o] += x[i];
    }
    if (k == K_MEAN)
        for (int64_t o = 0; o < no; o++) out[o] /= (double)count;
    *n_out = no;
}

static uint32_t mask_of(const red_case *c, int nd)
{
    if (c->n_dims == 0) return (1u << nd) - 1;
    uint32_t m = 0;
    for (int i = 0; i < c->n_dims; i++) m |= 1u << (c->dims[i] < 0 ? c->dims[i] + nd : c->dims[i]);
    return m;
}

static const red_case cases[] = {
    {K_SUM, 1, {1}, false, false},      {K_SUM, 2, {0, 2}, true, false},
    {K_SUM, 1, {-1}, true, false},      {K_SUM, 0, {0}, false, false},
    {K_SUM, 2, {-3, -1}, false, true},  {K_MEAN, 1, {0}, false, false},
    {K_MEAN, 2, {2, 1}, true, false},   {K_MEAN, 0, {0}, true, false},
    {K_MEAN, 1, {-2}, false, true},     {K_MAX, 1, {2}, false, false},
    {K_MAX, 2, {0, 1}, true, false},    {K_MAX, 1, {-3}, true, false},
    {K_MAX, 0, {0}, false, false},      {K_MAX, 3, {0, -1, 1}, true, true},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

static void test_forward_vs_naive(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int dt = 0; dt < 2; dt++) {
        for (int i = 0; i < N_CASES; i++) {
            const red_case *c = &cases[i];
            ddn_tensor *x = ddn_rand_uniform(ctx, NULL, dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32,
                                             DDN_SHAPE(2, 3, 4), -2, 2);
            ddn_tensor *y = apply(ctx, c, x);
            assert_non_null(y);
            assert_int_equal(y->dtype, x->dtype);
            /* the naive reference works on the (possibly transposed) values the op sees */
            ddn_tensor *seen = c->transpose_first ? ddn_transpose(ctx, x, 0, -1) : x;
            double xv[24], ev[24];
            assert_ok(ctx, ddn_tensor_to_host(seen, DDN_DTYPE_F64, xv));
            int64_t ne;
            uint32_t m = mask_of(c, 3);
            naive_reduce(c->k, xv, 3, seen->shape, m, ev, &ne);
            int nkept = 0;
            for (int d = 0; d < 3; d++) nkept += !((m >> d) & 1);
            assert_int_equal(y->ndim, c->keepdim ? 3 : nkept);
            for (int d = 0, j = 0; d < 3; d++) {
                if (c->keepdim) assert_int_equal(y->shape[d], (m >> d) & 1 ? 1 : seen->shape[d]);
                else if (!((m >> d) & 1)) assert_int_equal(y->shape[j++], seen->shape[d]);
            }
            ddn_tensor *e = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, y->ndim, y->shape, ev);
            assert_int_equal(ddn_tensor_numel(y), ne);
            /* float32 sums accumulate in double: only the final rounding differs */
            assert_tensor_close(y, e, dt ? 1e-14 : 1e-6, dt ? 1e-14 : 1e-6);
        }
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

static void test_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int i = 0; i < N_CASES; i++) {
        ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(2, 3, 4), -1, 1);
        red_case c = cases[i];
        assert_gradcheck(ctx, f_reduce, &c, 1, &x, NULL);
        ddn_ctx_reset_step(ctx);
    }
    /* a 4-D input with dims merged in the kernel (1 and 2 adjacent) and one kept between */
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(3, 2, 2, 3), -1, 1);
    red_case c4[] = {{K_MAX, 3, {1, 2, 3}, false, false}, {K_SUM, 2, {0, 2}, false, false},
                     {K_MEAN, 3, {-1, 0, 1}, true, false}};
    for (int i = 0; i < 3; i++) assert_gradcheck(ctx, f_reduce, &c4[i], 1, &x, NULL);
    ddn_ctx_free(ctx);
}

/* max with deliberate ties: the gradient of each block is split equally among the entries equal
 * to its maximum. The expected gradient is built here from the values, independently. */
static void test_max_ties(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* (2, 2, 3) */
    const double xv[12] = {1, 3, 3, /**/ 2, 2, 2, /**/ 5, -1, 5, /**/ 5, 0, 4};
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        ddn_tensor *x = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2, 3), xv);
        x = ddn_cast(ctx, x, t); /* x needs no grad yet, so this is a plain leaf copy */
        assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));

        /* over the last dim: rows {1,3,3} -> 3 twice, {2,2,2} -> 2 thrice, {5,-1,5}, {5,0,4} */
        ddn_tensor *y = ddn_max(ctx, x, 1, (int[]){-1}, false);
        const double dyv[4] = {6, 9, 4, 7};
        ddn_tensor *dy = ddn_cast(ctx, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2),
                                                            dyv), t);
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
        const double want1[12] = {0, 3, 3, 3, 3, 3, 2, 0, 2, 7, 0, 0};
        assert_tensor_close(x->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64,
                                                          DDN_SHAPE(2, 2, 3), want1), 0, 1e-7);
        /* over dims 0 and 2 (keepdim): block j=0 is {1,3,3,5,-1,5} -> two 5s; block j=1 is
         * {2,2,2,5,0,4} -> one 5. The gradient accumulates onto the one above. */
        ddn_tensor *y2 = ddn_max(ctx, x, 2, (int[]){0, 2}, true);
        assert_int_equal(y2->ndim, 3);
        ddn_tensor *dy2 = ddn_full(ctx, t, DDN_SHAPE(1, 2, 1), 10);
        assert_ok(ctx, ddn_backward_with_grad(ctx, y2, dy2));
        const double want2[12] = {0, 3, 3, 3, 3, 3, 7, 0, 7, 17, 0, 0};
        assert_tensor_close(x->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64,
                                                          DDN_SHAPE(2, 2, 3), want2), 0, 1e-7);
        /* all dims: the maximum 5 appears three times */
        ddn_tensor_zero_grad(x);
        ddn_tensor *y3 = ddn_max(ctx, x, 0, NULL, false);
        assert_int_equal(y3->ndim, 0);
        assert_true(ddn_tensor_item(y3) == 5);
        assert_ok(ctx, ddn_backward(ctx, y3));
        for (int64_t i = 0; i < 12; i++) {
            int64_t idx[3] = {i / 6, (i / 3) % 2, i % 3};
            assert_true(fabs(ddn_tensor_get(x->grad, idx) - (xv[i] == 5 ? 1.0 / 3 : 0)) < 1e-7);
        }
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

static void test_argmax(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const double xv[12] = {1, 3, 3, 0, /**/ 2, 2, 9, 9, /**/ -1, -5, -1, -2};
    ddn_tensor *x = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(3, 4), xv);
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    int64_t tape = ddn_tape_len(ctx);
    ddn_tensor *a = ddn_argmax(ctx, x, -1, false); /* first maximum wins ties */
    assert_non_null(a);
    assert_int_equal(a->dtype, DDN_DTYPE_I64);
    assert_false(a->requires_grad);
    assert_int_equal(ddn_tape_len(ctx), tape);
    assert_int_equal(a->ndim, 1);
    const int64_t want[3] = {1, 2, 0};
    for (int64_t i = 0; i < 3; i++) assert_true(ddn_tensor_get(a, &i) == (double)want[i]);
    ddn_tensor *b = ddn_argmax(ctx, ddn_cast(ctx, x, DDN_DTYPE_F32), 0, true);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->shape[0], 1);
    const int64_t want0[4] = {1, 0, 1, 1};
    for (int64_t j = 0; j < 4; j++) assert_true(ddn_tensor_get(b, (int64_t[]){0, j}) == want0[j]);
    /* a transposed view: argmax along its dim 1 is along x's dim 0 */
    ddn_tensor *c = ddn_argmax(ctx, ddn_transpose(ctx, x, 0, 1), 1, false);
    for (int64_t j = 0; j < 4; j++) assert_true(ddn_tensor_get(c, &j) == want0[j]);
    ddn_ctx_free(ctx);
}

static void test_empty_and_scalar(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *e = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(0, 3));
    ddn_tensor *s = ddn_sum(ctx, e, 1, (int[]){0}, false); /* (3) zeros, as torch */
    assert_int_equal(s->shape[0], 3);
    assert_true(ddn_tensor_get(s, (int64_t[]){2}) == 0);
    ddn_tensor *m = ddn_mean(ctx, e, 0, NULL, false); /* nan, as torch */
    assert_true(isnan(ddn_tensor_item(m)));
    ddn_tensor *mx = ddn_max(ctx, e, 1, (int[]){1}, false); /* (0): nothing to reduce */
    assert_non_null(mx);
    assert_int_equal(ddn_tensor_numel(mx), 0);
    ddn_tensor *sc = ddn_scalar(ctx, DDN_DTYPE_F64, 2.5);
    assert_true(ddn_tensor_item(ddn_sum(ctx, sc, 0, NULL, false)) == 2.5);
    assert_true(ddn_tensor_item(ddn_max(ctx, sc, 1, (int[]){-1}, true)) == 2.5);
    assert_true(ddn_tensor_item(ddn_argmax(ctx, sc, 0, false)) == 0);
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4));
    assert_null(ddn_sum(ctx, x, 1, (int[]){3}, false));
    assert_error(ctx, DDN_ERR_ARG, "sum: dim 3 is out of range for shape (2,3,4)");
    assert_null(ddn_mean(ctx, x, 1, (int[]){-4}, false));
    assert_error(ctx, DDN_ERR_ARG, "mean: dim -4 is out of range for shape (2,3,4)");
    assert_null(ddn_max(ctx, x, 2, (int[]){1, -2}, false));
    assert_error(ctx, DDN_ERR_ARG, "max: dim -2 is given twice for shape (2,3,4)");
    assert_null(ddn_sum(ctx, x, 1, NULL, false));
    assert_error(ctx, DDN_ERR_ARG, "sum: invalid dim list");
    assert_null(ddn_sum(ctx, x, -1, (int[]){0}, false));
    assert_error(ctx, DDN_ERR_ARG, "sum: invalid dim list (n_dims -1)");
    ddn_tensor *i = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3));
    assert_null(ddn_sum(ctx, i, 0, NULL, false));
    assert_error(ctx, DDN_ERR_DTYPE, "sum: expected a float32 or float64 tensor, got int64 (2,3)");
    assert_null(ddn_argmax(ctx, i, 0, false));
    assert_error(ctx, DDN_ERR_DTYPE, "argmax: expected a float32 or float64 tensor, got int64");
    assert_null(ddn_argmax(ctx, x, 3, false));
    assert_error(ctx, DDN_ERR_ARG, "argmax: dim 3 is out of range for shape (2,3,4)");
    ddn_tensor *e = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(0, 3));
    assert_null(ddn_max(ctx, e, 0, NULL, false));
    assert_error(ctx, DDN_ERR_SHAPE, "max: cannot reduce dim 0 of shape (0,3)");
    assert_null(ddn_argmax(ctx, e, 0, false));
    assert_error(ctx, DDN_ERR_SHAPE, "argmax: dim 0 of shape (0,3) is empty");
    /* NULL in, NULL out, no error: a chain of ops is checked once */
    assert_null(ddn_sum(ctx, NULL, 0, NULL, false));
    assert_null(ddn_max(ctx, NULL, 0, NULL, false));
    assert_null(ddn_argmax(ctx, NULL, 0, false));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
}

/* A reduction big enough for the OpenMP paths (outer loop over 300 blocks of 257), float32. */
static void test_large_float32(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(300, 257), -1, 1);
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    int64_t n = 300 * 257;
    float *xv = test_malloc((size_t)n * sizeof *xv);
    assert_ok(ctx, ddn_tensor_to_host(x, DDN_DTYPE_F32, xv));
    ddn_tensor *m = ddn_max(ctx, x, 1, (int[]){1}, false);
    ddn_tensor *s = ddn_mean(ctx, x, 1, (int[]){0}, false);
    for (int64_t r = 0; r < 300; r++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < 257; j++) mx = fmaxf(mx, xv[r * 257 + j]);
        assert_true(ddn_tensor_get(m, &r) == mx);
    }
    for (int64_t j = 0; j < 257; j++) {
        double acc = 0;
        for (int64_t r = 0; r < 300; r++) acc += xv[r * 257 + j];
        assert_true(fabs(ddn_tensor_get(s, &j) - acc / 300) <= 1e-6 + 1e-6 * fabs(acc / 300));
    }
    /* d sum(max over rows) / dx is 1 at each row's (unique) maximum */
    assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, m, 0, NULL, false)));
    for (int64_t r = 0; r < 300; r += 37)
        for (int64_t j = 0; j < 257; j++)
            assert_true(ddn_tensor_get(x->grad, (int64_t[]){r, j}) ==
                        (xv[r * 257 + j] == (float)ddn_tensor_get(m, &r) ? 1.0 : 0.0));
    test_free(xv);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_vs_naive), cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_max_ties),         cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_empty_and_scalar), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_large_float32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
