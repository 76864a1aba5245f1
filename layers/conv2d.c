/* ddn — conv2d: 2-D convolution with PyTorch's semantics (stride, zero padding, dilation, groups)
 * and its backward for the input, the weight and the bias.
 *
 * The front end checks shapes and options, makes strided inputs contiguous (through ddn_contiguous,
 * so their gradients still flow), runs the backend's forward kernel and records one node whose
 * saved state is the params. Backward calls the backend's backward-data and backward-filter
 * kernels, which add straight into the gradient buffers of the inputs that require grad.
 * Kernels: core/cpu/conv.c. Tests: tests/test_conv.c, tests/test_conv_torch.c.
 */
#include <inttypes.h>

#include "ddn_impl.h"
#include "nn.h"
#include "ops.h"

static const char *const OP = "conv2d";

/* Options, ranks and channel counts; on success *oh, *ow hold the output size. */
static bool check_args(ddn_ctx *ctx, const ddn_tensor *x, const ddn_tensor *w,
                       const ddn_tensor *bias, const ddn_conv2d_params *p, int64_t *oh,
                       int64_t *ow)
{
    char sx[96], sw[96], sb[96];
    ddn_shape_str(x, sx, sizeof sx);
    ddn_shape_str(w, sw, sizeof sw);
    if (p->stride[0] < 1 || p->stride[1] < 1 || p->padding[0] < 0 || p->padding[1] < 0 ||
        p->dilation[0] < 1 || p->dilation[1] < 1 || p->groups < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "conv2d: stride (%d,%d), padding (%d,%d), dilation "
                          "(%d,%d), groups %d: expected stride >= 1, padding >= 0, dilation >= 1, "
                          "groups >= 1", p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                          p->dilation[0], p->dilation[1], p->groups);
        return false;
    }
    if (x->ndim != 4 || w->ndim != 4) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "conv2d: x %s and w %s: expected x (N, C, H, W) and "
                          "w (OC, C/groups, KH, KW)", sx, sw);
        return false;
    }
    int64_t C = x->shape[1], OC = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    if (OC < 1 || w->shape[1] < 1 || KH < 1 || KW < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "conv2d: w %s has an empty dim", sw);
        return false;
    }
    if (C != w->shape[1] * p->groups) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "conv2d: x %s has %" PRId64 " channels but w %s "
                          "expects %" PRId64 " (groups %d)", sx, C, sw, w->shape[1] * p->groups,
                          p->groups);
        return false;
    }
    if (OC % p->groups != 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "conv2d: w %s has %" PRId64 " output channels, "
                          "not divisible by groups %d", sw, OC, p->groups);
        return false;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != OC)) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "conv2d: bias %s does not fit w %s: expected "
                          "(%" PRId64 ")", ddn_shape_str(bias, sb, sizeof sb), sw, OC);
        return false;
    }
    int64_t span_h = (int64_t)p->dilation[0] * (KH - 1) + 1, span_w =
        (int64_t)p->dilation[1] * (KW - 1) + 1;
    int64_t ph = x->shape[2] + 2 * (int64_t)p->padding[0], pw = x->shape[3] + 2 *
        (int64_t)p->padding[1];
    if (ph < span_h || pw < span_w) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "conv2d: x %s padded to %" PRId64 "x%" PRId64
                          " is smaller than w %s's dilated kernel %" PRId64 "x%" PRId64
                          " (padding (%d,%d), dilation (%d,%d))", sx, ph, pw, sw, span_h, span_w,
                          p->padding[0], p->padding[1], p->dilation[0], p->dilation[1]);
        return false;
    }
    *oh = (ph - span_h) / p->stride[0] + 1;
    *ow = (pw - span_w) / p->stride[1] + 1;
    return true;
}

/* ---- forward --------------------------------------------------------------------------------- */
static ddn_status conv2d_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *w = node->in[1], *bias = node->n_in > 2 ? node->in[2] : NULL;
    ddn_tensor *dy = node->out->grad;
    const ddn_conv2d_params *p = node->saved;
    const ddn_kernels *k = ddn_k(dy);
    if (!ddn_tensor_is_contiguous(dy)) { /* gradient buffers are contiguous; be safe anyway */
        ddn_tensor *c = ddn_tensor_new_like(ctx, dy);
        if (!c || k->copy(c, dy) != DDN_OK) return ddn_ctx_status(ctx);
        dy = c;
    }
    ddn_status st = DDN_OK;
    if (x->requires_grad) {
        ddn_tensor *dx = ddn_grad_buffer(ctx, x);
        st = dx ? k->conv2d_backward_data_acc(dx, dy, w, p->stride, p->padding, p->dilation,
                                              p->groups)
                : ddn_ctx_status(ctx);
    }
    ddn_tensor *dw = NULL, *db = NULL;
    if (st == DDN_OK && w->requires_grad && !(dw = ddn_grad_buffer(ctx, w)))
        st = ddn_ctx_status(ctx);
    if (st == DDN_OK && bias && bias->requires_grad && !(db = ddn_grad_buffer(ctx, bias)))
        st = ddn_ctx_status(ctx);
    if (st == DDN_OK && (dw || db))
        st = k->conv2d_backward_filter_acc(dw, db, dy, x, w, p->stride, p->padding, p->dilation,
                                           p->groups);
    return st;
}

