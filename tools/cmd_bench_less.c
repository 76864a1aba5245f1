/* ddn bench — the LESS tables: effectiveness of every solver (paper Tables 1/4) and the cost of
 * the backward modes (Table 2).
 *
 * less-effect measures against the EXACT solver (a certified global optimum, PMAF-MATH §1), not
 * against SciPy as the paper did; SciPy SLSQP enters as one more row when its solutions are
 * given (--scipy DIR, written by bench/less_scipy.py from the --dump DIR problems). The measure is
 * the fixed-point distance FPD = ||A y - b|| (Eq. 41), computed here in float64 on the returned y.
 * "Imp." counts items with FPD <= FPD_ref * (1 + rtol) + atol: rtol 1e-6, atol 1e-9 in float64,
 * 1e-4 and 1e-6 in float32 (the rounding of y alone moves FPD by about that much).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define CMD "bench"


static double load(const void *p, ddn_dtype dt, int64_t i)
{
    return dt == DDN_DTYPE_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

/* ||A y - b|| in float64 for one item: A (m, n), b (m), y (n), of dtype dt (y: ydt). */
static double fpd_item(const void *A, const void *b, ddn_dtype dt, const void *y, ddn_dtype ydt,
                       int64_t m, int64_t n)
{
    double s = 0;
    for (int64_t j = 0; j < m; j++) {
        double r = -load(b, dt, j);
        for (int64_t i = 0; i < n; i++) r += load(A, dt, j * n + i) * load(y, ydt, i);
        s += r * r;
    }
    return sqrt(s);
}

typedef struct effect_set {
    int64_t N, m, n;
    ddn_dtype dt;
    size_t es;
    void *A, *b, *y;         /* (N,m,n), (N,m), (N,n) of dt */
    ddn_less_info *info;     /* (N) of the last solve */
    double *fpd_exact, *fpd_scipy, *fpd; /* (N) */
    bool *inner;             /* (N), from the exact solve */
    double rtol, atol;
} effect_set;

/* Solves all N items with `method` in chunks (bounded scratch); fills s->y, s->info, s->fpd.
 * Returns the wall time, or NaN with *err set to the first error's message. */
static double solve_all(ddn_ctx *ctx, effect_set *s, unsigned method, char *err, size_t errn)
{
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.method = method;
    int64_t chunk = (int64_t)(64.0 * BENCH_MIB / (double)(s->m * s->n * (int64_t)s->es));
    chunk = chunk < 1 ? 1 : chunk > 256 ? 256 : chunk;
    double t0 = cli_now();
    err[0] = '\0';
    for (int64_t i0 = 0; i0 < s->N; i0 += chunk) {
        int64_t cnt = s->N - i0 < chunk ? s->N - i0 : chunk;
        ddn_status st = ddn_less_solve(
            ctx, s->dt, cnt, s->m, s->n, (char *)s->A + (size_t)(i0 * s->m * s->n) * s->es,
            (char *)s->b + (size_t)(i0 * s->m) * s->es, (char *)s->y + (size_t)(i0 * s->n) * s->es,
            &o, s->info + i0);
        if (st != DDN_OK && !err[0]) snprintf(err, errn, "%s", ddn_ctx_errmsg(ctx));
        ddn_ctx_clear_error(ctx);
        ddn_ctx_reset_step(ctx);
    }
    double t = cli_now() - t0;
    for (int64_t i = 0; i < s->N; i++)
        s->fpd[i] = fpd_item((char *)s->A + (size_t)(i * s->m * s->n) * s->es,
                             (char *)s->b + (size_t)(i * s->m) * s->es, s->dt,
                             (char *)s->y + (size_t)(i * s->n) * s->es, s->dt, s->m, s->n);
    return err[0] ? NAN : t;
}

static int count_imp(const effect_set *s, const double *ref)
{
    int k = 0;
    for (int64_t i = 0; i < s->N; i++) k += s->fpd[i] <= ref[i] * (1 + s->rtol) + s->atol;
    return k;
}

