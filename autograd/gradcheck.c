/* ddn — gradient check: the tape's vector-Jacobian product against float64 central differences.
 *
 * The output y = fn(inputs) is reduced to the scalar L = sum(r * y) with a fixed random projection
 * r, so one backward pass exercises the whole vector-Jacobian product. Each checked input entry is
 * perturbed in place by +-eps (and +-2 eps for the 4-point stencil) and L re-evaluated with the
 * tape off; the step arena is rewound after every evaluation.
 */
#include <math.h>
#include <stdlib.h>

#include "ddn_impl.h"

static double projected(ddn_ctx *ctx, const ddn_tensor *y, const double *r, ddn_status *st)
{
    int64_t n = ddn_tensor_numel(y);
    double *yv = ddn_ctx_scratch(ctx, (size_t)n * sizeof *yv);
    if (!yv) return *st = ddn_ctx_status(ctx), NAN;
    *st = ddn_tensor_to_host(y, DDN_DTYPE_F64, yv);
    double L = 0;
    for (int64_t i = 0; i < n; i++) L += r[i] * yv[i];
    return L;
}

/* L at the current input values, tape off, arena rewound afterwards. */
static double eval_L(ddn_ctx *ctx, ddn_gradcheck_fn fn, void *user, ddn_tensor *const *inputs,
                     const double *r, int64_t ny, ddn_status *st)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    bool prev = ddn_set_grad_enabled(ctx, false);
    ddn_tensor *y = fn(ctx, inputs, user);
    ddn_set_grad_enabled(ctx, prev);
    double L = NAN;
    if (!y) *st = ddn_ctx_status(ctx) != DDN_OK ? ddn_ctx_status(ctx) : DDN_ERR_STATE;
    else if (ddn_tensor_numel(y) != ny)
        *st = ddn_ctx_set_error(ctx, DDN_ERR_STATE, "gradcheck: fn changed its output size");
    else L = projected(ctx, y, r, st);
    ddn_ctx_rewind(ctx, mark);
    return L;
}

