/* ddn — PMaF heads (see pmaf.h): the declarative layer built from a backbone's features, then a
 * linear classifier. Everything is ordinary ddn ops around one declarative node, so gradients
 * reach the projection, the classifier and the backbone through the tape. */
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"
#include "nn.h"
#include "ops.h"
#include "pmaf.h"

struct ddn_pmaf_head {
    ddn_ctx *ctx;
    ddn_pmaf_opts o;
    ddn_params *params;
    ddn_tensor *proj_w, *proj_b; /* (P, in_features), (P); NULL for the linear head */
    ddn_tensor *fc_w, *fc_b;     /* (classes, vector size), (classes) */
};

/* Entries of the PMaF vector the classifier sees, and of the projection's output. */
static int64_t vector_size(const ddn_pmaf_opts *o)
{
    return o->kind == DDN_PMAF_IED ? o->m : o->kind == DDN_PMAF_LESS ? o->n : o->in_features;
}

static int64_t proj_size(const ddn_pmaf_opts *o)
{
    return o->kind == DDN_PMAF_IED ? o->m * o->m : o->m * o->n + o->m;
}

static bool check_opts(ddn_ctx *ctx, const ddn_pmaf_opts *o)
{
    const char *why = NULL;
    if (o->kind != DDN_PMAF_IED && o->kind != DDN_PMAF_LESS && o->kind != DDN_PMAF_LINEAR)
        why = "kind must be DDN_PMAF_IED, DDN_PMAF_LESS or DDN_PMAF_LINEAR";
    else if (o->in_features < 1 || o->num_classes < 1)
        why = "in_features and num_classes must be at least 1";
    else if (o->kind == DDN_PMAF_IED && o->m < 2)
        why = "the IED head needs m >= 2";
    else if (o->kind == DDN_PMAF_LESS && (o->m < 1 || o->n < 2))
        why = "the LESS head needs m >= 1 and n >= 2";
    else if (o->dtype != DDN_DTYPE_F32 && o->dtype != DDN_DTYPE_F64)
        why = "dtype must be float32 or float64";
    if (why) ddn_ctx_set_error(ctx, DDN_ERR_ARG, "pmaf_head_new: %s", why);
    return why == NULL;
}

ddn_pmaf_head *ddn_pmaf_head_new(ddn_ctx *ctx, const ddn_pmaf_opts *opts)
{
    if (!opts) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "pmaf_head_new: opts is NULL");
        return NULL;
    }
    ddn_pmaf_opts o = *opts;
    if (o.ied.method == 0) o.ied = DDN_IED_OPTS_DEFAULT;
    if (o.less.method == 0) o.less = DDN_LESS_OPTS_DEFAULT;
    if (!check_opts(ctx, &o)) return NULL;
    ddn_pmaf_head *h = calloc(1, sizeof *h);
    if (!h) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "pmaf_head_new: out of memory");
        return NULL;
    }
    h->ctx = ctx;
    h->o = o;
    h->params = ddn_params_new(ctx);
    if (!h->params) return ddn_pmaf_head_free(h), NULL;
    int64_t v = vector_size(&o), p = proj_size(&o);
    if (o.kind != DDN_PMAF_LINEAR) {
        h->proj_w = ddn_params_add(h->params, "proj.weight", o.dtype, DDN_SHAPE(p, o.in_features),
                                   false);
        h->proj_b = ddn_params_add(h->params, "proj.bias", o.dtype, DDN_SHAPE(p), false);
    }
    h->fc_w = ddn_params_add(h->params, "fc.weight", o.dtype, DDN_SHAPE(o.num_classes, v), false);
    h->fc_b = ddn_params_add(h->params, "fc.bias", o.dtype, DDN_SHAPE(o.num_classes), false);
    if (!h->fc_w || !h->fc_b || (o.kind != DDN_PMAF_LINEAR && (!h->proj_w || !h->proj_b)) ||
        ddn_params_finalize(h->params) != DDN_OK)
        return ddn_pmaf_head_free(h), NULL;
    ddn_rng rng;
    ddn_rng_seed(&rng, o.seed);
    ddn_status st = DDN_OK;
    if (h->proj_w) { /* nn.Linear's default init for both layers */
        st = ddn_init_uniform_fan_in(h->proj_w, o.in_features, &rng);
        if (st == DDN_OK) st = ddn_init_uniform_fan_in(h->proj_b, o.in_features, &rng);
    }
    if (st == DDN_OK) st = ddn_init_uniform_fan_in(h->fc_w, v, &rng);
    if (st == DDN_OK) st = ddn_init_uniform_fan_in(h->fc_b, v, &rng);
    if (st != DDN_OK) return ddn_pmaf_head_free(h), NULL;
    return h;
}

