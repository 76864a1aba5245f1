/* ddn — the CUDA table entries that reduce (sum, max, argmax, max backward, softmax, NLL, sum of
 * squares) and the optimizer updates: checks and plans on the host, kernels in reduce.cu. */
#include <string.h>

#include "cuda_impl.h"

static cudaStream_t stream_of(const ddn_tensor *t) { return ddn_cuda_state_of(t->ctx)->stream; }

/* Kept dims (not in mask, size > 1) and reduced dims (in mask, size > 1) of x; kept strides of
 * up to four operands (x, out or y, dy, dx; NULL entries are skipped) and reduced strides of x
 * and dx. */
static void plan_of(ddn_cuda_reduce_plan *p, const ddn_tensor *x, uint32_t mask,
                    const ddn_tensor *const kept_ops[4], const ddn_tensor *dx)
{
    memset(p, 0, sizeof *p);
    p->outer = p->inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (mask & (1u << d)) {
            p->r_shape[p->nr] = x->shape[d];
            p->r_stride[0][p->nr] = x->stride[d];
            p->r_stride[1][p->nr] = dx ? dx->stride[d] : 0;
            p->nr++;
            p->inner *= x->shape[d];
        } else {
            p->k_shape[p->nk] = x->shape[d];
            for (int k = 0; k < 4; k++) p->k_stride[k][p->nk] = kept_ops[k] ? kept_ops[k]->stride[d] : 0;
            p->nk++;
            p->outer *= x->shape[d];
        }
    }
    if (x->ndim && ddn_tensor_numel(x) == 0) p->outer = 0; /* an empty dim: nothing to do */
}

ddn_status ddn_cuda_reduce(ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x,
                           uint32_t dims_mask)
{
    DDN_ASSERT(out->ndim == x->ndim && out->dtype == x->dtype);
    if (op == DDN_REDUCE_MAX && ddn_tensor_numel(x) == 0)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_SHAPE, "max: cannot reduce an empty tensor");
    if (ddn_tensor_numel(x) == 0) return ddn_cuda_fill(out, 0.0); /* an empty sum is 0 */
    ddn_cuda_reduce_plan p;
    plan_of(&p, x, dims_mask, (const ddn_tensor *[4]){x, out, NULL, NULL}, NULL);
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "reduce",
                                 ddn_cuda_launch_reduce(stream_of(out), &p, x->dtype,
                                                        op == DDN_REDUCE_SUM ? 0 : 1,
                                                        ddn_tensor_ptr(out), ddn_tensor_ptr(x)));
}

ddn_status ddn_cuda_max_backward_acc(ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
                                     const ddn_tensor *dy, uint32_t dims_mask)
{
    DDN_ASSERT(ddn_tensor_same_shape(dx, x) && y->ndim == x->ndim && dy->ndim == x->ndim);
    DDN_ASSERT(dx->dtype == x->dtype && y->dtype == x->dtype && dy->dtype == x->dtype);
    if (ddn_tensor_numel(x) == 0) return DDN_OK;
    ddn_cuda_reduce_plan p;
    plan_of(&p, x, dims_mask, (const ddn_tensor *[4]){x, y, dy, dx}, dx);
    return DDN_CUDA_LAUNCH_CHECK(dx->ctx, "max backward",
                                 ddn_cuda_launch_max_backward_acc(
                                     stream_of(dx), &p, x->dtype, ddn_tensor_ptr(dx),
                                     ddn_tensor_ptr(x), ddn_tensor_ptr(y), ddn_tensor_ptr(dy)));
}

ddn_status ddn_cuda_argmax(ddn_tensor *out, const ddn_tensor *x, int dim)
{
    DDN_ASSERT(out->dtype == DDN_DTYPE_I64 && out->ndim == x->ndim);
    if (x->shape[dim] == 0)
        return ddn_ctx_set_error(out->ctx, DDN_ERR_SHAPE, "argmax: dim %d is empty", dim);
    if (!ddn_dtype_is_float(x->dtype))
        return ddn_ctx_set_error(out->ctx, DDN_ERR_DTYPE, "argmax: expected float32 or float64, "
                                 "got %s", ddn_dtype_name(x->dtype));
    ddn_cuda_reduce_plan p;
    /* dim is "reduced" by the kernel's own loop; the plan only enumerates the other dims */
    plan_of(&p, x, 1u << dim, (const ddn_tensor *[4]){x, out, NULL, NULL}, NULL);
    p.nr = 0;
    p.inner = 1;
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "argmax",
                                 ddn_cuda_launch_argmax(stream_of(out), &p, x->dtype,
                                                        ddn_tensor_ptr(out), ddn_tensor_ptr(x),
                                                        x->shape[dim], x->stride[dim]));
}

