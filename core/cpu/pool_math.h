/* ddn — index arithmetic of pooling and the dropout hash, shared by the CPU kernels
 * (core/cpu/norm_pool.c, norm_pool_tmpl.h) and the CUDA kernels (cuda/pool.cu): plain C, static
 * inline, host and device (DDN_HD), so both backends use the same windows, bins and random
 * stream, and the CPU tests exercise them.
 */
#ifndef DDN_POOL_MATH_H
#define DDN_POOL_MATH_H

#include <stdbool.h>
#include <stdint.h>

#include "elementwise_math.h" /* DDN_HD */

/* PyTorch's adaptive bins: [floor(i in / out), ceil((i + 1) in / out)). */
DDN_HD static inline int64_t ddn_bin_start(int64_t i, int64_t in, int64_t out)
{
    return i * in / out;
}
DDN_HD static inline int64_t ddn_bin_end(int64_t i, int64_t in, int64_t out)
{
    return ((i + 1) * in + out - 1) / out;
}

/* The window of avg-pool output (oh, ow) clipped to the H x W input, and its divisor (PyTorch's
 * avg_pool2d: the window is first clipped to the padded input, which sets the count_include_pad
 * divisor). An empty clipped window (h0 >= h1 or w0 >= w1) contributes nothing. */
DDN_HD static inline int64_t ddn_avg_window(int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                                            int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                            int64_t H, int64_t W, bool count_include_pad,
                                            int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1)
{
    int64_t a = oh * sh - ph, b = ow * sw - pw;
    int64_t ae = a + kh < H + ph ? a + kh : H + ph;
    int64_t be = b + kw < W + pw ? b + kw : W + pw;
    int64_t padded = (ae - a) * (be - b);
    *h0 = a > 0 ? a : 0, *w0 = b > 0 ? b : 0;
    *h1 = ae < H ? ae : H, *w1 = be < W ? be : W;
    return count_include_pad ? padded : (*h1 - *h0) * (*w1 - *w0);
}

/* SplitMix64's output for state seed after i + 1 steps: a counter-based stream, so element i can
 * be drawn by any thread (or device) without sharing generator state. [0, 1) from the top 53
 * bits. */
DDN_HD static inline double ddn_dropout_uniform(uint64_t seed, int64_t i)
{
    uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

#endif
