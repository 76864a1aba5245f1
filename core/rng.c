/* ddn — xoshiro256** seeded through SplitMix64; Box-Muller normals. */
#include <math.h>

#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ddn_rng_seed(ddn_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
    rng->has_spare = 0;
    rng->spare_normal = 0.0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ddn_rng_u64(ddn_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ddn_rng_uniform(ddn_rng *rng) { return (double)(ddn_rng_u64(rng) >> 11) * 0x1.0p-53; }

double ddn_rng_normal(ddn_rng *rng)
{
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare_normal;
    }
    double u1 = ddn_rng_uniform(rng), u2 = ddn_rng_uniform(rng);
    double r = sqrt(-2.0 * log(1.0 - u1)); /* 1 - u1 is in (0, 1]: log never sees 0 */
    double theta = 6.283185307179586 * u2;
    rng->spare_normal = r * sin(theta);
    rng->has_spare = 1;
    return r * cos(theta);
}

uint64_t ddn_rng_below(ddn_rng *rng, uint64_t n)
{
    /* Rejection sampling: discard the top partial range so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = ddn_rng_u64(rng);
    while (x >= limit);
    return x % n;
}
