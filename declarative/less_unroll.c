/* ddn — LESS backward mode UNROLL: the solver's iterations re-run with ddn ops, recording on, so
 * the tape differentiates through every step (PMAF-MATH.md §1 "Forward solvers"; paper Table 2).
 * Unrolled: PGD, +RM, +TWD, +DW (BLS and EXACT are refused by ddn_less). Unlike the minimal design
 * (a constant start), the start Proj(pinv(A) b) is differentiated too ("less_start" node), so the
 * tape holds the exact derivative of the computation and finite differences can check it; it
 * approaches the implicit (E) gradient only as the iterations converge. Tensors are (B, k, 1)
 * columns; items stop independently. Design notes and measured limits: above ddn_less_unroll.
 * Tests: tests/test_less.c.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "ddn_impl.h"
#include "less_impl.h"
#include "ops.h"

/* ---- the start: u_c = pinv(A) b as a tape node --------------------------------------------- */
typedef struct less_start_saved {
    const unsigned char *has_center; /* (B): 0 where pinv(A) b = 0 (constant fallback start) */
    double rcond;                    /* singular values <= rcond * s_1 are dropped (as gelsd) */
} less_start_saved;

/* With P = pinv(A) (rank held fixed), z = P^T g, p = b - A u_c, q = P^T u_c, N g = g - P A g:
 *     d(P b) = -P dA u_c + P P^T dA^T p + (I - P A) dA^T P^T u_c + P db      (Golub-Pereyra)
 * so dL/dA = -z u_c^T + p (P z)^T + q (N g)^T and dL/db = z. */
static ddn_status less_start_item(ddn_ctx *ctx, int64_t item, int64_t m, int64_t n,
                                  const double *A, const double *b, const double *g, double rcond,
                                  double *ws, double *gA, double *gb)
{
    const int64_t k = m < n ? m : n;
    double *a = ws, *U = a + m * n, *s = U + m * k, *VT = s + k, *P = VT + k * n, *sup = P + n * m;
    double *uc = sup + k, *z = uc + n, *p = z + m, *q = p + m, *t = q + m, *Ng = t + n;
    double *Ag = Ng + n;
    memcpy(a, A, (size_t)(m * n) * sizeof *a);
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', (lapack_int)m, (lapack_int)n, a,
                                     (lapack_int)n, s, U, (lapack_int)k, VT, (lapack_int)n, sup);
    if (info != 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "less: backward UNROLL, item %lld (A "
                                 "%lldx%lld): LAPACK gesvd returned info %d", (long long)item,
                                 (long long)m, (long long)n, (int)info);
    /* P = V diag(1/s) U^T over the kept singular values, (n, m) row-major */
    memset(P, 0, (size_t)(n * m) * sizeof *P);
    for (int64_t l = 0; l < k; l++) {
        if (!(s[l] > rcond * s[0])) break;
        for (int64_t i = 0; i < n; i++) {
            const double vi = VT[l * n + i] / s[l];
            for (int64_t c = 0; c < m; c++) P[i * m + c] += vi * U[c * k + l];
        }
    }
    const int im = (int)m, in = (int)n;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, in, im, 1.0, P, im, b, 1, 0.0, uc, 1);   /* P b */
    cblas_dgemv(CblasRowMajor, CblasTrans, in, im, 1.0, P, im, g, 1, 0.0, z, 1);      /* P^T g */
    cblas_dgemv(CblasRowMajor, CblasTrans, in, im, 1.0, P, im, uc, 1, 0.0, q, 1);     /* P^T uc */
    cblas_dgemv(CblasRowMajor, CblasNoTrans, in, im, 1.0, P, im, z, 1, 0.0, t, 1);    /* P z */
    memcpy(p, b, (size_t)m * sizeof *p);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, im, in, -1.0, A, in, uc, 1, 1.0, p, 1);  /* b - A uc */
    cblas_dgemv(CblasRowMajor, CblasNoTrans, im, in, 1.0, A, in, g, 1, 0.0, Ag, 1);  /* A g */
    memcpy(Ng, g, (size_t)n * sizeof *Ng);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, in, im, -1.0, P, im, Ag, 1, 1.0, Ng, 1);
    if (gA)
        for (int64_t c = 0; c < m; c++)
            for (int64_t i = 0; i < n; i++)
                gA[c * n + i] = -z[c] * uc[i] + p[c] * t[i] + q[c] * Ng[i];
    if (gb) memcpy(gb, z, (size_t)m * sizeof *gb);
    return DDN_OK;
}

