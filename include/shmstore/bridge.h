/* shmstore/bridge.h - mirror objects of a store to stores on other hosts over ZeroMQ.
 *
 * A *server* publishes chosen objects of a local store on a ZeroMQ ROUTER socket; a
 * *mirror* connects (a DEALER per server), receives them and writes them into its own
 * local store, creating objects as they appear (named prefix + the source's name). Programs
 * on either side keep using their local store as usual. Per kind:
 *
 * - Values: the latest version is sent; intermediate versions may be conflated. The far
 *   side sees versions in order, never torn, with the source's mtime and attrs (a new
 *   version of the far value per version received).
 * - Queues: *moved*. The server is the source queue's consumer: it reads each entry,
 *   sends it, and deletes it from the source queue only when the mirror acknowledges
 *   that the entry is in the far queue. One mirror at a time consumes a queue (the first
 *   that asks; another takes over when it has not been heard from for peer_timeout_ns).
 *   Each entry arrives once, in order, while the link holds; across a cut link or a
 *   restarted server the mirror reports the last index it pushed and the server resends
 *   from the next one, so a mirror that lives through it still pushes every entry exactly
 *   once. Across a restarted mirror, or a queue changing hands, the entries that were in
 *   flight are delivered again (at-least-once). Every mirrored entry carries its source
 *   index in the int64 attr "bridge_index", so consumers can drop such duplicates. Don't
 *   pop a mirrored queue locally as well: an entry popped there is not sent.
 * - Rings: frames are forwarded in order and the far ring keeps the source's positions:
 *   frames lost on the way (overrun at the source while the link was slow or cut) are
 *   skipped positions there, which every reader counts as lost exactly as overrun. A new
 *   generation at the source (another dtype, frame shape, capacity, attrs) makes a new
 *   generation in the far ring. A new mirror starts at the oldest frame the source still
 *   holds (frames overwritten before its first contact are not counted as lost).
 * - Tables: appends are forwarded (records, not indices: several servers' tables may
 *   feed one far table). A new mirror gets the records appended from its first contact
 *   on; after a cut link it resumes where it was (records the source overwrote meanwhile
 *   are counted in records_lost).
 *
 * Nothing but datums crosses the wire (no pickle): every message is checked on arrival
 * as a hostile store would be, and a malformed one is counted and dropped. Small
 * payloads are batched into one ZeroMQ message; large values and queue entries are sent
 * zero-copy from their leased views. Flow control: a peer's high-water mark conflates
 * values and lets rings and tables fall behind (losses counted), while queues wait.
 *
 * Security: the server binds only loopback (and ipc://) endpoints unless told otherwise.
 * With key files (shmstore_bridge_keygen()) the link uses CURVE (libsodium through
 * libzmq): encrypted, the mirror authenticates the server by its public key and refuses
 * any other, and the server may accept only listed mirrors' keys. Without CURVE and an
 * allow list, whoever reaches the port is a mirror: it reads what is published and may
 * consume a mirrored queue (entries are deleted only up to what was sent to it), and
 * every connection holds at most one of the server's 32 mirror slots.
 *
 * Built when CMake finds libzmq (Debian: libzmq3-dev); otherwise every function returns
 * -ENOSYS. The library never prints: events go to the options' log callback.
 */
#ifndef SHMSTORE_BRIDGE_H
#define SHMSTORE_BRIDGE_H

#include "../shmstore.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmstore_bridge shmstore_bridge_t;

/* Levels of the log callback. */
#define SHMSTORE_BRIDGE_LOG_ERROR 0
#define SHMSTORE_BRIDGE_LOG_INFO 1
#define SHMSTORE_BRIDGE_LOG_DEBUG 2

/* Options of a server or a mirror; a zeroed struct (or NULL) means all defaults. */
typedef struct shmstore_bridge_options {
    const char *const *objects; /* fnmatch(3) globs of object names (the source's names);
                                   n_objects = 0: every value, queue, ring and table */
    size_t n_objects;
    const char *key_file;       /* this side's key file (shmstore_bridge_keygen): the
                                   server's turns CURVE on; a mirror's is optional (NULL: a
                                   fresh key per run) */
    const char *server_key_file; /* mirror: the server's public key file (".pub"): CURVE on,
                                    and any server without that key is refused */
    const char *const *allow;   /* server: public key files of the mirrors allowed (NULL:
                                   any mirror that knows the server's key) */
    size_t n_allow;
    int public_bind;            /* server: allow endpoints that are not loopback */
    uint32_t hwm;               /* messages queued per peer; 0 = 1000 */
    uint32_t queue_window;      /* server: entries per queue sent and not yet acknowledged;
                                   0 = 4096 */
    uint32_t batch_bytes;       /* small payloads are packed up to this per message;
                                   0 = 256 KiB */
    uint32_t inline_max;        /* payloads up to this are copied into a batch, larger
                                   ones sent zero-copy; 0 = 16 KiB */
    int64_t rescan_ns;          /* how often the server looks for new objects; 0 = 200 ms */
    int64_t peer_timeout_ns;    /* server: a mirror silent this long loses its queues;
                                   0 = 5 s */
    void (*log)(void *arg, int level, const char *msg); /* events; NULL = none */
    void *log_arg;
} shmstore_bridge_options_t;

