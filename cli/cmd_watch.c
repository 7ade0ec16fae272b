/* cmd_watch.c - `shmstore watch STORE[/PREFIX]`: a live view of a store's objects and
 * processes, refreshed every interval.
 *
 * Each interval takes one snapshot (shmstore_list + shmstore_procs: the metadata lock
 * for the walk, no writer lock, nothing written) and compares it with the previous one:
 * an object's update rate is how much its counter grew per second (counter(): what a
 * kind has written ever - a queue's entries, a ring's frames, a table's records, in
 * shmstore_obj_info_t.next_index - or else its version), smoothed with a time constant of
 * RATE_TAU_S so that one late interval does not make it jump. A ring's readers keep
 * their cursors to themselves (they write nothing shared), so no view can show their
 * lag; WAIT shows the ones asleep for frames.
 *
 * Output: full-screen through ncurses on a terminal (ncurses sends only what changed, so
 * nothing flickers, and it knows the terminal's size and keys, also over SSH); plain
 * tables, one per interval, when stdout is not a terminal; one JSON object per interval
 * with --json. Built without ncurses, a terminal gets the plain tables too.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef SHMSTORE_HAVE_CURSES
#include <curses.h>
#endif

#include "cli.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_watch = {
    "watch", run, "a live view of a store's objects and processes",
    "Usage: shmstore watch [--interval S] [--json] [--count N] [--sort KEY] STORE[/PREFIX]\n"
    "\n"
    "Show the objects of STORE (those starting with PREFIX) and the processes attached to\n"
    "it, refreshed every interval: per object its kind, type, size, version, update rate\n"
    "per second (entries, frames or records written; smoothed over ~2 s), age of the\n"
    "last update, processes\n"
    "waiting on it and views pinning it; for queues their depth and the age of the\n"
    "oldest entry. Per process its pid, whether it is alive, its leases and the object\n"
    "it is writing to. It only reads: it takes no writer lock and never makes a writer\n"
    "wait (each snapshot holds the store's metadata lock for the walk, a few us).\n"
    "\n"
    "On a terminal the view is full-screen. Keys: q quit, s sort by the next column\n"
    "(name, kind, rate, age, size), r reverse the order, f filter by a name prefix\n"
    "(Enter to apply, empty for all), space refresh now. When stdout is not a terminal,\n"
    "one plain table is printed per interval.\n"
    "\n"
    "Options:\n"
    "  -n, --interval S  seconds between refreshes (default 1, at least 0.05)\n"
    "  -j, --json        one JSON object per interval, one per line: \"time_ns\", \"store\"\n"
    "                    figures, \"objects\" (as `info --json`, plus \"rate\" per second or\n"
    "                    null, \"age_s\", \"waiting\", \"oldest_age_s\") and \"procs\"\n"
    "  -c, --count N     stop after N refreshes (default: until q, SIGINT or SIGTERM)\n"
    "      --sort KEY    name (default), kind, rate, age or size\n"};

#define RATE_TAU_S 2.0
#define NS 1000000000.0

enum sort_key { SORT_NAME, SORT_KIND, SORT_RATE, SORT_AGE, SORT_SIZE, SORT_N };
static const char *const sort_names[SORT_N] = {"name", "kind", "rate", "age", "size"};

/* One object in a snapshot, and what the previous snapshots told about it. */
struct row {
    shmstore_obj_info_t info;
    double rate;          /* updates per second, smoothed; NAN until two snapshots */
    uint64_t changed_ns;  /* CLOCK_REALTIME when its counter was last seen to change */
    double age_s;         /* since the last update (mtime, else changed_ns); NAN: never */
    double oldest_age_s;  /* queues: age of the oldest entry; NAN: none */
};

struct snap {
    struct row *rows;
    size_t n, cap;
    shmstore_proc_info_t *procs;
    size_t n_procs, cap_procs;
    shmstore_stat_t st;
    uint64_t mono_ns, real_ns;
};

struct view {
    shmstore_t *s;
    const char *store;
    char prefix[SHMSTORE_NAME_MAX + 1];
    enum sort_key sort;
    int reverse;
    struct snap cur, prev;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * size);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------- */

static int add_obj(const shmstore_obj_info_t *info, void *arg)
{
    struct snap *sn = arg;
    if (grow((void **)&sn->rows, &sn->cap, sn->n + 1, sizeof(struct row)) < 0)
        return 1;
    struct row *r = &sn->rows[sn->n++];
    memset(r, 0, sizeof(*r));
    r->info = *info;
    return 0;
}

