/* util.c - helpers every verb of the CLI shares: common options, STORE/NAME operands,
 * sizes and durations, error reporting with hints, and the mapping from library codes
 * to sysexits-style exit codes. Output formatting (datums, JSON, sizes, dates) is in
 * print.c.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- options ------------------------------------------------------------------------- */

void cli_print_usage(const struct cli_cmd *cmd, FILE *f)
{
    fputs(cmd->usage, f);
    fputs("\nCommon options:\n"
          "  --dir DIR    directory of the stores (default: $SHMSTORE_DIR or /dev/shm)\n"
          "  -h, --help   show this help\n",
          f);
}

int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shmstore %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shmstore %s --help'.\n", cmd->name);
    return CLI_EX_USAGE;
}

int cli_common_opt(int c, char **argv, const struct cli_cmd *cmd, struct cli_ctx *ctx)
{
    /* Verbs call getopt_long with opterr = 0 and a leading ':' so that errors are
     * reported here, in our words and with our exit code. */
    const char *arg = optind > 0 ? argv[optind - 1] : "?";

    switch (c) {
    case CLI_OPT_DIR:
        if (optarg[0] == '\0')
            return cli_usage_error(cmd, "--dir needs a directory");
        ctx->dir = optarg;
        return -1;
    case CLI_OPT_HELP:
        cli_print_usage(cmd, stdout);
        return cli_finish_output(CLI_EX_OK);
    case ':':
        if (optopt && optopt < 0x100 && strncmp(arg, "--", 2) != 0)
            return cli_usage_error(cmd, "option '-%c' needs a value", optopt);
        return cli_usage_error(cmd, "option '%s' needs a value", arg);
    default:
        if (optopt && optopt < 0x100 && strncmp(arg, "--", 2) != 0)
            return cli_usage_error(cmd, "unknown option '-%c'", optopt);
        return cli_usage_error(cmd, "unknown option '%s'", arg);
    }
}

const char *cli_dir_shown(const struct cli_ctx *ctx)
{
    const char *env = getenv("SHMSTORE_DIR");
    if (ctx->dir)
        return ctx->dir;
    return env && env[0] ? env : "/dev/shm";
}

/* ---- parsing ------------------------------------------------------------------------- */

int cli_parse_target(const struct cli_cmd *cmd, const char *arg, int need_name,
                     struct cli_target *t)
{
    const char *slash = strchr(arg, '/');
    size_t store_len = slash ? (size_t)(slash - arg) : strlen(arg);

    if (store_len == 0)
        return cli_usage_error(cmd, "'%s': empty store name", arg);
    if (store_len > SHMSTORE_STORE_NAME_MAX)
        return cli_usage_error(cmd, "'%.40s...': store name longer than %d bytes", arg,
                               SHMSTORE_STORE_NAME_MAX);
    memcpy(t->store, arg, store_len);
    t->store[store_len] = '\0';
    t->name = slash ? slash + 1 : NULL;

