/* ddn — optimizer state files: save and restore momentum buffers, Adam moments and step counts.
 *
 * A state file is safetensors: "state.<key>.<slot>" in the parameter's dtype (so a restore is
 * bit-exact), "state.<key>.step" as a 0-dim int64, and metadata "ddn.optimizer" (sgd, adam,
 * adamw), "ddn.params" (the count), "ddn.keys" (names or indices), "ddn.lr" (%.17g, exact) and
 * "ddn.hyper" (informational). Loading checks the type, the count and every expected name, shape
 * and dtype, and reads every step count, before it writes anything. Tests: tests/test_adam.c.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddn_impl.h"
#include "optim_impl.h"
#include "safetensors.h"

#define KEY_CAP 320  /* "state." + a 255-character key + ".max_exp_avg_sq" fits */
#define NAME_CAP 400 /* a prefix of up to 64 characters + a key */

/* The file name of parameter i's slot s (s == n_slots: its step count). */
static void state_name(const ddn_optim *opt, int i, int s, char *buf)
{
    const char *slot = s < opt->n_slots ? opt->slot_names[s] : "step";
    if (opt->names) snprintf(buf, KEY_CAP, "state.%s.%s", opt->names[i], slot);
    else snprintf(buf, KEY_CAP, "state.%d.%s", i, slot);
}

ddn_status ddn_optim_save(const ddn_optim *opt, const char *path)
{
    if (!opt) return DDN_ERR_ARG;
    ddn_ctx *ctx = opt->ctx;
    if (!path) return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "optim_save: path is NULL");
    int per = opt->n_slots + 1, count = opt->n * per;
    ddn_mark mark = ddn_ctx_mark(ctx);
    ddn_st_entry *entries = ddn_ctx_scratch(ctx, (size_t)(count ? count : 1) * sizeof *entries);
    char *names = ddn_ctx_scratch(ctx, (size_t)(count ? count : 1) * NAME_CAP);
    ddn_status st = entries && names ? DDN_OK : ddn_ctx_status(ctx);
    for (int i = 0; i < opt->n && st == DDN_OK; i++)
        for (int s = 0; s < per && st == DDN_OK; s++) {
            char *name = names + (size_t)(i * per + s) * NAME_CAP;
            state_name(opt, i, s, name);
            const ddn_tensor *t = s < opt->n_slots ? opt->state[i * opt->n_slots + s]
                                                   : ddn_tensor_from_host(ctx, DDN_DTYPE_I64, 0,
                                                                          NULL, &opt->steps[i]);
            if (!t) st = ddn_ctx_status(ctx);
            entries[i * per + s] = (ddn_st_entry){.name = name, .tensor = t};
        }
    char n_params[24], lr[32], hyper[256];
    snprintf(n_params, sizeof n_params, "%d", opt->n);
    snprintf(lr, sizeof lr, "%.17g", opt->lr);
    if (opt->kind == DDN_OPTIM_SGD)
        snprintf(hyper, sizeof hyper, "momentum=%.17g dampening=%.17g weight_decay=%.17g "
                 "nesterov=%d", opt->sgd.momentum, opt->sgd.dampening, opt->sgd.weight_decay,
                 (int)opt->sgd.nesterov);
    else
        snprintf(hyper, sizeof hyper, "beta1=%.17g beta2=%.17g eps=%.17g weight_decay=%.17g "
                 "amsgrad=%d", opt->adam.beta1, opt->adam.beta2, opt->adam.eps,
                 opt->adam.weight_decay, (int)opt->adam.amsgrad);
    const char *meta[] = {"ddn.optimizer", ddn_optim_kind_name(opt->kind),
                          "ddn.params", n_params,
                          "ddn.keys", opt->names ? "names" : "indices",
                          "ddn.lr", lr,
                          "ddn.hyper", hyper};
    if (st == DDN_OK) st = ddn_safetensors_save(ctx, path, count, entries, 5, meta);
    ddn_ctx_rewind(ctx, mark);
    return st;
}

