/* ddn — the declarative layers' block algorithms run by blocks of several POSIX threads
 * (blk.h's DDN_BLK_THREADED emulation), against the same algorithm on one thread.
 *
 * On the GPU each batch item is one block of many threads; everywhere else the block code runs on
 * one thread, where a missing barrier, a barrier only some threads reach, or a vector one thread
 * writes and another reads too early cannot show. Here every thread of a block owns its share of
 * each loop and waits at real barriers, as on the device, so such a mistake gives a wrong answer,
 * a hang (ctest's timeout), or, in this test's ThreadSanitizer build, a race report. Thread counts
 * 7 (uneven shares) and 32; the reference is the one-thread run of the same code. The answers
 * differ only by summation order (each thread sums its share first): stated per algorithm below.
 * What this cannot check is the warp level (the __CUDACC__ branches' shuffles).
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers under -std=c11 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers under -std=c11 */
#define DDN_BLK_THREADED 1
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blk.h"
#include "ied_power.h"
#include "ied_ritz.h"
#include "ied_solver.h"
#include "less_kern.h"
#include "less_solver.h"
#include "test_util.h"

#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "ied_backward_blk.h"
#include "ied_power_blk.h"
#include "less_iter_blk.h"
#include "less_vjp_blk.h"
#undef T
#undef TS

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "ied_power_blk.h"
#undef T
#undef TS

/* ---- running one item on a block of nth threads ---------------------------------------------- */
typedef void (*item_fn)(const ddn_blk *b, void *arg);

typedef struct worker {
    ddn_blk blk;
    item_fn fn;
    void *arg;
} worker;

static void *work(void *p)
{
    worker *w = p;
    w->fn(&w->blk, w->arg);
    return NULL;
}

static void run_block(int nth, item_fn fn, void *arg)
{
    ddn_blk_shared sh;
    pthread_t th[DDN_BLK_EMU_MAX];
    worker w[DDN_BLK_EMU_MAX];
    assert_true(nth >= 1 && nth <= DDN_BLK_EMU_MAX);
    assert_int_equal(pthread_barrier_init(&sh.bar, NULL, (unsigned)nth), 0);
    for (int t = 0; t < nth; t++) {
        w[t] = (worker){.blk = {t, nth, &sh}, .fn = fn, .arg = arg};
        assert_int_equal(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < nth; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&sh.bar);
}

static const int thread_counts[] = {7, 32};

static void normals(ddn_rng *g, int64_t n, double *x)
{
    for (int64_t i = 0; i < n; i++) x[i] = ddn_rng_normal(g);
}

static void close_to(const char *what, int nth, int64_t n, const double *got, const double *ref,
                     double tol)
{
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= tol * fmax(scale, 1)))
            fail_msg("%s [%lld], %d threads: %.17g, one thread: %.17g", what, (long long)i, nth,
                     got[i], ref[i]);
}

/* ---- IED power iteration (ied_power_blk.h) --------------------------------------------------- */
typedef struct power_job {
    ddn_ied_power_params p;
    const double *A, *rnd, *gstart;
    const float *A32, *rnd32, *gstart32;
    double *y;
    float *y32;
    ddn_ied_info info;
    ddn_ied_power_err err;
    void *scratch;
} power_job;

static void power_item(const ddn_blk *b, void *arg)
{
    power_job *j = arg;
    if (j->A32)
        ied_power_item_f32(b, &j->p, j->A32, j->rnd32, NULL, j->gstart32, j->y32, &j->info,
                           &j->err, j->scratch);
    else
        ied_power_item_f64(b, &j->p, j->A, j->rnd, NULL, j->gstart, j->y, &j->info, &j->err,
                           j->scratch);
}