    if (need_name > 0 && (!t->name || !t->name[0]))
        return cli_usage_error(cmd, "'%s': expected STORE/NAME", arg);
    if (need_name < 0 && t->name)
        return cli_usage_error(cmd, "'%s': expected a store name, without '/'", arg);
    if (t->name && !t->name[0])
        return cli_usage_error(cmd, "'%s': empty object name after '/'", arg);
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s[0] < '0' || s[0] > '9')
        return -1; /* strtoull would accept " 1", "+1" and "-1" */
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "KMGT";
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (*end) {
        const char *u = strchr(units, end[0] & ~0x20); /* upper case */
        if (!u || !*u) /* "& ~0x20" makes ' ' a NUL, which strchr finds */
            return -1;
        shift = 10 * (unsigned)(u - units + 1);
        end++;
        /* Accept "8G", "8GB", "8GiB" (all base 1024). */
        if (*end == 'i')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (*end)
            return -1;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int cli_parse_seconds(const char *s, int64_t *out_ns)
{
    char *end;
    double sec;

    if ((s[0] < '0' || s[0] > '9') && s[0] != '.')
        return -1; /* rejects "-1", "inf", "nan", " 1" */
    errno = 0;
    sec = strtod(s, &end);
    if (errno || *end || !isfinite(sec) || sec < 0)
        return -1;
    /* More than ~292 years is "forever" for our purposes; clamp instead of failing. */
    *out_ns = sec >= 9.2e9 ? INT64_MAX : (int64_t)(sec * 1e9);
    return 0;
}

/* ---- errors -------------------------------------------------------------------------- */

int cli_exit_code(int err)
{
    switch (err) {
    case 0:
        return CLI_EX_OK;
    case -ENOENT:
    case SHMSTORE_ENOVALUE:
        return CLI_EX_NOINPUT;
    case -EEXIST:
    case -ENOSPC:
    case -EFBIG:
        return CLI_EX_CANTCREAT;
    case -EACCES:
    case -EPERM:
    case -EROFS:
    case SHMSTORE_EOWNER:
        return CLI_EX_NOPERM;
    case -EINVAL:
    case -ENAMETOOLONG:
    case SHMSTORE_ENAME:
        return CLI_EX_USAGE;
    case SHMSTORE_EKIND:
    case SHMSTORE_ELAYOUT:
    case SHMSTORE_ESEALED:
    case SHMSTORE_EDTYPE:
        return CLI_EX_DATAERR;
    case SHMSTORE_EVERSION:
    case -ENOMEM:
    case -ENOSYS:
    case -EOPNOTSUPP:
        return CLI_EX_UNAVAIL;
    case SHMSTORE_EPROCS:
    case SHMSTORE_ELEASES:
    case -ESTALE:
    case -EAGAIN:
    case -EBUSY:
    case -EINTR:
    case -EMFILE:
    case -ENFILE:
        return CLI_EX_TEMPFAIL;
    case -ETIMEDOUT:
        return CLI_EX_TIMEOUT;
    case -EIO:
        return CLI_EX_IOERR;
    default:
        return CLI_EX_SOFTWARE; /* SHMSTORE_ECORRUPT, SHMSTORE_EFORK, -ENOBUFS, ... */
    }
}

/* A hint line after the message `msg`, unless the message already gives it. */
static void print_hint(int err, const char *store, const char *msg)
{
    const char *s = store ? store : "STORE";

    switch (err) {
    case -ENOSPC:
        if (strstr(msg, "shm-size"))
            break;
        fprintf(stderr,
                "hint: the store or the filesystem under it is full. Free space with "
                "'shmstore rm' or 'shmstore gc %s',\n"
                "      create the store with a larger --capacity, or grow /dev/shm: "
                "'sudo mount -o remount,size=8G /dev/shm'\n"
                "      (in Docker: 'docker run --shm-size=8g ...').\n",
                s);
        break;
    case SHMSTORE_ECORRUPT:
        if (strstr(msg, "shmstore check") && !store)
            break;
        fprintf(stderr, "hint: run 'shmstore check %s' for a report.\n", s);
        break;
    case SHMSTORE_EPROCS:
    case SHMSTORE_EFORK:
        fprintf(stderr, "hint: run 'shmstore gc %s' to reclaim what dead processes left.\n", s);
        break;
    case SHMSTORE_EVERSION:
        fprintf(stderr, "hint: use the shmstore release that created '%s', or remove it "
                        "('shmstore rm %s') and create it again.\n", s, s);
        break;
    default:
        break;
    }
}

int cli_error(int err, const char *store, const char *fmt, ...)
{
    /* Fetch the detail first: any later library call may overwrite it. */
    const char *msg = shmstore_errmsg();
    va_list ap;

    if (!msg || !msg[0])
        msg = shmstore_strerror(err);
    fputs("shmstore: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", msg);
    print_hint(err, store, msg);
    return cli_exit_code(err);
}

int cli_fail(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("shmstore: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_finish_output(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(CLI_EX_IOERR, "writing the output: %s", strerror(errno));
    return rc;
}

int cli_open_error(const struct cli_ctx *ctx, const char *name, int err)
{
    if (err == -ENOENT)
        return cli_fail(CLI_EX_NOINPUT, "%s: no such store in %s", name, cli_dir_shown(ctx));
    return cli_error(err, name, "%s: cannot open the store", name);
}

int cli_open_store(const struct cli_ctx *ctx, const char *name, shmstore_t **out)
{
    shmstore_options_t opt = {.dir = ctx->dir};
    /* The tool never recovers implicitly: ls must show dead processes, gc reports them. */
    int rc = shmstore_open(name, SHMSTORE_O_NORECOVER, &opt, out);

    return rc < 0 ? cli_open_error(ctx, name, rc) : 0;
}

int cli_open_value(const struct cli_ctx *ctx, const struct cli_target *t, const char *arg,
                   shmstore_t **s_out, shmstore_value_t **v_out)
{
    shmstore_t *s;
    int rc = cli_open_store(ctx, t->store, &s);
    if (rc != 0)
        return rc;
    rc = shmstore_value_open(s, t->name, 0, v_out);
    if (rc == 0) {
        *s_out = s;
        return 0;
    }
    rc = rc == -ENOENT ? cli_fail(CLI_EX_NOINPUT, "%s: no such object", arg)
                       : cli_error(rc, t->store, "%s: cannot open", arg);
    shmstore_close(s);
    return rc;
}

static int count_proc(const shmstore_proc_info_t *p, void *arg)
{
    uint32_t *n = arg;
    if (!p->is_self)
        n[p->is_alive ? 0 : 1]++;
    return 0;
}

int cli_count_procs(shmstore_t *s, uint32_t *n_alive, uint32_t *n_dead)
{
    uint32_t n[2] = {0, 0};
    int rc = shmstore_procs(s, count_proc, n);

    *n_alive = n[0];
    *n_dead = n[1];
    return rc;
}
