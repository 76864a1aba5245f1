/* ddn — the CUDA table entry ied_vjp_e (contract: core/backend.h): device scratch, the probe
 * uploaded, the block kernel of ied_backward.cu, the per-item outcomes read back (the only
 * device -> host copy: B small records), then the gradient kernel when every item solved. */
#include "cuda_impl.h"
#include "ied_backward_blk.h" /* (T undefined) scratch sizes, outcome codes, ddn_iedb_out */

/* The blocks run at once hold their LU matrices ((m+1)^2 doubles each): at most this much
 * scratch, so m = 1024 gets ~60 blocks (every item still runs, blocks take several), and at most
 * this many blocks (enough to fill an H100's 132 SMs several times over). */
#define IED_SCRATCH_BUDGET ((size_t)512 << 20)
#define IED_MAX_BLOCKS 1024

static size_t align64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

ddn_status ddn_cuda_ied_vjp_e(ddn_tensor *dA, const ddn_tensor *A, const ddn_tensor *y,
                              const ddn_tensor *v, bool ift, const double *z,
                              ddn_ied_vjp_item *items)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_ied_vjp_e(dA, A, y, v, ift, z, items, &d);
    if (st != DDN_OK) return st;
    ddn_ctx *ctx = A->ctx;
    const int64_t B = d.batch, m = d.n;
    if (B == 0 || m == 0) return DDN_OK;
    cudaStream_t stream = ddn_cuda_state_of(ctx)->stream;
    const size_t wsd = (size_t)ddn_iedb_ws_doubles(m) * sizeof(double);
    const size_t wsi = (size_t)ddn_iedb_ws_ints(m) * sizeof(int);
    size_t fit = IED_SCRATCH_BUDGET / (wsd + wsi), nbs = (size_t)B;
    if (fit < 1) fit = 1;
    if (nbs > fit) nbs = fit;
    if (nbs > IED_MAX_BLOCKS) nbs = IED_MAX_BLOCKS;
    const int nb = (int)nbs;

    ddn_mark mark = ddn_ctx_mark(ctx);
    double *ws = ddn_cuda_scratch(ctx, align64((size_t)nb * wsd));
    int *piv = ddn_cuda_scratch(ctx, align64((size_t)nb * wsi));
    double *yu = ddn_cuda_scratch(ctx, (size_t)(2 * B * m) * sizeof(double)); /* yd, then u */
    ddn_iedb_out *out_d = ddn_cuda_scratch(ctx, (size_t)B * sizeof(ddn_iedb_out));
    double *zd = ift ? ddn_cuda_scratch(ctx, (size_t)m * sizeof(double)) : NULL;
    ddn_iedb_out *out = ddn_ctx_scratch(ctx, (size_t)B * sizeof(ddn_iedb_out));
    if (!ws || !piv || !yu || !out_d || (ift && !zd) || !out) return ddn_ctx_status(ctx);
    if (ift)
        st = DDN_CUDA_CHECK(ctx, cudaMemcpyAsync(zd, z, (size_t)m * sizeof(double),
                                                 cudaMemcpyHostToDevice, stream));
    if (st == DDN_OK)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "ied_vjp_e",
                                   ddn_cuda_launch_ied_vjp_e(stream, A->dtype, ift, B, m,
                                                             ddn_tensor_ptr(A), ddn_tensor_ptr(y),
                                                             ddn_tensor_ptr(v), zd, nb, ws, piv,
                                                             yu, yu + B * m, out_d));
    /* waits for the kernel (and for the probe's upload, so z may be freed after return) */
    if (st == DDN_OK)
        st = ddn_cuda_read(ctx, out, out_d, (size_t)B * sizeof(ddn_iedb_out), "ied_vjp_e");
    bool all_ok = true;
    for (int64_t b = 0; st == DDN_OK && b < B; b++) {
        items[b] = (ddn_ied_vjp_item){.code = out[b].code, .sweeps = out[b].sweeps,
                                      .rcond = out[b].rcond};
        all_ok &= out[b].code == DDN_IEDB_LU || out[b].code == DDN_IEDB_NEUMANN;
    }
    if (st == DDN_OK && all_ok && dA)
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "ied_vjp_e gradient",
                                   ddn_cuda_launch_ied_grad_acc(stream, dA->dtype, !ift, B, m,
                                                                ddn_tensor_ptr(dA), yu + B * m,
                                                                yu));
    ddn_ctx_rewind(ctx, mark); /* later work on the stream is ordered after the gradient kernel */
    return st;
}
