/* ddn — conv2d CPU work units written once per dtype, instantiated by conv.c.
 *
 * The includer defines T (float | double), TS(name) (name##_f32 | _f64) and XB(fn) (cblas_s/d##fn)
 * and the conv_geom struct. No include guard: included twice.
 *
 * A block is a range [q0, q1) of output pixels counted across the batch, q = n * P + oh * OW + ow
 * (P = OH * OW). Its column matrix is (K, q1 - q0) with K = C/groups * KH * KW and row
 * r = (c, kh, kw), exactly the layout of a group's weights viewed as (OC/groups, K), so each step
 * is one gemm. conv.c makes a block either part of one image (large images) or several whole
 * images (small ones, e.g. 7x7: one gemm with 49 columns runs at ~60-80% of one with 256), so
 * gemms keep a useful width either way. Within one image the output and dy are used in place;
 * a block spanning images packs them through `tmp`. Units are single-threaded.
 */

/* Row-major gemm C = A B + beta C, A (M, K) ("T": stored (K, M)), B (K, N) ("T": stored (N, K)). */
static void TS(gemm)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda,
                     const T *B, int64_t ldb, T beta, T *C, int64_t ldc)
{
    XB(gemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
             (blasint)M, (blasint)N, (blasint)K, (T)1, A, (blasint)lda, B, (blasint)ldb, beta, C,
             (blasint)ldc);
}

/* The output columns [a, b) of a kernel offset whose input column is ow * sw + iw0 that land
 * inside the image (0 <= iw < W); a == b when none do. */
static inline void TS(valid_cols)(const conv_geom *g, int64_t iw0, int64_t *a, int64_t *b)
{
    int64_t lo = iw0 >= 0 ? 0 : (-iw0 + g->sw - 1) / g->sw;
    int64_t hi = g->W - 1 - iw0 < 0 ? 0 : (g->W - 1 - iw0) / g->sw + 1;
    if (hi > g->OW) hi = g->OW;
    if (lo > hi) lo = hi;
    *a = lo, *b = hi;
}

/* col (nch * KH * KW rows of stride ld) <- the input patches of channels x[0 .. nch) (each H x W)
 * of one image under its output pixels [p0, p1); zero where the kernel reads padding. Walks each
 * row in output-row segments so the inner loops are a memcpy (stride 1) or a strided gather. */
/* The general loop below for a block of whole output rows [oh0, oh1): the in-image columns
 * [va, vb) are the same in every row, so each row is a zero head, a copy and a zero tail with no
 * per-segment arithmetic. Small maps (8x8 and below at 32x32 inputs) have 8-float rows, where
 * that arithmetic (a division included) cost more than the copy. row[(oh - oh0) OW + ow]. */
static void TS(im2col_rows)(const conv_geom *g, T *row, const T *xc, int64_t ih0, int64_t iw0,
                            int64_t va, int64_t vb, int64_t oh0, int64_t oh1)
{
    int64_t OW = g->OW, W = g->W, sw = g->sw;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        T *dst = row + (oh - oh0) * OW;
        int64_t ih = oh * g->sh + ih0;
        if (ih < 0 || ih >= g->H || va >= vb) {
            memset(dst, 0, (size_t)OW * sizeof(T));
            continue;
        }
        const T *src = xc + ih * W + iw0; /* src[j * sw] is in the image for j in [va, vb) */
        for (int64_t j = 0; j < va; j++) dst[j] = 0;
        if (sw == 1)
            for (int64_t j = va; j < vb; j++) dst[j] = src[j];
        else if (sw == 2)
            for (int64_t j = va; j < vb; j++) dst[j] = src[2 * j];
        else
            for (int64_t j = va; j < vb; j++) dst[j] = src[j * sw];
        for (int64_t j = vb; j < OW; j++) dst[j] = 0;
    }
}

