/* ddn — the dense linear-algebra kernels of the backend table on the CPU (lu_solve,
 * cholesky_solve, eigh, qr): residuals of random well-conditioned problems in float32 and
 * float64, aliasing, and the failure messages. tests/test_cuda.c compares the CUDA versions with
 * these. */
#include <math.h>
#include <string.h>

#include "ddn_impl.h"
#include "test_util.h"

/* s I, batched (B, n, n). */
static ddn_tensor *scaled_eye(ddn_ctx *ctx, ddn_dtype dt, int64_t B, int64_t n, double s)
{
    ddn_tensor *eye = ddn_zeros(ctx, dt, DDN_SHAPE(B, n, n));
    assert_non_null(eye);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++)
            assert_ok(ctx, ddn_tensor_fill(ddn_view_raw(ctx, eye, 0, NULL, NULL,
                                                        (b * n + i) * n + i), s));
    return eye;
}

/* Random (B, n, n) with n added to the diagonal: well conditioned. */
static ddn_tensor *diag_heavy(ddn_ctx *ctx, ddn_dtype dt, int64_t B, int64_t n, uint64_t seed)
{
    ddn_rng rng;
    ddn_rng_seed(&rng, seed);
    ddn_tensor *a = ddn_rand_uniform(ctx, &rng, dt, DDN_SHAPE(B, n, n), -1, 1);
    return ddn_add(ctx, a, scaled_eye(ctx, dt, B, n, (double)n));
}

/* a + a^T (symmetric), contiguous. */
static ddn_tensor *symmetrise(ddn_ctx *ctx, ddn_tensor *a)
{
    return ddn_contiguous(ctx, ddn_add(ctx, a, ddn_transpose(ctx, a, -1, -2)));
}

static double tol(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? 2e-4 : 1e-10; }

static void test_solves(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        ddn_tensor *a = diag_heavy(ctx, dt, 3, 6, 1);
        ddn_rng rng;
        ddn_rng_seed(&rng, 2);
        ddn_tensor *b = ddn_rand_uniform(ctx, &rng, dt, DDN_SHAPE(3, 6, 2), -1, 1);
        ddn_tensor *x = ddn_zeros(ctx, dt, DDN_SHAPE(3, 6, 2));
        assert_ok(ctx, ddn_k(x)->lu_solve(x, a, b));
        assert_tensor_close(ddn_matmul(ctx, a, x), b, tol(dt), tol(dt));
        /* in place: x may be b */
        ddn_tensor *b2 = ddn_contiguous(ctx, ddn_mul_scalar(ctx, b, 1.0));
        assert_ok(ctx, ddn_k(x)->lu_solve(b2, a, b2));
        assert_tensor_close(b2, x, 0, 0);
        /* symmetric positive definite: a a^T + n I */
        ddn_tensor *spd = symmetrise(ctx, a);
        assert_ok(ctx, ddn_k(x)->cholesky_solve(x, spd, b));
        assert_tensor_close(ddn_matmul(ctx, spd, x), b, tol(dt), tol(dt));
    }
    /* item 1 singular; a negative definite item is not positive definite */
    ddn_tensor *a = diag_heavy(ctx, DDN_DTYPE_F64, 2, 3, 3);
    ddn_tensor *b = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3, 1));
    ddn_tensor *x = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3, 1));
    memset((double *)a->data + 9, 0, 9 * sizeof(double));
    assert_int_equal(ddn_k(x)->lu_solve(x, a, b), DDN_ERR_SINGULAR);
    assert_error(ctx, DDN_ERR_SINGULAR, "lu_solve: item 1 is singular");
    ddn_tensor *neg = ddn_full(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 2, 2), -1.0);
    ddn_tensor *b1 = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(1, 2, 1));
    assert_int_equal(ddn_k(b1)->cholesky_solve(b1, neg, b1), DDN_ERR_SINGULAR);
    assert_error(ctx, DDN_ERR_SINGULAR, "item 0 is not positive definite");
    assert_int_equal(ddn_k(x)->lu_solve(x, b, b), DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "lu_solve: expected a (B.., n, n)");
    ddn_ctx_free(ctx);
}

static void test_eigh_and_qr(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        ddn_rng rng;
        ddn_rng_seed(&rng, 4);
        ddn_tensor *a = symmetrise(ctx, ddn_rand_uniform(ctx, &rng, dt, DDN_SHAPE(2, 7, 7), -1, 1));
        ddn_tensor *w = ddn_zeros(ctx, dt, DDN_SHAPE(2, 7));
        ddn_tensor *v = ddn_zeros(ctx, dt, DDN_SHAPE(2, 7, 7));
        assert_ok(ctx, ddn_k(w)->eigh(w, v, a));
        for (int64_t i = 0; i + 1 < 7; i++)
            assert_true(ddn_tensor_get(w, (int64_t[]){1, i}) <=
                        ddn_tensor_get(w, (int64_t[]){1, i + 1}));
        /* a v = v diag(w) */
        ddn_tensor *vw = ddn_mul(ctx, v, ddn_reshape(ctx, w, 3, (const int64_t[]){2, 1, 7}));
        assert_tensor_close(ddn_matmul(ctx, a, v), vw, 10 * tol(dt), 10 * tol(dt));
        ddn_tensor *w_only = ddn_zeros(ctx, dt, DDN_SHAPE(2, 7));
        assert_ok(ctx, ddn_k(w)->eigh(w_only, NULL, a));
        assert_tensor_close(w_only, w, tol(dt), tol(dt));
        /* qr: q^T q = I, q q^T a = a */
        ddn_tensor *m = ddn_rand_uniform(ctx, &rng, dt, DDN_SHAPE(3, 8, 3), -1, 1);
        ddn_tensor *q = ddn_zeros(ctx, dt, DDN_SHAPE(3, 8, 3));
        assert_ok(ctx, ddn_k(q)->qr(q, m));
        ddn_tensor *qt = ddn_transpose(ctx, q, -1, -2);
        ddn_tensor *eye = scaled_eye(ctx, dt, 3, 3, 1.0);
        assert_tensor_close(ddn_matmul(ctx, qt, q), eye, tol(dt), 0);
        assert_tensor_close(ddn_matmul(ctx, q, ddn_matmul(ctx, qt, m)), m, tol(dt), tol(dt));
    }
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_solves),
        cmocka_unit_test(test_eigh_and_qr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
