/* ddn — the safetensors writer: a JSON header (names escaped, padded with spaces to a multiple of
 * 8 bytes), then each tensor's elements in row-major little-endian order, gathered from any
 * strided view and converted to the stored dtype (float -> F16/BF16 rounds to nearest even;
 * int64 -> I32/U8/BOOL only when every value fits).
 *
 * Atomic replace: the bytes go to "<path>.tmp.<pid>" in the same directory, which is fsynced and
 * renamed over the target, and then the directory is fsynced. On any failure the temporary file
 * is removed and an existing target is left untouched. Tests: tests/test_safetensors.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddn_impl.h"
#include "json_impl.h"
#include "safetensors_impl.h"

/* ---- a growable text buffer for the header ---------------------------------------------------- */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_put(b, tmp, (size_t)k);
}

/* A JSON string: quotes, backslashes and control characters escaped; UTF-8 passes through. */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sb_put(b, esc, 6);
            } else
                sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* ---- arguments -------------------------------------------------------------------------------- */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts the n strings in place and returns one that appears twice, or NULL. */
static const char *find_duplicate(const char **sorted, int n)
{
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(sorted[i], sorted[i - 1]) == 0) return sorted[i];
    return NULL;
}

/* The stored dtype of entry e, or DDN_ST_AUTO with an error set. */
static ddn_st_dtype resolve_dtype(ddn_ctx *ctx, const ddn_st_entry *e)
{
    ddn_dtype dt = e->tensor->dtype;
    ddn_st_dtype sd = e->store_as;
    if ((unsigned)sd >= DDN_ST_DTYPE_COUNT) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_save: tensor '%.200s': invalid store_as "
                          "%d", e->name, (int)sd);
        return DDN_ST_AUTO;
    }
    if (sd == DDN_ST_AUTO)
        return dt == DDN_DTYPE_F32 ? DDN_ST_F32 : dt == DDN_DTYPE_F64 ? DDN_ST_F64 : DDN_ST_I64;
    bool float_store = sd == DDN_ST_F32 || sd == DDN_ST_F64 || sd == DDN_ST_F16 ||
                       sd == DDN_ST_BF16;
    if (float_store != ddn_dtype_is_float(dt)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_save: tensor '%.200s' is %s and cannot be "
                          "stored as %s (%s)", e->name, ddn_dtype_name(dt), ddn_st_dtype_name(sd),
                          float_store ? "int64 tensors store as I64, I32, U8 or BOOL"
                                      : "float tensors store as F32, F64, F16 or BF16");
        return DDN_ST_AUTO;
    }
    return sd;
}

static ddn_status check_args(ddn_ctx *ctx, const char *path, int n, const ddn_st_entry *entries,
                             int n_meta, const char *const *meta, ddn_st_dtype *stored)
{
    const char *op = "safetensors_save";
    for (int i = 0; i < n; i++) {
        const char *name = entries[i].name;
        if (!name || !name[0])
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: entry %d has an empty name", op,
                                     path, i);
        if (!ddn_utf8_valid(name, strlen(name)))
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: the name of entry %d is not "
                                     "valid UTF-8", op, path, i);
        if (strcmp(name, "__metadata__") == 0)
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: '__metadata__' is reserved and "
                                     "cannot name a tensor", op, path);
        if (!entries[i].tensor)
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: tensor '%.200s' is NULL", op, path,
                                     name);
        stored[i] = resolve_dtype(ctx, &entries[i]);
        if (stored[i] == DDN_ST_AUTO) return ddn_ctx_status(ctx);
    }
    for (int i = 0; i < 2 * n_meta; i++)
        if (!meta[i] || !ddn_utf8_valid(meta[i], strlen(meta[i])))
            return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: metadata %s %d is %s", op, path,
                                     i % 2 ? "value" : "key", i / 2,
                                     meta[i] ? "not valid UTF-8" : "NULL");
    int most = n > n_meta ? n : n_meta;
    const char **sorted = malloc((size_t)(most ? most : 1) * sizeof *sorted);
    if (!sorted) return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "%s: out of memory", op);
    for (int i = 0; i < n; i++) sorted[i] = entries[i].name;
    const char *dup = find_duplicate(sorted, n);
    ddn_status st = DDN_OK;
    if (dup)
        st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: tensor name '%.200s' appears twice", op,
                               path, dup);
    for (int i = 0; st == DDN_OK && i < n_meta; i++) sorted[i] = meta[2 * i];
    if (st == DDN_OK && (dup = find_duplicate(sorted, n_meta)))
        st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: %s: metadata key '%.200s' appears twice",
                               op, path, dup);
    free(sorted);
    return st;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes (as the reference writer does, so
 * that the data buffer starts 8-aligned). */
