/* zmq_floor.c - the raw ZeroMQ floor of the bridge's benchmark (python/bench/bench_bridge.py).
 *
 * Two processes, one per side, as the bridge runs them: `push` binds (like a bridge server)
 * and sends COUNT messages of SIZE bytes; `pull` connects (like a mirror), receives them and
 * prints one JSON line. Both sockets get the options src/bridge.c's set_common_sockopts()
 * gives the bridge's sockets (high-water marks, ZMTP heartbeats, linger 0, reconnect
 * intervals), so the only difference left is the bridge itself. Payloads larger than the
 * bridge's inline_max (16 KiB) are sent zero-copy (zmq_msg_init_data), as the bridge sends
 * them from leased views; smaller ones are copied by zmq_send, as the bridge copies them into
 * a batch.
 *
 * Modes:
 * - throughput (default): the sender sends as fast as it can; the receiver times from the
 *   first message to the last and prints msgs/s and MB/s (the first message is not counted:
 *   it only starts the clock).
 * - latency (--latency): one message at a time, GAP microseconds apart; each carries the
 *   sender's CLOCK_REALTIME (its first 8 bytes) just before zmq_send; the receiver
 *   subtracts it from its own clock (both ends on one machine: one clock) and prints the
 *   median, p90, p99 and max.
 *
 * The sender waits for the peer's handshake (socket monitor) before it starts, so no
 * message waits for the connection; once it has sent everything it waits for its stdin
 * to close (the receiver is done) before it closes its socket. Used inside `ip netns exec` for the
 * veth case: nothing here depends on the namespace.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bridge_bench.h"

#define INLINE_MAX (16 * 1024) /* the bridge's default inline_max */
#define WARMUP 20              /* latency mode: messages sent first and not counted */

struct opts {
    const char *mode, *endpoint;
    size_t size;
    uint64_t count;
    int latency;
    long gap_us;
    int hwm;
    int timeout_ms;
};

static int die(const char *what)
{
    fprintf(stderr, "zmq_floor: %s: %s\n", what, zmq_strerror(errno));
    return 1;
}

/* The same options as set_common_sockopts() in src/bridge.c: keep the two in step. */
static void set_common_sockopts(void *sock, int hwm_opt)
{
    int hwm = hwm_opt, zero = 0, ivl = 500, ttl = 3000, tmo = 2000;
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof(ivl));
    zmq_setsockopt(sock, ZMQ_HEARTBEAT_TTL, &ttl, sizeof(ttl));
    zmq_setsockopt(sock, ZMQ_HEARTBEAT_TIMEOUT, &tmo, sizeof(tmo));
    int rivl = 100, rmax = 1000;
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &rivl, sizeof(rivl));
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL_MAX, &rmax, sizeof(rmax));
}

/* Zero-copy buffers: the free callback says when libzmq is done with one. */
static atomic_int in_flight;

static void release_cb(void *data, void *hint)
{
    (void)data, (void)hint;
    atomic_fetch_sub_explicit(&in_flight, 1, memory_order_release);
}

static int send_one(void *sock, char *buf, size_t size)
{
    if (size <= INLINE_MAX)
        return zmq_send(sock, buf, size, 0) < 0 ? -1 : 0;
    zmq_msg_t m;
    atomic_fetch_add_explicit(&in_flight, 1, memory_order_relaxed);
    zmq_msg_init_data(&m, buf, size, release_cb, NULL);
    if (zmq_msg_send(&m, sock, 0) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    return 0;
}

/* Wait for the first successful handshake on `sock` (its monitor on `ep`). */
static int wait_handshake(void *ctx, void *sock, int timeout_ms)
{
    const char *ep = "inproc://zmq-floor-monitor";
    if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
        return die("zmq_socket_monitor");
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(mon, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    if (zmq_connect(mon, ep) != 0)
        return die("monitor connect");
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    int r = zmq_msg_recv(&ev, mon, 0);
    zmq_msg_close(&ev);
    if (r >= 0) { /* the event's second frame: the peer's address */
        zmq_msg_init(&ev);
        zmq_msg_recv(&ev, mon, 0);
        zmq_msg_close(&ev);
    }
    zmq_socket_monitor(sock, NULL, 0);
    zmq_close(mon);
    if (r < 0) {
        fprintf(stderr, "zmq_floor: no peer within %d ms\n", timeout_ms);
        return 1;
    }
    return 0;
}

static int run_push(const struct opts *o)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_PUSH);
    if (!sock)
        return die("zmq_socket");
    set_common_sockopts(sock, o->hwm);
    if (zmq_bind(sock, o->endpoint) != 0)
        return die("zmq_bind");
    char ep[256];
    size_t n = sizeof(ep);
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &n);
    printf("{\"bound\": \"%s\"}\n", ep); /* the driver reads the port from this line */
    fflush(stdout);
    if (wait_handshake(ctx, sock, o->timeout_ms))
        return 1;
    size_t size = o->size;
    char *buf = aligned_alloc(64, (size + 63) / 64 * 64);
    if (!buf)
        return die("out of memory");
    memset(buf, 0x5a, size);
    uint64_t total = o->latency ? o->count + WARMUP : o->count + 1;
    for (uint64_t i = 0; i < total; i++) {
        if (o->latency) {
            /* one at a time: the previous zero-copy send is done with buf */
            while (atomic_load_explicit(&in_flight, memory_order_acquire) > 0)
                nanosleep(&(struct timespec){0, 10000}, NULL);
            uint64_t t = bb_now_real();
            memcpy(buf, &t, 8);
        }
        if (send_one(sock, buf, size) < 0)
            return die("zmq_send");
        if (o->latency && o->gap_us > 0)
            nanosleep(&(struct timespec){o->gap_us / 1000000, (o->gap_us % 1000000) * 1000},
                      NULL);
    }
    /* Stay until the receiver has everything: closing a TCP socket with unread bytes
     * (the peer's heartbeats) sends a reset, and a reset makes the peer's kernel drop
     * what it had not read yet. The driver closes our stdin when the receiver is done. */
    char c;
    while (read(0, &c, 1) > 0)
        ;
    /* Deliver what is queued before closing (linger 0 would drop it). */
    int wait_ms = o->timeout_ms;
    zmq_setsockopt(sock, ZMQ_LINGER, &wait_ms, sizeof(wait_ms));
    zmq_close(sock);
    zmq_ctx_term(ctx);
    free(buf);
    return 0;
}

