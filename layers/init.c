/* ddn — parameter initialisation as torchvision does it (torch.nn.init), from an explicit RNG.
 *
 * Fans follow torch.nn.init._calculate_fan_in_and_fan_out: for a weight of shape (out, in, k...)
 * the receptive field is prod(k...), fan_in = in * receptive field, fan_out = out * receptive
 * field; a linear weight (out, in) has a receptive field of 1. The random streams are ddn's own
 * (xoshiro), so values differ from torch's; the distributions are the same, which
 * tests/test_params.c checks statistically against torch's fan and bound computations.
 */
#include <inttypes.h>
#include <math.h>

#include "ddn_impl.h"
#include "params.h"

static bool init_target_ok(const char *op, const ddn_tensor *t)
{
    if (!t) return false;
    if (!ddn_dtype_is_float(t->dtype)) {
        ddn_ctx_set_error(t->ctx, DDN_ERR_DTYPE, "%s: the tensor is %s; only float32 and float64 "
                          "tensors can be initialised", op, ddn_dtype_name(t->dtype));
        return false;
    }
    if (!t->data) {
        ddn_ctx_set_error(t->ctx, DDN_ERR_STATE, "%s: the tensor has no memory yet (a declared "
                          "parameter gets it from ddn_params_finalize)", op);
        return false;
    }
    return true;
}

ddn_status ddn_init_kaiming_normal_fan_out(ddn_tensor *w, ddn_rng *rng)
{
    const char *op = "init_kaiming_normal_fan_out";
    if (!w) return DDN_ERR_ARG;
    if (!init_target_ok(op, w)) return ddn_ctx_status(w->ctx);
    if (w->ndim < 2) {
        char s[96];
        return ddn_ctx_set_error(w->ctx, DDN_ERR_SHAPE, "%s: weight %s has fewer than 2 dims, so "
                                 "fan_out = shape[0] * prod(shape[2:]) is undefined (as in torch)",
                                 op, ddn_shape_str(w, s, sizeof s));
    }
    if (ddn_tensor_numel(w) == 0) return DDN_OK; /* torch: initialising zero elements is a no-op */
    int64_t fan_out = w->shape[0];
    for (int d = 2; d < w->ndim; d++) fan_out *= w->shape[d];
    /* gain = calculate_gain('relu') = sqrt(2); std = gain / sqrt(fan_out) */
    return ddn_tensor_fill_normal(w, rng, 0.0, sqrt(2.0 / (double)fan_out));
}

ddn_status ddn_init_uniform_fan_in(ddn_tensor *t, int64_t fan_in, ddn_rng *rng)
{
    const char *op = "init_uniform_fan_in";
    if (!t) return DDN_ERR_ARG;
    if (!init_target_ok(op, t)) return ddn_ctx_status(t->ctx);
    if (fan_in <= 0)
        return ddn_ctx_set_error(t->ctx, DDN_ERR_ARG, "%s: fan_in is %" PRId64 ", expected > 0 "
                                 "(in_features for nn.Linear, in_channels / groups * kh * kw for "
                                 "nn.Conv2d)", op, fan_in);
    double bound = 1.0 / sqrt((double)fan_in);
    return ddn_tensor_fill_uniform(t, rng, -bound, bound);
}
