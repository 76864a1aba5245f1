/* ddn — ResNet-18/34/50 (models/resnet.c) against PyTorch/torchvision 0.14. Fixtures from
 * tools/fixtures/gen_resnet.py: resnet_small.safetensors (a width-1/16 ResNet-50's state_dict,
 * loaded strictly by name) and resnet_small_ref.safetensors (float64 torch references of a
 * training step and evaluation, one full-width Bottleneck, torchvision's name lists). The last
 * test runs tools/export_torchvision.py for a full-width ResNet-50 when /usr/bin/python3 has torch.
 * A forward without recording (which keeps only each block's output) matches a recording one
 * bit for bit.
 *
 * Metric: per tensor, max|actual - expected| / max|expected|. Elementwise relative error means
 * nothing for entries near zero (gradients cross zero everywhere), and float32 round-off in a
 * deep network scales with a tensor's magnitude, not with each entry's.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resnet_impl.h"
#include "test_util.h"

#define SMALL_WIDTH (4.0 / 64.0) /* base 4: the fixture's model */
#define SMALL_CLASSES 10
/* The float32 bound, for forward outputs, a single block and full-width features. */
#define F32_TOL 1e-4
/* A float64 model against the float64 references, which are stored rounded to float32 (2^-24 =
 * 6e-8 relative): far below what any float32 computation reaches on this net (~1e-5 forward). */
#define F64_TOL 1e-6

static double max_rel_err(const ddn_tensor *a, const ddn_tensor *e)
{
    int64_t n = ddn_tensor_numel(a);
    double *av = test_malloc((size_t)(n ? n : 1) * sizeof(double));
    double *ev = test_malloc((size_t)(n ? n : 1) * sizeof(double));
    if (ddn_tensor_to_host(a, DDN_DTYPE_F64, av) != DDN_OK ||
        ddn_tensor_to_host(e, DDN_DTYPE_F64, ev) != DDN_OK)
        fail_msg("cannot read tensors: %s", ddn_ctx_errmsg(a->ctx));
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(av[i] - ev[i]);
        num = !(d <= num) ? d : num; /* NaN propagates into a failure */
        den = fmax(den, fabs(ev[i]));
    }
    test_free(av);
    test_free(ev);
    return den > 0 ? num / den : num;
}

/* The worst error relative to its tolerance in the running test, printed by report_worst. */
static double worst_ratio, worst_err, worst_tol;
static char worst_what[128];

static void report_worst(const char *test)
{
    print_message("%s: worst %s, error %.3g (tolerance %.3g)\n", test, worst_what, worst_err,
                  worst_tol);
    worst_ratio = 0;
}

static void check_close(const char *what, const ddn_tensor *a, const ddn_tensor *e, double tol)
{
    char sa[96], se[96];
    if (!a || !e) fail_msg("%s: tensor is NULL", what);
    if (!ddn_tensor_same_shape(a, e))
        fail_msg("%s: shape %s, expected %s", what, ddn_shape_str(a, sa, sizeof sa),
                 ddn_shape_str(e, se, sizeof se));
    double err = max_rel_err(a, e);
    if (err / tol >= worst_ratio) {
        worst_ratio = err / tol, worst_err = err, worst_tol = tol;
        snprintf(worst_what, sizeof worst_what, "%s", what);
    }
    if (!(err <= tol)) {
        worst_ratio = 0; /* the next test starts afresh */
        fail_msg("%s: max|a - e| / max|e| = %.3g > %.3g", what, err, tol);
    }
}

/* A stored tensor converted to dtype dt (F16-stored inputs become float32 or float64 exactly). */
static ddn_tensor *get_as(ddn_ctx *ctx, const ddn_st_file *f, const char *name, ddn_dtype dt)
{
    ddn_st_dtype sdt;
    int ndim;
    int64_t shape[DDN_MAX_DIMS];
    if (!ddn_safetensors_info(f, name, &sdt, &ndim, shape)) fail_msg("fixture lacks %s", name);
    ddn_tensor *t = ddn_tensor_new(ctx, dt, ndim, shape);
    if (!t || ddn_safetensors_read_into(ctx, f, name, t) != DDN_OK)
        fail_msg("%s: %s", name, ddn_ctx_errmsg(ctx));
    return t;
}

