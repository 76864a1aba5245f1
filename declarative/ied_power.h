/* ddn — IED's power iteration as a batched kernel (internal): the forward of PI on tensors that
 * live on the device, one block per item (blk.h).
 *
 * The per-item algorithm is ied_power_blk.h, the same as ied_solver_tmpl.h's ied_item for PI
 * (k = 1): input checks, the Gershgorin shift, the ones or seeded random start with one random
 * restart, the historical and reference signs, the step test, the float64 diagnostics and the gap
 * check (Lanczos for symmetric A, power iteration otherwise). What differs: sums are accumulated
 * in double in the block's order (the CPU solver's float32 BLAS sums in float32), and when the
 * gap check's Laguerre iteration fails to settle the estimate falls back to the Gershgorin bound
 * (the CPU solver has LAPACK's dsterf first). C types only: the CUDA launcher includes it.
 */
#ifndef DDN_IED_POWER_H
#define DDN_IED_POWER_H

#include <stddef.h>
#include <stdint.h>

/* The symmetric gap check's Lanczos steps at most (ied_solver_tmpl.h's ied_gap_lanczos). */
#define DDN_IED_GAP_KMAX 80

/* One launch's parameters (plain data, passed by value to the kernel). */
typedef struct ddn_ied_power_params {
    int64_t B, m, max_iter;
    int64_t kgap;        /* the gap check's Lanczos cap (>= 1), 0: no gap check */
    double tol;          /* the step tolerance, already the dtype's default when 0 */
    double tie_tol;
    unsigned sign;       /* DDN_IED_SIGN_* */
    int shift, random_init, has_ref;
    size_t scratch;      /* bytes of scratch per item (ddn_ied_power_scratch) */
} ddn_ied_power_params;

/* Why an item failed (0: it did not). it and value are the message's numbers. */
enum {
    DDN_IED_POWER_OK = 0,
    DDN_IED_POWER_NONFINITE = 1, /* A contains NaN or Inf */
    DDN_IED_POWER_ZERO = 2,      /* A = 0 */
    DDN_IED_POWER_OVERFLOW = 3,  /* ||A u|| not finite at iteration it */
    DDN_IED_POWER_NILPOTENT = 4, /* A u = 0 again after the random restart, iteration it */
};

typedef struct ddn_ied_power_err {
    int code;
    int64_t it;
    double value;
} ddn_ied_power_err;

/* Bytes of per-item scratch for m, the Lanczos cap kgap and elements of tsize bytes. */
static inline size_t ddn_ied_power_scratch(int64_t m, int64_t kgap, size_t tsize)
{
    size_t k = (size_t)(kgap > 0 ? kgap : 0), n = (size_t)m;
    size_t bytes = (2 * n + (k + 2) * n + (k + 2)) * tsize /* Q, Z, U, h */
                   + (n + (k + 1) * k) * sizeof(double);   /* A y, Lanczos H */
    return (bytes + 255) / 256 * 256;
}

#endif
