/* ddn — tests of the IED E-mode backward's block algorithm (declarative/ied_backward_blk.h), the
 * code the CUDA backend runs one block per item, here in its CPU instance (the ied_vjp_e kernel
 * of the CPU table): against the LAPACK path of declarative/ied_backward.c (the layer's CPU
 * backward, and ddn_ied_ift_solve_ for the IFT path taken), on random symmetric and non-symmetric
 * matrices in float32 and float64, a nearly tied spectrum (the LU fallback), exactly tied ones
 * (the singular decision), NaN inputs, and the device path's reporting (ddn_ied_vjp_e_device_,
 * run on the CPU). Reference values never come from the block code itself.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "ddn_impl.h"
#include "ied_backward_blk.h"
#include "ied_test_util.h"

/* Tolerances, relative to the largest gradient entry (rel_max). Both paths compute in float64
 * from the same inputs of dtype dt. float64: they differ by summation order and, for IFT_E, where
 * each Neumann iteration stops (relative residual <= 1e-12, so the solutions differ by up to
 * ~1e-12 cond(H), cond(H) <~ 1e2 on these matrices): bound 1e-9. float32: each path rounds its
 * float64 value once; values that close round alike except across a rounding boundary, one
 * float32 ulp apart (<= 2^-23 of the largest entry): bound 2.5e-7. */
static double tol_of(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? 2.5e-7 : 1e-9; }

static ddn_tensor *tens(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                        const double *x)
{
    ddn_tensor *t64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, x);
    ddn_tensor *t = dt == DDN_DTYPE_F64 ? t64 : ddn_tensor_new(ctx, dt, ndim, shape);
    assert_non_null(t);
    if (t != t64) assert_ok(ctx, ddn_tensor_copy_(t, t64));
    return t;
}

/* The CPU instance: g (B, m, m) = the gradient added to a zero dA of dtype dt (g may be NULL:
 * solve only); items (B). A, y, v float64 values, rounded to dt for the call. */
static ddn_status blk_run(ddn_ctx *ctx, ddn_dtype dt, bool ift, int B, int m, const double *A,
                          const double *y, const double *v, double *g, ddn_ied_vjp_item *items)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *At = tens(ctx, dt, DDN_SHAPE(B, m, m), A), *yt = tens(ctx, dt, DDN_SHAPE(B, m), y);
    ddn_tensor *vt = tens(ctx, dt, DDN_SHAPE(B, m), v);
    ddn_tensor *dA = g ? ddn_zeros(ctx, dt, DDN_SHAPE(B, m, m)) : NULL;
    double *z = malloc(sizeof(double) * (size_t)m);
    ddn_ied_ift_probe_(m, z);
    ddn_status st = ddn_k(At)->ied_vjp_e(dA, At, yt, vt, ift, z, items);
    if (st == DDN_OK && g) assert_ok(ctx, ddn_tensor_to_host(dA, DDN_DTYPE_F64, g));
    free(z);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

static bool solved(const ddn_ied_vjp_item *it)
{
    return it->code == DDN_IEDB_LU || it->code == DDN_IEDB_NEUMANN;
}

/* The LAPACK path's IFT_E solve of one item on the values a dtype-dt call sees (A and v rounded
 * to dt, y renormalised in float64): its status, path and sweeps. */
static ddn_status lapack_ift(ddn_ctx *ctx, ddn_dtype dt, int m, const double *A, const double *y,
                             const double *v, ddn_ied_ift_path *used, int64_t *sweeps)
{
    double *Ar = malloc(sizeof(double) * m * m), *yr = malloc(sizeof(double) * m);
    double *vr = malloc(sizeof(double) * m), *k = malloc(sizeof(double) * m), ny = 0;
    for (int i = 0; i < m * m; i++) Ar[i] = dt == DDN_DTYPE_F32 ? (float)A[i] : A[i];
    for (int i = 0; i < m; i++) {
        yr[i] = dt == DDN_DTYPE_F32 ? (float)y[i] : y[i];
        vr[i] = dt == DDN_DTYPE_F32 ? (float)v[i] : v[i];
        ny += yr[i] * yr[i];
    }
    for (int i = 0; i < m && ny > 0; i++) yr[i] /= sqrt(ny);
    ddn_status st = ddn_ied_ift_solve_(ctx, DDN_IED_IFT_AUTO, m, Ar, yr, vr, k, used, sweeps);
    ddn_ctx_clear_error(ctx);
    free(Ar), free(yr), free(vr), free(k);
    return st;
}

