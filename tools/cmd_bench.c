/* ddn bench — reproduce the paper's tables (PMaF, Tables 1-5, 7) and the PyTorch comparison;
 * markdown on stdout. This file parses the options and holds the helpers the tables share; the
 * tables are cmd_bench_less.c (LESS effectiveness and backward cost), cmd_bench_ied.c (IED
 * cost and precision, and the ddn side of the PyTorch eigh comparison) and cmd_bench_resnet.c
 * (one ResNet-50 + IED training step). --device cuda runs the IED and ResNet tables in a CUDA
 * context, timed with CUDA events (core/event.h).
 * Fairness rules (DESIGN.md "Benchmarking fairly"): 2 threads by default, warm-up before timing,
 * medians of several runs, and the header names the command, OpenBLAS's kernel and the threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "event.h"

#define CMD "bench"

static const char *const table_names[] = {"less-effect", "less-backward", "ied", "ied-vs-torch",
                                           "resnet-ied"};
_Static_assert(sizeof table_names / sizeof table_names[0] == TABLE_COUNT, "one name per table");
static const char *const dtype_names[] = {"f32", "f64", "both"};
static const char *const sym_names[] = {"sym", "nonsym", "both"};

static const char help[] =
    "usage: ddn bench --table TABLE [options]      (markdown on stdout)\n"
    "\n"
    "tables:\n"
    "  less-effect    Tables 1/4: every LESS method on N(0,1) problems; failures (inner/outer,\n"
    "                 hit the cap), Imp. and MRE of the FPD against the exact solver (and SciPy\n"
    "                 SLSQP with --scipy). Defaults: --samples 1000 --sizes 2x2,64x32,1024x256\n"
    "                 --dtype f64. --dump DIR writes the problems for bench/less_scipy.py;\n"
    "                 --scipy DIR reads its solutions back (bench/run_less.sh does both).\n"
    "  less-backward  Table 2: LESS backward E vs J (and unroll): time and arena memory.\n"
    "                 --sizes BxMxN (default 8x256x64,16x256x128) --dtype f32\n"
    "  ied            Tables 3/5/7 and Figs. 2/5/6: PI/SI x DDN/IFT x E/J, unroll and EIGH;\n"
    "                 forward/backward time, arena memory, eigen distance and FPD.\n"
    "                 --sizes 32,64,128,256,512,1024 --batch 5 --dtype both --symmetry both\n"
    "                 --si-k 1; J modes above --max-mem are skipped\n"
    "  ied-vs-torch   ddn PI-IFT-E forward+backward on the matrices in --data DIR (written when\n"
    "                 missing), for bench/run_ied.sh to set against torch.linalg.eigh.\n"
    "                 --sizes 32,256 --batch 5 --dtype f32 --runs 20\n"
    "  resnet-ied     one training step of ResNet-50 + the IED head (bench/pmaf_step.h: forward,\n"
    "                 backward, SGD), float32, per input side in --sizes: time and memory.\n"
    "                 --sizes 32 --batch 32 --runs 5\n"
    "\n"
    "options:\n"
    "  --samples N      LESS problems per size\n"
    "  --sizes LIST     comma-separated sizes (see above)\n"
    "  --dtype D        f32 | f64 | both\n"
    "  --symmetry S     sym | nonsym | both (ied)\n"
    "  --batch N        IED batch size (default 5); resnet-ied: images per step (default 32)\n"
    "  --device D       cpu (default) or cuda: the IED and resnet-ied tables run in a CUDA\n"
    "                   context, timed with CUDA events after the warm-up and a synchronise;\n"
    "                   memory is the step arena's high-water mark (device tensor data plus\n"
    "                   host-side records)\n"
    "  --si-k N         SI columns (default 1; the paper used k = m)\n"
    "  --no-gap-check   IED: skip the solver's second-eigenvalue estimate (tie detection)\n"
    "  --runs N         timed runs per measurement, median reported (default 5)\n"
    "  --warmup N       untimed runs first (default 1)\n"
    "  --max-mem GIB    memory budget for explicit Jacobians and problem data (default 2)\n"
    "  --seed N         data seed (default 0)\n"
    "  --threads N      CPU threads for ddn and OpenBLAS (default 2)\n"
    "  --dump DIR, --scipy DIR, --data DIR   see the tables\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on a bad command line; one line on stderr.\n";

/* ---- shared helpers --------------------------------------------------------------------------- */
ddn_ctx *bench_ctx(const bench_cfg *c)
{
    return cli_ctx_new(CMD, c ? c->device : DDN_DEVICE_CPU);
}

const char *bench_device_name(const bench_cfg *c)
{
    return c->device == DDN_DEVICE_CUDA ? "cuda" : "cpu";
}

