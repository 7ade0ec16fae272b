/* bridge.c - mirror values, queues, rings and tables between stores over ZeroMQ
 * (shmstore/bridge.h). A client of the public API: it names kinds, as a program using
 * the library does, and reaches into none of their internals.
 *
 * Theory of operation
 * - Sockets. The server binds one ROUTER; each mirror connects one DEALER per server.
 *   Mirrors speak first and keep speaking: a PING every PING_NS carries the mirror's id
 *   (random per mirror process), its globs and, per object it has, its *position*: the
 *   next queue index it needs, its far ring's frame count, the next table index. A PING
 *   from a routing id the server has not seen for that mirror id is a (re)connection:
 *   the server moves its cursors for that mirror to the positions given, so a cut link
 *   resumes exactly where the far side is, whatever was lost in between. ZMTP heartbeats
 *   detect dead links; the DEALER reconnects by itself.
 * - Batches. Server to mirror, one message = one BATCH frame of items, then one frame per
 *   item whose payload was too large to copy (those frames point into leased views:
 *   zmq_msg_init_data, the free callback releases the lease). Items name their object
 *   and carry its kind's header and the datum descriptor; everything is little-endian,
 *   bounds-checked on arrival and validated by shmstore_datum_validate().
 * - Waking. The server's main thread sleeps in zmq_poll on the ROUTER and an eventfd.
 *   A watcher thread per value, ring and queue sleeps in the kind's own wait (futex) on
 *   its own handle and writes the eventfd when the object moves; the main thread then
 *   sends what is new to every mirror. Tables have no wait: they are polled each
 *   TABLE_POLL_NS while a mirror follows one.
 * - Flow control. A peer whose high-water mark is reached refuses the batch (ROUTER with
 *   ZMQ_ROUTER_MANDATORY, non-blocking send: EAGAIN); the cursors the batch advanced go
 *   back and the server retries after RETRY_NS. For values that conflates versions, for
 *   rings and tables the source may overrun the cursor (the far side counts the loss),
 *   for queues it waits, and queue_window bounds the entries in flight anyway.
 * - Queues move. Entries are read, not popped, and deleted from the source only when the
 *   owning mirror's position passes them: nothing is lost with a link, a mirror or the
 *   server process. See bridge.h for the delivery guarantees this gives.
 */
#include <errno.h>

#include "internal.h"
#include "shmstore/bridge.h"

#ifndef SHMSTORE_HAVE_ZMQ
static int no_zmq(void)
{
    return shmstore__seterr(-ENOSYS, "shmstore was built without the bridge (install "
                            "libzmq3-dev and rebuild)");
}

SHMSTORE_API int shmstore_bridge_available(void)
{
    return 0;
}

SHMSTORE_API int shmstore_bridge_serve(shmstore_t *s, const char *endpoint,
                                       const shmstore_bridge_options_t *opt,
                                       shmstore_bridge_t **out)
{
    (void)s, (void)endpoint, (void)opt, (void)out;
    return no_zmq();
}

SHMSTORE_API int shmstore_bridge_mirror(shmstore_t *s, const char *const *endpoints,
                                        const char *const *prefixes, size_t n,
                                        const shmstore_bridge_options_t *opt,
                                        shmstore_bridge_t **out)
{
    (void)s, (void)endpoints, (void)prefixes, (void)n, (void)opt, (void)out;
    return no_zmq();
}

SHMSTORE_API int shmstore_bridge_run(shmstore_bridge_t *b, int64_t timeout_ns)
{
    (void)b, (void)timeout_ns;
    return no_zmq();
}

SHMSTORE_API void shmstore_bridge_stop(shmstore_bridge_t *b)
{
    (void)b;
}

SHMSTORE_API int shmstore_bridge_endpoint(shmstore_bridge_t *b, char *buf, size_t cap)
{
    (void)b, (void)buf, (void)cap;
    return no_zmq();
}

SHMSTORE_API void shmstore_bridge_stats(shmstore_bridge_t *b, shmstore_bridge_stats_t *out)
{
    (void)b;
    *out = (shmstore_bridge_stats_t){0};
}

SHMSTORE_API void shmstore_bridge_close(shmstore_bridge_t *b)
{
    (void)b;
}

SHMSTORE_API int shmstore_bridge_keygen(const char *path)
{
    (void)path;
    return no_zmq();
}
#else /* SHMSTORE_HAVE_ZMQ */

#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define WIRE_MAGIC 0x31424853u /* "SHB1" */
#define MSG_BATCH 1u
#define MSG_PING 2u
#define MSG_ACK 3u
#define MSG_REWIND 4u /* a mirror dropped entries (its far queue was full): send again */
#define ITEM_INLINE 0x1u

#define PEERS_MAX 32
#define FRAMES_MAX 64         /* zero-copy frames per message */
#define PING_NS 200000000ll   /* mirror -> server, also the liveness signal */
#define RETRY_NS 1000000ll    /* after a full peer */
#define TABLE_POLL_NS 2000000ll
#define WATCH_SLICE_NS 200000000ll /* watchers re-check the stop flag this often */
#define GLOBS_MAX 64
#define INFLIGHT_MAX (16ull << 20) /* zero-copy bytes per mirror not yet in the kernel */
#define REWIND_NS 20000000ll /* a mirror asks for a queue's entries again at most this often */
#define REWIND_POLL_MS 2     /* and looks for room in its full far queues this often */
#define REWIND_WAIT_NS 1000000000ll /* a resend not begun by then is asked for again */
#define TAKE_COPY_MAX 4096 /* delivered entries up to this are popped, not deleted */
#define SEND_COPY_MAX 32768 /* batches up to this are copied into their message */

typedef _Atomic uint64_t counter_t;

struct stats {
    counter_t messages_sent, messages_received, bytes_sent, bytes_received, values, entries,
        entries_acked, entries_duplicate, frames, frames_lost, records, records_lost,
        hwm_deferred, bad_messages, refused, peers, objects;
};

static void bump(counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the wire: a growable writer and a bounds-checked reader ------------------------ */

struct wbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void *w_room(struct wbuf *w, size_t n)
{
    if (w->oom)
        return NULL;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        char *p = realloc(w->p, cap);
        if (!p) {
            w->oom = true;
            return NULL;
        }
        w->p = p, w->cap = cap;
    }
    void *r = w->p + w->len;
    w->len += n;
    return r;
}

static void w_bytes(struct wbuf *w, const void *src, size_t n)
{
    void *d = w_room(w, n);
    if (d && n)
        memcpy(d, src, n);
}

#define W_INT(bits)                                                                          \
    static void w_u##bits(struct wbuf *w, uint##bits##_t v)                                 \
    {                                                                                        \
        w_bytes(w, &v, sizeof(v)); /* x86-64 and every Linux target we build: little-endian */ \
    }
W_INT(8)
W_INT(16)
W_INT(32)
W_INT(64)

struct rbuf {
    const char *p;
    size_t len, pos;
    bool bad;
};

static const void *r_bytes(struct rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p + r->pos;
    r->pos += n;
    return p;
}

#define R_INT(bits)                                                                          \
    static uint##bits##_t r_u##bits(struct rbuf *r)                                         \
    {                                                                                        \
        uint##bits##_t v = 0;                                                                \
        const void *p = r_bytes(r, sizeof(v));                                               \
        if (p)                                                                               \
            memcpy(&v, p, sizeof(v));                                                        \
        return v;                                                                            \
    }
R_INT(8)
R_INT(16)
R_INT(32)
R_INT(64)

/* A name on the wire: u16 length, bytes (no NUL), at most SHMSTORE_NAME_MAX. */
static void w_name(struct wbuf *w, const char *name)
{
    size_t n = strlen(name);
    w_u16(w, (uint16_t)n);
    w_bytes(w, name, n);
}

static bool r_name(struct rbuf *r, char *out, size_t cap)
{
    size_t n = r_u16(r);
    const char *p = r_bytes(r, n);
    if (!p || n >= cap || memchr(p, 0, n)) {
        r->bad = true;
        return false;
    }
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

static void w_datum(struct wbuf *w, const shmstore_datum_t *d)
{
    w_u32(w, d->type);
    w_u32(w, d->ndim);
    w_bytes(w, d->dtype, SHMSTORE_DTYPE_MAX);
    for (uint32_t i = 0; i < d->ndim && i < SHMSTORE_NDIM_MAX; i++)
        w_u64(w, d->shape[i]);
    w_u32(w, d->attrs ? d->attrs_len : 0);
    if (d->attrs && d->attrs_len)
        w_bytes(w, d->attrs, d->attrs_len);
}

/* A datum read off the wire: its attrs point into the message. Checked against the
 * payload length by the caller (shmstore_datum_validate). */
static bool r_datum(struct rbuf *r, shmstore_datum_t *d)
{
    memset(d, 0, sizeof(*d));
    d->type = r_u32(r);
    d->ndim = r_u32(r);
    const char *dt = r_bytes(r, SHMSTORE_DTYPE_MAX);
    if (!dt || d->ndim > SHMSTORE_NDIM_MAX || d->type >= SHMSTORE_T__COUNT ||
        !memchr(dt, 0, SHMSTORE_DTYPE_MAX)) {
        r->bad = true;
        return false;
    }
    memcpy(d->dtype, dt, SHMSTORE_DTYPE_MAX);
    for (uint32_t i = 0; i < d->ndim; i++)
        d->shape[i] = r_u64(r);
    d->attrs_len = r_u32(r);
    if (d->attrs_len > SHMSTORE_ATTRS_MAX) {
        r->bad = true;
        return false;
    }
    d->attrs = d->attrs_len ? r_bytes(r, d->attrs_len) : NULL;
    return !r->bad;
}

/* Whether a datum is or holds a pickle (a RECORD tree of the Python codec with a PICKLE
 * leaf: docs/FORMAT.md), or a record too malformed to tell: such data never crosses the
 * network, in either direction. */
static bool carries_pickle(const shmstore_datum_t *d, const void *data, uint64_t len)
{
    if (d->type == SHMSTORE_T_PICKLE)
        return true;
    if (d->type != SHMSTORE_T_RECORD)
        return false;
    uint32_t magic, n_nodes;
    if (len < 32)
        return true;
    memcpy(&magic, data, 4);
    memcpy(&n_nodes, (const char *)data + 4, 4);
    if (magic != 0x31435253u || n_nodes > (len - 32) / 40)
        return true;
    for (uint32_t i = 0; i < n_nodes; i++)
        if (((const uint8_t *)data)[32 + 40 * (size_t)i] == SHMSTORE_T_PICKLE)
            return true;
    return false;
}

/* ---- keys --------------------------------------------------------------------------- */

/* Read "public = <Z85>" / "secret = <Z85>" lines of a key file (either may be NULL). */
static int read_keys(const char *path, char pub[41], char sec[41])
{
    FILE *f = fopen(path, "r");
    if (!f)
        return shmstore__seterr(-EACCES, "key file '%s': %s", path, strerror(errno));
    char line[256];
    bool got_pub = false, got_sec = false;
    while (fgets(line, sizeof(line), f)) {
        char which[16], key[64];
        if (sscanf(line, " %15[a-z] = %63s", which, key) != 2 || strlen(key) != 40)
            continue;
        if (!strcmp(which, "public") && pub)
            memcpy(pub, key, 41), got_pub = true;
        else if (!strcmp(which, "secret") && sec)
            memcpy(sec, key, 41), got_sec = true;
    }
    fclose(f);
    if ((pub && !got_pub) || (sec && !got_sec))
        return shmstore__seterr(-EACCES, "key file '%s' has no %s key (make one with `shmstore "
                                "bridge keygen`)", path, sec && !got_sec ? "secret" : "public");
    return 0;
}

static int write_key_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return shmstore__seterr(-errno, "key file '%s': %s", path, strerror(errno));
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int e = errno;
    close(fd);
    if (w != (ssize_t)n) {
        unlink(path);
        return shmstore__seterr(w < 0 ? -e : -EIO, "key file '%s': short write", path);
    }
    return 0;
}

