/* ddn — the IED layer: the principal eigenvector as a declarative node (PMAF-MATH.md §2).
 *
 *     y = argmin_u -u^T A u  subject to  u^T u = 1,   A (B, m, m) -> y (B, m),  lambda = y^T A y
 *
 * The forward runs ddn_ied_solve (ied_solver.h: PI or SI, sign modes, shift) with the tape
 * paused, except for UNROLL and EIGH. Backward modes:
 *   DDN_E   the bordered KKT system of PMAF-MATH.md §2 (H is singular: it is never inverted);
 *           one factorisation per item. Symmetric A only: a non-symmetric A is refused with a
 *           status pointing to IFT (the declared problem differentiates the top eigenvector of
 *           (A + A^T)/2, which PI does not compute for non-symmetric A);
 *   DDN_J   the same with the explicit Jacobian (m x (m x m) per item), a reference;
 *   IFT_E   the implicit function theorem on the PI fixed point y = A y / ||A y||: valid for
 *           symmetric and non-symmetric A; one m x m solve per item;
 *   IFT_J   the same with the explicit Jacobian (Eq. 40);
 *   UNROLL  every iteration recorded on the tape;
 *   EIGH    the dense baseline: LAPACK syevd forward and the standard eigenvector derivative.
 * The eigenvalue lambda = y^T A y is returned differentiable (through A and y) when asked for.
 *
 * Contract details (ied.c, ied_backward.c, ied_unroll.c):
 *   - DDN_E/J and EIGH refuse a non-symmetric A in the forward (DDN_ERR_ARG, pointing to IFT).
 *     A repeated top eigenvalue (the solver's gap check, or a numerically singular system)
 *     makes the backward fail with DDN_ERR_SINGULAR naming the item; the forward still returns
 *     an eigenvector. Solver errors (zero, NaN, strict non-convergence) are as in ied_solver.h.
 *   - float32: the forward stays float32; the backward's solves run in float64 and the
 *     gradient is returned in float32.
 *   - IFT_E solves H^T k = v by the fixed-point iteration k <- v + A^T P k / lambda (O(m^2) per
 *     sweep, converging at |lambda_2 / lambda|) when it converges within its budget, with a
 *     probe column that makes a tie visible whatever v is; otherwise by the LU with its
 *     condition check, as DDN_E, IFT_J and DDN_J always do (ied_backward.c).
 *   - UNROLL: PI or SI (SI through a differentiable QR) with the solver's start, signs and stop
 *     test; signs, stop test and shift are constants. No random restart: A u = 0 is an error.
 *   - EIGH: syevd; y is the eigenvector of the eigenvalue PI targets (largest magnitude; with
 *     opts->shift the largest algebraic), with the reference sign always applied; its gradient
 *     is ((lambda I - A)^+ v y^T) symmetrised as (G + G^T)/2, torch.linalg.eigh's convention.
 *     info->iterations is 0.
 * Tests: tests/test_ied.c.
 */
#ifndef DDN_IED_H
#define DDN_IED_H

#include "declarative.h"
#include "ied_solver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_ied_backward {
    DDN_IED_BACKWARD_DDN_E = 0,
    DDN_IED_BACKWARD_DDN_J = 1,
    DDN_IED_BACKWARD_IFT_E = 2,
    DDN_IED_BACKWARD_IFT_J = 3,
    DDN_IED_BACKWARD_UNROLL = 4,
    DDN_IED_BACKWARD_EIGH = 5,
} ddn_ied_backward;

/* opts NULL: DDN_IED_OPTS_DEFAULT. lambda (optional out): (B) eigenvalues, differentiable.
 * info (optional) gets per-item iterations, converged, fpd. */
ddn_tensor *ddn_ied(ddn_ctx *ctx, ddn_tensor *A, const ddn_ied_opts *opts,
                    ddn_ied_backward backward, ddn_tensor **lambda, ddn_decl_info *info);

#ifdef __cplusplus
}
#endif
#endif
