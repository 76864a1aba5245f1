/* ddn train / ddn eval — the shared model, data, evaluation and checkpoint code (train.h).
 *
 * The optimizer's state is written by ddn_optim_save, whose format (names, metadata, checks on
 * load) is the library's contract; to keep a checkpoint ONE atomic file we let it write a
 * temporary file, copy its tensors in under "optim." and its metadata under "optim.", and on
 * resume do the reverse, so ddn_optim_load still does every check. The temporary files sit next
 * to the checkpoint (same directory, same permissions) and are removed on every path.
 */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const train_arch_names[3] = {"resnet18", "resnet34", "resnet50"};
const char *const train_head_names[3] = {"ied", "less", "linear"};
const char *const train_solver_names[2] = {"pi", "si"};
const char *const train_ied_bw_names[6] = {"ddn-e", "ddn-j", "ift-e", "ift-j", "unroll", "eigh"};
const char *const train_less_bw_names[3] = {"e", "j", "unroll"};

#define FMNIST_MEAN 0.2860f /* of the training pixels / 255 */
#define FMNIST_STD 0.3530f

/* ---- the model ------------------------------------------------------------------------------- */
int model_build(ddn_ctx *ctx, const char *cmd, const model_cfg *c, uint64_t seed, model *out)
{
    memset(out, 0, sizeof *out);
    out->cfg = *c;
    ddn_resnet_opts ro = {.arch = (ddn_resnet_arch)c->arch, .features_only = true,
                          .width = c->width, .seed = seed};
    out->net = ddn_resnet_new(ctx, &ro);
    if (!out->net) return cli_ctx_error(cmd, ctx);
    int64_t ch = ddn_resnet_feature_channels(out->net), side = ddn_resnet_feature_side(c->image_size);
    ddn_pmaf_opts po = {.kind = (ddn_pmaf_kind)c->head, .m = c->m, .n = c->n,
                        .num_classes = c->num_classes, .symmetrize = true,
                        .in_features = c->head == DDN_PMAF_LINEAR ? ch : ch * side * side,
                        .seed = seed + 1};
    po.ied = DDN_IED_OPTS_DEFAULT;
    po.ied.method = c->solver == 1 ? DDN_IED_SI : DDN_IED_PI;
    po.less = DDN_LESS_OPTS_DEFAULT;
    if (c->head == DDN_PMAF_IED) po.ied_backward = (ddn_ied_backward)c->backward;
    if (c->head == DDN_PMAF_LESS) po.less_backward = (ddn_less_backward)c->backward;
    out->head = ddn_pmaf_head_new(ctx, &po);
    if (!out->head) {
        model_free(out);
        return cli_ctx_error(cmd, ctx);
    }
    return 0;
}

void model_free(model *m)
{
    ddn_pmaf_head_free(m->head);
    ddn_resnet_free(m->net);
    m->head = NULL, m->net = NULL;
}

int64_t model_vector_dim(const model *m)
{
    if (m->cfg.head == DDN_PMAF_IED) return m->cfg.m;
    if (m->cfg.head == DDN_PMAF_LESS) return m->cfg.n;
    return ddn_resnet_feature_channels(m->net);
}

ddn_tensor *model_forward(model *m, ddn_tensor *x, bool training, ddn_tensor **vec)
{
    ddn_tensor *f = ddn_resnet_forward(m->net, x, training);
    return f ? ddn_pmaf_head_forward(m->head, f, vec, NULL) : NULL;
}

