/* ddn — tests of IED's power iteration as block code (declarative/ied_power_blk.h), the algorithm
 * the CUDA backend runs one item per block, here through the CPU backend's ied_power kernel (the
 * same source on one thread) and its driver ddn_ied_power_solve.
 *
 * The reference is the CPU solver ddn_ied_solve (ied_solver_tmpl.h: BLAS / LAPACK, itself tested
 * against syevd and geev in test_ied_solver.c): a separate implementation of the same rules, so
 * that every option (shift, starts, signs, reference vector, gap check, restarts, errors,
 * strictness) must give the same answer, diagnostics and messages. Tolerances: the two sum in
 * different orders (the block code in double, float32 BLAS in float32), so an iteration may stop
 * one step apart; y then differs by about the step tolerance (1e-12 float64, 1e-6 float32) over
 * 1 - |lambda2 / lambda| — bounded below by 2e-10 and 2e-5 on these inputs.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ied_impl.h"
#include "ied_solver.h"
#include "test_util.h"

static void sym_abs(ddn_rng *rng, int m, double *A)
{
    for (int i = 0; i < m * m; i++) A[i] = fabs(ddn_rng_normal(rng));
    for (int i = 0; i < m; i++)
        for (int j = 0; j <= i; j++) A[i * m + j] = A[j * m + i] = A[i * m + j] + A[j * m + i];
}

typedef enum input_kind { SYM, NONSYM, NEG_SYM, GAUSS_SYM } input_kind;

/* B items of the kind: |G| + |G|^T, |G|, -(|G| + |G|^T) (a negative dominant eigenvalue: the
 * historical sign matters) or G + G^T (eigenvalues of both signs: the shift matters). */
static void make_input(ddn_rng *rng, input_kind kind, int B, int m, double *A)
{
    for (int b = 0; b < B; b++) {
        double *a = A + (size_t)b * m * m;
        if (kind == NONSYM) {
            for (int i = 0; i < m * m; i++) a[i] = fabs(ddn_rng_normal(rng));
        } else if (kind == GAUSS_SYM) {
            for (int i = 0; i < m * m; i++) a[i] = ddn_rng_normal(rng);
            for (int i = 0; i < m; i++)
                for (int j = 0; j <= i; j++)
                    a[i * m + j] = a[j * m + i] = a[i * m + j] + a[j * m + i];
        } else {
            sym_abs(rng, m, a);
            if (kind == NEG_SYM)
                for (int i = 0; i < m * m; i++) a[i] = -a[i];
        }
    }
}

/* Both solvers on A (B, m, m) of dtype dt; returns the statuses, fills y and info of each. */
static void run_both(ddn_ctx *ctx, ddn_dtype dt, int B, int m, const double *A,
                     const ddn_ied_opts *o, ddn_status *st_ref, ddn_status *st_blk,
                     char *msg_ref, char *msg_blk, double *y_ref, double *y_blk,
                     ddn_ied_info *i_ref, ddn_ied_info *i_blk)
{
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *a64 = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), A);
    ddn_tensor *a = dt == DDN_DTYPE_F64 ? a64 : ddn_tensor_new(ctx, dt, DDN_SHAPE(B, m, m));
    assert_non_null(a);
    if (a != a64) assert_ok(ctx, ddn_tensor_copy_(a, a64));
    ddn_tensor *yr = ddn_tensor_new(ctx, dt, DDN_SHAPE(B, m));
    ddn_tensor *yb = ddn_tensor_new(ctx, dt, DDN_SHAPE(B, m));
    assert_non_null(yr);
    assert_non_null(yb);
    assert_ok(ctx, ddn_tensor_fill(yr, 0));
    assert_ok(ctx, ddn_tensor_fill(yb, 0));

    ddn_ied_out out = {.y = ddn_tensor_ptr(yr), .info = i_ref};
    *st_ref = ddn_ied_solve(ctx, dt, B, m, ddn_tensor_ptr(a), o, &out);
    snprintf(msg_ref, 512, "%s", *st_ref == DDN_OK ? "" : ddn_ctx_errmsg(ctx));
    ddn_ctx_clear_error(ctx);
    *st_blk = o->method == DDN_IED_SI && o->k > 1 ? ddn_ied_si_solve(ctx, a, o, yb, i_blk)
                                                  : ddn_ied_power_solve(ctx, a, o, yb, i_blk);
    snprintf(msg_blk, 512, "%s", *st_blk == DDN_OK ? "" : ddn_ctx_errmsg(ctx));
    ddn_ctx_clear_error(ctx);
    assert_ok(ctx, ddn_tensor_to_host(yr, DDN_DTYPE_F64, y_ref));
    assert_ok(ctx, ddn_tensor_to_host(yb, DDN_DTYPE_F64, y_blk));
    ddn_ctx_rewind(ctx, mark);
}

