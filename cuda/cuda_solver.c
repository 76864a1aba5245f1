/* ddn — CUDA dense linear algebra through cuSOLVER and cuBLAS: batched LU and Cholesky solves, the
 * symmetric eigensolver, thin QR (geqrf + orgqr); the same contract and argument checks as the
 * CPU kernels (core/cpu/linalg.c, core/linalg_check.c). Tests: tests/test_cuda.c and
 * tests/test_cuda_linalg.c (both paths of each entry, failing items mid-batch).
 *
 * cuSOLVER is column-major. A row-major buffer read column-major is the transpose, so: a general
 * A is factorized as A^T and solved with CUBLAS_OP_T; a symmetric A needs no transpose, and its
 * row-major lower triangle is the column-major upper one (CUBLAS_FILL_MODE_UPPER); right-hand
 * sides, eigenvectors and Q go through transposed copies (the copy kernel takes any strides).
 * Batches of small matrices (use_batched) take one library call for the whole batch: cuBLAS
 * getrfBatched + getrsBatched (LU), cuSOLVER potrfBatched + potrsBatched (Cholesky, one right-hand
 * side), syevjBatched (eigh). Otherwise, and always for QR (no batched route forms Q), items are
 * factorized one call each on the context's stream. Every item's info is read back once at the
 * end; the first failing item is reported as on the CPU.
 */
#include <float.h>

#include "cuda_impl.h"

/* The largest n the batched routines take. They are built for many small matrices, where one call
 * per item is mostly launch overhead (PMaF: 64 items of 16 x 16): cuBLAS documents getrfBatched
 * for small sizes where the launch overhead is a significant factor, and syevjBatched accepts
 * only n <= 32. Above it the per-item blocked routines keep the device busy on their own and the
 * launches are small beside each item's O(n^3) work, so the known-good loop stays; one bound for
 * all three keeps the paths simple to reason about and to test (n = 8 batched, n = 40 looped).
 * A batch of one is one call either way and takes the loop. */
#define BATCHED_MAX_N 32

/* Jacobi's stopping rule for syevjBatched (set explicitly, not left to the defaults): the
 * off-diagonal norm under the dtype's epsilon times ||A||_F, the accuracy LAPACK's syevd reaches
 * (cuSOLVER's documentation: no tolerance below machine accuracy, and about 15 sweeps reach it;
 * quadratic convergence makes 100 a ceiling that only a failing item meets), eigenvalues sorted
 * ascending as the contract requires. */
#define SYEVJ_MAX_SWEEPS 100

/* A contiguous copy in ctx's step arena of t with its last two dims swapped. */
static ddn_tensor *transposed_copy(ddn_ctx *ctx, const ddn_tensor *t)
{
    int nd = t->ndim;
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    for (int i = 0; i < nd; i++) shape[i] = t->shape[i], stride[i] = t->stride[i];
    shape[nd - 2] = t->shape[nd - 1], shape[nd - 1] = t->shape[nd - 2];
    stride[nd - 2] = t->stride[nd - 1], stride[nd - 1] = t->stride[nd - 2];
    ddn_tensor *v = ddn_view_raw(ctx, t, nd, shape, stride, t->offset);
    ddn_tensor *c = v ? ddn_tensor_new(ctx, t->dtype, nd, shape) : NULL;
    return c && ddn_cuda_copy(c, v) == DDN_OK ? c : NULL;
}

/* dst <- src with src's last two dims swapped (shapes already transposed to each other). */
static ddn_status copy_transposed(ddn_ctx *ctx, ddn_tensor *dst, const ddn_tensor *src)
{
    ddn_tensor *c = transposed_copy(ctx, src);
    return c ? ddn_cuda_copy(dst, c) : ddn_ctx_status(ctx);
}

static bool fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

/* Reads the batch's devInfo values (two arrays of n ints) and reports the first failure; lib names
 * the library that wrote them. */