static int add_proc(const shmstore_proc_info_t *info, void *arg)
{
    struct snap *sn = arg;
    if (grow((void **)&sn->procs, &sn->cap_procs, sn->n_procs + 1, sizeof(*info)) < 0)
        return 1;
    sn->procs[sn->n_procs++] = *info;
    return 0;
}

static uint64_t counter(const shmstore_obj_info_t *o)
{
    return o->next_index ? o->next_index : o->version;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->info.name, ((const struct row *)b)->info.name);
}

/* Take a snapshot into v->cur (the previous one moves to v->prev) and derive rates and
 * ages. Returns 0, a library code, or 1: out of memory. */
static int take_snapshot(struct view *v)
{
    struct snap t = v->prev;
    v->prev = v->cur;
    v->cur = t;
    struct snap *sn = &v->cur, *pv = &v->prev;
    sn->n = sn->n_procs = 0;
    int rc = shmstore_list(v->s, v->prefix, add_obj, sn);
    if (rc == 0)
        rc = shmstore_procs(v->s, add_proc, sn);
    if (rc == 0)
        rc = shmstore_stat(v->s, &sn->st);
    if (rc != 0)
        return rc > 0 ? 1 : rc;
    sn->mono_ns = now_ns(CLOCK_MONOTONIC);
    sn->real_ns = now_ns(CLOCK_REALTIME);
    qsort(sn->rows, sn->n, sizeof(struct row), cmp_name);
    double dt = pv->mono_ns ? (double)(sn->mono_ns - pv->mono_ns) / NS : 0;
    double alpha = dt > 0 ? 1 - exp(-dt / RATE_TAU_S) : 1;
    for (size_t i = 0; i < sn->n; i++) {
        struct row *r = &sn->rows[i];
        const struct row *p = pv->n ? bsearch(r, pv->rows, pv->n, sizeof(struct row), cmp_name)
                                    : NULL;
        if (p && (p->info.kind != r->info.kind || counter(&p->info) > counter(&r->info)))
            p = NULL; /* deleted and made again meanwhile: start over */
        r->rate = NAN;
        r->changed_ns = p ? p->changed_ns : 0;
        if (p && dt > 0) {
            double inst = (double)(counter(&r->info) - counter(&p->info)) / dt;
            r->rate = isnan(p->rate) ? inst : p->rate + alpha * (inst - p->rate);
            if (counter(&r->info) != counter(&p->info))
                r->changed_ns = sn->real_ns;
        }
        /* The later of its own time (a value's version, a queue's newest entry; a ring's
         * is its generation's) and when we saw it change. */
        uint64_t last = r->info.mtime_ns > r->changed_ns ? r->info.mtime_ns : r->changed_ns;
        r->age_s = last && sn->real_ns > last ? (double)(sn->real_ns - last) / NS
                                              : last ? 0 : NAN;
        r->oldest_age_s = NAN;
        if (r->info.kind == SHMSTORE_KIND_QUEUE && r->info.count && r->info.oldest_mtime_ns)
            r->oldest_age_s = sn->real_ns > r->info.oldest_mtime_ns
                                  ? (double)(sn->real_ns - r->info.oldest_mtime_ns) / NS
                                  : 0;
    }
    return 0;
}

/* ---- ordering -------------------------------------------------------------------------- */

static enum sort_key g_sort;
static int g_reverse;

/* NAN (unknown) sorts last whatever the direction. */
static int cmp_double(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) - isnan(b);
    return a < b ? -1 : a > b;
}

static int cmp_rows(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = 0;
    switch (g_sort) {
    case SORT_KIND: c = (int)x->info.kind - (int)y->info.kind; break;
    case SORT_RATE: c = -cmp_double(x->rate, y->rate); break; /* fastest first */
    case SORT_AGE: c = cmp_double(x->age_s, y->age_s); break;
    case SORT_SIZE: c = x->info.footprint < y->info.footprint ? 1 : x->info.footprint > y->info.footprint ? -1 : 0; break;
    default: break;
    }
    if (c == 0)
        c = strcmp(x->info.name, y->info.name);
    return g_reverse ? -c : c;
}

/* The rows of the current snapshot in display order (a copy: the snapshot stays sorted by
 * name for the next comparison). */
static struct row *ordered(const struct view *v)
{
    struct row *o = malloc((v->cur.n ? v->cur.n : 1) * sizeof(struct row));
    if (!o)
        return NULL;
    memcpy(o, v->cur.rows, v->cur.n * sizeof(struct row));
    g_sort = v->sort;
    g_reverse = v->reverse;
    qsort(o, v->cur.n, sizeof(struct row), cmp_rows);
    return o;
}

