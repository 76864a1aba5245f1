/* ddn — test helpers (see test_util.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"

/* Prints "ERROR: <message>" and fails the running test at file:line (does not return). */
static void fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_error("ERROR: ");
    vprint_error(fmt, ap);
    print_error("\n");
    va_end(ap);
    _fail(file, line);
}

ddn_ctx *test_ctx(void)
{
    const char *why = NULL;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, &why);
    if (!ctx) fail_msg("ddn_ctx_new: %s", why ? why : "?");
    return ctx;
}

void test_assert_ok(ddn_ctx *ctx, ddn_status st, const char *expr, const char *file, int line)
{
    if (st != DDN_OK)
        fail_at(file, line, "%s returned %s: %s", expr, ddn_status_str(st),
                     ddn_ctx_errmsg(ctx));
}

void test_assert_error(ddn_ctx *ctx, ddn_status status, const char *needle, const char *file,
                       int line)
{
    ddn_status got = ddn_ctx_status(ctx);
    const char *msg = ddn_ctx_errmsg(ctx);
    if (got != status)
        fail_at(file, line, "expected status '%s', got '%s' (message: \"%s\")",
                     ddn_status_str(status), ddn_status_str(got), msg);
    if (needle && !strstr(msg, needle))
        fail_at(file, line, "message \"%s\" does not contain \"%s\"", msg, needle);
    ddn_ctx_clear_error(ctx);
}

void test_assert_gradcheck(ddn_ctx *ctx, ddn_gradcheck_fn fn, void *user, int n,
                           ddn_tensor *const *inputs, const ddn_gradcheck_opts *opts,
                           const char *name, const char *file, int line)
{
    ddn_gradcheck_result r;
    ddn_status st = ddn_gradcheck(ctx, fn, user, n, inputs, opts, &r);
    if (st != DDN_OK)
        fail_at(file, line, "gradcheck(%s) could not run: %s", name, ddn_ctx_errmsg(ctx));
    if (r.checked == 0) fail_at(file, line, "gradcheck(%s) checked no entry", name);
    if (!r.passed)
        fail_at(file, line, "gradcheck(%s): input %d entry %lld analytic %.10g numeric %.10g "
                     "(max abs err %.3g, max rel err %.3g over %lld entries)", name,
                     r.worst_input, (long long)r.worst_index, r.worst_analytic, r.worst_numeric,
                     r.max_abs_err, r.max_rel_err, (long long)r.checked);
}

void test_assert_tensor_close(const ddn_tensor *actual, const ddn_tensor *expected, double atol,
                              double rtol, const char *file, int line)
{
    if (!actual || !expected) fail_at(file, line, "tensor is NULL");
    char a[96], e[96];
    if (!ddn_tensor_same_shape(actual, expected))
        fail_at(file, line, "shape %s, expected %s", ddn_shape_str(actual, a, sizeof a),
                     ddn_shape_str(expected, e, sizeof e));
    int64_t n = ddn_tensor_numel(actual);
    double *av = test_malloc((size_t)(n ? n : 1) * sizeof(double));
    double *ev = test_malloc((size_t)(n ? n : 1) * sizeof(double));
    if (ddn_tensor_to_host(actual, DDN_DTYPE_F64, av) != DDN_OK ||
        ddn_tensor_to_host(expected, DDN_DTYPE_F64, ev) != DDN_OK)
        fail_at(file, line, "cannot read tensors: %s", ddn_ctx_errmsg(actual->ctx));
    double max_abs = 0, max_rel = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(av[i] - ev[i]);
        bool same_nonfinite =
            !isfinite(ev[i]) && (av[i] == ev[i] || (isnan(av[i]) && isnan(ev[i])));
        if (same_nonfinite) continue;
        /* A non-finite expectation must be met exactly: with ev = inf, rtol * |ev| would
         * otherwise accept any value. */
        if (!isfinite(ev[i]) || !(d <= atol + rtol * fabs(ev[i]))) {
            if (bad < 5)
                print_error("  [%lld] actual %.9g expected %.9g\n", (long long)i, av[i], ev[i]);
            bad++;
        }
        if (!(d <= max_abs)) max_abs = d;
        double rel = d / fmax(fabs(ev[i]), 1e-30);
        if (!(rel <= max_rel)) max_rel = rel;
    }
    test_free(av);
    test_free(ev);
    if (bad)
        fail_at(file, line, "%lld of %lld entries differ (max abs %.3g, max rel %.3g; atol %g "
                     "rtol %g)", (long long)bad, (long long)n, max_abs, max_rel, atol, rtol);
}

ddn_tensor *test_leaf(ddn_ctx *ctx, int ndim, const int64_t *shape, double lo, double hi)
{
    ddn_tensor *t = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, ndim, shape, lo, hi);
    if (!t || ddn_tensor_set_requires_grad(t, true) != DDN_OK)
        fail_msg("test_leaf: %s", ddn_ctx_errmsg(ctx));
    return t;
}

ddn_tensor *test_fixture(ddn_ctx *ctx, const ddn_st_file *f, int64_t *used, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
    if (!t) fail_msg("fixture tensor %s: %s", name, ddn_ctx_errmsg(ctx));
    if (used) (*used)++;
    return t;
}

const char *test_data_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", DDN_TEST_DATA_DIR, name);
    return buf;
}
