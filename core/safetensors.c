/* ddn — the safetensors reader: opens a file, checks every rule of the format, and loads tensors.
 *
 * The whole file is read into one malloc'd buffer; the header is validated as JSON first
 * (json.c), then walked once against the schema, keeping only the entries (names live in one
 * string block owned by the file). Nothing in the file is trusted: lengths, offsets and shapes
 * are checked for overflow before use, and every violation is a DDN_ERR_FORMAT naming the file,
 * the tensor and the rule. Data is decoded with byte loads, so unaligned offsets are fine.
 * The writer is in safetensors_write.c. Tests: tests/test_safetensors.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ddn_impl.h"
#include "json_impl.h"
#include "safetensors_impl.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* the reference implementation's cap */
#define ST_MAX_DEPTH 64                             /* the schema needs 3 levels */
#define ST_CHUNK_ELEMS ((int64_t)1 << 16)           /* decode and upload in pieces */

const ddn_st_dtype_info ddn_st_dtypes[DDN_ST_DTYPE_COUNT] = {
    [DDN_ST_AUTO] = {"AUTO", 0, DDN_DTYPE_F32},
    [DDN_ST_F32] = {"F32", 4, DDN_DTYPE_F32},
    [DDN_ST_F64] = {"F64", 8, DDN_DTYPE_F64},
    [DDN_ST_F16] = {"F16", 2, DDN_DTYPE_F32},
    [DDN_ST_BF16] = {"BF16", 2, DDN_DTYPE_F32},
    [DDN_ST_I64] = {"I64", 8, DDN_DTYPE_I64},
    [DDN_ST_I32] = {"I32", 4, DDN_DTYPE_I64},
    [DDN_ST_U8] = {"U8", 1, DDN_DTYPE_I64},
    [DDN_ST_BOOL] = {"BOOL", 1, DDN_DTYPE_I64},
};

const char *ddn_st_dtype_name(ddn_st_dtype dt)
{
    return (unsigned)dt < DDN_ST_DTYPE_COUNT ? ddn_st_dtypes[dt].name : "invalid";
}

/* ---- half and bfloat16 ------------------------------------------------------------------------ */
float ddn_half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    float sign = (h & 0x8000) ? -1.0f : 1.0f;
    if (e == 0) return sign * ldexpf((float)m, -24); /* zero and subnormals */
    if (e == 31) return m ? copysignf(NAN, sign) : sign * INFINITY;
    return sign * ldexpf((float)(m | 0x400), e - 25);
}

float ddn_bf16_to_float(uint16_t h) { return ddn_bits_to_f32((uint32_t)h << 16); }

/* Rounds x to a binary format with mbits mantissa and ebits exponent bits (ties to even). Scaling
 * by a power of two is exact in double, so nearbyint (round-to-nearest-even in the default mode)
 * does the only rounding. */
static uint16_t round_small_float(double x, int mbits, int ebits)
{
    const int bias = (1 << (ebits - 1)) - 1;
    const uint32_t sign = signbit(x) ? 1u << (mbits + ebits) : 0;
    const uint32_t inf = ((1u << ebits) - 1) << mbits;
    if (isnan(x)) return (uint16_t)(sign | inf | (1u << (mbits - 1)));
    double a = fabs(x);
    if (isinf(a)) return (uint16_t)(sign | inf);
    if (a == 0) return (uint16_t)sign;
    int e;
    frexp(a, &e);
    e -= 1;                            /* a in [2^e, 2^(e+1)) */
    if (e < 1 - bias) e = 1 - bias;    /* subnormal: the fixed smallest scale */
    double m = nearbyint(ldexp(a, mbits - e));
    if (m >= ldexp(1.0, mbits + 1)) {  /* rounded up to the next power of two */
        m /= 2;
        e++;
    }
    if (e + bias >= (1 << ebits) - 1) return (uint16_t)(sign | inf);
    uint32_t mi = (uint32_t)m, bits;
    if (mi < (1u << mbits)) bits = mi; /* subnormal (exponent field 0) */
    else bits = ((uint32_t)(e + bias) << mbits) | (mi - (1u << mbits));
    return (uint16_t)(sign | bits);
}

