/* ddn — internal glue between the LESS layer files (not installed).
 *
 * less.c holds the entry point ddn_less, the declarative node (forward solve, backward modes E
 * and J); less_unroll.c holds the UNROLL mode (the iterations recorded on the tape). Math:
 * /work/shared/PMAF-MATH.md §1. Tests: tests/test_less.c.
 */
#ifndef DDN_LESS_IMPL_H
#define DDN_LESS_IMPL_H

#include "less.h"
#include "less_kern.h"
#include "solver_util.h"

/* Row-major host copy of t's elements in dtype dt; t's own memory when it already is one (CPU,
 * contiguous, of dtype dt). NULL with the error set on failure. */
const void *ddn_less_host(ddn_ctx *ctx, const ddn_tensor *t, ddn_dtype dt);

/* Writes per-item diagnostics (host arrays of length B) into info's tensors. */
ddn_status ddn_less_write_info(ddn_ctx *ctx, const ddn_decl_info *info, int64_t B,
                               const int64_t *iterations, const int64_t *converged,
                               const double *fpd);

/* Accumulates the float64 host gradient g (shape of t) into t->grad, cast to t's dtype. */
ddn_status ddn_less_accumulate(ddn_ctx *ctx, ddn_tensor *t, const double *g);

/* The UNROLL mode of ddn_less on validated inputs (A (B,m,n), b (B,m), one float dtype, an
 * unrollable method). See less_unroll.c. */
ddn_tensor *ddn_less_unroll(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *o,
                            ddn_decl_info *info);

/* ddn_less with the path chosen: block true runs the iterative forward and backward E through
 * the kernel table's less_iterate / less_vjp_e (what ddn_less does for tensors off the CPU),
 * false the host LAPACK/BLAS path. Tests call it with block true on CPU tensors, so the device
 * path's host half runs, against the CPU instances of the block code, without a GPU. */
ddn_tensor *ddn_less_ex(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *opts,
                        ddn_less_backward backward, ddn_decl_info *info, bool block);

/* ---- the device path (less_solver.c, less_blk.c) ------------------------------------------- */
/* The option checks of ddn_less_solve, messages prefixed with op. */
ddn_status ddn_less_check_opts(ddn_ctx *ctx, const char *op, const ddn_less_opts *o);

/* ddn_less_solve's final report: the failure of item `fail` (>= 0) with ferr, else in strict
 * mode the first non-converged item nc (>= 0), else DDN_OK. */
ddn_status ddn_less_report(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                           const ddn_less_opts *o, int64_t fail, const ddn_solver_err *ferr,
                           int64_t nc);

/* The host half of the device forward: ddn_less_solve's argument checks, then per item only the
 * start: uc (B, n) = pinv(A) b (gelsd), y (B, n) = Proj(uc), info's center_norm and inner, and
 * errs[i] the item's failure (status DDN_OK when none; nothing is reported on ctx). An iterative
 * method only. Host buffers of `dtype`. */
ddn_status ddn_less_solve_start(ddn_ctx *ctx, ddn_dtype dtype, int64_t B, int64_t m, int64_t n,
                                const void *A, const void *b, void *uc, void *y,
                                const ddn_less_opts *opts, ddn_less_info *info,
                                ddn_solver_err *errs);

/* Argument checks of the kernel entries less_iterate and less_vjp_e, shared by the CPU and CUDA
 * instances (same acceptance, same messages); set *B, *m, *n. */
ddn_status ddn_less_check_iterate(const ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                                  const ddn_tensor *uc, const ddn_less_opts *o,
                                  const ddn_less_item *item, int64_t *B, int64_t *m, int64_t *n);
ddn_status ddn_less_check_vjp_e(const ddn_tensor *dA, const ddn_tensor *db, const ddn_tensor *A,
                                const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                                const ddn_tensor *nu, const ddn_less_item *item, int64_t *B,
                                int64_t *m, int64_t *n);
ddn_less_iter_params ddn_less_iter_params_of(const ddn_less_opts *o);

#endif
