/* ddn — the CUDA table entries for pooling and the dropout mask: geometry on the host (as
 * core/cpu/norm_pool.c), kernels in pool.cu. */
#include "cuda_impl.h"

static cudaStream_t stream_of(const ddn_tensor *t) { return ddn_cuda_state_of(t->ctx)->stream; }

static bool is_nchw(const ddn_tensor *t, ddn_dtype dt)
{
    return t->ndim == 4 && t->dtype == dt && ddn_tensor_is_contiguous(t);
}

/* in (N, C, H, W) and out (N, C, OH, OW), contiguous, of one float dtype; p may be NULL. */
static ddn_status geom(const char *op, const ddn_tensor *in, const ddn_tensor *out,
                       const ddn_pool2d_params *p, ddn_cuda_pool_geom *g)
{
    if (!ddn_dtype_is_float(in->dtype) || !is_nchw(in, in->dtype) || !is_nchw(out, in->dtype) ||
        in->shape[0] != out->shape[0] || in->shape[1] != out->shape[1]) {
        char a[96], b[96];
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "%s: expected contiguous float NCHW "
                                 "tensors of one dtype with equal N and C, got %s %s and %s %s",
                                 op, ddn_dtype_name(in->dtype), ddn_shape_str(in, a, sizeof a),
                                 ddn_dtype_name(out->dtype), ddn_shape_str(out, b, sizeof b));
    }
    *g = (ddn_cuda_pool_geom){.planes = in->shape[0] * in->shape[1], .H = in->shape[2],
                              .W = in->shape[3], .OH = out->shape[2], .OW = out->shape[3]};
    if (p) {
        if (p->kernel[0] <= 0 || p->kernel[1] <= 0 || p->stride[0] <= 0 || p->stride[1] <= 0)
            return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "%s: kernel %dx%d and stride %dx%d "
                                     "must be positive (resolved by the front end)", op,
                                     p->kernel[0], p->kernel[1], p->stride[0], p->stride[1]);
        g->kh = p->kernel[0], g->kw = p->kernel[1], g->sh = p->stride[0], g->sw = p->stride[1];
        g->ph = p->padding[0], g->pw = p->padding[1], g->count_include_pad = p->count_include_pad;
    }
    return DDN_OK;
}

ddn_status ddn_cuda_max_pool2d(ddn_tensor *y, ddn_tensor *idx, const ddn_tensor *x,
                               const ddn_pool2d_params *p)
{
    ddn_cuda_pool_geom g;
    ddn_status st = geom("max_pool2d", x, y, p, &g);
    if (st == DDN_OK && idx && (!is_nchw(idx, DDN_DTYPE_I64) || !ddn_tensor_same_shape(idx, y)))
        st = ddn_ctx_set_error(y->ctx, DDN_ERR_ARG, "max_pool2d: the index tensor must be "
                               "contiguous int64 of the output's shape");
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(y->ctx, "max_pool2d",
                                 ddn_cuda_launch_max_pool(stream_of(y), &g, x->dtype,
                                                          ddn_tensor_ptr(y),
                                                          idx ? ddn_tensor_ptr(idx) : NULL,
                                                          ddn_tensor_ptr(x)));
}

ddn_status ddn_cuda_max_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                            const ddn_tensor *idx)
{
    ddn_cuda_pool_geom g;
    ddn_status st = geom("max_pool2d backward", dx, dy, NULL, &g);
    if (st == DDN_OK && (!is_nchw(idx, DDN_DTYPE_I64) || !ddn_tensor_same_shape(idx, dy)))
        st = ddn_ctx_set_error(dx->ctx, DDN_ERR_ARG, "max_pool2d backward: the index tensor "
                               "must be contiguous int64 of the output's shape");
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(dx->ctx, "max_pool2d backward",
                                 ddn_cuda_launch_max_pool_backward_acc(
                                     stream_of(dx), &g, dx->dtype, ddn_tensor_ptr(dx),
                                     ddn_tensor_ptr(dy), ddn_tensor_ptr(idx)));
}

ddn_status ddn_cuda_avg_pool2d(ddn_tensor *y, const ddn_tensor *x, const ddn_pool2d_params *p)
{
    ddn_cuda_pool_geom g;
    ddn_status st = geom("avg_pool2d", x, y, p, &g);
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(y->ctx, "avg_pool2d",
                                 ddn_cuda_launch_avg_pool(stream_of(y), &g, x->dtype,
                                                          ddn_tensor_ptr(y), ddn_tensor_ptr(x)));
}

ddn_status ddn_cuda_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                            const ddn_pool2d_params *p)
{
    ddn_cuda_pool_geom g;
    ddn_status st = geom("avg_pool2d backward", dx, dy, p, &g);
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(dx->ctx, "avg_pool2d backward",
                                 ddn_cuda_launch_avg_pool_backward_acc(stream_of(dx), &g,
                                                                       dx->dtype,
                                                                       ddn_tensor_ptr(dx),
                                                                       ddn_tensor_ptr(dy)));
}

/* Adaptive bins need non-empty planes on both sides (the CPU asserts the same). */
static ddn_status adaptive_geom(const char *op, const ddn_tensor *in, const ddn_tensor *out,
                                ddn_cuda_pool_geom *g)
{
    ddn_status st = geom(op, in, out, NULL, g);
    if (st == DDN_OK && g->planes > 0 && (g->H <= 0 || g->W <= 0 || g->OH <= 0 || g->OW <= 0))
        st = ddn_ctx_set_error(out->ctx, DDN_ERR_SHAPE, "%s: input %lldx%lld and output %lldx%lld "
                               "must be non-empty", op, (long long)g->H, (long long)g->W,
                               (long long)g->OH, (long long)g->OW);
    return st;
}

ddn_status ddn_cuda_adaptive_avg_pool2d(ddn_tensor *y, const ddn_tensor *x)
{
    ddn_cuda_pool_geom g;
    ddn_status st = adaptive_geom("adaptive_avg_pool2d", x, y, &g);
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(y->ctx, "adaptive_avg_pool2d",
                                 ddn_cuda_launch_adaptive_avg_pool(stream_of(y), &g, x->dtype,
                                                                   ddn_tensor_ptr(y),
                                                                   ddn_tensor_ptr(x)));
}

ddn_status ddn_cuda_adaptive_avg_pool2d_backward_acc(ddn_tensor *dx, const ddn_tensor *dy)
{
    ddn_cuda_pool_geom g;
    ddn_status st = adaptive_geom("adaptive_avg_pool2d backward", dx, dy, &g);
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(dx->ctx, "adaptive_avg_pool2d backward",
                                 ddn_cuda_launch_adaptive_avg_pool_backward_acc(
                                     stream_of(dx), &g, dx->dtype, ddn_tensor_ptr(dx),
                                     ddn_tensor_ptr(dy)));
}

ddn_status ddn_cuda_dropout_mask(ddn_tensor *mask, double p, uint64_t seed)
{
    if (!ddn_dtype_is_float(mask->dtype) || !ddn_tensor_is_contiguous(mask) || !(p >= 0 && p <= 1))
        return ddn_ctx_set_error(mask->ctx, DDN_ERR_ARG, "dropout_mask: expected a contiguous "
                                 "float mask and p in [0, 1], got %s and p = %g",
                                 ddn_dtype_name(mask->dtype), p);
    return DDN_CUDA_LAUNCH_CHECK(mask->ctx, "dropout_mask",
                                 ddn_cuda_launch_dropout_mask(stream_of(mask), mask->dtype,
                                                              ddn_tensor_ptr(mask),
                                                              ddn_tensor_numel(mask), p, seed));
}
