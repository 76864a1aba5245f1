/* ddn — CPU kernels for batch normalisation, max/avg/adaptive-avg pooling and the dropout mask.
 *
 * The math is written once in norm_pool_tmpl.h and compiled for float and double; this file
 * checks the operands (front ends in layers/batchnorm.c and layers/pool.c pass contiguous NCHW
 * tensors, so a violation is a programmer error: DDN_ASSERT) and dispatches on the dtype.
 * Semantics follow PyTorch exactly (see backend.h). Tests: tests/test_norm_pool.c,
 * tests/test_norm_pool_torch.c.
 */
#include <math.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"
#include "norm_math.h"
#include "pool_math.h"

/* Element c of a per-channel (C) tensor is p[c * s]; p NULL means absent. */
typedef struct {
    void *p;
    int64_t s;
} vec;

typedef struct {
    int64_t N, C, HW;
    vec w, b, mean, invstd, rmean, rvar, dw, db;
} bn_args;

typedef struct {
    int64_t planes, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw;
    bool count_include_pad;
} pool_geom;

#define T float
#define TS(name) name##_f32
#include "norm_pool_tmpl.h"
#undef T
#undef TS

#define T double
#define TS(name) name##_f64
#include "norm_pool_tmpl.h"
#undef T
#undef TS

/* A per-channel operand: absent, or 1-D with C elements of dtype dt. */
static vec chan(const ddn_tensor *t, int64_t C, ddn_dtype dt)
{
    if (!t) return (vec){NULL, 0};
    DDN_ASSERT(t->ndim == 1 && t->shape[0] == C && t->dtype == dt);
    return (vec){ddn_tensor_ptr(t), t->stride[0]};
}

static bool is_nchw(const ddn_tensor *t, ddn_dtype dt)
{
    return t && t->ndim == 4 && t->dtype == dt && ddn_tensor_is_contiguous(t);
}

static bn_args bn_setup(const ddn_tensor *x, const ddn_tensor *weight, const ddn_tensor *bias)
{
    DDN_ASSERT(is_nchw(x, x->dtype) && ddn_dtype_is_float(x->dtype));
    bn_args a = {.N = x->shape[0], .C = x->shape[1], .HW = x->shape[2] * x->shape[3]};
    a.w = chan(weight, a.C, x->dtype);
    a.b = chan(bias, a.C, x->dtype);
    return a;
}

ddn_status ddn_cpu_batch_norm_train(ddn_tensor *y, ddn_tensor *save_mean, ddn_tensor *save_invstd,
                                    ddn_tensor *running_mean, ddn_tensor *running_var,
                                    const ddn_tensor *x, const ddn_tensor *weight,
                                    const ddn_tensor *bias, double momentum, double eps)
{
    bn_args a = bn_setup(x, weight, bias);
    DDN_ASSERT(is_nchw(y, x->dtype) && ddn_tensor_same_shape(x, y));
    DDN_ASSERT(!running_mean == !running_var);
    a.mean = chan(save_mean, a.C, x->dtype);
    a.invstd = chan(save_invstd, a.C, x->dtype);
    a.rmean = chan(running_mean, a.C, x->dtype);
    a.rvar = chan(running_var, a.C, x->dtype);
    if (a.N * a.HW < 2 && a.C > 0)
        return ddn_ctx_set_error(y->ctx, DDN_ERR_SHAPE, "batch_norm: training needs more than "
                                 "one value per channel, got N*H*W = %lld",
                                 (long long)(a.N * a.HW));
    if (x->dtype == DDN_DTYPE_F32)
        bn_train_f32(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &a, momentum, eps);
    else bn_train_f64(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &a, momentum, eps);
    return DDN_OK;
}

ddn_status ddn_cpu_batch_norm_eval(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                   const ddn_tensor *bias, const ddn_tensor *mean,
                                   const ddn_tensor *var, double eps)
{
    bn_args a = bn_setup(x, weight, bias);
    DDN_ASSERT(is_nchw(y, x->dtype) && ddn_tensor_same_shape(x, y) && mean && var);
    a.rmean = chan(mean, a.C, x->dtype);
    a.rvar = chan(var, a.C, x->dtype);
    if (x->dtype == DDN_DTYPE_F32) bn_eval_f32(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &a, eps);
    else bn_eval_f64(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &a, eps);
    return DDN_OK;
}

ddn_status ddn_cpu_batch_norm_backward_acc(ddn_tensor *dx, ddn_tensor *dweight, ddn_tensor *dbias,
                                           const ddn_tensor *x, const ddn_tensor *dy,
                                           const ddn_tensor *weight, const ddn_tensor *mean,
                                           const ddn_tensor *invstd, bool training)
{
    bn_args a = bn_setup(x, weight, NULL);
    DDN_ASSERT(is_nchw(dy, x->dtype) && ddn_tensor_same_shape(x, dy) && mean && invstd);
    DDN_ASSERT(!dx || (is_nchw(dx, x->dtype) && ddn_tensor_same_shape(x, dx)));
    a.mean = chan(mean, a.C, x->dtype);
    a.invstd = chan(invstd, a.C, x->dtype);
    a.dw = chan(dweight, a.C, x->dtype);
    a.db = chan(dbias, a.C, x->dtype);
    if (!dx && !dweight && !dbias) return DDN_OK;
    void *dxp = dx ? ddn_tensor_ptr(dx) : NULL;
    if (x->dtype == DDN_DTYPE_F32)
        bn_backward_f32(dxp, ddn_tensor_ptr(x), ddn_tensor_ptr(dy), &a, training);
    else bn_backward_f64(dxp, ddn_tensor_ptr(x), ddn_tensor_ptr(dy), &a, training);
    return DDN_OK;
}