static ddn_st_file *open_ref(ddn_ctx *ctx)
{
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, test_data_path("resnet_small_ref.safetensors"), &f));
    return f;
}

static double meta_double(const ddn_st_file *f, const char *key)
{
    const char *v = ddn_safetensors_metadata(f, key);
    if (!v) fail_msg("fixture metadata lacks %s", key);
    return strtod(v, NULL);
}

static ddn_resnet *small_net(ddn_ctx *ctx, ddn_resnet_arch arch, bool features, ddn_dtype dt)
{
    ddn_resnet_opts o = {.arch = arch, .features_only = features, .num_classes = SMALL_CLASSES,
                         .width = SMALL_WIDTH, .seed = 7, .dtype = dt};
    ddn_resnet *net = ddn_resnet_new(ctx, &o);
    if (!net) fail_msg("resnet_new: %s", ddn_ctx_errmsg(ctx));
    return net;
}

static void load_strict(ddn_ctx *ctx, ddn_resnet *net, const char *path, const char *skip)
{
    ddn_params_load_opts lo = {.strict = true, .skip_prefix = skip};
    assert_ok(ctx, ddn_params_load(ddn_resnet_params(net), path, lo));
}

/* Fails unless a load error (DDN_ERR_SHAPE, params.h) is pending whose message contains every
 * needle; clears it. */
static void expect_error(ddn_ctx *ctx, int n, const char *const *needles)
{
    const char *msg = ddn_ctx_errmsg(ctx);
    print_message("  load error: %.300s\n", msg);
    if (ddn_ctx_status(ctx) != DDN_ERR_SHAPE)
        fail_msg("expected a shape error, got %s (%s)", ddn_status_str(ddn_ctx_status(ctx)), msg);
    for (int i = 0; i < n; i++)
        if (!strstr(msg, needles[i])) fail_msg("message \"%s\" lacks \"%s\"", msg, needles[i]);
    ddn_ctx_clear_error(ctx);
}

/* ---- names, counts, init --------------------------------------------------------------------- */

/* Compares the model's tensors, in order, with torchvision's "name:shape:P|B" lines; features
 * mode stops before "fc.". */
static void check_names(ddn_resnet *net, const char *lines, bool features)
{
    ddn_params *p = ddn_resnet_params(net);
    int64_t i = 0;
    for (const char *l = lines; *l;) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char line[160], shape[96], got[96];
        assert_true(len < sizeof line);
        memcpy(line, l, len);
        line[len] = '\0';
        l += len + (end ? 1 : 0);
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        assert_non_null(c2);
        *c1 = *c2 = '\0';
        if (features && strncmp(line, "fc.", 3) == 0) continue;
        if (i >= ddn_params_count(p)) fail_msg("model ends before torchvision's %s", line);
        const char *name = ddn_params_name(p, i);
        ddn_tensor *t = ddn_params_at(p, i);
        if (strcmp(name, line) != 0) fail_msg("tensor %lld: %s, torchvision: %s", (long long)i,
                                              name, line);
        /* torchvision's "64,3,7,7" against ddn's "(64,3,7,7)" ("" and "()" for a scalar) */
        snprintf(shape, sizeof shape, "(%s)", c1 + 1);
        ddn_shape_str(t, got, sizeof got);
        if (strcmp(shape, got) != 0) fail_msg("%s: shape %s, torchvision %s", name, got, shape);
        if (ddn_params_is_buffer(p, i) != (c2[1] == 'B'))
            fail_msg("%s: buffer %d, torchvision says %c", name, ddn_params_is_buffer(p, i), c2[1]);
        i++;
    }
    assert_int_equal(i, ddn_params_count(p));
}

