/* ddn — tests of the elementwise ops (layers/elementwise.c, core/cpu/elementwise.c).
 *
 * Gradients: float64 central differences (gradcheck) for every op, with broadcasting, 0-dim,
 * shared-input and strided cases; inputs are kept away from kinks (relu/abs at 0, clamp bounds)
 * and poles. Forward values (float32 and float64) and the large, OpenMP-split cases are compared
 * against plain scalar loops written here; PyTorch's edge-case conventions against the values
 * torch 1.13 gives. Errors: shapes, dtypes, NULL inputs, DDN_CHECK_NUMERICS.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_util.h"

/* ---- inputs ----------------------------------------------------------------------------------- */
/* How a test input is drawn: uniform in [lo, hi), optionally with a random sign (so magnitudes
 * stay >= lo, away from 0), and pushed 0.1 away from up to two kinks when within 0.05 of one. */
typedef struct {
    double lo, hi;
    bool random_sign;
    int n_kinks;
    double kink[2];
} gen;
#define RANGE(l, h) {.lo = (l), .hi = (h)}
#define SIGNED(l, h) {.lo = (l), .hi = (h), .random_sign = true}

static void fill_values(ddn_ctx *ctx, gen g, int64_t n, double *v)
{
    ddn_rng *rng = ddn_ctx_rng(ctx);
    for (int64_t i = 0; i < n; i++) {
        double x = g.lo + (g.hi - g.lo) * ddn_rng_uniform(rng);
        if (g.random_sign && ddn_rng_uniform(rng) < 0.5) x = -x;
        for (int k = 0; k < g.n_kinks; k++)
            if (fabs(x - g.kink[k]) < 0.05) x = g.kink[k] + (x < g.kink[k] ? -0.1 : 0.1);
        v[i] = x;
    }
}

static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* A float64 leaf that requires grad (a gradcheck input). */
static ddn_tensor *leaf(ddn_ctx *ctx, int ndim, const int64_t *shape, gen g)
{
    int64_t n = shape_numel(ndim, shape);
    double *v = test_malloc((size_t)(n ? n : 1) * sizeof *v);
    fill_values(ctx, g, n, v);
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, v);
    test_free(v);
    assert_non_null(t);
    assert_ok(ctx, ddn_tensor_set_requires_grad(t, true));
    return t;
}

static ddn_tensor *from_doubles(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                                const double *v)
{
    int64_t n = shape_numel(ndim, shape);
    ddn_tensor *t;
    if (dt == DDN_DTYPE_F32) {
        float *f = test_malloc((size_t)(n ? n : 1) * sizeof *f);
        for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
        t = ddn_tensor_from_host(ctx, dt, ndim, shape, f);
        test_free(f);
    } else {
        t = ddn_tensor_from_host(ctx, dt, ndim, shape, v);
    }
    assert_non_null(t);
    return t;
}

/* ---- the ops under test, with scalar references --------------------------------------------- */
static ddn_tensor *o_clamp(ddn_ctx *c, ddn_tensor *x) { return ddn_clamp(c, x, -0.5, 0.8); }
static ddn_tensor *o_pow25(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 2.5); }
static ddn_tensor *o_pow3(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 3); }
static ddn_tensor *o_pow2(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 2); }
static ddn_tensor *o_powh(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 0.5); }
static ddn_tensor *o_powm1(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, -1); }
static ddn_tensor *o_powm15(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, -1.5); }
static ddn_tensor *o_pow0(ddn_ctx *c, ddn_tensor *x) { return ddn_pow_scalar(c, x, 0); }
static ddn_tensor *o_adds(ddn_ctx *c, ddn_tensor *x) { return ddn_add_scalar(c, x, 0.7); }
static ddn_tensor *o_muls(ddn_ctx *c, ddn_tensor *x) { return ddn_mul_scalar(c, x, -1.3); }

