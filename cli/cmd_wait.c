/* cmd_wait.c - `shmstore wait STORE/NAME`: block until a value gets a new version. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_wait = {
    "wait", run, "wait for a new version of a value",
    "Usage: shmstore wait [--timeout SECONDS] [--after VERSION] STORE/NAME\n"
    "\n"
    "Block until the value STORE/NAME has a version newer than its current one (or\n"
    "than VERSION), then print that version and exit 0. Exit 124 if the timeout passes\n"
    "first, like timeout(1). The value must exist (exit 66 otherwise); it may have no\n"
    "version yet. Waiting costs no CPU: the process sleeps on a futex.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout SECONDS  give up after SECONDS (fractions allowed; 0 = do not\n"
    "                         block). Default: wait forever.\n"
    "  -a, --after VERSION    wait for a version greater than VERSION (a version\n"
    "                         printed by an earlier wait, or 0 for the first one)\n"};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, 't'},
        {"after", required_argument, NULL, 'a'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    int64_t timeout_ns = -1, deadline = 0;
    uint64_t after = 0, version = 0;
    int c, rc, has_after = 0;
    struct cli_target t;
    shmstore_value_t *v;
    shmstore_t *s;
    const char *arg;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":t:a:h", opts, NULL)) != -1) {
        if (c == 't') {
            if (cli_parse_seconds(optarg, &timeout_ns) != 0)
                return cli_usage_error(&cli_cmd_wait, "--timeout %s: expected seconds, "
                                       "such as 10 or 0.5", optarg);
        } else if (c == 'a') {
            if (cli_parse_u64(optarg, &after) != 0)
                return cli_usage_error(&cli_cmd_wait, "--after %s: expected a version "
                                       "number", optarg);
            has_after = 1;
        } else if ((rc = cli_common_opt(c, argv, &cli_cmd_wait, ctx)) >= 0) {
            return rc;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_wait, "expected one STORE/NAME");
    arg = argv[optind];
    if ((rc = cli_parse_target(&cli_cmd_wait, arg, 1, &t)) != 0)
        return rc;
    if ((rc = cli_open_value(ctx, &t, arg, &s, &v)) != 0)
        return rc;
    if (!has_after && (rc = shmstore_value_version(v, &after)) < 0) {
        rc = cli_error(rc, t.store, "%s: cannot read the version", arg);
        goto out_value;
    }
    if (timeout_ns >= 0)
        deadline = timeout_ns > INT64_MAX - now_ns() ? INT64_MAX : now_ns() + timeout_ns;
    for (;;) {
        int64_t left = timeout_ns < 0 ? -1 : deadline - now_ns();
        rc = shmstore_value_wait(v, after, left < 0 && timeout_ns >= 0 ? 0 : left, &version);
        if (rc != -EINTR)
            break;
    }
    if (rc == -ETIMEDOUT) {
        rc = CLI_EX_TIMEOUT; /* silent, like timeout(1): scripts test the code */
    } else if (rc < 0) {
        rc = cli_error(rc, t.store, "%s: wait failed", arg);
    } else {
        printf("%" PRIu64 "\n", version);
        rc = cli_finish_output(CLI_EX_OK);
    }
out_value:
    shmstore_value_close(v);
    shmstore_close(s);
    return rc;
}
