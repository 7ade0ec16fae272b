/* cmd_info.c - `shmstore info STORE[/NAME]`: describe a store or one object. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_info = {
    "info", run, "describe a store or an object",
    "Usage: shmstore info [--json] STORE[/NAME]\n"
    "\n"
    "Describe the store STORE (file, capacity, memory committed and used, objects,\n"
    "attached processes, owner, creation time) or the object STORE/NAME (kind, type,\n"
    "dtype and shape, size, memory it occupies, version, time of the last change; for a\n"
    "ring: frame dtype and shape, capacity, frames written and held, generation, rate,\n"
    "writer, attrs).\n"
    "\n"
    "Options:\n"
    "  -j, --json  one JSON document (sizes in bytes, times in ns since the epoch)\n"};

static const char *user_name(uint32_t uid, char *buf, size_t cap)
{
    struct passwd pw, *found = NULL;
    char tmp[4096];

    if (getpwuid_r((uid_t)uid, &pw, tmp, sizeof tmp, &found) == 0 && found)
        snprintf(buf, cap, "%" PRIu32 " (%s)", uid, pw.pw_name);
    else
        snprintf(buf, cap, "%" PRIu32, uid);
    return buf;
}

static int info_store(const struct cli_ctx *ctx, shmstore_t *s, const char *store, int is_json)
{
    shmstore_stat_t st;
    uint32_t n_alive, n_dead;
    char b[3][32], when[48], user[300];
    const char *dir = cli_dir_shown(ctx);
    int rc = shmstore_stat(s, &st);

    if (rc == 0)
        rc = cli_count_procs(s, &n_alive, &n_dead);
    if (rc < 0)
        return cli_error(rc, store, "%s: cannot read the store", store);
    if (is_json) {
        fputs("{\"store\": ", stdout);
        cli_json_str(stdout, store, strlen(store));
        fputs(", \"dir\": ", stdout);
        cli_json_str(stdout, dir, strlen(dir));
        fputs(", ", stdout);
        cli_json_stat(stdout, &st);
        printf(", \"procs\": %" PRIu32 ", \"dead_procs\": %" PRIu32 "}\n", n_alive, n_dead);
        return CLI_EX_OK;
    }
    printf("store        %s\n", store);
    printf("file         %s/shmstore.%s\n", dir, store);
    printf("capacity     %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(st.capacity, b[0], 32),
           st.capacity);
    printf("committed    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(st.committed, b[1], 32),
           st.committed);
    printf("used         %s (%" PRIu64 " bytes) in %" PRIu64 " blocks\n",
           cli_fmt_bytes(st.used, b[2], 32), st.used, st.n_blocks);
    printf("objects      %" PRIu64 "\n", st.n_objects);
    printf("processes    %" PRIu32 " other attached, %" PRIu32 " dead, %" PRIu32 " slots\n",
           n_alive, n_dead, st.n_slots);
    printf("owner        uid %s\n", user_name(st.uid, user, sizeof user));
    printf("created      %s (%" PRIu64 " ns)\n", cli_fmt_time(st.ctime_ns, when, sizeof when),
           st.ctime_ns);
    printf("layout       version %" PRIu32 "\n", st.layout_version);
    return CLI_EX_OK;
}

/* A table: its figures, then its schema (read through a handle). */
static int info_table(shmstore_t *s, const struct cli_target *t, const shmstore_obj_info_t *o)
{
    char b[2][32];
    printf("records      %" PRIu64 " of %" PRIu64 "%s\n", o->count, o->capacity,
           o->is_prioritized ? " (prioritized)" : "");
    printf("indices      %" PRIu64 " .. %" PRIu64 " (oldest held .. next append)\n",
           o->first_index, o->next_index);
    printf("invalid      %" PRIu64 " (records whose writer died mid-record)\n", o->n_invalid);
    printf("record size  %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o->record_size, b[0], 32),
           o->record_size);
    printf("size         %s (%" PRIu64 " bytes in records)\n", cli_fmt_bytes(o->size, b[0], 32),
           o->size);
    printf("footprint    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o->footprint, b[1], 32),
           o->footprint);
    shmstore_table_t *tb;
    if (shmstore_table_open(s, t->name, 0, NULL, &tb) != 0)
        return CLI_EX_OK; /* deleted meanwhile: the figures above stand */
    const shmstore_table_field_t *f;
    uint32_t n;
    shmstore_table_fields(tb, &f, &n);
    printf("fields       %" PRIu32 "\n", n);
    for (uint32_t i = 0; i < n; i++) {
        char shape[256] = "";
        size_t pos = 0;
        for (uint32_t d = 0; d < f[i].ndim && pos < sizeof shape; d++)
            pos += (size_t)snprintf(shape + pos, sizeof shape - pos, "%s%" PRIu64,
                                    d ? ", " : "", f[i].shape[d]);
        printf("  %-24s %-5s (%s%s)  %" PRIu64 " bytes at +%" PRIu64 "\n", f[i].name, f[i].dtype,
               shape, f[i].ndim == 1 ? "," : "", f[i].size, f[i].offset);
    }
    shmstore_table_close(tb);
    return CLI_EX_OK;
}

