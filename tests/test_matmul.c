/* ddn — tests of matmul and linear (layers/matmul.c, core/cpu/blas.c): forward against naive
 * loops in double for 2-D, batched, broadcast, 1-D, transposed, sliced and expanded operands;
 * float64 gradient checks of each; a 257x129 @ 129x65 product in float32 and float64 within the
 * classical gemm error bound; the kernel's beta = 0 NaN safety; gradient accumulation; errors. */
#include <math.h>
#include <string.h>

#include "ddn_impl.h"
#include "test_util.h"

/* ---- an independent torch.matmul in loops ----------------------------------------------------- */
static ddn_tensor *naive_matmul(ddn_ctx *ctx, const ddn_tensor *a, const ddn_tensor *b)
{
    int ad = a->ndim, bd = b->ndim;
    int64_t M = ad == 1 ? 1 : a->shape[ad - 2], K = a->shape[ad - 1];
    int64_t N = bd == 1 ? 1 : b->shape[bd - 1];
    int na = ad > 2 ? ad - 2 : 0, nbb = bd > 2 ? bd - 2 : 0, nb = na > nbb ? na : nbb;
    int64_t batch[DDN_MAX_DIMS], shape[DDN_MAX_DIMS], nbatch = 1;
    int ny = 0;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - na), ib = i - (nb - nbb);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        batch[i] = sa > sb ? sa : sb;
        shape[ny++] = batch[i];
        nbatch *= batch[i];
    }
    if (ad > 1) shape[ny++] = M;
    if (bd > 1) shape[ny++] = N;
    double *out = test_malloc((size_t)(nbatch * M * N + 1) * sizeof *out);
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t idx[DDN_MAX_DIMS], rem = bi;
        for (int i = nb - 1; i >= 0; i--) idx[i] = rem % batch[i], rem /= batch[i];
        int64_t ia[DDN_MAX_DIMS], ib[DDN_MAX_DIMS];
        for (int i = 0; i < na; i++) ia[i] = a->shape[i] == 1 ? 0 : idx[i + nb - na];
        for (int i = 0; i < nbb; i++) ib[i] = b->shape[i] == 1 ? 0 : idx[i + nb - nbb];
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) {
                    if (ad == 1) ia[0] = k;
                    else ia[ad - 2] = m, ia[ad - 1] = k;
                    if (bd == 1) ib[0] = k;
                    else ib[bd - 2] = k, ib[bd - 1] = n;
                    acc += ddn_tensor_get(a, ia) * ddn_tensor_get(b, ib);
                }
                out[(bi * M + m) * N + n] = acc;
            }
    }
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ny, shape, out);
    test_free(out);
    return t;
}

/* ---- cases: operand shapes as matmul sees them, and how each operand is made ------------------ */
typedef enum { PLAIN, TRANSPOSED, SLICED, EXPANDED } prep_kind;

typedef struct {
    int nda;
    int64_t sa[DDN_MAX_DIMS];
    int ndb;
    int64_t sb[DDN_MAX_DIMS];
    prep_kind pa, pb;
} mm_case;