void ddn_pmaf_head_free(ddn_pmaf_head *h)
{
    if (!h) return;
    ddn_params_free(h->params);
    free(h);
}

ddn_params *ddn_pmaf_head_params(ddn_pmaf_head *h) { return h->params; }

/* (B, C, h, w) or (B, F) -> (B, in_features), checking the size. */
static ddn_tensor *flat_features(ddn_pmaf_head *h, ddn_tensor *f)
{
    ddn_ctx *ctx = h->ctx;
    if (f->ndim != 2 && f->ndim != 4) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "pmaf_head: features %s must be (B, C, h, w) or "
                          "(B, F)", ddn_shape_str(f, s, sizeof s));
        return NULL;
    }
    if (h->o.kind == DDN_PMAF_LINEAR && f->ndim == 4) f = ddn_adaptive_avg_pool2d(ctx, f, 1, 1);
    ddn_tensor *x = ddn_flatten(ctx, f, 1);
    if (x && x->shape[1] != h->o.in_features) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "pmaf_head: features %s give %lld values per "
                          "item, the head was built for in_features = %lld",
                          ddn_shape_str(f, s, sizeof s), (long long)x->shape[1],
                          (long long)h->o.in_features);
        return NULL;
    }
    return x;
}

ddn_tensor *ddn_pmaf_head_forward(ddn_pmaf_head *h, ddn_tensor *features, ddn_tensor **vector,
                                  ddn_decl_info *info)
{
    if (!h || !features) return NULL;
    ddn_ctx *ctx = h->ctx;
    const ddn_pmaf_opts *o = &h->o;
    ddn_tensor *x = flat_features(h, features);
    if (!x) return NULL;
    int64_t B = x->shape[0];
    ddn_tensor *v = x;
    if (o->kind == DDN_PMAF_IED) {
        ddn_tensor *A = ddn_reshape(ctx, ddn_linear(ctx, x, h->proj_w, h->proj_b),
                                    DDN_SHAPE(B, o->m, o->m));
        A = ddn_abs(ctx, A); /* non-negative: the Perron eigenvalue dominates (PMAF-MATH §2) */
        if (o->symmetrize) A = ddn_add(ctx, A, ddn_transpose(ctx, A, 1, 2));
        v = ddn_ied(ctx, A, &o->ied, o->ied_backward, NULL, info);
    } else if (o->kind == DDN_PMAF_LESS) {
        ddn_tensor *p = ddn_linear(ctx, x, h->proj_w, h->proj_b); /* (B, m*n + m) */
        int64_t mn = o->m * o->n;
        ddn_tensor *A = ddn_reshape(ctx, ddn_slice(ctx, p, 1, 0, mn, 1), DDN_SHAPE(B, o->m, o->n));
        ddn_tensor *b = ddn_contiguous(ctx, ddn_slice(ctx, p, 1, mn, mn + o->m, 1));
        v = ddn_less(ctx, A, b, &o->less, o->less_backward, info);
    }
    if (vector) *vector = v;
    return ddn_linear(ctx, v, h->fc_w, h->fc_b);
}
