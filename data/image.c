/* ddn — reading one image file: PNG, JPEG, BMP or GIF through stb_image, with checks of our own.
 *
 * stb_image trusts its input more than a training run can: it decodes truncated BMP and GIF
 * files (the missing part comes out as zeros), ignores PNG CRCs, and would read a text file as
 * a TGA. So the file is read whole (refusing anything that is not a regular file, without ever
 * blocking on a FIFO), its format is taken from the magic bytes, the declared size is checked
 * against a pixel limit before stb allocates anything, and each format gets a structural walk
 * (PNG chunks and CRCs, JPEG EOI after the last scan, BMP row bytes, GIF blocks) before decoding.
 * No context is used here: messages go to a buffer so the prefetch thread can call this.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb_image.h>

#include "data_impl.h"

#define IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30) /* stb takes an int length; far above any photo */

ddn_status ddn_data_err(char *msg, ddn_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, DDN_DATA_MSG, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- the bytes -------------------------------------------------------------------------------- */
/* Reads the whole regular file at path into a malloc'd buffer. O_NONBLOCK keeps open() from
 * waiting for a writer when path is a FIFO; fstat on the open descriptor then rejects it. */
static ddn_status read_whole(const char *path, unsigned char **buf, size_t *len, char *msg)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ddn_data_err(msg, DDN_ERR_IO, "image: cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ddn_data_err(msg, DDN_ERR_IO, "image: cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ddn_data_err(msg, DDN_ERR_IO, "image: %s is not a regular file (%s)", path,
                            S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                                                                                       : "special");
    }
    if (sb.st_size == 0) {
        close(fd);
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s is empty (0 bytes)", path);
    }
    if ((int64_t)sb.st_size > IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s has %" PRId64 " bytes, more than the "
                            "%" PRId64 " an image file may have", path, (int64_t)sb.st_size,
                            IMAGE_MAX_FILE_BYTES);
    }
    size_t n = (size_t)sb.st_size, have = 0;
    unsigned char *b = malloc(n);
    if (!b) {
        close(fd);
        return ddn_data_err(msg, DDN_ERR_OOM, "image: %s: cannot allocate %zu bytes", path, n);
    }
    while (have < n) {
        ssize_t got = read(fd, b + have, n - have);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) {
            int e = errno;
            free(b);
            close(fd);
            if (got == 0)
                return ddn_data_err(msg, DDN_ERR_IO, "image: %s shrank while being read (%zu of "
                                    "%zu bytes)", path, have, n);
            return ddn_data_err(msg, DDN_ERR_IO, "image: cannot read %s: %s", path, strerror(e));
        }
        have += (size_t)got;
    }
    close(fd);
    *buf = b;
    *len = n;
    return DDN_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[1] << 8 | p[0]; }

/* ---- formats ---------------------------------------------------------------------------------- */
typedef enum { FMT_PNG, FMT_JPEG, FMT_BMP, FMT_GIF, FMT_UNKNOWN } img_format;
static const char *const FMT_NAME[] = {"PNG", "JPEG", "BMP", "GIF", "?"};

static img_format sniff(const unsigned char *b, size_t n)
{
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return FMT_PNG;
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return FMT_JPEG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return FMT_BMP;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return FMT_GIF;
    return FMT_UNKNOWN;
}

/* Every chunk whole with a matching CRC, IHDR first, up to IEND (bytes after IEND are ignored,
 * as other readers do). */
static ddn_status check_png(const char *path, const unsigned char *b, size_t n, char *msg)
{
    size_t pos = 8;
    for (int k = 0;; k++) {
        if (n - pos < 12)
            return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated PNG (ends inside a "
                                "chunk header at byte %zu, no IEND chunk)", path, pos);
        uint32_t len = be32(b + pos);
        const unsigned char *type = b + pos + 4;
        char name[5] = {0};
        for (int i = 0; i < 4; i++) name[i] = (type[i] >= 32 && type[i] < 127) ? (char)type[i] : '?';
        if (len > 0x7FFFFFFFu || (uint64_t)len > n - pos - 12)
            return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated PNG (chunk %s at byte "
                                "%zu declares %" PRIu32 " bytes, %zu remain)", path, name, pos,
                                len, n - pos - 12);
        if (k == 0 && (memcmp(type, "IHDR", 4) != 0 || len != 13))
            return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: bad PNG: the first chunk must be "
                                "a 13-byte IHDR (found %s, %" PRIu32 " bytes)", path, name, len);
        uint32_t want = be32(b + pos + 8 + len);
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, (uInt)len + 4);
        if (crc != want)
            return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: bad PNG: CRC mismatch in chunk "
                                "%s at byte %zu (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                                path, name, pos, want, crc);
        pos += 12 + (size_t)len;
        if (memcmp(type, "IEND", 4) == 0) return DDN_OK;
    }
}

