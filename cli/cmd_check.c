/* cmd_check.c - `shmstore check STORE`: verify a store's integrity. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define REPORT_CAP 65536

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_check = {
    "check", run, "check a store's integrity",
    "Usage: shmstore check STORE\n"
    "\n"
    "Check the whole store: its header, every block of the allocator, the name index,\n"
    "every object and the leases of the attached processes. Prints \"STORE: consistent\"\n"
    "and exits 0, or prints the problems found and exits 1. Other exit codes mean the\n"
    "check could not run (66: no such store, 77: permission denied).\n"};

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {CLI_COMMON_LONG_OPTS, {NULL, 0, NULL, 0}};
    shmstore_options_t opt = {.dir = ctx->dir};
    struct cli_target t;
    shmstore_t *s;
    char *report;
    int c, rc;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
        if ((rc = cli_common_opt(c, argv, &cli_cmd_check, ctx)) >= 0)
            return rc;
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_check, "expected one STORE");
    if ((rc = cli_parse_target(&cli_cmd_check, argv[optind], -1, &t)) != 0)
        return rc;

    rc = shmstore_open(t.store, SHMSTORE_O_NORECOVER, &opt, &s);
    if (rc == SHMSTORE_ECORRUPT || rc == SHMSTORE_EVERSION) {
        /* A header that fails validation is a finding of the check, not a failure to run. */
        const char *msg = shmstore_errmsg();
        printf("%s: not consistent: %s\n", t.store, msg[0] ? msg : shmstore_strerror(rc));
        return cli_finish_output(CLI_EX_PROBLEMS);
    }
    if (rc < 0)
        return cli_open_error(ctx, t.store, rc);

    report = calloc(1, REPORT_CAP);
    if (!report) {
        shmstore_close(s);
        return cli_fail(CLI_EX_UNAVAIL, "out of memory");
    }
    rc = shmstore_check(s, report, REPORT_CAP);
    if (rc == 0) {
        printf("%s: consistent\n", t.store);
        rc = cli_finish_output(CLI_EX_OK);
    } else if (rc == SHMSTORE_ECORRUPT) {
        size_t len = strnlen(report, REPORT_CAP);
        printf("%s: not consistent:\n", t.store);
        fwrite(report, 1, len, stdout);
        if (len == 0 || report[len - 1] != '\n')
            putchar('\n');
        rc = cli_finish_output(CLI_EX_PROBLEMS);
    } else {
        rc = cli_error(rc, t.store, "%s: check failed", t.store);
    }
    free(report);
    shmstore_close(s);
    return rc;
}
