/* test_bridge.c - the ZeroMQ bridge inside one process: a server and a mirror, each
 * running in its own thread on its own store, over loopback TCP. Every kind round-trips;
 * a raw DEALER sends the server garbage and truncated messages; a fake server sends the
 * mirror malformed batches (bounds, counts, descriptors that lie); CURVE keys: the right
 * server key works, a wrong one is refused (-EACCES), a mirror not allowed is refused.
 * The network tests across namespaces (cut links, kills) are python/tests/test_bridge.py. */
#include "test.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "shmstore/bridge.h"

#define MiB (1024ull * 1024ull)
#define SEC 1000000000ll

struct fixture {
    char src_name[128], dst_name[128];
    shmstore_t *src, *dst;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    t_store_name(f->src_name, sizeof(f->src_name));
    t_store_name(f->dst_name, sizeof(f->dst_name));
    f->src = t_open_new(f->src_name, 128 * MiB);
    f->dst = t_open_new(f->dst_name, 128 * MiB);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    t_cleanup(f->src, f->src_name);
    t_cleanup(f->dst, f->dst_name);
    free(f);
    return 0;
}

struct runner {
    shmstore_bridge_t *b;
    pthread_t th;
    _Atomic int rc;
};

static void *run_main(void *arg)
{
    struct runner *r = arg;
    atomic_store(&r->rc, shmstore_bridge_run(r->b, 30 * SEC));
    return NULL;
}

static void start(struct runner *r, shmstore_bridge_t *b)
{
    r->b = b;
    atomic_store(&r->rc, 1);
    assert_int_equal(pthread_create(&r->th, NULL, run_main, r), 0);
}

static int stop(struct runner *r)
{
    shmstore_bridge_stop(r->b);
    pthread_join(r->th, NULL);
    shmstore_bridge_close(r->b);
    return atomic_load(&r->rc);
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000}, NULL);
}

static shmstore_bridge_t *serve(shmstore_t *s, const shmstore_bridge_options_t *o, char *ep)
{
    shmstore_bridge_t *b;
    T_OK(shmstore_bridge_serve(s, "tcp://127.0.0.1:0", o, &b));
    T_OK(shmstore_bridge_endpoint(b, ep, 256));
    return b;
}

static shmstore_bridge_t *mirror(shmstore_t *s, const char *ep, const char *prefix,
                                 const shmstore_bridge_options_t *o)
{
    shmstore_bridge_t *b;
    const char *eps[1] = {ep}, *pre[1] = {prefix};
    T_OK(shmstore_bridge_mirror(s, eps, pre, 1, o, &b));
    return b;
}

/* Wait up to 10 s for shmstore_info(name) to say what `ok` wants. */
static int wait_info(shmstore_t *s, const char *name, bool (*ok)(const shmstore_obj_info_t *, uint64_t),
                     uint64_t want)
{
    for (int i = 0; i < 1000; i++) {
        shmstore_obj_info_t in;
        if (shmstore_info(s, name, &in) == 0 && ok(&in, want))
            return 0;
        sleep_ms(10);
    }
    return -ETIMEDOUT;
}

static bool version_at_least(const shmstore_obj_info_t *in, uint64_t v)
{
    return in->version >= v;
}

static bool next_at_least(const shmstore_obj_info_t *in, uint64_t v)
{
    return in->next_index >= v;
}

static bool count_is(const shmstore_obj_info_t *in, uint64_t v)
{
    return in->count == v;
}

static void *push_1000(void *arg)
{
    for (uint64_t i = 0; i < 1000; i++)
        if (shmstore_queue_push(arg, NULL, &i, sizeof(i), 10 * SEC, NULL) != 0)
            fprintf(stderr, "push %" PRIu64 " failed: %s\n", i, shmstore_errmsg());
    return NULL;
}

