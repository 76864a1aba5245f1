/* ddn — CUDA batch normalisation with our own kernels (cuda/norm.cu), for the cases cuDNN's
 * spatial batch norm refuses: eps below CUDNN_BN_MIN_EPSILON (1e-5; PyTorch allows any eps > 0)
 * in the training and evaluation forward, and the backward with constant statistics (evaluation
 * mode), which cuDNN does not offer at all. cuda_dnn.c calls these; everything else goes to cuDNN.
 * Per-channel vectors are read and written through their strides (no copies); x, y, dx, dy must be
 * contiguous NCHW. Semantics and arithmetic are the CPU's (core/cpu/norm_math.h). Tests:
 * tests/test_cuda.c (eps 1e-6, evaluation-mode backward), also in its self-check mode.
 */
#include "cuda_impl.h"

static ddn_cuda_vec vec_of(const ddn_tensor *t)
{
    return t ? (ddn_cuda_vec){ddn_tensor_ptr(t), t->stride[0]} : (ddn_cuda_vec){NULL, 0};
}

/* t (may be NULL when optional) is contiguous (N, C, H, W) of x's shape and dtype. */
static ddn_status check_nchw(ddn_ctx *ctx, const char *op, const char *name, const ddn_tensor *t,
                             const ddn_tensor *x)
{
    if (!t) return DDN_OK;
    if (t->ndim == 4 && ddn_dtype_is_float(t->dtype) && t->dtype == x->dtype &&
        ddn_tensor_same_shape(t, x) && ddn_tensor_is_contiguous(t))
        return DDN_OK;
    char a[96], b[96];
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s must be contiguous float (N, C, H, W) of "
                             "x's shape %s and dtype %s, got %s %s", op, name,
                             ddn_shape_str(x, a, sizeof a), ddn_dtype_name(x->dtype),
                             ddn_dtype_name(t->dtype), ddn_shape_str(t, b, sizeof b));
}

/* v (may be NULL) is 1-D with C elements of dtype dt. */
static ddn_status check_chan(ddn_ctx *ctx, const char *op, const char *name, const ddn_tensor *v,
                             int64_t C, ddn_dtype dt)
{
    if (!v || (v->ndim == 1 && v->shape[0] == C && v->dtype == dt)) return DDN_OK;
    char a[96];
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s must be (%lld) of dtype %s (one value per "
                             "channel), got %s %s", op, name, (long long)C, ddn_dtype_name(dt),
                             ddn_dtype_name(v->dtype), ddn_shape_str(v, a, sizeof a));
}

/* x's layout and the affine parameters, after checking x itself. */
static ddn_status setup(ddn_ctx *ctx, const char *op, const ddn_tensor *x, const ddn_tensor *w,
                        const ddn_tensor *b, ddn_cuda_bn_args *a)
{
    ddn_status st = check_nchw(ctx, op, "x", x, x);
    if (st != DDN_OK) return st;
    *a = (ddn_cuda_bn_args){.N = x->shape[0], .C = x->shape[1], .HW = x->shape[2] * x->shape[3],
                            .w = vec_of(w), .b = vec_of(b)};
    st = check_chan(ctx, op, "weight", w, a->C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "bias", b, a->C, x->dtype);
    return st;
}

static cudaStream_t stream_of(ddn_ctx *ctx) { return ddn_cuda_state_of(ctx)->stream; }

