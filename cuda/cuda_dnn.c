/* ddn — CUDA convolution and batch normalisation through cuDNN 9.
 *
 * cuDNN 9 keeps the descriptor-based convolution and normalisation calls used here (the v7
 * generation: cudnnGetConvolution*Algorithm_v7, cudnnConvolutionForward/BackwardData/
 * BackwardFilter/BackwardBias, cudnnBatchNormalization*) and marks them deprecated in favour of the
 * graph API; the v6 calls removed in cuDNN 8 are not used. Porting to the graph API is later
 * work.
 *
 * Convolutions: each distinct configuration (shapes, stride, padding, dilation, groups, dtype)
 * gets its descriptors once, in a per-context cache; each direction's algorithm is chosen on first
 * use from cuDNN's heuristics (_v7: no trial runs, so the choice is deterministic) and kept with
 * its workspace size. float32 runs with CUDNN_FMA_MATH and skips tensor-op algorithms: no TF32,
 * so results compare strictly with the CPU. "acc" entries accumulate with beta = 1.
 */
#include <string.h>

#include "cuda_impl.h"

/* Workspace an algorithm may ask for before a leaner one is preferred. */
#define MAX_CONV_WORKSPACE ((size_t)1 << 30)

static const float one_f = 1.0f, zero_f = 0.0f;
static const double one_d = 1.0, zero_d = 0.0;
static const void *one_of(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? (const void *)&one_f : &one_d; }
static const void *zero_of(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? (const void *)&zero_f : &zero_d; }
static cudnnDataType_t cudnn_type(ddn_dtype dt)
{
    return dt == DDN_DTYPE_F32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
}

static bool fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

/* ---- the descriptor cache --------------------------------------------------------------------- */
static void entry_release(ddn_cuda_conv_entry *e)
{
    if (!e->used) return;
    if (e->x) (void)cudnnDestroyTensorDescriptor(e->x);
    if (e->y) (void)cudnnDestroyTensorDescriptor(e->y);
    if (e->bias) (void)cudnnDestroyTensorDescriptor(e->bias);
    if (e->w) (void)cudnnDestroyFilterDescriptor(e->w);
    if (e->conv) (void)cudnnDestroyConvolutionDescriptor(e->conv);
    memset(e, 0, sizeof *e);
}

void ddn_cuda_dnn_release(ddn_cuda_state *s)
{
    for (int i = 0; i < DDN_CUDA_CONV_CACHE; i++) entry_release(&s->conv_cache[i]);
}

static ddn_status entry_create(ddn_ctx *ctx, ddn_cuda_conv_entry *e, const ddn_cuda_conv_key *k)
{
    memset(e, 0, sizeof *e);
    e->used = true;
    e->key = *k;
    cudnnDataType_t t = cudnn_type((ddn_dtype)k->dtype);
    ddn_status st = DDN_OK;
#define TRY(call) if (st == DDN_OK) st = DDN_CUDNN_CHECK(ctx, call)
    TRY(cudnnCreateTensorDescriptor(&e->x));
    TRY(cudnnCreateTensorDescriptor(&e->y));
    TRY(cudnnCreateTensorDescriptor(&e->bias));
    TRY(cudnnCreateFilterDescriptor(&e->w));
    TRY(cudnnCreateConvolutionDescriptor(&e->conv));
    TRY(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, t, (int)k->n, (int)k->c, (int)k->h,
                                   (int)k->w));
    TRY(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, t, (int)k->n, (int)k->oc, (int)k->oh,
                                   (int)k->ow));
    TRY(cudnnSetTensor4dDescriptor(e->bias, CUDNN_TENSOR_NCHW, t, 1, (int)k->oc, 1, 1));
    TRY(cudnnSetFilter4dDescriptor(e->w, t, CUDNN_TENSOR_NCHW, (int)k->oc,
                                   (int)(k->c / k->groups), (int)k->kh, (int)k->kw));
    TRY(cudnnSetConvolution2dDescriptor(e->conv, k->padding[0], k->padding[1], k->stride[0],
                                        k->stride[1], k->dilation[0], k->dilation[1],
                                        CUDNN_CROSS_CORRELATION, t));
    TRY(cudnnSetConvolutionGroupCount(e->conv, k->groups));
    TRY(cudnnSetConvolutionMathType(e->conv, k->dtype == DDN_DTYPE_F32 ? CUDNN_FMA_MATH
                                                                       : CUDNN_DEFAULT_MATH));
