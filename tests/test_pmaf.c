/* ddn — tests of the PMaF heads: gradients of the whole head (projection, declarative layer,
 * classifier, and the features) by float64 finite differences, for the IED head (DDN-E with the
 * symmetrisation, IFT-E without), the LESS head (E) and the linear baseline; shapes, parameter
 * names, errors, and a few SGD steps that must lower the loss on a separable toy problem. */
#include <math.h>

#include "test_util.h"

typedef struct {
    ddn_pmaf_head *head;
} head_fn_user;

/* The head's output as a function of its input features and of its parameters. The parameters
 * are persistent views in the head's block; gradcheck perturbs the features (inputs[0]) and
 * checks them, and the parameters through the separate test below. */
static ddn_tensor *f_head(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    (void)ctx;
    return ddn_pmaf_head_forward(((head_fn_user *)user)->head, in[0], NULL, NULL);
}

static ddn_pmaf_head *small_head(ddn_ctx *ctx, ddn_pmaf_kind kind, bool sym,
                                 ddn_ied_backward ib)
{
    ddn_pmaf_opts o = {.kind = kind, .in_features = kind == DDN_PMAF_LINEAR ? 3 : 12, .m = 3,
                       .n = 3, .num_classes = 4, .symmetrize = sym, .ied_backward = ib,
                       .less_backward = DDN_LESS_BACKWARD_E, .dtype = DDN_DTYPE_F64,
                       .seed = 7};
    o.ied = DDN_IED_OPTS_DEFAULT;
    o.ied.tol = 1e-15; /* finite differences need a converged solve */
    o.ied.max_iter = 100000;
    o.less = DDN_LESS_OPTS_DEFAULT;
    o.less.method = DDN_LESS_EXACT;
    ddn_pmaf_head *h = ddn_pmaf_head_new(ctx, &o);
    if (!h) fail_msg("pmaf_head_new: %s", ddn_ctx_errmsg(ctx));
    return h;
}

static void check_feature_gradient(ddn_pmaf_kind kind, bool sym, ddn_ied_backward ib,
                                   int ndim, const int64_t *shape)
{
    ddn_ctx *ctx = test_ctx();
    head_fn_user u = {small_head(ctx, kind, sym, ib)};
    ddn_tensor *f = test_leaf(ctx, ndim, shape, -1, 1);
    assert_gradcheck(ctx, f_head, &u, 1, &f, NULL);
    ddn_pmaf_head_free(u.head);
    ddn_ctx_free(ctx);
}

static void test_ied_head_ddn_gradient(void **state)
{
    (void)state;
    check_feature_gradient(DDN_PMAF_IED, true, DDN_IED_BACKWARD_DDN_E, DDN_SHAPE(2, 3, 2, 2));
}

static void test_ied_head_ift_gradient(void **state)
{
    (void)state;
    check_feature_gradient(DDN_PMAF_IED, false, DDN_IED_BACKWARD_IFT_E, DDN_SHAPE(2, 12));
}

static void test_less_head_gradient(void **state)
{
    (void)state;
    check_feature_gradient(DDN_PMAF_LESS, false, DDN_IED_BACKWARD_DDN_E, DDN_SHAPE(2, 12));
}

static void test_linear_head_gradient(void **state)
{
    (void)state;
    check_feature_gradient(DDN_PMAF_LINEAR, false, DDN_IED_BACKWARD_DDN_E, DDN_SHAPE(2, 3, 2, 2));
}

/* Parameter gradients: perturb each parameter entry by hand around a fixed loss. */
static double head_loss(ddn_ctx *ctx, ddn_pmaf_head *h, ddn_tensor *f, ddn_tensor *r)
{
    ddn_mark m = ddn_ctx_mark(ctx);
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *y = ddn_pmaf_head_forward(h, f, NULL, NULL);
    double L = ddn_tensor_item(ddn_sum(ctx, ddn_mul(ctx, y, r), 0, NULL, false));
    ddn_set_grad_enabled(ctx, prev);
    ddn_ctx_rewind(ctx, m);
    return L;
}

static void test_parameter_gradients(void **state)
{
    (void)state;
    ddn_pmaf_kind kinds[3] = {DDN_PMAF_IED, DDN_PMAF_LESS, DDN_PMAF_LINEAR};
    for (int k = 0; k < 3; k++) {
        ddn_ctx *ctx = test_ctx();
        ddn_pmaf_head *h = small_head(ctx, kinds[k], true, DDN_IED_BACKWARD_DDN_E);
        ddn_params *p = ddn_pmaf_head_params(h);
        int64_t fdim = kinds[k] == DDN_PMAF_LINEAR ? 3 : 12;
        ddn_tensor *f = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, fdim), -1, 1);
        ddn_tensor *r = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 4), -1, 1);
        ddn_params_zero_grad(p);
        ddn_tensor *y = ddn_pmaf_head_forward(h, f, NULL, NULL);
        assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, ddn_mul(ctx, y, r), 0, NULL, false)));
        for (int64_t i = 0; i < ddn_params_count(p); i++) {
            ddn_tensor *t = ddn_params_at(p, i);
            double *v = ddn_tensor_ptr(t), *g = ddn_tensor_ptr(t->grad);
            for (int64_t j = 0; j < ddn_tensor_numel(t); j += 5) { /* every 5th entry */
                double x0 = v[j], e = 1e-6;
                v[j] = x0 + e;
                double lp = head_loss(ctx, h, f, r);
                v[j] = x0 - e;
                double lm = head_loss(ctx, h, f, r);
                v[j] = x0;
                double num = (lp - lm) / (2 * e);
                if (!(fabs(g[j] - num) <= 1e-6 + 1e-4 * fabs(num)))
                    fail_msg("head %d: %s[%lld]: analytic %.10g numeric %.10g", k,
                             ddn_params_name(p, i), (long long)j, g[j], num);
            }
        }
        ddn_pmaf_head_free(h);
        ddn_ctx_free(ctx);
    }
}

