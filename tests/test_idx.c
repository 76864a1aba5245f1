/* ddn — tests of the IDX reader (data/idx.c).
 *
 * Every file is written here, into a fresh temp dir, byte by byte in big-endian order (raw, and
 * gzipped through zlib's gzwrite), so expected values come from the construction and not from the
 * reader. Covers every IDX element type, every malformed case the reader must reject, a truncated
 * gzip stream, batch gathering with scale/shift, and the real Fashion-MNIST files when installed.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "test_util.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/ddn_test_idx_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* ---- building files --------------------------------------------------------------------------- */
typedef struct { unsigned char b[4096]; size_t n; } bytes;

static void put(bytes *o, const void *p, size_t n)
{
    assert_true(o->n + n <= sizeof o->b);
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put_u8(bytes *o, unsigned v) { unsigned char c = (unsigned char)v; put(o, &c, 1); }
/* Big-endian by shifts: independent of the host order and of the reader's swap. */
static void put_be(bytes *o, uint64_t v, int nbytes)
{
    for (int i = nbytes - 1; i >= 0; i--) put_u8(o, (unsigned)(v >> (8 * i)) & 0xff);
}
static void put_header(bytes *o, int type, int ndim, const uint32_t *dims)
{
    put_u8(o, 0);
    put_u8(o, 0);
    put_u8(o, (unsigned)type);
    put_u8(o, (unsigned)ndim);
    for (int i = 0; i < ndim; i++) put_be(o, dims[i], 4);
}
static void put_f32(bytes *o, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    put_be(o, u, 4);
}
static void put_f64(bytes *o, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    put_be(o, u, 8);
}

static const char *write_raw(const char *name, const bytes *o)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_true(fwrite(o->b, 1, o->n, f) == o->n);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_gz(const char *name, const bytes *o)
{
    const char *path = tmp_path(name);
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, o->b, (unsigned)o->n), (int)o->n);
    assert_int_equal(gzclose(g), Z_OK);
    return path;
}

/* Reads path expecting success; checks type and shape. */
static void read_ok(ddn_ctx *ctx, const char *path, ddn_idx *f, int type, int ndim,
                    const int64_t *shape)
{
    assert_ok(ctx, ddn_idx_read(ctx, path, f));
    assert_int_equal(f->type, type);
    assert_int_equal(f->ndim, ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(f->shape[i], shape[i]);
        n *= shape[i];
    }
    assert_int_equal(f->numel, n);
    assert_non_null(f->data);
}

