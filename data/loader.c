/* ddn — the loader: seeded shuffling, batching, and a prefetch thread with a bounded queue.
 *
 * A batch is named by (epoch, position): it holds the items perm_epoch[position ..
 * position + batch_size), minus the ones that cannot be read. The permutation and each item's
 * random transforms depend only on (seed, epoch, item), so a batch's contents do not depend on
 * who made it or when: with prefetch the thread makes batches in order into a ring of slots
 * ahead of the caller, without it the caller makes each one on demand, and both run the same
 * make_batch(). The caller's (epoch, position) is the loader state; restoring it restarts the
 * producer there. The thread never touches the context: a slot carries its status, message and
 * bad-item records back, and ddn_loader_next reports them on the caller's thread.
 *
 * Locking: one mutex guards head/count/stop; the producer owns slot (head + count) % depth while
 * it fills it, the caller owns slot head from taking it until releasing it.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"

#define LOADER_MAX_PREFETCH 64

typedef struct {
    int64_t index;
    ddn_status st;
    char msg[DDN_DATA_MSG];
} bad_rec;

typedef struct {
    float *x;               /* batch_size x item_floats */
    int64_t *y;
    int64_t n;              /* items in the batch */
    int64_t epoch, pos, next_pos;
    ddn_status st;          /* a hard error, or a bad item in strict mode */
    char msg[DDN_DATA_MSG];
    bad_rec *bad;           /* batch_size records */
    int64_t n_bad;
} slot;

typedef struct {
    int64_t epoch, pos;     /* the next batch to make */
    int64_t perm_epoch;     /* the epoch perm holds, -1: none */
    int64_t *perm;
    bool failed;            /* made a failed batch: makes no more */
} producer;

struct ddn_loader {
    ddn_ctx *ctx;
    ddn_dataset *ds;
    ddn_transform *tf;
    int n_tf;
    int64_t batch, n;
    bool shuffle, drop_last, strict;
    uint64_t seed;
    int c, h, w;
    size_t item_floats;
    /* the caller's side */
    int64_t epoch, pos, skipped;
    ddn_status failed;
    char failed_msg[DDN_DATA_MSG];
    int64_t n_bad, cap_bad;
    int64_t *bad_index;
    char **bad_msg;
    unsigned char *bad_seen; /* n flags, allocated at the first bad item */
    /* batches */
    int depth;
    slot *slots;
    producer prod;
    bool sync_ready;         /* no thread: slots[0] holds the next batch already */
    /* the thread */
    bool threaded, running;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    int head, count;
    atomic_int stop;
};

/* Lock and wait failures only come from misuse (an invalid or destroyed mutex): invariants. */
static void lock(ddn_loader *ld) { DDN_ASSERT(pthread_mutex_lock(&ld->mu) == 0); }
static void unlock(ddn_loader *ld) { DDN_ASSERT(pthread_mutex_unlock(&ld->mu) == 0); }
static void wait_on(ddn_loader *ld, pthread_cond_t *cv)
{
    DDN_ASSERT(pthread_cond_wait(cv, &ld->mu) == 0);
}

static bool epoch_done(const ddn_loader *ld, int64_t pos)
{
    return pos >= ld->n || (ld->drop_last && ld->n - pos < ld->batch);
}

/* ---- making a batch (the thread, or the caller without one) ----------------------------------- */
static void make_perm(const ddn_loader *ld, producer *p)
{
    for (int64_t i = 0; i < ld->n; i++) p->perm[i] = i;
    if (ld->shuffle) {
        ddn_rng rng;
        ddn_rng_seed(&rng, ddn_data_mix64(ddn_data_mix64(ld->seed ^ 0x73687566666c65ull) ^
                                          (uint64_t)p->epoch)); /* "shuffle" */
        for (int64_t i = ld->n - 1; i > 0; i--) {
            int64_t j = (int64_t)ddn_rng_below(&rng, (uint64_t)i + 1), t = p->perm[i];
            p->perm[i] = p->perm[j];
            p->perm[j] = t;
        }
    }
    p->perm_epoch = p->epoch;
}

/* HWC image -> CHW at dst. */
static void put_chw(float *dst, const ddn_image *img)
{
    size_t hw = (size_t)img->h * img->w;
    for (int ch = 0; ch < img->c; ch++)
        for (size_t i = 0; i < hw; i++) dst[ch * hw + i] = img->data[i * img->c + ch];
}

