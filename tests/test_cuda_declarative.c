/* ddn — the declarative layers in a CUDA context against the CPU (CTest label `cuda`).
 *
 * The same seeded problems go through the layers (forward, diagnostics, backward of every mode)
 * in a CPU context and in the device context, and outputs and gradients are compared with the
 * tolerances stated beside each test. Set-up, skipping without a device and the self-check mode:
 * cuda_test_util.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "ddn_impl.h"
#include "ied.h"
#include "ied_backward_blk.h"
#include "ied_impl.h"
#include "less_impl.h"
#include "pmaf.h"
#include "resnet.h"

/* |G| + |G|^T (sym) or |G| (not), G ~ N(0, 1): the paper's inputs. (B, m, m) float64. */
static void paper_input(ddn_rng *rng, bool sym, int B, int m, double *A)
{
    for (int b = 0; b < B; b++) {
        double *a = A + (size_t)b * m * m;
        for (int i = 0; i < m * m; i++) a[i] = fabs(ddn_rng_normal(rng));
        if (sym)
            for (int i = 0; i < m; i++)
                for (int j = 0; j <= i; j++)
                    a[i * m + j] = a[j * m + i] = a[i * m + j] + a[j * m + i];
    }
}

/* src (float64, CPU) as a tensor of dtype dt in ctx. */
static ddn_tensor *in_ctx(ddn_ctx *ctx, const ddn_tensor *src, ddn_dtype dt)
{
    ddn_tensor *c = ddn_tensor_new(cpu, dt, src->ndim, src->shape);
    assert_non_null(c);
    assert_ok(cpu, ddn_tensor_copy_(c, src));
    return ddn_tensor_to(ctx, c, ddn_ctx_device(ctx));
}

static const char *where(ddn_ctx *ctx) { return ctx == cpu ? "cpu" : "device"; }

/* One IED forward + backward in ctx: y, lambda, dL/dA for L = sum(v y) + sum(lambda) (so that
 * both outputs' gradients flow), and the per-item iterations, all copied to the host. */
static void ied_run(ddn_ctx *ctx, ddn_dtype dt, int B, int m, const double *A, const double *v,
                    ddn_ied_method method, ddn_ied_backward mode, double *y, double *lam,
                    double *g, int64_t *iters)
{
    ddn_tensor *a64 = ddn_tensor_from_host(cpu, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), A);
    ddn_tensor *v64 = ddn_tensor_from_host(cpu, DDN_DTYPE_F64, DDN_SHAPE(B, m), v);
    ddn_tensor *at = in_ctx(ctx, a64, dt), *vt = in_ctx(ctx, v64, dt);
    assert_non_null(at);
    assert_non_null(vt);
    assert_ok(ctx, ddn_tensor_set_requires_grad(at, true));
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    o.method = method;
    if (method == DDN_IED_SI) o.k = 3;
    ddn_decl_info info = {0};
    ddn_tensor *lt = NULL;
    ddn_decl_info *ip = mode == DDN_IED_BACKWARD_UNROLL ? NULL : &info;
    ddn_tensor *yt = ddn_ied(ctx, at, &o, mode, &lt, ip);
    if (!yt) fail_msg("ddn_ied on %s: %s", where(ctx), ddn_ctx_errmsg(ctx));
    ddn_tensor *loss = ddn_add(ctx, ddn_sum(ctx, ddn_mul(ctx, yt, vt), 0, NULL, false),
                               ddn_sum(ctx, lt, 0, NULL, false));
    assert_non_null(loss);
    if (ddn_backward(ctx, loss) != DDN_OK)
        fail_msg("backward on %s: %s", where(ctx), ddn_ctx_errmsg(ctx));
    assert_ok(ctx, ddn_tensor_to_host(yt, DDN_DTYPE_F64, y));
    assert_ok(ctx, ddn_tensor_to_host(lt, DDN_DTYPE_F64, lam));
    assert_ok(ctx, ddn_tensor_to_host(at->grad, DDN_DTYPE_F64, g));
    for (int b = 0; b < B; b++)
        iters[b] = info.iterations ? ((const int64_t *)ddn_tensor_ptr(info.iterations))[b] : -1;
}