static void test_every_kind(void **state)
{
    struct fixture *f = *state;
    char ep[256];
    struct runner rs, rm;
    start(&rs, serve(f->src, NULL, ep));
    /* A value with attrs, before the mirror comes: it gets the latest. */
    char attrs[128];
    uint32_t alen = 0;
    double srate = 1000.0;
    T_OK(shmstore_attrs_add(attrs, sizeof(attrs), &alen, "srate", SHMSTORE_T_FLOAT64, &srate, 8));
    uint64_t shape[1] = {4};
    shmstore_datum_t d;
    T_OK(shmstore_datum_init_array(&d, "<i8", 1, shape));
    d.attrs = attrs, d.attrs_len = alen;
    int64_t arr[4] = {1, 2, 3, 4};
    T_OK(shmstore_put(f->src, "v", &d, arr, sizeof(arr), 0));
    shmstore_queue_t *q;
    shmstore_queue_options_t qo = {.capacity = 64};
    T_OK(shmstore_queue_open(f->src, "q", SHMSTORE_Q_CREATE, &qo, &q));
    shmstore_ring_t *r;
    shmstore_ring_config_t rc = {.capacity = 100};
    uint64_t fs[1] = {2};
    T_OK(shmstore_datum_init_array(&rc.frame, "<u8", 1, fs));
    T_OK(shmstore_ring_open(f->src, "r", SHMSTORE_R_CREATE | SHMSTORE_R_WRITER, &rc, &r));
    shmstore_table_field_t tf[2] = {{.name = "a", .dtype = "<i8"},
                                    {.name = "b", .dtype = "<f4", .ndim = 1, .shape = {3}}};
    shmstore_table_options_t to = {.capacity = 1000, .n_fields = 2, .fields = tf};
    shmstore_table_t *t;
    T_OK(shmstore_table_open(f->src, "t", SHMSTORE_T_CREATE, &to, &t));
    start(&rm, mirror(f->dst, ep, "far/", NULL));
    T_OK(wait_info(f->dst, "far/v", version_at_least, 1));
    /* Queue: 1000 entries through 64-entry queues on both sides (the far one gets the
     * source's capacity), popped there as they come: the bridge keeps moving them, and
     * waits while the far queue is full. */
    pthread_t pusher;
    assert_int_equal(pthread_create(&pusher, NULL, push_1000, q), 0);
    for (uint64_t p = 0; p < 250; p++) {
        uint64_t fr[2] = {p, ~p};
        T_OK(shmstore_ring_write(r, fr, 1));
    }
    for (int64_t i = 0; i < 50; i++) {
        float b3[3] = {(float)i, (float)i, (float)i};
        const void *cols[2] = {&i, b3};
        T_OK(shmstore_table_append(t, cols, 1, NULL));
    }
    if (wait_info(f->dst, "far/t", next_at_least, 50) != 0) {
        shmstore_bridge_stats_t a, c;
        shmstore_bridge_stats(rs.b, &a);
        shmstore_bridge_stats(rm.b, &c);
        fprintf(stderr, "server: sent %" PRIu64 " entries %" PRIu64 " acked %" PRIu64
                " records %" PRIu64 " deferred %" PRIu64 "; mirror: received %" PRIu64
                " entries %" PRIu64 " records %" PRIu64 " bad %" PRIu64 "\n",
                a.messages_sent, a.entries, a.entries_acked, a.records, a.hwm_deferred,
                c.messages_received, c.entries, c.records, c.bad_messages);
        fail();
    }
    T_OK(wait_info(f->dst, "far/r", next_at_least, 250));
    /* The far value: same data, attrs and mtime. */
    shmstore_value_t *fv;
    shmstore_view_t vw;
    T_OK(shmstore_value_open(f->dst, "far/v", 0, &fv));
    T_OK(shmstore_value_view(fv, &vw));
    assert_int_equal(vw.len, sizeof(arr));
    assert_memory_equal(vw.data, arr, sizeof(arr));
    shmstore_type_t ty;
    const void *val;
    uint32_t vl;
    T_OK(shmstore_attrs_get(vw.desc.attrs, vw.desc.attrs_len, "srate", &ty, &val, &vl));
    shmstore_obj_info_t si;
    T_OK(shmstore_info(f->src, "v", &si));
    assert_int_equal(vw.mtime_ns, si.mtime_ns);
    shmstore_view_release(&vw);
    shmstore_value_close(fv);
    /* The far queue: every entry once, in order, with its source index. */
    shmstore_queue_t *fq;
    T_OK(wait_info(f->dst, "far/q", next_at_least, 1));
    T_OK(shmstore_queue_open(f->dst, "far/q", 0, NULL, &fq));
    for (uint64_t i = 0; i < 1000; i++) {
        shmstore_view_t e;
        T_OK(shmstore_queue_pop(fq, 10 * SEC, &e));
        assert_int_equal(*(const uint64_t *)e.data, i);
        const void *bi;
        T_OK(shmstore_attrs_get(e.desc.attrs, e.desc.attrs_len, "bridge_index", &ty, &bi, &vl));
        int64_t bidx;
        memcpy(&bidx, bi, sizeof(bidx)); /* attrs are packed: no alignment */
        assert_int_equal(bidx, (int64_t)i);
        shmstore_view_release(&e);
    }
    shmstore_queue_close(fq);
    pthread_join(pusher, NULL);
    T_OK(wait_info(f->src, "q", count_is, 0)); /* moved: the source is drained */
    /* The far ring: the source's positions and frames. */
    shmstore_ring_t *fr;
    T_OK(shmstore_ring_open(f->dst, "far/r", 0, NULL, &fr));
    uint64_t buf[200];
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(fr, 150, buf, 100, &sp));
    assert_int_equal(sp.n, 100);
    assert_int_equal(sp.first, 150);
    for (uint64_t k = 0; k < 100; k++)
        assert_int_equal(buf[2 * k], 150 + k);
    shmstore_ring_close(fr);
    /* The far table: every record. */
    shmstore_table_t *ft;
    T_OK(shmstore_table_open(f->dst, "far/t", 0, NULL, &ft));
    int64_t a[50];
    float b[150];
    void *cols[2] = {a, b};
    T_OK(shmstore_table_get_range(ft, 0, 50, cols));
    for (int64_t i = 0; i < 50; i++)
        assert_int_equal(a[i], i), assert_true(b[3 * i + 2] == (float)i);
    shmstore_table_close(ft);
    shmstore_bridge_stats_t st;
    shmstore_bridge_stats(rs.b, &st);
    assert_int_equal(st.entries_acked, 1000);
    assert_int_equal(st.bad_messages, 0);
    T_OK(stop(&rm));
    T_OK(stop(&rs));
    shmstore_queue_close(q);
    shmstore_ring_close(r);
    shmstore_table_close(t);
}

