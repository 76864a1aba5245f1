/* ddn train — train a ResNet backbone with a PMaF head (IED, LESS or linear) on Fashion-MNIST.
 *
 * Resuming is exact: a checkpoint holds parameters, buffers, optimizer state, the step, the
 * context RNG and the loader's state, and the loader's randomness is a pure function of (seed,
 * epoch, item), so N steps straight and k steps + --resume + N - k steps give bit-identical
 * weights (tests/test_cli.c checks it). SIGINT only sets a flag; the loop sees it after the
 * current step, writes a checkpoint and exits 130. A non-finite loss stops the run with exit 1
 * before the optimizer applies it, so the last checkpoint on disk stays the last good one.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train.h"

#define CMD "train"

static const char help[] =
    "usage: ddn train [options] --out DIR\n"
    "\n"
    "Trains a ResNet backbone with a PMaF head on Fashion-MNIST (resized, grey -> 3 channels,\n"
    "normalised). DIR gets metrics.csv, plot.png, checkpoint.safetensors, model.safetensors.\n"
    "\n"
    "model:\n"
    "  --arch A            resnet18 | resnet34 | resnet50 (default)\n"
    "  --width X           channel multiplier (default 1; 0.0625 for tiny test models)\n"
    "  --head H            ied (default) | less | linear\n"
    "  --m N, --n N        head sizes (IED: m x m, default 16; LESS: m x n, default 16 x 8)\n"
    "  --solver S          IED solver: pi (default) | si\n"
    "  --backward B        IED: ddn-e (default) | ddn-j | ift-e | ift-j | unroll | eigh;\n"
    "                      LESS: e (default) | j | unroll\n"
    "  --weights W         backbone from a torchvision export (non-strict; fc. skipped)\n"
    "  --freeze-backbone   train the head only (backbone in evaluation mode)\n"
    "data:\n"
    "  --data DIR          Fashion-MNIST IDX files (default " DDN_FASHION_MNIST_DIR "), or an\n"
    "                      image folder: DIR/train + DIR/test, or DIR/<class>/<image> split by\n"
    "                      --test-fraction F (default 0.2, a fixed split seed)\n"
    "  --image-size N      input side (default 32)\n"
    "  --train-subset N    use the first N training images; --test-subset N likewise\n"
    "  --strict-data       stop at the first unreadable image (default: skip, count, report)\n"
    "training:\n"
    "  --epochs N | --steps N | --time-budget SECONDS   (default 1 epoch; the budget\n"
    "                      counts training time across resumes, evaluation included)\n"
    "  --batch N           (default 64)\n"
    "  --optimizer O       sgd (default) | adam | adamw\n"
    "  --lr X              (sgd 0.1, or 0.025 for --head linear; adam/adamw 1e-3)\n"
    "  --momentum X (0.9)  --weight-decay X (0; adamw 1e-2)\n"
    "  --schedule S        none (default) | step | cosine; --warmup N steps;\n"
    "                      --lr-step N (step: decay x0.1 every N steps, default one epoch);\n"
    "                      cosine runs over --steps/--epochs, or else over --time-budget\n"
    "                      (the rate follows the fraction of the budget spent)\n"
    "  --seed N            initialisation and shuffling (default 0)\n"
    "  --threads N         CPU threads\n"
    "  --device D          cpu (default) or cuda (model, batches and optimizer on the GPU;\n"
    "                      not yet run on hardware, see the README)\n"
    "  --out DIR           output directory (created)\n"
    "  --checkpoint-every N  steps between checkpoints (default 0: at the end only)\n"
    "  --resume C          continue exactly from checkpoint C (same model and options)\n"
    "  --log-every N       steps between log lines (default 10)\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on a bad command line, 130 when interrupted\n"
    "(SIGINT: a checkpoint is written first).\n";

typedef struct train_cfg {
    model_cfg model;
    data_cfg data;
    const char *weights, *out, *resume;
    bool freeze;
    int64_t epochs, steps, batch, warmup, lr_step, seed, threads, ckpt_every, log_every;
    double time_budget, lr, momentum, wd;
    int optimizer, schedule;
    ddn_device device;
    bool has_lr, has_wd, has_m, has_n;
    const char *backward_s;
} train_cfg;

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once (checkpoints are atomic anyway) */
}

