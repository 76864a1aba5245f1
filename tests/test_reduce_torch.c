/* ddn — reductions, matmul/linear, softmax and losses against PyTorch 1.13.
 *
 * tests/data/reduce_loss.safetensors is written by tools/fixtures/gen_reduce_loss.py: for each
 * case below and each dtype it holds the inputs, torch's output `y`, a seeded upstream gradient
 * `dy` and torch.autograd's input gradients ("d" + input name), as "<case>.<f32|f64>.<name>".
 * The case parameters here must match the generator's table; every tensor of the file must be
 * used by some case, so neither side can drift silently.
 */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

typedef enum { SUM, MEAN, MAX, ARGMAX, MATMUL, LINEAR, SOFTMAX, LOG_SOFTMAX, CE, MSE } op_kind;

typedef struct {
    const char *name;
    op_kind op;
    int n_in;
    const char *in[3];   /* input names, in argument order */
    int n_dims, dims[3]; /* reductions (n_dims 0: all) */
    bool keepdim;
    int dim;             /* argmax, softmax */
    ddn_reduction red;
} torch_case;

#define X1 1, {"x"}
static const torch_case cases[] = {
    {"sum_d1", SUM, X1, 1, {1}, false, 0, 0},
    {"sum_all", SUM, X1, 0, {0}, false, 0, 0},
    {"sum_neg_keep", SUM, X1, 2, {-1, 0}, true, 0, 0},
    {"mean_d0", MEAN, X1, 1, {0}, false, 0, 0},
    {"mean_all_keep", MEAN, X1, 0, {0}, true, 0, 0},
    {"mean_d12", MEAN, X1, 2, {1, 2}, false, 0, 0},
    {"max_d2", MAX, X1, 1, {2}, false, 0, 0},
    {"max_d01_keep", MAX, X1, 2, {0, 1}, true, 0, 0},
    {"max_all", MAX, X1, 0, {0}, false, 0, 0},
    {"max_ties", MAX, X1, 1, {1}, false, 0, 0},
    {"argmax_d1", ARGMAX, X1, 0, {0}, false, 1, 0},
    {"argmax_neg_keep", ARGMAX, X1, 0, {0}, true, -1, 0},
    {"mm_2d", MATMUL, 2, {"a", "b"}, 0, {0}, false, 0, 0},
    {"mm_batched", MATMUL, 2, {"a", "b"}, 0, {0}, false, 0, 0},
    {"mm_bcast", MATMUL, 2, {"a", "b"}, 0, {0}, false, 0, 0},
    {"mm_bcast2", MATMUL, 2, {"a", "b"}, 0, {0}, false, 0, 0},
    {"mm_vec_batched", MATMUL, 2, {"a", "b"}, 0, {0}, false, 0, 0},
    {"mm_batched_vec", MATMUL, 2, {"a", "b"}, 0, {0}, false, 0, 0},
    {"linear_bias", LINEAR, 3, {"x", "w", "bias"}, 0, {0}, false, 0, 0},
    {"linear_nobias", LINEAR, 2, {"x", "w"}, 0, {0}, false, 0, 0},
    {"softmax_d0", SOFTMAX, X1, 0, {0}, false, 0, 0},
    {"softmax_dm1", SOFTMAX, X1, 0, {0}, false, -1, 0},
    {"log_softmax_d1", LOG_SOFTMAX, X1, 0, {0}, false, 1, 0},
    {"log_softmax_dm1", LOG_SOFTMAX, X1, 0, {0}, false, -1, 0},
    {"ce_mean", CE, 2, {"logits", "labels"}, 0, {0}, false, 0, DDN_REDUCTION_MEAN},
    {"ce_sum", CE, 2, {"logits", "labels"}, 0, {0}, false, 0, DDN_REDUCTION_SUM},
    {"mse_mean", MSE, 2, {"a", "b"}, 0, {0}, false, 0, DDN_REDUCTION_MEAN},
    {"mse_sum", MSE, 2, {"a", "b"}, 0, {0}, false, 0, DDN_REDUCTION_SUM},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

static ddn_tensor *run(ddn_ctx *ctx, const torch_case *c, ddn_tensor *const *in)
{
    switch (c->op) {
    case SUM: return ddn_sum(ctx, in[0], c->n_dims, c->dims, c->keepdim);
    case MEAN: return ddn_mean(ctx, in[0], c->n_dims, c->dims, c->keepdim);
    case MAX: return ddn_max(ctx, in[0], c->n_dims, c->dims, c->keepdim);
    case ARGMAX: return ddn_argmax(ctx, in[0], c->dim, c->keepdim);
    case MATMUL: return ddn_matmul(ctx, in[0], in[1]);
    case LINEAR: return ddn_linear(ctx, in[0], in[1], c->n_in > 2 ? in[2] : NULL);
    case SOFTMAX: return ddn_softmax(ctx, in[0], c->dim);
    case LOG_SOFTMAX: return ddn_log_softmax(ctx, in[0], c->dim);
    case CE: return ddn_cross_entropy(ctx, in[0], in[1], c->red);
    default: return ddn_mse(ctx, in[0], in[1], c->red);
    }
}

static void test_against_torch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, test_data_path("reduce_loss.safetensors"), &f));
    int64_t used = 0;
    for (int i = 0; i < N_CASES; i++) {
        const torch_case *c = &cases[i];
        for (int d = 0; d < 2; d++) {
            const char *dt = d ? "f64" : "f32";
            /* float64 agrees with torch to round-off; float32 to its own precision */
            double rtol = d ? 1e-10 : 1e-5, atol = d ? 1e-12 : 1e-6;
            ddn_tensor *in[3];
            for (int k = 0; k < c->n_in; k++) {
                in[k] = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, c->in[k]);
                if (c->op != ARGMAX && ddn_dtype_is_float(in[k]->dtype))
                    assert_ok(ctx, ddn_tensor_set_requires_grad(in[k], true));
            }
            ddn_tensor *y = run(ctx, c, in);
            if (!y) fail_msg("%s.%s: %s", c->name, dt, ddn_ctx_errmsg(ctx));
            ddn_tensor *want = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "y");
            print_message("%s.%s: output\n", c->name, dt);
            assert_int_equal(y->dtype, want->dtype);
            assert_tensor_close(y, want, atol, rtol);
            if (c->op == ARGMAX) {
                assert_false(y->requires_grad);
                ddn_ctx_reset_step(ctx);
                continue;
            }
            ddn_tensor *dy = test_fixture(ctx, f, &used, "%s.%s.%s", c->name, dt, "dy");
            assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
            for (int k = 0; k < c->n_in; k++) {
                if (!ddn_dtype_is_float(in[k]->dtype)) continue;
                char g[16];
                snprintf(g, sizeof g, "d%s", c->in[k]);
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
