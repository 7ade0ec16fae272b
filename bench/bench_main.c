/* bench_main.c - `shmstore bench`: the case table, the options and the output.
 *
 * Every result is one row: median and p99 in ns per operation, the floor it is compared
 * with (a physical limit measured in the same run, on the same machine, usually
 * interleaved with the operation itself), ratio = median / floor, and the target the
 * product owner set, shown as information, not asserted: on a shared 2-CPU machine a
 * noisy neighbour moves any figure, and an assertion would only train people to ignore
 * it. The exit code says whether every case ran, not whether it met its target.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_internal.h"

struct bench_case {
    const char *name;
    int (*fn)(struct bench_ctx *c, const char *name);
    const char *what;
};

static const struct bench_case cases[] = {
    {"small_put", bench__case_small, "8 B put by handle after another process read it"},
    {"small_get", bench__case_small, "8 B get by handle of a value another process wrote"},
    {"small_put_name", bench__case_small, "8 B shmstore_put() by name (open, put, close)"},
    {"small_get_name", bench__case_small, "8 B shmstore_get() by name (open, get, close)"},
    {"frame_put_reader", bench__case_frame_put_reader,
     "put of a 480x848x3 frame while another process gets it in a loop"},
    {"frame_get", bench__case_frame_get, "copy-get of a frame the other process just put"},
    {"view_8", bench__case_view, "zero-copy view + release of an 8 B value"},
    {"view_1m2", bench__case_view, "zero-copy view + release of a 1.2 MB frame"},
    {"view_64m", bench__case_view, "zero-copy view + release of a 64 MiB value"},
    {"notify_spin", bench__case_notify, "put -> return from wait, waiter spinning"},
    {"notify_sleep", bench__case_notify, "put -> return from wait, waiter asleep in futex"},
    {"writer_readers", bench__case_writer_readers,
     "frame put rate and latency with 0, 1 and 3 busy reader processes"},
    {"steady_faults", bench__case_steady_faults,
     "page faults and library syscalls per put/get/view in steady state"},
    {"queue_8", bench__case_queue_small, "8 B push -> pop_copy, 1 producer process"},
    {"queue_64", bench__case_queue_small, "64 B push -> pop_copy, 1 producer process"},
    {"queue_8_4p", bench__case_queue_small, "8 B push -> pop_copy, 4 producer processes"},
    {"queue_1m2", bench__case_queue_large, "1.2 MB push + pop view + release"},
    {"queue_8m", bench__case_queue_large, "8 MiB push + pop view + release"},
    {"queue_zc_8m", bench__case_queue_large, "8 MiB reserve + commit + pop view + release"},
    {"queue_wake", bench__case_queue_wake, "push -> return from pop, consumer asleep"},
    {"table_append_1", bench__case_table_append, "append of one 28,240 B record, sampler busy"},
    {"table_append_100", bench__case_table_append, "append of 100 x 28,240 B, sampler busy"},
    {"table_sample_32", bench__case_table_sample, "sample(32) of 28,240 B records, writer busy"},
    {"table_sample_256", bench__case_table_sample, "sample(256) of 28,240 B records, writer busy"},
    {"table_small_1w", bench__case_table_small, "64 B records appended by 1 writer process"},
    {"table_small_2w", bench__case_table_small, "64 B records appended by 2 writer processes"},
    {"table_prio_32", bench__case_table_prio, "prioritized sample(32) over uniform"},
    {"ring_write_1", bench__case_ring_copy, "ring write of 1 frame (64 ch f32)"},
    {"ring_write_32", bench__case_ring_copy, "ring write of 32 frames (64 ch f32)"},
    {"ring_write_1024", bench__case_ring_copy, "ring write of 1024 frames (64 ch f32)"},
    {"ring_read_32", bench__case_ring_copy, "ring read_since of 32 frames (64 ch f32)"},
    {"ring_read_1024", bench__case_ring_copy, "ring read_since of 1024 frames (64 ch f32)"},
    {"ring_wake", bench__case_ring_wake, "ring write -> return from wait, reader asleep"},
    {"ring_wake_1khz", bench__case_ring_wake, "ring_wake paced at 10 ms a round (1 kHz in chunks of 10)"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

void bench__row_init(struct bench_row *r, const char *name, uint64_t bytes)
{
    memset(r, 0, sizeof *r);
    r->name = name;
    r->bytes = bytes;
    r->floor_ns = -1;
    r->ratio = -1;
    r->floor_what = "";
}

static const char *fmt_ns(char *buf, size_t cap, double ns)
{
    if (ns < 0)
        snprintf(buf, cap, "-");
    else if (ns < 1e4)
        snprintf(buf, cap, "%.0f ns", ns);
    else if (ns < 1e7)
        snprintf(buf, cap, "%.1f us", ns / 1e3);
    else
        snprintf(buf, cap, "%.2f ms", ns / 1e6);
    return buf;
}

static const char *fmt_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b < 10000)
        snprintf(buf, cap, "%llu B", (unsigned long long)b);
    else if (b < (10u << 20))
        snprintf(buf, cap, "%.1f MB", (double)b / 1e6);
    else
        snprintf(buf, cap, "%llu MiB", (unsigned long long)(b >> 20));
    return buf;
}

static void json_num(char *buf, size_t cap, double x, int decimals)
{
    if (x < 0)
        snprintf(buf, cap, "null");
    else
        snprintf(buf, cap, "%.*f", decimals, x);
}

void bench__emit(struct bench_ctx *c, const struct bench_row *r)
{
    if (c->is_json) {
        char fl[32], ra[32];
        json_num(fl, sizeof fl, r->floor_ns, 1);
        json_num(ra, sizeof ra, r->ratio, 3);
        /* Names and descriptions are our own literals: no character needs escaping. */
        char p3[48] = "";
        if (r->p999_ns > 0)
            snprintf(p3, sizeof p3, ",\"p999_ns\":%.1f", r->p999_ns);
        printf("{\"case\":\"%s\",\"bytes\":%llu,\"median_ns\":%.1f,\"p99_ns\":%.1f%s,"
               "\"floor_ns\":%s,\"ratio\":%s,\"floor\":\"%s\",\"target\":%s%s%s%s}\n",
               r->name, (unsigned long long)r->bytes, r->median_ns, r->p99_ns, p3, fl, ra,
               r->floor_what, r->target ? "\"" : "", r->target ? r->target : "null",
               r->target ? "\"" : "", r->extra_json);
    } else {
        char b[24], m[24], p[24], f[24], ra[24];
        if (r->ratio < 0)
            snprintf(ra, sizeof ra, "-");
        else
            snprintf(ra, sizeof ra, "%.2fx", r->ratio);
        printf("%-17s %9s %9s %9s %9s %7s  %-33s %s\n", r->label[0] ? r->label : r->name,
               fmt_bytes(b, sizeof b, r->bytes), fmt_ns(m, sizeof m, r->median_ns),
               fmt_ns(p, sizeof p, r->p99_ns), fmt_ns(f, sizeof f, r->floor_ns), ra,
               r->floor_what, r->target ? r->target : "");
        if (r->extra_text[0])
            printf("%-17s   %s\n", "", r->extra_text);
    }
    fflush(stdout);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: shmstore bench [--json] [--quick] [CASE...]\n"
            "\n"
            "Measure the hot paths of shmstore, each next to a physical floor measured in\n"
            "the same run (ratio = median / floor). Runs every case unless CASEs are named.\n"
            "\n"
            "  --json    one JSON object per line per result: case, bytes, median_ns,\n"
            "            p99_ns, floor_ns, ratio (+ case-specific keys)\n"
            "  --quick   fewer iterations (the whole run takes well under a minute)\n"
            "  --list    list the cases and exit\n"
            "  -h, --help\n"
            "\n"
            "Exit status: 0 every case ran, 1 a case failed, 64 bad usage.\n");
}