const char *bench_memory_note(const bench_cfg *c)
{
    return c->device == DDN_DEVICE_CUDA
               ? "Memory (MiB) is the step arena's high-water mark: tensor data in device memory "
                 "plus the host-side tape records and host scratch (the declarative layers still "
                 "solve on host copies); persistent tensors and cuDNN/cuBLAS workspaces are not "
                 "counted, so it is not cudaMalloc's total."
               : "Memory (MiB) is the step arena's high-water mark (tensor data, tape records and "
                 "scratch); persistent tensors are not counted.";
}

void bench_randn(ddn_rng *rng, double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = ddn_rng_normal(rng);
}

ddn_tensor *bench_persistent(ddn_ctx *ctx, ddn_dtype dt, int ndim, const int64_t *shape,
                             const double *x, bool requires_grad)
{
    ddn_tensor *t = ddn_tensor_new_persistent(ctx, dt, ndim, shape);
    if (!t) return NULL;
    /* through a float64 step tensor in ctx (a device copy on CUDA), converted by the copy kernel
     * and rewound at once, so the arena is as it was */
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_tensor *src = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, ndim, shape, x);
    ddn_status st = src ? ddn_tensor_copy_(t, src) : ddn_ctx_status(ctx);
    ddn_ctx_rewind(ctx, mark);
    if (st != DDN_OK || (requires_grad && ddn_tensor_set_requires_grad(t, true) != DDN_OK)) {
        ddn_tensor_free(t);
        return NULL;
    }
    return t;
}

const char *bench_fmt(char *buf, size_t n, const char *fmt, double x)
{
    if (isnan(x)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, x);
    return buf;
}

void bench_measure_layer(const bench_cfg *c, ddn_ctx *ctx, bench_forward_fn forward,
                         bench_first_fn first, void *user, ddn_tensor *const *leaves, int nleaves,
                         const ddn_tensor *v, bench_measure *out)
{
    int total = (int)(c->warmup + c->runs), k = 0;
    size_t nr = (size_t)c->runs;
    double *tf = malloc(sizeof(double) * nr), *tb = malloc(sizeof(double) * nr),
           *tt = malloc(sizeof(double) * nr);
    ddn_event *ev[3] = {ddn_event_new(ctx), ddn_event_new(ctx), ddn_event_new(ctx)};
    *out = (bench_measure){.fwd_ms = NAN, .bwd_ms = NAN, .tot_ms = NAN, .fwd_mib = NAN,
                           .bwd_mib = NAN, .peak_mib = NAN};
    if (!tf || !tb || !tt || !ev[0] || !ev[1] || !ev[2]) {
        snprintf(out->err, sizeof out->err, "%s",
                 ddn_ctx_status(ctx) != DDN_OK ? ddn_ctx_errmsg(ctx) : "out of memory");
        ddn_ctx_clear_error(ctx);
        goto done;
    }
    ddn_ctx_reset_step(ctx);
    size_t base = ddn_ctx_stats(ctx).arena_in_use;
    for (int r = 0; r < total; r++) {
        /* the timed runs start on an idle device, not behind the warm-up's queued work */
        if (r == c->warmup && ddn_ctx_sync(ctx) != DDN_OK) break;
        ddn_ctx_reset_step(ctx);
        for (int i = 0; i < nleaves; i++) ddn_tensor_zero_grad(leaves[i]);
        if (ddn_event_record(ev[0]) != DDN_OK) break;
        ddn_tensor *y = forward(ctx, user);
        if (!y || ddn_event_record(ev[1]) != DDN_OK) break;
        ddn_stats sf = ddn_ctx_stats(ctx);
        if (ddn_backward_with_grad(ctx, y, v) != DDN_OK || ddn_event_record(ev[2]) != DDN_OK)
            break;
        if (r >= c->warmup) {
            if (ddn_event_elapsed_ms(ev[0], ev[1], &tf[k]) != DDN_OK ||
                ddn_event_elapsed_ms(ev[1], ev[2], &tb[k]) != DDN_OK ||
                ddn_event_elapsed_ms(ev[0], ev[2], &tt[k]) != DDN_OK)
                break;
            k++;
        }
        if (r == 0) {
            ddn_stats sb = ddn_ctx_stats(ctx);
            out->fwd_mib = (double)(sf.arena_high_water - base) / BENCH_MIB;
            out->bwd_mib = (double)(sb.arena_high_water - sf.arena_in_use) / BENCH_MIB;
            out->peak_mib = (double)(sb.arena_high_water - base) / BENCH_MIB;
            if (first) first(ctx, y, user);
        }
    }
    if (ddn_ctx_status(ctx) != DDN_OK) {
        snprintf(out->err, sizeof out->err, "%s", ddn_ctx_errmsg(ctx));
        ddn_ctx_clear_error(ctx);
    } else {
        out->fwd_ms = cli_median(tf, k), out->bwd_ms = cli_median(tb, k);
        out->tot_ms = cli_median(tt, k);
    }
done:
    ddn_ctx_reset_step(ctx);
    for (int i = 0; i < 3; i++) ddn_event_free(ev[i]);
    free(tf), free(tb), free(tt);
}

