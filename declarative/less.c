/* ddn — the LESS layer (less.h): input checks, the declarative node (forward = ddn_less_solve with
 * the tape paused) and its backward modes E (closed form) and J (explicit Jacobian).
 *
 * Conventions: A (B,m,n), b (B,m), y (B,n), v = dL/dy, r = A y - b, nu = 1/2 y^T A^T r (saved per
 * item by the forward; nothing of size m x n x n is kept). Both backward modes compute in float64,
 * also for float32 input (converted exactly), and round the gradients once to the input dtype:
 * the closed form divides by y^T H^{-1} y and loses about cond(H) * eps to cancellation, which
 * float32 cannot afford, and the O(mn + n^2) conversion is cheap next to the O(n^3) LU. Math:
 * PMAF-MATH.md §1 "Backward". UNROLL lives in less_unroll.c. Tests: tests/test_less.c.
 *
 * On a non-CPU device (CUDA) the iterative forward and backward E run there, as the kernel
 * entries less_iterate and less_vjp_e (block code, less_*_blk.h; one block per item): the
 * gradients are assembled on the device in their dtype. The forward's start (gelsd, O(m n^2) once
 * per forward) is still computed on host copies of A and b and uploaded; EXACT and the J and
 * UNROLL modes keep the host path (host copies). Failed items get the host path's messages.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "ddn_impl.h"
#include "less_impl.h"
#include "ops.h"

typedef struct less_node_opts {
    ddn_less_opts opts;
    ddn_less_backward backward;
    bool block; /* the kernel-table path: less_iterate / less_vjp_e (see ddn_less_ex) */
} less_node_opts;

typedef struct less_saved {
    double *nu; /* (B): the Lagrange multiplier of each item, from the solver (float64) */
} less_saved;

/* ---- small shared helpers -------------------------------------------------------------------- */
const void *ddn_less_host(ddn_ctx *ctx, const ddn_tensor *t, ddn_dtype dt)
{
    if (t->device == DDN_DEVICE_CPU && t->dtype == dt && ddn_tensor_is_contiguous(t))
        return ddn_tensor_ptr(t);
    void *h = ddn_ctx_scratch(ctx, (size_t)ddn_tensor_numel(t) * ddn_dtype_size(dt));
    if (!h) return NULL;
    return ddn_tensor_to_host(t, dt, h) == DDN_OK ? h : NULL;
}

/* dst (any device, contiguous or not) <- host values of dtype dt with dst's shape. */
static ddn_status less_store(ddn_ctx *ctx, ddn_tensor *dst, ddn_dtype dt, const void *host)
{
    if (dst->device == DDN_DEVICE_CPU && dst->dtype == dt && ddn_tensor_is_contiguous(dst)) {
        memcpy(ddn_tensor_ptr(dst), host, ddn_tensor_nbytes(dst));
        return DDN_OK;
    }
    ddn_tensor *h = ddn_tensor_from_host(ctx, dt, dst->ndim, dst->shape, host);
    return h ? ddn_tensor_copy_(dst, h) : ddn_ctx_status(ctx);
}

ddn_status ddn_less_write_info(ddn_ctx *ctx, const ddn_decl_info *info, int64_t B,
                               const int64_t *iterations, const int64_t *converged,
                               const double *fpd)
{
    if (B == 0) return DDN_OK;
    ddn_status st = less_store(ctx, info->iterations, DDN_DTYPE_I64, iterations);
    if (st == DDN_OK) st = less_store(ctx, info->converged, DDN_DTYPE_I64, converged);
    if (st == DDN_OK) st = less_store(ctx, info->fpd, DDN_DTYPE_F64, fpd);
    return st;
}

ddn_status ddn_less_accumulate(ddn_ctx *ctx, ddn_tensor *t, const double *g)
{
    ddn_tensor *gt = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, t->ndim, t->shape, g);
    if (gt && t->dtype != DDN_DTYPE_F64) gt = ddn_cast(ctx, gt, t->dtype); /* no grad: no node */
    return gt ? ddn_grad_accumulate(ctx, t, gt, 1.0) : ddn_ctx_status(ctx);
}

