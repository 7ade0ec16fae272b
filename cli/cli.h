/* cli.h - what the files of the `shmstore` command-line tool share.
 *
 * main.c owns the command table and the global options; each verb lives in
 * cmd_<verb>.c and exports one `struct cli_cmd`; util.c holds the helpers every verb
 * uses (options, STORE/NAME parsing, sizes, errors and exit codes); print.c and json.c
 * format output for humans and for programs; npy.c reads numpy .npy headers.
 * The tool uses only the public API (shmstore.h).
 */
#ifndef SHMSTORE_CLI_H
#define SHMSTORE_CLI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shmstore.h"

/* Exit codes (sysexits.h values, plus timeout(1)'s 124). Documented in shmstore.1 and
 * `shmstore --help`; scripts test them, so they never change meaning. */
enum {
    CLI_EX_OK = 0,
    CLI_EX_PROBLEMS = 1,  /* check: the store is not consistent */
    CLI_EX_USAGE = 64,    /* bad command line, bad name */
    CLI_EX_DATAERR = 65,  /* bad input data: .npy file, kind, layout, sealed */
    CLI_EX_NOINPUT = 66,  /* no such store, object or file; value never written */
    CLI_EX_UNAVAIL = 69,  /* store of another layout version, no memory, unsupported */
    CLI_EX_SOFTWARE = 70, /* corrupt store or internal error */
    CLI_EX_CANTCREAT = 73, /* exists already; out of space (/dev/shm or capacity full) */
    CLI_EX_IOERR = 74,    /* reading a file or writing the output failed */
    CLI_EX_TEMPFAIL = 75, /* try again: process/lease table full, object replaced */
    CLI_EX_NOPERM = 77,   /* another user's store, permission denied */
    CLI_EX_TIMEOUT = 124, /* wait: timed out */
};

/* The options every verb shares. */
struct cli_ctx {
    const char *dir; /* --dir, or NULL: the library uses $SHMSTORE_DIR or /dev/shm */
};

/* One verb. `run` gets argv[0] = the verb name and returns an exit code. */
struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv, struct cli_ctx *ctx);
    const char *summary; /* one line for `shmstore --help` */
    const char *usage;   /* full help: synopsis, description, options */
};

extern const struct cli_cmd cli_cmd_ls;
extern const struct cli_cmd cli_cmd_info;
extern const struct cli_cmd cli_cmd_cat;
extern const struct cli_cmd cli_cmd_create;
extern const struct cli_cmd cli_cmd_put;
extern const struct cli_cmd cli_cmd_wait;
extern const struct cli_cmd cli_cmd_rm;
extern const struct cli_cmd cli_cmd_gc;
extern const struct cli_cmd cli_cmd_check;
extern const struct cli_cmd cli_cmd_watch;
extern const struct cli_cmd cli_cmd_load_hdf5;
extern const struct cli_cmd cli_cmd_save_hdf5;
extern const struct cli_cmd cli_cmd_bridge;
/* cmd_hdf5.c: array sets in info and cat. */
int cli_print_set_tree(shmstore_t *s, const char *prefix, FILE *f);
int cli_set_member_view(shmstore_t *s, const char *name, shmstore_view_t *out);

/* The verbs implemented in bench/ (library shmstore_bench); argv[0] is the verb. */
int shmstore_bench_main(int argc, char **argv);
int shmstore_demo_main(int argc, char **argv);

/* ---- util.c: options ----------------------------------------------------------------- */

/* Long-option ids shared by every verb (getopt_long `val`s above any short option). */
enum { CLI_OPT_DIR = 0x100, CLI_OPT_HELP = 'h' };

/* Reset getopt before a verb parses its options, and silence it: verbs pass short
 * options starting with ':' so that cli_common_opt() reports errors in our words.
 * (optind = 0 is glibc's full reinitialisation.) */
#define CLI_GETOPT_INIT() (optind = 0, opterr = 0)

/* Handle an option every verb accepts (--dir, --help) or an error from getopt_long
 * (':' missing value, '?' unknown option). Returns -1 when `c` was handled and parsing
 * goes on, else the exit code to return now (0 after --help, CLI_EX_USAGE). */
int cli_common_opt(int c, char **argv, const struct cli_cmd *cmd, struct cli_ctx *ctx);

/* The long options every verb accepts; put them last in a verb's option table. */
#define CLI_COMMON_LONG_OPTS                                                               \
    {"dir", required_argument, NULL, CLI_OPT_DIR}, {"help", no_argument, NULL, CLI_OPT_HELP}

/* Print `cmd`'s help to `f`. */
void cli_print_usage(const struct cli_cmd *cmd, FILE *f);

/* Report a usage error about `cmd` ("shmstore VERB: <msg>", a pointer to --help) and
 * return CLI_EX_USAGE. */
int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The directory stores live in, for display: ctx->dir, $SHMSTORE_DIR or /dev/shm. */
const char *cli_dir_shown(const struct cli_ctx *ctx);

/* ---- util.c: parsing ------------------------------------------------------------------ */

/* A "STORE/NAME" operand split at the first '/': the store is what precedes it, the
 * object name is the rest (it may contain '/'); without '/', name is NULL. */
