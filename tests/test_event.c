/* ddn — events for timing queued work (core/event.h): the host-clock version on the CPU always,
 * the CUDA-event version when a device exists (otherwise that test skips with one line). */
#include <stdio.h>
#include <string.h>

#include "ddn_impl.h"
#include "event.h"
#include "test_util.h"

/* Times a 256 x 256 matmul between two events of ctx; the elapsed time is positive and below a
 * generous bound, and re-recording the end moves it later. */
static void time_matmul(ddn_ctx *ctx)
{
    ddn_tensor *a = ddn_rand_normal(ctx, NULL, DDN_DTYPE_F32, DDN_SHAPE(256, 256), 0, 1);
    assert_non_null(a);
    ddn_tensor *on = ddn_tensor_to(ctx, a, ddn_ctx_device(ctx));
    assert_non_null(on);
    ddn_event *start = ddn_event_new(ctx), *end = ddn_event_new(ctx);
    assert_true(start && end);
    assert_ok(ctx, ddn_ctx_sync(ctx));
    assert_ok(ctx, ddn_event_record(start));
    assert_non_null(ddn_matmul(ctx, on, on));
    assert_ok(ctx, ddn_event_record(end));
    double ms = -1, later = -1;
    assert_ok(ctx, ddn_event_elapsed_ms(start, end, &ms));
    assert_true(ms > 0 && ms < 60e3);
    assert_non_null(ddn_matmul(ctx, on, on));
    assert_ok(ctx, ddn_event_record(end));
    assert_ok(ctx, ddn_event_elapsed_ms(start, end, &later));
    assert_true(later >= ms);
    ddn_event_free(start);
    ddn_event_free(end);
}

static void test_cpu_events(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    time_matmul(ctx);
    ddn_ctx_free(ctx);
}

static void test_misuse_is_an_error(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx(), *other = test_ctx();
    ddn_event *a = ddn_event_new(ctx), *b = ddn_event_new(ctx), *c = ddn_event_new(other);
    assert_true(a && b && c);
    double ms = 0;
    assert_ok(ctx, ddn_event_record(a));
    assert_int_equal(ddn_event_elapsed_ms(a, b, &ms), DDN_ERR_STATE);
    assert_error(ctx, DDN_ERR_STATE, "the end event was never recorded");
    ddn_ctx_clear_error(ctx);
    assert_ok(other, ddn_event_record(c));
    assert_int_equal(ddn_event_elapsed_ms(a, c, &ms), DDN_ERR_STATE);
    assert_error(other, DDN_ERR_STATE, "different contexts");
    ddn_event_free(a), ddn_event_free(b), ddn_event_free(c);
    ddn_event_free(NULL);
    ddn_ctx_free(ctx), ddn_ctx_free(other);
}

static void test_cuda_events(void **state)
{
    (void)state;
    const char *why = NULL;
    ddn_ctx *gpu = ddn_ctx_new(DDN_DEVICE_CUDA, &why);
    if (!gpu) {
        printf("skipped: CUDA events (%s)\n", why ? why : "no CUDA device");
        skip();
    }
    time_matmul(gpu);
    assert_ok(gpu, ddn_ctx_status(gpu));
    ddn_ctx_free(gpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_events),
        cmocka_unit_test(test_misuse_is_an_error),
        cmocka_unit_test(test_cuda_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
