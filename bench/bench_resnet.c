/* bench_resnet — ResNet-50 (full width, random init, float32) in ddn: an eval-mode forward (tape
 * off) or a training step (train-mode forward, cross-entropy on 1000 classes, backward, SGD with
 * momentum 0.9), at one batch size and input size per process, so that the peak RSS printed at
 * the end (getrusage) belongs to that configuration alone.
 *
 * One warm-up, then the median of --runs iterations. FLOPs: 4.1 GFLOP per 224x224 image forward
 * scaled by (H/224)^2; a training step counts 3x the forward. --sgemm instead prints the machine's
 * cblas_sgemm rate (n = 1024) for the table. bench/run_resnet.sh alternates this with
 * bench/resnet_torch.py (the same in PyTorch) and reports ratios.
 *
 *     ./build/bench_resnet [--mode fwd|train] [--batch 8] [--size 224] [--runs 3] [--threads 2]
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "ddn.h"

/* The best of 5 products of 1024 x 1024 matrices, GFLOP/s. */
static double sgemm_rate(void)
{
    const int n = 1024;
    float *a = malloc(sizeof *a * (size_t)n * n), *b = malloc(sizeof *b * (size_t)n * n),
          *c = malloc(sizeof *c * (size_t)n * n);
    double best = 0;
    if (a && b && c) {
        for (int i = 0; i < n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
        for (int r = 0; r < 6; r++) {
            double t0 = bench_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
            double g = 2.0 * n * n * n / (bench_now() - t0) / 1e9;
            if (r > 0 && g > best) best = g;
        }
    }
    free(a), free(b), free(c);
    return best;
}

static int fail(ddn_ctx *ctx)
{
    fprintf(stderr, "bench_resnet: %s\n", ddn_ctx_errmsg(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    int threads = 2, runs = 3, batch = 8, size = 224;
    bool train = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sgemm")) {
            ddn_set_num_threads(threads);
            printf("RESULT sgemm gflops=%.1f core=%s\n", sgemm_rate(), openblas_get_corename());
            return 0;
        }
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size")) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mode")) train = !strcmp(argv[++i], "train");
    }
    if (threads < 1 || runs < 1 || runs > 100 || batch < 1 || size < 32) {
        fprintf(stderr, "usage: %s [--mode fwd|train] [--batch N] [--size S] [--runs N] "
                "[--threads N] | --sgemm\n", argv[0]);
        return 1;
    }
    ddn_set_num_threads(threads);
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!ctx) return fprintf(stderr, "bench_resnet: no CPU context\n"), 1;
    int rc = 1;
    ddn_resnet_opts o = {.arch = DDN_RESNET50, .seed = 0};
    ddn_resnet *net = ddn_resnet_new(ctx, &o);
    ddn_optim *opt = NULL;
    ddn_tensor *x = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(batch, 3, size, size));
    ddn_tensor *y = ddn_tensor_new_persistent(ctx, DDN_DTYPE_I64, DDN_SHAPE(batch));
    if (!net || !x || !y || ddn_tensor_fill_normal(x, NULL, 0, 1) != DDN_OK) goto done;
    for (int i = 0; i < batch; i++) ((int64_t *)ddn_tensor_ptr(y))[i] = (i * 137) % 1000;
    if (train) {
        opt = ddn_sgd_new_params(ddn_resnet_params(net), (ddn_sgd_opts){.lr = 0.01, .momentum = 0.9});
        if (!opt) goto done;
    } else {
        ddn_set_grad_enabled(ctx, false);
    }
    double t[101];
    for (int r = 0; r <= runs; r++) { /* r = 0: the warm-up */
        double t0 = bench_now();
        if (train) {
            ddn_optim_zero_grad(opt);
            ddn_tensor *logits = ddn_resnet_forward(net, x, true);
            ddn_tensor *loss = logits ? ddn_cross_entropy(ctx, logits, y, DDN_REDUCTION_MEAN) : NULL;
            if (!loss || ddn_backward(ctx, loss) != DDN_OK || ddn_optim_step(opt) != DDN_OK)
                goto done;
        } else if (!ddn_resnet_forward(net, x, false)) {
            goto done;
        }
        t[r] = bench_now() - t0;
        ddn_ctx_reset_step(ctx);
    }
    qsort(t + 1, (size_t)runs, sizeof t[0], bench_cmp_double);
    double med = runs % 2 ? t[1 + runs / 2] : (t[runs / 2] + t[runs / 2 + 1]) / 2;
    double gflop = 4.1 * batch * (size / 224.0) * (size / 224.0) * (train ? 3 : 1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    ddn_stats s = ddn_ctx_stats(ctx);
    printf("ddn ResNet-50 %s batch %d %dx%d: median %.1f ms of %d (%.1f GFLOP/s); peak RSS %.1f "
           "MB, step arena high water %.1f MB\n", train ? "train step" : "eval forward", batch,
           size, size, 1e3 * med, runs, gflop / med, ru.ru_maxrss / 1024.0,
           (double)s.arena_high_water / (1 << 20));
    printf("RESULT ddn %s %d %d ms=%.2f gflop=%.3f rss_kb=%ld\n", train ? "train" : "fwd", batch,
           size, 1e3 * med, gflop, ru.ru_maxrss);
    rc = 0;
done:
    if (rc) fail(ctx);
    ddn_optim_free(opt);
    ddn_tensor_free(x);
    ddn_tensor_free(y);
    ddn_resnet_free(net);
    ddn_ctx_free(ctx);
    return rc;
}