/* Fills s with the batch at (p->epoch, p->pos) and moves p on. false: stopped part way. */
static bool make_batch(ddn_loader *ld, producer *p, slot *s)
{
    if (epoch_done(ld, p->pos)) { /* restored at an epoch's end */
        p->epoch++;
        p->pos = 0;
    }
    if (p->perm_epoch != p->epoch) make_perm(ld, p);
    int64_t end = p->pos + ld->batch < ld->n ? p->pos + ld->batch : ld->n;
    s->epoch = p->epoch;
    s->pos = p->pos;
    s->next_pos = end;
    s->n = s->n_bad = 0;
    s->st = DDN_OK;
    s->msg[0] = '\0';
    for (int64_t k = p->pos; k < end; k++) {
        if (atomic_load(&ld->stop)) return false;
        int64_t item = p->perm[k];
        ddn_image img;
        ddn_status st = ddn_data_item(ld->ds, item, &img, s->msg);
        if (st == DDN_ERR_IO || st == DDN_ERR_FORMAT) {
            if (ld->strict) {
                s->st = st;
                break;
            }
            bad_rec *b = &s->bad[s->n_bad++];
            b->index = item;
            b->st = st;
            memcpy(b->msg, s->msg, sizeof b->msg);
            s->msg[0] = '\0';
            continue;
        }
        if (st == DDN_OK)
            st = ddn_data_tf_apply(ld->tf, ld->n_tf, ddn_data_item_seed(ld->seed, p->epoch, item),
                                   &img, s->msg);
        if (st == DDN_OK && (img.c != ld->c || img.h != ld->h || img.w != ld->w))
            st = ddn_data_err(s->msg, DDN_ERR_SHAPE, "loader: item %" PRId64 " is %d x %d x %d "
                              "after the transforms: expected %d x %d x %d", item, img.c, img.h,
                              img.w, ld->c, ld->h, ld->w);
        if (st != DDN_OK) { /* not the file's fault (memory, shapes): fatal in any mode */
            ddn_image_free(&img);
            s->st = st;
            break;
        }
        put_chw(s->x + (size_t)s->n * ld->item_floats, &img);
        s->y[s->n++] = ddn_dataset_label(ld->ds, item);
        ddn_image_free(&img);
    }
    if (s->st != DDN_OK) {
        p->failed = true;
        return true;
    }
    p->pos = end;
    if (epoch_done(ld, p->pos)) {
        p->epoch++;
        p->pos = 0;
    }
    return true;
}

static void *producer_main(void *arg)
{
    ddn_loader *ld = arg;
    lock(ld);
    for (;;) {
        while (!atomic_load(&ld->stop) && (ld->count == ld->depth || ld->prod.failed))
            wait_on(ld, &ld->not_full);
        if (atomic_load(&ld->stop)) break;
        slot *s = &ld->slots[(ld->head + ld->count) % ld->depth];
        unlock(ld);
        bool done = make_batch(ld, &ld->prod, s);
        lock(ld);
        if (!done) break;
        ld->count++;
        DDN_ASSERT(pthread_cond_signal(&ld->not_empty) == 0);
    }
    unlock(ld);
    return NULL;
}

/* ---- the thread's life ------------------------------------------------------------------------ */
static void stop_thread(ddn_loader *ld)
{
    if (!ld->running) return;
    lock(ld);
    atomic_store(&ld->stop, 1);
    DDN_ASSERT(pthread_cond_broadcast(&ld->not_full) == 0);
    unlock(ld);
    DDN_ASSERT(pthread_join(ld->thread, NULL) == 0);
    ld->running = false;
}

/* Makes the producer start at the caller's (epoch, pos), with an empty queue. */
static ddn_status restart(ddn_loader *ld)
{
    stop_thread(ld);
    ld->prod.epoch = ld->epoch;
    ld->prod.pos = ld->pos;
    ld->prod.failed = false;
    ld->head = ld->count = 0;
    ld->sync_ready = false;
    atomic_store(&ld->stop, 0);
    if (!ld->threaded) return DDN_OK;
    int e = pthread_create(&ld->thread, NULL, producer_main, ld);
    if (e != 0)
        return ddn_ctx_set_error(ld->ctx, DDN_ERR_BACKEND, "loader: cannot start the prefetch "
                                 "thread: %s", strerror(e));
    ld->running = true;
    return DDN_OK;
}