static double r_neg(double x) { return -x; }
static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_clamp(double x) { return x < -0.5 ? -0.5 : x > 0.8 ? 0.8 : x; }
static double r_pow25(double x) { return pow(x, 2.5); }
static double r_pow3(double x) { return x * x * x; }
static double r_pow2(double x) { return x * x; }
static double r_powh(double x) { return sqrt(x); }
static double r_powm1(double x) { return 1 / x; }
static double r_powm15(double x) { return pow(x, -1.5); }
static double r_pow0(double x) { (void)x; return 1; }
static double r_adds(double x) { return x + 0.7; }
static double r_muls(double x) { return x * -1.3; }

typedef struct {
    const char *name;
    ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *);
    double (*ref)(double);
    gen g;
} unary_case;

static const unary_case unary_cases[] = {
    {"neg", ddn_neg, r_neg, RANGE(-2, 2)},
    {"abs", ddn_abs, fabs, SIGNED(0.1, 2)},
    {"exp", ddn_exp, exp, RANGE(-2, 2)},
    {"log", ddn_log, log, RANGE(0.2, 3)},
    {"sqrt", ddn_sqrt, sqrt, RANGE(0.2, 3)},
    {"relu", ddn_relu, r_relu, SIGNED(0.1, 2)},
    {"sigmoid", ddn_sigmoid, r_sigmoid, RANGE(-4, 4)},
    {"tanh", ddn_tanh, tanh, RANGE(-3, 3)},
    {"clamp", o_clamp, r_clamp, {.lo = -1.5, .hi = 1.5, .n_kinks = 2, .kink = {-0.5, 0.8}}},
    {"pow_scalar 2.5", o_pow25, r_pow25, RANGE(0.3, 2)},
    {"pow_scalar 3", o_pow3, r_pow3, RANGE(-2, 2)},
    {"pow_scalar 2", o_pow2, r_pow2, RANGE(-2, 2)},
    {"pow_scalar 0.5", o_powh, r_powh, RANGE(0.3, 2)},
    {"pow_scalar -1", o_powm1, r_powm1, SIGNED(0.3, 2)},
    {"pow_scalar -1.5", o_powm15, r_powm15, RANGE(0.3, 2)},
    {"pow_scalar 0", o_pow0, r_pow0, RANGE(-2, 2)},
    {"add_scalar", o_adds, r_adds, RANGE(-2, 2)},
    {"mul_scalar", o_muls, r_muls, RANGE(-2, 2)},
};
#define N_UNARY ((int)(sizeof unary_cases / sizeof unary_cases[0]))

static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }

typedef struct {
    const char *name;
    ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *, ddn_tensor *);
    double (*ref)(double, double);
    gen ga, gb;
} binary_case;

static const binary_case binary_cases[] = {
    {"add", ddn_add, r_add, RANGE(-2, 2), RANGE(-2, 2)},
    {"sub", ddn_sub, r_sub, RANGE(-2, 2), RANGE(-2, 2)},
    {"mul", ddn_mul, r_mul, RANGE(-2, 2), RANGE(-2, 2)},
    {"div", ddn_div, r_div, RANGE(-2, 2), SIGNED(0.5, 2)},
    {"pow", ddn_pow, pow, RANGE(0.5, 2), RANGE(-1.5, 2.5)},
};
#define N_BINARY ((int)(sizeof binary_cases / sizeof binary_cases[0]))

/* gradcheck with the case's name in the failure message */
#define GRADCHECK(ctx, fn, user, n, in, label)                                                 \
    test_assert_gradcheck((ctx), (fn), (user), (n), (in), NULL, (label), __FILE__, __LINE__)

/* ---- gradients -------------------------------------------------------------------------------- */
static ddn_tensor *f_unary(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    return ((const unary_case *)u)->op(ctx, in[0]);
}

/* The op applied to a non-contiguous view: (4, 6) -> transpose (6, 4) -> rows 0, 2, 4 (3, 4). */
static ddn_tensor *f_unary_strided(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    ddn_tensor *v = ddn_slice(ctx, ddn_transpose(ctx, in[0], 0, 1), 0, 0, 6, 2);
    return ((const unary_case *)u)->op(ctx, v);
}

