/* ddn train / ddn eval — what the two commands share (tools/checkpoint.c): the model (a
 * features-only ResNet and a PMaF head), the datasets and loaders, evaluation, and checkpoints.
 *
 * A checkpoint is ONE safetensors file, written atomically: every backbone and head parameter and
 * buffer under its own name (backbone "conv1.weight", head "proj.weight", "fc.bias"; the two sets
 * never collide because the backbone is features-only), the optimizer state as "optim.<name>",
 * and "trainer.step", "trainer.rng" and "trainer.loader". Its metadata records the model options
 * ("ddn.arch", ...), so a mismatched resume is a clear error and `ddn eval` rebuilds the model
 * from the file alone. model.safetensors is the same without optimizer and trainer entries.
 */
#ifndef DDN_TOOLS_TRAIN_H
#define DDN_TOOLS_TRAIN_H

#include "cli.h"

/* The options that define the model; all recorded in a checkpoint's metadata. */
typedef struct model_cfg {
    int arch;            /* 18, 34, 50 */
    double width;        /* channel multiplier */
    int head;            /* DDN_PMAF_IED, _LESS, _LINEAR */
    int64_t m, n;        /* head sizes */
    int solver;          /* index into train_solver_names */
    int backward;        /* index into the head's backward names */
    int64_t image_size;  /* square input side */
    int64_t num_classes;
} model_cfg;

typedef struct model {
    ddn_resnet *net;
    ddn_pmaf_head *head;
    model_cfg cfg;
} model;

extern const char *const train_arch_names[3];      /* resnet18 resnet34 resnet50 */
extern const char *const train_head_names[3];      /* ied less linear (ddn_pmaf_kind order) */
extern const char *const train_solver_names[2];    /* pi si */
extern const char *const train_ied_bw_names[6];    /* as ddn solve */
extern const char *const train_less_bw_names[3];

/* Builds backbone and head (in_features from the backbone's output at image_size). */
int model_build(ddn_ctx *ctx, const char *cmd, const model_cfg *c, uint64_t seed, model *out);
void model_free(model *m);
/* Fills c from a checkpoint's (or model file's) metadata; CLI_EXIT_FAIL naming what is missing. */
int model_cfg_from_file(const char *cmd, const ddn_st_file *f, const char *path, model_cfg *c);
/* "ddn.arch"... key/value pairs into meta (at least 16 slots, strings in buf). Returns count. */
int model_cfg_meta(const model_cfg *c, const char **meta, char (*buf)[64]);
/* Every parameter and buffer of m read from f by name; a missing one is an error. */
ddn_status model_load(ddn_ctx *ctx, model *m, const ddn_st_file *f, const char *path);

/* The data options both commands share. dir: Fashion-MNIST's IDX files (NULL: the Debian
 * package's DDN_FASHION_MNIST_DIR; a directory holding train-images-idx3-ubyte.gz) or else an image
 * folder, DIR/train + DIR/test or DIR/<class>/<image> split with test_fraction by a fixed seed
 * (DATA_SPLIT_SEED, not --seed, so that train and eval see the same split). strict: a bad image
 * stops the run instead of being skipped and counted. */
typedef struct data_cfg {
    const char *dir;
    double test_fraction;
    int64_t train_subset, test_subset; /* > 0: the first N items only */
    bool strict;
} data_cfg;
#define DATA_SPLIT_SEED 0
#define DATA_TEST_FRACTION 0.2

/* The train or test split of d; CLI_EXIT_FAIL with the one line printed. */
int data_open(ddn_ctx *ctx, const char *cmd, const data_cfg *d, bool train, ddn_dataset **out);
/* The pipeline both commands use, into tf (4 slots); returns its length. Grey IDX images:
 * resize to image_size, grey -> 3 channels, normalise with Fashion-MNIST's statistics. Colour
 * images: resize the short side to image_size, centre crop, ImageNet mean/std. */
int data_transforms(const ddn_dataset *ds, int64_t image_size, ddn_transform *tf);
/* Prints how many images were skipped as unreadable and why (at most 10 of them); nothing when
 * none was. what: "training" or "test". */
void data_report_skipped(const ddn_loader *ld, const char *what);

/* Runs the model in evaluation mode over all of ds. confusion (K*K, row = truth) is filled;
 * features (optional, N*m floats) gets the PMaF vectors, which needs strict (the rows must be
 * the dataset's items one to one). Unreadable images are skipped and reported unless strict.
 * Returns accuracy in percent, or -1. */
double model_evaluate(ddn_ctx *ctx, model *m, ddn_dataset *ds, int64_t batch, bool strict,
                      int64_t *confusion, float *features, int64_t feat_dim);
/* Logits for x; vec (optional) gets the PMaF vector. training: batch statistics. */
ddn_tensor *model_forward(model *m, ddn_tensor *x, bool training, ddn_tensor **vec);
int64_t model_vector_dim(const model *m);

/* ---- checkpoints -------------------------------------------------------------------------- */
typedef struct train_state {
    int64_t step;
    ddn_rng rng;
    ddn_loader_state loader;
} train_state;

/* Writes path atomically: model, optimizer state (via a temporary file next to path), trainer
 * state, metadata (the model's plus extra key/value pairs). */
ddn_status checkpoint_save(ddn_ctx *ctx, const char *path, model *m, ddn_optim *opt,
                           const train_state *ts, int n_extra, const char *const *extra);
/* Restores model, optimizer and trainer state from f (opened from path). */
ddn_status checkpoint_load(ddn_ctx *ctx, const char *path, const ddn_st_file *f, model *m,
                           ddn_optim *opt, train_state *ts);

/* ---- plot (tools/plot.c) -------------------------------------------------------------------- */
/* Draws loss and test accuracy over steps from metrics.csv into a PNG; -1 with err filled. */
int train_plot(const char *csv, const char *png, char *err, size_t err_n);

#endif
