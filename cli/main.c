/* main.c - `shmstore`, the command-line tool: global options, the command table and
 * dispatch. Each verb lives in cmd_<verb>.c; `bench` and `demo` are in bench/.
 *
 *   shmstore [--dir DIR] VERB [OPTIONS] [OPERANDS]
 *
 * A global --dir (before the verb) and a verb's own --dir mean the same; the verb's
 * wins. For bench and demo, which parse their own options, a global --dir is passed
 * through $SHMSTORE_DIR.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run_bench(int argc, char **argv, struct cli_ctx *ctx);
static int run_demo(int argc, char **argv, struct cli_ctx *ctx);
static int run_help(int argc, char **argv, struct cli_ctx *ctx);

static const struct cli_cmd cmd_bench = {
    "bench", run_bench, "measure the hot paths against memcpy and cache-line floors",
    "Usage: shmstore bench [OPTIONS]\n(see 'shmstore bench --help')\n"};
static const struct cli_cmd cmd_demo = {
    "demo", run_demo, "run a short demonstration with several processes",
    "Usage: shmstore demo [OPTIONS]\n(see 'shmstore demo --help')\n"};
static const struct cli_cmd cmd_help = {
    "help", run_help, "show the help of a verb",
    "Usage: shmstore help [VERB]\n\nShow the help of VERB, or the list of verbs.\n"};

static const struct cli_cmd *const commands[] = {
    &cli_cmd_ls,  &cli_cmd_info, &cli_cmd_cat, &cli_cmd_create, &cli_cmd_put,
    &cli_cmd_wait, &cli_cmd_rm,  &cli_cmd_gc,  &cli_cmd_check,  &cli_cmd_watch, &cmd_bench,
    &cmd_demo,    &cmd_help, &cli_cmd_load_hdf5, &cli_cmd_save_hdf5, &cli_cmd_bridge,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const char exit_codes[] =
    "Exit status:\n"
    "    0  success\n"
    "    1  check: the store has problems\n"
    "   64  usage error: bad option, operand or name\n"
    "   65  bad data: unreadable .npy, wrong kind, layout differs, object sealed\n"
    "   66  no such store, object or file; value never written\n"
    "   69  unavailable: store of another layout version, out of memory\n"
    "   70  corrupt store or internal error\n"
    "   73  cannot create: exists already, or out of space (store or /dev/shm full)\n"
    "   74  I/O error reading a file or writing the output\n"
    "   75  temporary failure: process or lease table full, object replaced; retry\n"
    "   77  permission denied: another user's store\n"
    "  124  wait: timed out\n";

static void print_main_help(FILE *f)
{
    size_t i;

    fputs("Usage: shmstore [--dir DIR] VERB [OPTIONS] [OPERANDS]\n"
          "       shmstore help VERB | shmstore VERB --help\n\n"
          "Inspect and use shmstore stores: data shared between processes through shared\n"
          "memory. A store is the file shmstore.STORE in the store directory; an object is\n"
          "named STORE/NAME (the name may contain '/').\n\n"
          "Verbs:\n",
          f);
    for (i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\nGlobal options:\n"
          "  --dir DIR      directory of the stores (default: $SHMSTORE_DIR or /dev/shm)\n"
          "  -h, --help     show this help\n"
          "  -V, --version  show the version\n\n",
          f);
    fputs(exit_codes, f);
    fputs("\nSee shmstore(1).\n", f);
}

static const struct cli_cmd *find_command(const char *name)
{
    size_t i;

    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int unknown_verb(const char *name)
{
    fprintf(stderr, "shmstore: '%s' is not a verb. Try 'shmstore --help'.\n", name);
    return CLI_EX_USAGE;
}

/* bench and demo parse their own options; pass the store directory by environment. */
static int export_dir(const struct cli_ctx *ctx)
{
    if (ctx->dir && setenv("SHMSTORE_DIR", ctx->dir, 1) != 0)
        return cli_fail(CLI_EX_SOFTWARE, "cannot set SHMSTORE_DIR");
    return 0;
}

static int run_bench(int argc, char **argv, struct cli_ctx *ctx)
{
    int rc = export_dir(ctx);
    return rc ? rc : shmstore_bench_main(argc, argv);
}

static int run_demo(int argc, char **argv, struct cli_ctx *ctx)
{
    int rc = export_dir(ctx);
    return rc ? rc : shmstore_demo_main(argc, argv);
}

static int run_help(int argc, char **argv, struct cli_ctx *ctx)
{
    const struct cli_cmd *cmd;
    char help[] = "--help";
    char *sub_argv[3];

    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_main_help(stdout);
        return cli_finish_output(CLI_EX_OK);
    }
    if (argc > 2)
        return cli_usage_error(&cmd_help, "one verb at a time");
    cmd = find_command(argv[1]);
    if (!cmd)
        return unknown_verb(argv[1]);
    /* Every verb, including bench and demo, answers --help itself. */
    sub_argv[0] = argv[1];
    sub_argv[1] = help;
    sub_argv[2] = NULL;
    return cmd->run(2, sub_argv, ctx);
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = {NULL};
    const struct cli_cmd *cmd;
    int i = 1;

    /* Global options, before the verb. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_main_help(stdout);
            return cli_finish_output(CLI_EX_OK);
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("shmstore %s\n", SHMSTORE_VERSION_STRING);
            return cli_finish_output(CLI_EX_OK);
        } else if (strcmp(a, "--dir") == 0 && i + 1 < argc && argv[i + 1][0]) {
            ctx.dir = argv[++i];
        } else if (strncmp(a, "--dir=", 6) == 0 && a[6]) {
            ctx.dir = a + 6;
        } else if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else {
            fprintf(stderr, "shmstore: bad global option '%s'. Try 'shmstore --help'.\n", a);
            return CLI_EX_USAGE;
        }
    }
    if (i >= argc) {
        print_main_help(stderr);
        return CLI_EX_USAGE;
    }
    cmd = find_command(argv[i]);
    if (!cmd)
        return unknown_verb(argv[i]);
    return cmd->run(argc - i, argv + i, &ctx);
}
