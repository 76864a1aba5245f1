/* ddn — CPU conv2d: forward, backward-data and backward-filter, float32 and float64, any stride,
 * padding, dilation and groups (the per-dtype work units are in conv_tmpl.h).
 *
 * 1x1 convolutions with stride 1 and no padding are a direct gemm on the image (no copy); all
 * others go through im2col + gemm on blocks of output pixels (part of an image, or a few whole
 * small images), so a call's buffers never exceed col_budget bytes, whatever the image size.
 * Backward-data is w^T dy followed by an accumulating col2im; backward-filter accumulates
 * dy col^T over the blocks (beta = 1); the bias gradient sums dy over N, OH, OW.
 *
 * Threads: one OpenMP pool does everything, and OpenBLAS is held at one thread inside it: blocks
 * run in parallel, each with its own buffers and a gemm that runs at single-core speed at ResNet
 * sizes, while a second pool (OpenBLAS's pthreads) spinning against libgomp's costs up to 3x here
 * (BENCHMARKS.md). Forward blocks write disjoint outputs; dx units own whole images (or channel
 * blocks of one), since neighbouring pixels scatter into the same inputs; dw blocks add into one
 * private copy of dw per thread, folded at the end. Tests: tests/test_conv.c, test_conv_torch.c.
 */
#include <cblas.h>
#include <limits.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_impl.h"
#include "cpu_kernels.h"

typedef struct conv_geom {
    int64_t N, C, H, W, OC, KH, KW, OH, OW;
    int64_t sh, sw, ph, pw, dh, dw, G;
    int64_t Cg, OCg, Kg, HW, P; /* channels per group, rows of a group's column matrix, pixels */
    bool direct;                /* 1x1, stride 1, no padding: x itself is the column matrix */
    size_t es;
} conv_geom;

#define T float
#define TS(name) name##_f32
#define XB(fn) cblas_s##fn
#include "conv_tmpl.h"
#undef T
#undef TS
#undef XB

#define T double
#define TS(name) name##_f64
#define XB(fn) cblas_d##fn
#include "conv_tmpl.h"
#undef T
#undef TS
#undef XB

/* Bytes of column buffer one call may hold, over all its threads (a cap: blocks are usually
 * much smaller, see COL_TARGET). */
static size_t col_budget = (size_t)16 << 20;

/* The block size aimed at per thread: about 1 MB of columns stays in L2 between im2col writing
 * it and the gemm reading it (measured here: a 3x3 64->64 layer at 56x56 runs ~20% faster in
 * 0.5-2 MB blocks than in whole-image ones), and a gemm at least MIN_COLS wide keeps OpenBLAS
 * near full speed (49 columns: 60-80% of 256). */
#define COL_TARGET ((size_t)1 << 20)
#define MIN_COLS 256

size_t ddn_cpu_conv_col_budget(size_t bytes)
{
    size_t prev = col_budget;
    if (bytes) col_budget = bytes;
    return prev;
}

static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* OpenBLAS (pthreads build) to one thread while our own threads run gemms, so the two pools do
 * not oversubscribe the cores; returns the setting to restore (0: nothing changed). The OpenMP
 * build of OpenBLAS already runs single-threaded inside a parallel region. */
static int blas_serial_begin(int nt)
{
    if (nt > 1 && openblas_get_parallel() == 1) {
        int prev = openblas_get_num_threads();
        if (prev > 1) {
            openblas_set_num_threads(1);
            return prev;
        }
    }
    return 0;
}

