/* ddn — internal helpers shared by the core, autograd and op front ends. Not installed. */
#ifndef DDN_IMPL_H
#define DDN_IMPL_H

#include <stdio.h>

#include "autograd.h"
#include "backend.h"
#include "tensor.h"

/* ---- the context (core/context.c) ---- */
typedef struct ddn_arena_block {
    unsigned char *base;
    size_t size, used;
} ddn_arena_block;

/* A chained bump arena: blocks are kept across resets and reused; a request that fits in no block
 * adds a new one (at least twice the last), so it never fails for lack of a fixed pool. */
typedef struct ddn_arena {
    ddn_arena_block *blocks;
    int n_blocks, cap_blocks, cur;
    size_t in_use, reserved;
    bool device_memory; /* blocks come from the backend's alloc (else host malloc) */
} ddn_arena;

struct ddn_ctx {
    ddn_device device;
    const ddn_backend *backend;
    void *backend_state;  /* the backend's per-context state (NULL on the CPU); see backend.h */
    ddn_kernels kernels;  /* backend->k with NULL entries replaced by "unsupported" stubs */
    ddn_status status;
    char errmsg[1024];
    ddn_arena meta; /* host: tensor structs, tape nodes, saved state, scratch */
    ddn_arena data; /* device: step tensor data */
    size_t arena_high_water;
    size_t persistent_bytes, persistent_high_water;
    ddn_node **tape;
    int64_t tape_len, tape_cap;
    bool grad_enabled;
    bool check_numerics;
    ddn_rng rng;
    /* Dead gradient buffers of intermediates, reused by ddn_grad_buffer while a backward pass
     * runs (autograd/tape.c); NULL outside one. */
    struct ddn_grad_pool *grad_pool;
    /* Tests only: the declarative layers take the paths written for a device (their block
     * kernels, through the kernel table) also in this CPU context, so that the CUDA tests'
     * self-check runs those paths on machines without a GPU (tests/cuda_test_util.h). */
    bool device_algorithms;
};

/* Whether a layer should take its device path for t (see ddn_ctx.device_algorithms). */
static inline bool ddn_device_path(const ddn_ctx *ctx, const ddn_device device)
{
    return device != DDN_DEVICE_CPU || ctx->device_algorithms;
}

void *ddn_arena_alloc_data(ddn_ctx *ctx, size_t bytes); /* device memory for step tensors */
void ddn_ctx_note_persistent(ddn_ctx *ctx, ptrdiff_t delta_bytes);

/* ---- tensors (core/tensor.c) ---- */
static inline const ddn_kernels *ddn_k(const ddn_tensor *t) { return &t->ctx->kernels; }
/* A step tensor with x's shape and dtype, contiguous, uninitialised. */
ddn_tensor *ddn_tensor_new_like(ddn_ctx *ctx, const ddn_tensor *x);
/* A step-lifetime view of src's memory with its own shape/strides/offset; no tape node. */
ddn_tensor *ddn_view_raw(ddn_ctx *ctx, const ddn_tensor *src, int ndim, const int64_t *shape,
                         const int64_t *stride, int64_t offset);
/* Contiguous strides for shape. */
void ddn_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
bool ddn_shape_valid(ddn_ctx *ctx, const char *op, int ndim, const int64_t *shape);

/* ---- dense linear-algebra kernels: shared argument checks (core/linalg_check.c) ---- */
typedef struct ddn_linalg_dims {
    int64_t batch, n, k; /* items; rows (n; m for qr); right-hand sides or columns */
} ddn_linalg_dims;
/* Each checks the contract in backend.h, fills *d and returns DDN_OK, or sets the error. */
ddn_status ddn_linalg_check_solve(const char *op, const ddn_tensor *x, const ddn_tensor *a,
                                  const ddn_tensor *b, ddn_linalg_dims *d);
ddn_status ddn_linalg_check_eigh(const ddn_tensor *w, const ddn_tensor *v, const ddn_tensor *a,
                                 ddn_linalg_dims *d);
ddn_status ddn_linalg_check_qr(const ddn_tensor *q, const ddn_tensor *a, ddn_linalg_dims *d);
/* ied_vjp_e: d->batch = B, d->n = m (d->k unused). */
ddn_status ddn_linalg_check_ied_vjp_e(const ddn_tensor *dA, const ddn_tensor *A,
                                      const ddn_tensor *y, const ddn_tensor *v, bool ift,
                                      const double *z, const void *items, ddn_linalg_dims *d);

/* ---- op front-end helpers (core/op_util.c) ---- */
/* Normalises a possibly negative dim of x; -1 with an error naming op and x's shape when out of
 * range. A 0-dim tensor accepts 0 and -1, as in PyTorch. */
int ddn_norm_dim(ddn_ctx *ctx, const char *op, const ddn_tensor *x, int dim);
/* NumPy broadcast of two shapes into out (ndim in *nout); false with an error when they clash. */
bool ddn_broadcast_shapes(ddn_ctx *ctx, const char *op, const ddn_tensor *a, const ddn_tensor *b,
                          int *nout, int64_t *out);
/* A stride-0 view of x broadcast to shape (no tape node). */
ddn_tensor *ddn_broadcast_raw(ddn_ctx *ctx, const ddn_tensor *x, int ndim, const int64_t *shape);
/* Checks that x is non-NULL (returning false quietly if NULL), floating point, on ctx's device. */
bool ddn_check_float(ddn_ctx *ctx, const char *op, const ddn_tensor *x);
/* Checks a and b as above and that they share a dtype. */
bool ddn_check_pair(ddn_ctx *ctx, const char *op, const ddn_tensor *a, const ddn_tensor *b);
/* Runs the numerics check on an op's output (when enabled). Returns out, or NULL on failure. */
ddn_tensor *ddn_op_finish(ddn_ctx *ctx, const char *op, ddn_tensor *out);
/* Same check for a gradient produced by a node's backward; returns the status. */
ddn_status ddn_check_grad_numerics(ddn_ctx *ctx, const char *op, const ddn_tensor *g);

/* Kernel-side operand checks, shared by every backend (front ends check first; these make a wrong
 * call fail with a message instead of reading out of bounds). Elementwise: every in[i] present,
 * of out's shape and float dtype. Optimizer: p and each non-NULL ops[i] contiguous, of p's
 * element count and float dtype. kernel and op name the call in the message. */
ddn_status ddn_check_ew_operands(const char *kernel, const char *op, ddn_tensor *out, int n,
                                 const ddn_tensor *const *in);
ddn_status ddn_check_optim_operands(const char *kernel, const ddn_tensor *p, int n,
                                    const ddn_tensor *const *ops);

#endif