static void close_all(const char *what, const char *mode, int n, const double *dev,
                      const double *ref, double atol, double rtol)
{
    for (int i = 0; i < n; i++)
        if (!(fabs(dev[i] - ref[i]) <= atol + rtol * fabs(ref[i])))
            fail_msg("%s (%s) [%d]: device %.17g, cpu %.17g", what, mode, i, dev[i], ref[i]);
}

/* Every backward mode, PI and SI, float32 and float64, symmetric input (and non-symmetric for
 * the modes valid there). PI runs as the device's block kernel, the rest on host copies; y
 * agrees to the solvers' step tolerance over the spectral gap (float64 2e-10, float32 2e-5, see
 * test_ied_power.c), the gradients, which divide by the gap once more, to 1e-8 and 2e-4 relative
 * to their scale (|lambda| ~ 2m here, dL/dA entries ~ 1). */
static void test_ied_modes(void **state)
{
    (void)state;
    NEED_DEVICE();
    static const struct {
        ddn_ied_backward mode;
        const char *name;
        bool nonsym_ok;
    } modes[] = {{DDN_IED_BACKWARD_DDN_E, "DDN_E", false}, {DDN_IED_BACKWARD_IFT_E, "IFT_E", true},
                 {DDN_IED_BACKWARD_DDN_J, "DDN_J", false}, {DDN_IED_BACKWARD_IFT_J, "IFT_J", true},
                 {DDN_IED_BACKWARD_UNROLL, "UNROLL", true}, {DDN_IED_BACKWARD_EIGH, "EIGH", false}};
    enum { B = 3, M = 10 };
    double A[B * M * M], v[B * M], y[2][B * M], lam[2][B], g[2][B * M * M];
    int64_t it[2][B];
    ddn_rng rng;
    ddn_rng_seed(&rng, 601);
    for (int d = 0; d < 2; d++) {
        const ddn_dtype dt = d ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
        const double ytol = d ? 2e-10 : 2e-5, gtol = d ? 1e-8 : 2e-4;
        for (int sym = 1; sym >= 0; sym--)
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
                for (int meth = DDN_IED_PI; meth <= DDN_IED_SI; meth++) {
                    if (!sym && !modes[k].nonsym_ok) continue;
                    if (meth == DDN_IED_SI && modes[k].mode == DDN_IED_BACKWARD_EIGH) continue;
                    paper_input(&rng, sym, B, M, A);
                    for (int i = 0; i < B * M; i++) v[i] = ddn_rng_normal(&rng);
                    for (int c = 0; c < 2; c++) {
                        ied_run(c ? gpu : cpu, dt, B, M, A, v, (ddn_ied_method)meth,
                                modes[k].mode, y[c], lam[c], g[c], it[c]);
                        ddn_ctx_reset_step(c ? gpu : cpu);
                    }
                    close_all("y", modes[k].name, B * M, y[1], y[0], ytol, 0);
                    close_all("lambda", modes[k].name, B, lam[1], lam[0], 0, ytol);
                    close_all("dL/dA", modes[k].name, B * M * M, g[1], g[0], gtol, gtol);
                    for (int b = 0; b < B; b++) /* the step test may fire one iteration apart */
                        assert_true(llabs(it[1][b] - it[0][b]) <= 1);
                }
    }
}

/* A failing item on the device reports what the CPU reports: the same status and message. */
static void check_same_error(ddn_ied_backward mode, int B, int m, const double *A, ddn_status want)
{
    char msg[2][512];
    ddn_status st[2];
    for (int c = 0; c < 2; c++) {
        ddn_ctx *ctx = c ? gpu : cpu;
        ddn_tensor *a64 = ddn_tensor_from_host(cpu, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), A);
        ddn_tensor *a = ddn_tensor_to(ctx, a64, ddn_ctx_device(ctx));
        assert_non_null(a);
        assert_ok(ctx, ddn_tensor_set_requires_grad(a, true));
        ddn_tensor *y = ddn_ied(ctx, a, NULL, mode, NULL, NULL);
        if (y) { /* a failure of the backward (a tie) */
            ddn_tensor *l = ddn_sum(ctx, y, 0, NULL, false);
            assert_non_null(l);
            assert_true(ddn_backward(ctx, l) != DDN_OK);
        }
        st[c] = ddn_ctx_status(ctx);
        snprintf(msg[c], sizeof msg[c], "%s", ddn_ctx_errmsg(ctx));
        ddn_ctx_clear_error(ctx);
        ddn_ctx_reset_step(ctx);
    }
    if (st[0] != want) fail_msg("cpu: status %d (%s), want %d", st[0], msg[0], want);
    assert_int_equal(st[1], st[0]);
    assert_string_equal(msg[1], msg[0]);
}