static const mm_case cases[] = {
    {2, {3, 4}, 2, {4, 5}, PLAIN, PLAIN},
    {3, {2, 3, 4}, 3, {2, 4, 5}, PLAIN, PLAIN},
    {4, {2, 3, 4, 5}, 2, {5, 6}, PLAIN, PLAIN},       /* b broadcast: folded into one gemm */
    {4, {3, 1, 4, 5}, 3, {2, 5, 6}, PLAIN, PLAIN},    /* both broadcast */
    {2, {4, 5}, 3, {3, 5, 6}, PLAIN, PLAIN},          /* a broadcast: dA summed per item */
    {3, {1, 3, 4}, 3, {5, 4, 2}, PLAIN, PLAIN},
    {1, {4}, 2, {4, 5}, PLAIN, PLAIN},
    {2, {3, 4}, 1, {4}, PLAIN, PLAIN},
    {1, {4}, 1, {4}, PLAIN, PLAIN},
    {1, {4}, 3, {2, 4, 5}, PLAIN, PLAIN},
    {3, {2, 3, 4}, 1, {4}, PLAIN, PLAIN},
    {2, {3, 4}, 2, {4, 5}, TRANSPOSED, TRANSPOSED},   /* both go to BLAS as "T" */
    {3, {2, 3, 4}, 2, {4, 5}, TRANSPOSED, PLAIN},
    {2, {3, 4}, 3, {2, 4, 5}, SLICED, TRANSPOSED},    /* sliced: copied to scratch */
    {3, {3, 4, 2}, 3, {3, 2, 5}, PLAIN, EXPANDED},    /* stride-0 batch dim */
    {3, {3, 4, 2}, 3, {3, 2, 5}, EXPANDED, SLICED},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* The leaf shape from which prep() makes the operand. */
static int leaf_shape(int nd, const int64_t *seen, prep_kind p, int64_t *shape)
{
    memcpy(shape, seen, sizeof(int64_t) * (size_t)nd);
    if (p == TRANSPOSED) shape[nd - 1] = seen[nd - 2], shape[nd - 2] = seen[nd - 1];
    if (p == SLICED) shape[nd - 1] = 2 * seen[nd - 1];
    if (p == EXPANDED) shape[0] = 1;
    return nd;
}

static ddn_tensor *prep(ddn_ctx *ctx, ddn_tensor *t, prep_kind p, int nd, const int64_t *seen)
{
    switch (p) {
    case TRANSPOSED: return ddn_transpose(ctx, t, -1, -2);
    case SLICED: return ddn_slice(ctx, t, -1, 0, INT64_MAX, 2);
    case EXPANDED: return ddn_expand(ctx, t, nd, seen);
    default: return t;
    }
}

static ddn_tensor *f_matmul(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const mm_case *c = u;
    return ddn_matmul(ctx, prep(ctx, in[0], c->pa, c->nda, c->sa),
                      prep(ctx, in[1], c->pb, c->ndb, c->sb));
}

static void test_matmul_forward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int dt = 0; dt < 2; dt++) {
        for (int i = 0; i < N_CASES; i++) {
            const mm_case *c = &cases[i];
            int64_t la[DDN_MAX_DIMS], lb[DDN_MAX_DIMS];
            ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
            ddn_tensor *a = ddn_rand_uniform(ctx, NULL, t, leaf_shape(c->nda, c->sa, c->pa, la),
                                             la, -1, 1);
            ddn_tensor *b = ddn_rand_uniform(ctx, NULL, t, leaf_shape(c->ndb, c->sb, c->pb, lb),
                                             lb, -1, 1);
            ddn_tensor *in[2] = {a, b};
            ddn_tensor *y = f_matmul(ctx, in, (void *)c);
            assert_non_null(y);
            ddn_tensor *e = naive_matmul(ctx, prep(ctx, a, c->pa, c->nda, c->sa),
                                         prep(ctx, b, c->pb, c->ndb, c->sb));
            /* K <= 6 terms of size <= 1: float32 gemm error stays below 6 * 2^-24 * 6 */
            assert_tensor_close(y, e, dt ? 1e-14 : 3e-6, 0);
        }
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

static void test_matmul_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int i = 0; i < N_CASES; i++) {
        const mm_case *c = &cases[i];
        int64_t la[DDN_MAX_DIMS], lb[DDN_MAX_DIMS];
        ddn_tensor *in[2] = {
            test_leaf(ctx, leaf_shape(c->nda, c->sa, c->pa, la), la, -1, 1),
            test_leaf(ctx, leaf_shape(c->ndb, c->sb, c->pb, lb), lb, -1, 1),
        };
        assert_gradcheck(ctx, f_matmul, (void *)c, 2, in, NULL);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* The same leaf on both sides: both gradients accumulate into one buffer. */
static ddn_tensor *f_self(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    (void)u;
    ddn_tensor *t = ddn_matmul(ctx, in[0], in[0]);
    return ddn_matmul(ctx, t, ddn_transpose(ctx, in[0], 0, 1));
}

static void test_matmul_shared_input(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *x = test_leaf(ctx, DDN_SHAPE(4, 4), -1, 1);
    assert_gradcheck(ctx, f_self, NULL, 1, &x, NULL);
    ddn_ctx_free(ctx);
}

/* Many small matrices (the batch-parallel path) and one big product (BLAS threads). */
static void test_matmul_sizes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *a = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(64, 8, 7), -1, 1);
    ddn_tensor *b = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(64, 7, 9), -1, 1);
    assert_tensor_close(ddn_matmul(ctx, a, b), naive_matmul(ctx, a, b), 1e-14, 0);

    const int64_t M = 257, K = 129, N = 65;
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        ddn_tensor *x = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(M, K), -1, 1);
        ddn_tensor *w = ddn_rand_uniform(ctx, NULL, t, DDN_SHAPE(N, K), -1, 1);
        ddn_tensor *wt = ddn_transpose(ctx, w, 0, 1); /* (K, N), passed as "T" */
        ddn_tensor *ys[2] = {ddn_matmul(ctx, x, wt), ddn_matmul(ctx, x, ddn_contiguous(ctx, wt))};
        double *xv = test_malloc((size_t)(M * K) * sizeof *xv);
        double *wv = test_malloc((size_t)(N * K) * sizeof *wv);
        double *yv = test_malloc((size_t)(M * N) * sizeof *yv);
        assert_ok(ctx, ddn_tensor_to_host(x, DDN_DTYPE_F64, xv));
        assert_ok(ctx, ddn_tensor_to_host(w, DDN_DTYPE_F64, wv));
        /* |computed - exact| <= K u sum_k |x_ik w_jk| (Higham, Accuracy and Stability, 3.5),
         * u the unit roundoff. Allow that twice: once for the gemm and once for the reference
         * (its own double sum: negligible for float32, the same bound for float64) plus the
         * rounding of the result. */
        double u = dt ? ldexp(1.0, -53) : ldexp(1.0, -24);
        for (int v = 0; v < 2; v++) {
            assert_ok(ctx, ddn_tensor_to_host(ys[v], DDN_DTYPE_F64, yv));
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++) {
                        acc += xv[i * K + k] * wv[j * K + k];
                        mag += fabs(xv[i * K + k] * wv[j * K + k]);
                    }
                    double err = fabs(yv[i * N + j] - acc), bound = 2 * (double)K * u * mag;
                    if (!(err <= bound))
                        fail_msg("dtype %d variant %d [%lld,%lld]: %.17g vs %.17g (bound %.3g)",
                                 dt, v, (long long)i, (long long)j, yv[i * N + j], acc, bound);
                }
        }
        test_free(xv);
        test_free(wv);
        test_free(yv);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* Kernel contract: beta = 0 ignores NaN in out; alpha and beta scale; an empty inner dim. */
