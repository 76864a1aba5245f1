/* ddn — the IED layer's EIGH baseline where A lives on a device: the backend's symmetric
 * eigensolver (on CUDA cuSOLVER's syevjBatched for m <= 32, syevd above) in A's dtype, as
 * torch.linalg.eigh runs on a GPU.
 *
 * Only O(B m) crosses to the host: the eigenvalues (to pick the column PI targets and check ties),
 * the picked column (for the reference sign) and A y (for the diagnostics); the input checks are
 * the power kernel's (ddn_ied_power_check), the backward is batched products on the device:
 *     G = (u y^T + y u^T) / 2,  u = V (c / (lambda - w)),  c = V^T v,  c_p = 0,
 * the host path's formula (ied_backward.c, ddn_ied_eigh_vjp_), which computes it in float64 from
 * host copies. Here it is in A's dtype. The CPU context takes this path too when its
 * device_algorithms flag is set (the CUDA tests' self-check), which holds it to the host path.
 */
#include <math.h>
#include <string.h>

#include "ddn_impl.h"
#include "ied_impl.h"
#include "ops.h"

/* The first item that fails the input checks, reported as the host EIGH reports it. */
static ddn_status check_input(ddn_ctx *ctx, const ddn_tensor *A)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_ied_info *ci = ddn_ctx_scratch(ctx, (size_t)B * sizeof *ci);
    ddn_ied_power_err *ce = ddn_ctx_scratch(ctx, (size_t)B * sizeof *ce);
    ddn_status st = ci && ce ? ddn_ied_power_check(ctx, A, false, ci, ce) : ddn_ctx_status(ctx);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) /* symmetry first, as on the host */
        if (!ci[b].symmetric) st = ddn_ied_refuse_nonsymmetric_(ctx, DDN_IED_BACKWARD_EIGH, b, A);
    for (int64_t b = 0; b < B && st == DDN_OK; b++)
        if (ce[b].code != DDN_IED_POWER_OK)
            st = ddn_ied_input_error_(ctx, "EIGH", b, B, m, ce[b].code == DDN_IED_POWER_NONFINITE);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_ied_eigh_solve_device_(ddn_ctx *ctx, const ddn_ied_opts *o, const ddn_tensor *A,
                                      ddn_tensor *y, ddn_decl_info *info, void **saved)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    const ddn_dtype dt = A->dtype;
    const bool f32 = dt == DDN_DTYPE_F32;
    /* kept for the backward: made before the mark below */
    ied_saved *sv = ddn_ctx_scratch(ctx, sizeof *sv);
    double *w = ddn_ctx_scratch(ctx, (size_t)(B * m + B + 1) * sizeof *w);
    int64_t *idx = ddn_ctx_scratch(ctx, (size_t)(B ? B : 1) * sizeof *idx);
    ddn_tensor *V = ddn_tensor_new(ctx, dt, 3, (const int64_t[]){B, m, m});
    if (!sv || !w || !idx || !V) return ddn_ctx_status(ctx);
    *sv = (ied_saved){.w = w, .sign = w + B * m, .idx = idx, .Vt = V};

    ddn_status st = check_input(ctx, A);
    if (st != DDN_OK) return st;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *wt = ddn_tensor_new(ctx, dt, 2, (const int64_t[]){B, m});
    ddn_tensor *a = ddn_contiguous(ctx, (ddn_tensor *)A);
    double *yh = ddn_ctx_scratch(ctx, (size_t)(2 * B * m) * sizeof *yh), *ay = yh + B * m;
    if (!wt || !a || !yh) return ddn_ctx_status(ctx);
    st = ctx->kernels.eigh(wt, V, a);
    if (st == DDN_OK) st = ddn_tensor_to_host(wt, DDN_DTYPE_F64, w);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        const int64_t p = ddn_ied_eigh_pick_(m, w + b * m, o->shift);
        /* column p of item b: m elements, stride m */
        ddn_tensor *col = ddn_view_raw(ctx, V, 1, &m, &m, V->offset + b * m * m + p);
        st = col ? ddn_tensor_to_host(col, DDN_DTYPE_F64, yh + b * m) : ddn_ctx_status(ctx);
        /* the solver's reference sign (Eq. 17), always: the library's sign is arbitrary */
        double d = 0;
        for (int64_t i = 0; i < m && st == DDN_OK; i++)
            d += yh[b * m + i] * (!o->ref ? 1 : f32 ? ((const float *)o->ref)[i]
                                                    : ((const double *)o->ref)[i]);
        const double s = d < 0 ? -1 : 1;
        for (int64_t i = 0; i < m; i++) yh[b * m + i] *= s;
        idx[b] = p;
        sv->sign[b] = s;
    }
    ddn_tensor *yt = NULL;
    if (st == DDN_OK) yt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 2, y->shape, yh);
    if (st == DDN_OK) st = yt ? ddn_tensor_copy_(y, yt) : ddn_ctx_status(ctx);
    /* Diagnostics (Eq. 42) on the returned y: A y on the device, the rest from O(B m) */
    ddn_tensor *ayt = st == DDN_OK ? ddn_matmul(ctx, a, ddn_reshape(ctx, y, 3,
                                                                    (const int64_t[]){B, m, 1}))
                                   : NULL;
    if (st == DDN_OK) st = ayt ? ddn_tensor_to_host(ayt, DDN_DTYPE_F64, ay) : ddn_ctx_status(ctx);
    if (st == DDN_OK) st = ddn_tensor_to_host(y, DDN_DTYPE_F64, yh); /* rounded to the dtype */
    int64_t *it = ddn_tensor_ptr(info->iterations), *cv = ddn_tensor_ptr(info->converged);
    double *fpd = ddn_tensor_ptr(info->fpd);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        double nay = 0, f = 0;
        for (int64_t i = 0; i < m; i++) nay += ay[b * m + i] * ay[b * m + i];
        nay = sqrt(nay);
        for (int64_t i = 0; i < m; i++) {
            double e = yh[b * m + i] - (nay > 0 ? ay[b * m + i] / nay : 0);
            f += e * e;
        }
        it[b] = 0; /* a direct method */
        cv[b] = 1;
        fpd[b] = sqrt(f);
    }
    ddn_ctx_rewind(ctx, mark);
    if (st == DDN_OK) *saved = sv;
    return st;
}