SHMSTORE_API int shmstore_bridge_keygen(const char *path)
{
    shmstore__clearerr();
    char pub[41], sec[41], pubpath[4096], text[256];
    if (!path || snprintf(pubpath, sizeof(pubpath), "%s.pub", path) >= (int)sizeof(pubpath))
        return shmstore__seterr(-EINVAL, "no key file path, or one too long");
    if (!zmq_has("curve"))
        return shmstore__seterr(-ENOSYS, "this libzmq has no CURVE support");
    if (zmq_curve_keypair(pub, sec) != 0)
        return shmstore__seterr(-errno, "zmq_curve_keypair: %s", zmq_strerror(errno));
    if (access(path, F_OK) == 0 || access(pubpath, F_OK) == 0)
        return shmstore__seterr(-EEXIST, "key file '%s' or '%s' exists: remove it first", path,
                                pubpath);
    snprintf(text, sizeof(text), "# shmstore bridge key pair: keep this file secret\npublic = %s\n"
             "secret = %s\n", pub, sec);
    int r = write_key_file(path, text, 0600);
    if (r < 0)
        return r;
    snprintf(text, sizeof(text), "# shmstore bridge public key\npublic = %s\n", pub);
    if ((r = write_key_file(pubpath, text, 0644)) < 0)
        unlink(path);
    return r;
}

/* ---- the bridge ---------------------------------------------------------------------- */

/* A handle of one of the kinds the bridge mirrors. */
union handle {
    shmstore_value_t *v;
    shmstore_queue_t *q;
    shmstore_ring_t *r;
    shmstore_table_t *t;
    void *any;
};

/* A source object (server side). */
struct sobj {
    char name[SHMSTORE_NAME_MAX + 1];
    uint32_t kind;
    union handle h, wh; /* the main thread's handle; the watcher's own */
    pthread_t th;
    bool has_thread;
    _Atomic bool gone; /* deleted (or the bridge closing): the watcher stops */
    /* Per peer: value = version sent, ring = next position, table = next index. */
    uint64_t pos[PEERS_MAX];
    bool known[PEERS_MAX];
    /* Queues: the mirror consuming it, the next index to send, all below `acked` done. */
    int owner;
    uint64_t qnext, acked;
    uint64_t *kept; /* entries not sent (pickles), increasing: never deleted here */
    size_t n_kept, kept_head, cap_kept;
    bool warned, kept_behind; /* a kept entry lies before `acked`: no pops */
    shmstore_queue_options_t qopt;
    /* Tables: the schema, as sent. */
    const shmstore_table_field_t *fields;
    uint32_t n_fields;
    uint64_t record_size, tcap;
    uint32_t tflags;
};

struct peer {
    _Atomic uint64_t inflight; /* bytes of zero-copy frames ZeroMQ still holds */
    _Atomic bool room_wait;    /* the loop waits for inflight to drop */
    bool used;
    uint8_t rid[256];
    size_t rid_len;
    uint64_t mirror_id;
    uint64_t last_heard;
    size_t n_globs;
    char *globs[GLOBS_MAX];
};

/* A far object (mirror side). */
struct mobj {
    uint32_t server, kind;
    char src[SHMSTORE_NAME_MAX + 1], local[SHMSTORE_NAME_MAX + 1];
    union handle h;
    uint64_t pos;     /* value: version received; queue / table: next source index */
    bool has_pos, failed;
    bool stalled, ask; /* queues: entries dropped (far queue full, or after a gap): ask again */
    uint64_t rewind_ns, capacity;
    uint64_t src_gen; /* rings: the source generation last written */
};

struct mserver {
    void *sock, *mon;
    char endpoint[256], prefix[SHMSTORE_NAME_MAX + 1];
    bool ok, failed; /* a handshake succeeded / failed */
    uint64_t last_ping;
};

struct shmstore_bridge {
    shmstore_t *s;
    bool is_server;
    shmstore_bridge_options_t o;
    char *globs[GLOBS_MAX];
    size_t n_globs;
    void *ctx, *sock, *zap, *mon;
    int efd; /* stop and watcher wake-ups */
    _Atomic int stop, pending;
    /* Watchers that signalled wait for the main loop's next pass (drained moves) before
     * waiting on their object again: a saturating writer then costs one wake per pass,
     * not a watcher spinning through waits that return at once. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t drained;
    char endpoint[256];
    struct stats st;
    uint64_t id; /* mirror id */
    /* Server. */
    struct sobj **objs;
    size_t n_objs, cap_objs;
    struct peer peers[PEERS_MAX];
    char (*allow)[41];
    size_t n_allow;
    uint64_t next_rescan, next_retry;
    struct wbuf batch;
    size_t rr; /* round-robin start of the next batch */
    /* Mirror. */
    struct mserver *servers;
    size_t n_servers;
    struct mobj **mobjs;
    size_t n_mobjs, cap_mobjs;
    struct wbuf scratch, attrs;
    void *take_buf; /* take_acked()'s copy */
};

static void logf_(shmstore_bridge_t *b, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(shmstore_bridge_t *b, int level, const char *fmt, ...)
{
    if (!b->o.log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->o.log(b->o.log_arg, level, msg);
}

static void wake_loop(shmstore_bridge_t *b)
{
    uint64_t one = 1;
    ssize_t w = write(b->efd, &one, sizeof(one));
    (void)w; /* a full counter already wakes the loop */
}

SHMSTORE_API void shmstore_bridge_stop(shmstore_bridge_t *b)
{
    if (!b)
        return;
    atomic_store(&b->stop, 1);
    wake_loop(b);
}

static bool glob_match(char *const *globs, size_t n, const char *name)
{
    if (!n)
        return true;
    for (size_t i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0)
            return true;
    return false;
}

static int zerr(const char *what)
{
    int e = errno;
    return shmstore__seterr(-e, "%s: %s", what, zmq_strerror(e));
}

/* Loopback (or local-only transports): what a server binds without public_bind. */
static bool is_local_endpoint(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return true;
    if (strncmp(ep, "tcp://", 6))
        return false;
    const char *h = ep + 6;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6) ||
           !strncmp(h, "lo:", 3);
}

static int common_init(shmstore_bridge_t *b, shmstore_t *s, const shmstore_bridge_options_t *opt)
{
    b->s = s;
    b->efd = -1;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (opt)
        b->o = *opt;
    if (!b->o.hwm)
        b->o.hwm = 1000;
    if (!b->o.queue_window)
        b->o.queue_window = 4096;
    if (!b->o.batch_bytes)
        b->o.batch_bytes = 256 * 1024;
    if (!b->o.inline_max)
        b->o.inline_max = 16 * 1024;
    if (b->o.rescan_ns <= 0)
        b->o.rescan_ns = 200000000ll;
    if (b->o.peer_timeout_ns <= 0)
        b->o.peer_timeout_ns = 5000000000ll;
    if (b->o.n_objects > GLOBS_MAX)
        return shmstore__seterr(-EINVAL, "at most %d object globs", GLOBS_MAX);
    for (size_t i = 0; i < b->o.n_objects; i++) {
        if (!b->o.objects[i] || strlen(b->o.objects[i]) > SHMSTORE_NAME_MAX)
            return shmstore__seterr(-EINVAL, "object glob %zu is empty or too long", i);
        if (!(b->globs[i] = strdup(b->o.objects[i])))
            return shmstore__seterr(-ENOMEM, "out of memory");
        b->n_globs++;
    }
    b->o.objects = NULL; /* the caller's array need not outlive the call */
    b->o.n_objects = 0;
    b->o.allow = NULL;
    b->o.n_allow = 0;
    if ((b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return shmstore__seterr(-errno, "eventfd: %s", strerror(errno));
    if (!(b->ctx = zmq_ctx_new()))
        return zerr("zmq_ctx_new");
    uint64_t seed = now_ns() ^ ((uint64_t)getpid() << 32);
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, &b->id, sizeof(b->id));
        close(fd);
        if (n != (ssize_t)sizeof(b->id))
            b->id = seed;
    } else {
        b->id = seed;
    }
    return 0;
}

static void set_common_sockopts(shmstore_bridge_t *b, void *sock)
{
    int hwm = (int)b->o.hwm, zero = 0, ivl = 500, ttl = 3000, tmo = 2000;
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

/* A PAIR socket receiving `sock`'s handshake events. */
static void *monitor(shmstore_bridge_t *b, void *sock, unsigned n)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "inproc://shmstore-bridge-mon-%p-%u", (void *)b, n);
    if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                         ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                         ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                         ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
        return NULL;
    void *m = zmq_socket(b->ctx, ZMQ_PAIR);
    int zero = 0;
    if (m)
        zmq_setsockopt(m, ZMQ_LINGER, &zero, sizeof(zero));
    if (m && zmq_connect(m, ep) != 0) {
        zmq_close(m);
        return NULL;
    }
    return m;
}

/* Read one monitor event: its id, and the peer address into addr. */
static int monitor_event(void *m, char *addr, size_t cap)
{
    zmq_msg_t a, e;
    zmq_msg_init(&e);
    if (zmq_msg_recv(&e, m, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&e);
        return -1;
    }
    uint16_t ev = 0;
    if (zmq_msg_size(&e) >= 2)
        memcpy(&ev, zmq_msg_data(&e), 2);
    zmq_msg_close(&e);
    zmq_msg_init(&a);
    if (zmq_msg_recv(&a, m, 0) >= 0) {
        size_t n = zmq_msg_size(&a) < cap - 1 ? zmq_msg_size(&a) : cap - 1;
        memcpy(addr, zmq_msg_data(&a), n);
        addr[n] = 0;
    }
    zmq_msg_close(&a);
    return ev;
}

static bool is_handshake_failure(int ev)
{
    return ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
           ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
}

SHMSTORE_API int shmstore_bridge_available(void)
{
    return 1;
}

SHMSTORE_API int shmstore_bridge_endpoint(shmstore_bridge_t *b, char *buf, size_t cap)
{
    if (snprintf(buf, cap, "%s", b->endpoint) >= (int)cap)
        return -ENOBUFS;
    return 0;
}

SHMSTORE_API void shmstore_bridge_stats(shmstore_bridge_t *b, shmstore_bridge_stats_t *out)
{
    struct stats *s = &b->st;
#define LD(f) atomic_load_explicit(&s->f, memory_order_relaxed)
    *out = (shmstore_bridge_stats_t){
        .messages_sent = LD(messages_sent), .messages_received = LD(messages_received),
        .bytes_sent = LD(bytes_sent), .bytes_received = LD(bytes_received),
        .values = LD(values), .entries = LD(entries), .entries_acked = LD(entries_acked),
        .entries_duplicate = LD(entries_duplicate), .frames = LD(frames),
        .frames_lost = LD(frames_lost), .records = LD(records), .records_lost = LD(records_lost),
        .hwm_deferred = LD(hwm_deferred), .bad_messages = LD(bad_messages),
        .refused = LD(refused), .peers = (uint32_t)LD(peers), .objects = (uint32_t)LD(objects)};
#undef LD
}

/* ---- server: source objects and their watchers -------------------------------------- */

static void *watch_main(void *arg)
{
    struct sobj *o = ((void **)arg)[0];
    shmstore_bridge_t *b = ((void **)arg)[1];
    free(arg);
    uint64_t at = 0;
    int r = 0;
    if (o->kind == SHMSTORE_KIND_VALUE)
        shmstore_value_version(o->wh.v, &at);
    else if (o->kind == SHMSTORE_KIND_RING)
        shmstore_ring_total(o->wh.r, &at);
    else
        shmstore_queue_wait(o->wh.q, 0, 0, &at); /* 0 entries: -ETIMEDOUT, at stays 0 */
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed) && !o->gone) {
        uint64_t next = at;
        if (o->kind == SHMSTORE_KIND_VALUE) {
            r = shmstore_value_wait(o->wh.v, at, WATCH_SLICE_NS, &next);
        } else if (o->kind == SHMSTORE_KIND_RING) {
            r = shmstore_ring_wait(o->wh.r, at, WATCH_SLICE_NS, &next);
            if (r == SHMSTORE_EGENERATION) {
                r = shmstore_ring_follow(o->wh.r);
                if (r >= 0)
                    r = shmstore_ring_total(o->wh.r, &next);
            }
        } else {
            r = shmstore_queue_wait(o->wh.q, at, WATCH_SLICE_NS, &next);
        }
        if (r == -ETIMEDOUT || r == -EINTR)
            continue;
        if (r < 0)
            next = at; /* deleted, or worse: the main thread finds out */
        at = next;
        pthread_mutex_lock(&b->mu);
        uint64_t pass = b->drained;
        pthread_mutex_unlock(&b->mu);
        if (!atomic_exchange(&b->pending, 1))
            wake_loop(b);
        if (r < 0)
            break;
        pthread_mutex_lock(&b->mu);
        while (b->drained == pass && !atomic_load(&b->stop) && !o->gone) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000000;
            if (ts.tv_nsec >= 1000000000)
                ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        pthread_mutex_unlock(&b->mu);
    }
    return NULL;
}