static void close_rel(double a, double b, double rel, double abs_, const char *what, int item)
{
    if (!(fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + abs_))
        fail_msg("%s, item %d: block %.17g vs solver %.17g", what, item, b, a);
}

/* One configuration: every output and diagnostic of every item agrees. */
static void check_case(ddn_ctx *ctx, ddn_dtype dt, input_kind kind, int B, int m,
                       const ddn_ied_opts *o, uint64_t seed)
{
    const bool f32 = dt == DDN_DTYPE_F32;
    ddn_rng rng;
    ddn_rng_seed(&rng, seed);
    double *A = malloc(sizeof(double) * (size_t)(B * m * m + 2 * B * m));
    ddn_ied_info *ir = calloc((size_t)B, sizeof *ir), *ib = calloc((size_t)B, sizeof *ib);
    char mr[512], mb[512];
    double *yr = A + B * m * m, *yb = yr + B * m;
    make_input(&rng, kind, B, m, A);
    ddn_status sr, sb;
    run_both(ctx, dt, B, m, A, o, &sr, &sb, mr, mb, yr, yb, ir, ib);
    if (sr != DDN_OK) fail_msg("reference solver failed: %s", mr);
    if (sb != DDN_OK) fail_msg("block solver failed: %s", mb);
    const double ytol = f32 ? 2e-5 : 2e-10, rtol = f32 ? 1e-5 : 1e-12;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < m; i++) close_rel(yr[b * m + i], yb[b * m + i], 0, ytol, "y", b);
        assert_int_equal(ib[b].converged, ir[b].converged);
        assert_int_equal(ib[b].symmetric, ir[b].symmetric);
        if (llabs(ib[b].iterations - ir[b].iterations) > 1)
            fail_msg("item %d: %lld iterations vs the solver's %lld", b,
                     (long long)ib[b].iterations, (long long)ir[b].iterations);
        close_rel(ir[b].lambda, ib[b].lambda, rtol, 0, "lambda", b);
        close_rel(ir[b].shift, ib[b].shift, 1e-15, 0, "shift", b);
        /* fpd and eigen distance measure y's own error: equal to the y tolerance's order */
        close_rel(ir[b].fpd, ib[b].fpd, 0, 2 * ytol, "fpd", b);
        close_rel(ir[b].eigen_dist, ib[b].eigen_dist, 0, 2 * ytol * fabs(ir[b].lambda),
                  "eigen_dist", b);
        if (o->check_gap) {
            /* both stop their estimate when it changes by < 1e-5 relative */
            close_rel(ir[b].gap_ratio, ib[b].gap_ratio, 1e-3, 0, "gap_ratio", b);
            close_rel(ir[b].lambda2, ib[b].lambda2, 1e-3, 1e-9, "lambda2", b);
            assert_int_equal(ib[b].tied, ir[b].tied);
            if (llabs(ib[b].gap_steps - ir[b].gap_steps) > 2)
                fail_msg("item %d: gap check %lld steps vs the solver's %lld", b,
                         (long long)ib[b].gap_steps, (long long)ir[b].gap_steps);
        } else {
            assert_true(ib[b].gap_ratio == 0 && ib[b].gap_steps == 0 && !ib[b].tied);
        }
    }
    free(A), free(ir), free(ib);
}

