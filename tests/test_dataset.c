/* ddn — tests of image reading, transforms and datasets (data/image.c, transform.c, dataset.c).
 *
 * Expected values are independent of the code under test: decoded pixels and torchvision results
 * come from tests/data/images/expected.safetensors (tools/fixtures/gen_images.py, PIL and
 * torchvision 0.14), small cases are computed by hand below, and folder trees are written here
 * as BMP files built byte by byte. The corrupt corpus (tests/data/images_bad/bad) is checked
 * file by file against a table of expected reasons that must cover every file in it.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

/* A pointer to one transform given by value. */
#define TF(t) ((ddn_transform[]){t})

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/ddn_test_dataset_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' && rm -rf '%s'", tmpdir, tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void make_dir(const char *path) { assert_int_equal(mkdir(path, 0755), 0); }

/* A 24-bit BMP, bottom-up rows of B, G, R padded to 4 bytes; rgb is h x w x 3 top-down. */
static void write_bmp(const char *path, int w, int h, const unsigned char *rgb)
{
    int row = (w * 3 + 3) / 4 * 4;
    unsigned size = 54u + (unsigned)(row * h);
    unsigned char hd[54] = {'B', 'M'};
    unsigned vals[][2] = {{2, size}, {10, 54}, {14, 40}, {18, (unsigned)w}, {22, (unsigned)h},
                          {34, (unsigned)(row * h)}};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
        for (int b = 0; b < 4; b++) hd[vals[i][0] + b] = (unsigned char)(vals[i][1] >> (8 * b));
    hd[26] = 1;  /* planes */
    hd[28] = 24; /* bits per pixel */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(hd, 1, 54, f), 54);
    unsigned char line[256] = {0};
    assert_true(row <= (int)sizeof line);
    for (int y = h - 1; y >= 0; y--) {
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) line[3 * x + c] = rgb[(y * w + x) * 3 + (2 - c)];
        assert_int_equal(fwrite(line, 1, (size_t)row, f), (size_t)row);
    }
    assert_int_equal(fclose(f), 0);
}

/* A w x h BMP of one grey value. */
static void write_flat_bmp(const char *path, int w, int h, unsigned char v)
{
    unsigned char px[3 * 16 * 16];
    assert_true(w * h <= 256);
    memset(px, v, (size_t)(3 * w * h));
    write_bmp(path, w, h, px);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ---- decoding ------------------------------------------------------------------------------- */
static ddn_st_file *expected_file(ddn_ctx *ctx)
{
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, test_data_path("images/expected.safetensors"), &f));
    return f;
}

/* Largest |ours * 255 - expected| over an (H, W, C) uint8 reference. */
static double decode_diff(ddn_ctx *ctx, ddn_st_file *f, const char *file, int channels)
{
    char name[128], path[128];
    snprintf(name, sizeof name, "decode.%s", file);
    snprintf(path, sizeof path, "images/%s", file);
    ddn_tensor *e = ddn_safetensors_get(ctx, f, name);
    assert_non_null(e);
    ddn_image img;
    assert_ok(ctx, ddn_image_load(ctx, test_data_path(path), channels, 0, &img));
    assert_int_equal(img.h, e->shape[0]);
    assert_int_equal(img.w, e->shape[1]);
    assert_int_equal(img.c, e->shape[2]);
    const int64_t *ev = ddn_tensor_ptr(e);
    double worst = 0;
    for (int64_t i = 0; i < ddn_tensor_numel(e); i++)
        worst = fmax(worst, fabs(img.data[i] * 255.0 - (double)ev[i]));
    ddn_image_free(&img);
    return worst;
}

