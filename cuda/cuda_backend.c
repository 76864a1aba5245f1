/* ddn — the CUDA backend: per-context state (device, stream, library handles, workspace), device
 * memory, host <-> device copies, error translation, and the kernel table.
 *
 * Contexts are independent: each has its own stream and handles (cuda_impl.h), so two contexts
 * never share mutable state. Copies to the host wait for the context's stream, which is what makes
 * ddn_tensor_item / ddn_tensor_to_host correct after asynchronous kernels. Allocation is plain
 * cudaMalloc (no managed memory): the step arena asks for large blocks and reuses them across
 * steps, and a model's parameter block is one allocation (layers/params.c).
 */
#include <stdlib.h>

#include "cuda_impl.h"

/* ---- error translation ------------------------------------------------------------------------ */
ddn_status ddn_cuda_check_rt(ddn_ctx *ctx, cudaError_t e, const char *call, const char *file,
                             int line)
{
    if (e == cudaSuccess) return DDN_OK;
    (void)cudaGetLastError(); /* clear a non-sticky error so the next launch check is not blamed */
    ddn_status s = e == cudaErrorMemoryAllocation ? DDN_ERR_OOM : DDN_ERR_BACKEND;
    return ddn_ctx_set_error(ctx, s, "%s at %s:%d: %s (%s)", call, file, line,
                             cudaGetErrorString(e), cudaGetErrorName(e));
}

ddn_status ddn_cuda_check_cublas(ddn_ctx *ctx, cublasStatus_t e, const char *call,
                                 const char *file, int line)
{
    if (e == CUBLAS_STATUS_SUCCESS) return DDN_OK;
    ddn_status s = e == CUBLAS_STATUS_ALLOC_FAILED ? DDN_ERR_OOM : DDN_ERR_BACKEND;
    return ddn_ctx_set_error(ctx, s, "%s at %s:%d: %s (%s)", call, file, line,
                             cublasGetStatusString(e), cublasGetStatusName(e));
}

ddn_status ddn_cuda_check_cudnn(ddn_ctx *ctx, cudnnStatus_t e, const char *call,
                                const char *file, int line)
{
    if (e == CUDNN_STATUS_SUCCESS) return DDN_OK;
    ddn_status s = e == CUDNN_STATUS_ALLOC_FAILED ? DDN_ERR_OOM : DDN_ERR_BACKEND;
    return ddn_ctx_set_error(ctx, s, "%s at %s:%d: %s (cudnnStatus_t %d)", call, file, line,
                             cudnnGetErrorString(e), (int)e);
}

/* cuSOLVER has no message function; these are the meanings its documentation gives. */
static const char *cusolver_message(cusolverStatus_t e)
{
    switch (e) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "the library was not initialized (no device?)";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "resource allocation failed";
    case CUSOLVER_STATUS_INVALID_VALUE: return "an unsupported value or parameter was passed";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "the device lacks a feature the call needs";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "an internal cuSOLVER operation failed";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED: return "the matrix type is not supported";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "the operation is not supported";
    default: return "cuSOLVER error";
    }
}

ddn_status ddn_cuda_check_cusolver(ddn_ctx *ctx, cusolverStatus_t e, const char *call,
                                   const char *file, int line)
{
    if (e == CUSOLVER_STATUS_SUCCESS) return DDN_OK;
    ddn_status s = e == CUSOLVER_STATUS_ALLOC_FAILED ? DDN_ERR_OOM : DDN_ERR_BACKEND;
    return ddn_ctx_set_error(ctx, s, "%s at %s:%d: %s (cusolverStatus_t %d)", call, file, line,
                             cusolver_message(e), (int)e);
}

/* ---- life cycle ------------------------------------------------------------------------------- */
/* ddn_ctx_new's *why must be static: the runtime's own wording for the usual reasons. A machine
 * with the toolkit but no driver answers cudaErrorInsufficientDriver, not cudaErrorNoDevice. */
