/* ddn — tests of `ddn features` (tools/cmd_features.c), run as a separate process, as
 * tests/test_cli.c does for `ddn solve`.
 *
 * The weights are small-width ResNets (--width 1/16) saved here with ddn_params_save. The
 * program's features must equal the library's own eval-mode ddn_resnet_forward on the same input
 * (whatever the --batch split), and `pooled` the mean over h,w of `features`, computed here in
 * double. --images
 * uses solid-colour PNGs written here with stb_image_write: after resize, crop and normalise each
 * channel is the constant (v/255 - mean)/std, so the expected input is built without the data
 * module. Every error case must give one stderr line, a non-zero exit and no output file.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "test_util.h"

/* stb_image_write (Debian libstb-dev), compiled privately into this test. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#ifndef DDN_CLI_PATH
#error "DDN_CLI_PATH must name the built ddn binary (tests/CMakeLists.txt sets it)"
#endif


static char tmpdir[256];
#define WIDTH 0.0625
#define WIDTH_ARG "0.0625"

/* ---- running the program (as tests/test_cli.c) ------------------------------------------------ */
typedef cli_result run_result;

static const char *tmp(const char *name)
{
    static char bufs[8][320];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 320, "%s/%s", tmpdir, name);
    return b;
}

/* Runs DDN_CLI_PATH with the NULL-terminated arguments. */
static run_result run_args(const char *const *args)
{
    return *cli_finish(cli_spawn(DDN_CLI_PATH, tmpdir, args), tmpdir);
}
#define RUN(...) run_args((const char *const[]){__VA_ARGS__, NULL})

/* The run failed with `code` (0: any non-zero), one stderr line holding needle, no output. */
static void expect_failure(const run_result *r, int code, const char *needle)
{
    if ((code ? r->code != code : r->code == 0) || r->err_lines != 1 || !strstr(r->err, needle))
        fail_msg("expected exit %d with one line naming '%s'; got exit %d, %d line(s): %s", code,
                 needle, r->code, r->err_lines, r->err);
    assert_non_null(strstr(r->err, "ddn features:"));
    assert_int_equal(access(tmp("out.safetensors"), F_OK), -1);
}

static void expect_success(const run_result *r)
{
    if (r->code != 0 || r->err[0]) fail_msg("expected success; exit %d, stderr: %s", r->code, r->err);
}

/* ---- models and files ------------------------------------------------------------------------- */
static ddn_resnet *small_net(ddn_ctx *ctx, ddn_resnet_arch arch, bool features_only)
{
    ddn_resnet_opts o = {.arch = arch, .features_only = features_only, .width = WIDTH, .seed = 7};
    ddn_resnet *net = ddn_resnet_new(ctx, &o);
    assert_non_null(net);
    /* Non-trivial running statistics, so eval mode is told apart from training mode. */
    ddn_params *p = ddn_resnet_params(net);
    for (int64_t i = 0; i < ddn_params_count(p); i++) {
        const char *name = ddn_params_name(p, i);
        ddn_tensor *t = ddn_params_at(p, i);
        if (strstr(name, "running_mean")) assert_ok(ctx, ddn_tensor_fill_uniform(t, NULL, -.1, .1));
        if (strstr(name, "running_var")) assert_ok(ctx, ddn_tensor_fill_uniform(t, NULL, .5, 1.5));
    }
    return net;
}

static void save_images(ddn_ctx *ctx, const char *path, const char *name, ddn_tensor *x)
{
    ddn_st_entry e = {name, x, DDN_ST_AUTO};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 1, &e, 0, NULL));
}

static ddn_tensor *load_out(ddn_ctx *ctx, ddn_st_file *f, const char *name)
{
    ddn_st_dtype dt;
    int nd;
    int64_t s[DDN_MAX_DIMS];
    if (!ddn_safetensors_info(f, name, &dt, &nd, s)) fail_msg("output has no '%s'", name);
    assert_int_equal(dt, DDN_ST_F32);
    ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
    assert_non_null(t);
    return t;
}

/* Runs the library on x (eval, no tape) and checks the output file against it: features
 * elementwise, pooled against the mean over h,w of the file's features, in double. */