/* Entropy-coded data escapes 0xFF (FF 00 or restart markers), so the last FF DA is the last scan
 * header and an image that is all there has FF D9 after it. Scanning backwards from the end would
 * also accept a file cut inside its scan if an EXIF thumbnail (with its own EOI) came before. */
static ddn_status check_jpeg(const char *path, const unsigned char *b, size_t n, char *msg)
{
    size_t sos = 0;
    for (size_t i = 2; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xDA) sos = i;
    if (sos == 0)
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: bad JPEG: no scan (SOS marker)",
                            path);
    for (size_t i = sos + 2; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xD9) return DDN_OK;
    return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated JPEG (no EOI marker after the "
                        "last scan)", path);
}

/* Uncompressed BMPs (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS) need offset + row bytes x rows.
 * w and h were bounded by the pixel limit before, so the products fit. */
static ddn_status check_bmp(const char *path, const unsigned char *b, size_t n, char *msg)
{
    if (n < 26)
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated BMP header (%zu bytes)",
                            path, n);
    uint64_t off = le32(b + 10), hsz = le32(b + 14), w, h, bpp, comp = 0;
    if (hsz == 12) {
        w = le16(b + 18);
        h = le16(b + 20);
        bpp = le16(b + 24);
    } else {
        if (n < 34)
            return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated BMP header (%zu "
                                "bytes)", path, n);
        int32_t sw = (int32_t)le32(b + 18), sh = (int32_t)le32(b + 22);
        w = sw < 0 ? (uint64_t)(-(int64_t)sw) : (uint64_t)sw;
        h = sh < 0 ? (uint64_t)(-(int64_t)sh) : (uint64_t)sh;
        bpp = le16(b + 28);
        comp = le32(b + 30);
    }
    if (comp != 0 && comp != 3 && comp != 6) return DDN_OK; /* RLE etc.: stb decides */
    uint64_t row = (w * bpp + 31) / 32 * 4, need = off + row * h;
    if ((uint64_t)n < need)
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated BMP (pixel rows need %"
                            PRIu64 " bytes, the file has %zu)", path, need, n);
    return DDN_OK;
}

/* Skips data sub-blocks (size byte, bytes, ..., 0) from *pos; false when the file ends first. */
static bool gif_skip_blocks(const unsigned char *b, size_t n, size_t *pos)
{
    for (;;) {
        if (*pos >= n) return false;
        size_t sz = b[(*pos)++];
        if (sz == 0) return true;
        if (n - *pos < sz) return false;
        *pos += sz;
    }
}

/* Header, screen descriptor, colour table, then extension and image blocks up to the trailer. */
static ddn_status check_gif(const char *path, const unsigned char *b, size_t n, char *msg)
{
    size_t pos = 13;
    if (n < pos)
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated GIF header", path);
    if (b[10] & 0x80) pos += (size_t)3 << ((b[10] & 7) + 1);
    for (;;) {
        if (pos >= n) break;
        unsigned char t = b[pos++];
        if (t == 0x3B) return DDN_OK;
        if (t == 0x21) {
            pos++; /* the extension label */
            if (!gif_skip_blocks(b, n, &pos)) break;
        } else if (t == 0x2C) {
            if (n - pos < 10) break; /* 9-byte descriptor and the LZW code size */
            unsigned char flags = b[pos + 8];
            pos += 9;
            if (flags & 0x80) pos += (size_t)3 << ((flags & 7) + 1);
            pos++; /* LZW minimum code size */
            if (pos > n || !gif_skip_blocks(b, n, &pos)) break;
        } else {
            return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: bad GIF: unknown block 0x%02x "
                                "at byte %zu", path, t, pos - 1);
        }
    }
    return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: truncated GIF (the file ends before "
                        "the trailer)", path);
}

/* Width and height as the header declares them, read here so that the size limit applies before
 * stb_image allocates or gives up with a vague reason. false: no size found (stb decides). */
static bool header_size(img_format fmt, const unsigned char *b, size_t n, int64_t *w, int64_t *h)
{
    if (fmt == FMT_PNG) {
        if (n < 24 || memcmp(b + 12, "IHDR", 4) != 0) return false;
        *w = be32(b + 16);
        *h = be32(b + 20);
        return true;
    }
    if (fmt == FMT_GIF) {
        if (n < 10) return false;
        *w = le16(b + 6);
        *h = le16(b + 8);
        return true;
    }
    if (fmt == FMT_BMP) {
        if (n < 26) return false;
        if (le32(b + 14) == 12) {
            *w = le16(b + 18);
            *h = le16(b + 20);
        } else {
            int64_t sw = (int32_t)le32(b + 18), sh = (int32_t)le32(b + 22);
            *w = sw < 0 ? -sw : sw;
            *h = sh < 0 ? -sh : sh;
        }
        return true;
    }
    /* JPEG: walk the marker segments to the first SOFn (C0-CF but C4 DHT, C8 JPG, CC DAC). */
    size_t pos = 2;
    while (pos + 4 <= n && b[pos] == 0xFF) {
        unsigned char m = b[pos + 1];
        if (m == 0xFF) {
            pos++; /* fill byte */
            continue;
        }
        if (m == 0xDA || m == 0xD9) return false;
        size_t len = (size_t)b[pos + 2] << 8 | b[pos + 3];
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (pos + 9 > n) return false;
            *h = (int64_t)b[pos + 5] << 8 | b[pos + 6];
            *w = (int64_t)b[pos + 7] << 8 | b[pos + 8];
            return true;
        }
        pos += 2 + len;
    }
    return false;
}