static int run_pull(const struct opts *o)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_PULL);
    if (!sock)
        return die("zmq_socket");
    set_common_sockopts(sock, o->hwm);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &o->timeout_ms, sizeof(o->timeout_ms));
    if (zmq_connect(sock, o->endpoint) != 0)
        return die("zmq_connect");
    uint64_t total = o->latency ? o->count + WARMUP : o->count + 1;
    uint64_t *lat = o->latency ? calloc(o->count, sizeof(*lat)) : NULL;
    uint64_t t0 = 0, t1 = 0, bytes = 0, n_lat = 0, bad = 0;
    for (uint64_t i = 0; i < total; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            fprintf(stderr, "zmq_floor: received %" PRIu64 " of %" PRIu64 ": %s\n", i, total,
                    zmq_strerror(errno));
            return 1;
        }
        uint64_t t = o->latency ? bb_now_real() : bb_now_mono();
        if (zmq_msg_size(&m) != o->size)
            bad++;
        if (o->latency && zmq_msg_size(&m) >= 8) {
            uint64_t sent;
            memcpy(&sent, zmq_msg_data(&m), 8);
            if (i >= WARMUP && n_lat < o->count) /* one at a time: in order */
                lat[n_lat++] = t > sent ? t - sent : 0;
        } else if (!o->latency) {
            if (i == 0)
                t0 = t;
            else
                bytes += zmq_msg_size(&m);
            t1 = t;
        }
        zmq_msg_close(&m);
    }
    printf("{\"size\": %zu, \"count\": %" PRIu64 ", \"bad\": %" PRIu64, o->size, o->count, bad);
    if (o->latency) {
        qsort(lat, n_lat, sizeof(*lat), bb_cmp_u64);
        double sum = 0;
        for (uint64_t i = 0; i < n_lat; i++)
            sum += (double)lat[i] / 1000.0;
        printf(", \"mode\": \"latency\", \"gap_us\": %ld, \"p50_us\": %.1f, \"p90_us\": %.1f, "
               "\"p99_us\": %.1f, \"max_us\": %.1f, \"mean_us\": %.1f}\n",
               o->gap_us, bb_pct_us(lat, n_lat, 0.5), bb_pct_us(lat, n_lat, 0.9),
               bb_pct_us(lat, n_lat, 0.99), bb_pct_us(lat, n_lat, 1.0), n_lat ? sum / (double)n_lat : 0.0);
    } else {
        double s = (double)(t1 - t0) / 1e9;
        printf(", \"mode\": \"throughput\", \"seconds\": %.4f, \"msgs_per_s\": %.1f, "
               "\"mb_per_s\": %.1f}\n",
               s, s > 0 ? (double)o->count / s : 0.0, s > 0 ? (double)bytes / s / 1e6 : 0.0);
    }
    fflush(stdout);
    free(lat);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: shmstore_zmq_floor push|pull ENDPOINT --size BYTES --count N\n"
            "                          [--latency [--gap-us US]] [--hwm N] [--timeout-ms MS]\n"
            "push binds ENDPOINT (tcp://127.0.0.1:0 picks a port, printed as {\"bound\": ...});\n"
            "pull connects to it and prints the result as one JSON line; push exits when its\n"
            "stdin closes (after the pull has its messages).\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.size = 8, .count = 100000, .gap_us = 1000, .hwm = 1000,
                     .timeout_ms = 20000};
    if (argc < 3) {
        usage();
        return 2;
    }
    o.mode = argv[1];
    o.endpoint = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--latency")) {
            o.latency = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--size"))
            o.size = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--count"))
            o.count = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--gap-us"))
            o.gap_us = strtol(v, NULL, 0);
        else if (!strcmp(a, "--hwm"))
            o.hwm = (int)strtol(v, NULL, 0);
        else if (!strcmp(a, "--timeout-ms"))
            o.timeout_ms = (int)strtol(v, NULL, 0);
        else {
            usage();
            return 2;
        }
        i++;
    }
    if (!o.count || !o.size || o.hwm <= 0 || (o.latency && o.size < 8)) {
        usage();
        return 2;
    }
    if (!strcmp(o.mode, "push"))
        return run_push(&o);
    if (!strcmp(o.mode, "pull"))
        return run_pull(&o);
    usage();
    return 2;
}
