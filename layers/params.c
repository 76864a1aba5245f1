/* ddn — the parameter registry: named parameters and buffers in one long-lived block.
 *
 * Two phases. ddn_params_add declares a tensor (its struct exists, its memory does not yet);
 * ddn_params_finalize lays the tensors out, parameters first in declaration order and then the
 * buffers, each at an offset aligned to its element size (so a model of one dtype has no gaps),
 * and allocates one data block and one gradient block through the context's backend. The grad
 * block mirrors the parameter part of the data block byte for byte, so zeroing gradients is one
 * fill and an optimizer can treat all parameters as one flat vector. Loading validates every
 * name, shape and dtype before it writes anything. Tests: tests/test_params.c.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"
#include "params_impl.h"
#include "safetensors.h"

#define NAME_MAX_LEN 255
#define LIST_BUDGET 170 /* characters of names per problem list in a load error (1 KiB total) */

typedef struct entry {
    char *name;
    ddn_tensor *t;
    bool is_buffer;
    size_t offset; /* bytes from the start of the data block (and of the grad block) */
} entry;

struct ddn_params {
    ddn_ctx *ctx;
    entry *e;
    int64_t n, cap;
    bool finalized;
    void *data_block, *grad_block;
    size_t data_bytes, grad_bytes;
    ddn_tensor *grad_flat; /* the whole grad block viewed as float32 zeros: one fill */
};

ddn_params *ddn_params_new(ddn_ctx *ctx)
{
    if (!ctx) return NULL;
    ddn_params *p = calloc(1, sizeof *p);
    if (!p) ddn_ctx_set_error(ctx, DDN_ERR_OOM, "params_new: out of memory");
    else p->ctx = ctx;
    return p;
}

void ddn_params_free(ddn_params *p)
{
    if (!p) return;
    for (int64_t i = 0; i < p->n; i++) {
        ddn_tensor_free(p->e[i].t); /* frees the gradient view too; neither owns memory */
        free(p->e[i].name);
    }
    free(p->e);
    ddn_tensor_free(p->grad_flat);
    const ddn_backend *be = p->ctx->backend;
    if (p->data_block) be->free(p->ctx, p->data_block);
    if (p->grad_block) be->free(p->ctx, p->grad_block);
    if (p->finalized) ddn_ctx_note_persistent(p->ctx, -(ptrdiff_t)(p->data_bytes + p->grad_bytes));
    free(p);
}

static int64_t find_index(const ddn_params *p, const char *name)
{
    for (int64_t i = 0; i < p->n; i++)
        if (strcmp(p->e[i].name, name) == 0) return i;
    return -1;
}

ddn_tensor *ddn_params_add(ddn_params *p, const char *name, ddn_dtype dt, int ndim,
                           const int64_t *shape, bool is_buffer)
{
    if (!p) return NULL;
    ddn_ctx *ctx = p->ctx;
    const char *kind = is_buffer ? "buffer" : "parameter";
    if (!name || !*name) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_add: the %s name is %s; every tensor needs a "
                          "non-empty name", kind, name ? "empty" : "NULL");
        return NULL;
    }
    if (p->finalized) {
        ddn_ctx_set_error(ctx, DDN_ERR_STATE, "params_add: %s '%.255s' declared after "
                          "ddn_params_finalize; declare every tensor before finalising", kind,
                          name);
        return NULL;
    }
    size_t len = strlen(name);
    if (len > NAME_MAX_LEN) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_add: name '%.60s...' has %zu characters, at "
                          "most %d are allowed", name, len, NAME_MAX_LEN);
        return NULL;
    }
    if (strcmp(name, "__metadata__") == 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_add: '__metadata__' is reserved by the "
                          "safetensors format and cannot name a tensor");
        return NULL;
    }
    if (find_index(p, name) >= 0) {
        ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_add: '%s' is already declared (names must be "
                          "unique)", name);
        return NULL;
    }
    if ((unsigned)dt >= DDN_DTYPE_COUNT || (!is_buffer && !ddn_dtype_is_float(dt))) {
        ddn_ctx_set_error(ctx, DDN_ERR_DTYPE, "params_add: %s '%s' has dtype %s; parameters must "
                          "be float32 or float64 (int64 tensors can only be buffers)", kind, name,
                          ddn_dtype_name(dt));
        return NULL;
    }
    if (!ddn_shape_valid(ctx, "params_add", ndim, shape)) return NULL;
    if (p->n == p->cap) {
        int64_t cap = p->cap ? 2 * p->cap : 16;
        entry *e = realloc(p->e, (size_t)cap * sizeof *e);
        if (!e) {
            ddn_ctx_set_error(ctx, DDN_ERR_OOM, "params_add: out of memory for '%s'", name);
            return NULL;
        }
        p->e = e;
        p->cap = cap;
    }
    char *copy = malloc(len + 1);
    ddn_tensor *t = copy ? ddn_tensor_wrap_persistent(ctx, dt, ndim, shape, NULL) : NULL;
    if (!t) {
        free(copy);
        ddn_ctx_set_error(ctx, DDN_ERR_OOM, "params_add: out of memory for '%s'", name);
        return NULL;
    }
    memcpy(copy, name, len + 1);
    t->requires_grad = !is_buffer;
    p->e[p->n++] = (entry){.name = copy, .t = t, .is_buffer = is_buffer};
    return t;
}

