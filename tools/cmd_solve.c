/* ddn solve — solve a batch of LESS or IED problems read from a safetensors file.
 *
 * Input tensors: A (B,m,n) [LESS] or (B,m,m) [IED], b (B,m) [LESS], optional v (upstream gradient
 * dL/dy, shape of y). All F32 or all F64. Output: y and, for IED, lambda in the input's dtype;
 * iterations and converged as int64, fpd as float64 (per-item diagnostics are always measured in
 * float64, whatever the dtype); with v also dA (and db for LESS) in the input's dtype.
 * Without v the forward solver runs directly (ddn_less_solve / ddn_ied_solve: the layer's forward
 * is exactly that call); with v, or with IED --backward eigh (whose forward is a dense
 * eigensolver), the layer (ddn_less / ddn_ied) runs and its backward gives the gradients.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CMD "solve"

enum { LAYER_NONE = -1, LAYER_LESS = 0, LAYER_IED = 1 };
static const char *const layer_names[] = {"less", "ied"};
static const char *const less_bw_names[] = {"e", "j", "unroll"};
static const char *const ied_bw_names[] = {"ddn-e", "ddn-j", "ift-e", "ift-j", "unroll", "eigh"};
static const char *const solver_names[] = {"pi", "si"};
static const char *const sign_names[] = {"none", "historical", "reference", "both"};
_Static_assert(DDN_LESS_BACKWARD_UNROLL == 2, "less_bw_names follows ddn_less_backward");
_Static_assert(DDN_IED_BACKWARD_EIGH == 5, "ied_bw_names follows ddn_ied_backward");

static const char help[] =
    "usage: ddn solve --layer less|ied [options] --input X.safetensors --output Y.safetensors\n"
    "\n"
    "Solves every item of a batch and writes the solutions (and, given v, the gradients).\n"
    "  X holds  A (B,m,n) and b (B,m) for LESS:  y = argmin ||A u - b|| subject to ||u|| = 1\n"
    "           A (B,m,m) for IED:               y = principal eigenvector, lambda = y^T A y\n"
    "           v (optional): dL/dy, shape of y; then Y also gets dA (and db for LESS)\n"
    "           all F32 or all F64; other tensors in X are ignored\n"
    "  Y gets   y, lambda (IED), dA, db in the input's dtype; iterations and converged (int64,\n"
    "           per item); fpd (float64, fixed-point distance, PMAF-MATH.md eq. 41/42)\n"
    "\n"
    "LESS options:\n"
    "  --method M       pgd | pgd+rm | pgd+rm+blsone | pgd+rm+blsgrad | pgd+rm+twd, each with an\n"
    "                   optional +dw; or exact (global optimum). Default pgd+rm+twd\n"
    "  --backward B     e (closed form, default) | j (explicit Jacobian) | unroll\n"
    "  --alpha X        Armijo constant of BLS (default 0.5)\n"
    "  --beta X         shrink factor of BLS (default 0.8) or decay of TWD (default 0.9)\n"
    "IED options:\n"
    "  --solver S       pi (power iteration, default) | si (simultaneous iteration)\n"
    "  --k N            SI columns (default 1)\n"
    "  --sign S         none | historical | reference | both (default both)\n"
    "  --shift          Gershgorin shift: find the largest algebraic eigenvalue\n"
    "  --random-init    start from seeded N(0,1) vectors (--seed N, default 0)\n"
    "  --no-gap-check   skip the estimate of the second eigenvalue (a tie is then not flagged)\n"
    "  --backward B     ddn-e (default) | ddn-j | ift-e | ift-j | unroll | eigh\n"
    "                   (ddn-* need symmetric A; eigh also replaces the forward by LAPACK syevd)\n"
    "Both:\n"
    "  --tol X          stopping tolerance (LESS default 1e-7 on the objective change;\n"
    "                   IED default 1e-6 float32, 1e-12 float64 on the step)\n"
    "  --max-iter N     iteration cap (LESS 100, IED 1000)\n"
    "  --strict         an item that does not converge is an error (no output written)\n"
    "  --threads N      CPU threads (default: the library's)\n"
    "  --device D       cpu (default) or cuda: the layer runs in a CUDA context (its solver and\n"
    "                   backward still compute on host copies; not yet run on hardware)\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on a bad command line; one line on stderr.\n";

typedef struct solve_cfg {
    int layer;
    const char *input, *output;
    bool has_tol, has_max_iter, has_alpha, has_beta, has_seed, strict, shift, random_init;
    bool no_gap_check;
    double tol, alpha, beta;
    int64_t max_iter, seed, threads, k;
    unsigned method;
    int less_bw, ied_bw, solver, sign;
    ddn_device device;
    const char *backward;             /* --backward, resolved against the layer's modes */
    const char *less_only, *ied_only; /* the first layer-specific option seen, for messages */
} solve_cfg;