#undef TRY
    if (st != DDN_OK) entry_release(e);
    return st;
}

/* The cache entry of a configuration, created on a miss; NULL with the error on failure. */
static ddn_cuda_conv_entry *conv_entry(ddn_ctx *ctx, const char *op, const ddn_tensor *x4,
                                       const ddn_tensor *w4, const ddn_tensor *y4,
                                       const int stride[2], const int padding[2],
                                       const int dilation[2], int groups)
{
    ddn_cuda_conv_key k;
    memset(&k, 0, sizeof k); /* padding bytes too: keys are compared with memcmp */
    k.n = x4->shape[0], k.c = x4->shape[1], k.h = x4->shape[2], k.w = x4->shape[3];
    k.oc = w4->shape[0], k.kh = w4->shape[2], k.kw = w4->shape[3];
    k.oh = y4->shape[2], k.ow = y4->shape[3];
    for (int i = 0; i < 2; i++)
        k.stride[i] = stride[i], k.padding[i] = padding[i], k.dilation[i] = dilation[i];
    k.groups = groups;
    k.dtype = x4->dtype;
    const int64_t sizes[] = {k.n, k.c, k.h, k.w, k.oc, k.kh, k.kw, k.oh, k.ow};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!fits_int(sizes[i]))
            return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "%s: a dimension exceeds cuDNN's "
                                     "int range", op), NULL;
    ddn_cuda_state *s = ddn_cuda_state_of(ctx);
    for (int i = 0; i < DDN_CUDA_CONV_CACHE; i++)
        if (s->conv_cache[i].used && memcmp(&s->conv_cache[i].key, &k, sizeof k) == 0)
            return &s->conv_cache[i];
    ddn_cuda_conv_entry *e = &s->conv_cache[s->conv_next];
    s->conv_next = (s->conv_next + 1) % DDN_CUDA_CONV_CACHE;
    entry_release(e);
    return entry_create(ctx, e, &k) == DDN_OK ? e : NULL;
}

/* Whether a heuristic result may be used: it ran, fits the workspace cap, and (float32) does not
 * use tensor-op math, which would round inputs to TF32. */
static bool algo_usable(cudnnStatus_t status, size_t memory, cudnnMathType_t math, int dtype)
{
    return status == CUDNN_STATUS_SUCCESS && memory <= MAX_CONV_WORKSPACE &&
           (dtype != DDN_DTYPE_F32 ||
            (math != CUDNN_TENSOR_OP_MATH && math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION));
}

/* Picks entry->FIELD from cuDNN's _v7 heuristics (PERF results of GETTER, best first). */
#define CHOOSE_ALGO(ctx, e, op, PERF, COUNT, GETTER, ARGS, FIELD, WS, HAVE)                    \
    do {                                                                                       \
        if ((e)->HAVE) break;                                                                  \
        PERF perf_[COUNT];                                                                     \
        int n_ = 0;                                                                            \
        if (DDN_CUDNN_CHECK(ctx, GETTER ARGS) != DDN_OK) return ddn_ctx_status(ctx);           \
        int pick_ = -1;                                                                        \
        for (int i_ = 0; i_ < n_ && pick_ < 0; i_++)                                           \
            if (algo_usable(perf_[i_].status, perf_[i_].memory, perf_[i_].mathType,            \
                            (e)->key.dtype))                                                   \
                pick_ = i_;                                                                    \
        if (pick_ < 0)                                                                         \
            return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "%s: cuDNN offers no algorithm " \
                                     "for this configuration within %zu bytes of workspace "   \
                                     "without TF32", op, MAX_CONV_WORKSPACE);                  \
        (e)->FIELD = perf_[pick_].algo;                                                        \
        (e)->WS = perf_[pick_].memory;                                                         \
        (e)->HAVE = true;                                                                      \
    } while (0)

static bool all_contiguous(int n, const ddn_tensor *const *t)
{
    for (int i = 0; i < n; i++)
        if (t[i] && !ddn_tensor_is_contiguous(t[i])) return false;
    return true;
}

static ddn_status not_contiguous(ddn_ctx *ctx, const char *op)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: cuDNN path expects contiguous NCHW tensors",
                             op);
}

