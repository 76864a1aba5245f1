/* ddn — data for training: datasets (IDX files, image folders), transforms, and a loader that
 * shuffles with a seed, batches into step tensors and decodes ahead on a background thread.
 *
 * Everything random is a pure function of (seed, epoch, item), never of timing or of which
 * thread decoded what, so a run stops and resumes bit-identically from a small loader state
 * (ddn_loader_state: a few int64 values to keep in a checkpoint). A corrupt or unreadable image
 * is skipped and counted, with its path and the reason kept for the trainer to print, or, in
 * strict mode, stops the run with an error naming the path. Nothing here exits, aborts or prints.
 *
 * Threads: call these functions from one thread (the one that owns the context). A loader's
 * prefetch thread only reads the dataset and never touches the context; its errors come back to
 * the caller of ddn_loader_next, which reports them on the context.
 */
#ifndef DDN_DATASET_H
#define DDN_DATASET_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- images ------------------------------------------------------------------------------- */
/* A decoded image: float32 values in [0, 1] (the byte value / 255, as torchvision's ToTensor) laid
 * out H x W x C (interleaved channels); the loader writes C x H x W into its batches. */
typedef struct ddn_image {
    int32_t h, w, c;
    float *data; /* malloc'd, h * w * c values; ddn_image_free releases it */
} ddn_image;

/* Decodes are refused above this many pixels (w * h), checked from the header before anything is
 * allocated: a file declaring 100000 x 100000 fails at once instead of asking for 30 GB. */
#define DDN_IMAGE_MAX_PIXELS_DEFAULT ((int64_t)1 << 25)

/* Reads one PNG, JPEG, BMP or GIF (first frame) file. The format comes from the first bytes, not
 * from the name. channels: 3 (RGB; grey is replicated, alpha dropped, as PIL's convert("RGB"))
 * or 1 (grey; colour becomes stb_image's (77 R + 150 G + 29 B) >> 8, where PIL uses
 * (299 R + 587 G + 114 B) / 1000: values can differ by one). max_pixels <= 0 means the default.
 * Beyond what stb_image checks, the file must be whole: PNG chunk CRCs and an IEND chunk, a JPEG
 * EOI marker after the last scan, a BMP's pixel rows all present, a GIF's blocks up to its
 * trailer (stb_image decodes truncated BMP/GIF files and PNGs with bad CRCs without complaint).
 * Errors: DDN_ERR_IO (cannot open or read, not a regular file), DDN_ERR_FORMAT (anything wrong
 * with the bytes), DDN_ERR_OOM; the message names the path and what was wrong. */
ddn_status ddn_image_load(ddn_ctx *ctx, const char *path, int channels, int64_t max_pixels,
                          ddn_image *out);
void ddn_image_free(ddn_image *img); /* frees data and zeroes the struct; NULL is fine */

/* ---- transforms ----------------------------------------------------------------------------- */
/* One step of a pipeline applied in array order, like torchvision's Compose over ToTensor output.
 * Zero padding (crops) fills with 0 in the values the image has at that point (0 = black before
 * a normalise step, as in torchvision where Normalize comes last). */
