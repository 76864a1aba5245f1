/* ddn — the CPU instance of the IED E-mode backward block algorithm (ied_backward_blk.h): the
 * ied_vjp_e kernel of the CPU table (core/backend.h), one item per thread (OpenMP over items by
 * solver_util.h's rule), then dA += u y^T (+ y u^T) in dA's dtype.
 *
 * The layer's own CPU backward keeps the LAPACK path of ied_backward.c (dgemm, getrf and gecon
 * are faster here than these plain loops); this instance exists so that the algorithm the CUDA
 * backend runs is tested on machines without a GPU: tests/test_ied_blk.c compares it with the
 * LAPACK path, and tests/test_cuda.c's self-check runs it in place of the device.
 */
#include "blk.h"
#include "cpu_kernels.h"
#include "ddn_impl.h"
#include "solver_util.h"

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "ied_backward_blk.h"
#undef T
#undef TS
#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "ied_backward_blk.h"
#undef T
#undef TS

/* dA += u y^T (+ y u^T when sym2), u and y (B, m) float64, dA contiguous (B, m, m): each entry
 * rounded once, as ied_backward.c's add_low_rank. */
static void add_low_rank(ddn_tensor *dA, bool sym2, int64_t B, int64_t m, const double *u,
                         const double *y)
{
    const bool f32 = dA->dtype == DDN_DTYPE_F32;
    void *p = ddn_tensor_ptr(dA);
    for (int64_t b = 0; b < B; b++) {
        const double *ub = u + b * m, *yb = y + b * m;
        for (int64_t j = 0; j < m; j++) {
            const int64_t o = (b * m + j) * m;
            for (int64_t k = 0; k < m; k++) {
                const double g = ub[j] * yb[k] + (sym2 ? yb[j] * ub[k] : 0);
                if (f32)
                    ((float *)p)[o + k] += (float)g;
                else
                    ((double *)p)[o + k] += g;
            }
        }
    }
}

ddn_status ddn_cpu_ied_vjp_e(ddn_tensor *dA, const ddn_tensor *A, const ddn_tensor *y,
                             const ddn_tensor *v, bool ift, const double *z,
                             ddn_ied_vjp_item *items)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_ied_vjp_e(dA, A, y, v, ift, z, items, &d);
    if (st != DDN_OK) return st;
    ddn_ctx *ctx = A->ctx;
    const int64_t B = d.batch, m = d.n;
    if (B == 0 || m == 0) return DDN_OK;
    const int nth = ddn_solver_threads(B);
    const size_t per = ddn_solver_align((size_t)ddn_iedb_ws_doubles(m) * sizeof(double)) +
                       ddn_solver_align((size_t)ddn_iedb_ws_ints(m) * sizeof(int));
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *yu = ddn_ctx_scratch(ctx, (size_t)(2 * B * m) * sizeof *yu); /* yd, then u */
    unsigned char *ws = ddn_ctx_scratch(ctx, per * (size_t)nth);
    if (!yu || !ws) return ddn_ctx_status(ctx);
    double *yd = yu, *u = yu + B * m;
    const bool f32 = A->dtype == DDN_DTYPE_F32;
    const void *Ap = ddn_tensor_ptr(A), *yp = ddn_tensor_ptr(y), *vp = ddn_tensor_ptr(v);

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1)
#endif
    for (int64_t b = 0; b < B; b++) {
        unsigned char *mine = ws + (size_t)ddn_solver_thread_id() * per;
        double *w = (double *)mine;
        int *piv = (int *)(mine + ddn_solver_align((size_t)ddn_iedb_ws_doubles(m) *
                                                   sizeof(double)));
        const ddn_blk blk = {0, 1};
        ddn_iedb_out o;
        if (f32)
            ddn_iedb_item_f32(&blk, ift, m, (const float *)Ap + b * m * m,
                              (const float *)yp + b * m, (const float *)vp + b * m, z, w, piv,
                              yd + b * m, u + b * m, &o);
        else
            ddn_iedb_item_f64(&blk, ift, m, (const double *)Ap + b * m * m,
                              (const double *)yp + b * m, (const double *)vp + b * m, z, w, piv,
                              yd + b * m, u + b * m, &o);
        items[b] = (ddn_ied_vjp_item){.code = o.code, .sweeps = o.sweeps, .rcond = o.rcond};
    }
    bool all_ok = true;
    for (int64_t b = 0; b < B; b++)
        all_ok &= items[b].code == DDN_IEDB_LU || items[b].code == DDN_IEDB_NEUMANN;
    if (all_ok && dA) add_low_rank(dA, !ift, B, m, u, yd);
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}