/* A raw DEALER sends the server what no mirror would. */
static void test_garbage_to_server(void **state)
{
    struct fixture *f = *state;
    char ep[256];
    struct runner rs, rm;
    T_OK(shmstore_put(f->src, "v", NULL, "hello", 5, 0));
    start(&rs, serve(f->src, NULL, ep));
    void *ctx = zmq_ctx_new(), *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_connect(d, ep), 0);
    unsigned seed = 7;
    char msg[600];
    for (int i = 0; i < 300; i++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof(msg));
        for (size_t k = 0; k < n; k++)
            msg[k] = (char)rand_r(&seed);
        if (i % 3 == 0 && n >= 13) { /* a valid header, then garbage */
            uint32_t magic = 0x31424853u;
            memcpy(msg, &magic, 4);
            msg[4] = (char)(2 + i % 2);
        }
        zmq_send(d, msg, n, i % 7 == 0 ? ZMQ_SNDMORE : 0);
    }
    zmq_send(d, "", 0, 0);
    /* A PING with lying counts: 60000 globs, 2^32 - 1 positions. */
    uint8_t ping[64] = {0x53, 0x48, 0x42, 0x31, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0x60, 0xea};
    zmq_send(d, ping, 15, 0);
    uint8_t ping2[64] = {0x53, 0x48, 0x42, 0x31, 2, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0xff, 0xff, 0xff, 0xff};
    zmq_send(d, ping2, 19, 0);
    /* The server counts them as they come (the connection may take a while on a busy
     * machine): wait for it, not a fixed time. */
    shmstore_bridge_stats_t st;
    for (int i = 0; i < 1000; i++) {
        shmstore_bridge_stats(rs.b, &st);
        if (st.bad_messages > 0)
            break;
        sleep_ms(10);
    }
    zmq_close(d);
    zmq_ctx_term(ctx);
    /* The server still serves a real mirror. */
    start(&rm, mirror(f->dst, ep, NULL, NULL));
    T_OK(wait_info(f->dst, "v", version_at_least, 1));
    shmstore_bridge_stats(rs.b, &st);
    assert_true(st.bad_messages > 0);
    T_OK(stop(&rm));
    T_OK(stop(&rs));
}

