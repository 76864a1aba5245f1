/* ddn — tests of the safetensors reader and writer (core/safetensors*.c, core/json.c).
 *
 * Fixtures come from tools/fixtures/gen_safetensors.py: good_dtypes.safetensors (every stored
 * dtype, unaligned offsets, a scalar, empty tensors, metadata) and the hostile corpus in bad/,
 * which the table below must cover file by file. Expected values are written out here from the
 * IEEE formats, not taken from ddn. Round trips, store_as rounding, strided sources, atomic
 * replace on failure, and every truncated prefix of a valid file are checked too.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

/* ---- helpers ---------------------------------------------------------------------------------- */
static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* A fresh private directory for written files; tmp_cleanup removes it and what is in it. */
static void tmp_dir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/ddn_test_st_XXXXXX");
    if (!mkdtemp(dir)) fail_msg("mkdtemp failed");
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void tmp_cleanup(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char p[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (remove(p) != 0) fail_msg("cannot remove %s", p);
    }
    closedir(d);
    rmdir(dir);
}

static ddn_st_file *open_ok(ddn_ctx *ctx, const char *path)
{
    ddn_st_file *f = NULL;
    assert_ok(ctx, ddn_safetensors_open(ctx, path, &f));
    assert_non_null(f);
    return f;
}

/* The tensor's values as double (for float tensors) or int64 (for int tensors). */
static void values_f64(ddn_ctx *ctx, const ddn_st_file *f, const char *name, double *out,
                       int64_t expect_n)
{
    ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
    if (!t) fail_msg("get %s: %s", name, ddn_ctx_errmsg(ctx));
    assert_int_equal(ddn_tensor_numel(t), expect_n);
    assert_true(ddn_dtype_is_float(t->dtype));
    assert_ok(ctx, ddn_tensor_to_host(t, DDN_DTYPE_F64, out));
}

static void values_i64(ddn_ctx *ctx, const ddn_st_file *f, const char *name, int64_t *out,
                       int64_t expect_n)
{
    ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
    if (!t) fail_msg("get %s: %s", name, ddn_ctx_errmsg(ctx));
    assert_int_equal(ddn_tensor_numel(t), expect_n);
    assert_int_equal(t->dtype, DDN_DTYPE_I64);
    assert_ok(ctx, ddn_tensor_to_host(t, DDN_DTYPE_I64, out));
}

/* Same value, where NaN equals NaN and -0.0 differs from 0.0. */
static void assert_same_double(double got, double want, const char *what, int i)
{
    bool ok = isnan(want) ? isnan(got) : got == want && signbit(got) == signbit(want);
    if (!ok) fail_msg("%s[%d]: got %.17g, expected %.17g", what, i, got, want);
}

/* ---- the good fixture ------------------------------------------------------------------------- */
static void test_dtype_names(void **state)
{
    (void)state;
    const char *names[] = {"AUTO", "F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL"};
    for (int d = 0; d < DDN_ST_DTYPE_COUNT; d++)
        assert_string_equal(ddn_st_dtype_name((ddn_st_dtype)d), names[d]);
    assert_string_equal(ddn_st_dtype_name((ddn_st_dtype)99), "invalid");
}

