/* ddn — learning-rate schedules as pure functions of the step: step decay, cosine annealing and a
 * linear warm-up that composes with either (sequentially or chained), matching torch.optim's
 * StepLR, CosineAnnealingLR, LinearLR, SequentialLR and ChainedScheduler (see optim.h).
 *
 * Closed forms rather than torch's recursive updates: a rate never depends on how many times it
 * was asked for, so resuming from a checkpoint at step t needs only t. The closed forms agree with
 * torch's recursive values to rounding (tests/test_lr_schedule.c, against torch's numbers).
 */
#include <math.h>

#include "ddn_impl.h"
#include "optim.h"

static const double PI = 3.14159265358979323846;

/* The first rule s breaks, or NULL. */
static const char *schedule_problem(const ddn_lr_schedule *s)
{
    if (!s) return "the schedule is NULL";
    if (!(s->base_lr >= 0) || !isfinite(s->base_lr)) return "base_lr must be finite and >= 0";
    switch (s->decay) {
    case DDN_LR_CONSTANT: break;
    case DDN_LR_STEP:
        if (s->step_size < 1) return "step decay needs step_size >= 1";
        if (!(s->gamma > 0) || !isfinite(s->gamma)) return "step decay needs a finite gamma > 0";
        break;
    case DDN_LR_COSINE:
        if (s->t_max < 1) return "cosine decay needs t_max >= 1";
        if (!(s->eta_min >= 0) || !isfinite(s->eta_min))
            return "cosine decay needs a finite eta_min >= 0";
        break;
    default: return "decay is not a ddn_lr_decay value";
    }
    if (s->warmup_steps < 0) return "warmup_steps must be >= 0";
    if (s->warmup_steps > 0 && !(s->warmup_start_factor > 0 && s->warmup_start_factor <= 1))
        return "warmup_start_factor must be in (0, 1] (torch LinearLR's rule)";
    return NULL;
}

ddn_status ddn_lr_schedule_check(ddn_ctx *ctx, const ddn_lr_schedule *s)
{
    const char *why = schedule_problem(s);
    if (!why) return DDN_OK;
    if (!s) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "lr_schedule_check: %s", why);
    return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "lr_schedule_check: %s (base_lr %g, decay %d, "
                             "step_size %lld, gamma %g, t_max %lld, eta_min %g, warmup_steps %lld, "
                             "warmup_start_factor %g)", why, s->base_lr, (int)s->decay,
                             (long long)s->step_size, s->gamma, (long long)s->t_max, s->eta_min,
                             (long long)s->warmup_steps, s->warmup_start_factor);
}

/* torch LinearLR's closed form with end_factor 1: start + (1 - start) * min(t, W) / W. */
static double warmup_factor(const ddn_lr_schedule *s, int64_t t)
{
    if (s->warmup_steps == 0 || t >= s->warmup_steps) return 1.0;
    return s->warmup_start_factor +
           (1.0 - s->warmup_start_factor) * (double)t / (double)s->warmup_steps;
}

/* The decayed rate t steps into the decay. */
static double decayed(const ddn_lr_schedule *s, int64_t t)
{
    switch (s->decay) {
    case DDN_LR_STEP: return s->base_lr * pow(s->gamma, (double)(t / s->step_size));
    case DDN_LR_COSINE:
        return s->eta_min + (s->base_lr - s->eta_min) *
                                (1 + cos(PI * (double)t / (double)s->t_max)) / 2;
    default: return s->base_lr;
    }
}

double ddn_lr_at(const ddn_lr_schedule *s, int64_t t)
{
    if (schedule_problem(s) || t < 0) return NAN;
    if (s->warmup_chained) return warmup_factor(s, t) * decayed(s, t);
    if (t < s->warmup_steps) return s->base_lr * warmup_factor(s, t);
    return decayed(s, t - s->warmup_steps);
}
