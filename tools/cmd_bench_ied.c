/* ddn bench — the IED tables: cost and precision of every solver x backward mode (paper Tables
 * 3, 5, 7-8 and Figs. 2, 5, 6), and the ddn side of the comparison with torch.linalg.eigh.
 *
 * Data as in the paper's App. G.1: A = |G| (non-symmetric) or |G| + |G|^T (symmetric), G ~ N(0,1),
 * batch 5. Memory is the step arena's high-water mark (inputs and their gradients are persistent
 * and not counted); with --device cuda (inputs, forward and backward in a CUDA context, timed with
 * CUDA events) its tensor data is device memory, closer to the paper's GPU memory but not
 * cudaMalloc's total (bench_memory_note says what it holds). The J modes build an m x (m x m) Jacobian per
 * item and are skipped above --max-mem; DDN modes and EIGH need symmetric A (n/a otherwise: ied.h
 * refuses them, as DDN differentiates another problem and syevd reads one triangle). Eigen
 * distance ||A y - lambda y|| and FPD ||y - A y / ||A y|| || (Eq. 42-43) are measured in float64
 * on the returned y and the (dtype-rounded) A, averaged over the batch.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define CMD "bench"

typedef struct ied_mode {
    const char *name;
    ddn_ied_method method;
    ddn_ied_backward bw;
} ied_mode;

static const ied_mode modes[] = {
    {"PI-unroll", DDN_IED_PI, DDN_IED_BACKWARD_UNROLL},
    {"PI-DDN-J", DDN_IED_PI, DDN_IED_BACKWARD_DDN_J},
    {"PI-IFT-J", DDN_IED_PI, DDN_IED_BACKWARD_IFT_J},
    {"PI-DDN-E", DDN_IED_PI, DDN_IED_BACKWARD_DDN_E},
    {"PI-IFT-E", DDN_IED_PI, DDN_IED_BACKWARD_IFT_E},
    {"SI-unroll", DDN_IED_SI, DDN_IED_BACKWARD_UNROLL},
    {"SI-DDN-J", DDN_IED_SI, DDN_IED_BACKWARD_DDN_J},
    {"SI-IFT-J", DDN_IED_SI, DDN_IED_BACKWARD_IFT_J},
    {"SI-DDN-E", DDN_IED_SI, DDN_IED_BACKWARD_DDN_E},
    {"SI-IFT-E", DDN_IED_SI, DDN_IED_BACKWARD_IFT_E},
    {"EIGH (syevd)", DDN_IED_PI, DDN_IED_BACKWARD_EIGH},
};
#define N_MODES ((int)(sizeof modes / sizeof modes[0]))

/* The paper's inputs: A = |G|, made symmetric as |G| + |G|^T (diagonal 2|g_ii|). (B, m, m). */
static void gen_ied(ddn_rng *rng, int64_t B, int64_t m, bool sym, double *A)
{
    for (int64_t t = 0; t < B; t++) {
        double *a = A + t * m * m;
        for (int64_t i = 0; i < m * m; i++) a[i] = fabs(ddn_rng_normal(rng));
        if (sym)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j <= i; j++) a[i * m + j] = a[j * m + i] = a[i * m + j] + a[j * m + i];
    }
}

typedef struct ied_user {
    ddn_tensor *A;
    ddn_ied_opts o;
    ddn_ied_backward bw;
    ddn_decl_info info;
    const double *A64;     /* (B, m, m): A as stored (dtype-rounded), in float64 */
    int64_t B, m;
    double eig_dist, fpd, iters; /* batch means, from the first run */
    double *y_out, *dA_out; /* optional copies of the first run's y and dA */
} ied_user;

static ddn_tensor *ied_forward(ddn_ctx *ctx, void *user)
{
    ied_user *u = user;
    return ddn_ied(ctx, u->A, &u->o, u->bw, NULL, &u->info);
}

static void ied_first(ddn_ctx *ctx, const ddn_tensor *y, void *user)
{
    ied_user *u = user;
    int64_t B = u->B, m = u->m;
    double *yh = malloc(sizeof(double) * (size_t)(B * m)), *Ay = malloc(sizeof(double) * (size_t)m);
    u->eig_dist = u->fpd = u->iters = NAN;
    if (!yh || !Ay || ddn_tensor_to_host(y, DDN_DTYPE_F64, yh) != DDN_OK) goto done;
    double sd = 0, sf = 0, si = 0;
    for (int64_t t = 0; t < B; t++) {
        const double *a = u->A64 + t * m * m, *yt = yh + t * m;
        double lam = 0, nAy = 0, ed = 0, fp = 0;
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t j = 0; j < m; j++) s += a[i * m + j] * yt[j];
            Ay[i] = s, lam += yt[i] * s, nAy += s * s;
        }
        nAy = sqrt(nAy);
        for (int64_t i = 0; i < m; i++) {
            ed += (Ay[i] - lam * yt[i]) * (Ay[i] - lam * yt[i]);
            double d = yt[i] - Ay[i] / nAy;
            fp += d * d;
        }
        sd += sqrt(ed), sf += sqrt(fp);
        if (u->info.iterations)
            si += ddn_tensor_get(u->info.iterations, &t); /* device memory on CUDA */
    }
    u->eig_dist = sd / (double)B, u->fpd = sf / (double)B;
    u->iters = u->info.iterations ? si / (double)B : NAN;
    if (u->y_out) memcpy(u->y_out, yh, sizeof(double) * (size_t)(B * m));
    if (u->dA_out && u->A->grad) ddn_tensor_to_host(u->A->grad, DDN_DTYPE_F64, u->dA_out);