static const char *no_device_message(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no CUDA device: cudaGetDeviceCount found 0 devices";
    case cudaErrorInsufficientDriver:
        return "no CUDA device: CUDA driver version is insufficient for CUDA runtime version "
               "(cudaErrorInsufficientDriver: no NVIDIA driver, or one older than the toolkit)";
    case cudaErrorNoDevice:
        return "no CUDA device: no CUDA-capable device is detected (cudaErrorNoDevice)";
    case cudaErrorInitializationError:
        return "no CUDA device: initialization error (cudaErrorInitializationError)";
    case cudaErrorDevicesUnavailable:
        return "no CUDA device: all CUDA-capable devices are busy or unavailable "
               "(cudaErrorDevicesUnavailable)";
    case cudaErrorStubLibrary:
        return "no CUDA device: the CUDA driver is a stub library (cudaErrorStubLibrary)";
    default: return "no CUDA device: cudaGetDeviceCount failed (see nvidia-smi)";
    }
}

static ddn_status cuda_init(ddn_ctx *ctx, const char **why)
{
    const char *msg = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) msg = no_device_message(e);
    ddn_cuda_state *s = msg ? NULL : calloc(1, sizeof *s);
    if (!msg && !s) msg = "CUDA context: out of host memory";
    /* Device 0 for now; a device-index option belongs with multi-GPU support. */
    if (!msg && cudaSetDevice(0) != cudaSuccess) msg = "CUDA context: cudaSetDevice(0) failed";
    if (!msg && cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking) != cudaSuccess)
        msg = "CUDA context: cudaStreamCreateWithFlags failed";
    if (msg) {
        (void)cudaGetLastError();
        free(s);
        if (why) *why = msg;
        return DDN_ERR_DEVICE;
    }
    ctx->backend_state = s;
    return DDN_OK;
}

static void cuda_destroy(ddn_ctx *ctx)
{
    ddn_cuda_state *s = ddn_cuda_state_of(ctx);
    if (!s) return;
    /* Teardown cannot report: statuses are dropped, but the order (drain, then release) holds. */
    (void)cudaStreamSynchronize(s->stream);
    if (s->cublas) (void)cublasDestroy(s->cublas);
    if (s->cudnn) (void)cudnnDestroy(s->cudnn);
    if (s->cusolver) (void)cusolverDnDestroy(s->cusolver);
    ddn_cuda_dnn_release(s);
    if (s->workspace) (void)cudaFree(s->workspace);
    (void)cudaStreamDestroy(s->stream);
    (void)cudaGetLastError();
    free(s);
    ctx->backend_state = NULL;
}

/* ---- memory ----------------------------------------------------------------------------------- */
static void *cuda_alloc(ddn_ctx *ctx, size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError(); /* the caller reports the failure as DDN_ERR_OOM */
        return NULL;
    }
    return p;
}

static void cuda_free(ddn_ctx *ctx, void *p)
{
    if (!p) return;
    /* Kernels still queued may use p: let them finish first. */
    DDN_CUDA_CHECK(ctx, cudaStreamSynchronize(ddn_cuda_state_of(ctx)->stream));
    DDN_CUDA_CHECK(ctx, cudaFree(p));
}

static ddn_status cuda_copy_h2d(ddn_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return DDN_OK;
    cudaStream_t st = ddn_cuda_state_of(ctx)->stream;
    ddn_status s = DDN_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                                                       st));
    /* Callers free or rewind src right after: wait, in case src is pinned memory. */
    return s == DDN_OK ? DDN_CUDA_CHECK(ctx, cudaStreamSynchronize(st)) : s;
}

ddn_status ddn_cuda_read(ddn_ctx *ctx, void *host, const void *dev, size_t bytes,
                         const char *what)
{
    if (!bytes) return DDN_OK;
    cudaStream_t st = ddn_cuda_state_of(ctx)->stream;
    ddn_status s = DDN_CUDA_CHECK(ctx, cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost,
                                                       st));
    if (s == DDN_OK) s = DDN_CUDA_CHECK(ctx, cudaStreamSynchronize(st));
    (void)what;
    return s;
}