static const char *const opt_names[] = {"sgd", "adam", "adamw"};

static int parse_args(int argc, char **argv, train_cfg *c)
{
    static const char *const sched_names[] = {"none", "step", "cosine"};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int r, e = 0, k = 0;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        }
#define OPT(name) ((r = cli_opt(CMD, argc, argv, &i, name, &v)) != 0)
#define INT(name, lo, hi, dst) \
    (OPT(name)) { e = r < 0 || cli_parse_int(CMD, name, v, lo, hi, dst); }
#define DBL(name, lo, hi, dst) \
    (OPT(name)) { e = r < 0 || cli_parse_double(CMD, name, v, lo, hi, dst); }
        if (OPT("--arch")) {
            e = r < 0 || cli_parse_choice(CMD, "--arch", v, train_arch_names, 3, &k);
            c->model.arch = k == 0 ? 18 : k == 1 ? 34 : 50;
        } else if DBL("--width", 1e-3, 16, &c->model.width)
        else if (OPT("--head")) {
            e = r < 0 || cli_parse_choice(CMD, "--head", v, train_head_names, 3, &c->model.head);
        } else if (OPT("--m")) {
            e = r < 0 || cli_parse_int(CMD, "--m", v, 2, 4096, &c->model.m), c->has_m = true;
        } else if (OPT("--n")) {
            e = r < 0 || cli_parse_int(CMD, "--n", v, 1, 4096, &c->model.n), c->has_n = true;
        } else if (OPT("--solver")) {
            e = r < 0 || cli_parse_choice(CMD, "--solver", v, train_solver_names, 2,
                                          &c->model.solver);
        } else if (OPT("--backward")) {
            c->backward_s = v, e = r < 0;
        } else if (OPT("--data")) {
            c->data.dir = v, e = r < 0;
        } else if INT("--image-size", 8, 1024, &c->model.image_size)
        else if (OPT("--weights")) {
            c->weights = v, e = r < 0;
        } else if ((r = cli_flag(CMD, argv, i, "--freeze-backbone")) != 0) {
            e = r < 0, c->freeze = true;
        } else if INT("--epochs", 1, 1000000, &c->epochs)
        else if INT("--steps", 1, INT64_MAX / 2, &c->steps)
        else if DBL("--time-budget", 0, 1e9, &c->time_budget)
        else if INT("--batch", 1, 65536, &c->batch)
        else if (OPT("--optimizer")) {
            e = r < 0 || cli_parse_choice(CMD, "--optimizer", v, opt_names, 3, &c->optimizer);
        } else if (OPT("--lr")) {
            e = r < 0 || cli_parse_double(CMD, "--lr", v, 0, 1e300, &c->lr), c->has_lr = true;
        } else if DBL("--momentum", 0, 1, &c->momentum)
        else if (OPT("--weight-decay")) {
            e = r < 0 || cli_parse_double(CMD, "--weight-decay", v, 0, 1e6, &c->wd);
            c->has_wd = true;
        } else if (OPT("--schedule")) {
            e = r < 0 || cli_parse_choice(CMD, "--schedule", v, sched_names, 3, &c->schedule);
        } else if INT("--warmup", 0, INT64_MAX / 2, &c->warmup)
        else if INT("--lr-step", 1, INT64_MAX / 2, &c->lr_step)
        else if INT("--seed", 0, INT64_MAX, &c->seed)
        else if INT("--threads", 1, 1024, &c->threads)
        else if (OPT("--device")) {
            e = r < 0 || cli_parse_device(CMD, v, &c->device);
        }
        else if (OPT("--out")) {
            c->out = v, e = r < 0;
        } else if INT("--checkpoint-every", 0, INT64_MAX / 2, &c->ckpt_every)
        else if (OPT("--resume")) {
            c->resume = v, e = r < 0;
        } else if INT("--train-subset", 1, INT64_MAX / 2, &c->data.train_subset)
        else if INT("--test-subset", 1, INT64_MAX / 2, &c->data.test_subset)
        else if DBL("--test-fraction", 1e-6, 1 - 1e-6, &c->data.test_fraction)
        else if ((r = cli_flag(CMD, argv, i, "--strict-data")) != 0) {
            e = r < 0, c->data.strict = true;
        }
        else if INT("--log-every", 1, INT64_MAX / 2, &c->log_every)
        else return cli_unknown(CMD, a);
