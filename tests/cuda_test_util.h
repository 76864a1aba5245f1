/* ddn — the device set-up shared by the CUDA-vs-CPU tests (test_cuda*.c, CTest label `cuda`).
 *
 * Each test file keeps a CPU context and a device context. Without a device the device tests skip
 * with one line ("skipped: ...") and pass. DDN_TEST_CUDA_SELFCHECK=1 puts a second CPU context
 * where the device would be, so that the comparisons themselves (inputs, calls, tolerances) run
 * and pass on a machine without a GPU; that context also takes the layers' device algorithms
 * (ddn_ctx.device_algorithms: the declarative block kernels' CPU instances), so those are held
 * to the CPU paths here. It checks the tests and the device algorithms, not the CUDA backend's
 * kernels (ctest runs each file a second time that way, as <name>_selfcheck). Static: one copy
 * per test file.
 */
#ifndef DDN_CUDA_TEST_UTIL_H
#define DDN_CUDA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "ddn_impl.h"
#include "test_util.h"

static ddn_ctx *cpu, *gpu;
static const char *no_device_why;
static bool selfcheck;

static int cuda_group_setup(void **state)
{
    (void)state;
    cpu = test_ctx();
    const char *env = getenv("DDN_TEST_CUDA_SELFCHECK");
    selfcheck = env && env[0] == '1';
    if (selfcheck) {
        gpu = test_ctx();
        gpu->device_algorithms = true; /* its layers run their device algorithms on the CPU */
        printf("self-check: the device tests run against a second CPU context taking the "
               "device algorithms\n");
        return 0;
    }
    gpu = ddn_ctx_new(DDN_DEVICE_CUDA, &no_device_why);
    if (!gpu) printf("skipped: device tests (%s)\n", no_device_why ? no_device_why : "?");
    return 0;
}

static int cuda_group_teardown(void **state)
{
    (void)state;
    ddn_ctx_free(gpu);
    ddn_ctx_free(cpu);
    return 0;
}

#define NEED_DEVICE()                                                                          \
    do {                                                                                       \
        if (!gpu) skip();                                                                      \
        ddn_ctx_reset_step(cpu);                                                               \
        ddn_ctx_reset_step(gpu);                                                               \
    } while (0)

/* Seeded uniform values in the CPU context (on_gpu gives the device the same values). */
static inline ddn_tensor *cpu_rand(ddn_dtype dt, int ndim, const int64_t *shape, double lo,
                                   double hi, uint64_t seed)
{
    ddn_rng rng;
    ddn_rng_seed(&rng, seed);
    ddn_tensor *t = ddn_rand_uniform(cpu, &rng, dt, ndim, shape, lo, hi);
    assert_non_null(t);
    return t;
}

/* t (any context) copied into the device context. */
static inline ddn_tensor *on_gpu(const ddn_tensor *t)
{
    ddn_tensor *g = ddn_tensor_to(gpu, t, ddn_ctx_device(gpu));
    if (!g) fail_msg("tensor_to device: %s", ddn_ctx_errmsg(gpu));
    return g;
}

#endif
