/* ddn — CPU elementwise kernels. PLACEHOLDER until the elementwise work lands. */
#include "cpu_kernels.h"
#include "ddn_impl.h"

ddn_status ddn_cpu_unary(ddn_unary_op op, ddn_tensor *out, const ddn_tensor *x, double p0,
                         double p1)
{
    (void)op, (void)x, (void)p0, (void)p1;
    return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "unary kernels not implemented yet");
}
ddn_status ddn_cpu_unary_backward_acc(ddn_unary_op op, ddn_tensor *dx, const ddn_tensor *x,
                                      const ddn_tensor *y, const ddn_tensor *dy, double p0,
                                      double p1)
{
    (void)op, (void)x, (void)y, (void)dy, (void)p0, (void)p1;
    return ddn_ctx_set_error(dx->ctx, DDN_ERR_UNSUPPORTED, "unary kernels not implemented yet");
}
ddn_status ddn_cpu_binary(ddn_binary_op op, ddn_tensor *out, const ddn_tensor *a,
                          const ddn_tensor *b)
{
    (void)op, (void)a, (void)b;
    return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "binary kernels not implemented yet");
}
ddn_status ddn_cpu_binary_backward(ddn_binary_op op, int which, ddn_tensor *out,
                                   const ddn_tensor *a, const ddn_tensor *b, const ddn_tensor *y,
                                   const ddn_tensor *dy)
{
    (void)op, (void)which, (void)a, (void)b, (void)y, (void)dy;
    return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "binary kernels not implemented yet");
}
