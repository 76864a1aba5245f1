/* ddn — tensor creation, lifetimes, fills and inspection. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"

static const char *const dtype_names[DDN_DTYPE_COUNT] = {"float32", "float64", "int64"};
static const size_t dtype_sizes[DDN_DTYPE_COUNT] = {4, 8, 8};

size_t ddn_dtype_size(ddn_dtype dt) { return (unsigned)dt < DDN_DTYPE_COUNT ? dtype_sizes[dt] : 0; }
const char *ddn_dtype_name(ddn_dtype dt)
{
    return (unsigned)dt < DDN_DTYPE_COUNT ? dtype_names[dt] : "invalid dtype";
}
bool ddn_dtype_is_float(ddn_dtype dt) { return dt == DDN_DTYPE_F32 || dt == DDN_DTYPE_F64; }

void ddn_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i];
    }
}

char *ddn_shape_str_raw(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t len = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, i ? ",%" PRId64 : "%" PRId64, shape[i]);
    if (len < n) snprintf(buf + len, n - len, ")");
    return buf;
}

char *ddn_shape_str(const ddn_tensor *t, char *buf, size_t n)
{
    return ddn_shape_str_raw(t->ndim, t->shape, buf, n);
}

/* Rejects bad dtypes, ndim outside [0, DDN_MAX_DIMS], negative sizes and element counts whose
 * byte size overflows. */
static bool check_new(ddn_ctx *ctx, const char *op, ddn_dtype dt, int ndim, const int64_t *shape)
{
    if ((unsigned)dt >= DDN_DTYPE_COUNT)
        return ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "%s: invalid dtype %d", op, (int)dt), false;
    return ddn_shape_valid(ctx, op, ndim, shape);
}

bool ddn_shape_valid(ddn_ctx *ctx, const char *op, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > DDN_MAX_DIMS)
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: %d dims requested, at most %d supported",
                                 op, ndim, DDN_MAX_DIMS),
               false;
    if (ndim > 0 && !shape)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "%s: shape is NULL", op), false;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: dim %d has negative size %" PRId64,
                                     op, i, shape[i]),
                   false;
        if (shape[i] > 0 && n > (INT64_MAX / 8) / shape[i])
            return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "%s: element count overflows", op), false;
        n *= shape[i];
    }
    return true;
}

static void init_meta(ddn_tensor *t, ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    ddn_contiguous_strides(ndim, shape, t->stride);
    t->device = ctx->device;
    t->ctx = ctx;
}

