/* ddn — tensors.
 *
 * A tensor is a dtype, a shape (up to 6 dims, PyTorch order), strides in elements, and a pointer
 * into memory on one device. Two lifetimes (DESIGN.md): step tensors live in the context's arena
 * and vanish at ddn_ctx_reset_step; persistent tensors (parameters, buffers, optimizer state) are
 * heap-owned and freed with ddn_tensor_free. A view shares its source's memory and lifetime.
 *
 * Constructors return NULL and set the context error on bad arguments or when memory runs out.
 * The struct is public so that kernels and extensions can read shape and strides; change fields
 * only through the functions here.
 */
#ifndef DDN_TENSOR_H
#define DDN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DDN_MAX_DIMS 6

typedef enum ddn_dtype {
    DDN_DTYPE_F32 = 0,
    DDN_DTYPE_F64 = 1,
    DDN_DTYPE_I64 = 2, /* labels and indices; not differentiable */
    DDN_DTYPE_COUNT
} ddn_dtype;

size_t ddn_dtype_size(ddn_dtype dt);
const char *ddn_dtype_name(ddn_dtype dt); /* "float32", "float64", "int64" */
bool ddn_dtype_is_float(ddn_dtype dt);

struct ddn_node;

typedef struct ddn_tensor {
    ddn_dtype dtype;
    int ndim;
    int64_t shape[DDN_MAX_DIMS];
    int64_t stride[DDN_MAX_DIMS]; /* in elements; 0 for broadcast (expanded) dims */
    void *data;                   /* start of the underlying memory (device memory on CUDA) */
    int64_t offset;               /* first element, in elements from data */
    ddn_device device;
    ddn_ctx *ctx;
    bool persistent;              /* heap lifetime (ddn_tensor_free) rather than the step arena */
    bool owns_data;               /* persistent and not a view: ddn_tensor_free releases data */
    bool requires_grad;           /* leaf: set by the user; op result: some input requires grad */
    struct ddn_tensor *grad;      /* dL/dthis, same shape, same lifetime; NULL until backward */
    struct ddn_node *node;        /* the tape node that produced this tensor; NULL for leaves */
} ddn_tensor;

/* Shape literal: ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3)) passes ndim = 2 and {2, 3}. */
#define DDN_SHAPE(...)                                                                         \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* ---- creation: step tensors (arena) ---------------------------------------------------------- */
ddn_tensor *ddn_tensor_new(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape); /* uninit */
ddn_tensor *ddn_zeros(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape);
ddn_tensor *ddn_ones(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape);
ddn_tensor *ddn_full(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape, double value);
ddn_tensor *ddn_scalar(ddn_ctx *ctx, ddn_dtype dt, double value); /* 0-dim */
/* [start, stop) by step, 1-D; like torch.arange (length ceil((stop - start) / step)). */
ddn_tensor *ddn_arange(ddn_ctx *ctx, ddn_dtype dt, double start, double stop, double step);
/* Random tensors draw from rng (NULL: the context's RNG). */
ddn_tensor *ddn_rand_uniform(ddn_ctx *ctx, ddn_rng *rng, ddn_dtype dt, int ndim,
                             const int64_t *shape, double lo, double hi);
ddn_tensor *ddn_rand_normal(ddn_ctx *ctx, ddn_rng *rng, ddn_dtype dt, int ndim,
                            const int64_t *shape, double mean, double std);
/* Copies host memory (contiguous, of dtype dt) into a new tensor. */
ddn_tensor *ddn_tensor_from_host(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                                 const void *host);

/* A copy of t on device: a new contiguous step tensor of ctx (whose device must be `device`;
 * naming it keeps call sites readable and is checked) with t's dtype, shape and values. t may
 * belong to any context on any device, e.g. a CPU batch moved to a CUDA context:
 *     ddn_tensor *xd = ddn_tensor_to(cuda_ctx, x_cpu, DDN_DEVICE_CUDA);
 * Between two devices the values pass through host memory; within one context it is a device
 * copy. No tape node is recorded (the copy is a leaf). NULL with the error on ctx on failure. */
ddn_tensor *ddn_tensor_to(ddn_ctx *ctx, const ddn_tensor *t, ddn_device device);

/* ---- creation: persistent tensors (heap) ----------------------------------------------------- */
/* Zero-filled, contiguous, outlives ddn_ctx_reset_step. Free with ddn_tensor_free (NULL is a
 * no-op), which also frees its gradient. */
ddn_tensor *ddn_tensor_new_persistent(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape);
/* A persistent tensor over memory the caller owns (e.g. a slice of a model's parameter block);
 * ddn_tensor_free releases the struct only. data must be on the context's device. */
ddn_tensor *ddn_tensor_wrap_persistent(ddn_ctx *ctx, ddn_dtype dt, int ndim,
                                       const int64_t *shape, void *data);
void ddn_tensor_free(ddn_tensor *t);

/* ---- in-place fills (any lifetime; no tape) -------------------------------------------------- */
ddn_status ddn_tensor_fill(ddn_tensor *t, double value);
ddn_status ddn_tensor_fill_uniform(ddn_tensor *t, ddn_rng *rng, double lo, double hi);
ddn_status ddn_tensor_fill_normal(ddn_tensor *t, ddn_rng *rng, double mean, double std);
/* dst <- src elementwise (same shape; dtypes may differ: values are converted). No tape. */
ddn_status ddn_tensor_copy_(ddn_tensor *dst, const ddn_tensor *src);

/* ---- inspection ------------------------------------------------------------------------------ */
int64_t ddn_tensor_numel(const ddn_tensor *t);
size_t ddn_tensor_nbytes(const ddn_tensor *t); /* numel * element size */
bool ddn_tensor_is_contiguous(const ddn_tensor *t);
bool ddn_tensor_same_shape(const ddn_tensor *a, const ddn_tensor *b);
/* Writes "(2,3,4)" into buf (always terminated); returns buf. "()" for a 0-dim tensor. */
char *ddn_shape_str(const ddn_tensor *t, char *buf, size_t n);
char *ddn_shape_str_raw(int ndim, const int64_t *shape, char *buf, size_t n);
/* Pointer to element 0 of the tensor, offset applied: host memory on the CPU, device memory on
 * CUDA (read it on the host only through ddn_tensor_to_host / ddn_tensor_get). */
void *ddn_tensor_ptr(const ddn_tensor *t);
/* Copies the tensor's elements to host memory in row-major order, converted to dtype dt. */
ddn_status ddn_tensor_to_host(const ddn_tensor *t, ddn_dtype dt, void *host);
/* Reads one element (multi-index of length ndim) as double; for tests and debugging. */
double ddn_tensor_get(const ddn_tensor *t, const int64_t *index);
double ddn_tensor_item(const ddn_tensor *t); /* the value of a one-element tensor */

/* ---- autograd flags -------------------------------------------------------------------------- */
/* Marks a leaf as a parameter to differentiate; its gradient accumulates across backward calls
 * until ddn_tensor_zero_grad. */
ddn_status ddn_tensor_set_requires_grad(ddn_tensor *t, bool on);
void ddn_tensor_zero_grad(ddn_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