/* One attribute, as `key = value` (strings quoted, bytes as their length). */
static int print_attr(const char *key, shmstore_type_t type, const void *val, uint32_t len,
                      void *arg)
{
    (void)arg;
    int64_t i;
    double d;
    printf("  %-11s  ", key);
    switch (type) {
    case SHMSTORE_T_BOOL:
        printf("%s\n", *(const unsigned char *)val ? "true" : "false");
        break;
    case SHMSTORE_T_INT64:
        memcpy(&i, val, 8);
        printf("%" PRId64 "\n", i);
        break;
    case SHMSTORE_T_FLOAT64:
        memcpy(&d, val, 8);
        printf("%.17g\n", d);
        break;
    case SHMSTORE_T_STR:
        printf("\"%.*s\"\n", (int)(len > 200 ? 200 : len), (const char *)val);
        break;
    default:
        printf("(%s, %" PRIu32 " bytes)\n", cli_type_name(type), len);
        break;
    }
    return 0;
}

/* A ring: its generation's layout, counters and attrs (srate is shown as the rate). */
static int info_ring(shmstore_t *s, const struct cli_target *t, const shmstore_obj_info_t *o)
{
    char type[512], b[32], when[48];
    shmstore_ring_t *r;
    shmstore_ring_state_t st;
    int rc = shmstore_ring_open(s, t->name, 0, NULL, &r);
    if (rc == 0 && (rc = shmstore_ring_state(r, &st)) < 0)
        shmstore_ring_close(r);
    if (rc < 0)
        return cli_error(rc, t->store, "%s/%s: cannot open the ring", t->store, t->name);
    if (!st.generation) {
        printf("generation   0 (not configured yet: no writer has set its layout)\n");
    } else {
        printf("frame        %s (%" PRIu64 " bytes)\n", cli_fmt_desc(&st.cfg.frame, type, sizeof type),
               st.frame_len);
        printf("capacity     %" PRIu64 " frames (%s)\n", st.cfg.capacity,
               cli_fmt_bytes(st.cfg.capacity * st.frame_len, b, sizeof b));
        printf("written      %" PRIu64 " frames (%" PRIu64 " in this generation)\n", st.total,
               st.total - st.base);
        printf("held         %" PRIu64 " .. %" PRIu64 " (%" PRIu64 " frames)\n", st.oldest, st.total,
               st.total - st.oldest);
        printf("generation   %" PRIu64 " (from frame %" PRIu64 ", made %s)\n", st.generation,
               st.base, cli_fmt_time(o->mtime_ns, when, sizeof when));
        const void *val;
        shmstore_type_t ty;
        uint32_t vl;
        double rate;
        if (shmstore_attrs_get(st.cfg.frame.attrs, st.cfg.frame.attrs_len, "srate", &ty, &val,
                               &vl) == 0 && ty == SHMSTORE_T_FLOAT64) {
            memcpy(&rate, val, 8);
            printf("rate         %.10g Hz\n", rate);
        } else {
            printf("rate         - (no srate attr)\n");
        }
    }
    if (st.writer_pid)
        printf("writer       process %d\n", (int)st.writer_pid);
    else
        printf("writer       none\n");
    printf("waiting      %" PRIu32 " reader processes\n", o->consumers_waiting);
    printf("footprint    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o->footprint, b, sizeof b),
           o->footprint);
    if (st.generation && st.cfg.frame.attrs_len) {
        printf("attrs\n");
        shmstore_attrs_foreach(st.cfg.frame.attrs, st.cfg.frame.attrs_len, print_attr, NULL);
    }
    shmstore_ring_close(r);
    return CLI_EX_OK;
}