static ddn_status build_header(ddn_ctx *ctx, sbuf *b, int n, const ddn_st_entry *entries,
                               const ddn_st_dtype *stored, int n_meta, const char *const *meta)
{
    uint64_t offset = 0;
    sb_str(b, "{");
    if (n_meta > 0) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json_string(b, meta[2 * i]);
            sb_str(b, ":");
            sb_json_string(b, meta[2 * i + 1]);
        }
        sb_str(b, "}");
    }
    for (int i = 0; i < n; i++) {
        const ddn_tensor *t = entries[i].tensor;
        uint64_t bytes = (uint64_t)ddn_tensor_numel(t) * ddn_st_dtypes[stored[i]].size;
        if (i || n_meta > 0) sb_str(b, ",");
        sb_json_string(b, entries[i].name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, ddn_st_dtypes[stored[i]].name);
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_str(b, ",");
            sb_u64(b, (uint64_t)t->shape[d]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_u64(b, offset);
        sb_str(b, ",");
        sb_u64(b, offset + bytes);
        sb_str(b, "]}");
        offset += bytes;
    }
    sb_str(b, "}");
    while (b->len % 8) sb_str(b, " ");
    if (b->oom)
        return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "safetensors_save: out of memory building the "
                                 "header");
    return DDN_OK;
}

/* ---- buffered output to a file descriptor ----------------------------------------------------- */
#define WBUF_SIZE ((size_t)1 << 16)
typedef struct wfile {
    int fd;
    int err; /* errno of the first failed write, else 0 */
    size_t used;
    unsigned char buf[WBUF_SIZE];
} wfile;

static void w_flush(wfile *w)
{
    size_t done = 0;
    while (!w->err && done < w->used) {
        ssize_t k = write(w->fd, w->buf + done, w->used - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) w->err = k < 0 ? errno : EIO;
        else done += (size_t)k;
    }
    w->used = 0;
}

/* Room for k more bytes in the buffer (k <= WBUF_SIZE). */
static unsigned char *w_reserve(wfile *w, size_t k)
{
    if (w->used + k > WBUF_SIZE) w_flush(w);
    unsigned char *p = w->buf + w->used;
    w->used += k;
    return p;
}

static void w_put(wfile *w, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n > 0) {
        size_t k = n < WBUF_SIZE ? n : WBUF_SIZE;
        memcpy(w_reserve(w, k), s, k);
        s += k;
        n -= k;
    }
}

/* Writes one tensor's elements converted to sd; int64 values that do not fit sd are an error. */
static ddn_status write_tensor(ddn_ctx *ctx, wfile *w, const char *name, const ddn_tensor *t,
                               ddn_st_dtype sd)
{
    int64_t n = ddn_tensor_numel(t);
    if (n == 0) return DDN_OK;
    /* malloc rather than the arena: a checkpoint's largest tensor should not stay reserved. */
    void *host = malloc((size_t)n * ddn_dtype_size(t->dtype));
    if (!host)
        return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "safetensors_save: tensor '%.200s': out of "
                                 "memory gathering %" PRId64 " elements", name, n);
    ddn_status st = ddn_tensor_to_host(t, t->dtype, host); /* row-major from any view */
    if (st != DDN_OK) {
        if (t->ctx != ctx)
            ddn_ctx_set_error(ctx, st, "safetensors_save: tensor '%.200s': %s", name,
                              ddn_ctx_errmsg(t->ctx));
        free(host);
        return st;
    }
    const float *f32 = host;
    const double *f64 = host;
    const int64_t *i64 = host;
    size_t es = ddn_st_dtypes[sd].size;
    int64_t lo = sd == DDN_ST_I32 ? INT32_MIN : 0;
    int64_t hi = sd == DDN_ST_I32 ? INT32_MAX : sd == DDN_ST_U8 ? 255 : 1;
    for (int64_t i = 0; i < n && st == DDN_OK; i++) {
        double x = t->dtype == DDN_DTYPE_F32 ? (double)f32[i] : f64[i];
        uint64_t bits = 0;
        switch (sd) {
        case DDN_ST_F32: {
            float v = t->dtype == DDN_DTYPE_F32 ? f32[i] : (float)f64[i];
            uint32_t u;
            memcpy(&u, &v, sizeof u);
            bits = u;
            break;
        }
        case DDN_ST_F64: memcpy(&bits, &x, sizeof bits); break;
        case DDN_ST_F16: bits = ddn_half_from_double(x); break;
        case DDN_ST_BF16: bits = ddn_bf16_from_double(x); break;
        case DDN_ST_I64: memcpy(&bits, &i64[i], sizeof bits); break;
        default:
            if (i64[i] < lo || i64[i] > hi)
                st = ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_save: tensor '%.200s': "
                                       "element %" PRId64 " = %" PRId64 " does not fit %s", name,
                                       i, i64[i], ddn_st_dtype_name(sd));
            bits = (uint64_t)i64[i]; /* the low bytes are the two's-complement value */
        }
        ddn_le_store(w_reserve(w, es), bits, es);
    }
    free(host);
    return st;
}