static void test_good_fixture(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ok(ctx, test_data_path("safetensors/good_dtypes.safetensors"));
    const char *order[] = {"u8", "f64", "i32", "f16", "f16_as_f32", "bf16", "bool", "i64", "f32",
                           "scalar", "empty", "empty_i64", "torch.arange"};
    assert_int_equal(ddn_safetensors_count(f), 13);
    for (int i = 0; i < 13; i++) assert_string_equal(ddn_safetensors_name(f, i), order[i]);
    assert_null(ddn_safetensors_name(f, 13));
    assert_null(ddn_safetensors_name(f, -1));

    assert_string_equal(ddn_safetensors_metadata(f, "format"), "pt");
    assert_string_equal(ddn_safetensors_metadata(f, "note"),
                        "quote \" backslash \\ unicode \xc3\xbc\xe2\x82\xac");
    assert_null(ddn_safetensors_metadata(f, "nope"));

    ddn_st_dtype dt;
    int ndim;
    int64_t shape[DDN_MAX_DIMS];
    assert_true(ddn_safetensors_info(f, "f64", &dt, &ndim, shape));
    assert_int_equal(dt, DDN_ST_F64);
    assert_int_equal(ndim, 2);
    assert_true(shape[0] == 2 && shape[1] == 2);
    assert_true(ddn_safetensors_info(f, "scalar", &dt, &ndim, shape));
    assert_int_equal(ndim, 0);
    assert_true(ddn_safetensors_info(f, "bf16", &dt, NULL, NULL));
    assert_int_equal(dt, DDN_ST_BF16);
    assert_false(ddn_safetensors_info(f, "nope", &dt, &ndim, shape));

    int64_t iv[8];
    values_i64(ctx, f, "u8", iv, 3);
    assert_true(iv[0] == 0 && iv[1] == 255 && iv[2] == 7);
    values_i64(ctx, f, "i32", iv, 4);
    assert_true(iv[0] == INT32_MIN && iv[1] == INT32_MAX && iv[2] == -7 && iv[3] == 0);
    values_i64(ctx, f, "bool", iv, 4);
    assert_true(iv[0] == 1 && iv[1] == 0 && iv[2] == 1 && iv[3] == 1);
    values_i64(ctx, f, "i64", iv, 5);
    assert_true(iv[0] == INT64_MIN && iv[1] == INT64_MAX && iv[2] == 0 && iv[3] == -1 &&
                iv[4] == 42);

    double v[16], w[16];
    const double f64[] = {3.141592653589793, -1e300, 4.9406564584124654e-324, 0.1};
    ddn_tensor *t64 = ddn_safetensors_get(ctx, f, "f64"); /* at byte 3 of the buffer */
    assert_int_equal(t64->dtype, DDN_DTYPE_F64);
    values_f64(ctx, f, "f64", v, 4);
    for (int i = 0; i < 4; i++) assert_same_double(v[i], f64[i], "f64", i);

    const double f16[] = {1, -2.5, 65504, ldexp(1, -24), ldexp(1, -14), 0.333251953125,
                          INFINITY, -INFINITY, -0.0, NAN, 3 * ldexp(1, -24),
                          1023 * ldexp(1, -24)};
    values_f64(ctx, f, "f16", v, 12);
    values_f64(ctx, f, "f16_as_f32", w, 12);
    for (int i = 0; i < 12; i++) {
        assert_same_double(v[i], f16[i], "f16", i);
        assert_same_double(v[i], w[i], "f16 vs numpy", i);
    }
    const double bf16[] = {1, -2, 1, 1 + ldexp(1, -6), 3.140625, ldexp(1, -130), -0.0,
                           ldexp(2 - ldexp(1, -7), 127)};
    values_f64(ctx, f, "bf16", v, 8);
    for (int i = 0; i < 8; i++) assert_same_double(v[i], bf16[i], "bf16", i);
    const double f32[] = {0.5, -1.25, 3, (float)1e-3, (float)1e30, -0.0};
    values_f64(ctx, f, "f32", v, 6);
    for (int i = 0; i < 6; i++) assert_same_double(v[i], f32[i], "f32", i);

    ddn_tensor *s = ddn_safetensors_get(ctx, f, "scalar");
    assert_int_equal(s->ndim, 0);
    assert_true(ddn_tensor_item(s) == 42.5);
    ddn_tensor *e = ddn_safetensors_get(ctx, f, "empty");
    assert_true(e->ndim == 1 && e->shape[0] == 0 && e->dtype == DDN_DTYPE_F32);
    e = ddn_safetensors_get(ctx, f, "empty_i64");
    assert_true(e->ndim == 3 && e->shape[1] == 0 && e->dtype == DDN_DTYPE_I64);
    ddn_tensor *a = ddn_safetensors_get(ctx, f, "torch.arange");
    assert_true(a->ndim == 2 && a->shape[0] == 3 && a->shape[1] == 4);
    values_f64(ctx, f, "torch.arange", v, 12);
    for (int i = 0; i < 12; i++) assert_true(v[i] == i);

    assert_null(ddn_safetensors_get(ctx, f, "nope"));
    assert_error(ctx, DDN_ERR_ARG, "has no tensor 'nope'");
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

static void test_read_into(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = open_ok(ctx, test_data_path("safetensors/good_dtypes.safetensors"));
    /* F64 into a persistent float32 parameter. */
    ddn_tensor *p = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 2));
    assert_ok(ctx, ddn_safetensors_read_into(ctx, f, "f64", p));
    assert_true(ddn_tensor_get(p, (int64_t[]){0, 0}) == (double)(float)3.141592653589793);
    assert_true(ddn_tensor_get(p, (int64_t[]){1, 1}) == (double)(float)0.1);
    /* A strided destination: the transpose of a (4,3) float64 tensor. */
    ddn_tensor *base = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(4, 3));
    ddn_tensor *tr = ddn_transpose(ctx, base, 0, 1);
    assert_false(ddn_tensor_is_contiguous(tr));
    assert_ok(ctx, ddn_safetensors_read_into(ctx, f, "torch.arange", tr));
    for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < 4; j++)
            assert_true(ddn_tensor_get(base, (int64_t[]){j, i}) == (double)(i * 4 + j));
    /* Integers into float64 and int64. */
    ddn_tensor *d = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 2));
    assert_ok(ctx, ddn_safetensors_read_into(ctx, f, "i32", d));
    assert_true(ddn_tensor_get(d, (int64_t[]){0, 0}) == -2147483648.0);
    ddn_tensor *li = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(3));
    assert_ok(ctx, ddn_safetensors_read_into(ctx, f, "u8", li));
    assert_true(ddn_tensor_get(li, (int64_t[]){1}) == 255);

    assert_int_equal(ddn_safetensors_read_into(ctx, f, "torch.arange", base), DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "tensor 'torch.arange' has shape (3,4) but the destination "
                 "has shape (4,3)");
    assert_int_equal(ddn_safetensors_read_into(ctx, f, "missing", base), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "has no tensor 'missing'");
    ddn_tensor *ip = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 2));
    assert_int_equal(ddn_safetensors_read_into(ctx, f, "f64", ip), DDN_ERR_DTYPE);
    assert_error(ctx, DDN_ERR_DTYPE, "stored as F64 and cannot be read into a tensor of dtype "
                 "int64");
    assert_int_equal(ddn_safetensors_read_into(ctx, f, "f64", NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "dst is NULL");
    ddn_tensor_free(p);
    ddn_safetensors_close(f);
    ddn_ctx_free(ctx);
}

