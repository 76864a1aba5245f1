/* ddn — optimizers over persistent parameter tensors.
 *
 * SGD follows torch.optim.SGD exactly: g <- grad + weight_decay * p; buf <- g on the first step,
 * else momentum * buf + (1 - dampening) * g; g <- g + momentum * buf (Nesterov) or buf;
 * p <- p - lr * g. Optimizer state is persistent and lives on the parameters' device.
 */
#ifndef DDN_OPTIM_H
#define DDN_OPTIM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddn_optim ddn_optim;

typedef struct ddn_sgd_opts {
    double lr;
    double momentum;
    double dampening;
    double weight_decay;
    bool nesterov;
} ddn_sgd_opts;

/* params: persistent float tensors with requires_grad. The array is copied. */
ddn_optim *ddn_sgd_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params, ddn_sgd_opts opts);
/* Applies one update from the parameters' current gradients (a parameter without a gradient is
 * skipped, as in PyTorch). */
ddn_status ddn_optim_step(ddn_optim *opt);
void ddn_optim_zero_grad(ddn_optim *opt);
void ddn_optim_set_lr(ddn_optim *opt, double lr);
double ddn_optim_lr(const ddn_optim *opt);
void ddn_optim_free(ddn_optim *opt); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
