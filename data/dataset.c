/* ddn — datasets: IDX pairs held in memory, image folders (paths only, decoded on demand), and
 * subsets (an index map onto a source), all behind one reference-counted struct.
 *
 * Folder classes and files are sorted byte-wise (strcmp), which is Python's sorted() on UTF-8
 * names, so class indices agree with torchvision's ImageFolder. Listing never opens images:
 * a bad file is found (and reported with its path) when the loader reads it. Reading an item
 * (ddn_data_item) touches nothing but the dataset, which is immutable once built, so the
 * prefetch thread may call it while the owning thread reads labels and paths.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data_impl.h"
#include "idx.h"

typedef enum { DS_IDX, DS_FOLDER, DS_SUBSET } ds_kind;

struct ddn_dataset {
    ds_kind kind;
    int refs;
    int64_t n;
    int n_classes;
    char **class_names; /* n_classes strings (NULL for a subset: asks its source) */
    int64_t *labels;    /* n */
    int c, h, w;        /* h = w = 0: varies */
    ddn_idx images;     /* DS_IDX */
    char **paths;       /* DS_FOLDER: n */
    int64_t max_pixels;
    ddn_dataset *src;   /* DS_SUBSET */
    int64_t *map;       /* DS_SUBSET: n indices into src */
};

static const char *const FASHION_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                              "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                              "Ankle boot"};

static void free_strings(char **s, int64_t n)
{
    if (!s) return;
    for (int64_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

void ddn_dataset_free(ddn_dataset *ds)
{
    if (!ds || --ds->refs > 0) return;
    free_strings(ds->class_names, ds->class_names ? ds->n_classes : 0);
    free(ds->labels);
    ddn_idx_free(&ds->images);
    free_strings(ds->paths, ds->n);
    free(ds->map);
    ddn_dataset_free(ds->src);
    free(ds);
}

ddn_dataset *ddn_data_ref(ddn_dataset *ds)
{
    ds->refs++;
    return ds;
}

static ddn_dataset *ds_new(ddn_ctx *ctx, ds_kind kind, const char *op)
{
    ddn_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: cannot allocate a dataset", op);
    else {
        ds->kind = kind;
        ds->refs = 1;
    }
    return ds;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- IDX -------------------------------------------------------------------------------------- */
/* Label i of an integer IDX file (the caller has ruled out the float types). */
static int64_t idx_int_label(const ddn_idx *f, int64_t i)
{
    switch (f->type) {
    case 0x08: return ((const uint8_t *)f->data)[i];
    case 0x09: return ((const int8_t *)f->data)[i];
    case 0x0B: return ((const int16_t *)f->data)[i];
    default: return ((const int32_t *)f->data)[i];
    }
}

ddn_dataset *ddn_dataset_idx(ddn_ctx *ctx, const char *images_path, const char *labels_path)
{
    if (!images_path || !labels_path) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_idx: %s path is NULL",
                          images_path ? "the labels" : "the images");
        return NULL;
    }
    ddn_dataset *ds = ds_new(ctx, DS_IDX, "dataset_idx");
    if (!ds) return NULL;
    ddn_idx lab;
    memset(&lab, 0, sizeof lab);
    if (ddn_idx_read(ctx, images_path, &ds->images) != DDN_OK) goto fail;
    if (ddn_idx_read(ctx, labels_path, &lab) != DDN_OK) goto fail;
    const ddn_idx *im = &ds->images;
    if (im->type != 0x08 || (im->ndim != 3 && im->ndim != 4) ||
        (im->ndim == 4 && im->shape[3] != 1 && im->shape[3] != 3)) {
        ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "dataset_idx: %s: expected uint8 images of shape "
                          "(N, H, W) or (N, H, W, C) with C 1 or 3 (type 0x%02x, %d dims)",
                          images_path, im->type, im->ndim);
        goto fail;
    }
    if (im->shape[1] <= 0 || im->shape[2] <= 0 || im->shape[1] > 65535 || im->shape[2] > 65535) {
        ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "dataset_idx: %s: image size %" PRId64 " x %"
                          PRId64 ": expected 1 to 65535 per side", images_path, im->shape[1],
                          im->shape[2]);
        goto fail;
    }
    if (lab.ndim != 1 || lab.shape[0] != im->shape[0] || lab.type == 0x0D || lab.type == 0x0E) {
        ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "dataset_idx: %s: expected %" PRId64 " integer "
                          "labels of shape (N) for the images of %s (type 0x%02x, %d dims, %"
                          PRId64 " items)", labels_path, im->shape[0], images_path, lab.type,
                          lab.ndim, lab.shape[0]);
        goto fail;
    }
    ds->n = im->shape[0];
    ds->c = im->ndim == 4 ? (int)im->shape[3] : 1;
    ds->h = (int)im->shape[1];
    ds->w = (int)im->shape[2];
    ds->labels = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *ds->labels);
    if (!ds->labels) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_idx: cannot allocate %" PRId64 " labels",
                          ds->n);
        goto fail;
    }
    int64_t top = -1;
    for (int64_t i = 0; i < ds->n; i++) {
        int64_t v = idx_int_label(&lab, i);
        if (v < 0 || v > 1000000) {
            ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "dataset_idx: %s: label %" PRId64 " of item %"
                              PRId64 ": expected 0 to 1000000", labels_path, v, i);
            goto fail;
        }
        ds->labels[i] = v;
        if (v > top) top = v;
    }
    ds->n_classes = (int)(top + 1);
    ds->class_names = calloc((size_t)(ds->n_classes ? ds->n_classes : 1), sizeof(char *));
    if (!ds->class_names) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_idx: cannot allocate class names");
        goto fail;
    }
    for (int k = 0; k < ds->n_classes; k++) {
        char num[24];
        snprintf(num, sizeof num, "%d", k);
        if (!(ds->class_names[k] = dup_str(num))) {
            ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_idx: cannot allocate class names");
            goto fail;
        }
    }
    ddn_idx_free(&lab);
    return ds;