#undef OPT
#undef INT
#undef DBL
        if (e) return CLI_EXIT_USAGE;
    }
    if (!c->out) return cli_error(CMD, CLI_EXIT_USAGE, "missing --out DIR");
    model_cfg *m = &c->model;
    if (c->backward_s) {
        int nb = m->head == DDN_PMAF_IED ? 6 : 3;
        const char *const *names = m->head == DDN_PMAF_IED ? train_ied_bw_names
                                                          : train_less_bw_names;
        if (m->head == DDN_PMAF_LINEAR)
            return cli_error(CMD, CLI_EXIT_USAGE, "--backward applies to --head ied or less");
        if (cli_parse_choice(CMD, "--backward", c->backward_s, names, nb, &m->backward))
            return CLI_EXIT_USAGE;
    }
    if (m->head == DDN_PMAF_LESS && !c->has_m) m->m = 16;
    if (m->head == DDN_PMAF_LESS && !c->has_n) m->n = 8;
    /* The linear head's input (pooled features of a fresh ResNet) is unbounded, and at 0.1 its
     * loss explodes; IED and LESS feed the classifier a unit vector (BENCHMARKS.md, heads). */
    if (!c->has_lr)
        c->lr = c->optimizer != 0 ? 1e-3 : m->head == DDN_PMAF_LINEAR ? 0.025 : 0.1;
    if (!c->has_wd && c->optimizer == 2) c->wd = 1e-2;
    if (!c->epochs && !c->steps && !(c->time_budget > 0)) c->epochs = 1;
    return -1;
}

/* ---- metrics --------------------------------------------------------------------------------- */
/* On resume, rows past the checkpoint's step are dropped (a run may have gone on after its last
 * checkpoint), so the file reads as one uninterrupted run; so is a test-accuracy row at that
 * step unless it is the end of an epoch already evaluated (keep_eval: the loader stands at the
 * start of the next epoch). A checkpoint taken before its epoch's end was seen is re-evaluated by
 * the resumed run; a mid-epoch row is the "final" evaluation of the run that stopped there. */
static bool is_epoch_row(const char *line)
{
    const char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    return c2 && c2[1] == ',';
}

static FILE *metrics_open(const char *out, int64_t resume_step, bool keep_eval)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/metrics.csv", out);
    if (resume_step < 0) {
        FILE *f = fopen(path, "w");
        if (f) fputs("step,epoch,loss,lr,test_accuracy\n", f);
        return f;
    }
    snprintf(tmp, sizeof tmp, "%s/metrics.csv.tmp", out);
    FILE *in = fopen(path, "r"), *o = fopen(tmp, "w");
    if (!o) {
        if (in) fclose(in);
        return NULL;
    }
    fputs("step,epoch,loss,lr,test_accuracy\n", o);
    char line[512];
    while (in && fgets(line, sizeof line, in))
        if (line[0] >= '0' && line[0] <= '9' && strtoll(line, NULL, 10) <= resume_step &&
            !(!keep_eval && strtoll(line, NULL, 10) == resume_step && is_epoch_row(line)))
            fputs(line, o);
    if (in) fclose(in);
    if (fclose(o) != 0 || rename(tmp, path) != 0) return NULL;
    return fopen(path, "a");
}

/* ---- the run --------------------------------------------------------------------------------- */
typedef struct run {
    train_cfg *c;
    ddn_ctx *ctx;
    model m;
    ddn_optim *opt;
    ddn_dataset *train, *test;
    ddn_loader *ld;
    FILE *metrics;
    char ckpt[4200], model_path[4200];
    bool have_ckpt;
    train_state ts;
    double t0;             /* cli_now() - t0 = training seconds, earlier runs of a resume included */
    double elapsed0;       /* seconds spent before this process (checkpoint "ddn.elapsed") */
    int64_t evaluated_at;  /* step of the last test evaluation, -1 before any */
} run;