int model_cfg_meta(const model_cfg *c, const char **meta, char (*buf)[64])
{
    static const char *const keys[] = {"ddn.arch", "ddn.width", "ddn.head", "ddn.m", "ddn.n",
                                       "ddn.solver", "ddn.backward", "ddn.image_size",
                                       "ddn.num_classes"};
    snprintf(buf[0], 64, "%s", train_arch_names[c->arch == 18 ? 0 : c->arch == 34 ? 1 : 2]);
    snprintf(buf[1], 64, "%.17g", c->width);
    snprintf(buf[2], 64, "%s", train_head_names[c->head]);
    snprintf(buf[3], 64, "%" PRId64, c->m);
    snprintf(buf[4], 64, "%" PRId64, c->n);
    snprintf(buf[5], 64, "%s", train_solver_names[c->solver]);
    snprintf(buf[6], 64, "%s", c->head == DDN_PMAF_IED    ? train_ied_bw_names[c->backward]
                               : c->head == DDN_PMAF_LESS ? train_less_bw_names[c->backward]
                                                          : "none");
    snprintf(buf[7], 64, "%" PRId64, c->image_size);
    snprintf(buf[8], 64, "%" PRId64, c->num_classes);
    for (int k = 0; k < 9; k++) meta[2 * k] = keys[k], meta[2 * k + 1] = buf[k];
    return 9;
}

static int find_name(const char *s, const char *const *names, int n)
{
    for (int k = 0; s && k < n; k++)
        if (!strcmp(s, names[k])) return k;
    return -1;
}

int model_cfg_from_file(const char *cmd, const ddn_st_file *f, const char *path, model_cfg *c)
{
    const char *arch = ddn_safetensors_metadata(f, "ddn.arch");
    const char *head = ddn_safetensors_metadata(f, "ddn.head");
    const char *width = ddn_safetensors_metadata(f, "ddn.width");
    const char *m = ddn_safetensors_metadata(f, "ddn.m"), *n = ddn_safetensors_metadata(f, "ddn.n");
    const char *solver = ddn_safetensors_metadata(f, "ddn.solver");
    const char *bw = ddn_safetensors_metadata(f, "ddn.backward");
    const char *size = ddn_safetensors_metadata(f, "ddn.image_size");
    const char *classes = ddn_safetensors_metadata(f, "ddn.num_classes");
    int a = find_name(arch, train_arch_names, 3), h = find_name(head, train_head_names, 3);
    if (a < 0 || h < 0 || !width || !m || !n || !size || !classes || !solver || !bw)
        return cli_error(cmd, CLI_EXIT_FAIL, "%s is not a checkpoint or model written by ddn "
                         "train (its metadata lacks the model options)", path);
    c->arch = a == 0 ? 18 : a == 1 ? 34 : 50;
    c->head = h;
    c->width = strtod(width, NULL);
    c->m = strtoll(m, NULL, 10), c->n = strtoll(n, NULL, 10);
    c->image_size = strtoll(size, NULL, 10), c->num_classes = strtoll(classes, NULL, 10);
    c->solver = find_name(solver, train_solver_names, 2);
    c->backward = h == DDN_PMAF_IED ? find_name(bw, train_ied_bw_names, 6)
                  : h == DDN_PMAF_LESS ? find_name(bw, train_less_bw_names, 3) : 0;
    if (c->solver < 0 || c->backward < 0 || !(c->width > 0) || c->image_size < 1 ||
        c->num_classes < 2)
        return cli_error(cmd, CLI_EXIT_FAIL, "%s: metadata holds invalid model options", path);
    return 0;
}

static ddn_status load_registry(ddn_ctx *ctx, ddn_params *p, const ddn_st_file *f,
                                const char *path)
{
    for (int64_t i = 0; i < ddn_params_count(p); i++) {
        const char *name = ddn_params_name(p, i);
        int nd;
        ddn_st_dtype dt;
        int64_t sh[DDN_MAX_DIMS];
        if (!ddn_safetensors_info(f, name, &dt, &nd, sh))
            return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "%.200s has no tensor '%.200s'", path,
                                     name);
        ddn_status st = ddn_safetensors_read_into(ctx, f, name, ddn_params_at(p, i));
        if (st != DDN_OK) return st;
    }
    return DDN_OK;
}

ddn_status model_load(ddn_ctx *ctx, model *m, const ddn_st_file *f, const char *path)
{
    ddn_status st = load_registry(ctx, ddn_resnet_params(m->net), f, path);
    return st != DDN_OK ? st : load_registry(ctx, ddn_pmaf_head_params(m->head), f, path);
}

