/* ddn — IDX reader (see idx.h for the layout) and batch gathering.
 *
 * The file is read through one small "source" that is either stdio (raw files) or zlib's gzread
 * (files starting with the gzip magic 0x1f 0x8b), so both paths share the same strict checks:
 * header, declared size against the bytes present, nothing after the data. The data buffer grows
 * as bytes arrive (capped at the declared size), so a header that lies about a huge size fails
 * on the short read instead of on a giant up-front allocation. Tests: tests/test_idx.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ddn_impl.h"
#include "idx.h"

#define IDX_FIRST_CHUNK ((size_t)64 << 20) /* initial buffer when the declared size is larger */

/* ---- element types ---------------------------------------------------------------------------- */
static size_t idx_type_size(int type)
{
    switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
    }
}

/* ---- the byte source: stdio or gzip ----------------------------------------------------------- */
typedef struct idx_src {
    FILE *f;
    gzFile gz;
    const char *path;
    ddn_ctx *ctx;
    ddn_status st; /* the error of the last failed read */
} idx_src;

/* Reads up to n bytes; returns the count, or -1 after setting an error (I/O or corrupt gzip). A
 * short count without error means end of data. */
static int64_t src_read(idx_src *s, void *buf, size_t n)
{
    if (s->f) {
        size_t got = fread(buf, 1, n, s->f);
        if (got < n && ferror(s->f)) {
            s->st = ddn_ctx_set_error(s->ctx, DDN_ERR_IO, "idx_read: %s: read failed: %s",
                                      s->path, strerror(errno));
            return -1;
        }
        return (int64_t)got;
    }
    size_t total = 0;
    while (total < n) { /* gzread takes an unsigned count: read in chunks below 1 GiB */
        size_t want = n - total < ((size_t)1 << 30) ? n - total : ((size_t)1 << 30);
        int got = gzread(s->gz, (unsigned char *)buf + total, (unsigned)want);
        int zerr = Z_OK;
        const char *zmsg = got < (int)want ? gzerror(s->gz, &zerr) : "";
        if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
            if (zerr == Z_ERRNO)
                s->st = ddn_ctx_set_error(s->ctx, DDN_ERR_IO, "idx_read: %s: read failed: %s",
                                          s->path, strerror(errno));
            else
                s->st = ddn_ctx_set_error(s->ctx, DDN_ERR_FORMAT, "idx_read: %s: corrupt or "
                                          "truncated gzip stream (zlib: %s)", s->path, zmsg);
            return -1;
        }
        total += (size_t)got;
        if ((size_t)got < want) break;
    }
    return (int64_t)total;
}

/* Opens path, choosing gzip or raw from the first two bytes. */
static ddn_status src_open(idx_src *s, ddn_ctx *ctx, const char *path)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->path = path;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ddn_ctx_set_error(ctx, DDN_ERR_IO, "idx_read: cannot open %s: %s", path,
                                 strerror(errno));
    unsigned char magic[2] = {0, 0};
    size_t got = fread(magic, 1, 2, f);
    if (got < 2 && ferror(f)) {
        int e = errno;
        fclose(f);
        return ddn_ctx_set_error(ctx, DDN_ERR_IO, "idx_read: %s: read failed: %s", path,
                                 strerror(e));
    }
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        fclose(f);
        errno = 0;
        s->gz = gzopen(path, "rb");
        if (!s->gz)
            return ddn_ctx_set_error(ctx, DDN_ERR_IO, "idx_read: cannot open %s: %s", path,
                                     errno ? strerror(errno) : "gzopen failed");
        return DDN_OK;
    }
    if (fseek(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return ddn_ctx_set_error(ctx, DDN_ERR_IO, "idx_read: %s: seek failed: %s", path,
                                 strerror(e));
    }
    s->f = f;
    return DDN_OK;
}

static void src_close(idx_src *s)
{
    if (s->f) fclose(s->f);
    if (s->gz) gzclose(s->gz);
    s->f = NULL;
    s->gz = NULL;
}

