/* bridge_probe.c - the store side of the bridge's benchmark (python/bench/bench_bridge.py).
 *
 * The driver starts `shmstore bridge serve SRC` and `shmstore bridge mirror ... FAR`
 * (possibly in two network namespaces); this program writes into the source store and
 * reads the far one. Both stores live in /dev/shm of one machine, so one process can hold
 * both, and one clock times both ends. Written in C on the public API so that what is
 * measured is the bridge, not an interpreter. Every case first sends one warm-up item and
 * waits for it on the far side (the server finds new objects by rescanning, the mirror
 * creates them on first contact): the figures are the steady state. Each case prints one
 * JSON line; every wait has a timeout, after which the program fails with a message.
 *
 *   mkstore NAME MB | rmstore NAME
 *   value SRC FAR OBJ SIZE SECONDS           writer puts as fast as it can; far rate
 *   value-latency SRC FAR OBJ SIZE COUNT GAP_US   one put at a time; put -> far wake-up
 *   queue SRC FAR OBJ SIZE COUNT CAPACITY    push COUNT, pop them far; entries/s
 *   queue-store STORE OBJ SIZE COUNT CAPACITY  the same through a relay thread in one
 *                                            store: the store's share, no ZeroMQ
 *   ring SRC FAR OBJ CHANNELS CHUNK SECONDS  float32 frames in chunks; frames/s far
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge_bench.h"
#include "shmstore.h"

#define WAIT_NS 10000000000ll   /* any wait for the far side: 10 s, then we fail */
#define APPEAR_POLL_NS 1000000l /* how often we look for a far object to be created */
#define WARMUP 20               /* latency: round trips not counted */

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000l, ns % 1000000000l};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "bridge_probe: %s: %s (%s)\n", what, shmstore_strerror(rc),
            shmstore_errmsg());
    exit(1);
}

static shmstore_t *open_store(const char *name)
{
    shmstore_t *s;
    int rc = shmstore_open(name, 0, NULL, &s);
    if (rc < 0)
        fail(name, rc);
    return s;
}

/* Open a far object once the mirror has created it (polls: only at start-up). */
typedef int (*open_fn)(shmstore_t *s, const char *name, void **out);

static int open_value(shmstore_t *s, const char *name, void **out)
{
    return shmstore_value_open(s, name, 0, (shmstore_value_t **)out);
}

static int open_queue(shmstore_t *s, const char *name, void **out)
{
    return shmstore_queue_open(s, name, 0, NULL, (shmstore_queue_t **)out);
}

static int open_ring(shmstore_t *s, const char *name, void **out)
{
    return shmstore_ring_open(s, name, 0, NULL, (shmstore_ring_t **)out);
}

static void *open_far(shmstore_t *s, const char *name, open_fn fn)
{
    uint64_t t0 = bb_now_mono();
    void *h = NULL;
    for (;;) {
        int rc = fn(s, name, &h);
        if (rc == 0)
            return h;
        if (rc != -ENOENT)
            fail(name, rc);
        if (bb_now_mono() - t0 > (uint64_t)WAIT_NS) {
            fprintf(stderr, "bridge_probe: '%s' did not appear in the far store: is the "
                    "bridge running?\n", name);
            exit(1);
        }
        sleep_ns(APPEAR_POLL_NS);
    }
}

/* ---- values --------------------------------------------------------------------------- */

struct vreader {
    shmstore_value_t *far;
    atomic_int stop;
    uint64_t t_from, t_to; /* count wake-ups in this window (monotonic) */
    uint64_t wakes, *lat, n_lat, cap_lat;
};

static void *value_reader(void *arg)
{
    struct vreader *r = arg;
    uint64_t at;
    shmstore_value_version(r->far, &at);
    while (!atomic_load(&r->stop)) {
        uint64_t ver, mt;
        int rc = shmstore_value_wait(r->far, at, 100000000ll, &ver);
        if (rc == -ETIMEDOUT || rc == -EINTR)
            continue;
        if (rc < 0)
            fail("far value wait", rc);
        uint64_t t = bb_now_mono(), tr = bb_now_real();
        shmstore_value_mtime(r->far, &mt);
        at = ver;
        if (t >= r->t_from && t <= r->t_to) {
            r->wakes++;
            if (r->n_lat < r->cap_lat)
                r->lat[r->n_lat++] = tr > mt ? tr - mt : 0;
        }
    }
    return NULL;
}

