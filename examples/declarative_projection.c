/* A user-defined declarative node: the weighted projection onto the unit sphere,
 *
 *     y(x, d) = argmin_u  1/2 sum_i d_i (u_i - x_i)^2   subject to  ||u||^2 = 1,   d_i > 0,
 *
 * batched over rows of x (B, n) and d (B, n). The forward solves the KKT conditions
 * d_i (u_i - x_i) + 2 nu u_i = 0, i.e. u_i = d_i x_i / (d_i + 2 nu), for the multiplier nu with
 * sum_i u_i^2 = 1 (monotone in nu on d_i + 2 nu > 0: bisection then Newton). The backward is the
 * generic equality-constrained adjoint of declarative.h with H = diag(d + 2 nu), A = 2 y^T,
 * dL/dx = d * w and dL/dd = -(y - x) * w; nothing problem-specific beyond these three lines.
 *
 * Run: build/declarative_projection   (prints the float64 gradient check and exits non-zero on
 * failure). tests/test_declarative.c includes this file to test the node.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ddn.h"

/* ---- forward: one item ---------------------------------------------------------------------- */
static double radius2(const double *x, const double *d, int64_t n, double nu)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double u = d[i] * x[i] / (d[i] + 2 * nu);
        s += u * u;
    }
    return s;
}

/* The multiplier nu > -min(d)/2 with radius2(nu) = 1. radius2 decreases from +inf (x has weight on
 * the smallest d) to 0, so bisection on a bracket is safe; 200 halvings reach double precision. */
static double solve_nu(const double *x, const double *d, int64_t n, int *iters)
{
    double dmin = d[0];
    for (int64_t i = 1; i < n; i++) dmin = fmin(dmin, d[i]);
    double lo = -dmin / 2, hi = fmax(1.0, -lo);
    while (radius2(x, d, n, hi) > 1) hi = 2 * hi + 1;
    int it = 0;
    for (; it < 200 && hi - lo > 1e-15 * fmax(1.0, fabs(hi)); it++) {
        double mid = 0.5 * (lo + hi);
        if (radius2(x, d, n, mid) > 1) lo = mid;
        else hi = mid;
    }
    *iters = it;
    return 0.5 * (lo + hi);
}

typedef struct { double *nu; /* (B) */ } projection_saved;

static ddn_status projection_solve(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                                   ddn_tensor *y, ddn_decl_info *info, void **saved)
{
    (void)opts;
    const ddn_tensor *x = in[0], *d = in[1];
    int64_t B = x->shape[0], n = x->shape[1];
    projection_saved *sv = ddn_ctx_scratch(ctx, sizeof *sv);
    double *buf = ddn_ctx_scratch(ctx, (size_t)(3 * B * n + B) * sizeof *buf);
    if (!sv || !buf) return ddn_ctx_status(ctx);
    double *xv = buf, *dv = xv + B * n, *yv = dv + B * n;
    sv->nu = yv + B * n;
    ddn_status st = ddn_tensor_to_host(x, DDN_DTYPE_F64, xv);
    if (st == DDN_OK) st = ddn_tensor_to_host(d, DDN_DTYPE_F64, dv);
    if (st != DDN_OK) return st;
    int64_t *iters = ddn_tensor_ptr(info->iterations), *conv = ddn_tensor_ptr(info->converged);
    double *fpd = ddn_tensor_ptr(info->fpd);
    for (int64_t b = 0; b < B; b++) {
        const double *xb = xv + b * n, *db = dv + b * n;
        for (int64_t i = 0; i < n; i++)
            if (!(db[i] > 0) || !isfinite(xb[i]))
                return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "projection: item %lld: weights must "
                                         "be positive and x finite", (long long)b);
        int it;
        double nu = solve_nu(xb, db, n, &it);
        double r = 0;
        for (int64_t i = 0; i < n; i++) {
            yv[b * n + i] = db[i] * xb[i] / (db[i] + 2 * nu);
            r += yv[b * n + i] * yv[b * n + i];
        }
        sv->nu[b] = nu;
        iters[b] = it;
        conv[b] = 1;
        fpd[b] = fabs(sqrt(r) - 1); /* distance from the constraint */
    }
    *saved = sv;
    ddn_tensor *yh = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, y->ndim, y->shape, yv);
    return yh ? ddn_tensor_copy_(y, yh) : ddn_ctx_status(ctx);
}

/* ---- backward: the generic adjoint ------------------------------------------------------------ */
typedef struct { const double *d; int64_t n; } projection_user;

static ddn_status projection_hessian(void *user, int64_t item, const double *y, const double *nu,
                                     double *H)
{
    (void)y;
    const projection_user *u = user;
    for (int64_t i = 0; i < u->n * u->n; i++) H[i] = 0;
    for (int64_t i = 0; i < u->n; i++) H[i * u->n + i] = u->d[item * u->n + i] + 2 * nu[0];
    return DDN_OK;
}