uint16_t ddn_half_from_double(double x) { return round_small_float(x, 10, 5); }
uint16_t ddn_bf16_from_double(double x) { return round_small_float(x, 7, 8); }

/* ---- the opened file -------------------------------------------------------------------------- */
typedef struct st_tensor {
    const char *name; /* in the file's string block */
    ddn_st_dtype dtype;
    int ndim;
    int64_t shape[DDN_MAX_DIMS];
    uint64_t begin, end; /* byte range in the data buffer */
} st_tensor;

struct ddn_st_file {
    char *path;
    unsigned char *buf; /* the whole file */
    size_t size;
    const unsigned char *data; /* the data buffer, after the header */
    size_t data_len;
    char *strings; /* decoded names, keys and values, NUL-terminated */
    size_t strings_used;
    st_tensor *t; /* in data (offset) order once validated */
    int64_t n, cap;
    const st_tensor **by_name; /* sorted by name, for lookups */
    const char **meta;         /* key, value, key, value, ... sorted by key */
    int64_t n_meta, meta_cap;
};

static ddn_status format_error(ddn_ctx *ctx, const ddn_st_file *f, const char *tensor,
                               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static ddn_status format_error(ddn_ctx *ctx, const ddn_st_file *f, const char *tensor,
                               const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (tensor)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "%s: tensor '%.200s': %s", f->path, tensor,
                                 msg);
    return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "%s: %s", f->path, msg);
}

static ddn_status oom(ddn_ctx *ctx, const ddn_st_file *f)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: out of memory reading the header", f->path);
}

