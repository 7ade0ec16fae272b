/* cases_rw.c - a writer under load, and the steady state of puts and gets.
 *
 * writer_readers: one writer puts frames as fast as it can for a fixed time while 0, 1
 * and 3 reader processes loop on get (copy) + view/release as fast as they can. Reports
 * the put latency and the writer's rate; ratio = rate with N readers / rate alone (the
 * floor column holds the solo median put). Readers never block a writer by design, so
 * what is left is memory bandwidth and, with more processes than CPUs, the scheduler.
 *
 * steady_faults: after a warm-up, 10,000 puts, gets and views of an 8 B value and of a
 * frame in one process with no waiter: page faults (getrusage) and library system calls
 * (counted through shmstore__os) per operation. Both should be 0 in steady state.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_internal.h"

#define RW_MAX_READERS 3

struct rw_shared {
    alignas(64) _Atomic uint32_t stop;
    alignas(64) struct barrier bar;
    char store[96];
    alignas(64) _Atomic uint64_t n_reads[RW_MAX_READERS];
};

struct rw_reader {
    struct rw_shared *sh;
    int idx;
};

static int rw_reader_main(void *arg)
{
    struct rw_reader *a = arg;
    struct rw_shared *sh = a->sh;
    shmstore_t *s = NULL;
    shmstore_value_t *v = NULL;
    uint8_t *buf = bench__buf(FRAME_LEN);
    size_t len;
    int rc = buf ? bench__attach(sh->store, "bench/v", &s, &v) : -ENOMEM;
    for (int i = 0; i < 4 && rc == 0; i++) /* warm: fault in the version blocks */
        rc = shmstore_value_get(v, NULL, buf, FRAME_LEN, &len, NULL);
    int brc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    while (rc == 0 && brc == 0 && !atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        rc = shmstore_value_get(v, NULL, buf, FRAME_LEN, &len, NULL);
        shmstore_view_t view;
        if (rc == 0 && (rc = shmstore_value_view(v, &view)) == 0) {
            /* Read one byte per line of the first 64 KiB: a reader that looks. */
            volatile const uint8_t *pb = view.data;
            for (size_t o = 0; o < 65536 && o < view.len; o += 64)
                (void)pb[o];
            shmstore_view_release(&view);
        }
        atomic_fetch_add_explicit(&sh->n_reads[a->idx], 1, memory_order_relaxed);
    }
    if (rc != 0)
        bench__fail("bench", "busy reader", rc);
    shmstore_value_close(v);
    shmstore_close(s);
    free(buf);
    return rc != 0 || brc != 0;
}

int bench__case_writer_readers(struct bench_ctx *c, const char *name)
{
    static const int n_readers[] = {0, 1, RW_MAX_READERS};
    uint64_t run_ns = c->is_quick ? 400000000u : 2000000000u;
    struct fixture f = {0};
    struct samples s = {0};
    struct rw_shared *sh = bench__shared_alloc(sizeof *sh);
    struct rw_reader args[RW_MAX_READERS];
    uint8_t *src = bench__buf(FRAME_LEN);
    int rc = (sh && src && bench__samples_init(&s, 200000) == 0) ? 0 : -ENOMEM;
    shmstore_datum_t d;
    bench__frame_datum(&d);
    if (rc == 0) {
        bench__fill(src, FRAME_LEN, 3);
        rc = bench__fixture_open(&f, "bench-rw", "bench/v");
    }
    for (int i = 0; i < 12 && rc == 0; i++)
        rc = shmstore_value_put(f.v, &d, src, FRAME_LEN, 0);
    double solo_rate = 0, solo_median = 0;
    for (size_t cfg = 0; cfg < sizeof n_readers / sizeof n_readers[0] && rc == 0; cfg++) {
        int nr = n_readers[cfg];
        struct kids kids = {0};
        snprintf(sh->store, sizeof sh->store, "%s", f.store);
        atomic_store(&sh->stop, 0);
        bench__barrier_init(&sh->bar, (uint32_t)nr + 1);
        for (int i = 0; i < nr && rc == 0; i++) {
            atomic_store(&sh->n_reads[i], 0);
            args[i] = (struct rw_reader){.sh = sh, .idx = i};
            pid_t pid = bench__kid_spawn(&kids, rw_reader_main, &args[i]);
            if (pid < 0)
                rc = (int)pid;
        }
        if (rc == 0)
            rc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
        /* Warm-up with the readers running (discarded), then measure. */
        uint64_t t_warm = bench__now() + run_ns / 8;
        while (rc == 0 && bench__now() < t_warm)
            rc = shmstore_value_put(f.v, &d, src, FRAME_LEN, 0);
        s.n = 0;
        uint64_t reads0 = 0;
        for (int i = 0; i < nr; i++)
            reads0 += atomic_load(&sh->n_reads[i]);
        uint64_t faults0 = bench__faults();
        bench__syscalls_start();
        uint64_t t_start = bench__now(), t_end = t_start + run_ns, now = t_start, n_puts = 0;
        while (rc == 0 && now < t_end) {
            ((uint64_t *)(void *)src)[0] = n_puts;
            uint64_t t0 = now;
            rc = shmstore_value_put(f.v, &d, src, FRAME_LEN, 0);
            now = bench__now();
            bench__samples_add(&s, now - t0);
            n_puts++;
        }
        double secs = (double)(now - t_start) / 1e9;
        double n_sys = (double)bench__syscalls_stop() / (double)n_puts;
        double n_faults = (double)(bench__faults() - faults0) / (double)n_puts;
        uint64_t reads = 0;
        for (int i = 0; i < nr; i++)
            reads += atomic_load(&sh->n_reads[i]);
        bench__set_wake(&sh->stop, 1);
        if (bench__kids_reap(&kids, 10 * (int64_t)NS_PER_S) != 0 && rc == 0)
            rc = -ECHILD;
        if (rc != 0)
            break;
        double rate = (double)n_puts / secs;
        struct bench_row r;
        bench__row_init(&r, name, FRAME_LEN);
        snprintf(r.label, sizeof r.label, "%s/%d", name, nr);
        r.median_ns = bench__pct(&s, 50);
        r.p99_ns = bench__pct(&s, 99);
        if (nr == 0) {
            solo_rate = rate;
            solo_median = r.median_ns;
        }
        r.floor_ns = solo_median;
        r.ratio = rate / solo_rate;
        r.floor_what = "put with no reader (ratio = rate)";
        r.target = nr == 1 ? "rate >= 0.90x" : nr == RW_MAX_READERS ? "p99 <= 10 ms" : NULL;
        snprintf(r.extra_json, sizeof r.extra_json,
                 ",\"readers\":%d,\"rate_hz\":%.1f,\"reader_loops_per_s\":%.1f,"
                 "\"syscalls_per_op\":%.3f,\"faults_per_op\":%.3f",
                 nr, rate, (double)(reads - reads0) / secs, n_sys, n_faults);
        snprintf(r.extra_text, sizeof r.extra_text,
                 "%d busy reader%s (%.0f get+view loops/s in all): writer %.0f puts/s, "
                 "%.2f syscalls, %.2f faults/put",
                 nr, nr == 1 ? "" : "s", (double)(reads - reads0) / secs, rate, n_sys, n_faults);
        bench__emit(c, &r);
    }
    if (rc != 0)
        bench__fail("bench", name, rc);
    bench__fixture_close(&f);
    free(src);
    bench__samples_free(&s);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}

