/* ddn — tests of the `ddn` command-line program (tools/), run as a separate process.
 *
 * Each test writes its inputs with ddn_safetensors_save into a fresh temporary directory, runs the
 * built binary (DDN_CLI_PATH, set by tests/CMakeLists.txt) with posix_spawn, and checks the exit
 * status, that stderr holds exactly one line naming the problem on failure (nothing on success),
 * and that the output file agrees with what the library computes in-process: the same solver
 * calls for y, and the layers' backward for dA and db.
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

#ifndef DDN_CLI_PATH
#error "DDN_CLI_PATH must name the built ddn binary (tests/CMakeLists.txt sets it)"
#endif


static char tmpdir[256];

/* ---- running the program ---------------------------------------------------------------------- */
typedef cli_result run_result;

/* Runs DDN_CLI_PATH with the NULL-terminated arguments. */
static run_result run_args(const char *const *args)
{
    return *cli_finish(cli_spawn(DDN_CLI_PATH, tmpdir, args), tmpdir);
}
#define RUN(...) run_args((const char *const[]){__VA_ARGS__, NULL})

/* Fails unless the run failed with `code` (0: any non-zero) and one stderr line holding needle. */
static void expect_failure(const run_result *r, int code, const char *needle)
{
    if ((code ? r->code != code : r->code == 0) || r->err_lines != 1 || !strstr(r->err, needle))
        fail_msg("expected exit %s with one line naming '%s'; got exit %d, %d line(s): %s",
                 code ? (code == 1 ? "1" : "2") : "!= 0", needle, r->code, r->err_lines, r->err);
    assert_non_null(strstr(r->err, "ddn"));
}

static void expect_success(const run_result *r)
{
    if (r->code != 0 || r->err[0]) fail_msg("expected success; exit %d, stderr: %s", r->code, r->err);
}

/* ---- files ------------------------------------------------------------------------------------ */
static const char *tmp(const char *name)
{
    static char bufs[8][320];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 320, "%s/%s", tmpdir, name);
    return b;
}

static void save(ddn_ctx *ctx, const char *path, int n, const char *const *names,
                 ddn_tensor *const *ts)
{
    ddn_st_entry e[8];
    for (int i = 0; i < n; i++) e[i] = (ddn_st_entry){names[i], ts[i], DDN_ST_AUTO};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, n, e, 0, NULL));
}

static ddn_tensor *randn(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape)
{
    ddn_tensor *t = ddn_rand_normal(ctx, NULL, dt, ndim, shape, 0, 1);
    assert_non_null(t);
    return t;
}

/* A = |G| + |G|^T, (B, m, m): symmetric with a simple dominant eigenvalue (Perron). */
static ddn_tensor *sym_abs(ddn_ctx *ctx, ddn_dtype dt, int64_t B, int64_t m)
{
    ddn_tensor *A = ddn_tensor_new(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, m));
    assert_non_null(A);
    double *a = ddn_tensor_ptr(A);
    for (int64_t i = 0; i < B * m * m; i++) a[i] = fabs(ddn_rng_normal(ddn_ctx_rng(ctx)));
    for (int64_t t = 0; t < B; t++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j <= i; j++) {
                double *p = a + t * m * m;
                p[i * m + j] = p[j * m + i] = p[i * m + j] + p[j * m + i];
            }
    if (dt == DDN_DTYPE_F64) return A;
    ddn_tensor *Af = ddn_tensor_new(ctx, dt, DDN_SHAPE(B, m, m));
    assert_ok(ctx, ddn_tensor_copy_(Af, A));
    return Af;
}

static ddn_tensor *load(ddn_ctx *ctx, const ddn_st_file *f, const char *name, ddn_st_dtype want)
{
    ddn_st_dtype dt;
    int nd;
    int64_t shape[DDN_MAX_DIMS];
    if (!ddn_safetensors_info(f, name, &dt, &nd, shape)) fail_msg("output has no '%s'", name);
    if (dt != want)
        fail_msg("'%s' is %s, expected %s", name, ddn_st_dtype_name(dt), ddn_st_dtype_name(want));
    ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
    assert_non_null(t);
    return t;
}