fail:
    ddn_idx_free(&lab);
    ddn_dataset_free(ds);
    return NULL;
}

ddn_dataset *ddn_dataset_fashion_mnist(ddn_ctx *ctx, const char *dir, bool train)
{
    if (!dir) dir = DDN_FASHION_MNIST_DIR;
    const char *split = train ? "train" : "t10k";
    char ip[4096], lp[4096];
    int a = snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
    int b = snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (a < 0 || b < 0 || (size_t)a >= sizeof ip || (size_t)b >= sizeof lp) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_fashion_mnist: directory name too long");
        return NULL;
    }
    ddn_dataset *ds = ddn_dataset_idx(ctx, ip, lp);
    if (!ds) return NULL;
    if (ds->n_classes != 10 || ds->c != 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "dataset_fashion_mnist: %s: %d classes of %d "
                          "channels: expected 10 classes of grey images", ip, ds->n_classes,
                          ds->c);
        ddn_dataset_free(ds);
        return NULL;
    }
    for (int k = 0; k < 10; k++) {
        char *s = dup_str(FASHION_NAMES[k]);
        if (!s) continue; /* keeps the numeric name */
        free(ds->class_names[k]);
        ds->class_names[k] = s;
    }
    return ds;
}

/* ---- folders ---------------------------------------------------------------------------------- */
typedef struct {
    char **s;
    int64_t n, cap;
} strlist;

static bool strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 16;
        char **ns = realloc(l->s, (size_t)cap * sizeof *ns);
        if (!ns) return false;
        l->s = ns;
        l->cap = cap;
    }
    if (!(l->s[l->n] = dup_str(s))) return false;
    l->n++;
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool image_name(const char *name)
{
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && strcasecmp(name + n - e, ext[i]) == 0) return true;
    }
    return false;
}

/* Sorted names in dir: sub-folders (want_dirs) or image file names. */
static ddn_status list_dir(ddn_ctx *ctx, const char *dir, bool want_dirs, strlist *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return ddn_ctx_set_error(ctx, DDN_ERR_IO, "dataset_folder: cannot list %s: %s", dir,
                                 strerror(errno));
    ddn_status st = DDN_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                st = ddn_ctx_set_error(ctx, DDN_ERR_IO, "dataset_folder: cannot list %s: %s",
                                       dir, strerror(errno));
            break;
        }
        if (e->d_name[0] == '.') continue;
        bool keep;
        if (want_dirs) {
            char p[4096];
            int k = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            keep = k > 0 && (size_t)k < sizeof p && is_dir(p);
        } else {
            keep = image_name(e->d_name);
        }
        if (keep && !strlist_add(out, e->d_name)) {
            st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_folder: %s: out of memory", dir);
            break;
        }
    }
    closedir(d);
    if (st == DDN_OK && out->n > 1) qsort(out->s, (size_t)out->n, sizeof *out->s, cmp_str);
    return st;
}

