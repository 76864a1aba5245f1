// ddn — CUDA kernels that reduce: sum / max over dims and the max gradient, argmax, softmax and
// log-softmax with their backward, the NLL loss, and the sum of squares; plus the fused optimizer
// updates (elementwise, but they sit here to keep the number of .cu files, and nvcc time, down).
//
// Reductions give each output one block of kThreads threads: each thread folds a strided share
// of the reduced elements, then the block combines the kThreads partials in a fixed tree. The
// order depends only on the shapes, so results are deterministic run to run (they differ from
// the CPU's sequential order by rounding; tests state tolerances). float32 sums accumulate in
// double as on the CPU. Arithmetic shared with the CPU: core/cpu/optim_math.h.
#include <math.h>

#include "cuda_launch.h"
#include "optim_math.h"

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t outputs)
{
    return (int)(outputs < 1 ? 1 : outputs > 65535 * 16 ? 65535 * 16 : outputs);
}

// Offsets along the kept dims of output o for the first `n` stride sets of the plan.
__device__ __forceinline__ void kept_offsets(const ddn_cuda_reduce_plan &p, int64_t o, int n,
                                             int64_t *off)
{
    for (int k = 0; k < n; k++) off[k] = 0;
    for (int d = p.nk - 1; d >= 0; d--) {
        int64_t i = o % p.k_shape[d];
        o /= p.k_shape[d];
        for (int k = 0; k < n; k++) off[k] += i * p.k_stride[k][d];
    }
}

// Offset of reduced element j within its block, for reduced stride set k.
__device__ __forceinline__ int64_t reduced_offset(const ddn_cuda_reduce_plan &p, int k, int64_t j)
{
    int64_t off = 0;
    for (int d = p.nr - 1; d >= 0; d--) {
        off += (j % p.r_shape[d]) * p.r_stride[k][d];
        j /= p.r_shape[d];
    }
    return off;
}

// Tree reduction of one value per thread; every thread gets the result. kThreads is a power of 2.
template <typename V, typename F>
__device__ V block_reduce(V v, V *shared, F combine)
{
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) shared[threadIdx.x] = combine(shared[threadIdx.x], shared[threadIdx.x + w]);
        __syncthreads();
    }
    V r = shared[0];
    __syncthreads();
    return r;
}

struct Sum {
    __device__ double operator()(double a, double b) const { return a + b; }
};
// max with NaN winning: the flag rides along as a NaN value
struct Max {
    __device__ double operator()(double a, double b) const
    {
        return a != a ? a : b != b ? b : a > b ? a : b;
    }
};

template <typename T>
__global__ void reduce_kernel(ddn_cuda_reduce_plan p, int op, T *out, const T *x)
{
    __shared__ double shared[kThreads];
    for (int64_t o = blockIdx.x; o < p.outer; o += gridDim.x) {
        int64_t off[2];
        kept_offsets(p, o, 2, off);
        double acc = op == 0 ? 0.0 : -INFINITY;
        for (int64_t j = threadIdx.x; j < p.inner; j += kThreads) {
            double v = (double)x[off[0] + reduced_offset(p, 0, j)];
            acc = op == 0 ? acc + v : Max()(acc, v);
        }
        acc = op == 0 ? block_reduce(acc, shared, Sum()) : block_reduce(acc, shared, Max());
        if (threadIdx.x == 0) out[off[1]] = (T)acc;
    }
}

template <typename T>
__global__ void max_backward_kernel(ddn_cuda_reduce_plan p, T *dx, const T *x, const T *y,
                                    const T *dy)
{
    __shared__ double shared[kThreads];
    for (int64_t o = blockIdx.x; o < p.outer; o += gridDim.x) {
        int64_t off[4];
        kept_offsets(p, o, 4, off);
        T m = y[off[1]];
        double count = 0;
        for (int64_t j = threadIdx.x; j < p.inner; j += kThreads)
            count += x[off[0] + reduced_offset(p, 0, j)] == m;
        count = block_reduce(count, shared, Sum());
        // count 0: the max is NaN, and torch's dy * mask / count gives 0/0 everywhere
        T share = count == 0 ? (T)NAN : (T)((double)dy[off[2]] / count);
        for (int64_t j = threadIdx.x; j < p.inner; j += kThreads)
            if (count == 0 || x[off[0] + reduced_offset(p, 0, j)] == m)
                dx[off[3] + reduced_offset(p, 1, j)] += share;
    }
}

