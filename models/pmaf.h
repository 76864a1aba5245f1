/* ddn — PMaF heads (PMAF-MATH.md §5): a declarative layer between a backbone and a classifier.
 *
 *   IED head:    features -> linear to m*m -> reshape (m, m) -> |.| -> [A + A^T] -> IED -> y (m)
 *                -> linear classifier
 *   LESS head:   features -> linear to m*n + m -> A (m, n), b (m) -> LESS -> u (n) -> classifier
 *   linear head: features -> global average pool -> linear classifier (the baseline)
 *
 * Features are a backbone's (B, C, h, w) maps (flattened to C*h*w for the declarative heads, as in
 * the paper's ResNet-50 without its final pooling) or already-flat (B, F) vectors. Parameters
 * live in one named block: "proj.weight", "proj.bias" (declarative heads), "fc.weight",
 * "fc.bias". Tests: tests/test_pmaf.c.
 */
#ifndef DDN_PMAF_H
#define DDN_PMAF_H

#include "ied.h"
#include "less.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_pmaf_kind {
    DDN_PMAF_IED = 0,
    DDN_PMAF_LESS = 1,
    DDN_PMAF_LINEAR = 2,
} ddn_pmaf_kind;

typedef struct ddn_pmaf_opts {
    ddn_pmaf_kind kind;
    int64_t in_features;  /* C*h*w of the features given to forward (C for the linear head) */
    int64_t m, n;         /* IED: A is m x m (n unused); LESS: A is m x n, b has m entries */
    int64_t num_classes;
    bool symmetrize;      /* IED: A <- |A| + |A|^T, which the DDN backward modes require */
    ddn_ied_opts ied;     /* IED solver options; method 0: DDN_IED_OPTS_DEFAULT */
    ddn_ied_backward ied_backward;
    ddn_less_opts less;   /* LESS solver options; method 0: DDN_LESS_OPTS_DEFAULT */
    ddn_less_backward less_backward;
    ddn_dtype dtype;      /* parameters and activations; 0: float32 */
    uint64_t seed;        /* initialisation (nn.Linear's uniform fan-in rule) */
} ddn_pmaf_opts;

typedef struct ddn_pmaf_head ddn_pmaf_head;

ddn_pmaf_head *ddn_pmaf_head_new(ddn_ctx *ctx, const ddn_pmaf_opts *opts);
void ddn_pmaf_head_free(ddn_pmaf_head *h); /* NULL is a no-op */
ddn_params *ddn_pmaf_head_params(ddn_pmaf_head *h);

/* features (B, C, h, w) or (B, F) -> logits (B, num_classes). vector (optional out): the PMaF
 * vector fed to the classifier (IED: y (B, m); LESS: u (B, n); linear: the pooled features).
 * info (optional) gets the declarative layer's per-item diagnostics. */
ddn_tensor *ddn_pmaf_head_forward(ddn_pmaf_head *h, ddn_tensor *features, ddn_tensor **vector,
                                  ddn_decl_info *info);

#ifdef __cplusplus
}
#endif
#endif