static void close_handle(uint32_t kind, void *h)
{
    if (!h)
        return;
    if (kind == SHMSTORE_KIND_VALUE)
        shmstore_value_close(h);
    else if (kind == SHMSTORE_KIND_QUEUE)
        shmstore_queue_close(h);
    else if (kind == SHMSTORE_KIND_RING)
        shmstore_ring_close(h);
    else if (kind == SHMSTORE_KIND_TABLE)
        shmstore_table_close(h);
}

static void sobj_free(struct sobj *o)
{
    o->gone = true;
    if (o->has_thread)
        pthread_join(o->th, NULL);
    close_handle(o->kind, o->h.any);
    close_handle(o->kind, o->wh.any);
    free(o->kept);
    free(o);
}

static int open_handle(shmstore_t *s, uint32_t kind, const char *name, void **h)
{
    switch (kind) {
    case SHMSTORE_KIND_VALUE:
        return shmstore_value_open(s, name, 0, (shmstore_value_t **)h);
    case SHMSTORE_KIND_QUEUE:
        return shmstore_queue_open(s, name, 0, NULL, (shmstore_queue_t **)h);
    case SHMSTORE_KIND_RING:
        return shmstore_ring_open(s, name, 0, NULL, (shmstore_ring_t **)h);
    case SHMSTORE_KIND_TABLE:
        return shmstore_table_open(s, name, 0, NULL, (shmstore_table_t **)h);
    }
    return -EINVAL;
}

static bool peer_live(shmstore_bridge_t *b, int p, uint64_t now)
{
    return b->peers[p].used && now - b->peers[p].last_heard < (uint64_t)b->o.peer_timeout_ns;
}

static int add_source(shmstore_bridge_t *b, const shmstore_obj_info_t *info)
{
    struct sobj *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    memcpy(o->name, info->name, sizeof(o->name));
    o->kind = info->kind;
    o->owner = -1;
    int r = open_handle(b->s, o->kind, o->name, &o->h.any);
    if (r == 0 && o->kind != SHMSTORE_KIND_TABLE)
        r = open_handle(b->s, o->kind, o->name, &o->wh.any);
    if (r == 0 && o->kind == SHMSTORE_KIND_QUEUE) {
        o->qopt = (shmstore_queue_options_t){.capacity = info->capacity,
                                             .slot_size = info->slot_size, .full = info->full};
        o->qnext = o->acked = info->first_index;
    }
    if (r == 0 && o->kind == SHMSTORE_KIND_TABLE) {
        shmstore_table_fields(o->h.t, &o->fields, &o->n_fields);
        o->record_size = info->record_size;
        o->tcap = info->capacity;
        o->tflags = info->is_prioritized ? SHMSTORE_TABLE_PRIORITIZED : 0;
    }
    if (r == 0 && o->kind != SHMSTORE_KIND_TABLE) {
        void **arg = malloc(2 * sizeof(void *));
        if (!arg)
            r = -ENOMEM;
        else if ((arg[0] = o, arg[1] = b, r = -pthread_create(&o->th, NULL, watch_main, arg)) < 0)
            free(arg);
        else
            o->has_thread = true;
    }
    if (r == 0 && b->n_objs == b->cap_objs) {
        size_t cap = b->cap_objs ? 2 * b->cap_objs : 16;
        struct sobj **p = realloc(b->objs, cap * sizeof(*p));
        if (!p)
            r = -ENOMEM;
        else
            b->objs = p, b->cap_objs = cap;
    }
    if (r < 0) {
        sobj_free(o);
        if (r != -ENOENT && r != SHMSTORE_EKIND)
            logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "can't publish '%s': %s", info->name,
                  shmstore_errmsg()[0] ? shmstore_errmsg() : shmstore_strerror(r));
        return r;
    }
    /* A table that appears while mirrors are connected is theirs from its first record
     * (a mirror that connects later gets the appends from then on). */
    if (o->kind == SHMSTORE_KIND_TABLE) {
        uint64_t now = now_ns(), oldest = info->next_index > o->tcap ? info->next_index - o->tcap : 0;
        for (int p = 0; p < PEERS_MAX; p++)
            if (peer_live(b, p, now))
                o->known[p] = true, o->pos[p] = oldest;
    }
    b->objs[b->n_objs++] = o;
    bump(&b->st.objects, 1);
    logf_(b, SHMSTORE_BRIDGE_LOG_INFO, "publishing %s '%s'", shmstore_kind_name(o->kind), o->name);
    return 0;
}

struct rescan_arg {
    shmstore_bridge_t *b;
    shmstore_obj_info_t *found;
    size_t n, cap;
};

static int rescan_one(const shmstore_obj_info_t *info, void *arg)
{
    struct rescan_arg *a = arg;
    if (info->kind != SHMSTORE_KIND_VALUE && info->kind != SHMSTORE_KIND_QUEUE &&
        info->kind != SHMSTORE_KIND_RING && info->kind != SHMSTORE_KIND_TABLE)
        return 0;
    if (info->set_prefix_len)
        return 0; /* a member of an array set: sets are not mirrored (yet), nor their parts */
    if (!glob_match(a->b->globs, a->b->n_globs, info->name))
        return 0;
    for (size_t i = 0; i < a->b->n_objs; i++)
        if (!strcmp(a->b->objs[i]->name, info->name) && !a->b->objs[i]->gone)
            return 0;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        shmstore_obj_info_t *p = realloc(a->found, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        a->found = p, a->cap = cap;
    }
    a->found[a->n++] = *info;
    return 0;
}

/* Drop objects found deleted; open new ones that match (outside the list's lock). */
static int rescan(shmstore_bridge_t *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n_objs; i++) {
        if (b->objs[i]->gone) {
            logf_(b, SHMSTORE_BRIDGE_LOG_INFO, "'%s' was deleted", b->objs[i]->name);
            sobj_free(b->objs[i]);
            atomic_fetch_sub(&b->st.objects, 1);
        } else {
            b->objs[k++] = b->objs[i];
        }
    }
    b->n_objs = k;
    struct rescan_arg a = {b, NULL, 0, 0};
    int r = shmstore_list(b->s, NULL, rescan_one, &a);
    for (size_t i = 0; r == 0 && i < a.n; i++)
        if (add_source(b, &a.found[i]) == -ENOMEM)
            r = -ENOMEM;
    free(a.found);
    return r;
}

/* ---- server: peers ------------------------------------------------------------------ */


static void count_peers(shmstore_bridge_t *b, uint64_t now)
{
    uint64_t n = 0;
    for (int p = 0; p < PEERS_MAX; p++)
        n += peer_live(b, p, now);
    atomic_store_explicit(&b->st.peers, n, memory_order_relaxed);
}

static struct sobj *find_source(shmstore_bridge_t *b, uint32_t kind, const char *name)
{
    for (size_t i = 0; i < b->n_objs; i++)
        if (b->objs[i]->kind == kind && !strcmp(b->objs[i]->name, name) && !b->objs[i]->gone)
            return b->objs[i];
    return NULL;
}

/* Remove delivered entry o->acked from the source queue. It is the oldest there (those
 * before it are gone, and nobody else consumes a mirrored queue), so a copying pop takes
 * it when it is small: that leaves its block as the cell's spare, which the next push
 * fills without the allocator's lock, where a delete would free it and the push allocate
 * again. Larger entries (or one that is not the oldest after all) are deleted. Returns
 * 0, -ENOENT (gone already) or -ESTALE. */
static int take_acked(shmstore_bridge_t *b, struct sobj *o)
{
    /* Entries kept (pickles) stay before it: then a pop would take one of those. */
    if (!o->kept_behind && shmstore_queue_contains(o->h.q, o->acked) == 1 &&
        (b->take_buf || (b->take_buf = malloc(TAKE_COPY_MAX)))) {
        size_t len;
        uint64_t idx;
        int r = shmstore_queue_pop_copy(o->h.q, 0, NULL, b->take_buf, TAKE_COPY_MAX, &len, &idx);
        if (r == 0 && idx == o->acked)
            return 0;
        if (r == 0) /* not ours: only when someone pops the mirrored queue locally */
            logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "queue '%s': entry %" PRIu64 " was popped here "
                  "while entry %" PRIu64 " was the oldest delivered; don't pop a mirrored queue "
                  "locally", o->name, idx, o->acked);
    }
    return shmstore_queue_delete(o->h.q, o->acked, 1);
}

/* Entries [o->acked, upto) are in the far queue: take them out here. */
static void queue_acked(shmstore_bridge_t *b, struct sobj *o, uint64_t upto)
{
    uint64_t n = 0;
    for (; o->acked < upto; o->acked++) {
        while (o->kept_head < o->n_kept && o->kept[o->kept_head] < o->acked)
            o->kept_head++;
        if (o->kept_head < o->n_kept && o->kept[o->kept_head] == o->acked) {
            o->kept_behind = true;
            continue; /* not sent: it stays for a local consumer */
        }
        int r = take_acked(b, o);
        if (r == 0)
            n++;
        else if (r == -ESTALE)
            o->gone = true;
    }
    if (o->qnext < o->acked)
        o->qnext = o->acked;
    bump(&b->st.entries_acked, n);
}

/* A PING or ACK: positions of the mirror's objects. On a (re)connection the cursors move
 * to them; queue positions always count as acknowledgements. */
static void apply_positions(shmstore_bridge_t *b, int p, struct rbuf *r, bool reconnect,
                            bool rewind)
{
    uint32_t n = r_u32(r);
    if (reconnect)
        for (size_t i = 0; i < b->n_objs; i++)
            b->objs[i]->known[p] = false;
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        char name[SHMSTORE_NAME_MAX + 1];
        uint32_t kind = r_u8(r);
        if (!r_name(r, name, sizeof(name)))
            break;
        uint64_t pos = r_u64(r);
        struct sobj *o = r->bad ? NULL : find_source(b, kind, name);
        if (!o)
            continue;
        if (kind == SHMSTORE_KIND_QUEUE) {
            if (o->owner != p && o->owner >= 0 && peer_live(b, o->owner, now_ns()))
                continue; /* another mirror consumes it: its word stands */
            bool was_owner = o->owner == p;
            o->owner = p;
            if (!was_owner || reconnect) /* nothing sent to it in flight: from the oldest */
                o->qnext = o->pos[p] = o->acked;
            /* Everything below the mirror's position is in its far queue, but a position
             * is believed only up to what was sent to this mirror: a peer can't make the
             * server delete entries it never sent (after a restart, the mirror gets them
             * again and drops them as duplicates, then its position counts). */
            uint64_t upto = pos < o->qnext ? pos : o->qnext;
            if (upto > o->acked)
                queue_acked(b, o, upto);
            if (rewind && !reconnect && pos < o->qnext)
                o->qnext = o->pos[p] = pos > o->acked ? pos : o->acked;
        } else if (reconnect) {
            o->pos[p] = pos;
            o->known[p] = true;
        }
    }
}

