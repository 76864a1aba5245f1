/* ddn — CUDA matmul through cuBLAS (cublas[SD]gemmStridedBatched), one call per matmul.
 *
 * Row-major by operand order (the one place this is done): cuBLAS is column-major, and a
 * row-major M x N matrix is, byte for byte, a column-major N x M matrix, its transpose. So
 * C = A B (row-major) is computed as C^T = B^T A^T (column-major): cuBLAS gets m = N, n = M,
 * the operands swapped (B first, then A) and ldc = N. An operand whose last dim has unit stride
 * (row-major, leading dimension = row stride) is then CUBLAS_OP_N; one whose second-to-last dim
 * has unit stride (a transposed view, leading dimension = column stride) is CUBLAS_OP_T; any other
 * layout is copied to contiguous step-arena scratch first. The batch dims of each operand must
 * be evenly spaced (one stride; 0 = broadcast) or the operand is copied too.
 *
 * Math mode is CUBLAS_DEFAULT_MATH (set when the handle is created): float32 GEMMs do not round
 * inputs to TF32, so results match the CPU to float32 rounding.
 */
#include <limits.h>

#include "cuda_impl.h"

typedef struct {
    cublasOperation_t op;
    int64_t ld, batch_stride;
} operand;

/* The cuBLAS description of an R x C row-major-indexed matrix with row stride rs and column
 * stride cs (see the top of the file), or false when it has none. Strides of size-1 dims do not
 * matter. */
static bool matrix_layout(int64_t R, int64_t C, int64_t rs, int64_t cs, operand *o)
{
    if ((C == 1 || cs == 1) && (R == 1 || rs >= C)) {
        o->op = CUBLAS_OP_N;
        o->ld = R == 1 ? (C > 1 ? C : 1) : rs;
        return true;
    }
    if ((R == 1 || rs == 1) && (C == 1 || cs >= R)) {
        o->op = CUBLAS_OP_T;
        o->ld = C == 1 ? (R > 1 ? R : 1) : cs;
        return true;
    }
    return false;
}

/* The batch dims 0..nb-1 of t as one evenly spaced dim: its stride (0 when there is a single
 * item or every batch dim is broadcast), or false when they are not evenly spaced. */
static bool batch_stride(const ddn_tensor *t, int nb, int64_t *stride)
{
    int64_t sz = 1, st = 0;
    for (int d = nb - 1; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (sz == 1) st = t->stride[d];
        else if (t->stride[d] != sz * st) return false;
        sz *= t->shape[d];
    }
    *stride = sz == 1 ? 0 : st;
    return true;
}

/* Describes t for cuBLAS, first copying it to contiguous scratch when its layout has no
 * description. *use receives the tensor to pass (t or the copy); NULL on failure. */
static const ddn_tensor *describe(const ddn_tensor *t, int nb, operand *o)
{
    int R = t->ndim - 2, C = t->ndim - 1;
    if (matrix_layout(t->shape[R], t->shape[C], t->stride[R], t->stride[C], o) &&
        batch_stride(t, nb, &o->batch_stride))
        return t;
    ddn_tensor *c = ddn_tensor_new(t->ctx, t->dtype, t->ndim, t->shape);
    if (!c || ddn_cuda_copy(c, t) != DDN_OK) return NULL;
    bool ok = matrix_layout(c->shape[R], c->shape[C], c->stride[R], c->stride[C], o) &&
              batch_stride(c, nb, &o->batch_stride);
    DDN_ASSERT(ok); /* a contiguous tensor always has a description */
    return c;
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

ddn_status ddn_cuda_matmul(ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b,
                           double alpha, double beta)
{
    ddn_ctx *ctx = out->ctx;
    int nd = out->ndim;
    DDN_ASSERT(nd >= 2 && a->ndim == nd && b->ndim == nd && ddn_tensor_is_contiguous(out));
    if (!ddn_dtype_is_float(out->dtype) || a->dtype != out->dtype || b->dtype != out->dtype)
        return ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "matmul: operands %s, %s and output %s: "
                                 "expected one float dtype", ddn_dtype_name(a->dtype),
                                 ddn_dtype_name(b->dtype), ddn_dtype_name(out->dtype));
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a->shape[nd - 1];
    int64_t batch = 1;
    for (int d = 0; d < nd - 2; d++) batch *= out->shape[d];
    if (M == 0 || N == 0 || batch == 0) return DDN_OK;
    if (K == 0) /* an empty sum: out = beta out (beta 0 ignores out's contents) */
        return beta == 0 ? ddn_cuda_fill(out, 0.0)
                         : ddn_cuda_unary(DDN_UNARY_MUL_SCALAR, out, out, beta, 0.0);
    if (!fits_int(M) || !fits_int(N) || !fits_int(K) || !fits_int(batch))
        return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "matmul: M %lld, N %lld, K %lld, "
                                 "batch %lld: cuBLAS takes sizes up to %d",
                                 (long long)M, (long long)N, (long long)K, (long long)batch,
                                 INT_MAX);
    cublasHandle_t h = ddn_cuda_cublas(ctx);
    if (!h) return ddn_ctx_status(ctx);

    ddn_mark mark = ddn_ctx_mark(ctx);
    operand oa, ob;
    const ddn_tensor *ua = describe(a, nd - 2, &oa);
    const ddn_tensor *ub = ua ? describe(b, nd - 2, &ob) : NULL;
    ddn_status st = ub ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK && (!fits_int(oa.ld) || !fits_int(ob.ld)))
        st = ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "matmul: a leading dimension exceeds "
                               "cuBLAS's int range");
    if (st == DDN_OK) {
        /* Column-major C^T (N x M) = op(B buffer) (N x K) * op(A buffer) (K x M). */
        if (out->dtype == DDN_DTYPE_F32) {
            float al = (float)alpha, be = (float)beta;
            st = DDN_CUBLAS_CHECK(ctx, cublasSgemmStridedBatched(
                                           h, ob.op, oa.op, (int)N, (int)M, (int)K, &al,
                                           ddn_tensor_ptr(ub), (int)ob.ld, ob.batch_stride,
                                           ddn_tensor_ptr(ua), (int)oa.ld, oa.batch_stride, &be,
                                           ddn_tensor_ptr(out), (int)N, M * N, (int)batch));
        } else {
            st = DDN_CUBLAS_CHECK(ctx, cublasDgemmStridedBatched(
                                           h, ob.op, oa.op, (int)N, (int)M, (int)K, &alpha,
                                           ddn_tensor_ptr(ub), (int)ob.ld, ob.batch_stride,
                                           ddn_tensor_ptr(ua), (int)oa.ld, oa.batch_stride, &beta,
                                           ddn_tensor_ptr(out), (int)N, M * N, (int)batch));
        }
    }
    /* Copies made above stay valid until the stream reaches them: rewinding only lets later
     * work, queued after this gemm on the same stream, reuse the memory. */
    ddn_ctx_rewind(ctx, mark);
    return st;
}