static ddn_status projection_jacobian(void *user, int64_t item, const double *y, double *A)
{
    (void)item;
    const projection_user *u = user;
    for (int64_t i = 0; i < u->n; i++) A[i] = 2 * y[i];
    return DDN_OK;
}

static ddn_status projection_vjp(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                                 const ddn_tensor *y, const ddn_tensor *dy, void *saved)
{
    (void)opts;
    const projection_saved *sv = saved;
    int64_t B = y->shape[0], n = y->shape[1];
    double *buf = ddn_ctx_scratch(ctx, (size_t)(7 * B * n + B) * sizeof *buf);
    if (!buf) return ddn_ctx_status(ctx);
    double *xv = buf, *dv = xv + B * n, *yv = dv + B * n, *v = yv + B * n, *w = v + B * n;
    double *gx = w + B * n, *gd = gx + B * n, *mu = gd + B * n;
    ddn_status st = ddn_tensor_to_host(in[0], DDN_DTYPE_F64, xv);
    if (st == DDN_OK) st = ddn_tensor_to_host(in[1], DDN_DTYPE_F64, dv);
    if (st == DDN_OK) st = ddn_tensor_to_host(y, DDN_DTYPE_F64, yv);
    if (st == DDN_OK) st = ddn_tensor_to_host(dy, DDN_DTYPE_F64, v);
    projection_user user = {dv, n};
    ddn_eqc_problem prob = {.n = n, .p = 1, .hessian = projection_hessian,
                            .constraint_jacobian = projection_jacobian};
    if (st == DDN_OK) st = ddn_eqc_adjoint(ctx, &prob, &user, B, yv, sv->nu, v, w, mu);
    if (st != DDN_OK) return st;
    /* dL/dx = -(w^T B_x) with B_x = -diag(d); dL/dd = -(w^T B_d) with B_d = diag(y - x). */
    for (int64_t i = 0; i < B * n; i++) {
        gx[i] = dv[i] * w[i];
        gd[i] = -(yv[i] - xv[i]) * w[i];
    }
    ddn_tensor *tx = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 2, y->shape, gx);
    ddn_tensor *td = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 2, y->shape, gd);
    if (!tx || !td) return ddn_ctx_status(ctx);
    if (in[0]->dtype != DDN_DTYPE_F64) { /* gradients take the inputs' dtype */
        tx = ddn_cast(ctx, tx, in[0]->dtype);
        td = ddn_cast(ctx, td, in[0]->dtype);
        if (!tx || !td) return ddn_ctx_status(ctx);
    }
    st = ddn_grad_accumulate(ctx, in[0], tx, 1.0);
    return st == DDN_OK ? ddn_grad_accumulate(ctx, in[1], td, 1.0) : st;
}

static const ddn_decl_vtbl projection_vtbl = {
    .name = "weighted_projection", .solve = projection_solve, .vjp = projection_vjp};

/* x (B, n), d (B, n) -> y (B, n) on the unit sphere. */
ddn_tensor *weighted_projection(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *d, ddn_decl_info *info)
{
    if (!x || !d) return NULL;
    if (x->ndim != 2 || !ddn_tensor_same_shape(x, d) || x->dtype != d->dtype) {
        char a[64], b[64];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "weighted_projection: x %s and d %s must both be "
                          "(B, n) of one dtype", ddn_shape_str(x, a, sizeof a),
                          ddn_shape_str(d, b, sizeof b));
        return NULL;
    }
    ddn_tensor *in[2] = {x, d};
    return ddn_declarative(ctx, &projection_vtbl, NULL, 0, 2, in, 2, x->shape, info);
}

#ifndef DDN_EXAMPLE_NO_MAIN
static ddn_tensor *check_fn(ddn_ctx *ctx, ddn_tensor *const *in, void *user)
{
    (void)user;
    return weighted_projection(ctx, in[0], in[1], NULL);
}

int main(void)
{
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!ctx) return 1;
    ddn_tensor *x = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(4, 5), 0, 1);
    ddn_tensor *d = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(4, 5), 0.5, 2);
    ddn_tensor_set_requires_grad(x, true);
    ddn_tensor_set_requires_grad(d, true);
    ddn_gradcheck_result r;
    ddn_tensor *in[2] = {x, d};
    if (ddn_gradcheck(ctx, check_fn, NULL, 2, in, NULL, &r) != DDN_OK) {
        fprintf(stderr, "declarative_projection: %s\n", ddn_ctx_errmsg(ctx));
        return 1;
    }
    printf("weighted projection: gradcheck over %lld entries: max abs err %.2e, max rel err "
           "%.2e: %s\n", (long long)r.checked, r.max_abs_err, r.max_rel_err,
           r.passed ? "passed" : "FAILED");
    ddn_ctx_free(ctx);
    return r.passed ? 0 : 1;
}
#endif
