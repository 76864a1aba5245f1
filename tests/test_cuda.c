/* ddn — the CUDA backend against the CPU backend (CTest label `cuda`).
 *
 * Every kernel the CUDA backend implements runs on the same seeded inputs in a CPU context and a
 * CUDA context, and the results are compared with the tolerance stated beside each test. The
 * device kernels use the same per-element functions as the CPU (elementwise_math.h,
 * optim_math.h), so elementwise differences come only from the device's libm (a few ulps) and
 * reductions only from summation order; cuBLAS runs without TF32, so float32 GEMMs agree to float32
 * rounding times sqrt(K).
 *
 * Without a device the device tests skip with one line ("skipped: no CUDA device (...)") and
 * pass; the first three tests run anyway: the clean error from ddn_ctx_new, the "not
 * implemented" stubs and ddn_tensor_to's checks. Set-up and the self-check mode:
 * cuda_test_util.h; the declarative layers: test_cuda_declarative.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "ddn_impl.h"

static ddn_tensor *like(ddn_ctx *ctx, const ddn_tensor *t, double fill)
{
    ddn_tensor *o = ddn_full(ctx, t->dtype, t->ndim, t->shape, fill);
    assert_non_null(o);
    return o;
}

/* A transposed view of the last two dims (no copy, no tape). */
static ddn_tensor *transposed(ddn_ctx *ctx, const ddn_tensor *t)
{
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d], stride[d] = t->stride[d];
    int a = t->ndim - 2, b = t->ndim - 1;
    int64_t s = shape[a];
    shape[a] = shape[b], shape[b] = s;
    s = stride[a];
    stride[a] = stride[b], stride[b] = s;
    return ddn_view_raw(ctx, t, t->ndim, shape, stride, t->offset);
}

/* float32: a few ulps of device libm; float64 likewise */
static double tol(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? 2e-6 : 1e-13; }

/* ---- always: no device, stubs, tensor_to checks ------------------------------------------------ */
static void test_ctx_new_without_device_is_clean(void **state)
{
    (void)state;
    const char *why = NULL;
    ddn_ctx *c = ddn_ctx_new(DDN_DEVICE_CUDA, &why);
    if (c) { /* a device is present: the context works and says so */
        assert_int_equal(ddn_ctx_device(c), DDN_DEVICE_CUDA);
        ddn_ctx_free(c);
        return;
    }
    assert_non_null(why);
#ifdef DDN_TEST_HAVE_CUDA
    /* A CUDA build on a machine without a usable device names the reason. */
    assert_non_null(strstr(why, "no CUDA device"));
#else
    assert_non_null(strstr(why, "no CUDA backend"));
#endif
    /* Asking twice gives the same clean answer (no state left behind by the first attempt). */
    const char *again = NULL;
    assert_null(ddn_ctx_new(DDN_DEVICE_CUDA, &again));
    assert_string_equal(why, again);
}

static void test_missing_kernels_fail_cleanly(void **state)
{
    (void)state;
    ddn_kernels none, table;
    memset(&none, 0, sizeof none);
    ddn_kernels_complete(&table, &none);
    ddn_tensor *x = ddn_zeros(cpu, DDN_DTYPE_F32, DDN_SHAPE(1, 1, 4, 4));
    ddn_tensor *w = ddn_zeros(cpu, DDN_DTYPE_F32, DDN_SHAPE(1, 1, 3, 3));
    ddn_tensor *y = ddn_zeros(cpu, DDN_DTYPE_F32, DDN_SHAPE(1, 1, 2, 2));
    assert_int_equal(table.conv2d(y, x, w, NULL, (int[]){1, 1}, (int[]){0, 0}, (int[]){1, 1}, 1),
                     DDN_ERR_UNSUPPORTED);
    assert_error(cpu, DDN_ERR_UNSUPPORTED, "conv2d is not implemented on cpu yet");
    assert_false(table.has_nonfinite(x));
    assert_error(cpu, DDN_ERR_UNSUPPORTED, "has_nonfinite is not implemented on cpu yet");
    /* A complete table is copied unchanged. */
    ddn_kernels_complete(&table, ddn_cpu_backend.k);
    assert_ptr_equal(table.conv2d, ddn_cpu_backend.k->conv2d);
}

static void test_tensor_to_checks_and_cpu_copies(void **state)
{
    (void)state;
    ddn_ctx *other = test_ctx();
    ddn_tensor *t = cpu_rand(DDN_DTYPE_F64, DDN_SHAPE(3, 4), -1, 1, 1);
    assert_null(ddn_tensor_to(cpu, t, DDN_DEVICE_CUDA));
    assert_error(cpu, DDN_ERR_DEVICE, "target device cuda, but the context is on cpu");
    assert_null(ddn_tensor_to(cpu, NULL, DDN_DEVICE_CPU));
    assert_error(cpu, DDN_ERR_ARG, "tensor is NULL");
    /* same context, and another context (the staged path), from a transposed view */
    ddn_tensor *tt = transposed(cpu, t);
    ddn_tensor *same = ddn_tensor_to(cpu, tt, DDN_DEVICE_CPU);
    ddn_tensor *moved = ddn_tensor_to(other, tt, DDN_DEVICE_CPU);
    assert_non_null(same);
    assert_non_null(moved);
    assert_true(ddn_tensor_is_contiguous(moved) && moved->ctx == other);
    assert_tensor_close(same, tt, 0, 0);
    assert_tensor_close(moved, tt, 0, 0);
    ddn_ctx_free(other);
}

/* ---- device: memory and copies ---------------------------------------------------------------- */
static void test_round_trip_and_reads(void **state)
{
    (void)state;
    NEED_DEVICE();
    ddn_tensor *t = cpu_rand(DDN_DTYPE_F32, DDN_SHAPE(5, 7), -3, 3, 2);
    ddn_tensor *g = on_gpu(t);
    assert_int_equal(g->device, ddn_ctx_device(gpu));
    assert_tensor_close(g, t, 0, 0); /* exact: bytes copied */
    assert_true(ddn_tensor_get(g, (int64_t[]){4, 6}) == ddn_tensor_get(t, (int64_t[]){4, 6}));
    ddn_tensor *back = ddn_tensor_to(cpu, transposed(gpu, g), DDN_DEVICE_CPU);
    assert_non_null(back);
    assert_tensor_close(back, transposed(cpu, t), 0, 0);
    ddn_tensor *s = ddn_scalar(gpu, DDN_DTYPE_F64, 2.5);
    assert_true(ddn_tensor_item(s) == 2.5);
    ddn_tensor *p = ddn_tensor_new_persistent(gpu, DDN_DTYPE_F32, DDN_SHAPE(1000));
    assert_non_null(p);
    assert_true(ddn_tensor_item(ddn_view_raw(gpu, p, 0, NULL, NULL, 999)) == 0.0);
    ddn_tensor_free(p);
    assert_int_equal(ddn_ctx_status(gpu), DDN_OK);
}