/* One comparison: the layer (forward, then the LAPACK backward) against the block code on the
 * forward's y, item by item; for IFT_E also the path each took. Returns the smallest rcond the
 * block code reported on an LU-solved item (1 when none). */
static double compare(ddn_ctx *ctx, ddn_dtype dt, ddn_ied_backward mode, int B, int m,
                      const double *A, const double *v, const ddn_ied_opts *o, const char *what)
{
    const bool ift = mode == DDN_IED_BACKWARD_IFT_E;
    const size_t mm = (size_t)B * m * m;
    double *y = malloc(sizeof(double) * B * m), *gl = malloc(sizeof(double) * mm);
    double *gb = malloc(sizeof(double) * mm);
    ddn_ied_vjp_item *items = malloc(sizeof *items * B);
    run_mode(ctx, dt, B, m, A, v, o, mode, y, NULL, gl);
    assert_ok(ctx, blk_run(ctx, dt, ift, B, m, A, y, v, gb, items));
    double rmin = 1;
    int lu = 0, neumann = 0;
    for (int b = 0; b < B; b++) {
        if (!solved(&items[b]))
            fail_msg("%s: item %d failed with code %d", what, b, items[b].code);
        if (items[b].code == DDN_IEDB_LU) rmin = fmin(rmin, items[b].rcond), lu++;
        else neumann++;
        if (!ift) continue;
        ddn_ied_ift_path used;
        int64_t sweeps;
        assert_ok(ctx, lapack_ift(ctx, dt, m, A + b * m * m, y + b * m, v + b * m, &used,
                                  &sweeps));
        /* the same path; the same sweeps, up to one where a residual sits at the tolerance
         * (the two sum in different orders; equal on every case here when last run) */
        if ((used == DDN_IED_IFT_LU) != (items[b].code == DDN_IEDB_LU) ||
            llabs(sweeps - items[b].sweeps) > 1)
            fail_msg("%s: item %d: LAPACK path %s after %lld sweeps, block %s after %lld", what,
                     b, used == DDN_IED_IFT_LU ? "LU" : "Neumann", (long long)sweeps,
                     items[b].code == DDN_IEDB_LU ? "LU" : "Neumann",
                     (long long)items[b].sweeps);
    }
    /* m = 1: a unit vector in one dimension is constant (P = 0), the reference gradient exactly
     * 0: then the block's must be 0 too (absolute) */
    double e = 0, ref = 0;
    for (size_t i = 0; i < mm; i++) ref = fmax(ref, fabs(gl[i])), e = fmax(e, fabs(gb[i]));
    if (ref > 0) e = rel_max((int)mm, gb, gl);
    if (!(e <= tol_of(dt)))
        fail_msg("%s: |block - LAPACK| / max |LAPACK| = %.2e > %.1e", what, e, tol_of(dt));
    print_message("%-44s rel %.1e  Neumann %d LU %d (min rcond %.1e)\n", what, e, neumann, lu,
                  rmin);
    free(y), free(gl), free(gb), free(items);
    return rmin;
}

static void random_v(ddn_rng *rng, int n, double *v)
{
    for (int i = 0; i < n; i++) v[i] = ddn_rng_normal(rng);
}

/* ---- random matrices: the paper's |G| + |G|^T and |G|, m from 1 to 64 ------------------------- */
static void test_random_matrices(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 601);
    const int ms[] = {1, 2, 3, 7, 16, 33, 64}, B = 3;
    const ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int mi = 0; mi < 7; mi++) {
            const int m = ms[mi];
            double *A = malloc(sizeof(double) * B * m * m), *v = malloc(sizeof(double) * B * m);
            char what[96];
            for (int sym = 1; sym >= 0; sym--) {
                for (int b = 0; b < B; b++) {
                    if (sym)
                        sym_abs(&rng, m, A + b * m * m);
                    else
                        abs_n(&rng, m * m, A + b * m * m);
                }
                random_v(&rng, B * m, v);
                snprintf(what, sizeof what, "%s m=%d %s IFT_E", ddn_dtype_name(dt), m,
                         sym ? "sym" : "non-sym");
                compare(ctx, dt, DDN_IED_BACKWARD_IFT_E, B, m, A, v, &o, what);
                if (!sym) continue; /* DDN differentiates the symmetric problem only */
                snprintf(what, sizeof what, "%s m=%d sym DDN_E", ddn_dtype_name(dt), m);
                double r = compare(ctx, dt, DDN_IED_BACKWARD_DDN_E, B, m, A, v, &o, what);
                assert_true(r >= 1e-3); /* far from the singular threshold (~1e-13) */
            }
            free(A), free(v);
        }
    ddn_ctx_free(ctx);
}