/* PI with the gap check on A (m, m) by nth threads: y (m), info. */
static void run_power(int nth, bool f32, int64_t m, bool shift, const double *A, const double *rnd,
                      const double *gstart, double *y, ddn_ied_info *info)
{
    const int64_t kg = m - 1 < DDN_IED_GAP_KMAX ? m - 1 : DDN_IED_GAP_KMAX;
    power_job j = {.p = {.B = 1, .m = m, .max_iter = 1000, .kgap = kg,
                         .tol = f32 ? DDN_IED_TOL_F32 : DDN_IED_TOL_F64, .tie_tol = 1e-3,
                         .sign = DDN_IED_SIGN_HISTORICAL | DDN_IED_SIGN_REFERENCE,
                         .shift = shift}};
    j.p.scratch = ddn_ied_power_scratch(m, kg, f32 ? sizeof(float) : sizeof(double));
    j.scratch = malloc(j.p.scratch);
    float *buf = f32 ? malloc(sizeof(float) * (size_t)(m * m + 3 * m)) : NULL;
    if (f32) {
        float *a = buf, *r = a + m * m, *g = r + m;
        for (int64_t i = 0; i < m * m; i++) a[i] = (float)A[i];
        for (int64_t i = 0; i < m; i++) r[i] = (float)rnd[i], g[i] = (float)gstart[i];
        j.A32 = a, j.rnd32 = r, j.gstart32 = g, j.y32 = g + m;
    } else {
        j.A = A, j.rnd = rnd, j.gstart = gstart, j.y = y;
    }
    run_block(nth, power_item, &j);
    if (f32)
        for (int64_t i = 0; i < m; i++) y[i] = j.y32[i];
    assert_int_equal(j.err.code, DDN_IED_POWER_OK);
    *info = j.info;
    free(j.scratch);
    free(buf);
}

/* y agrees to the step tolerance over the gap (as in test_ied_power.c: 2e-10, float32 2e-5);
 * iterations within one; the gap estimate to 1e-3 (its own stopping rule, 1e-5 relative). */
static void test_ied_power_threads(void **state)
{
    (void)state;
    static const int64_t ms[] = {2, 5, 33, 70};
    ddn_rng g;
    ddn_rng_seed(&g, 71);
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (int kind = 0; kind < 3; kind++) { /* |G| + |G|^T, |G|, G + G^T with the shift */
            const int64_t m = ms[mi];
            double *A = malloc(sizeof(double) * (size_t)(m * m + 4 * m));
            double *rnd = A + m * m, *gs = rnd + m, *y1 = gs + m, *yt = y1 + m;
            normals(&g, m * m, A);
            for (int64_t i = 0; i < m * m && kind < 2; i++) A[i] = fabs(A[i]);
            for (int64_t i = 0; i < m && kind != 1; i++)
                for (int64_t k = 0; k <= i; k++) A[i * m + k] = A[k * m + i] += A[i * m + k];
            normals(&g, m, rnd);
            normals(&g, m, gs);
            for (int f32 = 0; f32 < 2; f32++) {
                ddn_ied_info i1, it;
                run_power(1, f32, m, kind == 2, A, rnd, gs, y1, &i1);
                for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
                    run_power(thread_counts[t], f32, m, kind == 2, A, rnd, gs, yt, &it);
                    close_to("PI y", thread_counts[t], m, yt, y1, f32 ? 2e-5 : 2e-10);
                    assert_true(llabs(it.iterations - i1.iterations) <= 1);
                    assert_int_equal(it.symmetric, i1.symmetric);
                    assert_int_equal(it.tied, i1.tied);
                    assert_true(fabs(it.gap_ratio - i1.gap_ratio) <= 1e-3 * i1.gap_ratio);
                    assert_true(fabs(it.lambda - i1.lambda) <= 1e-9 * fabs(i1.lambda) +
                                                                    (f32 ? 1e-4 : 0));
                }
            }
            free(A);
        }
}

/* ---- IED backward, E modes (ied_backward_blk.h) ---------------------------------------------- */
typedef struct iedb_job {
    int ift;
    int64_t m;
    const double *A, *y, *v, *z;
    double *ws, *yd, *u;
    int *piv;
    ddn_iedb_out out;
} iedb_job;

static void iedb_item(const ddn_blk *b, void *arg)
{
    iedb_job *j = arg;
    ddn_iedb_item_f64(b, j->ift, j->m, j->A, j->y, j->v, j->z, j->ws, j->piv, j->yd, j->u,
                      &j->out);
}