/* ---- create and free -------------------------------------------------------------------------- */
void ddn_loader_free(ddn_loader *ld)
{
    if (!ld) return;
    stop_thread(ld);
    if (ld->threaded) {
        pthread_mutex_destroy(&ld->mu);
        pthread_cond_destroy(&ld->not_empty);
        pthread_cond_destroy(&ld->not_full);
    }
    for (int i = 0; ld->slots && i < ld->depth; i++) {
        free(ld->slots[i].x);
        free(ld->slots[i].y);
        free(ld->slots[i].bad);
    }
    free(ld->slots);
    free(ld->prod.perm);
    for (int64_t i = 0; i < ld->n_bad; i++) free(ld->bad_msg[i]);
    free(ld->bad_msg);
    free(ld->bad_index);
    free(ld->bad_seen);
    free(ld->tf);
    ddn_dataset_free(ld->ds);
    free(ld);
}

static ddn_status init_sync(ddn_loader *ld)
{
    int e = pthread_mutex_init(&ld->mu, NULL);
    if (e != 0) return ddn_ctx_set_error(ld->ctx, DDN_ERR_BACKEND, "loader: mutex: %s",
                                         strerror(e));
    if ((e = pthread_cond_init(&ld->not_empty, NULL)) != 0) {
        pthread_mutex_destroy(&ld->mu);
        return ddn_ctx_set_error(ld->ctx, DDN_ERR_BACKEND, "loader: condvar: %s", strerror(e));
    }
    if ((e = pthread_cond_init(&ld->not_full, NULL)) != 0) {
        pthread_cond_destroy(&ld->not_empty);
        pthread_mutex_destroy(&ld->mu);
        return ddn_ctx_set_error(ld->ctx, DDN_ERR_BACKEND, "loader: condvar: %s", strerror(e));
    }
    return DDN_OK;
}

ddn_loader *ddn_loader_new(ddn_ctx *ctx, ddn_dataset *ds, const ddn_loader_opts *opts)
{
    if (!ds || !opts) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "loader_new: %s is NULL", ds ? "opts" : "dataset");
        return NULL;
    }
    int64_t n = ddn_dataset_len(ds);
    if (opts->batch_size <= 0 || opts->prefetch < 0 || opts->prefetch > LOADER_MAX_PREFETCH) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "loader_new: batch size %" PRId64 ", prefetch %d: "
                          "expected batch size > 0 and prefetch 0 to %d", opts->batch_size,
                          opts->prefetch, LOADER_MAX_PREFETCH);
        return NULL;
    }
    if (n == 0 || (opts->drop_last && n < opts->batch_size)) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "loader_new: %" PRId64 " items make no batch of %"
                          PRId64 "%s", n, opts->batch_size, opts->drop_last ? " (drop_last)" : "");
        return NULL;
    }
    int c0, h0, w0, c, h, w;
    ddn_dataset_shape(ds, &c0, &h0, &w0);
    if (ddn_transform_check(ctx, opts->transforms, opts->n_transforms, c0, h0, w0, &c, &h, &w))
        return NULL;
    if (h <= 0 || w <= 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "loader_new: the images have no fixed size after the"
                          " transforms: add a resize to (h, w) or a crop");
        return NULL;
    }
    size_t item = (size_t)c * h * w;
    if ((uint64_t)opts->batch_size > SIZE_MAX / sizeof(float) / item / 2) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "loader_new: batch size %" PRId64 " too large",
                          opts->batch_size);
        return NULL;
    }
    ddn_loader *ld = calloc(1, sizeof *ld);
    if (!ld) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "loader_new: out of memory");
        return NULL;
    }
    ld->ctx = ctx;
    ld->ds = ddn_data_ref(ds);
    ld->n_tf = opts->n_transforms;
    ld->batch = opts->batch_size;
    ld->n = n;
    ld->shuffle = opts->shuffle;
    ld->drop_last = opts->drop_last;
    ld->strict = opts->strict;
    ld->seed = opts->seed;
    ld->c = c;
    ld->h = h;
    ld->w = w;
    ld->item_floats = item;
    ld->depth = opts->prefetch > 0 ? opts->prefetch : 1;
    ld->prod.perm_epoch = -1;
    bool ok = (ld->tf = malloc((size_t)(ld->n_tf > 0 ? ld->n_tf : 1) * sizeof *ld->tf)) &&
              (ld->slots = calloc((size_t)ld->depth, sizeof *ld->slots)) &&
              (ld->prod.perm = malloc((size_t)n * sizeof *ld->prod.perm));
    if (ok && ld->n_tf > 0) memcpy(ld->tf, opts->transforms, (size_t)ld->n_tf * sizeof *ld->tf);
    for (int i = 0; ok && i < ld->depth; i++) {
        slot *s = &ld->slots[i];
        ok = (s->x = malloc((size_t)ld->batch * item * sizeof *s->x)) &&
             (s->y = malloc((size_t)ld->batch * sizeof *s->y)) &&
             (s->bad = malloc((size_t)ld->batch * sizeof *s->bad));
    }
    if (!ok) {
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "loader_new: cannot allocate %d batch buffers of %"
                          PRId64 " x %d x %d x %d floats", ld->depth, ld->batch, c, h, w);
        ddn_loader_free(ld);
        return NULL;
    }
    if (opts->prefetch > 0) {
        if (init_sync(ld) != DDN_OK) {
            ddn_loader_free(ld);
            return NULL;
        }
        ld->threaded = true;
    }
    if (restart(ld) != DDN_OK) {
        ddn_loader_free(ld);
        return NULL;
    }
    return ld;
}