/* ---- pooling ---------------------------------------------------------------------------------- */
static pool_geom geom(const ddn_tensor *in, const ddn_tensor *out, const ddn_pool2d_params *p)
{
    DDN_ASSERT(is_nchw(in, in->dtype) && is_nchw(out, in->dtype) && ddn_dtype_is_float(in->dtype));
    DDN_ASSERT(in->shape[0] == out->shape[0] && in->shape[1] == out->shape[1]);
    pool_geom g = {.planes = in->shape[0] * in->shape[1], .H = in->shape[2], .W = in->shape[3],
                   .OH = out->shape[2], .OW = out->shape[3]};
    if (p) {
        DDN_ASSERT(p->kernel[0] > 0 && p->kernel[1] > 0 && p->stride[0] > 0 && p->stride[1] > 0);
        g.kh = p->kernel[0], g.kw = p->kernel[1], g.sh = p->stride[0], g.sw = p->stride[1];
        g.ph = p->padding[0], g.pw = p->padding[1], g.count_include_pad = p->count_include_pad;
    }
    return g;
}

ddn_status ddn_cpu_max_pool2d(ddn_tensor *y, ddn_tensor *idx, const ddn_tensor *x,
                              const ddn_pool2d_params *p)
{
    pool_geom g = geom(x, y, p);
    DDN_ASSERT(!idx || (is_nchw(idx, DDN_DTYPE_I64) && ddn_tensor_same_shape(idx, y)));
    int64_t *ip = idx ? ddn_tensor_ptr(idx) : NULL;
    if (x->dtype == DDN_DTYPE_F32) max_pool_f32(ddn_tensor_ptr(y), ip, ddn_tensor_ptr(x), &g);
    else max_pool_f64(ddn_tensor_ptr(y), ip, ddn_tensor_ptr(x), &g);
    return DDN_OK;
}

ddn_status ddn_cpu_max_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                           const ddn_tensor *idx)
{
    pool_geom g = geom(dx, dy, NULL);
    DDN_ASSERT(is_nchw(idx, DDN_DTYPE_I64) && ddn_tensor_same_shape(idx, dy));
    int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
    if (dx->dtype == DDN_DTYPE_F32)
        max_pool_backward_f32(ddn_tensor_ptr(dx), ddn_tensor_ptr(dy), ddn_tensor_ptr(idx),
                              g.planes, in_plane, out_plane);
    else
        max_pool_backward_f64(ddn_tensor_ptr(dx), ddn_tensor_ptr(dy), ddn_tensor_ptr(idx),
                              g.planes, in_plane, out_plane);
    return DDN_OK;
}

ddn_status ddn_cpu_avg_pool2d(ddn_tensor *y, const ddn_tensor *x, const ddn_pool2d_params *p)
{
    pool_geom g = geom(x, y, p);
    if (x->dtype == DDN_DTYPE_F32) avg_pool_f32(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &g);
    else avg_pool_f64(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &g);
    return DDN_OK;
}

ddn_status ddn_cpu_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                           const ddn_pool2d_params *p)
{
    pool_geom g = geom(dx, dy, p);
    if (dx->dtype == DDN_DTYPE_F32)
        avg_pool_backward_f32(ddn_tensor_ptr(dx), ddn_tensor_ptr(dy), &g);
    else avg_pool_backward_f64(ddn_tensor_ptr(dx), ddn_tensor_ptr(dy), &g);
    return DDN_OK;
}

ddn_status ddn_cpu_adaptive_avg_pool2d(ddn_tensor *y, const ddn_tensor *x)
{
    pool_geom g = geom(x, y, NULL);
    DDN_ASSERT(g.planes == 0 || (g.H > 0 && g.W > 0 && g.OH > 0 && g.OW > 0));
    if (x->dtype == DDN_DTYPE_F32) adaptive_avg_f32(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &g);
    else adaptive_avg_f64(ddn_tensor_ptr(y), ddn_tensor_ptr(x), &g);
    return DDN_OK;
}

ddn_status ddn_cpu_adaptive_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy)
{
    pool_geom g = geom(dx, dy, NULL);
    DDN_ASSERT(g.planes == 0 || (g.H > 0 && g.W > 0 && g.OH > 0 && g.OW > 0));
    if (dx->dtype == DDN_DTYPE_F32)
        adaptive_avg_backward_f32(ddn_tensor_ptr(dx), ddn_tensor_ptr(dy), &g);
    else adaptive_avg_backward_f64(ddn_tensor_ptr(dx), ddn_tensor_ptr(dy), &g);
    return DDN_OK;
}

/* ---- dropout ---------------------------------------------------------------------------------- */
ddn_status ddn_cpu_dropout_mask(ddn_tensor *mask, double p, uint64_t seed)
{
    DDN_ASSERT(ddn_dtype_is_float(mask->dtype) && ddn_tensor_is_contiguous(mask));
    DDN_ASSERT(p >= 0 && p <= 1);
    int64_t n = ddn_tensor_numel(mask);
    /* u >= p keeps: p = 0 keeps everything, p = 1 nothing (and the scale is never used) */
    double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
    if (mask->dtype == DDN_DTYPE_F32) {
        float *m = ddn_tensor_ptr(mask), s = (float)scale;
        DDN_OMP_FOR(n)
        for (int64_t i = 0; i < n; i++) m[i] = ddn_dropout_uniform(seed, i) >= p ? s : 0.0f;
    } else {
        double *m = ddn_tensor_ptr(mask);
        DDN_OMP_FOR(n)
        for (int64_t i = 0; i < n; i++) m[i] = ddn_dropout_uniform(seed, i) >= p ? scale : 0.0;
    }
    return DDN_OK;
}
