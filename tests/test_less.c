/* ddn — tests of the LESS layer (declarative/less.h): backward modes E, J and UNROLL, float64.
 *
 * Expected values come from elsewhere than the code under test: central finite differences of the
 * EXACT solver (gradcheck), E against J (explicit Jacobian) and against the generic bordered KKT
 * solve ddn_eqc_adjoint, UNROLL against E at convergence and against finite differences of the
 * unrolled computation itself. Problems are built so that the case they claim (inner/outer,
 * rank-deficient, hard case) is asserted from the solver's own diagnostics.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "test_util.h"

/* ---- problem construction ------------------------------------------------------------------- */
static double urand(uint64_t *s) /* uniform in (-1, 1) */
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 4503599627370496.0 - 1.0;
}

/* A (B,m,n) uniform in (-1,1) (rankdef: the last column is the sum of the first two, so rank
 * n - 1 < n), b random and scaled per item so that ||pinv(A) b|| = center exactly (pinv(A) b is
 * linear in b): center < 1 is the inner case, > 1 the outer one (asserted from the solver). */
static void make_problem(ddn_ctx *ctx, int64_t B, int64_t m, int64_t n, bool rankdef,
                         double center, uint64_t seed, double *A, double *b)
{
    for (int64_t i = 0; i < B * m * n; i++) A[i] = urand(&seed);
    if (rankdef)
        for (int64_t k = 0; k < B * m; k++) A[k * n + n - 1] = A[k * n] + A[k * n + 1];
    for (int64_t i = 0; i < B * m; i++) b[i] = urand(&seed);
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.max_iter = 0;
    ddn_less_info *li = test_malloc((size_t)B * sizeof *li);
    double *y = test_malloc((size_t)(B * n) * sizeof *y);
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, B, m, n, A, b, y, &o, li));
    for (int64_t k = 0; k < B; k++)
        for (int64_t c = 0; c < m; c++) b[k * m + c] *= center / li[k].center_norm;
    assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, B, m, n, A, b, y, &o, li));
    for (int64_t k = 0; k < B; k++) {
        assert_true(fabs(li[k].center_norm - center) < 1e-9);
        assert_true(li[k].inner == (center < 1));
    }
    test_free(li);
    test_free(y);
}

static ddn_tensor *leaf(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                        const double *v)
{
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, v);
    if (t && dt != DDN_DTYPE_F64) t = ddn_cast(ctx, t, dt);
    assert_non_null(t);
    assert_ok(ctx, ddn_tensor_set_requires_grad(t, true));
    return t;
}

typedef struct less_case {
    ddn_less_opts opts;
    ddn_less_backward mode;
} less_case;

static ddn_tensor *f_less(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    const less_case *c = user;
    return ddn_less(ctx, in[0], in[1], &c->opts, c->mode, NULL);
}

static ddn_less_opts exact_opts(void)
{
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.method = DDN_LESS_EXACT;
    return o;
}

/* A float64 copy of t (not a view: the next zero_grad must not change it). */
static ddn_tensor *copy_f64(ddn_ctx *ctx, const ddn_tensor *t)
{
    double *h = ddn_ctx_scratch(ctx, (size_t)ddn_tensor_numel(t) * sizeof *h);
    assert_non_null(h);
    assert_ok(ctx, ddn_tensor_to_host(t, DDN_DTYPE_F64, h));
    return ddn_tensor_from_host(ctx, DDN_DTYPE_F64, t->ndim, t->shape, h);
}

/* dL/dA and dL/db for L = sum(v * y), as fresh float64 tensors. */
static void grads(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *o,
                  ddn_less_backward mode, const ddn_tensor *v, ddn_tensor **gA, ddn_tensor **gb,
                  ddn_tensor **y_out)
{
    ddn_tensor_zero_grad(A);
    ddn_tensor_zero_grad(b);
    ddn_tensor *y = ddn_less(ctx, A, b, o, mode, NULL);
    if (!y) fail_msg("ddn_less: %s", ddn_ctx_errmsg(ctx));
    ddn_tensor *vv = v->dtype == y->dtype ? (ddn_tensor *)v : ddn_cast(ctx, (ddn_tensor *)v,
                                                                        y->dtype);
    assert_ok(ctx, ddn_backward_with_grad(ctx, y, vv));
    assert_int_equal(A->grad->dtype, A->dtype);
    assert_int_equal(b->grad->dtype, b->dtype);
    *gA = copy_f64(ctx, A->grad);
    *gb = copy_f64(ctx, b->grad);
    if (y_out) *y_out = y;
    assert_non_null(*gA);
    assert_non_null(*gb);
}