static ddn_iedb_out run_iedb(int nth, int ift, int64_t m, const double *A, const double *y,
                             const double *v, const double *z, double *u)
{
    iedb_job j = {.ift = ift, .m = m, .A = A, .y = y, .v = v, .z = z, .u = u};
    j.ws = malloc(sizeof(double) * (size_t)(ddn_iedb_ws_doubles(m) + m));
    j.yd = j.ws + ddn_iedb_ws_doubles(m);
    j.piv = malloc(sizeof(int) * (size_t)ddn_iedb_ws_ints(m));
    run_block(nth, iedb_item, &j);
    free(j.ws);
    free(j.piv);
    return j.out;
}

/* u agrees to 1e-9 of its scale (the Neumann iteration stops at 1e-12, times cond(H); the LU
 * path to rounding); the path taken and the sweep count (within one) agree. Symmetric and
 * non-symmetric A (IFT), symmetric (DDN), and a near tie that forces IFT's LU fallback. */
static void test_ied_backward_threads(void **state)
{
    (void)state;
    static const int64_t ms[] = {3, 24, 50};
    ddn_rng g;
    ddn_rng_seed(&g, 72);
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (int kind = 0; kind < 3; kind++) { /* symmetric, non-symmetric, near tie */
            const int64_t m = ms[mi];
            double *A = malloc(sizeof(double) * (size_t)(m * m + 6 * m));
            double *v = A + m * m, *z = v + m, *y = z + m, *gs = y + m, *u1 = gs + m, *ut = u1 + m;
            normals(&g, m * m, A);
            for (int64_t i = 0; i < m * m; i++) A[i] = fabs(A[i]);
            for (int64_t i = 0; i < m && kind != 1; i++)
                for (int64_t k = 0; k <= i; k++) A[i * m + k] = A[k * m + i] += A[i * m + k];
            if (kind == 2) /* the second eigenvalue close to the first: Neumann cannot finish */
                for (int64_t i = 0; i < m * m; i++) A[i] = (i % (m + 1) == 0) * (i ? 1.0 : 1.02);
            normals(&g, m, v);
            normals(&g, m, z);
            normals(&g, m, gs);
            ddn_ied_info info;
            run_power(1, false, m, false, A, gs, gs, y, &info);
            for (int ift = 0; ift < 2; ift++) {
                if (kind == 1 && !ift) continue; /* DDN needs symmetric A */
                ddn_iedb_out o1 = run_iedb(1, ift, m, A, y, v, z, u1);
                for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
                    ddn_iedb_out ot = run_iedb(thread_counts[t], ift, m, A, y, v, z, ut);
                    assert_int_equal(ot.code, o1.code);
                    assert_true(llabs(ot.sweeps - o1.sweeps) <= 1);
                    close_to(ift ? "IFT u" : "DDN w", thread_counts[t], m, ut, u1, 1e-9);
                }
            }
            free(A);
        }
}

/* ---- LESS: the iterative forward and backward E (less_iter_blk.h, less_vjp_blk.h) ------------ */
typedef struct less_job {
    int64_t m, n;
    const double *A, *bv, *uc, *v;
    const ddn_less_iter_params *p;
    double *y, *w, nu, *dA, *db;
    int *iw;
    ddn_less_item out;
} less_job;

static void less_iter_item(const ddn_blk *b, void *arg)
{
    less_job *j = arg;
    less_blk_iterate_item_f64(b, j->m, j->n, j->A, j->bv, j->uc, j->p, j->y, j->w, &j->out);
}

static void less_vjp_item(const ddn_blk *b, void *arg)
{
    less_job *j = arg;
    less_blk_vjp_e_f64(b, j->m, j->n, j->A, j->bv, j->y, j->v, j->nu, j->dA, j->db, j->w, j->iw,
                       &j->out);
}

/* Forward: float64 iteration counts agree, and the answers to 1e-7, except where the stopping
 * test (|f_t - f_t+1| <= tol) is met within rounding of its threshold: a slow method then stops
 * a few steps apart (seen: 70 and 75 for RM + BLS-grad on a 12x20 problem, whose last steps each
 * change f by ~1e-8), so a differing count must come with both converged and objectives within
 * 100 tol. The backward E at the one-thread answer: 1e-9 of the gradients' scale (float64 LU). */