/* Wire helpers for crafting batches (the format of src/bridge.c). */
struct w {
    uint8_t b[4096];
    size_t n;
};
static void put(struct w *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void u8(struct w *w, uint8_t v) { put(w, &v, 1); }
static void u16(struct w *w, uint16_t v) { put(w, &v, 2); }
static void u32(struct w *w, uint32_t v) { put(w, &v, 4); }
static void u64(struct w *w, uint64_t v) { put(w, &v, 8); }

static void batch_head(struct w *w, uint16_t n)
{
    w->n = 0;
    u32(w, 0x31424853u), u8(w, 1), u8(w, 1), u16(w, n);
}

static void value_item(struct w *w, const char *name, uint64_t len, uint64_t ver, uint32_t type,
                       uint32_t ndim, const char *dtype, uint64_t dim0, uint32_t attrs_len)
{
    u8(w, SHMSTORE_KIND_VALUE), u8(w, 1), u16(w, (uint16_t)strlen(name));
    put(w, name, strlen(name));
    u64(w, len), u64(w, ver), u64(w, 0);
    u32(w, type), u32(w, ndim);
    char dt[8] = {0};
    memcpy(dt, dtype, strlen(dtype));
    put(w, dt, 8);
    for (uint32_t i = 0; i < ndim && i < 4; i++)
        u64(w, dim0);
    u32(w, attrs_len);
}

static void test_malformed_to_mirror(void **state)
{
    struct fixture *f = *state;
    void *ctx = zmq_ctx_new(), *rt = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(rt, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_bind(rt, "tcp://127.0.0.1:0"), 0);
    char ep[256];
    size_t epl = sizeof(ep);
    zmq_getsockopt(rt, ZMQ_LAST_ENDPOINT, ep, &epl);
    struct runner rm;
    start(&rm, mirror(f->dst, ep, NULL, NULL));
    /* The mirror's PING gives us its routing id. */
    uint8_t rid[256];
    int rl = zmq_recv(rt, rid, sizeof(rid), 0);
    assert_true(rl > 0);
    char sink[4096];
    while (zmq_recv(rt, sink, sizeof(sink), ZMQ_DONTWAIT) >= 0) /* the PING's body */
        ;
    struct w w;
    uint64_t payload8 = 42;
    /* 1: random bytes; 2: wrong magic; 3: an item count past the frame; 4: a name longer
     * than the frame; 5: ndim 99; 6: attrs_len past the frame; 7: a descriptor whose size
     * does not match the payload; 8: a non-inline payload with no frame; 9: a table with
     * 0 fields; 10: a ring whose frames don't divide the payload; then a good value. */
    for (int k = 0; k < 11; k++) {
        zmq_send(rt, rid, (size_t)rl, ZMQ_SNDMORE);
        batch_head(&w, 1);
        switch (k) {
        case 0:
            for (int i = 0; i < 200; i++)
                u8(&w, (uint8_t)(i * 37));
            break;
        case 1:
            w.b[0] = 'X';
            break;
        case 2:
            batch_head(&w, 5000);
            break;
        case 3:
            u8(&w, SHMSTORE_KIND_VALUE), u8(&w, 1), u16(&w, 3000);
            break;
        case 4:
            value_item(&w, "a", 8, 1, SHMSTORE_T_ARRAY, 99, "<i8", 1, 0);
            break;
        case 5:
            value_item(&w, "b", 8, 1, SHMSTORE_T_INT64, 0, "", 0, 60000);
            break;
        case 6:
            value_item(&w, "c", 8, 1, SHMSTORE_T_ARRAY, 1, "<i8", 3, 0); /* 24 != 8 */
            put(&w, &payload8, 8);
            break;
        case 7:
            w.n = 0, u32(&w, 0x31424853u), u8(&w, 1), u8(&w, 1), u16(&w, 1);
            u8(&w, SHMSTORE_KIND_VALUE), u8(&w, 0), u16(&w, 1), put(&w, "d", 1);
            u64(&w, 1 << 20), u64(&w, 1), u64(&w, 0), u32(&w, SHMSTORE_T_BYTES), u32(&w, 0);
            put(&w, "\0\0\0\0\0\0\0\0", 8), u32(&w, 0);
            break;
        case 8:
            u8(&w, SHMSTORE_KIND_TABLE), u8(&w, 1), u16(&w, 1), put(&w, "t", 1);
            u64(&w, 8), u64(&w, 0), u64(&w, 1), u64(&w, 10), u32(&w, 0), u32(&w, 0);
            put(&w, &payload8, 8);
            break;
        case 9:
            u8(&w, SHMSTORE_KIND_RING), u8(&w, 1), u16(&w, 1), put(&w, "r", 1);
            u64(&w, 12), u64(&w, 1), u64(&w, 0), u64(&w, 1), u64(&w, 10);
            u32(&w, SHMSTORE_T_ARRAY), u32(&w, 0), put(&w, "<i8\0\0\0\0\0", 8), u32(&w, 0);
            put(&w, "123456789012", 12);
            break;
        case 10:
            value_item(&w, "good", 8, 1, SHMSTORE_T_INT64, 0, "", 0, 0);
            put(&w, &payload8, 8);
            break;
        }
        zmq_send(rt, w.b, w.n, 0);
    }
    T_OK(wait_info(f->dst, "good", version_at_least, 1));
    int64_t got = 0;
    size_t len;
    T_OK(shmstore_get(f->dst, "good", NULL, &got, sizeof(got), &len, NULL));
    assert_int_equal(got, 42);
    shmstore_obj_info_t in;
    T_ASSERT_RC(shmstore_info(f->dst, "c", &in), -ENOENT);
    T_ASSERT_RC(shmstore_info(f->dst, "t", &in), -ENOENT);
    shmstore_bridge_stats_t st;
    shmstore_bridge_stats(rm.b, &st);
    assert_true(st.bad_messages >= 9);
    T_OK(stop(&rm));
    zmq_close(rt);
    zmq_ctx_term(ctx);
}

/* A peer that claims, in a PING, to have queue entries it was never sent: nothing is
 * deleted; and one connection can't take many mirror slots by inventing ids. */
static void test_forged_positions(void **state)
{
    struct fixture *f = *state;
    shmstore_queue_t *q;
    T_OK(shmstore_queue_open(f->src, "q", SHMSTORE_Q_CREATE, NULL, &q));
    for (uint64_t i = 0; i < 100; i++)
        T_OK(shmstore_queue_push(q, NULL, &i, sizeof(i), 0, NULL));
    char ep[256];
    struct runner rs;
    start(&rs, serve(f->src, NULL, ep));
    sleep_ms(300); /* the server has found the queue */
    void *ctx = zmq_ctx_new(), *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_connect(d, ep), 0);
    struct w w;
    for (uint64_t id = 1; id <= 40; id++) {
        w.n = 0;
        u32(&w, 0x31424853u), u8(&w, 2), u64(&w, id), u16(&w, 0), u32(&w, 1);
        u8(&w, SHMSTORE_KIND_QUEUE), u16(&w, 1), put(&w, "q", 1), u64(&w, 100);
        zmq_send(d, w.b, w.n, 0);
    }
    shmstore_bridge_stats_t st;
    for (int i = 0; i < 500; i++) {
        shmstore_bridge_stats(rs.b, &st);
        if (st.bad_messages >= 39)
            break;
        sleep_ms(10);
    }
    assert_true(st.bad_messages >= 39); /* every id after the first, on one connection */
    assert_int_equal(st.peers, 1);
    uint64_t n;
    T_OK(shmstore_queue_count(q, &n));
    assert_true(n > 0); /* what it was sent may go (it is a mirror); the rest stays */
    assert_int_equal(st.entries_acked, 100 - n);
    assert_true(st.entries_acked <= st.entries);
    zmq_close(d);
    zmq_ctx_term(ctx);
    T_OK(stop(&rs));
    shmstore_queue_close(q);
}