typedef enum ddn_transform_kind {
    /* Bilinear resize to (h, w); w == 0: the shorter side becomes h and the longer side
     * int(h * long / short) (torchvision Resize(int)). Antialiased by default: PIL's bilinear
     * filter, whose support widens with the scale when shrinking, evaluated in float; this is
     * torchvision's Resize on float tensors with antialias=True (to float rounding). On PIL
     * images torchvision also rounds to uint8 after each pass, so our values differ from
     * ImageFolder + Resize + ToTensor by at most 1/255. no_antialias: plain bilinear with
     * half-pixel centres (F.interpolate(align_corners=False), torchvision's antialias=False). */
    DDN_TF_RESIZE = 1,
    /* Crop (h, w) from the centre; offsets round((H - h) / 2) with ties to even, as Python's
     * round; a crop larger than the image zero-pads it first ((h - H) // 2 before, the rest
     * after), as torchvision's CenterCrop. */
    DDN_TF_CENTER_CROP,
    /* Zero-pad every side by pad, then crop (h, w) at a random offset, top row drawn first, both
     * uniform over the valid range (torchvision RandomCrop(size, padding=pad)). An image still
     * smaller than the crop after padding is zero-padded around the centre (torchvision raises
     * or, with pad_if_needed, pads differently). */
    DDN_TF_RANDOM_CROP,
    DDN_TF_HFLIP,       /* mirror left-right with probability p (p = 1: always) */
    DDN_TF_GREY_TO_RGB, /* 1 channel -> 3 copies; 3 channels pass unchanged */
    /* (v - mean[c]) / std[c] per channel in float32, as torchvision's Normalize; n_stats = 1
     * uses mean[0] and std[0] for every channel, n_stats = 3 needs a 3-channel image. */
    DDN_TF_NORMALIZE,
} ddn_transform_kind;

typedef struct ddn_transform {
    ddn_transform_kind kind;
    int32_t h, w;      /* resize and crop sizes */
    int32_t pad;       /* random crop: zero padding on each side, >= 0 */
    bool no_antialias; /* resize */
    double p;          /* hflip probability in [0, 1] */
    int32_t n_stats;   /* normalize: 1 or 3 */
    float mean[3], std[3];
} ddn_transform;

static inline ddn_transform ddn_tf_resize(int32_t h, int32_t w)
{
    return (ddn_transform){.kind = DDN_TF_RESIZE, .h = h, .w = w};
}
static inline ddn_transform ddn_tf_center_crop(int32_t h, int32_t w)
{
    return (ddn_transform){.kind = DDN_TF_CENTER_CROP, .h = h, .w = w};
}
static inline ddn_transform ddn_tf_random_crop(int32_t h, int32_t w, int32_t pad)
{
    return (ddn_transform){.kind = DDN_TF_RANDOM_CROP, .h = h, .w = w, .pad = pad};
}
static inline ddn_transform ddn_tf_hflip(double p)
{
    return (ddn_transform){.kind = DDN_TF_HFLIP, .p = p};
}
static inline ddn_transform ddn_tf_grey_to_rgb(void)
{
    return (ddn_transform){.kind = DDN_TF_GREY_TO_RGB};
}
static inline ddn_transform ddn_tf_normalize3(const float mean[3], const float std[3])
{
    return (ddn_transform){.kind = DDN_TF_NORMALIZE, .n_stats = 3,
                           .mean = {mean[0], mean[1], mean[2]}, .std = {std[0], std[1], std[2]}};
}
static inline ddn_transform ddn_tf_normalize1(float mean, float std)
{
    return (ddn_transform){.kind = DDN_TF_NORMALIZE, .n_stats = 1, .mean = {mean}, .std = {std}};
}

/* Checks a pipeline's parameters and computes the output size for an input of c channels and
 * h x w pixels (h = w = 0: size varies per image). *oh = *ow = 0 when the output size still
 * varies (no fixed-size resize or crop). DDN_ERR_ARG names the step and the bad value. */
ddn_status ddn_transform_check(ddn_ctx *ctx, const ddn_transform *tf, int n, int c, int h, int w,
                               int *oc, int *oh, int *ow);
/* Applies n steps to img in place (img->data may be reallocated). Random steps draw from a
 * generator seeded with item_seed only, so an item's result does not depend on anything else. */
ddn_status ddn_transform_apply(ddn_ctx *ctx, const ddn_transform *tf, int n, uint64_t item_seed,
                               ddn_image *img);
/* The item seed the loader uses for dataset item `item` in `epoch` of a run seeded with seed. */
uint64_t ddn_data_item_seed(uint64_t seed, int64_t epoch, int64_t item);