static ddn_status check_infos(ddn_ctx *ctx, const char *op, const char *lib, const int *dev_info,
                              int64_t n, ddn_status fail, const char *what)
{
    int *host = ddn_ctx_scratch(ctx, (size_t)(2 * n) * sizeof *host);
    if (!host) return ddn_ctx_status(ctx);
    ddn_status st = ddn_cuda_read(ctx, host, dev_info, (size_t)(2 * n) * sizeof *host, op);
    for (int64_t i = 0; i < 2 * n && st == DDN_OK; i++) {
        int info = host[i];
        int64_t item = i % n;
        if (info < 0)
            st = ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "%s: %s rejected argument %d (item "
                                   "%lld)", op, lib, -info, (long long)item);
        else if (info > 0)
            st = ddn_ctx_set_error(ctx, i < n ? fail : DDN_ERR_BACKEND, "%s: item %lld %s "
                                   "(%s info %d)", op, (long long)item,
                                   i < n ? what : "failed", lib, info);
    }
    return st;
}

/* Scratch for a call: 2 n devInfo ints (zeroed), and optionally pivots. */
static int *infos(ddn_ctx *ctx, int64_t n)
{
    int *p = ddn_cuda_scratch(ctx, (size_t)(2 * n) * sizeof *p);
    if (p && DDN_CUDA_CHECK(ctx, cudaMemsetAsync(p, 0, (size_t)(2 * n) * sizeof *p,
                                                 ddn_cuda_state_of(ctx)->stream)) != DDN_OK)
        return NULL;
    return p;
}

/* The batched routines take a batch of two or more small matrices, counted in an int (the pointer
 * arrays hold twice the batch). */
static bool use_batched(ddn_linalg_dims d)
{
    return d.batch >= 2 && d.n <= BATCHED_MAX_N && fits_int(2 * d.batch);
}

/* The batched routines' operands: device arrays of pointers to the items of the contiguous
 * batches a (item stride sa bytes), then b (stride sb), [a_0 .. a_{B-1}, b_0 .. b_{B-1}],
 * uploaded in one copy on the context's stream. The host array lives in the step arena (pageable
 * memory, which the driver may stage or read later): the caller keeps it until the stream has
 * drained, the infos' read-back on success, a synchronize on failure. */
static void **pointer_arrays(ddn_ctx *ctx, void *a, size_t sa, void *b, size_t sb, int64_t batch)
{
    size_t bytes = (size_t)(2 * batch) * sizeof(void *);
    void **host = ddn_ctx_scratch(ctx, bytes);
    void **dev = host ? ddn_cuda_scratch(ctx, bytes) : NULL;
    if (!dev) return NULL;
    for (int64_t i = 0; i < batch; i++) {
        host[i] = (char *)a + (size_t)i * sa;
        host[batch + i] = (char *)b + (size_t)i * sb;
    }
    if (DDN_CUDA_CHECK(ctx, cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice,
                                            ddn_cuda_state_of(ctx)->stream)) != DDN_OK)
        return NULL;
    return dev;
}

/* The Jacobi parameters of syevjBatched (see SYEVJ_MAX_SWEEPS); *p is NULL on failure. */
static ddn_status syevj_params(ddn_ctx *ctx, syevjInfo_t *p, double tol)
{
    *p = NULL;
    if (DDN_CUSOLVER_CHECK(ctx, cusolverDnCreateSyevjInfo(p)) != DDN_OK) return ddn_ctx_status(ctx);
    if (DDN_CUSOLVER_CHECK(ctx, cusolverDnXsyevjSetTolerance(*p, tol)) == DDN_OK &&
        DDN_CUSOLVER_CHECK(ctx, cusolverDnXsyevjSetMaxSweeps(*p, SYEVJ_MAX_SWEEPS)) == DDN_OK &&
        DDN_CUSOLVER_CHECK(ctx, cusolverDnXsyevjSetSortEig(*p, 1)) == DDN_OK)
        return DDN_OK;
    DDN_CUSOLVER_CHECK(ctx, cusolverDnDestroySyevjInfo(*p)); /* the first error stays */
    *p = NULL;
    return ddn_ctx_status(ctx);
}

#define CHECK_SIZES(ctx, op, d)                                                                \
    do {                                                                                       \
        if (!fits_int((d).n) || !fits_int((d).k) || !fits_int((d).n * (d).k))                 \
            return ddn_ctx_set_error(ctx, DDN_ERR_UNSUPPORTED, "%s: sizes exceed cuSOLVER's "  \
                                     "int range", op);                                         \
    } while (0)

