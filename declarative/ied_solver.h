/* ddn — batched forward solvers of IED (implicit eigendecomposition, principal eigenvector).
 *
 *     y = argmin_u -u^T A u  subject to  u^T u = 1,   A (B, m, m), y (B, m), lambda = y^T A y
 *
 * Math: /work/shared/PMAF-MATH.md §2, §6 (paper §2.2). Power iteration (PI) and simultaneous
 * (orthogonal) iteration (SI, k columns) in the input's precision; contiguous row-major buffers.
 * They find A's eigenvalue of largest magnitude (with the shift: the largest algebraic one). The
 * DDN backward differentiates the top eigenvector of (A + A^T)/2, which PI returns only for
 * symmetric A: info.symmetric tells the backward (IFT is valid for both). The layer
 * (tape node, backward modes) is ied.h. Tests: tests/test_ied_solver.c.
 */
#ifndef DDN_IED_SOLVER_H
#define DDN_IED_SOLVER_H

#include <stdbool.h>
#include <stdint.h>

#include "context.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_ied_method {
    DDN_IED_PI = 1, /* u <- A u / ||A u|| (Eq. 13-14) */
    DDN_IED_SI = 2, /* Q R = qr(A Q), k columns; y = the first column (PMAF-MATH §2) */
} ddn_ied_method;

/* Sign consistency (Eq. 16-17); flags, combinable. */
enum {
    DDN_IED_SIGN_HISTORICAL = 1u << 0, /* u_t <- sign(u_t . u_{t-1}) u_t inside the iteration */
    DDN_IED_SIGN_REFERENCE = 1u << 1,  /* y <- sign(y . r) y at the end (dot 0 -> +1) */
};

typedef struct ddn_ied_opts {
    ddn_ied_method method; /* 0 is invalid (catches an unfilled struct) */
    int64_t k;             /* SI columns, 1..m (the paper used k = m); PI: 1 */
    double tol;            /* stop when ||u_{t+1} - s u_t|| <= tol, s = sign(u_{t+1}.u_t), for
                            * the first column; <= 0: the dtype's default (DDN_IED_TOL_*) */
    int64_t max_iter;      /* iteration cap, >= 1 */
    unsigned sign;         /* DDN_IED_SIGN_* flags */
    const void *ref;       /* (m) of the dtype: the reference direction r; NULL: all ones */
    bool shift;            /* iterate on A + sigma I, sigma = max(0, -min_i(a_ii - sum_j!=i
                            * |a_ij|)) (Gershgorin): finds the largest algebraic eigenvalue of a
                            * real spectrum (PMAF-MATH §6); slower (ratio closer to 1) */
    bool random_init;      /* start from N(0,1) vectors seeded by seed and the item index;
                            * false: 1/sqrt(m) * ones (SI: QR of [ones, e_1, ..., e_{k-1}]) */
    uint64_t seed;
    bool check_gap;        /* estimate the second eigenvalue on P (A + sigma I) P, P = I - y y^T,
                            * and flag near ties: Lanczos for symmetric A (19-57 matvecs on the
                            * paper's input, m = 32-1024; at most 80), power iteration otherwise
                            * (at most 200) */
    double tie_tol;        /* tied when gap_ratio >= 1 - tie_tol */
    bool strict;           /* non-convergence of any item -> DDN_ERR_NOT_CONVERGED */
} ddn_ied_opts;

#define DDN_IED_TOL_F64 1e-12
#define DDN_IED_TOL_F32 1e-6
/* PI, ones start, historical + reference (all ones) sign, no shift, 1000 iterations, the
 * dtype's tolerance, gap check with tie_tol 1e-3. Also what a NULL opts means. */
#define DDN_IED_OPTS_DEFAULT                                                                   \
    ((ddn_ied_opts){.method = DDN_IED_PI, .k = 1, .tol = 0, .max_iter = 1000,                  \
                    .sign = DDN_IED_SIGN_HISTORICAL | DDN_IED_SIGN_REFERENCE, .ref = NULL,     \
                    .shift = false, .random_init = false, .seed = 0, .check_gap = true,        \
                    .tie_tol = 1e-3, .strict = false})

/* Per-item diagnostics (float64, measured on the returned y with float64 accumulation). */
typedef struct ddn_ied_info {
    int64_t iterations; /* iterations run */
    bool converged;     /* the step test met within max_iter */
    bool symmetric;     /* A == A^T exactly (the DDN backward needs it; IFT does not) */
    bool tied;          /* check_gap: gap_ratio >= 1 - tie_tol (a repeated or nearly repeated
                         * dominant eigenvalue: y is not unique, the DDN system is singular) */
    double lambda;      /* y^T A y */
    double lambda2;     /* check_gap: the estimated competing eigenvalue: its magnitude without
                         * shift, its value (mu - sigma) with the shift; 0 when m = 1 */
    double gap_ratio;   /* check_gap: |lambda2 + sigma| / |lambda + sigma|, the iteration's
                         * convergence ratio; 0 when m = 1 or unchecked */
    int64_t gap_steps;  /* check_gap: the estimate's matvecs with A (Lanczos or power steps) */
    double shift;       /* sigma used (0 without the shift) */
    double fpd;         /* ||y - A y / ||A y|| || (Eq. 42) */
    double eigen_dist;  /* ||A y - lambda y|| (Eq. 43) */
    double step;        /* the last ||u_{t+1} - s u_t|| */
} ddn_ied_info;

/* Outputs: y required; the others may be NULL. All arrays of the solve's dtype except info. */
typedef struct ddn_ied_out {
    void *y;            /* (B, m) principal eigenvector */
    void *lambda;       /* (B) y^T A y */
    void *V;            /* (B, m, k) the k iterated vectors (SI) in the iteration's order, i.e.
                         * by decreasing |eigenvalue + sigma| once converged; PI: k = 1 */
    void *lambdas;      /* (B, k) their Rayleigh quotients v_j^T A v_j */
    ddn_ied_info *info; /* (B) */
} ddn_ied_out;

/* Solves B independent IED problems, A: (B, m, m) of dtype float32 or float64; opts NULL for
 * DDN_IED_OPTS_DEFAULT. Errors, each naming the item: NaN/Inf in A -> DDN_ERR_NUMERIC; A = 0, or
 * A u = 0 during the iteration even after a random restart (nilpotent A) -> DDN_ERR_SINGULAR;
 * LAPACK failure -> DDN_ERR_BACKEND; with opts->strict, non-convergence ->
 * DDN_ERR_NOT_CONVERGED (outputs still hold the last iterate). The other items are still solved.
 * Scratch comes from the context's step arena and is released before returning. */
ddn_status ddn_ied_solve(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, const void *A,
                         const ddn_ied_opts *opts, const ddn_ied_out *out);

#ifdef __cplusplus
}
#endif
#endif