int64_t ddn_tensor_numel(const ddn_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t ddn_tensor_nbytes(const ddn_tensor *t)
{
    return (size_t)ddn_tensor_numel(t) * ddn_dtype_size(t->dtype);
}

/* ---- step tensors ----------------------------------------------------------------------------- */
ddn_tensor *ddn_tensor_new(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape)
{
    if (!check_new(ctx, "tensor_new", dt, ndim, shape)) return NULL;
    ddn_tensor *t = ddn_ctx_scratch(ctx, sizeof *t);
    if (!t) return NULL;
    init_meta(t, ctx, dt, ndim, shape);
    t->data = ddn_arena_alloc_data(ctx, ddn_tensor_nbytes(t));
    return t->data ? t : NULL;
}

ddn_tensor *ddn_tensor_new_like(ddn_ctx *ctx, const ddn_tensor *x)
{
    return ddn_tensor_new(ctx, x->dtype, x->ndim, x->shape);
}

ddn_tensor *ddn_full(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape, double value)
{
    ddn_tensor *t = ddn_tensor_new(ctx, dt, ndim, shape);
    if (t && ddn_tensor_fill(t, value) != DDN_OK) return NULL;
    return t;
}

ddn_tensor *ddn_zeros(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape)
{
    return ddn_full(ctx, dt, ndim, shape, 0.0);
}

ddn_tensor *ddn_ones(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape)
{
    return ddn_full(ctx, dt, ndim, shape, 1.0);
}

ddn_tensor *ddn_scalar(ddn_ctx *ctx, ddn_dtype dt, double value)
{
    return ddn_full(ctx, dt, 0, NULL, value);
}

void *ddn_tensor_ptr(const ddn_tensor *t)
{
    return (unsigned char *)t->data + (size_t)t->offset * ddn_dtype_size(t->dtype);
}

/* Fills a host staging buffer with gen(i) converted to t's dtype, then copies it to the device
 * (through a contiguous temporary when t is a strided view). */
typedef double (*gen_fn)(void *state, int64_t i);

static void store_as(ddn_dtype dt, void *buf, int64_t i, double v)
{
    switch (dt) {
    case DDN_DTYPE_F32: ((float *)buf)[i] = (float)v; break;
    case DDN_DTYPE_F64: ((double *)buf)[i] = v; break;
    default: ((int64_t *)buf)[i] = (int64_t)v; break;
    }
}

static ddn_status fill_generated(ddn_tensor *t, gen_fn gen, void *state)
{
    ddn_ctx *ctx = t->ctx;
    int64_t n = ddn_tensor_numel(t);
    size_t bytes = ddn_tensor_nbytes(t);
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_status st = DDN_OK;
    void *host = ddn_ctx_scratch(ctx, bytes);
    if (!host) return ddn_ctx_status(ctx);
    for (int64_t i = 0; i < n; i++) store_as(t->dtype, host, i, gen(state, i));
    if (ddn_tensor_is_contiguous(t)) {
        st = ctx->backend->copy_h2d(ctx, ddn_tensor_ptr(t), host, bytes);
    } else {
        ddn_tensor *tmp = ddn_tensor_new_like(ctx, t);
        st = tmp ? ctx->backend->copy_h2d(ctx, tmp->data, host, bytes) : ddn_ctx_status(ctx);
        if (st == DDN_OK) st = ddn_k(t)->copy(t, tmp);
    }
    ddn_ctx_rewind(ctx, mark);
    return st;
}

typedef struct { double start, step; } arange_state;
static double gen_arange(void *s, int64_t i)
{
    arange_state *a = s;
    return a->start + (double)i * a->step;
}

typedef struct { ddn_rng *rng; double a, b; } rand_state;
static double gen_uniform(void *s, int64_t i)
{
    (void)i;
    rand_state *r = s;
    return r->a + (r->b - r->a) * ddn_rng_uniform(r->rng);
}
static double gen_normal(void *s, int64_t i)
{
    (void)i;
    rand_state *r = s;
    return r->a + r->b * ddn_rng_normal(r->rng);
}

typedef struct { const void *host; ddn_dtype dt; } host_state;
static double gen_host(void *s, int64_t i)
{
    host_state *h = s;
    switch (h->dt) {
    case DDN_DTYPE_F32: return ((const float *)h->host)[i];
    case DDN_DTYPE_F64: return ((const double *)h->host)[i];
    default: return (double)((const int64_t *)h->host)[i];
    }
}

ddn_tensor *ddn_arange(ddn_ctx *ctx, ddn_dtype dt, double start, double stop, double step)
{
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "arange: start %g, stop %g, step %g: step must be "
                          "non-zero and all finite", start, stop, step);
        return NULL;
    }
    double len = ceil((stop - start) / step);
    int64_t n = len > 0 ? (int64_t)len : 0;
    ddn_tensor *t = ddn_tensor_new(ctx, dt, 1, &n);
    arange_state a = {start, step};
    if (t && fill_generated(t, gen_arange, &a) != DDN_OK) return NULL;
    return t;
}

ddn_tensor *ddn_rand_uniform(ddn_ctx *ctx, ddn_rng *rng, ddn_dtype dt, int ndim,
                             const int64_t *shape, double lo, double hi)
{
    ddn_tensor *t = ddn_tensor_new(ctx, dt, ndim, shape);
    if (t && ddn_tensor_fill_uniform(t, rng, lo, hi) != DDN_OK) return NULL;
    return t;
}

ddn_tensor *ddn_rand_normal(ddn_ctx *ctx, ddn_rng *rng, ddn_dtype dt, int ndim,
                            const int64_t *shape, double mean, double std)
{
    ddn_tensor *t = ddn_tensor_new(ctx, dt, ndim, shape);
    if (t && ddn_tensor_fill_normal(t, rng, mean, std) != DDN_OK) return NULL;
    return t;
}