/* ---- byte order ------------------------------------------------------------------------------- */
static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Reverses each elem-byte element in place (big-endian file -> little-endian host). */
static void swap_bytes(unsigned char *p, size_t count, size_t elem)
{
    for (size_t i = 0; i < count; i++, p += elem)
        for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* ---- reading ---------------------------------------------------------------------------------- */
static ddn_status read_header(idx_src *s, ddn_idx *out, size_t *nbytes)
{
    ddn_ctx *ctx = s->ctx;
    const char *path = s->path;
    unsigned char magic[4];
    int64_t got = src_read(s, magic, 4);
    if (got < 0) return s->st;
    if (got < 4)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "idx_read: %s: file ends inside the 4-byte "
                                 "magic (%" PRId64 " bytes)", path, got);
    if (magic[0] != 0 || magic[1] != 0 || idx_type_size(magic[2]) == 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "idx_read: %s: bad magic %02x %02x %02x "
                                 "%02x: expected 00 00 <type 08/09/0B/0C/0D/0E> <ndim>", path,
                                 magic[0], magic[1], magic[2], magic[3]);
    int ndim = magic[3];
    if (ndim == 0 || ndim > DDN_MAX_DIMS)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "idx_read: %s: %d dims in the header: "
                                 "expected 1 to %d", path, ndim, DDN_MAX_DIMS);
    unsigned char dims[4 * DDN_MAX_DIMS];
    got = src_read(s, dims, (size_t)4 * ndim);
    if (got < 0) return s->st;
    if (got < 4 * ndim)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "idx_read: %s: file ends inside the %d "
                                 "dim sizes", path, ndim);
    size_t esize = idx_type_size(magic[2]);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *d = dims + 4 * i;
        int64_t n = (int64_t)d[0] << 24 | (int64_t)d[1] << 16 | (int64_t)d[2] << 8 | d[3];
        /* numel * esize must fit both int64 and size_t */
        int64_t limit = (int64_t)((SIZE_MAX < (uint64_t)INT64_MAX ? SIZE_MAX : INT64_MAX) / esize);
        if (n > 0 && numel > limit / n)
            return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "idx_read: %s: the product of the dim "
                                     "sizes overflows (dim %d is %" PRId64 ")", path, i, n);
        numel *= n;
        out->shape[i] = n;
    }
    out->type = magic[2];
    out->ndim = ndim;
    out->numel = numel;
    *nbytes = (size_t)numel * esize;
    return DDN_OK;
}

/* Reads exactly nbytes of data into a buffer grown as bytes arrive; *data is malloc'd. */
static ddn_status read_data(idx_src *s, size_t nbytes, void **data)
{
    size_t cap = nbytes < IDX_FIRST_CHUNK ? nbytes : IDX_FIRST_CHUNK, have = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return ddn_ctx_set_error(s->ctx, DDN_ERR_OOM, "idx_read: %s: cannot allocate %zu bytes",
                                 s->path, cap);
    ddn_status st = DDN_OK;
    for (;;) {
        int64_t got = src_read(s, buf + have, cap - have);
        if (got < 0) {
            st = s->st;
            break;
        }
        have += (size_t)got;
        if (have < cap || cap == nbytes) break; /* short read: end of data, or all read */
        size_t ncap = cap > nbytes / 2 ? nbytes : 2 * cap;
        unsigned char *nb = realloc(buf, ncap);
        if (!nb) {
            st = ddn_ctx_set_error(s->ctx, DDN_ERR_OOM, "idx_read: %s: cannot allocate %zu "
                                   "bytes", s->path, ncap);
            break;
        }
        buf = nb;
        cap = ncap;
    }
    if (st == DDN_OK && have < nbytes)
        st = ddn_ctx_set_error(s->ctx, DDN_ERR_FORMAT, "idx_read: %s: the header declares %zu "
                               "data bytes but only %zu follow", s->path, nbytes, have);
    if (st == DDN_OK) {
        /* Nothing may follow the data (this read also makes zlib check the gzip trailer). */
        unsigned char extra[16];
        int64_t more = src_read(s, extra, sizeof extra);
        if (more < 0)
            st = s->st;
        else if (more > 0)
            st = ddn_ctx_set_error(s->ctx, DDN_ERR_FORMAT, "idx_read: %s: trailing bytes after "
                                   "the %zu data bytes the header declares", s->path, nbytes);
    }
    if (st != DDN_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    return DDN_OK;
}

ddn_status ddn_idx_read(ddn_ctx *ctx, const char *path, ddn_idx *out)
{
    if (!out || !path)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "idx_read: %s is NULL", out ? "path" : "out");
    memset(out, 0, sizeof *out);
    idx_src s;
    ddn_status st = src_open(&s, ctx, path);
    if (st != DDN_OK) return st;
    ddn_idx f;
    memset(&f, 0, sizeof f);
    size_t nbytes = 0;
    st = read_header(&s, &f, &nbytes);
    if (st == DDN_OK) st = read_data(&s, nbytes, &f.data);
    src_close(&s);
    if (st != DDN_OK) return st;
    size_t esize = idx_type_size(f.type);
    if (esize > 1 && host_is_little_endian()) swap_bytes(f.data, (size_t)f.numel, esize);
    *out = f;
    return DDN_OK;
}

