/* cases_ring.c - rings: write and read_since throughput of 64-channel float32 frames, and
 * the wake of a reader asleep in wait.
 *
 * ring_write_1, ring_write_32, ring_write_1024: one process writes chunks of 1, 32 or
 * 1024 frames (256 bytes each) into a ring of 30,000 frames (7.7 MB: 0.5 s of a 60 kHz
 * stream, or 1 s at 30 kHz), in rounds of ~256 KiB of frames; in turns with those
 * rounds, the same chunks are memcpy'd into a private buffer of the same size at the
 * same rotating offset (the floor: the bytes a write must move, nothing else). Per
 * chunk: median and p99 over rounds.
 *
 * ring_read_32, ring_read_1024: read_since of chunks of 32 or 1024 frames from a full
 * ring (the cursor walking through the frames held), against memcpy of the same bytes
 * out of the ring's storage (a view) into the same private buffer.
 *
 * ring_wake: a reader asleep in shmstore_ring_wait (confirmed asleep in its futex
 * through /proc) is woken by a write of one frame: write -> return from wait, one way,
 * against a raw FUTEX_WAKE of a waiter asleep in FUTEX_WAIT, in turns.
 *
 * ring_wake_1khz: the same, paced as a 1 kHz stream sent in chunks of 10 frames: the
 * writer sleeps until the next 10 ms tick before each round, so both processes sit idle
 * between rounds as they do in Python's age_1khz (bench_ring.py), whose floor this is. On
 * a VM an idle vCPU is halted, and waking it costs the hypervisor's path on top of the
 * futex's: back-to-back rounds (ring_wake) never pay that. Both processes stay pinned to
 * their CPUs, as in ring_wake: unpinned (as Python's are) the scheduler often wakes the
 * reader on the writer's CPU, which is cheaper at the median (30-42 us against ~140 us
 * here, 2026-12-04) but makes the tail a matter of placement (p99 0.19-2.2 ms).
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_internal.h"

#define RING_CH 64u
#define RING_FRAME (RING_CH * 4u)
#define RING_CAP 30000u
#define ROUND_BYTES (256u << 10)

static int ring_open(shmstore_t *s, uint64_t cap, shmstore_ring_t **out)
{
    shmstore_ring_config_t c;
    memset(&c, 0, sizeof c);
    uint64_t ch = RING_CH;
    int rc = shmstore_datum_init_array(&c.frame, "<f4", 1, &ch);
    c.capacity = cap;
    return rc ? rc : shmstore_ring_open(s, "bench/ring", SHMSTORE_R_CREATE | SHMSTORE_R_WRITER, &c, out);
}

static int chunk_of(const char *name)
{
    const char *u = strrchr(name, '_');
    return u ? atoi(u + 1) : 1;
}

/* ---- write / read throughput --------------------------------------------------------- */