/* Mean of (fpd - fpd_exact) / fpd_exact in percent; items with fpd_exact below 1e-12 are left
 * out (a relative error of a zero residual means nothing). */
static double mre(const effect_set *s)
{
    double sum = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < s->N; i++)
        if (s->fpd_exact[i] > 1e-12) sum += (s->fpd[i] - s->fpd_exact[i]) / s->fpd_exact[i], k++;
    return k ? 100 * sum / (double)k : NAN;
}

static void print_row(const effect_set *s, const char *name, int fin, int fout, double secs,
                      double mean_it, const char *note)
{
    char imp_s[32], t[32], it[32];
    if (s->fpd_scipy) snprintf(imp_s, sizeof imp_s, "%d", count_imp(s, s->fpd_scipy));
    else snprintf(imp_s, sizeof imp_s, "-");
    printf("| %s | %d | %d | %d | %s | %.4f | %s | %s |%s%s\n", name, fin, fout,
           count_imp(s, s->fpd_exact), imp_s, mre(s), bench_fmt(it, sizeof it, "%.1f", mean_it),
           bench_fmt(t, sizeof t, "%.3f", secs), note ? " " : "", note ? note : "");
}

static int dump_set(ddn_ctx *ctx, const bench_cfg *c, const effect_set *s)
{
    char path[4096], seed[32], samples[32];
    snprintf(path, sizeof path, "%s/less_%lldx%lld.safetensors", c->dump, (long long)s->m,
             (long long)s->n);
    snprintf(seed, sizeof seed, "%lld", (long long)c->seed);
    snprintf(samples, sizeof samples, "%lld", (long long)s->N);
    int64_t *inner = malloc(sizeof *inner * (size_t)s->N);
    ddn_tensor *t[5] = {
        ddn_tensor_wrap_persistent(ctx, s->dt, DDN_SHAPE(s->N, s->m, s->n), s->A),
        ddn_tensor_wrap_persistent(ctx, s->dt, DDN_SHAPE(s->N, s->m), s->b),
        ddn_tensor_wrap_persistent(ctx, s->dt, DDN_SHAPE(s->N, s->n), s->y),
        ddn_tensor_wrap_persistent(ctx, DDN_DTYPE_F64, DDN_SHAPE(s->N), s->fpd_exact),
        inner ? ddn_tensor_wrap_persistent(ctx, DDN_DTYPE_I64, DDN_SHAPE(s->N), inner) : NULL,
    };
    int rc = -1;
    if (!inner) rc = cli_error(CMD, CLI_EXIT_FAIL, "out of memory writing %s", path);
    for (int k = 0; rc < 0 && k < 5; k++)
        if (!t[k]) rc = cli_ctx_error(CMD, ctx);
    if (rc < 0) {
        for (int64_t i = 0; i < s->N; i++) inner[i] = s->inner[i];
        const ddn_st_entry e[] = {{"A", t[0], DDN_ST_AUTO}, {"b", t[1], DDN_ST_AUTO},
                                  {"y_exact", t[2], DDN_ST_AUTO}, {"fpd_exact", t[3], DDN_ST_F64},
                                  {"inner", t[4], DDN_ST_I64}};
        const char *meta[] = {"seed", seed, "samples", samples, "dtype", ddn_dtype_name(s->dt)};
        if (ddn_safetensors_save(ctx, path, 5, e, 3, meta) != DDN_OK) rc = cli_ctx_error(CMD, ctx);
    }
    for (int k = 0; k < 5; k++) ddn_tensor_free(t[k]);
    free(inner);
    return rc;
}

/* Reads SciPy's solutions for this size into s->fpd_scipy; success[i] = SLSQP's success flag.
 * Returns -1, or an exit code after the error line. */
