/* ddn — IED's simultaneous iteration (SI, k >= 2 columns) where A lives: batched products and the
 * backend's thin QR (cuSOLVER geqrf + orgqr on CUDA), the rules of ied_solver_tmpl.h's ied_item.
 *
 * All items iterate together: Z = (A + sigma I) Q for the batch, Q' = qr(Z), every column's sign
 * aligned with the previous iterate (Eq. 16), the step measured on the first column; an item that
 * converges, fails or runs out of iterations is frozen (its Q no longer changes) while the others
 * go on, so each ends exactly where the per-item loop would. What crosses to the host each
 * iteration is O(B k): the first columns' norms, the column dots for the signs, the steps.
 * The input checks, the diagnostics and the gap check are the power kernel's
 * (ddn_ied_power_check, ddn_ied_power_diagnose). Q is row-major (B, m, k), where the CPU solver
 * keeps column-major (m, k) per item: the seeded starts are drawn in its order and transposed.
 *
 * One difference from the CPU solver: the first column's norm is a plain sum of squares, which for
 * float64 entries beyond ~1e154 overflows where BLAS nrm2 would not (reported as an overflow).
 * Tests: tests/test_ied_power.c (this code on the CPU backend against ddn_ied_solve) and
 * tests/test_cuda_declarative.c.
 */
#include <math.h>
#include <string.h>

#include "ddn_impl.h"
#include "ied_impl.h"
#include "ops.h"

typedef struct si_run {
    ddn_ctx *ctx;
    ddn_dtype dt;
    int64_t B, m, k;
    double *hb;   /* host scratch: max(B k, B m k) doubles */
} si_run;

/* Host doubles of `shape` as a tensor of the run's dtype in ctx. */
static ddn_tensor *upload(const si_run *r, int ndim, const int64_t *shape, const double *v)
{
    ddn_tensor *t64 = ddn_tensor_from_host(r->ctx, DDN_DTYPE_F64, ndim, shape, v);
    ddn_tensor *t = t64 ? ddn_tensor_new(r->ctx, r->dt, ndim, shape) : NULL;
    return t && ddn_tensor_copy_(t, t64) == DDN_OK ? t : NULL;
}

/* Column j of X (B, m, k) contiguous: a (B, m) view. */
static ddn_tensor *column(const si_run *r, ddn_tensor *X, int64_t j)
{
    return ddn_view_raw(r->ctx, X, 2, (const int64_t[]){r->B, r->m},
                        (const int64_t[]){r->m * r->k, r->k}, X->offset + j);
}

/* Item b of X (B, r, c) contiguous: a (1, r, c) view. */
static ddn_tensor *item_view(const si_run *r, ddn_tensor *X, int64_t b)
{
    const int64_t rows = X->shape[1], cols = X->shape[2];
    return ddn_view_raw(r->ctx, X, 3, (const int64_t[]){1, rows, cols}, X->stride,
                        X->offset + b * rows * cols);
}

/* out (host) = sum over dim 1 of x * y: (B, m) -> B values, (B, m, k) -> B k values. */
static ddn_status dots(const si_run *r, ddn_tensor *x, ddn_tensor *y, double *out)
{
    ddn_tensor *s = ddn_sum(r->ctx, ddn_mul(r->ctx, x, y), 1, (const int[]){1}, false);
    return s ? ddn_tensor_to_host(s, DDN_DTYPE_F64, out) : ddn_ctx_status(r->ctx);
}

/* X (B, m, k) <- X * S, S (B, 1, k) from host signs. */
static ddn_status scale_columns(const si_run *r, ddn_tensor *X, const double *s)
{
    ddn_tensor *S = upload(r, 3, (const int64_t[]){r->B, 1, r->k}, s);
    ddn_tensor *p = S ? ddn_mul(r->ctx, X, S) : NULL;
    return p ? ddn_tensor_copy_(X, p) : ddn_ctx_status(r->ctx);
}

/* Item b's start: the first m k N(0,1) draws of its seeded rng, which ied_start takes
 * (column-major) for a random start or the restart, into host (m, k) row-major; or
 * [ones, e_1, ..., e_{k-1}]. */
static void start_values(const si_run *r, const ddn_ied_opts *o, int64_t b, bool random,
                         double *out)
{
    const int64_t m = r->m, k = r->k;
    if (random) {
        ddn_rng g;
        ddn_rng_seed(&g, o->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(b + 1)));
        for (int64_t j = 0; j < k; j++)
            for (int64_t i = 0; i < m; i++) {
                double v = ddn_rng_normal(&g);
                out[i * k + j] = r->dt == DDN_DTYPE_F32 ? (double)(float)v : v;
            }
        return;
    }
    memset(out, 0, (size_t)(m * k) * sizeof *out);
    for (int64_t i = 0; i < m; i++) out[i * k] = 1;
    for (int64_t j = 1; j < k; j++) out[(j - 1) * k + j] = 1;
}