static void handle_mirror_msg(shmstore_bridge_t *b, const uint8_t *rid, size_t rid_len,
                              zmq_msg_t *m, uint64_t now)
{
    struct rbuf r = {zmq_msg_data(m), zmq_msg_size(m), 0, false};
    uint32_t magic = r_u32(&r), type = r_u8(&r);
    uint64_t id = r_u64(&r);
    if (r.bad || magic != WIRE_MAGIC || (type != MSG_PING && type != MSG_ACK && type != MSG_REWIND)) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    int p = -1, free_p = -1;
    for (int i = 0; i < PEERS_MAX; i++) {
        if (b->peers[i].used && b->peers[i].mirror_id == id)
            p = i;
        else if (free_p < 0 && (!b->peers[i].used || !peer_live(b, i, now)))
            free_p = i;
    }
    bool reconnect = false;
    if (p < 0) {
        /* One mirror per connection: a peer can't take many slots by inventing ids. */
        for (int i = 0; i < PEERS_MAX; i++)
            if (peer_live(b, i, now) && b->peers[i].rid_len == rid_len &&
                !memcmp(b->peers[i].rid, rid, rid_len)) {
                bump(&b->st.bad_messages, 1);
                return;
            }
        if (type != MSG_PING || free_p < 0) {
            bump(&b->st.bad_messages, type == MSG_PING);
            return; /* an ACK from a mirror we forgot: its next PING re-introduces it */
        }
        p = free_p;
        struct peer *pe = &b->peers[p];
        for (size_t i = 0; i < pe->n_globs; i++)
            free(pe->globs[i]);
        /* inflight stays: frames of the slot's last mirror may still be freed later */
        memset(&pe->used, 0, sizeof(*pe) - offsetof(struct peer, used));
        pe->used = true;
        pe->mirror_id = id;
        for (size_t i = 0; i < b->n_objs; i++) {
            b->objs[i]->known[p] = false;
            if (b->objs[i]->owner == p)
                b->objs[i]->owner = -1;
        }
        reconnect = true;
        pe->last_heard = now;
        count_peers(b, now);
        logf_(b, SHMSTORE_BRIDGE_LOG_INFO, "mirror %016" PRIx64 " connected", id);
    }
    struct peer *pe = &b->peers[p];
    if (pe->rid_len != rid_len || memcmp(pe->rid, rid, rid_len)) {
        if (type != MSG_PING)
            return; /* an ACK racing a reconnection: the PING will carry it */
        memcpy(pe->rid, rid, rid_len);
        pe->rid_len = rid_len;
        reconnect = true;
    }
    pe->last_heard = now;
    if (type == MSG_PING) {
        uint32_t ng = r_u16(&r);
        char g[SHMSTORE_NAME_MAX + 1];
        if (ng > GLOBS_MAX) {
            bump(&b->st.bad_messages, 1);
            return;
        }
        if (reconnect) {
            for (size_t i = 0; i < pe->n_globs; i++)
                free(pe->globs[i]);
            pe->n_globs = 0;
        }
        for (uint32_t i = 0; i < ng && r_name(&r, g, sizeof(g)); i++)
            if (reconnect && (pe->globs[pe->n_globs] = strdup(g)))
                pe->n_globs++;
    }
    apply_positions(b, p, &r, reconnect, type == MSG_REWIND);
    if (r.bad)
        bump(&b->st.bad_messages, 1);
}

/* ---- server: batches ---------------------------------------------------------------- */

struct undo {
    struct sobj *o;
    uint64_t pos, qnext;
    bool known;
};

struct batch {
    struct wbuf *w;
    uint16_t n_items;
    size_t n_frames, n_undo, budget;
    zmq_msg_t frames[FRAMES_MAX];
    struct undo undo[FRAMES_MAX * 8];
    uint64_t payload;
    /* Counted once sent (losses: once the positions stand): an undone batch rewinds the
     * positions, and the next one meets the same records, and skips, again. */
    uint64_t n_values, n_entries, n_frames_sent, n_records, n_records_lost;
};

/* What a zero-copy frame owns: a leased view (or a batch buffer) and its share of the
 * peer's bytes in flight. ZeroMQ calls free_zc() from its I/O thread once the bytes are
 * in the kernel (or the message is dropped). */
struct zc {
    shmstore_view_t v; /* zeroed for a batch buffer */
    void *buf;
    shmstore_bridge_t *b;
    int peer;
    uint64_t len;
};

static void free_zc(void *data, void *hint)
{
    (void)data;
    struct zc *z = hint;
    struct peer *pe = &z->b->peers[z->peer];
    shmstore_view_release(&z->v);
    free(z->buf);
    uint64_t left = atomic_fetch_sub(&pe->inflight, z->len) - z->len;
    /* seq_cst pairs with pump_peer's store of room_wait then load of inflight */
    if (left < INFLIGHT_MAX && atomic_exchange(&pe->room_wait, false))
        wake_loop(z->b);
    free(z);
}

/* A zero-copy message of `len` bytes at `data`, owning `v` (may be NULL) or `buf`. */
static int zc_msg(shmstore_bridge_t *b, int p, zmq_msg_t *m, const void *data, uint64_t len,
                  const shmstore_view_t *v, void *buf)
{
    struct zc *z = calloc(1, sizeof(*z));
    if (!z)
        return -ENOMEM;
    if (v)
        z->v = *v;
    z->buf = buf, z->b = b, z->peer = p, z->len = len;
    atomic_fetch_add(&b->peers[p].inflight, len);
    if (zmq_msg_init_data(m, (void *)data, len, free_zc, z) != 0) {
        atomic_fetch_sub(&b->peers[p].inflight, len);
        free(z);
        return -ENOMEM;
    }
    return 0;
}

/* Begin an item: kind, flags, name, payload length. */
static void item_head(struct batch *bt, const struct sobj *o, unsigned flags, uint64_t len)
{
    w_u8(bt->w, (uint8_t)o->kind);
    w_u8(bt->w, (uint8_t)flags);
    w_name(bt->w, o->name);
    w_u64(bt->w, len);
    bt->n_items++;
}

static bool batch_full(const struct batch *bt)
{
    return bt->w->len >= bt->budget || bt->n_frames >= FRAMES_MAX ||
           bt->n_undo >= sizeof(bt->undo) / sizeof(bt->undo[0]) || bt->n_items >= 65000;
}

static void remember(struct batch *bt, struct sobj *o, int p)
{
    bt->undo[bt->n_undo++] = (struct undo){o, o->pos[p], o->qnext, o->known[p]};
}

/* The payload of a leased view: copied after the item when small, else a zero-copy frame
 * that owns the view. Returns 0 or -ENOMEM (the view is released either way on error). */
static int add_view_payload(shmstore_bridge_t *b, struct batch *bt, int p, shmstore_view_t *v)
{
    if (v->len <= b->o.inline_max) {
        w_bytes(bt->w, v->data, v->len);
        shmstore_view_release(v);
        return bt->w->oom ? -ENOMEM : 0;
    }
    if (zc_msg(b, p, &bt->frames[bt->n_frames], v->data, v->len, v, NULL) < 0) {
        shmstore_view_release(v);
        return -ENOMEM;
    }
    bt->n_frames++;
    return 0;
}

/* A version or entry that is a pickle: not sent (logged once per object). Entries stay
 * in the source queue. */
static void not_sendable(shmstore_bridge_t *b, struct sobj *o, uint64_t which)
{
    bump(&b->st.bad_messages, 1);
    if (!o->warned)
        logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "%s '%s' %s %" PRIu64 " is a pickled object: not "
              "sent (no pickle crosses the network; store arrays, scalars, str, bytes or "
              "dicts/lists of them)", shmstore_kind_name(o->kind), o->name,
              o->kind == SHMSTORE_KIND_QUEUE ? "entry" : "version", which);
    o->warned = true;
    if (o->kind != SHMSTORE_KIND_QUEUE)
        return;
    if (o->n_kept && o->kept[o->n_kept - 1] >= which)
        return; /* seen already (a resend after a reconnection) */
    if (o->kept_head == o->n_kept)
        o->kept_head = o->n_kept = 0; /* all behind us: reuse the array */
    if (o->n_kept == o->cap_kept) {
        size_t cap = o->cap_kept ? 2 * o->cap_kept : 16;
        uint64_t *k = realloc(o->kept, cap * sizeof(*k));
        if (!k)
            return; /* then it is deleted once passed, like a delivered one */
        o->kept = k, o->cap_kept = cap;
    }
    o->kept[o->n_kept++] = which;
}

static void add_value(shmstore_bridge_t *b, struct batch *bt, struct sobj *o, int p)
{
    uint64_t ver;
    if (shmstore_value_version(o->h.v, &ver) < 0) {
        o->gone = true;
        return;
    }
    if (ver == 0 || (o->known[p] && ver <= o->pos[p]))
        return;
    shmstore_view_t v;
    int r = shmstore_value_view(o->h.v, &v);
    if (r < 0) {
        o->gone = r == -ESTALE;
        return;
    }
    remember(bt, o, p);
    o->pos[p] = v.version;
    o->known[p] = true;
    if (carries_pickle(&v.desc, v.data, v.len)) {
        not_sendable(b, o, v.version);
        shmstore_view_release(&v);
        return;
    }
    item_head(bt, o, v.len <= b->o.inline_max ? ITEM_INLINE : 0, v.len);
    w_u64(bt->w, v.version);
    w_u64(bt->w, v.mtime_ns);
    w_datum(bt->w, &v.desc);
    bt->payload += v.len;
    bt->n_values++;
    add_view_payload(b, bt, p, &v);
}

static void add_queue(shmstore_bridge_t *b, struct batch *bt, struct sobj *o, int p, uint64_t now)
{
    if (o->owner < 0 || !peer_live(b, o->owner, now)) {
        if (o->owner >= 0)
            logf_(b, SHMSTORE_BRIDGE_LOG_INFO, "queue '%s': mirror %016" PRIx64 " went silent; "
                  "its entries in flight go to another", o->name, b->peers[o->owner].mirror_id);
        o->owner = p; /* the entries in flight are sent again from the oldest */
        o->qnext = o->pos[p] = o->acked;
    }
    if (o->owner != p)
        return;
    bool first = true;
    /* A quarter of the source queue per message at most: the mirror acknowledges each
     * message, so room comes back to the producers while the next quarters travel
     * (a whole queue per message would stall them for a round trip each time). */
    uint64_t per_msg = o->qopt.capacity / 4 > 16 ? o->qopt.capacity / 4 : 16, n = 0;
    while (!batch_full(bt) && o->qnext - o->acked < b->o.queue_window && n < per_msg) {
        /* Committed first, then read: a read that finds nothing could be racing the
         * commit, a read after the commit that finds nothing means the entry is gone. */
        if (shmstore_queue_wait(o->h.q, o->qnext, 0, NULL) != 0)
            break; /* not committed yet */
        shmstore_view_t v;
        int r = shmstore_queue_read(o->h.q, o->qnext, &v);
        if (r == -ENOENT) {
            if (o->acked == o->qnext)
                o->acked++; /* gone already (popped or deleted here): nothing to ack */
            o->qnext++;
            continue;
        }
        if (r < 0) {
            o->gone = r == -ESTALE;
            break;
        }
        if (first)
            remember(bt, o, p), first = false;
        if (carries_pickle(&v.desc, v.data, v.len)) {
            not_sendable(b, o, v.version);
            shmstore_view_release(&v);
            o->qnext++;
            continue;
        }
        item_head(bt, o, v.len <= b->o.inline_max ? ITEM_INLINE : 0, v.len);
        w_u64(bt->w, v.version); /* the index */
        w_u64(bt->w, o->pos[p]); /* entries before it and from here on are gone */
        w_u64(bt->w, v.mtime_ns);
        w_u64(bt->w, o->qopt.capacity);
        w_u64(bt->w, o->qopt.slot_size);
        w_u32(bt->w, o->qopt.full);
        w_datum(bt->w, &v.desc);
        bt->payload += v.len;
        o->qnext++;
        o->pos[p] = o->qnext;
        bt->n_entries++;
        n++;
        if (add_view_payload(b, bt, p, &v) < 0)
            break;
    }
}

static void add_ring(struct batch *bt, struct sobj *o, int p)
{
    shmstore_ring_state_t st;
    int r = shmstore_ring_follow(o->h.r);
    if (r >= 0)
        r = shmstore_ring_state(o->h.r, &st);
    if (r < 0) {
        o->gone = r == -ESTALE;
        return;
    }
    if (st.generation == 0 || st.frame_len == 0)
        return;
    if (!o->known[p]) { /* a new mirror gets what the ring holds */
        remember(bt, o, p);
        o->pos[p] = st.oldest;
        o->known[p] = true;
    }
    if (st.total <= o->pos[p] && o->pos[p] >= st.base)
        return;
    uint64_t room = bt->budget > bt->w->len ? bt->budget - bt->w->len : 0;
    uint64_t max = room / st.frame_len ? room / st.frame_len : 1;
    remember(bt, o, p);
    size_t head_at = bt->w->len;
    item_head(bt, o, ITEM_INLINE, 0);
    size_t len_at = bt->w->len - 8; /* the payload length, known after the read */
    w_u64(bt->w, st.generation);
    size_t span_at = bt->w->len;
    w_u64(bt->w, 0); /* first */
    w_u64(bt->w, 0); /* n */
    w_u64(bt->w, st.cfg.capacity);
    w_datum(bt->w, &st.cfg.frame);
    if (max > st.total - st.base + 1)
        max = st.total - st.base + 1;
    void *dst = w_room(bt->w, max * st.frame_len);
    shmstore_ring_span_t sp = {0};
    r = dst ? shmstore_ring_read_since(o->h.r, o->pos[p] > st.total ? st.total : o->pos[p], dst,
                                       max, &sp)
            : -ENOMEM;
    if (r < 0 || sp.n == 0) { /* nothing after all (or the generation moved): undo the item */
        bt->w->len = head_at;
        bt->n_items--;
        bt->n_undo--;
        if (r == SHMSTORE_EGENERATION || (r == 0 && sp.lost))
            o->pos[p] = sp.cursor > o->pos[p] ? sp.cursor : o->pos[p];
        return;
    }
    uint64_t len = sp.n * st.frame_len;
    bt->w->len -= (max - sp.n) * st.frame_len;
    memcpy(bt->w->p + len_at, &len, 8);
    memcpy(bt->w->p + span_at, &sp.first, 8);
    memcpy(bt->w->p + span_at + 8, &sp.n, 8);
    o->pos[p] = sp.cursor;
    bt->payload += len;
    bt->n_frames_sent += sp.n;
}