static void test_unary_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int i = 0; i < N_UNARY; i++) {
        const unary_case *c = &unary_cases[i];
        ddn_tensor *x = leaf(ctx, DDN_SHAPE(3, 4), c->g);
        GRADCHECK(ctx, f_unary, (void *)c, 1, &x, c->name);
        ddn_tensor *w = leaf(ctx, DDN_SHAPE(4, 6), c->g);
        GRADCHECK(ctx, f_unary_strided, (void *)c, 1, &w, c->name);
        ddn_tensor *s = leaf(ctx, 0, NULL, c->g); /* 0-dim */
        GRADCHECK(ctx, f_unary, (void *)c, 1, &s, c->name);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

static ddn_tensor *f_binary(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    return ((const binary_case *)u)->op(ctx, in[0], in[1]);
}

static ddn_tensor *f_binary_self(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    return ((const binary_case *)u)->op(ctx, in[0], in[0]);
}

/* a: (4, 3) transposed to (3, 4); b: (3, 8) every other column -> (3, 4). */
static ddn_tensor *f_binary_strided(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    ddn_tensor *a = ddn_transpose(ctx, in[0], 0, 1);
    ddn_tensor *b = ddn_slice(ctx, in[1], 1, 1, 8, 2);
    return ((const binary_case *)u)->op(ctx, a, b);
}

/* a: (4, 3) transposed to (3, 4); b: (8) every other entry -> (4), broadcast over rows. */
static ddn_tensor *f_binary_strided_bcast(ddn_ctx *ctx, ddn_tensor *const *in, void *u)
{
    ddn_tensor *a = ddn_transpose(ctx, in[0], 0, 1);
    ddn_tensor *b = ddn_slice(ctx, in[1], 0, 0, 8, 2);
    return ((const binary_case *)u)->op(ctx, a, b);
}

typedef struct {
    int na, nb;
    int64_t sa[3], sb[3];
} shape_pair;

static const shape_pair bcast_cases[] = {
    {2, 2, {2, 3}, {2, 3}},       /* same shape */
    {3, 1, {2, 3, 4}, {4}},       /* trailing alignment */
    {1, 3, {4}, {2, 3, 4}},       /* the other way round */
    {3, 2, {2, 1, 4}, {3, 1}},    /* both grow */
    {0, 2, {0}, {2, 3}},          /* 0-dim with (2, 3) */
    {2, 0, {2, 3}, {0}},
    {0, 0, {0}, {0}},             /* both 0-dim */
};

static void test_binary_gradients(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char label[96];
    for (int i = 0; i < N_BINARY; i++) {
        const binary_case *c = &binary_cases[i];
        for (size_t k = 0; k < sizeof bcast_cases / sizeof bcast_cases[0]; k++) {
            const shape_pair *sp = &bcast_cases[k];
            ddn_tensor *in[2] = {leaf(ctx, sp->na, sp->sa, c->ga),
                                 leaf(ctx, sp->nb, sp->sb, c->gb)};
            snprintf(label, sizeof label, "%s, shapes case %zu", c->name, k);
            GRADCHECK(ctx, f_binary, (void *)c, 2, in, label);
            /* only one input requires grad: the other is skipped, and gets no gradient */
            ddn_tensor_set_requires_grad(in[0], false);
            GRADCHECK(ctx, f_binary, (void *)c, 2, in, label);
            assert_null(in[0]->grad);
            ddn_ctx_reset_step(ctx);
        }
        /* the same tensor as both inputs: both partials accumulate into one gradient */
        gen both = RANGE(0.5, 2);
        ddn_tensor *x = leaf(ctx, DDN_SHAPE(2, 3), both);
        snprintf(label, sizeof label, "%s(x, x)", c->name);
        GRADCHECK(ctx, f_binary_self, (void *)c, 1, &x, label);
        /* strided views, with and without broadcasting */
        ddn_tensor *s[2] = {leaf(ctx, DDN_SHAPE(4, 3), c->ga), leaf(ctx, DDN_SHAPE(3, 8), c->gb)};
        snprintf(label, sizeof label, "%s strided", c->name);
        GRADCHECK(ctx, f_binary_strided, (void *)c, 2, s, label);
        ddn_tensor *t[2] = {leaf(ctx, DDN_SHAPE(4, 3), c->ga), leaf(ctx, DDN_SHAPE(8), c->gb)};
        snprintf(label, sizeof label, "%s strided + broadcast", c->name);
        GRADCHECK(ctx, f_binary_strided_bcast, (void *)c, 2, t, label);
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_free(ctx);
}

/* ---- forward values against scalar loops ------------------------------------------------------ */
/* float32 results against a double reference on the same (rounded) inputs: a few ulp of float;
 * float64: the kernels call the same libm functions, so only association differs. */
static double atol_for(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? 1e-6 : 1e-300; }
static double rtol_for(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? 1e-5 : 1e-13; }

static void test_unary_forward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int d = 0; d < 2; d++) {
        ddn_dtype dt = d ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
        for (int i = 0; i < N_UNARY; i++) {
            const unary_case *c = &unary_cases[i];
            double v[5 * 7], e[7 * 5];
            fill_values(ctx, c->g, 35, v);
            if (dt == DDN_DTYPE_F32)
                for (int j = 0; j < 35; j++) v[j] = (float)v[j];
            ddn_tensor *x = from_doubles(ctx, dt, DDN_SHAPE(5, 7), v);
            /* contiguous */
            for (int j = 0; j < 35; j++) e[j] = c->ref(v[j]);
            ddn_tensor *want = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(5, 7), e);
            ddn_tensor *y = c->op(ctx, x);
            assert_non_null(y);
            assert_int_equal(y->dtype, dt);
            assert_tensor_close(y, want, atol_for(dt), rtol_for(dt));
            /* transposed input: y[j][r] = f(x[r][j]) */
            for (int r = 0; r < 5; r++)
                for (int j = 0; j < 7; j++) e[j * 5 + r] = c->ref(v[r * 7 + j]);
            want = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(7, 5), e);
            y = c->op(ctx, ddn_transpose(ctx, x, 0, 1));
            assert_tensor_close(y, want, atol_for(dt), rtol_for(dt));
            ddn_ctx_reset_step(ctx);
        }
    }
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
}

