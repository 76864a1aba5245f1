/* mlp_fashion_mnist — the first ddn program to read: a 784-256-10 MLP trained on Fashion-MNIST.
 *
 * Linear -> ReLU -> Linear -> cross-entropy, SGD with momentum 0.9, PyTorch's default init, seeded
 * shuffling. Each epoch prints the mean train loss, the test accuracy and images/s; the program
 * exits 1 if the final test accuracy is below 84% (2 epochs reach about 86%), so CI catches
 * regressions. The loop follows DESIGN.md: one context, one error check per step, no frees.
 *
 *     ./build/mlp_fashion_mnist [--epochs 2] [--batch 64] [--lr 0.01] [--threads 2] [--seed 0]
 *                               [--data /usr/share/datasets/fashion-mnist]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddn.h"

#define MEAN 0.2860 /* of the training pixels / 255 */
#define STD 0.3530
#define TARGET_ACCURACY 84.0

typedef struct { ddn_tensor *w1, *b1, *w2, *b2; } mlp;

typedef struct {
    int epochs, batch, threads;
    double lr;
    unsigned long long seed;
    const char *data;
} options;

static bool parse_args(int argc, char **argv, options *o)
{
    if (argc % 2 == 0) return false; /* every option takes a value */
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        char *end = NULL;
        if (!strcmp(a, "--data")) {
            o->data = v;
            continue;
        }
        if (!strcmp(a, "--lr")) o->lr = strtod(v, &end);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--epochs")) o->epochs = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--batch")) o->batch = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--threads")) o->threads = (int)strtol(v, &end, 10);
        if (!end || end == v || *end) return false;
    }
    return o->epochs >= 1 && o->batch >= 1 && o->threads >= 1 && o->lr > 0;
}

/* A persistent float32 parameter drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear
 * initialises both its weight and its bias. */
static ddn_tensor *param(ddn_ctx *ctx, int ndim, const int64_t *shape, int64_t fan_in)
{
    ddn_tensor *p = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, ndim, shape);
    double bound = 1.0 / sqrt((double)fan_in);
    if (p && ddn_tensor_fill_uniform(p, NULL, -bound, bound) == DDN_OK)
        ddn_tensor_set_requires_grad(p, true);
    return p;
}

static ddn_tensor *forward(ddn_ctx *ctx, const mlp *m, ddn_tensor *x) /* x (B, 784) */
{
    ddn_tensor *h = ddn_relu(ctx, ddn_linear(ctx, x, m->w1, m->b1)); /* (B, 256) */
    return ddn_linear(ctx, h, m->w2, m->b2);                         /* (B, 10) logits */
}