/* A folder dataset over root with the given (sorted, unique) class names; a class folder that is
 * missing under root has no items. */
static ddn_dataset *folder_open(ddn_ctx *ctx, const char *root, const ddn_folder_opts *opts,
                                const strlist *classes)
{
    int channels = opts && opts->channels ? opts->channels : 3;
    if (channels != 1 && channels != 3) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: channels %d: expected 1 or 3",
                          channels);
        return NULL;
    }
    if (classes->n > 1000000) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: %s: %" PRId64 " classes", root,
                          classes->n);
        return NULL;
    }
    ddn_dataset *ds = ds_new(ctx, DS_FOLDER, "dataset_folder");
    if (!ds) return NULL;
    ds->c = channels;
    ds->max_pixels = opts && opts->max_pixels > 0 ? opts->max_pixels
                                                  : DDN_IMAGE_MAX_PIXELS_DEFAULT;
    strlist paths = {0}, files = {0};
    int64_t *labels = NULL, cap = 0;
    ds->n_classes = (int)classes->n;
    ds->class_names = calloc((size_t)(classes->n ? classes->n : 1), sizeof(char *));
    if (!ds->class_names) goto oom;
    for (int64_t k = 0; k < classes->n; k++) {
        if (!(ds->class_names[k] = dup_str(classes->s[k]))) goto oom;
        char dir[4096];
        int len = snprintf(dir, sizeof dir, "%s/%s", root, classes->s[k]);
        if (len < 0 || (size_t)len >= sizeof dir) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: path too long under %s", root);
            goto fail;
        }
        if (!is_dir(dir)) continue;
        files.n = 0;
        if (list_dir(ctx, dir, false, &files) != DDN_OK) goto fail;
        for (int64_t i = 0; i < files.n; i++) {
            char p[4096];
            len = snprintf(p, sizeof p, "%s/%s", dir, files.s[i]);
            free(files.s[i]);
            files.s[i] = NULL;
            if (len < 0 || (size_t)len >= sizeof p) {
                ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: path too long in %s", dir);
                goto fail;
            }
            if (!strlist_add(&paths, p)) goto oom;
            if (paths.n > cap) {
                cap = paths.cap;
                int64_t *nl = realloc(labels, (size_t)cap * sizeof *nl);
                if (!nl) goto oom;
                labels = nl;
            }
            labels[paths.n - 1] = k;
        }
    }
    free_strings(files.s, files.n);
    ds->paths = paths.s;
    ds->n = paths.n;
    ds->labels = labels;
    if (ds->n == 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: no images under %s (expected "
                          "%s/<class>/<name>.png|jpg|jpeg|bmp|gif)", root, root);
        ddn_dataset_free(ds);
        return NULL;
    }
    return ds;
oom:
    ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_folder: %s: out of memory", root);
fail:
    free_strings(files.s, files.n);
    free_strings(paths.s, paths.n);
    free(labels);
    ddn_dataset_free(ds);
    return NULL;
}

ddn_dataset *ddn_dataset_folder(ddn_ctx *ctx, const char *root, const ddn_folder_opts *opts)
{
    if (!root) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: root is NULL");
        return NULL;
    }
    strlist classes = {0};
    ddn_dataset *ds = NULL;
    if (list_dir(ctx, root, true, &classes) == DDN_OK) {
        if (classes.n == 0)
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder: %s has no class sub-folders",
                              root);
        else
            ds = folder_open(ctx, root, opts, &classes);
    }
    free_strings(classes.s, classes.n);
    return ds;
}