/* ---- the hostile corpus ----------------------------------------------------------------------- */
static const struct {
    const char *file; /* under tests/data/safetensors/bad/, without ".safetensors" */
    const char *rule; /* a substring of the message */
} bad_files[] = {
    {"header_len_short", "file is 5 bytes, too short for the 8-byte header length"},
    {"header_len_past_eof", "header length 1000 runs past the end of the file"},
    {"header_len_huge", "header length 9223372036854775808 exceeds the limit"},
    {"header_empty", "header is not valid JSON: unexpected end of text"},
    {"json_invalid", "not valid JSON: unexpected character, expected a value, at byte 6"},
    {"json_not_object", "header is an array, not a JSON object"},
    {"json_trailing_garbage", "trailing characters after the JSON value, at byte 3"},
    {"json_deep_nesting", "nesting deeper than 64 levels"},
    {"json_unterminated_string", "unterminated string"},
    {"json_bad_escape", "invalid escape in string"},
    {"json_lone_surrogate", "lone high surrogate"},
    {"json_invalid_utf8", "invalid UTF-8 in string"},
    {"json_control_char", "unescaped control character in string"},
    {"json_leading_zero", "invalid number: leading zero"},
    {"entry_not_object", "tensor 'a': entry is an array, not an object"},
    {"entry_unknown_key", "tensor 'a': unexpected key 'offsets'"},
    {"entry_duplicate_key", "tensor 'a': key 'dtype' appears twice"},
    {"dtype_unknown", "tensor 'a': unknown dtype 'I8'"},
    {"dtype_not_string", "tensor 'a': dtype is a number, not a string"},
    {"missing_dtype", "tensor 'a': missing 'dtype'"},
    {"missing_shape", "tensor 'a': missing 'shape'"},
    {"missing_data_offsets", "tensor 'a': missing 'data_offsets'"},
    {"shape_negative", "tensor 'a': shape[1] = -2 is negative"},
    {"shape_not_integer", "tensor 'a': shape[0] = 2.5 is not an integer"},
    {"shape_not_number", "tensor 'a': shape[0] is a string, not an integer"},
    {"shape_overflow", "tensor 'a': shape (4294967296,4294967296) overflows"},
    {"shape_dim_too_large", "shape[0] = 18446744073709551616 overflows int64"},
    {"shape_too_many_dims", "tensor 'a': shape has more than 6 dims"},
    {"offsets_out_of_range", "tensor 'b': data_offsets [8, 16] run past the end of the data "
                             "buffer (8 bytes"},
    {"offsets_begin_after_end", "tensor 'a': data_offsets [8, 0]: begin is after end"},
    {"offsets_three_items", "tensor 'a': data_offsets holds more than 2 items"},
    {"offsets_negative", "tensor 'a': data_offsets[0] = -8 is negative"},
    {"byte_count_mismatch", "tensor 'fc.weight': data_offsets [0, 96] hold 96 bytes but F32 "
                            "(4,8) needs 128"},
    {"tensors_overlap", "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
    {"tensors_gap", "tensor 'b': gap in the data buffer: bytes [8, 12)"},
    {"tensors_not_from_zero", "tensor 'a': gap in the data buffer: bytes [0, 4)"},
    {"trailing_bytes", "4 trailing bytes"},
    {"data_truncated", "tensor 'b': data_offsets [8, 16] run past the end of the data buffer "
                       "(13 bytes"},
    {"duplicate_name", "tensor 'a': name appears twice"},
    {"name_with_nul", "contains a NUL character"},
    {"metadata_not_object", "__metadata__ is an array, not an object"},
    {"metadata_not_string", "__metadata__ key 'k': value is a number, not a string"},
    {"metadata_duplicate_key", "__metadata__ key 'k' appears twice"},
    {"metadata_twice", "__metadata__ appears twice"},
    {"bool_value_2", "tensor 'mask': BOOL element 1 is 2 (must be 0 or 1)"},
};
#define N_BAD ((int)(sizeof bad_files / sizeof bad_files[0]))

static void test_bad_corpus(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char rel[256];
    for (int i = 0; i < N_BAD; i++) {
        snprintf(rel, sizeof rel, "safetensors/bad/%s.safetensors", bad_files[i].file);
        static max_align_t sentinel;
        ddn_st_file *f = (ddn_st_file *)(void *)&sentinel; /* must come back NULL */
        ddn_status st = ddn_safetensors_open(ctx, test_data_path(rel), &f);
        if (st != DDN_ERR_FORMAT)
            fail_msg("%s: expected a format error, got '%s': %s", bad_files[i].file,
                     ddn_status_str(st), ddn_ctx_errmsg(ctx));
        assert_null(f);
        if (!strstr(ddn_ctx_errmsg(ctx), rel)) /* the message names the file */
            fail_msg("%s: message \"%s\" does not name the file", rel, ddn_ctx_errmsg(ctx));
        assert_error(ctx, DDN_ERR_FORMAT, bad_files[i].rule);
    }
    /* Every file in bad/ is in the table, and there are at least 20 rules. */
    DIR *d = opendir(test_data_path("safetensors/bad"));
    assert_non_null(d);
    int seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        seen++;
        bool listed = false;
        for (int i = 0; i < N_BAD && !listed; i++) {
            snprintf(rel, sizeof rel, "%s.safetensors", bad_files[i].file);
            listed = strcmp(rel, e->d_name) == 0;
        }
        if (!listed) fail_msg("bad/%s is not in the test's table", e->d_name);
    }
    closedir(d);
    assert_int_equal(seen, N_BAD);
    assert_true(N_BAD >= 20);
    ddn_ctx_free(ctx);
}

