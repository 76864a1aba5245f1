/* ddn — helpers shared by the batched declarative solvers (less_solver.c, ied_solver.c). Internal.
 *
 * Threading rule (one level of parallelism, never two): the batch loop runs OpenMP threads only
 * while OpenBLAS itself is single-threaded (openblas_get_num_threads() == 1, e.g.
 * OPENBLAS_NUM_THREADS=1 as the tests and benchmarks set); otherwise the batch loop is serial and
 * BLAS/LAPACK may use their own threads inside each item. Errors found inside the parallel loop
 * are written to a per-item slot and reported (lowest item first) after the loop, because
 * ddn_ctx_set_error is not thread-safe. Tests: tests/test_less_solver.c, tests/test_ied_solver.c.
 */
#ifndef DDN_SOLVER_UTIL_H
#define DDN_SOLVER_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "context.h"

#ifdef _OPENMP
#include <omp.h>
#endif

extern int openblas_get_num_threads(void);

/* Threads for a batch loop over B items (see the rule above). */
static inline int ddn_solver_threads(int64_t B)
{
#ifdef _OPENMP
    if (B < 2 || omp_in_parallel() || openblas_get_num_threads() > 1) return 1;
    int t = omp_get_max_threads();
    return t < B ? t : (int)B;
#else
    (void)B;
    return 1;
#endif
}

static inline int ddn_solver_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* A per-item error slot, filled inside the parallel loop. */
typedef struct ddn_solver_err {
    ddn_status status; /* DDN_OK, or the item's failure */
    char msg[200];
} ddn_solver_err;

static inline ddn_status ddn_solver_fail(ddn_solver_err *e, ddn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline ddn_status ddn_solver_fail(ddn_solver_err *e, ddn_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = s;
    return s;
}

/* Bytes rounded up to the arena's 64-byte alignment, so carved sub-buffers stay aligned. */
static inline size_t ddn_solver_align(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Carves `bytes` (aligned) off *cursor and returns the start. */
static inline void *ddn_solver_carve(unsigned char **cursor, size_t bytes)
{
    void *p = *cursor;
    *cursor += ddn_solver_align(bytes);
    return p;
}

/* LAPACK returns optimal workspace sizes as floating point; round up safely. */
static inline int64_t ddn_solver_lwork(double w) { return (int64_t)(w * (1.0 + 1e-6)) + 8; }

#endif