static int cmd_value(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    shmstore_t *src = open_store(argv[1]), *far = open_store(argv[2]);
    const char *obj = argv[3];
    size_t size = strtoull(argv[4], NULL, 0);
    double secs = strtod(argv[5], NULL);
    char *buf = calloc(1, size < 8 ? 8 : size);
    shmstore_value_t *v;
    int rc = shmstore_value_open(src, obj, SHMSTORE_V_CREATE, &v);
    if (rc < 0)
        fail(obj, rc);
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    if ((rc = shmstore_value_put(v, &d, buf, size, 0)) < 0)
        fail("put", rc);
    struct vreader r = {.far = open_far(far, obj, open_value)};
    uint64_t fv = 0;
    if ((rc = shmstore_value_wait(r.far, 0, WAIT_NS, &fv)) < 0)
        fail("warm-up version", rc);
    r.cap_lat = 1 << 20;
    r.lat = calloc(r.cap_lat, sizeof(*r.lat));
    uint64_t t0 = bb_now_mono();
    r.t_from = t0;
    r.t_to = t0 + (uint64_t)(secs * 1e9);
    pthread_t th;
    pthread_create(&th, NULL, value_reader, &r);
    uint64_t v0 = 0, v1 = 0, puts = 0, t;
    shmstore_value_version(r.far, &v0);
    while ((t = bb_now_mono()) < r.t_to) {
        memcpy(buf, &puts, sizeof(puts) < size ? sizeof(puts) : size);
        if ((rc = shmstore_value_put(v, &d, buf, size, 0)) < 0)
            fail("put", rc);
        puts++;
    }
    shmstore_value_version(r.far, &v1);
    uint64_t t1 = bb_now_mono();
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    double s = (double)(t1 - t0) / 1e9;
    qsort(r.lat, r.n_lat, sizeof(*r.lat), bb_cmp_u64);
    printf("{\"case\": \"value\", \"size\": %zu, \"seconds\": %.3f, \"puts_per_s\": %.1f, "
           "\"far_versions_per_s\": %.1f, \"reader_wakes_per_s\": %.1f, "
           "\"far_mb_per_s\": %.1f, \"loaded_p50_us\": %.1f, \"loaded_p99_us\": %.1f}\n",
           size, s, (double)puts / s, (double)(v1 - v0) / s, (double)r.wakes / s,
           (double)(v1 - v0) * (double)size / s / 1e6, bb_pct_us(r.lat, r.n_lat, 0.5),
           bb_pct_us(r.lat, r.n_lat, 0.99));
    free(r.lat);
    free(buf);
    shmstore_value_close(r.far);
    shmstore_value_close(v);
    shmstore_close(far);
    shmstore_close(src);
    return 0;
}