static void test_io_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_st_file *f = NULL;
    assert_int_equal(ddn_safetensors_open(ctx, "/nonexistent/x.safetensors", &f), DDN_ERR_IO);
    assert_null(f);
    assert_error(ctx, DDN_ERR_IO, "/nonexistent/x.safetensors: cannot open: No such file");
    assert_int_equal(ddn_safetensors_open(ctx, test_data_path("safetensors"), &f), DDN_ERR_IO);
    assert_error(ctx, DDN_ERR_IO, "not a regular file");
    assert_int_equal(ddn_safetensors_open(ctx, NULL, &f), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "NULL");
    assert_int_equal(ddn_safetensors_open(NULL, "x", &f), DDN_ERR_ARG);
    ddn_safetensors_close(NULL);
    assert_int_equal(ddn_safetensors_count(NULL), 0);
    assert_null(ddn_safetensors_name(NULL, 0));
    assert_null(ddn_safetensors_metadata(NULL, "k"));
    assert_false(ddn_safetensors_info(NULL, "k", NULL, NULL, NULL));
    ddn_ctx_free(ctx);
}

/* Every proper prefix of a valid file is rejected with a format error and never crashes. */
static void test_truncated_prefixes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    size_t size;
    unsigned char *buf = read_all(test_data_path("safetensors/good_dtypes.safetensors"), &size);
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/prefix.safetensors", dir);
    for (size_t len = 0; len < size; len++) {
        write_all(path, buf, len);
        ddn_st_file *f = NULL;
        ddn_status st = ddn_safetensors_open(ctx, path, &f);
        if (st != DDN_ERR_FORMAT)
            fail_msg("prefix of %zu bytes: expected a format error, got '%s'", len,
                     ddn_status_str(st));
        assert_null(f);
        ddn_ctx_clear_error(ctx);
    }
    write_all(path, buf, size);
    ddn_safetensors_close(open_ok(ctx, path));
    free(buf);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

/* Random byte flips of a valid file (fixed seed): each either opens, and then every tensor loads,
 * or is a format error. Run under the sanitizer build this is a small fuzzer. */