static int read_scipy(ddn_ctx *ctx, const bench_cfg *c, effect_set *s, int64_t *success,
                      double *secs)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/less_%lldx%lld_scipy.safetensors", c->scipy, (long long)s->m,
             (long long)s->n);
    ddn_st_file *f = NULL;
    if (ddn_safetensors_open(ctx, path, &f) != DDN_OK) return cli_ctx_error(CMD, ctx);
    int rc = -1;
    const char *seed = ddn_safetensors_metadata(f, "seed"),
               *n = ddn_safetensors_metadata(f, "samples");
    const char *t = ddn_safetensors_metadata(f, "time_s");
    if (!seed || !n || atoll(seed) != c->seed || atoll(n) != s->N) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "%s was made for other problems (seed %s, samples %s; "
                       "this run: seed %lld, samples %lld)", path, seed ? seed : "?",
                       n ? n : "?", (long long)c->seed, (long long)s->N);
        goto done;
    }
    *secs = t ? atof(t) : NAN;
    ddn_tensor *y = ddn_tensor_new(ctx, DDN_DTYPE_F64, DDN_SHAPE(s->N, s->n));
    ddn_tensor *ok = ddn_tensor_new(ctx, DDN_DTYPE_I64, DDN_SHAPE(s->N));
    if (!y || !ok || ddn_safetensors_read_into(ctx, f, "y", y) != DDN_OK ||
        ddn_safetensors_read_into(ctx, f, "success", ok) != DDN_OK) {
        rc = cli_ctx_error(CMD, ctx);
        goto done;
    }
    /* SLSQP stops with | ||y|| - 1 | up to ~5e-7, and a point off the sphere can have a lower
     * FPD than the constrained optimum: compare feasible points, y / ||y||. */
    double *yp = ddn_tensor_ptr(y);
    for (int64_t i = 0; i < s->N; i++) {
        double nrm = 0;
        for (int64_t j = 0; j < s->n; j++) nrm += yp[i * s->n + j] * yp[i * s->n + j];
        nrm = sqrt(nrm);
        for (int64_t j = 0; nrm > 0 && j < s->n; j++) yp[i * s->n + j] /= nrm;
    }
    for (int64_t i = 0; i < s->N; i++) {
        s->fpd_scipy[i] = fpd_item((char *)s->A + (size_t)(i * s->m * s->n) * s->es,
                                   (char *)s->b + (size_t)(i * s->m) * s->es, s->dt,
                                   yp + i * s->n, DDN_DTYPE_F64, s->m, s->n);
        success[i] = ((const int64_t *)ddn_tensor_ptr(ok))[i];
    }
done:
    ddn_safetensors_close(f);
    ddn_ctx_reset_step(ctx);
    return rc;
}