static void test_matmul_kernel(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const double av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {1, 0, -1, 2, 1, 0};
    for (int dt = 0; dt < 2; dt++) {
        ddn_dtype t = dt ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        ddn_tensor *a = ddn_cast(ctx, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3),
                                                           av), t);
        ddn_tensor *b = ddn_cast(ctx, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(3, 2),
                                                           bv), t);
        ddn_tensor *out = ddn_full(ctx, t, DDN_SHAPE(2, 2), NAN);
        assert_ok(ctx, ddn_k(out)->matmul(out, a, b, 1.0, 0.0));
        /* [1 2 3; 4 5 6] @ [1 0; -1 2; 1 0] = [2 4; 5 10] */
        const double want[4] = {2, 4, 5, 10};
        ddn_tensor *w = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2), want);
        assert_tensor_close(out, w, 0, 0);
        assert_ok(ctx, ddn_k(out)->matmul(out, a, b, 2.0, 3.0)); /* 2 AB + 3 AB = 5 AB */
        const double want5[4] = {10, 20, 25, 50};
        assert_tensor_close(out, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2), want5),
                            0, 0);
        ddn_tensor *e = ddn_matmul(ctx, ddn_zeros(ctx, t, DDN_SHAPE(2, 0)),
                                   ddn_zeros(ctx, t, DDN_SHAPE(0, 3)));
        assert_non_null(e);
        assert_tensor_close(e, ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3)), 0, 0);
    }
    ddn_ctx_free(ctx);
}

/* ---- linear ----------------------------------------------------------------------------------- */
static ddn_tensor *f_linear(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    const int *mode = u; /* 0: no bias; 1: bias; 2: bias and a transposed x */
    ddn_tensor *x = *mode == 2 ? ddn_transpose(ctx, in[0], 0, 1) : in[0];
    return ddn_linear(ctx, x, in[1], *mode ? in[2] : NULL);
}

