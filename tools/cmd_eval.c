/* ddn eval — test accuracy, per-class accuracy and the confusion matrix of a trained model.
 *
 * The model is rebuilt from the checkpoint's metadata alone (architecture, width, head and its
 * options, input size), so `ddn eval --checkpoint C` needs no repetition of training options;
 * checkpoint.safetensors and model.safetensors both work. Output is markdown on stdout.
 * --export-features writes the PMaF vectors fed to the classifier ("features" (N, m) float32)
 * and "labels" (N) int64, in dataset order, for analysis outside ddn.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

#define CMD "eval"

static const char help[] =
    "usage: ddn eval --checkpoint C [options]\n"
    "\n"
    "Evaluates a model written by ddn train (checkpoint.safetensors or model.safetensors) on the\n"
    "Fashion-MNIST test set; prints accuracy, per-class accuracy and the confusion matrix\n"
    "(markdown).\n"
    "  --data DIR                Fashion-MNIST IDX files (default " DDN_FASHION_MNIST_DIR ")\n"
    "                            or an image folder, as ddn train (--test-fraction F likewise)\n"
    "  --train                   evaluate on the training split instead\n"
    "  --test-subset N           the first N images only\n"
    "  --strict-data             an unreadable image is an error (default: skipped, reported;\n"
    "                            always an error with --export-features)\n"
    "  --batch N                 (default 256)\n"
    "  --threads N               CPU threads\n"
    "  --device D                cpu (default) or cuda (not yet run on hardware)\n"
    "  --export-features F       write 'features' (N, m) and 'labels' (N) to F.safetensors\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on a bad command line; one line on stderr.\n";

typedef struct eval_cfg {
    const char *checkpoint, *features;
    data_cfg data;
    int64_t batch, threads;
    ddn_device device;
    bool train;
} eval_cfg;

static int parse_args(int argc, char **argv, eval_cfg *c)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int r, e = 0;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        }
#define OPT(name) ((r = cli_opt(CMD, argc, argv, &i, name, &v)) != 0)
        if (OPT("--checkpoint")) c->checkpoint = v, e = r < 0;
        else if (OPT("--data")) c->data.dir = v, e = r < 0;
        else if (OPT("--export-features")) c->features = v, e = r < 0;
        else if (OPT("--test-subset"))
            e = r < 0 || cli_parse_int(CMD, "--test-subset", v, 1, INT64_MAX / 2,
                                       &c->data.test_subset);
        else if (OPT("--test-fraction"))
            e = r < 0 || cli_parse_double(CMD, "--test-fraction", v, 1e-6, 1 - 1e-6,
                                          &c->data.test_fraction);
        else if (OPT("--batch")) e = r < 0 || cli_parse_int(CMD, "--batch", v, 1, 65536, &c->batch);
        else if (OPT("--threads"))
            e = r < 0 || cli_parse_int(CMD, "--threads", v, 1, 1024, &c->threads);
        else if ((r = cli_flag(CMD, argv, i, "--train")) != 0) e = r < 0, c->train = true;
        else if (OPT("--device")) e = r < 0 || cli_parse_device(CMD, v, &c->device);
        else if ((r = cli_flag(CMD, argv, i, "--strict-data")) != 0)
            e = r < 0, c->data.strict = true;
        else return cli_unknown(CMD, a);
#undef OPT
        if (e) return CLI_EXIT_USAGE;
    }
    if (!c->checkpoint) return cli_error(CMD, CLI_EXIT_USAGE, "missing --checkpoint C");
    return -1;
}

static void report(const model *m, const ddn_dataset *ds, double acc, const int64_t *conf)
{
    int64_t K = m->cfg.num_classes, n = 0; /* n: the images evaluated (not skipped) */
    for (int64_t k = 0; k < K * K; k++) n += conf[k];
    printf("# ddn eval\n\n%s width %g, %s head; %" PRId64 " images; accuracy **%.2f%%**\n\n",
           train_arch_names[m->cfg.arch == 18 ? 0 : m->cfg.arch == 34 ? 1 : 2], m->cfg.width,
           train_head_names[m->cfg.head], n, acc);
    printf("| class | images | accuracy |\n|---|---:|---:|\n");
    for (int64_t k = 0; k < K; k++) {
        int64_t row = 0;
        for (int64_t j = 0; j < K; j++) row += conf[k * K + j];
        const char *name = ddn_dataset_class_name(ds, (int)k);
        printf("| %" PRId64 " %s | %" PRId64 " | %s%.2f%% |\n", k, name ? name : "", row,
               row ? "" : "n/a ", row ? 100.0 * (double)conf[k * K + k] / (double)row : 0.0);
    }
    printf("\nConfusion matrix (rows: true class, columns: predicted)\n\n| |");
    for (int64_t j = 0; j < K; j++) printf(" %" PRId64 " |", j);
    printf("\n|---|");
    for (int64_t j = 0; j < K; j++) printf("---:|");
    printf("\n");
    for (int64_t k = 0; k < K; k++) {
        printf("| **%" PRId64 "** |", k);
        for (int64_t j = 0; j < K; j++) printf(" %" PRId64 " |", conf[k * K + j]);
        printf("\n");
    }
}