ddn_tensor *ddn_tensor_from_host(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                                 const void *host)
{
    if (!host) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "tensor_from_host: host pointer is NULL");
        return NULL;
    }
    ddn_tensor *t = ddn_tensor_new(ctx, dt, ndim, shape);
    if (!t) return NULL;
    ddn_status st = ctx->backend->copy_h2d(ctx, t->data, host, ddn_tensor_nbytes(t));
    if (st != DDN_OK) {
        ddn_ctx_set_error(ctx, st, "tensor_from_host: copy to %s failed", ctx->backend->name);
        return NULL;
    }
    return t;
}

ddn_tensor *ddn_tensor_to(ddn_ctx *ctx, const ddn_tensor *t, ddn_device device)
{
    if (!t) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "tensor_to: tensor is NULL");
        return NULL;
    }
    if (device != ctx->device) {
        ddn_ctx_set_error(ctx, DDN_ERR_DEVICE, "tensor_to: target device %s, but the context is "
                          "on %s (create a context on the target device)",
                          device == DDN_DEVICE_CUDA ? "cuda" : "cpu", ctx->backend->name);
        return NULL;
    }
    ddn_tensor *out = ddn_tensor_new(ctx, t->dtype, t->ndim, t->shape);
    if (!out) return NULL;
    if (t->ctx == ctx) return ddn_k(out)->copy(out, t) == DDN_OK ? out : NULL;
    /* Another context (maybe another device): stage through host memory of this context's step
     * arena, rewound once the copy is done (out was allocated before the mark, so it stays). */
    size_t bytes = ddn_tensor_nbytes(out);
    ddn_mark mark = ddn_ctx_mark(ctx);
    void *host = ddn_ctx_scratch(ctx, bytes);
    ddn_status st = host ? ddn_tensor_to_host(t, t->dtype, host) : DDN_ERR_OOM;
    if (st != DDN_OK && host)
        ddn_ctx_set_error(ctx, st, "tensor_to: reading the %s source failed: %s",
                          t->ctx->backend->name, ddn_ctx_errmsg(t->ctx));
    if (st == DDN_OK) {
        st = ctx->backend->copy_h2d(ctx, out->data, host, bytes);
        if (st != DDN_OK)
            ddn_ctx_set_error(ctx, st, "tensor_to: copy to %s failed", ctx->backend->name);
    }
    ddn_ctx_rewind(ctx, mark);
    return st == DDN_OK ? out : NULL;
}

/* ---- persistent tensors ----------------------------------------------------------------------- */
ddn_tensor *ddn_tensor_wrap_persistent(ddn_ctx *ctx, ddn_dtype dt, int ndim,
                                       const int64_t *shape, void *data)
{
    if (!check_new(ctx, "tensor_wrap_persistent", dt, ndim, shape)) return NULL;
    ddn_tensor *t = malloc(sizeof *t);
    if (!t) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "tensor_wrap_persistent: out of memory");
        return NULL;
    }
    init_meta(t, ctx, dt, ndim, shape);
    t->data = data;
    t->persistent = true;
    return t;
}

ddn_tensor *ddn_tensor_new_persistent(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape)
{
    ddn_tensor *t = ddn_tensor_wrap_persistent(ctx, dt, ndim, shape, NULL);
    if (!t) return NULL;
    size_t bytes = ddn_tensor_nbytes(t);
    t->data = ctx->backend->alloc(ctx, bytes ? bytes : 1);
    if (!t->data) {
        char s[96];
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "tensor_new_persistent: cannot allocate %zu bytes "
                          "for %s %s", bytes, ddn_dtype_name(dt), ddn_shape_str(t, s, sizeof s));
        free(t);
        return NULL;
    }
    t->owns_data = true;
    ddn_ctx_note_persistent(ctx, (ptrdiff_t)bytes);
    if (ddn_tensor_fill(t, 0.0) != DDN_OK) {
        ddn_tensor_free(t);
        return NULL;
    }
    return t;
}

void ddn_tensor_free(ddn_tensor *t)
{
    if (!t) return;
    DDN_ASSERT(t->persistent && "ddn_tensor_free takes persistent tensors only");
    if (t->grad && t->grad->persistent) ddn_tensor_free(t->grad);
    if (t->owns_data) {
        t->ctx->backend->free(t->ctx, t->data);
        ddn_ctx_note_persistent(t->ctx, -(ptrdiff_t)ddn_tensor_nbytes(t));
    }
    free(t);
}

/* ---- fills ------------------------------------------------------------------------------------ */
ddn_status ddn_tensor_fill(ddn_tensor *t, double value) { return ddn_k(t)->fill(t, value); }