static ddn_status read_file(ddn_ctx *ctx, ddn_st_file *f)
{
    FILE *fp = fopen(f->path, "rb");
    if (!fp)
        return ddn_ctx_set_error(ctx, DDN_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat sb;
    ddn_status st = DDN_OK;
    if (fstat(fileno(fp), &sb) != 0)
        st = ddn_ctx_set_error(ctx, DDN_ERR_IO, "%s: cannot stat: %s", f->path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = ddn_ctx_set_error(ctx, DDN_ERR_IO, "%s: not a regular file", f->path);
    else if ((uintmax_t)sb.st_size >= SIZE_MAX)
        st = ddn_ctx_set_error(ctx, DDN_ERR_IO, "%s: file too large", f->path);
    if (st == DDN_OK) {
        f->size = (size_t)sb.st_size;
        f->buf = malloc(f->size ? f->size : 1);
        if (!f->buf)
            st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: cannot allocate %zu bytes to read it",
                                   f->path, f->size);
    }
    if (st == DDN_OK && fread(f->buf, 1, f->size, fp) != f->size)
        st = ddn_ctx_set_error(ctx, DDN_ERR_IO, "%s: read failed: %s", f->path,
                               ferror(fp) ? strerror(errno) : "file shrank while reading");
    fclose(fp);
    return st;
}

/* ---- the header ------------------------------------------------------------------------------- */
/* Room for the next decoded string: the block is sized so that all of them fit (json_impl.h). */
static char *strings_tail(ddn_st_file *f) { return f->strings + f->strings_used; }
static const char *strings_commit(ddn_st_file *f, size_t len)
{
    const char *s = f->strings + f->strings_used;
    f->strings_used += len + 1;
    return s;
}

/* Decodes a key or string at the cursor into the string block (uncommitted); rejects embedded
 * NULs, which a C string cannot carry. */
static ddn_status decode_string(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j, bool key,
                                const char *tensor, size_t *len)
{
    char *out = strings_tail(f);
    *len = key ? ddn_json_key(j, out) : ddn_json_string(j, out);
    if (strlen(out) != *len)
        return format_error(ctx, f, tensor, "%s '%.100s' contains a NUL character (\\u0000)",
                            key ? "key" : "string", out);
    return DDN_OK;
}

/* A non-negative JSON integer that fits int64; what names the field in messages. */
static ddn_status read_uint(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j, const char *tensor,
                            const char *what, int index, int64_t *out)
{
    ddn_json_type type = ddn_json_peek(j);
    if (type != DDN_JSON_NUMBER)
        return format_error(ctx, f, tensor, "%s[%d] is %s, not an integer", what, index,
                            ddn_json_type_name(type));
    ddn_json_num num;
    ddn_json_number(j, &num);
    int w = num.len > 40 ? 40 : (int)num.len;
    if (!num.is_int)
        return format_error(ctx, f, tensor, "%s[%d] = %.*s is not an integer", what, index, w,
                            num.text);
    if (num.neg && num.mag != 0)
        return format_error(ctx, f, tensor, "%s[%d] = %.*s is negative", what, index, w,
                            num.text);
    if (num.overflow || num.mag > (uint64_t)INT64_MAX)
        return format_error(ctx, f, tensor, "%s[%d] = %.*s overflows int64", what, index, w,
                            num.text);
    *out = (int64_t)num.mag;
    return DDN_OK;
}

static ddn_status parse_dtype(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j, st_tensor *t)
{
    ddn_json_type type = ddn_json_peek(j);
    if (type != DDN_JSON_STRING)
        return format_error(ctx, f, t->name, "dtype is %s, not a string", ddn_json_type_name(type));
    size_t len;
    ddn_status st = decode_string(ctx, f, j, false, t->name, &len);
    if (st != DDN_OK) return st;
    const char *s = strings_tail(f);
    for (int d = DDN_ST_AUTO + 1; d < DDN_ST_DTYPE_COUNT; d++)
        if (strcmp(s, ddn_st_dtypes[d].name) == 0) {
            t->dtype = (ddn_st_dtype)d;
            return DDN_OK;
        }
    return format_error(ctx, f, t->name, "unknown dtype '%.40s' (supported: F32, F64, F16, BF16, "
                        "I64, I32, U8, BOOL)", s);
}

static ddn_status parse_shape(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j, st_tensor *t)
{
    ddn_json_type type = ddn_json_peek(j);
    if (type != DDN_JSON_ARRAY)
        return format_error(ctx, f, t->name, "shape is %s, not an array",
                            ddn_json_type_name(type));
    ddn_json_enter(j);
    bool first = true;
    int n = 0;
    while (ddn_json_next(j, &first)) {
        if (n == DDN_MAX_DIMS)
            return format_error(ctx, f, t->name, "shape has more than %d dims", DDN_MAX_DIMS);
        ddn_status st = read_uint(ctx, f, j, t->name, "shape", n, &t->shape[n]);
        if (st != DDN_OK) return st;
        n++;
    }
    t->ndim = n;
    /* The product of the non-zero dims must leave room for 8-byte elements, so that the shape is
     * a valid ddn shape whatever the order of its dims. */
    int64_t prod = 1;
    for (int i = 0; i < n; i++) {
        if (t->shape[i] == 0) continue;
        if (prod > (INT64_MAX / 8) / t->shape[i]) {
            char s[160];
            return format_error(ctx, f, t->name, "shape %s overflows: the element count does not "
                                "fit int64", ddn_shape_str_raw(n, t->shape, s, sizeof s));
        }
        prod *= t->shape[i];
    }
    return DDN_OK;
}

static ddn_status parse_offsets(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j, st_tensor *t)
{
    ddn_json_type type = ddn_json_peek(j);
    if (type != DDN_JSON_ARRAY)
        return format_error(ctx, f, t->name, "data_offsets is %s, not an array [begin, end]",
                            ddn_json_type_name(type));
    ddn_json_enter(j);
    bool first = true;
    int n = 0;
    int64_t v[2] = {0, 0};
    while (ddn_json_next(j, &first)) {
        if (n == 2) return format_error(ctx, f, t->name, "data_offsets holds more than 2 items, "
                                        "expected [begin, end]");
        ddn_status st = read_uint(ctx, f, j, t->name, "data_offsets", n, &v[n]);
        if (st != DDN_OK) return st;
        n++;
    }
    if (n != 2)
        return format_error(ctx, f, t->name, "data_offsets holds %d items, expected [begin, end]",
                            n);
    if (v[0] > v[1])
        return format_error(ctx, f, t->name, "data_offsets [%" PRId64 ", %" PRId64 "]: begin is "
                            "after end", v[0], v[1]);
    t->begin = (uint64_t)v[0];
    t->end = (uint64_t)v[1];
    return DDN_OK;
}

static ddn_status parse_entry(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j, st_tensor *t)
{
    ddn_json_type type = ddn_json_peek(j);
    if (type != DDN_JSON_OBJECT)
        return format_error(ctx, f, t->name, "entry is %s, not an object",
                            ddn_json_type_name(type));
    bool seen[3] = {false, false, false};
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    ddn_json_enter(j);
    bool first = true;
    while (ddn_json_next(j, &first)) {
        size_t len;
        ddn_status st = decode_string(ctx, f, j, true, t->name, &len);
        if (st != DDN_OK) return st;
        const char *key = strings_tail(f);
        int k = 0;
        while (k < 3 && strcmp(key, keys[k]) != 0) k++;
        if (k == 3)
            return format_error(ctx, f, t->name, "unexpected key '%.60s' (an entry holds exactly "
                                "dtype, shape and data_offsets)", key);
        if (seen[k]) return format_error(ctx, f, t->name, "key '%s' appears twice", keys[k]);
        seen[k] = true;
        st = k == 0 ? parse_dtype(ctx, f, j, t)
             : k == 1 ? parse_shape(ctx, f, j, t)
                      : parse_offsets(ctx, f, j, t);
        if (st != DDN_OK) return st;
    }
    for (int k = 0; k < 3; k++)
        if (!seen[k]) return format_error(ctx, f, t->name, "missing '%s'", keys[k]);
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) numel *= t->shape[i];
    uint64_t need = (uint64_t)numel * ddn_st_dtypes[t->dtype].size;
    if (t->end - t->begin != need) {
        char s[160];
        return format_error(ctx, f, t->name, "data_offsets [%" PRIu64 ", %" PRIu64 "] hold %"
                            PRIu64 " bytes but %s %s needs %" PRIu64, t->begin, t->end,
                            t->end - t->begin, ddn_st_dtypes[t->dtype].name,
                            ddn_shape_str_raw(t->ndim, t->shape, s, sizeof s), need);
    }
    if (t->end > f->data_len)
        return format_error(ctx, f, t->name, "data_offsets [%" PRIu64 ", %" PRIu64 "] run past the "
                            "end of the data buffer (%zu bytes; is the file truncated?)", t->begin,
                            t->end, f->data_len);
    return DDN_OK;
}