static void test_less_threads(void **state)
{
    (void)state;
    static const int64_t sizes[][2] = {{6, 4}, {20, 12}, {12, 20}, {40, 8}};
    static const unsigned methods[] = {DDN_LESS_PGD | DDN_LESS_RM | DDN_LESS_TWD,
                                       DDN_LESS_RM | DDN_LESS_BLS_GRAD, DDN_LESS_PGD | DDN_LESS_DW};
    ddn_rng g;
    ddn_rng_seed(&g, 73);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
            const int64_t m = sizes[si][0], n = sizes[si][1];
            const ddn_less_iter_params p = {.method = methods[k], .max_iter = 100, .tol = 1e-7,
                                            .bls_alpha = 0.5, .bls_beta = 0.8, .twd_beta = 0.9};
            double *A = malloc(sizeof(double) * (size_t)(3 * m * n + 3 * m + 5 * n));
            double *bv = A + m * n, *uc = bv + m, *y0 = uc + n, *y1 = y0 + n, *yt = y1 + n;
            double *v = yt + n, *dA1 = v + n, *db1 = dA1 + m * n, *dAt = db1 + m;
            double *dbt = dAt + m * n;
            /* the iteration's and the backward's work (doubles) */
            const int64_t nw = DDN_LESS_VJP_WORK(m, n) > DDN_LESS_ITER_WORK(m, n)
                                   ? DDN_LESS_VJP_WORK(m, n)
                                   : DDN_LESS_ITER_WORK(m, n);
            double *w = malloc(sizeof(double) * (size_t)nw);
            int *iw = malloc(sizeof(int) * (size_t)DDN_LESS_VJP_IWORK(n));
            normals(&g, m * n, A);
            normals(&g, m, bv);
            normals(&g, n, uc);
            normals(&g, n, y0);
            normals(&g, n, v);
            double ny = 0;
            for (int64_t i = 0; i < n; i++) ny += y0[i] * y0[i];
            for (int64_t i = 0; i < n; i++) y0[i] /= sqrt(ny);
            less_job j1 = {.m = m, .n = n, .A = A, .bv = bv, .uc = uc, .v = v, .p = &p, .y = y1,
                           .w = w, .iw = iw, .dA = dA1, .db = db1};
            memcpy(y1, y0, sizeof(double) * (size_t)n);
            run_block(1, less_iter_item, &j1);
            assert_int_equal(j1.out.code, DDN_LESS_ITEM_OK);
            j1.nu = j1.out.nu;
            run_block(1, less_vjp_item, &j1);
            assert_int_equal(j1.out.code, DDN_LESS_ITEM_OK);
            for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
                less_job jt = j1;
                jt.y = yt, jt.dA = dAt, jt.db = dbt;
                memcpy(yt, y0, sizeof(double) * (size_t)n);
                run_block(thread_counts[t], less_iter_item, &jt);
                assert_int_equal(jt.out.code, DDN_LESS_ITEM_OK);
                if (jt.out.iterations == j1.out.iterations)
                    close_to("LESS y", thread_counts[t], n, yt, y1, 1e-7);
                else if (!jt.out.converged || !j1.out.converged ||
                         !(fabs(jt.out.objective - j1.out.objective) <= 100 * p.tol))
                    fail_msg("LESS %zu (%lldx%lld), %d threads: %lld iterations (f %.17g), one "
                             "thread %lld (f %.17g)", k, (long long)m, (long long)n,
                             thread_counts[t], (long long)jt.out.iterations, jt.out.objective,
                             (long long)j1.out.iterations, j1.out.objective);
                memcpy(yt, y1, sizeof(double) * (size_t)n); /* the backward at the same y */
                run_block(thread_counts[t], less_vjp_item, &jt);
                assert_int_equal(jt.out.code, DDN_LESS_ITEM_OK);
                close_to("LESS dA", thread_counts[t], m * n, dAt, dA1, 1e-9);
                close_to("LESS db", thread_counts[t], m, dbt, db1, 1e-9);
            }
            free(A);
            free(w);
            free(iw);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ied_power_threads),
        cmocka_unit_test(test_ied_backward_threads),
        cmocka_unit_test(test_less_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
