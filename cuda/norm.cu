// ddn — CUDA batch normalisation for what cuDNN's spatial batch norm does not cover: eps below
// CUDNN_BN_MIN_EPSILON (training and evaluation forward) and the backward with constant
// statistics (evaluation mode). cuda/cuda_norm.c chooses between these kernels and cuDNN.
//
// One block of kThreads per channel (grid-stride over channels): each thread folds a strided
// share of the channel's N H W values in double, then the block combines the partials in a fixed
// tree, so results are deterministic and differ from the CPU's sequential sums by rounding only.
// The statistics and the per-element arithmetic are core/cpu/norm_math.h's, the CPU's own.
// Evaluation forward has no reduction: one block per (n, c) plane.
#include <math.h>

#include "cuda_launch.h"
#include "norm_math.h"

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t blocks)
{
    return (int)(blocks < 1 ? 1 : blocks > 65535 * 16 ? 65535 * 16 : blocks);
}

template <typename T>
__device__ __forceinline__ double vget(const ddn_cuda_vec &v, int64_t c, double dflt)
{
    return v.p ? (double)((const T *)v.p)[c * v.s] : dflt;
}

template <typename T>
__device__ __forceinline__ void vset(const ddn_cuda_vec &v, int64_t c, double value)
{
    if (v.p) ((T *)v.p)[c * v.s] = (T)value;
}

// Offset of value i (0 <= i < N HW) of channel c in a contiguous (N, C, HW) tensor.
__device__ __forceinline__ int64_t chan_off(const ddn_cuda_bn_args &a, int64_t c, int64_t i)
{
    return ((i / a.HW) * a.C + c) * a.HW + i % a.HW;
}

// Tree sum of two values per thread; every thread gets both totals. kThreads is a power of 2.
__device__ void block_sum2(double *u, double *v, double (*shared)[kThreads])
{
    shared[0][threadIdx.x] = *u;
    shared[1][threadIdx.x] = *v;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) {
            shared[0][threadIdx.x] += shared[0][threadIdx.x + w];
            shared[1][threadIdx.x] += shared[1][threadIdx.x + w];
        }
        __syncthreads();
    }
    *u = shared[0][0];
    *v = shared[1][0];
    __syncthreads(); // the next call overwrites shared
}

template <typename T>
__global__ void bn_train_kernel(ddn_cuda_bn_args a, T *y, const T *x, double momentum, double eps)
{
    __shared__ double shared[2][kThreads];
    const int64_t count = a.N * a.HW;
    const double n = (double)count;
    for (int64_t c = blockIdx.x; c < a.C; c += gridDim.x) {
        // two passes (mean, then squared deviations), as the CPU: no cancellation for large means
        double sum = 0, unused = 0;
        for (int64_t i = threadIdx.x; i < count; i += kThreads) sum += (double)x[chan_off(a, c, i)];
        block_sum2(&sum, &unused, shared);
        const double mean = sum / n;
        double ss = 0;
        for (int64_t i = threadIdx.x; i < count; i += kThreads) {
            double d = (double)x[chan_off(a, c, i)] - mean;
            ss += d * d;
        }
        block_sum2(&ss, &unused, shared);
        const double var = ss / n, invstd = ddn_bn_invstd(var, eps);
        const double scale = ddn_bn_train_scale(invstd, vget<T>(a.w, c, 1.0));
        const double shift = ddn_bn_shift(vget<T>(a.b, c, 0.0), mean, scale);
        if (threadIdx.x == 0) {
            vset<T>(a.mean, c, mean);
            vset<T>(a.invstd, c, invstd);
            if (a.rmean.p && a.rvar.p) {
                vset<T>(a.rmean, c, ddn_bn_running(vget<T>(a.rmean, c, 0), mean, momentum));
                vset<T>(a.rvar, c, ddn_bn_running(vget<T>(a.rvar, c, 0), ss / (n - 1), momentum));
            }
        }
        // every read of x above is done (block_sum2 synchronised), so y may be x
        for (int64_t i = threadIdx.x; i < count; i += kThreads) {
            int64_t o = chan_off(a, c, i);
            y[o] = (T)(x[o] * scale + shift);
        }
    }
}