static ddn_status parse_metadata(ddn_ctx *ctx, ddn_st_file *f, ddn_json *j)
{
    ddn_json_type type = ddn_json_peek(j);
    if (type != DDN_JSON_OBJECT)
        return format_error(ctx, f, NULL, "__metadata__ is %s, not an object of strings",
                            ddn_json_type_name(type));
    ddn_json_enter(j);
    bool first = true;
    while (ddn_json_next(j, &first)) {
        if (f->n_meta + 2 > f->meta_cap) {
            int64_t cap = f->meta_cap ? 2 * f->meta_cap : 16;
            const char **m = realloc(f->meta, (size_t)cap * sizeof *m);
            if (!m) return oom(ctx, f);
            f->meta = m;
            f->meta_cap = cap;
        }
        size_t len;
        ddn_status st = decode_string(ctx, f, j, true, NULL, &len);
        if (st != DDN_OK) return st;
        const char *key = strings_commit(f, len);
        type = ddn_json_peek(j);
        if (type != DDN_JSON_STRING)
            return format_error(ctx, f, NULL, "__metadata__ key '%.100s': value is %s, not a "
                                "string", key, ddn_json_type_name(type));
        st = decode_string(ctx, f, j, false, NULL, &len);
        if (st != DDN_OK) return st;
        f->meta[f->n_meta++] = key;
        f->meta[f->n_meta++] = strings_commit(f, len);
    }
    return DDN_OK;
}

