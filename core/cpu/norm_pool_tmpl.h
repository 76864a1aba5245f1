/* ddn — batch-norm and pooling kernels written once, instantiated per dtype by norm_pool.c.
 *
 * The includer defines T (float | double) and TS(name) (name##_f32 / name##_f64). No include
 * guard: included twice. Tensors are contiguous NCHW; per-channel vectors go through `vec`
 * (pointer + stride) so strided parameter views need no copy. Sums accumulate in double for both
 * dtypes; each result is rounded to T once. OpenMP splits channels (batch norm) or (n, c) planes
 * (pooling), so no two threads ever write the same element and no atomics are needed.
 */

static inline double TS(vget)(vec v, int64_t c, double dflt)
{
    return v.p ? (double)((const T *)v.p)[c * v.s] : dflt;
}

static inline void TS(vset)(vec v, int64_t c, double value)
{
    if (v.p) ((T *)v.p)[c * v.s] = (T)value;
}

/* ---- batch normalisation ---------------------------------------------------------------------- */
static void TS(bn_train)(T *y, const T *x, const bn_args *a, double momentum, double eps)
{
    const int64_t N = a->N, C = a->C, HW = a->HW;
    const double n = (double)(N * HW);
    DDN_OMP_FOR(N * C * HW)
    for (int64_t c = 0; c < C; c++) {
        /* two passes (mean, then squared deviations): no cancellation for large means */
        double sum = 0, ss = 0;
        for (int64_t i = 0; i < N; i++) {
            const T *xp = x + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) sum += xp[j];
        }
        const double mean = sum / n;
        for (int64_t i = 0; i < N; i++) {
            const T *xp = x + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) {
                double d = xp[j] - mean;
                ss += d * d;
            }
        }
        const double var = ss / n, invstd = ddn_bn_invstd(var, eps);
        TS(vset)(a->mean, c, mean);
        TS(vset)(a->invstd, c, invstd);
        if (a->rmean.p) {
            TS(vset)(a->rmean, c, ddn_bn_running(TS(vget)(a->rmean, c, 0), mean, momentum));
            TS(vset)(a->rvar, c, ddn_bn_running(TS(vget)(a->rvar, c, 0), ss / (n - 1), momentum));
        }
        /* y = x scale + shift: one multiply-add per element */
        const double scale = ddn_bn_train_scale(invstd, TS(vget)(a->w, c, 1.0));
        const double shift = ddn_bn_shift(TS(vget)(a->b, c, 0.0), mean, scale);
        for (int64_t i = 0; i < N; i++) {
            const T *xp = x + (i * C + c) * HW;
            T *yp = y + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) yp[j] = (T)(xp[j] * scale + shift);
        }
    }
}

static void TS(bn_eval)(T *y, const T *x, const bn_args *a, double eps)
{
    const int64_t N = a->N, C = a->C, HW = a->HW;
    DDN_OMP_FOR(N * C * HW)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        const double scale =
            ddn_bn_eval_scale(TS(vget)(a->w, c, 1.0), TS(vget)(a->rvar, c, 0), eps);
        const double shift = ddn_bn_shift(TS(vget)(a->b, c, 0.0), TS(vget)(a->rmean, c, 0), scale);
        const T *xp = x + p * HW;
        T *yp = y + p * HW;
        for (int64_t j = 0; j < HW; j++) yp[j] = (T)(xp[j] * scale + shift);
    }
}

/* With xhat = (x - mean) invstd and y = xhat w + b, per channel (n = N H W):
 *   dbias += sum dy, dweight += sum dy xhat,
 *   training: dx += w invstd (dy - sum dy / n - xhat sum(dy xhat) / n)
 *   (the mean and variance depend on every x of the channel), evaluation: dx += w invstd dy.
 * The coefficients and the per-element update are norm_math.h's (shared with cuda/norm.cu). */
static void TS(bn_backward)(T *dx, const T *x, const T *dy, const bn_args *a, bool training)
{
    const int64_t N = a->N, C = a->C, HW = a->HW;
    const double n = (double)(N * HW);
    DDN_OMP_FOR(N * C * HW)
    for (int64_t c = 0; c < C; c++) {
        const double mean = TS(vget)(a->mean, c, 0), invstd = TS(vget)(a->invstd, c, 1.0);
        double sdy = 0, sdyxc = 0; /* sum dy, sum dy (x - mean) */
        for (int64_t i = 0; i < N; i++) {
            const T *xp = x + (i * C + c) * HW, *gp = dy + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) {
                sdy += gp[j];
                sdyxc += gp[j] * (xp[j] - mean);
            }
        }
        const double sdyxhat = sdyxc * invstd;
        if (a->db.p) TS(vset)(a->db, c, TS(vget)(a->db, c, 0) + sdy);
        if (a->dw.p) TS(vset)(a->dw, c, TS(vget)(a->dw, c, 0) + sdyxhat);
        if (!dx) continue;
        const ddn_bn_grad_coef g =
            ddn_bn_grad_coefs(TS(vget)(a->w, c, 1.0), invstd, sdy, sdyxhat, n, training);
        for (int64_t i = 0; i < N; i++) {
            const T *xp = x + (i * C + c) * HW, *gp = dy + (i * C + c) * HW;
            T *dp = dx + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) dp[j] = (T)ddn_bn_dx(dp[j], gp[j], xp[j], mean, g);
        }
    }
}

