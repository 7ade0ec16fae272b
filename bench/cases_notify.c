/* cases_notify.c - how long from a put until a waiting reader returns from wait.
 *
 * Two processes pinned to two CPUs. In round k the waiter announces it is about to
 * wait, then waits; the waker takes a CLOCK_MONOTONIC stamp t0 right before it acts and
 * the waiter a stamp t1 right after it returns (the TSC-based clock is the same on both
 * CPUs). Latency = t1 - t0, one way.
 *   - library rounds: the waker does shmstore_value_put() of 8 bytes; the waiter is in
 *     shmstore_value_wait(). notify_spin acts 2 µs after the announcement, so the
 *     waiter is in its spin phase; notify_sleep first waits until /proc says the waiter
 *     sleeps in a futex (state S, wchan futex_*), outside the timed region.
 *   - raw futex rounds (the floor), interleaved with the library rounds: the waker
 *     stores a new value in a futex word and calls FUTEX_WAKE on a waiter confirmed
 *     asleep in FUTEX_WAIT: the kernel's own one-way wake-up latency, measured the
 *     same way.
 *   - raw spin rounds: the waiter spins on the word, the waker stores it 2 µs after
 *     the announcement: a one-way cache-line hand-off, the floor of a spinning wait
 *     (reported next to the row; the row's floor is the futex, as for notify_sleep).
 * The system calls each side makes through the library are counted (shmstore__os), to
 * show that a spinning waiter costs the writer no system call.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "bench_internal.h"

struct nt_shared {
    alignas(64) _Atomic uint32_t ready; /* waiter: k + 1 when about to wait in round k */
    alignas(64) _Atomic uint32_t done;  /* waiter: k + 1 when it returned */
    alignas(64) _Atomic uint32_t fword; /* the raw futex word */
    alignas(64) _Atomic uint64_t t0;    /* waker's stamp, written before it acts */
    _Atomic uint64_t t1;                /* waiter's stamp */
    _Atomic uint64_t waiter_sys;        /* library syscalls of the waiter, library rounds */
    alignas(64) struct barrier bar;
    char store[96];
    int n_rounds;
};

enum { R_LIB, R_FUTEX, R_SPIN }; /* round types, in turn */

static int round_type(int k)
{
    return k % 3;
}

static int waiter_main(void *arg)
{
    struct nt_shared *sh = arg;
    shmstore_t *s = NULL;
    shmstore_value_t *v = NULL;
    uint64_t version = 0, n_sys = 0;
    bench__pin(1);
    int rc = bench__attach(sh->store, "bench/v", &s, &v);
    if (rc == 0)
        rc = shmstore_value_version(v, &version);
    int brc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    for (int k = 0; k < sh->n_rounds && rc == 0 && brc == 0; k++) {
        int type = round_type(k);
        if (type != R_LIB) {
            uint32_t cur = atomic_load_explicit(&sh->fword, memory_order_acquire);
            atomic_store_explicit(&sh->ready, (uint32_t)k + 1, memory_order_release);
            if (type == R_SPIN)
                rc = bench__spin_eq(&sh->fword, (uint32_t)k + 1, bench__now() + 5 * NS_PER_S);
            while (type == R_FUTEX &&
                   atomic_load_explicit(&sh->fword, memory_order_acquire) == cur) {
                rc = bench__futex_wait(&sh->fword, cur, 5 * (int64_t)NS_PER_S);
                if (rc == -ETIMEDOUT)
                    break;
                rc = 0;
            }
        } else {
            bench__syscalls_start();
            atomic_store_explicit(&sh->ready, (uint32_t)k + 1, memory_order_release);
            rc = shmstore_value_wait(v, version, 5 * (int64_t)NS_PER_S, &version);
            n_sys += bench__syscalls_stop();
        }
        atomic_store_explicit(&sh->t1, bench__now(), memory_order_relaxed);
        bench__set_wake(&sh->done, (uint32_t)k + 1);
    }
    atomic_store(&sh->waiter_sys, n_sys);
    if (rc != 0)
        bench__fail("bench", "waiter", rc);
    shmstore_value_close(v);
    shmstore_close(s);
    return rc != 0 || brc != 0;
}

