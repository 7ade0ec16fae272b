/* bench_internal.h - what the files of bench/ share (not part of the CLI's view).
 *
 * stats.c     clocks, sample sets (median/p99), page-fault and system-call counters
 * harness.c   shared anonymous memory, barriers and hand-off words, child processes,
 *             CPU pinning, unique store names
 * floors.c    floors that need code of their own (atomic RMW, non-temporal copy)
 * cases_*.c   the cases (cases_table.c: tables); bench_main.c the case table, options
 *             and output
 * demo.c      the camera-pipeline demonstration
 *
 * Every process that takes part in a measurement is a fork() of the bench process; the
 * children open the store themselves (handles do not survive fork) and meet the parent
 * at barriers in a MAP_SHARED|MAP_ANONYMOUS page. Nothing ever sleeps to synchronise.
 */
#ifndef SHMSTORE_BENCH_INTERNAL_H
#define SHMSTORE_BENCH_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmstore.h"

/* The camera frame of the demo and of the frame cases: 480x848x3 uint8. */
#define FRAME_H 480u
#define FRAME_W 848u
#define FRAME_C 3u
#define FRAME_LEN ((size_t)FRAME_H * FRAME_W * FRAME_C) /* 1,221,120 bytes */

#define NS_PER_S 1000000000ull

/* ---- stats.c ------------------------------------------------------------------------ */

uint64_t bench__now(void);      /* CLOCK_MONOTONIC, ns (vDSO) */
uint64_t bench__now_real(void); /* CLOCK_REALTIME, ns */
/* Cost of one bench__now() call (median of back-to-back pairs), subtracted from
 * single-operation timings so that a 60 ns op is not reported as 80 ns. */
uint64_t bench__timer_overhead(void);

struct samples {
    uint64_t *v;
    size_t n;
    size_t cap;
    bool is_sorted;
};
int bench__samples_init(struct samples *s, size_t cap); /* 0 or -ENOMEM */
void bench__samples_free(struct samples *s);
void bench__samples_add(struct samples *s, uint64_t x); /* drops samples beyond cap */
/* The p-th percentile (0..100, nearest rank); 0 for an empty set. Sorts the set. */
double bench__pct(struct samples *s, double p);
double bench__mean(const struct samples *s);

/* Minor + major page faults of this process so far (getrusage). */
uint64_t bench__faults(void);
/* Count every system call the library makes, by wrapping each entry of shmstore__os
 * with a counting forwarder; stop restores the table and returns the count. */
void bench__syscalls_start(void);
uint64_t bench__syscalls_stop(void);

/* Fill `len` bytes (multiple of 8) with a pattern that depends on `seed`. */
void bench__fill(void *buf, size_t len, uint64_t seed);

/* ---- harness.c ---------------------------------------------------------------------- */

/* Shared anonymous memory, inherited by forked children; zeroed. NULL on failure. */
void *bench__shared_alloc(size_t len);
void bench__shared_free(void *p, size_t len);

/* A reusable barrier for `n` processes in shared memory (futex based, spins first). */
struct barrier {
    _Atomic uint32_t arrived;
    _Atomic uint32_t gen;
    uint32_t n;
    _Atomic uint32_t is_broken; /* set when a participant gave up: everyone fails */
};
void bench__barrier_init(struct barrier *b, uint32_t n);
/* 0, or -ETIMEDOUT (after timeout_ns, marking the barrier broken) / -EPIPE (broken). */
int bench__barrier_wait(struct barrier *b, int64_t timeout_ns);

/* Spin (then futex-sleep after a while) until *w == val or `deadline` (bench__now()
 * based) passes. Returns 0 or -ETIMEDOUT. */
int bench__wait_eq(_Atomic uint32_t *w, uint32_t val, uint64_t deadline);
/* Spin only (no futex: the setter needs no wake) until *w == val or `deadline`; for
 * hand-offs between two processes pinned to two CPUs. 0 or -ETIMEDOUT. */
int bench__spin_eq(_Atomic uint32_t *w, uint32_t val, uint64_t deadline);
/* Store `val` (release) and wake futex sleepers on `w`. */
void bench__set_wake(_Atomic uint32_t *w, uint32_t val);
/* Raw futex calls on a shared word (for the floors). */
int bench__futex_wait(_Atomic uint32_t *w, uint32_t expected, int64_t timeout_ns);
int bench__futex_wake(_Atomic uint32_t *w, int n);

/* Children. bench__kid_spawn forks; the child dies with its parent (PDEATHSIG),
 * runs fn(arg) and _exit()s with its result. */