/* "pgd+rm+blsone+dw" -> flags, checked against the valid sets of less_solver.h. */
static int parse_method(const char *s, unsigned *out)
{
    static const struct { const char *name; unsigned flag; } tok[] = {
        {"pgd", DDN_LESS_PGD},   {"rm", DDN_LESS_RM},           {"blsone", DDN_LESS_BLS_ONE},
        {"blsgrad", DDN_LESS_BLS_GRAD}, {"twd", DDN_LESS_TWD}, {"dw", DDN_LESS_DW},
        {"exact", DDN_LESS_EXACT},
    };
    char buf[128];
    unsigned m = 0;
    if (strlen(s) >= sizeof buf) goto bad;
    strcpy(buf, s);
    for (char *p = buf;;) {
        char *plus = strchr(p, '+');
        if (plus) *plus = '\0';
        unsigned f = 0;
        for (size_t t = 0; t < sizeof tok / sizeof tok[0]; t++)
            if (!strcmp(p, tok[t].name)) f = tok[t].flag;
        if (!f || (m & f)) goto bad;
        m |= f;
        if (!plus) break;
        p = plus + 1;
    }
    unsigned bls = m & (DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD), twd = m & DDN_LESS_TWD;
    if (m & DDN_LESS_EXACT) {
        if (m != DDN_LESS_EXACT) goto bad;
    } else if (!(m & DDN_LESS_PGD) || ((bls || twd) && !(m & DDN_LESS_RM)) ||
               bls == (DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD) || (bls && twd)) {
        goto bad;
    }
    *out = m;
    return 0;
bad:
    return cli_error(CMD, CLI_EXIT_USAGE,
                     "--method: '%s' is not a method (pgd[+rm[+blsone|+blsgrad|+twd]][+dw] or "
                     "exact)", s);
}

/* Reads argv into cfg; returns -1 to continue, or an exit code (0 after --help). */
static int parse_args(int argc, char **argv, solve_cfg *c)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int r, e = 0;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        }
#define OPT(name) ((r = cli_opt(CMD, argc, argv, &i, name, &v)) != 0)
#define FLAG(name) ((r = cli_flag(CMD, argv, i, name)) != 0)
#define LESS_ONLY() (c->less_only = c->less_only ? c->less_only : a)
#define IED_ONLY() (c->ied_only = c->ied_only ? c->ied_only : a)
        if (OPT("--layer")) {
            e = r < 0 || cli_parse_choice(CMD, "--layer", v, layer_names, 2, &c->layer);
        } else if (OPT("--input")) {
            c->input = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--output")) {
            c->output = r < 0 ? NULL : v, e = r < 0;
        } else if (OPT("--method")) {
            LESS_ONLY();
            e = r < 0 || parse_method(v, &c->method);
        } else if (OPT("--alpha")) {
            LESS_ONLY();
            e = r < 0 || cli_parse_double(CMD, "--alpha", v, 1e-12, 1 - 1e-12, &c->alpha);
            c->has_alpha = true;
        } else if (OPT("--beta")) {
            LESS_ONLY();
            e = r < 0 || cli_parse_double(CMD, "--beta", v, 1e-12, 1 - 1e-12, &c->beta);
            c->has_beta = true;
        } else if (OPT("--solver")) {
            IED_ONLY();
            e = r < 0 || cli_parse_choice(CMD, "--solver", v, solver_names, 2, &c->solver);
        } else if (OPT("--k")) {
            IED_ONLY();
            e = r < 0 || cli_parse_int(CMD, "--k", v, 1, INT64_MAX, &c->k);
        } else if (OPT("--sign")) {
            IED_ONLY();
            e = r < 0 || cli_parse_choice(CMD, "--sign", v, sign_names, 4, &c->sign);
        } else if (OPT("--seed")) {
            IED_ONLY();
            e = r < 0 || cli_parse_int(CMD, "--seed", v, 0, INT64_MAX, &c->seed);
            c->has_seed = true;
        } else if (FLAG("--shift")) {
            IED_ONLY();
            e = r < 0, c->shift = true;
        } else if (FLAG("--random-init")) {
            IED_ONLY();
            e = r < 0, c->random_init = true;
        } else if (FLAG("--no-gap-check")) {
            IED_ONLY();
            e = r < 0, c->no_gap_check = true;
        } else if (OPT("--backward")) {
            c->backward = r < 0 ? NULL : v, e = r < 0; /* resolved once --layer is known */
        } else if (OPT("--tol")) {
            e = r < 0 || cli_parse_double(CMD, "--tol", v, 0, 1e300, &c->tol);
            c->has_tol = true;
        } else if (OPT("--max-iter")) {
            e = r < 0 || cli_parse_int(CMD, "--max-iter", v, 0, 100000000, &c->max_iter);
            c->has_max_iter = true;
        } else if (FLAG("--strict")) {
            e = r < 0, c->strict = true;
        } else if (OPT("--threads")) {
            e = r < 0 || cli_parse_int(CMD, "--threads", v, 1, 1024, &c->threads);
        } else if (OPT("--device")) {
            e = r < 0 || cli_parse_device(CMD, v, &c->device);
        } else {
            return cli_unknown(CMD, a);
        }