static void test_linear(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int mode = 0; mode < 3; mode++) {
        ddn_tensor *in[3] = {
            mode == 2 ? test_leaf(ctx, DDN_SHAPE(3, 5), -1, 1) : test_leaf(ctx, DDN_SHAPE(5, 3), -1, 1),
            test_leaf(ctx, DDN_SHAPE(4, 3), -1, 1),
            test_leaf(ctx, DDN_SHAPE(4), -1, 1),
        };
        assert_gradcheck(ctx, f_linear, &mode, mode ? 3 : 2, in, NULL);
        /* forward: y[n,o] = sum_i x[n,i] w[o,i] + b[o] */
        ddn_tensor *y = f_linear(ctx, in, &mode);
        ddn_tensor *x = mode == 2 ? ddn_transpose(ctx, in[0], 0, 1) : in[0];
        for (int64_t n = 0; n < 5; n++)
            for (int64_t o = 0; o < 4; o++) {
                double acc = mode ? ddn_tensor_get(in[2], &o) : 0;
                for (int64_t i = 0; i < 3; i++)
                    acc += ddn_tensor_get(x, (int64_t[]){n, i}) *
                           ddn_tensor_get(in[1], (int64_t[]){o, i});
                assert_true(fabs(ddn_tensor_get(y, (int64_t[]){n, o}) - acc) < 1e-14);
            }
        ddn_ctx_reset_step(ctx);
    }
    /* float32 forward */
    ddn_tensor *x = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(6, 7), -1, 1);
    ddn_tensor *w = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(3, 7), -1, 1);
    ddn_tensor *b = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(3), -1, 1);
    ddn_tensor *y = ddn_linear(ctx, x, w, b);
    ddn_tensor *e = naive_matmul(ctx, x, ddn_transpose(ctx, w, 0, 1));
    for (int64_t n = 0; n < 6; n++)
        for (int64_t o = 0; o < 3; o++)
            assert_true(fabs(ddn_tensor_get(y, (int64_t[]){n, o}) -
                             (ddn_tensor_get(e, (int64_t[]){n, o}) + ddn_tensor_get(b, &o))) <
                        4e-6);
    ddn_ctx_free(ctx);
}

/* Gradients accumulate across backward passes into a persistent parameter. */
static void test_linear_accumulates(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *w = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3));
    assert_ok(ctx, ddn_tensor_fill_uniform(w, NULL, -1, 1));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w, true));
    double once[6], twice[6];
    ddn_rng rng;
    for (int pass = 0; pass < 2; pass++) {
        ddn_rng_seed(&rng, 7);
        ddn_tensor *x = ddn_rand_uniform(ctx, &rng, DDN_DTYPE_F64, DDN_SHAPE(4, 3), -1, 1);
        ddn_tensor *y = ddn_linear(ctx, x, w, NULL);
        assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, y, 0, NULL, false)));
        assert_ok(ctx, ddn_tensor_to_host(w->grad, DDN_DTYPE_F64, pass ? twice : once));
        ddn_ctx_reset_step(ctx);
    }
    for (int i = 0; i < 6; i++) assert_true(fabs(twice[i] - 2 * once[i]) < 1e-14);
    ddn_tensor_free(w);
    ddn_ctx_free(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *a = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3));
    ddn_tensor *b = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(4, 5));
    assert_null(ddn_matmul(ctx, a, b));
    assert_error(ctx, DDN_ERR_SHAPE, "matmul: (2,3) @ (4,5): inner dims 3 and 4 differ");
    assert_null(ddn_matmul(ctx, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 4)),
                           ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(5, 4, 6))));
    assert_error(ctx, DDN_ERR_SHAPE, "matmul: (2,3,4) @ (5,4,6): batch dims do not broadcast "
                                     "(2 vs 5)");
    assert_null(ddn_matmul(ctx, ddn_scalar(ctx, DDN_DTYPE_F32, 1), a));
    assert_error(ctx, DDN_ERR_SHAPE, "matmul: () @ (2,3): both operands need at least one dim");
    assert_null(ddn_matmul(ctx, a, ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(3, 2))));
    assert_error(ctx, DDN_ERR_DTYPE, "matmul: inputs are float32 and float64");
    assert_null(ddn_matmul(ctx, ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3)), a));
    assert_error(ctx, DDN_ERR_DTYPE, "matmul: expected a float32 or float64 tensor, got int64");
    assert_null(ddn_linear(ctx, a, b, NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "linear: x (2,3) and weight (4,5)");
    assert_null(ddn_linear(ctx, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 2, 3)),
                           ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(4, 3)), NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "linear: x (2,2,3) and weight (4,3): expected x (N, in)");
    assert_null(ddn_linear(ctx, a, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(4, 3)),
                           ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(5))));
    assert_error(ctx, DDN_ERR_SHAPE, "linear: bias (5) does not fit weight (4,3): expected (4)");
    assert_null(ddn_linear(ctx, a, ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(4, 3)),
                           ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(4))));
    assert_error(ctx, DDN_ERR_DTYPE, "linear: inputs are float32 and float64");
    assert_null(ddn_matmul(ctx, NULL, a));
    assert_null(ddn_matmul(ctx, a, NULL));
    assert_null(ddn_linear(ctx, NULL, b, NULL));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_forward),  cmocka_unit_test(test_matmul_gradients),
        cmocka_unit_test(test_matmul_shared_input), cmocka_unit_test(test_matmul_sizes),
        cmocka_unit_test(test_matmul_kernel),   cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_accumulates), cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