/* Per-dtype bodies: T the element, P cuSOLVER's prefix (S or D). Pointers are element 0 of
 * contiguous batches; info holds 2 batch ints (factorization, then solve / second step). */
#define SOLVER_IMPL(T, P)                                                                      \
    static ddn_status lu_##P(ddn_ctx *ctx, cusolverDnHandle_t h, T *lu, T *xt, int *ipiv,      \
                             int *info, ddn_linalg_dims d)                                     \
    {                                                                                          \
        int n = (int)d.n, k = (int)d.k, lwork = 0;                                             \
        if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##getrf_bufferSize(h, n, n, lu, n, &lwork))   \
            != DDN_OK)                                                                         \
            return ddn_ctx_status(ctx);                                                        \
        T *work = ddn_cuda_workspace(ctx, (size_t)(lwork > 0 ? lwork : 1) * sizeof(T));        \
        if (!work) return ddn_ctx_status(ctx);                                                 \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            T *ai = lu + i * d.n * d.n, *xi = xt + i * d.n * d.k;                              \
            if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##getrf(h, n, n, ai, n, work,             \
                                                             ipiv + i * d.n, info + i))        \
                    != DDN_OK ||                                                               \
                DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##getrs(h, CUBLAS_OP_T, n, k, ai, n,      \
                                                             ipiv + i * d.n, xi, n,            \
                                                             info + d.batch + i)) != DDN_OK)   \
                return ddn_ctx_status(ctx);                                                    \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }                                                                                          \
    static ddn_status chol_##P(ddn_ctx *ctx, cusolverDnHandle_t h, T *l, T *xt, int *info,     \
                               ddn_linalg_dims d)                                              \
    {                                                                                          \
        int n = (int)d.n, k = (int)d.k, lwork = 0;                                             \
        cublasFillMode_t up = CUBLAS_FILL_MODE_UPPER; /* row-major lower */                    \
        if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##potrf_bufferSize(h, up, n, l, n, &lwork))   \
            != DDN_OK)                                                                         \
            return ddn_ctx_status(ctx);                                                        \
        T *work = ddn_cuda_workspace(ctx, (size_t)(lwork > 0 ? lwork : 1) * sizeof(T));        \
        if (!work) return ddn_ctx_status(ctx);                                                 \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            T *li = l + i * d.n * d.n, *xi = xt + i * d.n * d.k;                               \
            if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##potrf(h, up, n, li, n, work, lwork,     \
                                                             info + i)) != DDN_OK ||           \
                DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##potrs(h, up, n, k, li, n, xi, n,        \
                                                             info + d.batch + i)) != DDN_OK)   \
                return ddn_ctx_status(ctx);                                                    \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }                                                                                          \
    static ddn_status syevd_##P(ddn_ctx *ctx, cusolverDnHandle_t h, T *m, T *w, int *info,     \
                                ddn_linalg_dims d, bool vectors)                               \
    {                                                                                          \
        int n = (int)d.n, lwork = 0;                                                           \
        cusolverEigMode_t job = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR; \
        cublasFillMode_t up = CUBLAS_FILL_MODE_UPPER; /* row-major lower */                    \
        if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##syevd_bufferSize(h, job, up, n, m, n, w,    \
                                                                    &lwork)) != DDN_OK)        \
            return ddn_ctx_status(ctx);                                                        \
        T *work = ddn_cuda_workspace(ctx, (size_t)(lwork > 0 ? lwork : 1) * sizeof(T));        \
        if (!work) return ddn_ctx_status(ctx);                                                 \
        for (int64_t i = 0; i < d.batch; i++)                                                  \
            if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##syevd(h, job, up, n, m + i * d.n * d.n, \
                                                             n, w + i * d.n, work, lwork,      \
                                                             info + i)) != DDN_OK)             \
                return ddn_ctx_status(ctx);                                                    \
        return DDN_OK;                                                                         \
    }                                                                                          \
    /* qt: the batch column-major (m x k, lda m), overwritten by Q; tau: k per item */         \
    static ddn_status qr_##P(ddn_ctx *ctx, cusolverDnHandle_t h, T *qt, T *tau, int *info,     \
                             ddn_linalg_dims d)                                                \
    {                                                                                          \
        int m = (int)d.n, k = (int)d.k, lw1 = 0, lw2 = 0;                                      \
        if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##geqrf_bufferSize(h, m, k, qt, m, &lw1))     \
                != DDN_OK ||                                                                   \
            DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##orgqr_bufferSize(h, m, k, k, qt, m, tau,    \
                                                                    &lw2)) != DDN_OK)          \
            return ddn_ctx_status(ctx);                                                        \
        int lwork = lw1 > lw2 ? lw1 : lw2;                                                     \
        T *work = ddn_cuda_workspace(ctx, (size_t)(lwork > 0 ? lwork : 1) * sizeof(T));        \
        if (!work) return ddn_ctx_status(ctx);                                                 \
        for (int64_t i = 0; i < d.batch; i++) {                                                \
            T *qi = qt + i * d.n * d.k, *ti = tau + i * d.k;                                   \
            if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##geqrf(h, m, k, qi, m, ti, work, lwork,  \
                                                             info + i)) != DDN_OK ||           \
                DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##orgqr(h, m, k, k, qi, m, ti, work,      \
                                                             lwork, info + d.batch + i))       \
                    != DDN_OK)                                                                 \
                return ddn_ctx_status(ctx);                                                    \
        }                                                                                      \
        return DDN_OK;                                                                         \
    }