static void check_output(ddn_ctx *ctx, ddn_resnet_arch arch, const char *weights, ddn_tensor *x)
{
    ddn_resnet *net = small_net(ctx, arch, true);
    ddn_params_load_opts lo = {.strict = true, .skip_prefix = "fc."};
    assert_ok(ctx, ddn_params_load(ddn_resnet_params(net), weights, lo));
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *want = ddn_resnet_forward(net, x, false);
    ddn_set_grad_enabled(ctx, prev);
    assert_non_null(want);
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, tmp("out.safetensors"), &f));
    ddn_tensor *feat = load_out(ctx, f, "features"), *pooled = load_out(ctx, f, "pooled");
    ddn_safetensors_close(f);
    assert_true(ddn_tensor_same_shape(feat, want));
    /* float32 through ~50 layers: a different batch split changes GEMM blocking and summation
     * order, so agreement is to about 1e-4 relative; an error in weights, mode or layout is O(1). */
    assert_tensor_close(feat, want, 1e-3, 1e-3);
    int64_t N = want->shape[0], C = want->shape[1], hw = want->shape[2] * want->shape[3];
    assert_int_equal(pooled->ndim, 2);
    assert_int_equal(pooled->shape[0], N);
    assert_int_equal(pooled->shape[1], C);
    const float *w = ddn_tensor_ptr(feat), *p = ddn_tensor_ptr(pooled);
    for (int64_t i = 0; i < N * C; i++) {
        double m = 0;
        for (int64_t k = 0; k < hw; k++) m += w[i * hw + k];
        m /= (double)hw;
        if (fabs(p[i] - m) > 1e-5 + 1e-5 * fabs(m))
            fail_msg("pooled[%lld] = %g, mean over h,w %g", (long long)i, (double)p[i], m);
    }
    ddn_resnet_free(net);
    unlink(tmp("out.safetensors"));
}

/* ---- tests ------------------------------------------------------------------------------------ */
static void test_help_and_usage(void **state)
{
    (void)state;
    run_result r = RUN("features", "--help");
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "--images"));
    r = RUN("features", "--weights", tmp("w50.safetensors"), "--input", "x", "--output", "y");
    expect_failure(&r, 2, "missing --arch");
    r = RUN("features", "--arch", "resnet101", "--weights", "w", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "resnet101");
    r = RUN("features", "--arch", "resnet50", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "missing --weights");
    r = RUN("features", "--arch", "resnet50", "--weights", "w", "--output", "y");
    expect_failure(&r, 2, "missing --input");
    r = RUN("features", "--arch", "resnet50", "--weights", "w", "--input", "x", "--images", "a.png",
            "--output", "y");
    expect_failure(&r, 2, "exclude");
    r = RUN("features", "--arch", "resnet50", "--weights", "w", "--input", "x");
    expect_failure(&r, 2, "missing --output");
    r = RUN("features", "--arch", "resnet50", "--weights", "w", "--input", "x", "--output", "y",
            "--batch", "0");
    expect_failure(&r, 2, "--batch");
    r = RUN("features", "--arch", "resnet50", "--frobnicate");
    expect_failure(&r, 2, "--frobnicate");
}

static void test_input(void **state)
{
    ddn_ctx *ctx = *state;
    ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(5, 3, 40, 48), 0, 1);
    assert_non_null(x);
    save_images(ctx, tmp("in.safetensors"), "images", x);
    /* Batches of 2 (2 + 2 + 1: a short last batch) and of 8 (one batch) agree with one pass. */
    const char *batches[] = {"2", "8"};
    for (int b = 0; b < 2; b++) {
        run_result r = RUN("features", "--arch", "resnet50", "--width", WIDTH_ARG, "--weights",
                           tmp("w50.safetensors"), "--input", tmp("in.safetensors"), "--output",
                           tmp("out.safetensors"), "--batch", batches[b], "--threads", "2");
        expect_success(&r);
        assert_non_null(strstr(r.out, "5 images"));
        check_output(ctx, DDN_RESNET50, tmp("w50.safetensors"), x);
    }
    /* A full classifier file (with fc.*) loads too: features mode skips fc. */
    run_result r = RUN("features", "--arch", "resnet18", "--width", WIDTH_ARG, "--weights",
                       tmp("w18_full.safetensors"), "--input", tmp("in.safetensors"), "--output",
                       tmp("out.safetensors"));
    expect_success(&r);
    check_output(ctx, DDN_RESNET18, tmp("w18_full.safetensors"), x);
    ddn_ctx_reset_step(ctx);
}

