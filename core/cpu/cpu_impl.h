/* ddn — CPU kernel helpers (internal): a strided multi-operand iterator and dtype dispatch.
 *
 * The iterator walks operands of one shape with their own strides. It first coalesces adjacent
 * dims that are contiguous for every operand (so a contiguous tensor is one long row), then
 * splits the work into units: one unit is a run of at most DDN_CPU_CHUNK elements of one row,
 * so both many short rows and one huge row parallelise across OpenMP threads.
 */
#ifndef DDN_CPU_IMPL_H
#define DDN_CPU_IMPL_H

#include "ddn_impl.h"

#define DDN_CPU_MAX_OPERANDS 5
#define DDN_CPU_CHUNK 16384
/* Below this many elements, threads cost more than they save. */
#define DDN_CPU_PARALLEL_MIN 32768

typedef struct ddn_iter {
    int n_ops, ndim; /* after coalescing; ndim >= 1 */
    int64_t shape[DDN_MAX_DIMS];
    int64_t stride[DDN_CPU_MAX_OPERANDS][DDN_MAX_DIMS];
    unsigned char *base[DDN_CPU_MAX_OPERANDS]; /* element 0 of each operand */
    size_t esize[DDN_CPU_MAX_OPERANDS];
    int64_t rows, inner, splits, units, numel;
} ddn_iter;

/* ops[i] all have ops[0]'s shape. */
void ddn_iter_init(ddn_iter *it, int n_ops, const ddn_tensor *const *ops);

/* The pointers of unit u's first element for each operand, its length, and (via istride) the
 * per-operand element stride along the run. */
static inline int64_t ddn_iter_unit(const ddn_iter *it, int64_t u, unsigned char **ptr)
{
    int64_t row = u / it->splits, part = u % it->splits;
    int64_t begin = part * DDN_CPU_CHUNK;
    int64_t len = it->inner - begin < DDN_CPU_CHUNK ? it->inner - begin : DDN_CPU_CHUNK;
    int64_t off[DDN_CPU_MAX_OPERANDS] = {0};
    for (int d = it->ndim - 2; d >= 0; d--) {
        int64_t idx = row % it->shape[d];
        row /= it->shape[d];
        for (int k = 0; k < it->n_ops; k++) off[k] += idx * it->stride[k][d];
    }
    for (int k = 0; k < it->n_ops; k++)
        ptr[k] = it->base[k] +
                 (size_t)(off[k] + begin * it->stride[k][it->ndim - 1]) * it->esize[k];
    return len;
}

static inline int64_t ddn_iter_istride(const ddn_iter *it, int k)
{
    return it->stride[k][it->ndim - 1];
}

#ifdef _OPENMP
#define DDN_PRAGMA(x) _Pragma(#x)
#define DDN_OMP_FOR(n) DDN_PRAGMA(omp parallel for schedule(static) if ((n) >= DDN_CPU_PARALLEL_MIN))
#define DDN_OMP_ATOMIC_WRITE _Pragma("omp atomic write")
#else
#define DDN_OMP_FOR(n)
#define DDN_OMP_ATOMIC_WRITE
#endif

/* Loops over every unit of an iterator in parallel; BODY sees `p` (operand pointers), `len`,
 * and `s0..s4` (strides along the run). */
#define DDN_ITER_FOR(it, BODY)                                                                 \
    do {                                                                                       \
        const ddn_iter *it_ = (it);                                                            \
        int64_t s0 = ddn_iter_istride(it_, 0);                                                 \
        int64_t s1 = it_->n_ops > 1 ? ddn_iter_istride(it_, 1) : 0;                            \
        int64_t s2 = it_->n_ops > 2 ? ddn_iter_istride(it_, 2) : 0;                            \
        int64_t s3 = it_->n_ops > 3 ? ddn_iter_istride(it_, 3) : 0;                            \
        int64_t s4 = it_->n_ops > 4 ? ddn_iter_istride(it_, 4) : 0;                            \
        (void)s1, (void)s2, (void)s3, (void)s4;                                                \
        int64_t units_ = it_->units;                                                           \
        int64_t numel_ = it_->numel;                                                           \
        (void)numel_;                                                                          \
        DDN_OMP_FOR(numel_)                                                                    \
        for (int64_t u_ = 0; u_ < units_; u_++) {                                              \
            unsigned char *p[DDN_CPU_MAX_OPERANDS];                                            \
            int64_t len = ddn_iter_unit(it_, u_, p);                                           \
            BODY                                                                               \
        }                                                                                      \
    } while (0)

#endif
