/* ddn — the CUDA kernel table entries other than matmul: argument checks (the same contract and
 * messages as the CPU kernels), operand layouts, and the launchers of elementwise.cu and
 * reduce.cu. Results that the host must see (the non-finite flag, a bad label, a sum of squares)
 * come back through ddn_cuda_read, which waits for the stream. */
#include <string.h>

#include "cuda_impl.h"
#include "elementwise_math.h"

/* The .cu files number ops by their X-macro position; it must be the enums' value. */
#define POS(OP, name, ...) EW_POS_##OP,
enum { DDN_EW_UNARY_OPS(POS, _) };
enum { DDN_EW_BINARY_OPS(POS, _) };
#undef POS
#define SAME_U(OP, name, ...) _Static_assert(DDN_UNARY_##OP == (int)EW_POS_##OP, #OP);
#define SAME_B(OP, name, ...) _Static_assert(DDN_BINARY_##OP == (int)EW_POS_##OP, #OP);
DDN_EW_UNARY_OPS(SAME_U, _)
DDN_EW_BINARY_OPS(SAME_B, _)
#undef SAME_U
#undef SAME_B

#define NAME_OF(OP, name, ...) [DDN_UNARY_##OP] = #name,
static const char *const unary_names[DDN_UNARY_COUNT] = {DDN_EW_UNARY_OPS(NAME_OF, _)};
#undef NAME_OF
#define NAME_OF(OP, name, ...) [DDN_BINARY_##OP] = #name,
static const char *const binary_names[DDN_BINARY_COUNT] = {DDN_EW_BINARY_OPS(NAME_OF, _)};
#undef NAME_OF

static cudaStream_t stream_of(const ddn_tensor *t) { return ddn_cuda_state_of(t->ctx)->stream; }

/* The layout of n operands of ops[0]'s shape: size-1 dims dropped, dims that every operand
 * steps over contiguously merged (as the CPU iterator does), so most launches see one dim. */
static void layout_of(ddn_cuda_layout *l, int n, const ddn_tensor *const *ops)
{
    memset(l, 0, sizeof *l);
    const ddn_tensor *t0 = ops[0];
    l->n_ops = n;
    l->numel = ddn_tensor_numel(t0);
    l->contiguous = 1;
    for (int k = 0; k < n; k++) l->contiguous &= ddn_tensor_is_contiguous(ops[k]);
    int nd = 0;
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int k = 0; k < n && merge; k++)
            merge = l->stride[k][nd - 1] == ops[k]->stride[d] * t0->shape[d];
        if (merge) {
            l->shape[nd - 1] *= t0->shape[d];
            for (int k = 0; k < n; k++) l->stride[k][nd - 1] = ops[k]->stride[d];
        } else {
            l->shape[nd] = t0->shape[d];
            for (int k = 0; k < n; k++) l->stride[k][nd] = ops[k]->stride[d];
            nd++;
        }
    }
    if (nd == 0) {
        l->shape[0] = 1;
        for (int k = 0; k < n; k++) l->stride[k][0] = 1;
        nd = 1;
    }
    l->ndim = nd;
}


/* ---- memory-shaped ---------------------------------------------------------------------------- */
ddn_status ddn_cuda_copy(ddn_tensor *out, const ddn_tensor *x)
{
    DDN_ASSERT(ddn_tensor_same_shape(out, x));
    ddn_ctx *ctx = out->ctx;
    if (out->dtype == x->dtype && ddn_tensor_is_contiguous(out) && ddn_tensor_is_contiguous(x)) {
        size_t bytes = ddn_tensor_nbytes(out);
        if (!bytes) return DDN_OK;
        return DDN_CUDA_CHECK(ctx, cudaMemcpyAsync(ddn_tensor_ptr(out), ddn_tensor_ptr(x), bytes,
                                                   cudaMemcpyDeviceToDevice, stream_of(out)));
    }
    ddn_cuda_layout l;
    layout_of(&l, 2, (const ddn_tensor *[]){out, x});
    return DDN_CUDA_LAUNCH_CHECK(ctx, "copy",
                                 ddn_cuda_launch_copy(stream_of(out), &l, out->dtype,
                                                      ddn_tensor_ptr(out), x->dtype,
                                                      ddn_tensor_ptr(x)));
}

ddn_status ddn_cuda_fill(ddn_tensor *out, double value)
{
    ddn_cuda_layout l;
    layout_of(&l, 1, (const ddn_tensor *[]){out});
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "fill",
                                 ddn_cuda_launch_fill(stream_of(out), &l, out->dtype,
                                                      ddn_tensor_ptr(out), value));
}

ddn_status ddn_cuda_axpy(ddn_tensor *out, const ddn_tensor *x, double alpha)
{
    ddn_status st = ddn_check_ew_operands("axpy", "", out, 1, &x);
    if (st != DDN_OK) return st;
    ddn_cuda_layout l;
    layout_of(&l, 2, (const ddn_tensor *[]){out, x});
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "axpy",
                                 ddn_cuda_launch_axpy(stream_of(out), &l, out->dtype,
                                                      ddn_tensor_ptr(out), ddn_tensor_ptr(x),
                                                      alpha));
}

/* A failure here (no memory, a kernel fault) is recorded on the context and answered true: an
 * unchecked tensor must not pass as finite. */
