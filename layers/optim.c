/* ddn — optimizers: SGD with momentum, dampening, Nesterov and weight decay, as torch.optim.SGD.
 *
 * Every update is made of the backend's copy/fill/axpy kernels, so the optimizer runs unchanged on
 * any device. The momentum buffers are persistent tensors created on a parameter's first step
 * (initialised to its gradient, as PyTorch does); the few temporaries a step needs (the
 * weight-decayed or Nesterov gradient, never written into p->grad) come from the step arena and
 * are rewound before the step returns. Tests: tests/test_optim.c (against torch's numbers).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"
#include "optim.h"

struct ddn_optim {
    ddn_ctx *ctx;
    int n;
    ddn_tensor **params;
    ddn_tensor **momentum_buf; /* (n), NULL until a parameter's first step with momentum */
    ddn_sgd_opts o;
};

/* torch.optim.SGD's argument rules, plus non-finite values. */
static bool sgd_opts_valid(ddn_ctx *ctx, ddn_sgd_opts o)
{
    const char *why = NULL;
    if (!(o.lr >= 0) || !isfinite(o.lr)) why = "lr must be a finite value >= 0";
    else if (!(o.momentum >= 0) || !isfinite(o.momentum)) why = "momentum must be finite and >= 0";
    else if (!isfinite(o.dampening)) why = "dampening must be finite";
    else if (!(o.weight_decay >= 0) || !isfinite(o.weight_decay))
        why = "weight_decay must be finite and >= 0";
    else if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
        why = "Nesterov momentum requires a momentum > 0 and zero dampening";
    if (why)
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "sgd_new: %s (lr %g, momentum %g, dampening %g, "
                          "weight_decay %g, nesterov %d)", why, o.lr, o.momentum, o.dampening,
                          o.weight_decay, (int)o.nesterov);
    return why == NULL;
}

static bool param_valid(ddn_ctx *ctx, int i, ddn_tensor *const *params)
{
    const ddn_tensor *p = params[i];
    const char *why = NULL;
    if (!p) why = "is NULL";
    else if (!p->persistent) why = "is a step tensor; parameters must be persistent";
    else if (!ddn_dtype_is_float(p->dtype)) why = "is not float32 or float64";
    else if (!p->requires_grad) why = "does not require a gradient";
    else if (p->device != ddn_ctx_device(ctx)) why = "lives on another device than the context";
    if (why) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "sgd_new: params[%d] %s", i, why);
        return false;
    }
    for (int j = 0; j < i; j++)
        if (params[j] == p) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "sgd_new: params[%d] and params[%d] are the same "
                              "tensor (it would be updated twice)", j, i);
            return false;
        }
    return true;
}

ddn_optim *ddn_sgd_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params, ddn_sgd_opts opts)
{
    if (n_params < 0 || (n_params > 0 && !params)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "sgd_new: %d params with %s array", n_params,
                          params ? "an" : "a NULL");
        return NULL;
    }
    if (!sgd_opts_valid(ctx, opts)) return NULL;
    for (int i = 0; i < n_params; i++)
        if (!param_valid(ctx, i, params)) return NULL;
    ddn_optim *opt = calloc(1, sizeof *opt);
    size_t n = n_params ? (size_t)n_params : 1;
    if (opt) {
        opt->params = malloc(n * sizeof *opt->params);
        opt->momentum_buf = calloc(n, sizeof *opt->momentum_buf);
    }
    if (!opt || !opt->params || !opt->momentum_buf) {
        ddn_optim_free(opt);
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "sgd_new: out of memory for %d params", n_params);
        return NULL;
    }
    if (n_params) memcpy(opt->params, params, (size_t)n_params * sizeof *params);
    opt->ctx = ctx;
    opt->n = n_params;
    opt->o = opts;
    return opt;
}

/* A step temporary holding g (so p->grad is never modified). */
static ddn_tensor *clone_step(ddn_ctx *ctx, const ddn_tensor *g)
{
    ddn_tensor *t = ddn_tensor_new_like(ctx, g);
    if (t && ddn_k(t)->copy(t, g) != DDN_OK) return NULL;
    return t;
}