static void test_names_shapes_and_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_pmaf_head *h = small_head(ctx, DDN_PMAF_LESS, false, DDN_IED_BACKWARD_DDN_E);
    ddn_params *p = ddn_pmaf_head_params(h);
    assert_int_equal(ddn_params_count(p), 4);
    assert_int_equal(ddn_params_find(p, "proj.weight")->shape[0], 3 * 3 + 3);
    assert_int_equal(ddn_params_find(p, "fc.weight")->shape[1], 3);
    ddn_tensor *vec = NULL;
    ddn_decl_info info;
    ddn_tensor *f = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(5, 12), 0, 1);
    ddn_tensor *logits = ddn_pmaf_head_forward(h, f, &vec, &info);
    assert_non_null(logits);
    assert_int_equal(logits->shape[0], 5);
    assert_int_equal(logits->shape[1], 4);
    for (int64_t b = 0; b < 5; b++) { /* u lies on the unit sphere */
        double s = 0;
        for (int64_t i = 0; i < 3; i++) s += pow(ddn_tensor_get(vec, (int64_t[]){b, i}), 2);
        assert_true(fabs(s - 1) < 1e-12);
        assert_int_equal((int)ddn_tensor_get(info.converged, &b), 1);
    }
    assert_null(ddn_pmaf_head_forward(h, ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(5, 11)), NULL,
                                      NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "in_features = 12");
    assert_null(ddn_pmaf_head_forward(h, ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(12)), NULL,
                                      NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "(B, C, h, w) or (B, F)");
    ddn_pmaf_head_free(h);
    assert_null(ddn_pmaf_head_new(ctx, &(ddn_pmaf_opts){.kind = DDN_PMAF_IED, .in_features = 4,
                                                        .m = 1, .num_classes = 2}));
    assert_error(ctx, DDN_ERR_ARG, "m >= 2");
    assert_null(ddn_pmaf_head_new(ctx, NULL));
    assert_error(ctx, DDN_ERR_ARG, "NULL");
    /* DDN backward without the symmetrisation is refused by the IED layer, pointing to IFT */
    ddn_pmaf_head *ns = small_head(ctx, DDN_PMAF_IED, false, DDN_IED_BACKWARD_DDN_E);
    assert_null(ddn_pmaf_head_forward(ns, ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 12)), NULL,
                                      NULL));
    assert_error(ctx, DDN_ERR_ARG, "IFT");
    ddn_pmaf_head_free(ns);
    ddn_pmaf_head_free(NULL);
    ddn_ctx_free(ctx);
}

/* Two Gaussian blobs per class in 8-D; a float32 IED head (PI, IFT-E) trained by SGD must cut the
 * cross-entropy by half within 60 steps. A broken backward leaves it near log(4). */
static void test_training_lowers_loss(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_pmaf_opts o = {.kind = DDN_PMAF_IED, .in_features = 8, .m = 4, .num_classes = 4,
                       .symmetrize = true, .ied_backward = DDN_IED_BACKWARD_IFT_E, .seed = 3};
    ddn_pmaf_head *h = ddn_pmaf_head_new(ctx, &o);
    assert_non_null(h);
    ddn_optim *opt = ddn_sgd_new_params(ddn_pmaf_head_params(h),
                                        (ddn_sgd_opts){.lr = 0.1, .momentum = 0.9});
    assert_non_null(opt);
    ddn_rng rng;
    ddn_rng_seed(&rng, 11);
    float centers[4][8];
    for (int c = 0; c < 4; c++)
        for (int j = 0; j < 8; j++) centers[c][j] = (float)(3 * ddn_rng_normal(&rng));
    double first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        float x[32][8];
        int64_t labels[32];
        for (int i = 0; i < 32; i++) {
            labels[i] = i % 4;
            for (int j = 0; j < 8; j++)
                x[i][j] = centers[i % 4][j] + (float)(0.5 * ddn_rng_normal(&rng));
        }
        ddn_tensor *xt = ddn_tensor_from_host(ctx, DDN_DTYPE_F32, DDN_SHAPE(32, 8), x);
        ddn_tensor *yt = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(32), labels);
        ddn_tensor *loss = ddn_cross_entropy(ctx, ddn_pmaf_head_forward(h, xt, NULL, NULL), yt,
                                             DDN_REDUCTION_MEAN);
        assert_ok(ctx, ddn_backward(ctx, loss));
        assert_ok(ctx, ddn_optim_step(opt));
        ddn_optim_zero_grad(opt);
        double l = ddn_tensor_item(loss);
        if (step < 5) first += l / 5;
        if (step >= 55) last += l / 5;
        ddn_ctx_reset_step(ctx);
    }
    if (!(last < 0.5 * first)) fail_msg("loss went from %.4f to %.4f", first, last);
    ddn_optim_free(opt);
    ddn_pmaf_head_free(h);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ied_head_ddn_gradient),
        cmocka_unit_test(test_ied_head_ift_gradient),
        cmocka_unit_test(test_less_head_gradient),
        cmocka_unit_test(test_linear_head_gradient),
        cmocka_unit_test(test_parameter_gradients),
        cmocka_unit_test(test_names_shapes_and_errors),
        cmocka_unit_test(test_training_lowers_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