ddn_status ddn_ied_eigh_vjp_device_(ddn_ctx *ctx, const ddn_ied_opts *o, ddn_tensor *A,
                                    const ddn_tensor *y, const ddn_tensor *dy,
                                    const ied_saved *sv)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    const double tie = o->check_gap ? o->tie_tol : 0;
    if (!A->requires_grad) return DDN_OK;
    if (!ddn_grad_buffer(ctx, A)) return ddn_ctx_status(ctx); /* made before the mark below */
    ddn_mark mark = ddn_ctx_mark(ctx);
    /* the pseudo-inverse's weights 1 / (lambda - w_j), 0 at j = p, with the host path's tie rule */
    double *scale = ddn_ctx_scratch(ctx, (size_t)(B * m) * sizeof *scale);
    if (!scale) return ddn_ctx_status(ctx);
    ddn_status st = DDN_OK;
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        const double *w = sv->w + b * m, lam = w[sv->idx[b]];
        for (int64_t j = 0; j < m && st == DDN_OK; j++) {
            double gap = lam - w[j];
            if (j == sv->idx[b])
                scale[b * m + j] = 0;
            else if (!(fabs(gap) > tie * fabs(lam)))
                st = ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (EIGH): item %lld of %lld (A "
                                       "%lldx%lld): eigenvalue %.17g is repeated (another is "
                                       "%.17g, tie_tol %g): y has no derivative", (long long)b,
                                       (long long)B, (long long)m, (long long)m, lam, w[j], tie);
            else
                scale[b * m + j] = 1 / gap;
        }
    }
    if (st != DDN_OK) {
        ddn_ctx_rewind(ctx, mark);
        return st;
    }
    const int64_t col[3] = {B, m, 1}, row[3] = {B, 1, m};
    ddn_tensor *V = sv->Vt, *yd = (ddn_tensor *)y, *v = (ddn_tensor *)dy;
    ddn_tensor *s64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 3, col, scale);
    ddn_tensor *s = s64 ? ddn_tensor_new(ctx, A->dtype, 3, col) : NULL;
    if (!s || ddn_tensor_copy_(s, s64) != DDN_OK) {
        ddn_ctx_rewind(ctx, mark);
        return ddn_ctx_status(ctx);
    }
    ddn_tensor *c = ddn_matmul(ctx, ddn_transpose(ctx, V, 1, 2), ddn_reshape(ctx, v, 3, col));
    ddn_tensor *u = ddn_matmul(ctx, V, ddn_mul(ctx, c, s));
    ddn_tensor *y3 = ddn_reshape(ctx, yd, 3, col);
    ddn_tensor *G = ddn_add(ctx, ddn_matmul(ctx, u, ddn_reshape(ctx, yd, 3, row)),
                            ddn_matmul(ctx, y3, ddn_reshape(ctx, u, 3, row)));
    st = G ? ddn_grad_accumulate(ctx, A, G, 0.5) : ddn_ctx_status(ctx);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