static int cmd_value_latency(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    shmstore_t *src = open_store(argv[1]), *far = open_store(argv[2]);
    const char *obj = argv[3];
    size_t size = strtoull(argv[4], NULL, 0);
    uint64_t count = strtoull(argv[5], NULL, 0);
    long gap_us = strtol(argv[6], NULL, 0);
    char *buf = calloc(1, size < 8 ? 8 : size);
    shmstore_value_t *v, *fv;
    int rc = shmstore_value_open(src, obj, SHMSTORE_V_CREATE, &v);
    if (rc < 0)
        fail(obj, rc);
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    if ((rc = shmstore_value_put(v, &d, buf, size, 0)) < 0)
        fail("put", rc);
    fv = open_far(far, obj, open_value);
    uint64_t at = 0;
    if ((rc = shmstore_value_wait(fv, 0, WAIT_NS, &at)) < 0)
        fail("warm-up version", rc);
    uint64_t *lat = calloc(count, sizeof(*lat)), *rt = calloc(count, sizeof(*rt));
    uint64_t n = 0, mismatched = 0;
    for (uint64_t i = 0; i < count + WARMUP; i++) {
        memcpy(buf, &i, sizeof(i) < size ? sizeof(i) : size);
        uint64_t m0 = bb_now_mono();
        if ((rc = shmstore_value_put(v, &d, buf, size, 0)) < 0)
            fail("put", rc);
        uint64_t ver, smt, fmt;
        if ((rc = shmstore_value_wait(fv, at, WAIT_NS, &ver)) < 0)
            fail("far value wait", rc);
        uint64_t tr = bb_now_real(), m1 = bb_now_mono();
        shmstore_value_mtime(fv, &fmt);
        shmstore_value_mtime(v, &smt);
        at = ver;
        if (i >= WARMUP) {
            mismatched += fmt != smt; /* the mirror keeps the source's mtime */
            lat[n] = tr > fmt ? tr - fmt : 0;
            rt[n++] = m1 - m0;
        }
        if (gap_us > 0)
            sleep_ns(gap_us * 1000l);
    }
    qsort(lat, n, sizeof(*lat), bb_cmp_u64);
    qsort(rt, n, sizeof(*rt), bb_cmp_u64);
    printf("{\"case\": \"value-latency\", \"size\": %zu, \"count\": %" PRIu64
           ", \"gap_us\": %ld, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
           "\"max_us\": %.1f, \"put_to_wake_p50_us\": %.1f, \"mtime_mismatches\": %" PRIu64 "}\n",
           size, n, gap_us, bb_pct_us(lat, n, 0.5), bb_pct_us(lat, n, 0.9), bb_pct_us(lat, n, 0.99),
           bb_pct_us(lat, n, 1.0), bb_pct_us(rt, n, 0.5), mismatched);
    free(lat);
    free(rt);
    free(buf);
    shmstore_value_close(fv);
    shmstore_value_close(v);
    shmstore_close(far);
    shmstore_close(src);
    return 0;
}

/* ---- queues --------------------------------------------------------------------------- */

struct pusher {
    shmstore_queue_t *q;
    size_t size;
    uint64_t count, t_done;
    atomic_int done;
};

static void *queue_pusher(void *arg)
{
    struct pusher *p = arg;
    char *buf = calloc(1, p->size < 8 ? 8 : p->size);
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    for (uint64_t i = 1; i <= p->count; i++) { /* entry 0 was the warm-up */
        memcpy(buf, &i, sizeof(i) < p->size ? sizeof(i) : p->size);
        int rc = shmstore_queue_push(p->q, &d, buf, p->size, WAIT_NS, NULL);
        if (rc < 0)
            fail("push (is the bridge draining the queue?)", rc);
    }
    p->t_done = bb_now_mono();
    atomic_store(&p->done, 1);
    free(buf);
    return NULL;
}

static int cmd_queue(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    shmstore_t *src = open_store(argv[1]), *far = open_store(argv[2]);
    const char *obj = argv[3];
    struct pusher p = {.size = strtoull(argv[4], NULL, 0), .count = strtoull(argv[5], NULL, 0)};
    shmstore_queue_options_t qo = {.capacity = strtoull(argv[6], NULL, 0)};
    int rc = shmstore_queue_open(src, obj, SHMSTORE_Q_CREATE, &qo, &p.q);
    if (rc < 0)
        fail(obj, rc);
    char warm[8] = {0};
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    if ((rc = shmstore_queue_push(p.q, &d, warm, p.size < 8 ? p.size : 8, WAIT_NS, NULL)) < 0)
        fail("warm-up push", rc);
    shmstore_queue_t *fq = open_far(far, obj, open_queue);
    shmstore_view_t view;
    if ((rc = shmstore_queue_pop(fq, WAIT_NS, &view)) < 0)
        fail("warm-up pop", rc);
    shmstore_view_release(&view);
    uint64_t t0 = bb_now_mono(), got = 0, out_of_order = 0, bad_size = 0, expect = 1, missing = 0;
    uint64_t t_last = t0;
    pthread_t th;
    pthread_create(&th, NULL, queue_pusher, &p);
    for (; got + missing < p.count; got++) {
        if ((rc = shmstore_queue_pop(fq, 200000000ll, &view)) < 0) {
            if (rc != -ETIMEDOUT && rc != -EINTR)
                fail("far pop", rc);
            /* Nothing for a while: after the last push, 2 s is "never" (the entries still
             * missing are counted); while pushing, WAIT_NS. */
            uint64_t quiet = bb_now_mono() - t_last;
            if (quiet < (atomic_load(&p.done) ? 2000000000ull : (uint64_t)WAIT_NS))
                continue;
            fprintf(stderr, "bridge_probe: far queue '%s': %" PRIu64 " of %" PRIu64
                    " entries, then nothing for %.1f s\n", obj, got, p.count, (double)quiet / 1e9);
            missing = p.count - got;
            break;
        }
        t_last = bb_now_mono();
        uint64_t seq = 0;
        memcpy(&seq, view.data, view.len < 8 ? view.len : 8);
        bad_size += view.len != p.size;
        if (p.size >= 8 && seq != expect) {
            out_of_order++;
            if (out_of_order <= 5)
                fprintf(stderr, "bridge_probe: far queue '%s': entry %" PRIu64 " after %" PRIu64
                        "\n", obj, seq, expect - 1);
            if (seq > expect)
                missing += seq - expect; /* a gap: those are lost (or come later) */
        }
        expect = seq + 1;
        shmstore_view_release(&view);
    }
    uint64_t t1 = t_last;
    pthread_join(th, NULL);
    double s = (double)(t1 - t0) / 1e9;
    printf("{\"case\": \"queue\", \"size\": %zu, \"count\": %" PRIu64 ", \"seconds\": %.3f, "
           "\"entries_per_s\": %.1f, \"mb_per_s\": %.1f, \"push_seconds\": %.3f, "
           "\"received\": %" PRIu64 ", \"missing\": %" PRIu64 ", \"out_of_order\": %" PRIu64
           ", \"bad_size\": %" PRIu64 "}\n",
           p.size, p.count, s, (double)got / s, (double)got * (double)p.size / s / 1e6,
           (double)(p.t_done - t0) / 1e9, got, missing, out_of_order, bad_size);
    shmstore_queue_close(fq);
    shmstore_queue_close(p.q);
    shmstore_close(far);
    shmstore_close(src);
    return 0;
}