static void test_decode_formats(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = expected_file(ctx);
    /* Lossless formats match PIL exactly (to float rounding of v / 255). */
    const char *exact3[] = {"rgb.png", "rgba.png", "pal.png", "rgb.bmp", "pal.gif"};
    for (size_t i = 0; i < sizeof exact3 / sizeof *exact3; i++)
        assert_true(decode_diff(ctx, f, exact3[i], 3) < 1e-4);
    assert_true(decode_diff(ctx, f, "grey.png", 1) < 1e-4);
    /* JPEG: libjpeg (PIL) and stb_image use different integer IDCTs and YCbCr -> RGB fixed
     * point. The fixtures hold flat 8x8 blocks (DC only, 4:4:4), where both compute the same real
     * value and can differ only in its final rounding: at most 1 level. */
    assert_true(decode_diff(ctx, f, "grey.jpg", 1) <= 1.0 + 1e-4);
    assert_true(decode_diff(ctx, f, "rgb.jpg", 3) <= 1.0 + 1e-4);

    /* grey -> 3 channels replicates; RGB -> 1 channel is stb's (77 R + 150 G + 29 B) >> 8. */
    ddn_image g3, g1, c1;
    assert_ok(ctx, ddn_image_load(ctx, test_data_path("images/grey.png"), 3, 0, &g3));
    assert_ok(ctx, ddn_image_load(ctx, test_data_path("images/grey.png"), 1, 0, &g1));
    for (int i = 0; i < g1.h * g1.w; i++)
        for (int c = 0; c < 3; c++) assert_true(g3.data[3 * i + c] == g1.data[i]);
    ddn_tensor *rgb = ddn_safetensors_get(ctx, f, "decode.rgb.png");
    assert_ok(ctx, ddn_image_load(ctx, test_data_path("images/rgb.png"), 1, 0, &c1));
    const int64_t *p = ddn_tensor_ptr(rgb);
    for (int i = 0; i < c1.h * c1.w; i++) {
        int64_t want = (77 * p[3 * i] + 150 * p[3 * i + 1] + 29 * p[3 * i + 2]) >> 8;
        assert_true(fabs(c1.data[i] * 255.0 - (double)want) < 1e-4);
    }
    ddn_image_free(&g3);
    ddn_image_free(&g1);
    ddn_image_free(&c1);
    ddn_image_free(NULL);
    ddn_image bad;
    assert_int_equal(ddn_image_load(ctx, test_data_path("images/rgb.png"), 2, 0, &bad),
                     DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "expected 1 or 3");
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* As root every file is readable, so a child process drops to uid/gid 65534 (nobody) to meet
 * the permission error; exit 2 means it could not drop (then the case is skipped, with a note). */
static void unreadable_as_nobody(const char *path)
{
    assert_int_equal(chmod(tmpdir, 0711), 0); /* nobody may pass through, not list */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
        ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
        ddn_image img;
        int rc = 1;
        if (ctx && ddn_image_load(ctx, path, 3, 0, &img) == DDN_ERR_IO) {
            const char *m = ddn_ctx_errmsg(ctx);
            rc = strstr(m, "Permission denied") && strstr(m, path) ? 0 : 1;
        }
        ddn_ctx_free(ctx); /* the child holds nothing else of its own: valgrind stays quiet */
        _exit(rc);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(chmod(tmpdir, 0700), 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2)
        print_message("[  SKIP    ] cannot drop root to test a chmod-000 file\n");
    else
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- the corrupt corpus --------------------------------------------------------------------- */
static const struct {
    const char *file, *needle;
    ddn_status st;
} CORPUS[] = {
    {"bad_crc.png", "CRC mismatch in chunk IDAT", DDN_ERR_FORMAT},
    {"bad_ihdr_depth.png", "bad PNG header", DDN_ERR_FORMAT},
    {"bad_ihdr_zero.png", "declares 0 x 4 pixels", DDN_ERR_FORMAT},
    {"folder.png", "not a regular file (a directory)", DDN_ERR_IO},
    {"huge.jpg", "declares 65535 x 65535 pixels", DDN_ERR_FORMAT},
    {"huge.png", "declares 100000 x 100000 pixels", DDN_ERR_FORMAT},
    {"text.jpg", "not a PNG, JPEG, BMP or GIF file", DDN_ERR_FORMAT},
    {"tga_inside.png", "not a PNG, JPEG, BMP or GIF file", DDN_ERR_FORMAT},
    {"truncated.bmp", "truncated BMP", DDN_ERR_FORMAT},
    {"truncated.gif", "truncated GIF", DDN_ERR_FORMAT},
    {"truncated.jpg", "truncated JPEG", DDN_ERR_FORMAT},
    {"truncated.png", "truncated PNG", DDN_ERR_FORMAT},
    {"truncated_eoi.jpg", "truncated JPEG", DDN_ERR_FORMAT},
    {"truncated_iend.png", "truncated PNG", DDN_ERR_FORMAT},
    {"zero_bytes.png", "is empty", DDN_ERR_FORMAT},
};

static void expect_bad(ddn_ctx *ctx, const char *path, ddn_status st, const char *needle)
{
    ddn_image img;
    assert_int_equal(ddn_image_load(ctx, path, 3, 0, &img), st);
    assert_null(img.data);
    assert_non_null(strstr(ddn_ctx_errmsg(ctx), path)); /* the message names the file */
    assert_error(ctx, st, needle);
}

static void test_corrupt_corpus(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[512];
    snprintf(dir, sizeof dir, "%s", test_data_path("images_bad/bad"));
    size_t n = sizeof CORPUS / sizeof *CORPUS;
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, CORPUS[i].file);
        expect_bad(ctx, path, CORPUS[i].st, CORPUS[i].needle);
    }
    /* The table covers the folder: a new corrupt file cannot go unchecked. */
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        bool found = false;
        for (size_t i = 0; i < n; i++) found |= strcmp(CORPUS[i].file, e->d_name) == 0;
        if (!found) fail_msg("%s/%s has no entry in CORPUS", dir, e->d_name);
        seen++;
    }
    closedir(d);
    assert_int_equal(seen, n);

    /* What git cannot hold: a dangling symlink, a FIFO (must not block); chmod 000: below. */
    assert_int_equal(symlink("/nonexistent/ddn/x.png", tmp_path("dangling.png")), 0);
    expect_bad(ctx, tmp_path("dangling.png"), DDN_ERR_IO, "No such file");
    assert_int_equal(mkfifo(tmp_path("fifo.png"), 0644), 0);
    expect_bad(ctx, tmp_path("fifo.png"), DDN_ERR_IO, "not a regular file (a FIFO)");
    expect_bad(ctx, tmp_path("missing.png"), DDN_ERR_IO, "cannot open");
    ddn_image img;
    /* A file under the pixel limit passes; the same file above a lower limit fails first. */
    assert_ok(ctx, ddn_image_load(ctx, test_data_path("images/rgb.png"), 3, 130, &img));
    ddn_image_free(&img);
    assert_int_equal(ddn_image_load(ctx, test_data_path("images/rgb.png"), 3, 129, &img),
                     DDN_ERR_FORMAT);
    assert_error(ctx, DDN_ERR_FORMAT, "declares 13 x 10 pixels: expected 1 to 129");
    ddn_ctx_free(ctx);
}