static ddn_status less_start_backward(ddn_ctx *ctx, ddn_node *node)
{
    const less_start_saved *sv = node->saved;
    ddn_tensor *A = node->in[0], *b = node->in[1];
    const bool needA = A->requires_grad, needb = b->requires_grad;
    const int64_t B = A->shape[0], m = A->shape[1], n = A->shape[2], k = m < n ? m : n;
    if (!needA && !needb) return DDN_OK;
    const double *Ah = ddn_less_host(ctx, A, DDN_DTYPE_F64);
    const double *bh = ddn_less_host(ctx, b, DDN_DTYPE_F64);
    const double *gh = ddn_less_host(ctx, node->out->grad, DDN_DTYPE_F64);
    double *gA = ddn_ctx_scratch(ctx, (size_t)(B * m * n) * sizeof *gA);
    double *gb = ddn_ctx_scratch(ctx, (size_t)(B * m) * sizeof *gb);
    double *ws = ddn_ctx_scratch(ctx, (size_t)(2 * m * n + m * k + k * n + 2 * k + 3 * n + 4 * m) *
                                          sizeof *ws);
    if (!Ah || !bh || !gh || !gA || !gb || !ws) return ddn_ctx_status(ctx);
    memset(gA, 0, (size_t)(B * m * n) * sizeof *gA);
    memset(gb, 0, (size_t)(B * m) * sizeof *gb);
    for (int64_t i = 0; i < B; i++) {
        if (!sv->has_center[i]) continue; /* the fallback start is a constant */
        ddn_status st = less_start_item(ctx, i, m, n, Ah + i * m * n, bh + i * m, gh + i * n,
                                        sv->rcond, ws, gA + i * m * n, gb + i * m);
        if (st != DDN_OK) return st;
    }
    ddn_status st = needA ? ddn_less_accumulate(ctx, A, gA) : DDN_OK;
    return st == DDN_OK && needb ? ddn_less_accumulate(ctx, b, gb) : st;
}

/* ---- op helpers on (B, k, 1) columns --------------------------------------------------------- */
static ddn_tensor *dotk(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *y) /* (B,1,1) */
{
    static const int dim1[1] = {1};
    return ddn_sum(ctx, ddn_mul(ctx, x, y), 1, dim1, true);
}

/* A constant (B, 1, 1) tensor of dtype dt from double values. */
static ddn_tensor *col_const(ddn_ctx *ctx, ddn_dtype dt, int64_t B, const double *vals)
{
    ddn_tensor *t = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 3, (const int64_t[]){B, 1, 1}, vals);
    if (t && dt != DDN_DTYPE_F64) {
        ddn_tensor *c = ddn_tensor_new(ctx, dt, 3, t->shape);
        if (!c || ddn_tensor_copy_(c, t) != DDN_OK) return NULL;
        t = c;
    }
    return t;
}

/* Host float64 values of t (numel entries) into buf. */
static bool read_host(ddn_ctx *ctx, const ddn_tensor *t, double *buf)
{
    return t && ddn_tensor_to_host(t, DDN_DTYPE_F64, buf) == DDN_OK &&
           ddn_ctx_status(ctx) == DDN_OK;
}

/* ---- the unrolled iteration ------------------------------------------------------------------ */
/* What is differentiated: +RM's exact line-search step eta = g^T d / ||A d||^2 (Eq. 6 / 49); +TWD's
 * running weight is a constant of each iteration (it changes by discrete decisions); +DW's weight
 * 1 - cos(g, u_c) (Eq. 2), u_c included. The start's values come from ddn_less_solve (max_iter 0,
 * so they are the solver's own start and input checks) and one tape node carries the derivative
 * of the minimum-norm least-squares solution (Golub-Pereyra, rank held fixed). A 0/1 mask freezes
 * finished items, so their derivative through later iterations is the identity. Memory grows
 * with the iterations (about 25 step tensors per iteration).
 *
 * Limits (measured in tests/test_less.c and while writing it): (1) the unrolled gradient is only
 * as good as the iterate: the objective-change rule pins y to ~sqrt(tol), and the gradient gap to
 * E is 25-250 times the iterate's error. (2) With +TWD in the outer case, once the weight has
 * decayed, the unrolled derivative grows with the iterations (to 1e4 .. 1e16 on 3x5 .. 5x5
 * problems) while y converges: the step tw g.d / ||A d||^2 depends on the direction of the
 * remaining error, the forward is stable only through that nonlinear dependence, and its
 * linearisation expands. The recorded derivative matches finite differences over the first ~10
 * iterations (later the function varies on the scale of the remaining error and finite
 * differences cannot check it), so we read the growth as the computation's own sensitivity rather
 * than a recording error; either way, use E there. (3) Iterating into round-off (tol 0)
 * differentiates noise: when d = P g is round-off, eta is arbitrary (for m < n, A d can nearly
 * vanish); keep tol well above round-off. */
