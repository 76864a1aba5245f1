/* ddn — matrix products: matmul (torch.matmul semantics) and linear (x @ w^T + bias).
 *
 * Both run on the backend's batched gemm kernel, which takes transposed views without a copy, so
 * w^T in linear and B^T, A^T in backward are only views. Backward writes dA = dY B^T and
 * dB = A^T dY straight into the gradient buffers with beta = 1; where an operand was broadcast
 * over batch dims its gradient is summed over them, either by folding the batch into the inner
 * dim of one gemm or by one beta = 1 gemm per broadcast item, never through a temporary.
 * Tests: tests/test_matmul.c, tests/test_reduce_torch.c.
 */
#include <string.h>

#include "ddn_impl.h"
#include "ops.h"

typedef struct {
    int nb;                       /* batch dims after broadcasting */
    int64_t batch[DDN_MAX_DIMS];  /* their sizes */
    int64_t M, K, N;
} mm_plan;

static bool mm_plan_of(ddn_ctx *ctx, const ddn_tensor *a, const ddn_tensor *b, mm_plan *p)
{
    char sa[96], sb[96];
    ddn_shape_str(a, sa, sizeof sa);
    ddn_shape_str(b, sb, sizeof sb);
    if (a->ndim == 0 || b->ndim == 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "matmul: %s @ %s: both operands need at least one "
                          "dim", sa, sb);
        return false;
    }
    p->M = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
    p->K = a->shape[a->ndim - 1];
    int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
    p->N = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
    if (p->K != kb) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "matmul: %s @ %s: inner dims %lld and %lld differ",
                          sa, sb, (long long)p->K, (long long)kb);
        return false;
    }
    int na = a->ndim > 2 ? a->ndim - 2 : 0, nbb = b->ndim > 2 ? b->ndim - 2 : 0;
    p->nb = na > nbb ? na : nbb;
    for (int i = 0; i < p->nb; i++) {
        int ia = i - (p->nb - na), ib = i - (p->nb - nbb);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "matmul: %s @ %s: batch dims do not broadcast "
                              "(%lld vs %lld)", sa, sb, (long long)da, (long long)db);
            return false;
        }
        p->batch[i] = da == 1 ? db : da;
    }
    return true;
}

/* The (nb + 2)-dim matrix view of operand t: (batch.., M, K) on the left, (batch.., K, N) on
 * the right; a 1-D operand becomes a row (left) or a column (right). With broadcast, batch dims
 * that t lacks or has as 1 take the full size with stride 0; without, they stay size 1 (the
 * layout of t's own gradient buffer). */
static ddn_tensor *mat_view(ddn_ctx *ctx, const ddn_tensor *t, bool right, const mm_plan *p,
                            bool broadcast)
{
    int nd = p->nb + 2, tb = t->ndim > 2 ? t->ndim - 2 : 0;
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    for (int i = 0; i < p->nb; i++) {
        int it = i - (p->nb - tb);
        bool own = it >= 0 && t->shape[it] == p->batch[i];
        shape[i] = own || broadcast ? p->batch[i] : 1;
        stride[i] = own ? t->stride[it] : 0;
    }
    if (t->ndim == 1) {
        int64_t n = t->shape[0], s = t->stride[0];
        shape[nd - 2] = right ? n : 1;
        stride[nd - 2] = right ? s : n * s;
        shape[nd - 1] = right ? 1 : n;
        stride[nd - 1] = right ? 1 : s;
    } else {
        for (int j = 0; j < 2; j++) {
            shape[nd - 2 + j] = t->shape[t->ndim - 2 + j];
            stride[nd - 2 + j] = t->stride[t->ndim - 2 + j];
        }
    }
    return ddn_view_raw(ctx, t, nd, shape, stride, t->offset);
}

/* t with its last two dims swapped (a view). */
static ddn_tensor *mT(ddn_ctx *ctx, const ddn_tensor *t)
{
    if (!t) return NULL;
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(stride, t->stride, sizeof stride);
    int n = t->ndim;
    shape[n - 2] = t->shape[n - 1], shape[n - 1] = t->shape[n - 2];
    stride[n - 2] = t->stride[n - 1], stride[n - 1] = t->stride[n - 2];
    return ddn_view_raw(ctx, t, n, shape, stride, t->offset);
}

/* Merges dim x and the batch dims 0..nb-1 of t (innermost first) into one evenly spaced run of
 * *n elements with stride *s; false when they are not evenly spaced. */
static bool merge_with_batch(const ddn_tensor *t, int x, int nb, int64_t *n, int64_t *s)
{
    int64_t sz = 1, st = 1;
    for (int j = -1; j < nb; j++) {
        int d = j < 0 ? x : nb - 1 - j;
        if (t->shape[d] == 1) continue;
        if (sz == 1) st = t->stride[d];
        else if (t->stride[d] != sz * st) return false;
        sz *= t->shape[d];
    }
    *n = sz;
    *s = st;
    return true;
}

