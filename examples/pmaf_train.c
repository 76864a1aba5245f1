/* pmaf_train — the program to read first: a ResNet-50 backbone with an IED head (the principal
 * eigenvector of a learnt 16 x 16 matrix, a declarative layer) trained on Fashion-MNIST: `ddn
 * train` with its defaults, less checkpoints and metrics files. Every call that can fail is
 * checked; a failure prints the library's message on one line and exits 1.
 *
 *     OMP_WAIT_POLICY=passive ./build/pmaf_train [--data DIR] [--steps N (one epoch)] [--batch 64]
 *         [--width 1 (0.0625: tiny)] [--subset N (the first N train and test images)]
 *         [--threads 2] [--out pmaf_model (-> pmaf_model.backbone/.head.safetensors)]     */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddn.h"

#define IMAGE_SIZE 32       /* Fashion-MNIST's 28 x 28 resized, as in the PMaF paper */
#define FMNIST_MEAN 0.2860f /* of the training pixels / 255 */
#define FMNIST_STD 0.3530f
#define LEARNING_RATE 0.1
#define LOG_EVERY 10
#define EVAL_BATCH 100

typedef struct options {
    const char *data, *out;
    long long steps, batch, subset, threads;
    double width;
} options;

static bool parse_args(int argc, char **argv, options *o)
{
    if (argc % 2 == 0) return false; /* every option takes a value */
    for (int i = 1; i < argc; i += 2) {
        const char *name = argv[i], *v = argv[i + 1];
        char *end = NULL;
        if (!strcmp(name, "--data")) o->data = v;
        else if (!strcmp(name, "--out")) o->out = v;
        else if (!strcmp(name, "--steps")) o->steps = strtoll(v, &end, 10);
        else if (!strcmp(name, "--batch")) o->batch = strtoll(v, &end, 10);
        else if (!strcmp(name, "--subset")) o->subset = strtoll(v, &end, 10);
        else if (!strcmp(name, "--width")) o->width = strtod(v, &end);
        else if (!strcmp(name, "--threads")) o->threads = strtoll(v, &end, 10);
        else return false;
        if (end && (end == v || *end)) return false; /* not a number */
    }
    return o->steps >= 0 && o->batch >= 1 && o->subset >= 0 && o->width > 0 && o->threads >= 1;
}

/* Fashion-MNIST's training or test split, cut to its first `subset` items when subset > 0. */
static ddn_dataset *open_split(ddn_ctx *ctx, const char *dir, bool train, int64_t subset)
{
    ddn_dataset *full = ddn_dataset_fashion_mnist(ctx, dir, train);
    if (!full || subset == 0 || subset >= ddn_dataset_len(full)) return full;
    int64_t *first = malloc((size_t)subset * sizeof *first);
    for (int64_t i = 0; first && i < subset; i++) first[i] = i;
    ddn_dataset *part = first ? ddn_dataset_subset(ctx, full, subset, first) : NULL;
    if (!first) ddn_ctx_set_error(ctx, DDN_ERR_OOM, "open_split: out of memory");
    free(first);
    ddn_dataset_free(full); /* the subset holds its own reference */
    return part;
}

/* The whole model: backbone features (B, 2048, 1, 1) -> PMaF head -> logits (B, 10). training:
 * batch statistics in the batch norms (updating their running averages), as model.train(). */
static ddn_tensor *forward(ddn_resnet *net, ddn_pmaf_head *head, ddn_tensor *x, bool training)
{
    return ddn_pmaf_head_forward(head, ddn_resnet_forward(net, x, training), NULL, NULL);
}