#undef OPT
#undef FLAG
#undef LESS_ONLY
#undef IED_ONLY
        if (e) return CLI_EXIT_USAGE;
    }
    return -1;
}

/* The checks that need the whole command line. */
static int check_args(solve_cfg *c)
{
    if (c->layer == LAYER_NONE)
        return cli_error(CMD, CLI_EXIT_USAGE, "missing --layer less|ied (see ddn solve --help)");
    if (!c->input) return cli_error(CMD, CLI_EXIT_USAGE, "missing --input X.safetensors");
    if (!c->output) return cli_error(CMD, CLI_EXIT_USAGE, "missing --output Y.safetensors");
    if (c->layer == LAYER_LESS && c->ied_only)
        return cli_error(CMD, CLI_EXIT_USAGE, "option %s applies to --layer ied only",
                         c->ied_only);
    if (c->layer == LAYER_IED && c->less_only)
        return cli_error(CMD, CLI_EXIT_USAGE, "option %s applies to --layer less only",
                         c->less_only);
    if (c->backward && c->layer == LAYER_LESS &&
        cli_parse_choice(CMD, "--backward", c->backward, less_bw_names, 3, &c->less_bw))
        return CLI_EXIT_USAGE;
    if (c->backward && c->layer == LAYER_IED &&
        cli_parse_choice(CMD, "--backward", c->backward, ied_bw_names, 6, &c->ied_bw))
        return CLI_EXIT_USAGE;
    if (c->has_seed && !c->random_init)
        return cli_error(CMD, CLI_EXIT_USAGE, "--seed needs --random-init");
    if (c->layer == LAYER_IED && c->has_max_iter && c->max_iter < 1)
        return cli_error(CMD, CLI_EXIT_USAGE, "--max-iter: IED needs at least 1 iteration");
    if (c->has_beta && !(c->method & (DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD | DDN_LESS_TWD)))
        return cli_error(CMD, CLI_EXIT_USAGE, "--beta needs a BLS or TWD method");
    if (c->has_alpha && !(c->method & (DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD)))
        return cli_error(CMD, CLI_EXIT_USAGE, "--alpha needs a BLS method");
    return -1;
}

/* ---- input ------------------------------------------------------------------------------------ */
/* Checks tensor `name` of f: dtype F32/F64 (equal to *dt once set), rank and shape. want[k] < 0
 * means "any size >= 1". Returns -1 when fine, 0 when absent (and optional), or an exit code. */
