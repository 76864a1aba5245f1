/* ddn — tests of `ddn train` and `ddn eval`, run as separate processes (DDN_CLI_PATH).
 *
 * On a few hundred Fashion-MNIST images with a tiny-width ResNet-18 and an IED head: 20 steps
 * straight and 10 steps + --resume + 10 steps must give byte-identical model files (and the same
 * metrics.csv); a resume with another architecture is one clear line and leaves the checkpoint
 * as it was; SIGINT after the first log line gives exit 130 and a loadable checkpoint; eval
 * prints the accuracy and confusion matrix and exports features; plot.png is a PNG. Tests
 * needing the dataset skip with a message when Debian's dataset-fashion-mnist is absent.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "test_util.h"

#ifndef DDN_CLI_PATH
#error "DDN_CLI_PATH must name the built ddn binary (tests/CMakeLists.txt sets it)"
#endif

static char tmpdir[256];

static const char *tmp(const char *name)
{
    static char bufs[8][320];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 320, "%s/%s", tmpdir, name);
    return b;
}

static bool have_data(void)
{
    if (access(DDN_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0) return true;
    print_message("skipped: Fashion-MNIST is not installed at " DDN_FASHION_MNIST_DIR "\n");
    return false;
}

typedef cli_result run_result;

static pid_t spawn(const char *const *args) { return cli_spawn(DDN_CLI_PATH, tmpdir, args); }
static run_result *finish(pid_t pid) { return cli_finish(pid, tmpdir); }
#define RUN(...) finish(spawn((const char *const[]){__VA_ARGS__, NULL}))

static void expect_success(const run_result *r)
{
    if (r->code != 0 || r->err[0])
        fail_msg("expected success; exit %d, stderr: %s", r->code, r->err);
}

static void expect_failure(const run_result *r, int code, const char *needle)
{
    if (r->code != code || r->err_lines != 1 || !strstr(r->err, needle))
        fail_msg("expected exit %d with one line naming '%s'; got exit %d, %d line(s): %s", code,
                 needle, r->code, r->err_lines, r->err);
}

/* The whole file, malloc'd; *n its size. */
static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void expect_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = read_all(a, &na), *y = read_all(b, &nb);
    bool same = na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    if (!same) fail_msg("%s and %s differ", a, b);
}

/* Every tensor of two checkpoints byte for byte, and their metadata but "ddn.elapsed" (wall-clock
 * seconds, which differ between any two runs). */
static void expect_same_checkpoint(const char *a, const char *b)
{
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    ddn_st_file *fa = NULL, *fb = NULL;
    assert_int_equal(ddn_safetensors_open(ctx, a, &fa), DDN_OK);
    assert_int_equal(ddn_safetensors_open(ctx, b, &fb), DDN_OK);
    int64_t n = ddn_safetensors_count(fa);
    assert_int_equal(n, ddn_safetensors_count(fb));
    for (int64_t i = 0; i < n; i++) {
        const char *name = ddn_safetensors_name(fa, i);
        ddn_tensor *x = ddn_safetensors_get(ctx, fa, name), *y = ddn_safetensors_get(ctx, fb, name);
        if (!x || !y) fail_msg("%s: '%s' missing from one of %s, %s", name, name, a, b);
        size_t bytes = (size_t)ddn_tensor_numel(x) * ddn_dtype_size(x->dtype);
        if (x->dtype != y->dtype || ddn_tensor_numel(x) != ddn_tensor_numel(y) ||
            memcmp(x->data, y->data, bytes) != 0)
            fail_msg("'%s' differs between %s and %s", name, a, b);
    }
    static const char *const keys[] = {"ddn.arch", "ddn.batch", "ddn.seed", "optim.ddn.lr",
                                       "optim.ddn.hyper"};
    for (int k = 0; k < 5; k++) {
        const char *va = ddn_safetensors_metadata(fa, keys[k]);
        const char *vb = ddn_safetensors_metadata(fb, keys[k]);
        assert_non_null(va);
        assert_non_null(vb);
        assert_string_equal(va, vb);
    }
    assert_non_null(ddn_safetensors_metadata(fa, "ddn.elapsed"));
    ddn_safetensors_close(fa), ddn_safetensors_close(fb);
    ddn_ctx_free(ctx);
}