done:
    free(yh), free(Ay);
}

/* One measurement of `mode` on A64 (B, m, m) with upstream gradient v64 (B, m); fills u's
 * precision fields and r. Returns false when no context could be made. */
static bool run_mode(const bench_cfg *c, ddn_dtype dt, const ied_mode *mode, int64_t B, int64_t m,
                     const double *A64, const double *v64, ied_user *u, bench_measure *r)
{
    ddn_ctx *ctx = bench_ctx(c);
    if (!ctx) return false;
    u->o = DDN_IED_OPTS_DEFAULT;
    u->o.method = mode->method;
    u->o.k = mode->method == DDN_IED_SI ? (c->si_k < m ? c->si_k : m) : 1;
    u->o.check_gap = !c->no_gap_check;
    u->bw = mode->bw, u->A64 = A64, u->B = B, u->m = m;
    u->eig_dist = u->fpd = u->iters = NAN;
    u->A = bench_persistent(ctx, dt, DDN_SHAPE(B, m, m), A64, true);
    ddn_tensor *v = bench_persistent(ctx, dt, DDN_SHAPE(B, m), v64, false);
    *r = (bench_measure){.err = ""};
    if (!u->A || !v) snprintf(r->err, sizeof r->err, "%s", ddn_ctx_errmsg(ctx));
    else bench_measure_layer(c, ctx, ied_forward, ied_first, u, &u->A, 1, v, r);
    ddn_tensor_free(u->A), ddn_tensor_free(v);
    u->A = NULL;
    ddn_ctx_free(ctx);
    return true;
}

static int ied_size(const bench_cfg *c, ddn_dtype dt, bool sym, int64_t m)
{
    int64_t B = c->batch;
    double *A = malloc(sizeof(double) * (size_t)(B * m * m)), *v = malloc(sizeof(double) * (size_t)(B * m));
    if (!A || !v) {
        free(A), free(v);
        return cli_error(CMD, CLI_EXIT_FAIL, "out of memory for m = %lld", (long long)m);
    }
    ddn_rng rng;
    ddn_rng_seed(&rng, (uint64_t)c->seed * 1000003u + (uint64_t)m * 2u + sym);
    gen_ied(&rng, B, m, sym, A);
    bench_randn(&rng, v, B * m);
    for (int64_t i = 0; dt == DDN_DTYPE_F32 && i < B * m * m; i++) A[i] = (float)A[i];
    size_t es = ddn_dtype_size(dt);
    int rc = -1;
    for (int k = 0; rc < 0 && k < N_MODES; k++) {
        const ied_mode *md = &modes[k];
        bool ddn = md->bw == DDN_IED_BACKWARD_DDN_E || md->bw == DDN_IED_BACKWARD_DDN_J;
        bool jac = md->bw == DDN_IED_BACKWARD_DDN_J || md->bw == DDN_IED_BACKWARD_IFT_J;
        double need = (double)B * (double)m * (double)m * (double)m * (double)es;
        if ((ddn || md->bw == DDN_IED_BACKWARD_EIGH) && !sym) {
            printf("| %lld | %s | n/a (needs symmetric A) | | | | | | |\n", (long long)m,
                   md->name);
            continue;
        }
        if (jac && need > c->max_mem_gib * BENCH_GIB) {
            printf("| %lld | %s | skipped (needs %.3g GiB) | | | | | | |\n", (long long)m,
                   md->name, need / BENCH_GIB);
            continue;
        }
        ied_user u = {0};
        bench_measure r;
        if (!run_mode(c, dt, md, B, m, A, v, &u, &r)) {
            rc = CLI_EXIT_FAIL;
            break;
        }
        char f[7][32];
        if (r.err[0])
            printf("| %lld | %s | error: %s | | | | | | |\n", (long long)m, md->name, r.err);
        else
            printf("| %lld | %s | %s | %s | %s | %s | %s | %s | %s |\n", (long long)m, md->name,
                   bench_fmt(f[0], 32, "%.4f", r.fwd_ms), bench_fmt(f[1], 32, "%.4f", r.bwd_ms),
                   bench_fmt(f[2], 32, "%.3f", r.fwd_mib), bench_fmt(f[3], 32, "%.3f", r.bwd_mib),
                   bench_fmt(f[4], 32, "%.1f", u.iters), bench_fmt(f[5], 32, "%.2e", u.eig_dist),
                   bench_fmt(f[6], 32, "%.2e", u.fpd));
        fflush(stdout);
    }
    free(A), free(v);
    return rc;
}