typedef struct unroll_state {
    int64_t B, m, n;
    double *gd, *den, *nv, *f, *tw, *mask, *inv, *coef, *csign; /* (B) each */
    double *hr, *hd, *hg, *hu;                                   /* host copies, (B * max(m,n)) */
    unsigned char *running;
    int64_t *its, *conv;
} unroll_state;

static ddn_status unroll_alloc(ddn_ctx *ctx, unroll_state *s)
{
    const int64_t B = s->B, mx = s->m > s->n ? s->m : s->n;
    double *d = ddn_ctx_scratch(ctx, (size_t)(9 * B + 4 * B * mx) * sizeof *d);
    int64_t *iv = ddn_ctx_scratch(ctx, (size_t)(2 * B) * sizeof *iv);
    s->running = ddn_ctx_scratch(ctx, (size_t)B);
    if (!d || !iv || !s->running) return ddn_ctx_status(ctx);
    double **slots[] = {&s->gd, &s->den, &s->nv, &s->f, &s->tw, &s->mask, &s->inv, &s->coef,
                        &s->csign};
    for (size_t i = 0; i < sizeof slots / sizeof *slots; i++) *slots[i] = d + (int64_t)i * B;
    s->hr = d + 9 * B;
    s->hd = s->hr + B * mx;
    s->hg = s->hd + B * mx;
    s->hu = s->hg + B * mx;
    s->its = iv;
    s->conv = iv + B;
    return DDN_OK;
}

/* f = 1/2 ||r||^2 per item from r (B, m, 1), on the host in float64. */
static bool unroll_objective(ddn_ctx *ctx, const unroll_state *s, const ddn_tensor *r, double *f)
{
    if (!read_host(ctx, r, s->hr)) return false;
    for (int64_t i = 0; i < s->B; i++) {
        double acc = 0;
        for (int64_t c = 0; c < s->m; c++) acc += s->hr[i * s->m + c] * s->hr[i * s->m + c];
        f[i] = 0.5 * acc;
    }
    return true;
}