/* copy (with conversion and strides), fill, axpy: exact, no arithmetic beyond one multiply-add */
static void test_copy_fill_axpy(void **state)
{
    (void)state;
    NEED_DEVICE();
    ddn_tensor *x = cpu_rand(DDN_DTYPE_F64, DDN_SHAPE(6, 5), -2, 2, 3);
    ddn_tensor *gx = on_gpu(x);
    ddn_dtype dts[] = {DDN_DTYPE_F32, DDN_DTYPE_F64, DDN_DTYPE_I64};
    for (int i = 0; i < 3; i++) {
        ddn_tensor *c = ddn_tensor_new(cpu, dts[i], DDN_SHAPE(5, 6));
        ddn_tensor *gc = ddn_tensor_new(gpu, dts[i], DDN_SHAPE(5, 6));
        assert_ok(cpu, ddn_k(c)->copy(c, transposed(cpu, x)));
        assert_ok(gpu, ddn_k(gc)->copy(gc, transposed(gpu, gx)));
        assert_tensor_close(gc, c, 0, 0);
        assert_ok(gpu, ddn_k(gc)->fill(gc, 1.25));
        assert_ok(cpu, ddn_k(c)->fill(c, 1.25));
        assert_tensor_close(gc, c, 0, 0);
    }
    /* axpy from a broadcast (stride-0) row */
    ddn_tensor *row = cpu_rand(DDN_DTYPE_F32, DDN_SHAPE(1, 5), -1, 1, 4);
    ddn_tensor *acc = cpu_rand(DDN_DTYPE_F32, DDN_SHAPE(6, 5), -1, 1, 5);
    ddn_tensor *gacc = on_gpu(acc);
    ddn_tensor *b = ddn_broadcast_raw(cpu, row, 2, acc->shape);
    ddn_tensor *gb = ddn_broadcast_raw(gpu, on_gpu(row), 2, acc->shape);
    assert_ok(cpu, ddn_k(acc)->axpy(acc, b, -0.75));
    assert_ok(gpu, ddn_k(gacc)->axpy(gacc, gb, -0.75));
    assert_tensor_close(gacc, acc, 1e-7, 1e-6); /* an FMA on the device may round once less */
}

static void test_has_nonfinite(void **state)
{
    (void)state;
    NEED_DEVICE();
    ddn_tensor *x = cpu_rand(DDN_DTYPE_F32, DDN_SHAPE(100000), -1, 1, 6);
    ddn_tensor *g = on_gpu(x);
    assert_false(ddn_k(g)->has_nonfinite(g));
    float inf = INFINITY;
    assert_ok(gpu, gpu->backend->copy_h2d(gpu, (float *)g->data + 77777, &inf, sizeof inf));
    assert_true(ddn_k(g)->has_nonfinite(g));
    assert_int_equal(ddn_ctx_status(gpu), DDN_OK);
}

/* ---- device: elementwise ---------------------------------------------------------------------- */
static void test_unary_ops_and_gradients(void **state)
{
    (void)state;
    NEED_DEVICE();
    /* params per op: clamp [-0.5, 0.5], pow 2.5, add 0.3, mul -1.7 (others ignore them) */
    double p0[DDN_UNARY_COUNT] = {[DDN_UNARY_CLAMP] = -0.5, [DDN_UNARY_POW_SCALAR] = 2.5,
                                  [DDN_UNARY_ADD_SCALAR] = 0.3, [DDN_UNARY_MUL_SCALAR] = -1.7};
    double p1[DDN_UNARY_COUNT] = {[DDN_UNARY_CLAMP] = 0.5};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int op = 0; op < DDN_UNARY_COUNT; op++) {
            /* log, sqrt and pow see positive inputs; the rest both signs */
            bool positive = op == DDN_UNARY_LOG || op == DDN_UNARY_SQRT ||
                            op == DDN_UNARY_POW_SCALAR;
            ddn_tensor *x = cpu_rand(dt, DDN_SHAPE(3, 4, 5), positive ? 0.1 : -3, 3, 10 + op);
            ddn_tensor *dy = cpu_rand(dt, DDN_SHAPE(3, 4, 5), -1, 1, 40 + op);
            ddn_tensor *gx = on_gpu(x), *gdy = on_gpu(dy);
            ddn_tensor *y = like(cpu, x, 0), *gy = like(gpu, x, 0);
            assert_ok(cpu, ddn_k(y)->unary(op, y, x, p0[op], p1[op]));
            assert_ok(gpu, ddn_k(gy)->unary(op, gy, gx, p0[op], p1[op]));
            assert_tensor_close(gy, y, tol(dt), tol(dt));
            ddn_tensor *dx = like(cpu, x, 0.5), *gdx = like(gpu, x, 0.5);
            assert_ok(cpu, ddn_k(dx)->unary_backward_acc(op, dx, x, y, dy, p0[op], p1[op]));
            assert_ok(gpu, ddn_k(gdx)->unary_backward_acc(op, gdx, gx, gy, gdy, p0[op], p1[op]));
            assert_tensor_close(gdx, dx, tol(dt), tol(dt));
        }
}

static void test_binary_ops_broadcast_and_gradients(void **state)
{
    (void)state;
    NEED_DEVICE();
    const int64_t full[3] = {3, 4, 5};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int op = 0; op < DDN_BINARY_COUNT; op++) {
            /* positive operands keep pow real and div away from 0 */
            ddn_tensor *a = cpu_rand(dt, DDN_SHAPE(3, 1, 5), 0.5, 2, 60 + op);
            ddn_tensor *b = cpu_rand(dt, DDN_SHAPE(1, 4, 5), 0.5, 2, 70 + op);
            ddn_tensor *dy = cpu_rand(dt, 3, full, -1, 1, 80 + op);
            ddn_tensor *ea = ddn_broadcast_raw(cpu, a, 3, full);
            ddn_tensor *eb = ddn_broadcast_raw(cpu, b, 3, full);
            ddn_tensor *ga = ddn_broadcast_raw(gpu, on_gpu(a), 3, full);
            ddn_tensor *gb = ddn_broadcast_raw(gpu, on_gpu(b), 3, full);
            ddn_tensor *gdy = on_gpu(dy);
            ddn_tensor *y = like(cpu, dy, 0), *gy = like(gpu, dy, 0);
            assert_ok(cpu, ddn_k(y)->binary(op, y, ea, eb));
            assert_ok(gpu, ddn_k(gy)->binary(op, gy, ga, gb));
            assert_tensor_close(gy, y, tol(dt), tol(dt));
            if (op == DDN_BINARY_EQ) continue;
            for (int which = 0; which < 2; which++) {
                ddn_tensor *g = like(cpu, dy, 0), *gg = like(gpu, dy, 0);
                assert_ok(cpu, ddn_k(g)->binary_backward(op, which, g, ea, eb, y, dy));
                assert_ok(gpu, ddn_k(gg)->binary_backward(op, which, gg, ga, gb, gy, gdy));
                assert_tensor_close(gg, g, tol(dt), tol(dt));
            }
        }
}