static ddn_status cuda_copy_d2h(ddn_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    return ddn_cuda_read(ctx, dst, src, bytes, "copy_d2h");
}

static ddn_status cuda_sync(ddn_ctx *ctx)
{
    return DDN_CUDA_CHECK(ctx, cudaStreamSynchronize(ddn_cuda_state_of(ctx)->stream));
}

/* ---- events (core/event.h): cudaEvent_t on the context's stream ------------------------------- */
static void *cuda_event_create(ddn_ctx *ctx)
{
    cudaEvent_t e = NULL;
    if (DDN_CUDA_CHECK(ctx, cudaEventCreate(&e)) != DDN_OK) return NULL;
    return (void *)e;
}

/* A failure here means the device is in trouble: it is recorded on the context like any other. */
static void cuda_event_destroy(ddn_ctx *ctx, void *ev)
{
    (void)DDN_CUDA_CHECK(ctx, cudaEventDestroy((cudaEvent_t)ev));
}

static ddn_status cuda_event_record(ddn_ctx *ctx, void *ev)
{
    return DDN_CUDA_CHECK(ctx, cudaEventRecord((cudaEvent_t)ev, ddn_cuda_state_of(ctx)->stream));
}

static ddn_status cuda_event_elapsed_ms(ddn_ctx *ctx, void *start, void *end, double *ms)
{
    float f = 0;
    ddn_status st = DDN_CUDA_CHECK(ctx, cudaEventSynchronize((cudaEvent_t)end));
    if (st == DDN_OK)
        st = DDN_CUDA_CHECK(ctx, cudaEventElapsedTime(&f, (cudaEvent_t)start, (cudaEvent_t)end));
    if (st == DDN_OK) *ms = (double)f;
    return st;
}

void *ddn_cuda_scratch(ddn_ctx *ctx, size_t bytes) { return ddn_arena_alloc_data(ctx, bytes); }

void *ddn_cuda_workspace(ddn_ctx *ctx, size_t bytes)
{
    ddn_cuda_state *s = ddn_cuda_state_of(ctx);
    if (bytes <= s->workspace_bytes) return s->workspace;
    if (s->workspace) {
        if (DDN_CUDA_CHECK(ctx, cudaStreamSynchronize(s->stream)) != DDN_OK) return NULL;
        DDN_CUDA_CHECK(ctx, cudaFree(s->workspace));
        s->workspace = NULL;
        s->workspace_bytes = 0;
    }
    if (DDN_CUDA_CHECK(ctx, cudaMalloc(&s->workspace, bytes)) != DDN_OK) return NULL;
    s->workspace_bytes = bytes;
    return s->workspace;
}

/* ---- library handles, created on first use ---------------------------------------------------- */
cublasHandle_t ddn_cuda_cublas(ddn_ctx *ctx)
{
    ddn_cuda_state *s = ddn_cuda_state_of(ctx);
    if (s->cublas) return s->cublas;
    cublasHandle_t h = NULL;
    if (DDN_CUBLAS_CHECK(ctx, cublasCreate(&h)) != DDN_OK) return NULL;
    /* Default math: no TF32 tensor-core rounding of float32 GEMMs, so CUDA and CPU agree to
     * float32 rounding. */
    if (DDN_CUBLAS_CHECK(ctx, cublasSetStream(h, s->stream)) != DDN_OK ||
        DDN_CUBLAS_CHECK(ctx, cublasSetMathMode(h, CUBLAS_DEFAULT_MATH)) != DDN_OK) {
        (void)cublasDestroy(h);
        return NULL;
    }
    return s->cublas = h;
}

cudnnHandle_t ddn_cuda_cudnn(ddn_ctx *ctx)
{
    ddn_cuda_state *s = ddn_cuda_state_of(ctx);
    if (s->cudnn) return s->cudnn;
    cudnnHandle_t h = NULL;
    if (DDN_CUDNN_CHECK(ctx, cudnnCreate(&h)) != DDN_OK) return NULL;
    if (DDN_CUDNN_CHECK(ctx, cudnnSetStream(h, s->stream)) != DDN_OK) {
        (void)cudnnDestroy(h);
        return NULL;
    }
    return s->cudnn = h;
}

