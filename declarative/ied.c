/* ddn — the IED layer (ied.h): argument checks, the forward of the declarative modes (DDN_E/J,
 * IFT_E/J: ddn_ied_solve under ddn_declarative, tape paused, one node), the EIGH baseline forward
 * (LAPACK syevd), and the differentiable eigenvalue lambda = y^T A y built from ordinary ops
 * after the node, so that its gradient reaches A directly and through y (PMAF-MATH.md §6: the
 * reference code drops it). Backward: ied_backward.c; UNROLL: ied_unroll.c. Math: PMAF-MATH §2.
 * Tests: tests/test_ied.c.
 */
#include <math.h>
#include <string.h>

#include <lapacke.h>

#include "ddn_impl.h"
#include "ied_impl.h"
#include "ops.h"

ddn_status ddn_ied_accumulate_(ddn_ctx *ctx, ddn_tensor *t, const double *g)
{
    if (!t->requires_grad) return DDN_OK;
    ddn_tensor *g64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, t->ndim, t->shape, g);
    if (!g64) return ddn_ctx_status(ctx);
    ddn_tensor *gt = g64;
    if (t->dtype != DDN_DTYPE_F64) { /* gradients come out in the input's dtype */
        gt = ddn_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        if (!gt) return ddn_ctx_status(ctx);
        ddn_status st = ddn_tensor_copy_(gt, g64);
        if (st != DDN_OK) return st;
    }
    return ddn_grad_accumulate(ctx, t, gt, 1.0);
}

ddn_status ddn_ied_input_error_(ddn_ctx *ctx, const char *mode, int64_t b, int64_t B, int64_t m,
                                bool nonfinite)
{
    if (nonfinite)
        return ddn_ctx_set_error(ctx, DDN_ERR_NUMERIC, "ied (%s): item %lld of %lld (A %lldx%lld): "
                                 "A contains NaN or Inf", mode, (long long)b, (long long)B,
                                 (long long)m, (long long)m);
    return ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (%s): item %lld of %lld (A %lldx%lld): A "
                             "is zero: it has no principal eigenvector", mode, (long long)b,
                             (long long)B, (long long)m, (long long)m);
}

ddn_status ddn_ied_check_finite_nonzero_(ddn_ctx *ctx, const char *mode, int64_t B, int64_t m,
                                         const double *A)
{
    for (int64_t b = 0; b < B; b++) {
        bool nonzero = false;
        for (int64_t i = 0; i < m * m; i++) {
            double a = A[b * m * m + i];
            if (!isfinite(a)) return ddn_ied_input_error_(ctx, mode, b, B, m, true);
            nonzero |= a != 0;
        }
        if (!nonzero) return ddn_ied_input_error_(ctx, mode, b, B, m, false);
    }
    return DDN_OK;
}

/* The first item (or -1) whose A is not exactly symmetric; A host (B, m, m) of dtype dt. A NaN
 * is let through here so that the input check reports it as what it is (DDN_ERR_NUMERIC). */
static int64_t first_nonsymmetric(ddn_dtype dt, int64_t B, int64_t m, const void *A)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = i + 1; j < m; j++) {
                int64_t u = b * m * m + i * m + j, l = b * m * m + j * m + i;
                double x = dt == DDN_DTYPE_F32 ? ((const float *)A)[u] : ((const double *)A)[u];
                double z = dt == DDN_DTYPE_F32 ? ((const float *)A)[l] : ((const double *)A)[l];
                if (x != z && !isnan(x) && !isnan(z)) return b;
            }
    return -1;
}

ddn_status ddn_ied_refuse_nonsymmetric_(ddn_ctx *ctx, ddn_ied_backward mode, int64_t item,
                                       const ddn_tensor *A)
{
    char s[64];
    ddn_shape_str(A, s, sizeof s);
    if (mode == DDN_IED_BACKWARD_EIGH)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied: backward EIGH needs symmetric A (a "
                                 "symmetric eigensolver), but item %lld of A %s is not "
                                 "symmetric; use DDN_IED_BACKWARD_IFT_E (or IFT_J), valid for "
                                 "non-symmetric A", (long long)item, s);
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied: backward %s needs symmetric A, but item %lld "
                             "of A %s is not symmetric: DDN differentiates the top eigenvector of "
                             "(A + A^T)/2, which power iteration does not compute for "
                             "non-symmetric A; use DDN_IED_BACKWARD_IFT_E (or IFT_J), valid for "
                             "both", ddn_ied_mode_name_(mode), (long long)item, s);
}

