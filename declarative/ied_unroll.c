/* ddn — IED backward mode UNROLL: the PI / SI iterations recorded op by op on the tape (memory
 * grows with the iteration count: the "unroll" column of the paper's Tables 3, 5-10), with the
 * solver's start, sign handling and stopping rule (ied_solver_tmpl.h, PMAF-MATH.md §2). Signs,
 * the stop test and the Gershgorin shift are decided on the values and enter as constants: they
 * are not differentiated (the shift does not move the fixed point). SI's QR is a differentiable
 * node of its own (ddn_ied_qr_, Householder forward, float64 backward). Unlike the solver, a
 * start with A u = 0 is an error here, not a random restart. Tests: tests/test_ied.c.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "ddn_impl.h"
#include "ied_impl.h"
#include "ops.h"

/* ---- differentiable thin QR ---------------------------------------------------------------------
 * Z = Q R (m >= k, R invertible). With dZ = dQ R + Q dR, Q^T dQ skew and dR R^{-1} upper
 * triangular, the VJP for a gradient gQ on Q alone (R is not an output) is
 *     gZ = (gQ - Q S) R^{-T},   S = triu(N) + triu(N, 1)^T,   N = Q^T gQ,
 * i.e. [(I - Q Q^T) gQ + Q tril(N - N^T, -1)] R^{-T}. */
typedef struct {
    double *R; /* (B, k, k) row-major, upper triangular */
} qr_saved;

static ddn_status qr_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *Z = node->in[0];
    const ddn_tensor *Q = node->out;
    const qr_saved *sv = node->saved;
    const int64_t B = Q->shape[0], m = Q->shape[1], k = Q->shape[2];
    if (!ddn_grad_buffer(ctx, Z)) return ddn_ctx_status(ctx);
    ddn_mark mark = ddn_ctx_mark(ctx);
    double *buf = ddn_ctx_scratch(ctx, (size_t)(3 * B * m * k + k * k) * sizeof *buf);
    if (!buf) return ddn_ctx_status(ctx);
    double *Qd = buf, *G = Qd + B * m * k, *gZ = G + B * m * k, *N = gZ + B * m * k;
    ddn_status st = ddn_tensor_to_host(Q, DDN_DTYPE_F64, Qd);
    if (st == DDN_OK) st = ddn_tensor_to_host(Q->grad, DDN_DTYPE_F64, G);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        const double *Qb = Qd + b * m * k, *Gb = G + b * m * k, *Rb = sv->R + b * k * k;
        double *X = gZ + b * m * k;
        for (int64_t j = 0; j < k; j++)
            if (!(Rb[j * k + j] != 0)) {
                st = ddn_ctx_set_error(ctx, DDN_ERR_SINGULAR, "ied (UNROLL, SI): item %lld: the "
                                       "QR of A Q (%lldx%lld) has R[%lld,%lld] = 0 (A Q has rank "
                                       "< k): its backward needs R invertible; use a smaller k",
                                       (long long)b, (long long)m, (long long)k, (long long)j,
                                       (long long)j);
                break;
            }
        if (st != DDN_OK) break;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)k, (int)m, 1.0, Qb,
                    (int)k, Gb, (int)k, 0.0, N, (int)k);
        for (int64_t i = 1; i < k; i++)
            for (int64_t j = 0; j < i; j++) N[i * k + j] = N[j * k + i];
        memcpy(X, Gb, (size_t)(m * k) * sizeof *X);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)k, -1.0, Qb,
                    (int)k, N, (int)k, 1.0, X, (int)k);
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (int)m,
                    (int)k, 1.0, Rb, (int)k, X, (int)k);
    }
    if (st == DDN_OK) st = ddn_ied_accumulate_(ctx, Z, gZ);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_tensor *ddn_ied_qr_(ddn_ctx *ctx, ddn_tensor *Z)
{
    if (!Z) return NULL;
    if (!ddn_check_float(ctx, "ied_qr", Z)) return NULL;
    if (Z->ndim != 3 || Z->shape[2] < 1 || Z->shape[1] < Z->shape[2]) {
        char s[64];
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "ied_qr: Z %s: expected (B, m, k) with m >= k >= 1",
                          ddn_shape_str(Z, s, sizeof s));
        return NULL;
    }
    const int64_t B = Z->shape[0], m = Z->shape[1], k = Z->shape[2];
    const bool f32 = Z->dtype == DDN_DTYPE_F32;
    const size_t ts = f32 ? sizeof(float) : sizeof(double);
    qr_saved sv = {ddn_ctx_scratch(ctx, (size_t)(B * k * k + 1) * sizeof(double))};
    ddn_tensor *Q = ddn_tensor_new(ctx, Z->dtype, 3, Z->shape);
    if (!sv.R || !Q) return NULL;
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *a = ddn_ctx_scratch(ctx, (size_t)(B * m * k + k) * ts);
    if (!a) return NULL;
    unsigned char *tau = a + (size_t)(B * m * k) * ts;
    ddn_status st = ddn_tensor_to_host(Z, Z->dtype, a);
    for (int64_t b = 0; b < B && st == DDN_OK; b++) {
        void *ab = a + (size_t)(b * m * k) * ts;
        double *Rb = sv.R + b * k * k;
        lapack_int info =
            f32 ? LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k, ab,
                                 (lapack_int)k, (float *)tau)
                : LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k, ab,
                                 (lapack_int)k, (double *)tau);
        for (int64_t i = 0; i < k && info == 0; i++)
            for (int64_t j = 0; j < k; j++)
                Rb[i * k + j] = j < i ? 0 : f32 ? ((float *)ab)[i * k + j]
                                                : ((double *)ab)[i * k + j];
        if (info == 0)
            info = f32 ? LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k,
                                        (lapack_int)k, ab, (lapack_int)k, (float *)tau)
                       : LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k,
                                        (lapack_int)k, ab, (lapack_int)k, (double *)tau);
        if (info != 0)
            st = ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "ied_qr: item %lld (%lldx%lld, %s): "
                                   "LAPACK geqrf/orgqr returned info %d", (long long)b,
                                   (long long)m, (long long)k, ddn_dtype_name(Z->dtype),
                                   (int)info);
    }
    if (st == DDN_OK) {
        ddn_tensor *h = ddn_tensor_from_host(ctx, Z->dtype, 3, Z->shape, a);
        st = h ? ddn_tensor_copy_(Q, h) : ddn_ctx_status(ctx);
    }
    ddn_ctx_rewind(ctx, mark);
    if (st != DDN_OK) return NULL;
    ddn_tensor *in[1] = {Z};
    if (ddn_tape_record(ctx, "ied_qr", qr_backward, Q, 1, in, &sv, sizeof sv) != DDN_OK)
        return NULL;
    return ddn_op_finish(ctx, "ied_qr", Q);
}