/* The torchvision init: conv weights N(0, 2 / fan_out), BN 1 / 0 with fresh statistics, fc
 * within +-1/sqrt(in). Checked on large tensors, where the sample std is within 1%. */
static void check_init(ddn_resnet *net)
{
    ddn_params *p = ddn_resnet_params(net);
    ddn_tensor *w = ddn_params_find(p, "layer4.2.conv3.weight"); /* (2048, 512, 1, 1) */
    assert_non_null(w);
    int64_t n = ddn_tensor_numel(w);
    float *v = test_malloc((size_t)n * sizeof(float));
    assert_ok(w->ctx, ddn_tensor_to_host(w, DDN_DTYPE_F32, v));
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s1 += v[i], s2 += (double)v[i] * v[i];
    double std = sqrt(s2 / n - (s1 / n) * (s1 / n)), want = sqrt(2.0 / 2048);
    if (fabs(std / want - 1) > 0.01) fail_msg("conv init std %g, want %g", std, want);
    assert_true(fabs(s1 / n) < 0.01 * want);
    test_free(v);
    ddn_tensor *fc = ddn_params_find(p, "fc.weight");
    double bound = 1 / sqrt(2048.0), mx = 0;
    int64_t nf = ddn_tensor_numel(fc);
    float *fv = test_malloc((size_t)nf * sizeof(float));
    assert_ok(w->ctx, ddn_tensor_to_host(fc, DDN_DTYPE_F32, fv));
    for (int64_t i = 0; i < nf; i++) mx = fmax(mx, fabs(fv[i]));
    assert_true(mx <= bound && mx > 0.99 * bound);
    test_free(fv);
    int64_t i0[1] = {5};
    assert_true(ddn_tensor_get(ddn_params_find(p, "layer2.1.bn3.weight"), i0) == 1.0);
    assert_true(ddn_tensor_get(ddn_params_find(p, "layer2.1.bn3.bias"), i0) == 0.0);
    assert_true(ddn_tensor_get(ddn_params_find(p, "layer2.1.bn3.running_var"), i0) == 1.0);
    assert_true(ddn_tensor_item(ddn_params_find(p, "layer2.1.bn3.num_batches_tracked")) == 0.0);
}

