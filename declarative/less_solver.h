/* ddn — batched forward solvers of LESS (least squares on the sphere), on host buffers.
 *
 *     y = argmin_u 1/2 ||A u - b||^2  subject to  ||u|| = 1,   A (B, m, n), b (B, m), y (B, n)
 *
 * Math and method definitions: /work/shared/PMAF-MATH.md §1 (paper §2.1, App. B, Table 4).
 * Buffers are contiguous row-major host memory of one dtype (float32 or float64). The iterative
 * methods run in the input's precision; the EXACT solver always computes in float64 (it is the
 * oracle, see less_solver.c). Any m, n >= 1 (m < n and rank-deficient A included).
 * The layer (tape node, backward modes) is less.h; these solvers are public for callers who
 * want a solve without the tape (benchmarks, `ddn solve`).
 * Tests: tests/test_less_solver.c.
 */
#ifndef DDN_LESS_SOLVER_H
#define DDN_LESS_SOLVER_H

#include <stdbool.h>
#include <stdint.h>

#include "context.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Method flags, composable as the rows of the paper's Table 4. Every iterative method includes
 * DDN_LESS_PGD; EXACT stands alone. Valid sets: PGD [+DW]; PGD+RM [+BLS_ONE | +BLS_GRAD | +TWD]
 * [+DW]. BLS and TWD act in the tangent space, so they require RM; BLS and TWD are exclusive, and
 * so are BLS_ONE and BLS_GRAD. Anything else is rejected with DDN_ERR_ARG. */
enum {
    DDN_LESS_PGD = 1u << 0,      /* projected gradient descent, exact line search (Eq. 49) */
    DDN_LESS_RM = 1u << 1,       /* step along the tangent (Riemannian) gradient P g (Eq. 4-6) */
    DDN_LESS_BLS_ONE = 1u << 2,  /* backtracking line search from eta = 1 ("BLSOne", Eq. 7) */
    DDN_LESS_BLS_GRAD = 1u << 3, /* backtracking from the RM line-search eta ("BLS-grad") */
    DDN_LESS_TWD = 1u << 4,      /* tangent weight decay (Eq. 8-9) */
    DDN_LESS_DW = 1u << 5,       /* direction weight (Eq. 2-3) */
    DDN_LESS_EXACT = 1u << 6,    /* global optimum via eigendecomposition + secular equation */
};
#define DDN_LESS_DEFAULT_METHOD (DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD)

typedef struct ddn_less_opts {
    unsigned method;    /* DDN_LESS_* flags; 0 is invalid (catches an unfilled struct) */
    double tol;         /* stop when |f(u_t) - f(u_{t+1})| <= tol (objective change), >= 0 */
    int64_t max_iter;   /* iteration cap, >= 0 (0 returns the projected least-squares start) */
    double bls_alpha;   /* Armijo constant of BLS, in (0, 1) */
    double bls_beta;    /* BLS step shrink factor, in (0, 1) */
    double twd_beta;    /* TWD decay factor, in (0, 1) */
    bool strict;        /* non-convergence of any item -> DDN_ERR_NOT_CONVERGED */
} ddn_less_opts;

/* The paper's defaults: PGD+RM+TWD, tol 1e-7, 100 iterations, alpha 0.5, BLS beta 0.8, TWD beta
 * 0.9, not strict. Also what a NULL opts means. */
#define DDN_LESS_OPTS_DEFAULT                                                                  \
    ((ddn_less_opts){.method = DDN_LESS_DEFAULT_METHOD, .tol = 1e-7, .max_iter = 100,          \
                     .bls_alpha = 0.5, .bls_beta = 0.8, .twd_beta = 0.9, .strict = false})

/* Per-item diagnostics (always float64, whatever the dtype). fpd, objective and nu are measured on
 * the returned y with float64 accumulation, so a float32 answer is judged exactly. */
typedef struct ddn_less_info {
    int64_t iterations; /* updates made (0 for EXACT) */
    bool converged;     /* stopping test met within max_iter (EXACT: always true) */
    bool inner;         /* ||pinv(A) b|| < 1: the "inner" case of Table 1/4 */
    bool hard_case;     /* EXACT only: the multiplier sits at the smallest eigenvalue of A^T A */
    double center_norm; /* ||pinv(A) b||, minimum-norm least squares (gelsd) */
    double fpd;         /* ||A y - b||, fixed-point distance (Eq. 41) */
    double objective;   /* 1/2 ||A y - b||^2 */
    double nu;          /* Lagrange multiplier 1/2 y^T A^T (A y - b); KKT: A^T(Ay - b) = 2 nu y */
} ddn_less_info;

/* Solves B independent LESS problems.
 *   A: (B, m, n), b: (B, m), y: (B, n) out, all of `dtype` (DDN_DTYPE_F32 or DDN_DTYPE_F64);
 *   opts: NULL for DDN_LESS_OPTS_DEFAULT; info: (B) or NULL.
 * Start (iterative methods): u0 = Proj(pinv(A) b) by a minimum-norm least-squares solve (gelsd,
 * singular values below max(m,n) * eps(dtype) * sigma_max dropped), so m < n and rank deficiency
 * are fine. When pinv(A) b = 0 (b = 0, or b orthogonal to the range of A) the start is
 * 1/sqrt(n) * ones instead.
 * Degenerate inputs: b = 0 with A != 0 is a valid problem whose solutions are the right singular
 * vectors of A's smallest singular value (EXACT returns one; for a repeated one any unit vector
 * of that subspace is optimal). A = 0 (every unit vector optimal) is DDN_ERR_SINGULAR; a NaN or
 * Inf in A or b is DDN_ERR_NUMERIC; a LAPACK failure is DDN_ERR_BACKEND; each names the item.
 * Returns DDN_OK, or the error also recorded on ctx (first failing item). On an item error y is
 * not meaningful for that item; the others are still solved. With opts->strict, an item that did
 * not converge gives DDN_ERR_NOT_CONVERGED (y still holds the last iterate).
 * Scratch comes from the context's step arena and is released before returning. */
ddn_status ddn_less_solve(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                          const void *A, const void *b, void *y, const ddn_less_opts *opts,
                          ddn_less_info *info);

/* The method rows of the paper's Table 4, in its order (PGD, +DW, +RM, +RM+BLSOne[+DW],
 * +RM+BLSGrad[+DW], +RM+TWD[+DW]): what `ddn bench` and the tests run. */
#define DDN_LESS_TABLE4_COUNT 9
extern const unsigned ddn_less_table4[DDN_LESS_TABLE4_COUNT];

/* Writes the name of a method set, e.g. "PGD+RM+BLSOne+DW" or "EXACT", into buf; returns buf. */
const char *ddn_less_method_name(unsigned method, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
