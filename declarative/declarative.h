/* ddn — declarative nodes: layers whose output solves an optimisation problem.
 *
 * A declarative node is a solver (forward, run with the tape paused, so no iteration is
 * recorded) and an implicit vector-Jacobian product (backward, from the solution and a small
 * saved context, never re-solving). ddn_declarative records exactly one tape node per call.
 * Every call reports, per batch item, the iterations used, a converged flag and the fixed-point
 * distance.
 *
 * For user-defined equality-constrained problems, ddn_eqc_adjoint solves the bordered KKT
 * system of PMAF-MATH.md §2 per item (one LU factorisation per item), from which the input
 * gradients follow. LESS and IED (less.h, ied.h) are built-in nodes with closed forms.
 */
#ifndef DDN_DECLARATIVE_H
#define DDN_DECLARATIVE_H

#include "autograd.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-item diagnostics of a solve; each tensor has shape (B). */
typedef struct ddn_decl_info {
    ddn_tensor *iterations; /* int64: iterations used */
    ddn_tensor *converged;  /* int64: 1 when the tolerance was met, 0 when the cap was hit */
    ddn_tensor *fpd;        /* float64: fixed-point distance at the solution */
} ddn_decl_info;

typedef struct ddn_decl_vtbl {
    const char *name;
    /* Forward, with the tape paused: writes the solution into y (allocated by the node with the
     * shape given to ddn_declarative), fills info, and may set *saved to state in the step
     * arena that vjp needs (multipliers, factorisations...). opts is the node's copy of the
     * options passed to ddn_declarative. */
    ddn_status (*solve)(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in, ddn_tensor *y,
                        ddn_decl_info *info, void **saved);
    /* Backward: accumulates dL/d in[i] (ddn_grad_accumulate / ddn_grad_buffer) for inputs that
     * require grad, given y and dy = dL/dy. Must not re-solve. */
    ddn_status (*vjp)(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in, const ddn_tensor *y,
                      const ddn_tensor *dy, void *saved);
} ddn_decl_vtbl;

/* Runs a declarative node: y (shape y_ndim, y_shape; dtype of in[0]) = argmin of the problem
 * vt describes. opts (opts_bytes, may be 0) is copied and handed to solve and vjp. info may be
 * NULL; its tensors are step tensors. Returns NULL with the error set on failure. */
ddn_tensor *ddn_declarative(ddn_ctx *ctx, const ddn_decl_vtbl *vt, const void *opts,
                            size_t opts_bytes, int n_in, ddn_tensor *const *in, int y_ndim,
                            const int64_t *y_shape, ddn_decl_info *info);

/* ---- generic equality-constrained backward ------------------------------------------------------
 * Problem, per batch item: y(x) = argmin_u f(x, u) subject to h(x, u) = 0 (p constraints, y of
 * n entries), with Lagrangian L = f + nu^T h, so that at the solution grad_y f + A^T nu = 0.
 * Differentiating the KKT conditions gives [H A^T; A 0] [Dy; Dnu] = -[B; C] with H = d2L/dy2
 * (n x n), A = dh/dy (p x n), B = d2L/dy dx, C = dh/dx. For an upstream gradient v = dL/dy the
 * bordered system
 *
 *     [ H  A^T ] [ w  ]   [ v ]
 *     [ A   0  ] [ mu ] = [ 0 ]
 *
 * gives dL/dx = -(w^T B + mu^T C). It is non-singular whenever H is positive definite on the
 * tangent space {d : A d = 0} and A has full row rank, even when H itself is singular (IED). */
typedef struct ddn_eqc_problem {
    int64_t n, p;
    /* Dense H (n x n, row-major) at item `item`'s solution. Either this or hessian_apply. */
    ddn_status (*hessian)(void *user, int64_t item, const double *y, const double *nu,
                          double *H);
    /* out = H d; used (n times) when hessian is NULL. */
    ddn_status (*hessian_apply)(void *user, int64_t item, const double *y, const double *nu,
                                const double *d, double *out);
    /* A = dh/dy (p x n, row-major). */
    ddn_status (*constraint_jacobian)(void *user, int64_t item, const double *y, double *A);
} ddn_eqc_problem;

/* Solves the bordered system for every item: y (B, n), nu (B, p), v (B, n) in; w (B, n) and
 * mu (B, p) out, all host float64 row-major. A singular system is DDN_ERR_SINGULAR naming the
 * item; a callback's failure is passed on. */
ddn_status ddn_eqc_adjoint(ddn_ctx *ctx, const ddn_eqc_problem *prob, void *user, int64_t batch,
                           const double *y, const double *nu, const double *v, double *w,
                           double *mu);

#ifdef __cplusplus
}
#endif
#endif