static void test_names_and_counts(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ref(ctx);
    const ddn_resnet_arch archs[3] = {DDN_RESNET18, DDN_RESNET34, DDN_RESNET50};
    for (int a = 0; a < 3; a++) {
        char key[64];
        for (int features = 0; features < 2; features++) {
            ddn_resnet_opts o = {.arch = archs[a], .features_only = features};
            ddn_resnet *net = ddn_resnet_new(ctx, &o);
            if (!net) fail_msg("resnet%d: %s", (int)archs[a], ddn_ctx_errmsg(ctx));
            snprintf(key, sizeof key, "names.resnet%d", (int)archs[a]);
            const char *names = ddn_safetensors_metadata(f, key);
            assert_non_null(names);
            check_names(net, names, features);
            assert_int_equal(ddn_resnet_feature_channels(net),
                             archs[a] == DDN_RESNET50 ? 2048 : 512);
            if (!features) {
                ddn_params *p = ddn_resnet_params(net);
                snprintf(key, sizeof key, "numel_params.resnet%d", (int)archs[a]);
                assert_int_equal(ddn_params_numel(p, false), (int64_t)meta_double(f, key));
                snprintf(key, sizeof key, "numel_buffers.resnet%d", (int)archs[a]);
                assert_int_equal(ddn_params_numel(p, true) - ddn_params_numel(p, false),
                                 (int64_t)meta_double(f, key));
                if (archs[a] == DDN_RESNET50) check_init(net);
            }
            ddn_resnet_free(net);
        }
    }
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* ---- the small ResNet-50: one training step, then evaluation --------------------------------- */

static void run_small(ddn_dtype dt)
{
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ref(ctx);
    ddn_resnet *net = small_net(ctx, DDN_RESNET50, false, dt);
    load_strict(ctx, net, test_data_path("resnet_small.safetensors"), NULL);
    /* float32: forward outputs to the 1e-4; parameter gradients of this deep
     * training-mode net lose ~1e-3 in any float32 implementation (torch's own float32 run, in the
     * metadata), so they may be off by 4x what torch's are, never looser than that */
    double tol_fwd = dt == DDN_DTYPE_F64 ? F64_TOL : F32_TOL;
    double tol_grad = dt == DDN_DTYPE_F64
                          ? F64_TOL
                          : fmax(F32_TOL, 4 * meta_double(f, "torch_f32_rel_err.grad"));
    ddn_tensor *x = get_as(ctx, f, "x", dt);
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    ddn_tensor *y = ddn_resnet_forward(net, x, true);
    if (!y) fail_msg("forward: %s", ddn_ctx_errmsg(ctx));
    check_close("train.logits", y, get_as(ctx, f, "train.logits", dt), tol_fwd);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, get_as(ctx, f, "dy", dt)));
    check_close("train.dx", x->grad, get_as(ctx, f, "train.dx", dt), tol_grad);

    ddn_params *p = ddn_resnet_params(net);
    int64_t used = 0, in_file = 0;
    double worst_grad = 0;
    for (int64_t i = 0; i < ddn_params_count(p); i++) {
        char name[128];
        ddn_tensor *t = ddn_params_at(p, i);
        bool buffer = ddn_params_is_buffer(p, i);
        snprintf(name, sizeof name, "%s%s", buffer ? "train." : "grad.", ddn_params_name(p, i));
        ddn_tensor *want = get_as(ctx, f, name, t->dtype);
        if (t->dtype == DDN_DTYPE_I64) /* num_batches_tracked: loaded value + 1 */
            assert_true(ddn_tensor_item(t) == ddn_tensor_item(want));
        else if (buffer)
            check_close(name, t, want, tol_fwd);
        else {
            check_close(name, t->grad, want, tol_grad);
            worst_grad = fmax(worst_grad, max_rel_err(t->grad, want));
        }
        used++;
    }
    for (int64_t i = 0; i < ddn_safetensors_count(f); i++) {
        const char *n = ddn_safetensors_name(f, i);
        in_file += strncmp(n, "grad.", 5) == 0 || strncmp(n, "train.", 6) == 0;
    }
    assert_int_equal(used + 2, in_file); /* + train.logits and train.dx */
    ddn_ctx_reset_step(ctx);

    /* evaluation with the statistics that step updated */
    bool prev = ddn_set_grad_enabled(ctx, false);
    y = ddn_resnet_forward(net, get_as(ctx, f, "x", dt), false);
    if (!y) fail_msg("eval forward: %s", ddn_ctx_errmsg(ctx));
    check_close("eval.logits", y, get_as(ctx, f, "eval.logits", dt), tol_fwd);
    ddn_set_grad_enabled(ctx, prev);
    report_worst(dt == DDN_DTYPE_F64 ? "small float64" : "small float32");
    print_message("  worst parameter gradient %.3g (torch's float32 run: %s)\n", worst_grad,
                  ddn_safetensors_metadata(f, "torch_f32_rel_err.grad"));
    ddn_resnet_free(net);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

static void test_small_f32(void **state)
{
    (void)state;
    run_small(DDN_DTYPE_F32);
}

static void test_small_f64(void **state)
{
    (void)state;
    run_small(DDN_DTYPE_F64);
}