static int export_features(ddn_ctx *ctx, const char *path, const ddn_dataset *ds,
                           const float *feat, int64_t n, int64_t dim)
{
    ddn_tensor *f = ddn_tensor_from_host(ctx, DDN_DTYPE_F32, 2, (int64_t[]){n, dim}, feat);
    ddn_tensor *l = ddn_tensor_new(ctx, DDN_DTYPE_I64, 1, (int64_t[]){n});
    if (!f || !l) return cli_ctx_error(CMD, ctx);
    int64_t *lp = ddn_tensor_ptr(l);
    for (int64_t i = 0; i < n; i++) lp[i] = ddn_dataset_label(ds, i);
    ddn_st_entry e[2] = {{"features", f, DDN_ST_AUTO}, {"labels", l, DDN_ST_AUTO}};
    if (ddn_safetensors_save(ctx, path, 2, e, 0, NULL) != DDN_OK)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot write --export-features: %s",
                         ddn_ctx_errmsg(ctx));
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    eval_cfg c = {.batch = 256, .data = {.test_fraction = DATA_TEST_FRACTION}};
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return rc;
    rc = 0;
    if (c.threads) ddn_set_num_threads((int)c.threads);
    ddn_ctx *ctx = cli_ctx_new(CMD, c.device);
    if (!ctx) return CLI_EXIT_FAIL;
    ddn_st_file *f = NULL;
    model m = {0};
    model_cfg mc;
    ddn_dataset *ds = NULL;
    int64_t *conf = NULL;
    float *feat = NULL;
    if (ddn_safetensors_open(ctx, c.checkpoint, &f) != DDN_OK)
        rc = cli_error(CMD, CLI_EXIT_FAIL, "cannot read --checkpoint: %s", ddn_ctx_errmsg(ctx));
    if (!rc) rc = model_cfg_from_file(CMD, f, c.checkpoint, &mc);
    if (!rc) rc = model_build(ctx, CMD, &mc, 0, &m);
    if (!rc && model_load(ctx, &m, f, c.checkpoint) != DDN_OK)
        rc = cli_error(CMD, CLI_EXIT_FAIL, "cannot load the model: %s", ddn_ctx_errmsg(ctx));
    ddn_safetensors_close(f);
    /* --test-subset limits whichever split is evaluated */
    c.data.train_subset = c.data.test_subset;
    if (!rc) rc = data_open(ctx, CMD, &c.data, c.train, &ds);
    if (!rc && ddn_dataset_num_classes(ds) > mc.num_classes)
        rc = cli_error(CMD, CLI_EXIT_FAIL, "the dataset has %d classes, the model %" PRId64,
                       ddn_dataset_num_classes(ds), mc.num_classes);
    int64_t n = rc ? 0 : ddn_dataset_len(ds), dim = rc ? 0 : model_vector_dim(&m);
    if (!rc) {
        conf = malloc((size_t)(mc.num_classes * mc.num_classes) * sizeof *conf);
        feat = c.features ? malloc((size_t)(n * dim) * sizeof *feat) : NULL;
        if (!conf || (c.features && !feat)) rc = cli_error(CMD, CLI_EXIT_FAIL, "out of memory");
    }
    if (!rc) {
        double acc = model_evaluate(ctx, &m, ds, c.batch, c.data.strict, conf, feat, dim);
        if (acc < 0) rc = cli_ctx_error(CMD, ctx);
        else report(&m, ds, acc, conf);
    }
    if (!rc && c.features) rc = export_features(ctx, c.features, ds, feat, n, dim);
    free(conf);
    free(feat);
    ddn_dataset_free(ds);
    model_free(&m);
    ddn_ctx_free(ctx);
    return rc;
}
