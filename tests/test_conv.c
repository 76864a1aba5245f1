/* ddn — tests of conv2d (layers/conv2d.c, core/cpu/conv.c).
 *
 * Every case is checked three ways: the float64 forward against a naive 7-loop convolution, the
 * float64 gradients of x, w and bias against central differences (ddn_gradcheck), and the
 * analytic gradients against naive scatter loops for a seeded upstream gradient. Cases cover
 * 3x3 stride 1 pad 1, stride 2, dilation 2, groups 2, depthwise, 1x1 (the direct gemm) and 1x1
 * strided/padded (im2col), the 7x7 stride-2 ResNet stem, non-square kernels and strides,
 * batches of 1 (threads split an image), 3 and 5 (blocks of several images), and small column
 * budgets that force many blocks of each kind.
 * Then: float32 forward and gradients against the loops in double within the classical dot
 * product error bound, strided inputs, accumulation, partial requires_grad, and bad arguments.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "test_util.h"

typedef struct {
    const char *name;
    int64_t N, C, H, W, OC, KH, KW;
    ddn_conv2d_params p;
    bool bias;
} conv_case;

#define P(sh, sw, ph, pw, dh, dw, g) ((ddn_conv2d_params){{sh, sw}, {ph, pw}, {dh, dw}, g})

static const conv_case cases[] = {
    {"3x3 s1 p1", 2, 3, 6, 7, 4, 3, 3, P(1, 1, 1, 1, 1, 1, 1), true},
    {"3x3 s2 p1", 2, 3, 9, 8, 4, 3, 3, P(2, 2, 1, 1, 1, 1, 1), true},
    {"3x3 dilation 2", 1, 2, 9, 9, 3, 3, 3, P(1, 1, 2, 2, 2, 2, 1), true},
    {"groups 2", 2, 4, 6, 6, 6, 3, 3, P(1, 1, 1, 1, 1, 1, 2), true},
    {"depthwise x2", 2, 3, 6, 5, 6, 3, 3, P(1, 1, 1, 1, 1, 1, 3), true},
    {"depthwise s2 no bias", 1, 4, 7, 7, 4, 3, 3, P(2, 2, 1, 1, 1, 1, 4), false},
    {"1x1 direct", 2, 5, 4, 5, 3, 1, 1, P(1, 1, 0, 0, 1, 1, 1), true},
    {"1x1 direct groups", 1, 4, 3, 5, 6, 1, 1, P(1, 1, 0, 0, 1, 1, 2), false},
    {"1x1 s2", 2, 4, 7, 6, 3, 1, 1, P(2, 2, 0, 0, 1, 1, 1), true},
    {"1x1 pad 1", 1, 3, 4, 4, 2, 1, 1, P(1, 1, 1, 1, 1, 1, 1), true},
    {"7x7 s2 p3 stem", 1, 3, 13, 11, 4, 7, 7, P(2, 2, 3, 3, 1, 1, 1), true},
    {"non-square", 2, 3, 5, 8, 4, 2, 3, P(2, 1, 1, 0, 1, 2, 1), true},
    {"kernel = input", 2, 2, 3, 4, 3, 3, 4, P(1, 1, 0, 0, 1, 1, 1), true},
    {"stride > kernel", 1, 2, 9, 10, 2, 2, 2, P(3, 4, 1, 2, 1, 1, 1), true},
    {"batch 3", 3, 2, 5, 5, 3, 3, 3, P(1, 1, 1, 1, 1, 1, 1), false},
    {"batch 5 groups", 5, 4, 4, 4, 4, 3, 3, P(1, 1, 1, 1, 1, 1, 2), true},
    {"batch 5 1x1 direct", 5, 3, 3, 4, 2, 1, 1, P(1, 1, 0, 0, 1, 1, 1), true},
    /* dead taps (only ever on padding) are cropped by the front end */
    {"3x3 p1 on 1x1", 3, 4, 1, 1, 5, 3, 3, P(1, 1, 1, 1, 1, 1, 1), true},
    {"3x3 s2 p1 on 2x2", 2, 3, 2, 2, 4, 3, 3, P(2, 2, 1, 1, 1, 1, 1), false},
    {"3x3 p1 on 1x4", 2, 3, 1, 4, 2, 3, 3, P(1, 1, 1, 1, 1, 1, 1), true},
    {"5x5 d2 p4 on 2x2 groups", 2, 4, 2, 2, 2, 5, 5, P(1, 1, 4, 4, 2, 2, 2), true},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* ---- independent references: loops in double ------------------------------------------------- */