/* ---- the caller's side ------------------------------------------------------------------------ */
static slot *take(ddn_loader *ld)
{
    if (!ld->threaded) {
        if (!ld->sync_ready) {
            make_batch(ld, &ld->prod, &ld->slots[0]);
            ld->sync_ready = true;
        }
        return &ld->slots[0];
    }
    lock(ld);
    while (ld->count == 0) wait_on(ld, &ld->not_empty);
    slot *s = &ld->slots[ld->head];
    unlock(ld);
    return s;
}

static void release(ddn_loader *ld)
{
    if (!ld->threaded) {
        ld->sync_ready = false;
        return;
    }
    lock(ld);
    ld->head = (ld->head + 1) % ld->depth;
    ld->count--;
    DDN_ASSERT(pthread_cond_signal(&ld->not_full) == 0);
    unlock(ld);
}

/* Adds a skipped item to the distinct list (an out-of-memory here only loses the record). */
static void note_bad(ddn_loader *ld, const bad_rec *b)
{
    ld->skipped++;
    if (!ld->bad_seen && !(ld->bad_seen = calloc((size_t)ld->n, 1))) return;
    if (ld->bad_seen[b->index]) return;
    if (ld->n_bad == ld->cap_bad) {
        int64_t cap = ld->cap_bad ? 2 * ld->cap_bad : 16;
        int64_t *ni = realloc(ld->bad_index, (size_t)cap * sizeof *ni);
        if (!ni) return;
        ld->bad_index = ni;
        char **nm = realloc(ld->bad_msg, (size_t)cap * sizeof *nm);
        if (!nm) return;
        ld->bad_msg = nm;
        ld->cap_bad = cap;
    }
    size_t len = strlen(b->msg) + 1;
    char *m = malloc(len);
    if (!m) return;
    memcpy(m, b->msg, len);
    ld->bad_seen[b->index] = 1;
    ld->bad_index[ld->n_bad] = b->index;
    ld->bad_msg[ld->n_bad++] = m;
}