// plain max of partials that are never NaN (softmax's max skips NaN, as the CPU's v > m does)
struct Larger {
    __device__ double operator()(double a, double b) const { return a > b ? a : b; }
};

// (value, index) with PyTorch's argmax order: NaN beats everything, then larger, then earlier.
template <typename T>
struct Best {
    T v;
    int64_t i;
};
template <typename T>
__device__ __forceinline__ Best<T> better(Best<T> a, Best<T> b)
{
    bool an = a.v != a.v, bn = b.v != b.v;
    if (an || bn) return an && (!bn || a.i < b.i) ? a : b;
    if (a.v != b.v) return a.v > b.v ? a : b;
    return a.i < b.i ? a : b;
}

template <typename T>
__global__ void argmax_kernel(ddn_cuda_reduce_plan p, int64_t *out, const T *x, int64_t n,
                              int64_t st)
{
    __shared__ T sv[kThreads];
    __shared__ int64_t si[kThreads];
    for (int64_t o = blockIdx.x; o < p.outer; o += gridDim.x) {
        int64_t off[2];
        kept_offsets(p, o, 2, off);
        Best<T> b = {x[off[0]], 0};
        for (int64_t j = threadIdx.x; j < n; j += kThreads) b = better(b, Best<T>{x[off[0] + j * st], j});
        sv[threadIdx.x] = b.v;
        si[threadIdx.x] = b.i;
        __syncthreads();
        for (int w = kThreads / 2; w > 0; w /= 2) {
            if ((int)threadIdx.x < w) {
                Best<T> r = better(Best<T>{sv[threadIdx.x], si[threadIdx.x]},
                                   Best<T>{sv[threadIdx.x + w], si[threadIdx.x + w]});
                sv[threadIdx.x] = r.v;
                si[threadIdx.x] = r.i;
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) out[off[1]] = si[0];
        __syncthreads();
    }
}

__device__ __forceinline__ float exp_t(float v) { return expf(v); }
__device__ __forceinline__ double exp_t(double v) { return exp(v); }

// One block per (outer, inner) column; the same arithmetic as core/cpu/softmax.c.
template <typename T>
__global__ void softmax_kernel(T *out, const T *x, int64_t outer, int64_t n, int64_t inner,
                               int lg)
{
    __shared__ double shared[kThreads];
    for (int64_t u = blockIdx.x; u < outer * inner; u += gridDim.x) {
        int64_t base = (u / inner) * n * inner + u % inner;
        double m = -INFINITY;
        for (int64_t j = threadIdx.x; j < n; j += kThreads) {
            T v = x[base + j * inner];
            if (v > m) m = v;
        }
        // the CPU's max ignores NaN (v > m is false); the NaN then propagates through exp
        m = block_reduce(m, shared, Larger());
        T mt = (T)m;
        double sum = 0;
        for (int64_t j = threadIdx.x; j < n; j += kThreads) {
            T e = exp_t((T)(x[base + j * inner] - mt));
            sum += e;
            if (!lg) out[base + j * inner] = e;
        }
        sum = block_reduce(sum, shared, Sum());
        double k = lg ? (double)mt + log(sum) : 1.0 / sum;
        for (int64_t j = threadIdx.x; j < n; j += kThreads) {
            int64_t i = base + j * inner;
            out[i] = lg ? (T)((double)x[i] - k) : (T)(out[i] * k);
        }
    }
}

template <typename T>
__global__ void softmax_backward_kernel(T *dx, const T *y, const T *dy, int64_t outer, int64_t n,
                                        int64_t inner, int lg)
{
    __shared__ double shared[kThreads];
    for (int64_t u = blockIdx.x; u < outer * inner; u += gridDim.x) {
        int64_t base = (u / inner) * n * inner + u % inner;
        double dot = 0;
        for (int64_t j = threadIdx.x; j < n; j += kThreads) {
            int64_t i = base + j * inner;
            dot += lg ? (double)dy[i] : (double)dy[i] * y[i];
        }
        dot = block_reduce(dot, shared, Sum());
        for (int64_t j = threadIdx.x; j < n; j += kThreads) {
            int64_t i = base + j * inner;
            dx[i] += lg ? (T)(dy[i] - exp_t(y[i]) * dot) : (T)(y[i] * (dy[i] - dot));
        }
    }
}

// The first item with a label outside [0, C), or -1, found by the whole block.
__device__ long long first_bad_label(const int64_t *labels, int64_t ls, int64_t N, int64_t C)
{
    __shared__ unsigned long long first;
    if (threadIdx.x == 0) first = (unsigned long long)N;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < N; i += kThreads) {
        int64_t v = labels[i * ls];
        if (v < 0 || v >= C) atomicMin(&first, (unsigned long long)i);
    }
    __syncthreads();
    long long r = first < (unsigned long long)N ? (long long)first : -1;
    __syncthreads();
    return r;
}

