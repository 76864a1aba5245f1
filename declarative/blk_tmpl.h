/* ddn — the typed primitives of blk.h: dot products and matrix-vector products of one block.
 *
 * The includer defines T (float | double) and TS(name) (name##_f32 / _f64) and has included
 * blk.h. No include guard: included once per T. Every primitive accumulates in double; the
 * products start and end with a barrier, so their input may have been written by any thread just
 * before, and their output may be read by any thread when they return. On the device a
 * row-major product gives each warp a row (coalesced reads of A) and a transposed product each
 * thread a column (coalesced across the warp); on the CPU both are the plain loops.
 */

/* x . y (n), returned to all threads. */
DDN_BLK_FN double TS(blk_dot)(const ddn_blk *b, int64_t n, const T *x, const T *y)
{
    double acc = 0;
    DDN_BLK_FOR(b, i, n) acc += (double)x[i] * (double)y[i];
    return ddn_blk_sum(b, acc);
}

/* ||x|| (n). The plain sum of squares over- or underflows only for float64 entries beyond
 * ~1e154 or below ~1e-154; then the norm is taken again scaled by the largest magnitude, as BLAS
 * nrm2 does throughout, so that the two agree on what is finite and what is zero. */
DDN_BLK_FN double TS(blk_nrm2)(const ddn_blk *b, int64_t n, const T *x)
{
    const double ss = TS(blk_dot)(b, n, x, x);
    if (isfinite(ss) && ss > 1e-290) return sqrt(ss);
    double mx = 0;
    DDN_BLK_FOR(b, i, n) mx = fmax(mx, fabs((double)x[i]));
    mx = ddn_blk_max(b, mx);
    if (!(mx > 0) || isinf(mx)) return isnan(ss) ? ss : mx;
    double s = 0;
    DDN_BLK_FOR(b, i, n)
    {
        const double t = (double)x[i] / mx;
        s += t * t;
    }
    return mx * sqrt(ddn_blk_sum(b, s));
}

/* ||x - s y||^2 (n) in double. */
DDN_BLK_FN double TS(blk_dist2)(const ddn_blk *b, int64_t n, const T *x, double s, const T *y)
{
    double acc = 0;
    DDN_BLK_FOR(b, i, n)
    {
        double d = (double)x[i] - s * (double)y[i];
        acc += d * d;
    }
    return ddn_blk_sum(b, acc);
}

/* x[i] in double from whichever of x (T) and x64 (double) is given (the same branch on every
 * iteration: predicted on the CPU, uniform across a warp on the device). */
DDN_BLK_FN double TS(blk_ld)(const T *x, const double *x64, int64_t i)
{
    return x64 ? x64[i] : (double)x[i];
}

/* out = alpha A x + beta out for A (rows, cols) row-major with leading dimension lda; x typed T
 * (x) or double (x64: the other NULL); out typed T (o) and / or double (o64), either may be NULL
 * (beta applies to o64 when given, else o). */
DDN_BLK_FN void TS(blk_mv)(const ddn_blk *b, int64_t rows, int64_t cols, const T *A, int64_t lda,
                           const T *x, const double *x64, double alpha, double beta, T *o,
                           double *o64)
{
    DDN_BLK_SYNC(b);
#ifdef __CUDACC__
    const int lane = b->tid & 31, nw = b->nth >> 5;
    for (int64_t i = b->tid >> 5; i < rows; i += nw) {
        double acc = 0;
        for (int64_t j = lane; j < cols; j += 32)
            acc += (double)A[i * lda + j] * TS(blk_ld)(x, x64, j);
        acc = ddn_blk_warp_sum(acc);
        if (lane == 0) {
            double prev = beta == 0 ? 0 : o64 ? o64[i] : (double)o[i];
            double v = alpha * acc + beta * prev;
            if (o64) o64[i] = v;
            if (o) o[i] = (T)v;
        }
    }
    __syncthreads();
#else /* a thread per row (one CPU thread: all of them) */
    DDN_BLK_FOR(b, i, rows)
    {
        double acc = 0;
        for (int64_t j = 0; j < cols; j++) acc += (double)A[i * lda + j] * TS(blk_ld)(x, x64, j);
        double prev = beta == 0 ? 0 : o64 ? o64[i] : (double)o[i];
        double v = alpha * acc + beta * prev;
        if (o64) o64[i] = v;
        if (o) o[i] = (T)v;
    }
    DDN_BLK_SYNC(b);
#endif
}

/* out = alpha A^T x + beta out for A (rows, cols) row-major (lda): out has cols entries; x, x64,
 * o, o64 as blk_mv. */
DDN_BLK_FN void TS(blk_mvt)(const ddn_blk *b, int64_t rows, int64_t cols, const T *A, int64_t lda,
                            const T *x, const double *x64, double alpha, double beta, T *o,
                            double *o64)
{
    DDN_BLK_SYNC(b);
    DDN_BLK_FOR(b, j, cols)
    {
        double acc = 0;
        for (int64_t i = 0; i < rows; i++) acc += (double)A[i * lda + j] * TS(blk_ld)(x, x64, i);
        double prev = beta == 0 ? 0 : o64 ? o64[j] : (double)o[j];
        double v = alpha * acc + beta * prev;
        if (o64) o64[j] = v;
        if (o) o[j] = (T)v;
    }
    DDN_BLK_SYNC(b);
}