static ddn_status parse_header(ddn_ctx *ctx, ddn_st_file *f)
{
    if (f->size < 8)
        return format_error(ctx, f, NULL, "file is %zu bytes, too short for the 8-byte header "
                            "length", f->size);
    uint64_t n = ddn_le_load(f->buf, 8);
    if (n > ST_MAX_HEADER)
        return format_error(ctx, f, NULL, "header length %" PRIu64 " exceeds the limit of %" PRIu64
                            " bytes", n, ST_MAX_HEADER);
    if (n > f->size - 8)
        return format_error(ctx, f, NULL, "header length %" PRIu64 " runs past the end of the "
                            "file (%zu bytes)", n, f->size);
    const char *h = (const char *)f->buf + 8;
    char err[160];
    if (!ddn_json_validate(h, (size_t)n, ST_MAX_DEPTH, err, sizeof err))
        return format_error(ctx, f, NULL, "header is not valid JSON: %s", err);
    f->data = f->buf + 8 + n;
    f->data_len = f->size - 8 - (size_t)n;
    f->strings = malloc((size_t)n + 1);
    if (!f->strings) return oom(ctx, f);
    ddn_json j = {h, (size_t)n, 0};
    ddn_json_type type = ddn_json_peek(&j);
    if (type != DDN_JSON_OBJECT)
        return format_error(ctx, f, NULL, "header is %s, not a JSON object",
                            ddn_json_type_name(type));
    ddn_json_enter(&j);
    bool first = true, seen_meta = false;
    while (ddn_json_next(&j, &first)) {
        size_t len;
        ddn_status st = decode_string(ctx, f, &j, true, NULL, &len);
        if (st != DDN_OK) return st;
        if (strcmp(strings_tail(f), "__metadata__") == 0) {
            if (seen_meta) return format_error(ctx, f, NULL, "__metadata__ appears twice");
            seen_meta = true;
            st = parse_metadata(ctx, f, &j);
        } else {
            if (f->n == f->cap) {
                int64_t cap = f->cap ? 2 * f->cap : 16;
                st_tensor *t = realloc(f->t, (size_t)cap * sizeof *t);
                if (!t) return oom(ctx, f);
                f->t = t;
                f->cap = cap;
            }
            st_tensor *t = &f->t[f->n++];
            memset(t, 0, sizeof *t);
            t->name = strings_commit(f, len);
            st = parse_entry(ctx, f, &j, t);
        }
        if (st != DDN_OK) return st;
    }
    return DDN_OK;
}

/* ---- whole-file rules ------------------------------------------------------------------------- */
static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted by begin (open sorts them before indexing names), the tensors must tile the data buffer
 * exactly: no overlap, no gap, nothing after the last one. */
static ddn_status check_layout(ddn_ctx *ctx, ddn_st_file *f)
{
    uint64_t at = 0;
    for (int64_t i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        if (t->begin < at)
            return format_error(ctx, f, t->name, "data_offsets [%" PRIu64 ", %" PRIu64 "] overlap "
                                "tensor '%.200s' [%" PRIu64 ", %" PRIu64 "]", t->begin, t->end,
                                f->t[i - 1].name, f->t[i - 1].begin, f->t[i - 1].end);
        if (t->begin > at)
            return format_error(ctx, f, t->name, "gap in the data buffer: bytes [%" PRIu64 ", %"
                                PRIu64 ") before it belong to no tensor", at, t->begin);
        at = t->end;
    }
    if (at != f->data_len)
        return format_error(ctx, f, NULL, "%" PRIu64 " trailing bytes: the data buffer is %zu "
                            "bytes but the tensors end at %" PRIu64, f->data_len - at,
                            f->data_len, at);
    return DDN_OK;
}

static ddn_status build_indexes(ddn_ctx *ctx, ddn_st_file *f)
{
    f->by_name = malloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    if (!f->by_name) return oom(ctx, f);
    for (int64_t i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    if (f->n) qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_by_name);
    for (int64_t i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0)
            return format_error(ctx, f, f->by_name[i]->name, "name appears twice in the header");
    /* Metadata pairs move together: sort an index of keys, then rebuild. */
    if (f->n_meta) {
        int64_t pairs = f->n_meta / 2;
        qsort(f->meta, (size_t)pairs, 2 * sizeof *f->meta, cmp_meta);
        for (int64_t i = 1; i < pairs; i++)
            if (strcmp(f->meta[2 * i], f->meta[2 * i - 2]) == 0)
                return format_error(ctx, f, NULL, "__metadata__ key '%.100s' appears twice",
                                    f->meta[2 * i]);
    }
    return DDN_OK;
}