static int effect_size(ddn_ctx *ctx, const bench_cfg *c, int64_t m, int64_t n)
{
    effect_set s = {.N = c->samples, .m = m, .n = n,
                    .dt = c->dtype == DT_F32 ? DDN_DTYPE_F32 : DDN_DTYPE_F64};
    s.es = ddn_dtype_size(s.dt);
    s.rtol = s.dt == DDN_DTYPE_F32 ? 1e-4 : 1e-6;
    s.atol = s.dt == DDN_DTYPE_F32 ? 1e-6 : 1e-9;
    double need = (double)s.N * (double)(m * n + m + n) * (double)s.es;
    if (need > c->max_mem_gib * BENCH_GIB)
        return cli_error(CMD, CLI_EXIT_FAIL, "less-effect %lldx%lld with %lld samples needs %.1f "
                         "GiB (> --max-mem %g): lower --samples or raise --max-mem", (long long)m,
                         (long long)n, (long long)s.N, need / BENCH_GIB, c->max_mem_gib);
    size_t N = (size_t)s.N;
    s.A = malloc((size_t)(m * n) * N * s.es), s.b = malloc((size_t)m * N * s.es);
    s.y = malloc((size_t)n * N * s.es);
    s.info = malloc(sizeof *s.info * N);
    s.fpd_exact = malloc(sizeof(double) * N), s.fpd = malloc(sizeof(double) * N);
    s.fpd_scipy = c->scipy ? malloc(sizeof(double) * N) : NULL;
    s.inner = malloc(sizeof(bool) * N);
    int64_t *success = c->scipy ? malloc(sizeof *success * N) : NULL;
    int rc = -1;
    if (!s.A || !s.b || !s.y || !s.info || !s.fpd_exact || !s.fpd || !s.inner ||
        (c->scipy && (!s.fpd_scipy || !success))) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "out of memory for %lldx%lld", (long long)m,
                       (long long)n);
        goto done;
    }
    /* Item i draws A_i (row-major) then b_i from one stream per size: the same problems whatever
     * the dtype (float32 rounds the float64 draws). */
    ddn_rng rng;
    ddn_rng_seed(&rng, (uint64_t)c->seed * 1000003u + (uint64_t)m * 1009u + (uint64_t)n);
    for (size_t i = 0; i < N; i++) {
        for (int64_t k = 0; k < m * n; k++) {
            double x = ddn_rng_normal(&rng);
            if (s.dt == DDN_DTYPE_F32) ((float *)s.A)[i * (size_t)(m * n) + (size_t)k] = (float)x;
            else ((double *)s.A)[i * (size_t)(m * n) + (size_t)k] = x;
        }
        for (int64_t k = 0; k < m; k++) {
            double x = ddn_rng_normal(&rng);
            if (s.dt == DDN_DTYPE_F32) ((float *)s.b)[i * (size_t)m + (size_t)k] = (float)x;
            else ((double *)s.b)[i * (size_t)m + (size_t)k] = x;
        }
    }
    char err[512];
    double t_exact = solve_all(ctx, &s, DDN_LESS_EXACT, err, sizeof err);
    if (isnan(t_exact)) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "exact solver failed on %lldx%lld: %s", (long long)m,
                       (long long)n, err);
        goto done;
    }
    int n_inner = 0;
    for (size_t i = 0; i < N; i++) {
        s.fpd_exact[i] = s.fpd[i], s.inner[i] = s.info[i].inner;
        n_inner += s.inner[i];
    }
    if (c->dump && (rc = dump_set(ctx, c, &s)) >= 0) goto done;
    double t_scipy = NAN;
    if (c->scipy && (rc = read_scipy(ctx, c, &s, success, &t_scipy)) >= 0) goto done;

    printf("### %lld x %lld (%lld samples: %d inner, %lld outer)\n\n", (long long)m,
           (long long)n, (long long)s.N, n_inner, (long long)s.N - n_inner);
    printf("| method | fail in | fail out | Imp. vs exact | Imp. vs SciPy | MRE %% vs exact | "
           "mean iters | time (s) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    if (c->scipy) {
        int fin = 0, fout = 0;
        double *keep = s.fpd;
        s.fpd = s.fpd_scipy;
        for (size_t i = 0; i < N; i++)
            if (!success[i]) fin += s.inner[i], fout += !s.inner[i];
        print_row(&s, "SciPy SLSQP", fin, fout, t_scipy, NAN, NULL);
        s.fpd = keep;
    }
    for (int r = 0; r < DDN_LESS_TABLE4_COUNT; r++) {
        char name[64];
        double t = solve_all(ctx, &s, ddn_less_table4[r], err, sizeof err);
        int fin = 0, fout = 0;
        double it = 0;
        for (size_t i = 0; i < N; i++) {
            if (!s.info[i].converged) fin += s.inner[i], fout += !s.inner[i];
            it += (double)s.info[i].iterations;
        }
        print_row(&s, ddn_less_method_name(ddn_less_table4[r], name, sizeof name), fin, fout, t,
                  it / (double)N, err[0] ? err : NULL);
    }
    /* The reference itself, for its time (its Imp. and MRE are N and 0 by definition). */
    memcpy(s.fpd, s.fpd_exact, sizeof(double) * N);
    print_row(&s, "EXACT (reference)", 0, 0, t_exact, 0, NULL);
    printf("\n");
    fflush(stdout);
done:
    free(s.A), free(s.b), free(s.y), free(s.info), free(s.fpd_exact), free(s.fpd);
    free(s.fpd_scipy), free(s.inner), free(success);
    return rc;
}