/* ---- loading ---------------------------------------------------------------------------------- */
/* Problems found while matching a file: a count and the first few names. */
typedef struct problems {
    int count;
    char text[480];
    size_t len;
} problems;

static void note(problems *p, const char *fmt, const char *name, const char *detail)
{
    if (p->count++ < 6 && p->len < sizeof p->text)
        p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, fmt,
                                   p->count > 1 ? ", " : "", name, detail);
}

static bool parse_double(const char *s, double *out)
{
    char *end = NULL;
    if (!s || !*s) return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

/* The metadata value of prefix + key. */
static const char *meta_at(const ddn_st_file *f, const char *prefix, const char *key)
{
    char full[NAME_CAP];
    snprintf(full, sizeof full, "%s%s", prefix, key);
    return ddn_safetensors_metadata(f, full);
}

/* Checks the file's entries under prefix against opt; fills names (count * NAME_CAP, prefix
 * included). DDN_OK or the error set. */
static ddn_status check_file(ddn_optim *opt, const ddn_st_file *f, const char *prefix,
                             const char *path, char *names, double *lr)
{
    ddn_ctx *ctx = opt->ctx;
    size_t np = strlen(prefix);
    const char *mine = ddn_optim_kind_name(opt->kind);
    const char *kind = meta_at(f, prefix, "ddn.optimizer");
    if (!kind)
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "optim_load: %.200s has no 'ddn.optimizer' "
                                 "metadata; it is not a state written by ddn_optim_save", path);
    if (strcmp(kind, mine) != 0)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "optim_load: %.200s holds the state of an "
                                 "'%.20s' optimizer, but this optimizer is '%s'", path, kind,
                                 mine);
    double n_file = -1;
    const char *n_meta = meta_at(f, prefix, "ddn.params");
    if (!parse_double(n_meta, &n_file) || n_file != opt->n)
        return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "optim_load: %.200s holds state for %.20s "
                                 "parameters, but this optimizer has %d", path,
                                 n_meta ? n_meta : "an unknown number of", opt->n);
    if (!parse_double(meta_at(f, prefix, "ddn.lr"), lr) || !(*lr >= 0) || !isfinite(*lr))
        return ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "optim_load: %.200s: metadata 'ddn.lr' is "
                                 "missing or not a finite value >= 0", path);

    int per = opt->n_slots + 1, count = opt->n * per;
    problems missing = {0}, wrong = {0}, unexpected = {0};
    for (int i = 0; i < opt->n; i++)
        for (int s = 0; s < per; s++) {
            char *name = names + (size_t)(i * per + s) * NAME_CAP;
            memcpy(name, prefix, np);
            state_name(opt, i, s, name + np);
            ddn_st_dtype sd;
            int nd;
            int64_t sh[DDN_MAX_DIMS];
            if (!ddn_safetensors_info(f, name, &sd, &nd, sh)) {
                note(&missing, "%s%.100s%s", name, "");
                continue;
            }
            const ddn_tensor *p = opt->params[i];
            bool ok;
            char want[96], got[96], detail[224];
            if (s == opt->n_slots) { /* the step count: a 0-dim int64 */
                ok = sd == DDN_ST_I64 && nd == 0;
                snprintf(want, sizeof want, "I64 ()");
            } else {
                ok = sd == (p->dtype == DDN_DTYPE_F32 ? DDN_ST_F32 : DDN_ST_F64) && nd == p->ndim;
                for (int d = 0; ok && d < nd; d++) ok = sh[d] == p->shape[d];
                snprintf(want, sizeof want, "%s ", p->dtype == DDN_DTYPE_F32 ? "F32" : "F64");
                ddn_shape_str(p, want + strlen(want), sizeof want - strlen(want));
            }
            if (!ok) {
                snprintf(got, sizeof got, "%s ", ddn_st_dtype_name(sd));
                ddn_shape_str_raw(nd, sh, got + strlen(got), sizeof got - strlen(got));
                snprintf(detail, sizeof detail, " (file %s, expected %s)", got, want);
                note(&wrong, "%s%.100s%s", name, detail);
            }
        }
    for (int64_t j = 0; j < ddn_safetensors_count(f); j++) {
        const char *name = ddn_safetensors_name(f, j);
        bool known = strncmp(name, prefix, np) != 0; /* not ours to judge */
        for (int e = 0; e < count && !known; e++)
            known = !strcmp(names + (size_t)e * NAME_CAP, name);
        if (!known) note(&unexpected, "%s%.100s%s", name, "");
    }
    if (!missing.count && !wrong.count && !unexpected.count) return DDN_OK;
    const char *keys = meta_at(f, prefix, "ddn.keys");
    bool keys_differ = keys && strcmp(keys, opt->names ? "names" : "indices") != 0;
    return ddn_ctx_set_error(ctx, DDN_ERR_SHAPE, "optim_load: %.200s does not fit this %s "
                             "optimizer's parameters: %d missing%s%s; %d wrong%s%s; "
                             "%d unexpected%s%s%s; nothing was loaded", path, mine, missing.count,
                             missing.count ? ": " : "", missing.text, wrong.count,
                             wrong.count ? ": " : "", wrong.text, unexpected.count,
                             unexpected.count ? ": " : "", unexpected.text,
                             keys_differ ? " (the file keys parameters by the other scheme: "
                                           "registry names versus array indices)" : "");
}