static int64_t out_size(int64_t in, int64_t k, int s, int pad, int d)
{
    return (in + 2 * pad - d * (k - 1) - 1) / s + 1;
}

/* Calls f(n, oc, oh, ow, c_in, c_w, kh, kw, ih, iw) for every in-image tap of the convolution. */
#define FOR_TAPS(c, OH, OW, BODY)                                                              \
    do {                                                                                       \
        int64_t Cg_ = (c)->C / (c)->p.groups, OCg_ = (c)->OC / (c)->p.groups;                  \
        for (int64_t n = 0; n < (c)->N; n++)                                                   \
            for (int64_t oc = 0; oc < (c)->OC; oc++)                                           \
                for (int64_t oh = 0; oh < (OH); oh++)                                          \
                    for (int64_t ow = 0; ow < (OW); ow++)                                      \
                        for (int64_t cw = 0; cw < Cg_; cw++)                                   \
                            for (int64_t kh = 0; kh < (c)->KH; kh++)                           \
                                for (int64_t kw = 0; kw < (c)->KW; kw++) {                     \
                                    int64_t ci = oc / OCg_ * Cg_ + cw;                         \
                                    int64_t ih = oh * (c)->p.stride[0] - (c)->p.padding[0] +   \
                                                 kh * (c)->p.dilation[0];                      \
                                    int64_t iw = ow * (c)->p.stride[1] - (c)->p.padding[1] +   \
                                                 kw * (c)->p.dilation[1];                      \
                                    if (ih < 0 || ih >= (c)->H || iw < 0 || iw >= (c)->W)      \
                                        continue;                                              \
                                    int64_t xi = ((n * (c)->C + ci) * (c)->H + ih) * (c)->W + iw; \
                                    int64_t wi = ((oc * Cg_ + cw) * (c)->KH + kh) * (c)->KW + kw; \
                                    int64_t yi = ((n * (c)->OC + oc) * (OH) + oh) * (OW) + ow; \
                                    BODY                                                       \
                                }                                                              \
    } while (0)

typedef struct {
    int64_t OH, OW, nx, nw, ny;
    double *x, *w, *b, *y, *dy, *dx, *dw, *db;
    double *ay, *adx, *adw, *adb; /* the same sums over absolute values of the terms */
} reference;

/* Host copies of x, w, bias (may be NULL) and dy (may be NULL) and the loops' results. */
static void reference_run(const conv_case *c, const ddn_tensor *x, const ddn_tensor *w,
                          const ddn_tensor *b, const ddn_tensor *dy, reference *r)
{
    memset(r, 0, sizeof *r);
    r->OH = out_size(c->H, c->KH, c->p.stride[0], c->p.padding[0], c->p.dilation[0]);
    r->OW = out_size(c->W, c->KW, c->p.stride[1], c->p.padding[1], c->p.dilation[1]);
    r->nx = c->N * c->C * c->H * c->W;
    r->nw = c->OC * (c->C / c->p.groups) * c->KH * c->KW;
    r->ny = c->N * c->OC * r->OH * r->OW;
    r->x = test_calloc((size_t)r->nx + 1, sizeof(double));
    r->w = test_calloc((size_t)r->nw + 1, sizeof(double));
    r->b = test_calloc((size_t)c->OC + 1, sizeof(double));
    r->y = test_calloc((size_t)r->ny + 1, sizeof(double));
    r->ay = test_calloc((size_t)r->ny + 1, sizeof(double));
    r->dy = test_calloc((size_t)r->ny + 1, sizeof(double));
    r->dx = test_calloc((size_t)r->nx + 1, sizeof(double));
    r->dw = test_calloc((size_t)r->nw + 1, sizeof(double));
    r->db = test_calloc((size_t)c->OC + 1, sizeof(double));
    r->adx = test_calloc((size_t)r->nx + 1, sizeof(double));
    r->adw = test_calloc((size_t)r->nw + 1, sizeof(double));
    r->adb = test_calloc((size_t)c->OC + 1, sizeof(double));
    assert_int_equal(ddn_tensor_to_host(x, DDN_DTYPE_F64, r->x), DDN_OK);
    assert_int_equal(ddn_tensor_to_host(w, DDN_DTYPE_F64, r->w), DDN_OK);
    if (b) assert_int_equal(ddn_tensor_to_host(b, DDN_DTYPE_F64, r->b), DDN_OK);
    if (dy) assert_int_equal(ddn_tensor_to_host(dy, DDN_DTYPE_F64, r->dy), DDN_OK);
    int64_t P = r->OH * r->OW;
    for (int64_t i = 0; i < r->ny; i++) {
        r->y[i] = r->b[i / P % c->OC];
        r->ay[i] = fabs(r->b[i / P % c->OC]);
        r->db[i / P % c->OC] += r->dy[i];
        r->adb[i / P % c->OC] += fabs(r->dy[i]);
    }
    FOR_TAPS(c, r->OH, r->OW, {
        r->y[yi] += r->x[xi] * r->w[wi];
        r->ay[yi] += fabs(r->x[xi] * r->w[wi]);
        r->dx[xi] += r->dy[yi] * r->w[wi];
        r->dw[wi] += r->dy[yi] * r->x[xi];
        r->adx[xi] += fabs(r->dy[yi] * r->w[wi]);
        r->adw[wi] += fabs(r->dy[yi] * r->x[xi]);
    });
}