/* Element of t at the output multi-index idx (ndim dims), under broadcasting. */
static double bget(const ddn_tensor *t, int ndim, const int64_t *idx)
{
    int64_t ti[DDN_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) ti[d] = t->shape[d] == 1 ? 0 : idx[ndim - t->ndim + d];
    return ddn_tensor_get(t, ti);
}

/* a op b at the broadcast shape (ndim, shape), by a scalar loop over multi-indices. */
static ddn_tensor *binary_reference(ddn_ctx *ctx, double (*ref)(double, double),
                                    const ddn_tensor *a, const ddn_tensor *b, int ndim,
                                    const int64_t *shape)
{
    int64_t n = shape_numel(ndim, shape), idx[DDN_MAX_DIMS] = {0};
    double *e = test_malloc((size_t)n * sizeof *e);
    for (int64_t i = 0; i < n; i++) {
        e[i] = ref(bget(a, ndim, idx), bget(b, ndim, idx));
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, e);
    test_free(e);
    return t;
}

static void test_binary_forward(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int d = 0; d < 2; d++) {
        ddn_dtype dt = d ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
        double atol = atol_for(dt), rtol = rtol_for(dt);
        for (int i = 0; i < N_BINARY; i++) {
            const binary_case *c = &binary_cases[i];
            double va[24], vb[8];
            fill_values(ctx, c->ga, 24, va);
            fill_values(ctx, c->gb, 8, vb);
            ddn_tensor *a = from_doubles(ctx, dt, DDN_SHAPE(2, 3, 4), va);
            ddn_tensor *b = from_doubles(ctx, dt, DDN_SHAPE(3, 1), vb);
            ddn_tensor *y = c->op(ctx, a, b);
            assert_non_null(y);
            assert_int_equal(y->dtype, dt);
            assert_tensor_close(y, binary_reference(ctx, c->ref, a, b, DDN_SHAPE(2, 3, 4)),
                                atol, rtol);
            /* a permuted (4, 3, 2) view against a stride-2 slice (2) broadcast over it */
            ddn_tensor *p = ddn_permute(ctx, a, (int[]){2, 1, 0});
            ddn_tensor *b8 = from_doubles(ctx, dt, DDN_SHAPE(8), vb);
            ddn_tensor *bs = ddn_slice(ctx, b8, 0, 1, 5, 2);
            y = c->op(ctx, bs, p);
            assert_tensor_close(y, binary_reference(ctx, c->ref, bs, p, DDN_SHAPE(4, 3, 2)),
                                atol, rtol);
            /* ... and against a (4, 1, 1) column at an offset */
            ddn_tensor *col = ddn_reshape(ctx, ddn_slice(ctx, b8, 0, 4, 8, 1), DDN_SHAPE(4, 1, 1));
            y = c->op(ctx, p, col);
            assert_tensor_close(y, binary_reference(ctx, c->ref, p, col, DDN_SHAPE(4, 3, 2)),
                                atol, rtol);
            ddn_ctx_reset_step(ctx);
        }
    }
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);
    ddn_ctx_free(ctx);
}