/* Counters of a bridge (shmstore_bridge_stats()); each side fills its own. */
typedef struct shmstore_bridge_stats {
    uint64_t messages_sent, messages_received;
    uint64_t bytes_sent, bytes_received;     /* payload bytes */
    uint64_t values;          /* versions sent (server) or published (mirror) */
    uint64_t entries;         /* queue entries sent (server) or pushed (mirror) */
    uint64_t entries_acked;   /* server: entries deleted from the source once delivered */
    uint64_t entries_duplicate; /* mirror: resent entries it had pushed already, dropped */
    uint64_t frames;          /* ring frames sent or written */
    uint64_t frames_lost;     /* mirror: positions skipped (lost on the way) */
    uint64_t records;         /* table records sent or appended */
    uint64_t records_lost;    /* server: records overwritten before they were sent */
    uint64_t hwm_deferred;    /* server: sends put off by a full peer */
    uint64_t bad_messages;    /* malformed or unexpected messages dropped */
    uint64_t refused;         /* server: mirrors refused (keys); mirror: failed handshakes */
    uint32_t peers;           /* server: mirrors heard from within peer_timeout_ns;
                                 mirror: servers it has received from */
    uint32_t objects;         /* objects published (server) or written (mirror) */
} shmstore_bridge_stats_t;

/* Whether this build has the bridge (1: built with libzmq) or not (0). */
SHMSTORE_API int shmstore_bridge_available(void);

/* Make a server publishing objects of `s` on `endpoint` ("tcp://127.0.0.1:5555",
 * "ipc:///run/x"): binds now. The store stays the caller's (close it after the bridge).
 * Returns 0, -ENOSYS, -EINVAL (bad endpoint or options, a non-loopback endpoint without
 * public_bind), -EACCES (unreadable or bad key file), -EADDRINUSE, -ENOMEM. */
SHMSTORE_API int shmstore_bridge_serve(shmstore_t *s, const char *endpoint,
                                       const shmstore_bridge_options_t *opt,
                                       shmstore_bridge_t **out);

/* Make a mirror writing into `s` what the servers at endpoints[0..n) publish, the
 * objects of server i named prefixes[i] + the source's name (prefixes may be NULL, or an
 * entry NULL: no prefix). Connects in the background (and reconnects). The options'
 * objects are the mirror's own filter. Returns as shmstore_bridge_serve(). */
SHMSTORE_API int shmstore_bridge_mirror(shmstore_t *s, const char *const *endpoints,
                                        const char *const *prefixes, size_t n,
                                        const shmstore_bridge_options_t *opt,
                                        shmstore_bridge_t **out);

/* Run the bridge's loop in the calling thread until shmstore_bridge_stop() or
 * `timeout_ns` (negative: no limit). Blocks. One thread at a time per bridge. Returns 0
 * (stopped or timed out), -EACCES (a mirror whose every handshake so far failed: the
 * server's key is not the one given, or this mirror's key is not allowed), or an error
 * of the store (SHMSTORE_ECORRUPT, ...). Errors about one object or message are counted
 * and logged, not returned. */
SHMSTORE_API int shmstore_bridge_run(shmstore_bridge_t *b, int64_t timeout_ns);

/* Ask a running (or the next) shmstore_bridge_run() to return soon. Any thread, and
 * async-signal-safe (one write(2)). */
SHMSTORE_API void shmstore_bridge_stop(shmstore_bridge_t *b);

/* The endpoint actually bound (a server on "tcp://127.0.0.1:0" gets a free port) into
 * buf. Returns 0 or -ENOBUFS. */
SHMSTORE_API int shmstore_bridge_endpoint(shmstore_bridge_t *b, char *buf, size_t cap);

/* A snapshot of the counters; safe while another thread runs the bridge. */
SHMSTORE_API void shmstore_bridge_stats(shmstore_bridge_t *b, shmstore_bridge_stats_t *out);

/* Close the sockets, release every view and handle, free the bridge (not running).
 * Accepts NULL. */
SHMSTORE_API void shmstore_bridge_close(shmstore_bridge_t *b);

/* Make a CURVE key pair: `path` gets both keys (mode 0600; give it to
 * options.key_file), `path`.pub the public key (give it to the other side). Files are
 * text: "public = <Z85>" and "secret = <Z85>" lines. Returns 0, -ENOSYS, -EEXIST (either
 * file exists), -errno. */
SHMSTORE_API int shmstore_bridge_keygen(const char *path);

#ifdef __cplusplus
}
#endif
#endif
