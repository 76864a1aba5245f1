/* ddn — tests of the loader (data/loader.c): batching, seeded shuffling, the prefetch thread,
 * resuming from a saved state, clean shutdown mid-epoch, and bad images (skip or strict).
 *
 * The small dataset is an IDX pair written here whose every pixel of item i is i, so a batch
 * tells which items it holds; labels are i % 4. The corrupt corpus is a temp copy of
 * tests/data/images_bad plus what git cannot store (an unreadable file, a dangling symlink, a
 * FIFO). Identity tests compare batches byte for byte.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#define N_ITEMS 23

static char tmpdir[64];
static char images[128], labels[128];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/ddn_test_loader_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(images, sizeof images, "%s/images.idx", tmpdir);
    snprintf(labels, sizeof labels, "%s/labels.idx", tmpdir);
    unsigned char im[16 + N_ITEMS * 6] = {0, 0, 8, 3, 0, 0, 0, N_ITEMS, 0, 0, 0, 2, 0, 0, 0, 3};
    unsigned char lab[8 + N_ITEMS] = {0, 0, 8, 1, 0, 0, 0, N_ITEMS};
    for (int i = 0; i < N_ITEMS; i++) {
        memset(im + 16 + 6 * i, i, 6);
        lab[8 + i] = (unsigned char)(i % 4);
    }
    FILE *f = fopen(images, "wb"), *g = fopen(labels, "wb");
    if (!f || !g) return -1;
    bool ok = fwrite(im, 1, sizeof im, f) == sizeof im;
    ok &= fwrite(lab, 1, sizeof lab, g) == sizeof lab;
    ok &= fclose(f) == 0;
    ok &= fclose(g) == 0;
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' && rm -rf '%s'", tmpdir, tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static ddn_dataset *small(ddn_ctx *ctx)
{
    ddn_dataset *ds = ddn_dataset_idx(ctx, images, labels);
    assert_non_null(ds);
    return ds;
}

/* Reads one epoch; idx[k] gets the item of the k-th delivered sample (from its pixels). Checks
 * labels and that every batch but the last is full. Returns the number of items. */
static int read_epoch(ddn_ctx *ctx, ddn_loader *ld, int64_t batch, int64_t *idx, int *n_batches)
{
    int n = 0, nb = 0;
    int64_t epoch = ddn_loader_epoch(ld);
    for (bool last = false;; nb++) {
        ddn_tensor *x, *y;
        assert_ok(ctx, ddn_loader_next(ld, &x, &y));
        if (!x) break;
        assert_false(last); /* only the final batch may be short */
        assert_int_equal(x->ndim, 4);
        assert_int_equal(y->shape[0], x->shape[0]);
        last = x->shape[0] < batch;
        const float *px = ddn_tensor_ptr(x);
        const int64_t *py = ddn_tensor_ptr(y);
        for (int64_t i = 0; i < x->shape[0]; i++) {
            int64_t item = lrint(px[i * 6] * 255.0);
            for (int j = 1; j < 6; j++) assert_true(px[i * 6 + j] == px[i * 6]);
            assert_int_equal(py[i], item % 4);
            idx[n++] = item;
        }
        ddn_ctx_reset_step(ctx);
    }
    assert_int_equal(ddn_loader_epoch(ld), epoch + 1);
    if (n_batches) *n_batches = nb;
    return n;
}

static void assert_permutation(const int64_t *idx, int n)
{
    int seen[N_ITEMS] = {0};
    assert_int_equal(n, N_ITEMS);
    for (int i = 0; i < n; i++) seen[idx[i]]++;
    for (int i = 0; i < N_ITEMS; i++) assert_int_equal(seen[i], 1);
}