cusolverDnHandle_t ddn_cuda_cusolver(ddn_ctx *ctx)
{
    ddn_cuda_state *s = ddn_cuda_state_of(ctx);
    if (s->cusolver) return s->cusolver;
    cusolverDnHandle_t h = NULL;
    if (DDN_CUSOLVER_CHECK(ctx, cusolverDnCreate(&h)) != DDN_OK) return NULL;
    if (DDN_CUSOLVER_CHECK(ctx, cusolverDnSetStream(h, s->stream)) != DDN_OK) {
        (void)cusolverDnDestroy(h);
        return NULL;
    }
    return s->cusolver = h;
}

/* ---- the table -------------------------------------------------------------------------------- */
/* Every entry is filled; an entry left NULL would fail with "<kernel> is not implemented on cuda
 * yet" through the stubs of core/backend.c. */
static const ddn_kernels cuda_kernels = {
    .copy = ddn_cuda_copy,
    .fill = ddn_cuda_fill,
    .axpy = ddn_cuda_axpy,
    .has_nonfinite = ddn_cuda_has_nonfinite,
    .unary = ddn_cuda_unary,
    .unary_backward_acc = ddn_cuda_unary_backward_acc,
    .binary = ddn_cuda_binary,
    .binary_backward = ddn_cuda_binary_backward,
    .reduce = ddn_cuda_reduce,
    .argmax = ddn_cuda_argmax,
    .matmul = ddn_cuda_matmul,
    .softmax = ddn_cuda_softmax,
    .softmax_backward_acc = ddn_cuda_softmax_backward_acc,
    .nll = ddn_cuda_nll,
    .nll_backward_acc = ddn_cuda_nll_backward_acc,
    .max_backward_acc = ddn_cuda_max_backward_acc,
    .conv2d = ddn_cuda_conv2d,
    .conv2d_backward_data_acc = ddn_cuda_conv2d_backward_data_acc,
    .conv2d_backward_filter_acc = ddn_cuda_conv2d_backward_filter_acc,
    .batch_norm_train = ddn_cuda_batch_norm_train,
    .batch_norm_eval = ddn_cuda_batch_norm_eval,
    .batch_norm_backward_acc = ddn_cuda_batch_norm_backward_acc,
    .max_pool2d = ddn_cuda_max_pool2d,
    .max_pool2d_backward_acc = ddn_cuda_max_pool2d_backward_acc,
    .avg_pool2d = ddn_cuda_avg_pool2d,
    .avg_pool2d_backward_acc = ddn_cuda_avg_pool2d_backward_acc,
    .adaptive_avg_pool2d = ddn_cuda_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward_acc = ddn_cuda_adaptive_avg_pool2d_backward_acc,
    .dropout_mask = ddn_cuda_dropout_mask,
    .sgd_update = ddn_cuda_sgd_update,
    .adam_update = ddn_cuda_adam_update,
    .sum_squares = ddn_cuda_sum_squares,
    .lu_solve = ddn_cuda_lu_solve,
    .cholesky_solve = ddn_cuda_cholesky_solve,
    .eigh = ddn_cuda_eigh,
    .qr = ddn_cuda_qr,
    .ied_power = ddn_cuda_ied_power,
    .less_iterate = ddn_cuda_less_iterate,
    .less_vjp_e = ddn_cuda_less_vjp_e,
    .ied_vjp_e = ddn_cuda_ied_vjp_e,
};

static const ddn_backend cuda_backend = {
    .name = "cuda",
    .device = DDN_DEVICE_CUDA,
    .init = cuda_init,
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .copy_h2d = cuda_copy_h2d,
    .copy_d2h = cuda_copy_d2h,
    .sync = cuda_sync,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_elapsed_ms = cuda_event_elapsed_ms,
    .k = &cuda_kernels,
};

const ddn_backend *ddn_cuda_backend_get(void); /* core/backend.c */
const ddn_backend *ddn_cuda_backend_get(void) { return &cuda_backend; }