/* Test accuracy in percent, in evaluation mode and without recording a tape; -1 on error. */
static double evaluate(ddn_ctx *ctx, ddn_resnet *net, ddn_pmaf_head *head, ddn_loader *test)
{
    bool was_enabled = ddn_set_grad_enabled(ctx, false);
    int64_t seen = 0, correct = 0, pred[EVAL_BATCH], truth[EVAL_BATCH];
    double accuracy = -1;
    for (ddn_tensor *x = NULL, *y = NULL; ddn_loader_next(test, &x, &y) == DDN_OK;) {
        if (!x) { /* the end of the test set */
            accuracy = 100.0 * (double)correct / (double)(seen ? seen : 1);
            break;
        }
        ddn_tensor *p = ddn_argmax(ctx, forward(net, head, x, false), 1, false);
        if (!p || ddn_tensor_to_host(p, DDN_DTYPE_I64, pred) != DDN_OK ||
            ddn_tensor_to_host(y, DDN_DTYPE_I64, truth) != DDN_OK)
            break;
        for (int64_t i = 0; i < x->shape[0]; i++) correct += pred[i] == truth[i];
        seen += x->shape[0];
        ddn_ctx_reset_step(ctx); /* the batch's activations are dead: reuse their memory */
    }
    ddn_set_grad_enabled(ctx, was_enabled);
    return accuracy;
}