static int save_checkpoint(run *r)
{
    r->ts.rng = *ddn_ctx_rng(r->ctx);
    r->ts.loader = ddn_loader_get_state(r->ld);
    char bs[32], seed[32], elapsed[32];
    snprintf(bs, sizeof bs, "%" PRId64, r->c->batch);
    snprintf(seed, sizeof seed, "%" PRId64, r->c->seed);
    snprintf(elapsed, sizeof elapsed, "%.3f", cli_now() - r->t0);
    const char *extra[] = {"ddn.batch", bs, "ddn.seed", seed,
                           "ddn.freeze_backbone", r->c->freeze ? "1" : "0",
                           "ddn.elapsed", elapsed};
    if (checkpoint_save(r->ctx, r->ckpt, &r->m, r->opt, &r->ts, 4, extra) != DDN_OK)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot write checkpoint: %s%s",
                         ddn_ctx_errmsg(r->ctx), r->have_ckpt ? " (the previous one is kept)" : "");
    r->have_ckpt = true;
    return 0;
}

/* Checks that the checkpoint was made by the same model and batch options, then restores. */
static int resume(run *r)
{
    ddn_st_file *f = NULL;
    if (ddn_safetensors_open(r->ctx, r->c->resume, &f) != DDN_OK)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot resume: %s", ddn_ctx_errmsg(r->ctx));
    model_cfg fc;
    int rc = model_cfg_from_file(CMD, f, r->c->resume, &fc);
    const model_cfg *mc = &r->c->model;
    const char *bs = ddn_safetensors_metadata(f, "ddn.batch");
    const char *opt_kind = ddn_safetensors_metadata(f, "optim.ddn.optimizer");
    const char *frozen = ddn_safetensors_metadata(f, "ddn.freeze_backbone");
    const char *elapsed = ddn_safetensors_metadata(f, "ddn.elapsed"); /* absent before 2026-11 */
    double e = elapsed ? strtod(elapsed, NULL) : 0;
    r->elapsed0 = isfinite(e) && e > 0 ? e : 0;
    const char *what = NULL;
    if (!rc) {
        if (fc.arch != mc->arch) what = "--arch";
        else if (fc.width != mc->width) what = "--width";
        else if (fc.head != mc->head) what = "--head";
        else if (fc.m != mc->m || fc.n != mc->n) what = "--m/--n";
        else if (fc.solver != mc->solver || fc.backward != mc->backward)
            what = "--solver/--backward";
        else if (fc.image_size != mc->image_size) what = "--image-size";
        else if (fc.num_classes != mc->num_classes) what = "the dataset's class count";
        else if (!bs || strtoll(bs, NULL, 10) != r->c->batch) what = "--batch";
        else if (!opt_kind || strcmp(opt_kind, opt_names[r->c->optimizer]) != 0)
            what = "--optimizer";
        else if (!frozen || (frozen[0] == '1') != r->c->freeze) what = "--freeze-backbone";
    }
    if (!rc && what) {
        char mine[9][64], theirs[9][64];
        const char *mm[18], *tm[18];
        model_cfg_meta(mc, mm, mine);
        model_cfg_meta(&fc, tm, theirs);
        rc = cli_error(CMD, CLI_EXIT_FAIL, "cannot resume: %s was written with other options "
                       "(%s differs: checkpoint %s width %s head %s m %s n %s size %s batch "
                       "%s; this run %s width %s head %s m %s n %s size %s batch %" PRId64 ")",
                       r->c->resume, what, theirs[0], theirs[1], theirs[2], theirs[3],
                       theirs[4], theirs[7], bs ? bs : "?", mine[0], mine[1], mine[2], mine[3],
                       mine[4], mine[7], r->c->batch);
    }
    if (!rc && checkpoint_load(r->ctx, r->c->resume, f, &r->m, r->opt, &r->ts) != DDN_OK)
        rc = cli_error(CMD, CLI_EXIT_FAIL, "cannot resume: %s", ddn_ctx_errmsg(r->ctx));
    ddn_safetensors_close(f);
    if (rc) return rc;
    *ddn_ctx_rng(r->ctx) = r->ts.rng;
    if (ddn_loader_set_state(r->ld, &r->ts.loader) != DDN_OK)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot resume from %s: %s", r->c->resume,
                         ddn_ctx_errmsg(r->ctx));
    return 0;
}