/* Every y row has unit norm, iterations > 0, converged 1, fpd finite. */
static void check_diagnostics(ddn_ctx *ctx, const ddn_st_file *f, ddn_st_dtype dt, int64_t B,
                              int64_t n, bool iterative)
{
    ddn_tensor *y = load(ctx, f, "y", dt), *it = load(ctx, f, "iterations", DDN_ST_I64);
    ddn_tensor *cv = load(ctx, f, "converged", DDN_ST_I64), *fpd = load(ctx, f, "fpd", DDN_ST_F64);
    assert_int_equal(y->shape[0], B);
    assert_int_equal(y->shape[1], n);
    for (int64_t i = 0; i < B; i++) {
        double s = 0;
        for (int64_t j = 0; j < n; j++) {
            double v = ddn_tensor_get(y, (int64_t[]){i, j});
            s += v * v;
        }
        assert_true(fabs(sqrt(s) - 1) < (dt == DDN_ST_F32 ? 1e-5 : 1e-12));
        if (iterative) assert_true(((int64_t *)ddn_tensor_ptr(it))[i] > 0);
        assert_int_equal(((int64_t *)ddn_tensor_ptr(cv))[i], 1);
        assert_true(isfinite(((double *)ddn_tensor_ptr(fpd))[i]));
    }
}

/* ---- tests: program surface ------------------------------------------------------------------- */
static void test_help_and_version(void **state)
{
    run_result r = RUN("--help");
    expect_success(&r);
    assert_non_null(strstr(r.out, "solve"));
    r = RUN("--version");
    expect_success(&r);
    assert_non_null(strstr(r.out, "ddn 0."));
    r = RUN("solve", "--help");
    expect_success(&r);
    assert_non_null(strstr(r.out, "--layer"));
    r = RUN("bench", "--help");
    expect_success(&r);
    assert_non_null(strstr(r.out, "less-effect"));
}

static void test_usage_errors(void **state)
{
    run_result r = RUN("frobnicate");
    expect_failure(&r, 2, "frobnicate");
    r = run_args((const char *const[]){NULL});
    expect_failure(&r, 2, "missing command");
    r = RUN("--frobnicate");
    expect_failure(&r, 2, "--frobnicate");
    r = RUN("solve", "--layer", "less", "--frobnicate", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "--frobnicate");
    r = RUN("solve", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "--layer");
    r = RUN("solve", "--layer", "svd", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "svd");
    r = RUN("solve", "--layer", "less", "--method", "pgd+twd", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "pgd+twd");
    r = RUN("solve", "--layer", "less", "--backward", "ift-e", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "ift-e");
    r = RUN("solve", "--layer", "ied", "--method", "pgd", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "--method");
    r = RUN("solve", "--layer", "less", "--no-gap-check", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "--no-gap-check");
    r = RUN("solve", "--layer", "ied", "--tol", "abc", "--input", "x", "--output", "y");
    expect_failure(&r, 2, "--tol");
    r = RUN("solve", "--layer", "ied", "--input", "x", "--output");
    expect_failure(&r, 2, "--output");
    r = RUN("bench", "--table", "nope");
    expect_failure(&r, 2, "nope");
    r = RUN("bench", "--table", "ied", "--sizes", "32,,64");
    expect_failure(&r, 2, "--sizes");
}

