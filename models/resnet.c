/* ddn — ResNet-18/34/50 as code driven by a tiny table (blocks per stage, block kind).
 *
 * Construction declares every tensor in the params registry under its torchvision state_dict
 * name and in state_dict order (module registration order: conv1, bn1, layer1.0.conv1, ..., fc),
 * so a saved model lists its tensors as torchvision would. The forward is eager and composed of
 * the differentiable ops (conv2d, batch_norm2d, relu, add, max/avg pooling, linear), so the tape
 * gets the backward for free. Every conv in a ResNet is followed by a BatchNorm and has no bias,
 * so a (conv, bn) pair is the unit here.
 */
#include "resnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ddn_impl.h"
#include "nn.h"
#include "nn_impl.h"
#include "ops.h"
#include "resnet_impl.h"

#define BN_MOMENTUM 0.1
#define BN_EPS 1e-5

/* The table: torchvision's resnet18/34/50 (BasicBlock expansion 1, Bottleneck expansion 4). */
typedef struct arch_spec {
    ddn_resnet_arch arch;
    bool bottleneck;
    int blocks[4];
} arch_spec;

static const arch_spec ARCHS[] = {
    {DDN_RESNET18, false, {2, 2, 2, 2}},
    {DDN_RESNET34, false, {3, 4, 6, 3}},
    {DDN_RESNET50, true, {3, 4, 6, 3}},
};

typedef struct conv_bn {
    ddn_tensor *w;                    /* (out, in, k, k) */
    ddn_tensor *gamma, *beta;         /* bn weight, bias (out) */
    ddn_tensor *mean, *var;           /* running statistics (out) */
    ddn_tensor *count;                /* num_batches_tracked: int64, 0-dim */
    int k, stride, pad;
} conv_bn;

typedef struct block {
    int stage, index;                 /* "layer<stage>.<index>" */
    int n_conv;                       /* 2 (BasicBlock) or 3 (Bottleneck) */
    conv_bn conv[3];                  /* conv<i+1> and bn<i+1> */
    bool has_down;
    conv_bn down;                     /* downsample.0 (1x1, stride) and downsample.1 */
} block;

struct ddn_resnet {
    ddn_ctx *ctx;
    ddn_resnet_opts opts;             /* defaults resolved */
    ddn_params *params;
    int64_t base;                     /* planes of stage 1 */
    int64_t feat_ch;                  /* 8 * base * expansion */
    conv_bn stem;                     /* conv1, bn1 */
    int n_blocks;
    block *blocks;                    /* in forward order */
    ddn_tensor *fc_w, *fc_b;          /* (classes, feat_ch), (classes); NULL in features mode */
};

/* ---- construction ---------------------------------------------------------------------------- */

static ddn_tensor *declare(ddn_resnet *net, const char *prefix, const char *what, ddn_dtype dt,
                           int ndim, const int64_t *shape, bool buffer)
{
    char name[96];
    snprintf(name, sizeof name, "%s%s", prefix, what);
    return ddn_params_add(net->params, name, dt, ndim, shape, buffer);
}

/* Declares "<conv>weight" and the five "<bn>..." tensors, in torchvision's order (a conv module,
 * then its BatchNorm: weight, bias, running_mean, running_var, num_batches_tracked). */
static bool declare_conv_bn(ddn_resnet *net, conv_bn *cb, const char *conv, const char *bn,
                            int64_t in, int64_t out, int k, int stride)
{
    ddn_dtype dt = net->opts.dtype;
    int64_t wshape[4] = {out, in, k, k}, c[1] = {out}, none[1] = {0};
    cb->k = k;
    cb->stride = stride;
    cb->pad = k / 2; /* 7x7: 3, 3x3: 1, 1x1: 0 */
    cb->w = declare(net, conv, "weight", dt, 4, wshape, false);
    cb->gamma = declare(net, bn, "weight", dt, 1, c, false);
    cb->beta = declare(net, bn, "bias", dt, 1, c, false);
    cb->mean = declare(net, bn, "running_mean", dt, 1, c, true);
    cb->var = declare(net, bn, "running_var", dt, 1, c, true);
    cb->count = declare(net, bn, "num_batches_tracked", DDN_DTYPE_I64, 0, none, true);
    return cb->w && cb->gamma && cb->beta && cb->mean && cb->var && cb->count;
}