/* ---- well-formed files of every type ---------------------------------------------------------- */
static void test_types_raw_and_gzip(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    for (int gz = 0; gz < 2; gz++) {
        const char *(*write)(const char *, const bytes *) = gz ? write_gz : write_raw;
        ddn_idx f;
        bytes o;

        /* uint8 (3,2,2): 0..10 and 255 */
        memset(&o, 0, sizeof o);
        put_header(&o, 0x08, 3, (uint32_t[]){3, 2, 2});
        for (int i = 0; i < 11; i++) put_u8(&o, (unsigned)i);
        put_u8(&o, 255);
        read_ok(ctx, write("u8", &o), &f, 0x08, 3, (int64_t[]){3, 2, 2});
        const uint8_t *u8 = f.data;
        for (int i = 0; i < 11; i++) assert_int_equal(u8[i], i);
        assert_int_equal(u8[11], 255);
        ddn_idx_free(&f);
        assert_null(f.data);

        /* int8 (4) */
        memset(&o, 0, sizeof o);
        put_header(&o, 0x09, 1, (uint32_t[]){4});
        put_u8(&o, 0x80); put_u8(&o, 0xff); put_u8(&o, 0); put_u8(&o, 0x7f);
        read_ok(ctx, write("i8", &o), &f, 0x09, 1, (int64_t[]){4});
        const int8_t *i8 = f.data;
        assert_true(i8[0] == -128 && i8[1] == -1 && i8[2] == 0 && i8[3] == 127);
        ddn_idx_free(&f);

        /* int16 (3) */
        memset(&o, 0, sizeof o);
        put_header(&o, 0x0B, 1, (uint32_t[]){3});
        put_be(&o, 0x0102, 2); put_be(&o, 0xfffe, 2); put_be(&o, 0x8000, 2);
        read_ok(ctx, write("i16", &o), &f, 0x0B, 1, (int64_t[]){3});
        const int16_t *i16 = f.data;
        assert_true(i16[0] == 258 && i16[1] == -2 && i16[2] == -32768);
        ddn_idx_free(&f);

        /* int32 (2,3) */
        int32_t i32v[6] = {0x01020304, -1, 0, INT32_MIN, INT32_MAX, -123456};
        memset(&o, 0, sizeof o);
        put_header(&o, 0x0C, 2, (uint32_t[]){2, 3});
        for (int i = 0; i < 6; i++) put_be(&o, (uint32_t)i32v[i], 4);
        read_ok(ctx, write("i32", &o), &f, 0x0C, 2, (int64_t[]){2, 3});
        for (int i = 0; i < 6; i++) assert_int_equal(((const int32_t *)f.data)[i], i32v[i]);
        ddn_idx_free(&f);

        /* float32 (5) */
        float f32v[5] = {1.5f, -2.25f, 1e30f, 1.17549435e-38f, -0.0f};
        memset(&o, 0, sizeof o);
        put_header(&o, 0x0D, 1, (uint32_t[]){5});
        for (int i = 0; i < 5; i++) put_f32(&o, f32v[i]);
        read_ok(ctx, write("f32", &o), &f, 0x0D, 1, (int64_t[]){5});
        assert_memory_equal(f.data, f32v, sizeof f32v);
        ddn_idx_free(&f);

        /* float64 (2,1,2) */
        double f64v[4] = {3.141592653589793, -1e-300, 6.02214076e23, 0.1};
        memset(&o, 0, sizeof o);
        put_header(&o, 0x0E, 3, (uint32_t[]){2, 1, 2});
        for (int i = 0; i < 4; i++) put_f64(&o, f64v[i]);
        read_ok(ctx, write("f64", &o), &f, 0x0E, 3, (int64_t[]){2, 1, 2});
        assert_memory_equal(f.data, f64v, sizeof f64v);
        ddn_idx_free(&f);

        /* zero items is a valid (empty) file */
        memset(&o, 0, sizeof o);
        put_header(&o, 0x08, 2, (uint32_t[]){0, 28});
        read_ok(ctx, write("empty", &o), &f, 0x08, 2, (int64_t[]){0, 28});
        ddn_idx_free(&f);
    }
    ddn_idx_free(NULL);
    ddn_ctx_free(ctx);
}

/* ---- malformed files -------------------------------------------------------------------------- */
/* Expects status with a message containing the file name and `rule`, both raw and gzipped. */
static void expect_bad(ddn_ctx *ctx, const char *name, const bytes *o, ddn_status status,
                       const char *rule)
{
    for (int gz = 0; gz < 2; gz++) {
        char fname[64];
        snprintf(fname, sizeof fname, "%s%s", name, gz ? ".gz" : "");
        const char *path = gz ? write_gz(fname, o) : write_raw(fname, o);
        ddn_idx f;
        assert_int_equal(ddn_idx_read(ctx, path, &f), status);
        assert_null(f.data);
        if (!strstr(ddn_ctx_errmsg(ctx), path))
            fail_msg("message \"%s\" does not name %s", ddn_ctx_errmsg(ctx), path);
        assert_error(ctx, status, rule);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    bytes o;

    memset(&o, 0, sizeof o);
    put_u8(&o, 1); put_u8(&o, 0); put_u8(&o, 8); put_u8(&o, 1); put_be(&o, 1, 4); put_u8(&o, 0);
    expect_bad(ctx, "magic", &o, DDN_ERR_FORMAT, "bad magic");

    memset(&o, 0, sizeof o);
    put_header(&o, 0x0A, 1, (uint32_t[]){1}); /* 0x0A is no IDX type */
    put_u8(&o, 0);
    expect_bad(ctx, "type", &o, DDN_ERR_FORMAT, "bad magic");

    memset(&o, 0, sizeof o);
    put_header(&o, 0x08, 0, NULL);
    put_u8(&o, 0);
    expect_bad(ctx, "ndim0", &o, DDN_ERR_FORMAT, "0 dims in the header");

    memset(&o, 0, sizeof o);
    put_header(&o, 0x08, 7, (uint32_t[]){1, 1, 1, 1, 1, 1, 1});
    put_u8(&o, 0);
    expect_bad(ctx, "ndim7", &o, DDN_ERR_FORMAT, "7 dims in the header");

    memset(&o, 0, sizeof o); /* (2^32 - 1)^3 float64 elements: more than 2^63 bytes */
    put_header(&o, 0x0E, 3, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu});
    expect_bad(ctx, "overflow", &o, DDN_ERR_FORMAT, "overflows");

    memset(&o, 0, sizeof o); /* (2, 3) int32 needs 24 bytes; 20 follow */
    put_header(&o, 0x0C, 2, (uint32_t[]){2, 3});
    for (int i = 0; i < 5; i++) put_be(&o, (uint32_t)i, 4);
    expect_bad(ctx, "short", &o, DDN_ERR_FORMAT, "declares 24 data bytes but only 20 follow");

    memset(&o, 0, sizeof o); /* a lying header: 2^31 items of 1 byte, 3 present */
    put_header(&o, 0x08, 1, (uint32_t[]){0x80000000u});
    put_u8(&o, 1); put_u8(&o, 2); put_u8(&o, 3);
    expect_bad(ctx, "huge", &o, DDN_ERR_FORMAT, "but only 3 follow");

    memset(&o, 0, sizeof o);
    put_header(&o, 0x08, 1, (uint32_t[]){2});
    put_u8(&o, 1); put_u8(&o, 2); put_u8(&o, 3);
    expect_bad(ctx, "trailing", &o, DDN_ERR_FORMAT, "trailing bytes");

    memset(&o, 0, sizeof o);
    put_u8(&o, 0); put_u8(&o, 0);
    expect_bad(ctx, "stub", &o, DDN_ERR_FORMAT, "inside the 4-byte magic");

    memset(&o, 0, sizeof o);
    put_header(&o, 0x08, 3, (uint32_t[]){2, 2, 2});
    o.n -= 2; /* cut inside the dim sizes */
    expect_bad(ctx, "dims", &o, DDN_ERR_FORMAT, "inside the 3 dim sizes");

    /* I/O: a missing file names the file and the system's reason */
    ddn_idx f;
    const char *missing = tmp_path("no-such-file");
    assert_int_equal(ddn_idx_read(ctx, missing, &f), DDN_ERR_IO);
    assert_non_null(strstr(ddn_ctx_errmsg(ctx), missing));
    assert_error(ctx, DDN_ERR_IO, "No such file or directory");
    assert_int_equal(ddn_idx_read(ctx, tmpdir, &f), DDN_ERR_IO); /* opens, but read fails */
    assert_error(ctx, DDN_ERR_IO, "Is a directory");
    assert_int_equal(ddn_idx_read(ctx, NULL, &f), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "path is NULL");
    ddn_ctx_free(ctx);
}