/* ---- tests: LESS ------------------------------------------------------------------------------ */
static void less_roundtrip(ddn_dtype dt, bool with_v)
{
    ddn_ctx *ctx = test_ctx();
    const int64_t B = 3, m = 6, n = 4;
    ddn_tensor *A = randn(ctx, dt, DDN_SHAPE(B, m, n)), *b = randn(ctx, dt, DDN_SHAPE(B, m));
    ddn_tensor *v = randn(ctx, dt, DDN_SHAPE(B, n));
    save(ctx, tmp("less_in.safetensors"), with_v ? 3 : 2, (const char *[]){"A", "b", "v"},
         (ddn_tensor *[]){A, b, v});
    run_result r = RUN("solve", "--layer", "less", "--input", tmp("less_in.safetensors"),
                       "--output", tmp("less_out.safetensors"), "--method", "pgd+rm+blsone",
                       "--tol", "1e-9", "--threads", "1");
    expect_success(&r);

    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, tmp("less_out.safetensors"), &f));
    ddn_st_dtype sdt = dt == DDN_DTYPE_F32 ? DDN_ST_F32 : DDN_ST_F64;
    check_diagnostics(ctx, f, sdt, B, n, true);
    ddn_tensor *y = load(ctx, f, "y", sdt);

    /* The same solve in-process gives the same y; the layer's backward the same gradients. */
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.method = DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE, o.tol = 1e-9;
    ddn_tensor *y_ref = ddn_tensor_new(ctx, dt, DDN_SHAPE(B, n));
    assert_ok(ctx, ddn_less_solve(ctx, dt, B, m, n, ddn_tensor_ptr(A), ddn_tensor_ptr(b),
                                  ddn_tensor_ptr(y_ref), &o, NULL));
    assert_tensor_close(y, y_ref, 0, 0);
    if (with_v) {
        assert_ok(ctx, ddn_tensor_set_requires_grad(A, true));
        assert_ok(ctx, ddn_tensor_set_requires_grad(b, true));
        ddn_tensor *yl = ddn_less(ctx, A, b, &o, DDN_LESS_BACKWARD_E, NULL);
        assert_non_null(yl);
        assert_ok(ctx, ddn_backward_with_grad(ctx, yl, v));
        double tol = dt == DDN_DTYPE_F32 ? 1e-6 : 1e-12;
        assert_tensor_close(load(ctx, f, "dA", sdt), A->grad, tol, tol);
        assert_tensor_close(load(ctx, f, "db", sdt), b->grad, tol, tol);
    } else {
        ddn_st_dtype d;
        int nd;
        int64_t s[DDN_MAX_DIMS];
        assert_false(ddn_safetensors_info(f, "dA", &d, &nd, s));
    }
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

static void test_less_f64(void **state) { less_roundtrip(DDN_DTYPE_F64, false); }
static void test_less_f32(void **state) { less_roundtrip(DDN_DTYPE_F32, false); }
static void test_less_grad_f64(void **state) { less_roundtrip(DDN_DTYPE_F64, true); }
static void test_less_grad_f32(void **state) { less_roundtrip(DDN_DTYPE_F32, true); }

static void test_less_exact_and_j(void **state)
{
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *A = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 5, 3));
    ddn_tensor *b = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 5)), *v = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3));
    save(ctx, tmp("in.safetensors"), 3, (const char *[]){"A", "b", "v"}, (ddn_tensor *[]){A, b, v});
    run_result r = RUN("solve", "--layer", "less", "--method", "exact", "--backward", "j",
                       "--input", tmp("in.safetensors"), "--output", tmp("out.safetensors"));
    expect_success(&r);
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, tmp("out.safetensors"), &f));
    check_diagnostics(ctx, f, DDN_ST_F64, 2, 3, false);
    load(ctx, f, "dA", DDN_ST_F64);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* ---- tests: IED ------------------------------------------------------------------------------- */
static void ied_roundtrip(ddn_dtype dt, bool with_v, const char *backward,
                          ddn_ied_backward bw)
{
    ddn_ctx *ctx = test_ctx();
    const int64_t B = 2, m = 7;
    ddn_tensor *A = sym_abs(ctx, dt, B, m), *v = randn(ctx, dt, DDN_SHAPE(B, m));
    save(ctx, tmp("ied_in.safetensors"), with_v ? 2 : 1, (const char *[]){"A", "v"},
         (ddn_tensor *[]){A, v});
    run_result r = RUN("solve", "--layer", "ied", "--backward", backward, "--input",
                       tmp("ied_in.safetensors"), "--output", tmp("ied_out.safetensors"));
    expect_success(&r);
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, tmp("ied_out.safetensors"), &f));
    ddn_st_dtype sdt = dt == DDN_DTYPE_F32 ? DDN_ST_F32 : DDN_ST_F64;
    check_diagnostics(ctx, f, sdt, B, m, bw != DDN_IED_BACKWARD_EIGH);
    ddn_tensor *y = load(ctx, f, "y", sdt), *lambda = load(ctx, f, "lambda", sdt);
    /* lambda = y^T A y, and y is A's principal eigenvector: A y = lambda y. */
    double tol = dt == DDN_DTYPE_F32 ? 1e-4 : 1e-9;
    for (int64_t t = 0; t < B; t++) {
        double lam = ddn_tensor_get(lambda, (int64_t[]){t}), q = 0, res = 0;
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t j = 0; j < m; j++)
                s += ddn_tensor_get(A, (int64_t[]){t, i, j}) * ddn_tensor_get(y, (int64_t[]){t, j});
            q += ddn_tensor_get(y, (int64_t[]){t, i}) * s;
            res = fmax(res, fabs(s - lam * ddn_tensor_get(y, (int64_t[]){t, i})));
        }
        assert_true(fabs(q - lam) <= tol * fabs(lam));
        assert_true(res <= tol * fabs(lam));
    }
    if (with_v) {
        ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
        assert_ok(ctx, ddn_tensor_set_requires_grad(A, true));
        ddn_tensor *yl = ddn_ied(ctx, A, &o, bw, NULL, NULL);
        assert_non_null(yl);
        assert_tensor_close(y, yl, 0, 0);
        assert_ok(ctx, ddn_backward_with_grad(ctx, yl, v));
        assert_tensor_close(load(ctx, f, "dA", sdt), A->grad, tol * 1e-2, tol * 1e-2);
    }
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* --device cuda: with a GPU the layer runs in a CUDA context and writes what the CPU run writes
 * (y, lambda, dA to 1e-9 in float64); without one, the one-line reason from ddn_ctx_new and
 * exit 1, nothing written. A third name is a usage error. */