ddn_status ddn_dataset_folder_split(ddn_ctx *ctx, const char *root, const ddn_folder_opts *opts,
                                    double test_fraction, uint64_t seed, ddn_dataset **train,
                                    ddn_dataset **test)
{
    if (!root || !train || !test)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder_split: NULL argument");
    *train = *test = NULL;
    char tr[4096], te[4096];
    int a = snprintf(tr, sizeof tr, "%s/train", root), b = snprintf(te, sizeof te, "%s/test", root);
    if (a < 0 || b < 0 || (size_t)a >= sizeof tr || (size_t)b >= sizeof te)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder_split: root too long");
    if (!is_dir(tr) || !is_dir(te)) {
        if (!(test_fraction > 0.0 && test_fraction < 1.0))
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder_split: %s has no train/ "
                                     "and test/ folders, and test fraction %g is not in (0, 1)",
                                     root, test_fraction);
        ddn_dataset *all = ddn_dataset_folder(ctx, root, opts);
        if (!all) return ddn_ctx_status(ctx);
        ddn_status st = ddn_dataset_split(ctx, all, test_fraction, seed, train, test);
        ddn_dataset_free(all);
        return st;
    }
    strlist classes = {0}, more = {0};
    ddn_status st = list_dir(ctx, tr, true, &classes);
    if (st == DDN_OK) st = list_dir(ctx, te, true, &more);
    for (int64_t i = 0; st == DDN_OK && i < more.n; i++) { /* the union */
        bool seen = false;
        for (int64_t j = 0; j < classes.n && !seen; j++) seen = strcmp(classes.s[j], more.s[i]) == 0;
        if (!seen && !strlist_add(&classes, more.s[i]))
            st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_folder_split: out of memory");
    }
    if (st == DDN_OK && classes.n == 0)
        st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_folder_split: %s and %s have no class "
                               "sub-folders", tr, te);
    if (st == DDN_OK) {
        qsort(classes.s, (size_t)classes.n, sizeof *classes.s, cmp_str);
        *train = folder_open(ctx, tr, opts, &classes);
        if (*train) *test = folder_open(ctx, te, opts, &classes);
        if (!*test) {
            ddn_dataset_free(*train);
            *train = NULL;
            st = ddn_ctx_status(ctx);
        }
    }
    free_strings(classes.s, classes.n);
    free_strings(more.s, more.n);
    return st;
}

/* ---- subsets and splits ----------------------------------------------------------------------- */
ddn_dataset *ddn_dataset_subset(ddn_ctx *ctx, ddn_dataset *ds, int64_t n, const int64_t *idx)
{
    if (!ds || n < 0 || (n > 0 && !idx)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_subset: NULL dataset or bad index list");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_subset: idx[%" PRId64 "] = %" PRId64
                              ": expected 0 to %" PRId64, i, idx[i], ds->n - 1);
            return NULL;
        }
    ddn_dataset *sub = ds_new(ctx, DS_SUBSET, "dataset_subset");
    if (!sub) return NULL;
    sub->map = malloc((size_t)(n ? n : 1) * sizeof *sub->map);
    sub->labels = malloc((size_t)(n ? n : 1) * sizeof *sub->labels);
    if (!sub->map || !sub->labels) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_subset: cannot allocate %" PRId64 " items",
                          n);
        ddn_dataset_free(sub);
        return NULL;
    }
    /* Map straight to the root source so that item reads never chain through subsets. */
    ddn_dataset *root = ds->kind == DS_SUBSET ? ds->src : ds;
    for (int64_t i = 0; i < n; i++) {
        sub->map[i] = ds->kind == DS_SUBSET ? ds->map[idx[i]] : idx[i];
        sub->labels[i] = ds->labels[idx[i]];
    }
    sub->n = n;
    sub->n_classes = ds->n_classes;
    sub->c = ds->c;
    sub->h = ds->h;
    sub->w = ds->w;
    sub->src = ddn_data_ref(root);
    return sub;
}

