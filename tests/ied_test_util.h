/* ddn — helpers shared by the IED layer's tests (test_ied.c, test_ied_ift.c): the paper's inputs,
 * a leaf and one forward + backward of a mode, and references built from LAPACK (syevd) in the
 * test itself: never from ddn's own output. Static inline: each test uses a subset.
 */
#ifndef DDN_IED_TEST_UTIL_H
#define DDN_IED_TEST_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "ied.h"
#include "ied_impl.h"
#include "test_util.h"

/* |G| + |G|^T, G ~ N(0, 1) (the paper's symmetric input); abs_n: |G| (non-symmetric). */
static inline void sym_abs(ddn_rng *rng, int m, double *A)
{
    for (int i = 0; i < m * m; i++) A[i] = fabs(ddn_rng_normal(rng));
    for (int i = 0; i < m; i++)
        for (int j = 0; j <= i; j++) A[i * m + j] = A[j * m + i] = A[i * m + j] + A[j * m + i];
}

static inline void abs_n(ddn_rng *rng, int n, double *A)
{
    for (int i = 0; i < n; i++) A[i] = fabs(ddn_rng_normal(rng));
}

/* The tightly converged solve the gradient checks differentiate (the float64 step floor is
 * ~2e-16, so 1e-14 is met; the cap only bounds a pathological run). */
static inline ddn_ied_opts tight(void)
{
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.tol = 1e-14;
    o.max_iter = 5000;
    return o;
}

/* Spectrum l (descending |.|) in a random orthogonal basis: A = Q diag(l) Q^T, exactly symmetric;
 * y (may be NULL) = Q's first column, the eigenvector of l[0] (sign: sum >= 0). */
static inline void spectrum_matrix(ddn_rng *rng, int m, const double *l, double *A, double *y)
{
    double *Q = malloc(sizeof(double) * m * m), *tau = malloc(sizeof(double) * m);
    for (int i = 0; i < m * m; i++) Q[i] = ddn_rng_normal(rng);
    assert_int_equal(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, m, Q, m, tau), 0);
    assert_int_equal(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, m, m, Q, m, tau), 0);
    for (int i = 0; i < m; i++)
        for (int j = i; j < m; j++) {
            double s = 0;
            for (int k = 0; k < m; k++) s += Q[i * m + k] * l[k] * Q[j * m + k];
            A[i * m + j] = A[j * m + i] = s;
        }
    double s = 0;
    for (int i = 0; y && i < m; i++) s += (y[i] = Q[i * m]);
    for (int i = 0; y && i < m && s < 0; i++) y[i] = -y[i];
    free(Q), free(tau);
}

/* A leaf (B, m, m) of dtype dt from float64 host values (rounded for float32). */
static inline ddn_tensor *leaf(ddn_ctx *ctx, ddn_dtype dt, int B, int m, const double *A)
{
    ddn_tensor *t64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), A);
    ddn_tensor *t = dt == DDN_DTYPE_F64 ? t64 : ddn_tensor_new(ctx, dt, DDN_SHAPE(B, m, m));
    assert_non_null(t);
    if (t != t64) assert_ok(ctx, ddn_tensor_copy_(t, t64));
    assert_ok(ctx, ddn_tensor_set_requires_grad(t, true));
    return t;
}

/* Runs one mode: y (B, m), lambda (B) (may be NULL) and g = dL/dA for L = sum(v * y), all
 * float64. The step arena is rewound afterwards. */
static inline void run_mode(ddn_ctx *ctx, ddn_dtype dt, int B, int m, const double *A, const double *v,
                     const ddn_ied_opts *o, ddn_ied_backward mode, double *y, double *lam,
                     double *g)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *At = leaf(ctx, dt, B, m, A), *lt = NULL;
    ddn_tensor *yt = ddn_ied(ctx, At, o, mode, lam ? &lt : NULL, NULL);
    if (!yt) fail_msg("ddn_ied %s: %s", ddn_ied_mode_name_(mode), ddn_ctx_errmsg(ctx));
    assert_int_equal(yt->dtype, dt);
    ddn_tensor *v64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), v);
    ddn_tensor *vt = dt == DDN_DTYPE_F64 ? v64 : ddn_tensor_new(ctx, dt, DDN_SHAPE(B, m));
    if (vt != v64) assert_ok(ctx, ddn_tensor_copy_(vt, v64));
    if (g) {
        assert_ok(ctx, ddn_backward_with_grad(ctx, yt, vt));
        assert_int_equal(At->grad->dtype, dt); /* gradients in the input's dtype */
        assert_ok(ctx, ddn_tensor_to_host(At->grad, DDN_DTYPE_F64, g));
    }
    if (y) assert_ok(ctx, ddn_tensor_to_host(yt, DDN_DTYPE_F64, y));
    if (lam) assert_ok(ctx, ddn_tensor_to_host(lt, DDN_DTYPE_F64, lam));
    ddn_ctx_rewind(ctx, mark);
}

/* LAPACK syevd: w ascending; top eigenvector (largest eigenvalue, Perron for A >= 0) with the
 * default reference sign (sum >= 0). */
static inline double top_eig(int m, const double *A, double *y)
{
    double *Z = malloc(sizeof(double) * m * m), *w = malloc(sizeof(double) * m);
    memcpy(Z, A, sizeof(double) * m * m);
    assert_int_equal(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', m, Z, m, w), 0);
    double s = 0, lam = w[m - 1];
    for (int i = 0; i < m; i++) s += (y[i] = Z[i * m + m - 1]);
    if (s < 0)
        for (int i = 0; i < m; i++) y[i] = -y[i];
    free(Z), free(w);
    return lam;
}

/* The closed form of PMAF-MATH §2 built from a full syevd in the test: G = (lambda I - A)^+ v y^T,
 * the gradient of the top eigenvector of symmetric A w.r.t. a general (entrywise) A. */
static inline void closed_form_G(int m, const double *A, const double *v, double *G)
{
    double *Z = malloc(sizeof(double) * m * m), *w = malloc(sizeof(double) * m);
    double *u = calloc((size_t)m, sizeof(double)), *y = malloc(sizeof(double) * m);
    memcpy(Z, A, sizeof(double) * m * m);
    assert_int_equal(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', m, Z, m, w), 0);
    double s = 0;
    for (int i = 0; i < m; i++) s += (y[i] = Z[i * m + m - 1]);
    for (int i = 0; i < m; i++) y[i] = s < 0 ? -y[i] : y[i];
    for (int j = 0; j < m - 1; j++) {
        double c = 0;
        for (int i = 0; i < m; i++) c += Z[i * m + j] * v[i];
        for (int i = 0; i < m; i++) u[i] += Z[i * m + j] * c / (w[m - 1] - w[j]);
    }
    for (int i = 0; i < m; i++)
        for (int k = 0; k < m; k++) G[i * m + k] = u[i] * y[k];
    free(Z), free(w), free(u), free(y);
}

/* max |a - b| / max |b| */
static inline double rel_max(int n, const double *a, const double *b)
{
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i])), s = fmax(s, fabs(b[i]));
    return d / s;
}

#endif
