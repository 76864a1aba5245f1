/* ddn — the CUDA dense linear algebra against LAPACK on both of its routes (CTest label `cuda`).
 *
 * cuda/cuda_solver.c sends batches of small matrices (n <= 32, two or more items) to the
 * libraries' batched routines and everything else through one call per item. Each entry here runs
 * on both sides of that line (n = 8 and n = 40; k = 1 and k = 3, Cholesky's batched route taking
 * k = 1 only; float32 and float64) in a CPU context and the device context. Symmetric inputs carry
 * junk in their strict upper triangle, which the contract leaves unread, so the device's triangle
 * choice is checked too; and a singular / not positive definite item in the middle of a batch
 * must fail on the device with the CPU's status, naming the same item. Set-up, skipping without a
 * device and the self-check mode: cuda_test_util.h; the smaller cases and QR: test_cuda.c.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda_test_util.h"
#include "ddn_impl.h"

enum { B = 5, BAD = 2 }; /* items per batch; the failing item of the failure cases */
static const int sizes[] = {8, 40}; /* batched route, per-item route */

/* Solutions and eigenvalues agree to 1e-4 (float32) / 1e-10 (float64): the inputs are
 * diagonally dominant, so their condition numbers stay small (at most 4n). */
static double tol(ddn_dtype dt) { return dt == DDN_DTYPE_F32 ? 1e-4 : 1e-10; }

/* (B, n, n) float64 matrices in the CPU context's step memory, uniform in [-1, 1) off the
 * diagonal: general with n added to the diagonal, or symmetric ((r + r^T) off it) with 2n added,
 * which makes them positive definite (each row's off-diagonal sum stays under 2(n - 1)). */
static double *host_matrices(int n, bool sym, uint64_t seed)
{
    ddn_rng rng;
    ddn_rng_seed(&rng, seed);
    double *a = ddn_ctx_scratch(cpu, (size_t)B * n * n * sizeof *a);
    assert_non_null(a);
    for (int b = 0; b < B; b++) {
        double *m = a + (size_t)b * n * n;
        for (int i = 0; i < n * n; i++) m[i] = 2 * ddn_rng_uniform(&rng) - 1;
        for (int i = 0; i < n && sym; i++)
            for (int j = 0; j < i; j++) m[i * n + j] = m[j * n + i] = m[i * n + j] + m[j * n + i];
        for (int i = 0; i < n; i++) m[i * n + i] += sym ? 2 * n : n;
    }
    return a;
}

/* The host values v (float64, shape) as a CPU tensor of dtype dt; with junk_upper (n x n items)
 * the strict upper triangles are overwritten with 1e3 first (a copy: v is kept). */
static ddn_tensor *cpu_tensor(ddn_dtype dt, int ndim, const int64_t *shape, const double *v,
                              bool junk_upper)
{
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    double *c = ddn_ctx_scratch(cpu, (size_t)numel * sizeof *c);
    assert_non_null(c);
    memcpy(c, v, (size_t)numel * sizeof *c);
    int64_t n = shape[ndim - 1];
    for (int64_t b = 0; junk_upper && b < numel / (n * n); b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++) c[b * n * n + i * n + j] = 1e3;
    ddn_tensor *t64 = ddn_tensor_from_host(cpu, DDN_DTYPE_F64, ndim, shape, c);
    ddn_tensor *t = t64 ? ddn_tensor_new(cpu, dt, ndim, shape) : NULL;
    assert_non_null(t);
    assert_ok(cpu, ddn_tensor_copy_(t, t64));
    return t;
}

static ddn_tensor *zeros_like(ddn_ctx *ctx, const ddn_tensor *t)
{
    ddn_tensor *z = ddn_zeros(ctx, t->dtype, t->ndim, t->shape);
    assert_non_null(z);
    return z;
}

typedef ddn_status (*solve_fn)(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b);

