/* ddn — optimizers: SGD (momentum, dampening, Nesterov, weight decay), Adam and AdamW (amsgrad),
 * as torch.optim.
 *
 * Every update is one call of the backend's fused kernel (sgd_update, adam_update), so the
 * optimizer runs unchanged on any device. All state lives in one persistent block allocated at
 * construction (optim_impl.h gives the layout); per-parameter step counts decide SGD's first-step
 * buffer initialisation and Adam's bias corrections. When parameters, gradients and state are
 * each one contiguous run of one dtype and every step count agrees, a step is one kernel call over
 * the whole run: the updates are elementwise, so this is the same arithmetic. Tests:
 * tests/test_optim.c, tests/test_adam.c (against torch's numbers).
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"
#include "optim_impl.h"
#include "params_impl.h"

const char *ddn_optim_kind_name(ddn_optim_kind k)
{
    return k == DDN_OPTIM_SGD ? "sgd" : k == DDN_OPTIM_ADAM ? "adam" : "adamw";
}

ddn_adam_opts ddn_adam_defaults(void)
{
    return (ddn_adam_opts){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

ddn_adam_opts ddn_adamw_defaults(void)
{
    ddn_adam_opts o = ddn_adam_defaults();
    o.weight_decay = 1e-2;
    return o;
}

/* ---- argument checks -------------------------------------------------------------------------- */
static bool finite_nonneg(double x) { return x >= 0 && isfinite(x); }

/* torch.optim.SGD's argument rules, plus non-finite values. */
static bool sgd_opts_valid(ddn_ctx *ctx, const char *op, ddn_sgd_opts o)
{
    const char *why = NULL;
    if (!finite_nonneg(o.lr)) why = "lr must be a finite value >= 0";
    else if (!finite_nonneg(o.momentum)) why = "momentum must be finite and >= 0";
    else if (!isfinite(o.dampening)) why = "dampening must be finite";
    else if (!finite_nonneg(o.weight_decay)) why = "weight_decay must be finite and >= 0";
    else if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
        why = "Nesterov momentum requires a momentum > 0 and zero dampening";
    if (why)
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s (lr %g, momentum %g, dampening %g, "
                          "weight_decay %g, nesterov %d)", op, why, o.lr, o.momentum, o.dampening,
                          o.weight_decay, (int)o.nesterov);
    return why == NULL;
}

/* torch.optim.Adam's and AdamW's argument rules, plus non-finite values. */
static bool adam_opts_valid(ddn_ctx *ctx, const char *op, ddn_adam_opts o)
{
    const char *why = NULL;
    if (!finite_nonneg(o.lr)) why = "lr must be a finite value >= 0";
    else if (!finite_nonneg(o.eps)) why = "eps must be a finite value >= 0";
    else if (!(o.beta1 >= 0 && o.beta1 < 1)) why = "beta1 must be in [0, 1)";
    else if (!(o.beta2 >= 0 && o.beta2 < 1)) why = "beta2 must be in [0, 1)";
    else if (!finite_nonneg(o.weight_decay)) why = "weight_decay must be finite and >= 0";
    if (why)
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s (lr %g, betas (%g, %g), eps %g, "
                          "weight_decay %g); ddn_adam_defaults() gives torch's defaults", op, why,
                          o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
    return why == NULL;
}

static bool param_valid(ddn_ctx *ctx, const char *op, int i, ddn_tensor *const *params)
{
    const ddn_tensor *p = params[i];
    const char *why = NULL;
    if (!p) why = "is NULL";
    else if (!p->persistent) why = "is a step tensor; parameters must be persistent";
    else if (!ddn_dtype_is_float(p->dtype)) why = "is not float32 or float64";
    else if (!p->requires_grad) why = "does not require a gradient";
    else if (p->device != ddn_ctx_device(ctx)) why = "lives on another device than the context";
    else if (!p->data) why = "has no memory (finalise its registry first)";
    else if (!ddn_tensor_is_contiguous(p)) why = "is not contiguous";
    if (why) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: params[%d] %s", op, i, why);
        return false;
    }
    for (int j = 0; j < i; j++)
        if (params[j] == p) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: params[%d] and params[%d] are the same "
                              "tensor (it would be updated twice)", op, j, i);
            return false;
        }
    return true;
}

