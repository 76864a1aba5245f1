/* ddn — tests of batch_norm2d, max/avg/adaptive-avg pooling and dropout (layers/batchnorm.c,
 * layers/pool.c, core/cpu/norm_pool.c): forwards against naive loops in double (float32 and
 * float64), running-statistic updates against a hand computation, float64 gradient checks of
 * every op and mode (including non-contiguous inputs and gradient accumulation), dropout's mask
 * properties, identical results with one and two threads, and the bad-argument errors. The fused
 * batch_norm2d_relu (with and without a residual): gradient checks, bit-identical values and
 * gradients to the separate ops, and its in-place no-grad form. PyTorch comparisons:
 * tests/test_norm_pool_torch.c.
 */
#include <math.h>
#include <string.h>

#include "nn_impl.h"
#include "test_util.h"

static const ddn_gradcheck_opts all_entries = {.max_entries = 400};

/* ---- batch normalisation ---------------------------------------------------------------------- */
/* Per-channel batch mean and biased / unbiased variance of row-major x (N, C, H, W), naively. */
static void naive_stats(const double *x, const int64_t *s, int64_t c, double *mean, double *var,
                        double *uvar)
{
    int64_t hw = s[2] * s[3], n = s[0] * hw;
    double sum = 0, ss = 0;
    for (int64_t i = 0; i < s[0]; i++)
        for (int64_t j = 0; j < hw; j++) sum += x[(i * s[1] + c) * hw + j];
    *mean = sum / (double)n;
    for (int64_t i = 0; i < s[0]; i++)
        for (int64_t j = 0; j < hw; j++) {
            double d = x[(i * s[1] + c) * hw + j] - *mean;
            ss += d * d;
        }
    *var = ss / (double)n;
    *uvar = ss / (double)(n - 1);
}

static void test_batch_norm_forward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t s[4] = {3, 4, 5, 2}, C = 4, n = 120;
    double xv[120], yv[120], wv[4], bv[4], rm0[4], rv0[4], got[4];
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        /* a large common offset: a one-pass variance would lose digits to cancellation */
        ddn_tensor *x = ddn_rand_uniform(ctx, NULL, t, 4, s, 100, 103);
        ddn_tensor *w = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(4), 0.5, 1.5);
        ddn_tensor *b = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(4), -1, 1);
        ddn_tensor *rm = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(4), -1, 1);
        ddn_tensor *rv = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(4), 0.5, 2);
        assert_ok(ctx, ddn_tensor_to_host(x, DDN_DTYPE_F64, xv));
        assert_ok(ctx, ddn_tensor_to_host(w, DDN_DTYPE_F64, wv));
        assert_ok(ctx, ddn_tensor_to_host(b, DDN_DTYPE_F64, bv));
        assert_ok(ctx, ddn_tensor_to_host(rm, DDN_DTYPE_F64, rm0));
        assert_ok(ctx, ddn_tensor_to_host(rv, DDN_DTYPE_F64, rv0));
        const double mom = 0.3, eps = 1e-3;
        double tol = dt ? 1e-12 : 2e-5;
        for (int affine = 0; affine < 2; affine++) {
            /* training: batch statistics; the running ones move towards them */
            if (affine) {
                assert_ok(ctx, ddn_tensor_copy_(rm, ddn_tensor_from_host(ctx, DDN_DTYPE_F64,
                                                                         DDN_SHAPE(4), rm0)));
                assert_ok(ctx, ddn_tensor_copy_(rv, ddn_tensor_from_host(ctx, DDN_DTYPE_F64,
                                                                         DDN_SHAPE(4), rv0)));
            }
            ddn_tensor *y = ddn_batch_norm2d(ctx, x, affine ? w : NULL, affine ? b : NULL,
                                             affine ? rm : NULL, affine ? rv : NULL, true, mom,
                                             eps);
            assert_non_null(y);
            for (int64_t c = 0; c < C; c++) {
                double mean, var, uvar;
                naive_stats(xv, s, c, &mean, &var, &uvar);
                for (int64_t i = 0; i < s[0]; i++)
                    for (int64_t j = 0; j < 10; j++) {
                        int64_t e = (i * C + c) * 10 + j;
                        double v = (xv[e] - mean) / sqrt(var + eps);
                        yv[e] = affine ? v * wv[c] + bv[c] : v;
                    }
                if (affine) { /* the hand computation of the running-statistic update */
                    assert_true(fabs(ddn_tensor_get(rm, &c) - (0.7 * rm0[c] + 0.3 * mean)) <
                                (dt ? 1e-13 : 1e-4));
                    assert_true(fabs(ddn_tensor_get(rv, &c) - (0.7 * rv0[c] + 0.3 * uvar)) <
                                (dt ? 1e-13 : 1e-6));
                }
            }
            assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 4, s, yv), tol, tol);
            /* evaluation: the (now updated) running statistics, nothing updated */
            assert_ok(ctx, ddn_tensor_to_host(rm, DDN_DTYPE_F64, got));
            ddn_tensor *ye = ddn_batch_norm2d(ctx, x, affine ? w : NULL, affine ? b : NULL, rm, rv,
                                              false, mom, eps);
            assert_non_null(ye);
            for (int64_t e = 0; e < n; e++) {
                int64_t c = (e / 10) % C;
                double v = (xv[e] - got[c]) / sqrt(ddn_tensor_get(rv, &c) + eps);
                yv[e] = affine ? v * wv[c] + bv[c] : v;
            }
            assert_tensor_close(ye, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 4, s, yv), 1e-4 * !dt
                                + 1e-12, dt ? 1e-12 : 1e-5);
            for (int64_t c = 0; c < C; c++) assert_true(ddn_tensor_get(rm, &c) == got[c]);
        }
        /* a strided input normalises like its contiguous copy */
        ddn_tensor *xt = ddn_transpose(ctx, ddn_contiguous(ctx, ddn_transpose(ctx, x, 2, 3)), 2, 3);
        assert_false(ddn_tensor_is_contiguous(xt));
        assert_tensor_close(ddn_batch_norm2d(ctx, xt, w, b, NULL, NULL, true, 0.1, 1e-5),
                            ddn_batch_norm2d(ctx, x, w, b, NULL, NULL, true, 0.1, 1e-5), 0, 0);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