/* g += L @ R. L (batch.., R, X) and R (batch.., X, C) have the full batch shape; g (batch.., R, C)
 * is a contiguous gradient view whose batch dims are either full or 1 where its operand was
 * broadcast. Those dims are summed without a temporary: folded into X when g has no batch left
 * and L and R allow it (one gemm), otherwise one beta = 1 gemm per broadcast item. */
static ddn_status acc_product(ddn_ctx *ctx, ddn_tensor *g, const ddn_tensor *L,
                             const ddn_tensor *R)
{
    if (!g || !L || !R) return ddn_ctx_status(ctx);
    const ddn_kernels *k = ddn_k(g);
    int nd = g->ndim, nb = nd - 2, red[DDN_MAX_DIMS], nred = 0;
    int64_t items = 1;
    bool batch_left = false;
    for (int i = 0; i < nb; i++) {
        if (g->shape[i] != L->shape[i]) red[nred++] = i, items *= L->shape[i];
        else batch_left |= g->shape[i] > 1;
    }
    if (nred == 0) return k->matmul(g, L, R, 1.0, 1.0);
    if (items == 0) return DDN_OK;

    ddn_mark mark = ddn_ctx_mark(ctx); /* g predates the mark; only our views die */
    ddn_status st = DDN_OK;
    int64_t nl, sl, nr, sr;
    if (!batch_left && merge_with_batch(L, nd - 1, nb, &nl, &sl) &&
        merge_with_batch(R, nd - 2, nb, &nr, &sr) && nl == nr) {
        int64_t gs[2] = {g->shape[nb], g->shape[nb + 1]};
        ddn_tensor *g2 = ddn_view_raw(ctx, g, 2, gs, g->stride + nb, g->offset);
        ddn_tensor *l2 = ddn_view_raw(ctx, L, 2, (int64_t[]){L->shape[nb], nl},
                                      (int64_t[]){L->stride[nb], sl}, L->offset);
        ddn_tensor *r2 = ddn_view_raw(ctx, R, 2, (int64_t[]){nr, R->shape[nb + 1]},
                                      (int64_t[]){sr, R->stride[nb + 1]}, R->offset);
        st = g2 && l2 && r2 ? k->matmul(g2, l2, r2, 1.0, 1.0) : ddn_ctx_status(ctx);
    } else {
        int64_t ls[DDN_MAX_DIMS], rs[DDN_MAX_DIMS];
        memcpy(ls, L->shape, sizeof ls);
        memcpy(rs, R->shape, sizeof rs);
        for (int j = 0; j < nred; j++) ls[red[j]] = rs[red[j]] = 1;
        for (int64_t it = 0; it < items && st == DDN_OK; it++) {
            int64_t rem = it, lo = L->offset, ro = R->offset;
            for (int j = nred - 1; j >= 0; j--) {
                int d = red[j];
                int64_t idx = rem % L->shape[d];
                rem /= L->shape[d];
                lo += idx * L->stride[d];
                ro += idx * R->stride[d];
            }
            ddn_tensor *lv = ddn_view_raw(ctx, L, nd, ls, L->stride, lo);
            ddn_tensor *rv = ddn_view_raw(ctx, R, nd, rs, R->stride, ro);
            st = lv && rv ? k->matmul(g, lv, rv, 1.0, 1.0) : ddn_ctx_status(ctx);
            ddn_ctx_rewind(ctx, mark);
        }
    }
    ddn_ctx_rewind(ctx, mark);
    return st;
}

/* ---- matmul ----------------------------------------------------------------------------------- */
static ddn_status matmul_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *a = node->in[0], *b = node->in[1], *dy = node->out->grad;
    mm_plan p;
    if (!mm_plan_of(ctx, a, b, &p)) return ddn_ctx_status(ctx);
    int nd = p.nb + 2;
    int64_t shape[DDN_MAX_DIMS], stride[DDN_MAX_DIMS];
    memcpy(shape, p.batch, sizeof(int64_t) * (size_t)p.nb);
    shape[nd - 2] = p.M, shape[nd - 1] = p.N;
    ddn_contiguous_strides(nd, shape, stride);
    ddn_tensor *dy2 = ddn_view_raw(ctx, dy, nd, shape, stride, dy->offset); /* (batch.., M, N) */
    ddn_status st = dy2 ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK && a->requires_grad) { /* dA = dY B^T */
        ddn_tensor *ga = ddn_grad_buffer(ctx, a);
        st = ga ? acc_product(ctx, mat_view(ctx, ga, false, &p, false), dy2,
                              mT(ctx, mat_view(ctx, b, true, &p, true)))
                : ddn_ctx_status(ctx);
    }
    if (st == DDN_OK && b->requires_grad) { /* dB = A^T dY */
        ddn_tensor *gb = ddn_grad_buffer(ctx, b);
        st = gb ? acc_product(ctx, mat_view(ctx, gb, true, &p, false),
                              mT(ctx, mat_view(ctx, a, false, &p, true)), dy2)
                : ddn_ctx_status(ctx);
    }
    return st;
}