/* A's elements as contiguous host memory of its dtype: the tensor's own memory when it is a
 * contiguous CPU tensor, else a copy in the step arena. */
static const void *host_view(ddn_ctx *ctx, const ddn_tensor *A)
{
    if (A->device == DDN_DEVICE_CPU && ddn_tensor_is_contiguous(A)) return ddn_tensor_ptr(A);
    void *buf = ddn_ctx_scratch(ctx, ddn_tensor_nbytes(A));
    if (!buf || ddn_tensor_to_host(A, A->dtype, buf) != DDN_OK) return NULL;
    return buf;
}

/* ---- DDN / IFT forward: the PI/SI solver, tape paused (ddn_declarative) ---------------------- */
/* DDN differentiates the declared problem, i.e. the top eigenvector of (A + A^T)/2; PI returns
 * A's own eigenvector. They agree only for symmetric A (PMAF-MATH §2). */
static bool needs_symmetric(ddn_ied_backward mode)
{
    return mode == DDN_IED_BACKWARD_DDN_E || mode == DDN_IED_BACKWARD_DDN_J;
}

/* The LAPACK / BLAS solver (ied_solver.c) on host memory: A's own (a contiguous CPU tensor) or
 * a host copy. */
static ddn_status solve_on_host(ddn_ctx *ctx, const ied_node_opts *no, const ddn_tensor *A,
                                ddn_tensor *y, ddn_ied_info *inf)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    const void *Ah = host_view(ctx, A);
    void *yh = y->device == DDN_DEVICE_CPU ? ddn_tensor_ptr(y)
                                           : ddn_ctx_scratch(ctx, ddn_tensor_nbytes(y));
    if (!Ah || !yh) return ddn_ctx_status(ctx);
    ddn_status st = DDN_OK;
    if (needs_symmetric(no->mode)) {
        int64_t bad = first_nonsymmetric(A->dtype, B, m, Ah);
        if (bad >= 0) st = ddn_ied_refuse_nonsymmetric_(ctx, no->mode, bad, A);
    }
    if (st == DDN_OK) {
        ddn_ied_out out = {.y = yh, .info = inf};
        st = ddn_ied_solve(ctx, A->dtype, B, m, Ah, &no->o, &out);
    }
    if (st == DDN_OK && y->device != DDN_DEVICE_CPU) { /* y <- the host answer */
        ddn_tensor *h = ddn_tensor_from_host(ctx, y->dtype, y->ndim, y->shape, yh);
        st = h ? ddn_tensor_copy_(y, h) : ddn_ctx_status(ctx);
    }
    return st;
}

/* Where A lives: PI (and SI with one column, the same iteration) through the backend's
 * ied_power kernel (ied_power.c), SI through batched products and QR (ied_si_device.c). The
 * symmetry the DDN modes need comes back in the diagnostics, and its refusal comes first, as on
 * the host. */
static ddn_status solve_on_device(ddn_ctx *ctx, const ied_node_opts *no, const ddn_tensor *A,
                                  ddn_tensor *y, ddn_ied_info *inf)
{
    ddn_status st = no->o.method == DDN_IED_PI || no->o.k == 1
                        ? ddn_ied_power_solve(ctx, A, &no->o, y, inf)
                        : ddn_ied_si_solve(ctx, A, &no->o, y, inf);
    if (needs_symmetric(no->mode))
        for (int64_t b = 0; b < A->shape[0]; b++)
            if (!inf[b].symmetric) return ddn_ied_refuse_nonsymmetric_(ctx, no->mode, b, A);
    return st;
}

static ddn_status ied_solve(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in, ddn_tensor *y,
                            ddn_decl_info *info, void **saved)
{
    const ied_node_opts *no = opts;
    const ddn_tensor *A = in[0];
    const int64_t B = A->shape[0];
    ied_saved *sv = ddn_ctx_scratch(ctx, sizeof *sv);
    unsigned char *tied = ddn_ctx_scratch(ctx, (size_t)(B ? B : 1));
    if (!sv || !tied) return ddn_ctx_status(ctx);
    *sv = (ied_saved){.tied = tied};

    ddn_mark mark = ddn_ctx_mark(ctx); /* temporaries below die before returning */
    ddn_ied_info *inf = ddn_ctx_scratch(ctx, (size_t)(B ? B : 1) * sizeof *inf);
    if (!inf) return ddn_ctx_status(ctx);
    ddn_status st = ddn_device_path(ctx, A->device) ? solve_on_device(ctx, no, A, y, inf)
                                                    : solve_on_host(ctx, no, A, y, inf);
    if (st == DDN_OK) {
        int64_t *it = ddn_tensor_ptr(info->iterations), *cv = ddn_tensor_ptr(info->converged);
        double *fpd = ddn_tensor_ptr(info->fpd);
        for (int64_t b = 0; b < B; b++) {
            it[b] = inf[b].iterations;
            cv[b] = inf[b].converged;
            fpd[b] = inf[b].fpd;
            tied[b] = inf[b].tied;
        }
    }
    ddn_ctx_rewind(ctx, mark);
    if (st == DDN_OK) *saved = sv;
    return st;
}