static ddn_status check_bools(ddn_ctx *ctx, ddn_st_file *f)
{
    for (int64_t i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        if (t->dtype != DDN_ST_BOOL) continue;
        for (uint64_t k = t->begin; k < t->end; k++)
            if (f->data[k] > 1)
                return format_error(ctx, f, t->name, "BOOL element %" PRIu64 " is %u (must be 0 "
                                    "or 1)", k - t->begin, f->data[k]);
    }
    return DDN_OK;
}

ddn_status ddn_safetensors_open(ddn_ctx *ctx, const char *path, ddn_st_file **out)
{
    if (out) *out = NULL;
    if (!ctx) return DDN_ERR_ARG;
    if (!path || !out)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_open: path or out is NULL");
    ddn_st_file *f = calloc(1, sizeof *f);
    char *p = malloc(strlen(path) + 1);
    if (!f || !p) {
        free(f);
        free(p);
        return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "safetensors_open: out of memory");
    }
    f->path = strcpy(p, path);
    ddn_status st = read_file(ctx, f);
    if (st == DDN_OK) st = parse_header(ctx, f);
    if (st == DDN_OK && f->n) qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_by_offset);
    if (st == DDN_OK) st = build_indexes(ctx, f);
    if (st == DDN_OK) st = check_layout(ctx, f);
    if (st == DDN_OK) st = check_bools(ctx, f);
    if (st != DDN_OK) {
        ddn_safetensors_close(f);
        return st;
    }
    *out = f;
    return DDN_OK;
}

void ddn_safetensors_close(ddn_st_file *f)
{
    if (!f) return;
    free(f->path);
    free(f->buf);
    free(f->strings);
    free(f->t);
    free(f->by_name);
    free(f->meta);
    free(f);
}

/* ---- queries ---------------------------------------------------------------------------------- */
int64_t ddn_safetensors_count(const ddn_st_file *f) { return f ? f->n : 0; }

const char *ddn_safetensors_name(const ddn_st_file *f, int64_t i)
{
    return f && i >= 0 && i < f->n ? f->t[i].name : NULL;
}

static const st_tensor *find(const ddn_st_file *f, const char *name)
{
    int64_t lo = 0, hi = f->n; /* binary search over by_name */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

bool ddn_safetensors_info(const ddn_st_file *f, const char *name, ddn_st_dtype *dtype, int *ndim,
                          int64_t *shape)
{
    const st_tensor *t = f && name ? find(f, name) : NULL;
    if (!t) return false;
    if (dtype) *dtype = t->dtype;
    if (ndim) *ndim = t->ndim;
    if (shape)
        for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return true;
}

const char *ddn_safetensors_metadata(const ddn_st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    int64_t lo = 0, hi = f->n_meta / 2;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta[2 * mid], key);
        if (c == 0) return f->meta[2 * mid + 1];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- loading ---------------------------------------------------------------------------------- */
/* Decodes n stored elements at src (any alignment) into dst of the natural ddn dtype. */
static void decode(ddn_st_dtype dt, const unsigned char *src, void *dst, int64_t n)
{
    float *f32 = dst;
    double *f64 = dst;
    int64_t *i64 = dst;
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case DDN_ST_F32: f32[i] = ddn_bits_to_f32((uint32_t)ddn_le_load(src + 4 * i, 4)); break;
        case DDN_ST_F16: f32[i] = ddn_half_to_float((uint16_t)ddn_le_load(src + 2 * i, 2)); break;
        case DDN_ST_BF16: f32[i] = ddn_bf16_to_float((uint16_t)ddn_le_load(src + 2 * i, 2)); break;
        case DDN_ST_F64: f64[i] = ddn_bits_to_f64(ddn_le_load(src + 8 * i, 8)); break;
        case DDN_ST_I64: {
            uint64_t u = ddn_le_load(src + 8 * i, 8);
            memcpy(&i64[i], &u, sizeof u); /* two's complement, without an out-of-range cast */
            break;
        }
        case DDN_ST_I32: {
            uint32_t u = (uint32_t)ddn_le_load(src + 4 * i, 4);
            int32_t v;
            memcpy(&v, &u, sizeof v);
            i64[i] = v;
            break;
        }
        default: i64[i] = src[i]; break; /* U8, BOOL */
        }
    }
}

/* Fills t (contiguous, of the entry's natural dtype and shape) through the backend, a chunk of
 * host scratch at a time so that loading a large tensor does not grow the arena by its size. */