/* ---- |lambda_2 / lambda| close to 1: the Neumann iteration gives up, the LU answers ------------ */
static void test_lu_fallback(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 602);
    const int B = 2;
    ddn_ied_opts o = tight();
    o.max_iter = 200000; /* PI itself converges at the ratio: ~1600 sweeps at 0.98 */
    const int ms[] = {12, 40};
    const double ratios[] = {0.98, 0.95};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int c = 0; c < 2; c++) {
            const int m = ms[c];
            double *A = malloc(sizeof(double) * B * m * m), *v = malloc(sizeof(double) * B * m);
            double *l = malloc(sizeof(double) * m);
            l[0] = 1, l[1] = ratios[c];
            for (int i = 2; i < m; i++) l[i] = 0.5 - (double)(i - 2) / m;
            for (int b = 0; b < B; b++) spectrum_matrix(&rng, m, l, A + b * m * m, NULL);
            random_v(&rng, B * m, v);
            if (dt == DDN_DTYPE_F32) o.tol = 1e-6; /* float32's step floor */
            char what[96];
            snprintf(what, sizeof what, "%s m=%d ratio %.2f IFT_E (fallback)",
                     ddn_dtype_name(dt), m, ratios[c]);
            compare(ctx, dt, DDN_IED_BACKWARD_IFT_E, B, m, A, v, &o, what);
            /* the fallback was taken: by the block code on each item, and compare() checked
             * that the LAPACK path took it too */
            ddn_ied_vjp_item it[2];
            double *y = malloc(sizeof(double) * B * m);
            run_mode(ctx, dt, B, m, A, v, &o, DDN_IED_BACKWARD_IFT_E, y, NULL, NULL);
            assert_ok(ctx, blk_run(ctx, dt, true, B, m, A, y, v, NULL, it));
            for (int b = 0; b < B; b++) {
                assert_int_equal(it[b].code, DDN_IEDB_LU);
                assert_true(it[b].sweeps >= 4 && it[b].sweeps < ddn_iedb_budget(m));
            }
            free(y);
            snprintf(what, sizeof what, "%s m=%d ratio %.2f DDN_E", ddn_dtype_name(dt), m,
                     ratios[c]);
            compare(ctx, dt, DDN_IED_BACKWARD_DDN_E, B, m, A, v, &o, what);
            o.tol = 1e-14;
            free(A), free(v), free(l);
        }
    ddn_ctx_free(ctx);
}

/* ---- exact ties: the singular decision, against the LAPACK path's ------------------------------
 * A repeated dominant eigenvalue makes H (IFT) and the bordered system (DDN) singular: LAPACK's
 * gecon gives rcond ~ eps there (1e-15 or 0), the random matrices above >= 1e-3; the threshold is
 * 64 n eps. A tie kept exact in float32 (a diagonal A) is singular in both dtypes; a rotated one
 * is broken by float32 rounding (~1e-7), so there both paths must just agree. */

/* The layer with the gap check off (so that the solve decides): forward, then the LAPACK
 * backward; returns the backward's status (error cleared) and the forward's y. */
static ddn_status layer_status(ddn_ctx *ctx, ddn_dtype dt, int m, const double *A, const double *v,
                               ddn_ied_backward mode, double *y)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.check_gap = false;
    ddn_tensor *At = leaf(ctx, dt, 1, m, A);
    ddn_tensor *yt = ddn_ied(ctx, At, &o, mode, NULL, NULL);
    if (!yt) fail_msg("ddn_ied: %s", ddn_ctx_errmsg(ctx));
    assert_ok(ctx, ddn_tensor_to_host(yt, DDN_DTYPE_F64, y));
    ddn_status st = ddn_backward_with_grad(ctx, yt, tens(ctx, dt, DDN_SHAPE(1, m), v));
    ddn_ctx_clear_error(ctx);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