/* ---- device: reductions ----------------------------------------------------------------------- */
/* Sums: both accumulate in double, in different orders: float32 agrees to its rounding,
 * float64 to 1e-13 relative. Max and argmax are exact. */
static void test_reductions(void **state)
{
    (void)state;
    NEED_DEVICE();
    uint32_t masks[] = {1, 2, 4, 5, 6, 7};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        ddn_tensor *x = cpu_rand(dt, DDN_SHAPE(6, 7, 300), -2, 2, 90);
        ddn_tensor *gx = on_gpu(x);
        for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
            int64_t shape[3];
            for (int d = 0; d < 3; d++) shape[d] = masks[m] & (1u << d) ? 1 : x->shape[d];
            for (int op = 0; op < DDN_REDUCE_COUNT; op++) {
                ddn_tensor *o = ddn_zeros(cpu, dt, 3, shape), *go = ddn_zeros(gpu, dt, 3, shape);
                assert_ok(cpu, ddn_k(o)->reduce(op, o, x, masks[m]));
                assert_ok(gpu, ddn_k(go)->reduce(op, go, gx, masks[m]));
                assert_tensor_close(go, o, op == DDN_REDUCE_MAX ? 0 : 1e-9,
                                    op == DDN_REDUCE_MAX ? 0 : tol(dt));
                if (op != DDN_REDUCE_MAX) continue;
                ddn_tensor *dy = cpu_rand(dt, 3, shape, -1, 1, 91);
                ddn_tensor *dx = like(cpu, x, 0.25), *gdx = like(gpu, x, 0.25);
                assert_ok(cpu, ddn_k(dx)->max_backward_acc(dx, x, o, dy, masks[m]));
                assert_ok(gpu, ddn_k(gdx)->max_backward_acc(gdx, gx, go, on_gpu(dy), masks[m]));
                assert_tensor_close(gdx, dx, 0, 0);
            }
        }
        for (int dim = 0; dim < 3; dim++) {
            int64_t shape[3] = {6, 7, 300};
            shape[dim] = 1;
            ddn_tensor *o = ddn_zeros(cpu, DDN_DTYPE_I64, 3, shape);
            ddn_tensor *go = ddn_zeros(gpu, DDN_DTYPE_I64, 3, shape);
            assert_ok(cpu, ddn_k(o)->argmax(o, x, dim));
            assert_ok(gpu, ddn_k(go)->argmax(go, gx, dim));
            assert_tensor_close(go, o, 0, 0);
        }
    }
    ddn_tensor *e = ddn_zeros(gpu, DDN_DTYPE_F32, DDN_SHAPE(0, 3));
    ddn_tensor *eo = ddn_zeros(gpu, DDN_DTYPE_F32, DDN_SHAPE(1, 3));
    assert_int_equal(ddn_k(e)->reduce(DDN_REDUCE_MAX, eo, e, 1), DDN_ERR_SHAPE);
    assert_error(gpu, DDN_ERR_SHAPE, "cannot reduce an empty tensor");
}

/* ---- device: matmul --------------------------------------------------------------------------- */
/* float32 with K = 67: cuBLAS and OpenBLAS sum in different orders; 1e-5 relative (plus 1e-5
 * absolute near zero). float64: 1e-12. */
static void check_matmul(ddn_dtype dt, const ddn_tensor *a, const ddn_tensor *b,
                         const ddn_tensor *ga, const ddn_tensor *gb, double alpha, double beta)
{
    int nd = a->ndim;
    int64_t shape[DDN_MAX_DIMS];
    for (int d = 0; d < nd; d++) shape[d] = a->shape[d];
    shape[nd - 1] = b->shape[nd - 1];
    ddn_tensor *o = cpu_rand(dt, nd, shape, -1, 1, 99);
    ddn_tensor *go = on_gpu(o);
    assert_ok(cpu, ddn_k(o)->matmul(o, a, b, alpha, beta));
    assert_ok(gpu, ddn_k(go)->matmul(go, ga, gb, alpha, beta));
    double t = dt == DDN_DTYPE_F32 ? 1e-5 : 1e-12;
    assert_tensor_close(go, o, t, t);
}

static void test_matmul_layouts(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        ddn_tensor *a = cpu_rand(dt, DDN_SHAPE(2, 3, 13, 67), -1, 1, 100);
        ddn_tensor *b = cpu_rand(dt, DDN_SHAPE(2, 3, 67, 9), -1, 1, 101);
        ddn_tensor *ga = on_gpu(a), *gb = on_gpu(b);
        check_matmul(dt, a, b, ga, gb, 1, 0);   /* both row-major, batched */
        check_matmul(dt, a, b, ga, gb, -0.5, 0.25);
        /* b as a transposed view of a (2,3,9,67) tensor: CUBLAS_OP_T, no copy */
        ddn_tensor *bt = cpu_rand(dt, DDN_SHAPE(2, 3, 9, 67), -1, 1, 102);
        check_matmul(dt, a, transposed(cpu, bt), ga, transposed(gpu, on_gpu(bt)), 1, 0);
        /* b broadcast over the batch (stride 0) */
        ddn_tensor *b1 = cpu_rand(dt, DDN_SHAPE(1, 1, 67, 9), -1, 1, 103);
        const int64_t bs[4] = {2, 3, 67, 9};
        check_matmul(dt, a, ddn_broadcast_raw(cpu, b1, 4, bs), ga,
                     ddn_broadcast_raw(gpu, on_gpu(b1), 4, bs), 1, 0);
        /* plain 2-D, and K = 0 (out = beta out) */
        ddn_tensor *m = cpu_rand(dt, DDN_SHAPE(5, 4), -1, 1, 104);
        ddn_tensor *n = cpu_rand(dt, DDN_SHAPE(4, 6), -1, 1, 105);
        check_matmul(dt, m, n, on_gpu(m), on_gpu(n), 1, 0);
        ddn_tensor *k0a = ddn_zeros(cpu, dt, DDN_SHAPE(5, 0)), *k0b = ddn_zeros(cpu, dt, DDN_SHAPE(0, 6));
        check_matmul(dt, k0a, k0b, on_gpu(k0a), on_gpu(k0b), 1, 0.5);
    }
}

