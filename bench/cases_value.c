/* cases_value.c - put, get and view of values, each next to its floor.
 *
 * small_*: one process measures, one peer process on the other CPU touches the value
 * between two measured operations (a hand-off: the peer gets after our put, or puts
 * before our get), so every measured operation starts with the value's lines in the
 * other CPU's cache, as in real use. Timed one by one, the timer's cost subtracted.
 * The floor, a bare cache-line round trip with the same peer on the same CPUs, is
 * measured in blocks of 100 interleaved with blocks of 100 operations: this VM's
 * round trip moves between ~30 and ~300 ns from one second to the next (the host
 * moves the virtual CPUs), so only an interleaved floor is comparable.
 * The row also shows "hot": the same operation back to back in one process (batches).
 *
 * frame_put_reader: puts of a 1.2 MB frame while a peer gets it in a loop; interleaved
 * in the same loop, a non-temporal copy and a memcpy of the same frame (into 4 rotating
 * destinations, as the value rotates through its version blocks): floor = the faster.
 *
 * frame_get: the peer puts a frame and writes the same bytes into a raw shared buffer;
 * we time a get of the value and a memcpy of the raw buffer (alternating which goes
 * first): floor = that cross-core memcpy.
 *
 * view_*: view + release in one process; floor = one uncontended atomic RMW.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_internal.h"

enum peer_mode { PEER_GET_AFTER, PEER_PUT_BEFORE, PEER_GET_LOOP, PEER_PUT_FRAMES };

struct peer {
    alignas(64) _Atomic uint32_t turn;
    alignas(64) _Atomic uint32_t stop;
    _Atomic uint64_t n_ops; /* operations the peer completed */
    alignas(64) struct barrier bar;
    char store[96];
    int mode;
    int n_rounds;
    uint8_t *raw[4]; /* PEER_PUT_FRAMES: cross-core copy sources (shared memory) */
};

/* small_*: rounds come in blocks of PP_BLOCK; odd blocks are bare ping-pong round trips
 * (the floor, timed per block), even blocks measured operations. */
#define PP_BLOCK 100

static bool is_pp_round(int k)
{
    return (k / PP_BLOCK) % 2 == 1;
}

static int peer_main(void *arg)
{
    struct peer *p = arg;
    shmstore_t *s = NULL;
    shmstore_value_t *v = NULL;
    size_t cap = FRAME_LEN;
    uint8_t *buf = bench__buf(cap);
    int rc = buf ? bench__attach(p->store, "bench/v", &s, &v) : -ENOMEM;
    if (p->mode != PEER_GET_LOOP)
        bench__pin(1);
    int brc = bench__barrier_wait(&p->bar, 20 * (int64_t)NS_PER_S);
    if (rc != 0 || brc != 0)
        goto out;
    uint64_t deadline = bench__now() + 120 * NS_PER_S;
    shmstore_datum_t fd, d8;
    bench__frame_datum(&fd);
    shmstore_datum_init(&d8, SHMSTORE_T_INT64);
    int64_t x = 0;
    size_t len;
    for (int k = 0; k < p->n_rounds && rc == 0; k++) {
        switch (p->mode) {
        case PEER_GET_AFTER:
        case PEER_PUT_BEFORE:
            rc = bench__spin_eq(&p->turn, 2u * (uint32_t)k + 1, deadline);
            if (rc != 0)
                break;
            if (is_pp_round(k)) {
                /* a ping-pong round of the floor: answer at once */
            } else if (p->mode == PEER_GET_AFTER) {
                rc = shmstore_value_get(v, NULL, buf, cap, &len, NULL);
            } else {
                x++;
                rc = shmstore_value_put(v, &d8, &x, sizeof x, 0);
            }
            atomic_store_explicit(&p->turn, 2u * (uint32_t)k + 2, memory_order_release);
            break;
        case PEER_GET_LOOP:
            while (rc == 0 && !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
                rc = shmstore_value_get(v, NULL, buf, cap, &len, NULL);
                atomic_fetch_add_explicit(&p->n_ops, 1, memory_order_relaxed);
                if (atomic_load_explicit(&p->n_ops, memory_order_relaxed) == 1)
                    bench__set_wake(&p->turn, 1); /* first get done: the reader runs */
            }
            k = p->n_rounds;
            break;
        case PEER_PUT_FRAMES:
            rc = bench__spin_eq(&p->turn, 2u * (uint32_t)k + 1, deadline);
            if (rc != 0)
                break;
            ((uint64_t *)(void *)buf)[0] = (uint64_t)k;
            rc = shmstore_value_put(v, &fd, buf, FRAME_LEN, 0);
            memcpy(p->raw[k % 4], buf, FRAME_LEN);
            atomic_store_explicit(&p->turn, 2u * (uint32_t)k + 2, memory_order_release);
            break;
        }
    }
    if (rc != 0)
        bench__fail("bench", "peer process", rc);
out:
    shmstore_value_close(v);
    shmstore_close(s);
    free(buf);
    return rc != 0 || brc != 0;
}

