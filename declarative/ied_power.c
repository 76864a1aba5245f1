/* ddn — IED's power iteration on tensors of any backend (ied_power.h): the host driver that
 * prepares a launch and reports its failures as the CPU solver does, and the CPU instance of the
 * block code (one thread per item), registered as the CPU backend's ied_power kernel.
 *
 * ied.c calls the driver for A on a device; on the CPU, ddn_ied_solve (LAPACK / BLAS, threads
 * over items) stays the forward, and this instance is the reference the tests hold the block
 * algorithm to (tests/test_ied_power.c), so that what runs on the GPU is checked on machines
 * without one.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "ddn_impl.h"
#include "ied_power.h"
#include "ied_ritz.h"
#include "ied_solver.h"
#include "ops.h"

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "ied_power_blk.h"
#undef T
#undef TS

#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "ied_power_blk.h"
#undef T
#undef TS

ddn_status ddn_cpu_ied_power(ddn_tensor *y, const ddn_tensor *a, const ddn_tensor *rnd,
                             const ddn_tensor *ref, const ddn_tensor *gstart,
                             const ddn_ied_power_params *p, ddn_ied_info *info,
                             ddn_ied_power_err *err)
{
    ddn_ctx *ctx = y->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *scratch = ddn_ctx_scratch(ctx, p->scratch);
    if (!scratch) return ddn_ctx_status(ctx);
    const ddn_blk b = {0, 1};
    const int64_t m = p->m;
    for (int64_t i = 0; i < p->B; i++) {
        if (y->dtype == DDN_DTYPE_F32) {
            const float *A = ddn_tensor_ptr(a), *r = ddn_tensor_ptr(rnd);
            ied_power_item_f32(&b, p, A + i * m * m, r + i * m,
                               ref ? (const float *)ddn_tensor_ptr(ref) : NULL,
                               ddn_tensor_ptr(gstart), (float *)ddn_tensor_ptr(y) + i * m,
                               &info[i], &err[i], scratch);
        } else {
            const double *A = ddn_tensor_ptr(a), *r = ddn_tensor_ptr(rnd);
            ied_power_item_f64(&b, p, A + i * m * m, r + i * m,
                               ref ? (const double *)ddn_tensor_ptr(ref) : NULL,
                               ddn_tensor_ptr(gstart), (double *)ddn_tensor_ptr(y) + i * m,
                               &info[i], &err[i], scratch);
        }
    }
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}

/* (n) N(0,1) draws of the dtype from g. */
static void fill_normal(ddn_rng *g, ddn_dtype dt, int64_t n, void *out)
{
    for (int64_t i = 0; i < n; i++) {
        double r = ddn_rng_normal(g);
        if (dt == DDN_DTYPE_F32) ((float *)out)[i] = (float)r;
        else ((double *)out)[i] = r;
    }
}

/* The message of an item's failure, as ied_solver_tmpl.h's ied_item words it. */
static void err_text(const ddn_ied_power_err *e, char *buf, size_t n)
{
    switch (e->code) {
    case DDN_IED_POWER_NONFINITE: snprintf(buf, n, "A contains NaN or Inf"); break;
    case DDN_IED_POWER_ZERO: snprintf(buf, n, "A is zero: it has no principal eigenvector"); break;
    case DDN_IED_POWER_OVERFLOW:
        snprintf(buf, n, "iteration %lld overflowed (||A u|| = %g)", (long long)e->it, e->value);
        break;
    default:
        snprintf(buf, n, "A u = 0 at iteration %lld: no dominant eigenvalue (nilpotent A?)",
                 (long long)e->it);
    }
}

/* One launch of the backend's ied_power kernel on A with parameters p: makes the host inputs
 * (each item's seeded N(0,1) vector, which ied_item draws its random start, or its restart, from
 * first, unless starts (B, m) are given; the gap check's fixed start). */
static ddn_status launch(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                         ddn_ied_power_params *p, ddn_tensor *starts, ddn_tensor *y,
                         ddn_ied_info *info, ddn_ied_power_err *err)
{
    const ddn_dtype dt = A->dtype;
    const int64_t B = p->B, m = p->m;
    const size_t ts = ddn_dtype_size(dt);
    p->scratch = ddn_ied_power_scratch(m, p->kgap, ts);
    void *h = ddn_ctx_scratch(ctx, (size_t)(B * m + m) * ts);
    if (!h) return ddn_ctx_status(ctx);
    for (int64_t i = 0; i < B; i++) {
        ddn_rng g;
        ddn_rng_seed(&g, o->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)));
        fill_normal(&g, dt, m, (char *)h + (size_t)(i * m) * ts);
    }
    ddn_rng g;
    ddn_rng_seed(&g, 0x5DEECE66DULL);
    fill_normal(&g, dt, m, (char *)h + (size_t)(B * m) * ts);

    ddn_tensor *rnd = starts ? starts
                             : ddn_tensor_from_host(ctx, dt, 2, (const int64_t[]){B, m}, h);
    ddn_tensor *gstart = ddn_tensor_from_host(ctx, dt, 1, &m, (char *)h + (size_t)(B * m) * ts);
    ddn_tensor *ref = o->ref ? ddn_tensor_from_host(ctx, dt, 1, &m, o->ref) : NULL;
    ddn_tensor *a = ddn_contiguous(ctx, (ddn_tensor *)A);
    if (!rnd || !gstart || (o->ref && !ref) || !a) return ddn_ctx_status(ctx);
    return ctx->kernels.ied_power(y, a, rnd, ref, gstart, p, info, err);
}