/* Records [from, from + n) of a table into the batch as one item of columns; returns
 * how many were sent. Stops at a record being written; skips invalid ones. */
static void add_table(shmstore_bridge_t *b, struct batch *bt, struct sobj *o, int p)
{
    uint64_t total, count;
    int r = shmstore_table_count(o->h.t, &total, &count);
    if (r < 0) {
        o->gone = r == -ESTALE;
        return;
    }
    if (!o->known[p]) { /* a new mirror gets the appends from now on */
        remember(bt, o, p);
        o->pos[p] = total;
        o->known[p] = true;
        return;
    }
    uint64_t oldest = total > o->tcap ? total - o->tcap : 0;
    if (o->pos[p] < oldest) {
        bump(&b->st.records_lost, oldest - o->pos[p]); /* not undone (remembered below) */
        o->pos[p] = oldest;
    }
    if (total <= o->pos[p])
        return;
    uint64_t room = bt->budget > bt->w->len ? bt->budget - bt->w->len : 0;
    uint64_t n = room / o->record_size ? room / o->record_size : 1;
    if (n > total - o->pos[p])
        n = total - o->pos[p];
    remember(bt, o, p);
    size_t head_at = bt->w->len;
    uint16_t items = bt->n_items;
    item_head(bt, o, ITEM_INLINE, 0);
    size_t len_at = bt->w->len - 8;
    size_t first_at = bt->w->len;
    w_u64(bt->w, o->pos[p]);
    w_u64(bt->w, 0); /* n */
    w_u64(bt->w, o->tcap);
    w_u32(bt->w, o->tflags);
    w_u32(bt->w, o->n_fields);
    for (uint32_t f = 0; f < o->n_fields; f++) {
        const shmstore_table_field_t *fd = &o->fields[f];
        w_name(bt->w, fd->name);
        w_bytes(bt->w, fd->dtype, SHMSTORE_DTYPE_MAX);
        w_u32(bt->w, fd->ndim);
        for (uint32_t d = 0; d < fd->ndim; d++)
            w_u64(bt->w, fd->shape[d]);
    }
    size_t data_at = bt->w->len;
    if (!w_room(bt->w, n * o->record_size)) {
        bt->w->len = head_at, bt->n_items = items, bt->n_undo--;
        return;
    }
    void *cols[SHMSTORE_TABLE_FIELDS_MAX];
    uint64_t first = o->pos[p], got = 0;
    /* One get_range when every record is there; else record by record. */
    uint64_t col_off = 0;
    for (uint32_t f = 0; f < o->n_fields; f++) {
        cols[f] = bt->w->p + data_at + col_off;
        col_off += n * o->fields[f].size;
    }
    r = shmstore_table_get_range(o->h.t, first, n, cols);
    if (r == 0) {
        got = n;
    } else {
        for (uint64_t k = 0; k < n; k++) {
            void *one[SHMSTORE_TABLE_FIELDS_MAX];
            uint64_t off = 0;
            for (uint32_t f = 0; f < o->n_fields; f++) {
                one[f] = bt->w->p + data_at + off + got * o->fields[f].size;
                off += n * o->fields[f].size;
            }
            r = shmstore_table_get(o->h.t, first + k, one);
            if (r == 0)
                got++;
            else if (r == -ENODATA)
                bt->n_records_lost++; /* invalid: its writer died */
            else
                break; /* being written, or lapped: next time */
            o->pos[p] = first + k + 1;
        }
        if (got < n) { /* close the gaps: columns were laid out for n */
            char *base = bt->w->p + data_at;
            uint64_t src = 0, dst = 0;
            for (uint32_t f = 0; f < o->n_fields; f++) {
                memmove(base + dst, base + src, got * o->fields[f].size);
                src += n * o->fields[f].size;
                dst += got * o->fields[f].size;
            }
        }
    }
    if (r == 0 || got == n)
        o->pos[p] = first + n;
    if (got == 0) {
        bt->w->len = head_at, bt->n_items = items;
        return;
    }
    uint64_t len = got * o->record_size;
    bt->w->len = data_at + len;
    memcpy(bt->w->p + len_at, &len, 8);
    /* first + n is where the mirror resumes (records skipped as invalid included) */
    uint64_t sent_first = o->pos[p] - got;
    memcpy(bt->w->p + first_at, &sent_first, 8);
    memcpy(bt->w->p + first_at + 8, &got, 8);
    bt->payload += len;
    bt->n_records += got;
}

static void undo_batch(struct batch *bt, int p)
{
    for (size_t i = bt->n_undo; i-- > 0;) {
        struct undo *u = &bt->undo[i];
        if (u->o->kind == SHMSTORE_KIND_QUEUE)
            u->o->qnext = u->qnext;
        u->o->pos[p] = u->pos, u->o->known[p] = u->known;
    }
}

/* Build and send one batch for peer p. Returns 1 if something was sent, 0 if nothing
 * was due, -EAGAIN if the peer is full (everything undone), or an error. */
static int pump_peer(shmstore_bridge_t *b, int p, uint64_t now, bool *tables)
{
    struct peer *pe = &b->peers[p];
    /* Bytes in flight bound what the bridge pins in the source store (views of values
     * and entries the kernel has not taken yet): beyond INFLIGHT_MAX, wait for the I/O
     * thread's free callbacks (free_zc wakes us); a value is conflated meanwhile. */
    if (atomic_load(&pe->inflight) >= INFLIGHT_MAX) {
        atomic_store(&pe->room_wait, true);
        if (atomic_load(&pe->inflight) >= INFLIGHT_MAX) {
            bump(&b->st.hwm_deferred, 1);
            return 0;
        }
        atomic_store(&pe->room_wait, false);
    }
    struct batch *bt = malloc(sizeof(*bt));
    if (!bt)
        return -ENOMEM;
    bt->w = &b->batch;
    bt->w->len = 0;
    bt->w->oom = false;
    bt->n_items = 0, bt->n_frames = 0, bt->n_undo = 0, bt->payload = 0;
    bt->n_values = bt->n_entries = bt->n_frames_sent = bt->n_records = bt->n_records_lost = 0;
    bt->budget = b->o.batch_bytes;
    w_u32(bt->w, WIRE_MAGIC);
    w_u8(bt->w, MSG_BATCH);
    w_u8(bt->w, 1); /* version */
    w_u16(bt->w, 0); /* items, set below */
    for (size_t k = 0; k < b->n_objs && !batch_full(bt); k++) {
        struct sobj *o = b->objs[(b->rr + k) % b->n_objs];
        if (o->gone || !glob_match(pe->globs, pe->n_globs, o->name))
            continue;
        switch (o->kind) {
        case SHMSTORE_KIND_VALUE:
            add_value(b, bt, o, p);
            break;
        case SHMSTORE_KIND_QUEUE:
            add_queue(b, bt, o, p, now);
            break;
        case SHMSTORE_KIND_RING:
            add_ring(bt, o, p);
            break;
        case SHMSTORE_KIND_TABLE:
            *tables = true;
            add_table(b, bt, o, p);
            break;
        }
    }
    b->rr++;
    int r = 0;
    if (bt->w->oom) {
        r = -ENOMEM;
    } else if (bt->n_items) {
        memcpy(bt->w->p + 6, &bt->n_items, 2);
        zmq_msg_t head;
        /* A small batch is copied into the message (the buffer stays, already mapped); a
         * large one goes with the message and a new buffer of the full budget is taken
         * (glibc reuses the chunk freed by the last one: no new pages in the steady
         * state). */
        if (bt->w->len <= SEND_COPY_MAX) {
            zmq_msg_init_size(&head, bt->w->len);
            memcpy(zmq_msg_data(&head), bt->w->p, bt->w->len);
        } else {
            if (zc_msg(b, p, &head, bt->w->p, bt->w->len, NULL, bt->w->p) < 0) {
                zmq_msg_init_size(&head, bt->w->len); /* out of memory: copy it after all */
                memcpy(zmq_msg_data(&head), bt->w->p, bt->w->len);
                free(bt->w->p);
            }
            size_t cap = (size_t)b->o.batch_bytes + 65536;
            bt->w->p = malloc(cap);
            bt->w->cap = bt->w->p ? cap : 0;
        }
        bt->w->len = 0;
        if (zmq_send(b->sock, pe->rid, pe->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            r = errno == EAGAIN ? -EAGAIN : -EHOSTUNREACH;
            zmq_msg_close(&head);
        } else {
            zmq_msg_send(&head, b->sock, bt->n_frames ? ZMQ_SNDMORE : 0);
            for (size_t i = 0; i < bt->n_frames; i++)
                zmq_msg_send(&bt->frames[i], b->sock, i + 1 < bt->n_frames ? ZMQ_SNDMORE : 0);
            bt->n_frames = 0;
            bump(&b->st.messages_sent, 1);
            bump(&b->st.bytes_sent, bt->payload);
            bump(&b->st.values, bt->n_values);
            bump(&b->st.entries, bt->n_entries);
            bump(&b->st.frames, bt->n_frames_sent);
            bump(&b->st.records, bt->n_records);
            r = 1;
        }
    }
    if (r >= 0) /* the positions stand (sent, or nothing but skips to send) */
        bump(&b->st.records_lost, bt->n_records_lost);
    if (r < 0) {
        undo_batch(bt, p);
        for (size_t i = 0; i < bt->n_frames; i++)
            zmq_msg_close(&bt->frames[i]);
        if (r == -EAGAIN)
            bump(&b->st.hwm_deferred, 1);
    }
    free(bt);
    return r;
}

static void pump(shmstore_bridge_t *b, uint64_t now, bool *tables, bool *retry)
{
    for (int p = 0; p < PEERS_MAX; p++) {
        if (!peer_live(b, p, now))
            continue;
        for (int rounds = 0; rounds < 64; rounds++) {
            int r = pump_peer(b, p, now, tables);
            if (r == -EAGAIN)
                *retry = true;
            if (r != 1)
                break;
        }
    }
}

static void zap_reply(void *zap, const char *version, const char *reqid, size_t reqid_len,
                      const char *code, const char *text)
{
    zmq_send(zap, version, strlen(version), ZMQ_SNDMORE);
    zmq_send(zap, reqid, reqid_len, ZMQ_SNDMORE);
    zmq_send(zap, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
}

/* ZAP (RFC 27): accept CURVE clients whose key is allowed. */
static void handle_zap(shmstore_bridge_t *b)
{
    zmq_msg_t part[7];
    int n = 0, more = 1;
    while (more && n < 7) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], b->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part[n]);
            return;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    while (more) { /* more frames than RFC 27 has: drain */
        zmq_msg_t x;
        zmq_msg_init(&x);
        zmq_msg_recv(&x, b->zap, 0);
        more = zmq_msg_more(&x);
        zmq_msg_close(&x);
    }
    bool ok = false;
    char z85[41] = "", addr[64] = "";
    if (n == 7 && zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) &&
        zmq_msg_size(&part[6]) == 32) {
        zmq_z85_encode(z85, zmq_msg_data(&part[6]), 32);
        for (size_t i = 0; i < b->n_allow && !ok; i++)
            ok = !strcmp(b->allow[i], z85);
        size_t al = zmq_msg_size(&part[3]) < sizeof(addr) - 1 ? zmq_msg_size(&part[3])
                                                                 : sizeof(addr) - 1;
        memcpy(addr, zmq_msg_data(&part[3]), al);
    }
    if (n >= 2)
        zap_reply(b->zap, "1.0", zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ok ? "200" : "400",
                  ok ? "OK" : "key not allowed");
    if (!ok)
        logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "refused a mirror from %s: its key %s is not allowed",
              addr[0] ? addr : "?", z85[0] ? z85 : "(none)");
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void drain_monitor(shmstore_bridge_t *b, void *mon, struct mserver *srv)
{
    char addr[256];
    int ev;
    while ((ev = monitor_event(mon, addr, sizeof(addr))) >= 0) {
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            if (srv && !srv->ok)
                logf_(b, SHMSTORE_BRIDGE_LOG_INFO, "connected to %s", srv->endpoint);
            if (srv)
                srv->ok = true;
        } else if (is_handshake_failure(ev)) {
            bump(&b->st.refused, 1);
            if (srv) {
                if (!srv->failed)
                    logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "handshake with %s failed: the server's "
                          "key is not the one given, or this mirror's key is not allowed (or "
                          "one side has CURVE and the other not)", srv->endpoint);
                srv->failed = true;
            } else {
                logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "a client's handshake failed on %s (no CURVE, "
                      "a wrong server key, or a key not allowed)", addr);
            }
        }
    }
}