/* One parameter: the update of torch.optim.SGD's _single_tensor_sgd. */
static ddn_status sgd_update(ddn_optim *opt, int i)
{
    ddn_ctx *ctx = opt->ctx;
    ddn_tensor *p = opt->params[i];
    const ddn_tensor *g = p->grad;
    const ddn_kernels *k = ddn_k(p);
    const ddn_sgd_opts *o = &opt->o;
    if (!ddn_tensor_same_shape(g, p) || g->dtype != p->dtype) {
        char a[96], b[96];
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "optim_step: params[%d] is %s %s but its "
                                 "gradient is %s %s", i, ddn_dtype_name(p->dtype),
                                 ddn_shape_str(p, a, sizeof a), ddn_dtype_name(g->dtype),
                                 ddn_shape_str(g, b, sizeof b));
    }
    ddn_status st = DDN_OK;
    const ddn_tensor *d = g; /* the direction; a temporary once it differs from the gradient */
    if (o->weight_decay != 0) {
        ddn_tensor *t = clone_step(ctx, g); /* d = g + wd * p */
        if (!t) return ddn_ctx_status(ctx);
        if ((st = k->axpy(t, p, o->weight_decay)) != DDN_OK) return st;
        d = t;
    }
    if (o->momentum != 0) {
        ddn_tensor *buf = opt->momentum_buf[i];
        if (!buf) { /* first step: buf = d (a copy, as torch's clone) */
            buf = ddn_tensor_new_persistent(ctx, p->dtype, p->ndim, p->shape);
            if (!buf) return ddn_ctx_status(ctx);
            opt->momentum_buf[i] = buf;
            if ((st = k->copy(buf, d)) != DDN_OK) return st;
        } else { /* buf = momentum * buf + (1 - dampening) * d */
            if ((st = k->axpy(buf, buf, o->momentum - 1)) != DDN_OK) return st;
            if ((st = k->axpy(buf, d, 1 - o->dampening)) != DDN_OK) return st;
        }
        if (o->nesterov) { /* d = d + momentum * buf */
            ddn_tensor *t = d == g ? clone_step(ctx, g) : (ddn_tensor *)d;
            if (!t) return ddn_ctx_status(ctx);
            if ((st = k->axpy(t, buf, o->momentum)) != DDN_OK) return st;
            d = t;
        } else {
            d = buf;
        }
    }
    return k->axpy(p, d, -o->lr); /* p = p - lr * d */
}

ddn_status ddn_optim_step(ddn_optim *opt)
{
    if (!opt) return DDN_ERR_ARG;
    ddn_ctx *ctx = opt->ctx;
    /* A failed forward or backward leaves partial gradients: do not apply them. */
    if (ddn_ctx_status(ctx) != DDN_OK) return ddn_ctx_status(ctx);
    ddn_status st = DDN_OK;
    for (int i = 0; i < opt->n && st == DDN_OK; i++) {
        if (!opt->params[i]->grad) continue; /* no gradient yet: skipped, as in PyTorch */
        ddn_mark mark = ddn_ctx_mark(ctx);
        st = sgd_update(opt, i);
        ddn_ctx_rewind(ctx, mark);
    }
    return st;
}

void ddn_optim_zero_grad(ddn_optim *opt)
{
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) ddn_tensor_zero_grad(opt->params[i]);
}

void ddn_optim_set_lr(ddn_optim *opt, double lr)
{
    if (!opt) return;
    if (!(lr >= 0) || !isfinite(lr)) {
        ddn_ctx_set_error(opt->ctx, DDN_ERR_ARG, "optim_set_lr: lr must be a finite value >= 0, "
                          "got %g (lr unchanged)", lr);
        return;
    }
    opt->o.lr = lr;
}

double ddn_optim_lr(const ddn_optim *opt) { return opt ? opt->o.lr : 0.0; }

void ddn_optim_free(ddn_optim *opt)
{
    if (!opt) return;
    if (opt->momentum_buf)
        for (int i = 0; i < opt->n; i++) ddn_tensor_free(opt->momentum_buf[i]);
    free(opt->momentum_buf);
    free(opt->params);
    free(opt);
}
