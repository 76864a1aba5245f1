/* ddn — conv2d against PyTorch 1.13 (torch.nn.functional.conv2d and its autograd).
 *
 * tests/data/conv.safetensors is written by tools/fixtures/gen_conv.py. Inputs are not stored:
 * x, w, bias and dy come from the counter-based generator below, which repeats the script's
 * bit for bit. Stored per case are torch's `y`, `dx`, `dw` and `db` (with a bias), as
 * "<case>.<name>". The case table must match the script's; every tensor of the file must be
 * compared, so neither side can drift silently.
 *
 * Tolerances: float64 agrees to round-off (rtol 1e-10; seen: <= 4.5e-15 absolute). float32 gets
 * rtol 1e-4, atol 1e-5: torch (oneDNN) and ddn (im2col + OpenBLAS) add the up to 576 products of
 * an output, or the 98 pixel terms of a weight gradient, in different orders and blockings, so
 * they differ by a few float32 ulps of the partial sums, whose scale is that of the largest
 * entries (seen: up to 3.8e-6 absolute on dw entries up to 20). Relative to an entry that
 * cancels to near zero that is large (seen: 3e-4), hence an absolute floor; rtol covers the rest.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"

typedef struct {
    const char *name;
    ddn_dtype dt;
    int64_t N, C, H, W, OC, KH, KW;
    ddn_conv2d_params p;
    bool bias;
} torch_case;

#define F64 DDN_DTYPE_F64
#define F32 DDN_DTYPE_F32
#define P(sh, sw, ph, pw, dh, dw, g) ((ddn_conv2d_params){{sh, sw}, {ph, pw}, {dh, dw}, g})

static const torch_case cases[] = {
    {"f64_s2p1", F64, 2, 3, 9, 8, 4, 3, 3, P(2, 2, 1, 1, 1, 1, 1), true},
    {"f64_dil2", F64, 1, 2, 9, 9, 3, 3, 3, P(1, 1, 2, 2, 2, 2, 1), true},
    {"f64_groups2", F64, 2, 4, 6, 6, 6, 3, 3, P(1, 1, 1, 1, 1, 1, 2), true},
    {"f64_depthwise_s2", F64, 2, 4, 7, 7, 4, 3, 3, P(2, 2, 1, 1, 1, 1, 4), false},
    {"f64_1x1", F64, 2, 6, 5, 5, 4, 1, 1, P(1, 1, 0, 0, 1, 1, 1), true},
    {"f64_stem", F64, 1, 3, 16, 16, 4, 7, 7, P(2, 2, 3, 3, 1, 1, 1), false},
    {"f64_nonsquare", F64, 2, 3, 7, 10, 2, 2, 5, P(2, 1, 1, 2, 2, 1, 1), true},
    {"f32_bottleneck3x3", F32, 2, 64, 7, 7, 64, 3, 3, P(1, 1, 1, 1, 1, 1, 1), false},
    {"f32_stem", F32, 1, 3, 24, 24, 8, 7, 7, P(2, 2, 3, 3, 1, 1, 1), true},
    {"f32_down1x1_s2", F32, 2, 16, 8, 8, 32, 1, 1, P(2, 2, 0, 0, 1, 1, 1), false},
    {"f32_1x1_reduce", F32, 2, 64, 5, 5, 16, 1, 1, P(1, 1, 0, 0, 1, 1, 1), true},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* splitmix64(seed << 32 | i) scaled to [lo, hi) in double, then rounded to dt: the generator of
 * gen_conv.py. */
static ddn_tensor *det_uniform(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                               uint64_t seed, double lo, double hi)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    double *v = test_malloc((size_t)n * sizeof(double) + 1);
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = (seed << 32) + (uint64_t)i + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        v[i] = lo + (hi - lo) * ((double)(z >> 11) * 0x1p-53);
    }
    ddn_tensor *t64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, v);
    test_free(v);
    ddn_tensor *t = t64 && dt != DDN_DTYPE_F64 ? ddn_tensor_new(ctx, dt, ndim, shape) : t64;
    if (!t || (t != t64 && ddn_tensor_copy_(t, t64) != DDN_OK))
        fail_msg("det_uniform: %s", ddn_ctx_errmsg(ctx));
    return t;
}

static void test_against_torch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, test_data_path("conv.safetensors"), &f));
    int64_t used = 0;
    for (int ci = 0; ci < N_CASES; ci++) {
        const torch_case *c = &cases[ci];
        bool f64 = c->dt == DDN_DTYPE_F64;
        double rtol = f64 ? 1e-10 : 1e-4, atol = f64 ? 1e-12 : 1e-5;
        double bound = 1.0 / sqrt((double)(c->C / c->p.groups * c->KH * c->KW));
        uint64_t seed = 100 * (uint64_t)(ci + 1);
        ddn_tensor *x = det_uniform(ctx, c->dt, DDN_SHAPE(c->N, c->C, c->H, c->W), seed, -1, 1);
        ddn_tensor *w = det_uniform(ctx, c->dt, DDN_SHAPE(c->OC, c->C / c->p.groups, c->KH, c->KW),
                                    seed + 1, -bound, bound);
        ddn_tensor *b = c->bias ? det_uniform(ctx, c->dt, DDN_SHAPE(c->OC), seed + 2, -bound,
                                              bound)
                                : NULL;
        assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
        assert_ok(ctx, ddn_tensor_set_requires_grad(w, true));
        if (b) assert_ok(ctx, ddn_tensor_set_requires_grad(b, true));
        ddn_tensor *y = ddn_conv2d(ctx, x, w, b, c->p);
        if (!y) fail_msg("%s: %s", c->name, ddn_ctx_errmsg(ctx));
        print_message("%s: output\n", c->name);
        ddn_tensor *want = test_fixture(ctx, f, &used, "%s.y", c->name);
        assert_int_equal(want->dtype, c->dt);
        assert_tensor_close(y, want, atol, rtol);
        ddn_tensor *dy = det_uniform(ctx, c->dt, y->ndim, y->shape, seed + 3, -1, 1);
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
        print_message("%s: gradients\n", c->name);
        assert_tensor_close(x->grad, test_fixture(ctx, f, &used, "%s.dx", c->name), atol, rtol);
        assert_tensor_close(w->grad, test_fixture(ctx, f, &used, "%s.dw", c->name), atol, rtol);
        if (b)
            assert_tensor_close(b->grad, test_fixture(ctx, f, &used, "%s.db", c->name), atol, rtol);
        ddn_ctx_reset_step(ctx);
    }
    /* every tensor in the file was compared: the script has no case this table lacks */
    assert_int_equal(used, ddn_safetensors_count(f));
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_torch)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