/* ---- E and J against finite differences of the EXACT solver -------------------------------- */
static void gradcheck_shape(int64_t m, int64_t n, bool rankdef, double center, uint64_t seed)
{
    ddn_ctx *ctx = test_ctx();
    const int64_t B = 2;
    double A[2 * 6 * 5], b[2 * 6];
    make_problem(ctx, B, m, n, rankdef, center, seed, A, b);
    ddn_tensor *in[2] = {leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A),
                         leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b)};
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_J; mode++) {
        less_case c = {exact_opts(), (ddn_less_backward)mode};
        assert_gradcheck(ctx, f_less, &c, 2, in, NULL);
    }
    ddn_ctx_free(ctx);
}

static void test_gradcheck_2x2(void **state)
{
    (void)state;
    gradcheck_shape(2, 2, false, 0.5, 11); /* inner */
    gradcheck_shape(2, 2, false, 2.0, 12); /* outer */
}

static void test_gradcheck_5x3(void **state)
{
    (void)state;
    gradcheck_shape(5, 3, false, 0.5, 21);
    gradcheck_shape(5, 3, false, 3.0, 22);
}

/* m < n and rank-deficient A: the inner case is the hard case there (c = A^T b has no component
 * in the null space of A, so 2 nu sits at the zero eigenvalue of A^T A and y is not unique); it
 * is tested as an error below. The outer case is regular. */
static void test_gradcheck_3x5_and_rank_deficient(void **state)
{
    (void)state;
    gradcheck_shape(3, 5, false, 1.5, 31);
    gradcheck_shape(6, 3, true, 1.5, 41);
    gradcheck_shape(6, 3, true, 4.0, 42);
}

/* ---- E == J --------------------------------------------------------------------------------- */
static void test_e_equals_j(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const unsigned methods[] = {DDN_LESS_EXACT, DDN_LESS_PGD | DDN_LESS_RM,
                                DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD,
                                DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_ONE};
    const int64_t shapes[3][2] = {{5, 3}, {3, 5}, {8, 4}};
    for (int s = 0; s < 3; s++) {
        const int64_t B = 3, m = shapes[s][0], n = shapes[s][1];
        double A[3 * 8 * 5], b[3 * 8];
        make_problem(ctx, B, m, n, false, 1.7, 100 + (uint64_t)s, A, b);
        ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
        ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
        ddn_tensor *v = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(B, n), 0, 1);
        for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
            ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
            o.method = methods[k];
            o.tol = 1e-14;
            o.max_iter = 20000;
            o.strict = true;
            ddn_tensor *eA, *eb, *jA, *jb;
            grads(ctx, tA, tb, &o, DDN_LESS_BACKWARD_E, v, &eA, &eb, NULL);
            grads(ctx, tA, tb, &o, DDN_LESS_BACKWARD_J, v, &jA, &jb, NULL);
            assert_tensor_close(eA, jA, 1e-10, 1e-10);
            assert_tensor_close(eb, jb, 1e-10, 1e-10);
        }
    }
    ddn_ctx_free(ctx);
}

/* ---- E against the generic equality-constrained adjoint ------------------------------------- */
/* LESS as f = 1/2 ||A u - b||^2, h = u^T u - 1 with ddn_eqc_adjoint's Lagrangian f + mu h:
 * grad_u f + 2 mu u = 0 gives mu = -1/2 y^T A^T r (= -nu of PMAF-MATH §1), H = A^T A + 2 mu I,
 * constraint Jacobian 2 y^T, and for x = (A, b): B = d/dx (A^T r), C = dh/dx = 0, so
 *     dL/dA_ci = -(w_i r_c + (A w)_c y_i),   dL/db_c = (A w)_c. */
typedef struct eqc_user {
    const double *A;
    int64_t m, n;
} eqc_user;

static ddn_status eqc_hessian(void *user, int64_t item, const double *y, const double *mu,
                              double *H)
{
    (void)y;
    const eqc_user *u = user;
    const double *A = u->A + item * u->m * u->n;
    for (int64_t i = 0; i < u->n; i++)
        for (int64_t j = 0; j < u->n; j++) {
            double s = 0;
            for (int64_t c = 0; c < u->m; c++) s += A[c * u->n + i] * A[c * u->n + j];
            H[i * u->n + j] = s + (i == j ? 2 * mu[0] : 0);
        }
    return DDN_OK;
}

