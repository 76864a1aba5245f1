/* pmaf_step.h — the PMaF training step that bench/bench_pmaf.c (CPU, against bench/pmaf_torch.py)
 * and `ddn bench --table resnet-ied` (tools/cmd_bench_resnet.c, CPU or CUDA) both time, written
 * once (header-only: the two are separate programs).
 *
 * The model is what `ddn train` builds by default: full-width ResNet-50 in features mode (no
 * average pool) + the IED head (linear to 16 x 16, |A| + |A|^T, power iteration with
 * DDN_IED_OPTS_DEFAULT, DDN-E backward, linear classifier to 10 classes), cross-entropy, backward,
 * SGD (lr 0.05, momentum 0.9), float32, random init (seeds 0 and 1), on a fixed batch: x ~ N(0, 1)
 * from the context's RNG, labels (i * 7) % 10. Everything lives in the given context, so the same
 * code runs on any device; inputs are persistent (they survive ddn_ctx_reset_step).
 */
#ifndef DDN_BENCH_PMAF_STEP_H
#define DDN_BENCH_PMAF_STEP_H

#include <stdlib.h>

#include "ddn.h"

#define PMAF_STEP_HEAD_M 16
#define PMAF_STEP_CLASSES 10

typedef struct pmaf_step {
    ddn_ctx *ctx;
    ddn_resnet *net;
    ddn_pmaf_head *head;
    ddn_optim *backbone_sgd, *head_sgd;
    ddn_tensor *x, *y; /* (batch, 3, size, size) float32, (batch) int64 */
    int64_t n_params;
} pmaf_step;

static inline void pmaf_step_free(pmaf_step *b)
{
    ddn_optim_free(b->head_sgd);
    ddn_optim_free(b->backbone_sgd);
    ddn_tensor_free(b->x);
    ddn_tensor_free(b->y);
    ddn_pmaf_head_free(b->head);
    ddn_resnet_free(b->net);
    *b = (pmaf_step){.ctx = b->ctx};
}

/* Builds the model, optimizers and batch in ctx (size >= 32). On failure the context holds the
 * error and everything built so far is freed. */
static inline ddn_status pmaf_step_init(pmaf_step *b, ddn_ctx *ctx, int64_t batch, int64_t size)
{
    *b = (pmaf_step){.ctx = ctx};
    b->net = ddn_resnet_new(ctx, &(ddn_resnet_opts){.arch = DDN_RESNET50, .features_only = true,
                                                    .seed = 0});
    if (b->net) {
        int64_t side = ddn_resnet_feature_side(size);
        b->head = ddn_pmaf_head_new(
            ctx, &(ddn_pmaf_opts){.kind = DDN_PMAF_IED, .m = PMAF_STEP_HEAD_M,
                                  .in_features = ddn_resnet_feature_channels(b->net) * side * side,
                                  .num_classes = PMAF_STEP_CLASSES, .symmetrize = true,
                                  .ied = DDN_IED_OPTS_DEFAULT,
                                  .ied_backward = DDN_IED_BACKWARD_DDN_E, .seed = 1});
    }
    ddn_sgd_opts sgd = {.lr = 0.05, .momentum = 0.9};
    if (b->head) {
        b->backbone_sgd = ddn_sgd_new_params(ddn_resnet_params(b->net), sgd);
        b->head_sgd = ddn_sgd_new_params(ddn_pmaf_head_params(b->head), sgd);
        b->x = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(batch, 3, size, size));
        b->y = ddn_tensor_new_persistent(ctx, DDN_DTYPE_I64, DDN_SHAPE(batch));
    }
    int64_t *labels = malloc(sizeof(int64_t) * (size_t)batch);
    ddn_status st = b->backbone_sgd && b->head_sgd && b->x && b->y ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK && !labels)
        st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "pmaf_step: no host memory for %lld labels",
                               (long long)batch);
    if (st == DDN_OK) st = ddn_tensor_fill_normal(b->x, NULL, 0, 1);
    if (st == DDN_OK) {
        /* the labels reach the device through a step tensor, rewound at once */
        for (int64_t i = 0; i < batch; i++) labels[i] = (i * 7) % PMAF_STEP_CLASSES;
        ddn_mark mark = ddn_ctx_mark(ctx);
        ddn_tensor *h = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(batch), labels);
        st = h ? ddn_tensor_copy_(b->y, h) : ddn_ctx_status(ctx);
        ddn_ctx_rewind(ctx, mark);
    }
    free(labels);
    if (st == DDN_OK)
        b->n_params = ddn_params_numel(ddn_resnet_params(b->net), false) +
                      ddn_params_numel(ddn_pmaf_head_params(b->head), false);
    if (st != DDN_OK) {
        if (ddn_ctx_status(ctx) == DDN_OK) /* a constructor returned NULL without a status */
            ddn_ctx_set_error(ctx, DDN_ERR_STATE, "pmaf_step: building the model failed");
        pmaf_step_free(b);
        return ddn_ctx_status(ctx);
    }
    return DDN_OK;
}

/* zero_grad, forward, loss, backward, SGD: the step both programs time. *loss gets its value
 * (reading it waits for the device, as PyTorch's loss.item() does). The caller resets the step. */
static inline ddn_status pmaf_step_run(pmaf_step *b, double *loss)
{
    ddn_optim_zero_grad(b->backbone_sgd);
    ddn_optim_zero_grad(b->head_sgd);
    ddn_tensor *f = ddn_resnet_forward(b->net, b->x, true);
    ddn_tensor *logits = ddn_pmaf_head_forward(b->head, f, NULL, NULL);
    ddn_tensor *l = ddn_cross_entropy(b->ctx, logits, b->y, DDN_REDUCTION_MEAN);
    if (!l || ddn_backward(b->ctx, l) != DDN_OK || ddn_optim_step(b->backbone_sgd) != DDN_OK ||
        ddn_optim_step(b->head_sgd) != DDN_OK)
        return ddn_ctx_status(b->ctx) != DDN_OK ? ddn_ctx_status(b->ctx) : DDN_ERR_STATE;
    *loss = ddn_tensor_item(l);
    return ddn_ctx_status(b->ctx);
}

#endif
