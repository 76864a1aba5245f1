// ddn — CUDA elementwise kernels: copy, fill, axpy, the non-finite scan, unary and binary ops
// and their backward. The per-element math is core/cpu/elementwise_math.h, the same inline
// functions the CPU kernels run (DDN_HD makes them __host__ __device__ here), so the CPU tests
// exercise the GPU's arithmetic. Operands are walked with a grid-stride loop; a strided or
// broadcast operand gets its offset from the flat index (ddn_cuda_layout), a contiguous set
// skips that. The op switch sits inside the kernel: it is uniform across a launch, costs a
// branch per element and keeps nvcc to one instantiation per dtype (compile time matters).
#include "cuda_launch.h"
#include "elementwise_math.h"

namespace {

// The op enums in X-macro order, which is ddn_unary_op / ddn_binary_op's order (checked by
// static assertions in cuda_kernels.c).
#define EW_ENUM(OP, name, ...) EW_##OP,
enum UnaryOp { DDN_EW_UNARY_OPS(EW_ENUM, _) };
enum BinaryOp { DDN_EW_BINARY_OPS(EW_ENUM, _) };
#undef EW_ENUM

constexpr int kThreads = 256;

int blocks_for(int64_t n)
{
    int64_t b = (n + kThreads - 1) / kThreads;
    return (int)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

// Offsets of every operand for flat index i.
template <int N>
__device__ __forceinline__ void offsets(const ddn_cuda_layout &l, int64_t i, int64_t (&off)[N])
{
    if (l.contiguous) {
        for (int k = 0; k < N; k++) off[k] = i;
        return;
    }
    for (int k = 0; k < N; k++) off[k] = 0;
    for (int d = l.ndim - 1; d >= 0; d--) {
        int64_t idx = i % l.shape[d];
        i /= l.shape[d];
        for (int k = 0; k < N; k++) off[k] += idx * l.stride[k][d];
    }
}

#define GRID_LOOP(i, n)                                                                        \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                  \
         i += (int64_t)gridDim.x * blockDim.x)

template <typename TO, typename FROM>
__global__ void copy_kernel(ddn_cuda_layout l, TO *out, const FROM *x)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[2];
        offsets<2>(l, i, o);
        out[o[0]] = (TO)x[o[1]];
    }
}

template <typename T>
__global__ void fill_kernel(ddn_cuda_layout l, T *out, T v)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[1];
        offsets<1>(l, i, o);
        out[o[0]] = v;
    }
}

template <typename T>
__global__ void axpy_kernel(ddn_cuda_layout l, T *out, const T *x, T a)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[2];
        offsets<2>(l, i, o);
        out[o[0]] += a * x[o[1]];
    }
}

template <typename T>
__global__ void nonfinite_kernel(ddn_cuda_layout l, const T *x, int *flag)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[1];
        offsets<1>(l, i, o);
        if (!isfinite(x[o[0]])) *flag = 1; // a benign race: every writer stores 1
    }
}

// ---- per-op dispatch onto elementwise_math.h ---------------------------------------------------
#define UNARY_CASE(OP, name, S) case EW_##OP: return ddn_ew_##name##_##S(x, p0, p1);
#define UGRAD_CASE(OP, name, S) case EW_##OP: return ddn_ew_##name##_grad_##S(dy, x, y, p0, p1);
#define BINARY_CASE(OP, name, S) case EW_##OP: return ddn_ew_##name##_##S(a, b);
#define BGRAD_CASE(OP, name, S)                                                                \
    case EW_##OP: return which == 0 ? ddn_ew_##name##_grad_a_##S(dy, a, b, y)                  \
                                    : ddn_ew_##name##_grad_b_##S(dy, a, b, y);
#define DISPATCH(T, S)                                                                         \
    __device__ __forceinline__ T unary_f(int op, T x, T p0, T p1)                              \
    {                                                                                          \
        switch (op) { DDN_EW_UNARY_OPS(UNARY_CASE, S) }                                        \
        return x;                                                                              \
    }                                                                                          \
    __device__ __forceinline__ T unary_g(int op, T dy, T x, T y, T p0, T p1)                   \
    {                                                                                          \
        switch (op) { DDN_EW_UNARY_OPS(UGRAD_CASE, S) }                                        \
        return dy;                                                                             \
    }                                                                                          \
    __device__ __forceinline__ T binary_f(int op, T a, T b)                                    \
    {                                                                                          \
        switch (op) { DDN_EW_BINARY_OPS(BINARY_CASE, S) }                                      \
        return a;                                                                              \
    }                                                                                          \
    __device__ __forceinline__ T binary_g(int op, int which, T dy, T a, T b, T y)              \
    {                                                                                          \
        switch (op) { DDN_EW_BINARY_GRAD_OPS(BGRAD_CASE, S) }                                  \
        return dy;                                                                             \
    }
DISPATCH(float, f32)
DISPATCH(double, f64)

template <typename T>
__global__ void unary_kernel(ddn_cuda_layout l, int op, T *out, const T *x, T p0, T p1)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[2];
        offsets<2>(l, i, o);
        out[o[0]] = unary_f(op, x[o[1]], p0, p1);
    }
}