static void test_ied_errors(void **state)
{
    (void)state;
    NEED_DEVICE();
    const double nan_item[2 * 4] = {2, 1, 1, 2, 1, NAN, 0, 1}; /* item 1 has a NaN */
    const double zero_item[2 * 4] = {2, 1, 1, 2, 0, 0, 0, 0};
    const double nonsym[2 * 4] = {2, 1, 1, 2, 2, 1, 0, 2};
    const double tied[9] = {5, 0, 0, 0, 5, 0, 0, 0, 1}; /* diag(5, 5, 1): no derivative */
    check_same_error(DDN_IED_BACKWARD_IFT_E, 2, 2, nan_item, DDN_ERR_NUMERIC);
    check_same_error(DDN_IED_BACKWARD_DDN_E, 2, 2, zero_item, DDN_ERR_SINGULAR);
    check_same_error(DDN_IED_BACKWARD_DDN_E, 2, 2, nonsym, DDN_ERR_ARG);
    check_same_error(DDN_IED_BACKWARD_EIGH, 2, 2, nan_item, DDN_ERR_NUMERIC);
    check_same_error(DDN_IED_BACKWARD_EIGH, 2, 2, zero_item, DDN_ERR_SINGULAR);
    check_same_error(DDN_IED_BACKWARD_EIGH, 2, 2, nonsym, DDN_ERR_ARG);
    check_same_error(DDN_IED_BACKWARD_EIGH, 1, 3, tied, DDN_ERR_SINGULAR);
    check_same_error(DDN_IED_BACKWARD_DDN_E, 1, 3, tied, DDN_ERR_SINGULAR);
}

/* ---- device: the LESS layer (block code, one block per item) against the CPU host path ---- */
/* The device side runs ddn_less_ex with block = true, which is what ddn_less does off the CPU; in
 * self-check mode that is the block code's CPU instance. Expected differences (the reasoning and
 * the measurements are in tests/test_less_blk.c): float64 forward, a converging method: iteration
 * counts within 2, objectives within 100 tol + 1e-12 relative, and y within 1e-7 where the counts
 * agree; backward E at an EXACT y (the same y on both sides): 1e-9 of the largest entry (float64),
 * one float32 rounding (float32). */
static void less_grads(ddn_ctx *ctx, ddn_tensor *A, ddn_tensor *b, const ddn_less_opts *o,
                       ddn_decl_info *info, ddn_tensor **y, ddn_tensor **gA, ddn_tensor **gb)
{
    *y = ddn_less_ex(ctx, A, b, o, DDN_LESS_BACKWARD_E, info, ctx == gpu);
    if (!*y) fail_msg("less: %s", ddn_ctx_errmsg(ctx));
    /* L = sum(r * y) for a fixed random r (sum(y * y) would be constant on the sphere) */
    ddn_tensor *r = cpu_rand((*y)->dtype, DDN_SHAPE(4, 8), -1, 1, 302);
    if (ctx == gpu) r = on_gpu(r);
    assert_ok(ctx, ddn_backward(ctx, ddn_sum(ctx, ddn_mul(ctx, *y, r), 0, NULL, false)));
    *gA = A->grad, *gb = b->grad;
}

