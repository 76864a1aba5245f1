// ddn — the IED layer's E-mode implicit backward on the device: the block algorithm of
// declarative/ied_backward_blk.h (the same source the CPU instance, declarative/ied_backward_blk.c,
// runs and the tests check against LAPACK), one thread block per batch item, and the gradient
// dA += u y^T (+ y u^T) in dA's dtype. Launched by cuda/cuda_ied_backward.c.
//
// A grid of `blocks` blocks walks the B items (block i takes items i, i + blocks, ...), so the
// per-block scratch (the (m+1)^2 LU matrix above all) is bounded by the launcher, not by B.
#include <math.h>

#include "cuda_launch.h"

#include "blk.h"

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "ied_backward_blk.h"
#undef T
#undef TS
#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "ied_backward_blk.h"
#undef T
#undef TS

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t n)
{
    int64_t b = (n + kThreads - 1) / kThreads;
    return (int)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

__device__ __forceinline__ void item(const ddn_blk *b, int ift, int64_t m, const float *A,
                                     const float *y, const float *v, const double *z, double *ws,
                                     int *piv, double *yd, double *u, ddn_iedb_out *out)
{
    ddn_iedb_item_f32(b, ift, m, A, y, v, z, ws, piv, yd, u, out);
}

__device__ __forceinline__ void item(const ddn_blk *b, int ift, int64_t m, const double *A,
                                     const double *y, const double *v, const double *z,
                                     double *ws, int *piv, double *yd, double *u,
                                     ddn_iedb_out *out)
{
    ddn_iedb_item_f64(b, ift, m, A, y, v, z, ws, piv, yd, u, out);
}

template <typename T>
__global__ void __launch_bounds__(DDN_BLK_THREADS)
    ied_vjp_e_kernel(int ift, int64_t B, int64_t m, const T *A, const T *y, const T *v,
                     const double *z, double *ws, int *piv, double *yd, double *u,
                     ddn_iedb_out *out)
{
    __shared__ double red[33];
    ddn_blk b = {(int)threadIdx.x, (int)blockDim.x, red};
    double *w = ws + blockIdx.x * ddn_iedb_ws_doubles(m);
    int *p = piv + blockIdx.x * ddn_iedb_ws_ints(m);
    for (int64_t i = blockIdx.x; i < B; i += gridDim.x)
        item(&b, ift, m, A + i * m * m, y + i * m, v + i * m, z, w, p, yd + i * m, u + i * m,
             out + i);
}

// One thread per gradient entry, the same expression as the CPU instance's add_low_rank.
template <typename TG>
__global__ void ied_grad_acc_kernel(int sym2, int64_t B, int64_t m, TG *dA, const double *u,
                                    const double *y)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * m * m;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = e / (m * m), j = e / m % m, k = e % m;
        const double *ub = u + b * m, *yb = y + b * m;
        const double g = ub[j] * yb[k] + (sym2 ? yb[j] * ub[k] : 0);
        dA[e] += (TG)g;
    }
}

} // namespace

extern "C" int ddn_cuda_launch_ied_vjp_e(cudaStream_t s, int dt, int ift, int64_t B, int64_t m,
                                         const void *A, const void *y, const void *v,
                                         const double *z, int blocks, double *ws, int *piv,
                                         double *yd, double *u, void *out)
{
    if (B == 0 || m == 0) return cudaSuccess;
    ddn_iedb_out *o = (ddn_iedb_out *)out;
    if (dt == 0)
        ied_vjp_e_kernel<float><<<blocks, DDN_BLK_THREADS, 0, s>>>(
            ift, B, m, (const float *)A, (const float *)y, (const float *)v, z, ws, piv, yd, u, o);
    else
        ied_vjp_e_kernel<double><<<blocks, DDN_BLK_THREADS, 0, s>>>(
            ift, B, m, (const double *)A, (const double *)y, (const double *)v, z, ws, piv, yd,
            u, o);
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_ied_grad_acc(cudaStream_t s, int dt, int sym2, int64_t B,
                                            int64_t m, void *dA, const double *u,
                                            const double *y)
{
    if (B == 0 || m == 0) return cudaSuccess;
    if (dt == 0)
        ied_grad_acc_kernel<float><<<grid_for(B * m * m), kThreads, 0, s>>>(sym2, B, m,
                                                                            (float *)dA, u, y);
    else
        ied_grad_acc_kernel<double><<<grid_for(B * m * m), kThreads, 0, s>>>(sym2, B, m,
                                                                             (double *)dA, u, y);
    return cudaGetLastError();
}