static int setup(run *r)
{
    train_cfg *c = r->c;
    if (cli_mkdirs(c->out) != 0)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot create --out %s: %s", c->out,
                         strerror(errno));
    struct stat sb;
    if (stat(c->out, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(c->out, W_OK) != 0)
        return cli_error(CMD, CLI_EXIT_FAIL, "--out %s is not a writable directory", c->out);
    snprintf(r->ckpt, sizeof r->ckpt, "%s/checkpoint.safetensors", c->out);
    snprintf(r->model_path, sizeof r->model_path, "%s/model.safetensors", c->out);
    int rc = data_open(r->ctx, CMD, &c->data, true, &r->train);
    if (!rc) rc = data_open(r->ctx, CMD, &c->data, false, &r->test);
    if (rc) return rc;
    c->model.num_classes = ddn_dataset_num_classes(r->train);
    if ((rc = model_build(r->ctx, CMD, &c->model, (uint64_t)c->seed, &r->m))) return rc;
    ddn_params *bp = ddn_resnet_params(r->m.net), *hp = ddn_pmaf_head_params(r->m.head);
    if (c->weights &&
        ddn_params_load(bp, c->weights, (ddn_params_load_opts){.skip_prefix = "fc."}) != DDN_OK)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot load --weights: %s", ddn_ctx_errmsg(r->ctx));
    /* One optimizer over every trainable tensor: backbone (unless frozen) then head. */
    int64_t np = 0, total = ddn_params_count(bp) + ddn_params_count(hp);
    ddn_tensor **ps = malloc((size_t)total * sizeof *ps);
    if (!ps) return cli_error(CMD, CLI_EXIT_FAIL, "out of memory");
    for (int64_t i = 0; i < ddn_params_count(bp); i++) {
        if (ddn_params_is_buffer(bp, i)) continue;
        if (c->freeze) ddn_tensor_set_requires_grad(ddn_params_at(bp, i), false);
        else ps[np++] = ddn_params_at(bp, i);
    }
    for (int64_t i = 0; i < ddn_params_count(hp); i++)
        if (!ddn_params_is_buffer(hp, i)) ps[np++] = ddn_params_at(hp, i);
    if (c->optimizer == 0) {
        r->opt = ddn_sgd_new(r->ctx, (int)np, ps, (ddn_sgd_opts){.lr = c->lr,
                             .momentum = c->momentum, .weight_decay = c->wd});
    } else {
        ddn_adam_opts ao = c->optimizer == 1 ? ddn_adam_defaults() : ddn_adamw_defaults();
        ao.lr = c->lr;
        if (c->has_wd || c->optimizer == 2) ao.weight_decay = c->wd;
        r->opt = c->optimizer == 1 ? ddn_adam_new(r->ctx, (int)np, ps, ao)
                                   : ddn_adamw_new(r->ctx, (int)np, ps, ao);
    }
    free(ps);
    if (!r->opt) return cli_ctx_error(CMD, r->ctx);
    ddn_transform tf[4];
    int n_tf = data_transforms(r->train, c->model.image_size, tf);
    ddn_loader_opts lo = {.batch_size = c->batch, .shuffle = true, .seed = (uint64_t)c->seed,
                          .prefetch = 2, .strict = c->data.strict, .transforms = tf,
                          .n_transforms = n_tf};
    r->ld = ddn_loader_new(r->ctx, r->train, &lo);
    if (!r->ld) return cli_ctx_error(CMD, r->ctx);
    ddn_rng_seed(ddn_ctx_rng(r->ctx), (uint64_t)c->seed);
    if (c->resume && (rc = resume(r))) return rc;
    /* A resumed run's --out may already hold a good checkpoint; a failed save leaves it. */
    r->have_ckpt = c->resume && access(r->ckpt, R_OK) == 0;
    r->metrics = metrics_open(c->out, c->resume ? r->ts.step : -1, r->ts.loader.position == 0);
    if (!r->metrics)
        return cli_error(CMD, CLI_EXIT_FAIL, "cannot write %s/metrics.csv: %s", c->out,
                         strerror(errno));
    return 0;
}