static void reference_free(reference *r)
{
    double *all[] = {r->x, r->w, r->b, r->y, r->ay, r->dy, r->dx, r->dw, r->db, r->adx, r->adw,
                     r->adb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) test_free(all[i]);
}

/* Elementwise |got - want| <= tol * bound + atol (bound may be NULL: 1). */
static void assert_close_host(const char *what, const ddn_tensor *t, const double *want,
                              const double *bound, double tol, double atol)
{
    int64_t n = ddn_tensor_numel(t);
    double *got = test_malloc((size_t)n * sizeof(double) + 1);
    assert_int_equal(ddn_tensor_to_host(t, DDN_DTYPE_F64, got), DDN_OK);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double lim = tol * (bound ? bound[i] : 1.0) + atol;
        if (!(fabs(got[i] - want[i]) <= lim)) {
            if (bad < 5)
                print_error("  %s[%lld]: got %.17g want %.17g (limit %.3g)\n", what,
                            (long long)i, got[i], want[i], lim);
            bad++;
        }
    }
    test_free(got);
    if (bad) fail_msg("%s: %lld of %lld entries off", what, (long long)bad, (long long)n);
}

/* ---- float64: forward, gradcheck, analytic gradients ----------------------------------------- */
static ddn_tensor *conv_fn(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    const conv_case *c = user;
    return ddn_conv2d(ctx, in[0], in[1], c->bias ? in[2] : NULL, c->p);
}

/* max_entries: how many entries of each input the gradient check compares (a sample). */
static void check_case_f64(ddn_ctx *ctx, const conv_case *c, int64_t max_entries)
{
    print_message("case %s\n", c->name);
    ddn_tensor *in[3];
    in[0] = test_leaf(ctx, DDN_SHAPE(c->N, c->C, c->H, c->W), -1, 1);
    in[1] = test_leaf(ctx, DDN_SHAPE(c->OC, c->C / c->p.groups, c->KH, c->KW), -1, 1);
    in[2] = c->bias ? test_leaf(ctx, DDN_SHAPE(c->OC), -1, 1) : NULL;
    int n_in = c->bias ? 3 : 2;
    ddn_gradcheck_opts o = {.max_entries = max_entries};
    assert_gradcheck(ctx, conv_fn, (void *)c, n_in, in, &o);

    ddn_tensor *y = conv_fn(ctx, in, (void *)c);
    if (!y) fail_msg("%s: %s", c->name, ddn_ctx_errmsg(ctx));
    ddn_tensor *dy = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, y->ndim, y->shape, -1, 1);
    for (int i = 0; i < n_in; i++) ddn_tensor_zero_grad(in[i]);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
    reference r;
    reference_run(c, in[0], in[1], in[2], dy, &r);
    assert_int_equal(y->shape[2], r.OH);
    assert_int_equal(y->shape[3], r.OW);
    /* float64 round-off only: a few ulps of the sum of absolute terms */
    double tol = 64 * DBL_EPSILON;
    assert_close_host("y", y, r.y, r.ay, tol, 0);
    assert_close_host("dx", in[0]->grad, r.dx, NULL, 1e-12, 1e-13);
    assert_close_host("dw", in[1]->grad, r.dw, NULL, 1e-12, 1e-13);
    if (c->bias) assert_close_host("db", in[2]->grad, r.db, NULL, 1e-12, 1e-13);
    reference_free(&r);
    ddn_ctx_reset_step(ctx);
}

