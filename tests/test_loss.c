/* ddn — tests of softmax, log_softmax, cross_entropy and mse (layers/loss.c, core/cpu/softmax.c):
 * forward against naive loops in double (float32 and float64, every dim of a 3-D tensor, huge
 * logits), float64 gradient checks for each op and mode, including non-contiguous inputs, and the
 * bad-input errors (labels out of range, wrong label dtype or shape, mismatched shapes). */
#include <math.h>
#include <string.h>

#include "test_util.h"

/* Softmax (or log-softmax) of row-major x (shape, 3 dims) along dim, written out plainly. */
static void naive_softmax(const double *x, const int64_t *shape, int dim, bool lg, double *out)
{
    int64_t st[3] = {shape[1] * shape[2], shape[2], 1};
    int64_t n = shape[dim], total = shape[0] * shape[1] * shape[2];
    for (int64_t i = 0; i < total; i++) {
        int64_t pos = (i / st[dim]) % n, base = i - pos * st[dim];
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < n; j++) m = fmax(m, x[base + j * st[dim]]);
        for (int64_t j = 0; j < n; j++) s += exp(x[base + j * st[dim]] - m);
        out[i] = lg ? x[i] - m - log(s) : exp(x[i] - m) / s;
    }
}

static void test_softmax_forward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t shape[3] = {3, 4, 70}; /* inner 70 > one 64-column tile along dims 0 and 1 */
    double *xv = test_malloc(840 * sizeof *xv), *ev = test_malloc(840 * sizeof *ev);
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        /* logits around +-500: exp without the max shift would overflow */
        ddn_tensor *x = ddn_rand_uniform(ctx, NULL, t, 3, shape, -500, 500);
        assert_ok(ctx, ddn_tensor_to_host(x, DDN_DTYPE_F64, xv));
        for (int dim = -1; dim < 3; dim++)
            for (int lg = 0; lg < 2; lg++) {
                ddn_tensor *y = lg ? ddn_log_softmax(ctx, x, dim) : ddn_softmax(ctx, x, dim);
                assert_non_null(y);
                naive_softmax(xv, shape, dim < 0 ? dim + 3 : dim, lg, ev);
                ddn_tensor *e = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 3, shape, ev);
                /* log-softmax of logits ~500 in float32: x - m is exact, log(s) rounds */
                if (lg) assert_tensor_close(y, e, dt ? 1e-12 : 1e-4, dt ? 1e-13 : 1e-6);
                else assert_tensor_close(y, e, dt ? 1e-15 : 1e-7, dt ? 1e-13 : 1e-5);
            }
        ddn_ctx_reset_step(ctx);
    }
    /* each softmax sums to one, on a non-contiguous view too */
    ddn_tensor *x = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(5, 6), -3, 3);
    ddn_tensor *y = ddn_softmax(ctx, ddn_transpose(ctx, x, 0, 1), 0); /* over x's dim 1 */
    ddn_tensor *s = ddn_sum(ctx, y, 1, (int[]){0}, false);
    for (int64_t i = 0; i < 5; i++) assert_true(fabs(ddn_tensor_get(s, &i) - 1) < 1e-14);
    ddn_tensor *y2 = ddn_softmax(ctx, x, 1);
    for (int64_t i = 0; i < 5; i++)
        for (int64_t j = 0; j < 6; j++)
            assert_true(fabs(ddn_tensor_get(y, (int64_t[]){j, i}) -
                             ddn_tensor_get(y2, (int64_t[]){i, j})) < 1e-15);
    test_free(xv);
    test_free(ev);
    ddn_ctx_free(ctx);
}

typedef struct {
    int dim;
    bool lg, transpose_first;
} sm_case;

static ddn_tensor *f_softmax(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const sm_case *c = u;
    ddn_tensor *x = c->transpose_first ? ddn_transpose(ctx, in[0], 0, 2) : in[0];
    return c->lg ? ddn_log_softmax(ctx, x, c->dim) : ddn_softmax(ctx, x, c->dim);
}