SOLVER_IMPL(float, S)
SOLVER_IMPL(double, D)

/* The batched bodies (use_batched): one call per step for the whole batch, on the same buffers and
 * info layout as the loops above. */
#define BATCHED_IMPL(T, P)                                                                     \
    /* cuBLAS: getrfBatched writes each item's info on the device (U(i,i) = 0 names a singular \
     * item, as getrf); getrsBatched's info is a host int for argument errors only */          \
    static ddn_status lu_batched_##P(ddn_ctx *ctx, T *lu, T *xt, int *ipiv, int *info,         \
                                     ddn_linalg_dims d)                                        \
    {                                                                                          \
        int n = (int)d.n, k = (int)d.k, nb = (int)d.batch, arg = 0;                            \
        cublasHandle_t h = ddn_cuda_cublas(ctx);                                               \
        T **p = h ? (T **)pointer_arrays(ctx, lu, (size_t)(d.n * d.n) * sizeof(T), xt,         \
                                         (size_t)(d.n * d.k) * sizeof(T), d.batch)             \
                  : NULL;                                                                      \
        if (!p) return ddn_ctx_status(ctx);                                                    \
        if (DDN_CUBLAS_CHECK(ctx, cublas##P##getrfBatched(h, n, p, n, ipiv, info, nb))         \
                != DDN_OK ||                                                                   \
            DDN_CUBLAS_CHECK(ctx, cublas##P##getrsBatched(h, CUBLAS_OP_T, n, k,                \
                                                          (const T *const *)p, n, ipiv,        \
                                                          p + nb, n, &arg, nb)) != DDN_OK)     \
            return ddn_ctx_status(ctx);                                                        \
        if (arg != 0)                                                                          \
            return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "lu_solve: cuBLAS getrsBatched "    \
                                     "rejected argument %d", -arg);                            \
        return DDN_OK;                                                                         \
    }                                                                                          \
    /* cuSOLVER, one right-hand side (potrsBatched takes no more): potrfBatched's per-item     \
     * info names a matrix that is not positive definite, as potrf; potrsBatched's info is one \
     * device int for argument errors, kept in the solve half's first slot */                  \
    static ddn_status chol_batched_##P(ddn_ctx *ctx, T *l, T *xt, int *info,                   \
                                       ddn_linalg_dims d)                                      \
    {                                                                                          \
        int n = (int)d.n, nb = (int)d.batch;                                                   \
        cublasFillMode_t up = CUBLAS_FILL_MODE_UPPER; /* row-major lower */                    \
        cusolverDnHandle_t h = ddn_cuda_cusolver(ctx);                                         \
        T **p = h ? (T **)pointer_arrays(ctx, l, (size_t)(d.n * d.n) * sizeof(T), xt,          \
                                         (size_t)d.n * sizeof(T), d.batch)                     \
                  : NULL;                                                                      \
        if (!p) return ddn_ctx_status(ctx);                                                    \
        if (DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##potrfBatched(h, up, n, p, n, info, nb))     \
                != DDN_OK ||                                                                   \
            DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##potrsBatched(h, up, n, 1, p, n, p + nb,     \
                                                                n, info + d.batch, nb))        \
                != DDN_OK)                                                                     \
            return ddn_ctx_status(ctx);                                                        \
        return DDN_OK;                                                                         \
    }                                                                                          \
    /* cuSOLVER Jacobi, n <= 32, with the caller's parameters: info n + 1 is an item that did  \
     * not converge */                                                                         \
    static ddn_status syevj_batched_##P(ddn_ctx *ctx, syevjInfo_t params, T *m, T *w,          \
                                        int *info, ddn_linalg_dims d, bool vectors)            \
    {                                                                                          \
        int n = (int)d.n, nb = (int)d.batch, lwork = 0;                                        \
        cusolverEigMode_t job = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;\
        cublasFillMode_t up = CUBLAS_FILL_MODE_UPPER; /* row-major lower */                    \
        cusolverDnHandle_t h = ddn_cuda_cusolver(ctx);                                         \
        if (!h ||                                                                              \
            DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##syevjBatched_bufferSize(h, job, up, n, m, n,\
                                                                           w, &lwork, params,  \
                                                                           nb)) != DDN_OK)     \
            return ddn_ctx_status(ctx);                                                        \
        T *work = ddn_cuda_workspace(ctx, (size_t)(lwork > 0 ? lwork : 1) * sizeof(T));        \
        if (!work ||                                                                           \
            DDN_CUSOLVER_CHECK(ctx, cusolverDn##P##syevjBatched(h, job, up, n, m, n, w, work,  \
                                                                lwork, info, params, nb))      \
                != DDN_OK)                                                                     \
            return ddn_ctx_status(ctx);                                                        \
        return DDN_OK;                                                                         \
    }

