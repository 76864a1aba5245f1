/* bench_pmaf — one training step of the PMaF model in ddn: full-width ResNet-50 in features mode
 * (no average pool) + the IED head exactly as `ddn train` builds it by default (linear to 16 x 16,
 * |A| + |A|^T, power iteration with DDN_IED_OPTS_DEFAULT, DDN-E backward, linear classifier to 10
 * classes), cross-entropy, backward, SGD (lr 0.05, momentum 0.9), float32, random init (seed 0),
 * on a fixed random batch. One configuration per process, so the peak RSS printed at the end
 * (getrusage) is that configuration's alone. One warm-up step, then the median of --runs steps.
 * bench/run_pmaf.sh alternates this with bench/pmaf_torch.py (the same model in PyTorch 1.13).
 *
 * --check N instead runs N steps on the batch and prints each loss: a sanity check that the
 * step trains (the loss falls) and that the parameter count equals PyTorch's (both print it).
 *
 *     ./build/bench_pmaf [--batch 32] [--size 32] [--runs 3] [--threads 2] [--check N]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "ddn.h"

#define HEAD_M 16
#define CLASSES 10

typedef struct bench {
    ddn_ctx *ctx;
    ddn_resnet *net;
    ddn_pmaf_head *head;
    ddn_optim *backbone_sgd, *head_sgd;
    ddn_tensor *x, *y;
} bench;

/* zero_grad, forward, loss, backward, SGD: the step both programs time. *loss gets its value. */
static ddn_status train_step(bench *b, double *loss)
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
    return DDN_OK;
}

int main(int argc, char **argv)
{
    int threads = 2, runs = 3, batch = 32, size = 32, check = 0;
    bool unknown = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--check")) check = atoi(argv[i + 1]);
        else unknown = true;
    }
    if (unknown || argc % 2 == 0 || threads < 1 || runs < 1 || runs > 100 || batch < 1 || size < 32 ||
        check < 0 || check > 1000) {
        fprintf(stderr, "usage: %s [--batch N] [--size S >= 32] [--runs N] [--threads N] "
                "[--check STEPS]\n", argv[0]);
        return 1;
    }
    ddn_set_num_threads(threads);
    bench b = {0};
    b.ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!b.ctx) return fprintf(stderr, "bench_pmaf: no CPU context\n"), 1;
    int rc = 1;
    b.net = ddn_resnet_new(b.ctx, &(ddn_resnet_opts){.arch = DDN_RESNET50, .features_only = true,
                                                     .seed = 0});
    if (!b.net) goto done;
    int64_t side = ddn_resnet_feature_side(size);
    b.head = ddn_pmaf_head_new(b.ctx, &(ddn_pmaf_opts){.kind = DDN_PMAF_IED, .m = HEAD_M,
                               .in_features = ddn_resnet_feature_channels(b.net) * side * side,
                               .num_classes = CLASSES, .symmetrize = true,
                               .ied = DDN_IED_OPTS_DEFAULT,
                               .ied_backward = DDN_IED_BACKWARD_DDN_E, .seed = 1});
    if (!b.head) goto done;
    ddn_sgd_opts sgd = {.lr = 0.05, .momentum = 0.9};
    b.backbone_sgd = ddn_sgd_new_params(ddn_resnet_params(b.net), sgd);
    b.head_sgd = ddn_sgd_new_params(ddn_pmaf_head_params(b.head), sgd);
    b.x = ddn_tensor_new_persistent(b.ctx, DDN_DTYPE_F32, DDN_SHAPE(batch, 3, size, size));
    b.y = ddn_tensor_new_persistent(b.ctx, DDN_DTYPE_I64, DDN_SHAPE(batch));
    if (!b.backbone_sgd || !b.head_sgd || !b.x || !b.y ||
        ddn_tensor_fill_normal(b.x, NULL, 0, 1) != DDN_OK)
        goto done;
    for (int i = 0; i < batch; i++) ((int64_t *)ddn_tensor_ptr(b.y))[i] = (i * 7) % CLASSES;
    int64_t n_params = ddn_params_numel(ddn_resnet_params(b.net), false) +
                       ddn_params_numel(ddn_pmaf_head_params(b.head), false);
    double loss = 0, first = 0;
    if (check) {
        for (int s = 1; s <= check; s++) {
            if (train_step(&b, &loss) != DDN_OK) goto done;
            ddn_ctx_reset_step(b.ctx);
            if (s == 1) first = loss;
            printf("ddn step %d loss %.6f\n", s, loss);
        }
        printf("CHECK ddn batch %d size %d params=%lld first_loss=%.6f last_loss=%.6f %s\n", batch,
               size, (long long)n_params, first, loss,
               loss < first ? "decreasing" : "NOT-DECREASING");
        rc = loss < first ? 0 : 1;
        goto done;
    }
    double t[101];
    for (int r = 0; r <= runs; r++) { /* r = 0: the warm-up */
        double t0 = bench_now();
        if (train_step(&b, &loss) != DDN_OK) goto done;
        t[r] = bench_now() - t0;
        ddn_ctx_reset_step(b.ctx);
    }
    qsort(t + 1, (size_t)runs, sizeof t[0], bench_cmp_double);
    double med = runs % 2 ? t[1 + runs / 2] : (t[runs / 2] + t[runs / 2 + 1]) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ddn ResNet-50 + IED head train step batch %d %dx%d: median %.1f ms of %d; peak RSS "
           "%.1f MB, step arena high water %.1f MB; %lld parameters\n", batch, size, size,
           1e3 * med, runs, ru.ru_maxrss / 1024.0,
           (double)ddn_ctx_stats(b.ctx).arena_high_water / (1 << 20), (long long)n_params);
    printf("RESULT ddn %d %d ms=%.2f rss_kb=%ld params=%lld\n", batch, size, 1e3 * med,
           ru.ru_maxrss, (long long)n_params);
    rc = 0;
done:
    if (rc && ddn_ctx_status(b.ctx) != DDN_OK)
        fprintf(stderr, "bench_pmaf: %s\n", ddn_ctx_errmsg(b.ctx));
    else if (rc)
        fprintf(stderr, "bench_pmaf: the loss did not decrease over %d steps\n", check);
    ddn_optim_free(b.head_sgd);
    ddn_optim_free(b.backbone_sgd);
    ddn_tensor_free(b.x);
    ddn_tensor_free(b.y);
    ddn_pmaf_head_free(b.head);
    ddn_resnet_free(b.net);
    ddn_ctx_free(b.ctx);
    return rc;
}