/* Features mode: the backbone of the file (fc skipped), evaluation, (N, 2048 * width, h, w). */
static void test_features(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ref(ctx);
    ddn_resnet *net = small_net(ctx, DDN_RESNET50, true, DDN_DTYPE_F32);
    assert_int_equal(ddn_resnet_feature_channels(net), 128);
    assert_null(ddn_params_find(ddn_resnet_params(net), "fc.weight"));
    load_strict(ctx, net, test_data_path("resnet_small.safetensors"), "fc.");
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *y = ddn_resnet_forward(net, get_as(ctx, f, "x", DDN_DTYPE_F32), false);
    if (!y) fail_msg("forward: %s", ddn_ctx_errmsg(ctx));
    assert_int_equal(y->ndim, 4);
    assert_int_equal(y->shape[0], 2);
    assert_int_equal(y->shape[1], 128);
    assert_int_equal(y->shape[2], 2);
    assert_int_equal(y->shape[3], 2);
    ddn_tensor *x = get_as(ctx, f, "x", DDN_DTYPE_F32);
    assert_int_equal(ddn_resnet_feature_side(x->shape[2]), 2);
    static const int64_t sides[][2] = {{224, 7}, {32, 1}, {33, 2}, {64, 2}, {1, 1}, {100, 4}};
    for (int k = 0; k < 6; k++) assert_int_equal(ddn_resnet_feature_side(sides[k][0]), sides[k][1]);
    check_close("eval.features", y, get_as(ctx, f, "eval.features", DDN_DTYPE_F32), F32_TOL);
    report_worst("features");
    ddn_set_grad_enabled(ctx, prev);
    ddn_resnet_free(net);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* A forward that records nothing keeps only each block's output (the rest is rewound as it
 * goes): the same values bit for bit as a recording forward, the same running-statistic updates
 * in training mode, and a fraction of the arena. */
static void assert_same_values(const ddn_tensor *a, const ddn_tensor *b)
{
    int64_t n = ddn_tensor_numel(a);
    assert_int_equal(n, ddn_tensor_numel(b));
    double *av = test_malloc((size_t)n * sizeof *av), *bv = test_malloc((size_t)n * sizeof *bv);
    assert_ok(a->ctx, ddn_tensor_to_host(a, DDN_DTYPE_F64, av));
    assert_ok(b->ctx, ddn_tensor_to_host(b, DDN_DTYPE_F64, bv));
    assert_memory_equal(av, bv, (size_t)n * sizeof *av);
    test_free(av);
    test_free(bv);
}