typedef struct {
    bool training, affine, transpose;
    ddn_tensor *rm, *rv;
} bn_case;

static ddn_tensor *f_bn(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const bn_case *c = u;
    ddn_tensor *x = c->transpose ? ddn_transpose(ctx, in[0], 2, 3) : in[0];
    return ddn_batch_norm2d(ctx, x, c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, c->rm,
                            c->rv, c->training, 0.1, 1e-5);
}

static void test_batch_norm_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int k = 0; k < 8; k++) {
        bn_case c = {k & 1, (k >> 1) & 1, (k >> 2) & 1, NULL, NULL};
        /* persistent buffers, as a model holds them; training updates them on every call */
        c.rm = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
        c.rv = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
        assert_ok(ctx, ddn_tensor_fill_uniform(c.rm, NULL, -1, 1));
        assert_ok(ctx, ddn_tensor_fill_uniform(c.rv, NULL, 0.5, 2));
        ddn_tensor *in[3] = {test_leaf(ctx, DDN_SHAPE(2, 3, 4, 3), -2, 2),
                             test_leaf(ctx, DDN_SHAPE(3), 0.5, 1.5),
                             test_leaf(ctx, DDN_SHAPE(3), -1, 1)};
        print_message("batch_norm2d training %d affine %d transposed %d\n", c.training, c.affine,
                      c.transpose);
        assert_gradcheck(ctx, f_bn, &c, c.affine ? 3 : 1, in, &all_entries);
        ddn_tensor_free(c.rm);
        ddn_tensor_free(c.rv);
        ddn_ctx_reset_step(ctx);
    }
    /* gradients accumulate: two backward passes give twice the gradient of one */
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(2, 3, 2, 2), -2, 2);
    ddn_tensor *w = test_leaf(ctx, DDN_SHAPE(3), 0.5, 1.5), *b = test_leaf(ctx, DDN_SHAPE(3), 0, 1);
    ddn_tensor *r = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 3, 2, 2), -1, 1);
    double g1[3], g2[3];
    for (int pass = 0; pass < 2; pass++) {
        ddn_tensor *y = ddn_batch_norm2d(ctx, x, w, b, NULL, NULL, true, 0.1, 1e-5);
        assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, ddn_mul(ctx, y, r), 0, NULL, false)));
        assert_ok(ctx, ddn_tensor_to_host(w->grad, DDN_DTYPE_F64, pass ? g2 : g1));
    }
    for (int c = 0; c < 3; c++) assert_true(fabs(g2[c] - 2 * g1[c]) <= 1e-14 * fabs(g1[c]));
    ddn_ctx_free(ctx);
}

/* ---- fused batch norm (+ residual) + relu --------------------------------------------------- */
static ddn_tensor *f_bn_relu(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const bn_case *c = u;
    return ddn_batch_norm2d_relu(ctx, in[0], in[1], in[2], c->rm, c->rv, c->training, 0.1, 1e-5,
                                 c->transpose ? in[3] : NULL); /* transpose: with a residual */
}

