/* ddn — the LESS layer: least squares on the unit sphere as a declarative node (PMAF-MATH.md §1).
 *
 *     y = argmin_u 1/2 ||A u - b||^2  subject to  ||u|| = 1,   A (B, m, n), b (B, m) -> y (B, n)
 *
 * The forward runs ddn_less_solve (less_solver.h: PGD, +RM, +BLS, +TWD, +DW, or EXACT) with the
 * tape paused; the backward is one of
 *   E      the closed form of PMAF-MATH.md §1 (one factorisation of H = A^T A - 2 nu I per item,
 *          nothing of size m x n x n), the default;
 *   J      the explicit Jacobian B of Prop. 3.1 (n x (m x n) per item), a slow reference;
 *   UNROLL the solver's iterations recorded on the tape and differentiated through (PGD, +RM,
 *          +TWD, +DW; EXACT and BLS are DDN_ERR_UNSUPPORTED; limits in less_unroll.c).
 * float32 and float64. Non-convergence is reported per item (info) and is an error in strict mode.
 * Tests: tests/test_less.c.
 */
#ifndef DDN_LESS_H
#define DDN_LESS_H

#include "declarative.h"
#include "less_solver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_less_backward {
    DDN_LESS_BACKWARD_E = 0,
    DDN_LESS_BACKWARD_J = 1,
    DDN_LESS_BACKWARD_UNROLL = 2,
} ddn_less_backward;

/* opts NULL: DDN_LESS_OPTS_DEFAULT. info (optional) gets per-item iterations, converged, fpd. */
ddn_tensor *ddn_less(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *opts,
                     ddn_less_backward backward, ddn_decl_info *info);

#ifdef __cplusplus
}
#endif
#endif
