/* ddn — what the LESS kernel-table entries (less_iterate, less_vjp_e) share between the C side
 * and the CUDA kernels: the per-item outcome record, the iteration parameters, and the per-item
 * workspace sizes. Plain C types only, so that nvcc (cuda/less.cu, cuda_launch.h), the CPU
 * instances (less_blk.c) and the front end (less.c) all read one definition.
 *
 * The algorithms are less_iter_blk.h and less_vjp_blk.h (one block per item, blk.h). The kernels
 * report per item and never format messages: the front end turns a failed item into the same
 * message the host path gives (less.c, less_solver.c). Tests: tests/test_less_blk.c.
 */
#ifndef DDN_LESS_KERN_H
#define DDN_LESS_KERN_H

#include <stdint.h>

/* Outcome codes of one item. */
enum {
    DDN_LESS_ITEM_OK = 0,
    DDN_LESS_ITEM_ZERO_PIVOT = 1, /* vjp_e: LU met an exactly zero pivot (getrf info > 0) */
    DDN_LESS_ITEM_RCOND = 2,      /* vjp_e: rcond(H) <= n eps (detail[0] rcond, [1] n eps) */
    DDN_LESS_ITEM_YA = 3,         /* vjp_e: y^T H^{-1} y vanishes (detail[0] y.a, [1] |a|) */
    DDN_LESS_ITEM_BAD_NORM = 4,   /* vjp_e: ||H||_1 is NaN or Inf (gecon would return info -5) */
    DDN_LESS_ITEM_STEP = 5,       /* iterate: a step gave a zero or non-finite point */
    DDN_LESS_ITEM_NONFINITE = 6,  /* iterate: the returned y is not finite */
};

/* One item's outcome, written by the kernel (on the device: device memory, copied back). */
typedef struct ddn_less_item {
    int32_t code;       /* DDN_LESS_ITEM_* */
    int32_t converged;  /* iterate: the stopping test was met (1) or not (0) */
    int64_t iterations; /* iterate: updates made */
    double fpd;         /* iterate: ||A y - b|| on the returned y, accumulated in double */
    double objective;   /* iterate: 1/2 ||A y - b||^2 */
    double nu;          /* iterate: 1/2 y^T A^T (A y - b) */
    double detail[2];   /* the numbers a failure message quotes (see the codes) */
} ddn_less_item;

/* The iterative method and its constants (ddn_less_opts without what only the host uses). */
typedef struct ddn_less_iter_params {
    unsigned method; /* DDN_LESS_* flags of less_solver.h, validated by the caller */
    int64_t max_iter;
    double tol, bls_alpha, bls_beta, twd_beta;
} ddn_less_iter_params;

/* Per-item workspace. iterate: elements of the iterate dtype (u_new, g, d: n; r, A d, trial
 * residual: m). vjp_e: doubles (H: n^2; w, a, y, K, estimator x: n; r, A K: m; the estimator's
 * signs go in w before the solve) and ints (pivots: n). */
#define DDN_LESS_ITER_WORK(m, n) (3 * (n) + 3 * (m))
#define DDN_LESS_VJP_WORK(m, n) ((n) * (n) + 5 * (n) + 2 * (m))
#define DDN_LESS_VJP_IWORK(n) (n)

#endif