static void test_singular_decisions(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 603);
    enum { M = 8 };
    double A[M * M], y[M], v[M], lrot[M] = {5, 5, 1, 0.5, 0.25, 0.2, -0.3, 0.1};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int c = 0; c < 4; c++) {
            /* 0: diag(5, 5, 1), y = e_1; 1: diag(5, 5, 1, 0.5), y = e_1, v = e_1 + e_3 (v misses
             * the tied direction: only the probe column sees the tie); 2: diag(5, 5, 1) with the
             * layer's own y; 3: the spectrum lrot rotated (m = 8), y its first eigenvector */
            const int m = c == 1 ? 4 : c == 3 ? M : 3;
            memset(A, 0, sizeof A);
            if (c < 3)
                for (int i = 0; i < m; i++) A[i * m + i] = i < 2 ? 5 : i == 2 ? 1 : 0.5;
            else
                spectrum_matrix(&rng, m, lrot, A, y);
            random_v(&rng, m, v);
            if (c == 1) memcpy(v, (double[]){1, 0, 1, 0}, sizeof(double) * 4);
            if (c < 2) memcpy(y, (double[]){1, 0, 0, 0}, sizeof(double) * 4);
            const bool exact = c < 3 || dt == DDN_DTYPE_F64;
            /* IFT_E: the LAPACK path's solve on the same y */
            ddn_ied_ift_path used;
            int64_t sweeps;
            ddn_ied_vjp_item it;
            if (c == 2) layer_status(ctx, dt, m, A, v, DDN_IED_BACKWARD_IFT_E, y);
            ddn_status sl = lapack_ift(ctx, dt, m, A, y, v, &used, &sweeps);
            assert_ok(ctx, blk_run(ctx, dt, true, 1, m, A, y, v, NULL, &it));
            print_message("%s case %d IFT_E: LAPACK %s, block code %d (rcond %.1e, %lld sweeps)\n",
                          ddn_dtype_name(dt), c, ddn_status_str(sl), it.code, it.rcond,
                          (long long)it.sweeps);
            assert_int_equal(sl == DDN_ERR_SINGULAR, it.code == DDN_IEDB_SINGULAR);
            if (exact) assert_int_equal(it.code, DDN_IEDB_SINGULAR);
            if (c == 1) assert_true(it.sweeps <= 8); /* the probe gave up early */
            /* DDN_E: the layer's backward (LAPACK) on its own y, the block code on that y */
            sl = layer_status(ctx, dt, m, A, v, DDN_IED_BACKWARD_DDN_E, y);
            assert_ok(ctx, blk_run(ctx, dt, false, 1, m, A, y, v, NULL, &it));
            print_message("%s case %d DDN_E: LAPACK %s, block code %d (rcond %.1e)\n",
                          ddn_dtype_name(dt), c, ddn_status_str(sl), it.code, it.rcond);
            assert_int_equal(sl == DDN_ERR_SINGULAR, it.code == DDN_IEDB_SINGULAR);
            if (exact) assert_int_equal(it.code, DDN_IEDB_SINGULAR);
        }
    ddn_ctx_free(ctx);
}

/* ---- NaN and Inf: the item fails with a status (DESIGN.md: never NaN gradients silently), as on
 * the LAPACK path, and dA is left untouched. In v: the layer's backward says DDN_ERR_NUMERIC; in
 * A (the layer's forward refuses it, so only the kernel can be given one): A y is not finite,
 * which ddn_ied_ift_solve_ reports alike. ----------------------------------------------------- */
static ddn_status layer_backward_status(ddn_ctx *ctx, ddn_dtype dt, int B, int m, const double *A,
                                        const double *v, ddn_ied_backward mode, double *y)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *At = leaf(ctx, dt, B, m, A);
    ddn_tensor *yt = ddn_ied(ctx, At, NULL, mode, NULL, NULL);
    if (!yt) fail_msg("ddn_ied: %s", ddn_ctx_errmsg(ctx));
    assert_ok(ctx, ddn_tensor_to_host(yt, DDN_DTYPE_F64, y));
    ddn_status st = ddn_backward_with_grad(ctx, yt, tens(ctx, dt, DDN_SHAPE(B, m), v));
    if (st != DDN_OK) assert_error(ctx, DDN_ERR_NUMERIC, "item 1 of 2 (A 6x6): the upstream "
                                   "gradient dL/dy contains NaN or Inf");
    ddn_ctx_rewind(ctx, mark);
    return st;
}