static ddn_status load(ddn_ctx *ctx, const ddn_st_file *f, const st_tensor *e, ddn_tensor *t)
{
    int64_t n = ddn_tensor_numel(t);
    size_t ssz = ddn_st_dtypes[e->dtype].size, dsz = ddn_dtype_size(t->dtype);
    int64_t chunk = n < ST_CHUNK_ELEMS ? n : ST_CHUNK_ELEMS;
    if (n == 0) return DDN_OK;
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *host = ddn_ctx_scratch(ctx, (size_t)chunk * dsz);
    ddn_status st = host ? DDN_OK : ddn_ctx_status(ctx);
    unsigned char *dev = ddn_tensor_ptr(t);
    for (int64_t i = 0; st == DDN_OK && i < n; i += chunk) {
        int64_t k = n - i < chunk ? n - i : chunk;
        decode(e->dtype, f->data + e->begin + (size_t)i * ssz, host, k);
        st = ctx->backend->copy_h2d(ctx, dev + (size_t)i * dsz, host, (size_t)k * dsz);
        if (st != DDN_OK)
            ddn_ctx_set_error(ctx, st, "%s: tensor '%.200s': copy to %s failed", f->path, e->name,
                              ctx->backend->name);
    }
    ddn_ctx_rewind(ctx, mark);
    return st;
}

static const st_tensor *find_or_error(ddn_ctx *ctx, const ddn_st_file *f, const char *name,
                                      const char *op)
{
    if (!f || !name) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: file or name is NULL", op);
        return NULL;
    }
    const st_tensor *e = find(f, name);
    if (!e)
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s has no tensor '%.200s'", op, f->path, name);
    return e;
}

ddn_tensor *ddn_safetensors_get(ddn_ctx *ctx, const ddn_st_file *f, const char *name)
{
    if (!ctx) return NULL;
    const st_tensor *e = find_or_error(ctx, f, name, "safetensors_get");
    if (!e) return NULL;
    ddn_tensor *t = ddn_tensor_new(ctx, ddn_st_dtypes[e->dtype].natural, e->ndim, e->shape);
    if (!t || load(ctx, f, e, t) != DDN_OK) return NULL;
    return t;
}

ddn_status ddn_safetensors_read_into(ddn_ctx *ctx, const ddn_st_file *f, const char *name,
                                     ddn_tensor *dst)
{
    if (!ctx) return DDN_ERR_ARG;
    if (!dst) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_read_into: dst is NULL");
    if (dst->ctx != ctx)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_read_into: the destination "
                                 "tensor belongs to another context");
    const st_tensor *e = find_or_error(ctx, f, name, "safetensors_read_into");
    if (!e) return ddn_ctx_status(ctx);
    bool same = dst->ndim == e->ndim;
    for (int i = 0; same && i < e->ndim; i++) same = dst->shape[i] == e->shape[i];
    if (!same) {
        char a[160], b[160];
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "safetensors_read_into: %s: tensor '%.200s' "
                                 "has shape %s but the destination has shape %s", f->path, name,
                                 ddn_shape_str_raw(e->ndim, e->shape, a, sizeof a),
                                 ddn_shape_str(dst, b, sizeof b));
    }
    ddn_dtype nat = ddn_st_dtypes[e->dtype].natural;
    /* Reals into an integer tensor would truncate (and NaN has no integer): refuse. */
    if (ddn_dtype_is_float(nat) && !ddn_dtype_is_float(dst->dtype))
        return ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "safetensors_read_into: %s: tensor '%.200s' "
                                 "is stored as %s and cannot be read into a tensor of dtype %s",
                                 f->path, name, ddn_st_dtypes[e->dtype].name,
                                 ddn_dtype_name(dst->dtype));
    if (dst->dtype == nat && ddn_tensor_is_contiguous(dst)) return load(ctx, f, e, dst);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *tmp = ddn_tensor_new(ctx, nat, e->ndim, e->shape);
    ddn_status st = tmp ? load(ctx, f, e, tmp) : ddn_ctx_status(ctx);
    if (st == DDN_OK) st = ddn_tensor_copy_(dst, tmp); /* converts, and writes through strides */
    ddn_ctx_rewind(ctx, mark);
    return st;
}