static void test_lean_forward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ref(ctx);
    ddn_resnet *rec = small_net(ctx, DDN_RESNET50, false, DDN_DTYPE_F32);
    ddn_resnet *lean = small_net(ctx, DDN_RESNET50, false, DDN_DTYPE_F32);
    load_strict(ctx, rec, test_data_path("resnet_small.safetensors"), NULL);
    load_strict(ctx, lean, test_data_path("resnet_small.safetensors"), NULL);
    ddn_tensor *x = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 64, 64));
    assert_ok(ctx, ddn_tensor_fill_normal(x, NULL, 0, 1));
    for (int training = 0; training < 2; training++) {
        ddn_tensor *y_rec = ddn_resnet_forward(rec, x, training);
        assert_non_null(y_rec);
        assert_true(ddn_tape_len(ctx) > 0);
        size_t in_use_rec = ddn_ctx_stats(ctx).arena_in_use;
        bool prev = ddn_set_grad_enabled(ctx, false);
        ddn_mark before = ddn_ctx_mark(ctx);
        size_t base = ddn_ctx_stats(ctx).arena_in_use;
        ddn_tensor *y_lean = ddn_resnet_forward(lean, x, training);
        ddn_set_grad_enabled(ctx, prev);
        assert_non_null(y_lean);
        assert_int_equal(ddn_tape_len(ctx), before.tape_len);
        size_t in_use_lean = ddn_ctx_stats(ctx).arena_in_use - base;
        print_message("training %d: arena in use after the forward: recording %zu bytes, "
                      "no grad %zu\n", training, in_use_rec, in_use_lean);
        assert_true(in_use_lean * 4 < in_use_rec);
        assert_same_values(y_lean, y_rec);
        ddn_params *pr = ddn_resnet_params(rec), *pl = ddn_resnet_params(lean);
        for (int64_t i = 0; i < ddn_params_count(pr); i++)
            if (ddn_params_is_buffer(pr, i))
                assert_same_values(ddn_params_at(pl, i), ddn_params_at(pr, i));
        ddn_ctx_reset_step(ctx);
    }
    /* a frozen front (stem and layer1) runs lean while the rest records: same logits, same
     * gradients for the trained parameters */
    ddn_params *pr = ddn_resnet_params(rec), *pl = ddn_resnet_params(lean);
    for (int64_t i = 0; i < ddn_params_count(pl); i++) {
        const char *name = ddn_params_name(pl, i);
        bool front = !strncmp(name, "conv1.", 6) || !strncmp(name, "bn1.", 4) ||
                     !strncmp(name, "layer1.", 7);
        if (front && !ddn_params_is_buffer(pl, i))
            assert_ok(ctx, ddn_tensor_set_requires_grad(ddn_params_at(pl, i), false));
    }
    ddn_tensor *y_rec = ddn_resnet_forward(rec, x, false);
    int64_t tape_rec = ddn_tape_len(ctx);
    size_t in_use_rec = ddn_ctx_stats(ctx).arena_in_use;
    ddn_tensor *y_lean = ddn_resnet_forward(lean, x, false);
    assert_non_null(y_rec);
    assert_non_null(y_lean);
    assert_true(ddn_tape_len(ctx) - tape_rec < tape_rec);
    print_message("frozen front: recording %zu bytes, lean front %zu\n", in_use_rec,
                  ddn_ctx_stats(ctx).arena_in_use - in_use_rec);
    assert_same_values(y_lean, y_rec);
    ddn_tensor *dy = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, y_rec->ndim, y_rec->shape, -1, 1);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y_rec, dy));
    assert_ok(ctx, ddn_backward_with_grad(ctx, y_lean, dy));
    for (int64_t i = 0; i < ddn_params_count(pl); i++) {
        ddn_tensor *t = ddn_params_at(pl, i);
        if (t->requires_grad) assert_same_values(t->grad, ddn_params_at(pr, i)->grad);
    }
    ddn_ctx_reset_step(ctx);
    ddn_tensor_free(x);
    ddn_resnet_free(rec);
    ddn_resnet_free(lean);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* One real-width Bottleneck (256 -> 64 -> 256, layer1.1 of ResNet-50), training mode. */
