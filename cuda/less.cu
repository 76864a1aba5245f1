// ddn — CUDA instances of the LESS block algorithms: the iterative forward
// (declarative/less_iter_blk.h) and backward E (declarative/less_vjp_blk.h).
//
// One block of DDN_BLK_THREADS threads per batch item; the algorithm text is the one the CPU
// instances run (declarative/less_blk.c), and tests/test_less_blk.c checks those against the
// LAPACK/BLAS host path, so what runs here is tested on machines without a GPU up to the
// data-parallel primitives of blk.h. Per-item workspace is global memory the launcher's caller
// hands out (cuda/cuda_less.c), item i at offset i * (its per-item size). Reductions are in
// double, in an order fixed by the block size: results are reproducible run to run.
#include "cuda_launch.h"

#include "blk.h"

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "less_iter_blk.h"
#include "less_vjp_blk.h"
#undef T
#undef TS

#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "less_iter_blk.h"
#include "less_vjp_blk.h"
#undef T
#undef TS

namespace {

// The kernels of one dtype: T the element, SFX the TS suffix.
#define LESS_KERNELS(T, SFX)                                                                   \
    __global__ void __launch_bounds__(DDN_BLK_THREADS)                                         \
        less_iterate_kernel_##SFX(int64_t m, int64_t n, const T *A, const T *bv, const T *uc,  \
                                  ddn_less_iter_params p, T *y, T *work, ddn_less_item *item)  \
    {                                                                                          \
        __shared__ double red[33];                                                             \
        ddn_blk b = {(int)threadIdx.x, (int)blockDim.x, red};                                  \
        const int64_t i = blockIdx.x;                                                          \
        less_blk_iterate_item_##SFX(&b, m, n, A + i * m * n, bv + i * m, uc + i * n, &p,       \
                                    y + i * n, work + i * DDN_LESS_ITER_WORK(m, n), item + i); \
    }                                                                                          \
    __global__ void __launch_bounds__(DDN_BLK_THREADS)                                         \
        less_vjp_e_kernel_##SFX(int64_t m, int64_t n, T *dA, T *db, const T *A, const T *bv,   \
                                const T *y, const T *v, const double *nu, double *work,        \
                                int *iwork, ddn_less_item *item)                               \
    {                                                                                          \
        __shared__ double red[33];                                                             \
        ddn_blk b = {(int)threadIdx.x, (int)blockDim.x, red};                                  \
        const int64_t i = blockIdx.x;                                                          \
        less_blk_vjp_e_##SFX(&b, m, n, A + i * m * n, bv + i * m, y + i * n, v + i * n, nu[i], \
                             dA ? dA + i * m * n : nullptr, db ? db + i * m : nullptr,         \
                             work + i * DDN_LESS_VJP_WORK(m, n),                               \
                             iwork + i * DDN_LESS_VJP_IWORK(n), item + i);                     \
    }

LESS_KERNELS(float, f32)
LESS_KERNELS(double, f64)

} // namespace

extern "C" int ddn_cuda_launch_less_iterate(cudaStream_t s, int dt, int64_t B, int64_t m,
                                            int64_t n, void *y, const void *A, const void *b,
                                            const void *uc, const ddn_less_iter_params *p,
                                            void *work, ddn_less_item *item)
{
    if (B <= 0) return (int)cudaSuccess;
    if (dt == 0)
        less_iterate_kernel_f32<<<(unsigned)B, DDN_BLK_THREADS, 0, s>>>(
            m, n, (const float *)A, (const float *)b, (const float *)uc, *p, (float *)y,
            (float *)work, item);
    else
        less_iterate_kernel_f64<<<(unsigned)B, DDN_BLK_THREADS, 0, s>>>(
            m, n, (const double *)A, (const double *)b, (const double *)uc, *p, (double *)y,
            (double *)work, item);
    return (int)cudaGetLastError();
}

extern "C" int ddn_cuda_launch_less_vjp_e(cudaStream_t s, int dt, int64_t B, int64_t m,
                                          int64_t n, void *dA, void *db, const void *A,
                                          const void *b, const void *y, const void *v,
                                          const double *nu, double *work, int *iwork,
                                          ddn_less_item *item)
{
    if (B <= 0) return (int)cudaSuccess;
    if (dt == 0)
        less_vjp_e_kernel_f32<<<(unsigned)B, DDN_BLK_THREADS, 0, s>>>(
            m, n, (float *)dA, (float *)db, (const float *)A, (const float *)b,
            (const float *)y, (const float *)v, nu, work, iwork, item);
    else
        less_vjp_e_kernel_f64<<<(unsigned)B, DDN_BLK_THREADS, 0, s>>>(
            m, n, (double *)dA, (double *)db, (const double *)A, (const double *)b,
            (const double *)y, (const double *)v, nu, work, iwork, item);
    return (int)cudaGetLastError();
}