static void test_batches_and_shuffle(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_dataset *ds = small(ctx);
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        ddn_loader_opts o = {.batch_size = 5, .prefetch = prefetch};
        ddn_loader *ld = ddn_loader_new(ctx, ds, &o);
        assert_non_null(ld);
        assert_int_equal(ddn_loader_batches_per_epoch(ld), 5);
        int64_t idx[N_ITEMS];
        int nb;
        for (int e = 0; e < 2; e++) { /* in order, 5 5 5 5 3, twice */
            assert_int_equal(read_epoch(ctx, ld, 5, idx, &nb), N_ITEMS);
            assert_int_equal(nb, 5);
            for (int i = 0; i < N_ITEMS; i++) assert_int_equal(idx[i], i);
        }
        ddn_loader_free(ld);

        o.drop_last = true; /* 4 batches of 5 */
        ld = ddn_loader_new(ctx, ds, &o);
        assert_int_equal(ddn_loader_batches_per_epoch(ld), 4);
        assert_int_equal(read_epoch(ctx, ld, 5, idx, &nb), 20);
        assert_int_equal(nb, 4);
        ddn_loader_free(ld);

        /* Shuffled: each epoch a permutation, epochs differ, the seed reproduces them. */
        o = (ddn_loader_opts){.batch_size = 4, .shuffle = true, .seed = 11, .prefetch = prefetch};
        int64_t run[3][2][N_ITEMS];
        const uint64_t seeds[3] = {11, 11, 12};
        for (int r = 0; r < 3; r++) {
            o.seed = seeds[r];
            ld = ddn_loader_new(ctx, ds, &o);
            for (int e = 0; e < 2; e++) assert_permutation(run[r][e], read_epoch(ctx, ld, 4,
                                                                                 run[r][e], NULL));
            ddn_loader_free(ld);
        }
        assert_memory_not_equal(run[0][0], run[0][1], sizeof run[0][0]);
        assert_memory_equal(run[0], run[1], sizeof run[0]);
        assert_memory_not_equal(run[0][0], run[2][0], sizeof run[0][0]);
    }
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

/* ---- identity: prefetch on/off, resume ------------------------------------------------------ */
static const ddn_transform PIPE[] = {
    {.kind = DDN_TF_RESIZE, .h = 4, .w = 4},
    {.kind = DDN_TF_RANDOM_CROP, .h = 3, .w = 3, .pad = 1},
    {.kind = DDN_TF_HFLIP, .p = 0.5},
    {.kind = DDN_TF_NORMALIZE, .n_stats = 1, .mean = {0.5f}, .std = {0.25f}},
};

typedef struct {
    unsigned char buf[64][5 * 9 * 4 + 5 * 8 + 8];
    int n;
} batches;

/* Appends the next nb batches (skipping epoch ends) to out, as bytes of x, y and the count. */
static void take_batches(ddn_ctx *ctx, ddn_loader *ld, int nb, batches *out)
{
    while (nb > 0) {
        ddn_tensor *x, *y;
        assert_ok(ctx, ddn_loader_next(ld, &x, &y));
        if (!x) continue;
        assert_true(out->n < 64);
        unsigned char *b = out->buf[out->n++];
        memset(b, 0, sizeof out->buf[0]);
        int64_t n = x->shape[0];
        memcpy(b, &n, 8);
        memcpy(b + 8, ddn_tensor_ptr(y), (size_t)n * 8);
        memcpy(b + 8 + 5 * 8, ddn_tensor_ptr(x), (size_t)n * 9 * 4);
        ddn_ctx_reset_step(ctx);
        nb--;
    }
}

static ddn_loader *pipe_loader(ddn_ctx *ctx, ddn_dataset *ds, int prefetch, uint64_t seed)
{
    ddn_loader_opts o = {.batch_size = 5, .shuffle = true, .seed = seed, .prefetch = prefetch,
                         .transforms = PIPE, .n_transforms = 4};
    ddn_loader *ld = ddn_loader_new(ctx, ds, &o);
    assert_non_null(ld);
    int c, h, w;
    ddn_loader_item_shape(ld, &c, &h, &w);
    assert_true(c == 1 && h == 3 && w == 3);
    return ld;
}

