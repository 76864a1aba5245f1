/* bench_matmul — ddn_matmul against the raw cblas_sgemm/cblas_dgemm it wraps.
 *
 * Square n x n products, n = 256 ... 2048, float32 and float64. Each run times enough calls to
 * last about 0.1 s; ddn and raw runs alternate (so a noisy neighbour hits both alike), after one
 * warm-up run each, and the median of the runs is reported in GFLOP/s (2 n^3 per product) with
 * the ratio ddn / raw (target >= 0.95: the wrapper should cost nothing). Markdown on stdout.
 *
 *     ./build/bench_matmul [--threads 2] [--runs 7]
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "ddn.h"

typedef struct {
    ddn_ctx *ctx;
    ddn_tensor *a, *b; /* ddn operands (n, n) */
    void *ra, *rb, *rc; /* raw host buffers for BLAS */
    int n;
    ddn_dtype dt;
} problem;

/* Seconds per product over `calls` products; ddn or raw. Exits on a ddn error. */
static double time_calls(const problem *p, bool use_ddn, int calls)
{
    int n = p->n;
    double t0 = bench_now();
    for (int i = 0; i < calls; i++) {
        if (use_ddn) {
            ddn_mark mark = ddn_ctx_mark(p->ctx); /* the result lives in the step arena */
            if (!ddn_matmul(p->ctx, p->a, p->b)) {
                fprintf(stderr, "bench_matmul: %s\n", ddn_ctx_errmsg(p->ctx));
                exit(1);
            }
            ddn_ctx_rewind(p->ctx, mark);
        } else if (p->dt == DDN_DTYPE_F32) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, p->ra, n, p->rb,
                        n, 0.0f, p->rc, n);
        } else {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, p->ra, n, p->rb,
                        n, 0.0, p->rc, n);
        }
    }
    return (bench_now() - t0) / calls;
}

static void bench(ddn_ctx *ctx, int n, ddn_dtype dt, int runs)
{
    problem p = {.ctx = ctx, .n = n, .dt = dt};
    size_t bytes = (size_t)n * n * ddn_dtype_size(dt);
    p.a = ddn_rand_uniform(ctx, NULL, dt, DDN_SHAPE(n, n), -1, 1);
    p.b = ddn_rand_uniform(ctx, NULL, dt, DDN_SHAPE(n, n), -1, 1);
    p.ra = malloc(bytes);
    p.rb = malloc(bytes);
    p.rc = malloc(bytes);
    if (!p.a || !p.b || !p.ra || !p.rb || !p.rc) {
        fprintf(stderr, "bench_matmul: setup failed for n = %d: %s\n", n, ddn_ctx_errmsg(ctx));
        exit(1);
    }
    if (ddn_tensor_to_host(p.a, dt, p.ra) != DDN_OK || ddn_tensor_to_host(p.b, dt, p.rb) != DDN_OK) {
        fprintf(stderr, "bench_matmul: %s\n", ddn_ctx_errmsg(ctx));
        exit(1);
    }
    double flops = 2.0 * n * n * (double)n;
    /* warm-up, which also sizes a run to about 0.1 s */
    time_calls(&p, false, 1);
    double t1 = time_calls(&p, true, 1);
    int calls = (int)(0.1 / t1) + 1;
    double *td = malloc((size_t)runs * sizeof *td), *tr = malloc((size_t)runs * sizeof *tr);
    if (!td || !tr) exit(1);
    for (int r = 0; r < runs; r++) { /* alternate, starting with each side in turn */
        bool ddn_first = r % 2 == 0;
        double x = time_calls(&p, ddn_first, calls), y = time_calls(&p, !ddn_first, calls);
        td[r] = ddn_first ? x : y;
        tr[r] = ddn_first ? y : x;
    }
    qsort(td, (size_t)runs, sizeof *td, bench_cmp_double);
    qsort(tr, (size_t)runs, sizeof *tr, bench_cmp_double);
    double gd = flops / td[runs / 2] / 1e9, gr = flops / tr[runs / 2] / 1e9;
    printf("| %4d | %s | %8.1f | %8.1f | %5.3f |\n", n, dt == DDN_DTYPE_F32 ? "sgemm" : "dgemm",
           gd, gr, gd / gr);
    fflush(stdout);
    free(td), free(tr), free(p.ra), free(p.rb), free(p.rc);
    ddn_ctx_reset_step(ctx);
}

int main(int argc, char **argv)
{
    int threads = 2, runs = 7;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    }
    if (argc % 2 == 0 || threads < 1 || runs < 1) {
        fprintf(stderr, "usage: %s [--threads N] [--runs N]\n", argv[0]);
        return 1;
    }
    ddn_set_num_threads(threads); /* OpenMP and OpenBLAS threads: both sides use these */
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
    if (!ctx) return fprintf(stderr, "bench_matmul: no CPU context\n"), 1;
    printf("## ddn_matmul vs raw OpenBLAS\n\n");
    printf("OpenBLAS core: %s, threads: %d (OpenBLAS reports %d), median of %d alternating runs "
           "of ~0.1 s each\n\n", openblas_get_corename(), threads, openblas_get_num_threads(),
           runs);
    printf("|    n | op    | ddn GFLOP/s | raw GFLOP/s | ratio |\n");
    printf("|-----:|-------|---------:|---------:|------:|\n");
    const int sizes[4] = {256, 512, 1024, 2048};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 4; i++) bench(ctx, sizes[i], d ? DDN_DTYPE_F64 : DDN_DTYPE_F32, runs);
    ddn_ctx_free(ctx);
    return 0;
}