ddn_tensor *ddn_matmul(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b)
{
    mm_plan p;
    if (!ddn_check_pair(ctx, "matmul", a, b) || !mm_plan_of(ctx, a, b, &p)) return NULL;
    int nd = p.nb + 2, ny = p.nb;
    int64_t shape[DDN_MAX_DIMS], yshape[DDN_MAX_DIMS], ystride[DDN_MAX_DIMS];
    memcpy(shape, p.batch, sizeof(int64_t) * (size_t)p.nb);
    memcpy(yshape, p.batch, sizeof(int64_t) * (size_t)p.nb);
    shape[nd - 2] = p.M, shape[nd - 1] = p.N;
    if (a->ndim > 1) yshape[ny++] = p.M; /* promoted 1-D operands lose their added dim */
    if (b->ndim > 1) yshape[ny++] = p.N;
    ddn_tensor *a2 = mat_view(ctx, a, false, &p, true), *b2 = mat_view(ctx, b, true, &p, true);
    ddn_tensor *out = ddn_tensor_new(ctx, a->dtype, nd, shape);
    if (!a2 || !b2 || !out || ddn_k(out)->matmul(out, a2, b2, 1.0, 0.0) != DDN_OK) return NULL;
    ddn_contiguous_strides(ny, yshape, ystride);
    ddn_tensor *y = ny == nd ? out : ddn_view_raw(ctx, out, ny, yshape, ystride, out->offset);
    ddn_tensor *in[2] = {a, b};
    ddn_tape_record(ctx, "matmul", matmul_backward, y, 2, in, 0);
    return ddn_op_finish(ctx, "matmul", y);
}

/* ---- linear ----------------------------------------------------------------------------------- */
static ddn_status linear_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *w = node->in[1], *dy = node->out->grad; /* dy (N, out) */
    ddn_tensor *bias = node->n_in > 2 ? node->in[2] : NULL;
    const ddn_kernels *k = ddn_k(dy);
    ddn_status st = DDN_OK;
    if (x->requires_grad) { /* dx (N, in) += dy @ w */
        ddn_tensor *gx = ddn_grad_buffer(ctx, x);
        st = gx ? k->matmul(gx, dy, w, 1.0, 1.0) : ddn_ctx_status(ctx);
    }
    if (st == DDN_OK && w->requires_grad) { /* dw (out, in) += dy^T @ x */
        ddn_tensor *gw = ddn_grad_buffer(ctx, w);
        st = gw ? k->matmul(gw, mT(ctx, dy), x, 1.0, 1.0) : ddn_ctx_status(ctx);
    }
    if (st == DDN_OK && bias && bias->requires_grad) /* dbias += dy summed over rows */
        st = ddn_grad_accumulate(ctx, bias, dy, 1.0);
    return st;
}

ddn_tensor *ddn_linear(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *w, ddn_tensor *bias)
{
    if (!ddn_check_pair(ctx, "linear", x, w)) return NULL;
    if (bias && !ddn_check_pair(ctx, "linear", x, bias)) return NULL;
    char sx[96], sw[96], sb[96];
    ddn_shape_str(x, sx, sizeof sx);
    ddn_shape_str(w, sw, sizeof sw);
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "linear: x %s and weight %s: expected x (N, in) "
                          "and weight (out, in) with the same in", sx, sw);
        return NULL;
    }
    int64_t N = x->shape[0], out_f = w->shape[0];
    if (bias && (bias->ndim != 1 || bias->shape[0] != out_f)) {
        ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "linear: bias %s does not fit weight %s: expected "
                          "(%lld)", ddn_shape_str(bias, sb, sizeof sb), sw, (long long)out_f);
        return NULL;
    }
    const ddn_kernels *k = ddn_k(x);
    int64_t yshape[2] = {N, out_f};
    ddn_tensor *y = ddn_tensor_new(ctx, x->dtype, 2, yshape);
    ddn_tensor *wt = mT(ctx, w); /* (in, out) view: BLAS reads it as "T", no copy */
    if (!y || !wt) return NULL;
    double beta = 0.0;
    if (bias) { /* y starts as the bias in every row; the gemm adds x w^T on top (beta = 1) */
        ddn_tensor *bb = ddn_broadcast_raw(ctx, bias, 2, yshape);
        if (!bb || k->copy(y, bb) != DDN_OK) return NULL;
        beta = 1.0;
    }
    if (k->matmul(y, x, wt, 1.0, beta) != DDN_OK) return NULL;
    ddn_tensor *in[3] = {x, w, bias};
    ddn_tape_record(ctx, "linear", linear_backward, y, bias ? 3 : 2, in, 0);
    return ddn_op_finish(ctx, "linear", y);
}