int main(int argc, char **argv)
{
    options o = {.data = DDN_FASHION_MNIST_DIR, .out = "pmaf_model", .batch = 64, .width = 1,
                 .threads = 2};
    if (!parse_args(argc, argv, &o))
        return fprintf(stderr, "usage: %s [--data DIR] [--steps N] [--batch N] [--width X] "
                       "[--subset N] [--threads N] [--out PREFIX]\n", argv[0]), 1;
    ddn_set_num_threads((int)o.threads);
    const char *why = NULL;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, &why);
    if (!ctx) return fprintf(stderr, "pmaf_train: no CPU context: %s\n", why), 1;
    ddn_loader *train = NULL, *test = NULL;
    ddn_resnet *net = NULL;
    ddn_pmaf_head *head = NULL;
    ddn_optim *backbone_sgd = NULL, *head_sgd = NULL;
    const char *hint = ""; /* appended to the error line */
    int rc = 1;

    /* Data: 28 x 28 grey images resized to 32 x 32, copied to the 3 channels the backbone takes,
     * normalised. The training loader shuffles with a seed and decodes 2 batches ahead. */
    ddn_dataset *train_set = open_split(ctx, o.data, true, o.subset);
    ddn_dataset *test_set = open_split(ctx, o.data, false, o.subset);
    if (!train_set || !test_set) {
        hint = " (install Debian's dataset-fashion-mnist or pass --data DIR)";
        goto done;
    }
    const ddn_transform tf[] = {ddn_tf_resize(IMAGE_SIZE, IMAGE_SIZE), ddn_tf_grey_to_rgb(),
                                ddn_tf_normalize1(FMNIST_MEAN, FMNIST_STD)};
    train = ddn_loader_new(ctx, train_set, &(ddn_loader_opts){.batch_size = o.batch,
                           .shuffle = true, .seed = 0, .prefetch = 2, .transforms = tf,
                           .n_transforms = 3});
    test = ddn_loader_new(ctx, test_set, &(ddn_loader_opts){.batch_size = EVAL_BATCH,
                          .prefetch = 1, .transforms = tf, .n_transforms = 3});
    if (!train || !test) goto done;

    /* The model. In features mode ResNet-50 has no average pool: conv1, the max pool and three
     * stages halve the side (rounding up), so 32 x 32 leaves (B, 2048, 1, 1). The IED head maps
     * that to a 16 x 16 matrix A, takes |A| + |A|^T, finds its principal eigenvector y by power
     * iteration and classifies y; the backward solves one bordered KKT system per item (DDN-E). */
    net = ddn_resnet_new(ctx, &(ddn_resnet_opts){.arch = DDN_RESNET50, .features_only = true,
                                                 .width = o.width, .seed = 0});
    if (!net) goto done;
    int64_t side = ddn_resnet_feature_side(IMAGE_SIZE); /* 1 */
    head = ddn_pmaf_head_new(ctx, &(ddn_pmaf_opts){.kind = DDN_PMAF_IED, .m = 16,
                             .in_features = ddn_resnet_feature_channels(net) * side * side,
                             .num_classes = 10, .symmetrize = true, .ied = DDN_IED_OPTS_DEFAULT,
                             .ied_backward = DDN_IED_BACKWARD_DDN_E, .seed = 1});
    if (!head) goto done;

    /* SGD with momentum 0.9, one per parameter block (a step is one fused kernel per block),
     * with the rate following a cosine from LEARNING_RATE down to 0 over the run. */
    ddn_sgd_opts sgd = {.lr = LEARNING_RATE, .momentum = 0.9};
    backbone_sgd = ddn_sgd_new_params(ddn_resnet_params(net), sgd);
    head_sgd = ddn_sgd_new_params(ddn_pmaf_head_params(head), sgd);
    if (!backbone_sgd || !head_sgd) goto done;
    int64_t steps = o.steps ? o.steps : ddn_loader_batches_per_epoch(train);
    ddn_lr_schedule cosine = {.base_lr = LEARNING_RATE, .decay = DDN_LR_COSINE, .t_max = steps};
    printf("pmaf_train: ResNet-50 (width %g) + IED head, %lld training images, %lld steps of "
           "%lld\n", o.width, (long long)ddn_dataset_len(train_set), (long long)steps, o.batch);

    /* The step loop. Everything a step makes (activations, the tape, intermediate gradients)
     * lives in the context's step arena, and ddn_ctx_reset_step frees it all at once. */
    for (int64_t step = 0; step < steps;) {
        ddn_tensor *x = NULL, *y = NULL;
        if (ddn_loader_next(train, &x, &y) != DDN_OK) goto done;
        if (!x) continue; /* an epoch ended; the loader is already decoding the next one */
        double lr = ddn_lr_at(&cosine, step);
        ddn_optim_set_lr(backbone_sgd, lr);
        ddn_optim_set_lr(head_sgd, lr);
        ddn_tensor *loss = ddn_cross_entropy(ctx, forward(net, head, x, true), y,
                                             DDN_REDUCTION_MEAN);
        /* An op given NULL returns NULL, so one check covers the whole forward; an optimizer
         * refuses to step while the context holds an error, so no partial update happens. */
        if (!loss || ddn_backward(ctx, loss) != DDN_OK || ddn_optim_step(backbone_sgd) != DDN_OK ||
            ddn_optim_step(head_sgd) != DDN_OK)
            goto done;
        double loss_value = ddn_tensor_item(loss); /* read it before the arena is reset */
        ddn_optim_zero_grad(backbone_sgd);
        ddn_optim_zero_grad(head_sgd);
        ddn_ctx_reset_step(ctx);
        if (++step % LOG_EVERY == 0 || step == steps) {
            printf("step %lld/%lld  loss %.4f  lr %.4f\n", (long long)step, (long long)steps,
                   loss_value, lr);
            fflush(stdout);
        }
    }
    double accuracy = evaluate(ctx, net, head, test);
    if (accuracy < 0) goto done;
    printf("test accuracy %.2f%% on %lld images\n", accuracy, (long long)ddn_dataset_len(test_set));

    /* Saved by name, atomically; the backbone's names are torchvision's ("layer1.0.conv1.weight")
     * so its file also loads into `ddn features --weights` (with the same --width). */
    char path[4200];
    snprintf(path, sizeof path, "%s.backbone.safetensors", o.out);
    if (ddn_params_save(ddn_resnet_params(net), path) != DDN_OK) goto done;
    snprintf(path, sizeof path, "%s.head.safetensors", o.out);
    if (ddn_params_save(ddn_pmaf_head_params(head), path) != DDN_OK) goto done;
    printf("saved %s.backbone.safetensors and %s.head.safetensors\n", o.out, o.out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "pmaf_train: %s%s\n", ddn_ctx_errmsg(ctx), hint);
    ddn_optim_free(head_sgd), ddn_optim_free(backbone_sgd); /* each free accepts NULL */
    ddn_pmaf_head_free(head), ddn_resnet_free(net);
    ddn_loader_free(test), ddn_loader_free(train);
    ddn_dataset_free(test_set), ddn_dataset_free(train_set);
    ddn_ctx_free(ctx);
    return rc;
}
