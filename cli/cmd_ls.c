/* cmd_ls.c - `shmstore ls [STORE[/PREFIX]]`: list the stores of the directory, or the
 * objects and attached processes of one store. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_ls = {
    "ls", run, "list stores, or the objects and processes of a store",
    "Usage: shmstore ls [-s] [--json] [STORE[/PREFIX]]\n"
    "\n"
    "Without STORE, list the stores of the store directory: memory used, committed and\n"
    "capacity, number of objects and of attached processes (other than this one).\n"
    "With STORE, list its objects (name, kind, type with dtype and shape - for a queue,\n"
    "its entries and capacity -, size, version - for a queue, the next entry's index -,\n"
    "time of the last change), then the processes attached to it and whether each is\n"
    "alive. With STORE/PREFIX, only the objects whose names start with PREFIX.\n"
    "\n"
    "Options:\n"
    "  -s, --short  names only, one per line\n"
    "  -j, --json   one JSON document (sizes in bytes, times in ns since the epoch)\n"};

/* What our callbacks return when out of memory: positive, unlike every library code. */
#define CB_NOMEM 1

/* A growable array of `size`-byte items. */
struct vec {
    void *v;
    size_t n, cap, size;
};

static void *vec_push(struct vec *a)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        void *v = realloc(a->v, cap * a->size);
        if (!v)
            return NULL;
        a->v = v;
        a->cap = cap;
    }
    return (char *)a->v + a->size * a->n++;
}

/* ---- the stores of a directory ------------------------------------------------------ */