/* ---- datasets ------------------------------------------------------------------------------- */
/* Items with integer labels in [0, num_classes). Reference counted: a subset or loader keeps its
 * source alive, so the caller may free a dataset as soon as it has no direct use for it. */
typedef struct ddn_dataset ddn_dataset;

#define DDN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* An IDX pair: images uint8 (N, H, W) (1 channel) or (N, H, W, C) with C 1 or 3; labels any
 * integer IDX type, shape (N), values >= 0. num_classes is the largest label + 1. */
ddn_dataset *ddn_dataset_idx(ddn_ctx *ctx, const char *images_path, const char *labels_path);
/* Fashion-MNIST from dir (NULL: DDN_FASHION_MNIST_DIR): {train,t10k}-{images-idx3,labels-idx1}-
 * ubyte.gz, with the ten class names. A missing file is DDN_ERR_IO naming it. */
ddn_dataset *ddn_dataset_fashion_mnist(ddn_ctx *ctx, const char *dir, bool train);

typedef struct ddn_folder_opts {
    int channels;       /* 3 (default when 0) or 1 */
    int64_t max_pixels; /* <= 0: DDN_IMAGE_MAX_PIXELS_DEFAULT */
} ddn_folder_opts;

/* An image folder: root/<class>/<file>, one sub-folder per class, class index = position of the
 * folder name in byte-wise sorted order (Python's sorted(), as torchvision's ImageFolder); files
 * are taken in sorted order too. A file is an item when its name ends in .png, .jpg, .jpeg, .bmp
 * or .gif (any case); entries whose names start with '.' are ignored, and so are deeper
 * sub-folders (ImageFolder walks them). Nothing is decoded here: a bad file is found when the
 * loader reads it. Items have 'channels' channels and no fixed size. opts may be NULL. */
ddn_dataset *ddn_dataset_folder(ddn_ctx *ctx, const char *root, const ddn_folder_opts *opts);

/* Train and test sets of a folder. When root/train and root/test are both directories they are
 * the split (classes = the sorted union of the two folders' class names, so a class missing from
 * one side cannot shift the labels of the other). Otherwise root holds the classes and
 * ddn_dataset_split divides them with test_fraction and seed. */
ddn_status ddn_dataset_folder_split(ddn_ctx *ctx, const char *root, const ddn_folder_opts *opts,
                                    double test_fraction, uint64_t seed, ddn_dataset **train,
                                    ddn_dataset **test);
/* A seeded, stratified split: in each class, round(n_class * test_fraction) items (half away from
 * zero) go to test, chosen by one seeded shuffle of all items; both subsets keep the source's
 * item order. Disjoint, together all items, the same for the same seed. 0 < test_fraction < 1. */
ddn_status ddn_dataset_split(ddn_ctx *ctx, ddn_dataset *ds, double test_fraction, uint64_t seed,
                             ddn_dataset **train, ddn_dataset **test);
/* The items idx[0..n) of ds (each in range; repeats allowed), in that order. */
ddn_dataset *ddn_dataset_subset(ddn_ctx *ctx, ddn_dataset *ds, int64_t n, const int64_t *idx);
void ddn_dataset_free(ddn_dataset *ds); /* drops one reference; NULL is fine */

int64_t ddn_dataset_len(const ddn_dataset *ds);
int ddn_dataset_num_classes(const ddn_dataset *ds);
const char *ddn_dataset_class_name(const ddn_dataset *ds, int k); /* NULL when out of range */
int64_t ddn_dataset_label(const ddn_dataset *ds, int64_t i);      /* -1 when out of range */
const char *ddn_dataset_path(const ddn_dataset *ds, int64_t i);   /* NULL for IDX items */
/* Channels and size of every item; h = w = 0 when the size varies (image folders). */
void ddn_dataset_shape(const ddn_dataset *ds, int *c, int *h, int *w);
/* Item i, untransformed, into out (free with ddn_image_free). */
ddn_status ddn_dataset_get(ddn_ctx *ctx, const ddn_dataset *ds, int64_t i, ddn_image *out);