/* Drain the ROUTER: two frames per mirror message (routing id, body). Returns whether
 * a message came. */
static bool recv_mirrors(shmstore_bridge_t *b, uint64_t now)
{
    for (int k = 0; k < 4096; k++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, b->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return k > 0;
        }
        zmq_msg_init(&body);
        bool ok = zmq_msg_more(&id) && zmq_msg_recv(&body, b->sock, 0) >= 0;
        bool extra = ok && zmq_msg_more(&body);
        while (extra) { /* more frames than we speak: drain */
            zmq_msg_t x;
            zmq_msg_init(&x);
            zmq_msg_recv(&x, b->sock, 0);
            extra = zmq_msg_more(&x);
            zmq_msg_close(&x);
            ok = false;
        }
        bump(&b->st.messages_received, 1);
        if (ok && zmq_msg_size(&id) <= sizeof(b->peers[0].rid))
            handle_mirror_msg(b, zmq_msg_data(&id), zmq_msg_size(&id), &body, now);
        else
            bump(&b->st.bad_messages, 1);
        zmq_msg_close(&body);
        zmq_msg_close(&id);
    }
    return true;
}

/* The server's loop. It sends (pump) only when there is a reason: a watcher's wake, a
 * mirror's message, a retry or table timer, a rescan; not on every return of zmq_poll
 * (ZeroMQ's own traffic wakes it too). */
static int server_run(shmstore_bridge_t *b, uint64_t deadline)
{
    bool tables = false, retry = false, due = true;
    uint64_t retry_at = 0, tables_at = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (atomic_load(&b->stop) || now >= deadline)
            return 0;
        if (now >= b->next_rescan) {
            int r = rescan(b);
            if (r < 0 && r != -ENOMEM)
                return r;
            b->next_rescan = now + (uint64_t)b->o.rescan_ns;
            count_peers(b, now);
            due = true;
        }
        if ((retry_at && now >= retry_at) || (tables_at && now >= tables_at))
            due = true;
        bool woke = atomic_exchange(&b->pending, 0);
        if (due || woke) {
            tables = false, retry = false;
            pump(b, now, &tables, &retry);
            retry_at = retry ? now + RETRY_NS : 0;
            tables_at = tables ? now + TABLE_POLL_NS : 0;
            due = false;
        }
        if (woke) { /* the watchers that woke us may wait on their objects again */
            pthread_mutex_lock(&b->mu);
            b->drained++;
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
        uint64_t until = b->next_rescan;
        if (retry_at && retry_at < until)
            until = retry_at;
        if (tables_at && tables_at < until)
            until = tables_at;
        if (deadline < until)
            until = deadline;
        int64_t wait = until > now ? (int64_t)(until - now) : 0;
        if (atomic_load(&b->pending))
            wait = 0;
        /* A full peer: with one mirror, ROUTER's POLLOUT (ZMQ_ROUTER_MANDATORY: "a pipe has
         * room") says when to try again; with several, the retry timer. */
        short ev = ZMQ_POLLIN;
        if (retry && atomic_load_explicit(&b->st.peers, memory_order_relaxed) == 1)
            ev |= ZMQ_POLLOUT;
        zmq_pollitem_t it[4] = {{b->sock, 0, ev, 0}, {NULL, b->efd, ZMQ_POLLIN, 0},
                                {b->mon, 0, ZMQ_POLLIN, 0}, {b->zap, 0, ZMQ_POLLIN, 0}};
        int nit = b->zap ? 4 : 3;
        if (zmq_poll(it, nit, wait / 1000000 + (wait % 1000000 ? 1 : 0)) < 0 && errno != EINTR)
            return zerr("zmq_poll");
        if (it[1].revents) {
            uint64_t v;
            ssize_t n = read(b->efd, &v, sizeof(v));
            (void)n;
            due = true; /* a stop, or a zero-copy frame freed (room for a full peer) */
        }
        if (it[2].revents)
            drain_monitor(b, b->mon, NULL);
        if (nit == 4 && it[3].revents)
            handle_zap(b);
        if (it[0].revents & ZMQ_POLLOUT)
            due = true;
        if (it[0].revents & ZMQ_POLLIN)
            due |= recv_mirrors(b, now_ns());
    }
}

