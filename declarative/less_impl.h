/* ddn — internal glue between the LESS layer files (not installed).
 *
 * less.c holds the entry point ddn_less, the declarative node (forward solve, backward modes E
 * and J); less_unroll.c holds the UNROLL mode (the iterations recorded on the tape). Math:
 * /work/shared/PMAF-MATH.md §1. Tests: tests/test_less.c.
 */
#ifndef DDN_LESS_IMPL_H
#define DDN_LESS_IMPL_H

#include "less.h"

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

#endif
