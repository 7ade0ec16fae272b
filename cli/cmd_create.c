/* cmd_create.c - `shmstore create STORE`: create an empty store. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_create = {
    "create", run, "create a store",
    "Usage: shmstore create STORE [--capacity SIZE] [--group GROUP] [--procs N]\n"
    "\n"
    "Create the store STORE: the file shmstore.STORE in the store directory, readable\n"
    "and writable by you only (mode 0600) unless --group is given. Fails (exit 73) if\n"
    "it exists already. The file is sparse: memory is committed as objects need it.\n"
    "\n"
    "Options:\n"
    "  -c, --capacity SIZE  the most memory the store may use, in bytes or with a\n"
    "                       suffix K, M, G or T (base 1024): 64M, 8G.\n"
    "                       Default: the size of the filesystem (usually /dev/shm).\n"
    "  -g, --group GROUP    let the members of GROUP (a name or a gid) open it too\n"
    "                       (mode 0660)\n"
    "  -p, --procs N        process-table slots: how many processes may be attached at\n"
    "                       once (default 64, at most 256)\n"};

/* A group name or a numeric gid. Returns 0 or prints why not and returns the code. */
static int parse_group(const char *arg, int64_t *gid)
{
    struct group grp, *found = NULL;
    char buf[16384];
    uint64_t n;
    int err;

    if (cli_parse_u64(arg, &n) == 0) {
        if (n > UINT32_MAX - 1)
            return cli_usage_error(&cli_cmd_create, "--group %s: not a valid gid", arg);
        *gid = (int64_t)n;
    } else {
        err = getgrnam_r(arg, &grp, buf, sizeof buf, &found);
        if (err || !found)
            return cli_usage_error(&cli_cmd_create, "--group %s: no such group%s%s", arg,
                                   err ? ": " : "", err ? strerror(err) : "");
        *gid = (int64_t)grp.gr_gid;
    }
    /* The options struct reads 0 as "no group", so root's group cannot be asked for. */
    if (*gid == 0)
        return cli_usage_error(&cli_cmd_create, "--group %s: gid 0 cannot be used", arg);
    return 0;
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"capacity", required_argument, NULL, 'c'},
        {"group", required_argument, NULL, 'g'},
        {"procs", required_argument, NULL, 'p'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    shmstore_options_t opt = {0};
    struct cli_target t;
    shmstore_t *s;
    uint64_t n;
    int c, rc;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":c:g:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (cli_parse_size(optarg, &opt.capacity) != 0 || opt.capacity == 0)
                return cli_usage_error(&cli_cmd_create,
                                       "--capacity %s: expected a size such as 4096, 64M, 8G",
                                       optarg);
            break;
        case 'g':
            if ((rc = parse_group(optarg, &opt.group)) != 0)
                return rc;
            break;
        case 'p':
            if (cli_parse_u64(optarg, &n) != 0 || n == 0 || n > SHMSTORE_PROCS_MAX)
                return cli_usage_error(&cli_cmd_create, "--procs %s: expected 1 to %d",
                                       optarg, SHMSTORE_PROCS_MAX);
            opt.n_procs = (uint32_t)n;
            break;
        default:
            if ((rc = cli_common_opt(c, argv, &cli_cmd_create, ctx)) >= 0)
                return rc;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_create, "expected one STORE");
    if ((rc = cli_parse_target(&cli_cmd_create, argv[optind], -1, &t)) != 0)
        return rc;

    opt.dir = ctx->dir;
    rc = shmstore_open(t.store, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s);
    if (rc == -EEXIST)
        return cli_fail(CLI_EX_CANTCREAT, "%s: the store exists already in %s", t.store,
                        cli_dir_shown(ctx));
    if (rc < 0)
        return cli_error(rc, t.store, "%s: cannot create the store", t.store);
    shmstore_close(s);
    return CLI_EX_OK;
}
