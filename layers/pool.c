/* ddn — 2-D max, average and adaptive-average pooling, and inverted dropout (PyTorch semantics).
 *
 * Output sizes follow torch.nn.functional: floor((H + 2p - k) / s) + 1, or with ceil_mode the
 * ceiling, dropping a last window that would start in the right padding. Max pooling saves the
 * argmax of each window (int64, flat in its plane) and its backward scatters dy there; average
 * pooling's backward spreads dy / divisor over the window. Dropout saves its mask (0 or
 * 1 / (1 - p), drawn through a seed taken from the rng) and multiplies dy by the same mask.
 * Every backward accumulates. Inputs are made contiguous for the kernels; nodes stay on the
 * caller's tensors. Tests: tests/test_norm_pool.c, tests/test_norm_pool_torch.c.
 */
#include "ddn_impl.h"
#include "nn.h"

/* x itself when contiguous, else a contiguous copy (not recorded: callers record on x). */
static ddn_tensor *dense(ddn_ctx *ctx, ddn_tensor *x)
{
    if (ddn_tensor_is_contiguous(x)) return x;
    ddn_tensor *c = ddn_tensor_new_like(ctx, x);
    return c && ddn_k(x)->copy(c, x) == DDN_OK ? c : NULL;
}

/* A float (N, C, H, W) input. */
static bool check_nchw(ddn_ctx *ctx, const char *op, const ddn_tensor *x)
{
    if (!ddn_check_float(ctx, op, x)) return false;
    if (x->ndim == 4) return true;
    char s[96];
    ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: x must be (N, C, H, W), got %s", op,
                      ddn_shape_str(x, s, sizeof s));
    return false;
}

/* Floor division for b > 0: (in + 2p - k) is negative when the kernel outgrows the input. */
static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }

/* One spatial dim's output size, as PyTorch's pooling_output_shape. */
static int64_t pool_out_size(int64_t in, int k, int s, int pad, bool ceil_mode)
{
    int64_t o = floor_div(in + 2 * (int64_t)pad - k + (ceil_mode ? s - 1 : 0), s) + 1;
    /* the last window must start inside the input or the left padding */
    if (ceil_mode && o > 0 && (o - 1) * s >= in + pad) o--;
    return o;
}

/* Validates p for x, resolves stride 0 to the kernel and computes (N, C, OH, OW). */
static bool pool_setup(ddn_ctx *ctx, const char *op, const ddn_tensor *x, ddn_pool2d_params *p,
                       int64_t *out_shape)
{
    if (!check_nchw(ctx, op, x)) return false;
    for (int i = 0; i < 2; i++) {
        if (p->kernel[i] < 1 || p->stride[i] < 0 || p->padding[i] < 0) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: kernel %dx%d, stride %dx%d, padding %dx%d: "
                              "kernel must be >= 1, stride >= 0 (0: the kernel) and padding >= 0",
                              op, p->kernel[0], p->kernel[1], p->stride[0], p->stride[1],
                              p->padding[0], p->padding[1]);
            return false;
        }
        if (p->padding[i] > p->kernel[i] / 2) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: kernel %dx%d with padding %dx%d: padding "
                              "must be at most half the kernel", op, p->kernel[0], p->kernel[1],
                              p->padding[0], p->padding[1]);
            return false;
        }
        if (p->stride[i] == 0) p->stride[i] = p->kernel[i];
    }
    out_shape[0] = x->shape[0];
    out_shape[1] = x->shape[1];
    for (int i = 0; i < 2; i++)
        out_shape[2 + i] = pool_out_size(x->shape[2 + i], p->kernel[i], p->stride[i],
                                         p->padding[i], p->ceil_mode);
    if (out_shape[2] < 1 || out_shape[3] < 1) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: input %s with kernel %dx%d, stride %dx%d, "
                          "padding %dx%d gives output %lldx%lld; the input is too small for the "
                          "kernel", op, ddn_shape_str(x, s, sizeof s), p->kernel[0], p->kernel[1],
                          p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                          (long long)out_shape[2], (long long)out_shape[3]);
        return false;
    }
    return true;
}

/* ---- max pooling ------------------------------------------------------------------------------ */
typedef struct {
    ddn_tensor *idx; /* (N, C, OH, OW) int64 argmax, flat in its (H, W) plane */
} max_pool_saved;

static ddn_status max_pool_backward(ddn_ctx *ctx, ddn_node *node)
{
    const max_pool_saved *sv = node->saved;
    ddn_tensor *dx = ddn_grad_buffer(ctx, node->in[0]);
    return dx ? ddn_k(dx)->max_pool2d_backward_acc(dx, node->out->grad, sv->idx)
              : ddn_ctx_status(ctx);
}

ddn_tensor *ddn_max_pool2d(ddn_ctx *ctx, ddn_tensor *x, ddn_pool2d_params p)
{
    const char *op = "max_pool2d";
    int64_t os[4];
    if (!x || !pool_setup(ctx, op, x, &p, os)) return NULL;
    bool record = ddn_grad_enabled(ctx) && x->requires_grad;
    ddn_tensor *xc = dense(ctx, x);
    ddn_tensor *y = xc ? ddn_tensor_new(ctx, x->dtype, 4, os) : NULL;
    max_pool_saved sv = {record && y ? ddn_tensor_new(ctx, DDN_DTYPE_I64, 4, os) : NULL};
    if (!y || (record && !sv.idx) || ddn_k(x)->max_pool2d(y, sv.idx, xc, &p) != DDN_OK)
        return NULL;
    if (ddn_tape_record(ctx, op, max_pool_backward, y, 1, &x, &sv, sizeof sv) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, op, y);
}