/* t itself when contiguous, else a contiguous copy made by the copy kernel (no tape node). */
static const ddn_tensor *less_contig(ddn_ctx *ctx, const ddn_tensor *t)
{
    if (ddn_tensor_is_contiguous(t)) return t;
    ddn_tensor *c = ddn_tensor_new_like(ctx, t);
    return c && ddn_k(c)->copy(c, t) == DDN_OK ? c : NULL;
}

/* ---- the device forward: the start on the host, the iterations on the device ---------------- */
/* The start (input checks, gelsd's minimum-norm least squares, its projection) runs on the host
 * copies Ah, bh (O(m n^2) once per forward; moving it is later work) and is uploaded; the
 * iterations and the diagnostics run as less_iterate, writing y in place. Item failures of either
 * half are reported as ddn_less_solve reports them: the lowest item, the same messages. */
static ddn_status less_solve_device(ddn_ctx *ctx, const ddn_less_opts *o, const ddn_tensor *A,
                                    const ddn_tensor *b, const void *Ah, const void *bh,
                                    ddn_tensor *y, ddn_less_info *li)
{
    const int64_t B = A->shape[0], m = A->shape[1], n = A->shape[2];
    const ddn_dtype dt = A->dtype;
    const size_t bytes = (size_t)(B * n) * ddn_dtype_size(dt);
    void *uch = ddn_ctx_scratch(ctx, bytes), *y0 = ddn_ctx_scratch(ctx, bytes);
    ddn_solver_err *errs = ddn_ctx_scratch(ctx, (size_t)(B > 0 ? B : 1) * sizeof *errs);
    ddn_less_item *item = ddn_ctx_scratch(ctx, (size_t)(B > 0 ? B : 1) * sizeof *item);
    if (!uch || !y0 || !errs || !item) return ddn_ctx_status(ctx);
    ddn_status st = ddn_less_solve_start(ctx, dt, B, m, n, Ah, bh, uch, y0, o, li, errs);
    if (st != DDN_OK || B == 0) return st;
    const ddn_tensor *Ad = less_contig(ctx, A), *bd = less_contig(ctx, b);
    ddn_tensor *uc = ddn_tensor_from_host(ctx, dt, 2, (const int64_t[]){B, n}, uch);
    if (!Ad || !bd || !uc) return ddn_ctx_status(ctx);
    st = less_store(ctx, y, dt, y0); /* y is the node's fresh contiguous output */
    if (st == DDN_OK) st = ddn_k(y)->less_iterate(y, Ad, bd, uc, o, item);
    if (st != DDN_OK) return st;
    int64_t fail = -1, nc = -1;
    ddn_solver_err ferr = {.status = DDN_OK};
    for (int64_t i = 0; i < B; i++) {
        if (errs[i].status == DDN_OK && item[i].code != DDN_LESS_ITEM_OK) {
            if (item[i].code == DDN_LESS_ITEM_STEP)
                ddn_solver_fail(&errs[i], DDN_ERR_NUMERIC, "iteration %lld produced a zero or "
                                "non-finite point (overflow?)",
                                (long long)item[i].iterations + 1);
            else
                ddn_solver_fail(&errs[i], DDN_ERR_NUMERIC, "the solution is not finite "
                                "(overflow?)");
        }
        if (errs[i].status != DDN_OK) {
            if (fail < 0) fail = i, ferr = errs[i];
            continue;
        }
        li[i].iterations = item[i].iterations;
        li[i].converged = item[i].converged != 0;
        li[i].fpd = item[i].fpd;
        li[i].objective = item[i].objective;
        li[i].nu = item[i].nu;
        if (!li[i].converged && nc < 0) nc = i;
    }
    return ddn_less_report(ctx, dt, B, m, n, o, fail, &ferr, nc);
}

