/* cases_queue.c - queues: small-entry throughput between processes, large entries,
 * zero-copy reserve/commit and pop view, and the wake of a blocked consumer.
 *
 * queue_8, queue_64, queue_8_4p: producers (1 or 4 processes, CPU 0) push entries of 8
 * or 64 bytes into a queue of 1024 entries with the BLOCK policy; the consumer (the
 * bench process, CPU 1) pops them with pop_copy. A round is a batch of entries; its time
 * runs from the barrier that starts it to the consumer's last pop, per entry. In turns
 * with those rounds, the same processes move the same number of 8-byte indices through
 * a bare single-producer ring of 1024 slots in shared memory (head/tail on their own
 * lines, spinning): the floor, a cache-line hand-off per entry amortised by batching;
 * and, in turns too, a ping-pong of one cache line between the two (a round trip per
 * entry, with nothing to amortise it: what one entry would cost handed over alone).
 *
 * queue_1m2, queue_8m: one process pushes an entry of 1.2 MB or 8 MiB (a copy in),
 * pops it (a view) and releases it (its block is freed and reused by the next push),
 * in turns with a memcpy of the same size between two warm buffers (the floor).
 *
 * queue_zc_8m: reserve + commit of an 8 MiB entry (not written) + pop view + release,
 * against the same for an 8 B entry (the floor): zero-copy costs the same for any size.
 *
 * queue_wake: a consumer asleep in pop (confirmed asleep in its futex through /proc)
 * is woken by a push of 8 bytes: push -> return from pop, one way, against a raw
 * FUTEX_WAKE of a waiter asleep in FUTEX_WAIT, in turns.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_internal.h"

#define Q_CAP 1024u
#define Q_MAX_PRODUCERS 4

struct qs_shared {
    alignas(64) struct barrier bar;
    alignas(64) _Atomic uint64_t ring_tail; /* the floor's ring: producer side */
    alignas(64) _Atomic uint64_t ring_head; /* consumer side */
    alignas(64) uint64_t ring[Q_CAP];
    char store[96];
    int n_rounds, batch, n_producers;
    size_t entry_len;
};

/* Rounds in turns: the queue, the bare ring (the floor), a cache-line ping-pong. */
enum { QR_QUEUE, QR_RING, QR_PINGPONG };

static int round_kind(int k)
{
    return k % 3;
}

struct qs_producer {
    struct qs_shared *sh;
    int idx;
};

static int qs_producer_main(void *arg)
{
    struct qs_producer *a = arg;
    struct qs_shared *sh = a->sh;
    shmstore_t *s = NULL;
    shmstore_queue_t *q = NULL;
    uint8_t entry[64] = {0};
    bench__pin(0);
    int rc = shmstore_open(sh->store, 0, NULL, &s);
    if (rc == 0)
        rc = shmstore_queue_open(s, "bench/q", 0, NULL, &q);
    int per = sh->batch / sh->n_producers;
    for (int k = 0; k < sh->n_rounds && rc == 0; k++) {
        if ((rc = bench__barrier_wait(&sh->bar, 60 * (int64_t)NS_PER_S)) != 0)
            break;
        if (round_kind(k) == QR_PINGPONG) { /* producer 0 answers each hand-off */
            for (int i = 0; a->idx == 0 && i < sh->batch; i++) {
                uint64_t t = atomic_load_explicit(&sh->ring_tail, memory_order_relaxed);
                while (atomic_load_explicit(&sh->ring_head, memory_order_acquire) != t + 1)
                    ;
                atomic_store_explicit(&sh->ring_tail, t + 1, memory_order_release);
            }
            continue;
        }
        if (round_kind(k) == QR_RING) { /* only producer 0 feeds the single-producer ring */
            for (int i = 0; a->idx == 0 && i < sh->batch; i++) {
                uint64_t t = atomic_load_explicit(&sh->ring_tail, memory_order_relaxed);
                while (t - atomic_load_explicit(&sh->ring_head, memory_order_acquire) >= Q_CAP)
                    ;
                sh->ring[t % Q_CAP] = t;
                atomic_store_explicit(&sh->ring_tail, t + 1, memory_order_release);
            }
            continue;
        }
        for (int i = 0; i < per && rc == 0; i++) {
            memcpy(entry, &i, sizeof i);
            rc = shmstore_queue_push(q, NULL, entry, sh->entry_len, -1, NULL);
        }
    }
    if (rc != 0)
        bench__fail("bench", "queue producer", rc);
    shmstore_queue_close(q);
    shmstore_close(s);
    return rc != 0;
}