static void test_less_forward_and_backward_e(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        ddn_tensor *A = cpu_rand(dt, DDN_SHAPE(4, 16, 8), -1, 1, 300);
        ddn_tensor *b = cpu_rand(dt, DDN_SHAPE(4, 16), -2, 2, 301);
        ddn_tensor *gA_in = on_gpu(A), *gb_in = on_gpu(b);
        assert_ok(cpu, ddn_tensor_set_requires_grad(A, true));
        assert_ok(cpu, ddn_tensor_set_requires_grad(b, true));
        assert_ok(gpu, ddn_tensor_set_requires_grad(gA_in, true));
        assert_ok(gpu, ddn_tensor_set_requires_grad(gb_in, true));
        ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
        ddn_decl_info ic, ig;
        ddn_tensor *y, *gy, *dA, *dgA, *db, *dgb;
        if (dt == DDN_DTYPE_F64) { /* the iterative forward (PGD+RM+TWD) */
            less_grads(cpu, A, b, &o, &ic, &y, &dA, &db);
            less_grads(gpu, gA_in, gb_in, &o, &ig, &gy, &dgA, &dgb);
            for (int64_t i = 0; i < 4; i++) {
                int64_t itc = (int64_t)ddn_tensor_get(ic.iterations, &i);
                int64_t itg = (int64_t)ddn_tensor_get(ig.iterations, &i);
                assert_true(llabs(itc - itg) <= 2);
                double fc = ddn_tensor_get(ic.fpd, &i), fg = ddn_tensor_get(ig.fpd, &i);
                fc = 0.5 * fc * fc, fg = 0.5 * fg * fg;
                assert_true(fabs(fc - fg) <= 100 * o.tol + 1e-12 * fc);
                for (int64_t j = 0; j < 8 && itc == itg; j++)
                    assert_true(fabs(ddn_tensor_get(y, (int64_t[]){i, j}) -
                                     ddn_tensor_get(gy, (int64_t[]){i, j})) <= 1e-7);
            }
            ddn_tensor_zero_grad(A), ddn_tensor_zero_grad(b);
            ddn_tensor_zero_grad(gA_in), ddn_tensor_zero_grad(gb_in);
        }
        o.method = DDN_LESS_EXACT; /* the backward alone: the same y on both sides */
        less_grads(cpu, A, b, &o, &ic, &y, &dA, &db);
        less_grads(gpu, gA_in, gb_in, &o, &ig, &gy, &dgA, &dgb);
        assert_tensor_close(gy, y, 0, 0);
        double t = dt == DDN_DTYPE_F32 ? 1e-6 : 1e-9;
        double sA = ddn_tensor_item(ddn_max(cpu, ddn_abs(cpu, dA), 0, NULL, false));
        double sb = ddn_tensor_item(ddn_max(cpu, ddn_abs(cpu, db), 0, NULL, false));
        assert_tensor_close(dgA, dA, t * sA, dt == DDN_DTYPE_F32 ? 2.4e-7 : 0);
        assert_tensor_close(dgb, db, t * sb, dt == DDN_DTYPE_F32 ? 2.4e-7 : 0);
    }
}

/* ---- device: the IED layer's implicit backward, E modes (ied_vjp_e) ----------------------------
 * The layer in both contexts (the device's backward is its block kernel; self-check: the LAPACK
 * path twice), and the kernel entry called directly in the device context (self-check: the block
 * algorithm's CPU instance), against the CPU layer's LAPACK gradient. Both compute in float64
 * from the same inputs (tests/test_ied_blk.c): 1e-9 of the largest entry in float64 (where each
 * Neumann iteration stops, times cond(H)), 2.5e-7 in float32 (one float32 ulp after rounding).
 * Item 1 is diag(5, 5, 1, ...): a tie, refused on both with the same status and item. */