/* ---- option parsing --------------------------------------------------------------------------- */
static int parse_args(int argc, char **argv, bench_cfg *c, bool *set)
{
    enum { S_SAMPLES, S_SIZES, S_DTYPE, S_RUNS, S_BATCH, S_COUNT };
    const char *sizes = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int r, e = 0;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        }
#define OPT(name) ((r = cli_opt(CMD, argc, argv, &i, name, &v)) != 0)
        if (OPT("--table")) {
            e = r < 0 || cli_parse_choice(CMD, "--table", v, table_names, TABLE_COUNT, &c->table);
        } else if (OPT("--samples")) {
            e = r < 0 || cli_parse_int(CMD, "--samples", v, 1, 100000000, &c->samples);
            set[S_SAMPLES] = true;
        } else if (OPT("--sizes")) {
            sizes = v, e = r < 0, set[S_SIZES] = true;
        } else if (OPT("--dtype")) {
            e = r < 0 || cli_parse_choice(CMD, "--dtype", v, dtype_names, 3, &c->dtype);
            set[S_DTYPE] = true;
        } else if (OPT("--symmetry")) {
            e = r < 0 || cli_parse_choice(CMD, "--symmetry", v, sym_names, 3, &c->symmetry);
        } else if (OPT("--batch")) {
            e = r < 0 || cli_parse_int(CMD, "--batch", v, 1, 1000000, &c->batch);
            set[S_BATCH] = true;
        } else if (OPT("--device")) {
            e = r < 0 || cli_parse_device(CMD, v, &c->device);
        } else if (OPT("--si-k")) {
            e = r < 0 || cli_parse_int(CMD, "--si-k", v, 1, 1000000, &c->si_k);
        } else if ((r = cli_flag(CMD, argv, i, "--no-gap-check")) != 0) {
            e = r < 0, c->no_gap_check = true;
        } else if (OPT("--runs")) {
            e = r < 0 || cli_parse_int(CMD, "--runs", v, 1, 100000, &c->runs);
            set[S_RUNS] = true;
        } else if (OPT("--warmup")) {
            e = r < 0 || cli_parse_int(CMD, "--warmup", v, 0, 100000, &c->warmup);
        } else if (OPT("--max-mem")) {
            e = r < 0 || cli_parse_double(CMD, "--max-mem", v, 0, 1e6, &c->max_mem_gib);
        } else if (OPT("--seed")) {
            e = r < 0 || cli_parse_int(CMD, "--seed", v, 0, INT64_MAX, &c->seed);
        } else if (OPT("--threads")) {
            e = r < 0 || cli_parse_int(CMD, "--threads", v, 1, 1024, &c->threads);
        } else if (OPT("--dump")) {
            c->dump = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--scipy")) {
            c->scipy = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--data")) {
            c->data = r < 0 ? NULL : v, e = r < 0;
        } else {
            return cli_unknown(CMD, a);
        }
#undef OPT
        if (e) return CLI_EXIT_USAGE;
    }
    if (c->table < 0)
        return cli_error(CMD, CLI_EXIT_USAGE,
                         "missing --table less-effect|less-backward|ied|ied-vs-torch|resnet-ied");
    if (sizes) {
        int rc = c->table == TABLE_LESS_EFFECT
                     ? cli_parse_dims_list(CMD, "--sizes", sizes, 2, 1 << 20, c->sizes, &c->nsizes)
                 : c->table == TABLE_LESS_BACKWARD
                     ? cli_parse_dims_list(CMD, "--sizes", sizes, 3, 1 << 20, c->sizes, &c->nsizes)
                     : cli_parse_dims_list(CMD, "--sizes", sizes, 1, 1 << 16, c->sizes, &c->nsizes);
        for (int k = 0; rc == 0 && c->table == TABLE_RESNET_IED && k < c->nsizes; k++)
            if (c->sizes[k][0] < 32) /* ResNet-50's five stride-2 stages need 32 pixels */
                rc = cli_error(CMD, CLI_EXIT_USAGE, "--sizes: resnet-ied input sides must be at "
                               "least 32, got %lld", (long long)c->sizes[k][0]);
        if (rc) return rc;
    }
    return -1;
}