static void test_batch_norm_relu_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int k = 0; k < 4; k++) {
        bn_case c = {k & 1, true, (k >> 1) & 1, NULL, NULL};
        c.rm = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
        c.rv = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
        assert_ok(ctx, ddn_tensor_fill_uniform(c.rm, NULL, -1, 1));
        assert_ok(ctx, ddn_tensor_fill_uniform(c.rv, NULL, 0.5, 2));
        ddn_tensor *in[4] = {test_leaf(ctx, DDN_SHAPE(2, 3, 4, 3), -2, 2),
                             test_leaf(ctx, DDN_SHAPE(3), 0.5, 1.5),
                             test_leaf(ctx, DDN_SHAPE(3), -1, 1),
                             test_leaf(ctx, DDN_SHAPE(2, 3, 4, 3), -1, 1)};
        print_message("batch_norm2d_relu training %d residual %d\n", c.training, c.transpose);
        assert_gradcheck(ctx, f_bn_relu, &c, c.transpose ? 4 : 3, in, &all_entries);
        ddn_tensor_free(c.rm);
        ddn_tensor_free(c.rv);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* Runs relu(bn(x) [+ r]) fused or as separate ops on float32 copies of the same values and
 * returns y, the running statistics and the gradients of x, w, b, r for L = sum(y * proj), all
 * in one host array (n values each for y, x, r; C each for w, b, rm, rv). */
static void bn_relu_run(bool fused, bool training, bool residual, const double *host, double *res)
{
    ddn_ctx *ctx = test_ctx();
    const int64_t n = 2 * 4 * 5 * 5, C = 4;
    ddn_tensor *x = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4, 5, 5), host);
    ddn_tensor *r = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4, 5, 5), host + n);
    ddn_tensor *proj = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4, 5, 5),
                                            host + 2 * n);
    ddn_tensor *leaf[5];
    ddn_tensor *src[5] = {x, r, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(4), host + 3 * n),
                          ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(4), host + 3 * n + C),
                          proj};
    for (int i = 0; i < 5; i++) {
        leaf[i] = ddn_cast(ctx, src[i], DDN_DTYPE_F32);
        if (i < 4) assert_ok(ctx, ddn_tensor_set_requires_grad(leaf[i], true));
    }
    ddn_tensor *rm = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(4));
    ddn_tensor *rv = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(4));
    assert_ok(ctx, ddn_tensor_fill(rm, 0.25));
    assert_ok(ctx, ddn_tensor_fill(rv, 1.5));
    ddn_tensor *rr = residual ? leaf[1] : NULL, *y;
    if (fused) {
        y = ddn_batch_norm2d_relu(ctx, leaf[0], leaf[2], leaf[3], rm, rv, training, 0.1, 1e-5, rr);
    } else {
        y = ddn_batch_norm2d(ctx, leaf[0], leaf[2], leaf[3], rm, rv, training, 0.1, 1e-5);
        y = ddn_relu(ctx, rr ? ddn_add(ctx, y, rr) : y);
    }
    assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, ddn_mul(ctx, y, leaf[4]), 0, NULL, false)));
    assert_ok(ctx, ddn_tensor_to_host(y, DDN_DTYPE_F64, res));
    assert_ok(ctx, ddn_tensor_to_host(leaf[0]->grad, DDN_DTYPE_F64, res + n));
    if (residual) assert_ok(ctx, ddn_tensor_to_host(leaf[1]->grad, DDN_DTYPE_F64, res + 2 * n));
    else assert_null(leaf[1]->grad);
    assert_ok(ctx, ddn_tensor_to_host(leaf[2]->grad, DDN_DTYPE_F64, res + 3 * n));
    assert_ok(ctx, ddn_tensor_to_host(leaf[3]->grad, DDN_DTYPE_F64, res + 3 * n + C));
    assert_ok(ctx, ddn_tensor_to_host(rm, DDN_DTYPE_F64, res + 3 * n + 2 * C));
    assert_ok(ctx, ddn_tensor_to_host(rv, DDN_DTYPE_F64, res + 3 * n + 3 * C));
    ddn_tensor_free(rm);
    ddn_tensor_free(rv);
    ddn_ctx_free(ctx);
}

static void test_batch_norm_relu_matches_separate_ops(void **state)
{
    (void)state;
    const int64_t n = 2 * 4 * 5 * 5, total = 3 * n + 4 * 4;
    double host[3 * 2 * 4 * 5 * 5 + 8];
    ddn_rng rng;
    ddn_rng_seed(&rng, 7);
    for (int64_t i = 0; i < 3 * n + 8; i++) host[i] = 4 * ddn_rng_uniform(&rng) - 2;
    for (int k = 0; k < 4; k++) {
        bool training = k & 1, residual = k >> 1;
        double *a = test_calloc((size_t)total, sizeof *a), *b = test_calloc((size_t)total,
                                                                            sizeof *b);
        bn_relu_run(true, training, residual, host, a);
        bn_relu_run(false, training, residual, host, b);
        for (int64_t i = 0; i < total; i++)
            if (a[i] != b[i]) fail_msg("training %d residual %d: entry %lld: fused %.9g, "
                                       "separate %.9g", training, residual, (long long)i, a[i],
                                       b[i]);
        test_free(a);
        test_free(b);
    }
}