/* ---- forward: the solver, tape paused (ddn_declarative) ------------------------------------ */
static ddn_status less_solve_node(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                                  ddn_tensor *y, ddn_decl_info *info, void **saved)
{
    const less_node_opts *o = opts;
    const ddn_tensor *A = in[0], *b = in[1];
    const int64_t B = A->shape[0], m = A->shape[1], n = A->shape[2];
    const ddn_dtype dt = A->dtype;
    less_saved *sv = ddn_ctx_scratch(ctx, sizeof *sv);
    double *nu = ddn_ctx_scratch(ctx, (size_t)B * sizeof *nu);
    ddn_less_info *li = ddn_ctx_scratch(ctx, (size_t)B * sizeof *li);
    int64_t *its = ddn_ctx_scratch(ctx, (size_t)(2 * B) * sizeof *its);
    double *fpd = ddn_ctx_scratch(ctx, (size_t)B * sizeof *fpd);
    void *yh = ddn_ctx_scratch(ctx, (size_t)(B * n) * ddn_dtype_size(dt));
    if (!sv || !nu || !li || !its || !fpd || !yh) return ddn_ctx_status(ctx);
    const void *Ah = ddn_less_host(ctx, A, dt), *bh = ddn_less_host(ctx, b, dt);
    if (!Ah || !bh) return ddn_ctx_status(ctx);
    const bool dev = o->block && o->opts.method != DDN_LESS_EXACT;
    ddn_status st = dev ? less_solve_device(ctx, &o->opts, A, b, Ah, bh, y, li)
                        : ddn_less_solve(ctx, dt, B, m, n, Ah, bh, yh, &o->opts, li);
    if (st != DDN_OK) return st;
    int64_t *conv = its + B;
    for (int64_t i = 0; i < B; i++) {
        nu[i] = li[i].nu;
        its[i] = li[i].iterations;
        conv[i] = li[i].converged ? 1 : 0;
        fpd[i] = li[i].fpd;
    }
    sv->nu = nu;
    *saved = sv;
    if (B > 0 && !dev) st = less_store(ctx, y, dt, yh);
    return st == DDN_OK ? ddn_less_write_info(ctx, info, B, its, conv, fpd) : st;
}

/* ---- backward: the Hessian of the Lagrangian, factorised once per item --------------------- */
/* The two ways the backward fails on an item, worded once for the host and device paths. */
static ddn_status less_err_singular(ddn_ctx *ctx, const char *mode, int64_t item, int64_t B,
                                    int64_t m, int64_t n, double nu, double rcond)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "less: backward %s, item %lld of %lld (A "
                             "%lldx%lld): H = A^T A - 2 nu I (nu = %.6g) is singular to "
                             "working precision (rcond %.1e, need > %.1e): 2 nu is an "
                             "eigenvalue of A^T A, the hard case of LESS, where y is not a "
                             "differentiable function of A and b", mode, (long long)item,
                             (long long)B, (long long)m, (long long)n, nu, rcond,
                             (double)n * DBL_EPSILON);
}

static ddn_status less_err_ya(ddn_ctx *ctx, const char *mode, int64_t item, int64_t B, double ya,
                              double an)
{
    return ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "less: backward %s, item %lld of %lld: "
                             "y^T H^{-1} y = %.2e vanishes (|H^{-1} y| = %.2e): the KKT system "
                             "of the sphere constraint is singular", mode, (long long)item,
                             (long long)B, ya, an);
}


/* H = A^T A - 2 nu I (PMAF-MATH §1, Eq. 22), LU-factorised in place (column-major; H is
 * symmetric, so this is also its row-major factorisation). LU, not Cholesky: at a stationary point
 * that is not the global minimum (an iterative solver may stop at one) H is indefinite off the
 * tangent space. H counts as singular when LU meets a zero pivot or its reciprocal condition
 * number (1-norm estimate, gecon) is below n * eps: then 2 nu is, to working precision, an
 * eigenvalue of A^T A (the hard case of LESS), and H^{-1} does not exist. work: 4n, iwork: n. */