/* Start the peer; it attaches and meets us at the barrier. */
static int peer_start(struct peer *p, struct kids *k, const struct fixture *f, int mode,
                      int n_rounds)
{
    bench__barrier_init(&p->bar, 2);
    snprintf(p->store, sizeof p->store, "%s", f->store);
    p->mode = mode;
    p->n_rounds = n_rounds;
    pid_t pid = bench__kid_spawn(k, peer_main, p);
    if (pid < 0)
        return (int)pid;
    return bench__barrier_wait(&p->bar, 20 * (int64_t)NS_PER_S);
}

static int peer_finish(struct peer *p, struct kids *k, int rc)
{
    bench__set_wake(&p->stop, 1);
    if (bench__kids_reap(k, 10 * (int64_t)NS_PER_S) != 0 && rc == 0) {
        fprintf(stderr, "shmstore bench: a peer process failed\n");
        rc = -ECHILD;
    }
    return rc;
}

/* ---- small values ----------------------------------------------------------------- */

static int small_op(shmstore_t *s, shmstore_value_t *v, bool is_put, bool is_name, int64_t *x)
{
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    size_t len;
    if (is_put) {
        (*x)++;
        return is_name ? shmstore_put(s, "bench/v", &d, x, sizeof *x, 0)
                       : shmstore_value_put(v, &d, x, sizeof *x, 0);
    }
    return is_name ? shmstore_get(s, "bench/v", NULL, x, sizeof *x, &len, NULL)
                   : shmstore_value_get(v, NULL, x, sizeof *x, &len, NULL);
}

int bench__case_small(struct bench_ctx *c, const char *name)
{
    bool is_put = strstr(name, "put") != NULL;
    bool is_name = strstr(name, "_name") != NULL;
    int n = c->is_quick ? 4000 : 40000, n_warm = 2 * PP_BLOCK * 5;
    int n_rounds = 2 * n + n_warm; /* half of them ping-pong rounds */
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples s = {0}, hot = {0}, pp = {0};
    struct peer *p = bench__shared_alloc(sizeof *p);
    int64_t x = 1;
    int rc = 0;
    if (!p || bench__samples_init(&s, (size_t)n) || bench__samples_init(&hot, 200) ||
        bench__samples_init(&pp, (size_t)n / PP_BLOCK + 1))
        rc = -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-small", "bench/v");
    if (rc == 0)
        rc = small_op(f.s, f.v, true, false, &x);
    if (rc == 0)
        rc = peer_start(p, &kids, &f, is_put ? PEER_GET_AFTER : PEER_PUT_BEFORE, n_rounds);
    bench__pin(0);
    uint64_t ovh = bench__timer_overhead();
    uint64_t deadline = bench__now() + 120 * NS_PER_S;
    for (int k = 0; k < n_rounds && rc == 0;) {
        if (is_pp_round(k)) { /* a block of bare round trips: the floor */
            uint64_t t0 = bench__now();
            for (int j = 0; j < PP_BLOCK && rc == 0; j++, k++) {
                atomic_store_explicit(&p->turn, 2u * (uint32_t)k + 1, memory_order_release);
                rc = bench__spin_eq(&p->turn, 2u * (uint32_t)k + 2, deadline);
            }
            if (k > n_warm)
                bench__samples_add(&pp, (bench__now() - t0) / PP_BLOCK);
            continue;
        }
        if (!is_put) { /* the peer puts first, then we get */
            atomic_store_explicit(&p->turn, 2u * (uint32_t)k + 1, memory_order_release);
            if ((rc = bench__spin_eq(&p->turn, 2u * (uint32_t)k + 2, deadline)) != 0)
                break;
        }
        uint64_t t0 = bench__now();
        rc = small_op(f.s, f.v, is_put, is_name, &x);
        uint64_t t1 = bench__now();
        if (k >= n_warm)
            bench__samples_add(&s, t1 - t0 > ovh ? t1 - t0 - ovh : 0);
        if (is_put && rc == 0) { /* then the peer gets it */
            atomic_store_explicit(&p->turn, 2u * (uint32_t)k + 1, memory_order_release);
            rc = bench__spin_eq(&p->turn, 2u * (uint32_t)k + 2, deadline);
        }
        k++;
    }
    rc = peer_finish(p, &kids, rc);
    for (int b = 0; b < 200 && rc == 0; b++) { /* hot: no other process involved */
        uint64_t t0 = bench__now();
        for (int j = 0; j < 100 && rc == 0; j++)
            rc = small_op(f.s, f.v, is_put, is_name, &x);
        bench__samples_add(&hot, (bench__now() - t0) / 100);
    }
    bench__unpin();
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        bench__row_init(&r, name, 8);
        r.median_ns = bench__pct(&s, 50);
        r.p99_ns = bench__pct(&s, 99);
        r.floor_ns = bench__pct(&pp, 50);
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = "cache-line round trip, 2 procs";
        r.target = is_put ? NULL : "<= 2x";
        snprintf(r.extra_json, sizeof r.extra_json,
                 ",\"hot_ns\":%.1f,\"by\":\"%s\",\"floor_p99_ns\":%.1f", bench__pct(&hot, 50),
                 is_name ? "name" : "handle", bench__pct(&pp, 99));
        snprintf(r.extra_text, sizeof r.extra_text,
                 "value last touched by the other CPU; same op hot in one process: %.0f ns",
                 bench__pct(&hot, 50));
        bench__emit(c, &r);
    }
    bench__fixture_close(&f);
    bench__samples_free(&s);
    bench__samples_free(&hot);
    bench__samples_free(&pp);
    bench__shared_free(p, sizeof *p);
    return rc;
}