/* eq has no front end; its kernel is reached through the backend table. */
static void test_eq_kernel(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const ddn_kernels *k = ddn_cpu_backend.k;
    double va[6] = {1, 2, NAN, 3, -0.0, 6}, vb[3] = {1, 0, NAN};
    for (int d = 0; d < 2; d++) {
        ddn_dtype dt = d ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
        ddn_tensor *a = from_doubles(ctx, dt, DDN_SHAPE(2, 3), va);
        ddn_tensor *b = from_doubles(ctx, dt, DDN_SHAPE(3), vb);
        ddn_tensor *bv = ddn_expand(ctx, b, DDN_SHAPE(2, 3));
        ddn_tensor *y = ddn_tensor_new(ctx, dt, DDN_SHAPE(2, 3));
        assert_ok(ctx, k->binary(DDN_BINARY_EQ, y, a, bv));
        double e[6] = {1, 0, 0, 0, 1 /* -0 == 0 */, 0}; /* NaN equals nothing */
        ddn_tensor *want = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3), e);
        assert_tensor_close(y, want, 0, 0);
        assert_int_equal(k->binary_backward(DDN_BINARY_EQ, 0, y, a, bv, y, y),
                         DDN_ERR_UNSUPPORTED);
        assert_error(ctx, DDN_ERR_UNSUPPORTED, "eq is not differentiable");
        /* a kernel called with operands of the wrong shape fails with a message */
        assert_int_equal(k->binary(DDN_BINARY_ADD, y, a, b), DDN_ERR_SHAPE);
        assert_error(ctx, DDN_ERR_SHAPE, "operand 2 has shape (3)");
        ddn_tensor *i64 = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3));
        assert_int_equal(k->unary(DDN_UNARY_EXP, i64, i64, 0, 0), DDN_ERR_DTYPE);
        assert_error(ctx, DDN_ERR_DTYPE, "int64");
    }
    ddn_ctx_free(ctx);
}

/* ---- PyTorch's conventions at kinks, poles and special values --------------------------------- */
/* y = op(x) and dx for upstream gradient dy, both float64, against values torch 1.13 gives. */
static void check_unary_edge(ddn_ctx *ctx, ddn_tensor *(*op)(ddn_ctx *, ddn_tensor *), int n,
                             const double *x, const double *dy, const double *want_y,
                             const double *want_dx)
{
    ddn_tensor *xt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 1, (int64_t[]){n}, x);
    ddn_tensor_set_requires_grad(xt, true);
    ddn_tensor *y = op(ctx, xt);
    assert_non_null(y);
    assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 1, (int64_t[]){n}, want_y),
                        0, 1e-15);
    ddn_tensor *g = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 1, (int64_t[]){n}, dy);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, g));
    assert_tensor_close(xt->grad,
                        ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 1, (int64_t[]){n}, want_dx), 0,
                        1e-15);
}