BATCHED_IMPL(float, S)
BATCHED_IMPL(double, D)

/* lu_solve and cholesky_solve: factorize a copy of a, solve a transposed copy of b in place,
 * transpose it back into x. Small batches take the batched routines (Cholesky's when k = 1). */
static ddn_status solve(const char *op, bool cholesky, ddn_tensor *x, const ddn_tensor *a,
                        const ddn_tensor *b)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_solve(op, x, a, b, &d);
    if (st != DDN_OK || d.batch == 0 || d.n == 0 || d.k == 0) return st;
    ddn_ctx *ctx = x->ctx;
    CHECK_SIZES(ctx, op, d);
    bool batched = use_batched(d) && (!cholesky || d.k == 1);
    cusolverDnHandle_t h = batched ? NULL : ddn_cuda_cusolver(ctx); /* the batched bodies' own */
    if (!batched && !h) return ddn_ctx_status(ctx);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *m = ddn_tensor_new(ctx, a->dtype, a->ndim, a->shape);
    ddn_tensor *xt = m && ddn_cuda_copy(m, a) == DDN_OK ? transposed_copy(ctx, b) : NULL;
    int *info = xt ? infos(ctx, d.batch) : NULL;
    int *ipiv = info && !cholesky ? ddn_cuda_scratch(ctx, (size_t)(d.batch * d.n) * sizeof(int))
                                  : NULL;
    bool f32 = a->dtype == DDN_DTYPE_F32;
    void *mp = m ? ddn_tensor_ptr(m) : NULL, *xp = xt ? ddn_tensor_ptr(xt) : NULL;
    if (!info || (!cholesky && !ipiv)) st = ddn_ctx_status(ctx);
    else if (batched && cholesky)
        st = f32 ? chol_batched_S(ctx, mp, xp, info, d) : chol_batched_D(ctx, mp, xp, info, d);
    else if (batched)
        st = f32 ? lu_batched_S(ctx, mp, xp, ipiv, info, d)
                 : lu_batched_D(ctx, mp, xp, ipiv, info, d);
    else if (cholesky)
        st = f32 ? chol_S(ctx, h, mp, xp, info, d) : chol_D(ctx, h, mp, xp, info, d);
    else st = f32 ? lu_S(ctx, h, mp, xp, ipiv, info, d) : lu_D(ctx, h, mp, xp, ipiv, info, d);
    if (st == DDN_OK)
        st = check_infos(ctx, op, batched && !cholesky ? "cuBLAS" : "cuSOLVER", info, d.batch,
                         DDN_ERR_SINGULAR, cholesky ? "is not positive definite" : "is singular");
    if (st == DDN_OK) st = copy_transposed(ctx, x, xt);
    if (st != DDN_OK && batched) /* the pointer upload may still read its host array */
        DDN_CUDA_CHECK(ctx, cudaStreamSynchronize(ddn_cuda_state_of(ctx)->stream));
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cuda_lu_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b)
{
    return solve("lu_solve", false, x, a, b);
}

