/* ddn features — ResNet backbone features for a batch of images (DESIGN.md "The command-line
 * program").
 *
 *     ddn features --arch resnet50 --weights W --input X --output Y
 *
 * Images come from X's tensor `images` (N,3,H,W) or from image files (--images), decoded and
 * transformed as torchvision's eval pipeline (Resize(256), CenterCrop(224), ImageNet Normalize).
 * Y gets `features` (N,C,h,w) before pooling and `pooled` (N,C), float32. The network runs in
 * eval mode with the tape off, --batch images at a time; the step arena is reset between batches
 * so memory stays that of one batch whatever N is. Tests: tests/test_cli_features.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CMD "features"

static const char *const arch_names[] = {"resnet18", "resnet34", "resnet50"};
static const ddn_resnet_arch arch_ids[] = {DDN_RESNET18, DDN_RESNET34, DDN_RESNET50};

static const char help[] =
    "usage: ddn features --arch resnet18|resnet34|resnet50 --weights W.safetensors\n"
    "                    (--input X.safetensors | --images FILE...) --output Y.safetensors\n"
    "\n"
    "Runs a ResNet backbone (eval mode: BN running statistics) and writes its features.\n"
    "  W        torchvision state_dict names (tools/export_torchvision.py); 'fc.*' is ignored, so\n"
    "           a full classifier export works; every other tensor of the arch must be present\n"
    "           with its shape, and nothing else (a file for another arch is refused)\n"
    "  X holds  images (N,3,H,W), any float dtype (computed in float32)\n"
    "  --images PNG, JPEG, BMP or GIF files: RGB, resized so the short side is 256, centre-\n"
    "           cropped to 224x224, normalised with ImageNet mean (0.485,0.456,0.406) and std\n"
    "           (0.229,0.224,0.225), as torchvision's eval transforms\n"
    "  Y gets   features (N,C,h,w) before pooling (C = 512 for resnet18/34, 2048 for resnet50;\n"
    "           h,w = H/32, W/32 rounded up) and pooled (N,C), their mean over h,w; float32\n"
    "\n"
    "options:\n"
    "  --batch N      images per forward pass (default 8)\n"
    "  --threads N    CPU threads (default: the library's)\n"
    "  --device D     cpu (default) or cuda: where the network runs (images are read and the\n"
    "                 output written on the host either way)\n"
    "  --width X      channel multiplier of the model (default 1; small widths are for tests:\n"
    "                 the weights must have been made for the same width)\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on a bad command line; one line on stderr.\n";

typedef struct features_cfg {
    int arch;
    const char *weights, *input, *output;
    const char **images; /* --images values (pointers into argv) */
    int n_images;
    int64_t batch, threads;
    double width;
    ddn_device device;
} features_cfg;

/* Reads argv into c; returns -1 to continue, or an exit code (0 after --help). */
static int parse_args(int argc, char **argv, features_cfg *c)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int r, e = 0;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        }
#define OPT(name) ((r = cli_opt(CMD, argc, argv, &i, name, &v)) != 0)
        if (OPT("--arch")) {
            e = r < 0 || cli_parse_choice(CMD, "--arch", v, arch_names, 3, &c->arch);
        } else if (OPT("--weights")) {
            c->weights = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--input")) {
            c->input = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--output")) {
            c->output = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--images")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (c->n_images)
                return cli_error(CMD, CLI_EXIT_USAGE, "--images given twice; list every file "
                                 "after one --images");
            /* The list runs to the next option: "--images a.png b.png --output ...". */
            c->images[c->n_images++] = v;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                c->images[c->n_images++] = argv[++i];
        } else if (OPT("--batch")) {
            e = r < 0 || cli_parse_int(CMD, "--batch", v, 1, 1 << 20, &c->batch);
        } else if (OPT("--threads")) {
            e = r < 0 || cli_parse_int(CMD, "--threads", v, 1, 1024, &c->threads);
        } else if (OPT("--device")) {
            e = r < 0 || cli_parse_device(CMD, v, &c->device);
        } else if (OPT("--width")) {
            e = r < 0 || cli_parse_double(CMD, "--width", v, 1e-6, 64, &c->width);
        } else {
            return cli_unknown(CMD, a);
        }
#undef OPT
        if (e) return CLI_EXIT_USAGE;
    }
    if (c->arch < 0)
        return cli_error(CMD, CLI_EXIT_USAGE, "missing --arch resnet18|resnet34|resnet50 (see "
                         "ddn features --help)");
    if (!c->weights) return cli_error(CMD, CLI_EXIT_USAGE, "missing --weights W.safetensors");
    if (!c->input && !c->n_images)
        return cli_error(CMD, CLI_EXIT_USAGE, "missing --input X.safetensors or --images FILE...");
    if (c->input && c->n_images)
        return cli_error(CMD, CLI_EXIT_USAGE, "--input and --images exclude each other");
    if (!c->output) return cli_error(CMD, CLI_EXIT_USAGE, "missing --output Y.safetensors");
    return -1;
}