/* ---- construction ----------------------------------------------------------------------------- */
/* Allocates the state block (zeroed) and its views, slot-major as optim_impl.h describes. */
static ddn_status alloc_state(ddn_optim *opt)
{
    ddn_ctx *ctx = opt->ctx;
    size_t per_slot = 0;
    size_t *off = calloc((size_t)(opt->n ? opt->n : 1), sizeof *off);
    if (!off) return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "optim_new: out of memory");
    for (int i = 0; i < opt->n; i++) {
        size_t es = ddn_dtype_size(opt->params[i]->dtype);
        off[i] = (per_slot + es - 1) / es * es;
        per_slot = off[i] + ddn_tensor_nbytes(opt->params[i]);
    }
    per_slot = (per_slot + 7) / 8 * 8; /* every slot starts 8-byte aligned */
    ddn_status st = DDN_OK;
    opt->state_bytes = per_slot * (size_t)opt->n_slots;
    if (opt->n_slots && opt->n) {
        opt->state_block = ctx->backend->alloc(ctx, opt->state_bytes);
        int64_t words = (int64_t)opt->state_bytes / 4;
        ddn_tensor *flat = opt->state_block ? ddn_tensor_wrap_persistent(ctx, DDN_DTYPE_F32,
                                                                         DDN_SHAPE(words),
                                                                         opt->state_block)
                                            : NULL;
        if (!opt->state_block)
            st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "optim_new: cannot allocate %zu bytes of "
                                   "optimizer state on %s", opt->state_bytes, ctx->backend->name);
        else if (!flat) st = ddn_ctx_status(ctx);
        else st = ddn_k(flat)->fill(flat, 0.0); /* zero bits are 0.0 in both float dtypes */
        ddn_tensor_free(flat);
        if (opt->state_block) ddn_ctx_note_persistent(ctx, (ptrdiff_t)opt->state_bytes);
    }
    for (int i = 0; i < opt->n && st == DDN_OK; i++)
        for (int s = 0; s < opt->n_slots && st == DDN_OK; s++) {
            const ddn_tensor *p = opt->params[i];
            void *at = (unsigned char *)opt->state_block + (size_t)s * per_slot + off[i];
            ddn_tensor *v = ddn_tensor_wrap_persistent(ctx, p->dtype, p->ndim, p->shape, at);
            if (!v) st = ddn_ctx_status(ctx);
            opt->state[i * opt->n_slots + s] = v;
        }
    free(off);
    return st;
}

static ddn_optim *optim_new(ddn_ctx *ctx, const char *op, ddn_optim_kind kind, int n,
                            ddn_tensor *const *params, const char **names, ddn_params *reg,
                            int n_slots, const char *const *slot_names)
{
    if (n < 0 || (n > 0 && !params)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %d params with %s array", op, n,
                          params ? "an" : "a NULL");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!param_valid(ctx, op, i, params)) return NULL;
    ddn_optim *opt = calloc(1, sizeof *opt);
    size_t cnt = n ? (size_t)n : 1;
    if (opt) {
        opt->ctx = ctx;
        opt->n = n;
        opt->n_slots = n_slots;
        opt->params = malloc(cnt * sizeof *opt->params);
        opt->steps = calloc(cnt, sizeof *opt->steps);
        opt->state = calloc(cnt * (size_t)(n_slots ? n_slots : 1), sizeof *opt->state);
        if (names) opt->names = malloc(cnt * sizeof *opt->names);
    }
    if (!opt || !opt->params || !opt->steps || !opt->state || (names && !opt->names)) {
        ddn_optim_free(opt);
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: out of memory for %d params", op, n);
        return NULL;
    }
    if (n) memcpy(opt->params, params, (size_t)n * sizeof *params);
    if (names && n) memcpy(opt->names, names, (size_t)n * sizeof *names);
    for (int s = 0; s < n_slots; s++) opt->slot_names[s] = slot_names[s];
    opt->kind = kind;
    opt->registry = reg;
    if (alloc_state(opt) != DDN_OK) {
        ddn_optim_free(opt);
        return NULL;
    }
    return opt;
}