/* The no-grad form may write over its input (ResNet's lean forward); nothing else may. */
static void test_batch_norm_relu_in_place(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *rm = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(3));
    ddn_tensor *rv = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(3));
    assert_ok(ctx, ddn_tensor_fill(rm, 0.5));
    assert_ok(ctx, ddn_tensor_fill(rv, 2.0));
    ddn_tensor *x = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4, 4), -2, 2);
    ddn_tensor *r = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4, 4), -1, 1);
    ddn_tensor *expect = ddn_batch_norm2d_relu(ctx, x, NULL, NULL, rm, rv, false, 0.1, 1e-5, r);
    ddn_tensor *plain = ddn_batch_norm2d(ctx, x, NULL, NULL, rm, rv, false, 0.1, 1e-5);
    assert_non_null(expect);
    assert_non_null(plain);
    ddn_tensor *x2 = ddn_tensor_new(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4, 4));
    ddn_tensor *x3 = ddn_tensor_new(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4, 4));
    assert_ok(ctx, ddn_tensor_copy_(x2, x));
    assert_ok(ctx, ddn_tensor_copy_(x3, x));
    assert_ptr_equal(ddn_batch_norm2d_into(ctx, x2, NULL, NULL, rm, rv, false, 0.1, 1e-5, r, true,
                                           x2), x2);
    assert_tensor_close(x2, expect, 0, 0);
    assert_ptr_equal(ddn_batch_norm2d_into(ctx, x3, NULL, NULL, rm, rv, false, 0.1, 1e-5, NULL,
                                           false, x3), x3);
    assert_tensor_close(x3, plain, 0, 0);
    /* recording saves x for backward: writing over it is refused */
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    assert_null(ddn_batch_norm2d_into(ctx, x, NULL, NULL, rm, rv, false, 0.1, 1e-5, NULL, true,
                                      x));
    assert_error(ctx, DDN_ERR_ARG, "out may share x's memory only when nothing is recorded");
    assert_null(ddn_batch_norm2d_relu(ctx, x, NULL, NULL, rm, rv, false, 0.1, 1e-5, rm));
    assert_error(ctx, DDN_ERR_SHAPE, "residual (3) must have x's shape (2,3,4,4)");
    ddn_tensor_free(rm);
    ddn_tensor_free(rv);
    ddn_ctx_free(ctx);
}

/* ---- max pooling ------------------------------------------------------------------------------ */
/* A float64 leaf of distinct values: a shuffled ramp with steps of 0.05. Max pooling is not
 * differentiable where two window entries tie (which one gets dy is arbitrary), and central
 * differences straddle the switch when two entries are within eps; spacing 0.05 >> eps = 1e-6
 * keeps every window's maximum unique and stable under the perturbation. */
static ddn_tensor *distinct_leaf(ddn_ctx *ctx, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = test_malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = 0.05 * (double)(i - n / 2);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ddn_rng_below(ddn_ctx_rng(ctx), (uint64_t)i + 1);
        double t = v[i];
        v[i] = v[j], v[j] = t;
    }
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, v);
    test_free(v);
    assert_ok(ctx, ddn_tensor_set_requires_grad(t, true));
    return t;
}

typedef struct {
    ddn_pool2d_params p;
    int64_t shape[4];
    bool transpose;
} pool_case;

static ddn_tensor *f_max_pool(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const pool_case *c = u;
    return ddn_max_pool2d(ctx, c->transpose ? ddn_transpose(ctx, in[0], 2, 3) : in[0], c->p);
}

static ddn_tensor *f_avg_pool(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const pool_case *c = u;
    return ddn_avg_pool2d(ctx, c->transpose ? ddn_transpose(ctx, in[0], 2, 3) : in[0], c->p);
}