/* ---- device: softmax and NLL ------------------------------------------------------------------ */
static void test_softmax_and_nll(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        const int64_t shapes[2][3] = {{1, 37, 1}, {2, 5, 3}}; /* rows; a middle dim (inner > 1) */
        for (int s = 0; s < 2; s++)
            for (int lg = 0; lg < 2; lg++) {
                ddn_tensor *x = cpu_rand(dt, 3, shapes[s], -8, 8, 110 + s);
                ddn_tensor *dy = cpu_rand(dt, 3, shapes[s], -1, 1, 112 + s);
                ddn_tensor *y = like(cpu, x, 0), *gy = like(gpu, x, 0);
                assert_ok(cpu, ddn_k(y)->softmax(y, x, 1, lg));
                assert_ok(gpu, ddn_k(gy)->softmax(gy, on_gpu(x), 1, lg));
                assert_tensor_close(gy, y, tol(dt), 4 * tol(dt));
                ddn_tensor *dx = like(cpu, x, 0.1), *gdx = like(gpu, x, 0.1);
                assert_ok(cpu, ddn_k(dx)->softmax_backward_acc(dx, y, dy, 1, lg));
                assert_ok(gpu, ddn_k(gdx)->softmax_backward_acc(gdx, gy, on_gpu(dy), 1, lg));
                assert_tensor_close(gdx, dx, 4 * tol(dt), 4 * tol(dt));
            }
        ddn_tensor *logp = cpu_rand(dt, DDN_SHAPE(300, 10), -5, 0, 120);
        int64_t lab[300];
        for (int i = 0; i < 300; i++) lab[i] = (i * 7) % 10;
        ddn_tensor *labels = ddn_tensor_from_host(cpu, DDN_DTYPE_I64, DDN_SHAPE(300), lab);
        ddn_tensor *glabels = on_gpu(labels);
        ddn_tensor *o = ddn_scalar(cpu, dt, 0), *go = ddn_scalar(gpu, dt, 0);
        assert_ok(cpu, ddn_k(o)->nll(o, logp, labels, 1.0 / 300));
        assert_ok(gpu, ddn_k(go)->nll(go, on_gpu(logp), glabels, 1.0 / 300));
        assert_tensor_close(go, o, 1e-12, tol(dt));
        ddn_tensor *dl = like(cpu, logp, 0), *gdl = like(gpu, logp, 0);
        ddn_tensor *dy = ddn_scalar(cpu, dt, 1.5);
        assert_ok(cpu, ddn_k(dl)->nll_backward_acc(dl, labels, dy, 1.0 / 300));
        assert_ok(gpu, ddn_k(gdl)->nll_backward_acc(gdl, glabels, on_gpu(dy), 1.0 / 300));
        assert_tensor_close(gdl, dl, 0, 0);
        /* a bad label: the CPU kernel's message, naming the first bad item */
        lab[123] = 10;
        lab[200] = -1;
        ddn_tensor *bad = ddn_tensor_from_host(gpu, DDN_DTYPE_I64, DDN_SHAPE(300), lab);
        assert_int_equal(ddn_k(go)->nll(go, on_gpu(logp), bad, 1), DDN_ERR_ARG);
        assert_error(gpu, DDN_ERR_ARG, "item 123 has label 10, outside [0, 10)");
        assert_int_equal(ddn_k(gdl)->nll_backward_acc(gdl, bad, on_gpu(dy), 1), DDN_ERR_ARG);
        assert_error(gpu, DDN_ERR_ARG, "item 123 has label 10");
    }
}

/* ---- device: optimizer kernels ---------------------------------------------------------------- */
/* Same arithmetic (optim_math.h) on both sides: float64 1e-15; float32 allows an FMA
 * contraction on the device (a few ulps). */
static void test_optimizer_updates(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        double t = dt == DDN_DTYPE_F32 ? 1e-6 : 1e-15;
        ddn_tensor *p = cpu_rand(dt, DDN_SHAPE(1000), -1, 1, 130);
        ddn_tensor *g = cpu_rand(dt, DDN_SHAPE(1000), -1, 1, 131);
        ddn_tensor *buf = like(cpu, p, 0);
        ddn_tensor *gp = on_gpu(p), *gg = on_gpu(g), *gbuf = on_gpu(buf);
        for (int step = 0; step < 3; step++) {
            assert_ok(cpu, ddn_k(p)->sgd_update(p, buf, g, 0.1, 0.9, 0.1, 1e-2, step == 2,
                                                step == 0));
            assert_ok(gpu, ddn_k(gp)->sgd_update(gp, gbuf, gg, 0.1, 0.9, 0.1, 1e-2, step == 2,
                                                 step == 0));
        }
        assert_tensor_close(gp, p, t, t);
        assert_tensor_close(gbuf, buf, t, t);
        ddn_tensor *m = like(cpu, p, 0), *v = like(cpu, p, 0), *vm = like(cpu, p, 0);
        ddn_tensor *gm = like(gpu, p, 0), *gv = like(gpu, p, 0), *gvm = like(gpu, p, 0);
        for (int step = 1; step <= 3; step++) {
            assert_ok(cpu, ddn_k(p)->adam_update(p, m, v, vm, g, 1e-3, 0.9, 0.999, 1e-8, 1e-2,
                                                 step == 3, step));
            assert_ok(gpu, ddn_k(gp)->adam_update(gp, gm, gv, gvm, gg, 1e-3, 0.9, 0.999, 1e-8,
                                                  1e-2, step == 3, step));
        }
        assert_tensor_close(gp, p, t, t);
        assert_tensor_close(gv, v, t, t);
        double s = 0, gs = 0;
        assert_ok(cpu, ddn_k(p)->sum_squares(p, &s));
        assert_ok(gpu, ddn_k(gp)->sum_squares(gp, &gs));
        assert_true(fabs(s - gs) <= 1e-6 * s);
    }
}