static ddn_tensor *o_clamp11(ddn_ctx *c, ddn_tensor *x) { return ddn_clamp(c, x, -1, 1); }

static void test_torch_conventions(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const double inf = INFINITY, nan = NAN;
    const double one[7] = {1, 1, 1, 1, 1, 1, 1};
    /* relu: NaN propagates; the gradient is 0 at 0, and dy where the result is NaN */
    check_unary_edge(ctx, ddn_relu, 5, (double[]){-1, 0, 2, nan, -inf}, one,
                     (double[]){0, 0, 2, nan, 0}, (double[]){0, 0, 1, 1, 0});
    /* relu masks: dy = NaN at a masked entry still gives 0 */
    check_unary_edge(ctx, ddn_relu, 2, (double[]){-1, 3}, (double[]){nan, 2},
                     (double[]){0, 3}, (double[]){0, 2});
    /* abs: the gradient multiplies by sgn(x), 0 at 0 and at NaN */
    check_unary_edge(ctx, ddn_abs, 4, (double[]){-2, 0, 3, nan}, one,
                     (double[]){2, 0, 3, nan}, (double[]){-1, 0, 1, 0});
    /* clamp: gradient 1 on the closed interval, 0 outside and at NaN; NaN propagates */
    check_unary_edge(ctx, o_clamp11, 6, (double[]){-2, -1, 0, 1, 2, nan}, one,
                     (double[]){-1, -1, 0, 1, 1, nan}, (double[]){0, 1, 1, 1, 0, 0});
    /* sqrt: infinite gradient at 0 */
    check_unary_edge(ctx, ddn_sqrt, 3, (double[]){0, 4, -1}, one, (double[]){0, 2, nan},
                     (double[]){inf, 0.25, nan});
    /* log: poles and the negative axis */
    check_unary_edge(ctx, ddn_log, 3, (double[]){0, 1, -1}, one, (double[]){-inf, 0, nan},
                     (double[]){inf, 1, -1});
    /* sigmoid stays finite and accurate for large |x|: e^-50 / (1 + e^-50) is e^-50 to 1e-22 */
    check_unary_edge(ctx, ddn_sigmoid, 5, (double[]){-800, -50, 0, 50, 800}, one,
                     (double[]){0, exp(-50), 0.5, 1, 1},
                     (double[]){0, exp(-50), 0.25, 0, 0});
    /* x^0: gradient exactly 0 */
    check_unary_edge(ctx, o_pow0, 3, (double[]){0, -2, nan}, one, (double[]){1, 1, 1},
                     (double[]){0, 0, 0});
    /* x^2 for negative and infinite x */
    check_unary_edge(ctx, o_pow2, 3, (double[]){-3, 0, -inf}, one, (double[]){9, 0, inf},
                     (double[]){-6, 0, -inf});

    /* pow(a, b) at a = 0 and a < 0, as torch's pow_backward_self / pow_backward_exponent */
    double a[7] = {0, 0, 0, -1, 2, 0, -1}, b[7] = {0, 1, -1, 2, 0, 2, 0.5};
    ddn_tensor *at = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(7), a);
    ddn_tensor *bt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(7), b);
    ddn_tensor_set_requires_grad(at, true);
    ddn_tensor_set_requires_grad(bt, true);
    ddn_tensor *y = ddn_pow(ctx, at, bt);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(7))));
    double wy[7] = {1, 0, inf, 1, 1, 0, nan};
    double wa[7] = {0, 1, -inf, -2, 0, 0, nan};
    double wb[7] = {0, 0, -inf, nan, log(2), 0, nan};
    assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(7), wy), 0, 1e-15);
    assert_tensor_close(at->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(7), wa), 0,
                        1e-15);
    assert_tensor_close(bt->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(7), wb), 0,
                        1e-15);
    /* with dy = NaN the base gradient is still exactly 0 where b == 0 (a select, not a product) */
    ddn_tensor_zero_grad(at);
    y = ddn_pow(ctx, at, bt);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, ddn_full(ctx, DDN_DTYPE_F64, DDN_SHAPE(7), nan)));
    assert_true(ddn_tensor_get(at->grad, (int64_t[]){0}) == 0);
    assert_true(ddn_tensor_get(at->grad, (int64_t[]){4}) == 0);
    assert_true(isnan(ddn_tensor_get(at->grad, (int64_t[]){1})));
    ddn_ctx_free(ctx);
}