ddn_status ddn_cuda_cholesky_solve(ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b)
{
    return solve("cholesky_solve", true, x, a, b);
}

ddn_status ddn_cuda_eigh(ddn_tensor *w, ddn_tensor *v, const ddn_tensor *a)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_eigh(w, v, a, &d);
    if (st != DDN_OK || d.batch == 0 || d.n == 0) return st;
    ddn_ctx *ctx = w->ctx;
    CHECK_SIZES(ctx, "eigh", d);
    cusolverDnHandle_t h = ddn_cuda_cusolver(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *m = ddn_tensor_new(ctx, a->dtype, a->ndim, a->shape);
    int *info = m && ddn_cuda_copy(m, a) == DDN_OK ? infos(ctx, d.batch) : NULL;
    bool f32 = a->dtype == DDN_DTYPE_F32, batched = use_batched(d);
    void *mp = m ? ddn_tensor_ptr(m) : NULL, *wp = ddn_tensor_ptr(w);
    syevjInfo_t params = NULL; /* batched: Jacobi's parameters, kept until the infos are back */
    if (!info) st = ddn_ctx_status(ctx);
    else if (batched) {
        st = syevj_params(ctx, &params, f32 ? FLT_EPSILON : DBL_EPSILON);
        if (st == DDN_OK)
            st = f32 ? syevj_batched_S(ctx, params, mp, wp, info, d, v != NULL)
                     : syevj_batched_D(ctx, params, mp, wp, info, d, v != NULL);
    } else
        st = f32 ? syevd_S(ctx, h, mp, wp, info, d, v != NULL)
                 : syevd_D(ctx, h, mp, wp, info, d, v != NULL);
    if (st == DDN_OK)
        st = check_infos(ctx, "eigh", "cuSOLVER", info, d.batch, DDN_ERR_NOT_CONVERGED,
                         "did not converge");
    if (params) {
        ddn_status ds = DDN_CUSOLVER_CHECK(ctx, cusolverDnDestroySyevjInfo(params));
        if (st == DDN_OK) st = ds;
    }
    /* column-major eigenvectors in columns = row-major rows: transpose into v */
    if (st == DDN_OK && v) st = copy_transposed(ctx, v, m);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

ddn_status ddn_cuda_qr(ddn_tensor *q, const ddn_tensor *a)
{
    ddn_linalg_dims d;
    ddn_status st = ddn_linalg_check_qr(q, a, &d);
    if (st != DDN_OK || d.batch == 0 || d.k == 0) return st;
    ddn_ctx *ctx = q->ctx;
    CHECK_SIZES(ctx, "qr", d);
    cusolverDnHandle_t h = ddn_cuda_cusolver(ctx);
    if (!h) return ddn_ctx_status(ctx);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *qt = transposed_copy(ctx, a); /* (B, k, m) row-major = m x k column-major */
    void *tau = qt ? ddn_cuda_scratch(ctx, (size_t)(d.batch * d.k) * ddn_dtype_size(a->dtype))
                   : NULL;
    int *info = tau ? infos(ctx, d.batch) : NULL;
    if (!info) st = ddn_ctx_status(ctx);
    else if (a->dtype == DDN_DTYPE_F32) st = qr_S(ctx, h, ddn_tensor_ptr(qt), tau, info, d);
    else st = qr_D(ctx, h, ddn_tensor_ptr(qt), tau, info, d);
    if (st == DDN_OK)
        st = check_infos(ctx, "qr", "cuSOLVER", info, d.batch, DDN_ERR_BACKEND, "failed");
    if (st == DDN_OK) st = copy_transposed(ctx, q, qt);
    ddn_ctx_rewind(ctx, mark);
    return st;
}
