/* cmd_put.c - `shmstore put STORE/NAME VALUE`: publish a new version of a value, from
 * the command line or from a file (.npy array or raw bytes). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define NPY_HEADER_MAX (1u << 20) /* numpy itself writes a few hundred bytes at most */

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_put = {
    "put", run, "write a new version of a value",
    "Usage: shmstore put [--str] [--same-layout] STORE/NAME VALUE\n"
    "       shmstore put [--same-layout] --file PATH STORE/NAME\n"
    "\n"
    "Publish a new version of the value STORE/NAME (created if needed): its version\n"
    "goes up and the processes waiting on it wake. VALUE is stored as an int64 if it\n"
    "reads as a whole number, else as a float64 if it reads as a number (1.5, 1e-3,\n"
    "nan, inf), else as a string. Negative numbers may be given as is: put s/x -5.\n"
    "\n"
    "Options:\n"
    "  -s, --str          store VALUE as a string, whatever it looks like\n"
    "  -f, --file PATH    store the contents of a file: a numpy .npy file (format 1, 2\n"
    "                     or 3, C order) becomes an array with its dtype and shape, any\n"
    "                     other file is stored as bytes. The file is read straight into\n"
    "                     the store: no second copy in memory.\n"
    "  -l, --same-layout  fail (exit 65) unless type, dtype, shape and size equal the\n"
    "                     current version's\n"};

/* int64, then float64, then string. */
static void parse_value(const char *arg, int force_str, shmstore_datum_t *d, void *num,
                        const void **data, size_t *len)
{
    char *end;
    long long iv;
    double dv;
    int is_numeric_start = arg[0] && !strchr(" \t\n\r\f\v", arg[0]);

    if (!force_str && is_numeric_start) {
        errno = 0;
        iv = strtoll(arg, &end, 10);
        if (!errno && !*end) {
            int64_t i64 = iv;
            shmstore_datum_init(d, SHMSTORE_T_INT64);
            memcpy(num, &i64, 8);
            *data = num;
            *len = 8;
            return;
        }
        /* strtod would also read hex ("0x10" -> 16.0): a surprise, so it is a string. */
        errno = 0;
        dv = strtod(arg, &end);
        if (!*end && !strpbrk(arg, "xX") && (!errno || errno == ERANGE)) {
            shmstore_datum_init(d, SHMSTORE_T_FLOAT64);
            memcpy(num, &dv, 8);
            *data = num;
            *len = 8;
            return;
        }
    }
    shmstore_datum_init(d, SHMSTORE_T_STR);
    *data = arg;
    *len = strlen(arg);
}

/* Read exactly `len` bytes at `off`. Returns 0 or -errno (-EIO at a short file). */
static int read_at(int fd, void *buf, uint64_t len, uint64_t off)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Describe the file: a .npy array (descriptor, payload offset and length) or bytes. */
static int describe_file(int fd, const char *path, uint64_t size, shmstore_datum_t *d,
                         uint64_t *data_off, uint64_t *data_len)
{
    unsigned char head[12];
    uint64_t prefix, hlen;
    char err[256], *hdr;
    int rc;

    if (size >= 10 && (rc = read_at(fd, head, size < 12 ? 10 : 12, 0)) < 0)
        return cli_fail(CLI_EX_IOERR, "%s: %s", path, strerror(-rc));
    if (size < 10 || cli_npy_prefix_len(head, size < 12 ? 10 : 12, &prefix, &hlen) != 0) {
        size_t n = strlen(path);
        if (n >= 4 && strcmp(path + n - 4, ".npy") == 0)
            return cli_fail(CLI_EX_DATAERR, "%s: not a .npy file (bad magic or version)",
                            path);
        shmstore_datum_init(d, SHMSTORE_T_BYTES);
        *data_off = 0;
        *data_len = size;
        return 0;
    }
    if (hlen > NPY_HEADER_MAX || prefix + hlen > size)
        return cli_fail(CLI_EX_DATAERR, "%s: .npy header length %llu is not plausible", path,
                        (unsigned long long)hlen);
    if (!(hdr = malloc(hlen)))
        return cli_fail(CLI_EX_UNAVAIL, "out of memory");
    rc = read_at(fd, hdr, hlen, prefix);
    if (rc < 0)
        rc = cli_fail(CLI_EX_IOERR, "%s: %s", path, strerror(-rc));
    else if (cli_npy_parse(hdr, hlen, d, data_len, err, sizeof err) != 0)
        rc = cli_fail(CLI_EX_DATAERR, "%s: %s", path, err);
    free(hdr);
    if (rc != 0)
        return rc;
    *data_off = prefix + hlen;
    if (size - *data_off != *data_len)
        return cli_fail(CLI_EX_DATAERR, "%s: the header announces %llu bytes of data, the "
                        "file has %llu", path, (unsigned long long)*data_len,
                        (unsigned long long)(size - *data_off));
    return 0;
}

/* Open the value, creating it if needed; `*is_new` says whether we did, so that a put
 * that fails can remove it instead of leaving an empty value behind. */
static int open_value(shmstore_t *s, const struct cli_target *t, const char *arg,
                      shmstore_value_t **v, int *is_new)
{
    int rc = shmstore_value_open(s, t->name, 0, v);

    *is_new = 0;
    if (rc == -ENOENT) {
        rc = shmstore_value_open(s, t->name, SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, v);
        *is_new = rc == 0;
        if (rc == -EEXIST) /* another process created it meanwhile */
            rc = shmstore_value_open(s, t->name, 0, v);
    }
    return rc < 0 ? cli_error(rc, t->store, "%s: cannot open", arg) : 0;
}