/* Per-table defaults for what was not given, and the options a table does not take. */
static int apply_defaults(bench_cfg *c, const bool *set)
{
    static const int64_t less_sizes[][3] = {{2, 2}, {64, 32}, {1024, 256}};
    static const int64_t back_sizes[][3] = {{8, 256, 64}, {16, 256, 128}};
    static const int64_t ied_sizes[] = {32, 64, 128, 256, 512, 1024}, torch_sizes[] = {32, 256};
    const bool s_samples = set[0], s_sizes = set[1], s_dtype = set[2], s_runs = set[3];
    const bool s_batch = set[4];
    if (c->device != DDN_DEVICE_CPU &&
        (c->table == TABLE_LESS_EFFECT || c->table == TABLE_LESS_BACKWARD))
        return cli_error(CMD, CLI_EXIT_USAGE, "--device cuda applies to --table ied, ied-vs-torch "
                         "and resnet-ied (the LESS tables run on the CPU)");
    if (c->table == TABLE_RESNET_IED && s_dtype && c->dtype != DT_F32)
        return cli_error(CMD, CLI_EXIT_USAGE, "--table resnet-ied runs in float32 only");
    if (c->dump && c->table != TABLE_LESS_EFFECT)
        return cli_error(CMD, CLI_EXIT_USAGE, "--dump applies to --table less-effect only");
    if (c->scipy && c->table != TABLE_LESS_EFFECT)
        return cli_error(CMD, CLI_EXIT_USAGE, "--scipy applies to --table less-effect only");
    if (c->data && c->table != TABLE_IED_VS_TORCH)
        return cli_error(CMD, CLI_EXIT_USAGE, "--data applies to --table ied-vs-torch only");
    if (s_samples && c->table != TABLE_LESS_EFFECT)
        return cli_error(CMD, CLI_EXIT_USAGE, "--samples applies to --table less-effect only");
    if (c->table == TABLE_IED_VS_TORCH && !c->data)
        return cli_error(CMD, CLI_EXIT_USAGE, "--table ied-vs-torch needs --data DIR");
    if (c->no_gap_check && c->table != TABLE_IED && c->table != TABLE_IED_VS_TORCH)
        return cli_error(CMD, CLI_EXIT_USAGE, "--no-gap-check applies to the IED tables only");
    if (c->table != TABLE_IED && c->dtype == DT_BOTH)
        return cli_error(CMD, CLI_EXIT_USAGE, "--dtype both applies to --table ied only");
    switch (c->table) {
    case TABLE_LESS_EFFECT:
        if (!s_sizes) memcpy(c->sizes, less_sizes, sizeof less_sizes), c->nsizes = 3;
        if (!s_dtype) c->dtype = DT_F64;
        break;
    case TABLE_LESS_BACKWARD:
        if (!s_sizes) memcpy(c->sizes, back_sizes, sizeof back_sizes), c->nsizes = 2;
        if (!s_dtype) c->dtype = DT_F32;
        break;
    case TABLE_IED:
        if (!s_sizes)
            for (c->nsizes = 0; c->nsizes < 6; c->nsizes++)
                c->sizes[c->nsizes][0] = ied_sizes[c->nsizes];
        if (!s_dtype) c->dtype = DT_BOTH;
        break;
    case TABLE_RESNET_IED:
        if (!s_sizes) c->sizes[0][0] = 32, c->nsizes = 1;
        if (!s_batch) c->batch = 32;
        c->dtype = DT_F32;
        break;
    default:
        if (!s_sizes)
            for (c->nsizes = 0; c->nsizes < 2; c->nsizes++)
                c->sizes[c->nsizes][0] = torch_sizes[c->nsizes];
        if (!s_dtype) c->dtype = DT_F32;
        if (!s_runs) c->runs = 20;
        break;
    }
    return -1;
}

int cmd_bench(int argc, char **argv)
{
    bench_cfg c = {.table = -1, .argc = argc, .argv = argv, .samples = 1000, .dtype = DT_F64,
                   .symmetry = SYM_BOTH, .seed = 0, .runs = 5, .warmup = 1, .batch = 5,
                   .si_k = 1, .threads = 2, .max_mem_gib = 2, .device = DDN_DEVICE_CPU};
    bool set[5] = {false};
    int rc = parse_args(argc, argv, &c, set);
    if (rc >= 0) return rc;
    if ((rc = apply_defaults(&c, set)) >= 0) return rc;
    ddn_set_num_threads((int)c.threads);
    if (c.device != DDN_DEVICE_CPU) { /* no device: the one line, before any table is printed */
        ddn_ctx *probe = bench_ctx(&c);
        if (!probe) return CLI_EXIT_FAIL;
        ddn_ctx_free(probe);
    }
    switch (c.table) {
    case TABLE_LESS_EFFECT: return bench_less_effect(&c);
    case TABLE_LESS_BACKWARD: return bench_less_backward(&c);
    case TABLE_IED: return bench_ied(&c);
    case TABLE_RESNET_IED: return bench_resnet_ied(&c);
    default: return bench_ied_vs_torch(&c);
    }
}