int bench__case_ring_copy(struct bench_ctx *c, const char *name)
{
    bool is_read = strncmp(name, "ring_read", 9) == 0;
    uint64_t chunk = (uint64_t)chunk_of(name), chunk_len = chunk * RING_FRAME;
    uint64_t per_round = ROUND_BYTES / chunk_len ? ROUND_BYTES / chunk_len : 1;
    int n = c->is_quick ? 40 : 400, n_warm = 10;
    struct fixture f = {0};
    struct samples slib = {0}, sfloor = {0};
    shmstore_ring_t *r = NULL;
    shmstore_ring_view_t whole = {0};
    size_t storage_len = (size_t)RING_CAP * RING_FRAME;
    uint8_t *src = bench__buf(storage_len), *dst = bench__buf(storage_len);
    int rc = (src && dst && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sfloor, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-ring", "bench/unused");
    if (rc == 0)
        rc = ring_open(f.s, RING_CAP, &r);
    if (rc == 0) {
        bench__fill(src, storage_len, 7);
        rc = shmstore_ring_write(r, src, RING_CAP); /* full: every page touched */
    }
    if (rc == 0)
        rc = shmstore_ring_view_storage(r, &whole);
    bench__pin(0);
    uint64_t cursor = 0, off = 0, t_over = bench__timer_overhead();
    shmstore_ring_span_t sp;
    for (int k = 0; k < 2 * (n + n_warm) && rc == 0; k++) {
        bool is_floor = k % 2;
        uint64_t t0 = bench__now();
        for (uint64_t i = 0; i < per_round && rc == 0; i++) {
            if (off + chunk_len > storage_len)
                off = 0;
            if (is_floor) {
                if (is_read)
                    memcpy(dst + off, (const uint8_t *)whole.data[0] + off, chunk_len);
                else
                    memcpy(dst + off, src + off, chunk_len);
            } else if (is_read) {
                uint64_t t;
                shmstore_ring_total(r, &t);
                if (cursor < t - RING_CAP || cursor + chunk > t)
                    cursor = t - RING_CAP;
                rc = shmstore_ring_read_since(r, cursor, dst + off, chunk, &sp);
                cursor = sp.cursor;
                if (rc == 0 && (sp.n != chunk || sp.lost))
                    rc = -EIO;
            } else {
                rc = shmstore_ring_write(r, src + off, chunk);
            }
            off += chunk_len;
        }
        uint64_t t1 = bench__now();
        double per = (double)(t1 - t0 > t_over ? t1 - t0 - t_over : 0) / (double)per_round;
        if (k >= 2 * n_warm)
            bench__samples_add(is_floor ? &sfloor : &slib, (uint64_t)(per * 1000.0));
    }
    bench__unpin();
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row row;
        bench__row_init(&row, name, chunk_len);
        row.median_ns = bench__pct(&slib, 50) / 1000.0; /* samples are in ps */
        row.p99_ns = bench__pct(&slib, 99) / 1000.0;
        row.floor_ns = bench__pct(&sfloor, 50) / 1000.0;
        row.ratio = row.median_ns / row.floor_ns;
        row.floor_what = is_read ? "memcpy of the same bytes out of the storage"
                                 : "memcpy of the same bytes, same rotating offset";
        row.target = chunk >= 32 ? "<= 1.11x (>= 0.9x memcpy)" : chunk == 1 ? "<= 100 ns" : "-";
        double gbs = (double)chunk_len / row.median_ns;
        snprintf(row.extra_json, sizeof row.extra_json,
                 ",\"frames\":%llu,\"frame_bytes\":%u,\"gb_per_s\":%.2f,\"floor_gb_per_s\":%.2f",
                 (unsigned long long)chunk, RING_FRAME, gbs, (double)chunk_len / row.floor_ns);
        snprintf(row.extra_text, sizeof row.extra_text, "%s of %llu frames x 64 ch f32: %.2f GB/s "
                 "(floor %.2f GB/s)", is_read ? "read_since" : "write", (unsigned long long)chunk,
                 gbs, (double)chunk_len / row.floor_ns);
        bench__emit(c, &row);
    }
    shmstore_ring_view_release(&whole);
    shmstore_ring_close(r);
    bench__fixture_close(&f);
    bench__samples_free(&slib);
    bench__samples_free(&sfloor);
    free(src);
    free(dst);
    return rc;
}

/* ---- wake ------------------------------------------------------------------------------ */

struct rw_shared {
    alignas(64) _Atomic uint32_t ready; /* reader: k + 1 when about to wait in round k */
    alignas(64) _Atomic uint32_t done;  /* reader: k + 1 when it returned */
    alignas(64) _Atomic uint32_t fword; /* the raw futex word */
    alignas(64) _Atomic uint64_t t1;    /* reader's stamp after it returned */
    alignas(64) struct barrier bar;
    char store[96];
    int n_rounds;
};

static int rw_reader_main(void *arg)
{
    struct rw_shared *sh = arg;
    shmstore_t *s = NULL;
    shmstore_ring_t *r = NULL;
    bench__pin(1);
    int rc = shmstore_open(sh->store, 0, NULL, &s);
    if (rc == 0)
        rc = shmstore_ring_open(s, "bench/ring", 0, NULL, &r);
    int brc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    uint64_t cursor = 0;
    for (int k = 0; k < sh->n_rounds && rc == 0 && brc == 0; k++) {
        if (k % 2) {
            uint32_t cur = atomic_load_explicit(&sh->fword, memory_order_acquire);
            atomic_store_explicit(&sh->ready, (uint32_t)k + 1, memory_order_release);
            while (atomic_load_explicit(&sh->fword, memory_order_acquire) == cur &&
                   bench__futex_wait(&sh->fword, cur, 5 * (int64_t)NS_PER_S) != -ETIMEDOUT)
                ;
        } else {
            atomic_store_explicit(&sh->ready, (uint32_t)k + 1, memory_order_release);
            rc = shmstore_ring_wait(r, cursor, 5 * (int64_t)NS_PER_S, &cursor);
        }
        atomic_store_explicit(&sh->t1, bench__now(), memory_order_relaxed);
        bench__set_wake(&sh->done, (uint32_t)k + 1);
    }
    if (rc != 0)
        bench__fail("bench", "ring reader", rc);
    shmstore_ring_close(r);
    shmstore_close(s);
    return rc != 0 || brc != 0;
}

