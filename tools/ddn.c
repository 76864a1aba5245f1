/* ddn — the command-line program: one binary, one subcommand per task (DESIGN.md).
 *
 *     ddn solve --layer less|ied ... --input X.safetensors --output Y.safetensors
 *     ddn features --arch resnet50 --weights W --input X --output Y
 *     ddn train --arch resnet18 --head ied ... --out DIR;  ddn eval --checkpoint C
 *     ddn bench --table less-effect|less-backward|ied|ied-vs-torch ...
 *
 * Exit status 0 on success; otherwise one line on stderr and 1 (failure) or 2 (bad command line).
 * Subcommands live in cmd_*.c and return their exit code; nothing here exits early, so every
 * path releases what it allocated. Tests: tests/test_cli.c runs this binary.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_solve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);

static const char usage[] =
    "usage: ddn <command> [options]\n"
    "\n"
    "Deep declarative networks in C: the PMaF LESS and IED layers from the command line.\n"
    "\n"
    "commands:\n"
    "  solve     solve a batch of LESS or IED problems from a safetensors file, with gradients\n"
    "  train     train a ResNet + PMaF head on Fashion-MNIST, with checkpoints and exact resume\n"
    "  eval      accuracy, per-class accuracy and confusion matrix of a trained model\n"
    "  features  ResNet-18/34/50 backbone features of images (safetensors or image files)\n"
    "  bench     reproduce the paper's tables and the PyTorch comparison (markdown to stdout)\n"
    "\n"
    "options:\n"
    "  -h, --help     this help; 'ddn <command> --help' describes a command\n"
    "  --version      print the version\n"
    "\n"
    "Exit status: 0 on success, 1 on failure, 2 on a bad command line; errors are one line on\n"
    "stderr.\n";

int main(int argc, char **argv)
{
    if (argc < 2)
        return cli_error("", CLI_EXIT_USAGE,
                         "missing command (solve, train, eval, features, bench); see ddn --help");
    const char *cmd = argv[1];
    if (cli_is_help(cmd)) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("ddn %d.%d.%d\n", DDN_VERSION_MAJOR, DDN_VERSION_MINOR, DDN_VERSION_PATCH);
        return 0;
    }
    /* Subcommands see argv[0] = the command name, so their messages read "ddn solve: ...". */
    if (!strcmp(cmd, "solve")) return cmd_solve(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "features")) return cmd_features(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cli_error("", CLI_EXIT_USAGE, "unknown option '%s' (see ddn --help)", cmd);
    return cli_error("", CLI_EXIT_USAGE,
                     "unknown command '%s' (commands: solve, train, eval, features, bench)", cmd);
}