/* done: the fraction of the run behind us (steps or time budget), for the bar. */
static void progress(const run *r, int64_t total, double done, double loss, double acc,
                     double ips, double eta, bool tty)
{
    int64_t step = r->ts.step, epoch = ddn_loader_epoch(r->ld) + 1;
    if (tty) {
        char bar[31] = "";
        int fill = (int)(30 * (done < 0 ? 0 : done > 1 ? 1 : done));
        for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
        bar[30] = '\0';
        char of[32] = ""; /* "/total" when the run is counted in steps */
        if (total > 0) snprintf(of, sizeof of, "/%" PRId64, total);
        fprintf(stderr, "\r[%s] step %" PRId64 "%s epoch %" PRId64 " loss %.4f acc %.1f%% "
                "%.0f img/s ETA %.0fs   ", bar, step, of, epoch, loss, acc, ips, eta);
        fflush(stderr);
    } else {
        printf("step %" PRId64 " epoch %" PRId64 " loss %.4f acc %.2f%% %.1f img/s eta %.0fs\n",
               step, epoch, loss, acc, ips, eta);
        fflush(stdout);
    }
}

/* A failure inside step r->ts.step + 1: the library's message, where we stopped, and what is on
 * disk (failed steps never reach the optimizer, so the last checkpoint is a good one). */
static int step_error(const run *r, const char *what)
{
    const char *msg = what ? what : ddn_ctx_errmsg(r->ctx);
    return cli_error(CMD, CLI_EXIT_FAIL, "step %" PRId64 ": %s; %s%s", r->ts.step + 1,
                     *msg ? msg : "failed", r->have_ckpt ? "last good checkpoint: "
                     : "no checkpoint was written", r->have_ckpt ? r->ckpt : "");
}

/* Test accuracy now: printed, and a metrics row with an empty loss (the plot's accuracy curve). */
static int evaluate(run *r, const char *when, bool mid_epoch)
{
    ddn_ctx *ctx = r->ctx;
    int64_t K = r->c->model.num_classes, *conf = malloc((size_t)(K * K) * 8);
    double acc = conf ? model_evaluate(ctx, &r->m, r->test, r->c->batch, r->c->data.strict, conf, NULL,
                                    0) : -1;
    free(conf);
    if (acc < 0) return conf ? cli_ctx_error(CMD, ctx) : cli_error(CMD, 1, "out of memory");
    int64_t epoch = ddn_loader_epoch(r->ld) + mid_epoch; /* mid-epoch: the one under way */
    printf("%s at step %" PRId64 ": test accuracy %.2f%%\n", when, r->ts.step, acc);
    fflush(stdout);
    fprintf(r->metrics, "%" PRId64 ",%" PRId64 ",,%.9g,%.4f\n", r->ts.step, epoch,
            ddn_optim_lr(r->opt), acc);
    fflush(r->metrics);
    r->evaluated_at = r->ts.step;
    return 0;
}

/* With --schedule cosine and neither --steps nor --epochs the cosine's length is the time budget:
 * after the warm-up its position is the fraction of the budget spent, on a grid of TIME_TICKS
 * virtual steps. Such a run follows the clock, so its resume is not bit-exact. */
#define TIME_TICKS 100000
static double lr_now(const ddn_lr_schedule *s, int64_t step, bool by_time, double budget_frac)
{
    if (!by_time || step < s->warmup_steps) return ddn_lr_at(s, step);
    double f = budget_frac < 0 ? 0 : budget_frac > 1 ? 1 : budget_frac;
    return ddn_lr_at(s, s->warmup_steps + (int64_t)(f * TIME_TICKS));
}