/* ---- formatting ------------------------------------------------------------------------ */

static const char *fmt_rate(double r, char *buf, size_t cap)
{
    if (isnan(r))
        snprintf(buf, cap, "-");
    else if (r >= 1e6)
        snprintf(buf, cap, "%.2fM", r / 1e6);
    else if (r >= 1e4)
        snprintf(buf, cap, "%.1fk", r / 1e3);
    else
        snprintf(buf, cap, "%.1f", r);
    return buf;
}

static const char *fmt_age(double s, char *buf, size_t cap)
{
    if (isnan(s))
        snprintf(buf, cap, "-");
    else if (s < 1)
        snprintf(buf, cap, "%.0fms", s * 1e3);
    else if (s < 120)
        snprintf(buf, cap, "%.1fs", s);
    else if (s < 7200)
        snprintf(buf, cap, "%.0fm", s / 60);
    else
        snprintf(buf, cap, "%.0fh", s / 3600);
    return buf;
}

/* Line `i` of the object table (-1: the header) into buf. */
static void obj_line(const struct row *r, char *buf, size_t cap)
{
    if (!r) {
        snprintf(buf, cap, "%-28s %-6s %-24s %9s %10s %9s %7s %4s %4s %7s", "NAME", "KIND", "TYPE",
                 "SIZE", "VERSION", "RATE/s", "AGE", "WAIT", "PIN", "OLDEST");
        return;
    }
    char type[64], size[24], rate[24], age[24], old[24];
    const shmstore_obj_info_t *o = &r->info;
    snprintf(buf, cap, "%-28s %-6s %-24.24s %9s %10" PRIu64 " %9s %7s %4" PRIu32 " %4" PRIu32 " %7s",
             o->name, shmstore_kind_name(o->kind), cli_fmt_type(o, type, sizeof type),
             cli_fmt_bytes(o->footprint, size, sizeof size), o->version,
             fmt_rate(r->rate, rate, sizeof rate), fmt_age(r->age_s, age, sizeof age), o->n_waiting,
             o->n_pinned, o->kind == SHMSTORE_KIND_QUEUE ? fmt_age(r->oldest_age_s, old, sizeof old) : "");
}

static void proc_line(const shmstore_proc_info_t *p, char *buf, size_t cap)
{
    if (!p) {
        snprintf(buf, cap, "%-5s %-8s %-6s %7s %5s  %s", "SLOT", "PID", "STATE", "LEASES", "HELD",
                 "WRITING");
        return;
    }
    snprintf(buf, cap, "%-5" PRIu32 " %-8" PRId32 " %-6s %7" PRIu32 " %5" PRIu32 "  %s%s", p->slot,
             p->pid, p->is_alive ? "alive" : "dead", p->n_leases, p->n_held, p->holding,
             p->is_self ? "(this watch)" : "");
}

static void head_line(const struct view *v, char *buf, size_t cap)
{
    char used[24], capy[24], when[48];
    snprintf(buf, cap, "%s%s%s  %" PRIu64 " objects  %s used of %s  %zu procs  %s  sort: %s%s",
             v->store, v->prefix[0] ? "/" : "", v->prefix, v->cur.st.n_objects,
             cli_fmt_bytes(v->cur.st.used, used, sizeof used),
             cli_fmt_bytes(v->cur.st.capacity, capy, sizeof capy), v->cur.n_procs,
             cli_fmt_time(v->cur.real_ns, when, sizeof when), sort_names[v->sort],
             v->reverse ? " (reversed)" : "");
}

/* ---- output: plain text, JSON ------------------------------------------------------------ */

static void print_plain(const struct view *v)
{
    char line[512];
    struct row *o = ordered(v);
    head_line(v, line, sizeof line);
    printf("%s\n", line);
    obj_line(NULL, line, sizeof line);
    printf("%s\n", line);
    for (size_t i = 0; o && i < v->cur.n; i++) {
        obj_line(&o[i], line, sizeof line);
        printf("%s\n", line);
    }
    proc_line(NULL, line, sizeof line);
    printf("\n%s\n", line);
    for (size_t i = 0; i < v->cur.n_procs; i++) {
        proc_line(&v->cur.procs[i], line, sizeof line);
        printf("%s\n", line);
    }
    printf("\n");
    free(o);
}

static void json_num(const char *key, double x)
{
    if (isnan(x))
        printf(", \"%s\": null", key);
    else
        printf(", \"%s\": %.6g", key, x);
}

