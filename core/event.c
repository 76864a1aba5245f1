/* ddn — events for timing device work (core/event.h): the backend's events where it has them,
 * otherwise a synchronise and the host's monotonic clock. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <time.h>

#include "ddn_impl.h"
#include "event.h"

struct ddn_event {
    ddn_ctx *ctx;
    void *dev;     /* the backend's event, or NULL where the backend has none */
    double host_s; /* without one: the monotonic clock at the last record */
    bool recorded;
};

static bool has_events(const ddn_ctx *ctx)
{
    const ddn_backend *b = ctx->backend;
    return b->event_create && b->event_destroy && b->event_record && b->event_elapsed_ms;
}

ddn_status ddn_ctx_sync(ddn_ctx *ctx) { return ctx->backend->sync(ctx); }

ddn_event *ddn_event_new(ddn_ctx *ctx)
{
    ddn_event *e = calloc(1, sizeof *e);
    if (!e) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "event_new: out of host memory");
        return NULL;
    }
    e->ctx = ctx;
    if (has_events(ctx) && !(e->dev = ctx->backend->event_create(ctx))) {
        free(e);
        return NULL;
    }
    return e;
}

void ddn_event_free(ddn_event *e)
{
    if (!e) return;
    if (e->dev) e->ctx->backend->event_destroy(e->ctx, e->dev);
    free(e);
}

ddn_status ddn_event_record(ddn_event *e)
{
    ddn_ctx *ctx = e->ctx;
    ddn_status st = e->dev ? ctx->backend->event_record(ctx, e->dev) : ddn_ctx_sync(ctx);
    if (st != DDN_OK) return st;
    if (!e->dev) {
        struct timespec t;
        if (clock_gettime(CLOCK_MONOTONIC, &t) != 0)
            return ddn_ctx_set_error(ctx, DDN_ERR_BACKEND, "event_record: clock_gettime("
                                     "CLOCK_MONOTONIC) failed");
        e->host_s = (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
    }
    e->recorded = true;
    return DDN_OK;
}

ddn_status ddn_event_elapsed_ms(const ddn_event *start, const ddn_event *end, double *ms)
{
    ddn_ctx *ctx = end->ctx;
    if (start->ctx != ctx)
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "event_elapsed_ms: the two events belong to "
                                 "different contexts");
    if (!start->recorded || !end->recorded)
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "event_elapsed_ms: the %s event was never "
                                 "recorded (call ddn_event_record first)",
                                 start->recorded ? "end" : "start");
    if (start->dev) return ctx->backend->event_elapsed_ms(ctx, start->dev, end->dev, ms);
    *ms = 1e3 * (end->host_s - start->host_s);
    return DDN_OK;
}