static ddn_status eqc_jacobian(void *user, int64_t item, const double *y, double *J)
{
    (void)item;
    for (int64_t i = 0; i < ((eqc_user *)user)->n; i++) J[i] = 2 * y[i];
    return DDN_OK;
}

static void test_e_matches_generic_adjoint(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    enum { B = 3, m = 6, n = 4 };
    double A[B * m * n], b[B * m], yv[B * n], v[B * n], mu[B], w[B * n], muk[B];
    double gA[B * m * n], gb[B * m];
    make_problem(ctx, B, m, n, false, 2.5, 7, A, b);
    ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
    ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
    ddn_tensor *tv = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(B, n), 0, 1);
    ddn_less_opts o = exact_opts();
    ddn_tensor *eA, *eb, *y;
    grads(ctx, tA, tb, &o, DDN_LESS_BACKWARD_E, tv, &eA, &eb, &y);
    assert_ok(ctx, ddn_tensor_to_host(y, DDN_DTYPE_F64, yv));
    assert_ok(ctx, ddn_tensor_to_host(tv, DDN_DTYPE_F64, v));
    for (int64_t k = 0; k < B; k++) { /* mu from y, and the KKT residual A^T r + 2 mu y */
        const double *Ak = A + k * m * n, *yk = yv + k * n;
        double r[m], yAr = 0;
        for (int64_t c = 0; c < m; c++) {
            double ay = 0;
            for (int64_t j = 0; j < n; j++) ay += Ak[c * n + j] * yk[j];
            r[c] = ay - b[k * m + c];
            yAr += ay * r[c];
        }
        mu[k] = -0.5 * yAr;
        for (int64_t j = 0; j < n; j++) {
            double g = 2 * mu[k] * yk[j];
            for (int64_t c = 0; c < m; c++) g += Ak[c * n + j] * r[c];
            assert_true(fabs(g) < 1e-10);
        }
    }
    eqc_user user = {A, m, n};
    ddn_eqc_problem prob = {.n = n, .p = 1, .hessian = eqc_hessian,
                            .constraint_jacobian = eqc_jacobian};
    assert_ok(ctx, ddn_eqc_adjoint(ctx, &prob, &user, B, yv, mu, v, w, muk));
    for (int64_t k = 0; k < B; k++) {
        const double *Ak = A + k * m * n, *yk = yv + k * n, *wk = w + k * n;
        for (int64_t c = 0; c < m; c++) {
            double Aw = 0, ay = 0;
            for (int64_t j = 0; j < n; j++) {
                Aw += Ak[c * n + j] * wk[j];
                ay += Ak[c * n + j] * yk[j];
            }
            double r = ay - b[k * m + c];
            for (int64_t i = 0; i < n; i++) gA[(k * m + c) * n + i] = -(wk[i] * r + Aw * yk[i]);
            gb[k * m + c] = Aw;
        }
    }
    ddn_tensor *xA = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), gA);
    ddn_tensor *xb = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), gb);
    assert_tensor_close(eA, xA, 1e-11, 1e-10);
    assert_tensor_close(eb, xb, 1e-11, 1e-10);
    ddn_ctx_free(ctx);
}

/* ---- UNROLL ---------------------------------------------------------------------------------- */
/* With a fixed number of iterations (tol 0) the unrolled forward is a smooth function of (A, b),
 * and the tape must hold its exact derivative: the start (pinv, Golub-Pereyra), the line-search
 * step, DW's weight. max_iter 0 checks the start node alone. */
static void test_unroll_gradcheck_fixed_iterations(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const unsigned methods[] = {DDN_LESS_PGD, DDN_LESS_PGD | DDN_LESS_RM,
                                DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD,
                                DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_DW,
                                DDN_LESS_PGD | DDN_LESS_DW};
    const int64_t shapes[3][2] = {{5, 3}, {3, 5}, {4, 4}};
    for (int s = 0; s < 3; s++) {
        const int64_t B = 2, m = shapes[s][0], n = shapes[s][1];
        double A[2 * 5 * 5], b[2 * 5];
        make_problem(ctx, B, m, n, false, s == 2 ? 0.6 : 1.8, 300 + (uint64_t)s, A, b);
        ddn_tensor *in[2] = {leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A),
                             leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b)};
        for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
            for (int iters = 0; iters <= 6; iters += 3) {
                less_case c = {DDN_LESS_OPTS_DEFAULT, DDN_LESS_BACKWARD_UNROLL};
                c.opts.method = methods[k];
                c.opts.tol = 0;
                c.opts.max_iter = iters;
                assert_gradcheck(ctx, f_less, &c, 2, in, NULL);
            }
        }
    }
    ddn_ctx_free(ctx);
}