static void test_ied_backward_e_modes(void **state)
{
    (void)state;
    NEED_DEVICE();
    enum { B = 3, m = 24 };
    ddn_rng rng;
    ddn_rng_seed(&rng, 230);
    double A[B * m * m], v[B * m], z[m], g[B * m * m];
    for (int i = 0; i < B * m * m; i++) A[i] = fabs(ddn_rng_normal(&rng));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j <= i; j++) {
                double *a = A + b * m * m, s = a[i * m + j] + a[j * m + i];
                a[i * m + j] = a[j * m + i] = s;
            }
    for (int i = 0; i < B * m; i++) v[i] = ddn_rng_normal(&rng);
    ddn_ied_ift_probe_(m, z);
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int ift = 0; ift <= 1; ift++) {
            const ddn_ied_backward mode = ift ? DDN_IED_BACKWARD_IFT_E : DDN_IED_BACKWARD_DDN_E;
            ddn_tensor *a64 = ddn_tensor_from_host(cpu, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), A);
            ddn_tensor *v64 = ddn_tensor_from_host(cpu, DDN_DTYPE_F64, DDN_SHAPE(B, m), v);
            ddn_tensor *a = ddn_tensor_new(cpu, dt, DDN_SHAPE(B, m, m));
            ddn_tensor *vc = ddn_zeros(cpu, dt, DDN_SHAPE(B, m));
            assert_ok(cpu, ddn_tensor_copy_(a, a64));
            assert_ok(cpu, ddn_tensor_copy_(vc, v64));
            ddn_tensor *ga = on_gpu(a), *gv = on_gpu(vc);
            assert_ok(cpu, ddn_tensor_set_requires_grad(a, true));
            assert_ok(gpu, ddn_tensor_set_requires_grad(ga, true));
            ddn_tensor *y = ddn_ied(cpu, a, NULL, mode, NULL, NULL);
            ddn_tensor *gy = ddn_ied(gpu, ga, NULL, mode, NULL, NULL);
            if (!y || !gy) fail_msg("ied: %s / %s", ddn_ctx_errmsg(cpu), ddn_ctx_errmsg(gpu));
            assert_ok(cpu, ddn_backward_with_grad(cpu, y, vc));
            assert_ok(gpu, ddn_backward_with_grad(gpu, gy, gv));
            assert_ok(cpu, ddn_tensor_to_host(a->grad, DDN_DTYPE_F64, g));
            double gmax = 0;
            for (int i = 0; i < B * m * m; i++) gmax = fmax(gmax, fabs(g[i]));
            const double t = (dt == DDN_DTYPE_F32 ? 2.5e-7 : 1e-9) * gmax;
            assert_tensor_close(ga->grad, a->grad, t, 0);
            /* the kernel entry itself, on the device's y */
            ddn_tensor *dA = ddn_zeros(gpu, dt, DDN_SHAPE(B, m, m));
            ddn_ied_vjp_item items[B];
            assert_ok(gpu, ddn_k(ga)->ied_vjp_e(dA, ga, gy, gv, ift, z, items));
            for (int b = 0; b < B; b++)
                assert_true(items[b].code == DDN_IEDB_LU || items[b].code == DDN_IEDB_NEUMANN);
            assert_tensor_close(dA, a->grad, t, 0);
            /* a tie in item 1: the solver's gap check flags it, the backward refuses it */
            double At[B * m * m];
            memcpy(At, A, sizeof At);
            memset(At + m * m, 0, sizeof(double) * m * m);
            for (int i = 0; i < m; i++) At[m * m + i * m + i] = i < 2 ? 5 : 1;
            ddn_tensor *tc = ddn_tensor_new(cpu, dt, DDN_SHAPE(B, m, m));
            assert_ok(cpu, ddn_tensor_copy_(tc, ddn_tensor_from_host(cpu, DDN_DTYPE_F64,
                                                                     DDN_SHAPE(B, m, m), At)));
            ddn_tensor *tg = on_gpu(tc);
            assert_ok(cpu, ddn_tensor_set_requires_grad(tc, true));
            assert_ok(gpu, ddn_tensor_set_requires_grad(tg, true));
            ddn_tensor *ty = ddn_ied(cpu, tc, NULL, mode, NULL, NULL);
            ddn_tensor *tgy = ddn_ied(gpu, tg, NULL, mode, NULL, NULL);
            if (!ty || !tgy) fail_msg("ied: %s / %s", ddn_ctx_errmsg(cpu), ddn_ctx_errmsg(gpu));
            assert_int_equal(ddn_backward_with_grad(cpu, ty, vc), DDN_ERR_SINGULAR);
            assert_error(cpu, DDN_ERR_SINGULAR, "item 1 of 3");
            assert_int_equal(ddn_backward_with_grad(gpu, tgy, gv), DDN_ERR_SINGULAR);
            assert_error(gpu, DDN_ERR_SINGULAR, "item 1 of 3");
            ddn_ctx_reset_step(cpu);
            ddn_ctx_reset_step(gpu);
        }
}

/* Every LESS backward mode in both contexts. E and J at the EXACT solution (the same y on both:
 * EXACT solves on host copies), so the gradients differ only by the backward's own arithmetic:
 * 1e-9 of the largest entry in float64, 1e-6 in float32 (the E kernel computes in float64 and
 * rounds once; J on host copies both). UNROLL (float64, PGD+RM+TWD recorded op by op: device
 * kernels in place of CPU ones, sums in another order): 1e-8. */