/* Q[items in mask] <- qr of their starts, the first column on the ones side (ied_start). Q
 * (B, m, k) contiguous. */
static ddn_status set_starts(const si_run *r, const ddn_ied_opts *o, ddn_tensor *Q,
                             const bool *mask, bool random)
{
    const int64_t B = r->B, m = r->m, k = r->k, shape[3] = {B, m, k};
    ddn_mark mark = ddn_ctx_mark(r->ctx);
    double *h = ddn_ctx_scratch(r->ctx, (size_t)(B * m * k + 2 * B * k) * sizeof *h);
    if (!h) return ddn_ctx_status(r->ctx);
    double *col = h + B * m * k, *s = col + B * k;
    for (int64_t b = 0; b < B; b++) start_values(r, o, b, random, h + b * m * k);
    ddn_tensor *Z = upload(r, 3, shape, h), *Qn = ddn_tensor_new(r->ctx, r->dt, 3, shape);
    ddn_status st = Z && Qn ? r->ctx->kernels.qr(Qn, Z) : ddn_ctx_status(r->ctx);
    ddn_tensor *ones = st == DDN_OK ? ddn_full(r->ctx, r->dt, 2, (const int64_t[]){B, m}, 1) : NULL;
    if (st == DDN_OK) st = ones ? dots(r, column(r, Qn, 0), ones, col) : ddn_ctx_status(r->ctx);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < k; j++) s[b * k + j] = j == 0 && col[b] < 0 ? -1 : 1;
    if (st == DDN_OK) st = scale_columns(r, Qn, s);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        if (!mask[b]) continue;
        st = ddn_tensor_copy_(item_view(r, Q, b), item_view(r, Qn, b));
    }
    ddn_ctx_rewind(r->ctx, mark);
    return st;
}

/* A failed item stays in the batch, frozen; its frozen Q is kept by arithmetic (Q + 0 (Q' - Q)),
 * which a NaN or Inf would spoil (0 * NaN), and a QR of it would fail. So once it fails, its A
 * (the solver's own copy), Q and this iteration's Z (when given) become finite stand-ins: I and
 * the ones start. Its answer is never read. */
static ddn_status neutralize(const si_run *r, ddn_tensor *A, ddn_tensor *Q, ddn_tensor *Z,
                             int64_t b)
{
    const int64_t m = r->m, k = r->k;
    ddn_mark mark = ddn_ctx_mark(r->ctx);
    double *h = ddn_ctx_scratch(r->ctx, (size_t)(m * m + m * k) * sizeof *h);
    if (!h) return ddn_ctx_status(r->ctx);
    for (int64_t i = 0; i < m * m; i++) h[i] = i % (m + 1) == 0;
    start_values(r, NULL, b, false, h + m * m);
    ddn_tensor *I = upload(r, 3, (const int64_t[]){1, m, m}, h);
    ddn_tensor *S = upload(r, 3, (const int64_t[]){1, m, k}, h + m * m);
    ddn_status st = I && S ? ddn_tensor_copy_(item_view(r, A, b), I) : ddn_ctx_status(r->ctx);
    if (st == DDN_OK) st = ddn_tensor_copy_(item_view(r, Q, b), S);
    if (st == DDN_OK && Z) st = ddn_tensor_copy_(item_view(r, Z, b), S);
    ddn_ctx_rewind(r->ctx, mark);
    return st;
}

/* One iteration for the items with upd[b]: Q <- the aligned QR of (A + sigma I) Q; step[b]. The
 * others' Q stays. Z's first-column norms come back in nz (checked by the caller first: this is
 * called with upd cleared for items whose norm is zero or not finite). */