static void test_max_pool(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* by hand: 2x2 windows of a 4x4 ramp pick each window's bottom-right entry */
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        ddn_tensor *x = ddn_reshape(ctx, ddn_arange(ctx, t, 0, 16, 1), DDN_SHAPE(1, 1, 4, 4));
        ddn_tensor *y = ddn_max_pool2d(ctx, x, (ddn_pool2d_params){{2, 2}, {0, 0}, {0, 0}, 0, 0});
        assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 1, 2, 2),
                                                    (double[]){5, 7, 13, 15}), 0, 0);
        /* ResNet stem, 3x3 stride 2 pad 1: padding never wins, even for all-negative input */
        ddn_tensor *xn = ddn_add_scalar(ctx, x, -100);
        y = ddn_max_pool2d(ctx, xn, (ddn_pool2d_params){{3, 3}, {2, 2}, {1, 1}, 0, 0});
        assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 1, 2, 2),
                                                    (double[]){-95, -93, -87, -85}), 0, 0);
    }
    const pool_case cases[] = {
        {{{3, 3}, {2, 2}, {1, 1}, false, true}, {2, 3, 8, 8}, false}, /* ResNet stem, even */
        {{{3, 3}, {2, 2}, {1, 1}, false, true}, {2, 2, 7, 7}, false}, /* odd */
        {{{3, 3}, {2, 2}, {1, 1}, true, true}, {1, 2, 6, 6}, false},  /* ceil_mode */
        {{{2, 3}, {0, 0}, {1, 0}, true, true}, {1, 2, 5, 7}, true},   /* stride = kernel, view */
        {{{2, 2}, {1, 2}, {0, 1}, false, true}, {2, 2, 4, 5}, false}, /* overlapping rows */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddn_tensor *x = distinct_leaf(ctx, 4, cases[i].shape);
        assert_gradcheck(ctx, f_max_pool, (void *)&cases[i], 1, &x, &all_entries);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* ---- average pooling -------------------------------------------------------------------------- */
static void test_avg_pool(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        ddn_tensor *ones = ddn_ones(ctx, t, DDN_SHAPE(1, 1, 4, 4));
        /* 3x3 stride 1 pad 1: a corner window holds 4 inputs and 5 pads */
        ddn_pool2d_params p = {{3, 3}, {1, 1}, {1, 1}, false, true};
        ddn_tensor *y = ddn_avg_pool2d(ctx, ones, p);
        assert_true(fabs(ddn_tensor_get(y, (int64_t[]){0, 0, 0, 0}) - 4.0 / 9) < 1e-7);
        assert_true(fabs(ddn_tensor_get(y, (int64_t[]){0, 0, 0, 1}) - 6.0 / 9) < 1e-7);
        assert_true(ddn_tensor_get(y, (int64_t[]){0, 0, 1, 1}) == 1);
        p.count_include_pad = false; /* divides by the inputs only: all ones */
        assert_tensor_close(ddn_avg_pool2d(ctx, ones, p), ones, 0, 0);
        /* ceil_mode, H = 5, k 2, s 2, p 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th
         * would start at padded row 6 = H + p, in the right padding: PyTorch drops it */
        ddn_tensor *x5 = ddn_reshape(ctx, ddn_arange(ctx, t, 0, 25, 1), DDN_SHAPE(1, 1, 5, 5));
        p = (ddn_pool2d_params){{2, 2}, {2, 2}, {1, 1}, true, true};
        y = ddn_avg_pool2d(ctx, x5, p);
        assert_int_equal(y->shape[2], 3);
        assert_int_equal(y->shape[3], 3);
        /* window (2, 2) covers padded rows/cols 4..5 = input 3..4 fully: mean of 18,19,23,24 */
        assert_true(fabs(ddn_tensor_get(y, (int64_t[]){0, 0, 2, 2}) - 21) < 1e-12);
        /* H = 6, k 3, s 2, p 1, ceil: 4 windows, the last covering input row 5 and one pad row
         * (clipped at H + p, so count_include_pad divides by 2 rows, not 3) */
        ddn_tensor *x6 = ddn_ones(ctx, t, DDN_SHAPE(1, 1, 6, 6));
        p = (ddn_pool2d_params){{3, 3}, {2, 2}, {1, 1}, true, true};
        y = ddn_avg_pool2d(ctx, x6, p);
        assert_int_equal(y->shape[2], 4);
        assert_true(fabs(ddn_tensor_get(y, (int64_t[]){0, 0, 3, 3}) - 1.0 / 4) < 1e-7);
        assert_true(fabs(ddn_tensor_get(y, (int64_t[]){0, 0, 0, 3}) - 2.0 / 6) < 1e-7);
        ddn_ctx_reset_step(ctx);
    }
    for (int k = 0; k < 8; k++) {
        pool_case c = {{{3, 3}, {2, 2}, {1, 1}, k & 1, (k >> 1) & 1}, {2, 2, 6, 7}, (k >> 2) & 1};
        if (k == 5) c.p = (ddn_pool2d_params){{2, 3}, {0, 1}, {1, 1}, true, false};
        if (k == 6) c.p = (ddn_pool2d_params){{2, 2}, {2, 2}, {1, 1}, true, true};
        ddn_tensor *x = test_leaf(ctx, 4, c.shape, -2, 2);
        print_message("avg_pool2d case %d\n", k);
        assert_gradcheck(ctx, f_avg_pool, &c, 1, &x, &all_entries);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* ---- adaptive average pooling ----------------------------------------------------------------- */
typedef struct {
    int oh, ow;
} ad_case;

static ddn_tensor *f_adaptive(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const ad_case *c = u;
    return ddn_adaptive_avg_pool2d(ctx, in[0], c->oh, c->ow);
}

static void test_adaptive_avg_pool(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* 7 -> 3 (overlapping bins 0-2, 2-4, 4-6), 5 -> 2 (0-2, 2-4), 6 -> 3 (divides), global */
    const int64_t in_shape[][4] = {{2, 3, 7, 5}, {1, 2, 6, 6}, {2, 2, 3, 4}};
    const ad_case outs[][2] = {{{3, 2}, {1, 1}}, {{3, 2}, {1, 1}}, {{3, 4}, {2, 3}}};
    for (int s = 0; s < 3; s++)
        for (int o = 0; o < 2; o++) {
            const int64_t *sh = in_shape[s];
            int oh = outs[s][o].oh, ow = outs[s][o].ow;
            for (int dt = 0; dt < 2; dt++) {
                ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
                ddn_tensor *x = ddn_rand_uniform(ctx, NULL, t, 4, sh, -1, 1);
                ddn_tensor *y = ddn_adaptive_avg_pool2d(ctx, x, oh, ow);
                assert_non_null(y);
                double *want = test_malloc((size_t)(sh[0] * sh[1] * oh * ow) * sizeof *want);
                /* the bins written with floating-point floor and ceil, independently */
                for (int64_t pl = 0; pl < sh[0] * sh[1]; pl++)
                    for (int i = 0; i < oh; i++)
                        for (int j = 0; j < ow; j++) {
                            int64_t h0 = (int64_t)floor((double)i * sh[2] / oh);
                            int64_t h1 = (int64_t)ceil((double)(i + 1) * sh[2] / oh);
                            int64_t w0 = (int64_t)floor((double)j * sh[3] / ow);
                            int64_t w1 = (int64_t)ceil((double)(j + 1) * sh[3] / ow);
                            double acc = 0;
                            for (int64_t h = h0; h < h1; h++)
                                for (int64_t w = w0; w < w1; w++)
                                    acc += ddn_tensor_get(x, (int64_t[]){pl / sh[1], pl % sh[1],
                                                                         h, w});
                            want[(pl * oh + i) * ow + j] = acc / (double)((h1 - h0) * (w1 - w0));
                        }
                assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64,
                                                            DDN_SHAPE(sh[0], sh[1], oh, ow),
                                                            want),
                                    dt ? 1e-15 : 1e-7, dt ? 1e-14 : 1e-6);
                test_free(want);
            }
            ddn_tensor *x = test_leaf(ctx, 4, sh, -1, 1);
            assert_gradcheck(ctx, f_adaptive, (void *)&outs[s][o], 1, &x, &all_entries);
            ddn_ctx_reset_step(ctx);
        }
    ddn_ctx_free(ctx);
}