/* A solid-colour w x h RGB PNG. */
static void write_png(const char *path, int w, int h, const unsigned char rgb[3])
{
    unsigned char *px = malloc((size_t)w * (size_t)h * 3);
    assert_non_null(px);
    for (int i = 0; i < w * h; i++) memcpy(px + 3 * i, rgb, 3);
    assert_true(stbi_write_png(path, w, h, 3, px, w * 3) != 0);
    free(px);
}

static void test_images(void **state)
{
    ddn_ctx *ctx = *state;
    static const unsigned char colours[3][3] = {{200, 30, 90}, {10, 250, 128}, {77, 77, 77}};
    static const int sizes[3][2] = {{300, 260}, {256, 400}, {224, 224}}; /* w, h */
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    const char *names[3] = {"a.png", "b.png", "c.png"};
    char paths[3][320];
    ddn_tensor *x = ddn_tensor_new(ctx, DDN_DTYPE_F32, DDN_SHAPE(3, 3, 224, 224));
    assert_non_null(x);
    float *xp = ddn_tensor_ptr(x);
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s", tmp(names[i]));
        write_png(paths[i], sizes[i][0], sizes[i][1], colours[i]);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 224 * 224; p++)
                xp[(i * 3 + c) * 224 * 224 + p] = (colours[i][c] / 255.0f - mean[c]) / sd[c];
    }
    run_result r = RUN("features", "--arch", "resnet50", "--width", WIDTH_ARG, "--weights",
                       tmp("w50.safetensors"), "--images", paths[0], paths[1], paths[2],
                       "--output", tmp("out.safetensors"), "--batch", "2");
    expect_success(&r);
    check_output(ctx, DDN_RESNET50, tmp("w50.safetensors"), x);

    /* Unreadable and corrupt images: the message names the file. */
    r = RUN("features", "--arch", "resnet50", "--width", WIDTH_ARG, "--weights",
            tmp("w50.safetensors"), "--images", paths[0], tmp("nonexistent.png"), "--output",
            tmp("out.safetensors"));
    expect_failure(&r, 1, "nonexistent.png");
    FILE *f = fopen(tmp("corrupt.png"), "wb");
    assert_non_null(f);
    fputs("this is not a PNG file at all", f);
    fclose(f);
    r = RUN("features", "--arch", "resnet50", "--width", WIDTH_ARG, "--weights",
            tmp("w50.safetensors"), "--images", tmp("corrupt.png"), paths[1], "--output",
            tmp("out.safetensors"));
    expect_failure(&r, 1, "corrupt.png");
    ddn_ctx_reset_step(ctx);
}

/* --device: cpu is the default path; cuda runs the network on the device when there is one
 * (same outputs as the library on the CPU, to check_output's 1e-3) and otherwise fails with the
 * one-line reason from ddn_ctx_new; a third name is a usage error. */
static void test_device(void **state)
{
    ddn_ctx *ctx = *state;
    ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(3, 3, 32, 40), 0, 1);
    assert_non_null(x);
    save_images(ctx, tmp("in.safetensors"), "images", x);
#define FEAT_ON(dev) RUN("features", "--arch", "resnet50", "--width", WIDTH_ARG, "--weights",    \
                         tmp("w50.safetensors"), "--input", tmp("in.safetensors"), "--output",  \
                         tmp("out.safetensors"), "--batch", "2", "--device", dev)
    run_result r = FEAT_ON("cpu");
    expect_success(&r);
    check_output(ctx, DDN_RESNET50, tmp("w50.safetensors"), x);
    const char *why = NULL;
    ddn_ctx *gpu = ddn_ctx_new(DDN_DEVICE_CUDA, &why);
    r = FEAT_ON("cuda");
    if (gpu) {
        expect_success(&r);
        check_output(ctx, DDN_RESNET50, tmp("w50.safetensors"), x);
        ddn_ctx_free(gpu);
    } else {
        expect_failure(&r, 1, why);
    }
    r = FEAT_ON("gpu");
    expect_failure(&r, 2, "--device");
#undef FEAT_ON
    ddn_ctx_reset_step(ctx);
}