static void test_options(void **state)
{
    (void)state;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    static const int ms[] = {1, 2, 3, 8, 17, 40, 96};
    for (int d = 0; d < 2; d++) {
        const ddn_dtype dt = d ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            const int m = ms[mi];
            ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
            check_case(ctx, dt, SYM, 3, m, &o, 10 + mi);       /* Lanczos gap check */
            check_case(ctx, dt, NONSYM, 3, m, &o, 20 + mi);    /* power gap check */
            check_case(ctx, dt, NEG_SYM, 2, m, &o, 30 + mi);   /* historical sign flips */
            o.shift = true;
            check_case(ctx, dt, GAUSS_SYM, 2, m, &o, 40 + mi); /* Gershgorin shift */
            o = DDN_IED_OPTS_DEFAULT;
            o.random_init = true, o.seed = 7;
            check_case(ctx, dt, SYM, 2, m, &o, 50 + mi);
            o = DDN_IED_OPTS_DEFAULT;
            o.sign = DDN_IED_SIGN_REFERENCE, o.check_gap = false;
            check_case(ctx, dt, SYM, 2, m, &o, 60 + mi);
        }
    }
    ddn_ctx_free(ctx);
}

/* A given reference vector (of the dtype), and a cap that stops before convergence. */
static void test_reference_and_cap(void **state)
{
    (void)state;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    const int m = 12;
    double ref64[12];
    float ref32[12];
    for (int i = 0; i < m; i++) ref64[i] = ref32[i] = (float)(i % 3 == 0 ? -1.0 : 0.25);
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.ref = ref64;
    check_case(ctx, DDN_DTYPE_F64, SYM, 3, m, &o, 70);
    o.ref = ref32;
    check_case(ctx, DDN_DTYPE_F32, SYM, 3, m, &o, 71);
    o = DDN_IED_OPTS_DEFAULT;
    o.max_iter = 2; /* not converged, not strict: both report it and return the iterate */
    check_case(ctx, DDN_DTYPE_F64, NONSYM, 3, m, &o, 72);
    ddn_ctx_free(ctx);
}

/* SI (ied_si_device.c) on the CPU backend: batched products and LAPACK QR per iteration, items
 * frozen as they converge, against the per-item solver. */
static void test_si(void **state)
{
    (void)state;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    static const int ks[] = {2, 3, 8};
    for (int d = 0; d < 2; d++) {
        const ddn_dtype dt = d ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
            o.method = DDN_IED_SI, o.k = ks[ki];
            check_case(ctx, dt, SYM, 3, 12, &o, 80 + ki);
            check_case(ctx, dt, NONSYM, 3, 9, &o, 90 + ki);
            check_case(ctx, dt, NEG_SYM, 2, 10, &o, 100 + ki);
            o.shift = true;
            check_case(ctx, dt, GAUSS_SYM, 2, 10, &o, 110 + ki);
            o.shift = false, o.random_init = true, o.seed = 3;
            check_case(ctx, dt, SYM, 2, 16, &o, 120 + ki);
            o.random_init = false, o.sign = DDN_IED_SIGN_REFERENCE;
            check_case(ctx, dt, SYM, 2, 16, &o, 130 + ki);
        }
        ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
        o.method = DDN_IED_SI, o.k = 4;
        o.max_iter = 3;
        check_case(ctx, dt, SYM, 3, 12, &o, 140);
        o.max_iter = 1000, o.k = 6;
        check_case(ctx, dt, SYM, 2, 6, &o, 141); /* k = m */
        o.k = 1;
        check_case(ctx, dt, SYM, 2, 6, &o, 142); /* one column: the power kernel */
    }
    ddn_ctx_free(ctx);
}

/* One item's failure: both fail with the same status and message. */
static void check_failure(ddn_ctx *ctx, ddn_dtype dt, int B, int m, const double *A,
                          const ddn_ied_opts *o, ddn_status want)
{
    double *y = malloc(sizeof(double) * (size_t)(2 * B * m));
    ddn_ied_info *ir = calloc((size_t)B, sizeof *ir), *ib = calloc((size_t)B, sizeof *ib);
    char mr[512], mb[512];
    ddn_status sr, sb;
    run_both(ctx, dt, B, m, A, o, &sr, &sb, mr, mb, y, y + B * m, ir, ib);
    if (sr != want || sb != want)
        fail_msg("want status %d, solver %d (%s), block %d (%s)", want, sr, mr, sb, mb);
    if (strcmp(mr, mb) != 0) fail_msg("messages differ:\n  solver: %s\n  block:  %s", mr, mb);
    free(y), free(ir), free(ib);
}