ddn_status ddn_optim_load(ddn_optim *opt, const char *path)
{
    if (!opt) return DDN_ERR_ARG;
    if (!path) return ddn_ctx_set_error(opt->ctx, DDN_ERR_ARG, "optim_load: path is NULL");
    ddn_st_file *f = NULL;
    ddn_status st = ddn_safetensors_open(opt->ctx, path, &f);
    if (st != DDN_OK) return st;
    st = ddn_optim_load_from(opt, f, "", path);
    ddn_safetensors_close(f);
    return st;
}

ddn_status ddn_optim_load_from(ddn_optim *opt, const ddn_st_file *f, const char *prefix,
                               const char *path)
{
    if (!opt) return DDN_ERR_ARG;
    ddn_ctx *ctx = opt->ctx;
    if (!f || !prefix || strlen(prefix) > 64)
        return ddn_ctx_set_error(ctx, DDN_ERR_ARG, "optim_load: %s", !f ? "file is NULL"
                                 : "prefix is NULL or longer than 64 characters");
    if (!path) path = "(file)";
    ddn_status st = DDN_OK;
    int per = opt->n_slots + 1, count = opt->n * per;
    ddn_mark mark = ddn_ctx_mark(ctx);
    char *names = ddn_ctx_scratch(ctx, (size_t)(count ? count : 1) * NAME_CAP);
    int64_t *steps = ddn_ctx_scratch(ctx, (size_t)(opt->n ? opt->n : 1) * sizeof *steps);
    double lr = 0;
    st = names && steps ? check_file(opt, f, prefix, path, names, &lr) : ddn_ctx_status(ctx);
    for (int i = 0; i < opt->n && st == DDN_OK; i++) {
        const char *name = names + (size_t)(i * per + opt->n_slots) * NAME_CAP;
        ddn_tensor *t = ddn_safetensors_get(ctx, f, name);
        if (!t) st = ddn_ctx_status(ctx);
        else if ((steps[i] = (int64_t)ddn_tensor_item(t)) < 0)
            st = ddn_ctx_set_error(ctx, DDN_ERR_FORMAT, "optim_load: %.200s: '%s' is %" PRId64
                                   ", expected a step count >= 0; nothing was loaded", path, name,
                                   steps[i]);
    }
    /* Validated: names, shapes and dtypes match exactly, so only the copies remain. */
    for (int i = 0; i < opt->n && st == DDN_OK; i++)
        for (int s = 0; s < opt->n_slots && st == DDN_OK; s++)
            st = ddn_safetensors_read_into(ctx, f, names + (size_t)(i * per + s) * NAME_CAP,
                                           opt->state[i * opt->n_slots + s]);
    if (st == DDN_OK) {
        memcpy(opt->steps, steps, (size_t)opt->n * sizeof *steps);
        opt->lr = lr;
    }
    ddn_ctx_rewind(ctx, mark);
    return st;
}
