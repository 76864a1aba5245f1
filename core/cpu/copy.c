/* ddn — CPU memory-shaped kernels: copy (with dtype conversion), fill, axpy, non-finite scan. */
#include <math.h>
#include <string.h>

#include "cpu_impl.h"

/* out[i] = (TO)x[i] over a unit of the iterator; s0/s1 are the run strides. */
#define COPY_RUN(TO, FROM)                                                                     \
    do {                                                                                       \
        TO *o = (TO *)p[0];                                                                    \
        const FROM *src = (const FROM *)p[1];                                                    \
        if (s0 == 1 && s1 == 1)                                                                \
            for (int64_t i = 0; i < len; i++) o[i] = (TO)src[i];                                 \
        else                                                                                   \
            for (int64_t i = 0; i < len; i++) o[i * s0] = (TO)src[i * s1];                       \
    } while (0)

#define COPY_FROM(TO)                                                                          \
    switch (x->dtype) {                                                                        \
    case DDN_DTYPE_F32: DDN_ITER_FOR(&it, COPY_RUN(TO, float);); break;                        \
    case DDN_DTYPE_F64: DDN_ITER_FOR(&it, COPY_RUN(TO, double);); break;                       \
    default: DDN_ITER_FOR(&it, COPY_RUN(TO, int64_t);); break;                                 \
    }

ddn_status ddn_cpu_copy(ddn_tensor *out, const ddn_tensor *x)
{
    DDN_ASSERT(ddn_tensor_same_shape(out, x));
    if (out->dtype == x->dtype && ddn_tensor_is_contiguous(out) && ddn_tensor_is_contiguous(x)) {
        memmove(ddn_tensor_ptr(out), ddn_tensor_ptr(x), ddn_tensor_nbytes(out));
        return DDN_OK;
    }
    ddn_iter it;
    ddn_iter_init(&it, 2, (const ddn_tensor *[]){out, x});
    switch (out->dtype) {
    case DDN_DTYPE_F32: COPY_FROM(float); break;
    case DDN_DTYPE_F64: COPY_FROM(double); break;
    default: COPY_FROM(int64_t); break;
    }
    return DDN_OK;
}

#define FILL_RUN(T)                                                                            \
    do {                                                                                       \
        T *o = (T *)p[0];                                                                      \
        T v = (T)value;                                                                        \
        for (int64_t i = 0; i < len; i++) o[i * s0] = v;                                       \
    } while (0)

ddn_status ddn_cpu_fill(ddn_tensor *out, double value)
{
    ddn_iter it;
    ddn_iter_init(&it, 1, (const ddn_tensor *[]){out});
    switch (out->dtype) {
    case DDN_DTYPE_F32: DDN_ITER_FOR(&it, FILL_RUN(float);); break;
    case DDN_DTYPE_F64: DDN_ITER_FOR(&it, FILL_RUN(double);); break;
    default: DDN_ITER_FOR(&it, FILL_RUN(int64_t);); break;
    }
    return DDN_OK;
}

#define AXPY_RUN(T)                                                                            \
    do {                                                                                       \
        T *o = (T *)p[0];                                                                      \
        const T *src = (const T *)p[1];                                                          \
        T a = (T)alpha;                                                                        \
        if (s0 == 1 && s1 == 1)                                                                \
            for (int64_t i = 0; i < len; i++) o[i] += a * src[i];                                \
        else                                                                                   \
            for (int64_t i = 0; i < len; i++) o[i * s0] += a * src[i * s1];                      \
    } while (0)

ddn_status ddn_cpu_axpy(ddn_tensor *out, const ddn_tensor *x, double alpha)
{
    DDN_ASSERT(ddn_tensor_same_shape(out, x) && out->dtype == x->dtype);
    ddn_iter it;
    ddn_iter_init(&it, 2, (const ddn_tensor *[]){out, x});
    if (out->dtype == DDN_DTYPE_F32) DDN_ITER_FOR(&it, AXPY_RUN(float););
    else DDN_ITER_FOR(&it, AXPY_RUN(double););
    return DDN_OK;
}

#define NONFINITE_RUN(T)                                                                       \
    do {                                                                                       \
        const T *src = (const T *)p[0];                                                          \
        int bad = 0;                                                                           \
        for (int64_t i = 0; i < len; i++) bad |= !isfinite(src[i * s0]);                         \
        if (bad) {                                                                             \
            DDN_OMP_ATOMIC_WRITE                                                               \
            found = 1;                                                                         \
        }                                                                                      \
    } while (0)

bool ddn_cpu_has_nonfinite(const ddn_tensor *x)
{
    if (!ddn_dtype_is_float(x->dtype)) return false;
    ddn_iter it;
    ddn_iter_init(&it, 1, (const ddn_tensor *[]){x});
    int found = 0;
    if (x->dtype == DDN_DTYPE_F32) DDN_ITER_FOR(&it, NONFINITE_RUN(float););
    else DDN_ITER_FOR(&it, NONFINITE_RUN(double););
    return found != 0;
}