static void test_unreadable_file(void **state)
{
    (void)state;
    write_flat_bmp(tmp_path("locked.bmp"), 2, 2, 7);
    assert_int_equal(chmod(tmp_path("locked.bmp"), 0), 0);
    if (geteuid() == 0) { /* root reads it anyway; before any allocation of ours, for fork() */
        unreadable_as_nobody(tmp_path("locked.bmp"));
        ddn_ctx *ctx = test_ctx();
        ddn_image img;
        assert_ok(ctx, ddn_image_load(ctx, tmp_path("locked.bmp"), 3, 0, &img));
        ddn_image_free(&img);
        ddn_ctx_free(ctx);
    } else {
        ddn_ctx *ctx = test_ctx();
        expect_bad(ctx, tmp_path("locked.bmp"), DDN_ERR_IO, "Permission denied");
        ddn_ctx_free(ctx);
    }
}

/* ---- transforms against torchvision --------------------------------------------------------- */
/* Compares an H x W x C image with a (C, H, W) reference. */
static double image_diff(const ddn_image *img, const ddn_tensor *e)
{
    assert_int_equal(e->ndim, 3);
    assert_int_equal(img->c, e->shape[0]);
    assert_int_equal(img->h, e->shape[1]);
    assert_int_equal(img->w, e->shape[2]);
    const float *ev = ddn_tensor_ptr(e);
    double worst = 0;
    for (int c = 0; c < img->c; c++)
        for (int i = 0; i < img->h * img->w; i++)
            worst = fmax(worst, fabs((double)img->data[i * img->c + c] -
                                     ev[(size_t)c * img->h * img->w + i]));
    return worst;
}

static double run_case(ddn_ctx *ctx, ddn_st_file *f, const char *name, const ddn_transform *tf,
                       int n)
{
    ddn_image img;
    assert_ok(ctx, ddn_image_load(ctx, test_data_path("images/rgb.png"), 3, 0, &img));
    assert_ok(ctx, ddn_transform_apply(ctx, tf, n, 0, &img));
    ddn_tensor *e = ddn_safetensors_get(ctx, f, name);
    assert_non_null(e);
    double d = image_diff(&img, e);
    ddn_image_free(&img);
    return d;
}

