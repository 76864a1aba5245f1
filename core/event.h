/* ddn — timing device work (internal: tools/ and bench/ use it; not installed).
 *
 * An event marks a point in a context's queue of work. On CUDA it is a cudaEvent_t recorded on the
 * context's stream, and the time between two events is the device's own measure of the work
 * queued between them (no host-side launch overhead once the queue is full). On a backend without
 * events (the CPU, whose kernels have finished when they return) recording synchronises the
 * context and reads the monotonic clock, so the same calls time the same region everywhere.
 *
 *     ddn_event *a = ddn_event_new(ctx), *b = ddn_event_new(ctx);
 *     ddn_event_record(a); ...work...; ddn_event_record(b);
 *     double ms; ddn_event_elapsed_ms(a, b, &ms);    // waits for b
 *
 * Every call returns a status (NULL for ddn_event_new) with the message on the context.
 * Tests: tests/test_event.c.
 */
#ifndef DDN_EVENT_H
#define DDN_EVENT_H

#include "context.h"

typedef struct ddn_event ddn_event;

/* A new, unrecorded event of ctx; NULL with the error set on failure. */
ddn_event *ddn_event_new(ddn_ctx *ctx);
void ddn_event_free(ddn_event *e); /* NULL is fine */
/* Marks the current end of the context's queue (re-recording moves the mark). */
ddn_status ddn_event_record(ddn_event *e);
/* Waits until end has been reached, then *ms = the time from start to end (both recorded, same
 * context; DDN_ERR_STATE otherwise). */
ddn_status ddn_event_elapsed_ms(const ddn_event *start, const ddn_event *end, double *ms);

/* Waits until every kernel and copy queued on ctx has finished (a no-op on the CPU). */
ddn_status ddn_ctx_sync(ddn_ctx *ctx);

#endif