static void TS(im2col)(const conv_geom *g, T *col, int64_t ld, const T *x, int64_t nch,
                       int64_t p0, int64_t p1)
{
    int64_t OW = g->OW, W = g->W, H = g->H, sw = g->sw;
    bool whole_rows = p0 % OW == 0 && p1 % OW == 0;
    for (int64_t c = 0; c < nch; c++) {
        const T *xc = x + c * g->HW;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t ih0 = kh * g->dh - g->ph;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                T *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t iw0 = kw * g->dw - g->pw, va, vb;
                TS(valid_cols)(g, iw0, &va, &vb);
                if (whole_rows) { /* one segment per output row, its bounds known up front */
                    TS(im2col_rows)(g, row, xc, ih0, iw0, va, vb, p0 / OW, p1 / OW);
                    continue;
                }
                for (int64_t p = p0; p < p1;) {
                    int64_t oh = p / OW, ow = p - oh * OW;
                    int64_t e = OW - ow < p1 - p ? OW - ow : p1 - p; /* this row's segment */
                    int64_t o = (p - p0) - ow; /* row[o + ow'] holds output column ow' */
                    int64_t ih = oh * g->sh + ih0;
                    int64_t a = va < ow ? ow : va > ow + e ? ow + e : va;
                    int64_t b = vb < a ? a : vb > ow + e ? ow + e : vb;
                    if (ih < 0 || ih >= H) a = b = ow + e;
                    for (int64_t j = ow; j < a; j++) row[o + j] = 0;
                    if (a < b) {
                        int64_t r = ih * W + iw0; /* xc[r + j * sw] is in the image, j in [a, b) */
                        if (sw == 1) memcpy(row + o + a, xc + r + a, (size_t)(b - a) * sizeof(T));
                        else if (sw == 2) /* a constant stride lets the compiler vectorise */
                            for (int64_t j = a; j < b; j++) row[o + j] = xc[r + 2 * j];
                        else
                            for (int64_t j = a; j < b; j++) row[o + j] = xc[r + j * sw];
                    }
                    for (int64_t j = b; j < ow + e; j++) row[o + j] = 0;
                    p += e;
                }
            }
        }
    }
}

/* dx[0 .. nch) (each H x W) += the columns of col (nch * KH * KW rows of stride ld) for one
 * image's output pixels [p0, p1), scattered back to the input positions they were gathered from;
 * padding positions are dropped. */
static void TS(col2im)(const conv_geom *g, T *dx, const T *col, int64_t ld, int64_t nch,
                       int64_t p0, int64_t p1)
{
    int64_t OW = g->OW, W = g->W, H = g->H, sw = g->sw;
    for (int64_t c = 0; c < nch; c++) {
        T *dxc = dx + c * g->HW;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t ih0 = kh * g->dh - g->ph;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const T *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t iw0 = kw * g->dw - g->pw, va, vb;
                TS(valid_cols)(g, iw0, &va, &vb);
                for (int64_t p = p0; p < p1;) {
                    int64_t oh = p / OW, ow = p - oh * OW;
                    int64_t e = OW - ow < p1 - p ? OW - ow : p1 - p;
                    int64_t ih = oh * g->sh + ih0;
                    if (ih >= 0 && ih < H) {
                        int64_t o = (p - p0) - ow, r = ih * W + iw0;
                        int64_t a = va < ow ? ow : va > ow + e ? ow + e : va;
                        int64_t b = vb < a ? a : vb > ow + e ? ow + e : vb;
                        if (sw == 1)
                            for (int64_t j = a; j < b; j++) dxc[r + j] += row[o + j];
                        else if (sw == 2)
                            for (int64_t j = a; j < b; j++) dxc[r + 2 * j] += row[o + j];
                        else
                            for (int64_t j = a; j < b; j++) dxc[r + j * sw] += row[o + j];
                    }
                    p += e;
                }
            }
        }
    }
}

/* ---- blocks across images ------------------------------------------------------------------- */
/* col (Kg, q1 - q0) <- the columns of group gr for the block, one im2col per image it touches. */
static void TS(gather_cols)(const conv_geom *g, T *col, const T *x, int64_t gr, int64_t q0,
                            int64_t q1)
{
    for (int64_t q = q0; q < q1;) {
        int64_t n = q / g->P, p0 = q - n * g->P, p1 = q1 - n * g->P < g->P ? q1 - n * g->P : g->P;
        TS(im2col)(g, col + (q - q0), q1 - q0, x + (n * g->C + gr * g->Cg) * g->HW, g->Cg, p0,
                   p1);
        q += p1 - p0;
    }
}