static int setup_curve_server(shmstore_bridge_t *b, const shmstore_bridge_options_t *opt)
{
    char sec[41];
    int r = read_keys(opt->key_file, NULL, sec), one = 1;
    if (r < 0)
        return r;
    if (zmq_setsockopt(b->sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(b->sock, ZMQ_CURVE_SECRETKEY, sec, 40) != 0)
        return zerr("CURVE server options");
    if (!opt->n_allow)
        return 0;
    if (!(b->allow = calloc(opt->n_allow, sizeof(*b->allow))))
        return -ENOMEM;
    for (size_t i = 0; i < opt->n_allow; i++)
        if ((r = read_keys(opt->allow[i], b->allow[i], NULL)) < 0)
            return r;
    b->n_allow = opt->n_allow;
    /* The ZAP handler must be bound before the socket binds. */
    int zero = 0;
    if (!(b->zap = zmq_socket(b->ctx, ZMQ_REP)))
        return zerr("ZAP handler");
    zmq_setsockopt(b->zap, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(b->zap, "inproc://zeromq.zap.01") != 0)
        return zerr("ZAP handler");
    return 0;
}

SHMSTORE_API int shmstore_bridge_serve(shmstore_t *s, const char *endpoint,
                                       const shmstore_bridge_options_t *opt,
                                       shmstore_bridge_t **out)
{
    shmstore__clearerr();
    if (!s || !endpoint || !out)
        return shmstore__seterr(-EINVAL, "no store, endpoint or result");
    if (strlen(endpoint) >= 256)
        return shmstore__seterr(-EINVAL, "endpoint '%.64s...' is too long", endpoint);
    if (!is_local_endpoint(endpoint) && !(opt && opt->public_bind))
        return shmstore__seterr(-EINVAL, "endpoint '%s' is not loopback: a bridge binds to "
                                "loopback unless told otherwise (public_bind, `--public`); "
                                "give it a key (CURVE) too", endpoint);
    shmstore_bridge_t *b = calloc(1, sizeof(*b));
    if (!b)
        return shmstore__seterr(-ENOMEM, "out of memory");
    b->is_server = true;
    int r = common_init(b, s, opt), one = 1;
    if (r == 0 && !(b->sock = zmq_socket(b->ctx, ZMQ_ROUTER)))
        r = zerr("zmq_socket");
    if (r == 0) {
        set_common_sockopts(b, b->sock);
        zmq_setsockopt(b->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        if (opt && opt->key_file)
            r = setup_curve_server(b, opt);
        else if (opt && opt->n_allow)
            r = shmstore__seterr(-EINVAL, "allowed mirror keys need the server's own key_file");
    }
    if (r == 0 && !(b->mon = monitor(b, b->sock, 0)))
        r = zerr("zmq_socket_monitor");
    if (r == 0 && zmq_bind(b->sock, endpoint) != 0) {
        int e = errno;
        r = shmstore__seterr(e == EADDRINUSE ? -EADDRINUSE : -EINVAL, "can't bind '%s': %s",
                             endpoint, zmq_strerror(e));
    }
    if (r == 0) {
        size_t n = sizeof(b->endpoint);
        zmq_getsockopt(b->sock, ZMQ_LAST_ENDPOINT, b->endpoint, &n);
    }
    if (r < 0) {
        shmstore_bridge_close(b);
        return r;
    }
    *out = b;
    return 0;
}

/* ---- mirror ------------------------------------------------------------------------- */

static struct mobj *find_far(shmstore_bridge_t *b, uint32_t server, uint32_t kind, const char *src)
{
    for (size_t i = 0; i < b->n_mobjs; i++) {
        struct mobj *m = b->mobjs[i];
        if (m->server == server && m->kind == kind && !strcmp(m->src, src))
            return m;
    }
    return NULL;
}

static struct mobj *new_far(shmstore_bridge_t *b, uint32_t server, uint32_t kind, const char *src)
{
    const char *prefix = b->servers[server].prefix;
    if (strlen(prefix) + strlen(src) > SHMSTORE_NAME_MAX)
        return NULL;
    if (b->n_mobjs == b->cap_mobjs) {
        size_t cap = b->cap_mobjs ? 2 * b->cap_mobjs : 16;
        struct mobj **p = realloc(b->mobjs, cap * sizeof(*p));
        if (!p)
            return NULL;
        b->mobjs = p, b->cap_mobjs = cap;
    }
    struct mobj *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->server = server, m->kind = kind;
    snprintf(m->src, sizeof(m->src), "%s", src);
    snprintf(m->local, sizeof(m->local), "%s%s", prefix, src);
    b->mobjs[b->n_mobjs++] = m;
    return m;
}

static void far_failed(shmstore_bridge_t *b, struct mobj *m, int r)
{
    if (!m->failed)
        logf_(b, SHMSTORE_BRIDGE_LOG_ERROR, "can't write %s '%s': %s", shmstore_kind_name(m->kind),
              m->local, shmstore_errmsg()[0] ? shmstore_errmsg() : shmstore_strerror(r));
    m->failed = true;
    close_handle(m->kind, m->h.any);
    m->h.any = NULL; /* opened again with the next item */
}

static void send_status(shmstore_bridge_t *b, uint32_t server, unsigned type, bool queues_only)
{
    struct wbuf *w = &b->scratch;
    w->len = 0, w->oom = false;
    w_u32(w, WIRE_MAGIC);
    w_u8(w, (uint8_t)type);
    w_u64(w, b->id);
    if (type == MSG_PING) {
        w_u16(w, (uint16_t)b->n_globs);
        for (size_t i = 0; i < b->n_globs; i++)
            w_name(w, b->globs[i]);
    }
    size_t n_at = w->len;
    uint32_t n = 0;
    w_u32(w, 0);
    for (size_t i = 0; i < b->n_mobjs; i++) {
        struct mobj *m = b->mobjs[i];
        if (m->server != server || m->kind == SHMSTORE_KIND_VALUE ||
            (queues_only && m->kind != SHMSTORE_KIND_QUEUE) || (type == MSG_REWIND && !m->ask))
            continue;
        uint64_t pos = m->pos;
        if (m->kind == SHMSTORE_KIND_RING) {
            if (!m->h.r || shmstore_ring_total(m->h.r, &pos) < 0)
                continue;
        } else if (!m->has_pos) {
            continue;
        }
        w_u8(w, (uint8_t)m->kind);
        w_name(w, m->src);
        w_u64(w, pos);
        n++;
    }
    if (w->oom)
        return;
    memcpy(w->p + n_at, &n, 4);
    if (zmq_send(b->servers[server].sock, w->p, w->len, ZMQ_DONTWAIT) >= 0)
        bump(&b->st.messages_sent, 1);
}

/* Positions a restarted mirror finds in its store: its rings' frame counts. */
static void open_existing_rings(shmstore_bridge_t *b, uint32_t server, const char *src,
                                struct mobj *m)
{
    (void)server, (void)src;
    if (!m->h.r && shmstore_ring_open(b->s, m->local, SHMSTORE_R_CREATE, NULL, &m->h.r) < 0)
        m->h.r = NULL;
}

static void put_value(shmstore_bridge_t *b, struct mobj *m, struct rbuf *r, const void *payload,
                      uint64_t len)
{
    uint64_t ver = r_u64(r), mtime = r_u64(r);
    shmstore_datum_t d;
    if (!r_datum(r, &d) || shmstore_datum_validate(&d, len) < 0 ||
        carries_pickle(&d, payload, len)) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    if (m->has_pos && ver <= m->pos)
        return; /* older than what we have (a resend after a reconnection) */
    int rc = 0;
    if (!m->h.v)
        rc = shmstore_value_open(b->s, m->local, SHMSTORE_V_CREATE, &m->h.v);
    if (rc == 0)
        rc = shmstore_value_put_at(m->h.v, &d, payload, len, 0, mtime);
    if (rc < 0) {
        far_failed(b, m, rc);
        return;
    }
    m->failed = false;
    m->pos = ver, m->has_pos = true;
    bump(&b->st.values, 1);
}

static void push_entry(shmstore_bridge_t *b, struct mobj *m, struct rbuf *r, const void *payload,
                       uint64_t len, bool *acks)
{
    uint64_t index = r_u64(r), from = r_u64(r);
    r_u64(r); /* mtime: the far queue stamps its own commit */
    shmstore_queue_options_t qo = {.capacity = r_u64(r), .slot_size = r_u64(r), .full = r_u32(r)};
    shmstore_datum_t d;
    if (!r_datum(r, &d) || shmstore_datum_validate(&d, len) < 0 ||
        carries_pickle(&d, payload, len)) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    if (m->has_pos && index < m->pos) {
        bump(&b->st.entries_duplicate, 1);
        *acks = true; /* tell the server again: its ack was lost */
        return;
    }
    if (m->has_pos && from > m->pos) {
        /* What came before it was dropped here. Once asked (ask_again), entries still on
         * their way from before the server's rewind arrive like this too: drop them
         * quietly and wait for the resend, asking again only if it does not come. */
        if (!m->rewind_ns || now_ns() - m->rewind_ns > (uint64_t)REWIND_WAIT_NS)
            m->stalled = true;
        return;
    }
    m->rewind_ns = 0; /* in order again: the resend (if any) came */
    /* The source's attrs and its index. */
    struct wbuf *w = &b->attrs; /* not scratch: PINGs go out while the push waits */
    w->len = 0, w->oom = false;
    void *a = w_room(w, d.attrs_len + 64);
    if (!a) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    if (d.attrs_len)
        memcpy(a, d.attrs, d.attrs_len);
    uint32_t alen = d.attrs_len;
    int64_t idx = (int64_t)index;
    if (shmstore_attrs_add(a, d.attrs_len + 64, &alen, "bridge_index", SHMSTORE_T_INT64, &idx,
                           sizeof(idx)) == 0 &&
        alen <= SHMSTORE_ATTRS_MAX)
        d.attrs = a, d.attrs_len = alen;
    int rc = 0;
    if (!m->h.q)
        rc = shmstore_queue_open(b->s, m->local, SHMSTORE_Q_CREATE, &qo, &m->h.q);
    m->capacity = qo.capacity;
    /* Never block: a full far queue would hold up every other object of the server
     * behind it. Drop the entry (and those after it), not acknowledged: once there is
     * room the mirror asks the server to send again from it (MSG_REWIND). */
    if (rc == 0)
        rc = shmstore_queue_push(m->h.q, &d, payload, len, 0, NULL);
    if (rc == -ETIMEDOUT || rc == -EAGAIN) {
        m->stalled = true;
        return;
    }
    if (rc < 0) {
        far_failed(b, m, rc);
        return;
    }
    m->failed = false;
    m->pos = index + 1, m->has_pos = true;
    *acks = true;
    bump(&b->st.entries, 1);
}

static bool same_frame(const shmstore_ring_state_t *st, const shmstore_ring_config_t *cfg)
{
    const shmstore_datum_t *a = &st->cfg.frame, *c = &cfg->frame;
    if (st->generation == 0 || st->cfg.capacity != cfg->capacity || a->ndim != c->ndim ||
        strcmp(a->dtype, c->dtype) || a->attrs_len != c->attrs_len)
        return false;
    for (uint32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != c->shape[i])
            return false;
    return !a->attrs_len || !memcmp(a->attrs, c->attrs, a->attrs_len);
}

static void write_frames(shmstore_bridge_t *b, struct mobj *m, struct rbuf *r, const char *payload,
                         uint64_t len)
{
    uint64_t gen = r_u64(r), first = r_u64(r), n = r_u64(r);
    shmstore_ring_config_t cfg = {.capacity = r_u64(r)};
    if (!r_datum(r, &cfg.frame) || cfg.frame.type != SHMSTORE_T_ARRAY || cfg.capacity == 0) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    int64_t fl = shmstore_dtype_itemsize(cfg.frame.dtype);
    uint64_t frame_len = fl > 0 ? (uint64_t)fl : 0;
    for (uint32_t i = 0; i < cfg.frame.ndim && frame_len; i++)
        frame_len = cfg.frame.shape[i] && frame_len > UINT64_MAX / cfg.frame.shape[i]
                        ? 0 : frame_len * cfg.frame.shape[i];
    if (!frame_len || n == 0 || len / frame_len != n || len % frame_len ||
        first > UINT64_MAX - n) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    int rc = 0;
    if (!m->h.r)
        rc = shmstore_ring_open(b->s, m->local, SHMSTORE_R_CREATE | SHMSTORE_R_WRITER, NULL, &m->h.r);
    shmstore_ring_state_t st = {0};
    if (rc == 0 && (rc = shmstore_ring_follow(m->h.r)) >= 0)
        rc = shmstore_ring_state(m->h.r, &st);
    if (rc >= 0 && (!same_frame(&st, &cfg) || gen != m->src_gen || first > st.total)) {
        /* A new layout, a new source generation, or a gap: a new generation starting at
         * the source's position; the skipped positions count as lost for every reader. */
        uint64_t base = first > st.total ? first : st.total;
        if (st.generation && first > st.total)
            bump(&b->st.frames_lost, first - st.total);
        rc = shmstore_ring_reconfigure_at(m->h.r, &cfg, base);
        if (rc >= 0)
            rc = shmstore_ring_state(m->h.r, &st);
        m->src_gen = gen;
    }
    if (rc < 0) {
        far_failed(b, m, rc);
        return;
    }
    if (first + n <= st.total)
        return; /* all of it written already (a resend) */
    uint64_t skip = st.total > first ? st.total - first : 0;
    rc = shmstore_ring_write(m->h.r, payload + skip * frame_len, n - skip);
    if (rc < 0) {
        far_failed(b, m, rc);
        return;
    }
    m->failed = false;
    bump(&b->st.frames, n - skip);
}

static void append_records(shmstore_bridge_t *b, struct mobj *m, struct rbuf *r, const char *payload,
                           uint64_t len)
{
    uint64_t first = r_u64(r), n = r_u64(r);
    shmstore_table_field_t fields[SHMSTORE_TABLE_FIELDS_MAX];
    shmstore_table_options_t to = {.capacity = r_u64(r)};
    to.flags = r_u32(r);
    to.n_fields = r_u32(r);
    if (r->bad || to.n_fields == 0 || to.n_fields > SHMSTORE_TABLE_FIELDS_MAX || n == 0) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    memset(fields, 0, sizeof(fields));
    uint64_t rec = 0;
    for (uint32_t f = 0; f < to.n_fields; f++) {
        const char *dt;
        if (!r_name(r, fields[f].name, sizeof(fields[f].name)) ||
            !(dt = r_bytes(r, SHMSTORE_DTYPE_MAX)) || !memchr(dt, 0, SHMSTORE_DTYPE_MAX)) {
            bump(&b->st.bad_messages, 1);
            return;
        }
        memcpy(fields[f].dtype, dt, SHMSTORE_DTYPE_MAX);
        fields[f].ndim = r_u32(r);
        if (fields[f].ndim > SHMSTORE_FIELD_NDIM_MAX) {
            bump(&b->st.bad_messages, 1);
            return;
        }
        int64_t sz = shmstore_dtype_itemsize(fields[f].dtype);
        uint64_t size = sz > 0 ? (uint64_t)sz : 0;
        for (uint32_t d = 0; d < fields[f].ndim; d++) {
            fields[f].shape[d] = r_u64(r);
            size = fields[f].shape[d] && size > (1ull << 40) / fields[f].shape[d]
                       ? 0 : size * fields[f].shape[d];
        }
        if (!size || r->bad) {
            bump(&b->st.bad_messages, 1);
            return;
        }
        fields[f].size = size;
        rec += size;
    }
    to.fields = fields;
    if (rec == 0 || len / rec != n || len % rec) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    int rc = 0;
    if (!m->h.t)
        rc = shmstore_table_open(b->s, m->local, SHMSTORE_T_CREATE, &to, &m->h.t);
    if (rc == 0) {
        /* The far table's schema must be the one sent. */
        const shmstore_table_field_t *have;
        uint32_t nh;
        shmstore_table_fields(m->h.t, &have, &nh);
        bool same = nh == to.n_fields;
        for (uint32_t f = 0; same && f < nh; f++)
            same = !strcmp(have[f].name, fields[f].name) &&
                   !strcmp(have[f].dtype, fields[f].dtype) && have[f].size == fields[f].size;
        if (!same)
            rc = shmstore__seterr(SHMSTORE_ELAYOUT, "table '%.255s' exists with another schema "
                                  "than the source's", m->local);
    }
    const void *cols[SHMSTORE_TABLE_FIELDS_MAX];
    uint64_t off = 0;
    for (uint32_t f = 0; f < to.n_fields; f++) {
        cols[f] = payload + off;
        off += n * fields[f].size;
    }
    if (m->has_pos && first + n <= m->pos)
        return; /* a resend */
    if (rc == 0 && n > shmstore_table_capacity(m->h.t))
        rc = -EINVAL;
    if (rc == 0)
        rc = shmstore_table_append(m->h.t, cols, n, NULL);
    if (rc < 0) {
        far_failed(b, m, rc);
        return;
    }
    m->failed = false;
    m->pos = first + n, m->has_pos = true;
    bump(&b->st.records, n);
}

/* One BATCH from server `sv`: frames[0] the items, then the large payloads in order. */
static void handle_batch(shmstore_bridge_t *b, uint32_t sv, zmq_msg_t *frames, size_t nf)
{
    struct rbuf r = {zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), 0, false};
    uint32_t magic = r_u32(&r), type = r_u8(&r), ver = r_u8(&r), n = r_u16(&r);
    if (r.bad || magic != WIRE_MAGIC || type != MSG_BATCH || ver != 1) {
        bump(&b->st.bad_messages, 1);
        return;
    }
    size_t next_frame = 1;
    bool acks = false;
    for (uint32_t i = 0; i < n; i++) {
        char name[SHMSTORE_NAME_MAX + 1];
        uint32_t kind = r_u8(&r), flags = r_u8(&r);
        if (!r_name(&r, name, sizeof(name))) {
            bump(&b->st.bad_messages, 1);
            break;
        }
        uint64_t len = r_u64(&r);
        /* The kind's part is read by its handler; inline payloads follow it, so parse
         * the kind's header from a sub-reader whose end we learn by parsing. */
        struct mobj *m = find_far(b, sv, kind, name);
        if (!m && (kind == SHMSTORE_KIND_VALUE || kind == SHMSTORE_KIND_QUEUE ||
                   kind == SHMSTORE_KIND_RING || kind == SHMSTORE_KIND_TABLE) &&
            glob_match(b->globs, b->n_globs, name)) {
            if ((m = new_far(b, sv, kind, name)))
                bump(&b->st.objects, 1), logf_(b, SHMSTORE_BRIDGE_LOG_INFO, "mirroring %s '%s' "
                                               "from %s", shmstore_kind_name(kind), m->local,
                                               b->servers[sv].endpoint);
        }
        if (r.bad || !m) {
            bump(&b->st.bad_messages, 1);
            break; /* an unknown kind or name: the rest can't be parsed */
        }
        /* Read the kind's header into a copy of the reader; find the payload. */
        struct rbuf h = r;
        switch (kind) {
        case SHMSTORE_KIND_VALUE:
            r_u64(&h), r_u64(&h);
            break;
        case SHMSTORE_KIND_QUEUE: /* index, from, mtime, capacity, slot size, policy */
            r_u64(&h), r_u64(&h), r_u64(&h), r_u64(&h), r_u64(&h), r_u32(&h);
            break;
        case SHMSTORE_KIND_RING:
            r_u64(&h), r_u64(&h), r_u64(&h), r_u64(&h);
            break;
        case SHMSTORE_KIND_TABLE: {
            r_u64(&h), r_u64(&h), r_u64(&h), r_u32(&h);
            uint32_t nf2 = r_u32(&h);
            char fname[SHMSTORE_FIELD_NAME_MAX + 1];
            for (uint32_t f = 0; f < nf2 && f <= SHMSTORE_TABLE_FIELDS_MAX && !h.bad; f++) {
                r_name(&h, fname, sizeof(fname));
                r_bytes(&h, SHMSTORE_DTYPE_MAX);
                uint32_t nd = r_u32(&h);
                if (nd > SHMSTORE_FIELD_NDIM_MAX)
                    h.bad = true;
                for (uint32_t d = 0; d < nd && !h.bad; d++)
                    r_u64(&h);
            }
            break;
        }
        }
        shmstore_datum_t d;
        if (kind != SHMSTORE_KIND_TABLE)
            r_datum(&h, &d);
        const char *payload = NULL;
        if (!h.bad && (flags & ITEM_INLINE)) {
            payload = r_bytes(&h, len);
        } else if (!h.bad && next_frame < nf && zmq_msg_size(&frames[next_frame]) == len) {
            payload = zmq_msg_data(&frames[next_frame++]);
        }
        if (h.bad || (len && !payload)) {
            bump(&b->st.bad_messages, 1);
            break;
        }
        if (!payload)
            payload = "";
        bump(&b->st.bytes_received, len);
        struct rbuf k = r; /* the kind's header again, for its handler */
        r = h;
        switch (kind) {
        case SHMSTORE_KIND_VALUE:
            put_value(b, m, &k, payload, len);
            break;
        case SHMSTORE_KIND_QUEUE:
            push_entry(b, m, &k, payload, len, &acks);
            break;
        case SHMSTORE_KIND_RING:
            write_frames(b, m, &k, payload, len);
            break;
        case SHMSTORE_KIND_TABLE:
            append_records(b, m, &k, payload, len);
            break;
        }
    }
    if (acks)
        send_status(b, sv, MSG_ACK, true);
}

static void recv_server(shmstore_bridge_t *b, uint32_t sv)
{
    for (int k = 0; k < 256; k++) {
        zmq_msg_t frames[FRAMES_MAX + 1];
        size_t nf = 0;
        int more = 1;
        zmq_msg_init(&frames[0]);
        if (zmq_msg_recv(&frames[0], b->servers[sv].sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frames[0]);
            return;
        }
        more = zmq_msg_more(&frames[0]);
        nf = 1;
        bool bad = false;
        while (more) {
            zmq_msg_t *f = nf <= FRAMES_MAX ? &frames[nf] : NULL;
            zmq_msg_t x;
            if (!f)
                f = &x, bad = true;
            zmq_msg_init(f);
            zmq_msg_recv(f, b->servers[sv].sock, 0);
            more = zmq_msg_more(f);
            if (f == &x)
                zmq_msg_close(&x);
            else
                nf++;
        }
        b->servers[sv].ok = true;
        bump(&b->st.messages_received, 1);
        if (bad)
            bump(&b->st.bad_messages, 1);
        else
            handle_batch(b, sv, frames, nf);
        for (size_t i = 0; i < nf; i++)
            zmq_msg_close(&frames[i]);
    }
}

/* Queues that dropped entries: once their far queue has room, ask their server to send
 * again from the next one needed (at most every REWIND_NS per queue). Returns whether a
 * queue is still waiting for room. */
static bool ask_again(shmstore_bridge_t *b, uint64_t now)
{
    bool waiting = false;
    for (size_t sv = 0; sv < b->n_servers; sv++) {
        bool any = false;
        for (size_t i = 0; i < b->n_mobjs; i++) {
            struct mobj *m = b->mobjs[i];
            uint64_t n;
            if (m->server != sv || !m->stalled || !m->h.q)
                continue;
            m->ask = shmstore_queue_count(m->h.q, &n) == 0 && (!m->capacity || n < m->capacity) &&
                     (!m->rewind_ns || now - m->rewind_ns >= (uint64_t)REWIND_NS);
            any |= m->ask;
            waiting |= !m->ask;
        }
        if (!any)
            continue;
        send_status(b, (uint32_t)sv, MSG_REWIND, true); /* lists the queues asking */
        for (size_t i = 0; i < b->n_mobjs; i++)
            if (b->mobjs[i]->ask)
                b->mobjs[i]->ask = b->mobjs[i]->stalled = false, b->mobjs[i]->rewind_ns = now;
    }
    return waiting;
}

static int mirror_run(shmstore_bridge_t *b, uint64_t deadline)
{
    size_t ns = b->n_servers;
    zmq_pollitem_t *it = calloc(2 * ns + 1, sizeof(*it));
    if (!it)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (atomic_load(&b->stop) || now >= deadline)
            break;
        uint32_t ok = 0, failed = 0;
        for (size_t i = 0; i < ns; i++) {
            struct mserver *sv = &b->servers[i];
            if (now - sv->last_ping >= (uint64_t)PING_NS) {
                send_status(b, (uint32_t)i, MSG_PING, false);
                sv->last_ping = now;
            }
            ok += sv->ok;
            failed += sv->failed && !sv->ok;
        }
        atomic_store_explicit(&b->st.peers, ok, memory_order_relaxed);
        bool stalled = ask_again(b, now);
        if (failed == ns) {
            rc = shmstore__seterr(-EACCES, "every server refused the handshake (%s%s): check "
                                  "the server's public key file and that the server allows "
                                  "this mirror's key", b->servers[0].endpoint,
                                  ns > 1 ? ", ..." : "");
            break;
        }
        for (size_t i = 0; i < ns; i++) {
            it[2 * i] = (zmq_pollitem_t){b->servers[i].sock, 0, ZMQ_POLLIN, 0};
            it[2 * i + 1] = (zmq_pollitem_t){b->servers[i].mon, 0, ZMQ_POLLIN, 0};
        }
        it[2 * ns] = (zmq_pollitem_t){NULL, b->efd, ZMQ_POLLIN, 0};
        uint64_t left = deadline - now;
        long wait = left < (uint64_t)PING_NS ? (long)(left / 1000000) + 1 : PING_NS / 1000000;
        if (stalled && wait > REWIND_POLL_MS)
            wait = REWIND_POLL_MS;
        if (zmq_poll(it, (int)(2 * ns + 1), wait) < 0 && errno != EINTR) {
            rc = zerr("zmq_poll");
            break;
        }
        if (it[2 * ns].revents) {
            uint64_t v;
            ssize_t n = read(b->efd, &v, sizeof(v));
            (void)n;
        }
        for (size_t i = 0; i < ns; i++) {
            if (it[2 * i + 1].revents)
                drain_monitor(b, b->servers[i].mon, &b->servers[i]);
            if (it[2 * i].revents)
                recv_server(b, (uint32_t)i);
        }
    }
    free(it);
    return rc;
}