static int info_object(shmstore_t *s, const struct cli_target *t, const char *arg, int is_json)
{
    shmstore_obj_info_t o;
    char type[512], b[2][32], when[48];
    int rc = shmstore_info(s, t->name, &o);

    if (rc == -ENOENT)
        return cli_fail(CLI_EX_NOINPUT, "%s: no such object", arg);
    if (rc < 0)
        return cli_error(rc, t->store, "%s: cannot describe", arg);
    if (is_json) {
        fputs("{\"store\": ", stdout);
        cli_json_str(stdout, t->store, strlen(t->store));
        fputs(", \"object\": ", stdout);
        cli_json_obj(stdout, &o);
        fputs("}\n", stdout);
        return CLI_EX_OK;
    }
    printf("object       %s/%s\n", t->store, o.name);
    printf("kind         %s%s\n", shmstore_kind_name(o.kind), o.is_sealed ? " (sealed)" : "");
    if (o.kind == SHMSTORE_KIND_RING)
        return info_ring(s, t, &o);
    if (o.kind == SHMSTORE_KIND_QUEUE) {
        printf("entries      %" PRIu64 " of %" PRIu64 " (when full: %s)\n", o.count, o.capacity,
               cli_queue_full_name(o.full));
        if (o.slot_size)
            printf("slot size    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o.slot_size, b[0], 32),
                   o.slot_size);
        else
            printf("slot size    any\n");
        printf("indices      %" PRIu64 " .. %" PRIu64 " (next pop .. next commit)\n",
               o.first_index, o.next_index);
        printf("dropped      %" PRIu64 "\n", o.dropped);
        printf("pinned       %" PRIu32 " entries held by views\n", o.n_pinned);
        printf("waiting      %" PRIu32 " producer / %" PRIu32 " consumer processes\n",
               o.producers_waiting, o.consumers_waiting);
        printf("size         %s (%" PRIu64 " bytes in entries)\n", cli_fmt_bytes(o.size, b[0], 32),
               o.size);
        printf("footprint    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o.footprint, b[1], 32),
               o.footprint);
        printf("modified     %s (%" PRIu64 " ns, newest entry)\n",
               cli_fmt_time(o.mtime_ns, when, sizeof when), o.mtime_ns);
        return CLI_EX_OK;
    }
    if (o.kind == SHMSTORE_KIND_TABLE)
        return info_table(s, t, &o);
    if (o.kind == SHMSTORE_KIND_SET) {
        printf("members      %s\n", cli_fmt_type(&o, type, sizeof type));
        printf("lifetime     %s (created by pid %d)\n",
               o.set_flags & SHMSTORE_SET_TIED ? "tied to its creator" : "persistent",
               (int)o.set_owner_pid);
        printf("size         %s (%" PRIu64 " bytes of payload)\n", cli_fmt_bytes(o.size, b[0], 32),
               o.size);
        printf("footprint    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o.footprint, b[1], 32),
               o.footprint);
        printf("created      %s\n", cli_fmt_time(o.mtime_ns, when, sizeof when));
        if (!o.set_loading)
            cli_print_set_tree(s, o.name, stdout);
        return CLI_EX_OK;
    }
    printf("type         %s\n", o.version ? cli_fmt_desc(&o.desc, type, sizeof type)
                                          : "- (never written)");
    printf("size         %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o.size, b[0], 32), o.size);
    printf("footprint    %s (%" PRIu64 " bytes)\n", cli_fmt_bytes(o.footprint, b[1], 32),
           o.footprint);
    printf("version      %" PRIu64 "\n", o.version);
    printf("modified     %s (%" PRIu64 " ns)\n", cli_fmt_time(o.mtime_ns, when, sizeof when),
           o.mtime_ns);
    return CLI_EX_OK;
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli_target t;
    shmstore_t *s;
    int c, rc, is_json = 0;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
        if (c == 'j')
            is_json = 1;
        else if ((rc = cli_common_opt(c, argv, &cli_cmd_info, ctx)) >= 0)
            return rc;
    }
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_info, "expected one STORE or STORE/NAME");
    if ((rc = cli_parse_target(&cli_cmd_info, argv[optind], 0, &t)) != 0)
        return rc;
    if ((rc = cli_open_store(ctx, t.store, &s)) != 0)
        return rc;
    rc = t.name ? info_object(s, &t, argv[optind], is_json)
                : info_store(ctx, s, t.store, is_json);
    shmstore_close(s);
    return rc == CLI_EX_OK ? cli_finish_output(rc) : rc;
}
