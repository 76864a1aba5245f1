/* ddn — the CUDA entries of the declarative solvers: device scratch and result arrays, the
 * launch, and the per-item results read back for the host to word (declarative/ied_power.c).
 * The algorithms are block code shared with the CPU (declarative/ied_power_blk.h). */
#include "cuda_impl.h"

ddn_status ddn_cuda_ied_power(ddn_tensor *y, const ddn_tensor *a, const ddn_tensor *rnd,
                              const ddn_tensor *ref, const ddn_tensor *gstart,
                              const ddn_ied_power_params *p, ddn_ied_info *info,
                              ddn_ied_power_err *err)
{
    ddn_ctx *ctx = y->ctx;
    const size_t ni = (size_t)p->B * sizeof *info, ne = (size_t)p->B * sizeof *err;
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *scratch = ddn_cuda_scratch(ctx, (size_t)p->B * p->scratch);
    void *dinfo = scratch ? ddn_cuda_scratch(ctx, ni) : NULL;
    void *derr = dinfo ? ddn_cuda_scratch(ctx, ne) : NULL;
    ddn_status st = derr ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK) {
        int r = ddn_cuda_launch_ied_power(ddn_cuda_state_of(ctx)->stream, p, (int)y->dtype,
                                          ddn_tensor_ptr(a), ddn_tensor_ptr(rnd),
                                          ref ? ddn_tensor_ptr(ref) : NULL,
                                          ddn_tensor_ptr(gstart), ddn_tensor_ptr(y), dinfo, derr,
                                          scratch);
        st = DDN_CUDA_LAUNCH_CHECK(ctx, "ied_power", r);
    }
    if (st == DDN_OK) st = ddn_cuda_read(ctx, info, dinfo, ni, "ied_power info");
    if (st == DDN_OK) st = ddn_cuda_read(ctx, err, derr, ne, "ied_power err");
    ddn_ctx_rewind(ctx, mark);
    return st;
}