/* One block as torchvision's _make_layer builds it: the stride sits on the 3x3 conv (conv1 of a
 * BasicBlock, conv2 of a Bottleneck: v1.5), and a downsample (1x1 conv with the stride + bn)
 * appears when the stride or the channel count changes. *inplanes becomes the block's output. */
static bool declare_block(ddn_resnet *net, block *b, bool bottleneck, int64_t *inplanes,
                          int64_t planes, int stride)
{
    char pre[48], conv[64], bn[64];
    snprintf(pre, sizeof pre, "layer%d.%d.", b->stage, b->index);
    int64_t out = bottleneck ? 4 * planes : planes;
    b->n_conv = bottleneck ? 3 : 2;
    for (int i = 0; i < b->n_conv; i++) {
        snprintf(conv, sizeof conv, "%sconv%d.", pre, i + 1);
        snprintf(bn, sizeof bn, "%sbn%d.", pre, i + 1);
        int64_t cin = i == 0 ? *inplanes : planes, cout = i == b->n_conv - 1 ? out : planes;
        int k = bottleneck && i != 1 ? 1 : 3;
        int s = (bottleneck ? i == 1 : i == 0) ? stride : 1;
        if (!declare_conv_bn(net, &b->conv[i], conv, bn, cin, cout, k, s)) return false;
    }
    b->has_down = stride != 1 || *inplanes != out;
    if (b->has_down) {
        snprintf(conv, sizeof conv, "%sdownsample.0.", pre);
        snprintf(bn, sizeof bn, "%sdownsample.1.", pre);
        if (!declare_conv_bn(net, &b->down, conv, bn, *inplanes, out, 1, stride)) return false;
    }
    *inplanes = out;
    return true;
}

/* torchvision: kaiming_normal_(fan_out, relu) for every conv; BN weight 1, bias 0; fresh running
 * statistics (mean 0, var 1, no batches). */
static ddn_status init_conv_bn(const conv_bn *cb, ddn_rng *rng)
{
    ddn_status st = ddn_init_kaiming_normal_fan_out(cb->w, rng);
    if (st == DDN_OK) st = ddn_tensor_fill(cb->gamma, 1.0);
    if (st == DDN_OK) st = ddn_tensor_fill(cb->beta, 0.0);
    if (st == DDN_OK) st = ddn_tensor_fill(cb->mean, 0.0);
    if (st == DDN_OK) st = ddn_tensor_fill(cb->var, 1.0);
    if (st == DDN_OK) st = ddn_tensor_fill(cb->count, 0.0);
    return st;
}

static ddn_status init_all(ddn_resnet *net)
{
    ddn_rng rng;
    ddn_rng_seed(&rng, net->opts.seed);
    ddn_status st = init_conv_bn(&net->stem, &rng);
    for (int i = 0; i < net->n_blocks && st == DDN_OK; i++) {
        const block *b = &net->blocks[i];
        for (int j = 0; j < b->n_conv && st == DDN_OK; j++) st = init_conv_bn(&b->conv[j], &rng);
        if (b->has_down && st == DDN_OK) st = init_conv_bn(&b->down, &rng);
    }
    if (net->fc_w && st == DDN_OK) {
        /* nn.Linear's default: kaiming_uniform(a = sqrt(5)) for the weight and U(+-1/sqrt(in))
         * for the bias, both U(-1/sqrt(in), 1/sqrt(in)) */
        st = ddn_init_uniform_fan_in(net->fc_w, net->feat_ch, &rng);
        if (st == DDN_OK) st = ddn_init_uniform_fan_in(net->fc_b, net->feat_ch, &rng);
    }
    return st;
}

