// ddn — CUDA pooling (max, average, adaptive average, with backward) and the dropout mask.
//
// Windows, bins and the dropout hash are core/cpu/pool_math.h, shared with the CPU. Forward:
// one thread per output element. Average-pool backward: one thread per input element, gathering
// the contributions of the outputs whose windows contain it in ascending output order, which is
// the order the CPU adds them in: no atomics, deterministic, equal to the CPU bit for bit.
// Max-pool backward scatters (see its kernel).
#include <math.h>

#include "cuda_launch.h"
#include "pool_math.h"

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t n)
{
    int64_t b = (n + kThreads - 1) / kThreads;
    return (int)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

#define GRID_LOOP(i, n)                                                                        \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                  \
         i += (int64_t)gridDim.x * blockDim.x)

// The outputs along one axis whose (unclipped) windows [o s - p, o s - p + k) contain input i:
// a superset is fine, callers check the clipped window.
__device__ __forceinline__ void outputs_covering(int64_t i, int64_t k, int64_t s, int64_t p,
                                                 int64_t n_out, int64_t *lo, int64_t *hi)
{
    int64_t first = i + p - k + 1; // o s >= first
    *lo = first <= 0 ? 0 : (first + s - 1) / s;
    int64_t last = (i + p) / s; // o s <= i + p
    *hi = last < n_out - 1 ? last : n_out - 1;
}

template <typename T>
__global__ void max_pool_kernel(ddn_cuda_pool_geom g, T *y, int64_t *idx, const T *x)
{
    GRID_LOOP(o, g.planes * g.OH * g.OW)
    {
        int64_t pl = o / (g.OH * g.OW), oh = o / g.OW % g.OH, ow = o % g.OW;
        const T *xp = x + pl * g.H * g.W;
        int64_t h0 = oh * g.sh - g.ph, h1 = h0 + g.kh < g.H ? h0 + g.kh : g.H;
        int64_t w0 = ow * g.sw - g.pw, w1 = w0 + g.kw < g.W ? w0 + g.kw : g.W;
        if (h0 < 0) h0 = 0;
        if (w0 < 0) w0 = 0;
        T m = (T)-INFINITY; // padding is -inf; the first maximum wins, a NaN always
        int64_t mi = h0 * g.W + w0;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) {
                T v = xp[h * g.W + w];
                if (v > m || v != v) m = v, mi = h * g.W + w;
            }
        y[o] = m;
        if (idx) idx[o] = mi;
    }
}

// The max-pool gradient is the one scatter: the kernel contract gives only the saved indices,
// not the window geometry to gather by, so each output adds its gradient to its argmax with an
// atomic add. Only where overlapping windows share an argmax can the order of those additions
// vary (last-bit differences from the CPU there).
template <typename T>
__global__ void max_pool_backward_kernel(ddn_cuda_pool_geom g, T *dx, const T *dy,
                                         const int64_t *idx)
{
    GRID_LOOP(o, g.planes * g.OH * g.OW)
    {
        int64_t pl = o / (g.OH * g.OW);
        atomicAdd(dx + pl * g.H * g.W + idx[o], dy[o]);
    }
}

template <typename T>
__global__ void avg_pool_kernel(ddn_cuda_pool_geom g, T *y, const T *x)
{
    GRID_LOOP(o, g.planes * g.OH * g.OW)
    {
        int64_t pl = o / (g.OH * g.OW), oh = o / g.OW % g.OH, ow = o % g.OW;
        const T *xp = x + pl * g.H * g.W;
        int64_t h0, h1, w0, w1;
        int64_t div = ddn_avg_window(oh, ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.H, g.W,
                                     g.count_include_pad, &h0, &h1, &w0, &w1);
        double s = 0;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) s += xp[h * g.W + w];
        y[o] = h0 < h1 && w0 < w1 ? (T)(s / (double)div) : (T)0;
    }
}

template <typename T>
__global__ void avg_pool_backward_kernel(ddn_cuda_pool_geom g, T *dx, const T *dy)
{
    GRID_LOOP(i, g.planes * g.H * g.W)
    {
        int64_t pl = i / (g.H * g.W), h = i / g.W % g.H, w = i % g.W;
        int64_t oh0, oh1, ow0, ow1;
        outputs_covering(h, g.kh, g.sh, g.ph, g.OH, &oh0, &oh1);
        outputs_covering(w, g.kw, g.sw, g.pw, g.OW, &ow0, &ow1);
        const T *gp = dy + pl * g.OH * g.OW;
        T acc = dx[i];
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++) {
                int64_t h0, h1, w0, w1;
                int64_t div = ddn_avg_window(oh, ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.H, g.W,
                                             g.count_include_pad, &h0, &h1, &w0, &w1);
                if (h >= h0 && h < h1 && w >= w0 && w < w1)
                    acc += (T)((double)gp[oh * g.OW + ow] / (double)div);
            }
        dx[i] = acc;
    }
}