/* Read the file straight into a reserved block of the value and publish it. */
static int put_file(shmstore_t *s, const struct cli_target *t, const char *arg,
                    const char *path, unsigned flags)
{
    shmstore_datum_t d;
    shmstore_value_t *v;
    uint64_t off = 0, len = 0;
    struct stat sb;
    void *dst;
    int fd, rc, is_new;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        int err = errno;
        return cli_fail(err == ENOENT ? CLI_EX_NOINPUT
                        : err == EACCES ? CLI_EX_NOPERM : CLI_EX_IOERR,
                        "%s: %s", path, strerror(err));
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cli_fail(CLI_EX_NOINPUT, "%s: not a regular file", path);
    }
    if ((rc = describe_file(fd, path, (uint64_t)sb.st_size, &d, &off, &len)) != 0)
        goto out_fd;
    if ((rc = open_value(s, t, arg, &v, &is_new)) != 0)
        goto out_fd;
    rc = shmstore_value_reserve(v, &d, (size_t)len, flags, &dst);
    if (rc < 0) {
        rc = cli_error(rc, t->store, "%s: cannot store %llu bytes", arg,
                       (unsigned long long)len);
        goto out_value;
    }
    rc = read_at(fd, dst, len, off);
    if (rc < 0) {
        shmstore_value_abort(v);
        rc = cli_fail(CLI_EX_IOERR, "%s: %s", path, strerror(-rc));
    } else if ((rc = shmstore_value_commit(v)) < 0) {
        rc = cli_error(rc, t->store, "%s: cannot publish", arg);
    }
out_value:
    shmstore_value_close(v);
    if (rc != 0 && is_new)
        shmstore_delete(s, t->name);
out_fd:
    close(fd);
    return rc;
}

/* Publish VALUE as given on the command line. */
static int put_scalar(shmstore_t *s, const struct cli_target *t, const char *arg,
                      const char *text, int is_str, unsigned flags)
{
    unsigned char num[8];
    shmstore_datum_t d;
    shmstore_value_t *v;
    const void *data;
    size_t len;
    int rc, is_new;

    parse_value(text, is_str, &d, num, &data, &len);
    if ((rc = open_value(s, t, arg, &v, &is_new)) != 0)
        return rc;
    rc = shmstore_value_put(v, &d, data, len, flags);
    if (rc < 0)
        rc = cli_error(rc, t->store, "%s: cannot put", arg);
    shmstore_value_close(v);
    if (rc != 0 && is_new)
        shmstore_delete(s, t->name);
    return rc;
}

/* getopt_long reads "-5" as an option: move operands that look like negative numbers
 * after a "--". `out` has room for argc + 2 pointers. Returns the new argc. */
static int protect_negative(int argc, char **argv, char **out)
{
    static char dashdash[] = "--";
    int i, n = 0, n_neg = 0, end = argc;
    char *neg[2];

    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        int after_opt = i > 0 && (strcmp(argv[i - 1], "--file") == 0 ||
                                  strcmp(argv[i - 1], "-f") == 0 ||
                                  strcmp(argv[i - 1], "--dir") == 0);
        if (strcmp(a, "--") == 0) {
            end = i;
            break;
        }
        if (i > 0 && !after_opt && a[0] == '-' && n_neg < 2 &&
            (((a[1] >= '0' && a[1] <= '9') || a[1] == '.') ||
             strcmp(a, "-inf") == 0 || strcmp(a, "-nan") == 0))
            neg[n_neg++] = argv[i];
        else
            out[n++] = argv[i];
    }
    out[n++] = dashdash;
    for (i = 0; i < n_neg; i++)
        out[n++] = neg[i];
    for (i = end + 1; i < argc; i++)
        out[n++] = argv[i];
    out[n] = NULL;
    return n;
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"str", no_argument, NULL, 's'},
        {"file", required_argument, NULL, 'f'},
        {"same-layout", no_argument, NULL, 'l'},
        CLI_COMMON_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    char **args = calloc((size_t)argc + 2, sizeof *args);
    const char *path = NULL, *arg;
    unsigned flags = 0;
    int c, rc, is_str = 0, n_operands;
    struct cli_target t;
    shmstore_t *s;

    if (!args)
        return cli_fail(CLI_EX_UNAVAIL, "out of memory");
    argc = protect_negative(argc, argv, args);
    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, args, ":sf:lh", opts, NULL)) != -1) {
        if (c == 's') {
            is_str = 1;
        } else if (c == 'f') {
            path = optarg;
        } else if (c == 'l') {
            flags |= SHMSTORE_PUT_SAME_LAYOUT;
        } else if ((rc = cli_common_opt(c, args, &cli_cmd_put, ctx)) >= 0) {
            free(args);
            return rc;
        }
    }
    n_operands = argc - optind;
    rc = 0;
    if (path && is_str)
        rc = cli_usage_error(&cli_cmd_put, "--str and --file exclude each other");
    else if (path && n_operands != 1)
        rc = cli_usage_error(&cli_cmd_put, "with --file, expected STORE/NAME only");
    else if (!path && n_operands != 2)
        rc = cli_usage_error(&cli_cmd_put, "expected STORE/NAME and VALUE");
    if (rc == 0)
        rc = cli_parse_target(&cli_cmd_put, args[optind], 1, &t);
    if (rc != 0 || (rc = cli_open_store(ctx, t.store, &s)) != 0) {
        free(args);
        return rc;
    }

    arg = args[optind];
    rc = path ? put_file(s, &t, arg, path, flags)
              : put_scalar(s, &t, arg, args[optind + 1], is_str, flags);
    shmstore_close(s);
    free(args);
    return rc;
}
