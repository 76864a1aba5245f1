/* ddn — CPU reductions: sum and max over any set of dims, argmax along one dim.
 *
 * Outputs keep x's ndim with size 1 on reduced dims. Work is split over output elements (one
 * thread per group of outputs), each reducing its block with an odometer over the reduced dims.
 * float32 sums accumulate in double, so long sums do not drift.
 */
#include <math.h>

#include "cpu_impl.h"

typedef struct {
    int nk, nr;
    int64_t k_shape[DDN_MAX_DIMS], k_xstride[DDN_MAX_DIMS], k_ostride[DDN_MAX_DIMS];
    int64_t r_shape[DDN_MAX_DIMS], r_stride[DDN_MAX_DIMS];
    int64_t outer, inner;
} reduce_plan;

static void plan_reduce(reduce_plan *pl, const ddn_tensor *out, const ddn_tensor *x,
                        uint32_t mask)
{
    pl->nk = pl->nr = 0;
    pl->outer = pl->inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (mask & (1u << d)) {
            /* merge with the previous reduced dim when contiguous over both */
            if (pl->nr > 0 && pl->r_stride[pl->nr - 1] == x->stride[d] * x->shape[d]) {
                pl->r_shape[pl->nr - 1] *= x->shape[d];
                pl->r_stride[pl->nr - 1] = x->stride[d];
            } else {
                pl->r_shape[pl->nr] = x->shape[d];
                pl->r_stride[pl->nr++] = x->stride[d];
            }
            pl->inner *= x->shape[d];
        } else {
            pl->k_shape[pl->nk] = x->shape[d];
            pl->k_xstride[pl->nk] = x->stride[d];
            pl->k_ostride[pl->nk++] = out->stride[d];
            pl->outer *= x->shape[d];
        }
    }
}

static inline void kept_offsets(const reduce_plan *pl, int64_t o, int64_t *xoff, int64_t *ooff)
{
    int64_t xo = 0, oo = 0;
    for (int d = pl->nk - 1; d >= 0; d--) {
        int64_t i = o % pl->k_shape[d];
        o /= pl->k_shape[d];
        xo += i * pl->k_xstride[d];
        oo += i * pl->k_ostride[d];
    }
    *xoff = xo;
    *ooff = oo;
}

/* Visits every element of one reduced block: BODY sees `v`, the element value. The innermost
 * reduced dim is a tight loop; the others advance an odometer. */
#define FOR_BLOCK(T, X, BODY)                                                                  \
    do {                                                                                       \
        int64_t idx_[DDN_MAX_DIMS] = {0};                                                      \
        int nr_ = pl.nr;                                                                       \
        int64_t n_in_ = nr_ ? pl.r_shape[nr_ - 1] : 1, st_ = nr_ ? pl.r_stride[nr_ - 1] : 0;  \
        int64_t blocks_ = nr_ ? pl.inner / n_in_ : 1;                                          \
        int64_t off_ = 0;                                                                      \
        for (int64_t b_ = 0; b_ < blocks_; b_++) {                                             \
            const T *q_ = (X) + off_;                                                          \
            for (int64_t j_ = 0; j_ < n_in_; j_++) {                                           \
                T v = q_[j_ * st_];                                                            \
                BODY                                                                           \
            }                                                                                  \
            for (int d_ = nr_ - 2; d_ >= 0; d_--) {                                            \
                off_ += pl.r_stride[d_];                                                       \
                if (++idx_[d_] < pl.r_shape[d_]) break;                                        \
                off_ -= idx_[d_] * pl.r_stride[d_];                                            \
                idx_[d_] = 0;                                                                  \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#define REDUCE_IMPL(T)                                                                         \
    static void reduce_##T(ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x,             \
                           uint32_t mask)                                                      \
    {                                                                                          \
        reduce_plan pl;                                                                        \
        plan_reduce(&pl, out, x, mask);                                                        \
        const T *xb = (const T *)ddn_tensor_ptr(x);                                            \
        T *ob = (T *)ddn_tensor_ptr(out);                                                      \
        int64_t outer = pl.outer, work = outer * pl.inner;                                     \
        (void)work;                                                                            \
        DDN_OMP_FOR(work)                                                                      \
        for (int64_t o = 0; o < outer; o++) {                                                  \
            int64_t xoff, ooff;                                                                \
            kept_offsets(&pl, o, &xoff, &ooff);                                                \
            if (op == DDN_REDUCE_SUM) {                                                        \
                double acc = 0;                                                                \
                FOR_BLOCK(T, xb + xoff, acc += v;);                                            \
                ob[ooff] = (T)acc;                                                             \
            } else {                                                                           \
                T m = -INFINITY;                                                               \
                bool nan = false;                                                              \
                FOR_BLOCK(T, xb + xoff, if (v > m) m = v; if (v != v) nan = true;);            \
                ob[ooff] = nan ? (T)NAN : m;                                                   \
            }                                                                                  \
        }                                                                                      \
    }

REDUCE_IMPL(float)
REDUCE_IMPL(double)

ddn_status ddn_cpu_reduce(ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x, uint32_t mask)
{
    DDN_ASSERT(out->ndim == x->ndim && out->dtype == x->dtype);
    if (op == DDN_REDUCE_MAX && ddn_tensor_numel(x) == 0)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_SHAPE, "max: cannot reduce an empty tensor");
    if (x->dtype == DDN_DTYPE_F32) reduce_float(op, out, x, mask);
    else reduce_double(op, out, x, mask);
    return DDN_OK;
}

#define ARGMAX_IMPL(T)                                                                         \
    static void argmax_##T(ddn_tensor *out, const ddn_tensor *x, int dim)                      \
    {                                                                                          \
        int64_t n = x->shape[dim], st = x->stride[dim];                                        \
        int64_t outer = ddn_tensor_numel(out);                                                 \
        const T *xb = (const T *)ddn_tensor_ptr(x);                                            \
        int64_t *ob = (int64_t *)ddn_tensor_ptr(out);                                          \
        DDN_OMP_FOR(outer * n)                                                                 \
        for (int64_t o = 0; o < outer; o++) {                                                  \
            int64_t rem = o, xoff = 0, ooff = 0;                                               \
            for (int d = x->ndim - 1; d >= 0; d--) {                                           \
                int64_t size = d == dim ? 1 : x->shape[d];                                     \
                int64_t i = rem % size;                                                        \
                rem /= size;                                                                   \
                xoff += i * x->stride[d];                                                      \
                ooff += i * out->stride[d];                                                    \
            }                                                                                  \
            int64_t best = 0;                                                                  \
            T m = xb[xoff];                                                                    \
            for (int64_t j = 1; j < n && m == m; j++) {                                        \
                T v = xb[xoff + j * st];                                                       \
                if (v > m || v != v) m = v, best = j; /* NaN wins, as in PyTorch */            \
            }                                                                                  \
            ob[ooff] = best;                                                                   \
        }                                                                                      \
    }

ARGMAX_IMPL(float)
ARGMAX_IMPL(double)

ddn_status ddn_cpu_argmax(ddn_tensor *out, const ddn_tensor *x, int dim)
{
    DDN_ASSERT(out->dtype == DDN_DTYPE_I64 && out->ndim == x->ndim);
    if (x->shape[dim] == 0)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_SHAPE, "argmax: dim %d is empty", dim);
    if (x->dtype == DDN_DTYPE_F32) argmax_float(out, x, dim);
    else argmax_double(out, x, dim);
    return DDN_OK;
}