/* ---- inputs ----------------------------------------------------------------------------------- */
/* With --device cuda the network lives in a device context and everything read or written on
 * the host (input images, outputs, files) in a CPU context `io`; on the CPU both are one. */
typedef struct features_run {
    ddn_ctx *ctx, *io;
    ddn_resnet *net;
    ddn_tensor *images;            /* --input: (N,3,H,W) float32, persistent, in io */
    ddn_tensor *features, *pooled; /* outputs, persistent in io, made after the first batch */
    int64_t N;
} features_run;

/* Reads `images` of the input file into a persistent float32 tensor (batches are step tensors,
 * so the data must survive the resets between them). */
static int load_input(features_run *r, const features_cfg *c)
{
    ddn_st_file *f = NULL;
    if (ddn_safetensors_open(r->io, c->input, &f) != DDN_OK) return cli_ctx_error(CMD, r->io);
    ddn_st_dtype dt;
    int nd;
    int64_t s[DDN_MAX_DIMS];
    char got[96];
    int rc = -1;
    if (!ddn_safetensors_info(f, "images", &dt, &nd, s)) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "%s has no tensor 'images' (expected images (N,3,H,W))",
                       c->input);
    } else if (dt != DDN_ST_F32 && dt != DDN_ST_F64 && dt != DDN_ST_F16 && dt != DDN_ST_BF16) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "%s: tensor 'images' is %s; expected a float dtype",
                       c->input, ddn_st_dtype_name(dt));
    } else if (nd != 4 || s[1] != 3 || s[0] < 1 || s[2] < 1 || s[3] < 1) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "%s: tensor 'images' has shape %s; expected (N,3,H,W) "
                       "with N, H, W >= 1", c->input, ddn_shape_str_raw(nd, s, got, sizeof got));
    } else {
        r->images = ddn_tensor_new_persistent(r->io, DDN_DTYPE_F32, 4, s);
        if (!r->images || ddn_safetensors_read_into(r->io, f, "images", r->images) != DDN_OK)
            rc = cli_ctx_error(CMD, r->io);
        r->N = s[0];
    }
    ddn_safetensors_close(f);
    return rc;
}

/* Decodes and transforms files [i0, i0 + n) into one step tensor (n,3,224,224). */
static ddn_tensor *image_batch(ddn_ctx *ctx, const features_cfg *c, int64_t i0, int64_t n)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const ddn_transform tf[] = {ddn_tf_resize(256, 0), ddn_tf_center_crop(224, 224),
                                ddn_tf_normalize3(mean, std)};
    ddn_tensor *x = ddn_tensor_new(ctx, DDN_DTYPE_F32, DDN_SHAPE(n, 3, 224, 224));
    if (!x) return NULL;
    float *dst = ddn_tensor_ptr(x);
    for (int64_t k = 0; k < n; k++) {
        ddn_image img = {0};
        if (ddn_image_load(ctx, c->images[i0 + k], 3, 0, &img) != DDN_OK) return NULL;
        if (ddn_transform_apply(ctx, tf, 3, 0, &img) != DDN_OK) {
            ddn_image_free(&img);
            return NULL;
        }
        if (img.h != 224 || img.w != 224 || img.c != 3) { /* the pipeline guarantees it */
            ddn_ctx_set_error(ctx, DDN_ERR_STATE, "%s: transformed to %dx%dx%d, not 224x224x3",
                              c->images[i0 + k], img.h, img.w, img.c);
            ddn_image_free(&img);
            return NULL;
        }
        /* H x W x C (interleaved) -> C x H x W, as the loader writes its batches. */
        float *d = dst + k * 3 * 224 * 224;
        for (int64_t p = 0; p < 224 * 224; p++)
            for (int ch = 0; ch < 3; ch++) d[ch * 224 * 224 + p] = img.data[p * 3 + ch];
        ddn_image_free(&img);
    }
    return x;
}

/* ---- the network ------------------------------------------------------------------------------ */
static int load_model(features_run *r, const features_cfg *c)
{
    ddn_resnet_opts o = {.arch = arch_ids[c->arch], .features_only = true, .width = c->width};
    r->net = ddn_resnet_new(r->ctx, &o);
    if (!r->net) return cli_ctx_error(CMD, r->ctx);
    /* Strict apart from fc.*: a full classifier export loads, while a file for another arch or
     * width (ResNet-34's blocks hold ResNet-18's, same shapes) is refused with the loader's list
     * of missing, unexpected and wrongly shaped names instead of running half-initialised. */
    ddn_params_load_opts lo = {.strict = true, .skip_prefix = "fc."};
    if (ddn_params_load(ddn_resnet_params(r->net), c->weights, lo) != DDN_OK)
        return cli_ctx_error(CMD, r->ctx);
    return -1;
}