template <typename T>
__global__ void bn_eval_kernel(ddn_cuda_bn_args a, T *y, const T *x, double eps)
{
    for (int64_t p = blockIdx.x; p < a.N * a.C; p += gridDim.x) {
        const int64_t c = p % a.C;
        const double scale = ddn_bn_eval_scale(vget<T>(a.w, c, 1.0), vget<T>(a.rvar, c, 0), eps);
        const double shift = ddn_bn_shift(vget<T>(a.b, c, 0.0), vget<T>(a.rmean, c, 0), scale);
        const T *xp = x + p * a.HW;
        T *yp = y + p * a.HW;
        for (int64_t j = threadIdx.x; j < a.HW; j += kThreads) yp[j] = (T)(xp[j] * scale + shift);
    }
}

template <typename T>
__global__ void bn_backward_kernel(ddn_cuda_bn_args a, T *dx, const T *x, const T *dy,
                                   bool training)
{
    __shared__ double shared[2][kThreads];
    const int64_t count = a.N * a.HW;
    const double n = (double)count;
    for (int64_t c = blockIdx.x; c < a.C; c += gridDim.x) {
        const double mean = vget<T>(a.mean, c, 0), invstd = vget<T>(a.invstd, c, 1.0);
        double sdy = 0, sdyxc = 0; // sum dy, sum dy (x - mean)
        for (int64_t i = threadIdx.x; i < count; i += kThreads) {
            int64_t o = chan_off(a, c, i);
            sdy += (double)dy[o];
            sdyxc += dy[o] * ((double)x[o] - mean);
        }
        block_sum2(&sdy, &sdyxc, shared);
        const double sdyxhat = sdyxc * invstd;
        if (threadIdx.x == 0) {
            vset<T>(a.db, c, vget<T>(a.db, c, 0) + sdy);
            vset<T>(a.dw, c, vget<T>(a.dw, c, 0) + sdyxhat);
        }
        if (!dx) continue;
        const ddn_bn_grad_coef g =
            ddn_bn_grad_coefs(vget<T>(a.w, c, 1.0), invstd, sdy, sdyxhat, n, training);
        for (int64_t i = threadIdx.x; i < count; i += kThreads) {
            int64_t o = chan_off(a, c, i);
            dx[o] = (T)ddn_bn_dx(dx[o], dy[o], x[o], mean, g);
        }
    }
}

} // namespace

#define FLOAT_DISPATCH(dt, F)                                                                  \
    do {                                                                                       \
        if ((dt) == 0) { typedef float T; F; }                                                 \
        else { typedef double T; F; }                                                          \
    } while (0)

extern "C" int ddn_cuda_launch_bn_train(cudaStream_t s, int dt, const ddn_cuda_bn_args *a,
                                        void *y, const void *x, double momentum, double eps)
{
    if (a->C == 0 || a->N * a->HW == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (bn_train_kernel<T><<<grid_for(a->C), kThreads, 0, s>>>(
                           *a, (T *)y, (const T *)x, momentum, eps)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_bn_eval(cudaStream_t s, int dt, const ddn_cuda_bn_args *a,
                                       void *y, const void *x, double eps)
{
    if (a->N * a->C * a->HW == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (bn_eval_kernel<T><<<grid_for(a->N * a->C), kThreads, 0, s>>>(
                           *a, (T *)y, (const T *)x, eps)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_bn_backward_acc(cudaStream_t s, int dt, const ddn_cuda_bn_args *a,
                                               void *dx, const void *x, const void *dy,
                                               int training)
{
    if (a->C == 0) return cudaSuccess; // N H W = 0 still runs: sums of nothing add 0
    FLOAT_DISPATCH(dt, (bn_backward_kernel<T><<<grid_for(a->C), kThreads, 0, s>>>(
                           *a, (T *)dx, (const T *)x, (const T *)dy, training != 0)));
    return cudaGetLastError();
}
