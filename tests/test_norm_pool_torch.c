/* ddn — batch_norm2d, max/avg pooling and adaptive average pooling against PyTorch 1.13.
 *
 * tests/data/norm_pool.safetensors is written by tools/fixtures/gen_norm_pool.py: for each case
 * below and each dtype it holds the inputs, torch's output `y`, a seeded upstream gradient `dy`,
 * torch.autograd's input gradients ("d" + input name) and, for batch norm in training mode, the
 * updated running statistics, as "<case>.<f32|f64>.<name>". The case parameters here must match
 * the generator's table; every tensor of the file must be used by some case, so neither side can
 * drift silently.
 */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

typedef enum { BN, MAXPOOL, AVGPOOL, ADAPTIVE } op_kind;

typedef struct {
    const char *name;
    op_kind op;
    bool training, affine, running; /* batch norm */
    double momentum, eps;
    ddn_pool2d_params p;            /* pooling */
    int oh, ow;                     /* adaptive */
} torch_case;

/* p: {kernel, stride (0: the kernel), padding, ceil_mode, count_include_pad} */
static const torch_case cases[] = {
    {"bn_train", BN, .training = true, .affine = true, .running = true,
     .momentum = 0.1, .eps = 1e-5},
    {"bn_train_mom", BN, .training = true, .affine = true, .running = true,
     .momentum = 0.3, .eps = 1e-3},
    {"bn_train_noaffine", BN, .training = true, .affine = false, .running = false,
     .momentum = 0.1, .eps = 1e-5},
    {"bn_eval", BN, .training = false, .affine = true, .running = true,
     .momentum = 0.1, .eps = 1e-5},
    {"bn_eval_noaffine", BN, .training = false, .affine = false, .running = true,
     .momentum = 0.1, .eps = 1e-5},
    {"max_stem_even", MAXPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, false, true}},
    {"max_stem_odd", MAXPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, false, true}},
    {"max_ceil", MAXPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, true, true}},
    {"max_rect", MAXPOOL, .p = {{2, 3}, {2, 1}, {1, 1}, false, true}},
    {"max_default_stride", MAXPOOL, .p = {{2, 2}, {0, 0}, {0, 0}, true, true}},
    {"avg_pad_incl", AVGPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, false, true}},
    {"avg_pad_excl", AVGPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, false, false}},
    {"avg_ceil_drop", AVGPOOL, .p = {{2, 2}, {2, 2}, {1, 1}, true, true}},
    {"avg_ceil_incl", AVGPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, true, true}},
    {"avg_ceil_excl", AVGPOOL, .p = {{3, 3}, {2, 2}, {1, 1}, true, false}},
    {"avg_rect", AVGPOOL, .p = {{3, 2}, {1, 2}, {1, 0}, false, true}},
    {"adaptive_7to3", ADAPTIVE, .oh = 3, .ow = 3},
    {"adaptive_5to2", ADAPTIVE, .oh = 2, .ow = 2},
    {"adaptive_6to3", ADAPTIVE, .oh = 3, .ow = 3},
    {"adaptive_rect", ADAPTIVE, .oh = 3, .ow = 2},
    {"adaptive_global", ADAPTIVE, .oh = 1, .ow = 1},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

static void test_against_torch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, test_data_path("norm_pool.safetensors"), &f));
    int64_t used = 0;
    for (int i = 0; i < N_CASES; i++) {
        const torch_case *c = &cases[i];
        for (int d = 0; d < 2; d++) {
            const char *dt = d ? "f64" : "f32";
            /* float64 agrees with torch to round-off; float32 to its own precision */
            double rtol = d ? 1e-10 : 1e-5, atol = d ? 1e-12 : 1e-6;
            const char *names[3] = {"x", "weight", "bias"};
            int n_in = c->op == BN && c->affine ? 3 : 1;
            ddn_tensor *in[3], *rm = NULL, *rv = NULL;
            for (int k = 0; k < n_in; k++) {
                in[k] = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, names[k]);
                assert_ok(ctx, ddn_tensor_set_requires_grad(in[k], true));
            }
            if (c->op == BN && c->running) {
                rm = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "running_mean");
                rv = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "running_var");
            }
            ddn_tensor *y = NULL;
            switch (c->op) {
            case BN:
                y = ddn_batch_norm2d(ctx, in[0], c->affine ? in[1] : NULL,
                                     c->affine ? in[2] : NULL, rm, rv, c->training, c->momentum,
                                     c->eps);
                break;
            case MAXPOOL: y = ddn_max_pool2d(ctx, in[0], c->p); break;
            case AVGPOOL: y = ddn_avg_pool2d(ctx, in[0], c->p); break;
            case ADAPTIVE: y = ddn_adaptive_avg_pool2d(ctx, in[0], c->oh, c->ow); break;
            }
            if (!y) fail_msg("%s.%s: %s", c->name, dt, ddn_ctx_errmsg(ctx));
            print_message("%s.%s: output\n", c->name, dt);
            assert_int_equal(y->dtype, in[0]->dtype);
            assert_tensor_close(y, test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "y"), atol,
                                rtol);
            if (c->op == BN && c->training && c->running) {
                print_message("%s.%s: running statistics\n", c->name, dt);
                assert_tensor_close(
                    rm, test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "running_mean_out"),
                    atol, rtol);
                assert_tensor_close(
                    rv, test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "running_var_out"),
                    atol, rtol);
            }
            ddn_tensor *dy = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "dy");
            assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
            for (int k = 0; k < n_in; k++) {
                char g[16];
                snprintf(g, sizeof g, "d%s", names[k]);
                print_message("%s.%s: gradient %s\n", c->name, dt, g);
                assert_tensor_close(in[k]->grad,
                                    test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, g), atol,
                                    rtol);
            }
            ddn_ctx_reset_step(ctx);
        }
    }
    /* every tensor in the file was checked: the generator has no case this table lacks */
    assert_int_equal(used, ddn_safetensors_count(f));
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_torch)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