/* packed (nr, q1 - q0) <- rows o0 .. o0 + nr of an (N, OC, P) tensor over the block. */
static void TS(pack_rows)(const conv_geom *g, T *packed, const T *t, int64_t o0, int64_t nr,
                          int64_t q0, int64_t q1)
{
    for (int64_t q = q0; q < q1;) {
        int64_t n = q / g->P, p0 = q - n * g->P, p1 = q1 - n * g->P < g->P ? q1 - n * g->P : g->P;
        for (int64_t r = 0; r < nr; r++)
            memcpy(packed + r * (q1 - q0) + (q - q0), t + (n * g->OC + o0 + r) * g->P + p0,
                   (size_t)(p1 - p0) * sizeof(T));
        q += p1 - p0;
    }
}

/* The reverse, adding bias[o0 + r] to row r when bias is given: t <- packed (+ bias). */
static void TS(unpack_rows)(const conv_geom *g, T *t, const T *packed, const T *bias, int64_t o0,
                            int64_t nr, int64_t q0, int64_t q1)
{
    for (int64_t q = q0; q < q1;) {
        int64_t n = q / g->P, p0 = q - n * g->P, p1 = q1 - n * g->P < g->P ? q1 - n * g->P : g->P;
        for (int64_t r = 0; r < nr; r++) {
            T *dst = t + (n * g->OC + o0 + r) * g->P + p0, bv = bias ? bias[o0 + r] : 0;
            const T *src = packed + r * (q1 - q0) + (q - q0);
            for (int64_t j = 0; j < p1 - p0; j++) dst[j] = src[j] + bv;
        }
        q += p1 - p0;
    }
}

/* ---- forward --------------------------------------------------------------------------------- */
/* y over the block = w (*) x + bias, every group. col holds Kg x (q1 - q0) elements and tmp
 * OCg x (q1 - q0). Inside one image y is written in place (bias first, then the gemm adds with
 * beta = 1), and on the direct 1x1 path x itself is the column matrix. */
static void TS(fwd_unit)(const conv_geom *g, T *y, const T *x, const T *w, const T *bias, T *col,
                         T *tmp, int64_t q0, int64_t q1)
{
    int64_t nq = q1 - q0, n = q0 / g->P, p0 = q0 - n * g->P;
    bool one = q1 - n * g->P <= g->P;
    for (int64_t gr = 0; gr < g->G; gr++) {
        const T *B = x + (n * g->C + gr * g->Cg) * g->HW + p0;
        int64_t ldb = g->HW;
        if (!(g->direct && one)) {
            TS(gather_cols)(g, col, x, gr, q0, q1);
            B = col, ldb = nq;
        }
        const T *A = w + gr * g->OCg * g->Kg;
        if (!one) {
            TS(gemm)(false, false, g->OCg, nq, g->Kg, A, g->Kg, B, ldb, 0, tmp, nq);
            TS(unpack_rows)(g, y, tmp, bias, gr * g->OCg, g->OCg, q0, q1);
            continue;
        }
        T *yg = y + (n * g->OC + gr * g->OCg) * g->P + p0, beta = 0;
        if (bias) { /* start from the bias and let the gemm add on top */
            for (int64_t o = 0; o < g->OCg; o++) {
                T bv = bias[gr * g->OCg + o], *yo = yg + o * g->P;
                for (int64_t j = 0; j < nq; j++) yo[j] = bv;
            }
            beta = 1;
        }
        TS(gemm)(false, false, g->OCg, nq, g->Kg, A, g->Kg, B, ldb, beta, yg, g->P);
    }
}