/* ---- data ------------------------------------------------------------------------------------ */
static bool is_file(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int data_open(ddn_ctx *ctx, const char *cmd, const data_cfg *d, bool train, ddn_dataset **out)
{
    *out = NULL;
    ddn_dataset *ds = NULL;
    int64_t subset = train ? d->train_subset : d->test_subset;
    /* A directory without the IDX files is an image folder; anything else (a missing directory
     * included) is reported as missing Fashion-MNIST files, the default's likely problem. */
    if (!d->dir || !is_dir(d->dir) || is_file(d->dir, "train-images-idx3-ubyte.gz")) {
        ds = ddn_dataset_fashion_mnist(ctx, d->dir, train);
        if (!ds)
            return cli_error(cmd, CLI_EXIT_FAIL, "%s (install Debian's dataset-fashion-mnist or "
                             "pass --data DIR: the IDX files or an image folder)",
                             ddn_ctx_errmsg(ctx));
    } else {
        ddn_dataset *tr = NULL, *te = NULL;
        if (ddn_dataset_folder_split(ctx, d->dir, NULL, d->test_fraction, DATA_SPLIT_SEED, &tr,
                                     &te) != DDN_OK)
            return cli_error(cmd, CLI_EXIT_FAIL, "--data %s: %s", d->dir, ddn_ctx_errmsg(ctx));
        ds = train ? tr : te;
        ddn_dataset_free(train ? te : tr);
    }
    if (subset > 0 && subset < ddn_dataset_len(ds)) {
        int64_t *idx = malloc((size_t)subset * sizeof *idx);
        if (!idx) {
            ddn_dataset_free(ds);
            return cli_error(cmd, CLI_EXIT_FAIL, "out of memory");
        }
        for (int64_t i = 0; i < subset; i++) idx[i] = i;
        ddn_dataset *sub = ddn_dataset_subset(ctx, ds, subset, idx);
        free(idx);
        ddn_dataset_free(ds);
        if (!sub) return cli_ctx_error(cmd, ctx);
        ds = sub;
    }
    *out = ds;
    return 0;
}

int data_transforms(const ddn_dataset *ds, int64_t image_size, ddn_transform *tf)
{
    static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    int c, h, w;
    ddn_dataset_shape(ds, &c, &h, &w);
    int32_t s = (int32_t)image_size;
    if (c == 1) {
        tf[0] = ddn_tf_resize(s, s);
        tf[1] = ddn_tf_grey_to_rgb();
        tf[2] = ddn_tf_normalize1(FMNIST_MEAN, FMNIST_STD);
        return 3;
    }
    tf[0] = ddn_tf_resize(s, 0);
    tf[1] = ddn_tf_center_crop(s, s);
    tf[2] = ddn_tf_normalize3(imagenet_mean, imagenet_std);
    return 3;
}

void data_report_skipped(const ddn_loader *ld, const char *what)
{
    int64_t skipped = ddn_loader_skipped(ld), bad = ddn_loader_bad_count(ld);
    if (!skipped) return;
    printf("skipped %" PRId64 " unreadable %s image%s (%" PRId64 " distinct; --strict-data stops "
           "at the first instead):\n", skipped, what, skipped == 1 ? "" : "s", bad);
    for (int64_t k = 0; k < bad && k < 10; k++) {
        int64_t index;
        const char *path, *reason;
        if (ddn_loader_bad_item(ld, k, &index, &path, &reason))
            printf("  %s\n", reason);
    }
    if (bad > 10) printf("  ... and %" PRId64 " more\n", bad - 10);
}

double model_evaluate(ddn_ctx *ctx, model *m, ddn_dataset *ds, int64_t batch, bool strict,
                      int64_t *confusion, float *features, int64_t feat_dim)
{
    ddn_transform tf[4];
    int n_tf = data_transforms(ds, m->cfg.image_size, tf);
    ddn_loader_opts lo = {.batch_size = batch, .prefetch = 1, .strict = strict || features,
                          .transforms = tf, .n_transforms = n_tf};
    ddn_loader *ld = ddn_loader_new(ctx, ds, &lo);
    if (!ld) return -1;
    int64_t K = m->cfg.num_classes, done = 0, correct = 0;
    memset(confusion, 0, (size_t)(K * K) * sizeof *confusion);
    bool prev = ddn_set_grad_enabled(ctx, false);
    int64_t *pred = malloc((size_t)batch * sizeof *pred), *truth = malloc((size_t)batch * 8);
    double acc = -1;
    for (bool ok = pred && truth;;) {
        ddn_tensor *x = NULL, *y = NULL, *vec = NULL;
        if (!ok || ddn_loader_next(ld, &x, &y) != DDN_OK) break;
        if (!x) {
            acc = done ? 100.0 * (double)correct / (double)done : 0;
            break;
        }
        int64_t b = x->shape[0];
        ddn_tensor *p = ddn_argmax(ctx, model_forward(m, x, false, features ? &vec : NULL), 1,
                                   false);
        if (!p || ddn_tensor_to_host(p, DDN_DTYPE_I64, pred) != DDN_OK ||
            ddn_tensor_to_host(y, DDN_DTYPE_I64, truth) != DDN_OK)
            break;
        if (features && (!vec || ddn_tensor_to_host(vec, DDN_DTYPE_F32,
                                                    features + done * feat_dim) != DDN_OK))
            break;
        for (int64_t i = 0; i < b; i++) {
            correct += pred[i] == truth[i];
            if (truth[i] >= 0 && truth[i] < K && pred[i] >= 0 && pred[i] < K)
                confusion[truth[i] * K + pred[i]]++;
        }
        done += b;
        ddn_ctx_reset_step(ctx);
    }
    ddn_ctx_reset_step(ctx);
    ddn_set_grad_enabled(ctx, prev);
    free(pred), free(truth);
    if (acc >= 0) data_report_skipped(ld, "test");
    ddn_loader_free(ld);
    if (acc < 0 && ddn_ctx_status(ctx) == DDN_OK)
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "evaluate: out of memory");
    return acc;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */
#define MAX_META 48

static void add_registry(ddn_params *p, ddn_st_entry *e, int *n)
{
    for (int64_t i = 0; i < ddn_params_count(p); i++)
        e[(*n)++] = (ddn_st_entry){.name = ddn_params_name(p, i), .tensor = ddn_params_at(p, i)};
}

static void rng_pack(const ddn_rng *r, int64_t *v)
{
    for (int k = 0; k < 4; k++) memcpy(&v[k], &r->s[k], 8);
    memcpy(&v[4], &r->spare_normal, 8);
    v[5] = r->has_spare;
}

static void rng_unpack(const int64_t *v, ddn_rng *r)
{
    for (int k = 0; k < 4; k++) memcpy(&r->s[k], &v[k], 8);
    memcpy(&r->spare_normal, &v[4], 8);
    r->has_spare = (int)v[5];
}

static void temp_path(const char *path, const char *tag, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s.%ld.tmp", path, tag, (long)getpid());
}

ddn_status checkpoint_save(ddn_ctx *ctx, const char *path, model *m, ddn_optim *opt,
                           const train_state *ts, int n_extra, const char *const *extra)
{
    char tmp[4200];
    temp_path(path, "optim", tmp, sizeof tmp);
    ddn_st_file *of = NULL;
    ddn_status st = DDN_OK;
    if (opt) {
        st = ddn_optim_save(opt, tmp);
        if (st == DDN_OK) st = ddn_safetensors_open(ctx, tmp, &of);
        unlink(tmp);
        if (st != DDN_OK) return st;
    }
    ddn_params *bp = ddn_resnet_params(m->net), *hp = ddn_pmaf_head_params(m->head);
    int64_t n_opt = of ? ddn_safetensors_count(of) : 0;
    int64_t cap = ddn_params_count(bp) + ddn_params_count(hp) + n_opt + 3;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_st_entry *e = ddn_ctx_scratch(ctx, (size_t)cap * sizeof *e);
    char *names = ddn_ctx_scratch(ctx, (size_t)(n_opt ? n_opt : 1) * 320);
    if (!e || !names) st = ddn_ctx_status(ctx);
    int n = 0;
    if (st == DDN_OK) {
        add_registry(bp, e, &n);
        add_registry(hp, e, &n);
    }
    for (int64_t i = 0; i < n_opt && st == DDN_OK; i++) {
        const char *name = ddn_safetensors_name(of, i);
        snprintf(names + i * 320, 320, "optim.%s", name);
        ddn_tensor *t = ddn_safetensors_get(ctx, of, name);
        if (!t) st = ddn_ctx_status(ctx);
        e[n++] = (ddn_st_entry){.name = names + i * 320, .tensor = t};
    }
    int64_t rng[6], step = ts ? ts->step : 0;
    if (ts) rng_pack(&ts->rng, rng);
    int64_t ld[6] = {0};
    if (ts) {
        const ddn_loader_state *l = &ts->loader;
        int64_t v[6] = {l->version, l->seed, l->epoch, l->position, l->n_items, l->skipped};
        memcpy(ld, v, sizeof v);
    }
    if (st == DDN_OK && ts) {
        ddn_tensor *a = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, 0, NULL, &step);
        ddn_tensor *b = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, 1, (int64_t[]){6}, rng);
        ddn_tensor *c = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, 1, (int64_t[]){6}, ld);
        if (!a || !b || !c) st = ddn_ctx_status(ctx);
        e[n++] = (ddn_st_entry){.name = "trainer.step", .tensor = a};
        e[n++] = (ddn_st_entry){.name = "trainer.rng", .tensor = b};
        e[n++] = (ddn_st_entry){.name = "trainer.loader", .tensor = c};
    }
    const char *meta[2 * MAX_META];
    char buf[MAX_META][64];
    int nm = model_cfg_meta(&m->cfg, meta, buf);
    static const char *const okeys[] = {"ddn.optimizer", "ddn.params", "ddn.keys", "ddn.lr",
                                        "ddn.hyper"};
    for (int k = 0; of && k < 5; k++) {
        const char *v = ddn_safetensors_metadata(of, okeys[k]);
        if (!v) continue;
        snprintf(buf[nm], 64, "optim.%s", okeys[k]);
        meta[2 * nm] = buf[nm], meta[2 * nm + 1] = v;
        nm++;
    }
    for (int k = 0; k < n_extra && nm < MAX_META; k++, nm++)
        meta[2 * nm] = extra[2 * k], meta[2 * nm + 1] = extra[2 * k + 1];
    if (st == DDN_OK) st = ddn_safetensors_save(ctx, path, n, e, nm, meta);
    ddn_ctx_rewind(ctx, mark);
    ddn_safetensors_close(of);
    return st;
}