/* ---- softmax and NLL -------------------------------------------------------------------------- */
static void around_dim(const ddn_tensor *x, int dim, int64_t *outer, int64_t *n, int64_t *inner)
{
    *outer = *n = *inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) *outer *= x->shape[d];
        else if (d == dim) *n = x->shape[d];
        else *inner *= x->shape[d];
    }
}

ddn_status ddn_cuda_softmax(ddn_tensor *out, const ddn_tensor *x, int dim, bool log)
{
    DDN_ASSERT(ddn_tensor_same_shape(out, x) && out->dtype == x->dtype);
    DDN_ASSERT(ddn_tensor_is_contiguous(out) && ddn_tensor_is_contiguous(x));
    int64_t outer, n, inner;
    around_dim(x, dim, &outer, &n, &inner);
    return DDN_CUDA_LAUNCH_CHECK(out->ctx, "softmax",
                                 ddn_cuda_launch_softmax(stream_of(out), x->dtype,
                                                         ddn_tensor_ptr(out), ddn_tensor_ptr(x),
                                                         outer, n, inner, log));
}

ddn_status ddn_cuda_softmax_backward_acc(ddn_tensor *dx, const ddn_tensor *y,
                                         const ddn_tensor *dy, int dim, bool log)
{
    DDN_ASSERT(ddn_tensor_same_shape(dx, y) && ddn_tensor_same_shape(dx, dy));
    DDN_ASSERT(ddn_tensor_is_contiguous(dx) && ddn_tensor_is_contiguous(y) &&
               ddn_tensor_is_contiguous(dy));
    int64_t outer, n, inner;
    around_dim(y, dim, &outer, &n, &inner);
    return DDN_CUDA_LAUNCH_CHECK(dx->ctx, "softmax backward",
                                 ddn_cuda_launch_softmax_backward_acc(
                                     stream_of(dx), dx->dtype, ddn_tensor_ptr(dx),
                                     ddn_tensor_ptr(y), ddn_tensor_ptr(dy), outer, n, inner, log));
}

/* After an NLL kernel: reads the bad-label index and, when there is one, its value, and reports
 * it with the CPU kernel's message. */
static ddn_status check_labels(ddn_ctx *ctx, const long long *bad_dev, const ddn_tensor *labels,
                               int64_t C)
{
    long long bad = -1;
    ddn_status st = ddn_cuda_read(ctx, &bad, bad_dev, sizeof bad, "nll bad label");
    if (st != DDN_OK || bad < 0) return st;
    int64_t value = 0;
    const int64_t *lb = ddn_tensor_ptr(labels);
    st = ddn_cuda_read(ctx, &value, lb + bad * labels->stride[0], sizeof value, "nll label");
    if (st != DDN_OK) return st;
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "cross_entropy (nll): item %lld has label %lld, "
                             "outside [0, %lld) for %lld classes", bad, (long long)value,
                             (long long)C, (long long)C);
}

ddn_status ddn_cuda_nll(ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels,
                        double scale)
{
    DDN_ASSERT(logp->ndim == 2 && labels->ndim == 1 && labels->dtype == DDN_DTYPE_I64 &&
               labels->shape[0] == logp->shape[0] && ddn_tensor_numel(out) == 1);
    ddn_ctx *ctx = out->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    long long *bad = ddn_cuda_scratch(ctx, sizeof *bad);
    ddn_status st = bad ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "nll",
                                   ddn_cuda_launch_nll(stream_of(out), logp->dtype,
                                                       ddn_tensor_ptr(out), ddn_tensor_ptr(logp),
                                                       logp->stride[0], logp->stride[1],
                                                       ddn_tensor_ptr(labels), labels->stride[0],
                                                       logp->shape[0], logp->shape[1], scale,
                                                       bad));
    if (st == DDN_OK) st = check_labels(ctx, bad, labels, logp->shape[1]);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cuda_nll_backward_acc(ddn_tensor *dlogp, const ddn_tensor *labels,
                                     const ddn_tensor *dy, double scale)
{
    DDN_ASSERT(dlogp->ndim == 2 && labels->ndim == 1 && labels->shape[0] == dlogp->shape[0] &&
               ddn_tensor_numel(dy) == 1 && dy->dtype == dlogp->dtype);
    ddn_ctx *ctx = dlogp->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    long long *bad = ddn_cuda_scratch(ctx, sizeof *bad);
    ddn_status st = bad ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "nll backward",
                                   ddn_cuda_launch_nll_backward_acc(
                                       stream_of(dlogp), dlogp->dtype, ddn_tensor_ptr(dlogp),
                                       dlogp->stride[0], dlogp->stride[1], ddn_tensor_ptr(labels),
                                       labels->stride[0], dlogp->shape[0], dlogp->shape[1],
                                       ddn_tensor_ptr(dy), scale, bad));
    if (st == DDN_OK) st = check_labels(ctx, bad, labels, dlogp->shape[1]);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