/* ---- backward-data --------------------------------------------------------------------------- */
/* dx[channels c0..c1 of group gr] += col2im(w_g^T dy_g) over the block. The rows of w_g^T for a
 * channel range are a column range of w_g, read as "T" with no copy. col holds
 * (c1 - c0) * KH * KW x (q1 - q0) elements, tmp OCg x (q1 - q0) (dy packed across images). On the
 * direct path within one image the product goes straight into dx (beta = 1). */
static void TS(dx_unit)(const conv_geom *g, T *dx, const T *dy, const T *w, T *col, T *tmp,
                        int64_t gr, int64_t c0, int64_t c1, int64_t q0, int64_t q1)
{
    int64_t KK = g->KH * g->KW, M = (c1 - c0) * KK, nq = q1 - q0;
    int64_t n = q0 / g->P, p0 = q0 - n * g->P;
    bool one = q1 - n * g->P <= g->P;
    const T *A = w + gr * g->OCg * g->Kg + c0 * KK;
    const T *B = dy + (n * g->OC + gr * g->OCg) * g->P + p0;
    int64_t ldb = g->P;
    if (!one) {
        TS(pack_rows)(g, tmp, dy, gr * g->OCg, g->OCg, q0, q1);
        B = tmp, ldb = nq;
    }
    if (g->direct && one) {
        T *C = dx + (n * g->C + gr * g->Cg + c0) * g->HW + p0;
        TS(gemm)(true, false, M, nq, g->OCg, A, g->Kg, B, ldb, 1, C, g->HW);
        return;
    }
    TS(gemm)(true, false, M, nq, g->OCg, A, g->Kg, B, ldb, 0, col, nq);
    for (int64_t q = q0; q < q1;) {
        int64_t m = q / g->P, a = q - m * g->P, b = q1 - m * g->P < g->P ? q1 - m * g->P : g->P;
        TS(col2im)(g, dx + (m * g->C + gr * g->Cg + c0) * g->HW, col + (q - q0), nq, c1 - c0, a,
                   b);
        q += b - a;
    }
}

/* ---- backward-filter ------------------------------------------------------------------------- */
/* dw += dy over the block (per group) @ columns^T, with beta = 1 (dw is this thread's own
 * accumulator, or the real gradient for thread 0). Buffers as fwd_unit. */
static void TS(dw_unit)(const conv_geom *g, T *dw, const T *dy, const T *x, T *col, T *tmp,
                        int64_t q0, int64_t q1)
{
    int64_t nq = q1 - q0, n = q0 / g->P, p0 = q0 - n * g->P;
    bool one = q1 - n * g->P <= g->P;
    for (int64_t gr = 0; gr < g->G; gr++) {
        const T *B = x + (n * g->C + gr * g->Cg) * g->HW + p0;
        int64_t ldb = g->HW;
        if (!(g->direct && one)) {
            TS(gather_cols)(g, col, x, gr, q0, q1);
            B = col, ldb = nq;
        }
        const T *A = dy + (n * g->OC + gr * g->OCg) * g->P + p0;
        int64_t lda = g->P;
        if (!one) {
            TS(pack_rows)(g, tmp, dy, gr * g->OCg, g->OCg, q0, q1);
            A = tmp, lda = nq;
        }
        TS(gemm)(false, true, g->OCg, g->Kg, nq, A, lda, B, ldb, 1, dw + gr * g->OCg * g->Kg,
                 g->Kg);
    }
}

/* dbias[o] += the sum of dy over images and pixels for channels [o0, o1), accumulated in double
 * so float32 sums over N * OH * OW terms keep their precision. */
static void TS(bias_grad)(const conv_geom *g, T *db, const T *dy, int64_t o0, int64_t o1)
{
    for (int64_t o = o0; o < o1; o++) {
        double s = 0;
        for (int64_t n = 0; n < g->N; n++) {
            const T *d = dy + (n * g->OC + o) * g->P;
            for (int64_t j = 0; j < g->P; j++) s += d[j];
        }
        db[o] += (T)s;
    }
}

/* a[i] += b[i] for i in [i0, i1): folding the threads' private dw accumulators. */
static void TS(add_into)(T *a, const T *b, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) a[i] += b[i];
}
