/* ddn — IDX files (the MNIST family: MNIST, Fashion-MNIST, ...), raw or gzip-compressed.
 *
 * Layout (http://yann.lecun.com/exdb/mnist/): magic 0x00 0x00 <type> <ndim>, then ndim
 * big-endian uint32 sizes, then the data, big-endian. Types: 0x08 uint8, 0x09 int8, 0x0B int16,
 * 0x0C int32, 0x0D float32, 0x0E float64. The reader checks the magic, the sizes against the
 * bytes present, and rejects trailing garbage, with a message naming the file.
 */
#ifndef DDN_IDX_H
#define DDN_IDX_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddn_idx {
    int type;                    /* IDX type code (0x08 ...) */
    int ndim;
    int64_t shape[DDN_MAX_DIMS]; /* shape[0] is the item count */
    int64_t numel;
    void *data;                  /* host memory, native byte order, the file's element type */
} ddn_idx;

/* Reads a whole IDX file (gzip detected by its magic bytes) into *out. */
ddn_status ddn_idx_read(ddn_ctx *ctx, const char *path, ddn_idx *out);
void ddn_idx_free(ddn_idx *f); /* frees data; NULL and zeroed structs are fine */

/* Gathers items[0..n) (indices into dim 0) into a new step tensor of shape (n, shape[1:]...) and
 * dtype dt, each value v stored as v * scale + shift. An index out of range is DDN_ERR_ARG. */
ddn_tensor *ddn_idx_batch(ddn_ctx *ctx, const ddn_idx *f, int64_t n, const int64_t *items,
                          ddn_dtype dt, double scale, double shift);

#ifdef __cplusplus
}
#endif
#endif
