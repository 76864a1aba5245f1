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