/* x = A^-1 b in both contexts, compared; then the same with item BAD made singular (lu: a zero
 * row, an exact zero pivot for LAPACK on A and for the device on A^T) or not positive definite
 * (cholesky: -1 on the fourth diagonal entry): both fail with DDN_ERR_SINGULAR naming item BAD. */
static void check_solve(bool cholesky, ddn_dtype dt, int n, int k, uint64_t seed)
{
    const char *op = cholesky ? "cholesky_solve" : "lu_solve";
    double *h = host_matrices(n, cholesky, seed);
    const int64_t ashape[3] = {B, n, n}, bshape[3] = {B, n, k};
    ddn_tensor *a = cpu_tensor(dt, 3, ashape, h, cholesky);
    ddn_tensor *b = cpu_rand(dt, 3, bshape, -1, 1, seed + 1);
    ddn_tensor *ga = on_gpu(a), *gb = on_gpu(b);
    ddn_tensor *x = zeros_like(cpu, b), *gx = zeros_like(gpu, b);
    solve_fn cf = cholesky ? ddn_k(x)->cholesky_solve : ddn_k(x)->lu_solve;
    solve_fn gf = cholesky ? ddn_k(gx)->cholesky_solve : ddn_k(gx)->lu_solve;
    assert_ok(cpu, cf(x, a, b));
    assert_ok(gpu, gf(gx, ga, gb));
    assert_tensor_close(gx, x, tol(dt), tol(dt));

    double *m = h + (size_t)BAD * n * n;
    if (cholesky) m[3 * n + 3] = -1;
    else
        for (int j = 0; j < n; j++) m[3 * n + j] = 0;
    a = cpu_tensor(dt, 3, ashape, h, cholesky);
    ga = on_gpu(a);
    char needle[64];
    snprintf(needle, sizeof needle, "%s: item %d %s", op, BAD,
             cholesky ? "is not positive definite" : "is singular");
    assert_int_equal(cf(x, a, b), DDN_ERR_SINGULAR);
    assert_error(cpu, DDN_ERR_SINGULAR, needle);
    assert_int_equal(gf(gx, ga, gb), DDN_ERR_SINGULAR);
    assert_error(gpu, DDN_ERR_SINGULAR, needle);
}

static void test_lu_solve_both_routes(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int s = 0; s < 2; s++)
            for (int k = 1; k <= 3; k += 2) check_solve(false, dt, sizes[s], k, 400 + 10 * s + k);
}

static void test_cholesky_solve_both_routes(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int s = 0; s < 2; s++)
            for (int k = 1; k <= 3; k += 2) check_solve(true, dt, sizes[s], k, 500 + 10 * s + k);
}

/* eigh in both contexts: the eigenvalues agree (ascending on both); the device's eigenvectors
 * (signs are each library's) are checked for what they must be, orthonormal columns V with
 * A V = V diag(w) for the full symmetric A, to float32 / float64 rounding of a norm-n matrix;
 * without vectors (v NULL) the eigenvalues alone. */