template <typename T>
__global__ void nll_kernel(T *out, const T *logp, int64_t rs, int64_t cs, const int64_t *labels,
                           int64_t ls, int64_t N, int64_t C, double scale, long long *bad)
{
    __shared__ double shared[kThreads];
    long long b = first_bad_label(labels, ls, N, C);
    if (threadIdx.x == 0) *bad = b;
    if (b >= 0) return;
    double acc = 0;
    for (int64_t i = threadIdx.x; i < N; i += kThreads) acc -= logp[i * rs + labels[i * ls] * cs];
    acc = block_reduce(acc, shared, Sum());
    if (threadIdx.x == 0) *out = (T)(acc * scale);
}

template <typename T>
__global__ void nll_backward_kernel(T *dlogp, int64_t rs, int64_t cs, const int64_t *labels,
                                    int64_t ls, int64_t N, int64_t C, const T *dy, double scale,
                                    long long *bad)
{
    long long b = first_bad_label(labels, ls, N, C);
    if (threadIdx.x == 0) *bad = b;
    if (b >= 0) return;
    T v = (T)(-scale * (double)*dy);
    for (int64_t i = threadIdx.x; i < N; i += kThreads) dlogp[i * rs + labels[i * ls] * cs] += v;
}

#define ELEM_LOOP(i, n)                                                                        \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                  \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void sgd_f32_kernel(float *p, float *buf, const float *g, int64_t n, ddn_sgd_consts_f32 c)
{
    ELEM_LOOP(i, n) ddn_sgd_elem_f32(p, buf, g, i, c);
}
__global__ void sgd_f64_kernel(double *p, double *buf, const double *g, int64_t n,
                               ddn_sgd_consts_f64 c)
{
    ELEM_LOOP(i, n) ddn_sgd_elem_f64(p, buf, g, i, c);
}
__global__ void adam_f32_kernel(float *p, float *m, float *v, float *vmax, const float *g,
                                int64_t n, ddn_adam_consts_f32 c)
{
    ELEM_LOOP(i, n) ddn_adam_elem_f32(p, m, v, vmax, g, i, c);
}
__global__ void adam_f64_kernel(double *p, double *m, double *v, double *vmax, const double *g,
                                int64_t n, ddn_adam_consts_f64 c)
{
    ELEM_LOOP(i, n) ddn_adam_elem_f64(p, m, v, vmax, g, i, c);
}

// Block b sums the squares of the fixed chunk b (the CPU's chunking), then one thread adds the
// DDN_CUDA_SUMSQ_BLOCKS partials in order.
template <typename T>
__global__ void sumsq_partial_kernel(const T *x, int64_t n, double *partial)
{
    __shared__ double shared[kThreads];
    int64_t per = (n + DDN_CUDA_SUMSQ_BLOCKS - 1) / DDN_CUDA_SUMSQ_BLOCKS;
    int64_t lo = blockIdx.x * per, hi = lo + per < n ? lo + per : n;
    double s = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) s += (double)x[i] * (double)x[i];
    s = block_reduce(s, shared, Sum());
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sumsq_final_kernel(const double *partial, double *out)
{
    double s = 0;
    for (int b = 0; b < DDN_CUDA_SUMSQ_BLOCKS; b++) s += partial[b];
    *out = s;
}

int elem_grid(int64_t n)
{
    int64_t b = (n + kThreads - 1) / kThreads;
    return (int)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

} // namespace

#define FLOAT_DISPATCH(dt, F)                                                                  \
    do {                                                                                       \
        if ((dt) == 0) { typedef float T; F; }                                                 \
        else { typedef double T; F; }                                                          \
    } while (0)

