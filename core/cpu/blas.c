/* ddn — CPU matmul through OpenBLAS (cblas_sgemm / cblas_dgemm, row-major).
 *
 * An operand whose last dim has unit stride goes to BLAS as "N" and one whose second-to-last dim
 * has unit stride as "T", with the other stride as the leading dimension, so transposed views cost
 * no copy. Anything else (a sliced last dim, stride-0 matrix dims) is copied to contiguous
 * scratch first, once per distinct batch item. Batch items are separate gemm calls; when b is
 * broadcast over the whole batch and a's rows are evenly spaced, the batch folds into one tall
 * gemm. Small matrices run across the batch in parallel (OpenMP); large ones leave the threads
 * to OpenBLAS. Tests: tests/test_matmul.c.
 */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_impl.h"
#include "cpu_kernels.h"

/* OpenBLAS runs a gemm below this many multiply-adds on one thread; below it, parallelising over
 * the batch is the only parallelism there is. */
#define SMALL_GEMM_MNK (1 << 18)

typedef struct {
    enum CBLAS_TRANSPOSE tr;
    int64_t ld;
} mat_layout;

/* The BLAS description of an R x C matrix with row stride rs and column stride cs, or false when
 * it has none (then the operand is copied). Strides of size-1 dims do not matter. */
static bool layout_of(int64_t R, int64_t C, int64_t rs, int64_t cs, mat_layout *l)
{
    if ((C == 1 || cs == 1) && (R == 1 || rs >= C)) {
        l->tr = CblasNoTrans;
        l->ld = R == 1 ? (C > 1 ? C : 1) : rs;
        return true;
    }
    if ((R == 1 || rs == 1) && (C == 1 || cs >= R)) {
        l->tr = CblasTrans;
        l->ld = C == 1 ? (R > 1 ? R : 1) : cs;
        return true;
    }
    return false;
}

/* Merges dims 0..n-1 of t (batch dims and the row dim) into one evenly spaced dim of *size
 * elements with stride *stride; size-1 dims are skipped. False when they are not evenly spaced. */
static bool merge_leading(const ddn_tensor *t, int n, int64_t *size, int64_t *stride)
{
    int64_t sz = 1, st = 0;
    for (int d = n - 1; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (sz == 1) st = t->stride[d];
        else if (t->stride[d] != sz * st) return false;
        sz *= t->shape[d];
    }
    *size = sz;
    *stride = sz == 1 ? 1 : st;
    return true;
}

/* A contiguous copy of t in malloc'd scratch (*scratch, freed by the caller) returned as a view
 * with t's shape. Stride-0 batch dims stay stride 0, so a broadcast operand is copied once. */
static ddn_status compact_copy(const ddn_tensor *t, ddn_tensor *view, void **scratch)
{
    ddn_tensor src = *t;
    int nb = t->ndim - 2;
    for (int d = 0; d < nb; d++)
        if (t->stride[d] == 0) src.shape[d] = 1;
    int64_t cs[DDN_MAX_DIMS];
    ddn_contiguous_strides(t->ndim, src.shape, cs);
    size_t bytes = ddn_tensor_nbytes(&src);
    *scratch = malloc(bytes ? bytes : 1);
    if (!*scratch)
        return ddn_ctx_set_error(t->ctx, DDN_ERR_OOM, "matmul: no memory for a %zu-byte operand "
                                 "copy", bytes);
    ddn_tensor dst = src;
    memcpy(dst.stride, cs, sizeof cs);
    dst.data = *scratch;
    dst.offset = 0;
    ddn_status st = ddn_cpu_copy(&dst, &src);
    *view = dst;
    memcpy(view->shape, t->shape, sizeof view->shape);
    for (int d = 0; d < nb; d++)
        if (t->stride[d] == 0) view->stride[d] = 0;
    return st;
}

static void gemm(ddn_dtype dt, mat_layout la, mat_layout lb, int64_t M, int64_t N, int64_t K,
                 double alpha, const void *A, const void *B, double beta, void *C)
{
    if (dt == DDN_DTYPE_F32)
        cblas_sgemm(CblasRowMajor, la.tr, lb.tr, (blasint)M, (blasint)N, (blasint)K,
                    (float)alpha, A, (blasint)la.ld, B, (blasint)lb.ld, (float)beta, C,
                    (blasint)N);
    else
        cblas_dgemm(CblasRowMajor, la.tr, lb.tr, (blasint)M, (blasint)N, (blasint)K, alpha, A,
                    (blasint)la.ld, B, (blasint)lb.ld, beta, C, (blasint)N);
}