/* The unrolled forward repeats the solver: same iterate (to round-off) and iteration count. */
static void test_unroll_forward_matches_solver(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    enum { B = 4, m = 7, n = 4 };
    double A[B * m * n], b[B * m], ys[B * n];
    make_problem(ctx, B, m, n, false, 1.4, 55, A, b);
    for (int64_t c = 0; c < m; c++) b[c] *= 0.3; /* item 0 inner, the rest outer */
    ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
    ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
    const unsigned methods[] = {DDN_LESS_PGD, DDN_LESS_PGD | DDN_LESS_RM,
                                DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD,
                                DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD | DDN_LESS_DW};
    for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
        ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
        o.method = methods[k];
        ddn_less_info li[B];
        assert_ok(ctx, ddn_less_solve(ctx, DDN_DTYPE_F64, B, m, n, A, b, ys, &o, li));
        ddn_decl_info info;
        ddn_tensor *y = ddn_less(ctx, tA, tb, &o, DDN_LESS_BACKWARD_UNROLL, &info);
        assert_non_null(y);
        ddn_tensor *ty = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, n), ys);
        assert_tensor_close(y, ty, 1e-12, 1e-12);
        for (int64_t i = 0; i < B; i++) {
            assert_int_equal((int64_t)ddn_tensor_get(info.iterations, &i), li[i].iterations);
            assert_int_equal((int)ddn_tensor_get(info.converged, &i), li[i].converged);
            assert_true(fabs(ddn_tensor_get(info.fpd, &i) - li[i].fpd) < 1e-12);
        }
    }
    ddn_ctx_free(ctx);
}

/* UNROLL approaches E as the iterations converge. The stopping rule is an objective change below
 * tol, which pins the iterate only to ~sqrt(tol / curvature) (4e-9 .. 2e-7 at tol 1e-15 here),
 * and the unrolled Jacobian converges at the same linear rate but with a constant ~1/(1 - rate)
 * (measured here: 25-45 times the iterate's error for PGD and RM, 90 with TWD's weight, 250
 * with DW's, which slow the rate). So at tol 1e-15 the two gradients (O(1)) must agree to 1e-4
 * (absolute and relative; measured worst 5.4e-5, DW), and the gap must shrink with tol: at least
 * 10 times from tol 1e-10 to 1e-15 (the iterate error shrinks ~300 times; gap measured >= 150).
 * Not +TWD in the outer case: there the unrolled derivative diverges (see less_unroll.c). */
static double max_abs_diff(ddn_ctx *ctx, const ddn_tensor *a, const ddn_tensor *b)
{
    int64_t n = ddn_tensor_numel(a);
    double *x = ddn_ctx_scratch(ctx, (size_t)(2 * n) * sizeof *x), e = 0;
    assert_non_null(x);
    assert_ok(ctx, ddn_tensor_to_host(a, DDN_DTYPE_F64, x));
    assert_ok(ctx, ddn_tensor_to_host(b, DDN_DTYPE_F64, x + n));
    for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(x[i] - x[n + i]));
    return e;
}

