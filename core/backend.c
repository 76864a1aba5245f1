/* ddn — backend registry, and the one place that handles a backend's missing kernels.
 *
 * A backend fills the kernels it has; ddn_ctx_new copies its table into the context with each NULL
 * entry replaced by a stub from here, so an op on a backend without that kernel fails with
 * DDN_ERR_UNSUPPORTED and a message naming the kernel and the backend, and no op front end ever
 * tests a kernel pointer. */
#include "ddn_impl.h"

#ifdef DDN_HAVE_CUDA
const ddn_backend *ddn_cuda_backend_get(void); /* cuda/cuda_backend.c */
#endif

const ddn_backend *ddn_backend_get(ddn_device device)
{
    switch (device) {
    case DDN_DEVICE_CPU: return &ddn_cpu_backend;
#ifdef DDN_HAVE_CUDA
    case DDN_DEVICE_CUDA: return ddn_cuda_backend_get();
#endif
    default: return NULL;
    }
}

static ddn_status unsupported(const ddn_tensor *t, const char *kernel)
{
    return ddn_ctx_set_error(t->ctx, DDN_ERR_UNSUPPORTED, "%s is not implemented on %s yet",
                             kernel, t->ctx->backend->name);
}

/* One stub per table entry: NAME is the entry, FIRST the tensor whose context gets the error. */
#define STUB(NAME, FIRST, ...)                                                                 \
    static ddn_status stub_##NAME(__VA_ARGS__) { return unsupported(FIRST, #NAME); }

STUB(copy, out, ddn_tensor *out, const ddn_tensor *x)
STUB(fill, out, ddn_tensor *out, double v)
STUB(axpy, out, ddn_tensor *out, const ddn_tensor *x, double a)
STUB(unary, out, ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0, double p1)
STUB(unary_backward_acc, dx, ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
     const ddn_tensor *y, const ddn_tensor *dy, double p0, double p1)
STUB(binary, out, ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b)
STUB(binary_backward, out, ddn_binary_op op, int which, ddn_tensor *out, const ddn_tensor *a,
     const ddn_tensor *b, const ddn_tensor *y, const ddn_tensor *dy)
STUB(reduce, out, ddn_reduce_op op, ddn_tensor *out, const ddn_tensor *x, uint32_t m)
STUB(argmax, out, ddn_tensor *out, const ddn_tensor *x, int dim)
STUB(matmul, out, ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b, double al, double be)
STUB(softmax, out, ddn_tensor *out, const ddn_tensor *x, int dim, bool lg)
STUB(softmax_backward_acc, dx, ddn_tensor *dx, const ddn_tensor *y, const ddn_tensor *dy, int dim,
     bool lg)
STUB(nll, out, ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels, double s)
STUB(nll_backward_acc, dlogp, ddn_tensor *dlogp, const ddn_tensor *labels, const ddn_tensor *dy,
     double s)
STUB(max_backward_acc, dx, ddn_tensor *dx, const ddn_tensor *x, const ddn_tensor *y,
     const ddn_tensor *dy, uint32_t m)
STUB(conv2d, out, ddn_tensor *out, const ddn_tensor *x, const ddn_tensor *w,
     const ddn_tensor *bias, const int s[2], const int p[2], const int d[2], int g)
STUB(conv2d_backward_data_acc, dx, ddn_tensor *dx, const ddn_tensor *dy, const ddn_tensor *w,
     const int s[2], const int p[2], const int d[2], int g)
STUB(conv2d_backward_filter_acc, dy, ddn_tensor *dw, ddn_tensor *db, const ddn_tensor *dy,
     const ddn_tensor *x, const ddn_tensor *w, const int s[2], const int p[2], const int d[2],
     int g)
STUB(batch_norm_train, y, ddn_tensor *y, ddn_tensor *sm, ddn_tensor *si, ddn_tensor *rm,
     ddn_tensor *rv, const ddn_tensor *x, const ddn_tensor *w, const ddn_tensor *b, double mom,
     double eps)
STUB(batch_norm_eval, y, ddn_tensor *y, const ddn_tensor *x, const ddn_tensor *w,
     const ddn_tensor *b, const ddn_tensor *mean, const ddn_tensor *var, double eps)
STUB(batch_norm_backward_acc, x, ddn_tensor *dx, ddn_tensor *dw, ddn_tensor *db,
     const ddn_tensor *x, const ddn_tensor *dy, const ddn_tensor *w, const ddn_tensor *mean,
     const ddn_tensor *invstd, bool training)
STUB(max_pool2d, y, ddn_tensor *y, ddn_tensor *idx, const ddn_tensor *x,
     const ddn_pool2d_params *p)