/* ---- frames ------------------------------------------------------------------------- */

int bench__case_frame_put_reader(struct bench_ctx *c, const char *name)
{
    int n = c->is_quick ? 60 : 400, n_warm = 12;
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples sp = {0}, snt = {0}, smc = {0};
    struct peer *p = bench__shared_alloc(sizeof *p);
    uint8_t *src = bench__buf(FRAME_LEN), *nt[4] = {0}, *mc[4] = {0};
    int rc = (p && src) ? 0 : -ENOMEM;
    for (int i = 0; i < 4 && rc == 0; i++) {
        nt[i] = bench__buf(FRAME_LEN);
        mc[i] = bench__buf(FRAME_LEN);
        if (!nt[i] || !mc[i])
            rc = -ENOMEM;
    }
    if (rc == 0 && (bench__samples_init(&sp, (size_t)n) || bench__samples_init(&snt, (size_t)n) ||
                    bench__samples_init(&smc, (size_t)n)))
        rc = -ENOMEM;
    shmstore_datum_t d;
    bench__frame_datum(&d);
    if (rc == 0) {
        bench__fill(src, FRAME_LEN, 1);
        rc = bench__fixture_open(&f, "bench-fput", "bench/v");
    }
    for (int i = 0; i < n_warm && rc == 0; i++) /* allocate and fault every version block */
        rc = shmstore_value_put(f.v, &d, src, FRAME_LEN, 0);
    if (rc == 0)
        rc = peer_start(p, &kids, &f, PEER_GET_LOOP, 1);
    if (rc == 0) /* the reader's first get: it is copying from now on */
        rc = bench__spin_eq(&p->turn, 1, bench__now() + 20 * NS_PER_S);
    uint64_t gets0 = atomic_load(&p->n_ops), t_start = bench__now();
    uint64_t faults0 = 0;
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        if (k == n_warm) { /* after the warm-up (which also took the copy-on-write
                            * faults fork() left on our buffers) */
            faults0 = bench__faults();
            bench__syscalls_start();
        }
        ((uint64_t *)(void *)src)[0] = (uint64_t)k;
        uint64_t t[4];
        /* Rotate the order of the three copies so none always runs first. */
        for (int j = 0; j < 3 && rc == 0; j++) {
            int which = (j + k) % 3;
            t[0] = bench__now();
            if (which == 0)
                rc = shmstore_value_put(f.v, &d, src, FRAME_LEN, 0);
            else if (which == 1)
                bench__copy_nt(nt[k % 4], src, FRAME_LEN);
            else
                memcpy(mc[k % 4], src, FRAME_LEN);
            t[1] = bench__now();
            if (k >= n_warm)
                bench__samples_add(which == 0 ? &sp : which == 1 ? &snt : &smc, t[1] - t[0]);
        }
    }
    double n_sys = (double)bench__syscalls_stop() / n;
    double n_faults = (double)(bench__faults() - faults0) / n;
    double secs = (double)(bench__now() - t_start) / 1e9;
    uint64_t n_gets = atomic_load(&p->n_ops) - gets0;
    rc = peer_finish(p, &kids, rc);
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        bench__row_init(&r, name, FRAME_LEN);
        double m_nt = bench__pct(&snt, 50), m_mc = bench__pct(&smc, 50);
        r.median_ns = bench__pct(&sp, 50);
        r.p99_ns = bench__pct(&sp, 99);
        r.p999_ns = bench__pct(&sp, 99.9);
        r.floor_ns = m_nt < m_mc ? m_nt : m_mc;
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = m_nt < m_mc ? "non-temporal copy (< memcpy)" : "memcpy (< NT copy)";
        r.target = "<= 1.1x";
        snprintf(r.extra_json, sizeof r.extra_json,
                 ",\"nt_copy_ns\":%.0f,\"memcpy_ns\":%.0f,\"put_gbps\":%.2f,"
                 "\"reader_gets_per_s\":%.0f,\"syscalls_per_op\":%.3f,\"faults_per_op\":%.3f,"
                 "\"floor_p99_ns\":%.0f",
                 m_nt, m_mc, (double)FRAME_LEN / r.median_ns, (double)n_gets / secs, n_sys,
                 n_faults, m_nt < m_mc ? bench__pct(&snt, 99) : bench__pct(&smc, 99));
        snprintf(r.extra_text, sizeof r.extra_text,
                 "put %.1f GB/s; NT copy %.0f us, memcpy %.0f us (floor p99 %.0f us); "
                 "reader %.0f gets/s; %.2f syscalls, %.2f faults/put",
                 (double)FRAME_LEN / r.median_ns, m_nt / 1e3, m_mc / 1e3,
                 (m_nt < m_mc ? bench__pct(&snt, 99) : bench__pct(&smc, 99)) / 1e3,
                 (double)n_gets / secs, n_sys, n_faults);
        bench__emit(c, &r);
    }
    bench__fixture_close(&f);
    for (int i = 0; i < 4; i++) {
        free(nt[i]);
        free(mc[i]);
    }
    free(src);
    bench__samples_free(&sp);
    bench__samples_free(&snt);
    bench__samples_free(&smc);
    bench__shared_free(p, sizeof *p);
    return rc;
}