int bench_ied(const bench_cfg *c)
{
    printf("## IED cost and precision (paper Tables 3, 5, 7-8; Figs. 2, 5, 6)\n\n");
    cli_bench_header(stdout, c->argc, c->argv,
                     c->dtype == DT_BOTH ? "float32 and float64"
                     : c->dtype == DT_F32 ? "float32" : "float64");
    printf("Batch %lld, A = |G| (+ |G|^T when symmetric), G ~ N(0,1), upstream gradient v ~ "
           "N(0,1), seed %lld. SI with k = %lld columns; gap check %s. Device: %s. Times in ms "
           "per batch call (%s): median of %lld runs after %lld warm-up. Arena in MiB: step-arena "
           "high-water in the forward, and the backward's rise above what the forward left in "
           "use. %s Eigen distance and FPD: batch means in float64. J modes above %g GiB are "
           "skipped.\n\n",
           (long long)c->batch, (long long)c->seed, (long long)c->si_k,
           c->no_gap_check ? "off" : "on (the solver's default)", bench_device_name(c),
           c->device == DDN_DEVICE_CUDA ? "CUDA events on the context's stream"
                                        : "wall clock",
           (long long)c->runs, (long long)c->warmup, bench_memory_note(c), c->max_mem_gib);
    int rc = -1;
    for (int s = 0; rc < 0 && s < 2; s++) {
        if (c->symmetry != SYM_BOTH && c->symmetry != s) continue;
        for (int d = 0; rc < 0 && d < 2; d++) {
            if (c->dtype != DT_BOTH && c->dtype != d) continue;
            ddn_dtype dt = d == DT_F32 ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
            printf("### %s A, %s\n\n", s == SYM_SYM ? "symmetric" : "non-symmetric",
                   ddn_dtype_name(dt));
            printf("| m | method | forward (ms) | backward (ms) | fwd arena (MiB) | bwd arena "
                   "(MiB) | iters | eigen dist | FPD |\n"
                   "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
            for (int k = 0; rc < 0 && k < c->nsizes; k++) rc = ied_size(c, dt, s == SYM_SYM, c->sizes[k][0]);
            printf("\n");
        }
    }
    return rc < 0 ? 0 : rc;
}

/* ---- ied-vs-torch: the ddn side --------------------------------------------------------------- */
/* Reads A and v of dtype dt from path into float64 buffers; creates the file (seeded) when it
 * does not exist, so that bench/ied_torch.py reads exactly the matrices ddn used. */
static int load_or_make(ddn_ctx *ctx, const bench_cfg *c, const char *path, ddn_dtype dt,
                        int64_t B, int64_t m, double *A, double *v)
{
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        ddn_rng rng;
        ddn_rng_seed(&rng, (uint64_t)c->seed * 1000003u + (uint64_t)m * 2u + 1u);
        gen_ied(&rng, B, m, true, A);
        bench_randn(&rng, v, B * m);
        char seed[32];
        snprintf(seed, sizeof seed, "%lld", (long long)c->seed);
        ddn_tensor *tA = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), A);
        ddn_tensor *tv = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), v);
        ddn_st_dtype sd = dt == DDN_DTYPE_F32 ? DDN_ST_F32 : DDN_ST_F64;
        const ddn_st_entry e[] = {{"A", tA, sd}, {"v", tv, sd}};
        const char *meta[] = {"seed", seed, "generator", "ddn bench --table ied-vs-torch"};
        if (!tA || !tv || ddn_safetensors_save(ctx, path, 2, e, 2, meta) != DDN_OK)
            return cli_ctx_error(CMD, ctx);
    } else {
        fclose(probe);
    }
    /* Read back in every case: both programs then start from the stored (rounded) values. */
    ddn_st_file *f = NULL;
    if (ddn_safetensors_open(ctx, path, &f) != DDN_OK) return cli_ctx_error(CMD, ctx);
    ddn_tensor *tA = ddn_tensor_new(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, m));
    ddn_tensor *tv = ddn_tensor_new(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m));
    int rc = -1;
    if (!tA || !tv || ddn_safetensors_read_into(ctx, f, "A", tA) != DDN_OK ||
        ddn_safetensors_read_into(ctx, f, "v", tv) != DDN_OK)
        rc = cli_ctx_error(CMD, ctx);
    else
        memcpy(A, ddn_tensor_ptr(tA), sizeof(double) * (size_t)(B * m * m)),
            memcpy(v, ddn_tensor_ptr(tv), sizeof(double) * (size_t)(B * m));
    ddn_safetensors_close(f);
    ddn_ctx_reset_step(ctx);
    return rc;
}