static void test_transforms_torchvision(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = expected_file(ctx);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    ddn_transform noaa_down = ddn_tf_resize(7, 5), noaa_mixed = ddn_tf_resize(6, 21);
    noaa_down.no_antialias = noaa_mixed.no_antialias = true;
    /* Resize: torch evaluates the filter weights in float32, we in double; the outputs are
     * convex combinations of values in [0, 1], so they agree to a few float ulps (< 1e-6). */
    const double tol_resize = 1e-6;
    assert_true(run_case(ctx, f, "tf.resize_down_aa", TF(ddn_tf_resize(7, 5)), 1) < tol_resize);
    assert_true(run_case(ctx, f, "tf.resize_up_aa", TF(ddn_tf_resize(23, 19)), 1) < tol_resize);
    assert_true(run_case(ctx, f, "tf.resize_mixed_aa", TF(ddn_tf_resize(6, 21)), 1) < tol_resize);
    assert_true(run_case(ctx, f, "tf.resize_short_aa", TF(ddn_tf_resize(8, 0)), 1) < tol_resize);
    assert_true(run_case(ctx, f, "tf.resize_down_noaa", &noaa_down, 1) < tol_resize);
    assert_true(run_case(ctx, f, "tf.resize_mixed_noaa", &noaa_mixed, 1) < tol_resize);
    /* PIL on uint8 rounds after each pass: within 1/255 (the documented difference). */
    assert_true(run_case(ctx, f, "pil.resize_down", TF(ddn_tf_resize(7, 5)), 1) <= 1.0 / 255 + 1e-6);
    assert_true(run_case(ctx, f, "pil.resize_up", TF(ddn_tf_resize(23, 19)), 1) <= 1.0 / 255 + 1e-6);
    assert_true(run_case(ctx, f, "pil.resize_mixed", TF(ddn_tf_resize(6, 21)), 1) <=
                1.0 / 255 + 1e-6);
    /* Pure data movement and one float op per value: exact. */
    assert_true(run_case(ctx, f, "tf.center_crop", TF(ddn_tf_center_crop(5, 8)), 1) == 0.0);
    assert_true(run_case(ctx, f, "tf.center_crop_odd", TF(ddn_tf_center_crop(7, 10)), 1) == 0.0);
    assert_true(run_case(ctx, f, "tf.center_crop_pad", TF(ddn_tf_center_crop(14, 12)), 1) == 0.0);
    assert_true(run_case(ctx, f, "tf.hflip", TF(ddn_tf_hflip(1.0)), 1) == 0.0);
    assert_true(run_case(ctx, f, "tf.normalize", TF(ddn_tf_normalize3(mean, std)), 1) == 0.0);
    ddn_transform chain[] = {ddn_tf_resize(8, 0), ddn_tf_center_crop(6, 6),
                             ddn_tf_normalize3(mean, std)};
    /* resize error (< 1e-6) divided by std (>= 0.224) */
    assert_true(run_case(ctx, f, "tf.chain", chain, 3) < tol_resize / 0.224);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* ---- transforms by hand --------------------------------------------------------------------- */
static ddn_image row_image(int h, int w, int c, const float *v)
{
    ddn_image img = {.h = h, .w = w, .c = c, .data = malloc((size_t)h * w * c * sizeof(float))};
    assert_non_null(img.data);
    memcpy(img.data, v, (size_t)h * w * c * sizeof(float));
    return img;
}

static void expect_values(ddn_ctx *ctx, const float *in, int h, int w, ddn_transform t,
                          const double *want, int oh, int ow)
{
    ddn_image img = row_image(h, w, 1, in);
    assert_ok(ctx, ddn_transform_apply(ctx, &t, 1, 0, &img));
    assert_int_equal(img.h, oh);
    assert_int_equal(img.w, ow);
    for (int i = 0; i < oh * ow; i++) assert_true(fabs(img.data[i] - want[i]) < 1e-6);
    ddn_image_free(&img);
}

static void test_transforms_hand(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const float ramp[4] = {0, 1, 2, 3}, two[2] = {0, 1};
    ddn_transform t = ddn_tf_resize(1, 2);
    /* 4 -> 2, antialiased: support 2, window weights 3/7 3/7 1/7 and 1/7 3/7 3/7. */
    expect_values(ctx, ramp, 1, 4, t, (const double[]){5.0 / 7, 16.0 / 7}, 1, 2);
    t.no_antialias = true; /* sources 0.5 and 2.5 */
    expect_values(ctx, ramp, 1, 4, t, (const double[]){0.5, 2.5}, 1, 2);
    /* 2 -> 4 (same with and without antialias): sources -0.25 -> 0, 0.25, 0.75, 1.25 -> 1 */
    expect_values(ctx, two, 1, 2, ddn_tf_resize(1, 4),
                  (const double[]){0, 0.25, 0.75, 1}, 1, 4);
    /* Centre crop of 5 from 4x4 rows... offsets: d = 3 -> round(1.5) = 2; d = 1 -> round(0.5) = 0 */
    float sq[16];
    for (int i = 0; i < 16; i++) sq[i] = (float)i;
    expect_values(ctx, sq, 4, 4, ddn_tf_center_crop(1, 3), (const double[]){8, 9, 10}, 1, 3);
    /* larger than the image: (6 - 4) // 2 = 1 zero row/col before */
    double big[36] = {0};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) big[(y + 1) * 6 + x + 1] = y * 4 + x;
    expect_values(ctx, sq, 4, 4, ddn_tf_center_crop(6, 6), big, 6, 6);

    /* Random crop with padding 1 of a 4x4 to 4x4: every offset in -1..1 shows up, each result
     * is the shifted image with zeros, and the same seed gives the same crop. */
    int seen[3][3] = {{0}};
    for (uint64_t seed = 0; seed < 200; seed++) {
        ddn_image img = row_image(4, 4, 1, sq);
        ddn_transform rc = ddn_tf_random_crop(4, 4, 1);
        assert_ok(ctx, ddn_transform_apply(ctx, &rc, 1, seed, &img));
        int found = 0;
        for (int oy = -1; oy <= 1; oy++)
            for (int ox = -1; ox <= 1; ox++) {
                bool match = true;
                for (int y = 0; y < 4; y++)
                    for (int x = 0; x < 4; x++) {
                        int sy = y + oy, sx = x + ox;
                        float v = sy < 0 || sy > 3 || sx < 0 || sx > 3 ? 0.0f : sq[sy * 4 + sx];
                        match &= img.data[y * 4 + x] == v;
                    }
                if (match) {
                    seen[oy + 1][ox + 1]++;
                    found++;
                }
            }
        assert_int_equal(found, 1); /* distinct values: exactly one offset matches */
        ddn_image again = row_image(4, 4, 1, sq);
        assert_ok(ctx, ddn_transform_apply(ctx, &rc, 1, seed, &again));
        assert_memory_equal(again.data, img.data, 16 * sizeof(float));
        ddn_image_free(&img);
        ddn_image_free(&again);
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) assert_true(seen[i][j] > 0);

    /* Flip probability: p = 0 never, 1 always, 0.5 about half (1000 draws: 3.2 sd = 0.05). */
    const double ps[3] = {0.0, 1.0, 0.5};
    for (int k = 0; k < 3; k++) {
        int flips = 0;
        for (uint64_t seed = 0; seed < 1000; seed++) {
            ddn_image img = row_image(1, 2, 1, two);
            ddn_transform fl = ddn_tf_hflip(ps[k]);
            assert_ok(ctx, ddn_transform_apply(ctx, &fl, 1, seed, &img));
            flips += img.data[0] == 1.0f;
            ddn_image_free(&img);
        }
        assert_true(fabs(flips / 1000.0 - ps[k]) <= 0.05);
    }

    /* grey -> RGB, then normalise with one or three stats. */
    ddn_image img = row_image(1, 2, 1, two);
    ddn_transform g[] = {ddn_tf_grey_to_rgb(),
                         ddn_tf_normalize3((const float[]){0.5f, 0.25f, 0.0f},
                                           (const float[]){0.5f, 2.0f, 4.0f})};
    assert_ok(ctx, ddn_transform_apply(ctx, g, 2, 0, &img));
    assert_int_equal(img.c, 3);
    const float want[6] = {-1.0f, -0.125f, 0.0f, 1.0f, 0.375f, 0.25f};
    assert_memory_equal(img.data, want, sizeof want);
    ddn_image_free(&img);

    /* Shape inference and parameter errors. */
    int oc, oh, ow;
    assert_ok(ctx, ddn_transform_check(ctx, TF(ddn_tf_resize(8, 0)), 1, 3, 10, 13, &oc, &oh, &ow));
    assert_true(oc == 3 && oh == 8 && ow == 10);
    assert_ok(ctx, ddn_transform_check(ctx, TF(ddn_tf_resize(8, 0)), 1, 3, 0, 0, &oc, &oh, &ow));
    assert_true(oh == 0 && ow == 0);
    assert_int_equal(ddn_transform_check(ctx, TF(ddn_tf_normalize3(want, want)), 1, 1, 4, 4, NULL,
                                         NULL, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "3 means and stds for a 1-channel image");
    assert_int_equal(ddn_transform_check(ctx, TF(ddn_tf_normalize1(0.0f, 0.0f)), 1, 1, 4, 4, NULL,
                                         NULL, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "std != 0");
    assert_int_equal(ddn_transform_check(ctx, TF(ddn_tf_center_crop(0, 3)), 1, 1, 4, 4, NULL, NULL,
                                         NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "step 0 (center_crop)");
    assert_int_equal(ddn_transform_check(ctx, TF(ddn_tf_hflip(1.5)), 1, 1, 4, 4, NULL, NULL, NULL),
                     DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "hflip");
    ddn_ctx_free(ctx);
}

/* ---- folder datasets ------------------------------------------------------------------------ */
static void test_folder_classes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* Byte order: "B" < "a" < "b" < "c10" < "c2"; hidden folders and stray files are ignored. */
    const char *classes[] = {"c2", "a", "B", "c10", "b"};
    const char *sorted[] = {"B", "a", "b", "c10", "c2"};
    make_dir(tmp_path("fc"));
    make_dir(tmp_path("fc/.hidden"));
    write_flat_bmp(tmp_path("fc/.hidden/x.bmp"), 2, 2, 1);
    write_flat_bmp(tmp_path("fc/root_file.bmp"), 2, 2, 1);
    for (int k = 0; k < 5; k++) {
        char p[256];
        snprintf(p, sizeof p, "fc/%s", classes[k]);
        make_dir(tmp_path(p));
        const char *files[] = {"10.bmp", "2.BMP", "1.bmp", ".skip.bmp", "note.txt"};
        for (int i = 0; i < 5; i++) {
            snprintf(p, sizeof p, "fc/%s/%s", classes[k], files[i]);
            write_flat_bmp(tmp_path(p), 3, 2, (unsigned char)(10 * k + i));
        }
    }
    ddn_dataset *ds = ddn_dataset_folder(ctx, tmp_path("fc"), NULL);
    assert_non_null(ds);
    assert_int_equal(ddn_dataset_num_classes(ds), 5);
    assert_int_equal(ddn_dataset_len(ds), 15);
    int c, h, w;
    ddn_dataset_shape(ds, &c, &h, &w);
    assert_true(c == 3 && h == 0 && w == 0);
    const char *order[] = {"1.bmp", "10.bmp", "2.BMP"}; /* files sorted byte-wise too */
    const int value[] = {2, 0, 1};
    for (int k = 0; k < 5; k++) {
        assert_string_equal(ddn_dataset_class_name(ds, k), sorted[k]);
        int made = 0; /* which position in 'classes' wrote this folder */
        while (strcmp(classes[made], sorted[k]) != 0) made++;
        for (int i = 0; i < 3; i++) {
            int64_t item = 3 * k + i;
            char want[512];
            snprintf(want, sizeof want, "%s/%s/%s", tmp_path("fc"), sorted[k], order[i]);
            assert_string_equal(ddn_dataset_path(ds, item), want);
            assert_int_equal(ddn_dataset_label(ds, item), k);
            ddn_image img;
            assert_ok(ctx, ddn_dataset_get(ctx, ds, item, &img));
            assert_true(img.h == 2 && img.w == 3 && img.c == 3);
            assert_true(fabs(img.data[0] * 255.0 - (10 * made + value[i])) < 1e-4);
            ddn_image_free(&img);
        }
    }
    assert_null(ddn_dataset_class_name(ds, 5));
    assert_int_equal(ddn_dataset_label(ds, 15), -1);
    ddn_dataset_free(ds);

    assert_null(ddn_dataset_folder(ctx, tmp_path("no_such_dir"), NULL));
    assert_error(ctx, DDN_ERR_IO, "no_such_dir");
    make_dir(tmp_path("empty"));
    assert_null(ddn_dataset_folder(ctx, tmp_path("empty"), NULL));
    assert_error(ctx, DDN_ERR_ARG, "no class sub-folders");
    make_dir(tmp_path("empty/cls"));
    assert_null(ddn_dataset_folder(ctx, tmp_path("empty"), NULL));
    assert_error(ctx, DDN_ERR_ARG, "no images under");
    ddn_ctx_free(ctx);
}

/* Labels of the items of a split, and a check that train and test partition the source. */
static void check_partition(const ddn_dataset *all, const ddn_dataset *tr, const ddn_dataset *te)
{
    int64_t n = ddn_dataset_len(all);
    assert_int_equal(ddn_dataset_len(tr) + ddn_dataset_len(te), n);
    int *hits = calloc((size_t)n, sizeof *hits);
    assert_non_null(hits);
    const ddn_dataset *parts[2] = {tr, te};
    for (int p = 0; p < 2; p++)
        for (int64_t i = 0; i < ddn_dataset_len(parts[p]); i++) {
            const char *path = ddn_dataset_path(parts[p], i);
            int64_t j = 0;
            while (j < n && strcmp(ddn_dataset_path(all, j), path) != 0) j++;
            assert_true(j < n);
            assert_int_equal(ddn_dataset_label(parts[p], i), ddn_dataset_label(all, j));
            hits[j]++;
        }
    for (int64_t j = 0; j < n; j++) assert_int_equal(hits[j], 1);
    free(hits);
}

static void test_folder_splits(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* Fraction split: classes of 10 and 5 items, fraction 0.3 -> 3 and 2 (1.5 rounds up). */
    make_dir(tmp_path("fs"));
    make_dir(tmp_path("fs/x"));
    make_dir(tmp_path("fs/y"));
    for (int i = 0; i < 15; i++) {
        char p[64];
        snprintf(p, sizeof p, "fs/%s/%02d.png", i < 10 ? "x" : "y", i);
        write_flat_bmp(tmp_path(p), 2, 2, (unsigned char)i); /* BMP bytes, .png name: sniffed */
    }
    ddn_dataset *all = ddn_dataset_folder(ctx, tmp_path("fs"), NULL);
    assert_non_null(all);
    ddn_dataset *tr, *te, *tr2, *te2, *tr3, *te3;
    assert_ok(ctx, ddn_dataset_folder_split(ctx, tmp_path("fs"), NULL, 0.3, 7, &tr, &te));
    assert_int_equal(ddn_dataset_len(te), 5);
    int per_class[2] = {0, 0};
    for (int64_t i = 0; i < 5; i++) per_class[ddn_dataset_label(te, i)]++;
    assert_true(per_class[0] == 3 && per_class[1] == 2);
    check_partition(all, tr, te);
    assert_ok(ctx, ddn_dataset_split(ctx, all, 0.3, 7, &tr2, &te2)); /* same seed, same split */
    for (int64_t i = 0; i < 5; i++)
        assert_string_equal(ddn_dataset_path(te, i), ddn_dataset_path(te2, i));
    assert_ok(ctx, ddn_dataset_split(ctx, all, 0.3, 8, &tr3, &te3)); /* another seed: differs */
    bool differs = false;
    for (int64_t i = 0; i < 5; i++)
        differs |= strcmp(ddn_dataset_path(te, i), ddn_dataset_path(te3, i)) != 0;
    assert_true(differs);
    /* A subset of a subset still reads the right file. */
    ddn_dataset *sub = ddn_dataset_subset(ctx, te, 2, (const int64_t[]){4, 0});
    assert_non_null(sub);
    assert_string_equal(ddn_dataset_path(sub, 0), ddn_dataset_path(te, 4));
    assert_string_equal(ddn_dataset_class_name(sub, 1), "y");
    ddn_dataset_free(all); /* the subsets keep the source alive */
    ddn_image img;
    assert_ok(ctx, ddn_dataset_get(ctx, sub, 1, &img));
    ddn_image_free(&img);
    assert_null(ddn_dataset_subset(ctx, te, 1, (const int64_t[]){5}));
    assert_error(ctx, DDN_ERR_ARG, "idx[0] = 5");
    ddn_dataset *ds[] = {tr, te, tr2, te2, tr3, te3, sub};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) ddn_dataset_free(ds[i]);
    assert_int_equal(ddn_dataset_folder_split(ctx, tmp_path("fs"), NULL, 1.0, 7, &tr, &te),
                     DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "not in (0, 1)");

    /* Folder split: train has cat, dog; test has cat, emu: labels from the union. */
    const char *dirs[] = {"ts", "ts/train", "ts/test", "ts/train/cat", "ts/train/dog",
                          "ts/test/cat", "ts/test/emu"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) make_dir(tmp_path(dirs[i]));
    write_flat_bmp(tmp_path("ts/train/cat/a.bmp"), 2, 2, 1);
    write_flat_bmp(tmp_path("ts/train/dog/a.bmp"), 2, 2, 2);
    write_flat_bmp(tmp_path("ts/test/cat/a.bmp"), 2, 2, 3);
    write_flat_bmp(tmp_path("ts/test/emu/a.bmp"), 2, 2, 4);
    assert_ok(ctx, ddn_dataset_folder_split(ctx, tmp_path("ts"), NULL, 0.0, 0, &tr, &te));
    assert_int_equal(ddn_dataset_num_classes(tr), 3);
    assert_int_equal(ddn_dataset_num_classes(te), 3);
    assert_string_equal(ddn_dataset_class_name(te, 2), "emu");
    assert_int_equal(ddn_dataset_len(tr), 2);
    assert_int_equal(ddn_dataset_label(tr, 1), 1);
    assert_int_equal(ddn_dataset_label(te, 1), 2);
    assert_non_null(strstr(ddn_dataset_path(te, 1), "ts/test/emu/a.bmp"));
    ddn_dataset_free(tr);
    ddn_dataset_free(te);
    ddn_ctx_free(ctx);
}

/* ---- IDX datasets --------------------------------------------------------------------------- */
static void test_idx_dataset(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    /* 3 images of 2 x 2 and their labels, written raw. */
    unsigned char im[16 + 12], lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 4, 0, 2};
    const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
    memcpy(im, ih, 16);
    for (int i = 0; i < 12; i++) im[16 + i] = (unsigned char)(20 * i);
    write_file(tmp_path("im.idx"), im, sizeof im);
    write_file(tmp_path("lab.idx"), lab, sizeof lab);
    ddn_dataset *ds = ddn_dataset_idx(ctx, tmp_path("im.idx"), tmp_path("lab.idx"));
    assert_non_null(ds);
    assert_int_equal(ddn_dataset_len(ds), 3);
    assert_int_equal(ddn_dataset_num_classes(ds), 5);
    assert_string_equal(ddn_dataset_class_name(ds, 4), "4");
    assert_null(ddn_dataset_path(ds, 0));
    assert_int_equal(ddn_dataset_label(ds, 2), 2);
    ddn_image img;
    assert_ok(ctx, ddn_dataset_get(ctx, ds, 1, &img));
    assert_true(img.h == 2 && img.w == 2 && img.c == 1);
    for (int i = 0; i < 4; i++) assert_true(img.data[i] == (float)(20 * (4 + i)) / 255.0f);
    ddn_image_free(&img);
    assert_int_equal(ddn_dataset_get(ctx, ds, 3, &img), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "item 3 out of range");
    ddn_dataset_free(ds);
    lab[7] = 2; /* two labels for three images */
    write_file(tmp_path("lab2.idx"), lab, sizeof lab - 1);
    assert_null(ddn_dataset_idx(ctx, tmp_path("im.idx"), tmp_path("lab2.idx")));
    assert_error(ctx, DDN_ERR_FORMAT, "expected 3 integer labels");

    /* The real Fashion-MNIST, when installed. */
    ddn_dataset *tr = ddn_dataset_fashion_mnist(ctx, NULL, true);
    if (!tr) {
        print_message("[  SKIP    ] Fashion-MNIST: %s\n", ddn_ctx_errmsg(ctx));
        ddn_ctx_clear_error(ctx);
        ddn_ctx_free(ctx);
        return;
    }
    ddn_dataset *te = ddn_dataset_fashion_mnist(ctx, NULL, false);
    assert_non_null(te);
    assert_int_equal(ddn_dataset_len(tr), 60000);
    assert_int_equal(ddn_dataset_len(te), 10000);
    assert_string_equal(ddn_dataset_class_name(tr, 9), "Ankle boot");
    /* First labels and pixels, read with Python's gzip + numpy from the same files. */
    const int64_t first_tr[5] = {9, 0, 0, 3, 0}, first_te[5] = {9, 2, 1, 1, 6};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ddn_dataset_label(tr, i), first_tr[i]);
        assert_int_equal(ddn_dataset_label(te, i), first_te[i]);
    }
    const int row14[8] = {0, 0, 237, 226, 217, 223, 222, 219};
    assert_ok(ctx, ddn_dataset_get(ctx, tr, 0, &img));
    double sum = 0;
    for (int i = 0; i < 784; i++) sum += img.data[i] * 255.0;
    assert_true(fabs(sum - 76247) < 1e-2);
    for (int i = 0; i < 8; i++)
        assert_true(fabs(img.data[14 * 28 + 10 + i] * 255.0 - row14[i]) < 1e-4);
    ddn_image_free(&img);
    ddn_dataset_free(tr);
    ddn_dataset_free(te);
    assert_null(ddn_dataset_fashion_mnist(ctx, tmpdir, true));
    assert_error(ctx, DDN_ERR_IO, "train-images-idx3-ubyte.gz");
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_formats),
        cmocka_unit_test(test_corrupt_corpus),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_transforms_torchvision),
        cmocka_unit_test(test_transforms_hand),
        cmocka_unit_test(test_folder_classes),
        cmocka_unit_test(test_folder_splits),
        cmocka_unit_test(test_idx_dataset),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