static void test_mutations(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    size_t size;
    unsigned char *good = read_all(test_data_path("safetensors/good_dtypes.safetensors"), &size);
    unsigned char *buf = malloc(size);
    assert_non_null(buf);
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/mutant.safetensors", dir);
    uint64_t rng = 0x9E3779B97F4A7C15u;
    int opened = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, good, size);
        int flips = 1 + iter % 3;
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005u + 1442695040888963407u; /* an LCG is enough here */
            size_t at = (size_t)(rng >> 33) % size;
            /* Half the flips pick a JSON-ish byte, so that mutants stay close to valid. */
            const char *bytes = "{}[]\",:0123456789-.eE \\u";
            buf[at] = (rng >> 20) & 1 ? (unsigned char)(rng >> 40)
                                      : (unsigned char)bytes[(rng >> 24) % strlen(bytes)];
        }
        write_all(path, buf, size);
        ddn_st_file *f = NULL;
        ddn_status st = ddn_safetensors_open(ctx, path, &f);
        if (st != DDN_OK && st != DDN_ERR_FORMAT)
            fail_msg("mutant %d: status '%s': %s", iter, ddn_status_str(st), ddn_ctx_errmsg(ctx));
        ddn_ctx_clear_error(ctx);
        if (!f) continue;
        opened++;
        for (int64_t i = 0; i < ddn_safetensors_count(f); i++)
            if (!ddn_safetensors_get(ctx, f, ddn_safetensors_name(f, i)))
                fail_msg("mutant %d opened but tensor %lld does not load: %s", iter, (long long)i,
                         ddn_ctx_errmsg(ctx));
        ddn_safetensors_close(f);
        ddn_ctx_reset_step(ctx);
    }
    assert_true(opened > 0); /* flips inside the data keep the file valid */
    free(buf);
    free(good);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

/* ---- writing ---------------------------------------------------------------------------------- */
static void test_roundtrip_dtypes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    ddn_tensor *a = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(2, 3), 0, 1);
    ddn_tensor *b = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F64, DDN_SHAPE(3, 1, 2), 0, 1);
    int64_t big[4] = {INT64_MIN, INT64_MAX, -5, 0};
    ddn_tensor *c = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(4), big);
    int64_t small[4] = {-7, 2147483647, 0, INT32_MIN};
    ddn_tensor *c32 = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(2, 2), small);
    int64_t bytes[3] = {0, 255, 128}, bits[3] = {1, 0, 1};
    ddn_tensor *c8 = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(3), bytes);
    ddn_tensor *cb = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(3), bits);
    ddn_tensor *s = ddn_scalar(ctx, DDN_DTYPE_F64, -0.25);
    ddn_tensor *z = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(0, 4));
    double third = 1.0 / 3.0;
    ddn_tensor *d32 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(1), &third);
    ddn_st_entry e[] = {
        {"a", a, DDN_ST_AUTO},   {"b", b, DDN_ST_AUTO},     {"c", c, DDN_ST_AUTO},
        {"c32", c32, DDN_ST_I32}, {"c8", c8, DDN_ST_U8},    {"cb", cb, DDN_ST_BOOL},
        {"s", s, DDN_ST_AUTO},   {"z", z, DDN_ST_AUTO},     {"d32", d32, DDN_ST_F32},
        {"b64", a, DDN_ST_F64},
    };
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 10, e, 0, NULL));
    assert_int_equal(count_entries(dir), 1); /* no temporary file left behind */
    ddn_st_file *f = open_ok(ctx, path);
    assert_int_equal(ddn_safetensors_count(f), 10);
    const ddn_st_dtype want[] = {DDN_ST_F32, DDN_ST_F64, DDN_ST_I64, DDN_ST_I32, DDN_ST_U8,
                                 DDN_ST_BOOL, DDN_ST_F64, DDN_ST_F32, DDN_ST_F32, DDN_ST_F64};
    for (int i = 0; i < 10; i++) {
        ddn_st_dtype dt;
        int ndim;
        int64_t shape[DDN_MAX_DIMS];
        assert_true(ddn_safetensors_info(f, e[i].name, &dt, &ndim, shape));
        assert_int_equal(dt, want[i]);
        assert_int_equal(ndim, e[i].tensor->ndim);
        for (int k = 0; k < ndim; k++) assert_int_equal(shape[k], e[i].tensor->shape[k]);
        assert_string_equal(ddn_safetensors_name(f, i), e[i].name); /* data in entry order */
        if (i == 8) continue; /* d32 is rounded, checked below */
        ddn_tensor *got = ddn_safetensors_get(ctx, f, e[i].name);
        assert_non_null(got);
        assert_tensor_close(got, e[i].tensor, 0, 0); /* exact */
    }
    int64_t iv[4];
    values_i64(ctx, f, "c", iv, 4);
    assert_true(iv[0] == INT64_MIN && iv[1] == INT64_MAX);
    values_i64(ctx, f, "c32", iv, 4);
    assert_true(iv[1] == INT32_MAX && iv[3] == INT32_MIN);
    double v;
    values_f64(ctx, f, "d32", &v, 1);
    assert_true(v == (double)(float)(1.0 / 3.0));
    ddn_safetensors_close(f);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