static void test_unroll_close_to_e_when_converged(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const unsigned RM = DDN_LESS_PGD | DDN_LESS_RM;
    /* (seeds of problems the method solves: RM and PGD can fail in the outer case, Table 1) */
    const struct { int64_t m, n; double center; unsigned method; uint64_t seed; } cases[] = {
        {6, 3, 0.7, RM, 500}, {3, 5, 1.6, RM, 501}, {8, 4, 2.5, RM, 9},
        {8, 4, 2.5, DDN_LESS_PGD, 9}, {6, 3, 0.7, RM | DDN_LESS_TWD, 500}, /* inner: weight 1 */
        {8, 4, 0.7, RM | DDN_LESS_TWD | DDN_LESS_DW, 9}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int64_t B = 3, m = cases[k].m, n = cases[k].n;
        double A[3 * 8 * 5], b[3 * 8];
        make_problem(ctx, B, m, n, false, cases[k].center, cases[k].seed, A, b);
        ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
        ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
        ddn_tensor *v = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(B, n), 0, 1);
        ddn_less_opts ox = exact_opts();
        ddn_tensor *xA, *xb, *xy;
        grads(ctx, tA, tb, &ox, DDN_LESS_BACKWARD_E, v, &xA, &xb, &xy);
        double gap[2];
        const double tols[2] = {1e-10, 1e-15};
        for (int t = 0; t < 2; t++) {
            ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
            o.method = cases[k].method;
            o.tol = tols[t];
            o.max_iter = 5000;
            o.strict = true;
            ddn_tensor *uA, *ub, *eA, *eb, *uy, *ey;
            grads(ctx, tA, tb, &o, DDN_LESS_BACKWARD_UNROLL, v, &uA, &ub, &uy);
            grads(ctx, tA, tb, &o, DDN_LESS_BACKWARD_E, v, &eA, &eb, &ey);
            gap[t] = fmax(max_abs_diff(ctx, uA, eA), max_abs_diff(ctx, ub, eb));
            if (t == 1) {
                assert_tensor_close(uy, xy, 1e-6, 1e-6); /* both reached the global minimum */
                assert_tensor_close(ey, xy, 1e-6, 1e-6);
                assert_tensor_close(uA, eA, 1e-4, 1e-4);
                assert_tensor_close(ub, eb, 1e-4, 1e-4);
            }
        }
        if (!(gap[1] <= 0.1 * gap[0]))
            fail_msg("case %zu: UNROLL-E gap %.2e at tol 1e-10, %.2e at tol 1e-15", k, gap[0],
                     gap[1]);
    }
    ddn_ctx_free(ctx);
}

/* ---- float32 -------------------------------------------------------------------------------- */
/* EXACT solves in float64 and rounds y once (relative error <= 6e-8); the backward runs in
 * float64 on that y and rounds the gradient once. So the float32 gradient differs from the
 * float64 one (same float32-representable inputs) by about cond(H) * 6e-8 plus rounding: cond(H)
 * is below 100 for these problems, hence 1e-5 relative (and absolute, gradients are O(1)). */
static void test_float32(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    enum { B = 3, m = 5, n = 3 };
    double A[B * m * n], b[B * m];
    make_problem(ctx, B, m, n, false, 1.8, 77, A, b);
    for (int64_t i = 0; i < B * m * n; i++) A[i] = (float)A[i]; /* representable in both */
    for (int64_t i = 0; i < B * m; i++) b[i] = (float)b[i];
    ddn_tensor *v = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(B, n), 0, 1);
    ddn_tensor *A64 = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
    ddn_tensor *b64 = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
    ddn_tensor *A32 = leaf(ctx, DDN_DTYPE_F32, DDN_SHAPE(B, m, n), A);
    ddn_tensor *b32 = leaf(ctx, DDN_DTYPE_F32, DDN_SHAPE(B, m), b);
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_J; mode++) {
        ddn_less_opts o = exact_opts();
        ddn_tensor *gA64, *gb64, *gA32, *gb32, *y64, *y32;
        grads(ctx, A64, b64, &o, (ddn_less_backward)mode, v, &gA64, &gb64, &y64);
        grads(ctx, A32, b32, &o, (ddn_less_backward)mode, v, &gA32, &gb32, &y32);
        assert_int_equal(y32->dtype, DDN_DTYPE_F32);
        assert_tensor_close(ddn_cast(ctx, y32, DDN_DTYPE_F64), y64, 1e-7, 1e-7);
        assert_tensor_close(gA32, gA64, 1e-5, 1e-5);
        assert_tensor_close(gb32, gb64, 1e-5, 1e-5);
    }
    /* Iterative float32 forward and UNROLL in float32: both run and give float32 gradients near
     * the float64 ones. The float32 iteration stops when the float32 objective stops changing,
     * which pins y only to ~sqrt(eps_f32) = 2.4e-4 (times a curvature factor): y agrees to 1e-3,
     * the gradients (O(1), amplified by cond(H) ~ 10) to 1e-2. A loose agreement check. */
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.method = DDN_LESS_PGD | DDN_LESS_RM;
    o.tol = 1e-10;
    o.max_iter = 500;
    ddn_tensor *gA64, *gb64, *gA32, *gb32, *y64, *y32;
    ddn_less_opts ox = exact_opts();
    grads(ctx, A64, b64, &ox, DDN_LESS_BACKWARD_E, v, &gA64, &gb64, &y64);
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_UNROLL; mode += 2) {
        grads(ctx, A32, b32, &o, (ddn_less_backward)mode, v, &gA32, &gb32, &y32);
        assert_int_equal(y32->dtype, DDN_DTYPE_F32);
        assert_tensor_close(ddn_cast(ctx, y32, DDN_DTYPE_F64), y64, 1e-3, 1e-3);
        assert_tensor_close(gA32, gA64, 1e-2, 1e-2);
        assert_tensor_close(gb32, gb64, 1e-2, 1e-2);
    }
    ddn_ctx_free(ctx);
}