ddn_status ddn_ied_power_report(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                                double tol, const ddn_ied_info *info,
                                const ddn_ied_power_err *err)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    const char *meth = o->method == DDN_IED_SI ? "SI" : "PI";
    int64_t fail = -1, nc = -1;
    for (int64_t i = 0; i < B && fail < 0; i++) {
        if (err[i].code != DDN_IED_POWER_OK) fail = i;
        else if (!info[i].converged && nc < 0) nc = i;
    }
    if (fail >= 0) {
        char msg[160];
        err_text(&err[fail], msg, sizeof msg);
        ddn_status code = err[fail].code == DDN_IED_POWER_ZERO ||
                                  err[fail].code == DDN_IED_POWER_NILPOTENT
                              ? DDN_ERR_SINGULAR
                              : DDN_ERR_NUMERIC;
        return ddn_ctx_set_error(ctx, code, "ied_solve: item %lld of %lld (A %lldx%lld, %s, %s): "
                                 "%s", (long long)fail, (long long)B, (long long)m, (long long)m,
                                 ddn_dtype_name(A->dtype), meth, msg);
    }
    if (o->strict && nc >= 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_NOT_CONVERGED,
                                 "ied_solve: item %lld of %lld (A %lldx%lld, %s): %s did not "
                                 "converge in %lld iterations (last step %.3g, tol %g)",
                                 (long long)nc, (long long)B, (long long)m, (long long)m,
                                 ddn_dtype_name(A->dtype), meth, (long long)o->max_iter,
                                 info[nc].step, tol);
    return DDN_OK;
}

ddn_status ddn_ied_power_solve(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                               ddn_tensor *y, ddn_ied_info *info)
{
    const ddn_dtype dt = A->dtype;
    const int64_t B = A->shape[0], m = A->shape[1];
    if (B == 0) return DDN_OK;
    ddn_ied_power_params p = {
        .B = B, .m = m, .max_iter = o->max_iter,
        .kgap = !o->check_gap || m < 2 ? 0 : m - 1 < DDN_IED_GAP_KMAX ? m - 1 : DDN_IED_GAP_KMAX,
        .tol = o->tol > 0 ? o->tol : dt == DDN_DTYPE_F32 ? DDN_IED_TOL_F32 : DDN_IED_TOL_F64,
        .tie_tol = o->tie_tol, .sign = o->sign, .shift = o->shift, .random_init = o->random_init,
        .has_ref = o->ref != NULL};
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_ied_power_err *err = ddn_ctx_scratch(ctx, (size_t)B * sizeof *err);
    ddn_status st = err ? launch(ctx, A, o, &p, NULL, y, info, err) : ddn_ctx_status(ctx);
    if (st == DDN_OK) st = ddn_ied_power_report(ctx, A, o, p.tol, info, err);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_ied_power_check(ddn_ctx *ctx, const ddn_tensor *A, bool shift, ddn_ied_info *info,
                               ddn_ied_power_err *err)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    if (B == 0) return DDN_OK;
    ddn_ied_power_params p = {.B = B, .m = m, .max_iter = 0, .kgap = 0, .shift = shift};
    const ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *y = ddn_tensor_new(ctx, A->dtype, 2, (const int64_t[]){B, m});
    ddn_status st = y ? launch(ctx, A, &o, &p, NULL, y, info, err) : ddn_ctx_status(ctx);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_ied_power_diagnose(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                                  ddn_tensor *y, ddn_ied_info *info, ddn_ied_power_err *err)
{
    const int64_t B = A->shape[0], m = A->shape[1];
    if (B == 0) return DDN_OK;
    /* y as every item's start, no iteration and no sign change: what is left of the kernel is
     * y's normalisation (a no-op up to rounding), the diagnostics and the gap check */
    ddn_ied_power_params p = {
        .B = B, .m = m, .max_iter = 0,
        .kgap = !o->check_gap || m < 2 ? 0 : m - 1 < DDN_IED_GAP_KMAX ? m - 1 : DDN_IED_GAP_KMAX,
        .tie_tol = o->tie_tol, .shift = o->shift, .random_init = 1};
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *start = ddn_tensor_new(ctx, y->dtype, 2, y->shape);
    ddn_status st = start ? ddn_tensor_copy_(start, y) : ddn_ctx_status(ctx);
    if (st == DDN_OK) st = launch(ctx, A, o, &p, start, y, info, err);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
