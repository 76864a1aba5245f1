/* ddn — the per-channel and per-element arithmetic of batch normalisation, shared by the CPU
 * kernels (core/cpu/norm_pool_tmpl.h) and the CUDA kernels that cover what cuDNN cannot
 * (cuda/norm.cu: the evaluation-mode backward, eps below CUDNN_BN_MIN_EPSILON): plain C, static
 * inline, host and device (DDN_HD), everything in double, so both backends evaluate the same
 * expressions and the CPU tests exercise them. Semantics: backend.h's batch_norm_* entries.
 */
#ifndef DDN_NORM_MATH_H
#define DDN_NORM_MATH_H

#include <math.h>
#include <stdbool.h>

#include "elementwise_math.h" /* DDN_HD */

/* invstd = 1 / sqrt(var + eps), var the biased batch variance (training). */
DDN_HD static inline double ddn_bn_invstd(double var, double eps) { return 1.0 / sqrt(var + eps); }

/* y = x scale + shift, one multiply-add per element. Training: scale = invstd w; evaluation:
 * scale = w / sqrt(running var + eps) (no reciprocal first: the CPU's rounding since day one). */
DDN_HD static inline double ddn_bn_train_scale(double invstd, double w) { return invstd * w; }
DDN_HD static inline double ddn_bn_eval_scale(double w, double var, double eps)
{
    return w / sqrt(var + eps);
}
DDN_HD static inline double ddn_bn_shift(double b, double mean, double scale)
{
    return b - mean * scale;
}

/* A running statistic: r = (1 - momentum) r + momentum s (s: the mean, or the unbiased
 * variance). */
DDN_HD static inline double ddn_bn_running(double r, double s, double momentum)
{
    return (1 - momentum) * r + momentum * s;
}

/* Backward, per channel of n = N H W values: with xhat = (x - mean) invstd, sdy = sum dy and
 * sdyxhat = sum dy xhat, dx += k (dy - mdy) - (x - mean) kc where k = w invstd and
 *   training (mean and invstd are functions of x): mdy = sdy / n, kc = k invstd sdyxhat / n;
 *   evaluation (constants): mdy = kc = 0, so dx += w invstd dy. */
typedef struct ddn_bn_grad_coef {
    double k, mdy, kc;
} ddn_bn_grad_coef;

DDN_HD static inline ddn_bn_grad_coef ddn_bn_grad_coefs(double w, double invstd, double sdy,
                                                       double sdyxhat, double n, bool training)
{
    ddn_bn_grad_coef g;
    g.k = w * invstd;
    g.mdy = training ? sdy / n : 0.0;
    g.kc = training ? g.k * invstd * sdyxhat / n : 0.0;
    return g;
}

/* The new dx of one element: d (old dx) + k (dy - mdy) - (x - mean) kc. */
DDN_HD static inline double ddn_bn_dx(double d, double dy, double x, double mean,
                                      ddn_bn_grad_coef g)
{
    return d + g.k * (dy - g.mdy) - (x - mean) * g.kc;
}

#endif