static ddn_status less_factor_h(ddn_ctx *ctx, const char *mode, int64_t item, int64_t B,
                                int64_t m, int64_t n, const double *A, double nu, double *H,
                                lapack_int *piv, double *work, lapack_int *iwork)
{
    /* Row-major A (m, n) is the column-major n x m matrix A^T, and A^T (A^T)^T = A^T A. */
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)n, (int)m, 1.0, A, (int)n, 0.0, H,
                (int)n);
    for (int64_t j = 0; j < n; j++) {
        for (int64_t i = 0; i < j; i++) H[j + i * n] = H[i + j * n];
        H[j + j * n] -= 2 * nu;
    }
    const double anorm = LAPACKE_dlange_work(LAPACK_COL_MAJOR, '1', (lapack_int)n, (lapack_int)n,
                                             H, (lapack_int)n, work);
    lapack_int info = LAPACKE_dgetrf_work(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)n, H,
                                          (lapack_int)n, piv);
    double rcond = 0;
    if (info == 0)
        info = LAPACKE_dgecon_work(LAPACK_COL_MAJOR, '1', (lapack_int)n, H, (lapack_int)n, anorm,
                                   &rcond, work, iwork);
    if (info < 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "less: backward %s, item %lld of %lld (A "
                                 "%lldx%lld): LAPACK getrf/gecon returned info %d", mode,
                                 (long long)item, (long long)B, (long long)m, (long long)n,
                                 (int)info);
    if (info > 0 || !(rcond > (double)n * DBL_EPSILON))
        return less_err_singular(ctx, mode, item, B, m, n, nu, rcond);
    return DDN_OK;
}

/* y^T H^{-1} y = 0 makes the bordered KKT system singular (H not definite on the tangent space). */
static ddn_status less_check_ya(ddn_ctx *ctx, const char *mode, int64_t item, int64_t B,
                                int64_t n, double ya, const double *a)
{
    double an = cblas_dnrm2((int)n, a, 1); /* ||y|| = 1 */
    if (fabs(ya) > (double)n * DBL_EPSILON * an) return DDN_OK;
    return less_err_ya(ctx, mode, item, B, ya, an);
}

/* r = A y - b. A (m, n) row-major. */
static void less_residual(int64_t m, int64_t n, const double *A, const double *b,
                          const double *y, double *r)
{
    memcpy(r, b, (size_t)m * sizeof *r);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1.0, A, (int)n, y, 1, -1.0, r, 1);
}

/* ---- E: the closed form (PMAF-MATH §1) ------------------------------------------------------ */
/*   w = H^{-1} v,  a = H^{-1} y   (one LU, both right-hand sides in one getrs)
 *   K = (y.w / y.a) a - w,   dL/dA = r K^T + (A K) y^T,   dL/db = -A K.
 * Per item: H (n^2), and O(m + n) vectors: O(m n + n^2) memory with A itself. gA / gb may be NULL
 * (input needs no gradient). */
static ddn_status less_backward_e(ddn_ctx *ctx, int64_t B, int64_t m, int64_t n, const double *A,
                                  const double *b, const double *y, const double *nu,
                                  const double *v, double *gA, double *gb)
{
    double *H = ddn_ctx_scratch(ctx, (size_t)(n * n + 7 * n + 2 * m) * sizeof *H);
    lapack_int *piv = ddn_ctx_scratch(ctx, (size_t)(2 * n) * sizeof *piv);
    if (!H || !piv) return ddn_ctx_status(ctx);
    double *rhs = H + n * n, *K = rhs + 2 * n, *work = K + n, *r = work + 4 * n, *AK = r + m;
    lapack_int *iwork = piv + n;
    for (int64_t i = 0; i < B; i++) {
        const double *Ai = A + i * m * n, *yi = y + i * n;
        ddn_status st = less_factor_h(ctx, "E", i, B, m, n, Ai, nu[i], H, piv, work, iwork);
        if (st != DDN_OK) return st;
        memcpy(rhs, v + i * n, (size_t)n * sizeof *rhs); /* column 0: v -> w */
        memcpy(rhs + n, yi, (size_t)n * sizeof *rhs);    /* column 1: y -> a */
        lapack_int info = LAPACKE_dgetrs_work(LAPACK_COL_MAJOR, 'N', (lapack_int)n, 2, H,
                                              (lapack_int)n, piv, rhs, (lapack_int)n);
        if (info != 0)
            return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "less: backward E, item %lld: LAPACK "
                                     "getrs returned info %d", (long long)i, (int)info);
        const double *w = rhs, *a = rhs + n;
        double ya = cblas_ddot((int)n, yi, 1, a, 1), yw = cblas_ddot((int)n, yi, 1, w, 1);
        st = less_check_ya(ctx, "E", i, B, n, ya, a);
        if (st != DDN_OK) return st;
        for (int64_t j = 0; j < n; j++) K[j] = (yw / ya) * a[j] - w[j];
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1.0, Ai, (int)n, K, 1, 0.0, AK,
                    1);
        if (gA) {
            less_residual(m, n, Ai, b + i * m, yi, r);
            double *g = gA + i * m * n;
            for (int64_t c = 0; c < m; c++)
                for (int64_t j = 0; j < n; j++) g[c * n + j] = r[c] * K[j] + AK[c] * yi[j];
        }
        if (gb)
            for (int64_t c = 0; c < m; c++) gb[i * m + c] = -AK[c];
    }
    return DDN_OK;
}