static void blas_serial_end(int prev)
{
    if (prev > 0) openblas_set_num_threads(prev);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The geometry of x (N, C, H, W), w (OC, C/G, KH, KW), y (N, OC, OH, OW); checks what the front
 * end guarantees (programmer errors) and what BLAS's 32-bit integers allow (a status). */
static ddn_status geom_of(conv_geom *g, const ddn_tensor *y, const ddn_tensor *x,
                          const ddn_tensor *w, const int stride[2], const int padding[2],
                          const int dilation[2], int groups)
{
    DDN_ASSERT(x->ndim == 4 && w->ndim == 4 && y->ndim == 4 && groups >= 1);
    DDN_ASSERT(x->dtype == w->dtype && y->dtype == x->dtype && ddn_dtype_is_float(x->dtype));
    DDN_ASSERT(ddn_tensor_is_contiguous(x) && ddn_tensor_is_contiguous(w) &&
               ddn_tensor_is_contiguous(y));
    *g = (conv_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                     .OC = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
                     .OH = y->shape[2], .OW = y->shape[3], .sh = stride[0], .sw = stride[1],
                     .ph = padding[0], .pw = padding[1], .dh = dilation[0], .dw = dilation[1],
                     .G = groups, .es = ddn_dtype_size(x->dtype)};
    g->Cg = g->C / g->G, g->OCg = g->OC / g->G;
    g->Kg = g->Cg * g->KH * g->KW;
    g->HW = g->H * g->W, g->P = g->OH * g->OW;
    g->direct = g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    DDN_ASSERT(g->Cg * g->G == g->C && g->OCg * g->G == g->OC && w->shape[1] == g->Cg);
    DDN_ASSERT(y->shape[0] == g->N && y->shape[1] == g->OC);
    DDN_ASSERT(g->OH == (g->H + 2 * g->ph - g->dh * (g->KH - 1) - 1) / g->sh + 1);
    DDN_ASSERT(g->OW == (g->W + 2 * g->pw - g->dw * (g->KW - 1) - 1) / g->sw + 1);
    if (g->P > INT_MAX || g->HW > INT_MAX || g->Kg > INT_MAX || g->OC > INT_MAX ||
        g->C * g->KH * g->KW > INT_MAX)
        return ddn_ctx_set_error(y->ctx, DDN_ERR_UNSUPPORTED, "conv2d: an image plane or a "
                                 "weight row exceeds the 32-bit BLAS integer range");
    return DDN_OK;
}

/* How the N * P output pixels of a batch are cut into blocks: several whole images per block
 * (ipb > 0) when an image is narrower than a good block, else npb blocks of pblk pixels per
 * image. Per-thread buffers: col (Kg rows) and tmp (OCg rows, for blocks spanning images). */
typedef struct {
    int64_t ipb, pblk, npb, blocks;
    int64_t col_elems, tmp_elems;
} conv_plan;

static conv_plan plan_blocks(const conv_geom *g, int nt)
{
    conv_plan pl = {0};
    size_t per_col = (size_t)(g->Kg + g->OCg) * g->es;
    int64_t cap = (int64_t)(col_budget / (size_t)nt / per_col);
    int64_t want = (int64_t)(COL_TARGET / per_col);
    if (want < MIN_COLS) want = MIN_COLS;
    if (want > cap) want = cap;
    if (want < 1) want = 1;
    if (want >= g->P && g->N >= nt) {
        /* whole images, in at least two blocks per thread (dynamic scheduling then evens out a
         * thread the OS preempts on a shared machine) and a multiple of the threads */
        int64_t nb = ceil_div(g->N, want / g->P);
        if (nb < 2 * (int64_t)nt) nb = 2 * (int64_t)nt;
        nb = ceil_div(nb, nt) * nt;
        if (nb > g->N) nb = g->N;
        pl.ipb = ceil_div(g->N, nb);
        pl.blocks = ceil_div(g->N, pl.ipb);
        pl.col_elems = pl.ipb == 1 && g->direct ? 0 : g->Kg * pl.ipb * g->P;
        pl.tmp_elems = pl.ipb == 1 ? 0 : g->OCg * pl.ipb * g->P;
        return pl;
    }
    int64_t npb = ceil_div(g->P, want < g->P ? want : g->P);
    if (g->N * npb < 2 * (int64_t)nt) npb = ceil_div(2 * (int64_t)nt, g->N); /* as above */
    if (npb > g->P) npb = g->P;
    pl.pblk = ceil_div(g->P, npb);
    pl.npb = ceil_div(g->P, pl.pblk);
    pl.blocks = g->N * pl.npb;
    pl.col_elems = g->direct ? 0 : g->Kg * pl.pblk;
    return pl;
}

/* Block b's pixel range [*q0, *q1). */
static void block_range(const conv_geom *g, const conv_plan *pl, int64_t b, int64_t *q0,
                        int64_t *q1)
{
    if (pl->ipb) {
        int64_t n1 = (b + 1) * pl->ipb < g->N ? (b + 1) * pl->ipb : g->N;
        *q0 = b * pl->ipb * g->P, *q1 = n1 * g->P;
    } else {
        int64_t n = b / pl->npb, p0 = b % pl->npb * pl->pblk;
        *q0 = n * g->P + p0, *q1 = n * g->P + (p0 + pl->pblk < g->P ? p0 + pl->pblk : g->P);
    }
}

/* Per-thread buffers from the step arena (rewound by the caller): thread t's col is at
 * t * (col_elems + tmp_elems) elements and its tmp right after. */
static unsigned char *thread_buffers(ddn_ctx *ctx, int nt, const conv_plan *pl, size_t es)
{
    size_t bytes = (size_t)nt * (size_t)(pl->col_elems + pl->tmp_elems) * es;
    return ddn_ctx_scratch(ctx, bytes ? bytes : 1);
}

static void *col_of(unsigned char *buf, const conv_plan *pl, size_t es, int t)
{
    return buf + (size_t)t * (size_t)(pl->col_elems + pl->tmp_elems) * es;
}

static void *tmp_of(unsigned char *buf, const conv_plan *pl, size_t es, int t)
{
    return (unsigned char *)col_of(buf, pl, es, t) + (size_t)pl->col_elems * es;
}

/* ---- forward --------------------------------------------------------------------------------- */
ddn_status ddn_cpu_conv2d(ddn_tensor *out, const ddn_tensor *x, const ddn_tensor *w,
                          const ddn_tensor *bias, const int stride[2], const int padding[2],
                          const int dilation[2], int groups)
{
    conv_geom g;
    ddn_status st = geom_of(&g, out, x, w, stride, padding, dilation, groups);
    if (st != DDN_OK || g.N == 0 || g.OC == 0 || g.P == 0) return st;
    DDN_ASSERT(!bias || (bias->dtype == x->dtype && ddn_tensor_numel(bias) == g.OC &&
                         ddn_tensor_is_contiguous(bias)));
    int nt = max_threads();
    conv_plan pl = plan_blocks(&g, nt);
    if (nt > pl.blocks) nt = (int)pl.blocks;

    ddn_ctx *ctx = out->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *buf = thread_buffers(ctx, nt, &pl, g.es);
    if (!buf) return ddn_ctx_status(ctx);
    void *y = ddn_tensor_ptr(out);
    const void *xp = ddn_tensor_ptr(x), *wp = ddn_tensor_ptr(w);
    const void *bp = bias ? ddn_tensor_ptr(bias) : NULL;
    bool f32 = out->dtype == DDN_DTYPE_F32;
    int prev = blas_serial_begin(nt);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
#endif
    for (int64_t b = 0; b < pl.blocks; b++) {
        int64_t q0, q1;
        block_range(&g, &pl, b, &q0, &q1);
        int t = thread_id();
        void *col = col_of(buf, &pl, g.es, t), *tmp = tmp_of(buf, &pl, g.es, t);
        if (f32) fwd_unit_f32(&g, y, xp, wp, bp, col, tmp, q0, q1);
        else fwd_unit_f64(&g, y, xp, wp, bp, col, tmp, q0, q1);
    }
    blas_serial_end(prev);
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}

/* ---- backward-data --------------------------------------------------------------------------- */
ddn_status ddn_cpu_conv2d_backward_data_acc(ddn_tensor *dx, const ddn_tensor *dy,
                                            const ddn_tensor *w, const int stride[2],
                                            const int padding[2], const int dilation[2],
                                            int groups)
{
    conv_geom g;
    ddn_status st = geom_of(&g, dy, dx, w, stride, padding, dilation, groups);
    if (st != DDN_OK || g.N == 0 || g.C == 0 || g.P == 0 || g.OC == 0) return st;
    /* Units are (image set, group, channel block), each owning its dx rows, so col2im needs no
     * locks: a block of whole images, or one image whose pixel blocks the unit walks in turn
     * (neighbouring pixels scatter into the same inputs). Channel blocks beyond one only when
     * the images and groups leave threads idle. */
    int nt = max_threads();
    conv_plan pl = plan_blocks(&g, nt);
    int64_t sets = pl.ipb ? pl.blocks : g.N;
    int64_t ncb = sets * g.G >= nt ? 1 : ceil_div(nt, sets * g.G);
    if (ncb > g.Cg) ncb = g.Cg;
    int64_t cb = ceil_div(g.Cg, ncb);
    ncb = ceil_div(g.Cg, cb);
    int64_t units = sets * g.G * ncb;
    if (nt > units) nt = (int)units;

    ddn_ctx *ctx = dx->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *buf = thread_buffers(ctx, nt, &pl, g.es);
    if (!buf) return ddn_ctx_status(ctx);
    void *dxp = ddn_tensor_ptr(dx);
    const void *dyp = ddn_tensor_ptr(dy), *wp = ddn_tensor_ptr(w);
    bool f32 = dx->dtype == DDN_DTYPE_F32;
    int prev = blas_serial_begin(nt);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
#endif
    for (int64_t u = 0; u < units; u++) {
        int64_t set = u / (g.G * ncb), gr = u / ncb % g.G, c0 = u % ncb * cb;
        int64_t c1 = c0 + cb < g.Cg ? c0 + cb : g.Cg;
        int t = thread_id();
        void *col = col_of(buf, &pl, g.es, t), *tmp = tmp_of(buf, &pl, g.es, t);
        int64_t b0 = pl.ipb ? set : set * pl.npb, b1 = pl.ipb ? set + 1 : b0 + pl.npb;
        for (int64_t b = b0; b < b1; b++) {
            int64_t q0, q1;
            block_range(&g, &pl, b, &q0, &q1);
            if (f32) dx_unit_f32(&g, dxp, dyp, wp, col, tmp, gr, c0, c1, q0, q1);
            else dx_unit_f64(&g, dxp, dyp, wp, col, tmp, gr, c0, c1, q0, q1);
        }
    }
    blas_serial_end(prev);
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}

/* ---- backward-filter and bias ---------------------------------------------------------------- */
static void bias_backward(const conv_geom *g, ddn_tensor *dbias, const ddn_tensor *dy)
{
    void *db = ddn_tensor_ptr(dbias);
    const void *dyp = ddn_tensor_ptr(dy);
    bool f32 = dbias->dtype == DDN_DTYPE_F32;
    int64_t work = g->N * g->OC * g->P;
    (void)work;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work >= DDN_CPU_PARALLEL_MIN)
#endif
    for (int64_t o = 0; o < g->OC; o++) {
        if (f32) bias_grad_f32(g, db, dyp, o, o + 1);
        else bias_grad_f64(g, db, dyp, o, o + 1);
    }
}