/* Runs images [i0, i0 + n) and copies their features and pooled features into the outputs. */
static int run_batch(features_run *r, const features_cfg *c, int64_t i0, int64_t n)
{
    ddn_ctx *ctx = r->ctx;
    ddn_tensor *x;
    if (r->images) {
        const int64_t *s = r->images->shape;
        x = ddn_tensor_from_host(ctx, DDN_DTYPE_F32, DDN_SHAPE(n, s[1], s[2], s[3]),
                                 (const float *)ddn_tensor_ptr(r->images) + i0 * s[1] * s[2] * s[3]);
    } else {
        x = image_batch(r->io, c, i0, n);
        if (!x) return cli_ctx_error(CMD, r->io);
        if (r->io != ctx) x = ddn_tensor_to(ctx, x, c->device);
    }
    if (!x) return cli_ctx_error(CMD, ctx);
    ddn_tensor *y = ddn_resnet_forward(r->net, x, false);
    ddn_tensor *p = y ? ddn_adaptive_avg_pool2d(ctx, y, 1, 1) : NULL;
    if (!y || !p) return cli_ctx_error(CMD, ctx);
    if (!r->features) {
        int64_t C = y->shape[1];
        r->features = ddn_tensor_new_persistent(r->io, DDN_DTYPE_F32,
                                                DDN_SHAPE(r->N, C, y->shape[2], y->shape[3]));
        r->pooled = ddn_tensor_new_persistent(r->io, DDN_DTYPE_F32, DDN_SHAPE(r->N, C));
        if (!r->features || !r->pooled) return cli_ctx_error(CMD, r->io);
    }
    int64_t per = ddn_tensor_numel(y) / n, C = r->pooled->shape[1];
    if (ddn_tensor_to_host(y, DDN_DTYPE_F32, (float *)ddn_tensor_ptr(r->features) + i0 * per) !=
            DDN_OK ||
        ddn_tensor_to_host(p, DDN_DTYPE_F32, (float *)ddn_tensor_ptr(r->pooled) + i0 * C) != DDN_OK)
        return cli_ctx_error(CMD, ctx);
    return -1;
}

static int save_outputs(features_run *r, const features_cfg *c)
{
    ddn_st_entry e[2] = {{"features", r->features, DDN_ST_F32}, {"pooled", r->pooled, DDN_ST_F32}};
    char version[32], width[32];
    snprintf(version, sizeof version, "%d.%d.%d", DDN_VERSION_MAJOR, DDN_VERSION_MINOR,
             DDN_VERSION_PATCH);
    snprintf(width, sizeof width, "%g", c->width);
    const char *meta[] = {"arch", arch_names[c->arch], "width", width, "ddn", version};
    if (ddn_safetensors_save(r->io, c->output, 2, e, 3, meta) != DDN_OK)
        return cli_ctx_error(CMD, r->io);
    return -1;
}

int cmd_features(int argc, char **argv)
{
    features_cfg c = {.arch = -1, .batch = 8, .width = 1.0};
    c.images = malloc(sizeof *c.images * (size_t)argc);
    if (!c.images) return cli_error(CMD, CLI_EXIT_FAIL, "out of memory");
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) {
        free(c.images);
        return rc;
    }
    if (c.threads > 0) ddn_set_num_threads((int)c.threads);

    features_run r = {0};
    r.ctx = cli_ctx_new(CMD, c.device);
    r.io = !r.ctx || c.device == DDN_DEVICE_CPU ? r.ctx : cli_ctx_new(CMD, DDN_DEVICE_CPU);
    if (!r.io) {
        ddn_ctx_free(r.ctx);
        free(c.images);
        return CLI_EXIT_FAIL;
    }
    bool prev = ddn_set_grad_enabled(r.ctx, false);
    rc = load_model(&r, &c);
    if (rc < 0) {
        if (c.input) rc = load_input(&r, &c);
        else r.N = c.n_images;
    }
    for (int64_t i0 = 0; rc < 0 && i0 < r.N; i0 += c.batch) {
        rc = run_batch(&r, &c, i0, r.N - i0 < c.batch ? r.N - i0 : c.batch);
        ddn_ctx_reset_step(r.ctx);
        if (r.io != r.ctx) ddn_ctx_reset_step(r.io);
    }
    if (rc < 0) rc = save_outputs(&r, &c);
    if (rc < 0) {
        char fs[96];
        printf("ddn features: %s, %lld images -> %s (features %s, pooled (%lld,%lld))\n",
               arch_names[c.arch], (long long)r.N, c.output,
               ddn_shape_str(r.features, fs, sizeof fs), (long long)r.pooled->shape[0],
               (long long)r.pooled->shape[1]);
        rc = 0;
    }
    ddn_set_grad_enabled(r.ctx, prev);
    ddn_tensor_free(r.images);
    ddn_tensor_free(r.features);
    ddn_tensor_free(r.pooled);
    ddn_resnet_free(r.net);
    if (r.io != r.ctx) ddn_ctx_free(r.io);
    ddn_ctx_free(r.ctx);
    free(c.images);
    return rc;
}