/* ---- errors ----------------------------------------------------------------------------------- */
static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *a = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3));
    ddn_tensor *b = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(4, 3));
    assert_null(ddn_mul(ctx, a, b));
    assert_true(strstr(ddn_ctx_errmsg(ctx), "(2,3)") != NULL);
    assert_error(ctx, DDN_ERR_SHAPE, "mul: shapes (2,3) and (4,3) do not broadcast");
    ddn_tensor *c = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(3, 1, 2));
    assert_null(ddn_pow(ctx, c, a));
    assert_error(ctx, DDN_ERR_SHAPE, "pow: shapes (3,1,2) and (2,3)");

    ddn_tensor *f = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3));
    assert_null(ddn_add(ctx, f, a));
    assert_error(ctx, DDN_ERR_DTYPE, "add: inputs are float32 and float64");
    ddn_tensor *i = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3));
    assert_null(ddn_sub(ctx, a, i));
    assert_error(ctx, DDN_ERR_DTYPE, "int64");
    assert_null(ddn_exp(ctx, i));
    assert_error(ctx, DDN_ERR_DTYPE, "exp: expected a float32 or float64 tensor, got int64");
    assert_null(ddn_clamp(ctx, i, 0, 1));
    assert_error(ctx, DDN_ERR_DTYPE, "clamp");

    /* NULL in, NULL out, and no error: a chain of ops is checked once */
    assert_null(ddn_add(ctx, NULL, a));
    assert_null(ddn_div(ctx, a, NULL));
    assert_null(ddn_tanh(ctx, NULL));
    assert_null(ddn_mul_scalar(ctx, ddn_sqrt(ctx, NULL), 2));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);

    /* DDN_CHECK_NUMERICS: the op that made the first NaN is named */
    ddn_ctx_set_check_numerics(ctx, true);
    ddn_tensor *neg = ddn_full(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3), -1);
    assert_non_null(ddn_exp(ctx, neg));
    assert_null(ddn_log(ctx, neg));
    assert_error(ctx, DDN_ERR_NUMERIC, "log: output float64 (2,3) contains NaN or Inf");
    assert_null(ddn_div(ctx, a, a)); /* 0/0 */
    assert_error(ctx, DDN_ERR_NUMERIC, "div");
    /* ... and in backward: sqrt'(0) is inf */
    ddn_tensor *z = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
    ddn_tensor_set_requires_grad(z, true);
    ddn_tensor *s = ddn_sqrt(ctx, z);
    assert_non_null(s);
    assert_int_equal(ddn_backward_with_grad(ctx, s, ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(3))),
                     DDN_ERR_NUMERIC);
    assert_error(ctx, DDN_ERR_NUMERIC, "sqrt: backward");
    ddn_ctx_free(ctx);
}

/* ---- tape behaviour --------------------------------------------------------------------------- */
static void test_accumulation_and_no_grad(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *w = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(3));
    assert_ok(ctx, ddn_tensor_fill(w, 2));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w, true));
    /* two steps of L = sum(w * c) with c (2, 3) constant: dL/dw = column sums of c, twice */
    for (int step = 0; step < 2; step++) {
        ddn_tensor *c = ddn_arange(ctx, DDN_DTYPE_F64, 0, 6, 1);
        c = ddn_reshape(ctx, c, DDN_SHAPE(2, 3));
        ddn_tensor *y = ddn_mul(ctx, w, c);
        assert_int_equal(ddn_tape_len(ctx), 1);
        ddn_tensor *ones = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3));
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, ones));
        assert_null(c->grad);
        ddn_ctx_reset_step(ctx);
    }
    for (int64_t j = 0; j < 3; j++) assert_true(ddn_tensor_get(w->grad, &j) == 2 * (3 + 2 * j));
    /* with grad off nothing is recorded */
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *y = ddn_exp(ctx, ddn_add(ctx, w, w));
    assert_false(y->requires_grad);
    assert_int_equal(ddn_tape_len(ctx), 0);
    ddn_set_grad_enabled(ctx, prev);
    ddn_tensor_free(w);
    ddn_ctx_free(ctx);
}