static const char *const sgd_slots[] = {"momentum_buffer"};
static const char *const adam_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};

static ddn_optim *sgd_make(ddn_ctx *ctx, const char *op, int n, ddn_tensor *const *params,
                           const char **names, ddn_params *reg, ddn_sgd_opts o)
{
    if (!sgd_opts_valid(ctx, op, o)) return NULL;
    ddn_optim *opt = optim_new(ctx, op, DDN_OPTIM_SGD, n, params, names, reg,
                               o.momentum != 0 ? 1 : 0, sgd_slots);
    if (opt) {
        opt->sgd = o;
        opt->lr = o.lr;
    }
    return opt;
}

static ddn_optim *adam_make(ddn_ctx *ctx, const char *op, ddn_optim_kind kind, int n,
                            ddn_tensor *const *params, const char **names, ddn_params *reg,
                            ddn_adam_opts o)
{
    if (!adam_opts_valid(ctx, op, o)) return NULL;
    ddn_optim *opt = optim_new(ctx, op, kind, n, params, names, reg, o.amsgrad ? 3 : 2,
                               adam_slots);
    if (opt) {
        opt->adam = o;
        opt->lr = o.lr;
    }
    return opt;
}

ddn_optim *ddn_sgd_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params, ddn_sgd_opts opts)
{
    return ctx ? sgd_make(ctx, "sgd_new", n_params, params, NULL, NULL, opts) : NULL;
}

ddn_optim *ddn_adam_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params, ddn_adam_opts opts)
{
    return ctx ? adam_make(ctx, "adam_new", DDN_OPTIM_ADAM, n_params, params, NULL, NULL, opts)
               : NULL;
}

ddn_optim *ddn_adamw_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params,
                         ddn_adam_opts opts)
{
    return ctx ? adam_make(ctx, "adamw_new", DDN_OPTIM_ADAMW, n_params, params, NULL, NULL, opts)
               : NULL;
}

/* The registry's parameters (not buffers) and their names, in declaration order. */
typedef struct reg_list {
    int n;
    ddn_tensor **t;
    const char **names;
} reg_list;

static bool reg_collect(ddn_params *p, const char *op, reg_list *l)
{
    ddn_ctx *ctx = ddn_params_ctx(p);
    *l = (reg_list){0};
    if (!ddn_params_finalized(p)) {
        ddn_ctx_set_error(ctx, DDN_ERR_STATE, "%s: the registry is not finalised; call "
                          "ddn_params_finalize first", op);
        return false;
    }
    int64_t total = ddn_params_count(p);
    if (total > INT_MAX) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %lld tensors are too many", op, (long long)total);
        return false;
    }
    size_t cnt = total ? (size_t)total : 1;
    l->t = malloc(cnt * sizeof *l->t);
    l->names = malloc(cnt * sizeof *l->names);
    if (!l->t || !l->names) {
        free(l->t);
        free(l->names);
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: out of memory", op);
        return false;
    }
    for (int64_t i = 0; i < total; i++)
        if (!ddn_params_is_buffer(p, i)) {
            l->t[l->n] = ddn_params_at(p, i);
            l->names[l->n++] = ddn_params_name(p, i);
        }
    return true;
}

ddn_optim *ddn_sgd_new_params(ddn_params *p, ddn_sgd_opts opts)
{
    reg_list l;
    if (!p || !reg_collect(p, "sgd_new_params", &l)) return NULL;
    ddn_optim *opt = sgd_make(ddn_params_ctx(p), "sgd_new_params", l.n, l.t, l.names, p, opts);
    free(l.t);
    free(l.names);
    return opt;
}