static int check_tensor(const ddn_st_file *f, const char *path, const char *name, bool required,
                        const char *layout, int ndim, const int64_t *want, ddn_st_dtype *dt,
                        int64_t *shape)
{
    ddn_st_dtype sd;
    int nd;
    if (!ddn_safetensors_info(f, name, &sd, &nd, shape)) {
        if (!required) return 0;
        return cli_error(CMD, CLI_EXIT_FAIL, "%s has no tensor '%s' (expected %s %s)", path, name,
                         name, layout);
    }
    if (sd != DDN_ST_F32 && sd != DDN_ST_F64)
        return cli_error(CMD, CLI_EXIT_FAIL, "%s: tensor '%s' is %s; ddn solve takes F32 or F64",
                         path, name, ddn_st_dtype_name(sd));
    if (*dt != DDN_ST_AUTO && sd != *dt)
        return cli_error(CMD, CLI_EXIT_FAIL,
                         "%s: tensor '%s' is %s but 'A' is %s; all tensors must have one dtype",
                         path, name, ddn_st_dtype_name(sd), ddn_st_dtype_name(*dt));
    *dt = sd;
    char got[96];
    ddn_shape_str_raw(nd, shape, got, sizeof got);
    bool ok = nd == ndim;
    for (int k = 0; ok && k < ndim; k++) ok = want[k] < 0 ? shape[k] >= 1 : shape[k] == want[k];
    if (!ok)
        return cli_error(CMD, CLI_EXIT_FAIL, "%s: tensor '%s' has shape %s; expected %s", path,
                         name, got, layout);
    return -1;
}

typedef struct solve_io {
    ddn_tensor *A, *b, *v;
    ddn_dtype dtype;
    int64_t B, m, n;
    ddn_tensor *y, *lambda, *iterations, *converged, *fpd, *dA, *db;
} solve_io;

static int load_inputs(ddn_ctx *ctx, const solve_cfg *c, solve_io *io)
{
    ddn_st_file *f = NULL;
    if (ddn_safetensors_open(ctx, c->input, &f) != DDN_OK) return cli_ctx_error(CMD, ctx);
    bool less = c->layer == LAYER_LESS;
    ddn_st_dtype dt = DDN_ST_AUTO;
    int64_t sA[DDN_MAX_DIMS], sb[DDN_MAX_DIMS], sv[DDN_MAX_DIMS];
    char lay[96];
    int rc = check_tensor(f, c->input, "A", true, less ? "(B,m,n)" : "(B,m,m)", 3,
                          (const int64_t[]){-1, -1, -1}, &dt, sA);
    if (rc < 0 && !less && sA[1] != sA[2])
        rc = cli_error(CMD, CLI_EXIT_FAIL, "%s: tensor 'A' has shape (%lld,%lld,%lld); IED needs "
                       "square matrices (B,m,m)", c->input, (long long)sA[0], (long long)sA[1],
                       (long long)sA[2]);
    if (rc >= 0) goto done;
    io->B = sA[0], io->m = sA[1], io->n = sA[2];
    if (less) {
        snprintf(lay, sizeof lay, "(B,m) = (%lld,%lld) for A (B,m,n)", (long long)io->B,
                 (long long)io->m);
        rc = check_tensor(f, c->input, "b", true, lay, 2, (const int64_t[]){io->B, io->m}, &dt,
                          sb);
        if (rc >= 0) goto done;
    }
    snprintf(lay, sizeof lay, "(B,%s) = (%lld,%lld), the shape of y", less ? "n" : "m",
             (long long)io->B, (long long)io->n);
    rc = check_tensor(f, c->input, "v", false, lay, 2, (const int64_t[]){io->B, io->n}, &dt, sv);
    if (rc > 0) goto done;
    bool has_v = rc == 0 ? false : true;
    io->dtype = dt == DDN_ST_F32 ? DDN_DTYPE_F32 : DDN_DTYPE_F64;
    io->A = ddn_safetensors_get(ctx, f, "A");
    io->b = less ? ddn_safetensors_get(ctx, f, "b") : NULL;
    io->v = has_v ? ddn_safetensors_get(ctx, f, "v") : NULL;
    rc = (!io->A || (less && !io->b) || (has_v && !io->v)) ? cli_ctx_error(CMD, ctx) : -1;
done:
    ddn_safetensors_close(f);
    return rc;
}

