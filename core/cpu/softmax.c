/* ddn — CPU softmax / log-softmax along one dim, their backward, and the NLL loss kernels.
 *
 * All tensors here are contiguous (front ends make them so), viewed as (outer, n, inner) around
 * the softmax dim. Softmax subtracts the maximum before exp, so large logits never overflow; sums
 * accumulate in double. When inner > 1 the n values of one softmax are inner apart, so columns
 * are processed in tiles of TILE neighbours to keep memory access sequential. Work is split over
 * (outer, tile) pairs with OpenMP. Tests: tests/test_loss.c.
 */
#include <math.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"

#define TILE 64

typedef struct {
    int64_t outer, n, inner, tiles;
} sm_shape;

static sm_shape sm_shape_of(const ddn_tensor *x, int dim)
{
    sm_shape s = {1, 1, 1, 1};
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) s.outer *= x->shape[d];
        else if (d == dim) s.n = x->shape[d];
        else s.inner *= x->shape[d];
    }
    s.tiles = (s.inner + TILE - 1) / TILE;
    return s;
}

/* One work unit: softmax over the n rows of a TILE-wide column block (w columns, stride inner).
 * inner == 1 makes this the plain contiguous-row case. */
#define SOFTMAX_IMPL(T, EXP)                                                                   \
    static void softmax_##T(T *out, const T *x, sm_shape s, bool lg)                           \
    {                                                                                          \
        int64_t units = s.outer * s.tiles;                                                     \
        DDN_OMP_FOR(s.outer * s.n * s.inner)                                                   \
        for (int64_t u = 0; u < units; u++) {                                                  \
            int64_t o = u / s.tiles, c0 = (u % s.tiles) * TILE;                                \
            int64_t w = s.inner - c0 < TILE ? s.inner - c0 : TILE;                             \
            const T *xb = x + o * s.n * s.inner + c0;                                          \
            T *ob = out + o * s.n * s.inner + c0;                                              \
            T m[TILE];                                                                         \
            double sum[TILE];                                                                  \
            for (int64_t c = 0; c < w; c++) m[c] = -INFINITY, sum[c] = 0;                      \
            for (int64_t j = 0; j < s.n; j++)                                                  \
                for (int64_t c = 0; c < w; c++) {                                              \
                    T v = xb[j * s.inner + c];                                                 \
                    if (v > m[c]) m[c] = v;                                                    \
                }                                                                              \
            for (int64_t j = 0; j < s.n; j++)                                                  \
                for (int64_t c = 0; c < w; c++) {                                              \
                    T e = EXP(xb[j * s.inner + c] - m[c]);                                     \
                    sum[c] += e;                                                               \
                    if (!lg) ob[j * s.inner + c] = e;                                          \
                }                                                                              \
            for (int64_t c = 0; c < w; c++) sum[c] = lg ? (double)m[c] + log(sum[c])          \
                                                          : 1.0 / sum[c];                      \
            for (int64_t j = 0; j < s.n; j++)                                                  \
                for (int64_t c = 0; c < w; c++) {                                              \
                    int64_t k = j * s.inner + c;                                               \
                    ob[k] = lg ? (T)((double)xb[k] - sum[c]) : (T)(ob[k] * sum[c]);            \
                }                                                                              \
        }                                                                                      \
    }

SOFTMAX_IMPL(float, expf)
SOFTMAX_IMPL(double, exp)

ddn_status ddn_cpu_softmax(ddn_tensor *out, const ddn_tensor *x, int dim, bool log)
{
    DDN_ASSERT(ddn_tensor_same_shape(out, x) && out->dtype == x->dtype);
    DDN_ASSERT(ddn_tensor_is_contiguous(out) && ddn_tensor_is_contiguous(x));
    sm_shape s = sm_shape_of(x, dim);
    if (s.n == 0 || ddn_tensor_numel(x) == 0) return DDN_OK;
    if (x->dtype == DDN_DTYPE_F32) softmax_float(ddn_tensor_ptr(out), ddn_tensor_ptr(x), s, log);
    else softmax_double(ddn_tensor_ptr(out), ddn_tensor_ptr(x), s, log);
    return DDN_OK;
}

/* softmax:     dx += y * (dy - sum_j dy_j y_j)
 * log-softmax: dx += dy - exp(y) * sum_j dy_j */
#define SOFTMAX_BWD_IMPL(T, EXP)                                                               \
    static void softmax_bwd_##T(T *dx, const T *y, const T *dy, sm_shape s, bool lg)           \
    {                                                                                          \
        int64_t units = s.outer * s.tiles;                                                     \
        DDN_OMP_FOR(s.outer * s.n * s.inner)                                                   \
        for (int64_t u = 0; u < units; u++) {                                                  \
            int64_t o = u / s.tiles, c0 = (u % s.tiles) * TILE;                                \
            int64_t w = s.inner - c0 < TILE ? s.inner - c0 : TILE;                             \
            int64_t base = o * s.n * s.inner + c0;                                             \
            double dot[TILE];                                                                  \
            for (int64_t c = 0; c < w; c++) dot[c] = 0;                                        \
            for (int64_t j = 0; j < s.n; j++)                                                  \
                for (int64_t c = 0; c < w; c++) {                                              \
                    int64_t k = base + j * s.inner + c;                                        \
                    dot[c] += lg ? (double)dy[k] : (double)dy[k] * y[k];                       \
                }                                                                              \
            for (int64_t j = 0; j < s.n; j++)                                                  \
                for (int64_t c = 0; c < w; c++) {                                              \
                    int64_t k = base + j * s.inner + c;                                        \
                    dx[k] += lg ? (T)(dy[k] - EXP(y[k]) * dot[c])                              \
                                : (T)(y[k] * (dy[k] - dot[c]));                                \
                }                                                                              \
        }                                                                                      \
    }