static void test_device(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *A = sym_abs(ctx, DDN_DTYPE_F64, 2, 6);
    ddn_tensor *v = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 6));
    save(ctx, tmp("dev_in.safetensors"), 2, (const char *[]){"A", "v"}, (ddn_tensor *[]){A, v});
#define SOLVE_ON(dev, out) RUN("solve", "--layer", "ied", "--input", tmp("dev_in.safetensors"), \
                               "--output", tmp(out), "--device", dev)
    run_result r = SOLVE_ON("cpu", "dev_cpu.safetensors");
    expect_success(&r);
    const char *why = NULL;
    ddn_ctx *gpu = ddn_ctx_new(DDN_DEVICE_CUDA, &why);
    unlink(tmp("dev_gpu.safetensors"));
    r = SOLVE_ON("cuda", "dev_gpu.safetensors");
    if (gpu) {
        expect_success(&r);
        ddn_st_file *fc = NULL, *fg = NULL;
        assert_ok(ctx, ddn_safetensors_open(ctx, tmp("dev_cpu.safetensors"), &fc));
        assert_ok(ctx, ddn_safetensors_open(ctx, tmp("dev_gpu.safetensors"), &fg));
        static const char *const names[] = {"y", "lambda", "dA"};
        for (int k = 0; k < 3; k++)
            assert_tensor_close(load(ctx, fg, names[k], DDN_ST_F64),
                                load(ctx, fc, names[k], DDN_ST_F64), 1e-9, 1e-9);
        ddn_safetensors_close(fc), ddn_safetensors_close(fg);
        ddn_ctx_free(gpu);
    } else {
        expect_failure(&r, 1, why);
        assert_int_equal(access(tmp("dev_gpu.safetensors"), F_OK), -1);
    }
    r = SOLVE_ON("gpu", "dev_gpu.safetensors");
    expect_failure(&r, 2, "--device");
#undef SOLVE_ON
    ddn_ctx_free(ctx);
}

static void test_ied_f64(void **state) { ied_roundtrip(DDN_DTYPE_F64, false, "ddn-e", DDN_IED_BACKWARD_DDN_E); }
static void test_ied_f32(void **state) { ied_roundtrip(DDN_DTYPE_F32, false, "ift-e", DDN_IED_BACKWARD_IFT_E); }
static void test_ied_grad_f64(void **state) { ied_roundtrip(DDN_DTYPE_F64, true, "ddn-e", DDN_IED_BACKWARD_DDN_E); }
static void test_ied_grad_f32(void **state) { ied_roundtrip(DDN_DTYPE_F32, true, "ift-e", DDN_IED_BACKWARD_IFT_E); }
static void test_ied_eigh(void **state) { ied_roundtrip(DDN_DTYPE_F64, true, "eigh", DDN_IED_BACKWARD_EIGH); }

/* ---- tests: failures -------------------------------------------------------------------------- */
/* Runs `ddn solve --layer layer` on a file holding the given tensors and expects a failure whose
 * line contains needle; the output file must not appear. */