/* (B) int64 / float64 diagnostics from per-item values. */
static ddn_tensor *diag_tensor(ddn_ctx *ctx, ddn_dtype dt, int64_t B, const double *x)
{
    ddn_tensor *t = ddn_tensor_new(ctx, dt, DDN_SHAPE(B));
    if (!t) return NULL;
    for (int64_t i = 0; i < B; i++) {
        if (dt == DDN_DTYPE_I64) ((int64_t *)ddn_tensor_ptr(t))[i] = (int64_t)x[i];
        else ((double *)ddn_tensor_ptr(t))[i] = x[i];
    }
    return t;
}

static int set_diagnostics(ddn_ctx *ctx, solve_io *io, const double *it, const double *cv,
                           const double *fpd)
{
    io->iterations = diag_tensor(ctx, DDN_DTYPE_I64, io->B, it);
    io->converged = diag_tensor(ctx, DDN_DTYPE_I64, io->B, cv);
    io->fpd = diag_tensor(ctx, DDN_DTYPE_F64, io->B, fpd);
    return io->iterations && io->converged && io->fpd ? -1 : cli_ctx_error(CMD, ctx);
}

/* ---- solving ---------------------------------------------------------------------------------- */
static ddn_less_opts less_opts(const solve_cfg *c)
{
    ddn_less_opts o = DDN_LESS_OPTS_DEFAULT;
    o.method = c->method;
    if (c->has_tol) o.tol = c->tol;
    if (c->has_max_iter) o.max_iter = c->max_iter;
    if (c->has_alpha) o.bls_alpha = c->alpha;
    if (c->has_beta) {
        if (c->method & DDN_LESS_TWD) o.twd_beta = c->beta;
        else o.bls_beta = c->beta;
    }
    o.strict = c->strict;
    return o;
}

static ddn_ied_opts ied_opts(const solve_cfg *c)
{
    ddn_ied_opts o = DDN_IED_OPTS_DEFAULT;
    static const unsigned signs[] = {0, DDN_IED_SIGN_HISTORICAL, DDN_IED_SIGN_REFERENCE,
                                     DDN_IED_SIGN_HISTORICAL | DDN_IED_SIGN_REFERENCE};
    o.method = c->solver == 1 ? DDN_IED_SI : DDN_IED_PI;
    o.k = c->k;
    o.sign = signs[c->sign];
    o.shift = c->shift;
    o.random_init = c->random_init;
    o.seed = (uint64_t)c->seed;
    o.check_gap = !c->no_gap_check;
    if (c->has_tol) o.tol = c->tol;
    if (c->has_max_iter) o.max_iter = c->max_iter;
    o.strict = c->strict;
    return o;
}

/* Forward and backward through the layer; diagnostics from its info tensors. */
static int finish_layer(ddn_ctx *ctx, solve_io *io, const ddn_decl_info *info)
{
    if (!io->y) return cli_ctx_error(CMD, ctx);
    if (io->v && ddn_backward_with_grad(ctx, io->y, io->v) != DDN_OK)
        return cli_ctx_error(CMD, ctx);
    io->iterations = info->iterations, io->converged = info->converged, io->fpd = info->fpd;
    if (!io->iterations || !io->converged || !io->fpd)
        return cli_error(CMD, CLI_EXIT_FAIL, "the layer returned no diagnostics");
    if (io->v) {
        io->dA = io->A->grad;
        io->db = io->b ? io->b->grad : NULL;
        if (!io->dA || (io->b && !io->db))
            return cli_error(CMD, CLI_EXIT_FAIL, "the backward pass produced no gradient");
    }
    return -1;
}

