/* ddn — reductions: sum, mean and max over any set of dims, argmax along one dim.
 *
 * Dims may be negative, must not repeat, and n_dims = 0 means every dim; keepdim keeps reduced
 * dims as size 1, as in PyTorch. The forward reduces into a keepdim-shaped tensor with the
 * backend's reduce kernel and, without keepdim, returns a view of it with those dims dropped.
 * Backward views dy with the keepdim shape and broadcasts it back over the reduced dims (stride
 * 0): sum and mean add it with one axpy; max adds it only at the maxima, shared equally among
 * ties (as torch.amax). Tests: tests/test_reduce.c, tests/test_reduce_torch.c.
 */
#include <math.h>

#include "ddn_impl.h"
#include "ops.h"

typedef enum { R_SUM, R_MEAN, R_MAX } reduce_kind;
static const char *const reduce_names[] = {"sum", "mean", "max"};

typedef struct {
    reduce_kind kind;
    uint32_t mask;  /* reduced dims of the input */
    int64_t count;  /* elements per reduced block (mean divides by it) */
} reduce_saved;

/* Float input on this context, with the shape in the message (reductions are often applied to
 * label or index tensors by mistake). */
static bool check_input(ddn_ctx *ctx, const char *op, const ddn_tensor *x)
{
    if (!x) return false;
    if (!ddn_dtype_is_float(x->dtype)) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "%s: expected a float32 or float64 tensor, got %s "
                          "%s", op, ddn_dtype_name(x->dtype), ddn_shape_str(x, s, sizeof s));
        return false;
    }
    return ddn_check_float(ctx, op, x);
}

/* One dim of x, normalised; -1 with an error naming op and shape when out of range. A 0-dim
 * tensor accepts 0 and -1, as in PyTorch. */
static int norm_dim(ddn_ctx *ctx, const char *op, const ddn_tensor *x, int dim)
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

/* The reduced dims as a bit mask; false with an error on a bad or repeated dim. */
static bool dims_mask(ddn_ctx *ctx, const char *op, const ddn_tensor *x, int n_dims,
                      const int *dims, uint32_t *mask)
{
    char s[96];
    *mask = 0;
    if (n_dims < 0 || n_dims > DDN_MAX_DIMS || (n_dims > 0 && !dims)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: invalid dim list (n_dims %d%s) for shape %s", op,
                          n_dims, n_dims > 0 && !dims ? ", dims NULL" : "",
                          ddn_shape_str(x, s, sizeof s));
        return false;
    }
    if (n_dims == 0) {
        *mask = (1u << x->ndim) - 1;
        return true;
    }
    for (int i = 0; i < n_dims; i++) {
        int d = norm_dim(ctx, op, x, dims[i]);
        if (d < 0) return false;
        if (*mask & (1u << d)) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: dim %d is given twice for shape %s (dims "
                              "must be distinct)", op, dims[i], ddn_shape_str(x, s, sizeof s));
            return false;
        }
        *mask |= 1u << d;
    }
    if (x->ndim == 0) *mask = 0;
    return true;
}

/* A contiguous view of t (a reduced result or its gradient) with x's ndim and size 1 on the
 * reduced dims. */
static ddn_tensor *keepdim_view(ddn_ctx *ctx, const ddn_tensor *t, const ddn_tensor *x,
                                uint32_t mask)
{
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = (mask >> d) & 1 ? 1 : x->shape[d];
    ddn_contiguous_strides(x->ndim, shape, stride);
    return ddn_view_raw(ctx, t, x->ndim, shape, stride, t->offset);
}

/* r (keepdim-shaped, contiguous) with the reduced dims dropped, or r itself under keepdim. */
static ddn_tensor *finish_shape(ddn_ctx *ctx, ddn_tensor *r, uint32_t mask, bool keepdim)
{
    if (keepdim) return r;
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < r->ndim; d++)
        if (!((mask >> d) & 1)) shape[nd++] = r->shape[d];
    ddn_contiguous_strides(nd, shape, stride);
    return ddn_view_raw(ctx, r, nd, shape, stride, r->offset);
}

/* ---- sum / mean ------------------------------------------------------------------------------- */
static ddn_status sum_mean_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *dy = node->out->grad;
    const reduce_saved *sv = node->saved;
    ddn_tensor *gx = ddn_grad_buffer(ctx, x);
    if (!gx) return ddn_ctx_status(ctx);
    double alpha = sv->kind == R_SUM ? 1.0 : sv->count ? 1.0 / (double)sv->count : NAN;
    /* dx += alpha * dy, dy broadcast over the reduced dims without a copy */
    ddn_tensor *k = keepdim_view(ctx, dy, x, sv->mask);
    ddn_tensor *b = k ? ddn_broadcast_raw(ctx, k, x->ndim, x->shape) : NULL;
    return b ? ddn_k(gx)->axpy(gx, b, alpha) : ddn_ctx_status(ctx);
}

