/* ddn — test helpers shared by every tests/test_*.c (CMocka). */
#ifndef DDN_TEST_UTIL_H
#define DDN_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ddn.h"

/* A fresh CPU context (fails the test if none). */
ddn_ctx *test_ctx(void);

/* Fails with the context's message unless st is DDN_OK. */
#define assert_ok(ctx, st) test_assert_ok((ctx), (st), #st, __FILE__, __LINE__)
void test_assert_ok(ddn_ctx *ctx, ddn_status st, const char *expr, const char *file, int line);

/* Fails unless the context holds error `status` whose message contains `needle`; clears it. */
#define assert_error(ctx, status, needle)                                                      \
    test_assert_error((ctx), (status), (needle), __FILE__, __LINE__)
void test_assert_error(ddn_ctx *ctx, ddn_status status, const char *needle, const char *file,
                       int line);

/* Runs ddn_gradcheck and fails with the worst entry when it does not pass. opts may be NULL. */
#define assert_gradcheck(ctx, fn, user, n, inputs, opts)                                       \
    test_assert_gradcheck((ctx), (fn), (user), (n), (inputs), (opts), #fn, __FILE__, __LINE__)
void test_assert_gradcheck(ddn_ctx *ctx, ddn_gradcheck_fn fn, void *user, int n,
                           ddn_tensor *const *inputs, const ddn_gradcheck_opts *opts,
                           const char *name, const char *file, int line);

/* Elementwise |a - e| <= atol + rtol * |e| (shapes must match); prints the first mismatches and
 * the max absolute and relative error on failure. */
#define assert_tensor_close(actual, expected, atol, rtol)                                      \
    test_assert_tensor_close((actual), (expected), (atol), (rtol), __FILE__, __LINE__)
void test_assert_tensor_close(const ddn_tensor *actual, const ddn_tensor *expected, double atol,
                              double rtol, const char *file, int line);

/* A float64 step tensor of uniform values in [lo, hi) that requires grad (a gradcheck input). */
ddn_tensor *test_leaf(ddn_ctx *ctx, int ndim, const int64_t *shape, double lo, double hi);

/* The tensor named by the printf-style name in a fixture file; fails the test when it is missing.
 * Counts loads in *used (may be NULL), so a test can check that it compared every tensor. */
ddn_tensor *test_fixture(ddn_ctx *ctx, const ddn_st_file *f, int64_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* tests/data/<name> */
const char *test_data_path(const char *name);

#endif