static void test_prefetch_identical(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_dataset *ds = small(ctx);
    static batches a, b, c;
    a.n = b.n = c.n = 0;
    ddn_loader *l0 = pipe_loader(ctx, ds, 0, 5), *l1 = pipe_loader(ctx, ds, 1, 5),
               *l3 = pipe_loader(ctx, ds, 3, 5);
    take_batches(ctx, l0, 17, &a);
    take_batches(ctx, l1, 17, &b);
    take_batches(ctx, l3, 17, &c);
    assert_memory_equal(a.buf, b.buf, sizeof a.buf[0] * 17);
    assert_memory_equal(a.buf, c.buf, sizeof a.buf[0] * 17);
    /* The random transforms do something: epochs 0 and 1 hold the same items, other pixels. */
    assert_memory_not_equal(a.buf[0], a.buf[5], sizeof a.buf[0]);
    ddn_loader_free(l0);
    ddn_loader_free(l1);
    ddn_loader_free(l3);
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

static void test_resume(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_dataset *ds = small(ctx);
    static batches straight, resumed;
    straight.n = 0;
    ddn_loader *ld = pipe_loader(ctx, ds, 2, 99);
    take_batches(ctx, ld, 20, &straight);
    ddn_loader_free(ld);
    /* 10 + 10 as in a checkpointed run; also mid-epoch splits and one at an epoch's end. */
    const int splits[] = {10, 1, 7, 13, 5};
    for (size_t k = 0; k < sizeof splits / sizeof *splits; k++) {
        resumed.n = 0;
        ld = pipe_loader(ctx, ds, 2, 99);
        take_batches(ctx, ld, splits[k], &resumed);
        ddn_loader_state st = ddn_loader_get_state(ld);
        ddn_loader_free(ld); /* the thread had batches beyond st queued: discarded */
        int64_t saved[6] = {st.version, st.seed, st.epoch, st.position, st.n_items, st.skipped};
        ld = pipe_loader(ctx, ds, 2, 12345); /* the seed comes back with the state */
        ddn_loader_state back = {saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]};
        assert_ok(ctx, ddn_loader_set_state(ld, &back));
        take_batches(ctx, ld, 20 - splits[k], &resumed);
        assert_memory_equal(straight.buf, resumed.buf, sizeof straight.buf[0] * 20);
        ddn_loader_free(ld);
    }
    /* Restoring in place (no new loader) also rewinds. */
    resumed.n = 0;
    ld = pipe_loader(ctx, ds, 2, 99);
    ddn_loader_state st0 = ddn_loader_get_state(ld);
    take_batches(ctx, ld, 3, &resumed);
    assert_ok(ctx, ddn_loader_set_state(ld, &st0));
    resumed.n = 0;
    take_batches(ctx, ld, 20, &resumed);
    assert_memory_equal(straight.buf, resumed.buf, sizeof straight.buf[0] * 20);
    /* A state from another dataset or version is refused. */
    ddn_loader_state bad = st0;
    bad.n_items = 24;
    assert_int_equal(ddn_loader_set_state(ld, &bad), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "24 items");
    bad = st0;
    bad.version = 7;
    assert_int_equal(ddn_loader_set_state(ld, &bad), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "version 7");
    ddn_loader_free(ld);
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

/* ---- shutdown --------------------------------------------------------------------------------- */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_free_mid_epoch(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_dataset *ds = small(ctx);
    ddn_loader_opts o = {.batch_size = 3, .shuffle = true, .prefetch = 4};
    for (int k = 0; k < 20; k++) { /* right after creation, and after k batches */
        ddn_loader *ld = ddn_loader_new(ctx, ds, &o);
        assert_non_null(ld);
        for (int i = 0; i < k % 5; i++) {
            ddn_tensor *x, *y;
            assert_ok(ctx, ddn_loader_next(ld, &x, &y));
        }
        ddn_loader_free(ld);
        ddn_ctx_reset_step(ctx);
    }
    /* A busy producer (big resizes, one batch of everything) stops at the next item. */
    ddn_transform big[] = {ddn_tf_resize(700, 700), ddn_tf_grey_to_rgb()};
    o = (ddn_loader_opts){.batch_size = N_ITEMS, .prefetch = 2, .transforms = big,
                          .n_transforms = 2};
    ddn_loader *ld = ddn_loader_new(ctx, ds, &o);
    assert_non_null(ld);
    struct timespec ms = {0, 20 * 1000 * 1000};
    nanosleep(&ms, NULL);
    double t0 = now();
    ddn_loader_free(ld);
    double dt = now() - t0;
    print_message("freeing a busy loader took %.3f s\n", dt);
    assert_true(dt < 5.0); /* one item is a few ms; a whole batch would be far more */
    ddn_loader_free(NULL);
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

static void test_loader_errors(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_dataset *ds = small(ctx);
    assert_null(ddn_loader_new(ctx, ds, &(ddn_loader_opts){.batch_size = 0}));
    assert_error(ctx, DDN_ERR_ARG, "batch size 0");
    assert_null(ddn_loader_new(ctx, ds, &(ddn_loader_opts){.batch_size = 24, .drop_last = true}));
    assert_error(ctx, DDN_ERR_ARG, "make no batch");
    ddn_transform n3 = ddn_tf_normalize3((const float[]){0, 0, 0}, (const float[]){1, 1, 1});
    assert_null(ddn_loader_new(ctx, ds, &(ddn_loader_opts){.batch_size = 2, .transforms = &n3,
                                                           .n_transforms = 1}));
    assert_error(ctx, DDN_ERR_ARG, "1-channel");
    ddn_dataset *folder = ddn_dataset_folder(ctx, test_data_path("images_bad"), NULL);
    assert_non_null(folder);
    assert_null(ddn_loader_new(ctx, folder, &(ddn_loader_opts){.batch_size = 2}));
    assert_error(ctx, DDN_ERR_ARG, "no fixed size");
    ddn_loader *ld = ddn_loader_new(ctx, ds, &(ddn_loader_opts){.batch_size = 2});
    ddn_tensor *x;
    assert_int_equal(ddn_loader_next(ld, &x, NULL), DDN_ERR_ARG);
    assert_error(ctx, DDN_ERR_ARG, "x or y is NULL");
    ddn_loader_free(ld);
    ddn_dataset_free(folder);
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

/* ---- bad images ------------------------------------------------------------------------------- */
static int expected_bad; /* entries under bad/ (all unreadable) */
static bool locked_readable; /* root reads the chmod-000 file */

static const char *corpus_copy(void)
{
    static char root[128];
    snprintf(root, sizeof root, "%s/corpus", tmpdir);
    struct stat sb;
    if (stat(root, &sb) == 0) return root;
    char cmd[1024], p[256];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", test_data_path("images_bad"), root);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/bad/dangling.png", root);
    assert_int_equal(symlink("/nonexistent/ddn/y.png", p), 0);
    snprintf(p, sizeof p, "%s/bad/fifo.gif", root);
    assert_int_equal(mkfifo(p, 0644), 0);
    snprintf(cmd, sizeof cmd, "cp '%s/c/g30.png' '%s/c/locked.png' && chmod 000 '%s/c/locked.png'",
             root, root, root);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/c/locked.png", root);
    locked_readable = access(p, R_OK) == 0;
    snprintf(cmd, sizeof cmd, "ls -A '%s/bad' | wc -l", root);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &expected_bad), 1);
    pclose(f);
    expected_bad += !locked_readable;
    return root;
}