static const ddn_decl_vtbl ied_vtbl = {.name = "ied", .solve = ied_solve, .vjp = ddn_ied_vjp_};

/* ---- EIGH baseline forward: LAPACK syevd in the input's precision --------------------------- */
static ddn_status eigh_solve(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in, ddn_tensor *y,
                             ddn_decl_info *info, void **saved)
{
    const ddn_ied_opts *o = &((const ied_node_opts *)opts)->o;
    const ddn_tensor *A = in[0];
    if (ddn_device_path(ctx, A->device))
        return ddn_ied_eigh_solve_device_(ctx, o, A, y, info, saved);
    const int64_t B = A->shape[0], m = A->shape[1];
    const bool f32 = A->dtype == DDN_DTYPE_F32;
    ied_saved *sv = ddn_ctx_scratch(ctx, sizeof *sv);
    double *V = ddn_ctx_scratch(ctx, (size_t)(B * m * m + B * m + B + 1) * sizeof *V);
    int64_t *idx = ddn_ctx_scratch(ctx, (size_t)(B ? B : 1) * sizeof *idx);
    if (!sv || !V || !idx) return ddn_ctx_status(ctx);
    *sv = (ied_saved){.V = V, .w = V + B * m * m, .idx = idx};
    sv->sign = sv->w + B * m;

    ddn_mark mark = ddn_ctx_mark(ctx);
    double *Ad = ddn_ctx_scratch(ctx, (size_t)(B * m * m + B * m + m) * sizeof *Ad);
    float *work = f32 ? ddn_ctx_scratch(ctx, (size_t)(m * m + m) * sizeof *work) : NULL;
    if (!Ad || (f32 && !work)) return ddn_ctx_status(ctx);
    double *yd = Ad + B * m * m, *ay = yd + B * m;
    ddn_status st = ddn_tensor_to_host(A, DDN_DTYPE_F64, Ad); /* exact for float32 too */
    int64_t bad = st == DDN_OK ? first_nonsymmetric(DDN_DTYPE_F64, B, m, Ad) : -1;
    if (bad >= 0) st = ddn_ied_refuse_nonsymmetric_(ctx, DDN_IED_BACKWARD_EIGH, bad, A);
    if (st == DDN_OK) st = ddn_ied_check_finite_nonzero_(ctx, "EIGH", B, m, Ad);
    int64_t *it = ddn_tensor_ptr(info->iterations), *cv = ddn_tensor_ptr(info->converged);
    double *fpd = ddn_tensor_ptr(info->fpd);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        double *Vb = V + b * m * m, *wb = sv->w + b * m;
        lapack_int li;
        if (f32) { /* float32 in, float32 eigensolver (as torch.linalg.eigh would) */
            float *Z = work, *wf = Z + m * m;
            for (int64_t i = 0; i < m * m; i++) Z[i] = (float)Ad[b * m * m + i];
            li = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)m, Z, (lapack_int)m, wf);
            for (int64_t i = 0; i < m * m; i++) Vb[i] = Z[i];
            for (int64_t i = 0; i < m; i++) wb[i] = wf[i];
        } else {
            memcpy(Vb, Ad + b * m * m, (size_t)(m * m) * sizeof *Vb);
            li = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)m, Vb, (lapack_int)m, wb);
        }
        if (li != 0) {
            st = ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "ied (EIGH): item %lld of %lld (A "
                                   "%lldx%lld, %s): LAPACK syevd returned info %d%s",
                                   (long long)b, (long long)B, (long long)m, (long long)m,
                                   ddn_dtype_name(A->dtype), (int)li,
                                   li > 0 ? " (did not converge)" : "");
            break;
        }
        int64_t p = ddn_ied_eigh_pick_(m, wb, o->shift);
        /* The solver's hard-coded reference sign (Eq. 17), always applied here: syevd's sign is
         * arbitrary. Reference r = o->ref (of the dtype) or all ones; a zero dot keeps +. */
        double d = 0;
        for (int64_t i = 0; i < m; i++) {
            double r = !o->ref ? 1 : f32 ? ((const float *)o->ref)[i] : ((const double *)o->ref)[i];
            d += Vb[i * m + p] * r;
        }
        double s = d < 0 ? -1 : 1;
        idx[b] = p;
        sv->sign[b] = s;
        for (int64_t i = 0; i < m; i++) yd[b * m + i] = s * Vb[i * m + p];
        /* Diagnostics (Eq. 42), float64 on the returned y (rounded to the dtype). */
        double nay = 0, f = 0;
        for (int64_t i = 0; i < m; i++) {
            if (f32) yd[b * m + i] = (float)yd[b * m + i];
            double acc = 0;
            for (int64_t j = 0; j < m; j++) acc += Ad[b * m * m + i * m + j] * yd[b * m + j];
            ay[i] = acc;
            nay += acc * acc;
        }
        nay = sqrt(nay);
        for (int64_t i = 0; i < m; i++) {
            double e = yd[b * m + i] - (nay > 0 ? ay[i] / nay : 0);
            f += e * e;
        }
        it[b] = 0; /* a direct method: no iteration count of its own */
        cv[b] = 1;
        fpd[b] = sqrt(f);
    }
    if (st == DDN_OK) {
        ddn_tensor *yt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 2, y->shape, yd);
        st = yt ? ddn_tensor_copy_(y, yt) : ddn_ctx_status(ctx);
    }
    ddn_ctx_rewind(ctx, mark);
    if (st == DDN_OK) *saved = sv;
    return st;
}