/* ---- the unrolled iteration ------------------------------------------------------------------ */
/* A constant (no gradient) tensor of dtype dt from float64 host values. */
static ddn_tensor *constant(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                            const double *v)
{
    ddn_tensor *t64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, v);
    if (!t64 || dt == DDN_DTYPE_F64) return t64;
    ddn_tensor *t = ddn_tensor_new(ctx, dt, ndim, shape);
    return t && ddn_tensor_copy_(t, t64) == DDN_OK ? t : NULL;
}

/* The solver's start for one item (ied_start in ied_solver_tmpl.h), float64, written row-major
 * (m, k) into U: ones / e_j or seeded N(0,1) columns, orthonormalised, first column on the ones
 * side for k > 1. Q, tau: scratch of m*k and k. */
static lapack_int start_item(int64_t item, int64_t m, int64_t k, const ddn_ied_opts *o, double *Q,
                             double *tau, double *U)
{
    ddn_rng rng;
    ddn_rng_seed(&rng, o->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(item + 1)));
    if (o->random_init) {
        for (int64_t i = 0; i < m * k; i++) Q[i] = ddn_rng_normal(&rng); /* column-major */
    } else {
        memset(Q, 0, (size_t)(m * k) * sizeof *Q);
        for (int64_t i = 0; i < m; i++) Q[i] = 1;
        for (int64_t j = 1; j < k; j++) Q[j * m + (j - 1)] = 1;
    }
    lapack_int info = 0;
    if (k == 1) {
        double nq = cblas_dnrm2((int)m, Q, 1);
        for (int64_t i = 0; i < m; i++) Q[i] /= nq;
    } else {
        info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)k, Q, (lapack_int)m,
                              tau);
        if (info == 0)
            info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)k, (lapack_int)k,
                                  Q, (lapack_int)m, tau);
        double s = 0;
        for (int64_t i = 0; i < m; i++) s += Q[i];
        if (s < 0)
            for (int64_t i = 0; i < m; i++) Q[i] = -Q[i];
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++) U[i * k + j] = Q[j * m + i];
    return info;
}

/* Column j of item-major row-major (m, k) blocks. */
static double col_dot(int64_t m, int64_t k, const double *X, const double *Y, int64_t j)
{
    double s = 0;
    for (int64_t i = 0; i < m; i++) s += X[i * k + j] * Y[i * k + j];
    return s;
}