static ddn_loader *corpus_loader(ddn_ctx *ctx, ddn_dataset *ds, bool strict, bool shuffle,
                                 int prefetch)
{
    ddn_loader_opts o = {.batch_size = 4, .shuffle = shuffle, .seed = 3, .prefetch = prefetch,
                         .strict = strict, .transforms = (ddn_transform[]){ddn_tf_center_crop(4, 5)},
                         .n_transforms = 1};
    ddn_loader *ld = ddn_loader_new(ctx, ds, &o);
    assert_non_null(ld);
    return ld;
}

static void test_bad_images_skipped(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const char *root = corpus_copy();
    ddn_dataset *ds = ddn_dataset_folder(ctx, root, &(ddn_folder_opts){.channels = 1});
    assert_non_null(ds);
    assert_string_equal(ddn_dataset_class_name(ds, 1), "bad");
    int good = 4 + locked_readable;
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        ddn_loader *ld = corpus_loader(ctx, ds, false, true, prefetch);
        for (int epoch = 1; epoch <= 2; epoch++) {
            int got = 0;
            for (;;) {
                ddn_tensor *x, *y;
                assert_ok(ctx, ddn_loader_next(ld, &x, &y));
                if (!x) break;
                const float *px = ddn_tensor_ptr(x);
                const int64_t *py = ddn_tensor_ptr(y);
                for (int64_t i = 0; i < x->shape[0]; i++, got++) {
                    long v = lrint(px[i * 20] * 255.0); /* 10, 20 in a/; 30, 40 in c/ */
                    assert_true(v == 10 || v == 20 || v == 30 || v == 40);
                    assert_int_equal(py[i], v <= 20 ? 0 : 2); /* never a wrong label */
                }
                ddn_ctx_reset_step(ctx);
            }
            assert_int_equal(got, good);
            assert_int_equal(ddn_loader_skipped(ld), epoch * expected_bad);
            assert_int_equal(ddn_loader_bad_count(ld), expected_bad); /* distinct items */
        }
        for (int64_t k = 0; k < expected_bad; k++) {
            int64_t index;
            const char *path, *reason;
            assert_true(ddn_loader_bad_item(ld, k, &index, &path, &reason));
            assert_true(ddn_dataset_label(ds, index) == 1 || strstr(path, "/c/locked.png"));
            assert_non_null(strstr(reason, path));
        }
        assert_false(ddn_loader_bad_item(ld, expected_bad, NULL, NULL, NULL));
        assert_int_equal(ddn_loader_get_state(ld).skipped, 2 * expected_bad);
        ddn_loader_free(ld);
    }
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