ddn_status ddn_loader_next(ddn_loader *ld, ddn_tensor **x, ddn_tensor **y)
{
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!ld || !x || !y) {
        if (ld) return ddn_ctx_set_error(ld->ctx, DDN_ERR_ARG, "loader_next: x or y is NULL");
        return DDN_ERR_ARG;
    }
    if (ld->failed != DDN_OK) return ddn_ctx_set_error(ld->ctx, ld->failed, "%s", ld->failed_msg);
    for (;;) {
        if (epoch_done(ld, ld->pos)) {
            ld->epoch++;
            ld->pos = 0;
            return DDN_OK;
        }
        slot *s = take(ld);
        DDN_ASSERT(s->epoch == ld->epoch && s->pos == ld->pos);
        if (s->st != DDN_OK) { /* the thread makes nothing more: no release needed */
            ld->failed = s->st;
            memcpy(ld->failed_msg, s->msg, sizeof ld->failed_msg);
            return ddn_ctx_set_error(ld->ctx, ld->failed, "%s", ld->failed_msg);
        }
        if (s->n > 0) {
            /* Tensors first: if they fail, the batch stays queued for a retry. */
            ddn_tensor *tx = ddn_tensor_from_host(ld->ctx, DDN_DTYPE_F32, 4,
                                                  (const int64_t[]){s->n, ld->c, ld->h, ld->w},
                                                  s->x);
            ddn_tensor *ty = tx ? ddn_tensor_from_host(ld->ctx, DDN_DTYPE_I64, 1,
                                                       (const int64_t[]){s->n}, s->y) : NULL;
            if (!ty) return ddn_ctx_status(ld->ctx);
            *x = tx;
            *y = ty;
        }
        for (int64_t i = 0; i < s->n_bad; i++) note_bad(ld, &s->bad[i]);
        ld->pos = s->next_pos;
        bool got = s->n > 0;
        release(ld);
        if (got) return DDN_OK;
    }
}

/* ---- state and queries ------------------------------------------------------------------------ */
ddn_loader_state ddn_loader_get_state(const ddn_loader *ld)
{
    ddn_loader_state st = {0};
    if (!ld) return st;
    st.version = DDN_LOADER_STATE_VERSION;
    memcpy(&st.seed, &ld->seed, sizeof st.seed);
    st.epoch = ld->epoch;
    st.position = ld->pos;
    st.n_items = ld->n;
    st.skipped = ld->skipped;
    return st;
}

ddn_status ddn_loader_set_state(ddn_loader *ld, const ddn_loader_state *st)
{
    if (!ld || !st) return ld ? ddn_ctx_set_error(ld->ctx, DDN_ERR_ARG, "loader_set_state: "
                                                  "state is NULL") : DDN_ERR_ARG;
    if (st->version != DDN_LOADER_STATE_VERSION || st->n_items != ld->n || st->epoch < 0 ||
        st->position < 0 || st->position > ld->n || st->skipped < 0)
        return ddn_ctx_set_error(ld->ctx, DDN_ERR_ARG, "loader_set_state: version %" PRId64
                                 ", %" PRId64 " items, epoch %" PRId64 ", position %" PRId64
                                 ": expected version %d, %" PRId64 " items, epoch >= 0 and "
                                 "position 0 to %" PRId64, st->version, st->n_items, st->epoch,
                                 st->position, DDN_LOADER_STATE_VERSION, ld->n, ld->n);
    stop_thread(ld);
    memcpy(&ld->seed, &st->seed, sizeof ld->seed);
    ld->epoch = st->epoch;
    ld->pos = st->position;
    ld->skipped = st->skipped;
    ld->failed = DDN_OK;
    ld->prod.perm_epoch = -1; /* the seed may have changed */
    return restart(ld);
}

int64_t ddn_loader_epoch(const ddn_loader *ld) { return ld ? ld->epoch : 0; }

int64_t ddn_loader_batches_per_epoch(const ddn_loader *ld)
{
    if (!ld) return 0;
    return ld->drop_last ? ld->n / ld->batch : (ld->n + ld->batch - 1) / ld->batch;
}

void ddn_loader_item_shape(const ddn_loader *ld, int *c, int *h, int *w)
{
    if (c) *c = ld ? ld->c : 0;
    if (h) *h = ld ? ld->h : 0;
    if (w) *w = ld ? ld->w : 0;
}

int64_t ddn_loader_skipped(const ddn_loader *ld) { return ld ? ld->skipped : 0; }
int64_t ddn_loader_bad_count(const ddn_loader *ld) { return ld ? ld->n_bad : 0; }

bool ddn_loader_bad_item(const ddn_loader *ld, int64_t k, int64_t *index, const char **path,
                         const char **reason)
{
    if (!ld || k < 0 || k >= ld->n_bad) return false;
    if (index) *index = ld->bad_index[k];
    if (path) *path = ddn_dataset_path(ld->ds, ld->bad_index[k]);
    if (reason) *reason = ld->bad_msg[k];
    return true;
}