/* float32 and float64 stored as F16 and BF16 round to nearest, ties to even, in one step. */
static void test_store_rounding(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/round.safetensors", dir);
    const double u = ldexp(1, -24); /* the smallest half subnormal */
    const double h_in[] = {1 + ldexp(1, -11), 1 + 3 * ldexp(1, -11), 65519, 65520, ldexp(1, -25),
                           0.75 * u, 1.5 * u, 2.5 * u, -0.0, NAN, -INFINITY, 1e-10,
                           1 - ldexp(1, -12), 1023.5 * u};
    const double h_out[] = {1, 1 + ldexp(1, -9), 65504, INFINITY, 0, u, 2 * u, 2 * u, -0.0, NAN,
                            -INFINITY, 0, 1, 1024 * u};
    const int nh = (int)(sizeof h_in / sizeof h_in[0]);
    const double b_in[] = {1 + ldexp(1, -8), 1 + 3 * ldexp(1, -8), 1 + ldexp(1, -8) + ldexp(1, -20),
                           3.4028234663852886e38 /* FLT_MAX */, -0.0, NAN, ldexp(1, -133),
                           ldexp(1, -134)};
    const double b_out[] = {1, 1 + ldexp(1, -6), 1 + ldexp(1, -7), INFINITY, -0.0, NAN,
                            ldexp(1, -133), 0};
    const int nb = (int)(sizeof b_in / sizeof b_in[0]);
    float hf[16], bf[16];
    for (int i = 0; i < nh; i++) hf[i] = (float)h_in[i];
    for (int i = 0; i < nb; i++) bf[i] = (float)b_in[i];
    ddn_tensor *h = ddn_tensor_from_host(ctx, DDN_DTYPE_F32, DDN_SHAPE(nh), hf);
    ddn_tensor *b = ddn_tensor_from_host(ctx, DDN_DTYPE_F32, DDN_SHAPE(nb), bf);
    /* A float64 just above a half tie: through float32 first it would become the tie and round
     * down to 1; rounded once it goes up. */
    double above_tie = 1 + ldexp(1, -11) + ldexp(1, -40);
    ddn_tensor *d = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(1), &above_tie);
    ddn_st_entry e[] = {{"h", h, DDN_ST_F16}, {"b", b, DDN_ST_BF16}, {"d", d, DDN_ST_F16}};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 3, e, 0, NULL));
    ddn_st_file *f = open_ok(ctx, path);
    double v[16];
    values_f64(ctx, f, "h", v, nh);
    for (int i = 0; i < nh; i++) assert_same_double(v[i], h_out[i], "F16", i);
    values_f64(ctx, f, "b", v, nb);
    for (int i = 0; i < nb; i++) assert_same_double(v[i], b_out[i], "BF16", i);
    values_f64(ctx, f, "d", v, 1);
    assert_same_double(v[0], 1 + ldexp(1, -10), "F16 from float64", 0);
    ddn_safetensors_close(f);
    /* The stored bits of the half tensor, independently of the reader. */
    size_t size;
    unsigned char *raw = read_all(path, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_true(raw[8 + hlen - 1] == '}' || raw[8 + hlen - 1] == ' ');
    const unsigned char *p = raw + 8 + hlen; /* "h" comes first */
    assert_true(p[0] == 0x00 && p[1] == 0x3C);            /* 1.0 = 0x3C00 */
    assert_true(p[4] == 0xFF && p[5] == 0x7B);            /* 65504 = 0x7BFF */
    assert_true(p[16] == 0x00 && p[17] == 0x80);          /* -0.0 = 0x8000 */
    assert_true((p[19] & 0x7C) == 0x7C && (p[18] || (p[19] & 0x03))); /* NaN */
    free(raw);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

/* Transposed, sliced and expanded views are saved in row-major order of their own shape. */
static void test_save_strided(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/strided.safetensors", dir);
    ddn_tensor *base = ddn_reshape(ctx, ddn_arange(ctx, DDN_DTYPE_F64, 0, 12, 1), DDN_SHAPE(3, 4));
    ddn_tensor *tr = ddn_transpose(ctx, base, 0, 1);          /* (4,3): tr[i][j] = 4j + i */
    ddn_tensor *sl = ddn_slice(ctx, base, 1, 1, 4, 2);         /* (3,2): sl[i][j] = 4i + 1 + 2j */
    ddn_tensor *row = ddn_slice(ctx, base, 0, 1, 2, 1);        /* (1,4): 4..7 */
    ddn_tensor *ex = ddn_expand(ctx, row, DDN_SHAPE(2, 4));    /* stride 0 */
    assert_non_null(ex);
    ddn_st_entry e[] = {{"tr", tr, DDN_ST_F32}, {"sl", sl, DDN_ST_AUTO}, {"ex", ex, DDN_ST_AUTO}};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 3, e, 0, NULL));
    ddn_st_file *f = open_ok(ctx, path);
    double v[12];
    values_f64(ctx, f, "tr", v, 12);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) assert_true(v[i * 3 + j] == 4 * j + i);
    values_f64(ctx, f, "sl", v, 6);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) assert_true(v[i * 2 + j] == 4 * i + 1 + 2 * j);
    values_f64(ctx, f, "ex", v, 8);
    for (int i = 0; i < 8; i++) assert_true(v[i] == 4 + i % 4);
    ddn_safetensors_close(f);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