ddn_status ddn_cuda_bn_train_kernels(ddn_tensor *y, ddn_tensor *save_mean,
                                     ddn_tensor *save_invstd, ddn_tensor *running_mean,
                                     ddn_tensor *running_var, const ddn_tensor *x,
                                     const ddn_tensor *weight, const ddn_tensor *bias,
                                     double momentum, double eps)
{
    ddn_ctx *ctx = y->ctx;
    const char *op = "batch_norm (training)";
    ddn_cuda_bn_args a;
    ddn_status st = setup(ctx, op, x, weight, bias, &a);
    if (st == DDN_OK) st = check_nchw(ctx, op, "y", y, x);
    if (st == DDN_OK) st = check_chan(ctx, op, "save_mean", save_mean, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "save_invstd", save_invstd, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "running_mean", running_mean, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "running_var", running_var, a.C, x->dtype);
    if (st == DDN_OK && !running_mean != !running_var)
        st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: running_mean and running_var must be both "
                               "given or both NULL", op);
    if (st == DDN_OK && a.N * a.HW < 2 && a.C > 0)
        st = ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "batch_norm: training needs more than one "
                               "value per channel, got N*H*W = %lld", (long long)(a.N * a.HW));
    if (st != DDN_OK) return st;
    a.mean = vec_of(save_mean), a.invstd = vec_of(save_invstd);
    a.rmean = vec_of(running_mean), a.rvar = vec_of(running_var);
    return DDN_CUDA_LAUNCH_CHECK(ctx, "batch_norm (training)",
                                 ddn_cuda_launch_bn_train(stream_of(ctx), x->dtype, &a,
                                                          ddn_tensor_ptr(y), ddn_tensor_ptr(x),
                                                          momentum, eps));
}

ddn_status ddn_cuda_bn_eval_kernels(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                    const ddn_tensor *bias, const ddn_tensor *mean,
                                    const ddn_tensor *var, double eps)
{
    ddn_ctx *ctx = y->ctx;
    const char *op = "batch_norm (evaluation)";
    ddn_cuda_bn_args a;
    ddn_status st = setup(ctx, op, x, weight, bias, &a);
    if (st == DDN_OK) st = check_nchw(ctx, op, "y", y, x);
    if (st == DDN_OK && (!mean || !var))
        st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: needs the running mean and variance", op);
    if (st == DDN_OK) st = check_chan(ctx, op, "running_mean", mean, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "running_var", var, a.C, x->dtype);
    if (st != DDN_OK) return st;
    a.rmean = vec_of(mean), a.rvar = vec_of(var);
    return DDN_CUDA_LAUNCH_CHECK(ctx, "batch_norm (evaluation)",
                                 ddn_cuda_launch_bn_eval(stream_of(ctx), x->dtype, &a,
                                                         ddn_tensor_ptr(y), ddn_tensor_ptr(x),
                                                         eps));
}

ddn_status ddn_cuda_bn_backward_kernels(ddn_tensor *dx, ddn_tensor *dweight, ddn_tensor *dbias,
                                        const ddn_tensor *x, const ddn_tensor *dy,
                                        const ddn_tensor *weight, const ddn_tensor *mean,
                                        const ddn_tensor *invstd, bool training)
{
    ddn_ctx *ctx = x->ctx;
    const char *op = "batch_norm backward";
    ddn_cuda_bn_args a;
    ddn_status st = setup(ctx, op, x, weight, NULL, &a);
    if (st == DDN_OK) st = check_nchw(ctx, op, "dy", dy, x);
    if (st == DDN_OK) st = check_nchw(ctx, op, "dx", dx, x);
    if (st == DDN_OK && (!mean || !invstd))
        st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: needs the mean and invstd of the forward",
                               op);
    if (st == DDN_OK) st = check_chan(ctx, op, "mean", mean, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "invstd", invstd, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "dweight", dweight, a.C, x->dtype);
    if (st == DDN_OK) st = check_chan(ctx, op, "dbias", dbias, a.C, x->dtype);
    if (st != DDN_OK || (!dx && !dweight && !dbias)) return st;
    a.mean = vec_of(mean), a.invstd = vec_of(invstd);
    a.dw = vec_of(dweight), a.db = vec_of(dbias);
    return DDN_CUDA_LAUNCH_CHECK(ctx, "batch_norm backward",
                                 ddn_cuda_launch_bn_backward_acc(
                                     stream_of(ctx), x->dtype, &a,
                                     dx ? ddn_tensor_ptr(dx) : NULL, ddn_tensor_ptr(x),
                                     ddn_tensor_ptr(dy), training));
}