/* ---- large tensors: several OpenMP units, compared with scalar loops -------------------------- */
static void test_large(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const int64_t R = 300, C = 257, N = R * C; /* 77100 > 2^16 */
    double *va = test_malloc((size_t)N * sizeof *va), *vb = test_malloc((size_t)C * sizeof *vb);
    double *vd = test_malloc((size_t)N * sizeof *vd), *e = test_malloc((size_t)N * sizeof *e);
    fill_values(ctx, (gen)RANGE(-2, 2), N, va);
    fill_values(ctx, (gen)RANGE(-2, 2), C, vb);
    fill_values(ctx, (gen)RANGE(-1, 1), N, vd);
    ddn_tensor *a = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(R, C), va);
    ddn_tensor *b = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(C), vb);
    ddn_tensor *dy = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(R, C), vd);
    ddn_tensor_set_requires_grad(a, true);
    ddn_tensor_set_requires_grad(b, true);

    /* y = a * b (b broadcast over rows), backward with dy */
    ddn_tensor *y = ddn_mul(ctx, a, b);
    for (int64_t i = 0; i < N; i++) e[i] = va[i] * vb[i % C];
    assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(R, C), e), 0, 0);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
    for (int64_t i = 0; i < N; i++) e[i] = vd[i] * vb[i % C];
    assert_tensor_close(a->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(R, C), e), 0,
                        0);
    for (int64_t j = 0; j < C; j++) {
        double s = 0;
        for (int64_t r = 0; r < R; r++) s += vd[r * C + j] * va[r * C + j];
        e[j] = s;
    }
    assert_tensor_close(b->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(C), e), 1e-12,
                        1e-12);

    /* the unary path over a transposed (strided) view, forward and backward */
    ddn_tensor_zero_grad(a);
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(C, R), vd);
    y = ddn_tanh(ctx, ddn_transpose(ctx, a, 0, 1));
    for (int64_t j = 0; j < C; j++)
        for (int64_t r = 0; r < R; r++) e[j * R + r] = tanh(va[r * C + j]);
    assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(C, R), e), 0, 0);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, t));
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < C; j++) {
            double th = tanh(va[r * C + j]);
            e[r * C + j] = vd[j * R + r] * (1 - th * th);
        }
    assert_tensor_close(a->grad, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(R, C), e), 0,
                        1e-15);

    /* float32, one long contiguous row (split into chunks): sigmoid and pow */
    float *f = test_malloc((size_t)N * sizeof *f);
    for (int64_t i = 0; i < N; i++) f[i] = (float)(va[i] * 4);
    ddn_tensor *x = ddn_tensor_from_host(ctx, DDN_DTYPE_F32, DDN_SHAPE(N), f);
    y = ddn_sigmoid(ctx, x);
    for (int64_t i = 0; i < N; i++) e[i] = 1 / (1 + exp(-(double)f[i]));
    assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(N), e), 1e-7, 1e-6);
    y = ddn_pow(ctx, ddn_abs(ctx, x), ddn_scalar(ctx, DDN_DTYPE_F32, 1.5f));
    for (int64_t i = 0; i < N; i++) e[i] = pow(fabs((double)f[i]), 1.5);
    assert_tensor_close(y, ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(N), e), 1e-6, 1e-6);

    test_free(f);
    test_free(va);
    test_free(vb);
    test_free(vd);
    test_free(e);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_gradients),
        cmocka_unit_test(test_binary_gradients),
        cmocka_unit_test(test_unary_forward),
        cmocka_unit_test(test_binary_forward),
        cmocka_unit_test(test_eq_kernel),
        cmocka_unit_test(test_torch_conventions),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_accumulation_and_no_grad),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