/* ---- atomic replace --------------------------------------------------------------------------- */
/* Creates "<path>.tmp.<pid>[.k]" exclusively (mode 0666 less the umask, like a normal file). */
static int create_temp(const char *path, char *tmp, size_t tmp_size)
{
    for (int k = 0; k < 100; k++) {
        if (k == 0) snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
        else snprintf(tmp, tmp_size, "%s.tmp.%ld.%d", path, (long)getpid(), k);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

/* fsyncs the directory holding path, so that the rename itself survives a crash. Filesystems
 * that cannot sync a directory (EINVAL) are accepted. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    char *dir = malloc(len + 2);
    if (!dir) return ENOMEM;
    if (!slash) strcpy(dir, ".");
    else if (len == 0) strcpy(dir, "/");
    else {
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int err = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) err = errno;
    else {
        if (fsync(fd) != 0 && errno != EINVAL) err = errno;
        close(fd);
    }
    free(dir);
    return err;
}

static ddn_status io_error(ddn_ctx *ctx, const char *what, const char *file, int err)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_IO, "safetensors_save: %s %s: %s", what, file,
                             strerror(err));
}

ddn_status ddn_safetensors_save(ddn_ctx *ctx, const char *path, int n, const ddn_st_entry *entries,
                                int n_meta, const char *const *meta)
{
    if (!ctx) return DDN_ERR_ARG;
    if (!path || n < 0 || (n > 0 && !entries) || n_meta < 0 || (n_meta > 0 && !meta))
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "safetensors_save: NULL path, or entries or "
                                 "metadata missing for their counts (n %d, n_meta %d)", n, n_meta);
    ddn_st_dtype *stored = malloc((size_t)(n ? n : 1) * sizeof *stored);
    wfile *w = malloc(sizeof *w);
    size_t tmp_size = strlen(path) + 48;
    char *tmp = malloc(tmp_size);
    sbuf header = {0};
    ddn_status st = DDN_OK;
    if (!stored || !w || !tmp)
        st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "safetensors_save: out of memory");
    if (st == DDN_OK) st = check_args(ctx, path, n, entries, n_meta, meta, stored);
    if (st == DDN_OK) st = build_header(ctx, &header, n, entries, stored, n_meta, meta);
    int fd = -1;
    if (st == DDN_OK) {
        fd = create_temp(path, tmp, tmp_size);
        if (fd < 0) st = io_error(ctx, "cannot create", tmp, errno);
    }
    if (st == DDN_OK) {
        w->fd = fd;
        w->err = 0;
        w->used = 0;
        unsigned char len8[8];
        ddn_le_store(len8, header.len, 8);
        w_put(w, len8, 8);
        w_put(w, header.p, header.len);
        for (int i = 0; i < n && st == DDN_OK && !w->err; i++)
            st = write_tensor(ctx, w, entries[i].name, entries[i].tensor, stored[i]);
        if (st == DDN_OK) w_flush(w);
        if (st == DDN_OK && w->err) st = io_error(ctx, "write to", tmp, w->err);
        if (st == DDN_OK && fsync(fd) != 0) st = io_error(ctx, "fsync of", tmp, errno);
        if (close(fd) != 0 && st == DDN_OK) st = io_error(ctx, "close of", tmp, errno);
        if (st == DDN_OK && rename(tmp, path) != 0) st = io_error(ctx, "rename onto", path, errno);
        if (st != DDN_OK) unlink(tmp); /* the target, if any, is untouched */
    }
    if (st == DDN_OK) {
        int err = sync_dir(path);
        if (err) st = io_error(ctx, "saved, but cannot sync the directory of", path, err);
    }
    free(header.p);
    free(tmp);
    free(w);
    free(stored);
    return st;
}
