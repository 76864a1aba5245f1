/* ddn — reverse-mode autograd on an eager tape (Wengert list).
 *
 * Each differentiable op computes its result and, when recording is on and some input requires a
 * gradient, appends one node to the context's tape: its inputs, its output, its backward function
 * and the values it saved. ddn_backward walks the tape in reverse; eager recording order is already
 * topological, so no sort is needed. Backward functions always ACCUMULATE (+=) into input
 * gradients, so shared inputs and reused parameters are correct.
 *
 * Custom ops (and declarative nodes) record themselves with ddn_tape_record and write a backward
 * function that uses ddn_grad_accumulate.
 */
#ifndef DDN_AUTOGRAD_H
#define DDN_AUTOGRAD_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddn_node ddn_node;

/* Reads node->out->grad and accumulates into the gradients of node->in[i] that require grad. */
typedef ddn_status (*ddn_backward_fn)(ddn_ctx *ctx, ddn_node *node);

struct ddn_node {
    const char *op;           /* op name, for messages */
    ddn_backward_fn backward;
    int n_in;
    ddn_tensor **in;          /* (n_in) inputs, in the op's argument order */
    ddn_tensor *out;
    void *saved;              /* op-specific saved state (typed by the op), in the step arena */
};

/* Records a node for out = op(in...) when recording is on and some input requires grad, then
 * sets out->requires_grad and out->node. The node's `saved` gets a copy of saved_bytes from
 * `saved` (zeroed when saved is NULL), in the step arena. Returns DDN_OK when recorded or when
 * nothing needed recording; an error (with its message set) when the node could not be made. */
ddn_status ddn_tape_record(ddn_ctx *ctx, const char *op, ddn_backward_fn backward, ddn_tensor *out,
                           int n_in, ddn_tensor *const *in, const void *saved, size_t saved_bytes);

/* Backpropagates from a one-element loss (seed 1). Gradients of intermediate tensors are reset
 * first, so calling backward again after a new forward is safe; leaf gradients accumulate.
 * As in PyTorch, only leaves keep a gradient: an intermediate's (a tensor made by a recorded op)
 * is released once its node's backward has run (its grad is NULL afterwards) and its memory is
 * reused for later gradients of the same dtype and size, so the pass holds a few gradients at a
 * time rather than one per activation.
 * Refuses to run while an error is pending on the context: the tape may then be incomplete. */
ddn_status ddn_backward(ddn_ctx *ctx, ddn_tensor *loss);
/* Backpropagates from any tensor y with the upstream gradient dy (same shape as y). */
ddn_status ddn_backward_with_grad(ddn_ctx *ctx, ddn_tensor *y, const ddn_tensor *dy);

/* t->grad, created zero-filled with t's shape, dtype and lifetime on first use. NULL (no error)
 * when t does not require grad. */
ddn_tensor *ddn_grad_buffer(ddn_ctx *ctx, ddn_tensor *t);
/* t->grad += alpha * g. g may have the broadcast shape of an op's output (more leading dims, or
 * size > 1 where t has 1): it is summed back to t's shape first. No-op when t needs no grad. */
ddn_status ddn_grad_accumulate(ddn_ctx *ctx, ddn_tensor *t, const ddn_tensor *g, double alpha);

/* Recording switch (no-grad scope). Returns the previous setting, so scopes nest:
 *     bool prev = ddn_set_grad_enabled(ctx, false); ...; ddn_set_grad_enabled(ctx, prev); */
bool ddn_set_grad_enabled(ddn_ctx *ctx, bool on);
bool ddn_grad_enabled(const ddn_ctx *ctx);
int64_t ddn_tape_len(const ddn_ctx *ctx);

/* ---- gradient check -------------------------------------------------------------------------- */
/* fn builds the output from the inputs with ddn ops; it must be deterministic. */
typedef ddn_tensor *(*ddn_gradcheck_fn)(ddn_ctx *ctx, ddn_tensor *const *inputs, void *user);

typedef struct ddn_gradcheck_opts {
    double eps;                 /* central-difference step; default 1e-6 */
    double atol, rtol;          /* pass when |analytic - numeric| <= atol + rtol*|numeric|;
                                   defaults 1e-6 and 1e-4 */
    int64_t max_entries;        /* per input: all entries up to this many, else a seeded sample
                                   of this many; default 64 */
    uint64_t seed;              /* projection and sampling seed; default 1 */
    bool four_point;            /* 4-point stencil for ops with large third derivatives */
} ddn_gradcheck_opts;

typedef struct ddn_gradcheck_result {
    double max_abs_err, max_rel_err; /* worst over all checked entries */
    int worst_input;                 /* index of the input holding the worst entry */
    int64_t worst_index;             /* its flat (row-major) index */
    double worst_analytic, worst_numeric;
    int64_t checked;                 /* entries compared */
    bool passed;
} ddn_gradcheck_result;

/* Checks the tape's gradient of L = sum(r * fn(inputs)) (r a fixed random projection) against
 * float64 central differences, for every input with requires_grad. Inputs must be float64,
 * contiguous and on the CPU. Returns DDN_OK when the check ran (see res->passed), or an error
 * status when fn failed or the inputs are unsuitable. opts may be NULL. */
ddn_status ddn_gradcheck(ddn_ctx *ctx, ddn_gradcheck_fn fn, void *user, int n_inputs,
                         ddn_tensor *const *inputs, const ddn_gradcheck_opts *opts,
                         ddn_gradcheck_result *res);

#ifdef __cplusplus
}
#endif
#endif
