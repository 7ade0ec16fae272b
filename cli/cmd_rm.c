/* cmd_rm.c - `shmstore rm STORE[/NAME]...`: remove stores or objects. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_rm = {
    "rm", run, "remove stores or objects",
    "Usage: shmstore rm [-f] STORE[/NAME]...\n"
    "\n"
    "Remove each operand. STORE removes the store's file: processes that have it open\n"
    "keep using it, and its memory is freed when the last one closes it. STORE/NAME\n"
    "removes the object NAME from the store: open handles then fail, views already\n"
    "taken stay valid until released.\n"
    "\n"
    "Options:\n"
    "  -f, --force  ignore operands that do not exist\n"};

static int rm_one(const struct cli_ctx *ctx, const char *arg, int force)
{
    struct cli_target t;
    shmstore_t *s;
    int rc;

    if ((rc = cli_parse_target(&cli_cmd_rm, arg, 0, &t)) != 0)
        return rc;
    if (!t.name) {
        rc = shmstore_unlink(t.store, ctx->dir);
        if (rc == -ENOENT)
            return force ? CLI_EX_OK
                         : cli_fail(CLI_EX_NOINPUT, "%s: no such store in %s", t.store,
                                    cli_dir_shown(ctx));
        return rc < 0 ? cli_error(rc, t.store, "%s: cannot remove the store", t.store) : 0;
    }

    if (force) {
        shmstore_options_t opt = {.dir = ctx->dir};
        rc = shmstore_open(t.store, SHMSTORE_O_NORECOVER, &opt, &s);
        if (rc == -ENOENT)
            return CLI_EX_OK;
        if (rc < 0)
            return cli_open_error(ctx, t.store, rc);
    } else if ((rc = cli_open_store(ctx, t.store, &s)) != 0) {
        return rc;
    }
    rc = shmstore_delete(s, t.name);
    if (rc == -ENOENT)
        rc = force ? CLI_EX_OK : cli_fail(CLI_EX_NOINPUT, "%s: no such object", arg);
    else if (rc < 0)
        rc = cli_error(rc, t.store, "%s: cannot remove", arg);
    shmstore_close(s);
    return rc;
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    int c, rc, first_rc = 0, force = 0;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
        if (c == 'f')
            force = 1;
        else if ((rc = cli_common_opt(c, argv, &cli_cmd_rm, ctx)) >= 0)
            return rc;
    }
    if (optind >= argc)
        return cli_usage_error(&cli_cmd_rm, "expected STORE or STORE/NAME");
    /* Like rm(1): go on after a failure, and exit with the first failure's code. */
    for (; optind < argc; optind++) {
        rc = rm_one(ctx, argv[optind], force);
        if (rc && !first_rc)
            first_rc = rc;
    }
    return first_rc;
}