/* A mirror that restarts finds its rings' positions in its own store. */
struct ring_scan {
    shmstore_bridge_t *b;
    uint32_t server;
};

static int mirror_rings(const shmstore_obj_info_t *info, void *arg)
{
    struct ring_scan *a = arg;
    const char *prefix = a->b->servers[a->server].prefix;
    size_t pl = strlen(prefix);
    if (info->kind != SHMSTORE_KIND_RING || strncmp(info->name, prefix, pl) || !info->name[pl])
        return 0;
    if (!find_far(a->b, a->server, SHMSTORE_KIND_RING, info->name + pl))
        new_far(a->b, a->server, SHMSTORE_KIND_RING, info->name + pl);
    return 0;
}

SHMSTORE_API int shmstore_bridge_mirror(shmstore_t *s, const char *const *endpoints,
                                        const char *const *prefixes, size_t n,
                                        const shmstore_bridge_options_t *opt,
                                        shmstore_bridge_t **out)
{
    shmstore__clearerr();
    if (!s || !endpoints || !n || !out)
        return shmstore__seterr(-EINVAL, "no store, endpoints or result");
    shmstore_bridge_t *b = calloc(1, sizeof(*b));
    if (!b)
        return shmstore__seterr(-ENOMEM, "out of memory");
    int r = common_init(b, s, opt);
    char pub[41], sec[41], spub[41];
    bool curve = opt && opt->server_key_file;
    if (r == 0 && !curve && opt && opt->key_file)
        r = shmstore__seterr(-EINVAL, "a mirror's key_file needs the server's public key "
                             "(server_key_file)");
    if (r == 0 && curve) {
        r = read_keys(opt->server_key_file, spub, NULL);
        if (r == 0 && opt->key_file)
            r = read_keys(opt->key_file, pub, sec);
        else if (r == 0 && zmq_curve_keypair(pub, sec) != 0)
            r = zerr("zmq_curve_keypair");
    }
    if (r == 0 && !(b->servers = calloc(n, sizeof(*b->servers))))
        r = shmstore__seterr(-ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < n; i++) {
        struct mserver *sv = &b->servers[i];
        const char *pre = prefixes && prefixes[i] ? prefixes[i] : "";
        if (!endpoints[i] || strlen(endpoints[i]) >= sizeof(sv->endpoint) ||
            strlen(pre) > SHMSTORE_NAME_MAX) {
            r = shmstore__seterr(-EINVAL, "endpoint or prefix %zu is missing or too long", i);
            break;
        }
        b->n_servers++;
        snprintf(sv->endpoint, sizeof(sv->endpoint), "%s", endpoints[i]);
        snprintf(sv->prefix, sizeof(sv->prefix), "%s", pre);
        if (!(sv->sock = zmq_socket(b->ctx, ZMQ_DEALER))) {
            r = zerr("zmq_socket");
            break;
        }
        set_common_sockopts(b, sv->sock);
        if (curve && (zmq_setsockopt(sv->sock, ZMQ_CURVE_SERVERKEY, spub, 40) != 0 ||
                      zmq_setsockopt(sv->sock, ZMQ_CURVE_PUBLICKEY, pub, 40) != 0 ||
                      zmq_setsockopt(sv->sock, ZMQ_CURVE_SECRETKEY, sec, 40) != 0)) {
            r = zerr("CURVE client options");
            break;
        }
        if (!(sv->mon = monitor(b, sv->sock, (unsigned)i + 1))) {
            r = zerr("zmq_socket_monitor");
            break;
        }
        if (zmq_connect(sv->sock, endpoints[i]) != 0) {
            r = shmstore__seterr(-EINVAL, "can't connect to '%s': %s", endpoints[i],
                                 zmq_strerror(errno));
            break;
        }
        struct ring_scan a = {b, (uint32_t)i};
        shmstore_list(s, sv->prefix, mirror_rings, &a);
    }
    for (size_t i = 0; r == 0 && i < b->n_mobjs; i++)
        open_existing_rings(b, b->mobjs[i]->server, b->mobjs[i]->src, b->mobjs[i]);
    if (r == 0)
        snprintf(b->endpoint, sizeof(b->endpoint), "%s", endpoints[0]);
    if (r < 0) {
        shmstore_bridge_close(b);
        return r;
    }
    *out = b;
    return 0;
}

SHMSTORE_API int shmstore_bridge_run(shmstore_bridge_t *b, int64_t timeout_ns)
{
    shmstore__clearerr();
    if (!b)
        return shmstore__seterr(-EINVAL, "no bridge");
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout_ns;
    int r = b->is_server ? server_run(b, deadline) : mirror_run(b, deadline);
    atomic_store(&b->stop, 0);
    return r;
}

SHMSTORE_API void shmstore_bridge_close(shmstore_bridge_t *b)
{
    if (!b)
        return;
    atomic_store(&b->stop, 1);
    for (size_t i = 0; i < b->n_objs; i++)
        b->objs[i]->gone = true; /* watchers stop within WATCH_SLICE_NS */
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->sock)
        zmq_close(b->sock);
    if (b->zap)
        zmq_close(b->zap);
    if (b->mon)
        zmq_close(b->mon);
    for (size_t i = 0; i < b->n_servers; i++) {
        if (b->servers[i].sock)
            zmq_close(b->servers[i].sock);
        if (b->servers[i].mon)
            zmq_close(b->servers[i].mon);
    }
    if (b->ctx)
        zmq_ctx_term(b->ctx); /* frees every message: their views are released */
    for (size_t i = 0; i < b->n_objs; i++)
        sobj_free(b->objs[i]);
    free(b->objs);
    for (size_t i = 0; i < b->n_mobjs; i++) {
        close_handle(b->mobjs[i]->kind, b->mobjs[i]->h.any);
        free(b->mobjs[i]);
    }
    free(b->mobjs);
    for (int p = 0; p < PEERS_MAX; p++)
        for (size_t i = 0; i < b->peers[p].n_globs; i++)
            free(b->peers[p].globs[i]);
    for (size_t i = 0; i < b->n_globs; i++)
        free(b->globs[i]);
    free(b->servers);
    free(b->allow);
    free(b->batch.p);
    free(b->scratch.p);
    free(b->attrs.p);
    free(b->take_buf);
    if (b->efd >= 0)
        close(b->efd);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
#endif /* SHMSTORE_HAVE_ZMQ */
