/* ddn — image transforms (resize, crops, flip, grey -> RGB, normalise) on H x W x C float images.
 *
 * The arithmetic follows torchvision 0.14 on float tensors, so that tests can compare with it:
 * antialiased resize is PIL's separable bilinear filter (weights renormalised where the window
 * leaves the image), plain resize is half-pixel bilinear with the source clamped at 0, centre
 * crop rounds half to even like Python's round(). Weights are computed in double and each pass
 * is stored as float (torch computes the weights in float: differences stay below 1e-6).
 * Debian's libstb.a does hold stb_image_resize, but its triangle filter clamps at the borders
 * where PIL and torch renormalise the window (shrinking 0 1 2 3 to two pixels gives 0.625 2.375
 * instead of 5/7 16/7), so the filter is written here.
 * Randomness comes from one ddn_rng seeded by the item seed, drawn in pipeline order, and every
 * random step always draws (even at p = 1) so one step's settings never shift another's draws.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"

#define TF_MAX_SIDE (1 << 15) /* resize/crop sizes and padding */

uint64_t ddn_data_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t ddn_data_item_seed(uint64_t seed, int64_t epoch, int64_t item)
{
    uint64_t h = ddn_data_mix64(seed ^ 0x6974656D73656564ull); /* "itemseed" */
    h = ddn_data_mix64(h ^ (uint64_t)epoch);
    return ddn_data_mix64(h ^ (uint64_t)item);
}

static const char *tf_name(ddn_transform_kind k)
{
    switch (k) {
    case DDN_TF_RESIZE: return "resize";
    case DDN_TF_CENTER_CROP: return "center_crop";
    case DDN_TF_RANDOM_CROP: return "random_crop";
    case DDN_TF_HFLIP: return "hflip";
    case DDN_TF_GREY_TO_RGB: return "grey_to_rgb";
    case DDN_TF_NORMALIZE: return "normalize";
    default: return "?";
    }
}

/* torchvision Resize(int): the shorter side becomes size, the longer int(size * long / short). */
static void short_side(int h, int w, int size, int *oh, int *ow)
{
    if (w <= h) {
        *ow = size;
        *oh = (int)((double)((int64_t)size * h) / w);
    } else {
        *oh = size;
        *ow = (int)((double)((int64_t)size * w) / h);
    }
}

static bool side_ok(int32_t v) { return v > 0 && v <= TF_MAX_SIDE; }