struct cli_target {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    const char *name; /* points into the operand, or NULL */
};

/* Split `arg`. `need_name` > 0 requires NAME, 0 allows it, < 0 forbids it. Returns 0,
 * or prints a usage error and returns CLI_EX_USAGE. */
int cli_parse_target(const struct cli_cmd *cmd, const char *arg, int need_name,
                     struct cli_target *t);

/* "123", "64K", "8G", "1T", "16MiB" (suffixes K M G T, base 1024). Returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);

/* Whole non-negative decimal number. Returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);

/* Seconds ("2", "0.5") to nanoseconds. Returns 0 or -1. */
int cli_parse_seconds(const char *s, int64_t *out_ns);

/* ---- print.c and json.c: output ----------------------------------------------------- */

/* "12.5 MiB" (or "512 B") into buf. Returns buf. */
const char *cli_fmt_bytes(uint64_t n, char *buf, size_t cap);

/* ISO-8601 local time with milliseconds and UTC offset ("2024-05-01T12:34:56.789+02:00"),
 * or "-" for 0. Returns buf. */
const char *cli_fmt_time(uint64_t ns, char *buf, size_t cap);

/* Type name of a datum type ("int64", "array", ...). */
const char *cli_type_name(uint32_t type);

/* "int64", "str", "array <f8 (3, 4)" into buf. Returns buf. */
const char *cli_fmt_desc(const shmstore_datum_t *d, char *buf, size_t cap);
/* What an object holds, for the TYPE column: a value's descriptor ("-" when never
 * written), a queue's fill ("12/1024 entries"). */
const char *cli_fmt_type(const shmstore_obj_info_t *o, char *buf, size_t cap);
/* The name of a queue's full policy: "block", "drop_oldest", "error". */
const char *cli_queue_full_name(uint32_t full);

/* Print a payload for humans, newline-terminated: scalars and strings in full, bytes
 * escaped and cut, arrays summarized (dtype, shape, first/last values, min/max). */
void cli_print_datum(FILE *f, const shmstore_datum_t *d, const void *data, size_t len);

/* JSON: a string literal of `len` bytes (control characters escaped, invalid UTF-8 as
 * U+FFFD), and a descriptor's fields ("type", and "dtype"/"shape" for arrays). */
void cli_json_str(FILE *f, const char *s, size_t len);
void cli_json_desc(FILE *f, const shmstore_datum_t *d);

/* JSON: an object's description as one JSON object (type null when never written), and
 * a store's figures as the members "capacity", "committed", ... (no braces). */
void cli_json_obj(FILE *f, const shmstore_obj_info_t *o);
/* The members of cli_json_obj() without the braces, for a caller that adds its own. */
void cli_json_obj_members(FILE *f, const shmstore_obj_info_t *o);
void cli_json_stat(FILE *f, const shmstore_stat_t *st);

/* Flush stdout; on failure report it and return CLI_EX_IOERR, else `rc`. */
int cli_finish_output(int rc);

/* ---- util.c: errors ------------------------------------------------------------------- */

/* Exit code for a library error code. */
int cli_exit_code(int err);

/* Print "shmstore: <what>: <why>" (why = shmstore_errmsg(), or shmstore_strerror(err)
 * when empty) and a hint line where one helps (`store` names the store in it, may be
 * NULL). Call it right after the failing library call. Returns cli_exit_code(err). */
int cli_error(int err, const char *store, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Print "shmstore: <msg>" for a failure that is not a library code. Returns `code`. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report that opening the store `name` failed with `err`; returns the exit code. */
int cli_open_error(const struct cli_ctx *ctx, const char *name, int err);

/* Open the existing store `name` (no create). Prints the error and returns the exit
 * code on failure, else 0. */
int cli_open_store(const struct cli_ctx *ctx, const char *name, shmstore_t **out);

/* Open the store of `t` and its existing value (`arg` is the STORE/NAME as typed, for
 * messages). Prints the error and returns the exit code on failure (nothing left open),
 * else 0 with both handles for the caller to close. */
int cli_open_value(const struct cli_ctx *ctx, const struct cli_target *t, const char *arg,
                   shmstore_t **s_out, shmstore_value_t **v_out);

/* ---- npy.c: numpy .npy files ---------------------------------------------------------- */

/* If `buf` (the first `len` bytes of a file, at least 12 when the file has them) starts
 * a .npy file, set the length of its fixed prefix (10 or 12) and of the header that
 * follows, and return 0; else return -1. */
int cli_npy_prefix_len(const unsigned char *buf, size_t len, uint64_t *prefix,
                       uint64_t *header_len);

/* Parse the header dict of a .npy file into an ARRAY descriptor and the payload length
 * (itemsize * prod(shape)). Returns 0, or -1 with a message in `err`. */
int cli_npy_parse(const char *hdr, size_t len, shmstore_datum_t *d, uint64_t *data_len,
                  char *err, size_t err_cap);

/* Count the processes attached to `s` other than this one, alive and dead. Returns 0
 * or a negative code. */
int cli_count_procs(shmstore_t *s, uint32_t *n_alive, uint32_t *n_dead);

#endif