/* ---- J: the explicit Jacobian (Prop. 3.1), the slow reference of Table 2 -------------------- */
/* With the constraint Jacobian 2 y^T (Eq. 20), Eq. 18 gives the full Jacobian
 *     dy/dx = (H^{-1} y (y^T H^{-1} y)^{-1} y^T H^{-1} - H^{-1}) B,   x = (vec A, b),
 * where B = d/dx (A^T (A y - b)) is n x (m n + m):
 *     B[j, (c,i)] = delta_ij r_c + A_cj y_i    (column c n + i: A_ci, row-major order of A)
 *     B[j, m n + c] = -A_cj                     (column of b_c).
 * Eq. 24-25 print the first term as A_ci y_j (the indices i, j of A swapped); the form above is
 * the derivative of A^T r, and finite differences confirm it (tests/test_less.c). The gradient is
 * v^T dy/dx. Per item this keeps B and dy/dx, 2 n (m n + m) doubles: O(n m n) memory and
 * O(m n^3) time, against E's O(m n + n^2) and O(m n + n^3). */
static ddn_status less_backward_j(ddn_ctx *ctx, int64_t B, int64_t m, int64_t n, const double *A,
                                  const double *b, const double *y, const double *nu,
                                  const double *v, double *gA, double *gb)
{
    const int64_t k = m * n + m;
    if (k > INT32_MAX / n)
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "less: backward J: A %lldx%lld: the explicit "
                                 "Jacobian n x (m n + m) = %lld x %lld exceeds 2^31 entries "
                                 "(use backward E)", (long long)m, (long long)n, (long long)n,
                                 (long long)k);
    double *H = ddn_ctx_scratch(ctx, (size_t)(3 * n * n + 6 * n + m + 2 * n * k + k) * sizeof *H);
    lapack_int *piv = ddn_ctx_scratch(ctx, (size_t)(2 * n) * sizeof *piv);
    if (!H || !piv) return ddn_ctx_status(ctx);
    double *Hinv = H + n * n, *MK = Hinv + n * n, *a = MK + n * n, *work = a + n;
    double *r = work + 4 * n, *Bm = r + m, *Dy = Bm + n * k, *g = Dy + n * k;
    lapack_int *iwork = piv + n;
    for (int64_t i = 0; i < B; i++) {
        const double *Ai = A + i * m * n, *yi = y + i * n;
        ddn_status st = less_factor_h(ctx, "J", i, B, m, n, Ai, nu[i], H, piv, work, iwork);
        if (st != DDN_OK) return st;
        memset(Hinv, 0, (size_t)(n * n) * sizeof *Hinv);
        for (int64_t j = 0; j < n; j++) Hinv[j + j * n] = 1;
        lapack_int info = LAPACKE_dgetrs_work(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)n,
                                              H, (lapack_int)n, piv, Hinv, (lapack_int)n);
        if (info != 0)
            return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "less: backward J, item %lld: LAPACK "
                                     "getrs returned info %d", (long long)i, (int)info);
        /* a = H^{-1} y; MK (row-major) = a a^T / (y.a) - H^{-1} */
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)n, 1.0, Hinv, (int)n, yi, 1, 0.0, a,
                    1);
        double ya = cblas_ddot((int)n, yi, 1, a, 1);
        st = less_check_ya(ctx, "J", i, B, n, ya, a);
        if (st != DDN_OK) return st;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = 0; q < n; q++) MK[p * n + q] = a[p] * a[q] / ya - Hinv[p + q * n];
        /* the explicit B, row-major n x k */
        less_residual(m, n, Ai, b + i * m, yi, r);
        for (int64_t j = 0; j < n; j++) {
            double *row = Bm + j * k;
            for (int64_t c = 0; c < m; c++) {
                const double acj = Ai[c * n + j];
                for (int64_t q = 0; q < n; q++) row[c * n + q] = acj * yi[q];
                row[c * n + j] += r[c];
                row[m * n + c] = -acj;
            }
        }
        /* dy/dx = MK B (n x k), then the gradient v^T dy/dx */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)n, 1.0, MK,
                    (int)n, Bm, (int)k, 0.0, Dy, (int)k);
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)k, 1.0, Dy, (int)k, v + i * n, 1, 0.0,
                    g, 1);
        if (gA) memcpy(gA + i * m * n, g, (size_t)(m * n) * sizeof *g);
        if (gb) memcpy(gb + i * m, g + m * n, (size_t)m * sizeof *g);
    }
    return DDN_OK;
}

