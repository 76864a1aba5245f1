/* bench_mlp — one training epoch of the Fashion-MNIST MLP, timed, for comparison with PyTorch.
 *
 * The same model and loop as examples/mlp_fashion_mnist.c (784-256-10, nn.Linear's init, SGD with
 * momentum 0.9, per-batch uint8 gather + normalise) and as bench/mlp_torch.py, which does the same
 * work in PyTorch. 20 warm-up steps, then one full epoch is timed. Prints one RESULT line (epoch
 * seconds, peak RSS from getrusage, mean loss) that bench/run.sh collects.
 *
 *     ./build/bench_mlp [--batch 64] [--threads 2] [--lr 0.01] [--data DIR]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "ddn.h"

#define MEAN 0.2860
#define STD 0.3530
#define WARMUP_STEPS 20

typedef struct { ddn_tensor *w1, *b1, *w2, *b2; } mlp;

static void die(ddn_ctx *ctx)
{
    fprintf(stderr, "bench_mlp: %s\n", ddn_ctx_errmsg(ctx));
    exit(1);
}

static ddn_tensor *param(ddn_ctx *ctx, int ndim, const int64_t *shape, int64_t fan_in)
{
    ddn_tensor *p = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, ndim, shape);
    double bound = 1.0 / sqrt((double)fan_in);
    if (p && ddn_tensor_fill_uniform(p, NULL, -bound, bound) == DDN_OK)
        ddn_tensor_set_requires_grad(p, true);
    return p;
}

/* Runs the steps over order[0..n) (max_steps > 0: stop after that many); returns the mean loss. */
static double run_epoch(ddn_ctx *ctx, const mlp *m, ddn_optim *opt, const ddn_idx *img,
                        const ddn_idx *lab, const int64_t *order, int64_t n, int batch,
                        int max_steps)
{
    double loss_sum = 0;
    int64_t steps = 0;
    for (int64_t s = 0; s < n && (max_steps <= 0 || steps < max_steps); s += batch, steps++) {
        int64_t b = n - s < batch ? n - s : batch;
        ddn_tensor *x = ddn_flatten(ctx, ddn_idx_batch(ctx, img, b, order + s, DDN_DTYPE_F32,
                                                       1 / (255 * STD), -MEAN / STD), 1);
        ddn_tensor *y = ddn_idx_batch(ctx, lab, b, order + s, DDN_DTYPE_I64, 1, 0);
        ddn_tensor *h = ddn_relu(ctx, ddn_linear(ctx, x, m->w1, m->b1));
        ddn_tensor *loss = ddn_cross_entropy(ctx, ddn_linear(ctx, h, m->w2, m->b2), y,
                                             DDN_REDUCTION_MEAN);
        if (!loss || ddn_backward(ctx, loss) != DDN_OK || ddn_optim_step(opt) != DDN_OK) die(ctx);
        loss_sum += ddn_tensor_item(loss);
        ddn_optim_zero_grad(opt);
        ddn_ctx_reset_step(ctx);
    }
    return loss_sum / (double)steps;
}

int main(int argc, char **argv)
{
    int batch = 64, threads = 2;
    double lr = 0.01;
    const char *data = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lr")) lr = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else batch = 0;
    }
    if (argc % 2 == 0 || batch < 1 || threads < 1 || !(lr > 0)) {
        fprintf(stderr, "usage: %s [--batch N] [--threads N] [--lr X] [--data DIR]\n", argv[0]);
        return 1;
    }
    ddn_set_num_threads(threads);
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!ctx) return fprintf(stderr, "bench_mlp: no CPU context\n"), 1;
    ddn_idx img, lab;
    char ip[4096], lp[4096];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", data);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", data);
    if (ddn_idx_read(ctx, ip, &img) != DDN_OK || ddn_idx_read(ctx, lp, &lab) != DDN_OK) die(ctx);

    mlp m = {param(ctx, DDN_SHAPE(256, 784), 784), param(ctx, DDN_SHAPE(256), 784),
             param(ctx, DDN_SHAPE(10, 256), 256), param(ctx, DDN_SHAPE(10), 256)};
    ddn_optim *opt = ddn_sgd_new(ctx, 4, (ddn_tensor *[]){m.w1, m.b1, m.w2, m.b2},
                                 (ddn_sgd_opts){.lr = lr, .momentum = 0.9});
    if (!opt) die(ctx);
    int64_t n = img.shape[0];
    int64_t *order = malloc((size_t)n * sizeof *order);
    if (!order) return fprintf(stderr, "bench_mlp: out of memory\n"), 1;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ddn_rng_below(ddn_ctx_rng(ctx), (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    run_epoch(ctx, &m, opt, &img, &lab, order, n, batch, WARMUP_STEPS);
    double t0 = bench_now();
    double loss = run_epoch(ctx, &m, opt, &img, &lab, order, n, batch, 0);
    double secs = bench_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT ddn epoch_s=%.4f rss_kb=%ld loss=%.4f threads=%d batch=%d\n", secs,
           ru.ru_maxrss, loss, threads, batch);
    free(order);
    ddn_optim_free(opt);
    ddn_tensor_free(m.w1), ddn_tensor_free(m.b1), ddn_tensor_free(m.w2), ddn_tensor_free(m.b2);
    ddn_idx_free(&img);
    ddn_idx_free(&lab);
    ddn_ctx_free(ctx);
    return 0;
}