static void test_block_full_width(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ref(ctx);
    ddn_resnet_opts o = {.arch = DDN_RESNET50, .features_only = true};
    ddn_resnet *net = ddn_resnet_new(ctx, &o);
    if (!net) fail_msg("resnet_new: %s", ddn_ctx_errmsg(ctx));
    ddn_params *p = ddn_resnet_params(net);
    const char *pre = "layer1.1.";
    size_t pl = strlen(pre);
    int64_t n_block = 0;
    for (int64_t i = 0; i < ddn_params_count(p); i++) {
        const char *name = ddn_params_name(p, i);
        if (strncmp(name, pre, pl) != 0) continue;
        char src[128];
        snprintf(src, sizeof src, "block.%s", name + pl);
        assert_ok(ctx, ddn_safetensors_read_into(ctx, f, src, ddn_params_at(p, i)));
        n_block++;
    }
    assert_int_equal(n_block, 3 * 6); /* three (conv, bn) pairs, no downsample */
    ddn_tensor *x = get_as(ctx, f, "block.x", DDN_DTYPE_F32);
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    ddn_tensor *y = ddn_resnet_block_forward(net, 1, 1, x, true);
    if (!y) fail_msg("block forward: %s", ddn_ctx_errmsg(ctx));
    check_close("block.y", y, get_as(ctx, f, "block.y", DDN_DTYPE_F32), F32_TOL);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, get_as(ctx, f, "block.dy", DDN_DTYPE_F32)));
    check_close("block.dx", x->grad, get_as(ctx, f, "block.dx", DDN_DTYPE_F32), F32_TOL);
    for (int64_t i = 0; i < ddn_params_count(p); i++) {
        const char *name = ddn_params_name(p, i);
        if (strncmp(name, pre, pl) != 0) continue;
        char src[128];
        ddn_tensor *t = ddn_params_at(p, i);
        bool buffer = ddn_params_is_buffer(p, i);
        snprintf(src, sizeof src, "block.%s%s", buffer ? "train." : "grad.", name + pl);
        ddn_tensor *want = get_as(ctx, f, src, t->dtype);
        if (t->dtype == DDN_DTYPE_I64)
            assert_true(ddn_tensor_item(t) == ddn_tensor_item(want));
        else
            check_close(src, buffer ? t : t->grad, want, F32_TOL);
    }
    report_worst("block");
    /* an unknown block is an error, not a crash */
    assert_null(ddn_resnet_block_forward(net, 1, 3, x, true));
    assert_error(ctx, DDN_ERR_ARG, "layer1.3");
    ddn_resnet_free(net);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const char *small = test_data_path("resnet_small.safetensors");
    ddn_params_load_opts strict = {.strict = true};

    /* a ResNet-50 file into a ResNet-18: extra, wrongly shaped names (the 3x3 conv1 is 1x1) */
    ddn_resnet *r18 = small_net(ctx, DDN_RESNET18, false, DDN_DTYPE_F32);
    assert_int_not_equal(ddn_params_load(ddn_resnet_params(r18), small, strict), DDN_OK);
    expect_error(ctx, 4, (const char *const[]){"unexpected", "layer1.0.conv3.weight",
                                               "wrongly shaped", "layer1.0.conv1.weight"});

    /* a ResNet-18 file into a ResNet-50: missing names (the first of them; messages are bounded) */
    char dir[] = "/tmp/ddn_resnet_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r18.safetensors", dir);
    assert_ok(ctx, ddn_params_save(ddn_resnet_params(r18), path));
    ddn_resnet *r50 = small_net(ctx, DDN_RESNET50, false, DDN_DTYPE_F32);
    assert_int_not_equal(ddn_params_load(ddn_resnet_params(r50), path, strict), DDN_OK);
    expect_error(ctx, 2, (const char *const[]){"missing", "layer1.0.conv3.weight"});
    unlink(path);
    rmdir(dir);
    ddn_resnet_free(r18);
    ddn_resnet_free(r50);

    /* another number of classes: fc is wrongly shaped unless skipped */
    ddn_resnet_opts o = {.arch = DDN_RESNET50, .width = SMALL_WIDTH}; /* 1000 classes */
    ddn_resnet *net = ddn_resnet_new(ctx, &o);
    assert_non_null(net);
    assert_int_not_equal(ddn_params_load(ddn_resnet_params(net), small, strict), DDN_OK);
    expect_error(ctx, 2, (const char *const[]){"fc.weight", "(1000,128)"});
    load_strict(ctx, net, small, "fc.");
    /* a features model cannot take the fc of a file unless it is skipped */
    ddn_resnet *feat = small_net(ctx, DDN_RESNET50, true, DDN_DTYPE_F32);
    assert_int_not_equal(ddn_params_load(ddn_resnet_params(feat), small, strict), DDN_OK);
    expect_error(ctx, 3, (const char *const[]){"unexpected", "fc.weight", "fc.bias"});
    /* non-strict ignores the unexpected fc (as torch's load_state_dict(strict=False)) */
    assert_ok(ctx, ddn_params_load(ddn_resnet_params(feat), small, (ddn_params_load_opts){0}));

    /* forward on a wrong input */
    ddn_tensor *x1 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(1, 1, 32, 32));
    assert_null(ddn_resnet_forward(net, x1, false));
    assert_error(ctx, DDN_ERR_SHAPE, "(N, 3, H, W)");
    ddn_tensor *x64 = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 3, 32, 32));
    assert_null(ddn_resnet_forward(net, x64, false));
    assert_error(ctx, DDN_ERR_DTYPE, "float64");
    assert_null(ddn_resnet_forward(net, NULL, false)); /* NULL in, NULL out, no new error */
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_resnet_free(net);
    ddn_resnet_free(feat);

    /* bad options */
    ddn_resnet_opts bad = {.arch = 20};
    assert_null(ddn_resnet_new(ctx, &bad));
    assert_error(ctx, DDN_ERR_ARG, "arch 20");
    bad = (ddn_resnet_opts){.arch = DDN_RESNET18, .width = -1};
    assert_null(ddn_resnet_new(ctx, &bad));
    assert_error(ctx, DDN_ERR_ARG, "width");
    bad = (ddn_resnet_opts){.arch = DDN_RESNET18, .dtype = DDN_DTYPE_I64};
    assert_null(ddn_resnet_new(ctx, &bad));
    assert_error(ctx, DDN_ERR_DTYPE, "int64");
    assert_null(ddn_resnet_new(ctx, NULL));
    assert_error(ctx, DDN_ERR_ARG, "opts");
    ddn_resnet_free(NULL);
    ddn_ctx_free(ctx);
}