static void test_names_and_metadata(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/names.safetensors", dir);
    ddn_tensor *x = ddn_ones(ctx, DDN_DTYPE_F32, DDN_SHAPE(2));
    const char *names[] = {"q\"uote", "back\\slash", "\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80",
                           "tab\tnew\nline\x01", "layer.0/weight"};
    ddn_st_entry e[5];
    for (int i = 0; i < 5; i++) e[i] = (ddn_st_entry){names[i], x, DDN_ST_AUTO};
    const char *meta[] = {"format", "pt", "k\"ey\\", "va\"lue\n\xc3\xa9", "empty", ""};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 5, e, 3, meta));
    ddn_st_file *f = open_ok(ctx, path);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(ddn_safetensors_name(f, i), names[i]);
        assert_true(ddn_safetensors_info(f, names[i], NULL, NULL, NULL));
    }
    for (int i = 0; i < 3; i++)
        assert_string_equal(ddn_safetensors_metadata(f, meta[2 * i]), meta[2 * i + 1]);
    ddn_safetensors_close(f);
    size_t size;
    unsigned char *raw = read_all(path, &size);
    size_t hlen = raw[0] | (size_t)raw[1] << 8; /* small header */
    assert_true(8 + hlen < size);
    raw[8 + hlen] = '\0';
    assert_non_null(strstr((char *)raw + 8, "\"q\\\"uote\""));        /* escaped in the JSON */
    assert_non_null(strstr((char *)raw + 8, "\"back\\\\slash\""));
    assert_non_null(strstr((char *)raw + 8, "tab\\tnew\\nline\\u0001"));
    free(raw);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