/* ---- dropout ---------------------------------------------------------------------------------- */
static ddn_tensor *f_dropout(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_rng rng; /* reseeded per call: gradcheck needs the same mask every time */
    ddn_rng_seed(&rng, 42);
    return ddn_dropout(ctx, in[0], 0.4, true, &rng);
}

static void test_dropout(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t n = 200000;
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        ddn_tensor *x = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(n), 1, 2);
        assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
        ddn_rng a, b;
        ddn_rng_seed(&a, 7);
        ddn_rng_seed(&b, 7);
        /* p = 0 and evaluation are the identity */
        assert_ptr_equal(ddn_dropout(ctx, x, 0.0, true, &a), x);
        assert_ptr_equal(ddn_dropout(ctx, x, 0.5, false, &a), x);
        /* p = 1 drops everything */
        ddn_tensor *z = ddn_dropout(ctx, x, 1.0, true, &a);
        assert_tensor_close(z, ddn_zeros(ctx, t, DDN_SHAPE(n)), 0, 0);
        ddn_rng_seed(&a, 7);
        /* the mask is reproducible from the seed, and a different seed gives another */
        ddn_tensor *y1 = ddn_dropout(ctx, x, 0.3, true, &a);
        ddn_tensor *y2 = ddn_dropout(ctx, x, 0.3, true, &b);
        ddn_tensor *y3 = ddn_dropout(ctx, x, 0.3, true, &a);
        assert_tensor_close(y1, y2, 0, 0);
        /* y / x is the mask: 0 or 1 / 0.7; its mean estimates E[mask] = 1 and its zeros p */
        ddn_tensor *m = ddn_div(ctx, y1, x), *m3 = ddn_div(ctx, y3, x);
        double *mv = test_malloc((size_t)n * sizeof *mv);
        double *mv3 = test_malloc((size_t)n * sizeof *mv3);
        assert_ok(ctx, ddn_tensor_to_host(m, DDN_DTYPE_F64, mv));
        assert_ok(ctx, ddn_tensor_to_host(m3, DDN_DTYPE_F64, mv3));
        double sum = 0;
        int64_t zeros = 0, differ = 0;
        for (int64_t i = 0; i < n; i++) {
            assert_true(mv[i] == 0 || fabs(mv[i] - 1 / 0.7) < 1e-6);
            sum += mv[i];
            zeros += mv[i] == 0;
            differ += (mv[i] == 0) != (mv3[i] == 0);
        }
        /* std of the mean: sqrt(p / (1 - p) / n) = 1.5e-3; 5 sigma */
        assert_true(fabs(sum / (double)n - 1) < 7.5e-3);
        assert_true(fabs((double)zeros / (double)n - 0.3) < 5e-3);
        assert_true(differ > n / 4); /* independent masks differ in 2 p (1 - p) = 42% */
        /* backward multiplies dy by the same mask: with dy = 1, dx is the mask */
        assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, y1, 0, NULL, false)));
        assert_tensor_close(x->grad, m, 1e-6, 1e-6);
        test_free(mv);
        test_free(mv3);
        ddn_ctx_reset_step(ctx);
    }
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(3, 4, 5), -1, 1);
    assert_gradcheck(ctx, f_dropout, NULL, 1, &x, &all_entries);
    ddn_ctx_free(ctx);
}