ddn_status ddn_gradcheck(ddn_ctx *ctx, ddn_gradcheck_fn fn, void *user, int n_inputs,
                         ddn_tensor *const *inputs, const ddn_gradcheck_opts *opts,
                         ddn_gradcheck_result *res)
{
    ddn_gradcheck_opts o = opts ? *opts : (ddn_gradcheck_opts){0};
    if (o.eps <= 0) o.eps = 1e-6;
    if (o.atol <= 0) o.atol = 1e-6;
    if (o.rtol <= 0) o.rtol = 1e-4;
    if (o.max_entries <= 0) o.max_entries = 64;
    if (o.seed == 0) o.seed = 1;
    *res = (ddn_gradcheck_result){.worst_input = -1, .worst_index = -1, .passed = true};

    for (int i = 0; i < n_inputs; i++) {
        const ddn_tensor *x = inputs[i];
        if (!x) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "gradcheck: input %d is NULL", i);
        if (x->dtype != DDN_DTYPE_F64 || x->device != DDN_DEVICE_CPU ||
            !ddn_tensor_is_contiguous(x) || x->node)
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "gradcheck: input %d must be a contiguous "
                                     "float64 CPU leaf (got %s)", i, ddn_dtype_name(x->dtype));
        if (x->requires_grad && x->grad) ddn_tensor_zero_grad(inputs[i]);
    }

    /* Analytic gradient: one forward with the tape on, then backward seeded with r. */
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *y = fn(ctx, inputs, user);
    if (!y) {
        ddn_status st = ddn_ctx_status(ctx);
        return st != DDN_OK ? st
                            : ddn_ctx_set_error(ctx, DDN_ERR_STATE, "gradcheck: fn returned NULL");
    }
    int64_t ny = ddn_tensor_numel(y);
    double *r = malloc((size_t)(ny ? ny : 1) * sizeof *r);
    if (!r) return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "gradcheck: out of memory");
    ddn_rng rng;
    ddn_rng_seed(&rng, o.seed);
    for (int64_t i = 0; i < ny; i++) r[i] = ddn_rng_uniform(&rng) * 2.0 - 1.0;
    ddn_tensor *rt = ddn_tensor_new(ctx, DDN_DTYPE_F64, y->ndim, y->shape);
    ddn_status st = rt ? ctx->backend->copy_h2d(ctx, rt->data, r, (size_t)ny * sizeof *r)
                       : ddn_ctx_status(ctx);
    if (st == DDN_OK && y->dtype != DDN_DTYPE_F64) {
        ddn_tensor *rc = ddn_tensor_new(ctx, y->dtype, y->ndim, y->shape);
        st = rc ? ddn_tensor_copy_(rc, rt) : ddn_ctx_status(ctx);
        rt = rc;
    }
    if (st == DDN_OK) st = ddn_backward_with_grad(ctx, y, rt);

    /* Copy analytic gradients out before the arena is reused (step-lifetime grads die there). */
    double **ga = calloc((size_t)n_inputs, sizeof *ga);
    if (!ga) st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "gradcheck: out of memory");
    for (int i = 0; i < n_inputs && st == DDN_OK; i++) {
        ddn_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        int64_t n = ddn_tensor_numel(x);
        ga[i] = calloc((size_t)(n ? n : 1), sizeof **ga);
        if (!ga[i]) st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "gradcheck: out of memory");
        else if (x->grad) st = ddn_tensor_to_host(x->grad, DDN_DTYPE_F64, ga[i]);
    }
    ddn_ctx_rewind(ctx, mark);
    for (int i = 0; i < n_inputs; i++)
        if (!inputs[i]->persistent) inputs[i]->grad = NULL; /* it lived in the rewound arena */

    /* Numeric gradient, entry by entry. */
    double worst_score = -1.0;
    for (int i = 0; i < n_inputs && st == DDN_OK; i++) {
        ddn_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        int64_t n = ddn_tensor_numel(x);
        double *xv = ddn_tensor_ptr(x);
        int64_t count = n <= o.max_entries ? n : o.max_entries;
        for (int64_t c = 0; c < count && st == DDN_OK; c++) {
            int64_t j = n <= o.max_entries ? c : (int64_t)ddn_rng_below(&rng, (uint64_t)n);
            double x0 = xv[j], h = o.eps, num;
            xv[j] = x0 + h;
            double lp = eval_L(ctx, fn, user, inputs, r, ny, &st);
            xv[j] = x0 - h;
            double lm = eval_L(ctx, fn, user, inputs, r, ny, &st);
            if (o.four_point) {
                xv[j] = x0 + 2 * h;
                double lp2 = eval_L(ctx, fn, user, inputs, r, ny, &st);
                xv[j] = x0 - 2 * h;
                double lm2 = eval_L(ctx, fn, user, inputs, r, ny, &st);
                num = (8 * (lp - lm) - (lp2 - lm2)) / (12 * h);
            } else {
                num = (lp - lm) / (2 * h);
            }
            xv[j] = x0;
            double an = ga[i][j], abs_err = fabs(an - num);
            double rel_err = abs_err / fmax(fabs(num), 1e-12);
            /* How far past its tolerance this entry is; the worst entry is the one that decides
             * the verdict. `!(a <= b)` lets NaN take over. */
            double score = abs_err / (o.atol + o.rtol * fabs(num));
            res->checked++;
            if (!(score <= 1.0)) res->passed = false;
            if (!(score <= worst_score)) {
                worst_score = score;
                res->worst_input = i;
                res->worst_index = j;
                res->worst_analytic = an;
                res->worst_numeric = num;
            }
            if (!(abs_err <= res->max_abs_err)) res->max_abs_err = abs_err;
            if (!(rel_err <= res->max_rel_err)) res->max_rel_err = rel_err;
        }
    }
    for (int i = 0; ga && i < n_inputs; i++) free(ga[i]);
    free(ga);
    free(r);
    return st;
}