/* out = beta * out when the inner dim is empty (BLAS would reject ld = 0 on some paths). */
static void scale_out(ddn_tensor *out, double beta)
{
    int64_t n = ddn_tensor_numel(out);
    if (out->dtype == DDN_DTYPE_F32) {
        float *o = ddn_tensor_ptr(out);
        for (int64_t i = 0; i < n; i++) o[i] = beta == 0 ? 0.0f : (float)beta * o[i];
    } else {
        double *o = ddn_tensor_ptr(out);
        for (int64_t i = 0; i < n; i++) o[i] = beta == 0 ? 0.0 : beta * o[i];
    }
}

static bool fits_int(int64_t v) { return v <= INT_MAX; }

ddn_status ddn_cpu_matmul(ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b, double alpha,
                          double beta)
{
    int nd = out->ndim, nb = nd - 2;
    DDN_ASSERT(nd >= 2 && a->ndim == nd && b->ndim == nd && ddn_tensor_is_contiguous(out));
    DDN_ASSERT(a->dtype == out->dtype && b->dtype == out->dtype);
    if (!ddn_dtype_is_float(out->dtype))
        return ddn_ctx_set_error(out->ctx, DDN_ERR_DTYPE, "matmul: BLAS needs float32 or "
                                 "float64, got %s", ddn_dtype_name(out->dtype));
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a->shape[nd - 1];
    DDN_ASSERT(a->shape[nd - 2] == M && b->shape[nd - 2] == K && b->shape[nd - 1] == N);
    int64_t nbatch = 1;
    for (int d = 0; d < nb; d++) {
        DDN_ASSERT(a->shape[d] == out->shape[d] && b->shape[d] == out->shape[d]);
        nbatch *= out->shape[d];
    }
    if (M == 0 || N == 0 || nbatch == 0) return DDN_OK;
    if (K == 0) {
        scale_out(out, beta);
        return DDN_OK;
    }

    ddn_tensor ac = *a, bc = *b;
    void *scratch_a = NULL, *scratch_b = NULL;
    mat_layout la = {CblasNoTrans, 1}, lb = {CblasNoTrans, 1}; /* set by layout_of below */
    ddn_status st = DDN_OK;
    if (!layout_of(M, K, a->stride[nd - 2], a->stride[nd - 1], &la)) {
        st = compact_copy(a, &ac, &scratch_a);
        layout_of(M, K, ac.stride[nd - 2], ac.stride[nd - 1], &la);
    }
    if (st == DDN_OK && !layout_of(K, N, b->stride[nd - 2], b->stride[nd - 1], &lb)) {
        st = compact_copy(b, &bc, &scratch_b);
        layout_of(K, N, bc.stride[nd - 2], bc.stride[nd - 1], &lb);
    }
    if (st == DDN_OK && !(fits_int(M) && fits_int(N) && fits_int(K) &&
                          fits_int(la.ld) && fits_int(lb.ld)))
        st = ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "matmul: a dim or leading "
                               "dimension exceeds the 32-bit BLAS integer range");
    if (st != DDN_OK) {
        free(scratch_a);
        free(scratch_b);
        return st;
    }

    size_t es = ddn_dtype_size(out->dtype);
    const unsigned char *A = ddn_tensor_ptr(&ac), *B = ddn_tensor_ptr(&bc);
    unsigned char *C = ddn_tensor_ptr(out);

    /* b shared by the whole batch and a's (batch, row) dims evenly spaced: one (batch*M) x N gemm
     * (the shape of linear layers applied to sequences, and of their dA in backward). */
    bool b_shared = true;
    for (int d = 0; d < nb; d++) b_shared &= bc.shape[d] == 1 || bc.stride[d] == 0;
    int64_t rows, rstride;
    mat_layout lf;
    if (nbatch > 1 && b_shared && merge_leading(&ac, nd - 1, &rows, &rstride) &&
        fits_int(rows) && layout_of(rows, K, rstride, ac.stride[nd - 1], &lf) &&
        fits_int(lf.ld)) {
        gemm(out->dtype, lf, lb, rows, N, K, alpha, A, B, beta, C);
    } else {
        bool par = nbatch > 1 && M * N * K < SMALL_GEMM_MNK;
        (void)par;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par)
#endif
        for (int64_t i = 0; i < nbatch; i++) {
            int64_t rem = i, ao = 0, bo = 0;
            for (int d = nb - 1; d >= 0; d--) {
                int64_t idx = rem % out->shape[d];
                rem /= out->shape[d];
                ao += idx * ac.stride[d];
                bo += idx * bc.stride[d];
            }
            gemm(out->dtype, la, lb, M, N, K, alpha, A + (size_t)ao * es, B + (size_t)bo * es,
                 beta, C + (size_t)(i * M * N) * es);
        }
    }
    free(scratch_a);
    free(scratch_b);
    return DDN_OK;
}