/* The store's share of a queue case, without ZeroMQ: a relay thread does to a queue
 * what the server and the mirror do between them (read the entry, push a copy into a
 * second queue, delete the original), one entry at a time as the bridge does, while the
 * pusher and the popper run as in cmd_queue. A reference for the store's share of a
 * queue case (in lock step, where the bridge pipelines). */
struct relay {
    shmstore_queue_t *from, *to;
    uint64_t count;
};

static void *queue_relay(void *arg)
{
    struct relay *r = arg;
    for (uint64_t i = 0; i < r->count; i++) {
        int rc = shmstore_queue_wait(r->from, i, WAIT_NS, NULL);
        shmstore_view_t v;
        if (rc == 0)
            rc = shmstore_queue_read(r->from, i, &v);
        if (rc == 0) {
            rc = shmstore_queue_push(r->to, &v.desc, v.data, v.len, WAIT_NS, NULL);
            shmstore_view_release(&v);
        }
        if (rc == 0)
            rc = shmstore_queue_delete(r->from, i, 1);
        if (rc < 0)
            fail("relay", rc);
    }
    return NULL;
}

static int cmd_queue_store(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    shmstore_t *s = open_store(argv[1]);
    char name2[SHMSTORE_NAME_MAX + 1];
    snprintf(name2, sizeof(name2), "%.200s.far", argv[2]);
    struct pusher p = {.size = strtoull(argv[3], NULL, 0), .count = strtoull(argv[4], NULL, 0)};
    shmstore_queue_options_t qo = {.capacity = strtoull(argv[5], NULL, 0)};
    struct relay r = {.count = p.count + 1};
    shmstore_queue_t *fq;
    int rc = shmstore_queue_open(s, argv[2], SHMSTORE_Q_CREATE, &qo, &p.q);
    if (rc == 0)
        rc = shmstore_queue_open(s, argv[2], 0, NULL, &r.from);
    if (rc == 0)
        rc = shmstore_queue_open(s, name2, SHMSTORE_Q_CREATE, &qo, &r.to);
    if (rc == 0)
        rc = shmstore_queue_open(s, name2, 0, NULL, &fq);
    if (rc < 0)
        fail(argv[2], rc);
    pthread_t tr, tp;
    uint64_t t0 = bb_now_mono();
    pthread_create(&tr, NULL, queue_relay, &r);
    p.count++; /* entries 1..count, and this one: the pusher starts at 1 */
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    char zero[8] = {0};
    if ((rc = shmstore_queue_push(p.q, &d, zero, p.size < 8 ? p.size : 8, WAIT_NS, NULL)) < 0)
        fail("push", rc);
    p.count--;
    pthread_create(&tp, NULL, queue_pusher, &p);
    for (uint64_t i = 0; i <= p.count; i++) {
        shmstore_view_t v;
        if ((rc = shmstore_queue_pop(fq, WAIT_NS, &v)) < 0)
            fail("pop", rc);
        shmstore_view_release(&v);
    }
    uint64_t t1 = bb_now_mono();
    pthread_join(tp, NULL);
    pthread_join(tr, NULL);
    double sec = (double)(t1 - t0) / 1e9;
    printf("{\"case\": \"queue-store\", \"size\": %zu, \"count\": %" PRIu64
           ", \"seconds\": %.3f, \"entries_per_s\": %.1f}\n",
           p.size, p.count, sec, (double)(p.count + 1) / sec);
    shmstore_queue_close(fq);
    shmstore_queue_close(r.to);
    shmstore_queue_close(r.from);
    shmstore_queue_close(p.q);
    shmstore_close(s);
    return 0;
}