/* ---- optimizer updates ------------------------------------------------------------------------ */

ddn_status ddn_cuda_sgd_update(ddn_tensor *p, ddn_tensor *buf, const ddn_tensor *g, double lr,
                               double momentum, double dampening, double weight_decay,
                               bool nesterov, bool first)
{
    if (!g || (momentum != 0 && !buf))
        return ddn_ctx_set_error(p->ctx, DDN_ERR_ARG, "sgd_update: %s is NULL",
                                 g ? "the momentum buffer" : "the gradient");
    ddn_status st = ddn_check_optim_operands("sgd_update", p, 2, (const ddn_tensor *[]){buf, g});
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(p->ctx, "sgd_update",
                                 ddn_cuda_launch_sgd(stream_of(p), p->dtype, ddn_tensor_ptr(p),
                                                     buf ? ddn_tensor_ptr(buf) : NULL,
                                                     ddn_tensor_ptr(g), ddn_tensor_numel(p), lr,
                                                     momentum, dampening, weight_decay, nesterov,
                                                     first));
}

ddn_status ddn_cuda_adam_update(ddn_tensor *p, ddn_tensor *m, ddn_tensor *v, ddn_tensor *vmax,
                                const ddn_tensor *g, double lr, double beta1, double beta2,
                                double eps, double weight_decay, bool decoupled, int64_t step)
{
    if (!m || !v || !g || step < 1)
        return ddn_ctx_set_error(p->ctx, DDN_ERR_ARG, "adam_update: %s",
                                 step < 1 ? "step must be >= 1"
                                          : "a moment or the gradient is NULL");
    ddn_status st = ddn_check_optim_operands("adam_update", p, 4, (const ddn_tensor *[]){m, v, vmax, g});
    if (st != DDN_OK) return st;
    return DDN_CUDA_LAUNCH_CHECK(p->ctx, "adam_update",
                                 ddn_cuda_launch_adam(stream_of(p), p->dtype, ddn_tensor_ptr(p),
                                                      ddn_tensor_ptr(m), ddn_tensor_ptr(v),
                                                      vmax ? ddn_tensor_ptr(vmax) : NULL,
                                                      ddn_tensor_ptr(g), ddn_tensor_numel(p), lr,
                                                      beta1, beta2, eps, weight_decay, decoupled,
                                                      step));
}

ddn_status ddn_cuda_sum_squares(const ddn_tensor *x, double *out)
{
    if (!ddn_dtype_is_float(x->dtype) || !ddn_tensor_is_contiguous(x))
        return ddn_ctx_set_error(x->ctx, DDN_ERR_ARG, "sum_squares: expected a contiguous float "
                                 "tensor, got %s%s", ddn_dtype_name(x->dtype),
                                 ddn_tensor_is_contiguous(x) ? "" : " (strided)");
    ddn_ctx *ctx = x->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *dev = ddn_cuda_scratch(ctx, (DDN_CUDA_SUMSQ_BLOCKS + 1) * sizeof *dev);
    ddn_status st = dev ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "sum_squares",
                                   ddn_cuda_launch_sum_squares(stream_of(x), x->dtype,
                                                               ddn_tensor_ptr(x),
                                                               ddn_tensor_numel(x), dev,
                                                               dev + DDN_CUDA_SUMSQ_BLOCKS));
    if (st == DDN_OK)
        st = ddn_cuda_read(ctx, out, dev + DDN_CUDA_SUMSQ_BLOCKS, sizeof *out, "sum_squares");
    ddn_ctx_rewind(ctx, mark);
    return st;
}