static void expect_solve_failure(ddn_ctx *ctx, const char *layer, int n, const char *const *names,
                                 ddn_tensor *const *ts, const char *extra, const char *needle)
{
    save(ctx, tmp("bad.safetensors"), n, names, ts);
    unlink(tmp("never.safetensors"));
    run_result r = extra ? RUN("solve", "--layer", layer, "--input", tmp("bad.safetensors"),
                               "--output", tmp("never.safetensors"), extra)
                         : RUN("solve", "--layer", layer, "--input", tmp("bad.safetensors"),
                               "--output", tmp("never.safetensors"));
    expect_failure(&r, 1, needle);
    assert_int_not_equal(access(tmp("never.safetensors"), F_OK), 0);
}

static void test_input_errors(void **state)
{
    ddn_ctx *ctx = test_ctx();
    run_result r = RUN("solve", "--layer", "less", "--input", tmp("missing.safetensors"),
                       "--output", tmp("o.safetensors"));
    expect_failure(&r, 1, "missing.safetensors");

    FILE *g = fopen(tmp("corrupt.safetensors"), "wb");
    assert_non_null(g);
    fputs("\x10\0\0\0\0\0\0\0{\"A\": nonsense}", g);
    fclose(g);
    r = RUN("solve", "--layer", "ied", "--input", tmp("corrupt.safetensors"), "--output",
            tmp("o.safetensors"));
    expect_failure(&r, 1, "corrupt.safetensors");

    ddn_tensor *A = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4, 3));
    ddn_tensor *b = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4));
    expect_solve_failure(ctx, "less", 1, (const char *[]){"b"}, (ddn_tensor *[]){b}, NULL, "'A'");
    expect_solve_failure(ctx, "less", 1, (const char *[]){"A"}, (ddn_tensor *[]){A}, NULL, "'b'");
    ddn_tensor *A2 = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(4, 3));
    expect_solve_failure(ctx, "less", 2, (const char *[]){"A", "b"}, (ddn_tensor *[]){A2, b},
                         NULL, "(B,m,n)");
    ddn_tensor *b_bad = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 5));
    expect_solve_failure(ctx, "less", 2, (const char *[]){"A", "b"}, (ddn_tensor *[]){A, b_bad},
                         NULL, "'b' has shape (2,5)");
    ddn_tensor *v_bad = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4));
    expect_solve_failure(ctx, "less", 3, (const char *[]){"A", "b", "v"},
                         (ddn_tensor *[]){A, b, v_bad}, NULL, "'v'");
    expect_solve_failure(ctx, "ied", 1, (const char *[]){"A"}, (ddn_tensor *[]){A}, NULL,
                         "square");
    ddn_tensor *b32 = randn(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 4));
    expect_solve_failure(ctx, "less", 2, (const char *[]){"A", "b"}, (ddn_tensor *[]){A, b32},
                         NULL, "one dtype");
    ddn_tensor *Ai = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3, 3));
    expect_solve_failure(ctx, "ied", 1, (const char *[]){"A"}, (ddn_tensor *[]){Ai}, NULL, "I64");

    /* Solver failures: the library's message (naming the item) is the line. */
    ddn_tensor *Anan = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4, 3));
    ((double *)ddn_tensor_ptr(Anan))[13] = NAN;
    expect_solve_failure(ctx, "less", 2, (const char *[]){"A", "b"}, (ddn_tensor *[]){Anan, b},
                         NULL, "item 1");
    ddn_tensor *A0 = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 3, 3));
    expect_solve_failure(ctx, "ied", 1, (const char *[]){"A"}, (ddn_tensor *[]){A0}, NULL,
                         "item 0");

    /* Strict mode: non-convergence is an error, and nothing is written. */
    ddn_tensor *Ab = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 30, 20));
    ddn_tensor *bb = randn(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 30));
    save(ctx, tmp("strict.safetensors"), 2, (const char *[]){"A", "b"}, (ddn_tensor *[]){Ab, bb});
    r = RUN("solve", "--layer", "less", "--method", "pgd", "--max-iter", "2", "--strict",
            "--input", tmp("strict.safetensors"), "--output", tmp("never.safetensors"));
    expect_failure(&r, 1, "converge");
    assert_int_not_equal(access(tmp("never.safetensors"), F_OK), 0);

    /* An output that cannot be written names the path. */
    r = RUN("solve", "--layer", "less", "--input", tmp("strict.safetensors"), "--output",
            "/nonexistent-dir/y.safetensors");
    expect_failure(&r, 1, "/nonexistent-dir/y.safetensors");
    ddn_ctx_free(ctx);
}