static ddn_optim *adam_new_params(ddn_params *p, const char *op, ddn_optim_kind kind,
                                  ddn_adam_opts opts)
{
    reg_list l;
    if (!p || !reg_collect(p, op, &l)) return NULL;
    ddn_optim *opt = adam_make(ddn_params_ctx(p), op, kind, l.n, l.t, l.names, p, opts);
    free(l.t);
    free(l.names);
    return opt;
}

ddn_optim *ddn_adam_new_params(ddn_params *p, ddn_adam_opts opts)
{
    return adam_new_params(p, "adam_new_params", DDN_OPTIM_ADAM, opts);
}

ddn_optim *ddn_adamw_new_params(ddn_params *p, ddn_adam_opts opts)
{
    return adam_new_params(p, "adamw_new_params", DDN_OPTIM_ADAMW, opts);
}

/* ---- steps ------------------------------------------------------------------------------------ */
/* The byte address of element 0 of a tensor, and just past its last element. */
static uintptr_t first_byte(const ddn_tensor *t)
{
    return (uintptr_t)t->data + (uintptr_t)t->offset * ddn_dtype_size(t->dtype);
}
static uintptr_t end_byte(const ddn_tensor *t) { return first_byte(t) + ddn_tensor_nbytes(t); }

/* True when every parameter has a gradient, all share a dtype and step count, and parameters
 * and gradients each form one gap-free run (the state does by construction for one dtype). */
static bool can_step_flat(const ddn_optim *opt)
{
    if (opt->n < 2) return false;
    for (int i = 0; i < opt->n; i++) {
        const ddn_tensor *p = opt->params[i], *g = p->grad;
        if (!g || !ddn_tensor_is_contiguous(g) || p->dtype != opt->params[0]->dtype ||
            opt->steps[i] != opt->steps[0])
            return false;
        if (i > 0 && (first_byte(p) != end_byte(opt->params[i - 1]) ||
                      first_byte(g) != end_byte(opt->params[i - 1]->grad)))
            return false;
    }
    return true;
}

/* A step-lifetime 1-D view of n elements starting at t's first element. */
static ddn_tensor *run_view(ddn_ctx *ctx, const ddn_tensor *t, int64_t n)
{
    int64_t one = 1;
    return ddn_view_raw(ctx, t, 1, &n, &one, t->offset);
}

/* Applies the update to p (state views st[0..n_slots), gradient g), whose step count becomes
 * step. */
static ddn_status update(ddn_optim *opt, ddn_tensor *p, ddn_tensor **st, const ddn_tensor *g,
                         int64_t step)
{
    const ddn_kernels *k = ddn_k(p);
    if (opt->kind == DDN_OPTIM_SGD) {
        const ddn_sgd_opts *o = &opt->sgd;
        return k->sgd_update(p, opt->n_slots ? st[0] : NULL, g, opt->lr, o->momentum,
                             o->dampening, o->weight_decay, o->nesterov, step == 1);
    }
    const ddn_adam_opts *o = &opt->adam;
    return k->adam_update(p, st[0], st[1], o->amsgrad ? st[2] : NULL, g, opt->lr, o->beta1,
                          o->beta2, o->eps, o->weight_decay, opt->kind == DDN_OPTIM_ADAMW, step);
}

static ddn_status check_grad(ddn_optim *opt, int i)
{
    const ddn_tensor *p = opt->params[i], *g = p->grad;
    if (ddn_tensor_same_shape(g, p) && g->dtype == p->dtype && ddn_tensor_is_contiguous(g) &&
        g->device == p->device)
        return DDN_OK;
    char a[96], b[96];
    return ddn_ctx_set_error(opt->ctx, DDN_ERR_SHAPE, "optim_step: params[%d] is %s %s but its "
                             "gradient is %s %s%s", i, ddn_dtype_name(p->dtype),
                             ddn_shape_str(p, a, sizeof a), ddn_dtype_name(g->dtype),
                             ddn_shape_str(g, b, sizeof b),
                             ddn_tensor_is_contiguous(g) ? "" : " (strided)");
}