/* ---- device: convolution, batch norm, pooling, dropout ----------------------------------------- */
/* cuDNN with FMA math (no TF32): float32 sums of 18-60 products agree to 1e-5; float64 to 1e-12. */
static void test_conv2d_all_directions(void **state)
{
    (void)state;
    NEED_DEVICE();
    const int stride[2] = {2, 1}, padding[2] = {1, 1}, dilation[2] = {1, 2}, groups = 2;
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        double t = dt == DDN_DTYPE_F32 ? 1e-5 : 1e-12;
        ddn_tensor *x = cpu_rand(dt, DDN_SHAPE(2, 4, 9, 8), -1, 1, 150);
        ddn_tensor *w = cpu_rand(dt, DDN_SHAPE(6, 2, 3, 3), -1, 1, 151);
        ddn_tensor *bias = cpu_rand(dt, DDN_SHAPE(6), -1, 1, 152);
        ddn_tensor *dy = cpu_rand(dt, DDN_SHAPE(2, 6, 5, 6), -1, 1, 153);
        ddn_tensor *gx = on_gpu(x), *gw = on_gpu(w), *gbias = on_gpu(bias), *gdy = on_gpu(dy);
        ddn_tensor *y = like(cpu, dy, 0), *gy = like(gpu, dy, 0);
        assert_ok(cpu, ddn_k(y)->conv2d(y, x, w, bias, stride, padding, dilation, groups));
        assert_ok(gpu, ddn_k(gy)->conv2d(gy, gx, gw, gbias, stride, padding, dilation, groups));
        assert_tensor_close(gy, y, t, t);
        ddn_tensor *dx = like(cpu, x, 0.5), *gdx = like(gpu, x, 0.5);
        assert_ok(cpu, ddn_k(dx)->conv2d_backward_data_acc(dx, dy, w, stride, padding, dilation,
                                                           groups));
        assert_ok(gpu, ddn_k(gdx)->conv2d_backward_data_acc(gdx, gdy, gw, stride, padding,
                                                            dilation, groups));
        assert_tensor_close(gdx, dx, t, t);
        ddn_tensor *dw = like(cpu, w, 0.5), *gdw = like(gpu, w, 0.5);
        ddn_tensor *db = like(cpu, bias, 0.5), *gdb = like(gpu, bias, 0.5);
        assert_ok(cpu, ddn_k(dw)->conv2d_backward_filter_acc(dw, db, dy, x, w, stride, padding,
                                                             dilation, groups));
        assert_ok(gpu, ddn_k(gdw)->conv2d_backward_filter_acc(gdw, gdb, gdy, gx, gw, stride,
                                                              padding, dilation, groups));
        assert_tensor_close(gdw, dw, t, t);
        assert_tensor_close(gdb, db, t, t);
    }
}

/* cuDNN computes the batch statistics its own way (float32: 1e-4 relative after normalising);
 * float64 agrees to 1e-10. */
static void test_batch_norm(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int affine = 0; affine < 2; affine++) {
            double t = dt == DDN_DTYPE_F32 ? 1e-4 : 1e-10;
            ddn_tensor *x = cpu_rand(dt, DDN_SHAPE(4, 3, 5, 6), -2, 3, 160);
            ddn_tensor *w = affine ? cpu_rand(dt, DDN_SHAPE(3), 0.5, 1.5, 161) : NULL;
            ddn_tensor *b = affine ? cpu_rand(dt, DDN_SHAPE(3), -1, 1, 162) : NULL;
            ddn_tensor *gw = w ? on_gpu(w) : NULL, *gb = b ? on_gpu(b) : NULL, *gx = on_gpu(x);
            ddn_tensor *c[4], *g[4]; /* save_mean, save_invstd, running_mean, running_var */
            for (int i = 0; i < 4; i++) {
                c[i] = ddn_full(cpu, dt, DDN_SHAPE(3), i == 3 ? 1.0 : 0.0);
                g[i] = on_gpu(c[i]);
            }
            ddn_tensor *y = like(cpu, x, 0), *gy = like(gpu, x, 0);
            assert_ok(cpu, ddn_k(y)->batch_norm_train(y, c[0], c[1], c[2], c[3], x, w, b, 0.1,
                                                      1e-5));
            assert_ok(gpu, ddn_k(gy)->batch_norm_train(gy, g[0], g[1], g[2], g[3], gx, gw, gb,
                                                       0.1, 1e-5));
            assert_tensor_close(gy, y, t, t);
            for (int i = 0; i < 4; i++) assert_tensor_close(g[i], c[i], t, t);
            ddn_tensor *dy = cpu_rand(dt, DDN_SHAPE(4, 3, 5, 6), -1, 1, 163);
            ddn_tensor *dx = like(cpu, x, 0.5), *gdx = like(gpu, x, 0.5);
            ddn_tensor *dw = ddn_full(cpu, dt, DDN_SHAPE(3), 0.5), *gdw = on_gpu(dw);
            ddn_tensor *db = ddn_full(cpu, dt, DDN_SHAPE(3), 0.5), *gdb = on_gpu(db);
            assert_ok(cpu, ddn_k(dx)->batch_norm_backward_acc(dx, dw, db, x, dy, w, c[0], c[1],
                                                              true));
            assert_ok(gpu, ddn_k(gdx)->batch_norm_backward_acc(gdx, gdw, gdb, gx, on_gpu(dy), gw,
                                                               g[0], g[1], true));
            assert_tensor_close(gdx, dx, t, t);
            assert_tensor_close(gdw, dw, t, t);
            assert_tensor_close(gdb, db, t, t);
            assert_ok(cpu, ddn_k(y)->batch_norm_eval(y, x, w, b, c[2], c[3], 1e-5));
            assert_ok(gpu, ddn_k(gy)->batch_norm_eval(gy, gx, gw, gb, g[2], g[3], 1e-5));
            assert_tensor_close(gy, y, t, t);
        }
}

/* What cuDNN's batch norm cannot do runs on our kernels (cuda/norm.cu): eps below its 1e-5 in both
 * forwards, and the backward with constant statistics (evaluation mode), with and without dx,
 * per-channel vectors given as strided views. The arithmetic is the CPU's (norm_math.h) and sums
 * differ only in order (in double): float32 agrees to a few ulps, float64 to 1e-12. */