static ddn_status max_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0];
    const reduce_saved *sv = node->saved;
    ddn_tensor *gx = ddn_grad_buffer(ctx, x);
    if (!gx) return ddn_ctx_status(ctx);
    ddn_tensor *y = keepdim_view(ctx, node->out, x, sv->mask);
    ddn_tensor *dy = keepdim_view(ctx, node->out->grad, x, sv->mask);
    if (!y || !dy) return ddn_ctx_status(ctx);
    return ddn_k(gx)->max_backward_acc(gx, x, y, dy, sv->mask);
}

static ddn_tensor *reduce_forward(ddn_ctx *ctx, reduce_kind kind, ddn_tensor *x, int n_dims,
                                  const int *dims, bool keepdim)
{
    const char *op = reduce_names[kind];
    uint32_t mask;
    if (!check_input(ctx, op, x) || !dims_mask(ctx, op, x, n_dims, dims, &mask)) return NULL;
    int64_t kshape[DDN_MAX_DIMS], count = 1;
    for (int d = 0; d < x->ndim; d++) {
        bool red = (mask >> d) & 1;
        kshape[d] = red ? 1 : x->shape[d];
        if (red) count *= x->shape[d];
        if (red && kind == R_MAX && x->shape[d] == 0) {
            char s[96];
            ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "max: cannot reduce dim %d of shape %s: it is "
                              "empty and a maximum needs at least one element", d,
                              ddn_shape_str(x, s, sizeof s));
            return NULL;
        }
    }
    const ddn_kernels *k = ddn_k(x);
    ddn_tensor *r = ddn_tensor_new(ctx, x->dtype, x->ndim, kshape);
    if (!r) return NULL;
    ddn_status st = DDN_OK;
    if (ddn_tensor_numel(x) == 0) st = k->fill(r, 0.0); /* empty sums are 0 (NaN for mean) */
    else if (ddn_tensor_numel(r) > 0)
        st = k->reduce(kind == R_MAX ? DDN_REDUCE_MAX : DDN_REDUCE_SUM, r, x, mask);
    if (st == DDN_OK && kind == R_MEAN) {
        ddn_tensor *m = ddn_zeros(ctx, x->dtype, x->ndim, kshape);
        st = m ? k->axpy(m, r, count ? 1.0 / (double)count : NAN) : ddn_ctx_status(ctx);
        r = m;
    }
    if (st != DDN_OK) return NULL;
    ddn_tensor *y = finish_shape(ctx, r, mask, keepdim);
    ddn_node *node = ddn_tape_record(ctx, op, kind == R_MAX ? max_backward : sum_mean_backward,
                                     y, 1, &x, sizeof(reduce_saved));
    if (node) *(reduce_saved *)node->saved = (reduce_saved){kind, mask, count};
    return ddn_op_finish(ctx, op, y);
}

ddn_tensor *ddn_sum(ddn_ctx *ctx, ddn_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_forward(ctx, R_SUM, x, n_dims, dims, keepdim);
}

ddn_tensor *ddn_mean(ddn_ctx *ctx, ddn_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_forward(ctx, R_MEAN, x, n_dims, dims, keepdim);
}

ddn_tensor *ddn_max(ddn_ctx *ctx, ddn_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_forward(ctx, R_MAX, x, n_dims, dims, keepdim);
}

/* ---- argmax (not differentiable: records nothing) --------------------------------------------- */
ddn_tensor *ddn_argmax(ddn_ctx *ctx, ddn_tensor *x, int dim, bool keepdim)
{
    if (!check_input(ctx, "argmax", x)) return NULL;
    int d = norm_dim(ctx, "argmax", x, dim);
    if (d < 0) return NULL;
    if (x->ndim == 0) return ddn_zeros(ctx, DDN_DTYPE_I64, 0, NULL);
    if (x->shape[d] == 0) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "argmax: dim %d of shape %s is empty", d,
                          ddn_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t kshape[DDN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) kshape[i] = i == d ? 1 : x->shape[i];
    ddn_tensor *r = ddn_tensor_new(ctx, DDN_DTYPE_I64, x->ndim, kshape);
    if (!r) return NULL;
    if (ddn_tensor_numel(r) > 0 && ddn_k(x)->argmax(r, x, d) != DDN_OK) return NULL;
    return finish_shape(ctx, r, 1u << d, keepdim);
}