int bench_less_effect(const bench_cfg *c)
{
    printf("## LESS effectiveness (paper Tables 1/4)\n\n");
    cli_bench_header(stdout, c->argc, c->argv, c->dtype == DT_F32 ? "float32" : "float64");
    printf("A, b ~ N(0,1), seed %lld. Failures: the solve hit the 100-iteration cap, split by\n"
           "inner (||pinv(A) b|| < 1) and outer. FPD = ||A y - b|| in float64. Imp.: FPD <= "
           "FPD_ref (1 + %g) + %g. MRE: mean (FPD - FPD_exact) / FPD_exact. SciPy's solutions "
           "are normalised to unit norm before measuring.\n\n",
           (long long)c->seed, c->dtype == DT_F32 ? 1e-4 : 1e-6, c->dtype == DT_F32 ? 1e-6 : 1e-9);
    ddn_ctx *ctx = bench_ctx(c);
    if (!ctx) return CLI_EXIT_FAIL;
    int rc = -1;
    for (int k = 0; rc < 0 && k < c->nsizes; k++)
        rc = effect_size(ctx, c, c->sizes[k][0], c->sizes[k][1]);
    ddn_ctx_free(ctx);
    return rc < 0 ? 0 : rc;
}

/* ---- Table 2: backward cost -------------------------------------------------------------------
 */
typedef struct back_user {
    ddn_tensor *A, *b;
    ddn_less_opts o;
    ddn_less_backward bw;
    double *dA_ref; /* (B*m*n) from E, or NULL while E runs */
    double *dA;     /* this mode's dA */
    int64_t numel;
} back_user;

static ddn_tensor *back_forward(ddn_ctx *ctx, void *user)
{
    back_user *u = user;
    return ddn_less(ctx, u->A, u->b, &u->o, u->bw, NULL);
}

static void back_first(ddn_ctx *ctx, const ddn_tensor *y, void *user)
{
    back_user *u = user;
    if (u->A->grad) ddn_tensor_to_host(u->A->grad, DDN_DTYPE_F64, u->dA);
}

/* max |dA - dA_ref| / max |dA_ref| */
static double rel_diff(const double *a, const double *ref, int64_t n)
{
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - ref[i]));
        r = fmax(r, fabs(ref[i]));
    }
    return r > 0 ? d / r : d;
}