/* ---- steady state ----------------------------------------------------------------- */

enum { OP_PUT, OP_GET, OP_VIEW };
static const char *const op_names[] = {"put", "get", "view"};

static int steady_op(shmstore_value_t *v, int op, const shmstore_datum_t *d, uint8_t *buf,
                     size_t bytes)
{
    size_t len;
    if (op == OP_PUT)
        return shmstore_value_put(v, d, buf, bytes, 0);
    if (op == OP_GET)
        return shmstore_value_get(v, NULL, buf, bytes, &len, NULL);
    shmstore_view_t view;
    int rc = shmstore_value_view(v, &view);
    if (rc == 0)
        shmstore_view_release(&view);
    return rc;
}

int bench__case_steady_faults(struct bench_ctx *c, const char *name)
{
    static const size_t sizes[] = {8, FRAME_LEN};
    int n = c->is_quick ? 2000 : 10000;
    struct fixture f = {0};
    struct samples s = {0};
    uint8_t *buf = bench__buf(FRAME_LEN);
    int rc = (buf && bench__samples_init(&s, (size_t)n) == 0) ? 0 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-steady", "bench/v");
    uint64_t ovh = bench__timer_overhead();
    for (size_t si = 0; si < 2 && rc == 0; si++) {
        size_t bytes = sizes[si];
        shmstore_datum_t d;
        if (bytes == FRAME_LEN)
            bench__frame_datum(&d);
        else
            shmstore_datum_init(&d, SHMSTORE_T_INT64);
        for (int i = 0; i < 50 && rc == 0; i++) /* warm-up: every op, every block */
            for (int op = OP_PUT; op <= OP_VIEW && rc == 0; op++)
                rc = steady_op(f.v, op, &d, buf, bytes);
        for (int op = OP_PUT; op <= OP_VIEW && rc == 0; op++) {
            s.n = 0;
            uint64_t faults0 = bench__faults();
            bench__syscalls_start();
            for (int i = 0; i < n && rc == 0; i++) {
                uint64_t t0 = bench__now();
                rc = steady_op(f.v, op, &d, buf, bytes);
                uint64_t dt = bench__now() - t0;
                bench__samples_add(&s, dt > ovh ? dt - ovh : 0);
            }
            uint64_t n_sys = bench__syscalls_stop();
            uint64_t n_faults = bench__faults() - faults0;
            if (rc != 0)
                break;
            struct bench_row r;
            bench__row_init(&r, name, bytes);
            snprintf(r.label, sizeof r.label, "steady/%s", op_names[op]);
            r.median_ns = bench__pct(&s, 50);
            r.p99_ns = bench__pct(&s, 99);
            r.floor_what = "(counts, no floor)";
            r.target = "0 faults, 0 syscalls";
            snprintf(r.extra_json, sizeof r.extra_json,
                     ",\"op\":\"%s\",\"ops\":%d,\"faults\":%llu,\"syscalls\":%llu,"
                     "\"faults_per_op\":%.4f,\"syscalls_per_op\":%.4f",
                     op_names[op], n, (unsigned long long)n_faults,
                     (unsigned long long)n_sys, (double)n_faults / n, (double)n_sys / n);
            snprintf(r.extra_text, sizeof r.extra_text,
                     "%s x %d: %.4f page faults/op, %.4f library syscalls/op", op_names[op],
                     n, (double)n_faults / n, (double)n_sys / n);
            bench__emit(c, &r);
        }
    }
    if (rc != 0)
        bench__fail("bench", name, rc);
    bench__fixture_close(&f);
    free(buf);
    bench__samples_free(&s);
    return rc;
}