static void test_softmax_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const sm_case cases[] = {{0, false, false}, {-1, false, false}, {0, true, false},
                             {-1, true, false}, {1, false, true},   {1, true, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(2, 3, 4), -2, 2);
        assert_gradcheck(ctx, f_softmax, (void *)&cases[i], 1, &x, NULL);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* ---- cross-entropy ---------------------------------------------------------------------------- */
typedef struct {
    ddn_tensor *labels;
    ddn_reduction red;
    bool transpose_first;
} ce_case;

static ddn_tensor *f_ce(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const ce_case *c = u;
    ddn_tensor *x = c->transpose_first ? ddn_transpose(ctx, in[0], 0, 1) : in[0];
    return ddn_cross_entropy(ctx, x, c->labels, c->red);
}

static void test_cross_entropy(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t lab[5] = {2, 0, 3, 3, 1};
    ddn_tensor *labels = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(5), lab);
    for (int red = 0; red < 2; red++) {
        ce_case c = {labels, red ? DDN_REDUCTION_SUM : DDN_REDUCTION_MEAN, false};
        ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(5, 4), -3, 3);
        assert_gradcheck(ctx, f_ce, &c, 1, &x, NULL);
        for (int dt = 0; dt < 2; dt++) {
            ddn_tensor *xt = ddn_cast(ctx, x, dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32);
            ddn_tensor *loss = ddn_cross_entropy(ctx, xt, labels, c.red);
            assert_int_equal(loss->ndim, 0);
            assert_int_equal(loss->dtype, xt->dtype);
            double want = 0;
            for (int64_t i = 0; i < 5; i++) {
                double m = -INFINITY, s = 0, v[4];
                for (int64_t j = 0; j < 4; j++) {
                    v[j] = ddn_tensor_get(xt, (int64_t[]){i, j});
                    m = fmax(m, v[j]);
                }
                for (int64_t j = 0; j < 4; j++) s += exp(v[j] - m);
                want += -(v[lab[i]] - m - log(s));
            }
            if (!red) want /= 5;
            assert_true(fabs(ddn_tensor_item(loss) - want) <= (dt ? 1e-14 : 1e-6) * fabs(want));
        }
        ddn_ctx_reset_step(ctx);
        labels = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(5), lab);
    }
    /* logits given as a transposed view */
    ce_case c = {labels, DDN_REDUCTION_MEAN, true};
    ddn_tensor *xt = test_leaf(ctx, DDN_SHAPE(4, 5), -3, 3);
    assert_gradcheck(ctx, f_ce, &c, 1, &xt, NULL);
    ddn_ctx_free(ctx);
}

/* ---- mean squared error ----------------------------------------------------------------------- */
typedef struct {
    ddn_reduction red;
    bool transpose_b;
} mse_case;

static ddn_tensor *f_mse(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const mse_case *c = u;
    ddn_tensor *b = c->transpose_b ? ddn_transpose(ctx, in[1], 0, 1) : in[1];
    return ddn_mse(ctx, in[0], b, c->red);
}

