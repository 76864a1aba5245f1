/* ddn — one per-item algorithm, two executions: a CUDA thread block, or one CPU thread.
 *
 * The declarative layers' device kernels (power iteration, the IED and LESS backward solves) run
 * one batch item per CUDA block. They are written once against this header and compiled twice:
 * by nvcc, where a "block" is a real thread block (loops split over its threads, reductions in
 * shared memory, barriers), and by the C compiler, where it is one thread that runs every loop
 * whole and whose reductions and barriers are no-ops. The CPU instance is what the tests run
 * against the LAPACK-based solvers, so the algorithm that runs on the GPU is checked here, on
 * machines without one; only the data-parallel primitives below differ between the two.
 *
 * Rules for code written against it (what keeps the two executions the same algorithm):
 * - every thread of a block runs the same control flow: branch only on values that every
 *   thread holds (loop counters, arguments, and the results of ddn_blk_sum / _bcast, which are
 *   returned to all threads);
 * - a loop DDN_BLK_FOR(b, i, n) gives each thread its share of i; after writing a vector that
 *   other threads read, call DDN_BLK_SYNC(b) (the primitives below sync on their own);
 * - reductions are accumulated in double, in an order fixed by the launch shape, so results
 *   are reproducible run to run (and equal between backends up to that order);
 * - per-item vectors live in memory the launcher hands out (global memory on the device).
 * Dense float64 LU, solves and condition estimate on these primitives: blk_lu.h.
 */
#ifndef DDN_BLK_H
#define DDN_BLK_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define DDN_BLK_FN static __device__ __forceinline__
#else
#define DDN_BLK_FN static inline
#endif

/* The larger of a and b, NaN if either is (fmax would drop it): a max reduced with this is NaN
 * whenever any input is, whatever the order the threads combine in. */
DDN_BLK_FN double ddn_nanmax(double a, double b) { return (a > b || a != a) ? a : b; }

#ifdef __CUDACC__

#define DDN_BLK_THREADS 256 /* threads per block: a multiple of 32 (full warps), at most 1024 */

/* A block: this thread's index and the block size; red is __shared__ scratch of 33 doubles. */
typedef struct ddn_blk {
    int tid, nth;
    double *red;
} ddn_blk;

#define DDN_BLK_FOR(b, i, n) for (int64_t i = (b)->tid; i < (int64_t)(n); i += (b)->nth)
#define DDN_BLK_SYNC(b) __syncthreads()

DDN_BLK_FN double ddn_blk_warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

/* The sum of every thread's v, returned to all threads. */
DDN_BLK_FN double ddn_blk_sum(const ddn_blk *b, double v)
{
    v = ddn_blk_warp_sum(v);
    __syncthreads(); /* red may still be read by the previous reduction's threads */
    if ((b->tid & 31) == 0) b->red[b->tid >> 5] = v;
    __syncthreads();
    if (b->tid == 0) {
        double s = 0;
        for (int w = 0; w < (b->nth >> 5); w++) s += b->red[w];
        b->red[32] = s;
    }
    __syncthreads();
    return b->red[32];
}

/* The largest of every thread's v, returned to all threads; NaN when any v is NaN (ddn_nanmax: a
 * caller that wants NaN ignored leaves it out of its own v, e.g. with fmax). */
DDN_BLK_FN double ddn_blk_max(const ddn_blk *b, double v)
{
    for (int o = 16; o > 0; o >>= 1) v = ddn_nanmax(v, __shfl_down_sync(0xffffffffu, v, o));
    __syncthreads(); /* red may still be read by the previous reduction's threads */
    if ((b->tid & 31) == 0) b->red[b->tid >> 5] = v;
    __syncthreads();
    if (b->tid == 0) {
        double s = b->red[0];
        for (int w = 1; w < (b->nth >> 5); w++) s = ddn_nanmax(s, b->red[w]);
        b->red[32] = s;
    }
    __syncthreads();
    return b->red[32];
}

/* Thread 0's v, returned to all threads (for work done by one thread, `if (ddn_blk_leader(b))`). */
DDN_BLK_FN double ddn_blk_bcast(const ddn_blk *b, double v)
{
    __syncthreads();
    if (b->tid == 0) b->red[32] = v;
    __syncthreads();
    return b->red[32];
}

#elif defined(DDN_BLK_THREADED)