static void test_nonfinite(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 604);
    enum { B = 2, m = 6 };
    double A[B * m * m], v[B * m], y[B * m], g[B * m * m];
    for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
    const double bad[2] = {NAN, -INFINITY};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int ift = 0; ift <= 1; ift++)
            for (int nb = 0; nb < 2; nb++) {
                const ddn_ied_backward mode = ift ? DDN_IED_BACKWARD_IFT_E
                                                  : DDN_IED_BACKWARD_DDN_E;
                random_v(&rng, B * m, v);
                v[m + 2] = bad[nb]; /* item 1 */
                assert_int_equal(layer_backward_status(ctx, dt, B, m, A, v, mode, y),
                                 DDN_ERR_NUMERIC);
                ddn_ied_vjp_item it[B];
                assert_ok(ctx, blk_run(ctx, dt, ift, B, m, A, y, v, g, it));
                assert_true(solved(&it[0]));
                assert_int_equal(it[1].code, DDN_IEDB_NONFINITE_V);
                for (int i = 0; i < B * m * m; i++) assert_true(g[i] == 0); /* untouched */
                double An[B * m * m];
                memcpy(An, A, sizeof An);
                An[m * m + 3] = bad[nb];
                random_v(&rng, B * m, v);
                assert_ok(ctx, blk_run(ctx, dt, ift, B, m, An, y, v, g, it));
                assert_true(solved(&it[0]));
                assert_int_equal(it[1].code, DDN_IEDB_NONFINITE_A);
                for (int i = 0; i < B * m * m; i++) assert_true(g[i] == 0);
                ddn_ied_ift_path used;
                int64_t sweeps;
                assert_int_equal(lapack_ift(ctx, dt, m, An + m * m, y + m, v + m, &used,
                                            &sweeps), DDN_ERR_NUMERIC);
            }
    ddn_ctx_free(ctx);
}

/* ---- the device path's reporting (ddn_ied_vjp_e_device_), run on the CPU ------------------------
 * What ddn_ied_vjp_ runs for a CUDA A: the kernel, then the lowest failing item's message, the
 * solver's tie flag first for its own item, worded as the LAPACK path words it (compared here
 * with ddn_ied_vjp_'s message on the same inputs, up to the rcond value). */

/* Runs path (device: ddn_ied_vjp_e_device_, else ddn_ied_vjp_, the LAPACK path) on a fresh leaf;
 * returns the status, its message in msg (cleared) and the gradient in g. */
static ddn_status vjp_run(ddn_ctx *ctx, bool device, ddn_ied_backward mode, int B, int m,
                          const double *A, const double *y, const double *v,
                          const unsigned char *tied, double *g, char *msg, size_t msg_len)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *At = leaf(ctx, DDN_DTYPE_F64, B, m, A);
    ddn_tensor *yt = tens(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), y);
    ddn_tensor *vt = tens(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), v);
    assert_non_null(ddn_grad_buffer(ctx, At));
    ied_node_opts no = {.o = DDN_IED_OPTS_DEFAULT, .mode = mode};
    ied_saved sv = {.tied = (unsigned char *)tied};
    ddn_status st = device ? ddn_ied_vjp_e_device_(ctx, &no, &sv, At, yt, vt)
                           : ddn_ied_vjp_(ctx, &no, (ddn_tensor *[]){At}, yt, vt, &sv);
    snprintf(msg, msg_len, "%s", st == DDN_OK ? "" : ddn_ctx_errmsg(ctx));
    ddn_ctx_clear_error(ctx);
    assert_ok(ctx, ddn_tensor_to_host(At->grad, DDN_DTYPE_F64, g));
    ddn_ctx_rewind(ctx, mark);
    return st;
}

/* msg up to " (reciprocal condition" (the estimate differs in its digits), else whole */
static void strip_rcond(char *msg)
{
    char *p = strstr(msg, " (reciprocal condition");
    if (p) *p = 0;
}