static void test_mse(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int red = 0; red < 2; red++)
        for (int tb = 0; tb < 2; tb++) {
            mse_case c = {red ? DDN_REDUCTION_SUM : DDN_REDUCTION_MEAN, tb};
            ddn_tensor *in[2] = {test_leaf(ctx, DDN_SHAPE(3, 4), -1, 1),
                                 tb ? test_leaf(ctx, DDN_SHAPE(4, 3), -1, 1)
                                    : test_leaf(ctx, DDN_SHAPE(3, 4), -1, 1)};
            assert_gradcheck(ctx, f_mse, &c, 2, in, NULL);
            for (int dt = 0; dt < 2; dt++) {
                ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
                ddn_tensor *a = ddn_cast(ctx, in[0], t), *b = ddn_cast(ctx, in[1], t);
                ddn_tensor *cast_in[2] = {a, b};
                ddn_tensor *loss = f_mse(ctx, cast_in, &c);
                assert_int_equal(loss->ndim, 0);
                ddn_tensor *bv = tb ? ddn_transpose(ctx, b, 0, 1) : b;
                double want = 0;
                for (int64_t i = 0; i < 3; i++)
                    for (int64_t j = 0; j < 4; j++) {
                        double d = ddn_tensor_get(a, (int64_t[]){i, j}) -
                                   ddn_tensor_get(bv, (int64_t[]){i, j});
                        want += d * d;
                    }
                if (!red) want /= 12;
                assert_true(fabs(ddn_tensor_item(loss) - want) <=
                            (dt ? 1e-14 : 1e-6) * fabs(want));
            }
            ddn_ctx_reset_step(ctx);
        }
    /* only one side requiring grad; the other side's gradient stays untouched */
    ddn_tensor *a = test_leaf(ctx, DDN_SHAPE(6), -1, 1);
    ddn_tensor *b = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(6), -1, 1);
    assert_ok(ctx, ddn_backward(ctx, ddn_mse(ctx, a, b, DDN_REDUCTION_SUM)));
    assert_null(b->grad);
    for (int64_t i = 0; i < 6; i++)
        assert_true(fabs(ddn_tensor_get(a->grad, &i) -
                         2 * (ddn_tensor_get(a, &i) - ddn_tensor_get(b, &i))) < 1e-15);
    /* empty inputs: sum 0, mean NaN (as PyTorch) */
    ddn_tensor *e = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(0, 2));
    assert_true(ddn_tensor_item(ddn_mse(ctx, e, e, DDN_REDUCTION_SUM)) == 0);
    assert_true(isnan(ddn_tensor_item(ddn_mse(ctx, e, e, DDN_REDUCTION_MEAN))));
    ddn_ctx_free(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(4, 5));
    const int64_t bad_hi[4] = {0, 4, 7, 1}, bad_lo[4] = {0, 1, 2, -1};
    ddn_tensor *lhi = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(4), bad_hi);
    ddn_tensor *llo = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(4), bad_lo);
    assert_null(ddn_cross_entropy(ctx, x, lhi, DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_ARG, "item 2 has label 7, outside [0, 5)");
    assert_null(ddn_cross_entropy(ctx, x, llo, DDN_REDUCTION_SUM));
    assert_error(ctx, DDN_ERR_ARG, "item 3 has label -1, outside [0, 5)");
    assert_null(ddn_cross_entropy(ctx, x, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(4)),
                                  DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_DTYPE, "cross_entropy: labels must be int64 class indices, got "
                                     "float32 (4)");
    assert_null(ddn_cross_entropy(ctx, x, ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(3)),
                                  DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_SHAPE, "cross_entropy: logits (4,5) need labels (4), got (3)");
    assert_null(ddn_cross_entropy(ctx, x, ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(4, 1)),
                                  DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_SHAPE, "need labels (4), got (4,1)");
    assert_null(ddn_cross_entropy(ctx, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4)),
                                  ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2)), DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_SHAPE, "cross_entropy: logits must be (N, C), got (2,3,4)");
    assert_null(ddn_cross_entropy(ctx, ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(4, 5)), llo,
                                  DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_DTYPE, "cross_entropy: expected a float32 or float64 tensor");
    assert_null(ddn_cross_entropy(ctx, x, llo, (ddn_reduction)7));
    assert_error(ctx, DDN_ERR_ARG, "cross_entropy: unknown reduction 7");
    assert_null(ddn_mse(ctx, x, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(5, 4)),
                        DDN_REDUCTION_MEAN));
    assert_error(ctx, DDN_ERR_SHAPE, "mse: shapes (4,5) and (5,4) differ");
    assert_null(ddn_mse(ctx, x, ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(4, 5)),
                        DDN_REDUCTION_SUM));
    assert_error(ctx, DDN_ERR_DTYPE, "mse: inputs are float32 and float64");
    assert_null(ddn_mse(ctx, x, x, (ddn_reduction)-1));
    assert_error(ctx, DDN_ERR_ARG, "mse: unknown reduction -1");
    assert_null(ddn_softmax(ctx, x, 2));
    assert_error(ctx, DDN_ERR_ARG, "softmax: dim 2 is out of range for shape (4,5)");
    assert_null(ddn_log_softmax(ctx, x, -3));
    assert_error(ctx, DDN_ERR_ARG, "log_softmax: dim -3 is out of range for shape (4,5)");
    assert_null(ddn_softmax(ctx, ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2)), 0));
    assert_error(ctx, DDN_ERR_DTYPE, "softmax: expected a float32 or float64 tensor, got int64");
    /* the label check also guards backward when labels change after the forward */
    ddn_tensor *xg = test_leaf(ctx, DDN_SHAPE(4, 5), -1, 1);
    ddn_tensor *lab = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(4));
    ddn_tensor *loss = ddn_cross_entropy(ctx, xg, lab, DDN_REDUCTION_MEAN);
    assert_non_null(loss);
    assert_ok(ctx, ddn_tensor_fill(lab, 9));
    assert_int_equal(ddn_backward(ctx, loss), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "item 0 has label 9");
    /* NULL in, NULL out, no error */
    assert_null(ddn_softmax(ctx, NULL, 0));
    assert_null(ddn_log_softmax(ctx, NULL, 0));
    assert_null(ddn_cross_entropy(ctx, NULL, lab, DDN_REDUCTION_MEAN));
    assert_null(ddn_cross_entropy(ctx, x, NULL, DDN_REDUCTION_MEAN));
    assert_null(ddn_mse(ctx, x, NULL, DDN_REDUCTION_MEAN));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
}

/* A batch big enough for the OpenMP paths: cross-entropy's gradient is (softmax - onehot) / N. */
static void test_cross_entropy_large(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t N = 512, C = 100;
    ddn_tensor *x = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(N, C), -5, 5);
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    int64_t *lab = test_malloc((size_t)N * sizeof *lab);
    for (int64_t i = 0; i < N; i++) lab[i] = (i * 37) % C;
    ddn_tensor *labels = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(N), lab);
    assert_ok(ctx, ddn_backward(ctx, ddn_cross_entropy(ctx, x, labels, DDN_REDUCTION_MEAN)));
    float *xv = test_malloc((size_t)(N * C) * sizeof *xv), *gv = test_malloc((size_t)(N * C) * sizeof *gv);
    assert_ok(ctx, ddn_tensor_to_host(x, DDN_DTYPE_F32, xv));
    assert_ok(ctx, ddn_tensor_to_host(x->grad, DDN_DTYPE_F32, gv));
    for (int64_t i = 0; i < N; i++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; j++) m = fmax(m, xv[i * C + j]);
        for (int64_t j = 0; j < C; j++) s += exp(xv[i * C + j] - m);
        for (int64_t j = 0; j < C; j++) {
            double want = (exp(xv[i * C + j] - m) / s - (j == lab[i])) / (double)N;
            assert_true(fabs(gv[i * C + j] - want) <= 1e-9 + 1e-5 * fabs(want));
        }
    }
    test_free(lab);
    test_free(xv);
    test_free(gv);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_forward), cmocka_unit_test(test_softmax_gradients),
        cmocka_unit_test(test_cross_entropy),   cmocka_unit_test(test_mse),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_cross_entropy_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