ddn_status ddn_data_tf_check(const ddn_transform *tf, int n, int c, int h, int w, int *oc,
                             int *oh, int *ow, char *msg)
{
    if (n < 0 || (n > 0 && !tf))
        return ddn_data_err(msg, DDN_ERR_ARG, "transforms: %d steps with %s array", n,
                            tf ? "an" : "a NULL");
    if (c != 1 && c != 3)
        return ddn_data_err(msg, DDN_ERR_ARG, "transforms: the input has %d channels: expected "
                            "1 or 3", c);
    for (int i = 0; i < n; i++) {
        const ddn_transform *t = &tf[i];
        const char *name = tf_name(t->kind);
        switch (t->kind) {
        case DDN_TF_RESIZE:
            if (!side_ok(t->h) || t->w < 0 || t->w > TF_MAX_SIDE)
                return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (resize): size (%d, "
                                    "%d): expected h in 1..%d and w in 0..%d (0: h is the shorter "
                                    "side)", i, (int)t->h, (int)t->w, TF_MAX_SIDE, TF_MAX_SIDE);
            if (t->w > 0) {
                h = t->h;
                w = t->w;
            } else if (h > 0 && w > 0) {
                short_side(h, w, t->h, &h, &w);
            }
            break;
        case DDN_TF_RANDOM_CROP:
            if (t->pad < 0 || t->pad > TF_MAX_SIDE)
                return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (random_crop): pad %d:"
                                    " expected 0..%d", i, (int)t->pad, TF_MAX_SIDE);
            /* fall through */
        case DDN_TF_CENTER_CROP:
            if (!side_ok(t->h) || !side_ok(t->w))
                return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (%s): size (%d, %d): "
                                    "expected 1..%d each", i, name, (int)t->h, (int)t->w,
                                    TF_MAX_SIDE);
            h = t->h;
            w = t->w;
            break;
        case DDN_TF_HFLIP:
            if (!(t->p >= 0.0 && t->p <= 1.0))
                return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (hflip): p %g: "
                                    "expected 0 to 1", i, t->p);
            break;
        case DDN_TF_GREY_TO_RGB:
            c = 3;
            break;
        case DDN_TF_NORMALIZE:
            if (t->n_stats != 1 && t->n_stats != 3)
                return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (normalize): n_stats "
                                    "%d: expected 1 or 3", i, (int)t->n_stats);
            if (t->n_stats == 3 && c != 3)
                return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (normalize): 3 means "
                                    "and stds for a %d-channel image (add grey_to_rgb first?)",
                                    i, c);
            for (int k = 0; k < t->n_stats; k++)
                if (!isfinite(t->mean[k]) || !isfinite(t->std[k]) || t->std[k] == 0.0f)
                    return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d (normalize): mean"
                                        " %g, std %g for channel %d: expected finite values and "
                                        "std != 0", i, t->mean[k], t->std[k], k);
            break;
        default:
            return ddn_data_err(msg, DDN_ERR_ARG, "transforms: step %d: unknown kind %d", i,
                                (int)t->kind);
        }
    }
    if (oc) *oc = c;
    if (oh) *oh = h;
    if (ow) *ow = w;
    return DDN_OK;
}

/* ---- resize ----------------------------------------------------------------------------------- */
/* Output j of one pass reads cnt[j] inputs from lo[j] with weights wt[j * k ...]. */
typedef struct {
    int *lo, *cnt, k;
    double *wt;
} rs_plan;

static void plan_free(rs_plan *p)
{
    free(p->lo);
    free(p->cnt);
    free(p->wt);
}

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static bool plan_make(rs_plan *p, int in, int out, bool antialias)
{
    double scale = (double)in / out;
    double support = antialias && scale >= 1.0 ? scale : 1.0;
    p->k = antialias ? (int)ceil(support) * 2 + 1 : 2;
    p->lo = malloc((size_t)out * sizeof *p->lo);
    p->cnt = malloc((size_t)out * sizeof *p->cnt);
    p->wt = malloc((size_t)out * (size_t)p->k * sizeof *p->wt);
    if (!p->lo || !p->cnt || !p->wt) {
        plan_free(p);
        return false;
    }
    for (int j = 0; j < out; j++) {
        double *wj = p->wt + (size_t)j * p->k;
        if (antialias) { /* PIL's ImagingResample precompute_coeffs, bilinear filter */
            double center = scale * (j + 0.5), inv = scale >= 1.0 ? 1.0 / scale : 1.0;
            int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
            if (xmin < 0) xmin = 0;
            if (xmax > in) xmax = in;
            int m = xmax - xmin;
            if (m > p->k) m = p->k; /* cannot happen: the window is < 2 support + 1 wide */
            double total = 0.0;
            for (int i = 0; i < m; i++) total += wj[i] = triangle((i + xmin - center + 0.5) * inv);
            for (int i = 0; i < m; i++) wj[i] = total != 0.0 ? wj[i] / total : 0.0;
            p->lo[j] = xmin;
            p->cnt[j] = m;
        } else { /* upsample_bilinear2d, align_corners=False */
            double src = scale * (j + 0.5) - 0.5;
            if (src < 0.0) src = 0.0;
            int x0 = (int)src;
            if (x0 > in - 1) x0 = in - 1;
            double l1 = src - x0;
            p->lo[j] = x0;
            if (x0 < in - 1) {
                p->cnt[j] = 2;
                wj[0] = 1.0 - l1;
                wj[1] = l1;
            } else {
                p->cnt[j] = 1;
                wj[0] = 1.0;
            }
        }
    }
    return true;
}