static void test_bad_images_strict(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    const char *root = corpus_copy();
    ddn_dataset *ds = ddn_dataset_folder(ctx, root, &(ddn_folder_opts){.channels = 1});
    assert_non_null(ds);
    char want[512];
    snprintf(want, sizeof want, "%s/bad/bad_crc.png", root); /* first bad file in item order */
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        ddn_loader *ld = corpus_loader(ctx, ds, true, false, prefetch);
        ddn_tensor *x, *y;
        for (int again = 0; again < 2; again++) { /* and stays failed */
            assert_int_equal(ddn_loader_next(ld, &x, &y), DDN_ERR_FORMAT);
            assert_null(x);
            assert_error(ctx, DDN_ERR_FORMAT, want);
        }
        assert_int_equal(ddn_loader_get_state(ld).position, 0);
        assert_int_equal(ddn_loader_skipped(ld), 0);
        ddn_loader_free(ld);
    }
    /* Strict on a clean subset (a/ and c/ only) runs through. */
    int64_t good[4], n = 0;
    for (int64_t i = 0; i < ddn_dataset_len(ds); i++)
        if (ddn_dataset_label(ds, i) != 1 && !strstr(ddn_dataset_path(ds, i), "locked"))
            good[n++] = i;
    assert_int_equal(n, 4);
    ddn_dataset *clean = ddn_dataset_subset(ctx, ds, 4, good);
    ddn_loader *ld = corpus_loader(ctx, clean, true, true, 2);
    ddn_tensor *x, *y;
    assert_ok(ctx, ddn_loader_next(ld, &x, &y));
    assert_int_equal(x->shape[0], 4);
    ddn_loader_free(ld);
    ddn_dataset_free(clean);
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

/* ---- Fashion-MNIST ---------------------------------------------------------------------------- */
static void test_fashion_mnist_loader(void **state)
{
    (void)state;
    ddn_ctx *ctx = test_ctx();
    ddn_dataset *ds = ddn_dataset_fashion_mnist(ctx, NULL, false);
    if (!ds) {
        print_message("[  SKIP    ] Fashion-MNIST: %s\n", ddn_ctx_errmsg(ctx));
        ddn_ctx_free(ctx);
        return;
    }
    ddn_transform tf[] = {ddn_tf_random_crop(28, 28, 2), ddn_tf_hflip(0.5),
                          ddn_tf_normalize1(0.2860f, 0.3530f)};
    ddn_loader_opts o = {.batch_size = 256, .shuffle = true, .seed = 1, .prefetch = 2,
                         .transforms = tf, .n_transforms = 3};
    ddn_loader *ld = ddn_loader_new(ctx, ds, &o);
    assert_non_null(ld);
    assert_int_equal(ddn_loader_batches_per_epoch(ld), 40);
    for (int b = 0; b < 5; b++) {
        ddn_tensor *x, *y;
        assert_ok(ctx, ddn_loader_next(ld, &x, &y));
        assert_true(x->shape[0] == 256 && x->shape[1] == 1 && x->shape[2] == 28 &&
                    x->shape[3] == 28);
        const int64_t *py = ddn_tensor_ptr(y);
        for (int i = 0; i < 256; i++) assert_true(py[i] >= 0 && py[i] < 10);
        ddn_ctx_reset_step(ctx);
    }
    ddn_loader_free(ld); /* mid-epoch, with batches queued */
    ddn_dataset_free(ds);
    ddn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_and_shuffle),
        cmocka_unit_test(test_prefetch_identical),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_free_mid_epoch),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_bad_images_skipped),
        cmocka_unit_test(test_bad_images_strict),
        cmocka_unit_test(test_fashion_mnist_loader),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
