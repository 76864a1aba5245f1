/* ddn command-line program — helpers shared by the subcommands (tools/cli.c).
 *
 * The program's error contract (DESIGN.md "The command-line program"): exit 0 on success; on
 * failure exactly ONE line on stderr, "ddn <command>: <what went wrong>", and a non-zero exit:
 * CLI_EXIT_USAGE (2) for a bad command line, CLI_EXIT_FAIL (1) for everything else. Commands
 * return their exit code instead of calling exit(), so that every resource is released on every
 * path (the sanitizer build checks it). Option values accept both "--opt VALUE" and "--opt=VALUE".
 */
#ifndef DDN_TOOLS_CLI_H
#define DDN_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ddn.h"

#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_MAX_LIST 16

/* Prints "ddn <cmd>: <message>" as one line on stderr (newlines in the message become spaces);
 * returns code. */
int cli_error(const char *cmd, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The context's error message as the one line; returns CLI_EXIT_FAIL. */
int cli_ctx_error(const char *cmd, const ddn_ctx *ctx);

/* Option matching at argv[*i]. cli_opt: an option taking a value; returns 1 and sets *value
 * (advancing *i past a separate value) when argv[*i] is `name` or `name=...`, 0 when it is
 * another option, -1 after printing the error when the value is missing. cli_flag: an option
 * without a value; "--flag=x" is reported as an error (-1). */
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **value);
int cli_flag(const char *cmd, char **argv, int i, const char *name);

/* Value parsers: return 0, or print the error and return CLI_EXIT_USAGE. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                  int64_t *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out);
/* s must be one of names[0..n); *out gets its index. */
int cli_parse_choice(const char *cmd, const char *opt, const char *s, const char *const *names,
                     int n, int *out);
/* "32,64,128" -> up to CLI_MAX_LIST integers in [lo, hi]. */
int cli_parse_int_list(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                       int64_t *out, int *count);
/* "2x2,64x32" (arity 2) or "8x256x64" (arity 3) -> dims[k][0..arity), each in [1, hi]. */
int cli_parse_dims_list(const char *cmd, const char *opt, const char *s, int arity, int64_t hi,
                        int64_t (*dims)[3], int *count);

/* --device cpu|cuda -> *out; prints the usage error and returns CLI_EXIT_USAGE otherwise. */
int cli_parse_device(const char *cmd, const char *s, ddn_device *out);
/* A context on device, or NULL after printing the one-line error: "ddn <cmd>: no CUDA device:
 * <the runtime's reason>" on a machine without one, or the build's reason. */
ddn_ctx *cli_ctx_new(const char *cmd, ddn_device device);

/* Unknown option or stray argument: the usage error naming it and pointing to --help. */
int cli_unknown(const char *cmd, const char *arg);
bool cli_is_help(const char *arg); /* "--help" or "-h" */

/* ---- benchmark support ------------------------------------------------------------------------ */
/* mkdir -p: creates path and its missing parents (0777 before the umask); 0, or -1 with errno. */
int cli_mkdirs(const char *path);
double cli_now(void);         /* monotonic seconds */
long cli_peak_rss_kb(void);   /* getrusage maximum resident size of this process */
double cli_median(double *x, int n); /* sorts x in place */
/* The header every benchmark table starts with: the exact command ("ddn " + argv), OpenBLAS's
 * kernel (openblas_get_corename), thread counts, dtype. */
void cli_bench_header(FILE *out, int argc, char **argv, const char *dtype_desc);

#endif