ddn_tensor *ddn_less_unroll(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *o,
                            ddn_decl_info *info)
{
    const int64_t B = A->shape[0], m = A->shape[1], n = A->shape[2];
    const ddn_dtype dt = A->dtype;
    const unsigned meth = o->method;
    const bool rm = meth & DDN_LESS_RM, twd = meth & DDN_LESS_TWD, dw = meth & DDN_LESS_DW;
    unroll_state s = {.B = B, .m = m, .n = n};
    if (unroll_alloc(ctx, &s) != DDN_OK) return NULL;

    /* 1. The start, by the solver itself (max_iter 0: checks the inputs, computes pinv(A) b with
     * gelsd in the input dtype and projects it; not strict: no iteration means "not converged"). */
    ddn_less_opts so = *o;
    so.max_iter = 0;
    so.strict = false;
    ddn_less_info *li = ddn_ctx_scratch(ctx, (size_t)B * sizeof *li);
    void *y0 = ddn_ctx_scratch(ctx, (size_t)(B * n) * ddn_dtype_size(dt));
    double *ucv = ddn_ctx_scratch(ctx, (size_t)(B * n) * sizeof *ucv);
    unsigned char *has_center = ddn_ctx_scratch(ctx, (size_t)B);
    const void *Ah = ddn_less_host(ctx, A, dt), *bh = ddn_less_host(ctx, b, dt);
    if (!li || !y0 || !ucv || !has_center || !Ah || !bh) return NULL;
    if (ddn_less_solve(ctx, dt, B, m, n, Ah, bh, y0, &so, li) != DDN_OK) return NULL;
    for (int64_t i = 0; i < B; i++) {
        const double cn = li[i].center_norm;
        has_center[i] = cn > 0 && isfinite(cn);
        for (int64_t j = 0; j < n; j++) {
            double yj = dt == DDN_DTYPE_F32 ? (double)((const float *)y0)[i * n + j]
                                            : ((const double *)y0)[i * n + j];
            ucv[i * n + j] = has_center[i] ? yj * cn : yj; /* fallback: 1/sqrt(n) ones */
        }
        /* DW (Eq. 2-3): w = 1 - sign cos(g, u_c), sign -1 outside the sphere; 1 without u_c */
        s.csign[i] = !has_center[i] ? 0.0 : (cn >= 1 ? -1.0 : 1.0);
        s.tw[i] = 1;
        s.running[i] = 1;
        s.its[i] = 0;
        s.conv[i] = 0;
    }
    const int64_t ucshape[3] = {B, n, 1};
    ddn_tensor *uc = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 3, ucshape, ucv);
    if (uc && dt != DDN_DTYPE_F64) {
        ddn_tensor *c = ddn_tensor_new(ctx, dt, 3, ucshape);
        uc = c && ddn_tensor_copy_(c, uc) == DDN_OK ? c : NULL;
    }
    if (!uc) return NULL;
    const int mx = m > n ? (int)m : (int)n;
    less_start_saved ss = {has_center, (double)mx * (dt == DDN_DTYPE_F32 ? FLT_EPSILON
                                                                         : DBL_EPSILON)};
    ddn_tensor *start_in[2] = {A, b};
    if (ddn_tape_record(ctx, "less_start", less_start_backward, uc, 2, start_in, &ss,
                        sizeof ss) != DDN_OK)
        return NULL;
    ddn_tensor *cnt = ddn_sqrt(ctx, dotk(ctx, uc, uc)); /* ||u_c|| (1 for the fallback) */
    ddn_tensor *u = ddn_div(ctx, uc, cnt);              /* Proj (Eq. 46) */

    /* 2. The iterations, as less_solver_tmpl.h's less_iterate, batched. */
    ddn_tensor *At = ddn_transpose(ctx, A, 1, 2);
    ddn_tensor *b3 = ddn_reshape(ctx, b, 3, (const int64_t[]){B, m, 1});
    ddn_tensor *r = ddn_sub(ctx, ddn_matmul(ctx, A, u), b3);
    ddn_tensor *g = ddn_matmul(ctx, At, r);
    if (!g || !unroll_objective(ctx, &s, r, s.f)) return NULL;
    for (int64_t t = 0; t < o->max_iter; t++) {
        /* direction d = g (PGD) or P g = g - (u.g) u (RM, Eq. 4); g.d and ||A d||^2 */
        ddn_tensor *d = rm ? ddn_sub(ctx, g, ddn_mul(ctx, dotk(ctx, u, g), u)) : g;
        ddn_tensor *gd = dotk(ctx, g, d);
        ddn_tensor *Ad = ddn_matmul(ctx, A, d);
        ddn_tensor *den = dotk(ctx, Ad, Ad);
        if (!read_host(ctx, gd, s.gd) || !read_host(ctx, den, s.den)) return NULL;
        bool any = false;
        for (int64_t i = 0; i < B; i++) {
            bool step = s.running[i] && s.gd[i] > 0 && s.den[i] > 0;
            if (s.running[i] && !step) { /* stationary (KKT holds): converged, as the solver */
                s.running[i] = 0;
                s.conv[i] = 1;
            }
            s.mask[i] = step ? 1 : 0;
            s.inv[i] = step ? 0 : 1;
            s.coef[i] = step ? (twd ? s.tw[i] : 1) : 0; /* TWD: eta = tw * eta_ls (constant tw) */
            any |= step;
        }
        if (!any) break;
        ddn_tensor *mask = col_const(ctx, dt, B, s.mask), *inv = col_const(ctx, dt, B, s.inv);
        /* eta = g.d / ||A d||^2 (Eq. 6 / 49); frozen items get den + 1 and coefficient 0 */
        ddn_tensor *eta = ddn_mul(ctx, ddn_div(ctx, gd, ddn_add(ctx, den, inv)),
                                  col_const(ctx, dt, B, s.coef));
        if (dw) { /* s = w eta, w = 1 - sign (g.u_c) / (||g|| ||u_c||)  (Eq. 2) */
            ddn_tensor *gn = ddn_sqrt(ctx, ddn_add(ctx, dotk(ctx, g, g), inv));
            ddn_tensor *cosv = ddn_div(ctx, dotk(ctx, g, uc), ddn_mul(ctx, gn, cnt));
            ddn_tensor *wt = ddn_add_scalar(
                ctx, ddn_neg(ctx, ddn_mul(ctx, col_const(ctx, dt, B, s.csign), cosv)), 1.0);
            eta = ddn_mul(ctx, eta, wt);
        }
        ddn_tensor *un = ddn_sub(ctx, u, ddn_mul(ctx, eta, d));
        ddn_tensor *nv = ddn_sqrt(ctx, dotk(ctx, un, un));
        ddn_tensor *ustep = ddn_div(ctx, un, nv); /* Proj (Eq. 48) */
        ddn_tensor *unew = ddn_add(ctx, u, ddn_mul(ctx, mask, ddn_sub(ctx, ustep, u)));
        if (!read_host(ctx, nv, s.nv)) return NULL;
        for (int64_t i = 0; i < B; i++)
            if (s.mask[i] != 0 && (!(s.nv[i] > 0) || !isfinite(s.nv[i]))) {
                ddn_ctx_set_error(ctx, DDN_ERR_NUMERIC, "less: UNROLL, item %lld of %lld (A "
                                  "%lldx%lld): iteration %lld produced a zero or non-finite "
                                  "point (overflow?)", (long long)i, (long long)B, (long long)m,
                                  (long long)n, (long long)s.its[i] + 1);
                return NULL;
            }
        r = ddn_sub(ctx, ddn_matmul(ctx, A, unew), b3);
        g = ddn_matmul(ctx, At, r);
        double *fn = s.gd; /* reuse: gd is read above and no longer needed */
        if (!g || !unroll_objective(ctx, &s, r, fn)) return NULL;
        if (twd) { /* cos(P_t(-g_t), P_{t+1}(-g_{t+1})) < 0 -> tw *= beta (Eq. 8-9) */
            if (!read_host(ctx, d, s.hd) || !read_host(ctx, g, s.hg) || !read_host(ctx, unew, s.hu))
                return NULL;
            for (int64_t i = 0; i < B; i++) {
                if (s.mask[i] == 0) continue;
                const double *di = s.hd + i * n, *gi = s.hg + i * n, *ui = s.hu + i * n;
                double dg = 0, gu = 0, du = 0;
                for (int64_t j = 0; j < n; j++) {
                    dg += di[j] * gi[j];
                    gu += ui[j] * gi[j];
                    du += di[j] * ui[j];
                }
                if (dg - gu * du < 0) s.tw[i] *= o->twd_beta;
            }
        }
        for (int64_t i = 0; i < B; i++) {
            if (s.mask[i] == 0) continue;
            s.its[i]++;
            double df = s.f[i] - fn[i];
            s.f[i] = fn[i];
            if (!isfinite(fn[i])) {
                ddn_ctx_set_error(ctx, DDN_ERR_NUMERIC, "less: UNROLL, item %lld of %lld: the "
                                  "objective is not finite after iteration %lld (overflow?)",
                                  (long long)i, (long long)B, (long long)s.its[i]);
                return NULL;
            }
            if (fabs(df) <= o->tol) {
                s.running[i] = 0;
                s.conv[i] = 1;
            }
        }
        u = unew;
    }

    /* 3. Diagnostics (fpd = ||A y - b|| from the last residual), strict mode, the output. */
    double *fpd = s.nv;
    for (int64_t i = 0; i < B; i++) fpd[i] = sqrt(2 * s.f[i]);
    if (info) {
        info->iterations = ddn_zeros(ctx, DDN_DTYPE_I64, 1, &s.B);
        info->converged = ddn_zeros(ctx, DDN_DTYPE_I64, 1, &s.B);
        info->fpd = ddn_zeros(ctx, DDN_DTYPE_F64, 1, &s.B);
        if (!info->iterations || !info->converged || !info->fpd ||
            ddn_less_write_info(ctx, info, B, s.its, s.conv, fpd) != DDN_OK)
            return NULL;
    }
    if (o->strict)
        for (int64_t i = 0; i < B; i++)
            if (!s.conv[i]) {
                char name[64];
                ddn_ctx_set_error(ctx, DDN_ERR_NOT_CONVERGED, "less: UNROLL, item %lld of %lld "
                                  "(A %lldx%lld, %s): %s did not converge in %lld iterations "
                                  "(tol %g on the objective change)", (long long)i, (long long)B,
                                  (long long)m, (long long)n, ddn_dtype_name(dt),
                                  ddn_less_method_name(meth, name, sizeof name),
                                  (long long)o->max_iter, o->tol);
                return NULL;
            }
    return ddn_reshape(ctx, u, 2, (const int64_t[]){B, n});
}
