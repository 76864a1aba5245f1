/* ddn — optimizers, learning-rate schedules and gradient clipping over persistent parameters.
 *
 * SGD, Adam and AdamW follow torch.optim exactly (PyTorch 1.13, the single-tensor path):
 * SGD: g <- grad + weight_decay * p; buf <- g on the first step, else momentum * buf +
 * (1 - dampening) * g; g <- g + momentum * buf (Nesterov) or buf; p <- p - lr * g.
 * Adam: g <- grad + weight_decay * p; m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g^2;
 * (amsgrad: vmax <- max(vmax, v), used for v below); p <- p - lr / (1 - beta1^t) * m /
 * (sqrt(v) / sqrt(1 - beta2^t) + eps), t the parameter's own step count.
 * AdamW: as Adam but without the gradient term; instead p <- p * (1 - lr * weight_decay) first.
 * State (momentum buffers, moments, step counts) is persistent, in one block on the parameters'
 * device, and can be saved and restored. Tests: tests/test_optim.c, tests/test_adam.c.
 */
#ifndef DDN_OPTIM_H
#define DDN_OPTIM_H

#include "params.h"
#include "safetensors.h"
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

typedef struct ddn_adam_opts {
    double lr;           /* torch default 1e-3 */
    double beta1, beta2; /* (0.9, 0.999); each in [0, 1) */
    double eps;          /* 1e-8, added to sqrt(v) / sqrt(1 - beta2^t), outside the root */
    double weight_decay; /* Adam: L2 term added to the gradient (default 0); AdamW: decoupled
                          * decay p *= 1 - lr * weight_decay (default 1e-2) */
    bool amsgrad;
} ddn_adam_opts;

/* torch.optim.Adam's and AdamW's defaults; start from these rather than from {0}, where a zero
 * beta or eps would be taken literally. */
ddn_adam_opts ddn_adam_defaults(void);
ddn_adam_opts ddn_adamw_defaults(void);

/* params: persistent float tensors with requires_grad, each at most once. The array is copied;
 * the optimizer's state is keyed by index ("state.3.exp_avg" in a saved file). */
ddn_optim *ddn_sgd_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params, ddn_sgd_opts opts);
ddn_optim *ddn_adam_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params, ddn_adam_opts opts);
ddn_optim *ddn_adamw_new(ddn_ctx *ctx, int n_params, ddn_tensor *const *params,
                         ddn_adam_opts opts);
/* Over every parameter (not buffer) of a finalised registry, in declaration order, with state
 * keyed by name ("state.conv1.weight.exp_avg"). The registry must outlive the optimizer. When
 * the parameters, their gradients and the state are each one contiguous run of one dtype (always
 * so for a registry of one dtype), a step is a single fused kernel call over all of them. */
ddn_optim *ddn_sgd_new_params(ddn_params *p, ddn_sgd_opts opts);
ddn_optim *ddn_adam_new_params(ddn_params *p, ddn_adam_opts opts);
ddn_optim *ddn_adamw_new_params(ddn_params *p, ddn_adam_opts opts);

/* Applies one update from the parameters' current gradients (a parameter without a gradient is
 * skipped and its step count stays, as in PyTorch). Refuses while the context holds an error,
 * so a failed forward or backward never applies partial gradients. */
ddn_status ddn_optim_step(ddn_optim *opt);
void ddn_optim_zero_grad(ddn_optim *opt); /* a registry's gradients: one fill */
void ddn_optim_set_lr(ddn_optim *opt, double lr);
double ddn_optim_lr(const ddn_optim *opt);
/* Updates applied to parameter i so far (torch's state['step']); -1 when i is out of range. */
int64_t ddn_optim_param_steps(const ddn_optim *opt, int i);
void ddn_optim_free(ddn_optim *opt); /* NULL is a no-op */

/* ---- state files (layers/optim_state.c) ------------------------------------------------------ */
/* Saves the state atomically as safetensors: "state.<key>.<slot>" for each parameter (key: its
 * registry name or its index; slot: momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq as
 * torch names them) in the parameter's dtype, "state.<key>.step" (int64, 0-dim), and metadata
 * naming the optimizer type, the parameter count and the learning rate. */