int bench__case_queue_small(struct bench_ctx *c, const char *name)
{
    int n_prod = strstr(name, "_4p") ? Q_MAX_PRODUCERS : 1;
    size_t len = strstr(name, "_64") ? 64 : 8;
    int n_rounds = c->is_quick ? 40 : 400, batch = 4000, n_warm = 4;
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples slib = {0}, sfloor = {0}, spp = {0};
    struct qs_shared *sh = bench__shared_alloc(sizeof *sh);
    struct qs_producer args[Q_MAX_PRODUCERS];
    shmstore_queue_t *q = NULL;
    shmstore_queue_options_t opt = {.capacity = Q_CAP, .full = SHMSTORE_QUEUE_BLOCK};
    int rc = (sh && bench__samples_init(&slib, (size_t)n_rounds) == 0 &&
              bench__samples_init(&sfloor, (size_t)n_rounds) == 0 &&
              bench__samples_init(&spp, (size_t)n_rounds) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-queue", "bench/unused");
    if (rc == 0)
        rc = shmstore_queue_open(f.s, "bench/q", SHMSTORE_Q_CREATE, &opt, &q);
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", f.store);
        sh->n_rounds = n_rounds + n_warm;
        sh->batch = batch;
        sh->n_producers = n_prod;
        sh->entry_len = len;
        bench__barrier_init(&sh->bar, (uint32_t)n_prod + 1);
        for (int i = 0; i < n_prod && rc == 0; i++) {
            args[i] = (struct qs_producer){sh, i};
            pid_t pid = bench__kid_spawn(&kids, qs_producer_main, &args[i]);
            if (pid < 0)
                rc = (int)pid;
        }
    }
    bench__pin(1);
    uint8_t buf[64];
    for (int k = 0; k < n_rounds + n_warm && rc == 0; k++) {
        if ((rc = bench__barrier_wait(&sh->bar, 60 * (int64_t)NS_PER_S)) != 0)
            break;
        uint64_t t0 = bench__now(), sum = 0;
        if (round_kind(k) == QR_PINGPONG) {
            for (int i = 0; i < batch; i++) {
                uint64_t h = atomic_load_explicit(&sh->ring_head, memory_order_relaxed);
                atomic_store_explicit(&sh->ring_head, h + 1, memory_order_release);
                while (atomic_load_explicit(&sh->ring_tail, memory_order_acquire) != h + 1)
                    ;
            }
        } else if (round_kind(k) == QR_RING) {
            for (int i = 0; i < batch; i++) {
                uint64_t h = atomic_load_explicit(&sh->ring_head, memory_order_relaxed);
                while (atomic_load_explicit(&sh->ring_tail, memory_order_acquire) == h)
                    ;
                sum += sh->ring[h % Q_CAP];
                atomic_store_explicit(&sh->ring_head, h + 1, memory_order_release);
            }
        } else {
            size_t got;
            for (int i = 0; i < batch && rc == 0; i++)
                rc = shmstore_queue_pop_copy(q, -1, NULL, buf, sizeof buf, &got, NULL);
        }
        uint64_t dt = bench__now() - t0;
        (void)sum;
        if (k >= n_warm)
            bench__samples_add(round_kind(k) == QR_RING       ? &sfloor
                               : round_kind(k) == QR_PINGPONG ? &spp
                                                              : &slib,
                               dt / (uint64_t)batch);
    }
    bench__unpin();
    if (bench__kids_reap(&kids, 30 * (int64_t)NS_PER_S) != 0 && rc == 0)
        rc = -ECHILD;
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        bench__row_init(&r, name, len);
        r.median_ns = bench__pct(&slib, 50);
        r.p99_ns = bench__pct(&slib, 99);
        r.floor_ns = bench__pct(&sfloor, 50);
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = "bare SPSC index ring, 2 processes";
        r.target = n_prod == 1 && len == 8 ? ">= 5 M entries/s" : NULL;
        double pp = bench__pct(&spp, 50);
        snprintf(r.extra_json, sizeof r.extra_json,
                 ",\"entries_per_s\":%.0f,\"producers\":%d,\"handoff_round_trip_ns\":%.1f",
                 1e9 / r.median_ns, n_prod, pp);
        snprintf(r.extra_text, sizeof r.extra_text,
                 "push -> pop_copy, %d producer process%s: %.2f M entries/s (per entry, "
                 "batches of %d); cache-line round trip %.0f ns (%.2fx)", n_prod,
                 n_prod == 1 ? "" : "es", 1e3 / r.median_ns, batch, pp, r.median_ns / pp);
        bench__emit(c, &r);
    }
    shmstore_queue_close(q);
    bench__fixture_close(&f);
    bench__samples_free(&slib);
    bench__samples_free(&sfloor);
    bench__samples_free(&spp);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}

