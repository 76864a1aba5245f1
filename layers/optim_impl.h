/* ddn — the optimizer's internals, shared by layers/optim.c (construction and steps) and
 * layers/optim_state.c (state files). Not installed.
 *
 * State layout: slot s of parameter i is state[i * n_slots + s], a persistent view into one
 * block. The block is slot-major (all exp_avg, then all exp_avg_sq, ...) and within a slot the
 * parameters follow each other at offsets aligned to their element size, so for parameters of one
 * dtype each slot is one contiguous run mirroring the parameters.
 */
#ifndef DDN_OPTIM_IMPL_H
#define DDN_OPTIM_IMPL_H

#include "optim.h"

typedef enum ddn_optim_kind { DDN_OPTIM_SGD, DDN_OPTIM_ADAM, DDN_OPTIM_ADAMW } ddn_optim_kind;

#define DDN_OPTIM_MAX_SLOTS 3

struct ddn_optim {
    ddn_ctx *ctx;
    ddn_optim_kind kind;
    int n;
    ddn_tensor **params;  /* (n) */
    const char **names;   /* (n) registry names (the registry owns them); NULL: index keys */
    ddn_params *registry; /* the registry it was built from, or NULL */
    int64_t *steps;       /* (n) updates applied to each parameter */
    int n_slots;          /* state tensors per parameter */
    const char *slot_names[DDN_OPTIM_MAX_SLOTS];
    ddn_tensor **state;   /* (n * n_slots) views into state_block */
    void *state_block;
    size_t state_bytes;
    double lr;
    ddn_sgd_opts sgd;
    ddn_adam_opts adam;
};

const char *ddn_optim_kind_name(ddn_optim_kind k); /* "sgd", "adam", "adamw" */

#endif
