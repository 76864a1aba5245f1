/* bench_conv — ddn_conv2d forward and backward on ResNet-50's convolution shapes (batch 8,
 * 224x224 input): the 7x7 stem, a 3x3 64->64 at 56x56, a 1x1 256->64 at 56x56, the stride-2 1x1
 * downsample 256->512 and a 3x3 512->512 at 7x7, float32, no bias (as in ResNet).
 *
 * Forward and backward (x and w gradients; the stem's input needs none, as in training) are
 * timed separately: one warm-up, then the median of --runs iterations. FLOPs: 2 N OC OH OW K per
 * product (K = C KH KW); backward is two such products (one for the stem). Prints a markdown table
 * and one RESULT line per layer for bench/run_conv.sh, which alternates this with
 * bench/conv_torch.py (the same layers in PyTorch) and reports ratios.
 *
 *     ./build/bench_conv [--threads 2] [--runs 5] [--batch 8]
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "ddn.h"

typedef struct {
    const char *name;
    int C, H, OC, K, stride, pad;
    bool dx; /* the input needs a gradient */
} layer;

static const layer layers[] = {
    {"stem 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3, false},
    {"3x3 64->64 @56", 64, 56, 64, 3, 1, 1, true},
    {"1x1 256->64 @56", 256, 56, 64, 1, 1, 0, true},
    {"1x1/2 256->512 @56", 256, 56, 512, 1, 2, 0, true},
    {"3x3 512->512 @7", 512, 7, 512, 3, 1, 1, true},
};

static void die(ddn_ctx *ctx, const char *what)
{
    fprintf(stderr, "bench_conv: %s: %s\n", what, ddn_ctx_errmsg(ctx));
    exit(1);
}

/* Median forward and backward seconds of one layer. x and w are persistent (their gradients
 * too, zeroed each iteration); activations live between a mark and a rewind. */
static void bench_layer(ddn_ctx *ctx, const layer *l, int batch, int runs, double *fwd,
                        double *bwd)
{
    ddn_tensor *x = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(batch, l->C, l->H,
                                                                            l->H));
    ddn_tensor *w = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(l->OC, l->C, l->K,
                                                                            l->K));
    if (!x || !w) die(ctx, "setup");
    double bound = 1.0 / sqrt((double)(l->C * l->K * l->K));
    if (ddn_tensor_fill_uniform(x, NULL, -1, 1) ||
        ddn_tensor_fill_uniform(w, NULL, -bound, bound) ||
        ddn_tensor_set_requires_grad(x, l->dx) || ddn_tensor_set_requires_grad(w, true))
        die(ctx, "setup");
    ddn_conv2d_params p = {{l->stride, l->stride}, {l->pad, l->pad}, {1, 1}, 1};
    double *tf = malloc(sizeof(double) * (size_t)(runs + 1));
    double *tb = malloc(sizeof(double) * (size_t)(runs + 1));
    if (!tf || !tb) exit(1);
    for (int r = 0; r <= runs; r++) { /* r = 0 is the warm-up */
        ddn_tensor_zero_grad(x);
        ddn_tensor_zero_grad(w);
        ddn_mark mark = ddn_ctx_mark(ctx);
        double t0 = bench_now();
        ddn_tensor *y = ddn_conv2d(ctx, x, w, NULL, p);
        double t1 = bench_now();
        if (!y) die(ctx, l->name);
        ddn_tensor *dy = ddn_rand_uniform(ctx, NULL, DDN_DTYPE_F32, y->ndim, y->shape, -1, 1);
        if (!dy) die(ctx, "dy");
        double t2 = bench_now();
        if (ddn_backward_with_grad(ctx, y, dy) != DDN_OK) die(ctx, "backward");
        double t3 = bench_now();
        tf[r] = t1 - t0, tb[r] = t3 - t2;
        ddn_ctx_rewind(ctx, mark);
    }
    qsort(tf + 1, (size_t)runs, sizeof *tf, bench_cmp_double);
    qsort(tb + 1, (size_t)runs, sizeof *tb, bench_cmp_double);
    *fwd = tf[1 + runs / 2], *bwd = tb[1 + runs / 2];
    free(tf), free(tb);
    ddn_tensor_free(x);
    ddn_tensor_free(w);
}

int main(int argc, char **argv)
{
    int threads = 2, runs = 5, batch = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
    }
    if (argc % 2 == 0 || threads < 1 || runs < 1 || batch < 1) {
        fprintf(stderr, "usage: %s [--threads N] [--runs N] [--batch N]\n", argv[0]);
        return 1;
    }
    ddn_set_num_threads(threads);
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!ctx) return fprintf(stderr, "bench_conv: no CPU context\n"), 1;
    printf("## ddn conv2d, ResNet-50 layers, batch %d, float32\n\n", batch);
    printf("OpenBLAS core: %s, threads: %d, median of %d runs after one warm-up\n\n",
           openblas_get_corename(), threads, runs);
    printf("| layer | fwd ms | fwd GFLOP/s | bwd ms | bwd GFLOP/s |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const layer *l = &layers[i];
        int oh = (l->H + 2 * l->pad - l->K) / l->stride + 1;
        double flops = 2.0 * batch * l->OC * oh * oh * (double)(l->C * l->K * l->K);
        double f, b;
        bench_layer(ctx, l, batch, runs, &f, &b);
        double bflops = flops * (l->dx ? 2 : 1);
        printf("| %s | %.2f | %.1f | %.2f | %.1f |\n", l->name, 1e3 * f, flops / f / 1e9, 1e3 * b,
               bflops / b / 1e9);
        printf("RESULT ddn %zu fwd_ms=%.3f bwd_ms=%.3f gflop=%.4f bgflop=%.4f\n", i,
                1e3 * f, 1e3 * b, flops / 1e9, bflops / 1e9);
        fflush(stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    ddn_stats s = ddn_ctx_stats(ctx);
    printf("\npeak RSS %.1f MB; step arena high water %.1f MB\n", ru.ru_maxrss / 1024.0,
           (double)s.arena_high_water / (1 << 20));
    printf("RESULT ddn rss_kb=%ld\n", ru.ru_maxrss);
    ddn_ctx_free(ctx);
    return 0;
}