/* A failed save reports why, leaves an existing target byte-identical and no temporary file. */
static void test_save_failures(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/keep.safetensors", dir);
    ddn_tensor *x = ddn_ones(ctx, DDN_DTYPE_F32, DDN_SHAPE(3));
    int64_t vals[3] = {1, 300, 2};
    ddn_tensor *n = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(3), vals);
    ddn_st_entry good[] = {{"x", x, DDN_ST_AUTO}};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 1, good, 0, NULL));
    size_t size0;
    unsigned char *before = read_all(path, &size0);

    struct {
        ddn_st_entry e[2];
        int n;
        ddn_status status;
        const char *msg;
    } cases[] = {
        {{{"x", x, DDN_ST_AUTO}, {"x", x, DDN_ST_AUTO}}, 2, DDN_ERR_ARG, "'x' appears twice"},
        {{{"", x, DDN_ST_AUTO}}, 1, DDN_ERR_ARG, "entry 0 has an empty name"},
        {{{NULL, x, DDN_ST_AUTO}}, 1, DDN_ERR_ARG, "entry 0 has an empty name"},
        {{{"__metadata__", x, DDN_ST_AUTO}}, 1, DDN_ERR_ARG, "reserved"},
        {{{"bad\xff", x, DDN_ST_AUTO}}, 1, DDN_ERR_ARG, "not valid UTF-8"},
        {{{"x", NULL, DDN_ST_AUTO}}, 1, DDN_ERR_ARG, "tensor 'x' is NULL"},
        {{{"x", x, DDN_ST_I32}}, 1, DDN_ERR_ARG, "float32 and cannot be stored as I32"},
        {{{"n", n, DDN_ST_F16}}, 1, DDN_ERR_ARG, "int64 and cannot be stored as F16"},
        {{{"x", x, (ddn_st_dtype)42}}, 1, DDN_ERR_ARG, "invalid store_as 42"},
        /* fails after the temporary file exists: it must be removed */
        {{{"x", x, DDN_ST_AUTO}, {"n", n, DDN_ST_U8}}, 2, DDN_ERR_ARG,
         "tensor 'n': element 1 = 300 does not fit U8"},
        {{{"x", x, DDN_ST_AUTO}, {"n", n, DDN_ST_BOOL}}, 2, DDN_ERR_ARG, "does not fit BOOL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ddn_safetensors_save(ctx, path, cases[i].n, cases[i].e, 0, NULL),
                         cases[i].status);
        assert_error(ctx, cases[i].status, cases[i].msg);
        size_t size;
        unsigned char *after = read_all(path, &size);
        assert_int_equal(size, size0);
        assert_memory_equal(after, before, size0);
        free(after);
        assert_int_equal(count_entries(dir), 1);
    }
    const char *dup_meta[] = {"k", "1", "k", "2"};
    assert_int_equal(ddn_safetensors_save(ctx, path, 1, good, 2, dup_meta), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "metadata key 'k' appears twice");
    const char *null_meta[] = {"k", NULL};
    assert_int_equal(ddn_safetensors_save(ctx, path, 1, good, 1, null_meta), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "metadata value 0 is NULL");
    assert_int_equal(ddn_safetensors_save(ctx, path, 1, NULL, 0, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, NULL);

    /* A directory that does not exist: nothing is created. */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no/such/dir/m.safetensors", dir);
    assert_int_equal(ddn_safetensors_save(ctx, missing, 1, good, 0, NULL), DDN_ERR_IO);
    assert_error(ctx, DDN_ERR_IO, "cannot create");
    /* The target is a directory: the rename fails after everything was written. */
    char sub[160];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    char inner[200];
    snprintf(inner, sizeof inner, "%s/child", sub);
    write_all(inner, "x", 1); /* a non-empty directory cannot be replaced */
    assert_int_equal(ddn_safetensors_save(ctx, sub, 1, good, 0, NULL), DDN_ERR_IO);
    assert_error(ctx, DDN_ERR_IO, "rename onto");
    assert_int_equal(count_entries(dir), 2); /* keep.safetensors and sub: no temporary file */
    assert_int_equal(remove(inner), 0);
    assert_int_equal(rmdir(sub), 0);

    /* And a successful save replaces the file. */
    ddn_st_entry other[] = {{"y", n, DDN_ST_AUTO}};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 1, other, 0, NULL));
    ddn_st_file *f = open_ok(ctx, path);
    assert_string_equal(ddn_safetensors_name(f, 0), "y");
    ddn_safetensors_close(f);
    free(before);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

/* The writer's bytes are exactly what the format says, checked by hand for a tiny file. */
static void test_writer_bytes(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    char dir[64], path[128];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tiny.safetensors", dir);
    int64_t v[2] = {1, -2};
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_I64, DDN_SHAPE(2), v);
    ddn_st_entry e[] = {{"t", t, DDN_ST_I32}};
    const char *meta[] = {"a", "b"};
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 1, e, 1, meta));
    const char json[] = "{\"__metadata__\":{\"a\":\"b\"},\"t\":{\"dtype\":\"I32\",\"shape\":[2],"
                        "\"data_offsets\":[0,8]}}";
    size_t jlen = sizeof json - 1, hlen = (jlen + 7) / 8 * 8;
    size_t size;
    unsigned char *raw = read_all(path, &size);
    assert_int_equal(size, 8 + hlen + 8);
    assert_int_equal(raw[0], hlen);
    for (int i = 1; i < 8; i++) assert_int_equal(raw[i], 0);
    assert_memory_equal(raw + 8, json, jlen);
    for (size_t i = jlen; i < hlen; i++) assert_int_equal(raw[8 + i], ' ');
    const unsigned char data[8] = {1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF};
    assert_memory_equal(raw + 8 + hlen, data, 8);
    free(raw);
    /* No tensors at all is a valid file too. */
    assert_ok(ctx, ddn_safetensors_save(ctx, path, 0, NULL, 0, NULL));
    ddn_st_file *f = open_ok(ctx, path);
    assert_int_equal(ddn_safetensors_count(f), 0);
    ddn_safetensors_close(f);
    tmp_cleanup(dir);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names),        cmocka_unit_test(test_good_fixture),
        cmocka_unit_test(test_read_into),          cmocka_unit_test(test_bad_corpus),
        cmocka_unit_test(test_io_errors),          cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_roundtrip_dtypes),   cmocka_unit_test(test_store_rounding),
        cmocka_unit_test(test_save_strided),       cmocka_unit_test(test_names_and_metadata),
        cmocka_unit_test(test_save_failures),      cmocka_unit_test(test_writer_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