static int train_loop(run *r)
{
    train_cfg *c = r->c;
    ddn_ctx *ctx = r->ctx;
    bool tty = isatty(2);
    int64_t per_epoch = ddn_loader_batches_per_epoch(r->ld);
    int64_t total = c->steps ? c->steps : c->epochs ? c->epochs * per_epoch : 0;
    ddn_lr_schedule sched = {.base_lr = c->lr, .decay = DDN_LR_CONSTANT,
                             .warmup_steps = c->warmup, .warmup_start_factor = 0.01};
    if (c->schedule == 1)
        sched.decay = DDN_LR_STEP, sched.gamma = 0.1,
        sched.step_size = c->lr_step ? c->lr_step : per_epoch;
    bool by_time = c->schedule == 2 && !total && c->time_budget > 0;
    if (c->schedule == 2)
        sched.decay = DDN_LR_COSINE,
        sched.t_max = by_time ? TIME_TICKS : total > c->warmup ? total - c->warmup : 1;
    if (ddn_lr_schedule_check(ctx, &sched) != DDN_OK) return cli_ctx_error(CMD, ctx);
    double t_start = cli_now(), loss_sum = 0, win_t = t_start, last_bar = 0;
    r->t0 = t_start - r->elapsed0;
    int64_t win_n = 0, win_correct = 0, win_images = 0, start = r->ts.step;
    int64_t *pred = malloc((size_t)c->batch * 8), *truth = malloc((size_t)c->batch * 8);
    int rc = pred && truth ? 0 : cli_error(CMD, CLI_EXIT_FAIL, "out of memory");
    bool train_mode = !c->freeze;
    while (!rc) {
        if (c->steps && r->ts.step >= c->steps) break;
        if (c->time_budget > 0 && cli_now() - r->t0 >= c->time_budget) break;
        ddn_tensor *x = NULL, *y = NULL;
        if (ddn_loader_next(r->ld, &x, &y) != DDN_OK) {
            rc = step_error(r, NULL);
            break;
        }
        if (!x) { /* end of an epoch: test accuracy */
            char when[48];
            snprintf(when, sizeof when, "epoch %" PRId64 " done", ddn_loader_epoch(r->ld));
            if (tty) fputc('\n', stderr);
            if ((rc = evaluate(r, when, false))) break;
            if (c->epochs && !c->steps && ddn_loader_epoch(r->ld) >= c->epochs) break;
            continue;
        }
        if (x->shape[0] < 2 && train_mode) {
            /* One image left (an epoch's last batch, or bad images skipped): batch norm's
             * training statistics need two, as PyTorch's; the image is passed over. */
            ddn_ctx_reset_step(ctx);
            continue;
        }
        double lr = lr_now(&sched, r->ts.step, by_time, (cli_now() - r->t0) / c->time_budget);
        ddn_optim_set_lr(r->opt, lr);
        ddn_tensor *logits = model_forward(&r->m, x, train_mode, NULL);
        ddn_tensor *loss = logits ? ddn_cross_entropy(ctx, logits, y, DDN_REDUCTION_MEAN) : NULL;
        if (!loss) {
            rc = step_error(r, NULL);
            break;
        }
        double lv = ddn_tensor_item(loss);
        if (!isfinite(lv)) {
            rc = step_error(r, isnan(lv) ? "the loss is NaN (DDN_CHECK_NUMERICS=1 names the op)"
                                         : "the loss is infinite (DDN_CHECK_NUMERICS=1 names the "
                                           "op)");
            break;
        }
        ddn_tensor *p = ddn_argmax(ctx, logits, 1, false);
        int64_t b = x->shape[0];
        if (!p || ddn_backward(ctx, loss) != DDN_OK || ddn_optim_step(r->opt) != DDN_OK ||
            ddn_tensor_to_host(p, DDN_DTYPE_I64, pred) != DDN_OK ||
            ddn_tensor_to_host(y, DDN_DTYPE_I64, truth) != DDN_OK) {
            rc = step_error(r, NULL);
            break;
        }
        ddn_optim_zero_grad(r->opt);
        ddn_ctx_reset_step(ctx);
        r->ts.step++;
        for (int64_t i = 0; i < b; i++) win_correct += pred[i] == truth[i];
        loss_sum += lv, win_n++, win_images += b;
        fprintf(r->metrics, "%" PRId64 ",%" PRId64 ",%.9g,%.9g,\n", r->ts.step,
                ddn_loader_epoch(r->ld) + 1, lv, lr);
        bool last = (c->steps && r->ts.step >= c->steps) || interrupted;
        bool bar_due = tty && cli_now() - last_bar >= 0.2;
        if (r->ts.step % c->log_every == 0 || last || bar_due) {
            if (tty) last_bar = cli_now();
            double now = cli_now(), ips = (double)win_images / (now - win_t + 1e-9);
            double rate = (double)(r->ts.step - start) / (now - t_start + 1e-9);
            double eta = total > 0 ? (double)(total - r->ts.step) / (rate + 1e-12) : 0;
            if (c->time_budget > 0) eta = c->time_budget - (now - r->t0);
            double done = total > 0 ? (double)r->ts.step / (double)total
                          : c->time_budget > 0 ? (now - r->t0) / c->time_budget : 0;
            progress(r, total, done, loss_sum / (double)win_n,
                     100.0 * (double)win_correct / (double)win_images, ips, eta, tty);
            fflush(r->metrics);
            if (!tty || r->ts.step % c->log_every == 0)
                win_t = now, win_n = 0, win_correct = 0, win_images = 0, loss_sum = 0;
        }
        if (interrupted) {
            if (tty) fputc('\n', stderr);
            rc = save_checkpoint(r);
            if (!rc)
                fprintf(stderr, "ddn train: interrupted after step %" PRId64 "; checkpoint "
                        "written to %s (continue with --resume)\n", r->ts.step, r->ckpt);
            rc = rc ? rc : 130;
            break;
        }
        if (c->ckpt_every && r->ts.step % c->ckpt_every == 0 && (rc = save_checkpoint(r))) break;
    }
    if (tty && !rc) fputc('\n', stderr);
    free(pred), free(truth);
    /* A run that stopped inside an epoch (--steps, --time-budget) still reports test accuracy. */
    if (!rc && r->evaluated_at != r->ts.step) rc = evaluate(r, "final", true);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_cfg c = {.data = {.test_fraction = DATA_TEST_FRACTION},
                   .model = {.arch = 50, .width = 1, .head = DDN_PMAF_IED, .m = 16, .n = 8,
                             .image_size = 32},
                   .batch = 64, .momentum = 0.9, .log_every = 10};
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return rc;
    if (c.threads) ddn_set_num_threads((int)c.threads);
    run r = {.c = &c, .evaluated_at = -1};
    r.ctx = cli_ctx_new(CMD, c.device);
    if (!r.ctx) return CLI_EXIT_FAIL;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    rc = setup(&r);
    if (!rc) {
        printf("ddn train: %s width %g, %s head, %" PRId64 " training and %" PRId64 " test "
               "images, batch %" PRId64 ", from step %" PRId64 "\n",
               train_arch_names[c.model.arch == 18 ? 0 : c.model.arch == 34 ? 1 : 2],
               c.model.width, train_head_names[c.model.head], ddn_dataset_len(r.train),
               ddn_dataset_len(r.test), c.batch, r.ts.step);
        fflush(stdout);
        rc = train_loop(&r);
    }
    if (!rc) rc = save_checkpoint(&r);
    if (!rc && checkpoint_save(r.ctx, r.model_path, &r.m, NULL, NULL, 0, NULL) != DDN_OK)
        rc = cli_error(CMD, CLI_EXIT_FAIL, "cannot write %s: %s", r.model_path,
                       ddn_ctx_errmsg(r.ctx));
    if (r.metrics) fflush(r.metrics);
    if (r.metrics && (!rc || rc == 130)) { /* the plot also shows an interrupted run */
        char csv[4200], png[4200], err[512];
        snprintf(csv, sizeof csv, "%s/metrics.csv", c.out);
        snprintf(png, sizeof png, "%s/plot.png", c.out);
        if (train_plot(csv, png, err, sizeof err) != 0 && !rc)
            rc = cli_error(CMD, CLI_EXIT_FAIL, "%s", err);
    }
    if (!rc || rc == 130) data_report_skipped(r.ld, "training");
    if (!rc)
        printf("done at step %" PRId64 ": model %s, plot %s/plot.png, metrics %s/metrics.csv, "
               "checkpoint %s\n", r.ts.step, r.model_path, c.out, c.out, r.ckpt);
    if (r.metrics) fclose(r.metrics);
    sigaction(SIGINT, &old, NULL);
    ddn_loader_free(r.ld);
    ddn_optim_free(r.opt);
    model_free(&r.m);
    ddn_dataset_free(r.train);
    ddn_dataset_free(r.test);
    ddn_ctx_free(r.ctx);
    return rc;
}
