/* bench_pmaf — one training step of the PMaF model in ddn: full-width ResNet-50 in features mode
 * (no average pool) + the IED head exactly as `ddn train` builds it by default (linear to 16 x 16,
 * |A| + |A|^T, power iteration with DDN_IED_OPTS_DEFAULT, DDN-E backward, linear classifier to 10
 * classes), cross-entropy, backward, SGD (lr 0.05, momentum 0.9), float32, random init (seed 0),
 * on a fixed random batch. One configuration per process, so the peak RSS printed at the end
 * (getrusage) is that configuration's alone. One warm-up step, then the median of --runs steps.
 * bench/run_pmaf.sh alternates this with bench/pmaf_torch.py (the same model in PyTorch 1.13).
 * The model and the step are bench/pmaf_step.h, which `ddn bench --table resnet-ied` (any device)
 * times too.
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
#include "pmaf_step.h" /* the model and the step, shared with `ddn bench --table resnet-ied` */

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
    pmaf_step b = {0};
    b.ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!b.ctx) return fprintf(stderr, "bench_pmaf: no CPU context\n"), 1;
    int rc = 1;
    if (pmaf_step_init(&b, b.ctx, batch, size) != DDN_OK) goto done;
    int64_t n_params = b.n_params;
    double loss = 0, first = 0;
    if (check) {
        for (int s = 1; s <= check; s++) {
            if (pmaf_step_run(&b, &loss) != DDN_OK) goto done;
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
        if (pmaf_step_run(&b, &loss) != DDN_OK) goto done;
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
    pmaf_step_free(&b);
    ddn_ctx_free(b.ctx);
    return rc;
}