bool ddn_cuda_has_nonfinite(const ddn_tensor *x)
{
    if (!ddn_dtype_is_float(x->dtype) || ddn_tensor_numel(x) == 0) return false;
    ddn_ctx *ctx = x->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    int *flag = ddn_cuda_scratch(ctx, sizeof *flag);
    int found = 1;
    ddn_cuda_layout l;
    layout_of(&l, 1, &x);
    if (flag &&
        DDN_CUDA_CHECK(ctx, cudaMemsetAsync(flag, 0, sizeof *flag, stream_of(x))) == DDN_OK &&
        DDN_CUDA_LAUNCH_CHECK(ctx, "has_nonfinite",
                              ddn_cuda_launch_nonfinite(stream_of(x), &l, x->dtype,
                                                        ddn_tensor_ptr(x), flag)) == DDN_OK)
        ddn_cuda_read(ctx, &found, flag, sizeof found, "has_nonfinite");
    ddn_ctx_rewind(ctx, mark);
    return found != 0;
}

/* ---- elementwise ------------------------------------------------------------------------------ */
ddn_status ddn_cuda_unary(ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0,
                          double p1)
{
    if ((unsigned)op >= DDN_UNARY_COUNT)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "unary: invalid op %d", (int)op);
    ddn_status st = ddn_check_ew_operands("unary", unary_names[op], out, 1, &x);
    if (st != DDN_OK) return st;
    ddn_cuda_layout l;
    layout_of(&l, 2, (const ddn_tensor *[]){out, x});
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "unary",
                                 ddn_cuda_launch_unary(stream_of(out), &l, out->dtype, (int)op,
                                                       ddn_tensor_ptr(out), ddn_tensor_ptr(x), p0,
                                                       p1));
}

/* Whether op's derivative reads y = f(x) (as core/cpu/elementwise.c). */
static bool unary_grad_uses_y(ddn_unary_op op)
{
    return op == DDN_UNARY_EXP || op == DDN_UNARY_SQRT || op == DDN_UNARY_RELU ||
           op == DDN_UNARY_SIGMOID || op == DDN_UNARY_TANH;
}

ddn_status ddn_cuda_unary_backward_acc(ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
                                       const ddn_tensor *y, const ddn_tensor *dy, double p0,
                                       double p1)
{
    if ((unsigned)op >= DDN_UNARY_COUNT)
        return ddn_ctx_set_error(dx->ctx, DDN_ERR_ARG, "unary backward: invalid op %d", (int)op);
    if (!y && unary_grad_uses_y(op))
        return ddn_ctx_set_error(dx->ctx, DDN_ERR_ARG, "unary backward %s: needs the forward "
                                 "output y", unary_names[op]);
    const ddn_tensor *ops[] = {x, y ? y : x, dy}; /* x fills y's slot when y is never read */
    ddn_status st = ddn_check_ew_operands("unary backward", unary_names[op], dx, 3, ops);
    if (st != DDN_OK) return st;
    ddn_cuda_layout l;
    layout_of(&l, 4, (const ddn_tensor *[]){dx, ops[0], ops[1], ops[2]});
    return DDN_CUDA_LAUNCH_CHECK(dx->ctx, "unary backward",
                                 ddn_cuda_launch_unary_backward_acc(
                                     stream_of(dx), &l, dx->dtype, (int)op, ddn_tensor_ptr(dx),
                                     ddn_tensor_ptr(ops[0]), ddn_tensor_ptr(ops[1]),
                                     ddn_tensor_ptr(ops[2]), p0, p1));
}

ddn_status ddn_cuda_binary(ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a,
                           const ddn_tensor *b)
{
    if ((unsigned)op >= DDN_BINARY_COUNT)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "binary: invalid op %d", (int)op);
    ddn_status st = ddn_check_ew_operands("binary", binary_names[op], out, 2,
                                   (const ddn_tensor *[]){a, b});
    if (st != DDN_OK) return st;
    ddn_cuda_layout l;
    layout_of(&l, 3, (const ddn_tensor *[]){out, a, b});
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "binary",
                                 ddn_cuda_launch_binary(stream_of(out), &l, out->dtype, (int)op,
                                                        ddn_tensor_ptr(out), ddn_tensor_ptr(a),
                                                        ddn_tensor_ptr(b)));
}

ddn_status ddn_cuda_binary_backward(ddn_binary_op op, int which, ddn_tensor *out,
                                    const ddn_tensor *a, const ddn_tensor *b, const ddn_tensor *y,
                                    const ddn_tensor *dy)
{
    if ((unsigned)op >= DDN_BINARY_COUNT || (which != 0 && which != 1))
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "binary backward: invalid op %d or "
                                 "operand %d", (int)op, which);
    if (op == DDN_BINARY_EQ)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "binary backward: eq is not "
                                 "differentiable");
    if (!y && op == DDN_BINARY_POW && which == 1)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "binary backward pow: the exponent's "
                                 "gradient needs the forward output y");
    const ddn_tensor *ops[] = {a, b, y ? y : dy, dy}; /* only pow's exponent gradient reads y */
    ddn_status st = ddn_check_ew_operands("binary backward", binary_names[op], out, 4, ops);
    if (st != DDN_OK) return st;
    ddn_cuda_layout l;
    layout_of(&l, 5, (const ddn_tensor *[]){out, ops[0], ops[1], ops[2], ops[3]});
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "binary backward",
                                 ddn_cuda_launch_binary_backward(
                                     stream_of(out), &l, out->dtype, (int)op, which,
                                     ddn_tensor_ptr(out), ddn_tensor_ptr(a), ddn_tensor_ptr(b),
                                     ddn_tensor_ptr(ops[2]), ddn_tensor_ptr(dy)));
}
