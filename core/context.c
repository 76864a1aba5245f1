/* ddn — the context: sticky errors, the step arena (host metadata + device data), the tape
 * storage, statistics and the assert hook. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ddn_impl.h"

#define ARENA_ALIGN 64
#define META_FIRST_BLOCK ((size_t)1 << 20)
#define DATA_FIRST_BLOCK ((size_t)16 << 20)

static const char *const status_names[DDN_STATUS_COUNT] = {
    [DDN_OK] = "ok",
    [DDN_ERR_ARG] = "invalid argument",
    [DDN_ERR_SHAPE] = "shape error",
    [DDN_ERR_DTYPE] = "dtype error",
    [DDN_ERR_DEVICE] = "device error",
    [DDN_ERR_OOM] = "out of memory",
    [DDN_ERR_IO] = "I/O error",
    [DDN_ERR_FORMAT] = "format error",
    [DDN_ERR_NUMERIC] = "numeric error",
    [DDN_ERR_NOT_CONVERGED] = "not converged",
    [DDN_ERR_SINGULAR] = "singular system",
    [DDN_ERR_BACKEND] = "backend error",
    [DDN_ERR_UNSUPPORTED] = "unsupported",
    [DDN_ERR_STATE] = "invalid state",
};
_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == DDN_STATUS_COUNT,
               "status_names must name every ddn_status");

const char *ddn_status_str(ddn_status s)
{
    if ((unsigned)s >= DDN_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

/* ---- assert hook ------------------------------------------------------------------------------ */
static ddn_assert_hook assert_hook;

void ddn_set_assert_hook(ddn_assert_hook hook) { assert_hook = hook; }

void ddn_assert_fail(const char *expr, const char *file, int line)
{
    if (assert_hook) {
        assert_hook(expr, file, line);
        return;
    }
    fprintf(stderr, "ddn: internal invariant failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* ---- arena ------------------------------------------------------------------------------------ */
static void *arena_alloc(ddn_ctx *ctx, ddn_arena *a, size_t bytes, size_t first_block)
{
    bytes = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (bytes == 0) bytes = ARENA_ALIGN;
    while (a->cur < a->n_blocks) {
        ddn_arena_block *b = &a->blocks[a->cur];
        if (b->size - b->used >= bytes) {
            void *p = b->base + b->used;
            b->used += bytes;
            a->in_use += bytes;
            size_t total = ctx->meta.in_use + ctx->data.in_use;
            if (total > ctx->arena_high_water) ctx->arena_high_water = total;
            return p;
        }
        a->cur++;
        if (a->cur < a->n_blocks) a->blocks[a->cur].used = 0;
    }
    if (a->n_blocks == a->cap_blocks) {
        int cap = a->cap_blocks ? 2 * a->cap_blocks : 8;
        ddn_arena_block *nb = realloc(a->blocks, (size_t)cap * sizeof *nb);
        if (!nb) return NULL;
        a->blocks = nb;
        a->cap_blocks = cap;
    }
    size_t size = a->n_blocks ? 2 * a->blocks[a->n_blocks - 1].size : first_block;
    if (size < bytes) size = bytes;
    void *base = a->device_memory ? ctx->backend->alloc(ctx, size) : aligned_alloc(ARENA_ALIGN, size);
    if (!base) return NULL;
    a->blocks[a->n_blocks] = (ddn_arena_block){.base = base, .size = size, .used = 0};
    a->cur = a->n_blocks++;
    a->reserved += size;
    return arena_alloc(ctx, a, bytes, first_block);
}

static void arena_release(ddn_ctx *ctx, ddn_arena *a)
{
    for (int i = 0; i < a->n_blocks; i++) {
        if (a->device_memory) ctx->backend->free(ctx, a->blocks[i].base);
        else free(a->blocks[i].base);
    }
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

static void arena_rewind(ddn_arena *a, int block, size_t used)
{
    if (a->n_blocks == 0) return;
    a->in_use = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        if (i < block) a->in_use += a->blocks[i].used;
        else if (i == block) a->blocks[i].used = used, a->in_use += used;
        else a->blocks[i].used = 0;
    }
    a->cur = block;
}

void *ddn_ctx_scratch(ddn_ctx *ctx, size_t bytes)
{
    void *p = arena_alloc(ctx, &ctx->meta, bytes, META_FIRST_BLOCK);
    if (!p) ddn_ctx_set_error(ctx, DDN_ERR_OOM, "step arena: cannot allocate %zu bytes", bytes);
    return p;
}

void *ddn_arena_alloc_data(ddn_ctx *ctx, size_t bytes)
{
    void *p = arena_alloc(ctx, &ctx->data, bytes, DATA_FIRST_BLOCK);
    if (!p)
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "step arena: cannot allocate %zu bytes of %s memory",
                          bytes, ctx->backend->name);
    return p;
}

void ddn_ctx_note_persistent(ddn_ctx *ctx, ptrdiff_t delta)
{
    ctx->persistent_bytes += delta;
    if (ctx->persistent_bytes > ctx->persistent_high_water)
        ctx->persistent_high_water = ctx->persistent_bytes;
}

/* ---- life cycle ------------------------------------------------------------------------------- */
ddn_ctx *ddn_ctx_new(ddn_device device, const char **why)
{
    const ddn_backend *be = ddn_backend_get(device);
    if (!be) {
        if (why)
            *why = device == DDN_DEVICE_CUDA
                       ? "CUDA device requested, but this build has no CUDA backend (built with "
                         "DDN_CUDA=OFF or without nvcc)"
                       : "unknown device";
        return NULL;
    }
    ddn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        if (why) *why = "out of memory creating the context";
        return NULL;
    }
    ctx->device = device;
    ctx->backend = be;
    ddn_kernels_complete(&ctx->kernels, be->k);
    if (be->init && be->init(ctx, why) != DDN_OK) { /* e.g. CUDA built in, but no device */
        free(ctx);
        return NULL;
    }
    ctx->grad_enabled = true;
    ctx->data.device_memory = true;
    ddn_rng_seed(&ctx->rng, 0);
    const char *env = getenv("DDN_CHECK_NUMERICS");
    ctx->check_numerics = env && env[0] && strcmp(env, "0") != 0;
    return ctx;
}

