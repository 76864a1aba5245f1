/* ddn — safetensors internals shared by the reader (safetensors.c) and the writer
 * (safetensors_write.c): the stored-dtype table, IEEE half and bfloat16 conversions, and
 * little-endian loads and stores that work at any alignment and on any host byte order.
 */
#ifndef DDN_SAFETENSORS_IMPL_H
#define DDN_SAFETENSORS_IMPL_H

#include <stdint.h>
#include <string.h>

#include "safetensors.h"

typedef struct ddn_st_dtype_info {
    const char *name; /* as written in the header */
    size_t size;      /* bytes per element */
    ddn_dtype natural; /* the ddn dtype it loads as */
} ddn_st_dtype_info;

/* Indexed by ddn_st_dtype; entry DDN_ST_AUTO is a placeholder. */
extern const ddn_st_dtype_info ddn_st_dtypes[DDN_ST_DTYPE_COUNT];

/* Exact: every half and bfloat16 value (subnormals, infinities, NaN) is a float. */
float ddn_half_to_float(uint16_t h);
float ddn_bf16_to_float(uint16_t h);
/* Round to nearest, ties to even, straight from double (no double rounding through float);
 * overflow gives infinity, NaN stays a quiet NaN with its sign. */
uint16_t ddn_half_from_double(double x);
uint16_t ddn_bf16_from_double(double x);

static inline uint64_t ddn_le_load(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

static inline void ddn_le_store(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++, v >>= 8) p[i] = (unsigned char)(v & 0xFF);
}

static inline float ddn_bits_to_f32(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline double ddn_bits_to_f64(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

#endif