static ddn_status get_i64(ddn_ctx *ctx, const ddn_st_file *f, const char *path, const char *name,
                          int64_t numel, int64_t *out)
{
    ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
    if (!t) return ddn_ctx_status(ctx);
    if (ddn_tensor_numel(t) != numel)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "%.200s: '%s' has %" PRId64 " values, "
                                 "expected %" PRId64, path, name, ddn_tensor_numel(t), numel);
    return ddn_tensor_to_host(t, DDN_DTYPE_I64, out);
}

ddn_status checkpoint_load(ddn_ctx *ctx, const char *path, const ddn_st_file *f, model *m,
                           ddn_optim *opt, train_state *ts)
{
    int64_t step, rng[6], ld[6];
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_status st = get_i64(ctx, f, path, "trainer.step", 1, &step);
    if (st == DDN_OK) st = get_i64(ctx, f, path, "trainer.rng", 6, rng);
    if (st == DDN_OK) st = get_i64(ctx, f, path, "trainer.loader", 6, ld);
    if (st != DDN_OK) {
        ddn_ctx_rewind(ctx, mark);
        return st;
    }
    /* The optimizer's entries and metadata are its own state file's under "optim.". */
    if (opt) st = ddn_optim_load_from(opt, f, "optim.", path);
    ddn_ctx_rewind(ctx, mark);
    if (st == DDN_OK) st = model_load(ctx, m, f, path);
    if (st != DDN_OK) return st;
    ts->step = step;
    rng_unpack(rng, &ts->rng);
    ts->loader = (ddn_loader_state){ld[0], ld[1], ld[2], ld[3], ld[4], ld[5]};
    return DDN_OK;
}