static int solve_less(ddn_ctx *ctx, const solve_cfg *c, solve_io *io)
{
    ddn_less_opts o = less_opts(c);
    if (io->v || c->device != DDN_DEVICE_CPU) { /* the host solver below reads host pointers */
        ddn_decl_info info = {0};
        if (ddn_tensor_set_requires_grad(io->A, true) != DDN_OK ||
            ddn_tensor_set_requires_grad(io->b, true) != DDN_OK)
            return cli_ctx_error(CMD, ctx);
        io->y = ddn_less(ctx, io->A, io->b, &o, (ddn_less_backward)c->less_bw, &info);
        return finish_layer(ctx, io, &info);
    }
    int64_t B = io->B;
    io->y = ddn_tensor_new(ctx, io->dtype, DDN_SHAPE(B, io->n));
    ddn_less_info *info = ddn_ctx_scratch(ctx, sizeof *info * (size_t)B);
    double *d = ddn_ctx_scratch(ctx, sizeof *d * 3 * (size_t)B);
    if (!io->y || !info || !d) return cli_ctx_error(CMD, ctx);
    if (ddn_less_solve(ctx, io->dtype, B, io->m, io->n, ddn_tensor_ptr(io->A),
                       ddn_tensor_ptr(io->b), ddn_tensor_ptr(io->y), &o, info) != DDN_OK)
        return cli_ctx_error(CMD, ctx);
    for (int64_t i = 0; i < B; i++)
        d[i] = (double)info[i].iterations, d[B + i] = info[i].converged, d[2 * B + i] = info[i].fpd;
    return set_diagnostics(ctx, io, d, d + B, d + 2 * B);
}

static int solve_ied(ddn_ctx *ctx, const solve_cfg *c, solve_io *io)
{
    ddn_ied_opts o = ied_opts(c);
    if (io->v || c->ied_bw == DDN_IED_BACKWARD_EIGH || c->device != DDN_DEVICE_CPU) {
        ddn_decl_info info = {0};
        if (io->v && ddn_tensor_set_requires_grad(io->A, true) != DDN_OK)
            return cli_ctx_error(CMD, ctx);
        io->y = ddn_ied(ctx, io->A, &o, (ddn_ied_backward)c->ied_bw, &io->lambda, &info);
        int rc = finish_layer(ctx, io, &info);
        if (rc < 0 && !io->lambda) rc = cli_error(CMD, CLI_EXIT_FAIL, "the layer gave no lambda");
        return rc;
    }
    int64_t B = io->B;
    io->y = ddn_tensor_new(ctx, io->dtype, DDN_SHAPE(B, io->m));
    io->lambda = ddn_tensor_new(ctx, io->dtype, DDN_SHAPE(B));
    ddn_ied_info *info = ddn_ctx_scratch(ctx, sizeof *info * (size_t)B);
    double *d = ddn_ctx_scratch(ctx, sizeof *d * 3 * (size_t)B);
    if (!io->y || !io->lambda || !info || !d) return cli_ctx_error(CMD, ctx);
    ddn_ied_out out = {.y = ddn_tensor_ptr(io->y), .lambda = ddn_tensor_ptr(io->lambda),
                       .info = info};
    if (ddn_ied_solve(ctx, io->dtype, B, io->m, ddn_tensor_ptr(io->A), &o, &out) != DDN_OK)
        return cli_ctx_error(CMD, ctx);
    for (int64_t i = 0; i < B; i++)
        d[i] = (double)info[i].iterations, d[B + i] = info[i].converged, d[2 * B + i] = info[i].fpd;
    return set_diagnostics(ctx, io, d, d + B, d + 2 * B);
}

/* ---- devices ---------------------------------------------------------------------------------- */
/* Moves the inputs (inputs = true) or the results into ctx, on device. */
static int to_context(ddn_ctx *ctx, ddn_device device, solve_io *io, bool inputs)
{
    ddn_tensor **in[] = {&io->A, &io->b, &io->v};
    ddn_tensor **out[] = {&io->y, &io->lambda, &io->iterations, &io->converged, &io->fpd,
                          &io->dA, &io->db};
    ddn_tensor ***ts = inputs ? in : out;
    int n = inputs ? 3 : 7;
    for (int k = 0; k < n; k++)
        if (*ts[k] && !(*ts[k] = ddn_tensor_to(ctx, *ts[k], device))) return cli_ctx_error(CMD, ctx);
    return -1;
}