static void test_less_modes(void **state)
{
    (void)state;
    NEED_DEVICE();
    static const ddn_less_backward modes[] = {DDN_LESS_BACKWARD_E, DDN_LESS_BACKWARD_J,
                                              DDN_LESS_BACKWARD_UNROLL};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int k = 0; k < 3; k++) {
            const bool unroll = modes[k] == DDN_LESS_BACKWARD_UNROLL;
            if (unroll && dt == DDN_DTYPE_F32) continue;
            ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
            if (!unroll) o.method = DDN_LESS_EXACT;
            ddn_tensor *A = cpu_rand(dt, DDN_SHAPE(3, 12, 6), -1, 1, 310 + k);
            ddn_tensor *b = cpu_rand(dt, DDN_SHAPE(3, 12), -2, 2, 320 + k);
            ddn_tensor *r = cpu_rand(dt, DDN_SHAPE(3, 6), -1, 1, 330 + k);
            ddn_tensor *out[2][3];
            for (int c = 0; c < 2; c++) {
                ddn_ctx *ctx = c ? gpu : cpu;
                ddn_tensor *a = c ? on_gpu(A) : A, *bb = c ? on_gpu(b) : b, *rr = c ? on_gpu(r) : r;
                assert_ok(ctx, ddn_tensor_set_requires_grad(a, true));
                assert_ok(ctx, ddn_tensor_set_requires_grad(bb, true));
                ddn_tensor *y = ddn_less(ctx, a, bb, &o, modes[k], NULL);
                if (!y) fail_msg("less (%s): %s", where(ctx), ddn_ctx_errmsg(ctx));
                ddn_tensor *l = ddn_sum(ctx, ddn_mul(ctx, y, rr), 0, NULL, false);
                assert_ok(ctx, ddn_backward(ctx, l));
                out[c][0] = y, out[c][1] = a->grad, out[c][2] = bb->grad;
            }
            const double t = unroll ? 1e-8 : dt == DDN_DTYPE_F32 ? 1e-6 : 1e-9;
            for (int i = 0; i < 3; i++) {
                double sc = ddn_tensor_item(ddn_max(cpu, ddn_abs(cpu, out[0][i]), 0, NULL, false));
                assert_tensor_close(out[1][i], out[0][i], t * fmax(sc, 1), 0);
            }
            ddn_ctx_reset_step(cpu);
            ddn_ctx_reset_step(gpu);
        }
}

/* ---- the PMaF models: ResNet + declarative head, three training steps ---------------------------
 * A narrow ResNet-18 (width 1/16, features mode) with the IED head (PI, DDN_E backward; float32,
 * as `ddn train`) or the LESS head (PGD+RM+TWD, backward E; float64), cross-entropy and SGD with
 * momentum, from the same seeded initialisation and batch in both contexts. Float32 convolutions
 * and batch norm sum in other orders on the device (cuDNN) and PI stops within a step, so the
 * losses of every step agree to 1e-3 relative (the test_cuda CNN's tolerance) and the first
 * step's logits to 1e-3 of their scale. LESS runs in float64 because its stopping rule (an
 * objective change of 1e-7) sits at float32's rounding level: there the two paths' iteration
 * counts differ by up to 10 (tests/test_less_blk.c) and after three steps the losses by ~1%; in
 * float64 the counts agree and so do the losses, to 1e-9 relative. */