/* One pass along rows (horizontal: inner = c, along w) or columns. src is h x w x c. */
static float *resize_pass(const float *src, int h, int w, int c, int out, bool horizontal,
                          bool antialias)
{
    rs_plan p;
    if (!plan_make(&p, horizontal ? w : h, out, antialias)) return NULL;
    int oh = horizontal ? h : out, ow = horizontal ? out : w;
    float *dst = malloc((size_t)oh * ow * c * sizeof *dst);
    if (!dst) {
        plan_free(&p);
        return NULL;
    }
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int j = horizontal ? x : y;
            const double *wj = p.wt + (size_t)j * p.k;
            for (int ch = 0; ch < c; ch++) {
                double acc = 0.0;
                for (int i = 0; i < p.cnt[j]; i++) {
                    int sy = horizontal ? y : p.lo[j] + i, sx = horizontal ? p.lo[j] + i : x;
                    acc += wj[i] * src[((size_t)sy * w + sx) * c + ch];
                }
                dst[((size_t)y * ow + x) * c + ch] = (float)acc;
            }
        }
    plan_free(&p);
    return dst;
}

static bool resize(ddn_image *img, int oh, int ow, bool antialias)
{
    if (ow != img->w) {
        float *t = resize_pass(img->data, img->h, img->w, img->c, ow, true, antialias);
        if (!t) return false;
        free(img->data);
        img->data = t;
        img->w = ow;
    }
    if (oh != img->h) {
        float *t = resize_pass(img->data, img->h, img->w, img->c, oh, false, antialias);
        if (!t) return false;
        free(img->data);
        img->data = t;
        img->h = oh;
    }
    return true;
}

/* ---- crops and the rest ----------------------------------------------------------------------- */
/* out(y, x) = in(y + oy, x + ox), zero outside the image. */
static bool crop(ddn_image *img, int oy, int ox, int oh, int ow)
{
    int c = img->c;
    float *dst = malloc((size_t)oh * ow * c * sizeof *dst);
    if (!dst) return false;
    for (int y = 0; y < oh; y++) {
        int sy = y + oy;
        for (int x = 0; x < ow; x++) {
            int sx = x + ox;
            float *d = dst + ((size_t)y * ow + x) * c;
            if (sy < 0 || sy >= img->h || sx < 0 || sx >= img->w)
                memset(d, 0, (size_t)c * sizeof *d);
            else
                memcpy(d, img->data + ((size_t)sy * img->w + sx) * c, (size_t)c * sizeof *d);
        }
    }
    free(img->data);
    img->data = dst;
    img->h = oh;
    img->w = ow;
    return true;
}

/* Centre-crop offset along one side: round((in - out) / 2) half to even, or -(out - in) // 2
 * (the padding before) when the crop is larger. */
static int center_offset(int in, int out)
{
    if (out > in) return -((out - in) / 2);
    int d = in - out, half = d / 2;
    return (d % 2 == 0 || half % 2 == 0) ? half : half + 1;
}

static void hflip(ddn_image *img)
{
    int c = img->c;
    for (int y = 0; y < img->h; y++)
        for (int a = 0, b = img->w - 1; a < b; a++, b--) {
            float *pa = img->data + ((size_t)y * img->w + a) * c;
            float *pb = img->data + ((size_t)y * img->w + b) * c;
            for (int ch = 0; ch < c; ch++) {
                float t = pa[ch];
                pa[ch] = pb[ch];
                pb[ch] = t;
            }
        }
}

