/* cmd_cat.c - `shmstore cat STORE/NAME`: print an object's current value. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_cat = {
    "cat", run, "print the current value of an object",
    "Usage: shmstore cat [--raw] STORE/NAME\n"
    "\n"
    "Print the current version of the value STORE/NAME, or the newest entry of the\n"
    "queue STORE/NAME (which stays in the queue). Numbers and strings are printed in\n"
    "full; bytes are escaped and cut after 256; arrays are summarized: dtype, shape,\n"
    "the first and last items and, for numbers, the minimum and maximum. The value is\n"
    "read through a zero-copy view: writers are never blocked.\n"
    "\n"
    "Options:\n"
    "  -r, --raw  write the payload bytes, unchanged, to standard output (for an array:\n"
    "             its items in C order, without any header)\n"};

static int show(const shmstore_view_t *view, int is_raw)
{
    if (is_raw) {
        if (view->len && fwrite(view->data, 1, view->len, stdout) != view->len)
            return cli_finish_output(CLI_EX_IOERR);
    } else {
        cli_print_datum(stdout, &view->desc, view->data, view->len);
    }
    return cli_finish_output(CLI_EX_OK);
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"raw", no_argument, NULL, 'r'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    shmstore_view_t view;
    struct cli_target t;
    shmstore_value_t *v;
    shmstore_t *s;
    const char *arg;
    int c, rc, is_raw = 0;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":rh", opts, NULL)) != -1) {
        if (c == 'r')
            is_raw = 1;
        else if ((rc = cli_common_opt(c, argv, &cli_cmd_cat, ctx)) >= 0)
            return rc;
    }
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_cat, "expected one STORE/NAME");
    arg = argv[optind];
    if ((rc = cli_parse_target(&cli_cmd_cat, arg, 1, &t)) != 0)
        return rc;
    if ((rc = cli_open_store(ctx, t.store, &s)) != 0)
        return rc;
    shmstore_queue_t *q = NULL;
    rc = shmstore_value_open(s, t.name, 0, &v);
    if (rc == SHMSTORE_EKIND && (rc = shmstore_queue_open(s, t.name, 0, NULL, &q)) == 0) {
        /* A queue: its newest entry, left in the queue. */
        rc = shmstore_queue_read_latest(q, &view);
        if (rc == 0) {
            rc = show(&view, is_raw);
            shmstore_view_release(&view);
        }
        rc = rc == -ENOENT ? cli_fail(CLI_EX_NOINPUT, "%s: the queue is empty", arg)
             : rc < 0      ? cli_error(rc, t.store, "%s: cannot read", arg)
                           : rc;
        shmstore_queue_close(q);
        shmstore_close(s);
        return rc;
    }
    if (rc == -ENOENT && cli_set_member_view(s, t.name, &view) == 0) { /* a set's member */
        rc = show(&view, is_raw);
        shmstore_view_release(&view);
        shmstore_close(s);
        return rc;
    }
    if (rc != 0) {
        rc = rc == -ENOENT ? cli_fail(CLI_EX_NOINPUT, "%s: no such object", arg)
                           : cli_error(rc, t.store, "%s: cannot open", arg);
        shmstore_close(s);
        return rc;
    }
    rc = shmstore_value_view(v, &view);
    if (rc == SHMSTORE_ENOVALUE) {
        rc = cli_fail(CLI_EX_NOINPUT, "%s: the value has never been written", arg);
    } else if (rc < 0) {
        rc = cli_error(rc, t.store, "%s: cannot read", arg);
    } else {
        rc = show(&view, is_raw);
        shmstore_view_release(&view);
    }
    shmstore_value_close(v);
    shmstore_close(s);
    return rc;
}
