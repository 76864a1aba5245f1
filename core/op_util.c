/* ddn — helpers every op front end uses: dim normalisation, broadcasting, input checks and the
 * numerics check run after each op. */
#include <inttypes.h>

#include "ddn_impl.h"

int ddn_norm_dim(ddn_ctx *ctx, const char *op, const ddn_tensor *x, int dim)
{
    int nd = x->ndim ? x->ndim : 1;
    int d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: dim %d is out of range for shape %s (%d dims)",
                          op, dim, ddn_shape_str(x, s, sizeof s), x->ndim);
        return -1;
    }
    return d;
}

bool ddn_broadcast_shapes(ddn_ctx *ctx, const char *op, const ddn_tensor *a, const ddn_tensor *b,
                          int *nout, int64_t *out)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i, ib = b->ndim - n + i;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[96], y[96];
            ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: shapes %s and %s do not broadcast "
                              "(dim %d: %" PRId64 " vs %" PRId64 ")", op,
                              ddn_shape_str(a, x, sizeof x), ddn_shape_str(b, y, sizeof y), i, sa,
                              sb);
            return false;
        }
        out[i] = sa == 1 ? sb : sa;
    }
    *nout = n;
    return true;
}

ddn_tensor *ddn_broadcast_raw(ddn_ctx *ctx, const ddn_tensor *x, int ndim, const int64_t *shape)
{
    int64_t stride[DDN_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int ix = x->ndim - ndim + i;
        bool broadcast = ix < 0 || (x->shape[ix] == 1 && shape[i] != 1);
        stride[i] = broadcast ? 0 : x->stride[ix];
    }
    return ddn_view_raw(ctx, x, ndim, shape, stride, x->offset);
}

bool ddn_check_float(ddn_ctx *ctx, const char *op, const ddn_tensor *x)
{
    if (!x) return false;
    if (!ddn_dtype_is_float(x->dtype)) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "%s: expected a float32 or float64 tensor, got %s",
                          op, ddn_dtype_name(x->dtype));
        return false;
    }
    if (x->ctx != ctx || x->device != ctx->device) {
        ddn_ctx_set_error(ctx, DDN_ERR_DEVICE, "%s: input lives on another context or device",
                          op);
        return false;
    }
    return true;
}

bool ddn_check_pair(ddn_ctx *ctx, const char *op, const ddn_tensor *a, const ddn_tensor *b)
{
    if (!a || !b) return false;
    if (!ddn_check_float(ctx, op, a) || !ddn_check_float(ctx, op, b)) return false;
    if (a->dtype != b->dtype) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "%s: inputs are %s and %s; convert one with "
                          "ddn_cast", op, ddn_dtype_name(a->dtype), ddn_dtype_name(b->dtype));
        return false;
    }
    return true;
}

static bool report_nonfinite(ddn_ctx *ctx, const char *op, const char *what, const ddn_tensor *t)
{
    if (!ddn_dtype_is_float(t->dtype) || !ddn_k(t)->has_nonfinite(t)) return false;
    char s[96];
    ddn_ctx_set_error(ctx, DDN_ERR_NUMERIC, "%s: %s %s %s contains NaN or Inf "
                      "(DDN_CHECK_NUMERICS)", op, what, ddn_dtype_name(t->dtype),
                      ddn_shape_str(t, s, sizeof s));
    return true;
}

ddn_tensor *ddn_op_finish(ddn_ctx *ctx, const char *op, ddn_tensor *out)
{
    if (!out) return NULL;
    if (ctx->check_numerics && report_nonfinite(ctx, op, "output", out)) return NULL;
    return out;
}

ddn_status ddn_check_grad_numerics(ddn_ctx *ctx, const char *op, const ddn_tensor *g)
{
    if (ctx->check_numerics && g && report_nonfinite(ctx, op, "backward: gradient", g))
        return DDN_ERR_NUMERIC;
    return DDN_OK;
}

/* ---- kernel operand checks (CPU and CUDA backends) ---------------------------------------- */
/* Kernel arguments are the front ends' business, but a wrong call must still fail with a message
 * rather than read out of bounds: every operand present, of out's shape and (float) dtype. */
ddn_status ddn_check_ew_operands(const char *kernel, const char *op, ddn_tensor *out, int n,
                                 const ddn_tensor *const *in)
{
    if (!ddn_dtype_is_float(out->dtype))
        return ddn_ctx_set_error(out->ctx, DDN_ERR_DTYPE, "%s %s: expected float32 or float64, "
                                 "got %s", kernel, op, ddn_dtype_name(out->dtype));
    for (int i = 0; i < n; i++) {
        char a[96], b[96];
        if (!in[i])
            return ddn_ctx_set_error(out->ctx, DDN_ERR_ARG, "%s %s: operand %d is NULL", kernel,
                                     op, i + 1);
        if (in[i]->dtype != out->dtype)
            return ddn_ctx_set_error(out->ctx, DDN_ERR_DTYPE, "%s %s: operand %d is %s, output "
                                     "%s", kernel, op, i + 1, ddn_dtype_name(in[i]->dtype),
                                     ddn_dtype_name(out->dtype));
        if (!ddn_tensor_same_shape(in[i], out))
            return ddn_ctx_set_error(out->ctx, DDN_ERR_SHAPE, "%s %s: operand %d has shape %s, "
                                     "output %s (expand operands first)", kernel, op, i + 1,
                                     ddn_shape_str(in[i], a, sizeof a),
                                     ddn_shape_str(out, b, sizeof b));
    }
    return DDN_OK;
}

/* Front ends check operands; a wrong call must still fail with a message rather than read out
 * of bounds: every operand present, contiguous, of p's element count and float dtype. */
ddn_status ddn_check_optim_operands(const char *kernel, const ddn_tensor *p, int n,
                                    const ddn_tensor *const *ops)
{
    if (!ddn_dtype_is_float(p->dtype) || !ddn_tensor_is_contiguous(p))
        return ddn_ctx_set_error(p->ctx, DDN_ERR_ARG, "%s: the parameter must be a contiguous "
                                 "float tensor", kernel);
    for (int i = 0; i < n; i++)
        if (ops[i] && (ops[i]->dtype != p->dtype || !ddn_tensor_is_contiguous(ops[i]) ||
                       ddn_tensor_numel(ops[i]) != ddn_tensor_numel(p)))
            return ddn_ctx_set_error(p->ctx, DDN_ERR_ARG, "%s: operand %d is not a contiguous "
                                     "%s tensor of %lld elements", kernel, i + 1,
                                     ddn_dtype_name(p->dtype), (long long)ddn_tensor_numel(p));
    return DDN_OK;
}