/* Sleep until `*tick` + 10 ms (CLOCK_MONOTONIC, absolute), and advance the tick. */
static void sleep_to_next_tick(struct timespec *tick)
{
    tick->tv_nsec += 10 * 1000 * 1000;
    if (tick->tv_nsec >= 1000000000L) {
        tick->tv_nsec -= 1000000000L;
        tick->tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, tick, NULL) == EINTR)
        ;
}

int bench__case_ring_wake(struct bench_ctx *c, const char *name)
{
    bool paced = strstr(name, "1khz") != NULL;
    int n = paced ? (c->is_quick ? 60 : 600) : (c->is_quick ? 200 : 2000), n_warm = 20;
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples slib = {0}, sraw = {0};
    struct rw_shared *sh = bench__shared_alloc(sizeof *sh);
    shmstore_ring_t *r = NULL;
    float frame[RING_CH] = {0};
    int rc = (sh && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sraw, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-ring", "bench/unused");
    if (rc == 0)
        rc = ring_open(f.s, 1024, &r);
    pid_t reader = 0;
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", f.store);
        sh->n_rounds = n + n_warm;
        bench__barrier_init(&sh->bar, 2);
        reader = bench__kid_spawn(&kids, rw_reader_main, sh);
        if (reader < 0)
            rc = (int)reader;
    }
    bench__pin(0);
    if (rc == 0)
        rc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    uint64_t deadline = bench__now() + 300 * NS_PER_S;
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        if ((rc = bench__spin_eq(&sh->ready, (uint32_t)k + 1, deadline)) != 0)
            break;
        if ((rc = bench__wait_asleep(reader, bench__now() + 5 * NS_PER_S)) != 0) {
            fprintf(stderr, "shmstore bench: %s: the reader never slept in a futex\n", name);
            break;
        }
        if (paced)
            sleep_to_next_tick(&tick);
        uint64_t t0 = bench__now();
        if (k % 2) {
            atomic_store_explicit(&sh->fword, (uint32_t)k + 1, memory_order_release);
            bench__futex_wake(&sh->fword, 1);
        } else {
            rc = shmstore_ring_write(r, frame, 1);
        }
        if (rc == 0)
            rc = bench__spin_eq(&sh->done, (uint32_t)k + 1, deadline);
        uint64_t t1 = atomic_load_explicit(&sh->t1, memory_order_relaxed);
        if (rc == 0 && k >= n_warm)
            bench__samples_add(k % 2 ? &sraw : &slib, t1 > t0 ? t1 - t0 : 0);
    }
    bench__unpin();
    if (bench__kids_reap(&kids, 10 * (int64_t)NS_PER_S) != 0 && rc == 0)
        rc = -ECHILD;
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row row;
        bench__row_init(&row, name, RING_FRAME);
        row.median_ns = bench__pct(&slib, 50);
        row.p99_ns = bench__pct(&slib, 99);
        row.p999_ns = bench__pct(&slib, 99.9);
        row.floor_ns = bench__pct(&sraw, 50);
        row.ratio = row.median_ns / row.floor_ns;
        row.floor_what = "raw futex wake, one way";
        row.target = paced ? "floor of age_1khz" : "<= 1.25x";
        snprintf(row.extra_json, sizeof row.extra_json, ",\"raw_futex_p99_ns\":%.0f",
                 bench__pct(&sraw, 99));
        snprintf(row.extra_text, sizeof row.extra_text, "%s",
                 paced ? "as ring_wake, one round per 10 ms tick: both processes idle between"
                       : "write of 1 frame -> return from wait, reader asleep in its futex");
        bench__emit(c, &row);
    }
    shmstore_ring_close(r);
    bench__fixture_close(&f);
    bench__samples_free(&slib);
    bench__samples_free(&sraw);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}