STUB(max_pool2d_backward_acc, dx, ddn_tensor *dx, const ddn_tensor *dy, const ddn_tensor *idx)
STUB(avg_pool2d, y, ddn_tensor *y, const ddn_tensor *x, const ddn_pool2d_params *p)
STUB(avg_pool2d_backward_acc, dx, ddn_tensor *dx, const ddn_tensor *dy,
     const ddn_pool2d_params *p)
STUB(adaptive_avg_pool2d, y, ddn_tensor *y, const ddn_tensor *x)
STUB(adaptive_avg_pool2d_backward_acc, dx, ddn_tensor *dx, const ddn_tensor *dy)
STUB(dropout_mask, mask, ddn_tensor *mask, double p, uint64_t seed)
STUB(sgd_update, p, ddn_tensor *p, ddn_tensor *buf, const ddn_tensor *g, double lr, double mom,
     double damp, double wd, bool nesterov, bool first)
STUB(adam_update, p, ddn_tensor *p, ddn_tensor *m, ddn_tensor *v, ddn_tensor *vmax,
     const ddn_tensor *g, double lr, double b1, double b2, double eps, double wd, bool decoupled,
     int64_t step)
STUB(sum_squares, x, const ddn_tensor *x, double *out)
STUB(lu_solve, x, ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b)
STUB(cholesky_solve, x, ddn_tensor *x, const ddn_tensor *a, const ddn_tensor *b)
STUB(eigh, w, ddn_tensor *w, ddn_tensor *v, const ddn_tensor *a)
STUB(qr, q, ddn_tensor *q, const ddn_tensor *a)
STUB(ied_power, y, ddn_tensor *y, const ddn_tensor *a, const ddn_tensor *rnd,
     const ddn_tensor *ref, const ddn_tensor *gstart, const ddn_ied_power_params *p,
     ddn_ied_info *info, ddn_ied_power_err *err)
STUB(less_iterate, y, ddn_tensor *y, const ddn_tensor *A, const ddn_tensor *b,
     const ddn_tensor *uc, const struct ddn_less_opts *o, struct ddn_less_item *item)
STUB(less_vjp_e, A, ddn_tensor *dA, ddn_tensor *db, const ddn_tensor *A, const ddn_tensor *b,
     const ddn_tensor *y, const ddn_tensor *v, const ddn_tensor *nu, struct ddn_less_item *item)
STUB(ied_vjp_e, A, ddn_tensor *dA, const ddn_tensor *A, const ddn_tensor *y, const ddn_tensor *v,
     bool ift, const double *z, ddn_ied_vjp_item *items)

/* A missing non-finite scan must not read as "all finite" silently: it records the error (which
 * the caller's next status check reports) and answers false. */
static bool stub_has_nonfinite(const ddn_tensor *x)
{
    unsupported(x, "has_nonfinite");
    return false;
}

void ddn_kernels_complete(ddn_kernels *out, const ddn_kernels *k)
{
    *out = *k;
#define FILL(NAME)                                                                             \
    if (!out->NAME) out->NAME = stub_##NAME;
    FILL(copy) FILL(fill) FILL(axpy) FILL(has_nonfinite) FILL(unary) FILL(unary_backward_acc)
    FILL(binary) FILL(binary_backward) FILL(reduce) FILL(argmax) FILL(matmul) FILL(softmax)
    FILL(softmax_backward_acc) FILL(nll) FILL(nll_backward_acc) FILL(max_backward_acc)
    FILL(conv2d) FILL(conv2d_backward_data_acc) FILL(conv2d_backward_filter_acc)
    FILL(batch_norm_train) FILL(batch_norm_eval) FILL(batch_norm_backward_acc) FILL(max_pool2d)
    FILL(max_pool2d_backward_acc) FILL(avg_pool2d) FILL(avg_pool2d_backward_acc)
    FILL(adaptive_avg_pool2d) FILL(adaptive_avg_pool2d_backward_acc) FILL(dropout_mask)
    FILL(sgd_update) FILL(adam_update) FILL(sum_squares) FILL(lu_solve) FILL(cholesky_solve)
    FILL(eigh) FILL(qr) FILL(ied_power)
    FILL(less_iterate) FILL(less_vjp_e)
    FILL(ied_vjp_e)
#undef FILL
}

/* A new kernel entry needs a stub and a FILL line above; this fails to compile until it has. */
_Static_assert(sizeof(ddn_kernels) == 40 * sizeof(ddn_status (*)(ddn_tensor *)),
               "ddn_kernels changed: update the stubs in core/backend.c");