/* ---- threads ---------------------------------------------------------------------------------- */
/* Forward and backward of each op on x (float32), y and dx written one after another to out;
 * returns the number of values written. */
static int64_t run_all(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *w, ddn_tensor *b, double *out)
{
    const ddn_pool2d_params stem = {{3, 3}, {2, 2}, {1, 1}, false, true};
    const ddn_pool2d_params avg = {{3, 3}, {2, 2}, {1, 1}, true, false};
    int64_t written = 0;
    for (int op = 0; op < 4; op++) {
        ddn_tensor *y = op == 0   ? ddn_batch_norm2d(ctx, x, w, b, NULL, NULL, true, 0.1, 1e-5)
                        : op == 1 ? ddn_max_pool2d(ctx, x, stem)
                        : op == 2 ? ddn_avg_pool2d(ctx, x, avg)
                                  : ddn_adaptive_avg_pool2d(ctx, x, 3, 2);
        assert_non_null(y);
        ddn_tensor *r = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, 4, y->shape, -1, 1);
        ddn_tensor_zero_grad(x);
        assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, ddn_mul(ctx, y, r), 0, NULL, false)));
        assert_ok(ctx, ddn_tensor_to_host(y, DDN_DTYPE_F64, out + written));
        written += ddn_tensor_numel(y);
        assert_ok(ctx, ddn_tensor_to_host(x->grad, DDN_DTYPE_F64, out + written));
        written += ddn_tensor_numel(x);
    }
    return written;
}

/* Inputs above the kernels' parallel threshold: two threads must give exactly the one-thread
 * result (each sum runs in one thread, in a fixed order), so a race would show as a difference. */
static void test_threads(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t shape[4] = {4, 16, 24, 24}, n = 4 * 16 * 24 * 24;
    int prev = ddn_get_num_threads();
    double *res[2];
    int64_t count[2];
    for (int t = 0; t < 2; t++) {
        ddn_rng_seed(ddn_ctx_rng(ctx), 3);
        ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, 4, shape, 0, 1);
        ddn_tensor *w = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(16), 0.5, 1.5);
        ddn_tensor *b = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(16), -1, 1);
        assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
        ddn_set_num_threads(t ? 2 : 1);
        res[t] = test_malloc(8 * (size_t)n * sizeof(double));
        count[t] = run_all(ctx, x, w, b, res[t]);
        ddn_ctx_reset_step(ctx);
    }
    ddn_set_num_threads(prev);
    assert_int_equal(count[0], count[1]);
    assert_memory_equal(res[0], res[1], (size_t)count[0] * sizeof(double));
    test_free(res[0]);
    test_free(res[1]);
    ddn_ctx_free(ctx);
}