/* ---- large entries and zero-copy, one process ----------------------------------------- */

static int large_round(shmstore_queue_t *q, const void *src, size_t len, bool is_zero_copy)
{
    shmstore_view_t v;
    int rc;
    if (is_zero_copy) {
        shmstore_queue_res_t res;
        rc = shmstore_queue_reserve(q, NULL, len, &res);
        if (rc == 0)
            rc = shmstore_queue_commit(q, &res, 0, NULL);
    } else {
        rc = shmstore_queue_push(q, NULL, src, len, 0, NULL);
    }
    if (rc == 0 && (rc = shmstore_queue_pop(q, 0, &v)) == 0)
        shmstore_view_release(&v);
    return rc;
}

int bench__case_queue_large(struct bench_ctx *c, const char *name)
{
    bool is_zc = strstr(name, "_zc") != NULL;
    size_t len = strstr(name, "1m2") ? FRAME_LEN : (size_t)8 << 20;
    size_t floor_len = is_zc ? 8 : len;
    int n = c->is_quick ? 30 : 300, n_warm = 8;
    struct fixture f = {0};
    struct samples slib = {0}, sfloor = {0};
    shmstore_queue_t *q = NULL;
    uint8_t *src = bench__buf(len), *dst = bench__buf(len);
    uint64_t t_over = bench__timer_overhead();
    int rc = (src && dst && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sfloor, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-queue", "bench/unused");
    if (rc == 0)
        rc = shmstore_queue_open(f.s, "bench/q", SHMSTORE_Q_CREATE, NULL, &q);
    if (rc == 0)
        bench__fill(src, len & ~(size_t)7, 5);
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        uint64_t t0 = bench__now();
        rc = large_round(q, src, len, is_zc);
        uint64_t t1 = bench__now();
        if (is_zc)
            rc = rc ? rc : large_round(q, src, floor_len, true);
        else
            memcpy(dst, src, len);
        uint64_t t2 = bench__now();
        if (k >= n_warm) {
            bench__samples_add(&slib, t1 - t0 > t_over ? t1 - t0 - t_over : 0);
            bench__samples_add(&sfloor, t2 - t1 > t_over ? t2 - t1 - t_over : 0);
        }
    }
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        bench__row_init(&r, name, len);
        r.median_ns = bench__pct(&slib, 50);
        r.p99_ns = bench__pct(&slib, 99);
        r.floor_ns = bench__pct(&sfloor, 50);
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = is_zc ? "the same for an 8 B entry" : "memcpy, same size, warm";
        r.target = is_zc ? "~1x (O(1) in size)" : "<= 1.11x (>= 0.9x memcpy speed)";
        snprintf(r.extra_text, sizeof r.extra_text, "%s + pop view + release, one process",
                 is_zc ? "reserve + commit (no data written)" : "push (copy in)");
        bench__emit(c, &r);
    }
    shmstore_queue_close(q);
    bench__fixture_close(&f);
    bench__samples_free(&slib);
    bench__samples_free(&sfloor);
    free(src);
    free(dst);
    return rc;
}

/* ---- a consumer asleep in pop ---------------------------------------------------------- */

struct qw_shared {
    alignas(64) _Atomic uint32_t ready; /* consumer: k + 1 when about to wait in round k */
    alignas(64) _Atomic uint32_t done;  /* consumer: k + 1 when it returned */
    alignas(64) _Atomic uint32_t fword; /* the raw futex word */
    alignas(64) _Atomic uint64_t t1;    /* consumer's stamp after it returned */
    alignas(64) struct barrier bar;
    char store[96];
    int n_rounds;
};

