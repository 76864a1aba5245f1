/* ddn — the declarative node (one tape node around a solver and an implicit VJP) and the generic
 * equality-constrained adjoint solve (bordered KKT system, one LU factorisation per item).
 * Tests: tests/test_declarative.c; a user-defined node: examples/declarative_projection.c. */
#include <lapacke.h>
#include <string.h>

#include "declarative.h"
#include "ddn_impl.h"

typedef struct {
    const ddn_decl_vtbl *vt;
    void *opts;  /* the node's copy */
    void *saved; /* from solve */
} decl_saved;

static ddn_status decl_backward(ddn_ctx *ctx, ddn_node *node)
{
    const decl_saved *sv = node->saved;
    return sv->vt->vjp(ctx, sv->opts, node->in, node->out, node->out->grad, sv->saved);
}

ddn_tensor *ddn_declarative(ddn_ctx *ctx, const ddn_decl_vtbl *vt, const void *opts,
                            size_t opts_bytes, int n_in, ddn_tensor *const *in, int y_ndim,
                            const int64_t *y_shape, ddn_decl_info *info)
{
    if (!vt || !vt->solve || !vt->vjp || n_in < 1 || !in) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "declarative: a node needs a solve and a vjp "
                          "function and at least one input");
        return NULL;
    }
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return NULL;
    if (!ddn_check_float(ctx, vt->name, in[0])) return NULL;

    ddn_tensor *y = ddn_tensor_new(ctx, in[0]->dtype, y_ndim, y_shape);
    int64_t batch = y && y_ndim > 0 ? y_shape[0] : 1;
    ddn_decl_info local = {0};
    local.iterations = ddn_zeros(ctx, DDN_DTYPE_I64, 1, &batch);
    local.converged = ddn_zeros(ctx, DDN_DTYPE_I64, 1, &batch);
    local.fpd = ddn_zeros(ctx, DDN_DTYPE_F64, 1, &batch);
    void *opts_copy = opts_bytes ? ddn_ctx_scratch(ctx, opts_bytes) : NULL;
    if (!y || !local.iterations || !local.converged || !local.fpd || (opts_bytes && !opts_copy))
        return NULL;
    if (opts_copy) memcpy(opts_copy, opts, opts_bytes);

    /* The solver's iterations are never recorded: the gradient comes from the implicit VJP. */
    bool prev = ddn_set_grad_enabled(ctx, false);
    void *saved = NULL;
    ddn_status st = vt->solve(ctx, opts_copy, in, y, &local, &saved);
    ddn_set_grad_enabled(ctx, prev);
    if (st != DDN_OK) {
        if (ddn_ctx_status(ctx) == DDN_OK)
            ddn_ctx_set_error(ctx, st, "%s: the solver failed", vt->name);
        return NULL;
    }
    if (info) *info = local;
    decl_saved sv = {vt, opts_copy, saved};
    if (ddn_tape_record(ctx, vt->name, decl_backward, y, n_in, in, &sv, sizeof sv) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, vt->name, y);
}

/* ---- generic equality-constrained adjoint -------------------------------------------------- */
ddn_status ddn_eqc_adjoint(ddn_ctx *ctx, const ddn_eqc_problem *prob, void *user, int64_t batch,
                           const double *y, const double *nu, const double *v, double *w,
                           double *mu)
{
    const int64_t n = prob->n, p = prob->p, k = n + p;
    if (n < 1 || p < 0 || (!prob->hessian && !prob->hessian_apply) ||
        (p > 0 && !prob->constraint_jacobian))
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "eqc_adjoint: the problem needs n >= 1, a "
                                 "Hessian callback and (with constraints) a constraint Jacobian");
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *K = ddn_ctx_scratch(ctx, (size_t)(k * k + n * n + p * n + 2 * n + k) * sizeof *K);
    lapack_int *piv = ddn_ctx_scratch(ctx, (size_t)k * sizeof *piv);
    if (!K || !piv) return ddn_ctx_status(ctx);
    double *H = K + k * k, *A = H + n * n, *e = A + p * n, *col = e + n, *rhs = col + n;
    ddn_status st = DDN_OK;
    for (int64_t b = 0; b < batch && st == DDN_OK; b++) {
        const double *yb = y + b * n, *nub = nu ? nu + b * p : NULL;
        if (prob->hessian) {
            st = prob->hessian(user, b, yb, nub, H);
        } else { /* build H column by column from n products */
            for (int64_t j = 0; j < n && st == DDN_OK; j++) {
                memset(e, 0, (size_t)n * sizeof *e);
                e[j] = 1;
                st = prob->hessian_apply(user, b, yb, nub, e, col);
                for (int64_t i = 0; i < n; i++) H[i * n + j] = col[i];
            }
        }
        if (st == DDN_OK && p > 0) st = prob->constraint_jacobian(user, b, yb, A);
        if (st != DDN_OK) break;
        /* K = [H A^T; A 0], row-major */
        memset(K, 0, (size_t)(k * k) * sizeof *K);
        for (int64_t i = 0; i < n; i++) {
            memcpy(K + i * k, H + i * n, (size_t)n * sizeof *K);
            for (int64_t r = 0; r < p; r++) K[i * k + n + r] = A[r * n + i];
        }
        for (int64_t r = 0; r < p; r++) memcpy(K + (n + r) * k, A + r * n, (size_t)n * sizeof *K);
        memcpy(rhs, v + b * n, (size_t)n * sizeof *rhs);
        memset(rhs + n, 0, (size_t)p * sizeof *rhs);
        lapack_int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, (lapack_int)k, (lapack_int)k, K,
                                         (lapack_int)k, piv);
        if (info > 0) {
            st = ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "eqc_adjoint: item %lld: the bordered "
                                   "KKT system (%lld x %lld) is singular (H is not definite on "
                                   "the constraint tangent space, or the constraints are "
                                   "dependent)", (long long)b, (long long)k, (long long)k);
            break;
        }
        if (info == 0)
            info = LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', (lapack_int)k, 1, K, (lapack_int)k, piv,
                                  rhs, 1);
        if (info != 0) {
            st = ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "eqc_adjoint: item %lld: LAPACK "
                                   "getrf/getrs returned %d", (long long)b, (int)info);
            break;
        }
        memcpy(w + b * n, rhs, (size_t)n * sizeof *w);
        if (p > 0) memcpy(mu + b * p, rhs + n, (size_t)p * sizeof *mu);
    }
    ddn_ctx_rewind(ctx, mark);
    return st;
}
