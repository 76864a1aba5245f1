/* ddn — the CPU backend: host memory and the CPU kernel table. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

/* The CPU keeps no per-context state: ctx is unused by its memory functions. */
static void *cpu_alloc(ddn_ctx *ctx, size_t bytes)
{
    /* 64-byte alignment suits AVX loads and keeps rows of separate tensors off shared lines. */
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

static void cpu_free(ddn_ctx *ctx, void *p) { free(p); }

static ddn_status cpu_copy_bytes(ddn_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
    return DDN_OK;
}

static ddn_status cpu_sync(ddn_ctx *ctx) { return DDN_OK; }

static const ddn_kernels cpu_kernels = {
    .copy = ddn_cpu_copy,
    .fill = ddn_cpu_fill,
    .axpy = ddn_cpu_axpy,
    .has_nonfinite = ddn_cpu_has_nonfinite,
    .unary = ddn_cpu_unary,
    .unary_backward_acc = ddn_cpu_unary_backward_acc,
    .binary = ddn_cpu_binary,
    .binary_backward = ddn_cpu_binary_backward,
    .reduce = ddn_cpu_reduce,
    .argmax = ddn_cpu_argmax,
    .matmul = ddn_cpu_matmul,
    .softmax = ddn_cpu_softmax,
    .softmax_backward_acc = ddn_cpu_softmax_backward_acc,
    .nll = ddn_cpu_nll,
    .nll_backward_acc = ddn_cpu_nll_backward_acc,
    .max_backward_acc = ddn_cpu_max_backward_acc,
    /* convolution */
    .conv2d = ddn_cpu_conv2d,
    .conv2d_backward_data_acc = ddn_cpu_conv2d_backward_data_acc,
    .conv2d_backward_filter_acc = ddn_cpu_conv2d_backward_filter_acc,

    /* normalisation, pooling, dropout */
    .batch_norm_train = ddn_cpu_batch_norm_train,
    .batch_norm_eval = ddn_cpu_batch_norm_eval,
    .batch_norm_backward_acc = ddn_cpu_batch_norm_backward_acc,
    .max_pool2d = ddn_cpu_max_pool2d,
    .max_pool2d_backward_acc = ddn_cpu_max_pool2d_backward_acc,
    .avg_pool2d = ddn_cpu_avg_pool2d,
    .avg_pool2d_backward_acc = ddn_cpu_avg_pool2d_backward_acc,
    .adaptive_avg_pool2d = ddn_cpu_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward_acc = ddn_cpu_adaptive_avg_pool2d_backward_acc,
    .dropout_mask = ddn_cpu_dropout_mask,

    /* optimizer updates */
    .sgd_update = ddn_cpu_sgd_update,
    .adam_update = ddn_cpu_adam_update,
    .sum_squares = ddn_cpu_sum_squares,

    /* dense linear algebra */
    .lu_solve = ddn_cpu_lu_solve,
    .cholesky_solve = ddn_cpu_cholesky_solve,
    .eigh = ddn_cpu_eigh,
    .qr = ddn_cpu_qr,

    /* declarative solvers */
    .ied_power = ddn_cpu_ied_power,
    /* LESS per item, the block code's CPU instances (declarative/less_blk.c) */
    .less_iterate = ddn_cpu_less_iterate,
    .less_vjp_e = ddn_cpu_less_vjp_e,
    /* declarative layers' block algorithms */
    .ied_vjp_e = ddn_cpu_ied_vjp_e,
};

const ddn_backend ddn_cpu_backend = {
    .name = "cpu",
    .device = DDN_DEVICE_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy_h2d = cpu_copy_bytes,
    .copy_d2h = cpu_copy_bytes,
    .sync = cpu_sync,
    .k = &cpu_kernels,
};