static const ddn_decl_vtbl ied_eigh_vtbl = {
    .name = "ied", .solve = eigh_solve, .vjp = ddn_ied_eigh_vjp_};

/* ---- lambda = y^T A y, batched, with ordinary differentiable ops ----------------------------- */
static ddn_tensor *ied_lambda(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *y)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    ddn_tensor *y3 = ddn_reshape(ctx, y, DDN_SHAPE(B, m, 1));
    ddn_tensor *ay = ddn_matmul(ctx, A, y3);
    return ddn_sum(ctx, ddn_mul(ctx, y3, ay), 2, (const int[]){1, 2}, false);
}

/* ---- the public entry point ------------------------------------------------------------------ */
ddn_tensor *ddn_ied(ddn_ctx *ctx, ddn_tensor *A, const ddn_ied_opts *opts,
                    ddn_ied_backward backward, ddn_tensor **lambda, ddn_decl_info *info)
{
    if (lambda) *lambda = NULL;
    if (!ctx || !A) return NULL;
    char s[64];
    if (!ddn_check_float(ctx, "ied", A)) return NULL;
    if (A->ndim != 3 || A->shape[1] != A->shape[2] || A->shape[1] < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "ied: A %s: expected a batch of square matrices "
                          "(B, m, m) with m >= 1", ddn_shape_str(A, s, sizeof s));
        return NULL;
    }
    if ((int)backward < DDN_IED_BACKWARD_DDN_E || (int)backward > DDN_IED_BACKWARD_EIGH) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied: backward mode %d is not a ddn_ied_backward "
                          "(DDN_E, DDN_J, IFT_E, IFT_J, UNROLL or EIGH)", (int)backward);
        return NULL;
    }
    const int64_t B = A->shape[0], m = A->shape[1];
    ied_node_opts no = {.o = opts ? *opts : DDN_IED_OPTS_DEFAULT, .mode = backward};
    /* Option checks: the solver validates everything before it looks at a batch of 0 items, so
     * UNROLL and EIGH (which do not call it) get the same rules and messages. */
    double dummy = 0;
    ddn_ied_out none = {.y = &dummy};
    if (ddn_ied_solve(ctx, A->dtype, 0, m, &dummy, &no.o, &none) != DDN_OK) return NULL;
    if (no.o.method == DDN_IED_PI) no.o.k = 1;

    ddn_tensor *y;
    if (backward == DDN_IED_BACKWARD_UNROLL) {
        y = ddn_ied_unroll_(ctx, A, &no.o, info);
    } else {
        const ddn_decl_vtbl *vt = backward == DDN_IED_BACKWARD_EIGH ? &ied_eigh_vtbl : &ied_vtbl;
        ddn_tensor *in[1] = {A};
        y = ddn_declarative(ctx, vt, &no, sizeof no, 1, in, 2, (const int64_t[]){B, m}, info);
    }
    if (!y || !lambda) return y;
    *lambda = ied_lambda(ctx, A, y);
    return *lambda ? y : NULL;
}