static ddn_status si_step(const si_run *r, const ddn_ied_opts *o, ddn_tensor *Q, ddn_tensor *Z,
                          const double *upd, double *step)
{
    ddn_ctx *ctx = r->ctx;
    const int64_t B = r->B, k = r->k;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *U = upload(r, 3, (const int64_t[]){B, 1, 1}, upd);
    /* frozen items' Z is their Q, so that the QR below sees a well-conditioned input */
    ddn_tensor *Zb = U ? ddn_add(ctx, Q, ddn_mul(ctx, U, ddn_sub(ctx, Z, Q))) : NULL;
    ddn_tensor *Qn = Zb ? ddn_tensor_new(ctx, r->dt, 3, Q->shape) : NULL;
    ddn_status st = Qn ? ctx->kernels.qr(Qn, Zb) : ddn_ctx_status(ctx);
    double *d = r->hb, *s = d + B * k, *s1 = s + B * k;
    if (st == DDN_OK) st = dots(r, Qn, Q, d);
    for (int64_t b = 0; b < B; b++) /* Eq. 16, column by column; s1: the first column's sign */
        for (int64_t j = 0; j < k; j++) {
            const bool neg = d[b * k + j] < 0, flip = neg && (o->sign & DDN_IED_SIGN_HISTORICAL);
            s[b * k + j] = flip ? -1 : 1;
            if (j == 0) s1[b] = neg && !flip ? -1 : 1;
        }
    if (st == DDN_OK) st = scale_columns(r, Qn, s);
    ddn_tensor *S1 = st == DDN_OK ? upload(r, 2, (const int64_t[]){B, 1}, s1) : NULL;
    ddn_tensor *diff = S1 ? ddn_sub(ctx, column(r, Qn, 0), ddn_mul(ctx, S1, column(r, Q, 0)))
                          : NULL;
    if (st == DDN_OK) st = diff ? dots(r, diff, diff, step) : ddn_ctx_status(ctx);
    for (int64_t b = 0; b < B; b++) step[b] = sqrt(step[b]);
    ddn_tensor *Qu = st == DDN_OK ? ddn_add(ctx, Q, ddn_mul(ctx, U, ddn_sub(ctx, Qn, Q))) : NULL;
    if (st == DDN_OK) st = Qu ? ddn_tensor_copy_(Q, Qu) : ddn_ctx_status(ctx);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_ied_si_solve(ddn_ctx *ctx, const ddn_tensor *A_in, const ddn_ied_opts *o,
                            ddn_tensor *y, ddn_ied_info *info)
{
    const int64_t B = A_in->shape[0], m = A_in->shape[1], k = o->k;
    const ddn_dtype dt = A_in->dtype;
    if (B == 0) return DDN_OK;
    const double tol = o->tol > 0                ? o->tol
                       : dt == DDN_DTYPE_F32 ? DDN_IED_TOL_F32
                                             : DDN_IED_TOL_F64;
    const double tol_t = dt == DDN_DTYPE_F32 ? (double)(float)tol : tol; /* compared in T */
    ddn_mark mark = ddn_ctx_mark(ctx);
    si_run r = {.ctx = ctx, .dt = dt, .B = B, .m = m, .k = k};
    ddn_ied_power_err *err = ddn_ctx_scratch(ctx, (size_t)B * sizeof *err);
    ddn_ied_info *chk = ddn_ctx_scratch(ctx, (size_t)B * sizeof *chk);
    double *hv = ddn_ctx_scratch(ctx, (size_t)(3 * B * k + 6 * B) * sizeof *hv);
    bool *frozen = ddn_ctx_scratch(ctx, (size_t)(3 * B) * sizeof *frozen);
    int64_t *it = ddn_ctx_scratch(ctx, (size_t)B * sizeof *it);
    /* the solver's own copy of A: a failed item's is replaced (neutralize) */
    ddn_tensor *A = ddn_tensor_new(ctx, dt, 3, A_in->shape);
    ddn_tensor *Q = ddn_tensor_new(ctx, dt, 3, (const int64_t[]){B, m, k});
    ddn_status st = !err || !chk || !hv || !frozen || !it || !A || !Q ? ddn_ctx_status(ctx)
                                                                       : ddn_tensor_copy_(A, A_in);
    if (st != DDN_OK) {
        ddn_ctx_rewind(ctx, mark);
        return st;
    }
    r.hb = hv;
    double *nz = hv + 3 * B * k, *upd = nz + B, *step = upd + B, *sig = step + B;
    /* frozen: no longer iterated; restarted: its one restart used; restart: restart it now */
    bool *restarted = frozen + B, *restart = restarted + B;
    st = ddn_ied_power_check(ctx, A, o->shift, chk, err);
    for (int64_t b = 0; b < B; b++) {
        frozen[b] = err[b].code != DDN_IED_POWER_OK || o->max_iter < 1;
        restarted[b] = o->random_init;
        it[b] = 0;
        step[b] = 0;
        sig[b] = chk[b].shift;
        info[b] = (ddn_ied_info){0};
    }
    if (st == DDN_OK) {
        for (int64_t b = 0; b < B; b++) restart[b] = true;
        st = set_starts(&r, o, Q, restart, o->random_init);
    }
    for (int64_t b = 0; b < B && st == DDN_OK; b++)
        if (err[b].code != DDN_IED_POWER_OK) st = neutralize(&r, A, Q, NULL, b);
    ddn_tensor *S = NULL; /* the shifts (B, 1, 1) */
    if (st == DDN_OK && o->shift) S = upload(&r, 3, (const int64_t[]){B, 1, 1}, sig);
    if (st == DDN_OK && o->shift && !S) st = ddn_ctx_status(ctx);
    while (st == DDN_OK) {
        bool any = false;
        for (int64_t b = 0; b < B; b++) any |= !frozen[b];
        if (!any) break;
        ddn_mark im = ddn_ctx_mark(ctx);
        ddn_tensor *Z = ddn_matmul(ctx, A, Q);
        if (Z && S) Z = ddn_add(ctx, Z, ddn_mul(ctx, S, Q));
        if (!Z || (st = dots(&r, column(&r, Z, 0), column(&r, Z, 0), nz)) != DDN_OK) {
            if (st == DDN_OK) st = ddn_ctx_status(ctx);
            break;
        }
        bool any_restart = false;
        for (int64_t b = 0; b < B; b++) {
            const double n = sqrt(nz[b]);
            upd[b] = 0;
            restart[b] = false;
            if (frozen[b]) continue;
            if (!isfinite(n)) {
                err[b] = (ddn_ied_power_err){DDN_IED_POWER_OVERFLOW, it[b] + 1, n};
            } else if (n == 0) { /* the start in the null space: one seeded random restart */
                if (restarted[b]) {
                    err[b] = (ddn_ied_power_err){DDN_IED_POWER_NILPOTENT, it[b] + 1, 0};
                } else {
                    any_restart = restart[b] = true;
                }
            } else {
                upd[b] = 1;
            }
            if (err[b].code != DDN_IED_POWER_OK) {
                frozen[b] = true;
                if ((st = neutralize(&r, A, Q, Z, b)) != DDN_OK) break;
            }
        }
        if (st != DDN_OK) break;
        st = si_step(&r, o, Q, Z, upd, step);
        if (st == DDN_OK && any_restart) {
            st = set_starts(&r, o, Q, restart, true);
            for (int64_t b = 0; b < B; b++) restarted[b] |= restart[b];
        }
        for (int64_t b = 0; b < B; b++) {
            if (upd[b] == 0) continue;
            it[b]++;
            info[b].step = step[b];
            if ((dt == DDN_DTYPE_F32 ? (double)(float)step[b] : step[b]) <= tol_t) {
                info[b].converged = true;
                frozen[b] = true;
            } else if (it[b] >= o->max_iter) {
                frozen[b] = true;
            }
        }
        ddn_ctx_rewind(ctx, im);
    }
    /* the reference sign of the first column (Eq. 17; a zero dot keeps it), y, the diagnostics */
    if (st == DDN_OK) {
        ddn_tensor *ref = NULL;
        if (o->ref) {
            double *rh = ddn_ctx_scratch(ctx, (size_t)m * sizeof *rh);
            for (int64_t i = 0; rh && i < m; i++)
                rh[i] = dt == DDN_DTYPE_F32 ? ((const float *)o->ref)[i]
                                            : ((const double *)o->ref)[i];
            ref = rh ? upload(&r, 2, (const int64_t[]){1, m}, rh) : NULL;
        } else {
            ref = ddn_full(ctx, dt, 2, (const int64_t[]){1, m}, 1);
        }
        double *d = nz;
        st = ref ? dots(&r, column(&r, Q, 0), ref, d) : ddn_ctx_status(ctx);
        for (int64_t b = 0; b < B; b++)
            sig[b] = (o->sign & DDN_IED_SIGN_REFERENCE) && d[b] < 0 ? -1 : 1;
        ddn_tensor *sg = st == DDN_OK ? upload(&r, 2, (const int64_t[]){B, 1}, sig) : NULL;
        ddn_tensor *yv = sg ? ddn_mul(ctx, sg, column(&r, Q, 0)) : NULL;
        if (st == DDN_OK) st = yv ? ddn_tensor_copy_(y, yv) : ddn_ctx_status(ctx);
    }
    ddn_ied_info *dg = st == DDN_OK ? ddn_ctx_scratch(ctx, (size_t)B * sizeof *dg) : NULL;
    ddn_ied_power_err *derr = dg ? ddn_ctx_scratch(ctx, (size_t)B * sizeof *derr) : NULL;
    if (st == DDN_OK && !derr) st = ddn_ctx_status(ctx);
    if (st == DDN_OK) st = ddn_ied_power_diagnose(ctx, A, o, y, dg, derr);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        if (err[b].code != DDN_IED_POWER_OK) continue;
        const bool conv = info[b].converged;
        const double stp = info[b].step;
        info[b] = dg[b];
        info[b].iterations = it[b];
        info[b].converged = conv;
        info[b].step = stp;
        info[b].symmetric = chk[b].symmetric;
    }
    if (st == DDN_OK) st = ddn_ied_power_report(ctx, A_in, o, tol, info, err);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