/* ---- pooling ---------------------------------------------------------------------------------- */
static void TS(max_pool)(T *y, int64_t *idx, const T *x, const pool_geom *g)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    DDN_OMP_FOR(g->planes * OH * OW * g->kh * g->kw)
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const T *xp = x + pl * H * W;
        T *yp = y + pl * OH * OW;
        int64_t *ip = idx ? idx + pl * OH * OW : NULL;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * g->sh - g->ph, h1 = h0 + g->kh < H ? h0 + g->kh : H;
            if (h0 < 0) h0 = 0;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * g->sw - g->pw, w1 = w0 + g->kw < W ? w0 + g->kw : W;
                if (w0 < 0) w0 = 0;
                /* padding is -inf; the first maximum wins, a NaN always (PyTorch's rule) */
                T m = (T)-INFINITY;
                int64_t mi = h0 * W + w0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) {
                        T v = xp[h * W + w];
                        if (v > m || v != v) m = v, mi = h * W + w;
                    }
                yp[oh * OW + ow] = m;
                if (ip) ip[oh * OW + ow] = mi;
            }
        }
    }
}

static void TS(max_pool_backward)(T *dx, const T *dy, const int64_t *idx, int64_t planes,
                                  int64_t in_plane, int64_t out_plane)
{
    DDN_OMP_FOR(planes * (in_plane + out_plane))
    for (int64_t pl = 0; pl < planes; pl++) {
        T *dp = dx + pl * in_plane;
        const T *gp = dy + pl * out_plane;
        const int64_t *ip = idx + pl * out_plane;
        for (int64_t o = 0; o < out_plane; o++) dp[ip[o]] += gp[o];
    }
}

/* The window of output (oh, ow) clipped to the input and its divisor: pool_math.h. */
static inline int64_t TS(avg_window)(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0,
                                     int64_t *h1, int64_t *w0, int64_t *w1)
{
    return ddn_avg_window(oh, ow, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->H, g->W,
                          g->count_include_pad, h0, h1, w0, w1);
}

static void TS(avg_pool)(T *y, const T *x, const pool_geom *g)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    DDN_OMP_FOR(g->planes * OH * OW * g->kh * g->kw)
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const T *xp = x + pl * H * W;
        T *yp = y + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0, h1, w0, w1, div = TS(avg_window)(g, oh, ow, &h0, &h1, &w0, &w1);
                double s = 0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) s += xp[h * W + w];
                yp[oh * OW + ow] = h0 < h1 && w0 < w1 ? (T)(s / (double)div) : (T)0;
            }
    }
}

static void TS(avg_pool_backward)(T *dx, const T *dy, const pool_geom *g)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    DDN_OMP_FOR(g->planes * OH * OW * g->kh * g->kw)
    for (int64_t pl = 0; pl < g->planes; pl++) {
        T *dp = dx + pl * H * W;
        const T *gp = dy + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0, h1, w0, w1, div = TS(avg_window)(g, oh, ow, &h0, &h1, &w0, &w1);
                if (h0 >= h1 || w0 >= w1) continue;
                T v = (T)((double)gp[oh * OW + ow] / (double)div);
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) dp[h * W + w] += v;
            }
    }
}

static void TS(adaptive_avg)(T *y, const T *x, const pool_geom *g)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    DDN_OMP_FOR(g->planes * (H * W + OH * OW))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const T *xp = x + pl * H * W;
        T *yp = y + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = ddn_bin_start(oh, H, OH), h1 = ddn_bin_end(oh, H, OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ddn_bin_start(ow, W, OW), w1 = ddn_bin_end(ow, W, OW);
                double s = 0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) s += xp[h * W + w];
                yp[oh * OW + ow] = (T)(s / (double)((h1 - h0) * (w1 - w0)));
            }
        }
    }
}

static void TS(adaptive_avg_backward)(T *dx, const T *dy, const pool_geom *g)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    DDN_OMP_FOR(g->planes * (H * W + OH * OW))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        T *dp = dx + pl * H * W;
        const T *gp = dy + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = ddn_bin_start(oh, H, OH), h1 = ddn_bin_end(oh, H, OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ddn_bin_start(ow, W, OW), w1 = ddn_bin_end(ow, W, OW);
                T v = (T)((double)gp[oh * OW + ow] / (double)((h1 - h0) * (w1 - w0)));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) dp[h * W + w] += v;
            }
        }
    }
}