/* ---- decoding --------------------------------------------------------------------------------- */
ddn_status ddn_data_image_read(const char *path, int channels, int64_t max_pixels, ddn_image *out,
                               char *msg)
{
    memset(out, 0, sizeof *out);
    if (!path) return ddn_data_err(msg, DDN_ERR_ARG, "image: path is NULL");
    if (channels != 1 && channels != 3)
        return ddn_data_err(msg, DDN_ERR_ARG, "image: %s: channels %d: expected 1 or 3", path,
                            channels);
    if (max_pixels <= 0) max_pixels = DDN_IMAGE_MAX_PIXELS_DEFAULT;
    unsigned char *buf = NULL;
    size_t len = 0;
    ddn_status st = read_whole(path, &buf, &len, msg);
    if (st != DDN_OK) return st;

    img_format fmt = sniff(buf, len);
    int w = 0, h = 0, comp = 0;
    int64_t hw = 0, hh = 0;
    if (fmt == FMT_UNKNOWN) {
        unsigned char m[4] = {0, 0, 0, 0};
        memcpy(m, buf, len < 4 ? len : 4);
        st = ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s is not a PNG, JPEG, BMP or GIF file "
                          "(starts with %02x %02x %02x %02x)", path, m[0], m[1], m[2], m[3]);
    } else if (header_size(fmt, buf, len, &hw, &hh) &&
               (hw <= 0 || hh <= 0 || hw > max_pixels || hh > max_pixels / hw)) {
        st = ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: the %s header declares %" PRId64 " x %"
                          PRId64 " pixels: expected 1 to %" PRId64 " pixels", path, FMT_NAME[fmt],
                          hw, hh, max_pixels);
    } else if (!stbi_info_from_memory(buf, (int)len, &w, &h, &comp)) {
        st = ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: bad %s header (stb_image: %s)", path,
                          FMT_NAME[fmt], stbi_failure_reason());
    } else if (w <= 0 || h <= 0 || (int64_t)w * h > max_pixels) {
        st = ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: the %s header declares %d x %d "
                          "pixels: expected 1 to %" PRId64 " pixels", path, FMT_NAME[fmt], w, h,
                          max_pixels);
    } else if (fmt == FMT_PNG) {
        st = check_png(path, buf, len, msg);
    } else if (fmt == FMT_JPEG) {
        st = check_jpeg(path, buf, len, msg);
    } else if (fmt == FMT_BMP) {
        st = check_bmp(path, buf, len, msg);
    } else {
        st = check_gif(path, buf, len, msg);
    }
    if (st != DDN_OK) {
        free(buf);
        return st;
    }

    int dw = 0, dh = 0, dc = 0;
    stbi_uc *px = stbi_load_from_memory(buf, (int)len, &dw, &dh, &dc, channels);
    free(buf);
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && strcmp(why, "outofmem") == 0)
            return ddn_data_err(msg, DDN_ERR_OOM, "image: %s: out of memory decoding %d x %d "
                                "pixels", path, w, h);
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: corrupt %s data (stb_image: %s)",
                            path, FMT_NAME[fmt], why ? why : "?");
    }
    if (dw != w || dh != h) {
        stbi_image_free(px);
        return ddn_data_err(msg, DDN_ERR_FORMAT, "image: %s: decoded %d x %d pixels but the "
                            "header declares %d x %d", path, dw, dh, w, h);
    }
    size_t count = (size_t)w * (size_t)h * (size_t)channels;
    float *data = malloc(count * sizeof *data);
    if (!data) {
        stbi_image_free(px);
        return ddn_data_err(msg, DDN_ERR_OOM, "image: %s: cannot allocate %zu floats", path,
                            count);
    }
    for (size_t i = 0; i < count; i++) data[i] = (float)px[i] / 255.0f;
    stbi_image_free(px);
    out->h = h;
    out->w = w;
    out->c = channels;
    out->data = data;
    return DDN_OK;
}

ddn_status ddn_image_load(ddn_ctx *ctx, const char *path, int channels, int64_t max_pixels,
                          ddn_image *out)
{
    if (!out) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "image_load: out is NULL");
    char msg[DDN_DATA_MSG];
    ddn_status st = ddn_data_image_read(path, channels, max_pixels, out, msg);
    if (st != DDN_OK) return ddn_ctx_set_error(ctx, st, "%s", msg);
    return DDN_OK;
}

void ddn_image_free(ddn_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}
