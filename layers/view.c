/* ddn — view ops: reshape, flatten, permute, transpose, slice, expand, contiguous, cast.
 *
 * Views share their input's memory; their backward maps the output gradient back onto the
 * input's shape (a reshape, the inverse permutation, a slice of the input's gradient, or a sum
 * over the expanded dims). Tests: tests/test_view.c.
 */
#include <string.h>

#include "ddn_impl.h"
#include "ops.h"

/* ---- reshape ---------------------------------------------------------------------------------- */
static ddn_status reshape_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *dy = node->out->grad;
    int64_t stride[DDN_MAX_DIMS];
    ddn_contiguous_strides(x->ndim, x->shape, stride); /* gradients are always contiguous */
    ddn_tensor *g = ddn_view_raw(ctx, dy, x->ndim, x->shape, stride, dy->offset);
    return g ? ddn_grad_accumulate(ctx, x, g, 1.0) : ddn_ctx_status(ctx);
}

ddn_tensor *ddn_reshape(ddn_ctx *ctx, ddn_tensor *x, int ndim, const int64_t *shape)
{
    if (!x) return NULL;
    if (ndim < 0 || ndim > DDN_MAX_DIMS || (ndim > 0 && !shape))
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "reshape: bad target rank %d", ndim), NULL;
    int64_t s[DDN_MAX_DIMS], known = 1, n = ddn_tensor_numel(x);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) infer = i;
        else if (s[i] < 0) infer = -2;
        else known *= s[i];
    }
    if (infer >= 0 && known > 0 && n % known == 0) s[infer] = n / known;
    char a[96], b[96];
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= s[i];
    if (infer == -2 || total != n || (infer >= 0 && s[infer] < 0)) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "reshape: cannot view %s (%lld elements) as %s",
                          ddn_shape_str(x, a, sizeof a), (long long)n,
                          ddn_shape_str_raw(ndim, shape, b, sizeof b));
        return NULL;
    }
    ddn_tensor *src = ddn_tensor_is_contiguous(x) ? x : ddn_contiguous(ctx, x);
    if (!src) return NULL;
    int64_t stride[DDN_MAX_DIMS];
    ddn_contiguous_strides(ndim, s, stride);
    ddn_tensor *y = ddn_view_raw(ctx, src, ndim, s, stride, src->offset);
    if (ddn_tape_record(ctx, "reshape", reshape_backward, y, 1, &src, NULL, 0) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, "reshape", y);
}

ddn_tensor *ddn_flatten(ddn_ctx *ctx, ddn_tensor *x, int start_dim)
{
    if (!x) return NULL;
    int d = x->ndim == 0 ? 0 : ddn_norm_dim(ctx, "flatten", x, start_dim);
    if (d < 0) return NULL;
    int64_t s[DDN_MAX_DIMS], n = 1;
    for (int i = 0; i < d; i++) s[i] = x->shape[i];
    for (int i = d; i < x->ndim; i++) n *= x->shape[i];
    s[d] = n;
    return ddn_reshape(ctx, x, d + 1, s);
}

/* ---- permute / transpose ---------------------------------------------------------------------- */
typedef struct { int perm[DDN_MAX_DIMS]; } permute_saved;

static ddn_status permute_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *dy = node->out->grad;
    const permute_saved *sv = node->saved;
    /* dx[.., perm[i] ..] = dy[.., i ..]: view dy with the inverse permutation. */
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        shape[sv->perm[i]] = dy->shape[i];
        stride[sv->perm[i]] = dy->stride[i];
    }
    ddn_tensor *g = ddn_view_raw(ctx, dy, x->ndim, shape, stride, dy->offset);
    return g ? ddn_grad_accumulate(ctx, x, g, 1.0) : ddn_ctx_status(ctx);
}

ddn_tensor *ddn_permute(ddn_ctx *ctx, ddn_tensor *x, const int *perm)
{
    if (!x) return NULL;
    int seen = 0, p[DDN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        p[i] = perm ? (perm[i] < 0 ? perm[i] + x->ndim : perm[i]) : -1;
        if (p[i] < 0 || p[i] >= x->ndim || (seen >> p[i]) & 1) {
            char a[96];
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "permute: the permutation of a %s tensor must "
                              "name each of its %d dims once", ddn_shape_str(x, a, sizeof a),
                              x->ndim);
            return NULL;
        }
        seen |= 1 << p[i];
    }
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        shape[i] = x->shape[p[i]];
        stride[i] = x->stride[p[i]];
    }
    ddn_tensor *y = ddn_view_raw(ctx, x, x->ndim, shape, stride, x->offset);
    permute_saved sv;
    memcpy(sv.perm, p, sizeof p);
    if (ddn_tape_record(ctx, "permute", permute_backward, y, 1, &x, &sv, sizeof sv) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, "permute", y);
}