/* The less-effect table runs end to end on a tiny size (the bench's parsing and output). */
static void test_bench_less_effect(void **state)
{
    run_result r = RUN("bench", "--table", "less-effect", "--samples", "20", "--sizes", "2x2",
                       "--threads", "1");
    expect_success(&r);
    assert_non_null(strstr(r.out, "| PGD+RM+TWD |"));
    assert_non_null(strstr(r.out, "OpenBLAS core"));
}

/* ddn bench --device: parse errors; the IED and resnet-ied tables on the CPU (tiny, timed with the
 * host-clock events); on CUDA with a device the same runs must succeed on the device, and without
 * one each exits 1 with the one line from ddn_ctx_new before printing any table. */
static void test_bench_device(void **state)
{
    (void)state;
    run_result r = RUN("bench", "--table", "ied", "--device", "gpu");
    expect_failure(&r, 2, "--device");
    r = RUN("bench", "--table", "less-effect", "--device", "cuda");
    expect_failure(&r, 2, "--device cuda applies to");
    r = RUN("bench", "--table", "resnet-ied", "--dtype", "f64");
    expect_failure(&r, 2, "float32 only");
    r = RUN("bench", "--table", "resnet-ied", "--sizes", "16");
    expect_failure(&r, 2, "at least 32");
#define IED_ON(dev) RUN("bench", "--table", "ied", "--sizes", "8", "--dtype", "f32", "--symmetry", \
                        "sym", "--runs", "1", "--threads", "1", "--device", dev)
#define RESNET_ON(dev) RUN("bench", "--table", "resnet-ied", "--batch", "2", "--runs", "1", \
                           "--warmup", "0", "--threads", "1", "--device", dev)
    r = IED_ON("cpu");
    expect_success(&r);
    assert_non_null(strstr(r.out, "| 8 | PI-IFT-E |"));
    assert_null(strstr(r.out, "error:"));
    r = RESNET_ON("cpu");
    expect_success(&r);
    assert_non_null(strstr(r.out, "| cpu | 2 | 32x32 |"));
    assert_non_null(strstr(r.out, "RESULT ddn batch=2 size=32 device=cpu"));
    const char *why = NULL;
    ddn_ctx *gpu = ddn_ctx_new(DDN_DEVICE_CUDA, &why);
    r = IED_ON("cuda");
    if (gpu) {
        expect_success(&r);
        assert_non_null(strstr(r.out, "Device: cuda"));
        assert_null(strstr(r.out, "error:"));
        r = RESNET_ON("cuda");
        expect_success(&r);
        assert_non_null(strstr(r.out, "RESULT ddn batch=2 size=32 device=cuda"));
        ddn_ctx_free(gpu);
    } else {
        expect_failure(&r, 1, why);
        assert_string_equal(r.out, "");
        r = RESNET_ON("cuda");
        expect_failure(&r, 1, "no CUDA");
        assert_string_equal(r.out, "");
    }
#undef IED_ON
#undef RESNET_ON
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/ddn_cli_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    static const char *const files[] = {
        "stdout.txt", "stderr.txt", "less_in.safetensors", "less_out.safetensors",
        "in.safetensors", "out.safetensors", "ied_in.safetensors", "ied_out.safetensors",
        "bad.safetensors", "corrupt.safetensors", "strict.safetensors", "never.safetensors",
        "o.safetensors", "dev_in.safetensors", "dev_cpu.safetensors", "dev_gpu.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(tmp(files[i]));
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_version), cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_less_f64),         cmocka_unit_test(test_less_f32),
        cmocka_unit_test(test_less_grad_f64),    cmocka_unit_test(test_less_grad_f32),
        cmocka_unit_test(test_less_exact_and_j), cmocka_unit_test(test_ied_f64),
        cmocka_unit_test(test_ied_f32),          cmocka_unit_test(test_ied_grad_f64),
        cmocka_unit_test(test_ied_grad_f32),     cmocka_unit_test(test_ied_eigh),
        cmocka_unit_test(test_input_errors),     cmocka_unit_test(test_bench_less_effect),
        cmocka_unit_test(test_device),           cmocka_unit_test(test_bench_device),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