/* ---- output ----------------------------------------------------------------------------------- */
static int save_outputs(ddn_ctx *ctx, const solve_cfg *c, const solve_io *io)
{
    ddn_st_entry e[7];
    int n = 0;
    e[n++] = (ddn_st_entry){"y", io->y, DDN_ST_AUTO};
    if (io->lambda) e[n++] = (ddn_st_entry){"lambda", io->lambda, DDN_ST_AUTO};
    e[n++] = (ddn_st_entry){"iterations", io->iterations, DDN_ST_I64};
    e[n++] = (ddn_st_entry){"converged", io->converged, DDN_ST_I64};
    e[n++] = (ddn_st_entry){"fpd", io->fpd, DDN_ST_F64};
    if (io->dA) e[n++] = (ddn_st_entry){"dA", io->dA, DDN_ST_AUTO};
    if (io->db) e[n++] = (ddn_st_entry){"db", io->db, DDN_ST_AUTO};
    char method[64], version[32];
    if (c->layer == LAYER_LESS) ddn_less_method_name(c->method, method, sizeof method);
    else snprintf(method, sizeof method, "%s", c->solver == 1 ? "SI" : "PI");
    snprintf(version, sizeof version, "%d.%d.%d", DDN_VERSION_MAJOR, DDN_VERSION_MINOR,
             DDN_VERSION_PATCH);
    const char *meta[] = {
        "layer",    layer_names[c->layer],
        "method",   method,
        "backward", io->v ? (c->layer == LAYER_LESS ? less_bw_names[c->less_bw]
                                                    : ied_bw_names[c->ied_bw])
                          : "none",
        "ddn",      version,
    };
    if (ddn_safetensors_save(ctx, c->output, n, e, 4, meta) != DDN_OK)
        return cli_ctx_error(CMD, ctx);
    return -1;
}

/* One line on stdout for a person at a terminal; scripts read the output file. */
static void print_summary(const solve_cfg *c, const solve_io *io)
{
    const int64_t *it = ddn_tensor_ptr(io->iterations), *cv = ddn_tensor_ptr(io->converged);
    const double *fpd = ddn_tensor_ptr(io->fpd);
    int64_t nconv = 0, maxit = 0;
    double maxfpd = 0;
    for (int64_t i = 0; i < io->B; i++) {
        nconv += cv[i] != 0;
        maxit = it[i] > maxit ? it[i] : maxit;
        maxfpd = fpd[i] > maxfpd || isnan(fpd[i]) ? fpd[i] : maxfpd;
    }
    printf("ddn solve: %s, %lld items (%s): %lld converged, max %lld iterations, max fpd %.3g%s "
           "-> %s\n", layer_names[c->layer], (long long)io->B, ddn_dtype_name(io->dtype),
           (long long)nconv, (long long)maxit, maxfpd, io->dA ? ", gradients" : "", c->output);
}

int cmd_solve(int argc, char **argv)
{
    solve_cfg c = {.layer = LAYER_NONE, .method = DDN_LESS_DEFAULT_METHOD, .less_bw = 0,
                   .ied_bw = 0, .solver = 0, .sign = 3, .k = 1};
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return rc;
    if ((rc = check_args(&c)) >= 0) return rc;
    if (c.threads > 0) ddn_set_num_threads((int)c.threads);

    /* Files and the summary live in a CPU context `host`; the layer runs in `ctx`, which is the
     * same context on the CPU and a CUDA one with --device cuda. */
    ddn_ctx *host = cli_ctx_new(CMD, DDN_DEVICE_CPU);
    ddn_ctx *ctx = !host || c.device == DDN_DEVICE_CPU ? host : cli_ctx_new(CMD, c.device);
    solve_io io = {0};
    rc = host && ctx ? load_inputs(host, &c, &io) : CLI_EXIT_FAIL;
    if (rc < 0 && ctx != host) rc = to_context(ctx, c.device, &io, true);
    if (rc < 0) rc = c.layer == LAYER_LESS ? solve_less(ctx, &c, &io) : solve_ied(ctx, &c, &io);
    if (rc < 0 && ctx != host) rc = to_context(host, DDN_DEVICE_CPU, &io, false);
    if (rc < 0) rc = save_outputs(host, &c, &io);
    if (rc < 0) {
        print_summary(&c, &io);
        rc = 0;
    }
    if (ctx != host) ddn_ctx_free(ctx);
    ddn_ctx_free(host);
    return rc;
}
