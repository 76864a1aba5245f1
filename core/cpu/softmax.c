/* ddn — CPU softmax and NLL kernels. PLACEHOLDER until the loss work lands. */
#include "cpu_kernels.h"
#include "ddn_impl.h"

ddn_status ddn_cpu_softmax(ddn_tensor *out, const ddn_tensor *x, int dim, bool log)
{
    (void)x, (void)dim, (void)log;
    return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "softmax not implemented yet");
}
ddn_status ddn_cpu_softmax_backward_acc(ddn_tensor *dx, const ddn_tensor *y, const ddn_tensor *dy,
                                        int dim, bool log)
{
    (void)y, (void)dy, (void)dim, (void)log;
    return ddn_ctx_set_error(dx->ctx, DDN_ERR_UNSUPPORTED, "softmax not implemented yet");
}
ddn_status ddn_cpu_nll(ddn_tensor *out, const ddn_tensor *logp, const ddn_tensor *labels,
                       double scale)
{
    (void)logp, (void)labels, (void)scale;
    return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "nll not implemented yet");
}
ddn_status ddn_cpu_nll_backward_acc(ddn_tensor *dlogp, const ddn_tensor *labels,
                                    const ddn_tensor *dy, double scale)
{
    (void)labels, (void)dy, (void)scale;
    return ddn_ctx_set_error(dlogp->ctx, DDN_ERR_UNSUPPORTED, "nll not implemented yet");
}