#define TINY "--arch", "resnet18", "--width", "0.0625", "--head", "ied", "--m", "4", \
             "--train-subset", "200", "--test-subset", "64", "--batch", "16", "--threads", "2"

static void test_resume_is_exact(void **state)
{
    (void)state;
    if (!have_data()) return;
    char a[320], b[320], ck[400];
    snprintf(a, sizeof a, "%s", tmp("straight"));
    snprintf(b, sizeof b, "%s", tmp("resumed"));
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", b);
    expect_success(RUN("train", TINY, "--steps", "20", "--out", a, "--optimizer", "adam"));
    expect_success(RUN("train", TINY, "--steps", "10", "--out", b, "--optimizer", "adam",
                       "--checkpoint-every", "5"));
    run_result *r = RUN("train", TINY, "--steps", "20", "--out", b, "--optimizer", "adam",
                        "--resume", ck);
    expect_success(r);
    assert_non_null(strstr(r->out, "from step 10"));
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    expect_same_file(pa, pb);
    snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
    expect_same_checkpoint(pa, ck);
    snprintf(pa, sizeof pa, "%s/metrics.csv", a);
    snprintf(pb, sizeof pb, "%s/metrics.csv", b);
    expect_same_file(pa, pb);

    /* Another architecture: one line naming the difference, the checkpoint untouched. */
    size_t n0, n1;
    unsigned char *before = read_all(ck, &n0);
    r = RUN("train", "--arch", "resnet34", "--width", "0.0625", "--m", "4", "--train-subset",
            "200", "--batch", "16", "--steps", "30", "--out", b, "--resume", ck);
    expect_failure(r, 1, "--arch differs");
    expect_failure(RUN("train", TINY, "--steps", "30", "--out", b, "--resume", ck), 1,
                   "--optimizer differs"); /* sgd, the default, over an adam checkpoint */
    unsigned char *after = read_all(ck, &n1);
    assert_true(n0 == n1 && memcmp(before, after, n0) == 0);
    free(before), free(after);
}

static void test_eval(void **state)
{
    (void)state;
    if (!have_data()) return;
    char out[320], ck[400], feat[400];
    snprintf(out, sizeof out, "%s", tmp("evaluated"));
    snprintf(ck, sizeof ck, "%s/model.safetensors", out);
    snprintf(feat, sizeof feat, "%s/features.safetensors", out);
    expect_success(RUN("train", TINY, "--steps", "4", "--out", out));
    char png[400], sig[8] = "";
    snprintf(png, sizeof png, "%s/plot.png", out);
    cli_slurp(png, sig, sizeof sig);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a", 7);
    run_result *r = RUN("eval", "--checkpoint", ck, "--test-subset", "50", "--batch", "16",
                        "--export-features", feat);
    expect_success(r);
    assert_non_null(strstr(r->out, "accuracy **"));
    assert_non_null(strstr(r->out, "| 9 Ankle boot |"));
    assert_non_null(strstr(r->out, "| **9** |"));
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, feat, &f));
    ddn_st_dtype dt;
    int nd;
    int64_t sh[DDN_MAX_DIMS];
    assert_true(ddn_safetensors_info(f, "features", &dt, &nd, sh));
    assert_true(dt == DDN_ST_F32 && nd == 2 && sh[0] == 50 && sh[1] == 4);
    assert_true(ddn_safetensors_info(f, "labels", &dt, &nd, sh));
    assert_true(nd == 1 && sh[0] == 50);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
    /* Not a ddn train file: one line. */
    expect_failure(RUN("eval", "--checkpoint", feat), 1, "not a checkpoint");
    expect_failure(RUN("eval"), 2, "--checkpoint");
}

/* --schedule cosine over --time-budget: the rate starts at the base and ends near zero when the
 * budget is spent; a run stopped by the budget still reports test accuracy; the budget counts
 * across resumes (a resumed run with the budget spent takes no step). */