/* Assigns offsets to the entries of one kind, continuing from *off; false on size overflow. */
static bool lay_out(ddn_params *p, bool buffers, size_t *off)
{
    for (int64_t i = 0; i < p->n; i++) {
        entry *e = &p->e[i];
        if (e->is_buffer != buffers) continue;
        size_t es = ddn_dtype_size(e->t->dtype), nb = ddn_tensor_nbytes(e->t);
        size_t at = (*off + es - 1) / es * es;
        if (at < *off || nb > SIZE_MAX - at) return false;
        e->offset = at;
        *off = at + nb;
    }
    return true;
}

ddn_status ddn_params_finalize(ddn_params *p)
{
    if (!p) return DDN_ERR_ARG;
    ddn_ctx *ctx = p->ctx;
    if (p->finalized)
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "params_finalize: already finalised (%" PRId64
                                 " tensors)", p->n);
    size_t off = 0;
    if (!lay_out(p, false, &off)) goto too_big;
    size_t grad_bytes = off;
    if (!lay_out(p, true, &off)) goto too_big;
    size_t data_bytes = off;
    /* Float32, float64 and int64 sizes and aligned offsets make both totals multiples of 4. */
    DDN_ASSERT(data_bytes % 4 == 0 && grad_bytes % 4 == 0);

    const ddn_backend *be = ctx->backend;
    void *data = be->alloc(ctx, data_bytes ? data_bytes : 1);
    void *grad = data ? be->alloc(ctx, grad_bytes ? grad_bytes : 1) : NULL;
    ddn_tensor *data_flat = NULL, *grad_flat = NULL;
    if (grad) {
        data_flat = ddn_tensor_wrap_persistent(ctx, DDN_DTYPE_F32,
                                               DDN_SHAPE((int64_t)data_bytes / 4), data);
        grad_flat = ddn_tensor_wrap_persistent(ctx, DDN_DTYPE_F32,
                                               DDN_SHAPE((int64_t)grad_bytes / 4), grad);
    }
    ddn_status st = DDN_OK;
    if (!data || !grad)
        st = ddn_ctx_set_error(ctx, DDN_ERR_OOM, "params_finalize: cannot allocate %zu bytes of "
                               "%s on %s", data ? grad_bytes : data_bytes,
                               data ? "gradients" : "parameters and buffers", be->name);
    else if (!data_flat || !grad_flat)
        st = ddn_ctx_status(ctx);
    /* All-zero bytes are 0.0 in every dtype, so one float32 fill zeroes a block of any mix. */
    else if ((st = ddn_k(data_flat)->fill(data_flat, 0.0)) == DDN_OK)
        st = ddn_k(grad_flat)->fill(grad_flat, 0.0);
    ddn_tensor_free(data_flat);
    ddn_tensor *grads[1] = {NULL};
    for (int64_t i = 0; i < p->n && st == DDN_OK; i++) {
        entry *e = &p->e[i];
        if (e->is_buffer) continue;
        grads[0] = ddn_tensor_wrap_persistent(ctx, e->t->dtype, e->t->ndim, e->t->shape,
                                              (unsigned char *)grad + e->offset);
        if (!grads[0]) st = ddn_ctx_status(ctx);
        else e->t->grad = grads[0];
    }
    if (st != DDN_OK) {
        for (int64_t i = 0; i < p->n; i++) {
            ddn_tensor_free(p->e[i].t->grad);
            p->e[i].t->grad = NULL;
        }
        ddn_tensor_free(grad_flat);
        if (data) be->free(ctx, data);
        if (grad) be->free(ctx, grad);
        return st;
    }
    for (int64_t i = 0; i < p->n; i++) p->e[i].t->data = (unsigned char *)data + p->e[i].offset;
    p->data_block = data;
    p->grad_block = grad;
    p->data_bytes = data_bytes;
    p->grad_bytes = grad_bytes;
    p->grad_flat = grad_flat;
    p->finalized = true;
    ddn_ctx_note_persistent(ctx, (ptrdiff_t)(data_bytes + grad_bytes));
    return DDN_OK;