static void test_errors(void **state)
{
    ddn_ctx *ctx = *state;
    ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 32, 32), 0, 1);
    ddn_tensor *x3 = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(3, 32, 32), 0, 1);
    ddn_tensor *x1 = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 1, 32, 32), 0, 1);
    ddn_tensor *xi = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3, 32, 32));
    assert_true(x && x3 && x1 && xi);
    save_images(ctx, tmp("in.safetensors"), "images", x);
    save_images(ctx, tmp("noimages.safetensors"), "pictures", x);
    save_images(ctx, tmp("rank3.safetensors"), "images", x3);
    save_images(ctx, tmp("grey.safetensors"), "images", x1);
    save_images(ctx, tmp("int.safetensors"), "images", xi);
    FILE *f = fopen(tmp("corrupt.safetensors"), "wb");
    assert_non_null(f);
    fputs("\x10\x00\x00\x00\x00\x00\x00\x00{not json}", f);
    fclose(f);
    char w50[320]; /* a copy: tmp() reuses its buffers */
    snprintf(w50, sizeof w50, "%s", tmp("w50.safetensors"));
#define FEAT(arch, w, in) RUN("features", "--arch", arch, "--width", WIDTH_ARG, "--weights", w, \
                              "--input", in, "--output", tmp("out.safetensors"))
    run_result r = FEAT("resnet50", tmp("missing.safetensors"), tmp("in.safetensors"));
    expect_failure(&r, 1, "missing.safetensors");
    r = FEAT("resnet50", tmp("corrupt.safetensors"), tmp("in.safetensors"));
    expect_failure(&r, 1, "corrupt.safetensors");
    /* Another arch: ResNet-18 weights into ResNet-50 (shapes and names differ), and ResNet-50's
     * into ResNet-18 (unexpected names): the loader's list. */
    r = FEAT("resnet50", tmp("w18_full.safetensors"), tmp("in.safetensors"));
    expect_failure(&r, 1, "does not match the model");
    r = FEAT("resnet18", w50, tmp("in.safetensors"));
    expect_failure(&r, 1, "unexpected");
    /* The weights of another width. */
    r = RUN("features", "--arch", "resnet50", "--weights", w50, "--input", tmp("in.safetensors"),
            "--output", tmp("out.safetensors"));
    expect_failure(&r, 1, "wrongly shaped");
    r = FEAT("resnet50", w50, tmp("nothere.safetensors"));
    expect_failure(&r, 1, "nothere.safetensors");
    r = FEAT("resnet50", w50, tmp("corrupt.safetensors"));
    expect_failure(&r, 1, "corrupt.safetensors");
    r = FEAT("resnet50", w50, tmp("noimages.safetensors"));
    expect_failure(&r, 1, "no tensor 'images'");
    r = FEAT("resnet50", w50, tmp("rank3.safetensors"));
    expect_failure(&r, 1, "(3,32,32)");
    r = FEAT("resnet50", w50, tmp("grey.safetensors"));
    expect_failure(&r, 1, "(2,1,32,32)");
    r = FEAT("resnet50", w50, tmp("int.safetensors"));
    expect_failure(&r, 1, "I64");
    /* An unwritable output: the atomic write fails, nothing is left behind. */
    r = RUN("features", "--arch", "resnet50", "--width", WIDTH_ARG, "--weights", w50, "--input",
            tmp("in.safetensors"), "--output", "/nonexistent-dir/out.safetensors");
    expect_failure(&r, 1, "/nonexistent-dir");
#undef FEAT
    ddn_ctx_reset_step(ctx);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/ddn_feat_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return -1;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!ctx) return -1;
    *state = ctx;
    /* w50: a features-only ResNet-50 file (no fc); w18_full: a classifier ResNet-18 with fc. */
    ddn_resnet *n50 = small_net(ctx, DDN_RESNET50, true), *n18 = small_net(ctx, DDN_RESNET18, false);
    ddn_status s1 = ddn_params_save(ddn_resnet_params(n50), tmp("w50.safetensors"));
    ddn_status s2 = ddn_params_save(ddn_resnet_params(n18), tmp("w18_full.safetensors"));
    ddn_resnet_free(n50);
    ddn_resnet_free(n18);
    return s1 == DDN_OK && s2 == DDN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    static const char *const files[] = {
        "stdout.txt", "stderr.txt", "w50.safetensors", "w18_full.safetensors", "in.safetensors",
        "out.safetensors", "noimages.safetensors", "rank3.safetensors", "grey.safetensors",
        "int.safetensors", "corrupt.safetensors", "a.png", "b.png", "c.png", "corrupt.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(tmp(files[i]));
    ddn_ctx_free(*state);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_input),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_device),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
