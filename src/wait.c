/* wait.c - spin-then-futex waits, the one wait every kind uses.
 *
 * Theory of operation
 * - A waiter first polls its condition in a short spin: a peer that acts within the
 *   budget is caught with no system call on either side.
 * - Then it registers: it records (object, which) in its process slot and sets its
 *   slot's bit in the queue's mask (proc.c; threads of one process share the bit), and
 *   loops: read the futex word, poll, sleep on the word unless it changed. A waker stores
 *   the state (seq_cst), bumps the word and reads the mask (seq_cst): the waiter's bit
 *   store then state load and the waker's state store then mask load cannot both miss
 *   each other, so a waiter never sleeps through a change, and a waker with nobody
 *   asleep makes no system call.
 * - A process that dies registered leaves its bit set; recovery clears it (the record
 *   names the object and which mask, through the kind's `waiters` operation). A stale bit
 *   only costs wakers a useless syscall until then.
 * - A process with all SLOT_WAITS_MAX registrations in use still waits, in short
 *   slices: nobody wakes it.
 */
#include <errno.h>
#include <limits.h>

#include "internal.h"

/* Spin budget before sleeping: long enough to catch a peer acting at kHz rates without
 * a futex round trip (~5-10 us here), short enough not to steal a core for long on a
 * 2-core machine. */
#define WAIT_SPIN_NS 20000
/* A waiter that could not register is not woken: it re-checks at this interval. */
#define UNREGISTERED_SLICE_NS (1000 * 1000)

bool shmstore__has_waiters(_Atomic uint64_t *mask)
{
    for (unsigned i = 0; i < PIN_WORDS; i++)
        if (atomic_load_explicit(&mask[i], memory_order_seq_cst))
            return true;
    return false;
}

unsigned shmstore__waiters_count(_Atomic uint64_t *mask)
{
    unsigned n = 0;
    for (unsigned i = 0; i < PIN_WORDS; i++)
        n += (unsigned)__builtin_popcountll(atomic_load_explicit(&mask[i], memory_order_relaxed));
    return n;
}

void shmstore__wake(_Atomic uint32_t *word, _Atomic uint64_t *mask)
{
    /* The word moves only when someone may sleep on it: a waiter reads it after setting
     * its bit, so a waker that sees no bit owes it nothing (the waiter's poll, after its
     * bit, sees the state stored before the bit was read). One RMW less per operation on
     * a line every waker shares. */
    if (shmstore__has_waiters(mask)) {
        atomic_fetch_add_explicit(word, 1, memory_order_seq_cst);
        shmstore__os.futex_wake(word, INT_MAX);
    }
}

int shmstore__wait(shmstore_t *s, const struct shmstore__waitq *q, int64_t timeout_ns,
                   int (*poll)(void *arg), int64_t slice_ns, int (*on_slice)(void *arg),
                   void *arg)
{
    int r;
    if ((r = poll(arg)) != 0 || timeout_ns == 0) /* the common case reads no clock */
        return r ? r : -ETIMEDOUT;
    uint64_t start = shmstore__os_now_mono();
    for (unsigned i = 1;; i++) {
        if ((r = poll(arg)) != 0)
            return r;
        if ((i & 63) == 63) {
            uint64_t spent = shmstore__os_now_mono() - start;
            if (spent > WAIT_SPIN_NS || (timeout_ns > 0 && spent >= (uint64_t)timeout_ns))
                break;
        }
        shmstore__os_cpu_relax();
    }
    int reg = shmstore__proc_wait_reg(s, q->obj_off | q->which, q->mask);
    for (;;) {
        uint32_t f = atomic_load_explicit(q->word, memory_order_seq_cst);
        if ((r = poll(arg)) != 0)
            break;
        int64_t left = -1;
        if (timeout_ns > 0) {
            uint64_t spent = shmstore__os_now_mono() - start;
            if (spent >= (uint64_t)timeout_ns) {
                r = -ETIMEDOUT;
                break;
            }
            left = timeout_ns - (int64_t)spent;
        }
        int64_t slice = reg < 0 ? UNREGISTERED_SLICE_NS : slice_ns;
        bool sliced = slice > 0 && (left < 0 || left > slice);
        if (sliced)
            left = slice;
        r = shmstore__os.futex_wait(q->word, f, left);
        if (r == -EINTR)
            break;
        if (r == -ETIMEDOUT && sliced && on_slice && (r = on_slice(arg)) < 0)
            break;
        r = 0;
    }
    shmstore__proc_wait_unreg(s, reg, q->mask);
    return r;
}