/* ---- the node: one tape entry, diagnostics, accumulation, memory ---------------------------- */
static void test_node_tape_info_accumulate(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    enum { B = 2, m = 5, n = 3 };
    double A[B * m * n], b[B * m];
    make_problem(ctx, B, m, n, false, 1.5, 9, A, b);
    ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
    ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_J; mode++) {
        ddn_decl_info info;
        int64_t t0 = ddn_tape_len(ctx);
        ddn_tensor *y = ddn_less(ctx, tA, tb, NULL, (ddn_less_backward)mode, &info);
        assert_non_null(y);
        assert_int_equal(ddn_tape_len(ctx) - t0, 1);
        for (int64_t i = 0; i < B; i++) {
            assert_int_equal((int)ddn_tensor_get(info.converged, &i), 1);
            assert_true(ddn_tensor_get(info.iterations, &i) >= 1);
            assert_true(ddn_tensor_get(info.fpd, &i) > 0);
        }
        /* two backward passes accumulate: the gradient doubles */
        ddn_tensor_zero_grad(tA);
        ddn_tensor *v = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, n));
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, v));
        ddn_tensor *g1 = ddn_mul_scalar(ctx, tA->grad, 2.0);
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, v));
        assert_tensor_close(tA->grad, g1, 1e-14, 1e-14);
    }
    ddn_ctx_free(ctx);
}

/* Non-contiguous inputs (a permuted view) give the same y and gradients as contiguous ones, the
 * gradient flowing back through the view; an empty batch is a valid no-op. */
static void test_views_and_empty_batch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    enum { B = 2, m = 5, n = 3 };
    double A[B * m * n], At[B * n * m], b[B * m];
    make_problem(ctx, B, m, n, false, 1.5, 23, A, b);
    for (int64_t k = 0; k < B; k++)
        for (int64_t c = 0; c < m; c++)
            for (int64_t j = 0; j < n; j++) At[(k * n + j) * m + c] = A[(k * m + c) * n + j];
    ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
    ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
    ddn_tensor *tAt = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, n, m), At);
    ddn_tensor *v = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(B, n), 0, 1);
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_UNROLL; mode++) {
        ddn_tensor *view = ddn_transpose(ctx, tAt, 1, 2);
        assert_false(ddn_tensor_is_contiguous(view));
        ddn_tensor *y1 = ddn_less(ctx, tA, tb, NULL, (ddn_less_backward)mode, NULL);
        ddn_tensor *y2 = ddn_less(ctx, view, tb, NULL, (ddn_less_backward)mode, NULL);
        assert_non_null(y1);
        assert_non_null(y2);
        assert_tensor_close(y2, y1, 1e-14, 1e-14);
        ddn_tensor_zero_grad(tA);
        ddn_tensor_zero_grad(tAt);
        assert_ok(ctx, ddn_backward_with_grad(ctx, y1, v));
        assert_ok(ctx, ddn_backward_with_grad(ctx, y2, v));
        ddn_tensor *back = ddn_contiguous(ctx, ddn_transpose(ctx, tAt->grad, 1, 2));
        assert_tensor_close(back, tA->grad, 1e-12, 1e-12);
        /* empty batch */
        ddn_tensor *A0 = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(0, m, n));
        ddn_tensor *b0 = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(0, m));
        ddn_tensor *y0 = ddn_less(ctx, A0, b0, NULL, (ddn_less_backward)mode, NULL);
        if (!y0) fail_msg("empty batch: %s", ddn_ctx_errmsg(ctx));
        assert_int_equal(y0->shape[0], 0);
        assert_int_equal(y0->shape[1], n);
    }
    ddn_ctx_free(ctx);
}