/* ---- convolution ------------------------------------------------------------------------------ */
ddn_status ddn_cuda_conv2d(ddn_tensor *out, const ddn_tensor *x, const ddn_tensor *w,
                           const ddn_tensor *bias, const int stride[2], const int padding[2],
                           const int dilation[2], int groups)
{
    ddn_ctx *ctx = out->ctx;
    const char *op = "conv2d";
    if (!all_contiguous(4, (const ddn_tensor *[]){out, x, w, bias})) return not_contiguous(ctx, op);
    if (ddn_tensor_numel(out) == 0) return DDN_OK;
    cudnnHandle_t h = ddn_cuda_cudnn(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_cuda_conv_entry *e = conv_entry(ctx, op, x, w, out, stride, padding, dilation, groups);
    if (!e) return ddn_ctx_status(ctx);
    CHOOSE_ALGO(ctx, e, op, cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                cudnnGetConvolutionForwardAlgorithm_v7,
                (h, e->x, e->w, e->conv, e->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n_, perf_), fwd,
                fwd_ws, have_fwd);
    void *ws = e->fwd_ws ? ddn_cuda_workspace(ctx, e->fwd_ws) : NULL;
    if (e->fwd_ws && !ws) return ddn_ctx_status(ctx);
    ddn_dtype dt = out->dtype;
    ddn_status st = DDN_CUDNN_CHECK(ctx, cudnnConvolutionForward(
                                             h, one_of(dt), e->x, ddn_tensor_ptr(x), e->w,
                                             ddn_tensor_ptr(w), e->conv, e->fwd, ws, e->fwd_ws,
                                             zero_of(dt), e->y, ddn_tensor_ptr(out)));
    if (st == DDN_OK && bias)
        st = DDN_CUDNN_CHECK(ctx, cudnnAddTensor(h, one_of(dt), e->bias, ddn_tensor_ptr(bias),
                                                 one_of(dt), e->y, ddn_tensor_ptr(out)));
    return st;
}

ddn_status ddn_cuda_conv2d_backward_data_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                             const ddn_tensor *w, const int stride[2],
                                             const int padding[2], const int dilation[2],
                                             int groups)
{
    ddn_ctx *ctx = dx->ctx;
    const char *op = "conv2d backward (data)";
    if (!all_contiguous(3, (const ddn_tensor *[]){dx, dy, w})) return not_contiguous(ctx, op);
    if (ddn_tensor_numel(dx) == 0 || ddn_tensor_numel(dy) == 0) return DDN_OK;
    cudnnHandle_t h = ddn_cuda_cudnn(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_cuda_conv_entry *e = conv_entry(ctx, op, dx, w, dy, stride, padding, dilation, groups);
    if (!e) return ddn_ctx_status(ctx);
    CHOOSE_ALGO(ctx, e, op, cudnnConvolutionBwdDataAlgoPerf_t,
                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, cudnnGetConvolutionBackwardDataAlgorithm_v7,
                (h, e->w, e->y, e->conv, e->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n_, perf_),
                bwd_data, bwd_data_ws, have_bwd_data);
    void *ws = e->bwd_data_ws ? ddn_cuda_workspace(ctx, e->bwd_data_ws) : NULL;
    if (e->bwd_data_ws && !ws) return ddn_ctx_status(ctx);
    ddn_dtype dt = dx->dtype;
    return DDN_CUDNN_CHECK(ctx, cudnnConvolutionBackwardData(
                                    h, one_of(dt), e->w, ddn_tensor_ptr(w), e->y,
                                    ddn_tensor_ptr(dy), e->conv, e->bwd_data, ws, e->bwd_data_ws,
                                    one_of(dt), e->x, ddn_tensor_ptr(dx)));
}

ddn_status ddn_cuda_conv2d_backward_filter_acc(ddn_tensor *dw, ddn_tensor *dbias,
                                               const ddn_tensor *dy, const ddn_tensor *x,
                                               const ddn_tensor *w, const int stride[2],
                                               const int padding[2], const int dilation[2],
                                               int groups)
{
    ddn_ctx *ctx = dy->ctx;
    const char *op = "conv2d backward (filter)";
    if (!all_contiguous(4, (const ddn_tensor *[]){dw, dbias, dy, x}))
        return not_contiguous(ctx, op);
    if (ddn_tensor_numel(dy) == 0 || (!dw && !dbias)) return DDN_OK;
    cudnnHandle_t h = ddn_cuda_cudnn(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_cuda_conv_entry *e = conv_entry(ctx, op, x, w, dy, stride, padding, dilation, groups);
    if (!e) return ddn_ctx_status(ctx);
    ddn_dtype dt = dy->dtype;
    ddn_status st = DDN_OK;
    if (dw && ddn_tensor_numel(x) > 0) {
        CHOOSE_ALGO(ctx, e, op, cudnnConvolutionBwdFilterAlgoPerf_t,
                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                    cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                    (h, e->x, e->y, e->conv, e->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n_,
                     perf_),
                    bwd_filter, bwd_filter_ws, have_bwd_filter);
        void *ws = e->bwd_filter_ws ? ddn_cuda_workspace(ctx, e->bwd_filter_ws) : NULL;
        if (e->bwd_filter_ws && !ws) return ddn_ctx_status(ctx);
        st = DDN_CUDNN_CHECK(ctx, cudnnConvolutionBackwardFilter(
                                      h, one_of(dt), e->x, ddn_tensor_ptr(x), e->y,
                                      ddn_tensor_ptr(dy), e->conv, e->bwd_filter, ws,
                                      e->bwd_filter_ws, one_of(dt), e->w, ddn_tensor_ptr(dw)));
    }
    if (st == DDN_OK && dbias)
        st = DDN_CUDNN_CHECK(ctx, cudnnConvolutionBackwardBias(h, one_of(dt), e->y,
                                                               ddn_tensor_ptr(dy), one_of(dt),
                                                               e->bias, ddn_tensor_ptr(dbias)));
    return st;
}

/* ---- batch normalisation ---------------------------------------------------------------------- */
/* cuDNN's spatial batch norm matches the kernel contract: biased variance for normalising, the
 * unbiased one for the running average, save_invstd = 1 / sqrt(var + eps). It needs eps >=
 * CUDNN_BN_MIN_EPSILON, dense per-channel vectors and a scale and bias even without affine
 * parameters; the helpers below supply contiguous copies, ones and zeros from step-arena scratch
 * (rewound before returning). A smaller eps, and the backward with constant statistics
 * (evaluation mode), which cuDNN lacks, go to our own kernels (cuda_norm.c). */
typedef struct {
    cudnnTensorDescriptor_t x, param;
} bn_descs;

static void bn_descs_free(bn_descs *d)
{
    if (d->x) (void)cudnnDestroyTensorDescriptor(d->x);
    if (d->param) (void)cudnnDestroyTensorDescriptor(d->param);
}

static ddn_status bn_check(ddn_ctx *ctx, const char *op, const ddn_tensor *x, const ddn_tensor *y)
{
    if (!ddn_tensor_is_contiguous(x) || (y && !ddn_tensor_is_contiguous(y)))
        return not_contiguous(ctx, op);
    for (int d = 0; d < 4; d++)
        if (!fits_int(x->shape[d]))
            return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "%s: a dimension exceeds cuDNN's "
                                     "int range", op);
    return DDN_OK;
}

static ddn_status bn_descs_make(ddn_ctx *ctx, const ddn_tensor *x, bn_descs *d)
{
    memset(d, 0, sizeof *d);
    ddn_status st = DDN_CUDNN_CHECK(ctx, cudnnCreateTensorDescriptor(&d->x));
    if (st == DDN_OK) st = DDN_CUDNN_CHECK(ctx, cudnnCreateTensorDescriptor(&d->param));
    if (st == DDN_OK)
        st = DDN_CUDNN_CHECK(ctx, cudnnSetTensor4dDescriptor(
                                      d->x, CUDNN_TENSOR_NCHW, cudnn_type(x->dtype),
                                      (int)x->shape[0], (int)x->shape[1], (int)x->shape[2],
                                      (int)x->shape[3]));
    if (st == DDN_OK)
        st = DDN_CUDNN_CHECK(ctx, cudnnDeriveBNTensorDescriptor(d->param, d->x,
                                                                CUDNN_BATCHNORM_SPATIAL));
    return st;
}

/* A dense per-channel input: t itself, a contiguous copy, or (t NULL) `fill` everywhere. */
static const ddn_tensor *channel_in(ddn_ctx *ctx, const ddn_tensor *t, ddn_dtype dt, int64_t C,
                                    double fill)
{
    if (t && ddn_tensor_is_contiguous(t)) return t;
    ddn_tensor *c = ddn_tensor_new(ctx, dt, 1, &C);
    if (!c) return NULL;
    ddn_status st = t ? ddn_cuda_copy(c, t) : ddn_cuda_fill(c, fill);
    return st == DDN_OK ? c : NULL;
}

/* A dense per-channel output that cuDNN reads or writes: t itself, or a contiguous copy of t
 * (*copied set; copy it back afterwards), or (t NULL) zeroed scratch. */
static ddn_tensor *channel_out(ddn_ctx *ctx, ddn_tensor *t, ddn_dtype dt, int64_t C, bool *copied)
{
    *copied = false;
    if (t && ddn_tensor_is_contiguous(t)) return t;
    ddn_tensor *c = ddn_tensor_new(ctx, dt, 1, &C);
    if (!c) return NULL;
    ddn_status st = t ? ddn_cuda_copy(c, t) : ddn_cuda_fill(c, 0.0);
    *copied = t != NULL;
    return st == DDN_OK ? c : NULL;
}

static void *ptr_or_null(const ddn_tensor *t) { return t ? ddn_tensor_ptr(t) : NULL; }

ddn_status ddn_cuda_batch_norm_train(ddn_tensor *y, ddn_tensor *save_mean,
                                     ddn_tensor *save_invstd, ddn_tensor *running_mean,
                                     ddn_tensor *running_var, const ddn_tensor *x,
                                     const ddn_tensor *weight, const ddn_tensor *bias,
                                     double momentum, double eps)
{
    ddn_ctx *ctx = y->ctx;
    const char *op = "batch_norm (training)";
    if (eps < CUDNN_BN_MIN_EPSILON)
        return ddn_cuda_bn_train_kernels(y, save_mean, save_invstd, running_mean, running_var, x,
                                         weight, bias, momentum, eps);
    ddn_status st = bn_check(ctx, op, x, y);
    if (st != DDN_OK || ddn_tensor_numel(x) == 0) return st;
    cudnnHandle_t h = ddn_cuda_cudnn(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_dtype dt = x->dtype;
    int64_t C = x->shape[1];
    ddn_mark mark = ddn_ctx_mark(ctx);
    bn_descs d;
    st = bn_descs_make(ctx, x, &d);
    const ddn_tensor *scale = NULL, *shift = NULL;
    ddn_tensor *sm = NULL, *si = NULL, *rm = NULL, *rv = NULL;
    bool sm_c = false, si_c = false, rm_c = false, rv_c = false;
    if (st == DDN_OK) {
        scale = channel_in(ctx, weight, dt, C, 1.0);
        shift = channel_in(ctx, bias, dt, C, 0.0);
        sm = channel_out(ctx, save_mean, dt, C, &sm_c);
        si = channel_out(ctx, save_invstd, dt, C, &si_c);
        if (running_mean && running_var) {
            rm = channel_out(ctx, running_mean, dt, C, &rm_c);
            rv = channel_out(ctx, running_var, dt, C, &rv_c);
        }
        bool ok = scale && shift && sm && si && (!running_mean || !running_var || (rm && rv));
        st = ok ? DDN_OK : ddn_ctx_status(ctx);
    }
    if (st == DDN_OK)
        st = DDN_CUDNN_CHECK(ctx, cudnnBatchNormalizationForwardTraining(
                                      h, CUDNN_BATCHNORM_SPATIAL, one_of(dt), zero_of(dt), d.x,
                                      ddn_tensor_ptr(x), d.x, ddn_tensor_ptr(y), d.param,
                                      ddn_tensor_ptr(scale), ddn_tensor_ptr(shift), momentum,
                                      ptr_or_null(rm), ptr_or_null(rv), eps, ddn_tensor_ptr(sm),
                                      ddn_tensor_ptr(si)));
    if (st == DDN_OK && sm_c) st = ddn_cuda_copy(save_mean, sm);
    if (st == DDN_OK && si_c) st = ddn_cuda_copy(save_invstd, si);
    if (st == DDN_OK && rm_c) st = ddn_cuda_copy(running_mean, rm);
    if (st == DDN_OK && rv_c) st = ddn_cuda_copy(running_var, rv);
    bn_descs_free(&d);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cuda_batch_norm_eval(ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *weight,
                                    const ddn_tensor *bias, const ddn_tensor *mean,
                                    const ddn_tensor *var, double eps)
{
    ddn_ctx *ctx = y->ctx;
    const char *op = "batch_norm (evaluation)";
    if (eps < CUDNN_BN_MIN_EPSILON)
        return ddn_cuda_bn_eval_kernels(y, x, weight, bias, mean, var, eps);
    ddn_status st = bn_check(ctx, op, x, y);
    if (st != DDN_OK || ddn_tensor_numel(x) == 0) return st;
    cudnnHandle_t h = ddn_cuda_cudnn(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_dtype dt = x->dtype;
    int64_t C = x->shape[1];
    ddn_mark mark = ddn_ctx_mark(ctx);
    bn_descs d;
    st = bn_descs_make(ctx, x, &d);
    if (st == DDN_OK) {
        const ddn_tensor *scale = channel_in(ctx, weight, dt, C, 1.0);
        const ddn_tensor *shift = channel_in(ctx, bias, dt, C, 0.0);
        const ddn_tensor *m = channel_in(ctx, mean, dt, C, 0.0);
        const ddn_tensor *v = channel_in(ctx, var, dt, C, 1.0);
        st = scale && shift && m && v ? DDN_OK : ddn_ctx_status(ctx);
        if (st == DDN_OK)
            st = DDN_CUDNN_CHECK(ctx, cudnnBatchNormalizationForwardInference(
                                          h, CUDNN_BATCHNORM_SPATIAL, one_of(dt), zero_of(dt),
                                          d.x, ddn_tensor_ptr(x), d.x, ddn_tensor_ptr(y), d.param,
                                          ddn_tensor_ptr(scale), ddn_tensor_ptr(shift),
                                          ddn_tensor_ptr(m), ddn_tensor_ptr(v), eps));
    }
    bn_descs_free(&d);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cuda_batch_norm_backward_acc(ddn_tensor *dx, ddn_tensor *dweight,
                                            ddn_tensor *dbias, const ddn_tensor *x,
                                            const ddn_tensor *dy, const ddn_tensor *weight,
                                            const ddn_tensor *mean, const ddn_tensor *invstd,
                                            bool training)
{
    ddn_ctx *ctx = x->ctx;
    const char *op = "batch_norm backward";
    /* Training uses the saved statistics whatever the forward's eps was, so only evaluation mode
     * (constant statistics: no term through the mean and variance) needs our kernels. */
    if (!training)
        return ddn_cuda_bn_backward_kernels(dx, dweight, dbias, x, dy, weight, mean, invstd,
                                            false);
    ddn_status st = bn_check(ctx, op, x, dy);
    if (st == DDN_OK && dx && !ddn_tensor_is_contiguous(dx)) st = not_contiguous(ctx, op);
    if (st != DDN_OK || ddn_tensor_numel(x) == 0 || (!dx && !dweight && !dbias)) return st;
    cudnnHandle_t h = ddn_cuda_cudnn(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_dtype dt = x->dtype;
    int64_t C = x->shape[1];
    ddn_mark mark = ddn_ctx_mark(ctx);
    bn_descs d;
    st = bn_descs_make(ctx, x, &d);
    bool dw_c = false, db_c = false;
    ddn_tensor *dw = NULL, *db = NULL, *dxs = dx;
    const ddn_tensor *scale = NULL, *m = NULL, *is = NULL;
    if (st == DDN_OK) {
        scale = channel_in(ctx, weight, dt, C, 1.0);
        m = channel_in(ctx, mean, dt, C, 0.0);
        is = channel_in(ctx, invstd, dt, C, 1.0);
        /* cuDNN writes both parameter gradients: a missing one goes to zeroed scratch */
        dw = channel_out(ctx, dweight, dt, C, &dw_c);
        db = channel_out(ctx, dbias, dt, C, &db_c);
        if (!dx) dxs = ddn_tensor_new(ctx, dt, x->ndim, x->shape);
        st = scale && m && is && dw && db && dxs ? DDN_OK : ddn_ctx_status(ctx);
    }
    /* Saved statistics are passed, so cuDNN does not use epsilon (it must still be valid). */
    if (st == DDN_OK)
        st = DDN_CUDNN_CHECK(ctx, cudnnBatchNormalizationBackward(
                                      h, CUDNN_BATCHNORM_SPATIAL, one_of(dt),
                                      dx ? one_of(dt) : zero_of(dt), one_of(dt), one_of(dt), d.x,
                                      ddn_tensor_ptr(x), d.x, ddn_tensor_ptr(dy), d.x,
                                      ddn_tensor_ptr(dxs), d.param, ddn_tensor_ptr(scale),
                                      ddn_tensor_ptr(dw), ddn_tensor_ptr(db),
                                      CUDNN_BN_MIN_EPSILON, ddn_tensor_ptr(m),
                                      ddn_tensor_ptr(is)));
    if (st == DDN_OK && dw_c) st = ddn_cuda_copy(dweight, dw);
    if (st == DDN_OK && db_c) st = ddn_cuda_copy(dbias, db);
    bn_descs_free(&d);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