static void test_cases_f64(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int i = 0; i < N_CASES; i++) check_case_f64(ctx, &cases[i], 256);
    ddn_ctx_free(ctx);
}

/* Column budgets of a few hundred bytes to a few kilobytes cut every call into many blocks:
 * one pixel each, a few pixels that end mid-row and do not divide the image, or a few whole
 * images per block. The results must not change. */
static void test_blocked(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const conv_case blocked[] = {
        {"blocked 3x3", 2, 3, 9, 7, 4, 3, 3, P(1, 1, 1, 1, 1, 1, 1), true},
        {"blocked s2 groups", 1, 4, 8, 9, 4, 3, 3, P(2, 2, 1, 1, 1, 1, 2), true},
        {"blocked stem", 2, 3, 12, 12, 2, 7, 7, P(2, 2, 3, 3, 1, 1, 1), false},
        {"blocked images", 6, 2, 5, 5, 2, 3, 3, P(2, 2, 1, 1, 1, 1, 1), true},
        {"blocked 1x1 direct", 3, 4, 5, 3, 2, 1, 1, P(1, 1, 0, 0, 1, 1, 1), true},
    };
    const size_t budgets[] = {512, 6000, 100000};
    size_t prev = ddn_cpu_conv_col_budget(budgets[0]);
    for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
        print_message("column budget %zu bytes\n", budgets[b]);
        ddn_cpu_conv_col_budget(budgets[b]);
        for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
            check_case_f64(ctx, &blocked[i], 32); /* the loops check every entry */
    }
    ddn_cpu_conv_col_budget(prev);
    ddn_ctx_free(ctx);
}

/* ---- float32 against the loops in double ----------------------------------------------------- */
/* Each output is a sum of K = C/groups*KH*KW products plus the bias: float32 summation in any
 * order is within gamma_{K+1} = (K+1) u / (1 - (K+1) u) of the sum of the absolute terms. The
 * gradients are sums too: dx of OC/groups*KH*KW products, dw of N*OH*OW (plus one per thread's
 * partial), db of N*OH*OW terms; each is held to its own gamma times its absolute sum. */
static void check_case_f32(ddn_ctx *ctx, const conv_case *c)
{
    print_message("float32 case %s\n", c->name);
    ddn_tensor *x = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(c->N, c->C, c->H, c->W),
                                     -1, 1);
    ddn_tensor *w = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32,
                                     DDN_SHAPE(c->OC, c->C / c->p.groups, c->KH, c->KW), -1, 1);
    ddn_tensor *b = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(c->OC), -1, 1);
    assert_non_null(x);
    assert_ok(ctx, ddn_tensor_set_requires_grad(x, true));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w, true));
    assert_ok(ctx, ddn_tensor_set_requires_grad(b, true));
    ddn_tensor *y = ddn_conv2d(ctx, x, w, b, c->p);
    if (!y) fail_msg("%s: %s", c->name, ddn_ctx_errmsg(ctx));
    ddn_tensor *dy = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, y->ndim, y->shape, -1, 1);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
    reference r;
    reference_run(c, x, w, b, dy, &r);
    double u = FLT_EPSILON / 2;
    double ky = (double)(c->C / c->p.groups * c->KH * c->KW + 1);
    double kx = (double)(c->OC / c->p.groups * c->KH * c->KW + 1);
    double kw = (double)(c->N * r.OH * r.OW + 16);
    assert_close_host("y f32", y, r.y, r.ay, ky * u / (1 - ky * u), 0);
    assert_close_host("dx f32", x->grad, r.dx, r.adx, kx * u / (1 - kx * u), 0);
    assert_close_host("dw f32", w->grad, r.dw, r.adw, kw * u / (1 - kw * u), 0);
    assert_close_host("db f32", b->grad, r.db, r.adb, kw * u / (1 - kw * u), 0);
    reference_free(&r);
    ddn_ctx_reset_step(ctx);
}

