/* ddn — gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (2-norm).
 *
 * The total is the 2-norm of the per-tensor gradient norms (torch's order: each tensor's norm,
 * then the norm of those), each tensor's sum of squares coming from the backend's deterministic
 * sum_squares kernel; gradients are then scaled in place by min(1, max_norm / (total + 1e-6)).
 * Unlike torch's default, a non-finite total is an error and scales nothing (see optim.h).
 * Tests: tests/test_lr_schedule.c (against torch's numbers).
 */
#include <math.h>

#include "ddn_impl.h"
#include "optim.h"
#include "params_impl.h"

static double clip(ddn_ctx *ctx, const char *op, int n, ddn_tensor *const *t, double max_norm)
{
    if (ddn_ctx_status(ctx) != DDN_OK) return NAN; /* partial gradients of a failed step */
    if (!(max_norm >= 0) || !isfinite(max_norm)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: max_norm must be finite and >= 0, got %g", op,
                          max_norm);
        return NAN;
    }
    if (n < 0 || (n > 0 && !t)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %d tensors with %s array", op, n,
                          t ? "an" : "a NULL");
        return NAN;
    }
    const ddn_kernels *k = ctx->backend->k;
    if (!k->sum_squares) {
        ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "%s: the %s backend has no sum_squares "
                          "kernel", op, ctx->backend->name);
        return NAN;
    }
    double total_sq = 0;
    for (int i = 0; i < n; i++) {
        const ddn_tensor *g = t[i] ? t[i]->grad : NULL;
        if (!t[i]) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: tensors[%d] is NULL", op, i);
            return NAN;
        }
        if (!g) continue; /* torch: only tensors with a gradient count */
        if (!ddn_dtype_is_float(g->dtype) || !ddn_tensor_is_contiguous(g) ||
            g->device != ddn_ctx_device(ctx)) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: the gradient of tensors[%d] is %s%s%s", op,
                              i, ddn_dtype_name(g->dtype),
                              ddn_tensor_is_contiguous(g) ? "" : ", strided",
                              g->device != ddn_ctx_device(ctx) ? ", on another device" : "");
            return NAN;
        }
        double s = 0;
        if (k->sum_squares(g, &s) != DDN_OK) return NAN;
        double norm = sqrt(s);
        total_sq += norm * norm;
    }
    double total = sqrt(total_sq);
    if (!isfinite(total)) {
        ddn_ctx_set_error(ctx, DDN_ERR_NUMERIC, "%s: the total gradient norm is %g; the "
                          "gradients were left unscaled (a NaN or Inf came out of backward)", op,
                          total);
        return total;
    }
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1.0) return total; /* torch multiplies by the clamped 1.0: no change */
    for (int i = 0; i < n; i++) {
        ddn_tensor *g = t[i]->grad;
        if (g && k->unary(DDN_UNARY_MUL_SCALAR, g, g, coef, 0) != DDN_OK) return NAN;
    }
    return total;
}

double ddn_clip_grad_norm(ddn_ctx *ctx, int n, ddn_tensor *const *tensors, double max_norm)
{
    return ctx ? clip(ctx, "clip_grad_norm", n, tensors, max_norm) : NAN;
}

double ddn_params_clip_grad_norm(ddn_params *p, double max_norm)
{
    ddn_ctx *ctx = ddn_params_ctx(p);
    if (!ctx) return NAN;
    int64_t total = ddn_params_count(p);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor **t = ddn_ctx_scratch(ctx, (size_t)(total ? total : 1) * sizeof *t);
    if (!t) return NAN;
    int n = 0;
    for (int64_t i = 0; i < total; i++)
        if (!ddn_params_is_buffer(p, i)) t[n++] = ddn_params_at(p, i);
    double norm = clip(ctx, "params_clip_grad_norm", n, t, max_norm);
    ddn_ctx_rewind(ctx, mark);
    return norm;
}
