/* ddn bench --table resnet-ied — one training step of ResNet-50 + the IED head (the model and step
 * of bench/pmaf_step.h, `ddn train`'s default: forward, cross-entropy, backward, SGD), float32,
 * on the chosen device, per input side in --sizes at --batch images.
 *
 * Timing: --warmup untimed steps, a synchronise, then --runs steps, each between two events
 * (core/event.h: CUDA events on the context's stream, the host clock after the work on the CPU);
 * the median is reported. The step reads the loss back (as PyTorch's loss.item() in
 * bench/pmaf_torch.py), so each step ends with the device idle. Memory: the step arena's
 * high-water mark over the run and the persistent bytes (parameters, gradients, momentum, the
 * batch). bench/run_cuda.sh sets the RESULT lines against pmaf_torch.py --device cuda.
 */
#include <math.h>
#include <stdlib.h>

#include "bench.h"
#include "event.h"
#include "pmaf_step.h"

#define CMD "bench"

/* One input side: builds the model in a fresh context, times it, prints the row. -1 on success,
 * else the exit code after the one-line error (a failed step also shows in its row). */
static int resnet_size(const bench_cfg *c, int64_t size)
{
    ddn_ctx *ctx = bench_ctx(c);
    if (!ctx) return CLI_EXIT_FAIL;
    int total = (int)(c->warmup + c->runs), k = 0;
    double *t = malloc(sizeof(double) * (size_t)c->runs), loss = NAN;
    ddn_event *e0 = ddn_event_new(ctx), *e1 = ddn_event_new(ctx);
    pmaf_step b = {0};
    ddn_status st = t && e0 && e1 ? DDN_OK : ddn_ctx_status(ctx);
    if (st == DDN_OK && !t) st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "resnet-ied: out of memory");
    if (st == DDN_OK) st = pmaf_step_init(&b, ctx, c->batch, size);
    ddn_ctx_reset_step(ctx);
    size_t base = ddn_ctx_stats(ctx).arena_in_use;
    for (int r = 0; st == DDN_OK && r < total; r++) {
        /* the timed steps start on an idle device, not behind the warm-up's queued work */
        if (r == c->warmup) st = ddn_ctx_sync(ctx);
        if (st == DDN_OK) st = ddn_event_record(e0);
        if (st == DDN_OK) st = pmaf_step_run(&b, &loss);
        if (st == DDN_OK) st = ddn_event_record(e1);
        if (st == DDN_OK && r >= c->warmup) st = ddn_event_elapsed_ms(e0, e1, &t[k++]);
        ddn_ctx_reset_step(ctx);
    }
    ddn_stats s = ddn_ctx_stats(ctx);
    char f[3][32];
    int rc = -1;
    if (st != DDN_OK) { /* the row, and the one line: a table of one failed step is a failure */
        const char *msg = *ddn_ctx_errmsg(ctx) ? ddn_ctx_errmsg(ctx) : "the step failed";
        printf("| %s | %lld | %lldx%lld | error: %s | | | | |\n", bench_device_name(c),
               (long long)c->batch, (long long)size, (long long)size, msg);
        rc = cli_error(CMD, CLI_EXIT_FAIL, "resnet-ied batch %lld, %lldx%lld: %s",
                       (long long)c->batch, (long long)size, (long long)size, msg);
    } else {
        double med = cli_median(t, k), arena = (double)(s.arena_high_water - base) / BENCH_MIB;
        double persistent = (double)s.persistent_high_water / BENCH_MIB;
        printf("| %s | %lld | %lldx%lld | %s | %s | %s | %.4f | %lld |\n", bench_device_name(c),
               (long long)c->batch, (long long)size, (long long)size,
               bench_fmt(f[0], 32, "%.2f", med), bench_fmt(f[1], 32, "%.1f", arena),
               bench_fmt(f[2], 32, "%.1f", persistent), loss, (long long)b.n_params);
        printf("RESULT ddn batch=%lld size=%lld device=%s ms=%.3f arena_mib=%.1f "
               "persistent_mib=%.1f rss_kb=%ld params=%lld\n", (long long)c->batch,
               (long long)size, bench_device_name(c), med, arena, persistent, cli_peak_rss_kb(),
               (long long)b.n_params);
    }
    fflush(stdout);
    pmaf_step_free(&b);
    ddn_event_free(e0);
    ddn_event_free(e1);
    free(t);
    ddn_ctx_free(ctx);
    return rc;
}

int bench_resnet_ied(const bench_cfg *c)
{
    printf("## ResNet-50 + IED head: one training step\n\n");
    cli_bench_header(stdout, c->argc, c->argv, "float32");
    printf("The model of `ddn train` (bench/pmaf_step.h): full-width ResNet-50 features, IED head "
           "m = 16 (power iteration, DDN-E backward), 10 classes; cross-entropy, backward, SGD "
           "(lr 0.05, momentum 0.9) on a fixed random batch, seed 0. Device: %s; step time in ms "
           "(%s): median of %lld steps after %lld warm-up and a synchronise. %s Persistent (MiB): "
           "the most live persistent bytes (parameters, gradients, momentum, the batch).\n\n",
           bench_device_name(c),
           c->device == DDN_DEVICE_CUDA ? "CUDA events on the context's stream" : "wall clock",
           (long long)c->runs, (long long)c->warmup, bench_memory_note(c));
    printf("| device | batch | input | step (ms) | arena (MiB) | persistent (MiB) | last loss | "
           "parameters |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    int rc = -1;
    for (int k = 0; rc < 0 && k < c->nsizes; k++) rc = resnet_size(c, c->sizes[k][0]);
    printf("\n");
    return rc < 0 ? 0 : rc;
}