static void key_path(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static void test_curve(void **state)
{
    struct fixture *f = *state;
    char dir[256], skey[300], spub[300], mkey[300], mpub[300], okey[300], opub[300], ep[256];
    t_mkdtemp(dir, sizeof(dir));
    key_path(skey, sizeof(skey), dir, "server"), key_path(spub, sizeof(spub), dir, "server.pub");
    key_path(mkey, sizeof(mkey), dir, "mirror"), key_path(mpub, sizeof(mpub), dir, "mirror.pub");
    key_path(okey, sizeof(okey), dir, "other"), key_path(opub, sizeof(opub), dir, "other.pub");
    T_OK(shmstore_bridge_keygen(skey));
    T_OK(shmstore_bridge_keygen(mkey));
    T_OK(shmstore_bridge_keygen(okey));
    T_ASSERT_RC(shmstore_bridge_keygen(skey), -EEXIST);
    T_OK(shmstore_put(f->src, "secret", NULL, "s3cr3t", 6, 0));
    const char *allow[1] = {mpub};
    shmstore_bridge_options_t so = {.key_file = skey, .allow = allow, .n_allow = 1};
    struct runner rs, rm, rw;
    start(&rs, serve(f->src, &so, ep));
    /* The right keys. */
    shmstore_bridge_options_t mo = {.key_file = mkey, .server_key_file = spub};
    start(&rm, mirror(f->dst, ep, "ok/", &mo));
    T_OK(wait_info(f->dst, "ok/secret", version_at_least, 1));
    T_OK(stop(&rm));
    /* A wrong server key: refused by the mirror, run() says so. */
    shmstore_bridge_options_t wo = {.server_key_file = opub};
    shmstore_bridge_t *wb = mirror(f->dst, ep, "wrong/", &wo);
    T_ASSERT_RC(shmstore_bridge_run(wb, 10 * SEC), -EACCES);
    shmstore_bridge_close(wb);
    /* A key the server does not allow: refused by the server. */
    shmstore_bridge_options_t no = {.key_file = okey, .server_key_file = spub};
    start(&rw, mirror(f->dst, ep, "no/", &no));
    sleep_ms(1500);
    shmstore_obj_info_t in;
    T_ASSERT_RC(shmstore_info(f->dst, "no/secret", &in), -ENOENT);
    shmstore_bridge_stats_t st;
    shmstore_bridge_stats(rs.b, &st);
    assert_true(st.refused > 0);
    stop(&rw);
    T_OK(stop(&rs));
    /* Without a key, no allow list; unknown key files are refused. */
    shmstore_bridge_t *b;
    shmstore_bridge_options_t bad = {.key_file = "/nonexistent/key"};
    T_ASSERT_RC(shmstore_bridge_serve(f->src, "tcp://127.0.0.1:0", &bad, &b), -EACCES);
    const char *ms[] = {skey, spub, mkey, mpub, okey, opub};
    for (size_t i = 0; i < 6; i++)
        unlink(ms[i]);
    rmdir(dir);
}

static void test_bad_options(void **state)
{
    struct fixture *f = *state;
    shmstore_bridge_t *b;
    T_ASSERT_RC(shmstore_bridge_serve(f->src, "tcp://0.0.0.0:0", NULL, &b), -EINVAL);
    T_ASSERT_RC(shmstore_bridge_serve(f->src, "tcp://10.1.2.3:0", NULL, &b), -EINVAL);
    T_ASSERT_RC(shmstore_bridge_serve(f->src, "nonsense", NULL, &b), -EINVAL);
    const char *eps[1] = {"tcp://127.0.0.1:1"};
    shmstore_bridge_options_t o = {.key_file = "x"};
    T_ASSERT_RC(shmstore_bridge_mirror(f->dst, eps, NULL, 1, &o, &b), -EINVAL);
    /* A server on a port in use. */
    char ep[256];
    shmstore_bridge_t *b1 = serve(f->src, NULL, ep);
    T_ASSERT_RC(shmstore_bridge_serve(f->src, ep, NULL, &b), -EADDRINUSE);
    shmstore_bridge_close(b1);
}

int main(void)
{
    if (!shmstore_bridge_available()) {
        printf("built without the bridge (libzmq): skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_to_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_to_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_curve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