static int add_store(const char *name, void *arg)
{
    char **slot = vec_push(arg);
    if (!slot || !(*slot = strdup(name)))
        return CB_NOMEM;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_store_row(const struct cli_ctx *ctx, const char *name, int is_json,
                            int is_first)
{
    shmstore_options_t opt = {.dir = ctx->dir};
    shmstore_stat_t st;
    shmstore_t *s = NULL;
    uint32_t n_alive = 0, n_dead = 0;
    char b[3][32], when[48];
    int rc = shmstore_open(name, SHMSTORE_O_NORECOVER, &opt, &s);

    if (rc == 0) {
        rc = shmstore_stat(s, &st);
        if (rc == 0)
            rc = cli_count_procs(s, &n_alive, &n_dead);
    }
    if (rc < 0) {
        const char *msg = shmstore_errmsg();
        msg = msg[0] ? msg : shmstore_strerror(rc);
        if (is_json) {
            fputs(is_first ? "\n    {\"name\": " : ",\n    {\"name\": ", stdout);
            cli_json_str(stdout, name, strlen(name));
            fprintf(stdout, ", \"error\": \"%s\", \"message\": ", shmstore_err_name(rc));
            cli_json_str(stdout, msg, strlen(msg));
            fputc('}', stdout);
        } else {
            printf("%-20s  %s\n", name, msg);
        }
    } else if (is_json) {
        fputs(is_first ? "\n    {\"name\": " : ",\n    {\"name\": ", stdout);
        cli_json_str(stdout, name, strlen(name));
        fputs(", ", stdout);
        cli_json_stat(stdout, &st);
        fprintf(stdout, ", \"procs\": %" PRIu32 ", \"dead_procs\": %" PRIu32 "}", n_alive,
                n_dead);
    } else {
        printf("%-20s %10s %10s %10s %8" PRIu64 " %6" PRIu32 "  %s\n", name,
               cli_fmt_bytes(st.used, b[0], sizeof b[0]),
               cli_fmt_bytes(st.committed, b[1], sizeof b[1]),
               cli_fmt_bytes(st.capacity, b[2], sizeof b[2]), st.n_objects, n_alive,
               cli_fmt_time(st.ctime_ns, when, sizeof when));
    }
    shmstore_close(s);
}

static int ls_stores(const struct cli_ctx *ctx, int is_short, int is_json)
{
    struct vec names = {.size = sizeof(char *)};
    char **v;
    size_t i;
    int rc = shmstore_list_stores(ctx->dir, add_store, &names);

    v = names.v;
    if (rc == CB_NOMEM) {
        rc = cli_fail(CLI_EX_UNAVAIL, "out of memory");
        goto out;
    }
    if (rc < 0) {
        rc = rc == -ENOENT ? cli_fail(CLI_EX_NOINPUT, "%s: no such directory",
                                      cli_dir_shown(ctx))
                           : cli_error(rc, NULL, "%s: cannot list the stores",
                                       cli_dir_shown(ctx));
        goto out;
    }
    if (names.n)
        qsort(v, names.n, sizeof *v, cmp_str);

    if (is_json) {
        const char *dir = cli_dir_shown(ctx);
        fputs("{\"dir\": ", stdout);
        cli_json_str(stdout, dir, strlen(dir));
        fputs(", \"stores\": [", stdout);
    } else if (!is_short) {
        printf("%-20s %10s %10s %10s %8s %6s  %s\n", "STORE", "USED", "COMMITTED", "CAPACITY",
               "OBJECTS", "PROCS", "CREATED");
    }
    for (i = 0; i < names.n; i++) {
        if (is_short && is_json) {
            fputs(i ? ", " : "", stdout);
            cli_json_str(stdout, v[i], strlen(v[i]));
        } else if (is_short) {
            puts(v[i]);
        } else {
            print_store_row(ctx, v[i], is_json, i == 0);
        }
    }
    if (is_json)
        fputs(is_short || names.n == 0 ? "]}\n" : "\n]}\n", stdout);
    rc = cli_finish_output(CLI_EX_OK);
out:
    for (i = 0; i < names.n; i++)
        free(v[i]);
    free(v);
    return rc;
}

/* ---- the objects and processes of one store ------------------------------------------ */

static int add_obj(const shmstore_obj_info_t *o, void *arg)
{
    shmstore_obj_info_t *slot = vec_push(arg);
    if (!slot)
        return CB_NOMEM;
    *slot = *o;
    return 0;
}

static int add_proc(const shmstore_proc_info_t *p, void *arg)
{
    shmstore_proc_info_t *slot;
    if (p->is_self)
        return 0;
    if (!(slot = vec_push(arg)))
        return CB_NOMEM;
    *slot = *p;
    return 0;
}

static int cmp_obj(const void *a, const void *b)
{
    return strcmp(((const shmstore_obj_info_t *)a)->name, ((const shmstore_obj_info_t *)b)->name);
}

static void print_objects(const shmstore_obj_info_t *o, size_t n)
{
    char type[512], size[32], when[48];
    size_t i;
    int w = 4;

    for (i = 0; i < n; i++)
        if ((int)strlen(o[i].name) > w)
            w = (int)strlen(o[i].name);
    w = w > 40 ? 40 : w;
    printf("%-*s  %-5s  %-24s %10s %8s  %s\n", w, "NAME", "KIND", "TYPE", "SIZE", "VERSION",
           "MODIFIED");
    for (i = 0; i < n; i++) {
        printf("%-*s  %-5s  %-24s %10s %8" PRIu64 "  %s%s\n", w, o[i].name,
               shmstore_kind_name(o[i].kind),
               cli_fmt_type(&o[i], type, sizeof type),
               cli_fmt_bytes(o[i].size, size, sizeof size), o[i].version,
               cli_fmt_time(o[i].mtime_ns, when, sizeof when), o[i].is_sealed ? " sealed" : "");
    }
}

static void print_procs(const shmstore_proc_info_t *p, size_t n)
{
    char when[48];
    size_t i;

    if (n == 0) {
        puts("no other process attached");
        return;
    }
    printf("%-5s %8s  %-5s %7s  %s\n", "SLOT", "PID", "STATE", "LEASES", "ATTACHED");
    for (i = 0; i < n; i++)
        printf("%-5" PRIu32 " %8" PRId32 "  %-5s %7" PRIu32 "  %s\n", p[i].slot, p[i].pid,
               p[i].is_alive ? "alive" : "dead", p[i].n_leases,
               cli_fmt_time(p[i].attach_ns, when, sizeof when));
}

static void print_json(const struct cli_target *t, const shmstore_stat_t *st,
                       const shmstore_obj_info_t *o, size_t n_obj,
                       const shmstore_proc_info_t *p, size_t n_proc)
{
    size_t i;

    fputs("{\"store\": ", stdout);
    cli_json_str(stdout, t->store, strlen(t->store));
    fputs(", ", stdout);
    cli_json_stat(stdout, st);
    fputs(",\n  \"objects\": [", stdout);
    for (i = 0; i < n_obj; i++) {
        fputs(i ? ",\n    " : "\n    ", stdout);
        cli_json_obj(stdout, &o[i]);
    }
    fputs(n_obj ? "\n  ],\n  \"procs\": [" : "],\n  \"procs\": [", stdout);
    for (i = 0; i < n_proc; i++)
        printf("%s{\"slot\": %" PRIu32 ", \"pid\": %" PRId32 ", \"alive\": %s, "
               "\"leases\": %" PRIu32 ", \"attach_ns\": %" PRIu64 "}",
               i ? ",\n    " : "\n    ", p[i].slot, p[i].pid, p[i].is_alive ? "true" : "false",
               p[i].n_leases, p[i].attach_ns);
    fputs(n_proc ? "\n  ]}\n" : "]}\n", stdout);
}

static int ls_store(const struct cli_ctx *ctx, const struct cli_target *t, int is_short,
                    int is_json)
{
    struct vec objs = {.size = sizeof(shmstore_obj_info_t)};
    struct vec procs = {.size = sizeof(shmstore_proc_info_t)};
    shmstore_obj_info_t *o;
    shmstore_stat_t st;
    shmstore_t *s;
    size_t i;
    int rc;

    if ((rc = cli_open_store(ctx, t->store, &s)) != 0)
        return rc;
    rc = shmstore_stat(s, &st);
    if (rc == 0)
        rc = shmstore_list(s, t->name, add_obj, &objs);
    if (rc == 0)
        rc = shmstore_procs(s, add_proc, &procs);
    if (rc == CB_NOMEM)
        rc = cli_fail(CLI_EX_UNAVAIL, "out of memory");
    else if (rc < 0)
        rc = cli_error(rc, t->store, "%s: cannot list the store", t->store);
    shmstore_close(s); /* everything is copied: do not stay attached while printing */
    if (rc != 0)
        goto out;

    o = objs.v;
    if (objs.n)
        qsort(o, objs.n, sizeof *o, cmp_obj);
    if (is_json && is_short) {
        fputc('[', stdout);
        for (i = 0; i < objs.n; i++) {
            fputs(i ? ", " : "", stdout);
            cli_json_str(stdout, o[i].name, strlen(o[i].name));
        }
        fputs("]\n", stdout);
    } else if (is_json) {
        print_json(t, &st, o, objs.n, procs.v, procs.n);
    } else if (is_short) {
        for (i = 0; i < objs.n; i++)
            puts(o[i].name);
    } else {
        char b[3][32];
        printf("store %s: %" PRIu64 " object%s, %s used, %s committed, capacity %s\n\n",
               t->store, st.n_objects, st.n_objects == 1 ? "" : "s",
               cli_fmt_bytes(st.used, b[0], sizeof b[0]),
               cli_fmt_bytes(st.committed, b[1], sizeof b[1]),
               cli_fmt_bytes(st.capacity, b[2], sizeof b[2]));
        if (objs.n)
            print_objects(o, objs.n);
        else
            puts(t->name ? "no objects with this prefix" : "no objects");
        putchar('\n');
        print_procs(procs.v, procs.n);
    }
    rc = cli_finish_output(CLI_EX_OK);
out:
    free(objs.v);
    free(procs.v);
    return rc;
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"short", no_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli_target t;
    int c, rc, is_short = 0, is_json = 0;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":sjh", opts, NULL)) != -1) {
        if (c == 's')
            is_short = 1;
        else if (c == 'j')
            is_json = 1;
        else if ((rc = cli_common_opt(c, argv, &cli_cmd_ls, ctx)) >= 0)
            return rc;
    }
    if (argc - optind > 1)
        return cli_usage_error(&cli_cmd_ls, "expected at most one STORE");
    if (argc - optind == 0)
        return ls_stores(ctx, is_short, is_json);
    if ((rc = cli_parse_target(&cli_cmd_ls, argv[optind], 0, &t)) != 0)
        return rc;
    return ls_store(ctx, &t, is_short, is_json);
}