ddn_status ddn_optim_step(ddn_optim *opt)
{
    if (!opt) return DDN_ERR_ARG;
    ddn_ctx *ctx = opt->ctx;
    /* A failed forward or backward leaves partial gradients: do not apply them. */
    if (ddn_ctx_status(ctx) != DDN_OK) return ddn_ctx_status(ctx);
    const ddn_kernels *k = ctx->backend->k;
    if ((opt->kind == DDN_OPTIM_SGD && !k->sgd_update) ||
        (opt->kind != DDN_OPTIM_SGD && !k->adam_update))
        return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "optim_step: the %s backend has no "
                                 "%s kernel", ctx->backend->name, ddn_optim_kind_name(opt->kind));
    for (int i = 0; i < opt->n; i++)
        if (opt->params[i]->grad && check_grad(opt, i) != DDN_OK) return ddn_ctx_status(ctx);

    ddn_status st = DDN_OK;
    if (can_step_flat(opt)) {
        ddn_mark mark = ddn_ctx_mark(ctx);
        int64_t total = 0;
        for (int i = 0; i < opt->n; i++) total += ddn_tensor_numel(opt->params[i]);
        ddn_tensor *p = run_view(ctx, opt->params[0], total);
        ddn_tensor *g = run_view(ctx, opt->params[0]->grad, total);
        ddn_tensor *sv[DDN_OPTIM_MAX_SLOTS] = {NULL};
        bool ok = p && g;
        for (int s = 0; s < opt->n_slots && ok; s++)
            ok = (sv[s] = run_view(ctx, opt->state[s], total)) != NULL;
        st = ok ? update(opt, p, sv, g, opt->steps[0] + 1) : ddn_ctx_status(ctx);
        ddn_ctx_rewind(ctx, mark);
        if (st == DDN_OK)
            for (int i = 0; i < opt->n; i++) opt->steps[i]++;
        return st;
    }
    for (int i = 0; i < opt->n && st == DDN_OK; i++) {
        ddn_tensor *p = opt->params[i];
        if (!p->grad) continue; /* no gradient yet: skipped, as in PyTorch */
        st = update(opt, p, opt->state + (size_t)i * (size_t)opt->n_slots, p->grad,
                    opt->steps[i] + 1);
        if (st == DDN_OK) opt->steps[i]++;
    }
    return st;
}

void ddn_optim_zero_grad(ddn_optim *opt)
{
    if (!opt) return;
    if (opt->registry) {
        ddn_params_zero_grad(opt->registry);
        return;
    }
    for (int i = 0; i < opt->n; i++) ddn_tensor_zero_grad(opt->params[i]);
}

void ddn_optim_set_lr(ddn_optim *opt, double lr)
{
    if (!opt) return;
    if (!finite_nonneg(lr)) {
        ddn_ctx_set_error(opt->ctx, DDN_ERR_ARG, "optim_set_lr: lr must be a finite value >= 0, "
                          "got %g (lr unchanged)", lr);
        return;
    }
    opt->lr = lr;
}

double ddn_optim_lr(const ddn_optim *opt) { return opt ? opt->lr : 0.0; }

int64_t ddn_optim_param_steps(const ddn_optim *opt, int i)
{
    return opt && i >= 0 && i < opt->n ? opt->steps[i] : -1;
}

void ddn_optim_free(ddn_optim *opt)
{
    if (!opt) return;
    if (opt->state)
        for (int i = 0; i < opt->n * opt->n_slots; i++) ddn_tensor_free(opt->state[i]);
    if (opt->state_block) {
        opt->ctx->backend->free(opt->ctx, opt->state_block);
        ddn_ctx_note_persistent(opt->ctx, -(ptrdiff_t)opt->state_bytes);
    }
    free(opt->state);
    free(opt->steps);
    free(opt->names);
    free(opt->params);
    free(opt);
}
