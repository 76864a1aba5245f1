/* ddn — the elementwise ops against PyTorch 1.13: forward outputs and input gradients from
 * tests/data/elementwise.safetensors, written by tools/fixtures/gen_elementwise.py (which documents
 * the tensor names; the op parameters in the tables below must match its own).
 *
 * float64 must agree to rounding (rtol 1e-12); float32 to rtol 1e-5, atol 1e-6 (torch vectorises
 * exp/log/pow with SLEEF, ddn calls libm). Special values (inf, NaN) must match exactly.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "safetensors.h"
#include "test_util.h"

static ddn_tensor *o_clamp(ddn_ctx *c, ddn_tensor *x) { return ddn_clamp(c, x, -0.5, 0.8); }
static ddn_tensor *o_pow25(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 2.5); }
static ddn_tensor *o_pow3(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 3); }
static ddn_tensor *o_powm15(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, -1.5); }
static ddn_tensor *o_adds(ddn_ctx *c, ddn_tensor *x) { return ddn_add_scalar(c, x, 0.7); }
static ddn_tensor *o_muls(ddn_ctx *c, ddn_tensor *x) { return ddn_mul_scalar(c, x, -1.3); }

static const struct {
    const char *name;
    ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *);
    bool edge; /* the fixture also has "<tag>.edge.<name>" */
} unary_ops[] = {
    {"neg", ddn_neg, false},
    {"abs", ddn_abs, true},
    {"exp", ddn_exp, false},
    {"log", ddn_log, true},
    {"sqrt", ddn_sqrt, true},
    {"relu", ddn_relu, true},
    {"sigmoid", ddn_sigmoid, true},
    {"tanh", ddn_tanh, false},
    {"clamp", o_clamp, true},
    {"pow_scalar_2.5", o_pow25, false},
    {"pow_scalar_3", o_pow3, true},
    {"pow_scalar_-1.5", o_powm15, false},
    {"add_scalar", o_adds, false},
    {"mul_scalar", o_muls, false},
};

static const struct {
    const char *name;
    ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *, ddn_tensor *);
    bool edge;
} binary_ops[] = {
    {"add", ddn_add, false},
    {"sub", ddn_sub, false},
    {"mul", ddn_mul, false},
    {"div", ddn_div, true},
    {"pow", ddn_pow, true},
};

typedef struct {
    ddn_ctx *ctx;
    ddn_st_file *f;
    const char *tag; /* "f64" or "f32" */
    double atol, rtol;
} fixture;

static ddn_tensor *get(const fixture *fx, const char *cs, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s.%s", fx->tag, cs, what);
    ddn_tensor *t = ddn_safetensors_get(fx->ctx, fx->f, name);
    if (!t) fail_msg("%s: %s", name, ddn_ctx_errmsg(fx->ctx));
    return t;
}

static void close_to(const fixture *fx, const char *cs, const ddn_tensor *actual,
                     const char *what)
{
    ddn_tensor *want = get(fx, cs, what);
    if (!actual) fail_msg("%s.%s.%s: no result: %s", fx->tag, cs, what, ddn_ctx_errmsg(fx->ctx));
    if (actual->dtype != want->dtype) fail_msg("%s.%s.%s: dtype differs", fx->tag, cs, what);
    /* The case's name stands in for the file name, so a failure says which tensor differs. */
    char where[160];
    snprintf(where, sizeof where, "%s [%s.%s.%s]", __FILE__, fx->tag, cs, what);
    test_assert_tensor_close(actual, want, fx->atol, fx->rtol, where, __LINE__);
}

static void check_unary(const fixture *fx, const char *cs,
                        ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *))
{
    ddn_tensor *x = get(fx, cs, "x");
    assert_ok(fx->ctx, ddn_tensor_set_requires_grad(x, true));
    ddn_tensor *y = op(fx->ctx, x);
    close_to(fx, cs, y, "y");
    assert_ok(fx->ctx, ddn_backward_with_grad(fx->ctx, y, get(fx, cs, "dy")));
    close_to(fx, cs, x->grad, "dx");
}

static void check_binary(const fixture *fx, const char *cs,
                         ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *, ddn_tensor *))
{
    ddn_tensor *a = get(fx, cs, "a"), *b = get(fx, cs, "b");
    assert_ok(fx->ctx, ddn_tensor_set_requires_grad(a, true));
    assert_ok(fx->ctx, ddn_tensor_set_requires_grad(b, true));
    ddn_tensor *y = op(fx->ctx, a, b);
    close_to(fx, cs, y, "y");
    assert_ok(fx->ctx, ddn_backward_with_grad(fx->ctx, y, get(fx, cs, "dy")));
    close_to(fx, cs, a->grad, "da");
    close_to(fx, cs, b->grad, "db");
}

static void run_dtype(const char *tag, double atol, double rtol)
{
    ddn_ctx *ctx = test_ctx();
    fixture fx = {ctx, NULL, tag, atol, rtol};
    assert_ok(ctx, ddn_safetensors_open(ctx, test_data_path("elementwise.safetensors"), &fx.f));
    char cs[96];
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++) {
        check_unary(&fx, unary_ops[i].name, unary_ops[i].op);
        if (unary_ops[i].edge) {
            snprintf(cs, sizeof cs, "edge.%s", unary_ops[i].name);
            check_unary(&fx, cs, unary_ops[i].op);
        }
        ddn_ctx_reset_step(ctx);
    }
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++) {
        snprintf(cs, sizeof cs, "%s.bcast", binary_ops[i].name);
        check_binary(&fx, cs, binary_ops[i].op);
        snprintf(cs, sizeof cs, "%s.scalar", binary_ops[i].name);
        check_binary(&fx, cs, binary_ops[i].op);
        if (binary_ops[i].edge) {
            snprintf(cs, sizeof cs, "edge.%s", binary_ops[i].name);
            check_binary(&fx, cs, binary_ops[i].op);
        }
        ddn_ctx_reset_step(ctx);
    }
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_safetensors_close(fx.f);
    ddn_ctx_free(ctx);
}

static void test_torch_f64(void **state)
{
    (void)state;
    run_dtype("f64", 1e-13, 1e-12);
}

static void test_torch_f32(void **state)
{
    (void)state;
    run_dtype("f32", 1e-6, 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_f64),
        cmocka_unit_test(test_torch_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