/* The kernel taps [*lo, *hi] along one dim that meet the input for at least one output position
 * (tap t reads row o stride + t dilation - padding); the others only ever meet zero padding. */
static void live_taps(int64_t in, int64_t out, int64_t k, int stride, int pad, int dil,
                      int64_t *lo, int64_t *hi)
{
    *lo = k, *hi = -1;
    for (int64_t t = 0; t < k; t++) {
        int64_t need = pad - t * dil; /* o stride must reach this for row >= 0 */
        int64_t o = need <= 0 ? 0 : (need + stride - 1) / stride;
        if (o < out && o * stride - need <= in - 1) {
            if (t < *lo) *lo = t;
            *hi = t;
        }
    }
}

/* Dead taps (a 3x3 convolution on a 1x1 map, as in a ResNet's last stage at small inputs) add
 * only products with padding: the convolution with the live taps alone, its padding reduced to
 * match, gives the same output (up to summation order) for up to 9x less work, and the dead
 * taps' weight gradients stay zero through the slice's backward. Returns NULL when every tap is
 * live or the output size would change (*same set): then the caller convolves as given. */
static ddn_tensor *conv2d_live_taps(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *w, ddn_tensor *bias,
                                    ddn_conv2d_params p, int64_t oh, int64_t ow, bool *same)
{
    int64_t lo[2], hi[2], out[2] = {oh, ow};
    ddn_conv2d_params q = p;
    ddn_tensor *wl = w;
    *same = true;
    for (int d = 0; d < 2; d++) {
        live_taps(x->shape[2 + d], out[d], w->shape[2 + d], p.stride[d], p.padding[d],
                  p.dilation[d], &lo[d], &hi[d]);
        int64_t k = hi[d] - lo[d] + 1, pad = p.padding[d] - lo[d] * p.dilation[d];
        int64_t span = (k - 1) * p.dilation[d] + 1;
        if (k < 1 || k == w->shape[2 + d] || pad < 0 ||
            (x->shape[2 + d] + 2 * pad - span) / p.stride[d] + 1 != out[d])
            continue;
        q.padding[d] = (int)pad;
        wl = ddn_slice(ctx, wl, 2 + d, lo[d], hi[d] + 1, 1);
        *same = false;
    }
    return *same || !wl ? NULL : ddn_conv2d(ctx, x, wl, bias, q);
}

ddn_tensor *ddn_conv2d(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *w, ddn_tensor *bias,
                       ddn_conv2d_params p)
{
    if (!ddn_check_pair(ctx, OP, x, w)) return NULL;
    if (bias && !ddn_check_pair(ctx, OP, x, bias)) return NULL;
    int64_t oh, ow;
    if (!check_args(ctx, x, w, bias, &p, &oh, &ow)) return NULL;
    bool same;
    ddn_tensor *live = conv2d_live_taps(ctx, x, w, bias, p, oh, ow, &same);
    if (!same) return live;
    /* The kernels read dense NCHW; a strided view is copied on the tape, so its gradient flows. */
    ddn_tensor *xc = ddn_contiguous(ctx, x), *wc = ddn_contiguous(ctx, w);
    ddn_tensor *bc = bias ? ddn_contiguous(ctx, bias) : NULL;
    if (!xc || !wc || (bias && !bc)) return NULL;
    ddn_tensor *y = ddn_tensor_new(ctx, x->dtype, 4,
                                   (int64_t[]){x->shape[0], w->shape[0], oh, ow});
    if (!y) return NULL;
    ddn_status st = ddn_k(y)->conv2d(y, xc, wc, bc, p.stride, p.padding, p.dilation, p.groups);
    if (st != DDN_OK) {
        if (ddn_ctx_status(ctx) == DDN_OK)
            ddn_ctx_set_error(ctx, st, "conv2d: the %s kernel failed", ctx->backend->name);
        return NULL;
    }
    ddn_tensor *in[3] = {xc, wc, bc};
    if (ddn_tape_record(ctx, OP, conv2d_backward, y, bc ? 3 : 2, in, &p, sizeof p) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, OP, y);
}