/* ---- E on the device: less_vjp_e writes the gradients there, in their dtype ---------------- */
static ddn_status less_vjp_device(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_tensor *y,
                                  const ddn_tensor *dy, const double *nu)
{
    const int64_t B = A->shape[0], m = A->shape[1], n = A->shape[2];
    const bool needA = A->requires_grad, needb = b->requires_grad;
    ddn_less_item *item = ddn_ctx_scratch(ctx, (size_t)B * sizeof *item);
    const ddn_tensor *Ad = less_contig(ctx, A), *bd = less_contig(ctx, b);
    const ddn_tensor *yd = less_contig(ctx, y), *vd = less_contig(ctx, dy);
    ddn_tensor *nut = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, 1, &B, nu);
    ddn_tensor *gA = needA ? ddn_tensor_new(ctx, A->dtype, 3, A->shape) : NULL;
    ddn_tensor *gb = needb ? ddn_tensor_new(ctx, b->dtype, 2, b->shape) : NULL;
    if (vd && vd->dtype != A->dtype) vd = ddn_cast(ctx, (ddn_tensor *)vd, A->dtype);
    if (!item || !Ad || !bd || !yd || !vd || !nut || (needA && !gA) || (needb && !gb))
        return ddn_ctx_status(ctx);
    ddn_status st = ddn_k(Ad)->less_vjp_e(gA, gb, Ad, bd, yd, vd, nut, item);
    for (int64_t i = 0; i < B && st == DDN_OK; i++) {
        if (item[i].code == DDN_LESS_ITEM_ZERO_PIVOT || item[i].code == DDN_LESS_ITEM_RCOND)
            st = less_err_singular(ctx, "E", i, B, m, n, nu[i], item[i].detail[0]);
        else if (item[i].code == DDN_LESS_ITEM_YA)
            st = less_err_ya(ctx, "E", i, B, item[i].detail[0], item[i].detail[1]);
        else if (item[i].code != DDN_LESS_ITEM_OK) /* ||H||_1 not finite: gecon's info -5 */
            st = ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "less: backward E, item %lld of %lld (A "
                                   "%lldx%lld): LAPACK getrf/gecon returned info -5",
                                   (long long)i, (long long)B, (long long)m, (long long)n);
    }
    if (st == DDN_OK && needA) st = ddn_grad_accumulate(ctx, A, gA, 1.0);
    if (st == DDN_OK && needb) st = ddn_grad_accumulate(ctx, b, gb, 1.0);
    return st;
}