/* ---- rings ---------------------------------------------------------------------------- */

struct rreader {
    shmstore_ring_t *far;
    _Atomic uint64_t cursor; /* the main thread waits for it to reach the end */
    uint64_t frame_len, chunk, frames, lost;
    atomic_int stop;
};

static void *ring_reader(void *arg)
{
    struct rreader *r = arg;
    uint64_t max = 4 * r->chunk;
    char *buf = malloc(max * r->frame_len);
    while (!atomic_load(&r->stop)) {
        int rc = shmstore_ring_wait(r->far, r->cursor, 100000000ll, NULL);
        if (rc == SHMSTORE_EGENERATION) {
            shmstore_ring_follow(r->far);
            continue;
        }
        if (rc == -ETIMEDOUT || rc == -EINTR)
            continue;
        if (rc < 0)
            fail("far ring wait", rc);
        shmstore_ring_span_t sp;
        rc = shmstore_ring_read_since(r->far, r->cursor, buf, max, &sp);
        if (rc == SHMSTORE_EGENERATION) {
            shmstore_ring_follow(r->far);
            continue;
        }
        if (rc < 0)
            fail("far ring read", rc);
        r->frames += sp.n;
        r->lost += sp.lost;
        r->cursor = sp.cursor;
    }
    free(buf);
    return NULL;
}