void ddn_idx_free(ddn_idx *f)
{
    if (!f) return;
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* ---- batches ---------------------------------------------------------------------------------- */
/* dst[j] = (DT)(src[j] * scale + shift) for one item of m elements. */
#define GATHER_ROW(DT, ST)                                                                     \
    do {                                                                                       \
        const ST *src_ = (const ST *)src;                                                      \
        DT *dst_ = (DT *)dst;                                                                  \
        for (int64_t j = 0; j < m; j++) dst_[j] = (DT)((double)src_[j] * scale + shift);       \
    } while (0)

#define GATHER_FROM(DT)                                                                        \
    switch (type) {                                                                            \
    case 0x08: GATHER_ROW(DT, uint8_t); break;                                                 \
    case 0x09: GATHER_ROW(DT, int8_t); break;                                                  \
    case 0x0B: GATHER_ROW(DT, int16_t); break;                                                 \
    case 0x0C: GATHER_ROW(DT, int32_t); break;                                                 \
    case 0x0D: GATHER_ROW(DT, float); break;                                                   \
    default: GATHER_ROW(DT, double); break;                                                    \
    }

static void gather_row(int type, ddn_dtype dt, void *dst, const void *src, int64_t m,
                       double scale, double shift)
{
    switch (dt) {
    case DDN_DTYPE_F32: GATHER_FROM(float); break;
    case DDN_DTYPE_F64: GATHER_FROM(double); break;
    default: GATHER_FROM(int64_t); break;
    }
}

/* An int64 destination takes a value only when it is finite and inside int64's range (a cast of
 * anything else is undefined behaviour). */
static bool row_fits_int64(int type, const void *src, int64_t m, double scale, double shift,
                           int64_t *bad)
{
    for (int64_t j = 0; j < m; j++) {
        double v;
        switch (type) {
        case 0x08: v = ((const uint8_t *)src)[j]; break;
        case 0x09: v = ((const int8_t *)src)[j]; break;
        case 0x0B: v = ((const int16_t *)src)[j]; break;
        case 0x0C: v = ((const int32_t *)src)[j]; break;
        case 0x0D: v = ((const float *)src)[j]; break;
        default: v = ((const double *)src)[j]; break;
        }
        v = v * scale + shift;
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
            *bad = j;
            return false;
        }
    }
    return true;
}

ddn_tensor *ddn_idx_batch(ddn_ctx *ctx, const ddn_idx *f, int64_t n, const int64_t *items,
                          ddn_dtype dt, double scale, double shift)
{
    if (!f || !f->data || f->ndim < 1 || f->ndim > DDN_MAX_DIMS || idx_type_size(f->type) == 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "idx_batch: the IDX file is NULL or was not read");
        return NULL;
    }
    if (n < 0 || (n > 0 && !items)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "idx_batch: %" PRId64 " items with %s item list", n,
                          items ? "an" : "a NULL");
        return NULL;
    }
    if ((unsigned)dt >= DDN_DTYPE_COUNT) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "idx_batch: invalid dtype %d", (int)dt);
        return NULL;
    }
    int64_t m = f->shape[0] > 0 ? f->numel / f->shape[0] : 0; /* elements per item */
    for (int64_t i = 0; i < n; i++)
        if (items[i] < 0 || items[i] >= f->shape[0]) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "idx_batch: items[%" PRId64 "] = %" PRId64
                              " is outside [0, %" PRId64 ")", i, items[i], f->shape[0]);
            return NULL;
        }
    int64_t shape[DDN_MAX_DIMS];
    shape[0] = n;
    for (int d = 1; d < f->ndim; d++) shape[d] = f->shape[d];
    ddn_tensor *t = ddn_tensor_new(ctx, dt, f->ndim, shape);
    if (!t) return NULL;

    /* Convert on the host, then one copy to the device (a memcpy on the CPU). */
    ddn_mark mark = ddn_ctx_mark(ctx);
    size_t esize = idx_type_size(f->type), osize = ddn_dtype_size(dt);
    unsigned char *host = ddn_ctx_scratch(ctx, ddn_tensor_nbytes(t));
    if (!host) return NULL;
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *src = (const unsigned char *)f->data + (size_t)(items[i] * m) * esize;
        int64_t bad;
        if (dt == DDN_DTYPE_I64 && !row_fits_int64(f->type, src, m, scale, shift, &bad)) {
            ddn_ctx_set_error(ctx, DDN_ERR_ARG, "idx_batch: item %" PRId64 " element %" PRId64
                              " times %g plus %g is not representable as int64", items[i], bad,
                              scale, shift);
            ddn_ctx_rewind(ctx, mark);
            return NULL;
        }
        gather_row(f->type, dt, host + (size_t)(i * m) * osize, src, m, scale, shift);
    }
    ddn_status st = ctx->backend->copy_h2d(ctx, t->data, host, ddn_tensor_nbytes(t));
    ddn_ctx_rewind(ctx, mark);
    if (st != DDN_OK) {
        ddn_ctx_set_error(ctx, st, "idx_batch: copy to %s failed", ctx->backend->name);
        return NULL;
    }
    return t;
}