too_big:
    return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "params_finalize: the %" PRId64 " tensors "
                             "together exceed the address space", p->n);
}

/* ---- inspection ------------------------------------------------------------------------------- */
int64_t ddn_params_count(const ddn_params *p) { return p ? p->n : 0; }

ddn_tensor *ddn_params_at(const ddn_params *p, int64_t i)
{
    return p && i >= 0 && i < p->n ? p->e[i].t : NULL;
}

const char *ddn_params_name(const ddn_params *p, int64_t i)
{
    return p && i >= 0 && i < p->n ? p->e[i].name : NULL;
}

bool ddn_params_is_buffer(const ddn_params *p, int64_t i)
{
    return p && i >= 0 && i < p->n && p->e[i].is_buffer;
}

ddn_tensor *ddn_params_find(const ddn_params *p, const char *name)
{
    if (!p || !name) return NULL;
    int64_t i = find_index(p, name);
    return i >= 0 ? p->e[i].t : NULL;
}

int64_t ddn_params_numel(const ddn_params *p, bool include_buffers)
{
    int64_t n = 0;
    for (int64_t i = 0; p && i < p->n; i++)
        if (include_buffers || !p->e[i].is_buffer) n += ddn_tensor_numel(p->e[i].t);
    return n;
}

void ddn_params_zero_grad(ddn_params *p)
{
    if (p && p->grad_flat) ddn_k(p->grad_flat)->fill(p->grad_flat, 0.0);
}

ddn_ctx *ddn_params_ctx(const ddn_params *p) { return p ? p->ctx : NULL; }
bool ddn_params_finalized(const ddn_params *p) { return p && p->finalized; }

/* ---- loading ---------------------------------------------------------------------------------- */
/* One kind of problem found while matching a file against the registry: a count and as many
 * items as fit in LIST_BUDGET characters. */
typedef struct problem_list {
    const char *what;
    int64_t count, shown;
    char text[LIST_BUDGET + 96];
    size_t len;
} problem_list;

static void list_add(problem_list *l, const char *item)
{
    size_t n = strlen(item);
    if (l->count == l->shown && l->len + n + 2 <= LIST_BUDGET) {
        l->len += (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, "%s%s",
                                   l->shown ? ", " : "", item);
        l->shown++;
    }
    l->count++;
}

/* Appends "; 3 missing: a, b ... and 1 more" to msg (of size cap, holding *len characters). */
static void list_print(const problem_list *l, char *msg, size_t cap, size_t *len)
{
    if (!l->count || *len >= cap) return;
    *len += (size_t)snprintf(msg + *len, cap - *len, "%s%" PRId64 " %s: %s", *len ? "; " : "",
                             l->count, l->what, l->text);
    if (l->count > l->shown && *len < cap)
        *len += (size_t)snprintf(msg + *len, cap - *len, "%s... and %" PRId64 " more",
                                 l->shown ? " " : "", l->count - l->shown);
}

static bool skipped(const char *name, const char *prefix)
{
    return prefix && *prefix && strncmp(name, prefix, strlen(prefix)) == 0;
}

static bool st_is_float(ddn_st_dtype d)
{
    return d == DDN_ST_F32 || d == DDN_ST_F64 || d == DDN_ST_F16 || d == DDN_ST_BF16;
}