static const arch_spec *find_arch(ddn_resnet_arch arch)
{
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (ARCHS[i].arch == arch) return &ARCHS[i];
    return NULL;
}

/* Checks the options and fills in their defaults; false with an error on a bad one. */
static bool resolve_opts(ddn_ctx *ctx, const ddn_resnet_opts *in, ddn_resnet_opts *o,
                         int64_t *base)
{
    if (!in) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "resnet_new: opts is NULL");
        return false;
    }
    *o = *in;
    if (!find_arch(o->arch)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "resnet_new: arch %d is not one of DDN_RESNET18, "
                          "DDN_RESNET34, DDN_RESNET50", (int)o->arch);
        return false;
    }
    if (o->width == 0) o->width = 1.0;
    if (o->num_classes == 0) o->num_classes = 1000;
    if (o->in_channels == 0) o->in_channels = 3;
    if (!(o->width > 0 && o->width <= 64) || lround(64 * o->width) < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "resnet_new: width %g: expected a multiplier in "
                          "(0, 64] with round(64 * width) >= 1", o->width);
        return false;
    }
    if (o->num_classes < 0 || o->in_channels < 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "resnet_new: num_classes %d, in_channels %d: expected "
                          "positive values (0: the defaults 1000 and 3)", o->num_classes,
                          o->in_channels);
        return false;
    }
    if (o->dtype != DDN_DTYPE_F32 && o->dtype != DDN_DTYPE_F64) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "resnet_new: dtype %s: expected float32 or float64",
                          ddn_dtype_name(o->dtype));
        return false;
    }
    *base = lround(64 * o->width);
    return true;
}

static bool declare_all(ddn_resnet *net, const arch_spec *spec)
{
    ddn_dtype dt = net->opts.dtype;
    int64_t inplanes = net->base;
    if (!declare_conv_bn(net, &net->stem, "conv1.", "bn1.", net->opts.in_channels, net->base, 7,
                         2))
        return false;
    int i = 0;
    for (int s = 0; s < 4; s++) {
        for (int j = 0; j < spec->blocks[s]; j++, i++) {
            block *b = &net->blocks[i];
            b->stage = s + 1;
            b->index = j;
            int stride = s > 0 && j == 0 ? 2 : 1;
            if (!declare_block(net, b, spec->bottleneck, &inplanes, net->base << s, stride))
                return false;
        }
    }
    if (net->opts.features_only) return true;
    int64_t wshape[2] = {net->opts.num_classes, net->feat_ch}, bshape[1] = {net->opts.num_classes};
    net->fc_w = declare(net, "fc.", "weight", dt, 2, wshape, false);
    net->fc_b = declare(net, "fc.", "bias", dt, 1, bshape, false);
    return net->fc_w && net->fc_b;
}

ddn_resnet *ddn_resnet_new(ddn_ctx *ctx, const ddn_resnet_opts *opts)
{
    if (!ctx) return NULL;
    ddn_resnet_opts o;
    int64_t base;
    if (!resolve_opts(ctx, opts, &o, &base)) return NULL;
    const arch_spec *spec = find_arch(o.arch);
    ddn_resnet *net = calloc(1, sizeof *net);
    int n_blocks = spec->blocks[0] + spec->blocks[1] + spec->blocks[2] + spec->blocks[3];
    block *blocks = calloc((size_t)n_blocks, sizeof *blocks);
    if (!net || !blocks) {
        free(net);
        free(blocks);
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "resnet_new: out of memory for the model description");
        return NULL;
    }
    net->ctx = ctx;
    net->opts = o;
    net->base = base;
    net->feat_ch = 8 * base * (spec->bottleneck ? 4 : 1);
    net->n_blocks = n_blocks;
    net->blocks = blocks;
    net->params = ddn_params_new(ctx);
    if (!net->params || !declare_all(net, spec) || ddn_params_finalize(net->params) != DDN_OK ||
        init_all(net) != DDN_OK) {
        ddn_resnet_free(net);
        return NULL;
    }
    return net;
}

