/* ddn — a model's parameters and buffers: named, long-lived, in one contiguous block.
 *
 * Declare every tensor by its dotted name (torchvision's state_dict names: "conv1.weight",
 * "layer3.5.bn2.running_var", "fc.bias"), then finalise: one block holds all data, one block all
 * gradients (so zeroing gradients is one memset and an optimizer can run one flat loop), and
 * each tensor is a persistent view into them. Buffers (running statistics) have no gradient.
 * Loading and saving go by name through safetensors, checking every shape.
 * Tests: tests/test_params.c.
 */
#ifndef DDN_PARAMS_H
#define DDN_PARAMS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddn_params ddn_params;

ddn_params *ddn_params_new(ddn_ctx *ctx);
void ddn_params_free(ddn_params *p); /* frees the blocks and every tensor; NULL is a no-op */

/* Declares a parameter (requires grad; float32 or float64) or a buffer (any dtype). Names must be
 * unique, non-empty and at most 255 characters; declaring after finalize is DDN_ERR_STATE.
 * Returns the tensor, whose memory exists only after ddn_params_finalize; NULL on error. */
ddn_tensor *ddn_params_add(ddn_params *p, const char *name, ddn_dtype dt, int ndim,
                           const int64_t *shape, bool is_buffer);
/* Allocates the data and gradient blocks (zeroed, through the context's backend, counted as
 * persistent memory) and points every tensor into them: parameters first in declaration order,
 * then buffers, each aligned to its element size, so parameters of one dtype are one gap-free
 * run. Each parameter's grad is a view at the same offset of the gradient block. */
ddn_status ddn_params_finalize(ddn_params *p);

int64_t ddn_params_count(const ddn_params *p);
ddn_tensor *ddn_params_at(const ddn_params *p, int64_t i);
const char *ddn_params_name(const ddn_params *p, int64_t i);
bool ddn_params_is_buffer(const ddn_params *p, int64_t i);
ddn_tensor *ddn_params_find(const ddn_params *p, const char *name); /* NULL when absent */
int64_t ddn_params_numel(const ddn_params *p, bool include_buffers);
void ddn_params_zero_grad(ddn_params *p); /* one fill of the gradient block */

typedef struct ddn_params_load_opts {
    bool strict;             /* every declared name must be in the file and vice versa */
    const char *skip_prefix; /* names starting with this are neither loaded nor required
                              * (e.g. "fc." to load a backbone into a features-only model) */
} ddn_params_load_opts;

/* Loads by name from a safetensors file, converting dtypes, checking shapes. A mismatch is
 * DDN_ERR_SHAPE with one message listing the missing, unexpected, wrongly shaped (and float-into-
 * int64) names, long lists cut with "... and N more". Everything is validated before anything is
 * written, so a failed load leaves every tensor as it was (short of running out of memory
 * while converting a dtype). Non-strict ignores missing and
 * unexpected names but not shapes (as torch's load_state_dict). */
ddn_status ddn_params_load(ddn_params *p, const char *path, ddn_params_load_opts opts);
/* Saves every parameter and buffer by name, atomically. */
ddn_status ddn_params_save(const ddn_params *p, const char *path);

/* ---- initialisation (layers/init.c), as torchvision does it, from an explicit RNG (NULL: the
 * context's) --------------------------------------------------------------------------------- */
/* Kaiming normal, fan-out, ReLU gain: N(0, 2 / fan_out), fan_out = shape[0] * prod(shape[2:]). */
ddn_status ddn_init_kaiming_normal_fan_out(ddn_tensor *w, ddn_rng *rng);
/* nn.Linear / nn.Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming uniform with a =
 * sqrt(5) for the weight gives this bound too). */
ddn_status ddn_init_uniform_fan_in(ddn_tensor *t, int64_t fan_in, ddn_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