/* ---- a full-width ResNet-50 exported by tools/export_torchvision.py -------------------------- */

/* The exporter's files live in a temporary folder that the teardown removes, pass or fail. */
static char export_dir[64], export_weights[96], export_check[96];

static int export_teardown(void **state)
{
    (void)state;
    if (export_dir[0]) {
        unlink(export_weights);
        unlink(export_check);
        rmdir(export_dir);
        export_dir[0] = '\0';
    }
    return 0;
}

static void test_export_full_width(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") != 0) {
        print_message("skipped: /usr/bin/python3 with torch and torchvision is not available; "
                      "the exporter test needs it\n");
        skip();
    }
    snprintf(export_dir, sizeof export_dir, "/tmp/ddn_resnet_XXXXXX");
    assert_non_null(mkdtemp(export_dir));
    snprintf(export_weights, sizeof export_weights, "%s/r50.safetensors", export_dir);
    snprintf(export_check, sizeof export_check, "%s/check.safetensors", export_dir);
    char cmd[768];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/../../tools/export_torchvision.py --arch "
             "resnet50 --random-seed 0 --output %s --check-output %s --check-size 64 >/dev/null",
             DDN_TEST_DATA_DIR, export_weights, export_check);
    int rc = system(cmd);
    if (rc != 0) fail_msg("exporter failed (%d): %s", rc, cmd);
    ddn_ctx *ctx = test_ctx();
    /* the whole file, fc and counters included, loads strictly into a classification model */
    ddn_resnet_opts o = {.arch = DDN_RESNET50};
    ddn_resnet *net = ddn_resnet_new(ctx, &o);
    assert_non_null(net);
    load_strict(ctx, net, export_weights, NULL);
    ddn_resnet_free(net);
    /* features: the backbone, as `ddn features` uses it */
    o.features_only = true;
    net = ddn_resnet_new(ctx, &o);
    assert_non_null(net);
    load_strict(ctx, net, export_weights, "fc.");
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, export_check, &f));
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *y = ddn_resnet_forward(net, get_as(ctx, f, "images", DDN_DTYPE_F32), false);
    if (!y) fail_msg("forward: %s", ddn_ctx_errmsg(ctx));
    check_close("features", y, get_as(ctx, f, "features", DDN_DTYPE_F32), F32_TOL);
    ddn_tensor *pooled = ddn_flatten(ctx, ddn_adaptive_avg_pool2d(ctx, y, 1, 1), 1);
    check_close("pooled", pooled, get_as(ctx, f, "pooled", DDN_DTYPE_F32), F32_TOL);
    report_worst("full-width export");
    ddn_set_grad_enabled(ctx, prev);
    ddn_safetensors_close(f);
    ddn_resnet_free(net);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_counts),
        cmocka_unit_test(test_small_f32),
        cmocka_unit_test(test_small_f64),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_lean_forward),
        cmocka_unit_test(test_block_full_width),
        cmocka_unit_test(test_errors),
        cmocka_unit_test_teardown(test_export_full_width, export_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