static int backward_size(const bench_cfg *c, int64_t B, int64_t m, int64_t n)
{
    static const char *const names[] = {"E (closed form)", "J (explicit Jacobian)", "unroll"};
    ddn_dtype dt = c->dtype == DT_F32 ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
    size_t es = ddn_dtype_size(dt);
    double *A = malloc(sizeof(double) * (size_t)(B * m * n)),
           *b = malloc(sizeof(double) * (size_t)(B * m));
    double *v = malloc(sizeof(double) * (size_t)(B * n));
    double *dA[3] = {malloc(sizeof(double) * (size_t)(B * m * n)),
                     malloc(sizeof(double) * (size_t)(B * m * n)),
                     malloc(sizeof(double) * (size_t)(B * m * n))};
    int rc = -1;
    if (!A || !b || !v || !dA[0] || !dA[1] || !dA[2]) {
        rc = cli_error(CMD, CLI_EXIT_FAIL, "out of memory for %lldx%lldx%lld", (long long)B,
                       (long long)m, (long long)n);
        goto done;
    }
    ddn_rng rng;
    ddn_rng_seed(&rng, (uint64_t)c->seed * 1000003u + (uint64_t)(B * m * n));
    bench_randn(&rng, A, B * m * n), bench_randn(&rng, b, B * m), bench_randn(&rng, v, B * n);

    printf("### B x m x n = %lld x %lld x %lld\n\n", (long long)B, (long long)m, (long long)n);
    printf("| backward | forward (ms) | backward (ms) | forward arena (MiB) | backward arena "
           "(MiB) | dA vs E (max rel.) |\n|---|---:|---:|---:|---:|---:|\n");
    double t_bwd[3] = {NAN, NAN, NAN}, mem_bwd[3] = {NAN, NAN, NAN};
    for (int mode = 0; mode < 3; mode++) {
        double jac = (double)(B * n) * (double)(m * n) * (double)es;
        if (mode == DDN_LESS_BACKWARD_J && jac > c->max_mem_gib * BENCH_GIB) {
            printf("| %s | skipped (needs %.3g GiB) | | | | |\n", names[mode], jac / BENCH_GIB);
            continue;
        }
        ddn_ctx *ctx = bench_ctx(c);
        if (!ctx) {
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        back_user u = {.o = DDN_LESS_OPTS_DEFAULT, .bw = (ddn_less_backward)mode,
                       .dA = dA[mode], .numel = B * m * n};
        u.A = bench_persistent(ctx, dt, DDN_SHAPE(B, m, n), A, true);
        u.b = bench_persistent(ctx, dt, DDN_SHAPE(B, m), b, true);
        ddn_tensor *tv = bench_persistent(ctx, dt, DDN_SHAPE(B, n), v, false);
        bench_measure r = {.err = ""};
        if (!u.A || !u.b || !tv) snprintf(r.err, sizeof r.err, "%s", ddn_ctx_errmsg(ctx));
        else
            bench_measure_layer(c, ctx, back_forward, back_first, &u,
                                (ddn_tensor *const[]){u.A, u.b}, 2, tv, &r);
        char f[4][32], diff[32];
        if (r.err[0]) {
            printf("| %s | error: %s | | | | |\n", names[mode], r.err);
        } else {
            t_bwd[mode] = r.bwd_ms, mem_bwd[mode] = r.bwd_mib;
            bench_fmt(diff, sizeof diff, "%.2e",
                      mode == 0 || isnan(t_bwd[0]) ? NAN : rel_diff(dA[mode], dA[0], B * m * n));
            printf("| %s | %s | %s | %s | %s | %s |\n", names[mode],
                   bench_fmt(f[0], 32, "%.3f", r.fwd_ms), bench_fmt(f[1], 32, "%.3f", r.bwd_ms),
                   bench_fmt(f[2], 32, "%.2f", r.fwd_mib), bench_fmt(f[3], 32, "%.2f", r.bwd_mib),
                   mode == 0 ? "(reference)" : diff);
        }
        ddn_tensor_free(u.A), ddn_tensor_free(u.b), ddn_tensor_free(tv);
        ddn_ctx_free(ctx);
        fflush(stdout);
    }
    if (!isnan(t_bwd[0]) && !isnan(t_bwd[1]))
        printf("\nJ / E: backward time x%.1f, backward arena x%.1f\n", t_bwd[1] / t_bwd[0],
               mem_bwd[0] > 0 ? mem_bwd[1] / mem_bwd[0] : NAN);
    printf("\n");
done:
    free(A), free(b), free(v), free(dA[0]), free(dA[1]), free(dA[2]);
    return rc;
}

int bench_less_backward(const bench_cfg *c)
{
    printf("## LESS backward cost (paper Table 2)\n\n");
    cli_bench_header(stdout, c->argc, c->argv, c->dtype == DT_F32 ? "float32" : "float64");
    printf("A (B,m,n), b (B,m) and the upstream gradient v (B,n) ~ N(0,1), seed %lld; forward "
           "PGD+RM+TWD (the paper's); times are per batch call, median of %lld runs after %lld "
           "warm-up. Arena: the step arena's high-water mark (ddn_ctx_stats) in the forward, and "
           "how far the backward raised it above what the forward left in use; the inputs and "
           "their gradients (persistent) are not counted.\n\n",
           (long long)c->seed, (long long)c->runs, (long long)c->warmup);
    int rc = -1;
    for (int k = 0; rc < 0 && k < c->nsizes; k++)
        rc = backward_size(c, c->sizes[k][0], c->sizes[k][1], c->sizes[k][2]);
    return rc < 0 ? 0 : rc;
}