static void pmaf_losses(ddn_ctx *ctx, ddn_pmaf_kind kind, const ddn_tensor *x_cpu,
                        const ddn_tensor *labels_cpu, double *losses, double *logits)
{
    const ddn_dtype dt = x_cpu->dtype;
    ddn_resnet *net = ddn_resnet_new(ctx, &(ddn_resnet_opts){.arch = DDN_RESNET18,
                                                             .features_only = true,
                                                             .width = 1.0 / 16, .seed = 5,
                                                             .dtype = dt});
    assert_non_null(net);
    const int64_t side = ddn_resnet_feature_side(x_cpu->shape[2]);
    ddn_pmaf_head *head = ddn_pmaf_head_new(
        ctx, &(ddn_pmaf_opts){.kind = kind, .m = 8, .n = 4, .num_classes = 5, .symmetrize = true,
                              .in_features = ddn_resnet_feature_channels(net) * side * side,
                              .ied_backward = DDN_IED_BACKWARD_DDN_E,
                              .less_backward = DDN_LESS_BACKWARD_E, .seed = 6, .dtype = dt});
    if (!head) fail_msg("pmaf head: %s", ddn_ctx_errmsg(ctx));
    ddn_sgd_opts sgd = {.lr = 0.05, .momentum = 0.9};
    ddn_optim *o1 = ddn_sgd_new_params(ddn_resnet_params(net), sgd);
    ddn_optim *o2 = ddn_sgd_new_params(ddn_pmaf_head_params(head), sgd);
    assert_non_null(o1);
    assert_non_null(o2);
    for (int step = 0; step < 3; step++) {
        ddn_tensor *x = ddn_tensor_to(ctx, x_cpu, ddn_ctx_device(ctx));
        ddn_tensor *labels = ddn_tensor_to(ctx, labels_cpu, ddn_ctx_device(ctx));
        ddn_tensor *f = x ? ddn_resnet_forward(net, x, true) : NULL;
        ddn_tensor *z = f ? ddn_pmaf_head_forward(head, f, NULL, NULL) : NULL;
        ddn_tensor *loss = z ? ddn_cross_entropy(ctx, z, labels, DDN_REDUCTION_MEAN) : NULL;
        if (!loss) fail_msg("forward (%s): %s", where(ctx), ddn_ctx_errmsg(ctx));
        if (ddn_backward(ctx, loss) != DDN_OK)
            fail_msg("backward (%s): %s", where(ctx), ddn_ctx_errmsg(ctx));
        losses[step] = ddn_tensor_item(loss);
        if (step == 0) assert_ok(ctx, ddn_tensor_to_host(z, DDN_DTYPE_F64, logits));
        assert_ok(ctx, ddn_optim_step(o1));
        assert_ok(ctx, ddn_optim_step(o2));
        ddn_optim_zero_grad(o1);
        ddn_optim_zero_grad(o2);
        ddn_ctx_reset_step(ctx);
    }
    ddn_optim_free(o1);
    ddn_optim_free(o2);
    ddn_pmaf_head_free(head);
    ddn_resnet_free(net);
}

static void test_pmaf_models(void **state)
{
    (void)state;
    NEED_DEVICE();
    ddn_ctx *data = test_ctx(); /* inputs outlive the contexts' step resets */
    ddn_rng rng;
    ddn_rng_seed(&rng, 640);
    ddn_tensor *x32 = ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(4, 3, 32, 32), 0, 1);
    ddn_tensor *x64 = x32 ? ddn_tensor_new(data, DDN_DTYPE_F64, 4, x32->shape) : NULL;
    int64_t lab[4] = {0, 3, 1, 4};
    ddn_tensor *labels = ddn_tensor_from_host(data, DDN_DTYPE_I64, DDN_SHAPE(4), lab);
    assert_non_null(x64);
    assert_non_null(labels);
    assert_ok(data, ddn_tensor_copy_(x64, x32));
    for (int kind = DDN_PMAF_IED; kind <= DDN_PMAF_LESS; kind++) {
        const ddn_tensor *x = kind == DDN_PMAF_IED ? x32 : x64;
        const double tol = kind == DDN_PMAF_IED ? 1e-3 : 1e-9;
        double loss[2][3], logits[2][4 * 5];
        pmaf_losses(cpu, (ddn_pmaf_kind)kind, x, labels, loss[0], logits[0]);
        pmaf_losses(gpu, (ddn_pmaf_kind)kind, x, labels, loss[1], logits[1]);
        const char *name = kind == DDN_PMAF_IED ? "IED" : "LESS";
        close_all("loss", name, 3, loss[1], loss[0], 0, tol);
        double sc = 0;
        for (int i = 0; i < 20; i++) sc = fmax(sc, fabs(logits[0][i]));
        close_all("logits", name, 20, logits[1], logits[0], tol * sc, 0);
    }
    ddn_ctx_free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ied_modes),
        cmocka_unit_test(test_ied_errors),
        cmocka_unit_test(test_ied_backward_e_modes),
        cmocka_unit_test(test_less_forward_and_backward_e),
        cmocka_unit_test(test_less_modes),
        cmocka_unit_test(test_pmaf_models),
    };
    return cmocka_run_group_tests(tests, cuda_group_setup, cuda_group_teardown);
}