template <typename T>
__global__ void unary_backward_kernel(ddn_cuda_layout l, int op, T *dx, const T *x, const T *y,
                                      const T *dy, T p0, T p1)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[4];
        offsets<4>(l, i, o);
        dx[o[0]] += unary_g(op, dy[o[3]], x[o[1]], y[o[2]], p0, p1);
    }
}

template <typename T>
__global__ void binary_kernel(ddn_cuda_layout l, int op, T *out, const T *a, const T *b)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[3];
        offsets<3>(l, i, o);
        out[o[0]] = binary_f(op, a[o[1]], b[o[2]]);
    }
}

template <typename T>
__global__ void binary_backward_kernel(ddn_cuda_layout l, int op, int which, T *out, const T *a,
                                       const T *b, const T *y, const T *dy)
{
    GRID_LOOP(i, l.numel)
    {
        int64_t o[5];
        offsets<5>(l, i, o);
        out[o[0]] = binary_g(op, which, dy[o[4]], a[o[1]], b[o[2]], y[o[3]]);
    }
}

template <typename TO>
void copy_from(cudaStream_t s, const ddn_cuda_layout *l, TO *out, int x_dt, const void *x)
{
    int g = blocks_for(l->numel);
    switch (x_dt) {
    case 0: copy_kernel<<<g, kThreads, 0, s>>>(*l, out, (const float *)x); break;
    case 1: copy_kernel<<<g, kThreads, 0, s>>>(*l, out, (const double *)x); break;
    default: copy_kernel<<<g, kThreads, 0, s>>>(*l, out, (const int64_t *)x); break;
    }
}

} // namespace

// One launch per float dtype: F(T) is the launch statement with T bound.
#define FLOAT_DISPATCH(dt, F)                                                                  \
    do {                                                                                       \
        if ((dt) == 0) { typedef float T; F; }                                                 \
        else { typedef double T; F; }                                                          \
    } while (0)

extern "C" int ddn_cuda_launch_copy(cudaStream_t s, const ddn_cuda_layout *l, int out_dt,
                                    void *out, int x_dt, const void *x)
{
    if (l->numel == 0) return cudaSuccess;
    switch (out_dt) {
    case 0: copy_from(s, l, (float *)out, x_dt, x); break;
    case 1: copy_from(s, l, (double *)out, x_dt, x); break;
    default: copy_from(s, l, (int64_t *)out, x_dt, x); break;
    }
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_fill(cudaStream_t s, const ddn_cuda_layout *l, int dt, void *out,
                                    double value)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    switch (dt) {
    case 0: fill_kernel<<<g, kThreads, 0, s>>>(*l, (float *)out, (float)value); break;
    case 1: fill_kernel<<<g, kThreads, 0, s>>>(*l, (double *)out, value); break;
    default: fill_kernel<<<g, kThreads, 0, s>>>(*l, (int64_t *)out, (int64_t)value); break;
    }
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_axpy(cudaStream_t s, const ddn_cuda_layout *l, int dt, void *out,
                                    const void *x, double alpha)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    FLOAT_DISPATCH(dt, (axpy_kernel<T><<<g, kThreads, 0, s>>>(*l, (T *)out, (const T *)x,
                                                               (T)alpha)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_nonfinite(cudaStream_t s, const ddn_cuda_layout *l, int dt,
                                         const void *x, int *flag)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    FLOAT_DISPATCH(dt, (nonfinite_kernel<T><<<g, kThreads, 0, s>>>(*l, (const T *)x, flag)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_unary(cudaStream_t s, const ddn_cuda_layout *l, int dt, int op,
                                     void *out, const void *x, double p0, double p1)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    FLOAT_DISPATCH(dt, (unary_kernel<T><<<g, kThreads, 0, s>>>(*l, op, (T *)out, (const T *)x,
                                                                (T)p0, (T)p1)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_unary_backward_acc(cudaStream_t s, const ddn_cuda_layout *l,
                                                  int dt, int op, void *dx, const void *x,
                                                  const void *y, const void *dy, double p0,
                                                  double p1)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    FLOAT_DISPATCH(dt, (unary_backward_kernel<T><<<g, kThreads, 0, s>>>(
                           *l, op, (T *)dx, (const T *)x, (const T *)y, (const T *)dy, (T)p0,
                           (T)p1)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_binary(cudaStream_t s, const ddn_cuda_layout *l, int dt, int op,
                                      void *out, const void *a, const void *b)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    FLOAT_DISPATCH(dt, (binary_kernel<T><<<g, kThreads, 0, s>>>(*l, op, (T *)out, (const T *)a,
                                                                 (const T *)b)));
    return cudaGetLastError();
}

extern "C" int ddn_cuda_launch_binary_backward(cudaStream_t s, const ddn_cuda_layout *l, int dt,
                                               int op, int which, void *out, const void *a,
                                               const void *b, const void *y, const void *dy)
{
    if (l->numel == 0) return cudaSuccess;
    int g = blocks_for(l->numel);
    FLOAT_DISPATCH(dt, (binary_backward_kernel<T><<<g, kThreads, 0, s>>>(
                           *l, op, which, (T *)out, (const T *)a, (const T *)b, (const T *)y,
                           (const T *)dy)));
    return cudaGetLastError();
}