/* ---- average pooling -------------------------------------------------------------------------- */
static ddn_status avg_pool_backward(ddn_ctx *ctx, ddn_node *node)
{
    const ddn_pool2d_params *p = node->saved;
    ddn_tensor *dx = ddn_grad_buffer(ctx, node->in[0]);
    return dx ? ddn_k(dx)->avg_pool2d_backward_acc(dx, node->out->grad, p) : ddn_ctx_status(ctx);
}

ddn_tensor *ddn_avg_pool2d(ddn_ctx *ctx, ddn_tensor *x, ddn_pool2d_params p)
{
    const char *op = "avg_pool2d";
    int64_t os[4];
    if (!x || !pool_setup(ctx, op, x, &p, os)) return NULL;
    ddn_tensor *xc = dense(ctx, x);
    ddn_tensor *y = xc ? ddn_tensor_new(ctx, x->dtype, 4, os) : NULL;
    if (!y || ddn_k(x)->avg_pool2d(y, xc, &p) != DDN_OK) return NULL;
    if (ddn_tape_record(ctx, op, avg_pool_backward, y, 1, &x, &p, sizeof p) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, op, y);
}

/* ---- adaptive average pooling ----------------------------------------------------------------- */
static ddn_status adaptive_avg_pool_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *dx = ddn_grad_buffer(ctx, node->in[0]);
    return dx ? ddn_k(dx)->adaptive_avg_pool2d_backward_acc(dx, node->out->grad)
              : ddn_ctx_status(ctx);
}

ddn_tensor *ddn_adaptive_avg_pool2d(ddn_ctx *ctx, ddn_tensor *x, int out_h, int out_w)
{
    const char *op = "adaptive_avg_pool2d";
    if (!x || !check_nchw(ctx, op, x)) return NULL;
    char s[96];
    if (out_h < 1 || out_w < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "adaptive_avg_pool2d: output size %dx%d for x %s; "
                          "both must be >= 1", out_h, out_w, ddn_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "adaptive_avg_pool2d: x %s has an empty spatial "
                          "dim; every bin needs at least one element",
                          ddn_shape_str(x, s, sizeof s));
        return NULL;
    }
    ddn_tensor *xc = dense(ctx, x);
    ddn_tensor *y = xc ? ddn_tensor_new(ctx, x->dtype, DDN_SHAPE(x->shape[0], x->shape[1], out_h,
                                                                 out_w))
                       : NULL;
    if (!y || ddn_k(x)->adaptive_avg_pool2d(y, xc) != DDN_OK) return NULL;
    if (ddn_tape_record(ctx, op, adaptive_avg_pool_backward, y, 1, &x, NULL, 0) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, op, y);
}

/* ---- dropout ---------------------------------------------------------------------------------- */
typedef struct {
    ddn_tensor *mask; /* x's shape, contiguous: 0 or 1 / (1 - p) */
} dropout_saved;

static ddn_status dropout_backward(ddn_ctx *ctx, ddn_node *node)
{
    const dropout_saved *sv = node->saved;
    ddn_tensor *dx = ddn_grad_buffer(ctx, node->in[0]);
    if (!dx) return ddn_ctx_status(ctx);
    const ddn_kernels *k = ddn_k(dx);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *g = ddn_tensor_new_like(ctx, dx);
    ddn_status st = g ? k->binary(DDN_BINARY_MUL, g, node->out->grad, sv->mask)
                      : ddn_ctx_status(ctx);
    if (st == DDN_OK) st = k->axpy(dx, g, 1.0);
    ddn_ctx_rewind(ctx, mark); /* g dies; dx was made before the mark */
    return st;
}

ddn_tensor *ddn_dropout(ddn_ctx *ctx, ddn_tensor *x, double p, bool training, ddn_rng *rng)
{
    const char *op = "dropout";
    if (!ddn_check_float(ctx, op, x)) return NULL;
    if (!(p >= 0 && p <= 1)) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dropout: probability %g for x %s must be in [0, 1]",
                          p, ddn_shape_str(x, s, sizeof s));
        return NULL;
    }
    /* evaluation and p = 0 are the identity: x itself, no node and no draw from the rng */
    if (!training || p == 0) return x;
    uint64_t seed = ddn_rng_u64(rng ? rng : ddn_ctx_rng(ctx));
    const ddn_kernels *k = ddn_k(x);
    dropout_saved sv = {ddn_tensor_new_like(ctx, x)};
    ddn_tensor *y = sv.mask ? ddn_tensor_new_like(ctx, x) : NULL;
    if (!y || k->dropout_mask(sv.mask, p, seed) != DDN_OK ||
        k->binary(DDN_BINARY_MUL, y, x, sv.mask) != DDN_OK)
        return NULL;
    if (ddn_tape_record(ctx, op, dropout_backward, y, 1, &x, &sv, sizeof sv) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, op, y);
}