static void test_batch_norm_beyond_cudnn(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        double t = dt == DDN_DTYPE_F32 ? 1e-5 : 1e-12;
        ddn_tensor *x = cpu_rand(dt, DDN_SHAPE(3, 4, 5, 7), -2, 3, 170), *gx = on_gpu(x);
        ddn_tensor *dy = cpu_rand(dt, DDN_SHAPE(3, 4, 5, 7), -1, 1, 171), *gdy = on_gpu(dy);
        /* (4, 2) parameters; column 0 is the weight and column 1 the bias: stride-2 views */
        ddn_tensor *wb = cpu_rand(dt, DDN_SHAPE(4, 2), 0.5, 1.5, 172), *gwb = on_gpu(wb);
        ddn_tensor *w = ddn_view_raw(cpu, wb, 1, (int64_t[]){4}, (int64_t[]){2}, wb->offset);
        ddn_tensor *b = ddn_view_raw(cpu, wb, 1, (int64_t[]){4}, (int64_t[]){2}, wb->offset + 1);
        ddn_tensor *gw = ddn_view_raw(gpu, gwb, 1, (int64_t[]){4}, (int64_t[]){2}, gwb->offset);
        ddn_tensor *gb = ddn_view_raw(gpu, gwb, 1, (int64_t[]){4}, (int64_t[]){2}, gwb->offset + 1);
        assert_true(w && b && gw && gb);
        ddn_tensor *c[4], *g[4]; /* save_mean, save_invstd, running_mean, running_var */
        for (int i = 0; i < 4; i++) {
            c[i] = ddn_full(cpu, dt, DDN_SHAPE(4), i == 3 ? 1.5 : 0.25);
            g[i] = on_gpu(c[i]);
        }
        ddn_tensor *y = like(cpu, x, 0), *gy = like(gpu, x, 0);
        assert_ok(cpu, ddn_k(y)->batch_norm_train(y, c[0], c[1], c[2], c[3], x, w, b, 0.1, 1e-6));
        assert_ok(gpu, ddn_k(gy)->batch_norm_train(gy, g[0], g[1], g[2], g[3], gx, gw, gb, 0.1,
                                                   1e-6));
        assert_tensor_close(gy, y, t, t);
        for (int i = 0; i < 4; i++) assert_tensor_close(g[i], c[i], t, t);
        assert_ok(cpu, ddn_k(y)->batch_norm_eval(y, x, w, NULL, c[2], c[3], 1e-7));
        assert_ok(gpu, ddn_k(gy)->batch_norm_eval(gy, gx, gw, NULL, g[2], g[3], 1e-7));
        assert_tensor_close(gy, y, t, t);
        for (int with_dx = 0; with_dx < 2; with_dx++) {
            ddn_tensor *dx = with_dx ? like(cpu, x, 0.5) : NULL;
            ddn_tensor *gdx = with_dx ? like(gpu, x, 0.5) : NULL;
            ddn_tensor *dw = ddn_full(cpu, dt, DDN_SHAPE(4), 0.5), *gdw = on_gpu(dw);
            ddn_tensor *db = ddn_full(cpu, dt, DDN_SHAPE(4), 0.5), *gdb = on_gpu(db);
            /* evaluation: constant statistics (here the running mean, any invstd) */
            assert_ok(cpu, ddn_k(dy)->batch_norm_backward_acc(dx, dw, db, x, dy, w, c[2], c[1],
                                                              false));
            assert_ok(gpu, ddn_k(gdy)->batch_norm_backward_acc(gdx, gdw, gdb, gx, gdy, gw, g[2],
                                                               g[1], false));
            if (dx) assert_tensor_close(gdx, dx, t, t);
            assert_tensor_close(gdw, dw, t, t);
            assert_tensor_close(gdb, db, t, t);
        }
    }
}

/* Pooling uses the CPU's windows and summation order (pool_math.h): results agree to the last
 * bit except the max-pool gradient, whose atomic adds may reorder where windows share an argmax. */
static void test_pooling_and_dropout(void **state)
{
    (void)state;
    NEED_DEVICE();
    /* 3x3, stride 2, padding 1 over 10x9 with ceil_mode: 6x5 outputs */
    ddn_pool2d_params p = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1},
                           .ceil_mode = true};
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        double ulp = dt == DDN_DTYPE_F32 ? 2e-7 : 1e-15;
        ddn_tensor *x = cpu_rand(dt, DDN_SHAPE(2, 3, 10, 9), -1, 1, 170);
        ddn_tensor *dy = cpu_rand(dt, DDN_SHAPE(2, 3, 6, 5), -1, 1, 171);
        ddn_tensor *gx = on_gpu(x), *gdy = on_gpu(dy);
        ddn_tensor *y = like(cpu, dy, 0), *gy = like(gpu, dy, 0);
        ddn_tensor *idx = ddn_zeros(cpu, DDN_DTYPE_I64, DDN_SHAPE(2, 3, 6, 5));
        ddn_tensor *gidx = ddn_zeros(gpu, DDN_DTYPE_I64, DDN_SHAPE(2, 3, 6, 5));
        assert_ok(cpu, ddn_k(y)->max_pool2d(y, idx, x, &p));
        assert_ok(gpu, ddn_k(gy)->max_pool2d(gy, gidx, gx, &p));
        assert_tensor_close(gy, y, 0, 0);
        assert_tensor_close(gidx, idx, 0, 0);
        ddn_tensor *dx = like(cpu, x, 0.5), *gdx = like(gpu, x, 0.5);
        assert_ok(cpu, ddn_k(dx)->max_pool2d_backward_acc(dx, dy, idx));
        assert_ok(gpu, ddn_k(gdx)->max_pool2d_backward_acc(gdx, gdy, gidx));
        assert_tensor_close(gdx, dx, ulp, 4 * ulp);
        for (int include_pad = 0; include_pad < 2; include_pad++) {
            p.count_include_pad = include_pad;
            assert_ok(cpu, ddn_k(y)->avg_pool2d(y, x, &p));
            assert_ok(gpu, ddn_k(gy)->avg_pool2d(gy, gx, &p));
            assert_tensor_close(gy, y, 0, ulp);
            assert_ok(cpu, ddn_k(dx)->avg_pool2d_backward_acc(dx, dy, &p));
            assert_ok(gpu, ddn_k(gdx)->avg_pool2d_backward_acc(gdx, gdy, &p));
            assert_tensor_close(gdx, dx, ulp, ulp);
        }
        /* adaptive 10x9 -> 4x3: overlapping bins */
        ddn_tensor *ay = ddn_zeros(cpu, dt, DDN_SHAPE(2, 3, 4, 3));
        ddn_tensor *gay = ddn_zeros(gpu, dt, DDN_SHAPE(2, 3, 4, 3));
        ddn_tensor *ady = cpu_rand(dt, DDN_SHAPE(2, 3, 4, 3), -1, 1, 172);
        assert_ok(cpu, ddn_k(ay)->adaptive_avg_pool2d(ay, x));
        assert_ok(gpu, ddn_k(gay)->adaptive_avg_pool2d(gay, gx));
        assert_tensor_close(gay, ay, 0, ulp);
        assert_ok(cpu, ddn_k(dx)->adaptive_avg_pool2d_backward_acc(dx, ady));
        assert_ok(gpu, ddn_k(gdx)->adaptive_avg_pool2d_backward_acc(gdx, on_gpu(ady)));
        assert_tensor_close(gdx, dx, ulp, ulp);
        /* dropout: the same counter-based hash, so the same mask */
        ddn_tensor *mask = ddn_zeros(cpu, dt, DDN_SHAPE(1000));
        ddn_tensor *gmask = ddn_zeros(gpu, dt, DDN_SHAPE(1000));
        assert_ok(cpu, ddn_k(mask)->dropout_mask(mask, 0.3, 42));
        assert_ok(gpu, ddn_k(gmask)->dropout_mask(gmask, 0.3, 42));
        assert_tensor_close(gmask, mask, 0, 0);
    }
}

