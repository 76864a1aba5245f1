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

/* |G| + |G|^T (sym) or |G| (not), G ~ N(0, 1): the paper's inputs. (B, m, m) float64. */
static void paper_input(ddn_rng *rng, bool sym, int B, int m, double *A)
{
    for (int b = 0; b < B; b++) {
        double *a = A + (size_t)b * m * m;
        for (int i = 0; i < m * m; i++) a[i] = fabs(ddn_rng_normal(rng));
        if (sym)
            for (int i = 0; i < m; i++)
                for (int j = 0; j <= i; j++) a[i * m + j] = a[j * m + i] = a[i * m + j] + a[j * m + i];
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
    ddn_tensor *yt = ddn_ied(ctx, at, &o, mode, &lt, mode == DDN_IED_BACKWARD_UNROLL ? NULL : &info);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ied_modes),
        cmocka_unit_test(test_ied_errors),
    };
    return cmocka_run_group_tests(tests, cuda_group_setup, cuda_group_teardown);
}