/* A valid gzip file cut short: zlib reports the stream as truncated, whether the cut falls in the
 * compressed data or only in the 8-byte CRC/size trailer. */
static void test_truncated_gzip(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    bytes o;
    memset(&o, 0, sizeof o);
    put_header(&o, 0x08, 2, (uint32_t[]){40, 50});
    for (int i = 0; i < 2000; i++) put_u8(&o, (unsigned)(i * 7919 % 251)); /* poorly compressible */
    const char *full = write_gz("full.gz", &o);
    FILE *fp = fopen(full, "rb");
    assert_non_null(fp);
    static unsigned char gzbytes[8192];
    size_t n = fread(gzbytes, 1, sizeof gzbytes, fp);
    fclose(fp);
    assert_true(n > 100 && n < sizeof gzbytes);
    size_t cuts[3] = {n / 2, n - 6, n - 1};
    for (int c = 0; c < 3; c++) {
        bytes cut;
        memset(&cut, 0, sizeof cut);
        put(&cut, gzbytes, cuts[c]);
        const char *path = write_raw("cut.gz", &cut);
        ddn_idx f;
        assert_int_equal(ddn_idx_read(ctx, path, &f), DDN_ERR_FORMAT);
        assert_null(f.data);
        assert_error(ctx, DDN_ERR_FORMAT, "truncated gzip stream");
    }
    ddn_idx f; /* the uncut file is fine */
    read_ok(ctx, full, &f, 0x08, 2, (int64_t[]){40, 50});
    ddn_idx_free(&f);
    ddn_ctx_free(ctx);
}