static int qw_consumer_main(void *arg)
{
    struct qw_shared *sh = arg;
    shmstore_t *s = NULL;
    shmstore_queue_t *q = NULL;
    bench__pin(1);
    int rc = shmstore_open(sh->store, 0, NULL, &s);
    if (rc == 0)
        rc = shmstore_queue_open(s, "bench/q", 0, NULL, &q);
    int brc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    for (int k = 0; k < sh->n_rounds && rc == 0 && brc == 0; k++) {
        if (k % 2) {
            uint32_t cur = atomic_load_explicit(&sh->fword, memory_order_acquire);
            atomic_store_explicit(&sh->ready, (uint32_t)k + 1, memory_order_release);
            while (atomic_load_explicit(&sh->fword, memory_order_acquire) == cur &&
                   bench__futex_wait(&sh->fword, cur, 5 * (int64_t)NS_PER_S) != -ETIMEDOUT)
                ;
        } else {
            uint64_t x;
            size_t len;
            atomic_store_explicit(&sh->ready, (uint32_t)k + 1, memory_order_release);
            rc = shmstore_queue_pop_copy(q, 5 * (int64_t)NS_PER_S, NULL, &x, sizeof x, &len,
                                         NULL);
        }
        atomic_store_explicit(&sh->t1, bench__now(), memory_order_relaxed);
        bench__set_wake(&sh->done, (uint32_t)k + 1);
    }
    if (rc != 0)
        bench__fail("bench", "queue consumer", rc);
    shmstore_queue_close(q);
    shmstore_close(s);
    return rc != 0 || brc != 0;
}

int bench__case_queue_wake(struct bench_ctx *c, const char *name)
{
    int n = c->is_quick ? 200 : 2000, n_warm = 20;
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples slib = {0}, sraw = {0};
    struct qw_shared *sh = bench__shared_alloc(sizeof *sh);
    shmstore_queue_t *q = NULL;
    int rc = (sh && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sraw, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-queue", "bench/unused");
    if (rc == 0)
        rc = shmstore_queue_open(f.s, "bench/q", SHMSTORE_Q_CREATE, NULL, &q);
    pid_t consumer = 0;
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", f.store);
        sh->n_rounds = n + n_warm;
        bench__barrier_init(&sh->bar, 2);
        consumer = bench__kid_spawn(&kids, qw_consumer_main, sh);
        if (consumer < 0)
            rc = (int)consumer;
    }
    bench__pin(0);
    if (rc == 0)
        rc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    uint64_t deadline = bench__now() + 300 * NS_PER_S, x = 0;
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        if ((rc = bench__spin_eq(&sh->ready, (uint32_t)k + 1, deadline)) != 0)
            break;
        if ((rc = bench__wait_asleep(consumer, bench__now() + 5 * NS_PER_S)) != 0) {
            fprintf(stderr, "shmstore bench: %s: the consumer never slept in a futex\n", name);
            break;
        }
        uint64_t t0 = bench__now();
        if (k % 2) {
            atomic_store_explicit(&sh->fword, (uint32_t)k + 1, memory_order_release);
            bench__futex_wake(&sh->fword, 1);
        } else {
            x++;
            rc = shmstore_queue_push(q, NULL, &x, sizeof x, 0, NULL);
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
        struct bench_row r;
        bench__row_init(&r, name, 8);
        r.median_ns = bench__pct(&slib, 50);
        r.p99_ns = bench__pct(&slib, 99);
        r.p999_ns = bench__pct(&slib, 99.9);
        r.floor_ns = bench__pct(&sraw, 50);
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = "raw futex wake, one way";
        r.target = "<= 1.25x";
        snprintf(r.extra_json, sizeof r.extra_json, ",\"raw_futex_p99_ns\":%.0f",
                 bench__pct(&sraw, 99));
        snprintf(r.extra_text, sizeof r.extra_text,
                 "push -> return from pop, consumer asleep in its futex");
        bench__emit(c, &r);
    }
    shmstore_queue_close(q);
    bench__fixture_close(&f);
    bench__samples_free(&slib);
    bench__samples_free(&sraw);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}