/* ---- the loader ----------------------------------------------------------------------------- */
typedef struct ddn_loader_opts {
    int64_t batch_size;    /* > 0 */
    bool shuffle;          /* a new seeded permutation each epoch; false: item order */
    bool drop_last;        /* drop an epoch's last batch when it is short */
    uint64_t seed;         /* shuffling and random transforms */
    int prefetch;          /* batches decoded ahead by a background thread; 0: no thread */
    bool strict;           /* the first bad image fails ddn_loader_next (default: skip it) */
    const ddn_transform *transforms; /* copied; must give a fixed output size */
    int n_transforms;
} ddn_loader_opts;

typedef struct ddn_loader ddn_loader;

/* Takes a reference on ds. Fails (DDN_ERR_ARG) on an empty dataset, an epoch with no batch
 * (drop_last and fewer items than batch_size), or transforms that leave the size open (image
 * folders need a fixed-size resize or crop). */
ddn_loader *ddn_loader_new(ddn_ctx *ctx, ddn_dataset *ds, const ddn_loader_opts *opts);

/* The next batch: *x float32 (N, C, H, W) and *y int64 (N), step tensors on the context's
 * device. N is batch_size, less for an epoch's short last batch, and less again by the items of
 * the batch that could not be read (skipped and counted); a batch of nothing but bad items is
 * passed over. At the end of an epoch returns DDN_OK with *x = *y = NULL and moves to the next
 * epoch (the prefetch thread is already decoding it). Strict mode: a bad item returns its
 * DDN_ERR_IO/DDN_ERR_FORMAT with the path, and so does every later call until set_state. */
ddn_status ddn_loader_next(ddn_loader *ld, ddn_tensor **x, ddn_tensor **y);

/* Stops the prefetch thread (also mid-epoch, promptly) and frees everything; NULL is fine. */
void ddn_loader_free(ddn_loader *ld);

/* Where a run stands, as int64 values for a checkpoint. version = DDN_LOADER_STATE_VERSION;
 * seed is the uint64 seed's bits; position counts the epoch's items already delivered or
 * skipped (a multiple of batch_size while batch_size stays the same); n_items guards against
 * restoring onto another dataset; skipped is ddn_loader_skipped. */
#define DDN_LOADER_STATE_VERSION 1
typedef struct ddn_loader_state {
    int64_t version, seed, epoch, position, n_items, skipped;
} ddn_loader_state;

ddn_loader_state ddn_loader_get_state(const ddn_loader *ld);
/* Continues from st: the next batch is the one that followed when st was taken (given the same
 * dataset, batch size, shuffle, drop_last and transforms). Discards anything prefetched.
 * DDN_ERR_ARG when the version, n_items or position do not fit this loader. */
ddn_status ddn_loader_set_state(ddn_loader *ld, const ddn_loader_state *st);

int64_t ddn_loader_epoch(const ddn_loader *ld);
int64_t ddn_loader_batches_per_epoch(const ddn_loader *ld); /* counting bad items as present */
/* Output item shape (C, H, W). */
void ddn_loader_item_shape(const ddn_loader *ld, int *c, int *h, int *w);

/* Bad items: skipped counts every skip (an item bad in three epochs counts three times); the list
 * holds each distinct bad item once, in the order met, with its dataset index, its path (NULL
 * for IDX) and the reason (the error message, which also names the path). */
int64_t ddn_loader_skipped(const ddn_loader *ld);
int64_t ddn_loader_bad_count(const ddn_loader *ld);
bool ddn_loader_bad_item(const ddn_loader *ld, int64_t k, int64_t *index, const char **path,
                         const char **reason);

#ifdef __cplusplus
}
#endif
#endif