int bench__case_frame_get(struct bench_ctx *c, const char *name)
{
    int n = c->is_quick ? 60 : 400, n_warm = 12;
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples sg = {0}, sm = {0};
    struct peer *p = bench__shared_alloc(sizeof *p);
    uint8_t *raw = bench__shared_alloc(4 * FRAME_LEN);
    uint8_t *dg = bench__buf(FRAME_LEN), *dm = bench__buf(FRAME_LEN);
    int rc = (p && raw && dg && dm) ? 0 : -ENOMEM;
    if (rc == 0 && (bench__samples_init(&sg, (size_t)n) || bench__samples_init(&sm, (size_t)n)))
        rc = -ENOMEM;
    shmstore_datum_t d;
    bench__frame_datum(&d);
    if (rc == 0) {
        for (int i = 0; i < 4; i++)
            p->raw[i] = raw + (size_t)i * FRAME_LEN;
        bench__fill(dg, FRAME_LEN, 2);
        rc = bench__fixture_open(&f, "bench-fget", "bench/v");
    }
    for (int i = 0; i < 8 && rc == 0; i++)
        rc = shmstore_value_put(f.v, &d, dg, FRAME_LEN, 0);
    if (rc == 0)
        rc = peer_start(p, &kids, &f, PEER_PUT_FRAMES, n + n_warm);
    bench__pin(0);
    uint64_t deadline = bench__now() + 120 * NS_PER_S;
    size_t len;
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        atomic_store_explicit(&p->turn, 2u * (uint32_t)k + 1, memory_order_release);
        if ((rc = bench__spin_eq(&p->turn, 2u * (uint32_t)k + 2, deadline)) != 0)
            break;
        for (int j = 0; j < 2 && rc == 0; j++) {
            bool is_get = (j + k) % 2 == 0;
            uint64_t t0 = bench__now();
            if (is_get)
                rc = shmstore_value_get(f.v, NULL, dg, FRAME_LEN, &len, NULL);
            else
                memcpy(dm, p->raw[k % 4], FRAME_LEN);
            uint64_t t1 = bench__now();
            if (k >= n_warm)
                bench__samples_add(is_get ? &sg : &sm, t1 - t0);
        }
        if (rc == 0 && ((uint64_t *)(void *)dg)[0] != (uint64_t)k) {
            fprintf(stderr, "shmstore bench: frame_get: got frame %llu, expected %d\n",
                    (unsigned long long)((uint64_t *)(void *)dg)[0], k);
            rc = -EPROTO;
        }
    }
    bench__unpin();
    rc = peer_finish(p, &kids, rc);
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        bench__row_init(&r, name, FRAME_LEN);
        r.median_ns = bench__pct(&sg, 50);
        r.p99_ns = bench__pct(&sg, 99);
        r.p999_ns = bench__pct(&sg, 99.9);
        r.floor_ns = bench__pct(&sm, 50);
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = "cross-core memcpy";
        r.target = "<= 1.1x";
        snprintf(r.extra_json, sizeof r.extra_json,
                 ",\"get_gbps\":%.2f,\"memcpy_gbps\":%.2f,\"floor_p99_ns\":%.0f",
                 (double)FRAME_LEN / r.median_ns, (double)FRAME_LEN / r.floor_ns,
                 bench__pct(&sm, 99));
        snprintf(r.extra_text, sizeof r.extra_text,
                 "get %.1f GB/s vs memcpy of a buffer the other CPU wrote %.1f GB/s "
                 "(floor p99 %.0f us)",
                 (double)FRAME_LEN / r.median_ns, (double)FRAME_LEN / r.floor_ns,
                 bench__pct(&sm, 99) / 1e3);
        bench__emit(c, &r);
    }
    bench__fixture_close(&f);
    free(dg);
    free(dm);
    bench__samples_free(&sg);
    bench__samples_free(&sm);
    bench__shared_free(raw, 4 * FRAME_LEN);
    bench__shared_free(p, sizeof *p);
    return rc;
}