static void check_eigh(ddn_dtype dt, int n, uint64_t seed)
{
    double *h = host_matrices(n, true, seed);
    const int64_t ashape[3] = {B, n, n}, wshape[2] = {B, n};
    ddn_tensor *a = cpu_tensor(dt, 3, ashape, h, true), *ga = on_gpu(a);
    ddn_tensor *w = ddn_zeros(cpu, dt, 2, wshape), *gw = ddn_zeros(gpu, dt, 2, wshape);
    ddn_tensor *gv = ddn_zeros(gpu, dt, 3, ashape);
    assert_non_null(w);
    assert_non_null(gw);
    assert_non_null(gv);
    assert_ok(cpu, ddn_k(w)->eigh(w, NULL, a));
    assert_ok(gpu, ddn_k(gw)->eigh(gw, NULL, ga));
    assert_tensor_close(gw, w, tol(dt), tol(dt));
    ddn_tensor *gw2 = ddn_zeros(gpu, dt, 2, wshape);
    assert_non_null(gw2);
    assert_ok(gpu, ddn_k(gw2)->eigh(gw2, gv, ga));
    assert_tensor_close(gw2, w, tol(dt), tol(dt));

    double *wv = ddn_ctx_scratch(cpu, (size_t)B * n * sizeof *wv);
    double *vv = ddn_ctx_scratch(cpu, (size_t)B * n * n * sizeof *vv);
    assert_non_null(wv);
    assert_non_null(vv);
    assert_ok(gpu, ddn_tensor_to_host(gw2, DDN_DTYPE_F64, wv));
    assert_ok(gpu, ddn_tensor_to_host(gv, DDN_DTYPE_F64, vv));
    double eps = dt == DDN_DTYPE_F32 ? 1e-5 : 1e-13, worst_res = 0, worst_orth = 0, wmax = 0;
    for (int b = 0; b < B; b++) {
        const double *A = h + (size_t)b * n * n, *V = vv + (size_t)b * n * n, *W = wv + b * n;
        for (int j = 0; j < n; j++) {
            wmax = fmax(wmax, fabs(W[j]));
            if (j > 0) assert_true(W[j] >= W[j - 1]);
            for (int i = 0; i < n; i++) {
                double av = 0, vtv = 0;
                for (int l = 0; l < n; l++) {
                    av += A[i * n + l] * V[l * n + j];
                    vtv += V[l * n + i] * V[l * n + j];
                }
                worst_res = fmax(worst_res, fabs(av - V[i * n + j] * W[j]));
                worst_orth = fmax(worst_orth, fabs(vtv - (i == j)));
            }
        }
    }
    if (worst_res > eps * n * wmax || worst_orth > eps * n)
        fail_msg("eigh n = %d %s: max |A V - V W| = %.3g (bound %.3g), max |V^T V - I| = %.3g "
                 "(bound %.3g)", n, ddn_dtype_name(dt), worst_res, eps * n * wmax, worst_orth,
                 eps * n);
}

static void test_eigh_both_routes(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++)
        for (int s = 0; s < 2; s++) check_eigh(dt, sizes[s], 600 + 10 * s);
}

/* Batch shapes: one item (1, 1, 5, 5) takes the per-item route even though it is small; six items
 * in two batch dims (2, 3, 7, 7) take the batched one. LU against LAPACK. */
static void test_batch_shapes(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int dt = DDN_DTYPE_F32; dt <= DDN_DTYPE_F64; dt++) {
        const int64_t shapes[2][4] = {{1, 1, 5, 5}, {2, 3, 7, 7}};
        for (int s = 0; s < 2; s++) {
            int64_t n = shapes[s][3];
            ddn_tensor *r = cpu_rand(dt, 4, shapes[s], -1, 1, 700 + s);
            ddn_tensor *diag = ddn_view_raw(cpu, r, 3, (const int64_t[]){shapes[s][0],
                                                                          shapes[s][1], n},
                                            (const int64_t[]){shapes[s][1] * n * n, n * n,
                                                              n + 1}, 0);
            assert_non_null(diag);
            assert_ok(cpu, ddn_k(r)->unary(DDN_UNARY_ADD_SCALAR, diag, diag, (double)n, 0));
            const int64_t bshape[4] = {shapes[s][0], shapes[s][1], n, 2};
            ddn_tensor *b = cpu_rand(dt, 4, bshape, -1, 1, 710 + s);
            ddn_tensor *x = zeros_like(cpu, b), *gx = zeros_like(gpu, b);
            assert_ok(cpu, ddn_k(x)->lu_solve(x, r, b));
            assert_ok(gpu, ddn_k(gx)->lu_solve(gx, on_gpu(r), on_gpu(b)));
            assert_tensor_close(gx, x, tol(dt), tol(dt));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lu_solve_both_routes),
        cmocka_unit_test(test_cholesky_solve_both_routes),
        cmocka_unit_test(test_eigh_both_routes),
        cmocka_unit_test(test_batch_shapes),
    };
    return cmocka_run_group_tests(tests, cuda_group_setup, cuda_group_teardown);
}
