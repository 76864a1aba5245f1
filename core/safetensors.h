/* ddn — safetensors files: a strict reader that never trusts the file, and an atomic writer.
 *
 * Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, then
 * N bytes of JSON: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value", ...}}, then the data buffer. Offsets are relative to the
 * buffer, tensors are row-major little-endian, and together they cover the buffer exactly.
 *
 * The reader checks every rule (header length bounded by the file, JSON fully valid, known dtype,
 * byte count = numel x element size, offsets in range, no overlap, no gap, the file ends at the
 * last tensor, shapes that overflow) and reports a violation with DDN_ERR_FORMAT and a message
 * naming the file, the tensor and the rule. Writes go to a temporary file that is fsynced and
 * renamed over the target, so a crash never leaves a half-written file.
 */
#ifndef DDN_SAFETENSORS_H
#define DDN_SAFETENSORS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_st_dtype {
    DDN_ST_AUTO = 0, /* writer: store the tensor's own dtype */
    DDN_ST_F32,
    DDN_ST_F64,
    DDN_ST_F16,
    DDN_ST_BF16,
    DDN_ST_I64,
    DDN_ST_I32,
    DDN_ST_U8,
    DDN_ST_BOOL,
    DDN_ST_DTYPE_COUNT
} ddn_st_dtype;

const char *ddn_st_dtype_name(ddn_st_dtype dt); /* "F32", ... */

typedef struct ddn_st_file ddn_st_file; /* an opened, fully validated file */

/* Reads and validates the whole file. On failure returns the status (DDN_ERR_IO, DDN_ERR_FORMAT,
 * DDN_ERR_OOM), sets the message and leaves *out NULL. */
ddn_status ddn_safetensors_open(ddn_ctx *ctx, const char *path, ddn_st_file **out);
void ddn_safetensors_close(ddn_st_file *f); /* NULL is a no-op */

int64_t ddn_safetensors_count(const ddn_st_file *f);
const char *ddn_safetensors_name(const ddn_st_file *f, int64_t i); /* in file (offset) order */
/* false when the file has no tensor of that name. */
bool ddn_safetensors_info(const ddn_st_file *f, const char *name, ddn_st_dtype *dtype, int *ndim,
                          int64_t *shape /* [DDN_MAX_DIMS] */);
/* The value of a __metadata__ key, or NULL. */
const char *ddn_safetensors_metadata(const ddn_st_file *f, const char *key);

/* Loads a tensor into a new step tensor. Stored dtypes map to ddn dtypes as: F32, F16, BF16 ->
 * float32; F64 -> float64; I64, I32, U8, BOOL -> int64. A missing name is DDN_ERR_ARG. */
ddn_tensor *ddn_safetensors_get(ddn_ctx *ctx, const ddn_st_file *f, const char *name);
/* Loads into an existing tensor (e.g. a parameter) of the same shape, converting the dtype; dst
 * may be a strided view. Shapes that differ are DDN_ERR_SHAPE; a float-stored tensor into an
 * int64 destination is DDN_ERR_DTYPE (it would truncate). */
ddn_status ddn_safetensors_read_into(ddn_ctx *ctx, const ddn_st_file *f, const char *name,
                                     ddn_tensor *dst);

typedef struct ddn_st_entry {
    const char *name;
    const ddn_tensor *tensor;
    ddn_st_dtype store_as; /* DDN_ST_AUTO, a float type for a float tensor (F16 and BF16 round
                            * to nearest even), or I32/U8/BOOL for an int64 tensor whose values
                            * fit (else DDN_ERR_ARG) */
} ddn_st_entry;

/* Writes n tensors and n_meta key/value metadata pairs (meta[2k] = key, meta[2k+1] = value)
 * atomically. Names must be unique and non-empty. */
ddn_status ddn_safetensors_save(ddn_ctx *ctx, const char *path, int n, const ddn_st_entry *entries,
                                int n_meta, const char *const *meta);

#ifdef __cplusplus
}
#endif
#endif