static void print_json(const struct view *v)
{
    struct row *o = ordered(v);
    printf("{\"time_ns\": %" PRIu64 ", \"store\": ", v->cur.real_ns);
    cli_json_str(stdout, v->store, strlen(v->store));
    printf(", \"stat\": {");
    cli_json_stat(stdout, &v->cur.st);
    printf("}, \"objects\": [");
    for (size_t i = 0; o && i < v->cur.n; i++) {
        fputs(i ? ", {" : "{", stdout);
        cli_json_obj_members(stdout, &o[i].info);
        json_num("rate", o[i].rate);
        json_num("age_s", o[i].age_s);
        printf(", \"waiting\": %" PRIu32, o[i].info.n_waiting);
        if (o[i].info.kind == SHMSTORE_KIND_QUEUE)
            json_num("oldest_age_s", o[i].oldest_age_s);
        fputc('}', stdout);
    }
    printf("], \"procs\": [");
    for (size_t i = 0; i < v->cur.n_procs; i++) {
        const shmstore_proc_info_t *p = &v->cur.procs[i];
        printf("%s{\"slot\": %" PRIu32 ", \"pid\": %" PRId32 ", \"alive\": %s, \"self\": %s, "
               "\"leases\": %" PRIu32 ", \"held\": %" PRIu32 ", \"writing\": ",
               i ? ", " : "", p->slot, p->pid, p->is_alive ? "true" : "false",
               p->is_self ? "true" : "false", p->n_leases, p->n_held);
        if (p->n_held)
            cli_json_str(stdout, p->holding, strlen(p->holding));
        else
            fputs("null", stdout);
        fputc('}', stdout);
    }
    printf("]}\n");
    free(o);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (!stop_flag && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- output: full screen --------------------------------------------------------------- */

#ifdef SHMSTORE_HAVE_CURSES
static void draw(const struct view *v, const char *status)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    char line[512];
    struct row *o = ordered(v);
    erase();
    int y = 0;
    head_line(v, line, sizeof line);
    attron(A_BOLD);
    mvaddnstr(y++, 0, line, cols);
    attroff(A_BOLD);
    /* Objects get what the processes (header + rows, at most a third of the screen) and
     * the status line leave. */
    int n_procs = (int)v->cur.n_procs, proc_rows = n_procs + 2;
    if (proc_rows > rows / 3)
        proc_rows = rows / 3;
    int obj_rows = rows - 1 - proc_rows - 1 - 1;
    obj_line(NULL, line, sizeof line);
    attron(A_REVERSE);
    mvaddnstr(y++, 0, line, cols);
    attroff(A_REVERSE);
    for (int i = 0; o && i < (int)v->cur.n && i < obj_rows; i++) {
        obj_line(&o[i], line, sizeof line);
        mvaddnstr(y++, 0, line, cols);
    }
    if ((int)v->cur.n > obj_rows && obj_rows > 0) {
        snprintf(line, sizeof line, "... %zu more (filter with f)", v->cur.n - (size_t)obj_rows);
        mvaddnstr(y - 1, 0, line, cols);
    }
    y = rows - proc_rows - 1;
    if (proc_rows >= 2) {
        proc_line(NULL, line, sizeof line);
        attron(A_REVERSE);
        mvaddnstr(++y, 0, line, cols);
        attroff(A_REVERSE);
        for (int i = 0; i < n_procs && y < rows - 2; i++) {
            proc_line(&v->cur.procs[i], line, sizeof line);
            if (!v->cur.procs[i].is_alive)
                attron(A_BOLD);
            mvaddnstr(++y, 0, line, cols);
            attroff(A_BOLD);
        }
    }
    mvaddnstr(rows - 1, 0, status, cols);
    refresh();
    free(o);
}

/* Read a name prefix on the status line. */
static void read_filter(struct view *v)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    (void)cols;
    char buf[SHMSTORE_NAME_MAX + 1] = "";
    move(rows - 1, 0);
    clrtoeol();
    addstr("filter (name prefix, Enter): ");
    echo();
    curs_set(1);
    timeout(-1);
    if (getnstr(buf, (int)sizeof buf - 1) == OK)
        snprintf(v->prefix, sizeof v->prefix, "%s", buf);
    noecho();
    curs_set(0);
}

