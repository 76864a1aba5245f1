/* ddn — running the built `ddn` program from a test (test_cli, test_cli_features, test_train).
 * The child's stdout and stderr go to <dir>/stdout.txt and <dir>/stderr.txt, read back after it
 * exits; stderr's line count is kept because every CLI error must be exactly one line. */
#ifndef DDN_CLI_UTIL_H
#define DDN_CLI_UTIL_H

#include <stddef.h>
#include <sys/types.h>

typedef struct cli_result {
    int code;        /* exit status; -1 when killed by a signal */
    char out[16384]; /* stdout (truncated) */
    char err[8192];  /* stderr (truncated) */
    int err_lines;
} cli_result;

/* Starts program with the NULL-terminated args (argv[0] is the program); fails the test when it
 * cannot be started. */
pid_t cli_spawn(const char *program, const char *dir, const char *const *args);
/* Waits for pid and reads its output back; the result is static, valid until the next call. */
cli_result *cli_finish(pid_t pid, const char *dir);
/* Reads at most n - 1 bytes of a file into buf, terminated; "" when it cannot be read. */
void cli_slurp(const char *path, char *buf, size_t n);

#endif