/* Writes the first run's y and dA next to the data, for ied_torch.py's agreement check. */
static int save_result(ddn_ctx *ctx, const char *path, int64_t B, int64_t m, const double *y,
                       const double *dA)
{
    ddn_tensor *ty = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m), y);
    ddn_tensor *tg = ddn_tensor_from_host(ctx, DDN_DTYPE_F64, DDN_SHAPE(B, m, m), dA);
    const ddn_st_entry e[] = {{"y", ty, DDN_ST_F64}, {"dA", tg, DDN_ST_F64}};
    int rc = !ty || !tg || ddn_safetensors_save(ctx, path, 2, e, 0, NULL) != DDN_OK
                 ? cli_ctx_error(CMD, ctx) : -1;
    ddn_ctx_reset_step(ctx);
    return rc;
}

int bench_ied_vs_torch(const bench_cfg *c)
{
    ddn_dtype dt = c->dtype == DT_F64 ? DDN_DTYPE_F64 : DDN_DTYPE_F32;
    const char *dn = dt == DDN_DTYPE_F32 ? "f32" : "f64";
    printf("## IED: ddn PI-IFT-E vs torch.linalg.eigh (ddn side)\n\n");
    cli_bench_header(stdout, c->argc, c->argv, ddn_dtype_name(dt));
    printf("gap check %s; device %s. %s\n\n", c->no_gap_check ? "off" : "on (the solver's default)",
           bench_device_name(c), bench_memory_note(c));
    printf("| m | forward (ms) | backward (ms) | total (ms) | iters | eigen dist | FPD |\n"
           "|---:|---:|---:|---:|---:|---:|---:|\n");
    ddn_ctx *io = bench_ctx(NULL); /* files and host buffers: always the CPU */
    if (!io) return CLI_EXIT_FAIL;
    int rc = -1;
    for (int k = 0; rc < 0 && k < c->nsizes; k++) {
        int64_t B = c->batch, m = c->sizes[k][0];
        char path[4096], out[4200];
        snprintf(path, sizeof path, "%s/ied_m%lld_b%lld_%s.safetensors", c->data, (long long)m,
                 (long long)B, dn);
        snprintf(out, sizeof out, "%s/ied_m%lld_b%lld_%s_ddn.safetensors", c->data,
                 (long long)m, (long long)B, dn);
        double *A = malloc(sizeof(double) * (size_t)(B * m * m)), *v = malloc(sizeof(double) * (size_t)(B * m));
        double *y = malloc(sizeof(double) * (size_t)(B * m)), *dA = malloc(sizeof(double) * (size_t)(B * m * m));
        if (!A || !v || !y || !dA)
            rc = cli_error(CMD, CLI_EXIT_FAIL, "out of memory for m = %lld", (long long)m);
        if (rc < 0) rc = load_or_make(io, c, path, dt, B, m, A, v);
        ied_user u = {.y_out = y, .dA_out = dA};
        bench_measure r = {.err = ""};
        if (rc < 0 && !run_mode(c, dt, &modes[4], B, m, A, v, &u, &r)) rc = CLI_EXIT_FAIL;
        if (rc < 0 && r.err[0]) rc = cli_error(CMD, CLI_EXIT_FAIL, "m = %lld: %s", (long long)m, r.err);
        if (rc < 0) rc = save_result(io, out, B, m, y, dA);
        if (rc < 0) {
            printf("| %lld | %.4f | %.4f | %.4f | %.1f | %.2e | %.2e |\n", (long long)m, r.fwd_ms,
                   r.bwd_ms, r.tot_ms, u.iters, u.eig_dist, u.fpd);
            /* keys after rss_kb are extra: bench/run_ied.sh reads the first five by position */
            printf("RESULT ddn m=%lld fwd_ms=%.5f bwd_ms=%.5f total_ms=%.5f rss_kb=%ld "
                   "device=%s peak_mib=%.3f\n", (long long)m, r.fwd_ms, r.bwd_ms, r.tot_ms,
                   cli_peak_rss_kb(), bench_device_name(c), r.peak_mib);
            fflush(stdout);
        }
        free(A), free(v), free(y), free(dA);
    }
    ddn_ctx_free(io);
    return rc < 0 ? 0 : rc;
}