static void list_cases(void)
{
    for (size_t i = 0; i < N_CASES; i++)
        printf("%-17s %s\n", cases[i].name, cases[i].what);
}

int shmstore_bench_main(int argc, char **argv)
{
    struct bench_ctx ctx = {0};
    bool is_selected[N_CASES] = {false};
    bool has_selection = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            ctx.is_json = true;
        } else if (strcmp(a, "--quick") == 0) {
            ctx.is_quick = true;
        } else if (strcmp(a, "--list") == 0) {
            list_cases();
            return 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "shmstore bench: unknown option '%s'\n", a);
            usage(stderr);
            return 64;
        } else {
            size_t j = 0;
            while (j < N_CASES && strcmp(cases[j].name, a) != 0)
                j++;
            if (j == N_CASES) {
                fprintf(stderr, "shmstore bench: unknown case '%s' (--list shows them)\n", a);
                return 64;
            }
            is_selected[j] = true;
            has_selection = true;
        }
    }

    if (!ctx.is_json) {
        printf("shmstore bench%s: %d CPUs, timer cost %llu ns (subtracted from single-op "
               "timings)\n",
               ctx.is_quick ? " --quick" : "", bench__ncpu(),
               (unsigned long long)bench__timer_overhead());
        printf("ratio = median / floor, both measured in this run (lower is better; for "
               "writer_readers: rate / solo rate).\n"
               "Targets are the product owner's, shown for information.\n\n");
        printf("%-17s %9s %9s %9s %9s %7s  %-33s %s\n", "case", "bytes", "median", "p99",
               "floor", "ratio", "floor is", "target");
    }
    int n_run = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        if (has_selection && !is_selected[i])
            continue;
        n_run++;
        int rc = cases[i].fn(&ctx, cases[i].name);
        if (rc != 0) {
            ctx.n_failed++;
            if (ctx.is_json)
                printf("{\"case\":\"%s\",\"error\":\"%s\"}\n", cases[i].name,
                       shmstore_err_name(rc));
            else
                printf("%-17s FAILED: %s\n", cases[i].name, shmstore_strerror(rc));
            fflush(stdout);
        }
    }
    if (!ctx.is_json) {
        printf("\n");
        printf("%d case%s run, %d failed\n", n_run, n_run == 1 ? "" : "s", ctx.n_failed);
    }
    return ctx.n_failed ? 1 : 0;
}
