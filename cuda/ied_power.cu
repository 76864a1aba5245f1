// ddn — IED's power iteration on the device: declarative/ied_power_blk.h, one item per block.
//
// The algorithm is the block code the CPU tests check (declarative/ied_power.c runs it on one
// thread); here each of the B blocks runs an item with DDN_BLK_THREADS threads. Per-item scratch
// (the iterates, the gap check's Lanczos basis and tridiagonal) is a slice of one device buffer.
#include <float.h>
#include <math.h>
#include <string.h>

#include "blk.h"
#include "cuda_launch.h"
#include "ied_power.h"
#include "ied_ritz.h"
#include "ied_solver.h"

namespace {

#define T float
#define TS(name) name##_f32
#include "blk_tmpl.h"
#include "ied_power_blk.h"
#undef T
#undef TS

#define T double
#define TS(name) name##_f64
#include "blk_tmpl.h"
#include "ied_power_blk.h"
#undef T
#undef TS

#define IED_POWER_KERNEL(S, T)                                                                 \
    __global__ void __launch_bounds__(DDN_BLK_THREADS)                                         \
        ied_power_kernel_##S(ddn_ied_power_params p, const T *A, const T *rnd, const T *ref,   \
                             const T *gstart, T *y, ddn_ied_info *info,                        \
                             ddn_ied_power_err *err, unsigned char *scratch)                   \
    {                                                                                          \
        __shared__ double red[33];                                                             \
        const ddn_blk b = {(int)threadIdx.x, (int)blockDim.x, red};                            \
        const int64_t i = blockIdx.x, m = p.m;                                                 \
        ied_power_item_##S(&b, &p, A + i * m * m, rnd + i * m, p.has_ref ? ref : NULL, gstart, \
                           y + i * m, &info[i], &err[i], scratch + (size_t)i * p.scratch);     \
    }
IED_POWER_KERNEL(f32, float)
IED_POWER_KERNEL(f64, double)

} // namespace

extern "C" int ddn_cuda_launch_ied_power(cudaStream_t s, const ddn_ied_power_params *p, int dt,
                                         const void *A, const void *rnd, const void *ref,
                                         const void *gstart, void *y, void *info, void *err,
                                         void *scratch)
{
    if (p->B > 0x7fffffff) return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)p->B), block(DDN_BLK_THREADS);
    if (dt == 0)
        ied_power_kernel_f32<<<grid, block, 0, s>>>(
            *p, (const float *)A, (const float *)rnd, (const float *)ref, (const float *)gstart,
            (float *)y, (ddn_ied_info *)info, (ddn_ied_power_err *)err, (unsigned char *)scratch);
    else
        ied_power_kernel_f64<<<grid, block, 0, s>>>(
            *p, (const double *)A, (const double *)rnd, (const double *)ref,
            (const double *)gstart, (double *)y, (ddn_ied_info *)info, (ddn_ied_power_err *)err,
            (unsigned char *)scratch);
    return (int)cudaGetLastError();
}