template <typename T>
__global__ void adaptive_avg_kernel(ddn_cuda_pool_geom g, T *y, const T *x)
{
    GRID_LOOP(o, g.planes * g.OH * g.OW)
    {
        int64_t pl = o / (g.OH * g.OW), oh = o / g.OW % g.OH, ow = o % g.OW;
        const T *xp = x + pl * g.H * g.W;
        int64_t h0 = ddn_bin_start(oh, g.H, g.OH), h1 = ddn_bin_end(oh, g.H, g.OH);
        int64_t w0 = ddn_bin_start(ow, g.W, g.OW), w1 = ddn_bin_end(ow, g.W, g.OW);
        double s = 0;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) s += xp[h * g.W + w];
        y[o] = (T)(s / (double)((h1 - h0) * (w1 - w0)));
    }
}

// Each input element scans every output bin: fine for the global pooling ResNets use
// (OH = OW = 1); a bounded scan is the fix if large adaptive outputs ever matter.
template <typename T>
__global__ void adaptive_avg_backward_kernel(ddn_cuda_pool_geom g, T *dx, const T *dy)
{
    GRID_LOOP(i, g.planes * g.H * g.W)
    {
        int64_t pl = i / (g.H * g.W), h = i / g.W % g.H, w = i % g.W;
        const T *gp = dy + pl * g.OH * g.OW;
        T acc = dx[i];
        for (int64_t oh = 0; oh < g.OH; oh++) {
            int64_t h0 = ddn_bin_start(oh, g.H, g.OH), h1 = ddn_bin_end(oh, g.H, g.OH);
            if (h < h0 || h >= h1) continue;
            for (int64_t ow = 0; ow < g.OW; ow++) {
                int64_t w0 = ddn_bin_start(ow, g.W, g.OW), w1 = ddn_bin_end(ow, g.W, g.OW);
                if (w >= w0 && w < w1)
                    acc += (T)((double)gp[oh * g.OW + ow] / (double)((h1 - h0) * (w1 - w0)));
            }
        }
        dx[i] = acc;
    }
}

template <typename T>
__global__ void dropout_kernel(T *mask, int64_t n, double p, T scale, uint64_t seed)
{
    GRID_LOOP(i, n) mask[i] = ddn_dropout_uniform(seed, i) >= p ? scale : (T)0;
}

} // namespace

#define FLOAT_DISPATCH(dt, F)                                                                  \
    do {                                                                                       \
        if ((dt) == 0) { typedef float T; F; }                                                 \
        else { typedef double T; F; }                                                          \
    } while (0)

#define OUT_N(g) ((g)->planes * (g)->OH * (g)->OW)
#define IN_N(g) ((g)->planes * (g)->H * (g)->W)

extern "C" int ddn_cuda_launch_max_pool(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt,
                                        void *y, int64_t *idx, const void *x)
{
    if (OUT_N(g) == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (max_pool_kernel<T><<<grid_for(OUT_N(g)), kThreads, 0, s>>>(
                           *g, (T *)y, idx, (const T *)x)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_max_pool_backward_acc(cudaStream_t s, const ddn_cuda_pool_geom *g,
                                                     int dt, void *dx, const void *dy,
                                                     const int64_t *idx)
{
    if (IN_N(g) == 0 || OUT_N(g) == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (max_pool_backward_kernel<T><<<grid_for(OUT_N(g)), kThreads, 0, s>>>(
                           *g, (T *)dx, (const T *)dy, idx)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_avg_pool(cudaStream_t s, const ddn_cuda_pool_geom *g, int dt,
                                        void *y, const void *x)
{
    if (OUT_N(g) == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (avg_pool_kernel<T><<<grid_for(OUT_N(g)), kThreads, 0, s>>>(
                           *g, (T *)y, (const T *)x)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_avg_pool_backward_acc(cudaStream_t s, const ddn_cuda_pool_geom *g,
                                                     int dt, void *dx, const void *dy)
{
    if (IN_N(g) == 0 || OUT_N(g) == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (avg_pool_backward_kernel<T><<<grid_for(IN_N(g)), kThreads, 0, s>>>(
                           *g, (T *)dx, (const T *)dy)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_adaptive_avg_pool(cudaStream_t s, const ddn_cuda_pool_geom *g,
                                                 int dt, void *y, const void *x)
{
    if (OUT_N(g) == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (adaptive_avg_kernel<T><<<grid_for(OUT_N(g)), kThreads, 0, s>>>(
                           *g, (T *)y, (const T *)x)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_adaptive_avg_pool_backward_acc(cudaStream_t s,
                                                              const ddn_cuda_pool_geom *g, int dt,
                                                              void *dx, const void *dy)
{
    if (IN_N(g) == 0 || OUT_N(g) == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (adaptive_avg_backward_kernel<T><<<grid_for(IN_N(g)), kThreads, 0, s>>>(
                           *g, (T *)dx, (const T *)dy)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_dropout_mask(cudaStream_t s, int dt, void *mask, int64_t n,
                                            double p, uint64_t seed)
{
    if (n == 0) return cudaSuccess;
    double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0; // p = 1 keeps nothing; the scale is unused
    FLOAT_DISPATCH(dt, (dropout_kernel<T><<<grid_for(n), kThreads, 0, s>>>((T *)mask, n, p,
                                                                           (T)scale, seed)));
    return cudaGetLastError();
}
