/* ddn — backend registry. The one place that knows which backends this build has. */
#include "ddn_impl.h"

#ifdef DDN_HAVE_CUDA
const ddn_backend *ddn_cuda_backend_get(void); /* cuda/cuda_backend.c; NULL without a device */
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