ddn_tensor *ddn_ied_unroll_(ddn_ctx *ctx, ddn_tensor *A, const ddn_ied_opts *o,
                            ddn_decl_info *info)
{
    const ddn_dtype dt = A->dtype;
    const bool f32 = dt == DDN_DTYPE_F32;
    const int64_t B = A->shape[0], m = A->shape[1], k = o->method == DDN_IED_SI ? o->k : 1;
    const int64_t mk = m * k;
    const double tol = o->tol > 0 ? o->tol : (f32 ? DDN_IED_TOL_F32 : DDN_IED_TOL_F64);
    const char *meth = o->method == DDN_IED_SI ? "UNROLL, SI" : "UNROLL, PI";

    /* Host state for the whole call (step arena; small next to what the tape records). */
    double *Ad = ddn_ctx_scratch(ctx, (size_t)(B * m * m + 3 * B * mk + B * k + mk + k + 6 * B +
                                               m + 1) * sizeof *Ad);
    int64_t *iters = ddn_ctx_scratch(ctx, (size_t)(B + 1) * sizeof *iters);
    unsigned char *active = ddn_ctx_scratch(ctx, (size_t)(B + 1));
    if (!Ad || !iters || !active) return NULL;
    double *uh = Ad + B * m * m, *un = uh + B * mk, *zh = un + B * mk, *cst = zh + B * mk;
    double *Qs = cst + B * k, *tau = Qs + mk, *sig = tau + k, *keep = sig + B;
    double *step = keep + B, *sgn = step + B, *fpd = sgn + B, *ay = fpd + B;
    if (ddn_tensor_to_host(A, DDN_DTYPE_F64, Ad) != DDN_OK ||
        ddn_ied_check_finite_nonzero_(ctx, meth, B, m, Ad) != DDN_OK)
        return NULL;
    bool shifted = false;
    for (int64_t b = 0; b < B; b++) {
        sig[b] = 0;
        if (o->shift) { /* Gershgorin, as the solver (PMAF-MATH §6) */
            double lo = INFINITY;
            for (int64_t i = 0; i < m; i++) {
                double r = 0;
                for (int64_t j = 0; j < m; j++)
                    if (j != i) r += fabs(Ad[b * m * m + i * m + j]);
                lo = fmin(lo, Ad[b * m * m + i * m + i] - r);
            }
            sig[b] = lo < 0 ? -lo : 0;
            shifted |= sig[b] != 0;
        }
        if (start_item(b, m, k, o, Qs, tau, uh + b * mk) != 0) {
            ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "ied (%s): item %lld: LAPACK geqrf/orgqr "
                              "failed on the start (%lldx%lld)", meth, (long long)b,
                              (long long)m, (long long)k);
            return NULL;
        }
        iters[b] = 0;
        active[b] = 1;
    }
    for (int64_t i = 0; i < B * mk; i++) /* the start as the dtype holds it */
        uh[i] = f32 ? (double)(float)uh[i] : uh[i];
    ddn_tensor *U = constant(ctx, dt, DDN_SHAPE(B, m, k), uh);
    ddn_tensor *sig_t = shifted ? constant(ctx, dt, DDN_SHAPE(B, 1, 1), sig) : NULL;
    if (!U || (shifted && !sig_t)) return NULL;

    int64_t n_active = B;
    for (int64_t t = 0; t < o->max_iter && n_active > 0; t++) {
        ddn_tensor *Z = ddn_matmul(ctx, A, U); /* (A + sigma I) U, recorded */
        if (sig_t) Z = ddn_add(ctx, Z, ddn_mul(ctx, sig_t, U));
        if (!Z || ddn_tensor_to_host(Z, DDN_DTYPE_F64, zh) != DDN_OK) return NULL;
        for (int64_t b = 0; b < B; b++) {
            if (!active[b]) continue;
            double nz = sqrt(col_dot(m, k, zh + b * mk, zh + b * mk, 0));
            if (!isfinite(nz) || nz == 0) {
                ddn_ctx_set_error(ctx, nz == 0 ? DDN_ERR_SINGULAR : DDN_ERR_NUMERIC,
                                  "ied (%s): item %lld of %lld (A %lldx%lld): %s at iteration "
                                  "%lld", meth, (long long)b, (long long)B, (long long)m,
                                  (long long)m, nz == 0 ? "A u = 0 (no dominant eigenvalue; the "
                                  "unrolled iteration does not restart)" : "||A u|| overflowed",
                                  (long long)t + 1);
                return NULL;
            }
        }
        ddn_tensor *Un;
        if (k == 1) { /* Eq. 13 */
            ddn_tensor *nz = ddn_sqrt(ctx, ddn_sum(ctx, ddn_mul(ctx, Z, Z), 1, (const int[]){1},
                                                  true));
            Un = ddn_div(ctx, Z, nz);
        } else {
            Un = ddn_ied_qr_(ctx, Z);
        }
        if (!Un || ddn_tensor_to_host(Un, DDN_DTYPE_F64, un) != DDN_OK) return NULL;
        /* Sign alignment (Eq. 16) and the step test on the first column, as the solver. */
        bool all_one = true, any_kept = false;
        for (int64_t b = 0; b < B; b++) {
            keep[b] = active[b] ? 0 : 1;
            any_kept |= !active[b];
            for (int64_t j = 0; j < k; j++) {
                double s = col_dot(m, k, un + b * mk, uh + b * mk, j) < 0 ? -1 : 1;
                double c = !active[b] ? 0 : (o->sign & DDN_IED_SIGN_HISTORICAL) ? s : 1;
                if (j == 0 && active[b]) {
                    double d = 0;
                    for (int64_t i = 0; i < m; i++) {
                        double e = un[b * mk + i * k] - s * uh[b * mk + i * k];
                        d += e * e;
                    }
                    step[b] = sqrt(d);
                }
                cst[b * k + j] = c;
                all_one &= c == 1;
                if (active[b])
                    for (int64_t i = 0; i < m; i++)
                        uh[b * mk + i * k + j] = c * un[b * mk + i * k + j];
            }
        }
        ddn_tensor *Unext = Un;
        if (!all_one) /* flips, and 0 for converged items */
            Unext = ddn_mul(ctx, Un, constant(ctx, dt, DDN_SHAPE(B, 1, k), cst));
        if (any_kept) /* converged items keep their iterate */
            Unext = ddn_add(ctx, Unext, ddn_mul(ctx, U, constant(ctx, dt, DDN_SHAPE(B, 1, 1),
                                                                 keep)));
        if (!Unext) return NULL;
        U = Unext;
        for (int64_t b = 0; b < B; b++) {
            if (!active[b]) continue;
            iters[b]++;
            if (step[b] <= tol) {
                active[b] = 0;
                n_active--;
            }
        }
    }

    /* Hard-coded reference sign (Eq. 17) on y; a zero dot keeps the sign. */
    bool flip = false;
    for (int64_t b = 0; b < B; b++) {
        double d = 0;
        for (int64_t i = 0; i < m; i++) {
            double r = !o->ref ? 1 : f32 ? ((const float *)o->ref)[i] : ((const double *)o->ref)[i];
            d += uh[b * mk + i * k] * r;
        }
        sgn[b] = (o->sign & DDN_IED_SIGN_REFERENCE) && d < 0 ? -1 : 1;
        flip |= sgn[b] < 0;
    }
    ddn_tensor *y = k == 1 ? U : ddn_slice(ctx, U, 2, 0, 1, 1);
    y = ddn_reshape(ctx, y, DDN_SHAPE(B, m));
    if (flip) y = ddn_mul(ctx, y, constant(ctx, dt, DDN_SHAPE(B, 1), sgn));
    if (!y || ddn_tensor_to_host(y, DDN_DTYPE_F64, un) != DDN_OK) return NULL;

    /* Diagnostics: the fixed-point distance (Eq. 42) in float64 on the returned y. */
    for (int64_t b = 0; b < B; b++) {
        const double *yb = un + b * m;
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1.0, Ad + b * m * m, (int)m, yb,
                    1, 0.0, ay, 1);
        double nay = cblas_dnrm2((int)m, ay, 1), f = 0;
        for (int64_t i = 0; i < m; i++) {
            double e = yb[i] - (nay > 0 ? ay[i] / nay : 0);
            f += e * e;
        }
        fpd[b] = sqrt(f);
    }
    if (info) {
        info->iterations = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(B));
        info->converged = ddn_zeros(ctx, DDN_DTYPE_I64, DDN_SHAPE(B));
        info->fpd = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B), fpd);
        if (!info->iterations || !info->converged || !info->fpd) return NULL;
        int64_t *it = ddn_tensor_ptr(info->iterations), *cv = ddn_tensor_ptr(info->converged);
        for (int64_t b = 0; b < B; b++) {
            it[b] = iters[b];
            cv[b] = !active[b];
        }
    }
    for (int64_t b = 0; b < B && o->strict; b++)
        if (active[b]) {
            ddn_ctx_set_error(ctx, DDN_ERR_NOT_CONVERGED, "ied (%s): item %lld of %lld (A "
                              "%lldx%lld, %s) did not converge in %lld iterations (last step "
                              "%.3g, tol %g)", meth, (long long)b, (long long)B, (long long)m,
                              (long long)m, ddn_dtype_name(dt), (long long)o->max_iter, step[b],
                              tol);
            return NULL;
        }
    return y;
}
