/* ddn — the CPU strided iterator (see cpu_impl.h). */
#include "cpu_impl.h"

void ddn_iter_init(ddn_iter *it, int n_ops, const ddn_tensor *const *ops)
{
    DDN_ASSERT(n_ops >= 1 && n_ops <= DDN_CPU_MAX_OPERANDS);
    const ddn_tensor *t0 = ops[0];
    it->n_ops = n_ops;
    int nd = 0;
    /* Drop size-1 dims, then merge dim d into the previous kept one when every operand steps
     * over it contiguously (stride[prev] == stride[d] * shape[d]). */
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int k = 0; k < n_ops && merge; k++)
            merge = it->stride[k][nd - 1] == ops[k]->stride[d] * t0->shape[d];
        if (merge) {
            it->shape[nd - 1] *= t0->shape[d];
            for (int k = 0; k < n_ops; k++) it->stride[k][nd - 1] = ops[k]->stride[d];
        } else {
            it->shape[nd] = t0->shape[d];
            for (int k = 0; k < n_ops; k++) it->stride[k][nd] = ops[k]->stride[d];
            nd++;
        }
    }
    if (nd == 0) { /* a single element */
        it->shape[0] = 1;
        for (int k = 0; k < n_ops; k++) it->stride[k][0] = 1;
        nd = 1;
    }
    it->ndim = nd;
    for (int k = 0; k < n_ops; k++) {
        it->esize[k] = ddn_dtype_size(ops[k]->dtype);
        it->base[k] = (unsigned char *)ddn_tensor_ptr(ops[k]);
    }
    it->numel = ddn_tensor_numel(t0);
    it->inner = it->shape[nd - 1];
    it->rows = it->inner ? it->numel / it->inner : 0;
    it->splits = (it->inner + DDN_CPU_CHUNK - 1) / DDN_CPU_CHUNK;
    if (it->splits == 0) it->splits = 1;
    it->units = it->numel == 0 ? 0 : it->rows * it->splits;
}