extern "C" int ddn_cuda_launch_reduce(cudaStream_t s, const ddn_cuda_reduce_plan *p, int dt,
                                      int op, void *out, const void *x)
{
    if (p->outer == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (reduce_kernel<T><<<grid_for(p->outer), kThreads, 0, s>>>(
                           *p, op, (T *)out, (const T *)x)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_max_backward_acc(cudaStream_t s, const ddn_cuda_reduce_plan *p,
                                                int dt, void *dx, const void *x, const void *y,
                                                const void *dy)
{
    if (p->outer == 0 || p->inner == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (max_backward_kernel<T><<<grid_for(p->outer), kThreads, 0, s>>>(
                           *p, (T *)dx, (const T *)x, (const T *)y, (const T *)dy)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_argmax(cudaStream_t s, const ddn_cuda_reduce_plan *p, int dt,
                                      int64_t *out, const void *x, int64_t n, int64_t st)
{
    if (p->outer == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (argmax_kernel<T><<<grid_for(p->outer), kThreads, 0, s>>>(
                           *p, out, (const T *)x, n, st)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_softmax(cudaStream_t s, int dt, void *out, const void *x,
                                       int64_t outer, int64_t n, int64_t inner, int log)
{
    if (outer * n * inner == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (softmax_kernel<T><<<grid_for(outer * inner), kThreads, 0, s>>>(
                           (T *)out, (const T *)x, outer, n, inner, log)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_softmax_backward_acc(cudaStream_t s, int dt, void *dx,
                                                    const void *y, const void *dy, int64_t outer,
                                                    int64_t n, int64_t inner, int log)
{
    if (outer * n * inner == 0) return cudaSuccess;
    FLOAT_DISPATCH(dt, (softmax_backward_kernel<T><<<grid_for(outer * inner), kThreads, 0, s>>>(
                           (T *)dx, (const T *)y, (const T *)dy, outer, n, inner, log)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_nll(cudaStream_t s, int dt, void *out, const void *logp,
                                   int64_t rs, int64_t cs, const int64_t *labels, int64_t ls,
                                   int64_t N, int64_t C, double scale, long long *bad)
{
    FLOAT_DISPATCH(dt, (nll_kernel<T><<<1, kThreads, 0, s>>>((T *)out, (const T *)logp, rs, cs,
                                                              labels, ls, N, C, scale, bad)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_nll_backward_acc(cudaStream_t s, int dt, void *dlogp, int64_t rs,
                                                int64_t cs, const int64_t *labels, int64_t ls,
                                                int64_t N, int64_t C, const void *dy,
                                                double scale, long long *bad)
{
    FLOAT_DISPATCH(dt, (nll_backward_kernel<T><<<1, kThreads, 0, s>>>(
                           (T *)dlogp, rs, cs, labels, ls, N, C, (const T *)dy, scale, bad)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_sgd(cudaStream_t s, int dt, void *p, void *buf, const void *g,
                                   int64_t n, double lr, double momentum, double dampening,
                                   double weight_decay, int nesterov, int first)
{
    if (n == 0) return cudaSuccess;
    if (dt == 0)
        sgd_f32_kernel<<<elem_grid(n), kThreads, 0, s>>>(
            (float *)p, (float *)buf, (const float *)g, n,
            ddn_sgd_consts_f32_make(lr, momentum, dampening, weight_decay, nesterov, first));
    else
        sgd_f64_kernel<<<elem_grid(n), kThreads, 0, s>>>(
            (double *)p, (double *)buf, (const double *)g, n,
            ddn_sgd_consts_f64_make(lr, momentum, dampening, weight_decay, nesterov, first));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_adam(cudaStream_t s, int dt, void *p, void *m, void *v, void *vmax,
                                    const void *g, int64_t n, double lr, double beta1,
                                    double beta2, double eps, double weight_decay, int decoupled,
                                    int64_t step)
{
    if (n == 0) return cudaSuccess;
    if (dt == 0)
        adam_f32_kernel<<<elem_grid(n), kThreads, 0, s>>>(
            (float *)p, (float *)m, (float *)v, (float *)vmax, (const float *)g, n,
            ddn_adam_consts_f32_make(lr, beta1, beta2, eps, weight_decay, decoupled, step));
    else
        adam_f64_kernel<<<elem_grid(n), kThreads, 0, s>>>(
            (double *)p, (double *)m, (double *)v, (double *)vmax, (const double *)g, n,
            ddn_adam_consts_f64_make(lr, beta1, beta2, eps, weight_decay, decoupled, step));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_sum_squares(cudaStream_t s, int dt, const void *x, int64_t n,
                                           double *partial, double *out)
{
    FLOAT_DISPATCH(dt, (sumsq_partial_kernel<T><<<DDN_CUDA_SUMSQ_BLOCKS, kThreads, 0, s>>>(
                           (const T *)x, n, partial)));
    sumsq_final_kernel<<<1, 1, 0, s>>>(partial, out);
    return cudaGetLastError();
}