static int run_screen(struct view *v, uint64_t interval_ns, uint64_t count)
{
    if (!initscr())
        return cli_fail(CLI_EX_UNAVAIL, "watch: cannot start the terminal (TERM=%s)",
                        getenv("TERM") ? getenv("TERM") : "");
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    int rc = 0;
    char status[512];
    for (uint64_t n = 0; !stop_flag && (!count || n < count); n++) {
        if ((rc = take_snapshot(v)) != 0)
            break;
        snprintf(status, sizeof status, "q quit  s sort (%s)  r reverse  f filter%s%s  "
                 "every %.2gs", sort_names[v->sort], v->prefix[0] ? ": " : "", v->prefix,
                 (double)interval_ns / NS);
        draw(v, status);
        /* Wait for the next refresh, answering keys meanwhile. */
        uint64_t due = v->cur.mono_ns + interval_ns;
        for (;;) {
            uint64_t t = now_ns(CLOCK_MONOTONIC);
            if (stop_flag || t >= due)
                break;
            timeout((int)((due - t) / 1000000) + 1);
            int ch = getch();
            if (ch == ERR)
                continue;
            if (ch == 'q' || ch == 'Q') {
                stop_flag = 1;
            } else if (ch == 's') {
                v->sort = (v->sort + 1) % SORT_N;
            } else if (ch == 'r') {
                v->reverse = !v->reverse;
            } else if (ch == 'f' || ch == '/') {
                read_filter(v);
                v->cur.n = 0; /* a new set of rows: rates start over */
                break;
            } else if (ch == ' ') {
                break;
            } else if (ch != KEY_RESIZE) {
                continue;
            }
            draw(v, status);
        }
    }
    endwin();
    return rc;
}
#endif

/* ---- the verb -------------------------------------------------------------------------- */

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"interval", required_argument, NULL, 'n'}, {"json", no_argument, NULL, 'j'},
        {"count", required_argument, NULL, 'c'},    {"sort", required_argument, NULL, 'S'},
        CLI_COMMON_LONG_OPTS,                       {NULL, 0, NULL, 0}};
    int64_t interval = 1000000000;
    uint64_t count = 0;
    int is_json = 0, c, rc;
    enum sort_key sort = SORT_NAME;

    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":n:jc:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (cli_parse_seconds(optarg, &interval) < 0 || interval < 50000000)
                return cli_usage_error(&cli_cmd_watch, "--interval takes seconds, at least "
                                       "0.05 (got '%s')", optarg);
            break;
        case 'j':
            is_json = 1;
            break;
        case 'c':
            if (cli_parse_u64(optarg, &count) < 0 || count == 0)
                return cli_usage_error(&cli_cmd_watch, "--count takes a positive number "
                                       "(got '%s')", optarg);
            break;
        case 'S': {
            int k;
            for (k = 0; k < SORT_N && strcmp(optarg, sort_names[k]) != 0; k++)
                ;
            if (k == SORT_N)
                return cli_usage_error(&cli_cmd_watch, "--sort takes name, kind, rate, age "
                                       "or size (got '%s')", optarg);
            sort = (enum sort_key)k;
            break;
        }
        default:
            if ((rc = cli_common_opt(c, argv, &cli_cmd_watch, ctx)) >= 0)
                return rc;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(&cli_cmd_watch, "expected STORE[/PREFIX]");
    struct cli_target t;
    if ((rc = cli_parse_target(&cli_cmd_watch, argv[optind], 0, &t)) != 0)
        return rc;
    struct view v = {.store = t.store, .sort = sort};
    snprintf(v.prefix, sizeof v.prefix, "%s", t.name ? t.name : "");
    if ((rc = cli_open_store(ctx, t.store, &v.s)) != 0)
        return rc;

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: waits return */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int err = 0;
#ifdef SHMSTORE_HAVE_CURSES
    if (!is_json && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO)) {
        err = run_screen(&v, (uint64_t)interval, count);
    } else
#endif
    {
        for (uint64_t n = 0; !stop_flag && (!count || n < count); n++) {
            if (n)
                sleep_ns(v.cur.mono_ns + (uint64_t)interval > now_ns(CLOCK_MONOTONIC)
                             ? v.cur.mono_ns + (uint64_t)interval - now_ns(CLOCK_MONOTONIC)
                             : 0);
            if (stop_flag)
                break;
            if ((err = take_snapshot(&v)) != 0)
                break;
            if (is_json)
                print_json(&v);
            else
                print_plain(&v);
            if (fflush(stdout) != 0)
                break;
        }
    }
    if (err > 0)
        rc = cli_fail(CLI_EX_UNAVAIL, "watch: out of memory");
    else if (err < 0)
        rc = cli_error(err, t.store, "watch %s", t.store);
    else
        rc = cli_finish_output(CLI_EX_OK);
    free(v.cur.rows);
    free(v.cur.procs);
    free(v.prev.rows);
    free(v.prev.procs);
    shmstore_close(v.s);
    return rc;
}
