/* cmd_hdf5.c - `shmstore load-hdf5 FILE STORE[/PREFIX]` and `shmstore save-hdf5
 * STORE/PREFIX FILE`: an HDF5 file as an array set, and back. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static int run_load(int argc, char **argv, struct cli_ctx *ctx);
static int run_save(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_load_hdf5 = {
    "load-hdf5", run_load, "load an HDF5 file as an array set (all-or-nothing)",
    "Usage: shmstore load-hdf5 [OPTIONS] FILE STORE[/PREFIX]\n"
    "\n"
    "Load every dataset of FILE into the store as the array set PREFIX (default: the\n"
    "file's name without its extension): groups become name components, datasets\n"
    "members, attributes attrs (group attributes go to a member \"<group>/.attrs\").\n"
    "The set appears whole or not at all: a failure or a kill leaves nothing behind.\n"
    "The store is created if it does not exist. Each dataset is read by libhdf5\n"
    "straight into the store.\n"
    "\n"
    "Options:\n"
    "  -o, --overwrite         replace an existing set PREFIX (readers keep the old one\n"
    "                          until the new one is complete)\n"
    "      --no-progress       no progress bar (the default when stderr is not a TTY)\n"
    "      --skip-unsupported  leave out datasets and attributes of types with no\n"
    "                          equivalent (variable-length, references, opaque...)\n"
    "      --tied              remove the set when this command exits (for tests)\n"
    "  -v, --verbose           list each dataset as it is read\n"};

const struct cli_cmd cli_cmd_save_hdf5 = {
    "save-hdf5", run_save, "write an array set to an HDF5 file",
    "Usage: shmstore save-hdf5 STORE/PREFIX FILE\n"
    "\n"
    "Write the array set PREFIX to FILE (replaced if it exists; written to FILE.tmp and\n"
    "renamed, so a failure leaves no partial file): members become datasets in their\n"
    "groups, attrs become attributes.\n"};

struct progress {
    int bar, verbose;
    struct timespec t0;
    char last_path[SHMSTORE_NAME_MAX + 1];
};

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static int on_progress(const char *path, uint64_t done, uint64_t total, void *arg)
{
    struct progress *p = arg;
    if (p->verbose && path && strcmp(path, p->last_path) != 0) {
        fprintf(stderr, "  %s\n", path);
        snprintf(p->last_path, sizeof(p->last_path), "%s", path);
    }
    if (!p->bar)
        return 0;
    double el = since(&p->t0), rate = el > 0 ? (double)done / el : 0;
    double frac = total ? (double)done / (double)total : 1;
    char a[32], b[32], r[32];
    int w = 30, fill = (int)(frac * w);
    fprintf(stderr, "\r[%.*s%*s] %3d%% %s / %s  %s/s  ETA %.0fs ", fill,
            "##############################", w - fill, "", (int)(frac * 100),
            cli_fmt_bytes(done, a, sizeof(a)), cli_fmt_bytes(total, b, sizeof(b)),
            cli_fmt_bytes((uint64_t)rate, r, sizeof(r)),
            rate > 0 ? (double)(total - done) / rate : 0.0);
    if (!path)
        fputc('\n', stderr);
    return 0;
}

static const char *default_prefix(const char *file, char *buf, size_t cap)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    snprintf(buf, cap, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
    return buf;
}

static int run_load(int argc, char **argv, struct cli_ctx *ctx)
{
    enum { O_NOPROG = 0x200, O_SKIP, O_TIED };
    static const struct option opts[] = {
        {"overwrite", no_argument, NULL, 'o'},
        {"no-progress", no_argument, NULL, O_NOPROG},
        {"skip-unsupported", no_argument, NULL, O_SKIP},
        {"tied", no_argument, NULL, O_TIED},
        {"verbose", no_argument, NULL, 'v'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    unsigned flags = 0;
    int c, rc, no_progress = 0, verbose = 0;
    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":ovh", opts, NULL)) != -1) {
        if (c == 'o')
            flags |= SHMSTORE_H5_OVERWRITE;
        else if (c == O_NOPROG)
            no_progress = 1;
        else if (c == O_SKIP)
            flags |= SHMSTORE_H5_SKIP_UNSUPPORTED;
        else if (c == O_TIED)
            flags |= SHMSTORE_H5_TIED;
        else if (c == 'v')
            verbose = 1;
        else if ((rc = cli_common_opt(c, argv, &cli_cmd_load_hdf5, ctx)) >= 0)
            return rc;
    }
    if (argc - optind != 2)
        return cli_usage_error(&cli_cmd_load_hdf5, "expected FILE and STORE[/PREFIX]");
    const char *file = argv[optind];
    struct cli_target t;
    if ((rc = cli_parse_target(&cli_cmd_load_hdf5, argv[optind + 1], 0, &t)) != 0)
        return rc;
    if (!shmstore_hdf5_available())
        return cli_fail(CLI_EX_UNAVAIL, "load-hdf5: this shmstore was built without HDF5");
    char pbuf[SHMSTORE_NAME_MAX + 1];
    const char *prefix = t.name ? t.name : default_prefix(file, pbuf, sizeof(pbuf));
    shmstore_options_t opt = {.dir = ctx->dir};
    shmstore_t *s;
    rc = shmstore_open(t.store, SHMSTORE_O_CREATE, &opt, &s);
    if (rc < 0)
        return cli_open_error(ctx, t.store, rc);
    struct progress p = {.bar = !no_progress && !verbose && isatty(2), .verbose = verbose};
    clock_gettime(CLOCK_MONOTONIC, &p.t0);
    uint64_t n = 0;
    rc = shmstore_hdf5_load(s, file, prefix, flags, on_progress, &p, &n);
    if (rc < 0) {
        if (p.bar)
            fputc('\n', stderr);
        rc = cli_error(rc, t.store, "load-hdf5 %s", file);
    } else if (verbose || p.bar) {
        char b[32];
        shmstore_obj_info_t info;
        if (shmstore_info(s, prefix, &info) == 0)
            fprintf(stderr, "loaded %llu datasets (%s) as %s/%s in %.2f s\n",
                    (unsigned long long)n, cli_fmt_bytes(info.size, b, sizeof(b)), t.store,
                    prefix, since(&p.t0));
    }
    if (flags & SHMSTORE_H5_TIED) /* nothing else keeps it: say so */
        fprintf(stderr, "load-hdf5: --tied: the set goes when this command exits\n");
    shmstore_close(s);
    return rc;
}