/* ---- views ------------------------------------------------------------------------ */

int bench__case_view(struct bench_ctx *c, const char *name)
{
    size_t bytes = strcmp(name, "view_8") == 0      ? 8
                   : strcmp(name, "view_1m2") == 0 ? FRAME_LEN
                                                    : (size_t)64 << 20;
    int n = c->is_quick ? 5000 : 50000, n_warm = 1000;
    struct fixture f = {0};
    struct samples s = {0};
    uint8_t *src = bench__buf(bytes);
    int rc = (src && bench__samples_init(&s, (size_t)n) == 0) ? 0 : -ENOMEM;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-view", "bench/v");
    if (rc == 0)
        rc = shmstore_value_put(f.v, NULL, src, bytes, 0);
    uint64_t ovh = bench__timer_overhead();
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        shmstore_view_t view;
        uint64_t t0 = bench__now();
        rc = shmstore_value_view(f.v, &view);
        if (rc == 0)
            shmstore_view_release(&view);
        uint64_t t1 = bench__now();
        if (rc == 0 && view.len != bytes)
            rc = -EPROTO;
        if (k >= n_warm)
            bench__samples_add(&s, t1 - t0 > ovh ? t1 - t0 - ovh : 0);
    }
    double rmw = bench__floor_atomic(c->is_quick ? 100000 : 1000000);
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        bench__row_init(&r, name, bytes);
        r.median_ns = bench__pct(&s, 50);
        r.p99_ns = bench__pct(&s, 99);
        r.floor_ns = rmw;
        r.ratio = r.median_ns / rmw;
        r.floor_what = "one uncontended atomic RMW";
        r.target = "<= 1 us (any size)";
        snprintf(r.extra_text, sizeof r.extra_text, "view + release, one process%s",
                 r.median_ns <= 1000 ? "" : "; ABOVE the 1 us target");
        bench__emit(c, &r);
    }
    bench__fixture_close(&f);
    free(src);
    bench__samples_free(&s);
    return rc;
}