/* A block emulated by nth POSIX threads, for tests only (tests/test_blk_threads.c): the same
 * discipline as a CUDA block (every thread runs the same control flow, barriers are real, each
 * thread owns its share of every DDN_BLK_FOR), so a missing barrier or a thread-divergent one
 * shows up on the CPU, as a wrong answer, a hang, or a ThreadSanitizer report. What it cannot
 * emulate is the warp level (the __CUDACC__ branches' shuffles). */
#include <pthread.h>

#define DDN_BLK_EMU_MAX 64 /* threads per emulated block at most */

typedef struct ddn_blk_shared {
    pthread_barrier_t bar;
    double red[DDN_BLK_EMU_MAX];
} ddn_blk_shared;

typedef struct ddn_blk {
    int tid, nth;
    ddn_blk_shared *sh;
} ddn_blk;

#define DDN_BLK_FOR(b, i, n) for (int64_t i = (b)->tid; i < (int64_t)(n); i += (b)->nth)
#define DDN_BLK_SYNC(b) ((void)pthread_barrier_wait(&(b)->sh->bar))

/* Every thread's v into red, then each reads all of them in thread order: the barrier before
 * the write keeps a thread from overwriting red while another still reads the previous one. */
DDN_BLK_FN double ddn_blk_sum(const ddn_blk *b, double v)
{
    DDN_BLK_SYNC(b);
    b->sh->red[b->tid] = v;
    DDN_BLK_SYNC(b);
    double s = 0;
    for (int t = 0; t < b->nth; t++) s += b->sh->red[t];
    return s;
}

DDN_BLK_FN double ddn_blk_max(const ddn_blk *b, double v)
{
    DDN_BLK_SYNC(b);
    b->sh->red[b->tid] = v;
    DDN_BLK_SYNC(b);
    double s = b->sh->red[0];
    for (int t = 1; t < b->nth; t++) s = ddn_nanmax(s, b->sh->red[t]);
    return s;
}

DDN_BLK_FN double ddn_blk_bcast(const ddn_blk *b, double v)
{
    DDN_BLK_SYNC(b);
    if (b->tid == 0) b->sh->red[0] = v;
    DDN_BLK_SYNC(b);
    return b->sh->red[0];
}

#else /* one CPU thread */

typedef struct ddn_blk {
    int tid, nth; /* 0, 1 */
} ddn_blk;

#define DDN_BLK_FOR(b, i, n) for (int64_t i = 0; i < (int64_t)(n); i++)
#define DDN_BLK_SYNC(b) ((void)(b))

DDN_BLK_FN double ddn_blk_sum(const ddn_blk *b, double v)
{
    (void)b;
    return v;
}

DDN_BLK_FN double ddn_blk_max(const ddn_blk *b, double v)
{
    (void)b;
    return v;
}

DDN_BLK_FN double ddn_blk_bcast(const ddn_blk *b, double v)
{
    (void)b;
    return v;
}

#endif

DDN_BLK_FN int ddn_blk_leader(const ddn_blk *b) { return b->tid == 0; }

/* ---- float64 vectors (whatever the includer's T) ------------------------------------------- */

/* x . y (n), to all threads. */
DDN_BLK_FN double ddn_blk_ddot(const ddn_blk *b, int64_t n, const double *x, const double *y)
{
    double s = 0;
    DDN_BLK_FOR(b, i, n) s += x[i] * y[i];
    return ddn_blk_sum(b, s);
}

/* sum |x_i| (n), to all threads. */
DDN_BLK_FN double ddn_blk_dasum(const ddn_blk *b, int64_t n, const double *x)
{
    double s = 0;
    DDN_BLK_FOR(b, i, n) s += fabs(x[i]);
    return ddn_blk_sum(b, s);
}

/* The first i < n with |x[i s]| largest (BLAS idamax), to all threads; 0 when an entry is NaN (no
 * entry equals the NaN maximum). Every thread scans its share, so a column of a row-major matrix
 * (stride s) costs n / threads strided reads, not n by one thread. */
DDN_BLK_FN int64_t ddn_blk_iamax(const ddn_blk *b, int64_t n, const double *x, int64_t s)
{
    double mx = 0;
    DDN_BLK_FOR(b, i, n) mx = ddn_nanmax(mx, fabs(x[i * s]));
    mx = ddn_blk_max(b, mx);
    double first = -(double)n; /* the smallest matching index, as a max of its negation */
    DDN_BLK_FOR(b, i, n)
    {
        if (fabs(x[i * s]) == mx && -(double)i > first) first = -(double)i;
    }
    first = -ddn_blk_max(b, first);
    return first < (double)n ? (int64_t)first : 0;
}

#endif
