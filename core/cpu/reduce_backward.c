/* ddn — CPU gradient of max over a set of dims (sum and mean need no kernel of their own: their
 * backward is an axpy of a broadcast view).
 *
 * Ties share the gradient equally, as torch.amax: each block is visited twice, once to count the
 * entries equal to its maximum and once to add dy / count to them. Work is split over output
 * elements (blocks) with OpenMP; x and dx may have any strides. Tests: tests/test_reduce.c.
 */
#include <math.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"

typedef struct {
    int nk, nr;
    int64_t k_shape[DDN_MAX_DIMS], k_x[DDN_MAX_DIMS], k_dx[DDN_MAX_DIMS], k_y[DDN_MAX_DIMS],
        k_dy[DDN_MAX_DIMS];
    int64_t r_shape[DDN_MAX_DIMS], r_x[DDN_MAX_DIMS], r_dx[DDN_MAX_DIMS];
    int64_t outer, block;
} maxb_plan;

static void plan(maxb_plan *p, const ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
                 const ddn_tensor *dy, uint32_t mask)
{
    p->nk = p->nr = 0;
    p->outer = p->block = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (mask & (1u << d)) {
            p->r_shape[p->nr] = x->shape[d];
            p->r_x[p->nr] = x->stride[d];
            p->r_dx[p->nr++] = dx->stride[d];
            p->block *= x->shape[d];
        } else {
            p->k_shape[p->nk] = x->shape[d];
            p->k_x[p->nk] = x->stride[d];
            p->k_dx[p->nk] = dx->stride[d];
            p->k_y[p->nk] = y->stride[d];
            p->k_dy[p->nk++] = dy->stride[d];
            p->outer *= x->shape[d];
        }
    }
}

/* Visits the block: BODY sees xi and dxi, the element offsets of the current entry. */
#define FOR_BLOCK(BODY)                                                                        \
    do {                                                                                       \
        int64_t idx_[DDN_MAX_DIMS] = {0}, xi = xo, dxi = dxo;                                  \
        for (int64_t j_ = 0; j_ < p.block; j_++) {                                             \
            BODY                                                                               \
            for (int d_ = p.nr - 1; d_ >= 0; d_--) {                                           \
                xi += p.r_x[d_];                                                               \
                dxi += p.r_dx[d_];                                                             \
                if (++idx_[d_] < p.r_shape[d_]) break;                                         \
                xi -= idx_[d_] * p.r_x[d_];                                                    \
                dxi -= idx_[d_] * p.r_dx[d_];                                                  \
                idx_[d_] = 0;                                                                  \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#define MAXB_IMPL(T)                                                                           \
    static void max_backward_##T(T *dxb, const T *xb, const T *yb, const T *dyb, maxb_plan p)  \
    {                                                                                          \
        DDN_OMP_FOR(p.outer * p.block)                                                         \
        for (int64_t o = 0; o < p.outer; o++) {                                                \
            int64_t rem = o, xo = 0, dxo = 0, yo = 0, dyo = 0;                                 \
            for (int d = p.nk - 1; d >= 0; d--) {                                              \
                int64_t i = rem % p.k_shape[d];                                                \
                rem /= p.k_shape[d];                                                           \
                xo += i * p.k_x[d];                                                            \
                dxo += i * p.k_dx[d];                                                          \
                yo += i * p.k_y[d];                                                            \
                dyo += i * p.k_dy[d];                                                          \
            }                                                                                  \
            T m = yb[yo];                                                                      \
            int64_t count = 0;                                                                 \
            FOR_BLOCK(count += xb[xi] == m;);                                                  \
            if (count == 0) { /* the max is NaN: torch's dy * mask / count gives 0/0 */        \
                FOR_BLOCK(dxb[dxi] += (T)NAN;);                                                \
                continue;                                                                      \
            }                                                                                  \
            T share = (T)((double)dyb[dyo] / (double)count);                                   \
            FOR_BLOCK(if (xb[xi] == m) dxb[dxi] += share;);                                    \
        }                                                                                      \
    }

MAXB_IMPL(float)
MAXB_IMPL(double)

ddn_status ddn_cpu_max_backward_acc(ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
                                    const ddn_tensor *dy, uint32_t mask)
{
    DDN_ASSERT(ddn_tensor_same_shape(dx, x) && y->ndim == x->ndim && dy->ndim == x->ndim);
    DDN_ASSERT(dx->dtype == x->dtype && y->dtype == x->dtype && dy->dtype == x->dtype);
    if (ddn_tensor_numel(x) == 0) return DDN_OK;
    maxb_plan p;
    plan(&p, dx, x, y, dy, mask);
    if (x->dtype == DDN_DTYPE_F32)
        max_backward_float(ddn_tensor_ptr(dx), ddn_tensor_ptr(x), ddn_tensor_ptr(y),
                           ddn_tensor_ptr(dy), p);
    else
        max_backward_double(ddn_tensor_ptr(dx), ddn_tensor_ptr(x), ddn_tensor_ptr(y),
                            ddn_tensor_ptr(dy), p);
    return DDN_OK;
}