static bool grey_to_rgb(ddn_image *img)
{
    if (img->c == 3) return true;
    size_t np = (size_t)img->h * img->w;
    float *dst = malloc(np * 3 * sizeof *dst);
    if (!dst) return false;
    for (size_t i = 0; i < np; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = img->data[i];
    free(img->data);
    img->data = dst;
    img->c = 3;
    return true;
}

static void normalize(ddn_image *img, const ddn_transform *t)
{
    size_t np = (size_t)img->h * img->w;
    for (int ch = 0; ch < img->c; ch++) {
        int k = t->n_stats == 3 ? ch : 0;
        float m = t->mean[k], s = t->std[k];
        for (size_t i = 0; i < np; i++) {
            float *v = &img->data[i * img->c + ch];
            *v = (*v - m) / s;
        }
    }
}

ddn_status ddn_data_tf_apply(const ddn_transform *tf, int n, uint64_t item_seed, ddn_image *img,
                             char *msg)
{
    if (!img || !img->data || img->h <= 0 || img->w <= 0)
        return ddn_data_err(msg, DDN_ERR_ARG, "transforms: the image is NULL or empty");
    ddn_status st = ddn_data_tf_check(tf, n, img->c, img->h, img->w, NULL, NULL, NULL, msg);
    if (st != DDN_OK) return st;
    ddn_rng rng;
    ddn_rng_seed(&rng, item_seed);
    for (int i = 0; i < n; i++) {
        const ddn_transform *t = &tf[i];
        bool ok = true;
        int oh, ow;
        switch (t->kind) {
        case DDN_TF_RESIZE:
            if (t->w > 0) {
                oh = t->h;
                ow = t->w;
            } else {
                short_side(img->h, img->w, t->h, &oh, &ow);
            }
            ok = resize(img, oh, ow, !t->no_antialias);
            break;
        case DDN_TF_CENTER_CROP:
            ok = crop(img, center_offset(img->h, t->h), center_offset(img->w, t->w), t->h, t->w);
            break;
        case DDN_TF_RANDOM_CROP: {
            int64_t ph = (int64_t)img->h + 2 * t->pad, pw = (int64_t)img->w + 2 * t->pad;
            uint64_t i0 = ddn_rng_below(&rng, (uint64_t)(ph >= t->h ? ph - t->h + 1 : 1));
            uint64_t j0 = ddn_rng_below(&rng, (uint64_t)(pw >= t->w ? pw - t->w + 1 : 1));
            int oy = ph >= t->h ? (int)i0 - t->pad : -(int)((t->h - ph) / 2) - t->pad;
            int ox = pw >= t->w ? (int)j0 - t->pad : -(int)((t->w - pw) / 2) - t->pad;
            ok = crop(img, oy, ox, t->h, t->w);
            break;
        }
        case DDN_TF_HFLIP:
            if (ddn_rng_uniform(&rng) < t->p) hflip(img);
            break;
        case DDN_TF_GREY_TO_RGB:
            ok = grey_to_rgb(img);
            break;
        case DDN_TF_NORMALIZE:
            normalize(img, t);
            break;
        }
        if (!ok)
            return ddn_data_err(msg, DDN_ERR_OOM, "transforms: step %d (%s): out of memory for a "
                                "%d x %d x %d image", i, tf_name(t->kind), img->h, img->w,
                                img->c);
    }
    return DDN_OK;
}

ddn_status ddn_transform_check(ddn_ctx *ctx, const ddn_transform *tf, int n, int c, int h, int w,
                               int *oc, int *oh, int *ow)
{
    char msg[DDN_DATA_MSG];
    ddn_status st = ddn_data_tf_check(tf, n, c, h, w, oc, oh, ow, msg);
    return st == DDN_OK ? st : ddn_ctx_set_error(ctx, st, "%s", msg);
}

ddn_status ddn_transform_apply(ddn_ctx *ctx, const ddn_transform *tf, int n, uint64_t item_seed,
                               ddn_image *img)
{
    char msg[DDN_DATA_MSG];
    ddn_status st = ddn_data_tf_apply(tf, n, item_seed, img, msg);
    return st == DDN_OK ? st : ddn_ctx_set_error(ctx, st, "%s", msg);
}
