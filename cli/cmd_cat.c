/* cmd_cat.c - `shmstore cat STORE/NAME`: print an object's current value. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_cat = {
    "cat", run, "print the current value of an object",
    "Usage: shmstore cat [--raw] [-n N] STORE/NAME\n"
    "\n"
    "Print the current version of the value STORE/NAME, the newest entry of the\n"
    "queue STORE/NAME (which stays in the queue), or the newest frames of the ring\n"
    "STORE/NAME (an array of shape (n, *frame shape)). Numbers and strings are printed in\n"
    "full; bytes are escaped and cut after 256; arrays are summarized: dtype, shape,\n"
    "the first and last items and, for numbers, the minimum and maximum. The value is\n"
    "read through a zero-copy view: writers are never blocked.\n"
    "\n"
    "Options:\n"
    "  -r, --raw  write the payload bytes, unchanged, to standard output (for an array:\n"
    "             its items in C order, without any header)\n"
    "  -n N       rings: the newest N frames (default 10)\n"};

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

/* A ring: its newest `n` frames, copied (the writer is never held back). */
static int cat_ring(shmstore_t *s, const struct cli_target *t, const char *arg, uint64_t n,
                    int is_raw)
{
    shmstore_ring_t *r;
    shmstore_ring_state_t st;
    shmstore_ring_span_t sp;
    int rc = shmstore_ring_open(s, t->name, 0, NULL, &r);
    if (rc < 0)
        return cli_error(rc, t->store, "%s: cannot open the ring", arg);
    if ((rc = shmstore_ring_state(r, &st)) == 0 && st.generation == 0) {
        shmstore_ring_close(r);
        return cli_fail(CLI_EX_NOINPUT, "%s: the ring has no frames (not configured yet)", arg);
    }
    if (rc == 0 && n > st.cfg.capacity)
        n = st.cfg.capacity;
    void *buf = rc == 0 ? malloc(n * st.frame_len + 1) : NULL;
    if (rc == 0 && !buf)
        rc = -ENOMEM;
    if (rc == 0)
        rc = shmstore_ring_latest(r, n, buf, &sp);
    if (rc < 0) {
        free(buf);
        shmstore_ring_close(r);
        return cli_error(rc, t->store, "%s: cannot read", arg);
    }
    shmstore_view_t view = {.data = buf, .len = sp.n * st.frame_len};
    shmstore_datum_init_array(&view.desc, st.cfg.frame.dtype, st.cfg.frame.ndim + 1,
                              (uint64_t[SHMSTORE_NDIM_MAX]){sp.n});
    for (uint32_t i = 0; i < st.cfg.frame.ndim; i++)
        view.desc.shape[i + 1] = st.cfg.frame.shape[i];
    if (!is_raw)
        printf("frames %" PRIu64 " .. %" PRIu64 " of ring %s (generation %" PRIu64 ")\n", sp.first,
               sp.cursor, arg, st.generation);
    rc = show(&view, is_raw);
    free(buf);
    shmstore_ring_close(r);
    return rc;
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
    uint64_t n_frames = 10;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":rn:h", opts, NULL)) != -1) {
        if (c == 'r')
            is_raw = 1;
        else if (c == 'n') {
            char *end;
            unsigned long long nv = strtoull(optarg, &end, 10);
            if (*optarg == '-' || *end || nv == 0)
                return cli_usage_error(&cli_cmd_cat, "-n takes a positive number of frames");
            n_frames = nv;
        }
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
    shmstore_obj_info_t oi;
    if (rc == SHMSTORE_EKIND && shmstore_info(s, t.name, &oi) == 0 && oi.kind == SHMSTORE_KIND_RING) {
        rc = cat_ring(s, &t, arg, n_frames, is_raw);
        shmstore_close(s);
        return rc;
    }
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