ddn_tensor *ddn_transpose(ddn_ctx *ctx, ddn_tensor *x, int dim0, int dim1)
{
    if (!x) return NULL;
    int a = ddn_norm_dim(ctx, "transpose", x, dim0);
    int b = a < 0 ? -1 : ddn_norm_dim(ctx, "transpose", x, dim1);
    if (b < 0) return NULL;
    int perm[DDN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return ddn_permute(ctx, x, perm);
}

/* ---- slice ------------------------------------------------------------------------------------ */
typedef struct { int dim; int64_t start, step; } slice_saved;

static ddn_status slice_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *dy = node->out->grad, *out = node->out;
    const slice_saved *sv = node->saved;
    ddn_tensor *gx = ddn_grad_buffer(ctx, x);
    if (!gx) return ddn_ctx_status(ctx);
    int64_t stride[DDN_MAX_DIMS];
    memcpy(stride, gx->stride, sizeof stride);
    stride[sv->dim] *= sv->step;
    ddn_tensor *part = ddn_view_raw(ctx, gx, out->ndim, out->shape, stride,
                                    gx->offset + sv->start * gx->stride[sv->dim]);
    return part ? ddn_k(gx)->axpy(part, dy, 1.0) : ddn_ctx_status(ctx);
}

ddn_tensor *ddn_slice(ddn_ctx *ctx, ddn_tensor *x, int dim, int64_t start, int64_t stop,
                      int64_t step)
{
    if (!x) return NULL;
    if (x->ndim == 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "slice: cannot slice a 0-dim tensor");
        return NULL;
    }
    int d = ddn_norm_dim(ctx, "slice", x, dim);
    if (d < 0) return NULL;
    if (step <= 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "slice: step must be positive, got %lld",
                          (long long)step);
        return NULL;
    }
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    start = start < 0 ? 0 : start > n ? n : start;
    stop = stop < start ? start : stop > n ? n : stop;
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    memcpy(stride, x->stride, sizeof stride);
    shape[d] = (stop - start + step - 1) / step;
    stride[d] *= step;
    ddn_tensor *y = ddn_view_raw(ctx, x, x->ndim, shape, stride, x->offset + start * x->stride[d]);
    slice_saved sv = {d, start, step};
    if (ddn_tape_record(ctx, "slice", slice_backward, y, 1, &x, &sv, sizeof sv) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, "slice", y);
}

/* ---- expand ----------------------------------------------------------------------------------- */
static ddn_status expand_backward(ddn_ctx *ctx, ddn_node *node)
{
    return ddn_grad_accumulate(ctx, node->in[0], node->out->grad, 1.0);
}

ddn_tensor *ddn_expand(ddn_ctx *ctx, ddn_tensor *x, int ndim, const int64_t *shape)
{
    if (!x) return NULL;
    bool ok = ndim >= x->ndim && ndim <= DDN_MAX_DIMS && (ndim == 0 || shape);
    for (int i = 0; ok && i < ndim; i++) {
        int ix = x->ndim - ndim + i;
        ok = shape[i] >= 0 && (ix < 0 || x->shape[ix] == shape[i] || x->shape[ix] == 1);
    }
    if (!ok) {
        char a[96], b[96];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "expand: cannot expand %s to %s (only size-1 and "
                          "new leading dims grow)", ddn_shape_str(x, a, sizeof a),
                          ndim >= 0 && ndim <= DDN_MAX_DIMS && shape
                              ? ddn_shape_str_raw(ndim, shape, b, sizeof b) : "?");
        return NULL;
    }
    ddn_tensor *y = ddn_broadcast_raw(ctx, x, ndim, shape);
    if (ddn_tape_record(ctx, "expand", expand_backward, y, 1, &x, NULL, 0) != DDN_OK) return NULL;
    return ddn_op_finish(ctx, "expand", y);
}

/* ---- contiguous and cast ---------------------------------------------------------------------- */
static ddn_status copy_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *dy = node->out->grad;
    if (dy->dtype == x->dtype) return ddn_grad_accumulate(ctx, x, dy, 1.0);
    ddn_tensor *g = ddn_tensor_new(ctx, x->dtype, dy->ndim, dy->shape);
    if (!g || ddn_k(g)->copy(g, dy) != DDN_OK) return ddn_ctx_status(ctx);
    return ddn_grad_accumulate(ctx, x, g, 1.0);
}

static ddn_tensor *copy_as(ddn_ctx *ctx, const char *op, ddn_tensor *x, ddn_dtype dt)
{
    ddn_tensor *y = ddn_tensor_new(ctx, dt, x->ndim, x->shape);
    if (!y || ddn_k(x)->copy(y, x) != DDN_OK) return NULL;
    if (ddn_tape_record(ctx, op, copy_backward, y, 1, &x, NULL, 0) != DDN_OK) return NULL;
    return ddn_op_finish(ctx, op, y);
}

ddn_tensor *ddn_contiguous(ddn_ctx *ctx, ddn_tensor *x)
{
    if (!x) return NULL;
    if (ddn_tensor_is_contiguous(x)) return x;
    return copy_as(ctx, "contiguous", x, x->dtype);
}

ddn_tensor *ddn_cast(ddn_ctx *ctx, ddn_tensor *x, ddn_dtype dt)
{
    if (!x) return NULL;
    if ((unsigned)dt >= DDN_DTYPE_COUNT) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "cast: invalid dtype %d", (int)dt);
        return NULL;
    }
    if (x->requires_grad && !ddn_dtype_is_float(dt)) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "cast: a tensor that requires grad cannot become "
                          "%s", ddn_dtype_name(dt));
        return NULL;
    }
    return copy_as(ctx, "cast", x, dt);
}