static void test_float32(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const conv_case f32[] = {
        {"f32 3x3 16->24", 2, 16, 15, 15, 24, 3, 3, P(1, 1, 1, 1, 1, 1, 1), true},
        {"f32 3x3 s2 groups 4", 3, 16, 13, 14, 8, 3, 3, P(2, 2, 1, 1, 1, 1, 4), true},
        {"f32 1x1 32->16", 2, 32, 9, 9, 16, 1, 1, P(1, 1, 0, 0, 1, 1, 1), true},
        {"f32 stem", 1, 3, 32, 32, 8, 7, 7, P(2, 2, 3, 3, 1, 1, 1), true},
    };
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) check_case_f32(ctx, &f32[i]);
    ddn_ctx_free(ctx);
}

/* ---- strided input, accumulation, partial requires_grad -------------------------------------- */
static void test_strided_and_accumulate(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const conv_case c = {"strided", 2, 3, 5, 6, 2, 3, 3, P(1, 1, 1, 1, 1, 1, 1), false};
    /* x as a transposed view of a (N, C, W, H) leaf: the front end copies it on the tape */
    ddn_tensor *base = test_leaf(ctx, DDN_SHAPE(c.N, c.C, c.W, c.H), -1, 1);
    ddn_tensor *xt = ddn_transpose(ctx, base, 2, 3);
    ddn_tensor *w = test_leaf(ctx, DDN_SHAPE(c.OC, c.C, c.KH, c.KW), -1, 1);
    assert_non_null(xt);
    assert_false(ddn_tensor_is_contiguous(xt));
    ddn_tensor *y = ddn_conv2d(ctx, xt, w, NULL, c.p);
    assert_non_null(y);
    ddn_tensor *dy = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, y->ndim, y->shape, -1, 1);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, dy));
    ddn_tensor *xc = ddn_contiguous(ctx, xt);
    reference r;
    reference_run(&c, xc, w, NULL, dy, &r);
    assert_close_host("y strided", y, r.y, r.ay, 64 * DBL_EPSILON, 0);
    /* base's gradient is r.dx transposed back */
    ddn_tensor *gt = ddn_transpose(ctx, base->grad, 2, 3);
    assert_close_host("dx strided", ddn_contiguous(ctx, gt), r.dx, NULL, 1e-12, 1e-13);

    /* a second backward accumulates: w's gradient doubles */
    ddn_tensor *y2 = ddn_conv2d(ctx, xt, w, NULL, c.p);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y2, dy));
    for (int64_t i = 0; i < r.nw; i++) r.dw[i] *= 2;
    assert_close_host("dw twice", w->grad, r.dw, NULL, 1e-12, 1e-13);
    reference_free(&r);

    /* only w requires grad: x gets no gradient buffer */
    ddn_tensor *x2 = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(1, 3, 4, 4), -1, 1);
    ddn_tensor *b2 = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2), -1, 1);
    ddn_tensor_zero_grad(w);
    ddn_tensor *y3 = ddn_conv2d(ctx, x2, w, b2, c.p);
    assert_non_null(y3);
    assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, y3, 0, NULL, false)));
    assert_null(x2->grad);
    assert_null(b2->grad);
    assert_non_null(w->grad);

    /* nothing requires grad: no node */
    int64_t len = ddn_tape_len(ctx);
    ddn_tensor *wd = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(3, 1, 3, 3), -1, 1);
    assert_non_null(ddn_conv2d(ctx, x2, wd, NULL, P(1, 1, 1, 1, 1, 1, 3)));
    assert_int_equal(ddn_tape_len(ctx), len);
    ddn_ctx_free(ctx);
}