SOFTMAX_BWD_IMPL(float, expf)
SOFTMAX_BWD_IMPL(double, exp)

ddn_status ddn_cpu_softmax_backward_acc(ddn_tensor *dx, const ddn_tensor *y, const ddn_tensor *dy,
                                        int dim, bool log)
{
    DDN_ASSERT(ddn_tensor_same_shape(dx, y) && ddn_tensor_same_shape(dx, dy));
    DDN_ASSERT(ddn_tensor_is_contiguous(dx) && ddn_tensor_is_contiguous(y) &&
               ddn_tensor_is_contiguous(dy));
    sm_shape s = sm_shape_of(y, dim);
    if (s.n == 0 || ddn_tensor_numel(y) == 0) return DDN_OK;
    if (dx->dtype == DDN_DTYPE_F32)
        softmax_bwd_float(ddn_tensor_ptr(dx), ddn_tensor_ptr(y), ddn_tensor_ptr(dy), s, log);
    else softmax_bwd_double(ddn_tensor_ptr(dx), ddn_tensor_ptr(y), ddn_tensor_ptr(dy), s, log);
    return DDN_OK;
}

/* ---- negative log-likelihood ------------------------------------------------------------------ */
/* The first item whose label is outside [0, C), or -1. Labels are read through their stride. */
static int64_t first_bad_label(const ddn_tensor *labels, int64_t C, int64_t *value)
{
    const int64_t *lb = ddn_tensor_ptr(labels);
    int64_t n = labels->shape[0], st = labels->stride[0];
    for (int64_t i = 0; i < n; i++) {
        int64_t v = lb[i * st];
        if (v < 0 || v >= C) {
            *value = v;
            return i;
        }
    }
    return -1;
}

static ddn_status bad_label(ddn_ctx *ctx, int64_t item, int64_t value, int64_t C)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "cross_entropy (nll): item %lld has label %lld, "
                             "outside [0, %lld) for %lld classes", (long long)item,
                             (long long)value, (long long)C, (long long)C);
}

ddn_status ddn_cpu_nll(ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels,
                       double scale)
{
    DDN_ASSERT(logp->ndim == 2 && labels->ndim == 1 && labels->dtype == DDN_DTYPE_I64 &&
               labels->shape[0] == logp->shape[0] && ddn_tensor_numel(out) == 1);
    int64_t N = logp->shape[0], C = logp->shape[1], bad_value = 0;
    int64_t bad = first_bad_label(labels, C, &bad_value);
    if (bad >= 0) return bad_label(out->ctx, bad, bad_value, C);
    const int64_t *lb = ddn_tensor_ptr(labels);
    int64_t ls = labels->stride[0], rs = logp->stride[0], cs = logp->stride[1];
    double acc = 0;
    if (logp->dtype == DDN_DTYPE_F32) {
        const float *p = ddn_tensor_ptr(logp);
        for (int64_t i = 0; i < N; i++) acc -= p[i * rs + lb[i * ls] * cs];
    } else {
        const double *p = ddn_tensor_ptr(logp);
        for (int64_t i = 0; i < N; i++) acc -= p[i * rs + lb[i * ls] * cs];
    }
    acc *= scale;
    if (out->dtype == DDN_DTYPE_F32) *(float *)ddn_tensor_ptr(out) = (float)acc;
    else *(double *)ddn_tensor_ptr(out) = acc;
    return DDN_OK;
}

ddn_status ddn_cpu_nll_backward_acc(ddn_tensor *dlogp, const ddn_tensor *labels,
                                    const ddn_tensor *dy, double scale)
{
    DDN_ASSERT(dlogp->ndim == 2 && labels->ndim == 1 && labels->shape[0] == dlogp->shape[0] &&
               ddn_tensor_numel(dy) == 1 && dy->dtype == dlogp->dtype);
    int64_t N = dlogp->shape[0], C = dlogp->shape[1], bad_value = 0;
    int64_t bad = first_bad_label(labels, C, &bad_value);
    if (bad >= 0) return bad_label(dlogp->ctx, bad, bad_value, C);
    const int64_t *lb = ddn_tensor_ptr(labels);
    int64_t ls = labels->stride[0], rs = dlogp->stride[0], cs = dlogp->stride[1];
    if (dlogp->dtype == DDN_DTYPE_F32) {
        float *g = ddn_tensor_ptr(dlogp);
        float v = (float)(-scale * *(const float *)ddn_tensor_ptr(dy));
        for (int64_t i = 0; i < N; i++) g[i * rs + lb[i * ls] * cs] += v;
    } else {
        double *g = ddn_tensor_ptr(dlogp);
        double v = -scale * *(const double *)ddn_tensor_ptr(dy);
        for (int64_t i = 0; i < N; i++) g[i * rs + lb[i * ls] * cs] += v;
    }
    return DDN_OK;
}