ddn_status ddn_dataset_split(ddn_ctx *ctx, ddn_dataset *ds, double test_fraction, uint64_t seed,
                             ddn_dataset **train, ddn_dataset **test)
{
    if (!ds || !train || !test)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_split: NULL argument");
    *train = *test = NULL;
    if (!(test_fraction > 0.0 && test_fraction < 1.0))
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_split: test fraction %g: expected a "
                                 "value in (0, 1)", test_fraction);
    int64_t n = ds->n, nk = ds->n_classes;
    int64_t *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
    int64_t *quota = calloc((size_t)(nk ? nk : 1), sizeof *quota);
    int64_t *tr = malloc((size_t)(n ? n : 1) * sizeof *tr);
    int64_t *te = malloc((size_t)(n ? n : 1) * sizeof *te);
    unsigned char *in_test = calloc((size_t)(n ? n : 1), 1);
    ddn_status st = DDN_OK;
    if (!perm || !quota || !tr || !te || !in_test) {
        st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "dataset_split: out of memory for %" PRId64
                               " items", n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) quota[ds->labels[i]]++;
    for (int64_t k = 0; k < nk; k++)
        quota[k] = (int64_t)floor((double)quota[k] * test_fraction + 0.5);
    ddn_rng rng;
    ddn_rng_seed(&rng, ddn_data_mix64(seed ^ 0x73706c6974ull)); /* "split" */
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ddn_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t k = ds->labels[perm[i]];
        if (quota[k] > 0) {
            quota[k]--;
            in_test[perm[i]] = 1;
        }
    }
    int64_t ntr = 0, nte = 0;
    for (int64_t i = 0; i < n; i++) {
        if (in_test[i]) te[nte++] = i;
        else tr[ntr++] = i;
    }
    *train = ddn_dataset_subset(ctx, ds, ntr, tr);
    *test = *train ? ddn_dataset_subset(ctx, ds, nte, te) : NULL;
    if (!*test) {
        ddn_dataset_free(*train);
        *train = NULL;
        st = ddn_ctx_status(ctx);
    }
done:
    free(perm);
    free(quota);
    free(tr);
    free(te);
    free(in_test);
    return st;
}

/* ---- queries and items ------------------------------------------------------------------------ */
int64_t ddn_dataset_len(const ddn_dataset *ds) { return ds ? ds->n : 0; }
int ddn_dataset_num_classes(const ddn_dataset *ds) { return ds ? ds->n_classes : 0; }

const char *ddn_dataset_class_name(const ddn_dataset *ds, int k)
{
    if (!ds || k < 0 || k >= ds->n_classes) return NULL;
    return ds->kind == DS_SUBSET ? ddn_dataset_class_name(ds->src, k) : ds->class_names[k];
}

int64_t ddn_dataset_label(const ddn_dataset *ds, int64_t i)
{
    return ds && i >= 0 && i < ds->n ? ds->labels[i] : -1;
}

const char *ddn_dataset_path(const ddn_dataset *ds, int64_t i)
{
    if (!ds || i < 0 || i >= ds->n) return NULL;
    if (ds->kind == DS_SUBSET) return ddn_dataset_path(ds->src, ds->map[i]);
    return ds->kind == DS_FOLDER ? ds->paths[i] : NULL;
}

void ddn_dataset_shape(const ddn_dataset *ds, int *c, int *h, int *w)
{
    if (c) *c = ds ? ds->c : 0;
    if (h) *h = ds ? ds->h : 0;
    if (w) *w = ds ? ds->w : 0;
}

ddn_status ddn_data_item(const ddn_dataset *ds, int64_t i, ddn_image *out, char *msg)
{
    memset(out, 0, sizeof *out);
    if (!ds || i < 0 || i >= ds->n)
        return ddn_data_err(msg, DDN_ERR_ARG, "dataset: item %" PRId64 " out of range (%" PRId64
                            " items)", i, ds ? ds->n : 0);
    if (ds->kind == DS_SUBSET) return ddn_data_item(ds->src, ds->map[i], out, msg);
    if (ds->kind == DS_FOLDER)
        return ddn_data_image_read(ds->paths[i], ds->c, ds->max_pixels, out, msg);
    size_t m = (size_t)ds->h * ds->w * ds->c;
    float *d = malloc(m * sizeof *d);
    if (!d) return ddn_data_err(msg, DDN_ERR_OOM, "dataset: cannot allocate an item");
    const uint8_t *src = (const uint8_t *)ds->images.data + (size_t)i * m;
    for (size_t j = 0; j < m; j++) d[j] = (float)src[j] / 255.0f;
    out->h = ds->h;
    out->w = ds->w;
    out->c = ds->c;
    out->data = d;
    return DDN_OK;
}

ddn_status ddn_dataset_get(ddn_ctx *ctx, const ddn_dataset *ds, int64_t i, ddn_image *out)
{
    if (!out) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "dataset_get: out is NULL");
    char msg[DDN_DATA_MSG];
    ddn_status st = ddn_data_item(ds, i, out, msg);
    return st == DDN_OK ? st : ddn_ctx_set_error(ctx, st, "%s", msg);
}
