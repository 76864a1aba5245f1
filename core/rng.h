/* ddn — a small explicit, seeded random number generator (xoshiro256**, SplitMix64 seeding).
 * Every random tensor takes an RNG, so runs are reproducible from their seed. */
#ifndef DDN_RNG_H
#define DDN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddn_rng {
    uint64_t s[4];
    double spare_normal; /* Box-Muller makes two normals; the second is kept here */
    int has_spare;
} ddn_rng;

void ddn_rng_seed(ddn_rng *rng, uint64_t seed);
uint64_t ddn_rng_u64(ddn_rng *rng);
double ddn_rng_uniform(ddn_rng *rng);          /* [0, 1), 53 random bits */
double ddn_rng_normal(ddn_rng *rng);           /* N(0, 1) */
uint64_t ddn_rng_below(ddn_rng *rng, uint64_t n); /* uniform in [0, n), n > 0, unbiased */

#ifdef __cplusplus
}
#endif
#endif