static int run_save(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {CLI_COMMON_LONG_OPTS, {NULL, 0, NULL, 0}};
    int c, rc;
    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
        if ((rc = cli_common_opt(c, argv, &cli_cmd_save_hdf5, ctx)) >= 0)
            return rc;
    if (argc - optind != 2)
        return cli_usage_error(&cli_cmd_save_hdf5, "expected STORE/PREFIX and FILE");
    struct cli_target t;
    if ((rc = cli_parse_target(&cli_cmd_save_hdf5, argv[optind], 1, &t)) != 0)
        return rc;
    if (!shmstore_hdf5_available())
        return cli_fail(CLI_EX_UNAVAIL, "save-hdf5: this shmstore was built without HDF5");
    shmstore_t *s;
    if ((rc = cli_open_store(ctx, t.store, &s)) != 0)
        return rc;
    rc = shmstore_hdf5_save(s, t.name, argv[optind + 1]);
    if (rc < 0)
        rc = cli_error(rc, t.store, "save-hdf5 %s", argv[optind]);
    shmstore_close(s);
    return rc;
}

/* ---- array sets in ls/info/cat ------------------------------------------------------------ */

/* The members of set `prefix` as a tree: groups, then each member's type and size. */
int cli_print_set_tree(shmstore_t *s, const char *prefix, FILE *f)
{
    shmstore_set_t *set;
    int rc = shmstore_set_open(s, prefix, &set);
    if (rc < 0)
        return rc;
    size_t n = shmstore_set_count(set);
    const char *prev = "";
    fprintf(f, "%s/\n", prefix);
    for (size_t i = 0; i < n; i++) {
        shmstore_set_member_t m;
        shmstore_set_member(set, i, &m);
        /* The groups this member opens: components after the common group part. */
        size_t common = 0, k = 0;
        for (; m.name[k] && m.name[k] == prev[k]; k++)
            if (m.name[k] == '/')
                common = k + 1;
        int depth = 0;
        for (size_t j = 0; j < common; j++)
            depth += m.name[j] == '/';
        for (const char *p = m.name + common, *slash; (slash = strchr(p, '/')); p = slash + 1)
            fprintf(f, "%*s%.*s/\n", 2 * (++depth), "", (int)(slash - p), p);
        const char *leaf = strrchr(m.name, '/');
        char d[128], b[32];
        fprintf(f, "%*s%-24s %-28s %10s", 2 * (depth + 1), "", leaf ? leaf + 1 : m.name,
                cli_fmt_desc(&m.desc, d, sizeof(d)), cli_fmt_bytes(m.len, b, sizeof(b)));
        if (m.desc.attrs_len) {
            int na = 0;
            for (const char *a = m.desc.attrs; a < (const char *)m.desc.attrs + m.desc.attrs_len;) {
                uint16_t kl;
                uint32_t vl;
                memcpy(&kl, a, 2);
                memcpy(&vl, a + 4, 4);
                a += (8 + kl + vl + 7) & ~7u;
                na++;
            }
            fprintf(f, "  (%d attrs)", na);
        }
        fputc('\n', f);
        prev = m.name;
    }
    shmstore_set_close(set);
    return 0;
}

/* A view of the set member called `name` (cat STORE/SET/MEMBER). Returns 0, or -ENOENT
 * when no set holds that name. */
int cli_set_member_view(shmstore_t *s, const char *name, shmstore_view_t *out)
{
    shmstore_set_t *set;
    size_t i;
    int rc = shmstore_set_open_member(s, name, &set, &i);
    if (rc == 0) {
        rc = shmstore_set_view(set, i, out);
        shmstore_set_close(set);
    }
    return rc;
}