ddn_status ddn_tensor_fill_uniform(ddn_tensor *t, ddn_rng *rng, double lo, double hi)
{
    rand_state r = {rng ? rng : &t->ctx->rng, lo, hi};
    return fill_generated(t, gen_uniform, &r);
}

ddn_status ddn_tensor_fill_normal(ddn_tensor *t, ddn_rng *rng, double mean, double std)
{
    rand_state r = {rng ? rng : &t->ctx->rng, mean, std};
    return fill_generated(t, gen_normal, &r);
}

ddn_status ddn_tensor_copy_(ddn_tensor *dst, const ddn_tensor *src)
{
    if (!ddn_tensor_same_shape(dst, src)) {
        char a[96], b[96];
        return ddn_ctx_set_error(dst->ctx, DDN_ERR_SHAPE, "tensor_copy_: destination %s and "
                                 "source %s differ in shape", ddn_shape_str(dst, a, sizeof a),
                                 ddn_shape_str(src, b, sizeof b));
    }
    return ddn_k(dst)->copy(dst, src);
}

/* ---- inspection ------------------------------------------------------------------------------- */
bool ddn_tensor_is_contiguous(const ddn_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool ddn_tensor_same_shape(const ddn_tensor *a, const ddn_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

ddn_status ddn_tensor_to_host(const ddn_tensor *t, ddn_dtype dt, void *host)
{
    ddn_ctx *ctx = t->ctx;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_status st = DDN_OK;
    const ddn_tensor *src = t;
    if (t->dtype != dt || !ddn_tensor_is_contiguous(t)) {
        ddn_tensor *tmp = ddn_tensor_new(ctx, dt, t->ndim, t->shape);
        st = tmp ? ddn_k(t)->copy(tmp, t) : ddn_ctx_status(ctx);
        src = tmp;
    }
    if (st == DDN_OK) st = ctx->backend->copy_d2h(ctx, host, ddn_tensor_ptr(src), ddn_tensor_nbytes(src));
    ddn_ctx_rewind(ctx, mark);
    return st;
}

double ddn_tensor_get(const ddn_tensor *t, const int64_t *index)
{
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        DDN_ASSERT(index[i] >= 0 && index[i] < t->shape[i]);
        off += index[i] * t->stride[i];
    }
    size_t es = ddn_dtype_size(t->dtype);
    unsigned char buf[8];
    if (t->ctx->backend->copy_d2h(t->ctx, buf, (unsigned char *)t->data + (size_t)off * es, es) != DDN_OK)
        return NAN;
    host_state h = {buf, t->dtype};
    return gen_host(&h, 0);
}

double ddn_tensor_item(const ddn_tensor *t)
{
    DDN_ASSERT(ddn_tensor_numel(t) == 1);
    int64_t zero[DDN_MAX_DIMS] = {0};
    return ddn_tensor_get(t, zero);
}

/* ---- autograd flags --------------------------------------------------------------------------- */
ddn_status ddn_tensor_set_requires_grad(ddn_tensor *t, bool on)
{
    if (on && !ddn_dtype_is_float(t->dtype))
        return ddn_ctx_set_error(t->ctx, DDN_ERR_DTYPE, "set_requires_grad: %s tensors cannot "
                                 "require a gradient", ddn_dtype_name(t->dtype));
    if (t->node)
        return ddn_ctx_set_error(t->ctx, DDN_ERR_STATE, "set_requires_grad: the tensor is the "
                                 "result of op '%s', not a leaf", t->node->op);
    t->requires_grad = on;
    return DDN_OK;
}

void ddn_tensor_zero_grad(ddn_tensor *t)
{
    if (t && t->grad) ddn_tensor_fill(t->grad, 0.0);
}

/* ---- views without a tape node (for kernels and op front ends) -------------------------------- */
ddn_tensor *ddn_view_raw(ddn_ctx *ctx, const ddn_tensor *src, int ndim, const int64_t *shape,
                         const int64_t *stride, int64_t offset)
{
    ddn_tensor *t = ddn_ctx_scratch(ctx, sizeof *t);
    if (!t) return NULL;
    init_meta(t, ctx, src->dtype, ndim, shape);
    for (int i = 0; i < ndim; i++) t->stride[i] = stride[i];
    t->data = src->data;
    t->offset = offset;
    return t;
}