/* ---- errors ----------------------------------------------------------------------------------- */
static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4, 4));
    ddn_tensor *w5 = ddn_ones(ctx, DDN_DTYPE_F32, DDN_SHAPE(5));
    ddn_tensor *w3 = ddn_ones(ctx, DDN_DTYPE_F32, DDN_SHAPE(3));
    ddn_tensor *w3d = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
    /* NULL input: NULL quietly */
    assert_null(ddn_batch_norm2d(ctx, NULL, w3, w3, NULL, NULL, true, 0.1, 1e-5));
    assert_null(ddn_max_pool2d(ctx, NULL, (ddn_pool2d_params){{2, 2}, {0, 0}, {0, 0}, 0, 0}));
    assert_null(ddn_avg_pool2d(ctx, NULL, (ddn_pool2d_params){{2, 2}, {0, 0}, {0, 0}, 0, 0}));
    assert_null(ddn_adaptive_avg_pool2d(ctx, NULL, 1, 1));
    assert_null(ddn_dropout(ctx, NULL, 0.5, true, NULL));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);

    assert_null(ddn_batch_norm2d(ctx, x, w5, NULL, NULL, NULL, true, 0.1, 1e-5));
    assert_error(ctx, DDN_ERR_SHAPE, "x (2,3,4,4) has 3 channels but weight has shape (5)");
    assert_null(ddn_batch_norm2d(ctx, x, w3, w3d, NULL, NULL, true, 0.1, 1e-5));
    assert_error(ctx, DDN_ERR_DTYPE, "x (2,3,4,4) is float32 but bias (3) is float64");
    assert_null(ddn_batch_norm2d(ctx, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3)), NULL, NULL,
                                 NULL, NULL, true, 0.1, 1e-5));
    assert_error(ctx, DDN_ERR_SHAPE, "x must be (N, C, H, W), got (2,3)");
    assert_null(ddn_batch_norm2d(ctx, x, w3, w3, NULL, NULL, false, 0.1, 1e-5));
    assert_error(ctx, DDN_ERR_ARG, "running_mean and running_var are NULL");
    assert_null(ddn_batch_norm2d(ctx, x, w3, w3, w3, NULL, true, 0.1, 1e-5));
    assert_error(ctx, DDN_ERR_ARG, "must be given together");
    assert_null(ddn_batch_norm2d(ctx, x, NULL, NULL, NULL, NULL, true, 1.5, 1e-5));
    assert_error(ctx, DDN_ERR_ARG, "momentum 1.5");
    assert_null(ddn_batch_norm2d(ctx, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(1, 3, 1, 1)), NULL,
                                 NULL, NULL, NULL, true, 0.1, 1e-5));
    assert_error(ctx, DDN_ERR_SHAPE, "more than one value per channel, got x (1,3,1,1)");

    assert_null(ddn_max_pool2d(ctx, x, (ddn_pool2d_params){{3, 3}, {1, 1}, {2, 2}, 0, 0}));
    assert_error(ctx, DDN_ERR_ARG, "max_pool2d: kernel 3x3 with padding 2x2: padding must be at "
                                   "most half the kernel");
    assert_null(ddn_avg_pool2d(ctx, x, (ddn_pool2d_params){{0, 3}, {1, 1}, {0, 0}, 0, 0}));
    assert_error(ctx, DDN_ERR_ARG, "avg_pool2d: kernel 0x3");
    assert_null(ddn_avg_pool2d(ctx, x, (ddn_pool2d_params){{2, 2}, {-1, 1}, {0, 0}, 0, 0}));
    assert_error(ctx, DDN_ERR_ARG, "stride -1x1");
    assert_null(ddn_max_pool2d(ctx, x, (ddn_pool2d_params){{5, 2}, {1, 1}, {0, 0}, 0, 0}));
    assert_error(ctx, DDN_ERR_SHAPE, "input (2,3,4,4) with kernel 5x2, stride 1x1, padding 0x0 "
                                     "gives output 0x3");
    assert_null(ddn_max_pool2d(ctx, w3, (ddn_pool2d_params){{2, 2}, {0, 0}, {0, 0}, 0, 0}));
    assert_error(ctx, DDN_ERR_SHAPE, "max_pool2d: x must be (N, C, H, W), got (3)");
    assert_null(ddn_max_pool2d(ctx, ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(1, 1, 2, 2)),
                               (ddn_pool2d_params){{2, 2}, {0, 0}, {0, 0}, 0, 0}));
    assert_error(ctx, DDN_ERR_DTYPE, "max_pool2d: expected a float32 or float64 tensor");
    assert_null(ddn_adaptive_avg_pool2d(ctx, x, 0, 2));
    assert_error(ctx, DDN_ERR_ARG, "output size 0x2 for x (2,3,4,4)");
    assert_null(ddn_adaptive_avg_pool2d(ctx, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(1, 2, 0, 3)),
                                        1, 1));
    assert_error(ctx, DDN_ERR_SHAPE, "x (1,2,0,3) has an empty spatial dim");
    assert_null(ddn_dropout(ctx, x, 1.5, true, NULL));
    assert_error(ctx, DDN_ERR_ARG, "dropout: probability 1.5 for x (2,3,4,4) must be in [0, 1]");
    assert_null(ddn_dropout(ctx, x, NAN, true, NULL));
    assert_error(ctx, DDN_ERR_ARG, "must be in [0, 1]");
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_norm_forward), cmocka_unit_test(test_batch_norm_gradients),
        cmocka_unit_test(test_max_pool),           cmocka_unit_test(test_avg_pool),
        cmocka_unit_test(test_adaptive_avg_pool),  cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_threads),            cmocka_unit_test(test_errors),
        cmocka_unit_test(test_batch_norm_relu_gradients),
        cmocka_unit_test(test_batch_norm_relu_matches_separate_ops),
        cmocka_unit_test(test_batch_norm_relu_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