/* ---- device: dense linear algebra (cuSOLVER against LAPACK) ---------------------------------- */
/* Solutions and eigenvalues agree to 1e-4 (float32) / 1e-10 (float64); eigenvectors and Q are
 * compared in absolute value, as their signs are each library's choice. */
static ddn_tensor *abs_of(ddn_tensor *t)
{
    ddn_tensor *o = like(t->ctx, t, 0);
    assert_ok(t->ctx, ddn_k(o)->unary(DDN_UNARY_ABS, o, t, 0, 0));
    return o;
}

static void test_dense_linear_algebra(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        double t = dt == DDN_DTYPE_F32 ? 1e-4 : 1e-10;
        ddn_tensor *r = cpu_rand(dt, DDN_SHAPE(3, 6, 6), -1, 1, 190);
        ddn_tensor *a = ddn_contiguous(cpu, ddn_add(cpu, r, ddn_transpose(cpu, r, -1, -2)));
        ddn_tensor *diag = ddn_view_raw(cpu, a, 2, (const int64_t[]){3, 6},
                                        (const int64_t[]){36, 7}, 0);
        assert_ok(cpu, ddn_k(a)->unary(DDN_UNARY_ADD_SCALAR, diag, diag, 20, 0)); /* SPD */
        ddn_tensor *b = cpu_rand(dt, DDN_SHAPE(3, 6, 2), -1, 1, 191);
        ddn_tensor *ga = on_gpu(a), *gb = on_gpu(b);
        ddn_tensor *x = like(cpu, b, 0), *gx = like(gpu, b, 0);
        assert_ok(cpu, ddn_k(x)->lu_solve(x, a, b));
        assert_ok(gpu, ddn_k(gx)->lu_solve(gx, ga, gb));
        assert_tensor_close(gx, x, t, t);
        assert_ok(cpu, ddn_k(x)->cholesky_solve(x, a, b));
        assert_ok(gpu, ddn_k(gx)->cholesky_solve(gx, ga, gb));
        assert_tensor_close(gx, x, t, t);
        ddn_tensor *w = ddn_zeros(cpu, dt, DDN_SHAPE(3, 6)), *gw = ddn_zeros(gpu, dt, DDN_SHAPE(3, 6));
        ddn_tensor *v = like(cpu, a, 0), *gv = like(gpu, a, 0);
        assert_ok(cpu, ddn_k(w)->eigh(w, v, a));
        assert_ok(gpu, ddn_k(gw)->eigh(gw, gv, ga));
        assert_tensor_close(gw, w, t, t);
        assert_tensor_close(abs_of(gv), abs_of(v), t, t);
        ddn_tensor *m = cpu_rand(dt, DDN_SHAPE(2, 8, 3), -1, 1, 192);
        ddn_tensor *q = like(cpu, m, 0), *gq = like(gpu, m, 0);
        assert_ok(cpu, ddn_k(q)->qr(q, m));
        assert_ok(gpu, ddn_k(gq)->qr(gq, on_gpu(m)));
        assert_tensor_close(abs_of(gq), abs_of(q), t, t);
    }
    ddn_tensor *z = ddn_zeros(gpu, DDN_DTYPE_F64, DDN_SHAPE(1, 3, 3));
    ddn_tensor *zb = ddn_ones(gpu, DDN_DTYPE_F64, DDN_SHAPE(1, 3, 1));
    assert_int_equal(ddn_k(zb)->lu_solve(zb, z, zb), DDN_ERR_SINGULAR);
    assert_error(gpu, DDN_ERR_SINGULAR, "lu_solve: item 0 is singular");
}

/* ---- device: a short training run, CUDA against CPU ------------------------------------------- */
/* A two-layer MLP (matmul, relu, cross-entropy, SGD with momentum) for 20 steps on the same data
 * in both contexts: the loss falls and the two runs agree to 1e-4 (float32, different GEMM sums). */
static double train_mlp(ddn_ctx *ctx, const ddn_tensor *x_cpu, const ddn_tensor *labels_cpu,
                        const ddn_tensor *w1_cpu, const ddn_tensor *w2_cpu, double *first_loss)
{
    ddn_device dev = ddn_ctx_device(ctx);
    ddn_tensor *w1 = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, 2, w1_cpu->shape);
    ddn_tensor *w2 = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, 2, w2_cpu->shape);
    assert_non_null(w1);
    assert_non_null(w2);
    ddn_tensor *w1_init = ddn_tensor_to(ctx, w1_cpu, dev), *w2_init = ddn_tensor_to(ctx, w2_cpu, dev);
    if (!w1_init || !w2_init) fail_msg("tensor_to: %s", ddn_ctx_errmsg(ctx));
    assert_ok(ctx, ddn_tensor_copy_(w1, w1_init));
    assert_ok(ctx, ddn_tensor_copy_(w2, w2_init));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w1, true));
    assert_ok(ctx, ddn_tensor_set_requires_grad(w2, true));
    ddn_optim *opt = ddn_sgd_new(ctx, 2, (ddn_tensor *[]){w1, w2},
                                 (ddn_sgd_opts){.lr = 0.1, .momentum = 0.9});
    assert_non_null(opt);
    double loss_value = 0;
    for (int step = 0; step < 20; step++) {
        ddn_tensor *x = ddn_tensor_to(ctx, x_cpu, dev);
        ddn_tensor *labels = ddn_tensor_to(ctx, labels_cpu, dev);
        ddn_tensor *h = ddn_relu(ctx, ddn_matmul(ctx, x, w1));
        ddn_tensor *loss = ddn_cross_entropy(ctx, ddn_matmul(ctx, h, w2), labels,
                                             DDN_REDUCTION_MEAN);
        if (!loss) fail_msg("forward: %s", ddn_ctx_errmsg(ctx));
        assert_ok(ctx, ddn_backward(ctx, loss));
        loss_value = ddn_tensor_item(loss);
        if (step == 0) *first_loss = loss_value;
        assert_ok(ctx, ddn_optim_step(opt));
        ddn_optim_zero_grad(opt);
        ddn_ctx_reset_step(ctx);
    }
    ddn_optim_free(opt);
    ddn_tensor_free(w1);
    ddn_tensor_free(w2);
    return loss_value;
}

static void test_short_training_run(void **state)
{
    (void)state;
    NEED_DEVICE();
    ddn_ctx *data = test_ctx(); /* inputs outlive the training contexts' step resets */
    ddn_rng rng;
    ddn_rng_seed(&rng, 140);
    ddn_tensor *x = ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(64, 16), 0, 1);
    ddn_tensor *w1 = ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(16, 32), 0, 0.25);
    ddn_tensor *w2 = ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(32, 4), 0, 0.25);
    int64_t lab[64];
    for (int i = 0; i < 64; i++) lab[i] = i % 4;
    ddn_tensor *labels = ddn_tensor_from_host(data, DDN_DTYPE_I64, DDN_SHAPE(64), lab);
    double first_cpu, first_gpu;
    double last_cpu = train_mlp(cpu, x, labels, w1, w2, &first_cpu);
    double last_gpu = train_mlp(gpu, x, labels, w1, w2, &first_gpu);
    assert_true(fabs(first_cpu - first_gpu) <= 1e-5);
    assert_true(last_gpu < 0.8 * first_gpu);
    assert_true(fabs(last_cpu - last_gpu) <= 1e-4);
    ddn_ctx_free(data);
}