static ddn_status less_vjp(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                           const ddn_tensor *y, const ddn_tensor *dy, void *saved)
{
    const less_node_opts *o = opts;
    const less_saved *sv = saved;
    ddn_tensor *A = in[0], *b = in[1];
    const bool needA = A->requires_grad, needb = b->requires_grad;
    const int64_t B = A->shape[0], m = A->shape[1], n = A->shape[2];
    if ((!needA && !needb) || B == 0) return DDN_OK;
    if (o->block && o->backward == DDN_LESS_BACKWARD_E)
        return less_vjp_device(ctx, A, b, y, dy, sv->nu);
    const double *Ah = ddn_less_host(ctx, A, DDN_DTYPE_F64);
    const double *bh = ddn_less_host(ctx, b, DDN_DTYPE_F64);
    const double *yh = ddn_less_host(ctx, y, DDN_DTYPE_F64);
    const double *vh = ddn_less_host(ctx, dy, DDN_DTYPE_F64);
    double *gA = needA ? ddn_ctx_scratch(ctx, (size_t)(B * m * n) * sizeof *gA) : NULL;
    double *gb = needb ? ddn_ctx_scratch(ctx, (size_t)(B * m) * sizeof *gb) : NULL;
    if (!Ah || !bh || !yh || !vh || (needA && !gA) || (needb && !gb)) return ddn_ctx_status(ctx);
    ddn_status st = o->backward == DDN_LESS_BACKWARD_J
                        ? less_backward_j(ctx, B, m, n, Ah, bh, yh, sv->nu, vh, gA, gb)
                        : less_backward_e(ctx, B, m, n, Ah, bh, yh, sv->nu, vh, gA, gb);
    if (st == DDN_OK && needA) st = ddn_less_accumulate(ctx, A, gA);
    if (st == DDN_OK && needb) st = ddn_less_accumulate(ctx, b, gb);
    return st;
}

static const ddn_decl_vtbl less_vtbl = {.name = "less", .solve = less_solve_node,
                                        .vjp = less_vjp};

/* ---- the entry point ------------------------------------------------------------------------ */
ddn_tensor *ddn_less(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *opts,
                     ddn_less_backward backward, ddn_decl_info *info)
{
    const bool device = ctx && A && ddn_device_path(ctx, A->device);
    return ddn_less_ex(ctx, A, b, opts, backward, info, device);
}

ddn_tensor *ddn_less_ex(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *opts,
                        ddn_less_backward backward, ddn_decl_info *info, bool block)
{
    if (!ctx || !A || !b) return NULL;
    if (!ddn_check_float(ctx, "less", A) || !ddn_check_float(ctx, "less", b)) return NULL;
    char sa[96], sb[96];
    ddn_shape_str(A, sa, sizeof sa);
    ddn_shape_str(b, sb, sizeof sb);
    if (A->dtype != b->dtype) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "less: A %s is %s but b %s is %s; both must be "
                          "float32 or both float64", sa, ddn_dtype_name(A->dtype), sb,
                          ddn_dtype_name(b->dtype));
        return NULL;
    }
    if (A->ndim != 3 || b->ndim != 2 || A->shape[0] != b->shape[0] ||
        A->shape[1] != b->shape[1] || A->shape[1] < 1 || A->shape[2] < 1) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "less: A %s and b %s: expected A (B,m,n) and b "
                          "(B,m) with the same B and m, m, n >= 1", sa, sb);
        return NULL;
    }
    if (backward != DDN_LESS_BACKWARD_E && backward != DDN_LESS_BACKWARD_J &&
        backward != DDN_LESS_BACKWARD_UNROLL) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "less: backward mode %d is not E (0), J (1) or "
                          "UNROLL (2)", (int)backward);
        return NULL;
    }
    const ddn_less_opts o = opts ? *opts : DDN_LESS_OPTS_DEFAULT;
    if (backward == DDN_LESS_BACKWARD_UNROLL) {
        const unsigned refused = DDN_LESS_EXACT | DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD;
        if (o.method & refused) {
            char name[64];
            ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "less: backward UNROLL records PGD, +RM, "
                              "+TWD and +DW iterations; method %s is not unrolled (EXACT is a "
                              "closed-form eigen solve and BLS a discrete search): use backward "
                              "E or J", ddn_less_method_name(o.method, name, sizeof name));
            return NULL;
        }
        return ddn_less_unroll(ctx, A, b, &o, info);
    }
    const less_node_opts no = {o, backward, block};
    ddn_tensor *in[2] = {A, b};
    const int64_t yshape[2] = {A->shape[0], A->shape[2]};
    return ddn_declarative(ctx, &less_vtbl, &no, sizeof no, 2, in, 2, yshape, info);
}