/* ---- batches ---------------------------------------------------------------------------------- */
static void test_batch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    bytes o;
    memset(&o, 0, sizeof o); /* images (4, 2, 3): item k holds 10k + j */
    put_header(&o, 0x08, 3, (uint32_t[]){4, 2, 3});
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 6; j++) put_u8(&o, (unsigned)(10 * k + j));
    ddn_idx img;
    read_ok(ctx, write_gz("img.gz", &o), &img, 0x08, 3, (int64_t[]){4, 2, 3});

    int64_t items[3] = {3, 0, 3};
    ddn_tensor *x = ddn_idx_batch(ctx, &img, 3, items, DDN_DTYPE_F32, 0.5, -1.0);
    assert_non_null(x);
    assert_int_equal(x->dtype, DDN_DTYPE_F32);
    assert_int_equal(x->ndim, 3);
    assert_true(x->shape[0] == 3 && x->shape[1] == 2 && x->shape[2] == 3);
    float xv[18];
    assert_ok(ctx, ddn_tensor_to_host(x, DDN_DTYPE_F32, xv));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 6; j++)
            assert_true(xv[6 * i + j] == (float)((10 * items[i] + j) * 0.5 - 1.0));

    ddn_tensor *x64 = ddn_idx_batch(ctx, &img, 1, (int64_t[]){2}, DDN_DTYPE_F64, 1.0 / 255, 0);
    assert_non_null(x64);
    assert_true(ddn_tensor_get(x64, (int64_t[]){0, 1, 2}) == 25.0 / 255);

    /* labels as int64 */
    memset(&o, 0, sizeof o);
    put_header(&o, 0x08, 1, (uint32_t[]){4});
    put_u8(&o, 9); put_u8(&o, 0); put_u8(&o, 4); put_u8(&o, 7);
    ddn_idx lab;
    read_ok(ctx, write_raw("lab", &o), &lab, 0x08, 1, (int64_t[]){4});
    ddn_tensor *y = ddn_idx_batch(ctx, &lab, 4, (int64_t[]){3, 2, 1, 0}, DDN_DTYPE_I64, 1, 0);
    assert_non_null(y);
    int64_t yv[4];
    assert_ok(ctx, ddn_tensor_to_host(y, DDN_DTYPE_I64, yv));
    assert_true(yv[0] == 7 && yv[1] == 4 && yv[2] == 0 && yv[3] == 9);

    /* an empty batch has shape (0, ...) */
    ddn_tensor *e = ddn_idx_batch(ctx, &img, 0, NULL, DDN_DTYPE_F32, 1, 0);
    assert_non_null(e);
    assert_int_equal(e->shape[0], 0);

    /* errors */
    assert_null(ddn_idx_batch(ctx, &img, 2, (int64_t[]){1, 4}, DDN_DTYPE_F32, 1, 0));
    assert_error(ctx, DDN_ERR_ARG, "items[1] = 4 is outside [0, 4)");
    assert_null(ddn_idx_batch(ctx, &img, 1, (int64_t[]){-1}, DDN_DTYPE_F32, 1, 0));
    assert_error(ctx, DDN_ERR_ARG, "items[0] = -1");
    assert_null(ddn_idx_batch(ctx, &img, 2, NULL, DDN_DTYPE_F32, 1, 0));
    assert_error(ctx, DDN_ERR_ARG, "NULL item list");
    assert_null(ddn_idx_batch(ctx, &img, 1, (int64_t[]){0}, DDN_DTYPE_I64, 1e30, 0));
    assert_error(ctx, DDN_ERR_ARG, "not representable as int64");
    ddn_idx none = {0};
    assert_null(ddn_idx_batch(ctx, &none, 1, (int64_t[]){0}, DDN_DTYPE_F32, 1, 0));
    assert_error(ctx, DDN_ERR_ARG, "was not read");

    ddn_idx_free(&img);
    ddn_idx_free(&lab);
    ddn_ctx_free(ctx);
}

/* ---- the real data set ------------------------------------------------------------------------ */
static void check_split(ddn_ctx *ctx, const char *split, int64_t n)
{
    char ip[256], lp[256];
    snprintf(ip, sizeof ip, FMNIST_DIR "/%s-images-idx3-ubyte.gz", split);
    snprintf(lp, sizeof lp, FMNIST_DIR "/%s-labels-idx1-ubyte.gz", split);
    ddn_idx img, lab;
    read_ok(ctx, ip, &img, 0x08, 3, (int64_t[]){n, 28, 28});
    read_ok(ctx, lp, &lab, 0x08, 1, (int64_t[]){n});
    int64_t count[10] = {0};
    const uint8_t *l = lab.data;
    for (int64_t i = 0; i < n; i++) {
        assert_true(l[i] <= 9);
        count[l[i]]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(count[c], n / 10); /* balanced classes */
    ddn_idx_free(&img);
    ddn_idx_free(&lab);
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    if (access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        print_message("Fashion-MNIST not installed under " FMNIST_DIR
                      " (Debian package dataset-fashion-mnist): skipping\n");
        skip();
    }
    ddn_ctx *ctx = test_ctx();
    check_split(ctx, "train", 60000);
    check_split(ctx, "t10k", 10000);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_raw_and_gzip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated_gzip),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