/* E keeps O(m n + n^2) per item, J the n x (m n + m) Jacobian and B (Table 2). */
static void test_backward_memory(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    enum { B = 2, m = 48, n = 24 };
    double *A = test_malloc(sizeof(double) * B * m * n), b[B * m];
    make_problem(ctx, B, m, n, false, 1.5, 13, A, b);
    ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A);
    ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b);
    ddn_tensor *v = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, n));
    size_t used[2];
    ddn_less_opts o = exact_opts();
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_J; mode++) {
        ddn_tensor *y = ddn_less(ctx, tA, tb, &o, (ddn_less_backward)mode, NULL);
        assert_non_null(ddn_grad_buffer(ctx, tA));
        assert_non_null(ddn_grad_buffer(ctx, tb));
        size_t before = ddn_ctx_stats(ctx).arena_in_use;
        assert_ok(ctx, ddn_backward_with_grad(ctx, y, v));
        used[mode] = ddn_ctx_stats(ctx).arena_in_use - before;
    }
    const size_t per_item_j = sizeof(double) * 2 * n * (m * n + m);
    const size_t e_bound = sizeof(double) * (2 * (B * m * n + B * m) + 2 * n * n + 16 * (m + n)) +
                           4096;
    assert_true(used[DDN_LESS_BACKWARD_E] <= e_bound);
    assert_true(used[DDN_LESS_BACKWARD_J] >= per_item_j);
    test_free(A);
    ddn_ctx_free(ctx);
}

/* ---- errors --------------------------------------------------------------------------------- */
static void test_argument_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *A = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 5, 3), 0, 1);
    ddn_tensor *b = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 5), 0, 1);
    assert_null(ddn_less(ctx, NULL, b, NULL, DDN_LESS_BACKWARD_E, NULL));
    assert_null(ddn_less(ctx, A, NULL, NULL, DDN_LESS_BACKWARD_E, NULL));
    assert_int_equal(ddn_ctx_status(ctx), DDN_OK); /* NULL inputs: quietly */
    ddn_tensor *b4 = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 4), 0, 1);
    assert_null(ddn_less(ctx, A, b4, NULL, DDN_LESS_BACKWARD_E, NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "A (2,5,3) and b (2,4)");
    ddn_tensor *b3 = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(3, 5), 0, 1);
    assert_null(ddn_less(ctx, A, b3, NULL, DDN_LESS_BACKWARD_J, NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "A (2,5,3) and b (3,5)");
    ddn_tensor *A2 = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(5, 3), 0, 1);
    assert_null(ddn_less(ctx, A2, b, NULL, DDN_LESS_BACKWARD_E, NULL));
    assert_error(ctx, DDN_ERR_SHAPE, "A (5,3) and b (2,5)");
    ddn_tensor *b32 = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 5), 0, 1);
    assert_null(ddn_less(ctx, A, b32, NULL, DDN_LESS_BACKWARD_E, NULL));
    assert_error(ctx, DDN_ERR_DTYPE, "float64 but b (2,5) is float32");
    ddn_tensor *bi = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 5));
    assert_null(ddn_less(ctx, A, bi, NULL, DDN_LESS_BACKWARD_E, NULL));
    assert_error(ctx, DDN_ERR_DTYPE, "int64");
    assert_null(ddn_less(ctx, A, b, NULL, (ddn_less_backward)7, NULL));
    assert_error(ctx, DDN_ERR_ARG, "backward mode 7");
    ddn_less_opts o = exact_opts();
    assert_null(ddn_less(ctx, A, b, &o, DDN_LESS_BACKWARD_UNROLL, NULL));
    assert_error(ctx, DDN_ERR_UNSUPPORTED, "EXACT");
    o.method = DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_BLS_GRAD;
    assert_null(ddn_less(ctx, A, b, &o, DDN_LESS_BACKWARD_UNROLL, NULL));
    assert_error(ctx, DDN_ERR_UNSUPPORTED, "PGD+RM+BLSGrad");
    o.method = 0;
    assert_null(ddn_less(ctx, A, b, &o, DDN_LESS_BACKWARD_E, NULL));
    assert_error(ctx, DDN_ERR_ARG, "invalid method");
    ddn_ctx_free(ctx);
}