/* Images (B, 784) normalised as (pixel / 255 - MEAN) / STD, and int64 labels (B). */
static ddn_tensor *images_batch(ddn_ctx *ctx, const ddn_idx *img, int64_t n, const int64_t *items)
{
    ddn_tensor *x = ddn_idx_batch(ctx, img, n, items, DDN_DTYPE_F32, 1 / (255 * STD), -MEAN / STD);
    return ddn_flatten(ctx, x, 1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Test accuracy in percent, without recording a tape; -1 on error. */
static double evaluate(ddn_ctx *ctx, const mlp *m, const ddn_idx *img, const ddn_idx *lab)
{
    bool prev = ddn_set_grad_enabled(ctx, false);
    int64_t n = img->shape[0], correct = 0, items[1000], pred[1000], truth[1000];
    for (int64_t s = 0; s < n; s += 1000) {
        int64_t b = n - s < 1000 ? n - s : 1000;
        for (int64_t i = 0; i < b; i++) items[i] = s + i;
        ddn_tensor *p = ddn_argmax(ctx, forward(ctx, m, images_batch(ctx, img, b, items)), 1, false);
        ddn_tensor *y = ddn_idx_batch(ctx, lab, b, items, DDN_DTYPE_I64, 1, 0);
        if (!p || !y || ddn_tensor_to_host(p, DDN_DTYPE_I64, pred) != DDN_OK ||
            ddn_tensor_to_host(y, DDN_DTYPE_I64, truth) != DDN_OK)
            return -1;
        for (int64_t i = 0; i < b; i++) correct += pred[i] == truth[i];
        ddn_ctx_reset_step(ctx);
    }
    ddn_set_grad_enabled(ctx, prev);
    return 100.0 * (double)correct / (double)n;
}

static int fail(ddn_ctx *ctx)
{
    fprintf(stderr, "mlp_fashion_mnist: %s\n", ddn_ctx_errmsg(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    options o = {.epochs = 2, .batch = 64, .threads = 2, .lr = 0.01, .seed = 0,
                 .data = "/usr/share/datasets/fashion-mnist"};
    if (!parse_args(argc, argv, &o)) {
        fprintf(stderr, "usage: %s [--epochs N] [--batch N] [--lr X] [--threads N] [--seed N] "
                "[--data DIR]\n", argv[0]);
        return 1;
    }
    ddn_set_num_threads(o.threads);
    const char *why = NULL;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, &why);
    if (!ctx) return fprintf(stderr, "mlp_fashion_mnist: no CPU context: %s\n", why), 1;
    ddn_rng_seed(ddn_ctx_rng(ctx), o.seed);

    /* The data: four IDX files, read whole (55 MB of uint8). */
    ddn_idx train_x, train_y, test_x, test_y;
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    ddn_idx *files[4] = {&train_x, &train_y, &test_x, &test_y};
    for (int i = 0; i < 4; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o.data, names[i]);
        if (ddn_idx_read(ctx, path, files[i]) != DDN_OK) /* names the file and the reason */
            return fprintf(stderr, "mlp_fashion_mnist: %s (install Debian's "
                           "dataset-fashion-mnist or pass --data DIR)\n", ddn_ctx_errmsg(ctx)), 1;
    }
    if (train_x.ndim != 3 || train_x.shape[1] * train_x.shape[2] != 784 || test_x.ndim != 3 ||
        test_x.shape[1] * test_x.shape[2] != 784 || train_y.shape[0] != train_x.shape[0] ||
        test_y.shape[0] != test_x.shape[0])
        return fprintf(stderr, "mlp_fashion_mnist: %s does not hold 28x28 images with one label "
                       "each\n", o.data), 1;

    /* The model and its optimizer. */
    mlp m = {param(ctx, DDN_SHAPE(256, 784), 784), param(ctx, DDN_SHAPE(256), 784),
             param(ctx, DDN_SHAPE(10, 256), 256), param(ctx, DDN_SHAPE(10), 256)};
    ddn_optim *opt = ddn_sgd_new(ctx, 4, (ddn_tensor *[]){m.w1, m.b1, m.w2, m.b2},
                                 (ddn_sgd_opts){.lr = o.lr, .momentum = 0.9});
    if (!opt) return fail(ctx);
    printf("MLP 784-256-10 on Fashion-MNIST: %d epochs, batch %d, lr %g, momentum 0.9, "
           "%d threads, seed %llu\n", o.epochs, o.batch, o.lr, o.threads, o.seed);

    int64_t n = train_x.shape[0];
    int64_t *order = malloc((size_t)n * sizeof *order);
    if (!order) return fprintf(stderr, "mlp_fashion_mnist: out of memory\n"), 1;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    double accuracy = 0;
    for (int e = 1; e <= o.epochs; e++) {
        for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates shuffle with the context's RNG */
            int64_t j = (int64_t)ddn_rng_below(ddn_ctx_rng(ctx), (uint64_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double loss_sum = 0, t0 = now();
        int64_t steps = 0;
        for (int64_t s = 0; s < n; s += o.batch, steps++) {
            int64_t b = n - s < o.batch ? n - s : o.batch; /* the last batch may be smaller */
            ddn_tensor *x = images_batch(ctx, &train_x, b, order + s);
            ddn_tensor *y = ddn_idx_batch(ctx, &train_y, b, order + s, DDN_DTYPE_I64, 1, 0);
            ddn_tensor *loss = ddn_cross_entropy(ctx, forward(ctx, &m, x), y, DDN_REDUCTION_MEAN);
            if (!loss || ddn_backward(ctx, loss) != DDN_OK || ddn_optim_step(opt) != DDN_OK)
                return fail(ctx);
            loss_sum += ddn_tensor_item(loss);
            ddn_optim_zero_grad(opt);
            ddn_ctx_reset_step(ctx);
        }
        double secs = now() - t0;
        accuracy = evaluate(ctx, &m, &test_x, &test_y);
        if (accuracy < 0) return fail(ctx);
        printf("epoch %d: train loss %.4f, test accuracy %.2f%%, %.0f images/s\n", e,
               loss_sum / (double)steps, accuracy, (double)n / secs);
    }
    printf("peak step memory %.1f MB, parameters and optimizer state %.1f MB\n",
           (double)ddn_ctx_stats(ctx).arena_high_water / 1e6,
           (double)ddn_ctx_stats(ctx).persistent_high_water / 1e6);

    free(order);
    ddn_optim_free(opt);
    ddn_tensor_free(m.w1), ddn_tensor_free(m.b1), ddn_tensor_free(m.w2), ddn_tensor_free(m.b2);
    for (int i = 0; i < 4; i++) ddn_idx_free(files[i]);
    ddn_ctx_free(ctx);
    if (accuracy < TARGET_ACCURACY) {
        fprintf(stderr, "mlp_fashion_mnist: test accuracy %.2f%% is below the %.0f%% target\n",
                accuracy, TARGET_ACCURACY);
        return 1;
    }
    return 0;
}
