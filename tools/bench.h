/* ddn bench — the configuration shared by the benchmark tables (cmd_bench.c parses it; the tables
 * are cmd_bench_less.c, cmd_bench_ied.c and cmd_bench_resnet.c). Every table prints markdown to
 * stdout and returns the program's exit code; a failure inside one row of a table is printed in
 * that row and the table goes on, while a failure that leaves no table (bad file, out of memory,
 * no device) is the one line on stderr.
 */
#ifndef DDN_TOOLS_BENCH_H
#define DDN_TOOLS_BENCH_H

#include "cli.h"

enum {
    TABLE_LESS_EFFECT,
    TABLE_LESS_BACKWARD,
    TABLE_IED,
    TABLE_IED_VS_TORCH,
    TABLE_RESNET_IED,
    TABLE_COUNT
};
enum { DT_F32 = 0, DT_F64 = 1, DT_BOTH = 2 };
enum { SYM_SYM = 0, SYM_NONSYM = 1, SYM_BOTH = 2 };

typedef struct bench_cfg {
    int table;
    int argc;
    char **argv;             /* for the header: the exact command */
    int64_t samples;         /* less-effect: problems per size */
    int nsizes;
    int64_t sizes[CLI_MAX_LIST][3]; /* less-effect m x n; less-backward B x m x n; ied: m;
                                     * resnet-ied: the input side */
    int dtype;               /* DT_* */
    int symmetry;            /* SYM_* (ied) */
    int64_t seed, runs, warmup, batch, si_k, threads;
    ddn_device device;       /* where the IED and ResNet tables run (the LESS ones: CPU only) */
    bool no_gap_check;       /* IED: opts.check_gap = false (the deflated second-eigenvalue
                              * estimate costs about twice the forward's own iterations) */
    double max_mem_gib;      /* J modes and data larger than this are skipped or refused */
    const char *dump;        /* less-effect: write the problems here */
    const char *scipy;       /* less-effect: read SciPy's solutions from here */
    const char *data;        /* ied-vs-torch: the shared matrices live here */
} bench_cfg;

int bench_less_effect(const bench_cfg *c);
int bench_less_backward(const bench_cfg *c);
int bench_ied(const bench_cfg *c);
int bench_ied_vs_torch(const bench_cfg *c);
int bench_resnet_ied(const bench_cfg *c);

/* A fresh context on c->device (CPU when c is NULL), or NULL after printing the error line. */
ddn_ctx *bench_ctx(const bench_cfg *c);
/* "cpu" or "cuda", and one sentence saying what the memory columns measure there. */
const char *bench_device_name(const bench_cfg *c);
const char *bench_memory_note(const bench_cfg *c);
/* Standard normal draws into x[0..n). */
void bench_randn(ddn_rng *rng, double *x, int64_t n);
/* A persistent tensor of dtype dt holding the float64 values x (converted), requiring grad when
 * asked, in ctx's memory (device memory on CUDA). NULL with the context error set on failure. */
ddn_tensor *bench_persistent(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                             const double *x, bool requires_grad);
/* "12.3" or "-" for NaN, into buf. */
const char *bench_fmt(char *buf, size_t n, const char *fmt, double x);

/* Times a layer: warmup + runs times { reset the step; y = forward(); backward(y, v) }, medians
 * of the timed runs. Times come from events (core/event.h: CUDA events on the context's stream,
 * the host clock after the work on the CPU); the context is synchronised after the warm-up.
 * Memory comes from the first run on the context (which should be fresh, its inputs
 * persistent): the arena high-water after the forward, how far the backward raised it above what
 * the forward left in use, and the peak over both. first (optional) sees y and the gradients of
 * the first run. On failure out->err holds the message (the row prints it; the table goes on). */
typedef ddn_tensor *(*bench_forward_fn)(ddn_ctx *ctx, void *user);
typedef void (*bench_first_fn)(ddn_ctx *ctx, const ddn_tensor *y, void *user);
typedef struct bench_measure {
    double fwd_ms, bwd_ms, tot_ms; /* medians (tot: of the per-run forward + backward) */
    double fwd_mib, bwd_mib, peak_mib;
    char err[256];
} bench_measure;
void bench_measure_layer(const bench_cfg *c, ddn_ctx *ctx, bench_forward_fn forward,
                         bench_first_fn first, void *user, ddn_tensor *const *leaves, int nleaves,
                         const ddn_tensor *v, bench_measure *out);

#define BENCH_MIB (1024.0 * 1024.0)
#define BENCH_GIB (1024.0 * 1024.0 * 1024.0)

#endif