ddn_status ddn_params_load(ddn_params *p, const char *path, ddn_params_load_opts opts)
{
    if (!p) return DDN_ERR_ARG;
    ddn_ctx *ctx = p->ctx;
    if (!path) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_load: path is NULL");
    if (!p->finalized)
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "params_load: %s: call ddn_params_finalize "
                                 "before loading", path);
    ddn_st_file *f = NULL;
    ddn_status st = ddn_safetensors_open(ctx, path, &f);
    if (st != DDN_OK) return st;

    problem_list missing = {.what = "missing"}, unexpected = {.what = "unexpected"},
                 shape = {.what = "wrongly shaped"}, dtype = {.what = "of an unloadable dtype"};
    char item[256];
    for (int64_t i = 0; i < p->n; i++) {
        const entry *e = &p->e[i];
        if (skipped(e->name, opts.skip_prefix)) continue;
        ddn_st_dtype sd;
        int nd;
        int64_t sh[DDN_MAX_DIMS];
        if (!ddn_safetensors_info(f, e->name, &sd, &nd, sh)) {
            if (opts.strict) {
                snprintf(item, sizeof item, "%.80s", e->name);
                list_add(&missing, item);
            }
            continue;
        }
        bool same = nd == e->t->ndim;
        for (int d = 0; same && d < nd; d++) same = sh[d] == e->t->shape[d];
        if (!same) {
            char a[64], b[64];
            snprintf(item, sizeof item, "%.80s (file %s, model %s)", e->name,
                     ddn_shape_str_raw(nd, sh, a, sizeof a), ddn_shape_str(e->t, b, sizeof b));
            list_add(&shape, item);
        } else if (st_is_float(sd) && !ddn_dtype_is_float(e->t->dtype)) {
            snprintf(item, sizeof item, "%.80s (file %s, model %s)", e->name,
                     ddn_st_dtype_name(sd), ddn_dtype_name(e->t->dtype));
            list_add(&dtype, item);
        }
    }
    for (int64_t i = 0; opts.strict && i < ddn_safetensors_count(f); i++) {
        const char *name = ddn_safetensors_name(f, i);
        if (skipped(name, opts.skip_prefix) || find_index(p, name) >= 0) continue;
        snprintf(item, sizeof item, "%.80s", name);
        list_add(&unexpected, item);
    }
    if (missing.count || unexpected.count || shape.count || dtype.count) {
        char msg[900];
        size_t len = 0;
        msg[0] = '\0';
        list_print(&missing, msg, sizeof msg, &len);
        list_print(&unexpected, msg, sizeof msg, &len);
        list_print(&shape, msg, sizeof msg, &len);
        list_print(&dtype, msg, sizeof msg, &len);
        ddn_safetensors_close(f);
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "params_load: %.100s does not match the "
                                 "model (%s): %s; nothing was loaded", path,
                                 opts.strict ? "strict" : "non-strict", msg);
    }
    /* Everything the file could fail has been checked; only running out of memory for a dtype
     * conversion can stop the loop below part way. */
    for (int64_t i = 0; i < p->n && st == DDN_OK; i++) {
        const entry *e = &p->e[i];
        if (skipped(e->name, opts.skip_prefix) ||
            !ddn_safetensors_info(f, e->name, NULL, NULL, NULL))
            continue;
        st = ddn_safetensors_read_into(ctx, f, e->name, e->t);
    }
    ddn_safetensors_close(f);
    return st;
}

ddn_status ddn_params_save(const ddn_params *p, const char *path)
{
    if (!p) return DDN_ERR_ARG;
    ddn_ctx *ctx = p->ctx;
    if (!path) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_save: path is NULL");
    if (!p->finalized)
        return ddn_ctx_set_error(ctx, DDN_ERR_STATE, "params_save: %s: call ddn_params_finalize "
                                 "before saving", path);
    if (p->n > INT32_MAX)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "params_save: %" PRId64 " tensors are more "
                                 "than one file can take", p->n);
    ddn_st_entry *entries = malloc((size_t)(p->n ? p->n : 1) * sizeof *entries);
    if (!entries)
        return ddn_ctx_set_error(ctx, DDN_ERR_OOM, "params_save: out of memory for %" PRId64
                                 " entries", p->n);
    for (int64_t i = 0; i < p->n; i++)
        entries[i] = (ddn_st_entry){.name = p->e[i].name, .tensor = p->e[i].t};
    ddn_status st = ddn_safetensors_save(ctx, path, (int)p->n, entries, 0, NULL);
    free(entries);
    return st;
}