ddn_status ddn_cpu_conv2d_backward_filter_acc(ddn_tensor *dw, ddn_tensor *dbias,
                                              const ddn_tensor *dy, const ddn_tensor *x,
                                              const ddn_tensor *w, const int stride[2],
                                              const int padding[2], const int dilation[2],
                                              int groups)
{
    conv_geom g;
    ddn_status st = geom_of(&g, dy, x, w, stride, padding, dilation, groups);
    if (st != DDN_OK || g.N == 0 || g.P == 0 || g.OC == 0) return st;
    if (dbias) {
        DDN_ASSERT(dbias->dtype == dy->dtype && ddn_tensor_numel(dbias) == g.OC &&
                   ddn_tensor_is_contiguous(dbias));
        bias_backward(&g, dbias, dy);
    }
    if (!dw || g.Kg == 0) return DDN_OK;
    DDN_ASSERT(dw->dtype == dy->dtype && ddn_tensor_same_shape(dw, w) &&
               ddn_tensor_is_contiguous(dw));
    int nt = max_threads();
    conv_plan pl = plan_blocks(&g, nt);
    if (nt > pl.blocks) nt = (int)pl.blocks;
    int64_t wn = ddn_tensor_numel(w);

    /* Blocks of different images add into the same dw: thread 0 adds into dw itself, the others
     * into private zeroed copies folded in at the end (nt - 1 extra copies of the weights).
     * A static schedule fixes which thread sums which blocks, so dw is bit-reproducible for a
     * given thread count (a dynamic one made 2-thread training runs differ from run to run,
     * which breaks `ddn train --resume`'s exactness). */
    ddn_ctx *ctx = dw->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    unsigned char *buf = thread_buffers(ctx, nt, &pl, g.es);
    unsigned char *part = ddn_ctx_scratch(ctx, (size_t)(nt - 1) * (size_t)wn * g.es + 1);
    if (!buf || !part) return ddn_ctx_status(ctx);
    memset(part, 0, (size_t)(nt - 1) * (size_t)wn * g.es);
    void *dwp = ddn_tensor_ptr(dw);
    const void *dyp = ddn_tensor_ptr(dy), *xp = ddn_tensor_ptr(x);
    bool f32 = dw->dtype == DDN_DTYPE_F32;
    int prev = blas_serial_begin(nt);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int64_t b = 0; b < pl.blocks; b++) {
        int64_t q0, q1;
        block_range(&g, &pl, b, &q0, &q1);
        int t = thread_id();
        void *col = col_of(buf, &pl, g.es, t), *tmp = tmp_of(buf, &pl, g.es, t);
        void *acc = t == 0 ? dwp : part + (size_t)(t - 1) * (size_t)wn * g.es;
        if (f32) dw_unit_f32(&g, acc, dyp, xp, col, tmp, q0, q1);
        else dw_unit_f64(&g, acc, dyp, xp, col, tmp, q0, q1);
    }
    blas_serial_end(prev);
    if (nt > 1) {
        int64_t chunk = DDN_CPU_CHUNK, nchunks = ceil_div(wn, chunk);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (wn >= DDN_CPU_PARALLEL_MIN)
#endif
        for (int64_t ci = 0; ci < nchunks; ci++) {
            int64_t i0 = ci * chunk, i1 = i0 + chunk < wn ? i0 + chunk : wn;
            for (int t = 1; t < nt; t++) {
                const unsigned char *pt = part + (size_t)(t - 1) * (size_t)wn * g.es;
                if (f32) add_into_f32(dwp, (const float *)pt, i0, i1);
                else add_into_f64(dwp, (const double *)pt, i0, i1);
            }
        }
    }
    ddn_ctx_rewind(ctx, mark);
    return DDN_OK;
}
