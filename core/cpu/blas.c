/* ddn — CPU matmul through OpenBLAS. PLACEHOLDER until the matmul work lands. */
#include "cpu_kernels.h"
#include "ddn_impl.h"

ddn_status ddn_cpu_matmul(ddn_tensor *out, const ddn_tensor *a, const ddn_tensor *b, double alpha,
                          double beta)
{
    (void)a, (void)b, (void)alpha, (void)beta;
    return ddn_ctx_set_error(out->ctx, DDN_ERR_UNSUPPORTED, "matmul not implemented yet");
}
