/* ddn — the CUDA table entries less_iterate and less_vjp_e: argument checks shared with the CPU
 * (declarative/less_blk.c), device workspace from the step arena, the kernels of less.cu (one
 * block per item), and the per-item outcomes read back into the caller's host array.
 *
 * Workspace is per item, not per resident block: B (n^2 + 5n + 2m) doubles for the backward,
 * about what the CPU path's host copies of A already cost. It is rewound before returning; the
 * read-back synchronises the stream first, so no kernel still uses it.
 */
#include "cuda_impl.h"
#include "less_impl.h"

static bool grid_fits(int64_t B) { return B <= 0x7fffffff; }

ddn_status ddn_cuda_less_iterate(ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
                                 const ddn_tensor *uc, const struct ddn_less_opts *o,
                                 struct ddn_less_item *item)
{
    int64_t B, m, n;
    ddn_status st = ddn_less_check_iterate(y, A, b, uc, o, item, &B, &m, &n);
    if (st != DDN_OK || B == 0) return st;
    ddn_ctx *ctx = y->ctx;
    if (!grid_fits(B))
        return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "less_iterate: batch %lld exceeds "
                                 "the 2^31 - 1 blocks of one launch", (long long)B);
    const cudaStream_t s = ddn_cuda_state_of(ctx)->stream;
    const ddn_less_iter_params p = ddn_less_iter_params_of(o);
    const size_t es = ddn_dtype_size(A->dtype), items = (size_t)B * sizeof *item;
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *work = ddn_cuda_scratch(ctx, (size_t)(B * DDN_LESS_ITER_WORK(m, n)) * es);
    ddn_less_item *ditem = ddn_cuda_scratch(ctx, items);
    if (!work || !ditem) st = ddn_ctx_status(ctx);
    if (st == DDN_OK) st = DDN_CUDA_CHECK(ctx, cudaMemsetAsync(ditem, 0, items, s));
    if (st == DDN_OK)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "less_iterate",
                                   ddn_cuda_launch_less_iterate(s, (int)A->dtype, B, m, n,
                                                                ddn_tensor_ptr(y),
                                                                ddn_tensor_ptr(A),
                                                                ddn_tensor_ptr(b),
                                                                ddn_tensor_ptr(uc), &p, work,
                                                                ditem));
    if (st == DDN_OK) st = ddn_cuda_read(ctx, item, ditem, items, "less_iterate items");
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cuda_less_vjp_e(ddn_tensor *dA, ddn_tensor *db, const ddn_tensor *A,
                               const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *v,
                               const ddn_tensor *nu, struct ddn_less_item *item)
{
    int64_t B, m, n;
    ddn_status st = ddn_less_check_vjp_e(dA, db, A, b, y, v, nu, item, &B, &m, &n);
    if (st != DDN_OK || B == 0) return st;
    ddn_ctx *ctx = A->ctx;
    if (!grid_fits(B))
        return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "less_vjp_e: batch %lld exceeds the "
                                 "2^31 - 1 blocks of one launch", (long long)B);
    const cudaStream_t s = ddn_cuda_state_of(ctx)->stream;
    const size_t items = (size_t)B * sizeof *item;
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *work = ddn_cuda_scratch(ctx, (size_t)(B * DDN_LESS_VJP_WORK(m, n)) * sizeof *work);
    int *iwork = ddn_cuda_scratch(ctx, (size_t)(B * DDN_LESS_VJP_IWORK(n)) * sizeof *iwork);
    ddn_less_item *ditem = ddn_cuda_scratch(ctx, items);
    if (!work || !iwork || !ditem) st = ddn_ctx_status(ctx);
    if (st == DDN_OK) st = DDN_CUDA_CHECK(ctx, cudaMemsetAsync(ditem, 0, items, s));
    if (st == DDN_OK)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "less_vjp_e",
                                   ddn_cuda_launch_less_vjp_e(
                                       s, (int)A->dtype, B, m, n, dA ? ddn_tensor_ptr(dA) : NULL,
                                       db ? ddn_tensor_ptr(db) : NULL, ddn_tensor_ptr(A),
                                       ddn_tensor_ptr(b), ddn_tensor_ptr(y), ddn_tensor_ptr(v),
                                       ddn_tensor_ptr(nu), work, iwork, ditem));
    if (st == DDN_OK) st = ddn_cuda_read(ctx, item, ditem, items, "less_vjp_e items");
    ddn_ctx_rewind(ctx, mark);
    return st;
}
