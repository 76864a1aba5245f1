/* ddn command-line program — option parsing, one-line errors and benchmark helpers shared by the
 * subcommands (contract in cli.h).
 *
 * Parsers are strict on purpose: "--tol 1e-3x" or "--sizes 32,,64" is a usage error naming the
 * option and the text, not a silently truncated value, because a benchmark run with a mistyped
 * size would otherwise report numbers for the wrong problem.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

/* OpenBLAS's own introspection (cblas.h of OpenBLAS declares them; we only need these two). */
extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);

/* ---- errors ----------------------------------------------------------------------------------- */
static void print_line(const char *cmd, const char *msg)
{
    char line[1024];
    snprintf(line, sizeof line, "%s", msg);
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (cmd && *cmd) fprintf(stderr, "ddn %s: %s\n", cmd, line);
    else fprintf(stderr, "ddn: %s\n", line);
}

int cli_error(const char *cmd, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_line(cmd, msg);
    return code;
}

int cli_ctx_error(const char *cmd, const ddn_ctx *ctx)
{
    const char *msg = ddn_ctx_errmsg(ctx);
    print_line(cmd, *msg ? msg : "failed (no message recorded)");
    return CLI_EXIT_FAIL;
}

int cli_parse_device(const char *cmd, const char *s, ddn_device *out)
{
    static const char *const names[] = {"cpu", "cuda"};
    int k = 0;
    if (cli_parse_choice(cmd, "--device", s, names, 2, &k)) return CLI_EXIT_USAGE;
    *out = k == 1 ? DDN_DEVICE_CUDA : DDN_DEVICE_CPU;
    return 0;
}

ddn_ctx *cli_ctx_new(const char *cmd, ddn_device device)
{
    const char *why = NULL;
    ddn_ctx *ctx = ddn_ctx_new(device, &why);
    if (!ctx)
        cli_error(cmd, CLI_EXIT_FAIL, "%s", why ? why : "cannot create a context");
    return ctx;
}

int cli_unknown(const char *cmd, const char *arg)
{
    if (arg[0] == '-')
        return cli_error(cmd, CLI_EXIT_USAGE, "unknown option '%s' (see ddn %s --help)", arg,
                         cmd);
    return cli_error(cmd, CLI_EXIT_USAGE, "unexpected argument '%s' (see ddn %s --help)", arg,
                     cmd);
}

bool cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

/* ---- option matching -------------------------------------------------------------------------- */
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        cli_error(cmd, CLI_EXIT_USAGE, "option %s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_flag(const char *cmd, char **argv, int i, const char *name)
{
    const char *a = argv[i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        cli_error(cmd, CLI_EXIT_USAGE, "option %s takes no value", name);
        return -1;
    }
    return a[n] == '\0';
}

/* ---- value parsers ---------------------------------------------------------------------------- */
int cli_parse_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                  int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return cli_error(cmd, CLI_EXIT_USAGE, "%s: expected an integer in [%lld, %lld], got '%s'",
                         opt, (long long)lo, (long long)hi, s);
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi)
        return cli_error(cmd, CLI_EXIT_USAGE, "%s: expected a number in [%g, %g], got '%s'", opt,
                         lo, hi, s);
    *out = v;
    return 0;
}

int cli_parse_choice(const char *cmd, const char *opt, const char *s, const char *const *names,
                     int n, int *out)
{
    for (int k = 0; k < n; k++)
        if (!strcmp(s, names[k])) {
            *out = k;
            return 0;
        }
    char list[512] = "";
    for (int k = 0; k < n; k++) {
        strncat(list, names[k], sizeof list - strlen(list) - 1);
        if (k + 1 < n) strncat(list, "|", sizeof list - strlen(list) - 1);
    }
    return cli_error(cmd, CLI_EXIT_USAGE, "%s: expected one of %s, got '%s'", opt, list, s);
}

int cli_parse_int_list(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                       int64_t *out, int *count)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        return cli_error(cmd, CLI_EXIT_USAGE, "%s: list too long", opt);
    strcpy(buf, s);
    int n = 0;
    char *p = buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (n == CLI_MAX_LIST)
            return cli_error(cmd, CLI_EXIT_USAGE, "%s: at most %d entries", opt, CLI_MAX_LIST);
        if (cli_parse_int(cmd, opt, p, lo, hi, &out[n])) return CLI_EXIT_USAGE;
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    *count = n;
    return 0;
}

int cli_parse_dims_list(const char *cmd, const char *opt, const char *s, int arity, int64_t hi,
                        int64_t (*dims)[3], int *count)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        return cli_error(cmd, CLI_EXIT_USAGE, "%s: list too long", opt);
    strcpy(buf, s);
    int n = 0;
    char *p = buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (n == CLI_MAX_LIST)
            return cli_error(cmd, CLI_EXIT_USAGE, "%s: at most %d entries", opt, CLI_MAX_LIST);
        char *q = p;
        for (int k = 0; k < arity; k++) {
            char *x = k + 1 < arity ? strchr(q, 'x') : NULL;
            if (k + 1 < arity && !x)
                return cli_error(cmd, CLI_EXIT_USAGE, "%s: expected sizes like %s, got '%s'",
                                 opt, arity == 2 ? "64x32" : "8x256x64", p);
            if (x) *x = '\0';
            if (cli_parse_int(cmd, opt, q, 1, hi, &dims[n][k])) return CLI_EXIT_USAGE;
            q = x ? x + 1 : q;
        }
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    *count = n;
    return 0;
}

int cli_mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) { /* each prefix ending at a '/' (or the end), in turn */
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char keep = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = keep;
    }
    return 0;
}

/* ---- benchmark support ------------------------------------------------------------------------ */
double cli_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

long cli_peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_median(double *x, int n)
{
    if (n <= 0) return NAN;
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

void cli_bench_header(FILE *out, int argc, char **argv, const char *dtype_desc)
{
    fprintf(out, "    ddn");
    for (int k = 0; k < argc; k++) fprintf(out, " %s", argv[k]);
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    const char *omp = getenv("OMP_NUM_THREADS"), *wait = getenv("OMP_WAIT_POLICY");
    fprintf(out, "\n\nddn %d.%d.%d; OpenBLAS core: %s (OPENBLAS_CORETYPE=%s); threads: ddn %d, "
                 "OpenBLAS %d (OMP_NUM_THREADS=%s, OMP_WAIT_POLICY=%s); dtype: %s\n\n",
            DDN_VERSION_MAJOR, DDN_VERSION_MINOR, DDN_VERSION_PATCH, openblas_get_corename(),
            coretype ? coretype : "unset", ddn_get_num_threads(), openblas_get_num_threads(),
            omp ? omp : "unset", wait ? wait : "unset", dtype_desc);
}
