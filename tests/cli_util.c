/* ddn — running the built `ddn` program from a test (see cli_util.h). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "test_util.h"

extern char **environ;

void cli_slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    buf[got] = '\0';
    if (f) fclose(f);
}

pid_t cli_spawn(const char *program, const char *dir, const char *const *args)
{
    const char *argv[64] = {program};
    int n = 1;
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    char out[320], err[320];
    snprintf(out, sizeof out, "%s/stdout.txt", dir);
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    posix_spawn_file_actions_t fa;
    assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, program, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    return pid;
}

cli_result *cli_finish(pid_t pid, const char *dir)
{
    static cli_result r;
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    char path[320];
    snprintf(path, sizeof path, "%s/stdout.txt", dir);
    cli_slurp(path, r.out, sizeof r.out);
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    cli_slurp(path, r.err, sizeof r.err);
    r.err_lines = 0;
    for (const char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    return &r;
}