/* A persistent copy of src in ctx that requires grad (a parameter). */
static ddn_tensor *param_from(ddn_ctx *ctx, const ddn_tensor *src)
{
    ddn_tensor *p = ddn_tensor_new_persistent(ctx, src->dtype, src->ndim, src->shape);
    ddn_tensor *v = p ? ddn_tensor_to(ctx, src, ddn_ctx_device(ctx)) : NULL;
    if (!v || ddn_tensor_copy_(p, v) != DDN_OK || ddn_tensor_set_requires_grad(p, true) != DDN_OK)
        fail_msg("param_from: %s", ddn_ctx_errmsg(ctx));
    return p;
}

/* A small CNN through every layer kernel (conv + bias, batch norm in training mode with running
 * statistics, relu, max pool, global average pool, matmul, cross-entropy, SGD): 10 steps on the
 * same data and initial weights in both contexts; the losses agree to 1e-3 at every step
 * (float32, cuDNN's and the CPU's sums differ in order) and fall. */
static void train_cnn(ddn_ctx *ctx, ddn_tensor *const *init, const ddn_tensor *x_cpu,
                      const ddn_tensor *labels_cpu, double *losses)
{
    ddn_device dev = ddn_ctx_device(ctx);
    enum { CONV_W, CONV_B, BN_W, BN_B, FC_W, N_PARAMS };
    ddn_tensor *p[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) p[i] = param_from(ctx, init[i]);
    ddn_tensor *rmean = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(8));
    ddn_tensor *rvar = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(8));
    assert_non_null(rmean);
    assert_non_null(rvar);
    assert_ok(ctx, ddn_tensor_fill(rvar, 1.0));
    ddn_optim *opt = ddn_sgd_new(ctx, N_PARAMS, p, (ddn_sgd_opts){.lr = 0.05, .momentum = 0.9});
    assert_non_null(opt);
    ddn_conv2d_params cp = {{1, 1}, {1, 1}, {1, 1}, 1};
    ddn_pool2d_params pp = {.kernel = {2, 2}, .stride = {2, 2}};
    for (int step = 0; step < 10; step++) {
        ddn_tensor *x = ddn_tensor_to(ctx, x_cpu, dev);
        ddn_tensor *labels = ddn_tensor_to(ctx, labels_cpu, dev);
        ddn_tensor *h = ddn_conv2d(ctx, x, p[CONV_W], p[CONV_B], cp);
        h = ddn_batch_norm2d(ctx, h, p[BN_W], p[BN_B], rmean, rvar, true, 0.1, 1e-5);
        h = ddn_max_pool2d(ctx, ddn_relu(ctx, h), pp);
        h = ddn_flatten(ctx, ddn_adaptive_avg_pool2d(ctx, h, 1, 1), 1);
        ddn_tensor *loss = ddn_cross_entropy(ctx, ddn_matmul(ctx, h, p[FC_W]), labels,
                                             DDN_REDUCTION_MEAN);
        if (!loss) fail_msg("forward: %s", ddn_ctx_errmsg(ctx));
        assert_ok(ctx, ddn_backward(ctx, loss));
        losses[step] = ddn_tensor_item(loss);
        assert_ok(ctx, ddn_optim_step(opt));
        ddn_optim_zero_grad(opt);
        ddn_ctx_reset_step(ctx);
    }
    ddn_optim_free(opt);
    for (int i = 0; i < N_PARAMS; i++) ddn_tensor_free(p[i]);
    ddn_tensor_free(rmean);
    ddn_tensor_free(rvar);
}

static void test_cnn_training_run(void **state)
{
    (void)state;
    NEED_DEVICE();
    ddn_ctx *data = test_ctx();
    ddn_rng rng;
    ddn_rng_seed(&rng, 180);
    ddn_tensor *x = ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(16, 3, 8, 8), 0, 1);
    ddn_tensor *init[] = {
        ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(8, 3, 3, 3), 0, 0.3),
        ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(8), 0, 0.1),
        ddn_full(data, DDN_DTYPE_F32, DDN_SHAPE(8), 1.0),
        ddn_zeros(data, DDN_DTYPE_F32, DDN_SHAPE(8)),
        ddn_rand_normal(data, &rng, DDN_DTYPE_F32, DDN_SHAPE(8, 4), 0, 0.3),
    };
    int64_t lab[16];
    for (int i = 0; i < 16; i++) lab[i] = i % 4;
    ddn_tensor *labels = ddn_tensor_from_host(data, DDN_DTYPE_I64, DDN_SHAPE(16), lab);
    double cpu_loss[10], gpu_loss[10];
    train_cnn(cpu, init, x, labels, cpu_loss);
    train_cnn(gpu, init, x, labels, gpu_loss);
    for (int i = 0; i < 10; i++)
        if (!(fabs(cpu_loss[i] - gpu_loss[i]) <= 1e-3))
            fail_msg("step %d: loss %.6f on cuda, %.6f on cpu", i, gpu_loss[i], cpu_loss[i]);
    assert_true(gpu_loss[9] < gpu_loss[0]);
    ddn_ctx_free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_new_without_device_is_clean),
        cmocka_unit_test(test_missing_kernels_fail_cleanly),
        cmocka_unit_test(test_tensor_to_checks_and_cpu_copies),
        cmocka_unit_test(test_round_trip_and_reads),
        cmocka_unit_test(test_copy_fill_axpy),
        cmocka_unit_test(test_has_nonfinite),
        cmocka_unit_test(test_unary_ops_and_gradients),
        cmocka_unit_test(test_binary_ops_broadcast_and_gradients),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_matmul_layouts),
        cmocka_unit_test(test_softmax_and_nll),
        cmocka_unit_test(test_optimizer_updates),
        cmocka_unit_test(test_conv2d_all_directions),
        cmocka_unit_test(test_batch_norm),
        cmocka_unit_test(test_batch_norm_beyond_cudnn),
        cmocka_unit_test(test_pooling_and_dropout),
        cmocka_unit_test(test_dense_linear_algebra),
        cmocka_unit_test(test_short_training_run),
        cmocka_unit_test(test_cnn_training_run),
    };
    return cmocka_run_group_tests(tests, cuda_group_setup, cuda_group_teardown);
}