ddn_status ddn_optim_save(const ddn_optim *opt, const char *path);
/* Restores the state and the learning rate (as torch's load_state_dict restores param_groups'
 * lr; the other hyperparameters stay as constructed). A file from another optimizer type, an
 * amsgrad/momentum setting that needs other slots, another parameter count, or other keys,
 * shapes or dtypes is an error naming what differs, and nothing is changed. Continuing after
 * save -> load gives bit-identical parameters to an uninterrupted run. */
ddn_status ddn_optim_load(ddn_optim *opt, const char *path);
/* The same from an open file whose entries and metadata keys carry prefix (e.g. "optim." in a
 * checkpoint that also holds a model; entries without the prefix are ignored). path only names
 * the file in messages (NULL: "(file)"). Nothing is written to disk. */
ddn_status ddn_optim_load_from(ddn_optim *opt, const ddn_st_file *f, const char *prefix,
                               const char *path);

/* ---- learning-rate schedules (layers/lr_schedule.c) ------------------------------------------ */
typedef enum ddn_lr_decay {
    DDN_LR_CONSTANT = 0,
    DDN_LR_STEP,   /* torch StepLR: base_lr * gamma^floor(t / step_size) */
    DDN_LR_COSINE, /* torch CosineAnnealingLR's closed form: eta_min + (base_lr - eta_min) *
                    * (1 + cos(pi t / t_max)) / 2 (periodic beyond t_max, as torch) */
} ddn_lr_decay;

/* A schedule is plain data; the training loop asks it for the rate of each step:
 *
 *     for (int64_t t = 0; t < steps; t++) {
 *         ddn_optim_set_lr(opt, ddn_lr_at(&sched, t));   // t = optimizer steps taken so far
 *         ... forward, backward ...; ddn_optim_step(opt);
 *     }
 *
 * ddn_lr_at(s, t) equals torch's lr after t calls of scheduler.step(). Linear warm-up (torch
 * LinearLR with end_factor 1) scales the rate from warmup_start_factor at t = 0 up to 1 at
 * t = warmup_steps, and composes with the decay in one of two ways:
 * - sequential (default; torch SequentialLR([LinearLR, decay], milestones=[warmup_steps]), as
 *   torchvision's reference scripts): warm-up, then the decay runs with t - warmup_steps;
 * - chained (warmup_chained; torch ChainedScheduler([LinearLR, decay])): both run from t = 0
 *   and their factors multiply. torch's recursive cosine makes the product exact only for
 *   eta_min = 0; ddn always multiplies base_lr * warm-up factor * closed-form decay / base_lr. */
typedef struct ddn_lr_schedule {
    double base_lr;
    ddn_lr_decay decay;
    int64_t step_size; /* DDN_LR_STEP: >= 1 */
    double gamma;      /* DDN_LR_STEP: > 0 */
    int64_t t_max;     /* DDN_LR_COSINE: >= 1 */
    double eta_min;    /* DDN_LR_COSINE: >= 0 */
    int64_t warmup_steps;       /* 0: no warm-up */
    double warmup_start_factor; /* in (0, 1] when warmup_steps > 0 */
    bool warmup_chained;
} ddn_lr_schedule;

/* Checks the fields above; DDN_ERR_ARG naming the first bad one. */
ddn_status ddn_lr_schedule_check(ddn_ctx *ctx, const ddn_lr_schedule *s);
/* The rate for step t >= 0; NAN for an invalid schedule or a negative t (ddn_optim_set_lr then
 * refuses it with a message). */
double ddn_lr_at(const ddn_lr_schedule *s, int64_t t);

/* ---- gradient clipping (layers/clip_grad.c) -------------------------------------------------- */
/* torch.nn.utils.clip_grad_norm_ with the 2-norm: total = the norm of all gradients together
 * (tensors without a gradient are ignored); each gradient is scaled by
 * min(1, max_norm / (total + 1e-6)). Returns total (0 when no tensor has a gradient). A
 * non-finite total leaves the gradients unscaled and sets DDN_ERR_NUMERIC, so the next
 * ddn_optim_step refuses to apply them (torch's error_if_nonfinite=True); other errors return
 * NAN with the context's message. */
double ddn_clip_grad_norm(ddn_ctx *ctx, int n, ddn_tensor *const *tensors, double max_norm);
double ddn_params_clip_grad_norm(ddn_params *p, double max_norm); /* every parameter */

#ifdef __cplusplus
}
#endif
#endif