static int cmd_ring(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    shmstore_t *src = open_store(argv[1]), *far = open_store(argv[2]);
    const char *obj = argv[3];
    uint64_t ch = strtoull(argv[4], NULL, 0), chunk = strtoull(argv[5], NULL, 0);
    double secs = strtod(argv[6], NULL);
    uint64_t cap = chunk * 256;
    shmstore_ring_config_t cfg = {.capacity = cap};
    shmstore_datum_init_array(&cfg.frame, "<f4", 1, &ch);
    shmstore_ring_t *w;
    int rc = shmstore_ring_open(src, obj, SHMSTORE_R_CREATE | SHMSTORE_R_WRITER, &cfg, &w);
    if (rc < 0)
        fail(obj, rc);
    uint64_t frame_len = ch * 4;
    float *frames = calloc(chunk, frame_len);
    for (uint64_t i = 0; i < chunk * ch; i++)
        frames[i] = (float)i;
    if ((rc = shmstore_ring_write(w, frames, chunk)) < 0)
        fail("warm-up write", rc);
    shmstore_ring_t *fr = open_far(far, obj, open_ring), *fw = open_far(far, obj, open_ring);
    uint64_t ft = 0;
    while (ft < chunk) { /* the warm-up chunk is there */
        rc = shmstore_ring_wait(fw, ft, WAIT_NS, &ft);
        if (rc == SHMSTORE_EGENERATION)
            shmstore_ring_follow(fw), ft = 0;
        else if (rc < 0)
            fail("warm-up wait", rc);
    }
    shmstore_ring_follow(fr);
    shmstore_ring_follow(fw);
    struct rreader r = {.far = fr, .cursor = chunk, .frame_len = frame_len, .chunk = chunk};
    pthread_t th;
    pthread_create(&th, NULL, ring_reader, &r);
    /* Windowed writer: a chunk goes in while the far ring is at most 1/8 of the capacity
     * behind, so the figure is what the bridge carries without loss (the far reader has the
     * other 7/8 of slack), and the writer does not take a core from the bridge by spinning
     * on a full link. */
    uint64_t window = cap / 8, total = chunk, far_total = chunk;
    uint64_t t0 = bb_now_mono(), t_end = t0 + (uint64_t)(secs * 1e9), written = 0;
    while (bb_now_mono() < t_end) {
        if (total - far_total <= window) {
            if ((rc = shmstore_ring_write(w, frames, chunk)) < 0)
                fail("write", rc);
            total += chunk, written += chunk;
            continue;
        }
        rc = shmstore_ring_wait(fw, far_total, 100000000ll, &far_total);
        if (rc == SHMSTORE_EGENERATION)
            shmstore_ring_follow(fw);
        else if (rc < 0 && rc != -ETIMEDOUT && rc != -EINTR)
            fail("far ring wait", rc);
    }
    uint64_t t_w = bb_now_mono();
    while (far_total < total) { /* the tail arrives */
        rc = shmstore_ring_wait(fw, far_total, WAIT_NS, &far_total);
        if (rc == SHMSTORE_EGENERATION)
            shmstore_ring_follow(fw);
        else if (rc < 0)
            fail("far ring tail", rc);
    }
    uint64_t t1 = bb_now_mono();
    for (uint64_t t = bb_now_mono(); atomic_load(&r.cursor) < total;) { /* the reader's tail */
        if (bb_now_mono() - t > (uint64_t)WAIT_NS) {
            fprintf(stderr, "bridge_probe: the far reader is stuck\n");
            exit(1);
        }
        sleep_ns(100000);
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    double s = (double)(t1 - t0) / 1e9;
    printf("{\"case\": \"ring\", \"channels\": %" PRIu64 ", \"chunk\": %" PRIu64
           ", \"frame_bytes\": %" PRIu64 ", \"seconds\": %.3f, \"written\": %" PRIu64
           ", \"frames_read\": %" PRIu64 ", \"frames_lost\": %" PRIu64
           ", \"frames_per_s\": %.1f, \"mb_per_s\": %.1f, \"write_seconds\": %.3f}\n",
           ch, chunk, frame_len, s, written, r.frames, r.lost, (double)written / s,
           (double)written * (double)frame_len / s / 1e6, (double)(t_w - t0) / 1e9);
    free(frames);
    shmstore_ring_close(fr);
    shmstore_ring_close(fw);
    shmstore_ring_close(w);
    shmstore_close(far);
    shmstore_close(src);
    return 0;
}

/* ---- stores --------------------------------------------------------------------------- */

static int cmd_mkstore(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    shmstore_options_t o = {.capacity = strtoull(argv[2], NULL, 0) << 20};
    shmstore_t *s;
    int rc = shmstore_open(argv[1], SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &o, &s);
    if (rc < 0)
        fail(argv[1], rc);
    shmstore_close(s);
    return 0;
}

static int cmd_rmstore(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int rc = shmstore_unlink(argv[1], NULL);
    if (rc < 0 && rc != -ENOENT)
        fail(argv[1], rc);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"value", cmd_value},   {"value-latency", cmd_value_latency},
                {"queue", cmd_queue},   {"queue-store", cmd_queue_store},
                {"ring", cmd_ring},
                {"mkstore", cmd_mkstore}, {"rmstore", cmd_rmstore}};
    for (size_t i = 0; argc >= 2 && i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[1], cmds[i].name))
            continue;
        int rc = cmds[i].fn(argc - 1, argv + 1);
        if (rc == 2)
            break;
        return rc;
    }
    fprintf(stderr, "usage: shmstore_bridge_probe mkstore NAME MB | rmstore NAME\n"
                    "       shmstore_bridge_probe value SRC FAR OBJ SIZE SECONDS\n"
                    "       shmstore_bridge_probe value-latency SRC FAR OBJ SIZE COUNT GAP_US\n"
                    "       shmstore_bridge_probe queue SRC FAR OBJ SIZE COUNT CAPACITY\n"
                    "       shmstore_bridge_probe queue-store STORE OBJ SIZE COUNT CAPACITY\n"
                    "       shmstore_bridge_probe ring SRC FAR OBJ CHANNELS CHUNK SECONDS\n");
    return 2;
}