void ddn_ctx_free(ddn_ctx *ctx)
{
    if (!ctx) return;
    arena_release(ctx, &ctx->meta);
    arena_release(ctx, &ctx->data);
    if (ctx->backend->destroy) ctx->backend->destroy(ctx); /* after the memory it allocated */
    free(ctx->tape);
    free(ctx);
}

ddn_device ddn_ctx_device(const ddn_ctx *ctx) { return ctx->device; }

/* ---- errors ----------------------------------------------------------------------------------- */
ddn_status ddn_ctx_status(const ddn_ctx *ctx) { return ctx->status; }
const char *ddn_ctx_errmsg(const ddn_ctx *ctx) { return ctx->errmsg; }

void ddn_ctx_clear_error(ddn_ctx *ctx)
{
    ctx->status = DDN_OK;
    ctx->errmsg[0] = '\0';
}

ddn_status ddn_ctx_set_error(ddn_ctx *ctx, ddn_status s, const char *fmt, ...)
{
    if (ctx->status != DDN_OK || s == DDN_OK) return s;
    ctx->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- step memory ------------------------------------------------------------------------------ */
void ddn_ctx_reset_step(ddn_ctx *ctx)
{
    arena_rewind(&ctx->meta, 0, 0);
    arena_rewind(&ctx->data, 0, 0);
    ctx->tape_len = 0;
}

ddn_mark ddn_ctx_mark(const ddn_ctx *ctx)
{
    ddn_mark m = {0};
    m.tape_len = ctx->tape_len;
    m.meta_block = ctx->meta.cur;
    m.meta_used = ctx->meta.n_blocks ? ctx->meta.blocks[ctx->meta.cur].used : 0;
    m.data_block = ctx->data.cur;
    m.data_used = ctx->data.n_blocks ? ctx->data.blocks[ctx->data.cur].used : 0;
    return m;
}

void ddn_ctx_rewind(ddn_ctx *ctx, ddn_mark m)
{
    arena_rewind(&ctx->meta, m.meta_block, m.meta_used);
    arena_rewind(&ctx->data, m.data_block, m.data_used);
    if (m.tape_len < ctx->tape_len) ctx->tape_len = m.tape_len;
}

ddn_stats ddn_ctx_stats(const ddn_ctx *ctx)
{
    return (ddn_stats){
        .arena_in_use = ctx->meta.in_use + ctx->data.in_use,
        .arena_high_water = ctx->arena_high_water,
        .arena_reserved = ctx->meta.reserved + ctx->data.reserved,
        .persistent_bytes = ctx->persistent_bytes,
        .persistent_high_water = ctx->persistent_high_water,
        .tape_nodes = ctx->tape_len,
    };
}

/* ---- numerics, RNG, threads ------------------------------------------------------------------- */
void ddn_ctx_set_check_numerics(ddn_ctx *ctx, bool on) { ctx->check_numerics = on; }
bool ddn_ctx_check_numerics(const ddn_ctx *ctx) { return ctx->check_numerics; }
ddn_rng *ddn_ctx_rng(ddn_ctx *ctx) { return &ctx->rng; }

extern void openblas_set_num_threads(int n);
extern int openblas_get_num_threads(void);

void ddn_set_num_threads(int n)
{
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    openblas_set_num_threads(n);
}

int ddn_get_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return openblas_get_num_threads();
#endif
}
