/* ddn — argument checks of the dense linear-algebra kernels (lu_solve, cholesky_solve, eigh,
 * qr, ied_vjp_e), shared by the CPU and CUDA implementations so both accept and reject the same calls with
 * the same messages. */
#include "ddn_impl.h"

static bool dense(const ddn_tensor *t, ddn_dtype dt)
{
    return t->dtype == dt && ddn_tensor_is_contiguous(t) && t->ndim >= 2;
}

static int64_t batch_of(const ddn_tensor *t, int matrix_dims)
{
    int64_t b = 1;
    for (int d = 0; d < t->ndim - matrix_dims; d++) b *= t->shape[d];
    return b;
}

static bool same_batch(const ddn_tensor *a, const ddn_tensor *b, int a_dims, int b_dims)
{
    if (a->ndim - a_dims != b->ndim - b_dims) return false;
    for (int d = 0; d < a->ndim - a_dims; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

static ddn_status bad(ddn_ctx *ctx, const char *op, const char *expected, const ddn_tensor *a,
                      const ddn_tensor *b, const ddn_tensor *c)
{
    char sa[96], sb[96] = "-", sc[96] = "-";
    ddn_shape_str(a, sa, sizeof sa);
    if (b) ddn_shape_str(b, sb, sizeof sb);
    if (c) ddn_shape_str(c, sc, sizeof sc);
    return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: expected %s (contiguous, one float dtype); "
                             "got %s %s, %s, %s", op, expected, ddn_dtype_name(a->dtype), sa, sb,
                             sc);
}

ddn_status ddn_linalg_check_solve(const char *op, const ddn_tensor *x, const ddn_tensor *a,
                                  const ddn_tensor *b, ddn_linalg_dims *d)
{
    ddn_ctx *ctx = x->ctx;
    ddn_dtype dt = a->dtype;
    if (!ddn_dtype_is_float(dt) || !dense(a, dt) || !dense(b, dt) || !dense(x, dt) ||
        a->shape[a->ndim - 1] != a->shape[a->ndim - 2] || !same_batch(a, b, 2, 2) ||
        b->shape[b->ndim - 2] != a->shape[a->ndim - 1] || !ddn_tensor_same_shape(x, b))
        return bad(ctx, op, "a (B.., n, n), b and x (B.., n, k)", a, b, x);
    d->batch = batch_of(a, 2);
    d->n = a->shape[a->ndim - 1];
    d->k = b->shape[b->ndim - 1];
    return DDN_OK;
}

ddn_status ddn_linalg_check_eigh(const ddn_tensor *w, const ddn_tensor *v, const ddn_tensor *a,
                                 ddn_linalg_dims *d)
{
    ddn_ctx *ctx = w->ctx;
    ddn_dtype dt = a->dtype;
    bool ok = ddn_dtype_is_float(dt) && dense(a, dt) &&
              a->shape[a->ndim - 1] == a->shape[a->ndim - 2] && w->dtype == dt &&
              ddn_tensor_is_contiguous(w) && w->ndim == a->ndim - 1 && same_batch(a, w, 2, 1) &&
              w->shape[w->ndim - 1] == a->shape[a->ndim - 1] &&
              (!v || (dense(v, dt) && ddn_tensor_same_shape(v, a)));
    if (!ok) return bad(ctx, "eigh", "a (B.., n, n), w (B.., n), v (B.., n, n) or NULL", a, w, v);
    d->batch = batch_of(a, 2);
    d->n = a->shape[a->ndim - 1];
    d->k = d->n;
    return DDN_OK;
}

ddn_status ddn_linalg_check_qr(const ddn_tensor *q, const ddn_tensor *a, ddn_linalg_dims *d)
{
    ddn_ctx *ctx = q->ctx;
    ddn_dtype dt = a->dtype;
    if (!ddn_dtype_is_float(dt) || !dense(a, dt) || !dense(q, dt) ||
        !ddn_tensor_same_shape(q, a) || a->shape[a->ndim - 2] < a->shape[a->ndim - 1])
        return bad(ctx, "qr", "a and q (B.., m, k) with m >= k", a, q, NULL);
    d->batch = batch_of(a, 2);
    d->n = a->shape[a->ndim - 2]; /* m */
    d->k = a->shape[a->ndim - 1];
    return DDN_OK;
}

ddn_status ddn_linalg_check_ied_vjp_e(const ddn_tensor *dA, const ddn_tensor *A,
                                      const ddn_tensor *y, const ddn_tensor *v, bool ift,
                                      const double *z, const void *items, ddn_linalg_dims *d)
{
    ddn_ctx *ctx = A->ctx;
    ddn_dtype dt = A->dtype;
    bool ok = ddn_dtype_is_float(dt) && dense(A, dt) && A->ndim == 3 &&
              A->shape[1] == A->shape[2] && dense(y, dt) && dense(v, dt) && y->ndim == 2 &&
              ddn_tensor_same_shape(y, v) && y->shape[0] == A->shape[0] &&
              y->shape[1] == A->shape[1] &&
              (!dA || (ddn_dtype_is_float(dA->dtype) && dense(dA, dA->dtype) &&
                       ddn_tensor_same_shape(dA, A)));
    if (!ok) return bad(ctx, "ied_vjp_e", "A (B, m, m), y and v (B, m), dA NULL or (B, m, m)", A,
                        y, v);
    if (!items || (ift && !z))
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "ied_vjp_e: expected the per-item results "
                                 "array%s, got NULL", items ? " and the IFT probe z (m)" : "");
    d->batch = A->shape[0];
    d->n = A->shape[1];
    d->k = 0;
    return DDN_OK;
}