void ddn_resnet_free(ddn_resnet *net)
{
    if (!net) return;
    ddn_params_free(net->params);
    free(net->blocks);
    free(net);
}

ddn_params *ddn_resnet_params(ddn_resnet *net) { return net ? net->params : NULL; }

int64_t ddn_resnet_feature_channels(const ddn_resnet *net) { return net ? net->feat_ch : 0; }

int64_t ddn_resnet_feature_side(int64_t input_side)
{
    int64_t s = input_side;
    for (int k = 0; k < 5; k++) s = (s - 1) / 2 + 1;
    return s;
}

/* ---- forward --------------------------------------------------------------------------------- */

/* Memory. Training keeps, per (conv, bn) unit, the conv output (BN's saved input) and one fused
 * bn(-add)-relu output (ddn_batch_norm2d_relu), as PyTorch does with its in-place ReLU and add.
 * A forward that records nothing (no grad, or nothing requiring it) keeps only what is live:
 * a block's output is allocated first (in one of two buffers the blocks alternate between), the
 * block runs above an arena mark (BN and ReLU in place on the conv outputs) and the mark is
 * rewound. */

/* conv (no bias) -> batch norm (-> + residual) (-> relu), the BN and what follows one fused op
 * (ddn_batch_norm2d_into). In training mode the BN normalises with the batch statistics, updates
 * the running ones in place and counts the batch, as nn.BatchNorm2d does. out: NULL, or where
 * the result goes (the no-grad path); in_place (no-grad only) writes over the conv output. */
static ddn_tensor *conv_bn_forward(ddn_ctx *ctx, const conv_bn *cb, ddn_tensor *x, bool training,
                                   bool relu, ddn_tensor *residual, ddn_tensor *out,
                                   bool in_place)
{
    ddn_conv2d_params p = DDN_CONV2D_DEFAULT;
    p.stride[0] = p.stride[1] = cb->stride;
    p.padding[0] = p.padding[1] = cb->pad;
    ddn_tensor *y = ddn_conv2d(ctx, x, cb->w, NULL, p);
    if (!y) return NULL;
    y = ddn_batch_norm2d_into(ctx, y, cb->gamma, cb->beta, cb->mean, cb->var, training,
                              BN_MOMENTUM, BN_EPS, residual, relu, out ? out : in_place ? y : NULL);
    if (!y) return NULL;
    if (training && ddn_tensor_fill(cb->count, ddn_tensor_item(cb->count) + 1.0) != DDN_OK)
        return NULL;
    return y;
}

static bool any_requires_grad(const conv_bn *cb)
{
    return cb->w->requires_grad || cb->gamma->requires_grad || cb->beta->requires_grad;
}

/* Whether running the block on x would record tape nodes (then its intermediates must live). */
static bool block_records(ddn_ctx *ctx, const block *b, const ddn_tensor *x)
{
    if (!ddn_grad_enabled(ctx)) return false;
    bool any = x->requires_grad || (b->has_down && any_requires_grad(&b->down));
    for (int i = 0; i < b->n_conv; i++) any |= any_requires_grad(&b->conv[i]);
    return any;
}

/* The spatial size after a (conv, bn) unit. */
static int64_t conv_out_size(const conv_bn *cb, int64_t in)
{
    return (in + 2 * cb->pad - cb->k) / cb->stride + 1;
}

/* The output shape of block b on an input of shape xs (N, C, H, W). */
static void block_out_shape(const block *b, const int64_t *xs, int64_t *os)
{
    int64_t h = xs[2], w = xs[3];
    for (int i = 0; i < b->n_conv; i++)
        h = conv_out_size(&b->conv[i], h), w = conv_out_size(&b->conv[i], w);
    os[0] = xs[0], os[1] = b->conv[b->n_conv - 1].w->shape[0], os[2] = h, os[3] = w;
}

/* BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + identity); Bottleneck: the same with three
 * convs (1x1, 3x3, 1x1). identity is x, or downsample(x) when the shape changes. Without
 * recording, the output goes to the start of out_buf (a flat step tensor large enough, not x's
 * memory) when given, else to a new tensor, made before the mark that drops the rest. */
static ddn_tensor *block_forward(ddn_ctx *ctx, const block *b, ddn_tensor *x, bool training,
                                 ddn_tensor *out_buf)
{
    bool lean = !block_records(ctx, b, x);
    ddn_tensor *out = NULL;
    ddn_mark mark = {0};
    if (lean) {
        int64_t os[4], stride[4];
        block_out_shape(b, x->shape, os);
        ddn_contiguous_strides(4, os, stride);
        bool fits = out_buf && out_buf->dtype == x->dtype && out_buf->data != x->data &&
                    ddn_tensor_numel(out_buf) >= os[0] * os[1] * os[2] * os[3];
        out = fits ? ddn_view_raw(ctx, out_buf, 4, os, stride, 0)
                   : ddn_tensor_new(ctx, x->dtype, 4, os);
        if (!out) return NULL;
        mark = ddn_ctx_mark(ctx);
    }
    ddn_tensor *y = x;
    for (int i = 0; i < b->n_conv - 1; i++)
        y = conv_bn_forward(ctx, &b->conv[i], y, training, true, NULL, NULL, lean);
    ddn_tensor *identity = b->has_down && y
                               ? conv_bn_forward(ctx, &b->down, x, training, false, NULL, NULL,
                                                 lean)
                               : x;
    y = y && identity ? conv_bn_forward(ctx, &b->conv[b->n_conv - 1], y, training, true,
                                        identity, out, false)
                      : NULL;
    /* Nothing recorded refers to the temporaries (checked, not assumed): drop them. */
    if (y && lean && ddn_tape_len(ctx) == mark.tape_len) ddn_ctx_rewind(ctx, mark);
    return y;
}

/* The input must be (N, in_channels, H, W) in the model's dtype; NULL with an error otherwise. */
static bool check_input(const ddn_resnet *net, const char *op, const ddn_tensor *x,
                        int64_t channels)
{
    char s[96];
    if (x->ndim != 4 || x->shape[1] != channels) {
        ddn_ctx_set_error(net->ctx, DDN_ERR_SHAPE, "%s: x %s: expected (N, %lld, H, W)", op,
                          ddn_shape_str(x, s, sizeof s), (long long)channels);
        return false;
    }
    if (x->dtype != net->opts.dtype) {
        ddn_ctx_set_error(net->ctx, DDN_ERR_DTYPE, "%s: x is %s but the model is %s", op,
                          ddn_dtype_name(x->dtype), ddn_dtype_name(net->opts.dtype));
        return false;
    }
    return true;
}

/* The stem's output shape (conv1 with its stride, then the 3x3 / 2 max pool, padding 1, floor). */
static void stem_out_shape(const ddn_resnet *net, const int64_t *xs, int64_t *os)
{
    const conv_bn *cb = &net->stem;
    os[0] = xs[0], os[1] = cb->w->shape[0];
    for (int d = 2; d < 4; d++) os[d] = (conv_out_size(cb, xs[d]) + 2 * 1 - 3) / 2 + 1;
}

/* conv1, bn1, relu, maxpool. Without recording, the max-pooled result is copied below an arena
 * mark and the full-resolution temporaries are dropped. */