int bench__case_notify(struct bench_ctx *c, const char *name)
{
    bool is_sleep = strcmp(name, "notify_sleep") == 0;
    int n = c->is_quick ? 300 : 3000, n_warm = 30;
    struct fixture f = {0};
    struct kids kids = {0};
    struct samples slib = {0}, sraw = {0}, sspin = {0};
    struct nt_shared *sh = bench__shared_alloc(sizeof *sh);
    int rc = (sh && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sraw, (size_t)n) == 0 &&
              bench__samples_init(&sspin, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    int64_t x = 0;
    if (rc == 0)
        rc = bench__fixture_open(&f, "bench-notify", "bench/v");
    if (rc == 0)
        rc = shmstore_value_put(f.v, NULL, &x, sizeof x, 0);
    pid_t waiter = 0;
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", f.store);
        sh->n_rounds = n + n_warm;
        bench__barrier_init(&sh->bar, 2);
        waiter = bench__kid_spawn(&kids, waiter_main, sh);
        if (waiter < 0)
            rc = (int)waiter;
    }
    bench__pin(0);
    if (rc == 0)
        rc = bench__barrier_wait(&sh->bar, 20 * (int64_t)NS_PER_S);
    uint64_t deadline = bench__now() + 300 * NS_PER_S, waker_sys = 0;
    for (int k = 0; k < n + n_warm && rc == 0; k++) {
        int type = round_type(k);
        if ((rc = bench__spin_eq(&sh->ready, (uint32_t)k + 1, deadline)) != 0)
            break;
        if (type == R_FUTEX || (type == R_LIB && is_sleep)) {
            rc = bench__wait_asleep(waiter, bench__now() + 5 * NS_PER_S);
            if (rc != 0) {
                fprintf(stderr, "shmstore bench: %s: the waiter never slept in a futex\n",
                        name);
                break;
            }
        } else {
            uint64_t t_act = bench__now() + 2000; /* let the waiter enter its spin */
            while (bench__now() < t_act)
                ;
        }
        uint64_t t0 = bench__now();
        atomic_store_explicit(&sh->t0, t0, memory_order_release);
        if (type == R_FUTEX) {
            atomic_store_explicit(&sh->fword, (uint32_t)k + 1, memory_order_release);
            bench__futex_wake(&sh->fword, 1);
        } else if (type == R_SPIN) {
            atomic_store_explicit(&sh->fword, (uint32_t)k + 1, memory_order_release);
        } else {
            x++;
            bench__syscalls_start();
            rc = shmstore_value_put(f.v, NULL, &x, sizeof x, 0);
            waker_sys += bench__syscalls_stop();
        }
        if (rc == 0)
            rc = bench__spin_eq(&sh->done, (uint32_t)k + 1, deadline);
        uint64_t t1 = atomic_load_explicit(&sh->t1, memory_order_relaxed);
        if (rc == 0 && k >= n_warm)
            bench__samples_add(type == R_FUTEX  ? &sraw
                               : type == R_SPIN ? &sspin
                                                : &slib,
                               t1 > t0 ? t1 - t0 : 0);
    }
    bench__unpin();
    if (bench__kids_reap(&kids, 10 * (int64_t)NS_PER_S) != 0 && rc == 0)
        rc = -ECHILD;
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        struct bench_row r;
        int n_lib = (n + n_warm + 2) / 3;
        bench__row_init(&r, name, 8);
        r.median_ns = bench__pct(&slib, 50);
        r.p99_ns = bench__pct(&slib, 99);
        r.p999_ns = bench__pct(&slib, 99.9);
        r.floor_ns = bench__pct(&sraw, 50);
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = "raw futex wake, one way";
        r.target = is_sleep ? "<= 1.25x" : NULL;
        double w_sys = (double)atomic_load(&sh->waiter_sys) / n_lib;
        double p_sys = (double)waker_sys / n_lib;
        snprintf(r.extra_json, sizeof r.extra_json,
                 ",\"raw_futex_p99_ns\":%.0f,\"spin_handoff_ns\":%.1f,"
                 "\"waiter_syscalls_per_wait\":%.3f,\"writer_syscalls_per_put\":%.3f",
                 bench__pct(&sraw, 99), bench__pct(&sspin, 50), w_sys, p_sys);
        snprintf(r.extra_text, sizeof r.extra_text,
                 "%s; syscalls: waiter %.2f/wait, writer %.2f/put; raw spin hand-off %.0f ns",
                 is_sleep ? "waiter asleep in its futex" : "waiter spinning (put 2 us after)",
                 w_sys, p_sys, bench__pct(&sspin, 50));
        bench__emit(c, &r);
    }
    bench__fixture_close(&f);
    bench__samples_free(&slib);
    bench__samples_free(&sraw);
    bench__samples_free(&sspin);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}