static void test_time_budget_cosine(void **state)
{
    (void)state;
    if (!have_data()) return;
    char out[320], csv[400], ck[400];
    snprintf(out, sizeof out, "%s", tmp("budget"));
    snprintf(csv, sizeof csv, "%s/metrics.csv", out);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    run_result *r = RUN("train", TINY, "--time-budget", "4", "--schedule", "cosine", "--lr", "0.05",
                        "--out", out);
    expect_success(r);
    const char *fin = strstr(r->out, "\ndone at step ");
    assert_non_null(fin);
    long steps = strtol(fin + strlen("\ndone at step "), NULL, 10);
    assert_true(steps >= 3);
    char evaluated[64]; /* "final at step N: ..." or, when the budget ran out at an epoch's end,
                         * "epoch E done at step N: ..." */
    snprintf(evaluated, sizeof evaluated, "at step %ld: test accuracy", steps);
    if (!strstr(r->out, evaluated)) fail_msg("no test accuracy at the last step: %s", r->out);
    static char text[1 << 20];
    cli_slurp(csv, text, sizeof text);
    double first_lr = -1, last_lr = -1;
    int rows = 0;
    for (char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long step, epoch;
        double loss, lr;
        if (sscanf(line + 1, "%ld,%ld,%lf,%lf", &step, &epoch, &loss, &lr) != 4) continue;
        if (first_lr < 0) first_lr = lr;
        last_lr = lr, rows++;
    }
    assert_int_equal(rows, steps);
    if (!(first_lr > 0.04 && first_lr <= 0.05 && last_lr < 0.25 * 0.05))
        fail_msg("cosine over the budget: lr %g at the first step, %g at the last", first_lr,
                 last_lr);
    r = RUN("train", TINY, "--time-budget", "4", "--schedule", "cosine", "--lr", "0.05", "--out",
            out, "--resume", ck);
    expect_success(r);
    char done[64];
    snprintf(done, sizeof done, "done at step %ld:", steps);
    if (!strstr(r->out, done)) fail_msg("expected no further step; got: %s", r->out);
}

/* An image folder with a corrupt-file class: by default the bad files are skipped, counted and
 * reported with their paths (training and test); --strict-data stops at the first, naming it. */
static void test_image_folder(void **state)
{
    (void)state;
    char out[320], model_path[400];
    snprintf(out, sizeof out, "%s", tmp("folder"));
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", out);
    const char *data = test_data_path("images_bad");
#define FOLDER "--data", data, "--test-fraction", "0.5", "--arch", "resnet18", "--width", \
               "0.0625", "--head", "linear", "--batch", "4", "--threads", "2"
    run_result *r = RUN("train", FOLDER, "--epochs", "1", "--out", out);
    expect_success(r);
    assert_non_null(strstr(r->out, "unreadable training image"));
    assert_non_null(strstr(r->out, "unreadable test image"));
    assert_non_null(strstr(r->out, "images_bad/bad/"));
    assert_non_null(strstr(r->out, "plot "));
    r = RUN("eval", "--checkpoint", model_path, "--data", data, "--test-fraction", "0.5");
    expect_success(r);
    assert_non_null(strstr(r->out, "unreadable test image"));
    assert_non_null(strstr(r->out, "| 2 c |"));
    expect_failure(RUN("eval", "--checkpoint", model_path, "--data", data, "--test-fraction",
                       "0.5", "--strict-data"), 1, "images_bad/bad/");
    expect_failure(RUN("train", FOLDER, "--epochs", "1", "--out", out, "--strict-data"), 1,
                   "images_bad/bad/");
#undef FOLDER
}

/* A full disk while saving: the child's writes fail past 64 KiB (RLIMIT_FSIZE, SIGXFSZ ignored:
 * write() then fails with EFBIG, the path a full disk's ENOSPC takes). One line on stderr, exit 1,
 * and the checkpoint written before is still there, byte for byte. */
static void test_full_disk(void **state)
{
    (void)state;
    if (!have_data()) return;
    char out[320], ck[400];
    snprintf(out, sizeof out, "%s", tmp("fulldisk"));
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    expect_success(RUN("train", TINY, "--steps", "2", "--out", out));
    size_t n0, n1;
    unsigned char *before = read_all(ck, &n0);
    assert_true(n0 > 65536);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 65536;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* inherited by the child */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    pid_t pid = spawn((const char *const[]){"train", TINY, "--steps", "4", "--out", out,
                                            "--resume", ck, NULL});
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    run_result *r = finish(pid);
    expect_failure(r, 1, "cannot write checkpoint");
    assert_non_null(strstr(r->err, "the previous one is kept"));
    unsigned char *after = read_all(ck, &n1);
    assert_true(n0 == n1 && memcmp(before, after, n0) == 0);
    free(before), free(after);
}