static void test_failures(void **state)
{
    (void)state;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    for (int d = 0; d < 2; d++) {
        const ddn_dtype dt = d ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        /* item 1 of 3 has a NaN, item 2 is zero: the lowest failing item is named */
        double A[3 * 4] = {2, 1, 1, 2, 1, NAN, 0, 1, 0, 0, 0, 0};
        check_failure(ctx, dt, 3, 2, A, &o, DDN_ERR_NUMERIC);
        double Z[2 * 4] = {2, 1, 1, 2, 0, 0, 0, 0};
        check_failure(ctx, dt, 2, 2, Z, &o, DDN_ERR_SINGULAR);
        /* nilpotent: A ones = e_1, A e_1 = 0, and the random restart dies the same way */
        double N[4] = {0, 1, 0, 0};
        check_failure(ctx, dt, 1, 2, N, &o, DDN_ERR_SINGULAR);
        double H[4] = {1.5e308, 1.5e308, 1.5e308, 1.5e308}; /* A u overflows (float64) */
        if (dt == DDN_DTYPE_F64) check_failure(ctx, dt, 1, 2, H, &o, DDN_ERR_NUMERIC);
        ddn_ied_opts s = o;
        s.strict = true, s.max_iter = 1;
        double P[9] = {3, 1, 0, 1, 2, 1, 0, 1, 1};
        check_failure(ctx, dt, 1, 3, P, &s, DDN_ERR_NOT_CONVERGED);
        ddn_ied_opts si = o;
        si.method = DDN_IED_SI, si.k = 2;
        check_failure(ctx, dt, 3, 2, A, &si, DDN_ERR_NUMERIC);
        check_failure(ctx, dt, 2, 2, Z, &si, DDN_ERR_SINGULAR);
        double N3[9] = {0, 1, 0, 0, 0, 1, 0, 0, 0}; /* nilpotent: A^3 = 0 */
        check_failure(ctx, dt, 1, 3, N3, &si, DDN_ERR_SINGULAR);
        double mixed[3 * 9]; /* the nilpotent item fails mid-run while the others iterate on */
        for (int i = 0; i < 9; i++) mixed[i] = mixed[18 + i] = P[i], mixed[9 + i] = N3[i];
        check_failure(ctx, dt, 3, 3, mixed, &si, DDN_ERR_SINGULAR);
        check_failure(ctx, dt, 3, 3, mixed, &o, DDN_ERR_SINGULAR);
        si.strict = true, si.max_iter = 1;
        check_failure(ctx, dt, 1, 3, P, &si, DDN_ERR_NOT_CONVERGED);
    }
    ddn_ctx_free(ctx);
}

/* The start in A's null space (A ones = 0): one seeded random restart, then convergence. */
static void test_restart(void **state)
{
    (void)state;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    double A[9] = {2, -1, -1, -1, 2, -1, -1, -1, 2}, y[6]; /* K3's Laplacian: A ones = 0 */
    ddn_ied_info ir, ib;
    char mr[512], mb[512];
    ddn_status sr, sb;
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.check_gap = false; /* the Laplacian's top eigenvalue 3 is double: a tie by design */
    run_both(ctx, DDN_DTYPE_F64, 1, 3, A, &o, &sr, &sb, mr, mb, y, y + 3, &ir, &ib);
    assert_ok(ctx, sr);
    assert_ok(ctx, sb);
    assert_true(ib.converged && ir.converged);
    for (int i = 0; i < 3; i++) close_rel(y[i], y[3 + i], 0, 1e-10, "y", 0);
    close_rel(ir.lambda, ib.lambda, 1e-12, 0, "lambda", 0);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_reference_and_cap),
        cmocka_unit_test(test_si),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