static void test_solver_errors_surface(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_UNROLL; mode++) {
        ddn_tensor *A = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 4, 3), 0, 1);
        ddn_tensor *b = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(2, 4), 0, 1);
        ddn_tensor_set_requires_grad(A, true);
        double *Ap = ddn_tensor_ptr(A), *bp = ddn_tensor_ptr(b);
        double keep[12];
        memcpy(keep, Ap + 12, sizeof keep);
        memset(Ap + 12, 0, sizeof keep); /* item 1: A = 0 */
        assert_null(ddn_less(ctx, A, b, NULL, (ddn_less_backward)mode, NULL));
        assert_error(ctx, DDN_ERR_SINGULAR, "item 1 of 2");
        memcpy(Ap + 12, keep, sizeof keep);
        bp[0] = NAN;
        assert_null(ddn_less(ctx, A, b, NULL, (ddn_less_backward)mode, NULL));
        assert_error(ctx, DDN_ERR_NUMERIC, "item 0 of 2");
        bp[0] = 0.5;
        /* strict: one iteration is not enough; not strict: reported through info */
        ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
        o.method = DDN_LESS_PGD;
        o.max_iter = 1;
        o.tol = 1e-300;
        ddn_decl_info info;
        ddn_tensor *y = ddn_less(ctx, A, b, &o, (ddn_less_backward)mode, &info);
        assert_non_null(y);
        for (int64_t i = 0; i < 2; i++)
            assert_int_equal((int)ddn_tensor_get(info.converged, &i), 0);
        o.strict = true;
        assert_null(ddn_less(ctx, A, b, &o, (ddn_less_backward)mode, NULL));
        assert_error(ctx, DDN_ERR_NOT_CONVERGED, "did not converge in 1 iterations");
    }
    ddn_ctx_free(ctx);
}

/* The hard case: A = diag(1, 2), b = (0, 1/2) gives A^T A = diag(1, 4), c = (0, 1), d_1 = 0 and
 * psi = (1/3)^2 < 1, so mu = l_1 = 1 and H = A^T A - 2 nu I = diag(0, 3): the forward is fine (y =
 * (sqrt(8/9), 1/3) is one of two minima), the backward must refuse, naming the item. The same
 * holds for m < n in the inner case (2 nu = 0, an eigenvalue of A^T A). */
static void test_hard_case_singular(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    double A[2 * 2 * 2] = {0.3, -0.8, 0.5, 0.9, 1, 0, 0, 2}, b[4] = {2.0, -1.5, 0, 0.5};
    ddn_tensor *tA = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2, 2), A);
    ddn_tensor *tb = leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2), b);
    ddn_less_opts o = exact_opts();
    for (int mode = DDN_LESS_BACKWARD_E; mode <= DDN_LESS_BACKWARD_J; mode++) {
        ddn_tensor *y = ddn_less(ctx, tA, tb, &o, (ddn_less_backward)mode, NULL);
        assert_non_null(y);
        assert_true(fabs(fabs(ddn_tensor_get(y, (int64_t[]){1, 0})) - sqrt(8.0 / 9)) < 1e-12);
        assert_true(fabs(ddn_tensor_get(y, (int64_t[]){1, 1}) - 1.0 / 3) < 1e-12);
        assert_int_equal(ddn_backward(ctx, ddn_sum(ctx, y, 0, NULL, false)), DDN_ERR_SINGULAR);
        assert_error(ctx, DDN_ERR_SINGULAR, mode == 0 ? "backward E, item 1 of 2"
                                                      : "backward J, item 1 of 2");
    }
    enum { B = 1, m = 3, n = 5 };
    double A3[m * n], b3[m];
    make_problem(ctx, B, m, n, false, 0.5, 17, A3, b3);
    ddn_tensor *y = ddn_less(ctx, leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, n), A3),
                             leaf(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), b3), &o,
                             DDN_LESS_BACKWARD_E, NULL);
    assert_int_equal(ddn_backward(ctx, ddn_sum(ctx, y, 0, NULL, false)), DDN_ERR_SINGULAR);
    assert_error(ctx, DDN_ERR_SINGULAR, "item 0 of 1");
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_2x2),
        cmocka_unit_test(test_gradcheck_5x3),
        cmocka_unit_test(test_gradcheck_3x5_and_rank_deficient),
        cmocka_unit_test(test_e_equals_j),
        cmocka_unit_test(test_e_matches_generic_adjoint),
        cmocka_unit_test(test_unroll_gradcheck_fixed_iterations),
        cmocka_unit_test(test_unroll_forward_matches_solver),
        cmocka_unit_test(test_unroll_close_to_e_when_converged),
        cmocka_unit_test(test_float32),
        cmocka_unit_test(test_node_tape_info_accumulate),
        cmocka_unit_test(test_views_and_empty_batch),
        cmocka_unit_test(test_backward_memory),
        cmocka_unit_test(test_argument_errors),
        cmocka_unit_test(test_solver_errors_surface),
        cmocka_unit_test(test_hard_case_singular),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