/* --device cuda: with a GPU, a few steps train on it and its model evaluates there too; without
 * one, the one-line reason from ddn_ctx_new and exit 1. A third name is a usage error. */
static void test_device(void **state)
{
    (void)state;
    if (!have_data()) return;
    char out[320], model_path[400];
    snprintf(out, sizeof out, "%s", tmp("on_device"));
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", out);
    const char *why = NULL;
    ddn_ctx *gpu = ddn_ctx_new(DDN_DEVICE_CUDA, &why);
    run_result *r = RUN("train", TINY, "--steps", "4", "--device", "cuda", "--out", out);
    if (gpu) {
        expect_success(r);
        expect_success(RUN("eval", "--checkpoint", model_path, "--test-subset", "32", "--device",
                           "cuda"));
        ddn_ctx_free(gpu);
    } else {
        expect_failure(r, 1, why);
        print_message("skipped: training on the device (%s)\n", why);
    }
    expect_failure(RUN("train", TINY, "--steps", "1", "--device", "gpu", "--out", out), 2,
                   "--device");
    expect_failure(RUN("eval", "--checkpoint", model_path, "--device", "tpu"), 2, "--device");
}

static void test_sigint(void **state)
{
    (void)state;
    if (!have_data()) return;
    char out[320], ck[400];
    snprintf(out, sizeof out, "%s", tmp("interrupted"));
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    pid_t pid = spawn((const char *const[]){"train", TINY, "--steps", "1000000", "--out", out,
                                            "--log-every", "1", NULL});
    char text[4096];
    for (int k = 0; k < 6000; k++) { /* up to a minute for the first log line */
        cli_slurp(tmp("stdout.txt"), text, sizeof text);
        if (strstr(text, "\nstep ")) break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    assert_non_null(strstr(text, "\nstep "));
    assert_int_equal(kill(pid, SIGINT), 0);
    run_result *r = finish(pid);
    if (r->code != 130) fail_msg("expected exit 130; got %d: %s", r->code, r->err);
    assert_non_null(strstr(r->err, "checkpoint written to"));
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, ck, &f));
    ddn_tensor *step = ddn_safetensors_get(ctx, f, "trainer.step");
    assert_non_null(step);
    assert_true(ddn_tensor_item(step) >= 1);
    assert_non_null(ddn_safetensors_metadata(f, "ddn.arch"));
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    expect_failure(RUN("train", "--out", tmp("x"), "--batch", "0"), 2, "--batch");
    expect_failure(RUN("train", "--out", tmp("x"), "--arch", "vgg"), 2, "--arch");
    expect_failure(RUN("train", "--steps", "3"), 2, "--out");
    expect_failure(RUN("train", "--out", tmp("x"), "--data", tmp("nodata")), 1,
                   "train-images-idx3-ubyte.gz");
    expect_failure(RUN("train", "--out", "/proc/ddn-no/such"), 1, "--out");
    expect_failure(RUN("train", "--out", tmp("x"), "--resume", tmp("none.safetensors")), 1,
                   "cannot resume");
}

/* A diverging run: exit 1 naming the step, the checkpoint of the last good step kept. */
static void test_nan_loss(void **state)
{
    (void)state;
    if (!have_data()) return;
    char out[320], ck[400];
    snprintf(out, sizeof out, "%s", tmp("diverged"));
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    run_result *r = RUN("train", "--arch", "resnet18", "--width", "0.0625", "--head", "linear",
                        "--train-subset", "100", "--test-subset", "32", "--batch", "16",
                        "--threads", "2", "--lr", "1e30", "--momentum", "0", "--steps", "20",
                        "--checkpoint-every", "1", "--out", out);
    expect_failure(r, 1, "step 2: the loss is NaN");
    assert_non_null(strstr(r->err, "last good checkpoint"));
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, ck, &f));
    ddn_tensor *step = ddn_safetensors_get(ctx, f, "trainer.step");
    assert_non_null(step);
    assert_true(ddn_tensor_item(step) == 1);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/ddn_train_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir); /* our own mkdtemp directory only */
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_time_budget_cosine),
        cmocka_unit_test(test_image_folder),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_device),
        cmocka_unit_test(test_sigint),
        cmocka_unit_test(test_nan_loss),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