/* ---- errors ---------------------------------------------------------------------------------- */
static void test_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_conv2d_params d = DDN_CONV2D_DEFAULT;
    ddn_tensor *x = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 8, 8));
    ddn_tensor *w4 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(16, 4, 3, 3));
    ddn_tensor *w3 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(16, 3, 3, 3));

    assert_null(ddn_conv2d(ctx, NULL, w3, NULL, d)); /* NULL in: NULL out, quietly */
    assert_null(ddn_conv2d(ctx, x, NULL, NULL, d));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK);

    assert_null(ddn_conv2d(ctx, x, w4, NULL, d));
    assert_error(ctx, DDN_ERR_SHAPE,
                 "conv2d: x (2,3,8,8) has 3 channels but w (16,4,3,3) expects 4 (groups 1)");
    ddn_tensor *w1 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(16, 1, 3, 3));
    assert_null(ddn_conv2d(ctx, x, w1, NULL, P(1, 1, 0, 0, 1, 1, 2)));
    assert_error(ctx, DDN_ERR_SHAPE, "x (2,3,8,8) has 3 channels but w (16,1,3,3) expects 2 "
                 "(groups 2)");
    ddn_tensor *w16 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(16, 1, 3, 3));
    assert_null(ddn_conv2d(ctx, x, w16, NULL, P(1, 1, 0, 0, 1, 1, 3)));
    assert_error(ctx, DDN_ERR_SHAPE, "w (16,1,3,3) has 16 output channels, not divisible by "
                 "groups 3");
    ddn_tensor *x3 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(3, 8, 8));
    assert_null(ddn_conv2d(ctx, x3, w3, NULL, d));
    assert_error(ctx, DDN_ERR_SHAPE, "x (3,8,8) and w (16,3,3,3): expected x (N, C, H, W)");
    ddn_tensor *b = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(15));
    assert_null(ddn_conv2d(ctx, x, w3, b, d));
    assert_error(ctx, DDN_ERR_SHAPE, "bias (15) does not fit w (16,3,3,3): expected (16)");
    ddn_tensor *wbig = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3, 5, 5));
    assert_null(ddn_conv2d(ctx, x, wbig, NULL, P(1, 1, 0, 0, 2, 1, 1)));
    assert_error(ctx, DDN_ERR_SHAPE, "x (2,3,8,8) padded to 8x8 is smaller than w (2,3,5,5)'s "
                 "dilated kernel 9x5");
    assert_null(ddn_conv2d(ctx, x, w3, NULL, P(0, 1, 0, 0, 1, 1, 1)));
    assert_error(ctx, DDN_ERR_ARG, "stride (0,1)");
    assert_null(ddn_conv2d(ctx, x, w3, NULL, P(1, 1, -1, 0, 1, 1, 1)));
    assert_error(ctx, DDN_ERR_ARG, "padding (-1,0)");
    assert_null(ddn_conv2d(ctx, x, w3, NULL, P(1, 1, 0, 0, 1, 1, 0)));
    assert_error(ctx, DDN_ERR_ARG, "groups 0");
    ddn_tensor *w64 = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(16, 3, 3, 3));
    assert_null(ddn_conv2d(ctx, x, w64, NULL, d));
    assert_error(ctx, DDN_ERR_DTYPE, "conv2d: inputs are float32 and float64");
    ddn_tensor *xi = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 3, 8, 8));
    assert_null(ddn_conv2d(ctx, xi, w3, NULL, d));
    assert_error(ctx, DDN_ERR_DTYPE, "conv2d: expected a float32 or float64 tensor, got int64");
    ddn_tensor *w0 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(16, 3, 0, 3));
    assert_null(ddn_conv2d(ctx, x, w0, NULL, d));
    assert_error(ctx, DDN_ERR_SHAPE, "w (16,3,0,3) has an empty dim");

    /* an empty batch is fine: (0, OC, OH, OW) */
    ddn_tensor *x0 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(0, 3, 8, 8));
    ddn_tensor *y0 = ddn_conv2d(ctx, x0, w3, NULL, d);
    assert_non_null(y0);
    assert_int_equal(y0->shape[0], 0);
    assert_int_equal(y0->shape[2], 6);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_f64),
        cmocka_unit_test(test_blocked),
        cmocka_unit_test(test_float32),
        cmocka_unit_test(test_strided_and_accumulate),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
