/* ddn — context, status codes and errors.
 *
 * A context (ddn_ctx) owns everything that lives for one training step: the step arena (tensor
 * structs, tape nodes and activation data, reset in one call), the tape, the sticky error and its
 * message, and a seeded RNG. Library calls never exit or abort on bad input: they return a
 * ddn_status (or NULL) and leave a message on the context. The first error is kept (sticky) until
 * ddn_ctx_clear_error, so a caller may run a whole block of ops and check once at the end.
 */
#ifndef DDN_CONTEXT_H
#define DDN_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_status {
    DDN_OK = 0,
    DDN_ERR_ARG,           /* invalid argument: NULL, out-of-range option */
    DDN_ERR_SHAPE,         /* shapes do not fit the op */
    DDN_ERR_DTYPE,         /* dtype not supported by the op, or inputs disagree */
    DDN_ERR_DEVICE,        /* device unavailable, or inputs on different devices */
    DDN_ERR_OOM,           /* an allocation failed */
    DDN_ERR_IO,            /* open/read/write/rename failed */
    DDN_ERR_FORMAT,        /* a file breaks its format (safetensors, IDX, image) */
    DDN_ERR_NUMERIC,       /* NaN or Inf found (DDN_CHECK_NUMERICS, non-finite input) */
    DDN_ERR_NOT_CONVERGED, /* an iterative solver hit its cap (strict mode) */
    DDN_ERR_SINGULAR,      /* a linear system could not be solved */
    DDN_ERR_BACKEND,       /* BLAS/LAPACK/CUDA library reported a failure */
    DDN_ERR_UNSUPPORTED,   /* valid request this build or backend cannot do */
    DDN_ERR_STATE,         /* API used in the wrong order (e.g. backward of a non-scalar) */
    DDN_STATUS_COUNT
} ddn_status;

/* A short name for a status ("DDN_ERR_SHAPE" -> "shape error"). Never NULL. */
const char *ddn_status_str(ddn_status s);

typedef enum ddn_device {
    DDN_DEVICE_CPU = 0,
    DDN_DEVICE_CUDA = 1,
} ddn_device;

typedef struct ddn_ctx ddn_ctx;

/* Creates a context on a device. Returns NULL only when the device cannot be used or memory runs
 * out; *why (optional) then points at a static message. The environment variable
 * DDN_CHECK_NUMERICS=1 turns numerics checking on for the new context. */
ddn_ctx *ddn_ctx_new(ddn_device device, const char **why);
void ddn_ctx_free(ddn_ctx *ctx); /* NULL is a no-op */

ddn_device ddn_ctx_device(const ddn_ctx *ctx);

/* ---- errors ---------------------------------------------------------------------------------- */
ddn_status ddn_ctx_status(const ddn_ctx *ctx); /* DDN_OK, or the first error since the last clear */
const char *ddn_ctx_errmsg(const ddn_ctx *ctx); /* "" when no error; never NULL */
void ddn_ctx_clear_error(ddn_ctx *ctx);
/* Records an error (printf-style message) unless one is already recorded; returns s. Messages name
 * the op, the shapes and what was expected, e.g. "add: shapes (2,3) and (4,3) do not broadcast". */
ddn_status ddn_ctx_set_error(ddn_ctx *ctx, ddn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- step memory ----------------------------------------------------------------------------- */
/* Frees every tensor, tape node and activation made since the last reset, in one call. Persistent
 * tensors (ddn_tensor_new_persistent) and their gradients are untouched. Does not clear the error. */
void ddn_ctx_reset_step(ddn_ctx *ctx);

/* A position in the step arena and tape; rewinding frees everything made after it. Used by
 * gradcheck and solvers that evaluate a function many times. */
typedef struct ddn_mark {
    size_t meta_used, data_used;
    int64_t tape_len;
    int meta_block, data_block;
} ddn_mark;
ddn_mark ddn_ctx_mark(const ddn_ctx *ctx);
void ddn_ctx_rewind(ddn_ctx *ctx, ddn_mark mark);

/* Host scratch memory from the step arena (64-byte aligned, uninitialised), freed at the next
 * reset. Returns NULL and sets DDN_ERR_OOM on failure. */
void *ddn_ctx_scratch(ddn_ctx *ctx, size_t bytes);

typedef struct ddn_stats {
    size_t arena_in_use;      /* bytes of step arena in use now (host metadata + tensor data) */
    size_t arena_high_water;  /* the most ever in use at once */
    size_t arena_reserved;    /* bytes held in arena blocks */
    size_t persistent_bytes;  /* live persistent tensor data */
    size_t persistent_high_water;
    int64_t tape_nodes;       /* nodes on the tape now */
} ddn_stats;
ddn_stats ddn_ctx_stats(const ddn_ctx *ctx);

/* ---- numerics, RNG, threads ------------------------------------------------------------------ */
/* When on, every op checks its output (and backward checks each gradient it produced) and stops
 * at the first NaN/Inf with DDN_ERR_NUMERIC and a message naming the op and the tensor. */
void ddn_ctx_set_check_numerics(ddn_ctx *ctx, bool on);
bool ddn_ctx_check_numerics(const ddn_ctx *ctx);

ddn_rng *ddn_ctx_rng(ddn_ctx *ctx); /* the context's RNG; seeded with 0 at creation */

/* Threads used by the CPU kernels (OpenMP) and OpenBLAS. n <= 0: the library default. */
void ddn_set_num_threads(int n);
int ddn_get_num_threads(void);

/* ---- invariants ------------------------------------------------------------------------------ */
/* DDN_ASSERT is for programmer errors only, never for bad input. It calls a hook (default: print
 * and abort) that tests and embedding applications may replace. */
typedef void (*ddn_assert_hook)(const char *expr, const char *file, int line);
void ddn_set_assert_hook(ddn_assert_hook hook); /* NULL restores the default */
void ddn_assert_fail(const char *expr, const char *file, int line);
#define DDN_ASSERT(cond) ((cond) ? (void)0 : ddn_assert_fail(#cond, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif
#endif