static ddn_tensor *stem_forward(ddn_resnet *net, ddn_tensor *x, bool training, bool lean)
{
    ddn_ctx *ctx = net->ctx;
    const conv_bn *cb = &net->stem;
    ddn_pool2d_params mp = {{3, 3}, {2, 2}, {1, 1}, false, true};
    if (!lean) return ddn_max_pool2d(ctx, conv_bn_forward(ctx, cb, x, training, true, NULL, NULL,
                                                          false), mp);
    int64_t os[4];
    stem_out_shape(net, x->shape, os);
    ddn_tensor *out = ddn_tensor_new(ctx, x->dtype, 4, os);
    if (!out) return NULL;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *y = ddn_max_pool2d(ctx, conv_bn_forward(ctx, cb, x, training, true, NULL, NULL,
                                                        true), mp);
    if (!y) return NULL;
    if (!ddn_tensor_same_shape(y, out) || ddn_tape_len(ctx) != mark.tape_len) return y;
    if (ddn_tensor_copy_(out, y) != DDN_OK) return NULL;
    ddn_ctx_rewind(ctx, mark);
    return out;
}

/* Whether the forward records nothing: then only the live activations need memory. */
static bool records_nothing(const ddn_resnet *net, const ddn_tensor *x)
{
    if (!ddn_grad_enabled(net->ctx)) return true;
    bool any = x->requires_grad || any_requires_grad(&net->stem);
    for (int i = 0; i < net->n_blocks && !any; i++) {
        const block *b = &net->blocks[i];
        any = b->has_down && any_requires_grad(&b->down);
        for (int j = 0; j < b->n_conv; j++) any |= any_requires_grad(&b->conv[j]);
    }
    return !any;
}

ddn_tensor *ddn_resnet_forward(ddn_resnet *net, ddn_tensor *x, bool training)
{
    if (!net || !x) return NULL;
    if (!check_input(net, "resnet_forward", x, net->opts.in_channels)) return NULL;
    ddn_ctx *ctx = net->ctx;
    bool lean = records_nothing(net, x);
    bool stem_lean = !ddn_grad_enabled(ctx) || !(x->requires_grad ||
                                                 any_requires_grad(&net->stem));
    ddn_tensor *y = stem_forward(net, x, training, stem_lean);
    /* Without recording a block's input dies with the block: the blocks alternate between two
     * buffers sized for the largest output (ResNet-50, batch 8, 224: 2 x 25 MB rather than all
     * 16 block outputs, 176 MB). The last block's output stays valid until the step reset. */
    ddn_tensor *buf[2] = {NULL, NULL};
    if (lean && y && net->n_blocks > 1) {
        int64_t s[4], most = 0;
        stem_out_shape(net, x->shape, s);
        for (int i = 0; i < net->n_blocks; i++) {
            block_out_shape(&net->blocks[i], s, s);
            if (s[0] * s[1] * s[2] * s[3] > most) most = s[0] * s[1] * s[2] * s[3];
        }
        buf[0] = ddn_tensor_new(ctx, x->dtype, 1, &most);
        buf[1] = buf[0] ? ddn_tensor_new(ctx, x->dtype, 1, &most) : NULL;
        if (!buf[1]) return NULL;
    }
    for (int i = 0; i < net->n_blocks; i++)
        y = block_forward(ctx, &net->blocks[i], y, training, buf[i % 2]);
    if (net->opts.features_only) return y;
    y = ddn_flatten(ctx, ddn_adaptive_avg_pool2d(ctx, y, 1, 1), 1);
    return ddn_linear(ctx, y, net->fc_w, net->fc_b);
}

ddn_tensor *ddn_resnet_block_forward(ddn_resnet *net, int stage, int index, ddn_tensor *x,
                                     bool training)
{
    if (!net || !x) return NULL;
    for (int i = 0; i < net->n_blocks; i++) {
        const block *b = &net->blocks[i];
        if (b->stage != stage || b->index != index) continue;
        if (!check_input(net, "resnet_block_forward", x, b->conv[0].w->shape[1])) return NULL;
        return block_forward(net->ctx, b, x, training, NULL);
    }
    ddn_ctx_set_error(net->ctx, DDN_ERR_ARG, "resnet_block_forward: the model has no block "
                      "layer%d.%d", stage, index);
    return NULL;
}
