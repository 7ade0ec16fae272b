/* cmd_gc.c - `shmstore gc STORE`: reclaim what dead processes left. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_gc = {
    "gc", run, "reclaim what dead processes left in a store",
    "Usage: shmstore gc STORE\n"
    "\n"
    "Reclaim what processes that died left in STORE: their process slots, the versions\n"
    "they pinned (leases), the writer locks they held, half-written versions and blocks\n"
    "nobody can reach. Safe while other processes use the store. Prints what was freed.\n"
    "Attaching to a store already reclaims dead processes' slots, so gc may find that\n"
    "part done.\n"};

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {CLI_COMMON_LONG_OPTS, {NULL, 0, NULL, 0}};
    shmstore_gc_stats_t st = {0};
    struct cli_target t;
    shmstore_t *s;
    char bytes[32];
    int c, rc;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
        if ((rc = cli_common_opt(c, argv, &cli_cmd_gc, ctx)) >= 0)
            return rc;
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_gc, "expected one STORE");
    if ((rc = cli_parse_target(&cli_cmd_gc, argv[optind], -1, &t)) != 0)
        return rc;
    if ((rc = cli_open_store(ctx, t.store, &s)) != 0)
        return rc;

    rc = shmstore_gc(s, &st);
    if (rc < 0) {
        rc = cli_error(rc, t.store, "%s: gc failed", t.store);
    } else {
        printf("%s: freed %" PRIu32 " dead process%s, %" PRIu32 " lease%s, %" PRIu32
               " writer lock%s, %" PRIu32 " block%s (%s)\n",
               t.store, st.dead_procs, st.dead_procs == 1 ? "" : "es", st.leases_dropped,
               st.leases_dropped == 1 ? "" : "s", st.locks_released,
               st.locks_released == 1 ? "" : "s", st.blocks_freed,
               st.blocks_freed == 1 ? "" : "s",
               cli_fmt_bytes(st.bytes_freed, bytes, sizeof bytes));
        rc = cli_finish_output(CLI_EX_OK);
    }
    shmstore_close(s);
    return rc;
}