struct kids {
    pid_t pid[16];
    int n;
};
pid_t bench__kid_spawn(struct kids *k, int (*fn)(void *arg), void *arg);
/* Wait for every child up to timeout_ns, then SIGKILL the rest and reap them.
 * Returns the number of children that failed (non-zero exit, signal or killed). */
int bench__kids_reap(struct kids *k, int64_t timeout_ns);
/* SIGKILL and reap every child now. */
void bench__kids_kill(struct kids *k);

int bench__ncpu(void);
/* Pin the calling process to one CPU (modulo the CPU count); no-op on one CPU. */
void bench__pin(int cpu);
/* Let the calling process run anywhere again. */
void bench__unpin(void);

/* "<prefix>-<pid>-<counter>": unique per process and call. */
void bench__store_name(char *buf, size_t cap, const char *prefix);
/* Create a fresh store (O_CREATE|O_EXCL); on failure prints why and returns the code. */
int bench__store_create(const char *name, shmstore_t **out);
/* Print "shmstore <cmd>: <what>: <strerror> (<errmsg>)" to stderr; returns err. */
int bench__fail(const char *cmd, const char *what, int err);

/* A store with one value, created fresh for a case; closed and unlinked by
 * bench__fixture_close (which accepts a half-built fixture). */
struct fixture {
    char store[96];
    shmstore_t *s;
    shmstore_value_t *v;
};
int bench__fixture_open(struct fixture *f, const char *prefix, const char *value);
void bench__fixture_close(struct fixture *f);
/* In a child: open the store and the value by name. Prints why on failure. */
int bench__attach(const char *store, const char *value, shmstore_t **s, shmstore_value_t **v);
/* The descriptor of a camera frame: array "|u1" (480, 848, 3). */
void bench__frame_datum(shmstore_datum_t *d);
/* Page-aligned private buffer, touched (no first-touch faults later); free with free(). */
void *bench__buf(size_t len);

/* Wait until process `pid` sleeps in a futex (state S, wchan futex*), or deadline.
 * Returns 0 or -ETIMEDOUT. Used only outside timed regions. */
int bench__wait_asleep(pid_t pid, uint64_t deadline);

/* ---- floors.c ----------------------------------------------------------------------- */

/* A copy with non-temporal stores (the other candidate floor of a large put). */
void bench__copy_nt(void *dst, const void *src, size_t len);
/* One uncontended atomic read-modify-write (fetch_add), ns. */
double bench__floor_atomic(int iters);

/* ---- results (bench_main.c) --------------------------------------------------------- */

struct bench_ctx {
    bool is_quick;
    bool is_json;
    int n_failed;
};

struct bench_row {
    const char *name;
    char label[32]; /* table only: name plus variant ("steady_faults/put"); "" = name */
    uint64_t bytes;
    double median_ns;
    double p99_ns;
    double p999_ns;    /* 0: not reported (latency cases report it: the report's tails) */
    double floor_ns;   /* < 0: none (JSON null) */
    double ratio;      /* < 0: none (JSON null) */
    const char *floor_what;
    const char *target; /* the product owner's target, shown as information */
    char extra_json[512]; /* ",\"k\":v..." appended to the JSON object */
    char extra_text[256]; /* shown after the row in the table */
};
void bench__row_init(struct bench_row *r, const char *name, uint64_t bytes);
void bench__emit(struct bench_ctx *c, const struct bench_row *r);

/* ---- the cases: each returns 0 or a negative code (already reported) --------------- */

int bench__case_small(struct bench_ctx *c, const char *name);
int bench__case_frame_put_reader(struct bench_ctx *c, const char *name);
int bench__case_frame_get(struct bench_ctx *c, const char *name);
int bench__case_view(struct bench_ctx *c, const char *name);
int bench__case_writer_readers(struct bench_ctx *c, const char *name);
int bench__case_steady_faults(struct bench_ctx *c, const char *name);
int bench__case_notify(struct bench_ctx *c, const char *name);
int bench__case_queue_small(struct bench_ctx *c, const char *name);
int bench__case_queue_large(struct bench_ctx *c, const char *name);
int bench__case_queue_wake(struct bench_ctx *c, const char *name);
int bench__case_table_append(struct bench_ctx *c, const char *name);
int bench__case_table_sample(struct bench_ctx *c, const char *name);
int bench__case_table_small(struct bench_ctx *c, const char *name);
int bench__case_table_prio(struct bench_ctx *c, const char *name);
int bench__case_ring_copy(struct bench_ctx *c, const char *name);
int bench__case_ring_wake(struct bench_ctx *c, const char *name);

#endif