static void test_device_path_reporting(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 605);
    enum { B = 3, m = 5 };
    double A[B * m * m], y[B * m], v[B * m], gd[B * m * m], gl[B * m * m];
    char md[512], ml[512];
    for (int b = 0; b < B; b++) sym_abs(&rng, m, A + b * m * m);
    random_v(&rng, B * m, v);
    const ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    for (int ift = 0; ift <= 1; ift++) {
        const ddn_ied_backward mode = ift ? DDN_IED_BACKWARD_IFT_E : DDN_IED_BACKWARD_DDN_E;
        run_mode(ctx, DDN_DTYPE_F64, B, m, A, v, &o, mode, y, NULL, NULL);
        unsigned char tied[B] = {0, 0, 0};
        /* all solvable: the same gradient as the LAPACK path */
        assert_ok(ctx, vjp_run(ctx, true, mode, B, m, A, y, v, tied, gd, md, sizeof md));
        assert_ok(ctx, vjp_run(ctx, false, mode, B, m, A, y, v, tied, gl, ml, sizeof ml));
        assert_true(rel_max(B * m * m, gd, gl) <= tol_of(DDN_DTYPE_F64));
        /* item 2 tied exactly (diag(5, 5, 1, 0.5, 0.25), y = e_1); with and without the tie flag
         * of item 1 or 2: the lowest failure wins, the flag on its own item; the gradient is
         * untouched; the messages are the LAPACK path's */
        double As[B * m * m], ys[B * m];
        memcpy(As, A, sizeof As);
        memcpy(ys, y, sizeof ys);
        memset(As + 2 * m * m, 0, sizeof(double) * m * m);
        for (int i = 0; i < m; i++) As[2 * m * m + i * m + i] = i < 2 ? 5 : 1.0 / (1 << (i - 2));
        for (int i = 0; i < m; i++) ys[2 * m + i] = i == 0;
        const int flags[3] = {-1, 1, 2};
        for (int f = 0; f < 3; f++) {
            memset(tied, 0, sizeof tied);
            if (flags[f] >= 0) tied[flags[f]] = 1;
            ddn_status sd = vjp_run(ctx, true, mode, B, m, As, ys, v, tied, gd, md, sizeof md);
            ddn_status sl = vjp_run(ctx, false, mode, B, m, As, ys, v, tied, gl, ml, sizeof ml);
            assert_int_equal(sd, DDN_ERR_SINGULAR);
            assert_int_equal(sl, DDN_ERR_SINGULAR);
            for (int i = 0; i < B * m * m; i++) assert_true(gd[i] == 0);
            assert_non_null(strstr(md, flags[f] == 1 ? "item 1 of 3" : "item 2 of 3"));
            assert_non_null(strstr(md, flags[f] >= 0 ? "gap check" : "is singular"));
            strip_rcond(md);
            strip_rcond(ml);
            assert_string_equal(md, ml);
        }
        /* A = 0 in item 0: IFT has no fixed point ("A y = 0"); DDN's system is singular */
        memset(As, 0, sizeof(double) * m * m);
        memset(tied, 0, sizeof tied);
        assert_int_equal(vjp_run(ctx, true, mode, B, m, As, ys, v, tied, gd, md, sizeof md),
                         DDN_ERR_SINGULAR);
        assert_int_equal(vjp_run(ctx, false, mode, B, m, As, ys, v, tied, gl, ml, sizeof ml),
                         DDN_ERR_SINGULAR);
        assert_non_null(strstr(md, ift ? "item 0 of 3: A y = 0" : "item 0 of 3: the bordered"));
        strip_rcond(md);
        strip_rcond(ml);
        assert_string_equal(md, ml);
    }
    ddn_ctx_free(ctx);
}

/* ---- the kernel's argument checks (shared with the CUDA entry: core/linalg_check.c) ----------- */
static void test_kernel_arguments(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_tensor *A = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3, 3));
    ddn_tensor *y = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 3));
    ddn_tensor *y32 = ddn_zeros(ctx, DDN_DTYPE_F32, DDN_SHAPE(2, 3));
    ddn_tensor *bad = ddn_zeros(ctx, DDN_DTYPE_F64, DDN_SHAPE(2, 4));
    ddn_ied_vjp_item items[2];
    double z[3] = {1, 2, 3};
    const ddn_kernels *k = ddn_k(A);
    assert_int_equal(k->ied_vjp_e(NULL, A, bad, y, false, NULL, items), DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "ied_vjp_e: expected A (B, m, m), y and v (B, m)");
    assert_int_equal(k->ied_vjp_e(NULL, A, y32, y, false, NULL, items), DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "one float dtype");
    assert_int_equal(k->ied_vjp_e(y, A, y, y, false, NULL, items), DDN_ERR_SHAPE);
    assert_error(ctx, DDN_ERR_SHAPE, "dA NULL or (B, m, m)");
    assert_int_equal(k->ied_vjp_e(NULL, A, y, y, true, NULL, items), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "the IFT probe z");
    assert_int_equal(k->ied_vjp_e(NULL, A, y, y, true, z, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "per-item results");
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_matrices),
        cmocka_unit_test(test_lu_fallback),
        cmocka_unit_test(test_singular_decisions),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_device_path_reporting),
        cmocka_unit_test(test_kernel_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
