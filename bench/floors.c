/* floors.c - the physical limits the cases compare with, where they need code of
 * their own: one uncontended atomic RMW, and a non-temporal copy.
 *
 * Most floors are measured inside their cases, interleaved with the operation they
 * bound, so that both see the same machine: the cache-line round trip (small_*: the
 * same peer process answers bare ping-pong rounds between blocks of operations), the
 * copies (frame_*: a memcpy / NT copy of the same frame in the same loop), the raw
 * futex wake (notify_*). On this VM the round trip between the two virtual CPUs moves
 * between ~30 and ~300 ns as the host migrates them; a floor measured once at the start
 * would make every ratio a lottery.
 */
#include <immintrin.h>
#include <string.h>

#include "bench_internal.h"

double bench__floor_atomic(int iters)
{
    static _Atomic uint64_t counter;
    double rounds[5];
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = bench__now();
        for (int j = 0; j < iters / 5; j++)
            atomic_fetch_add_explicit(&counter, 1, memory_order_acq_rel);
        rounds[r] = (double)(bench__now() - t0) / (iters / 5);
    }
    for (int a = 0; a < 5; a++) /* median of the 5 rounds */
        for (int b = a + 1; b < 5; b++)
            if (rounds[b] < rounds[a]) {
                double t = rounds[a];
                rounds[a] = rounds[b];
                rounds[b] = t;
            }
    return rounds[2];
}

/* Non-temporal copy: 16-byte streaming stores bypass the cache, so a large destination
 * does not evict the working set and needs no read-for-ownership. SSE2 is baseline on
 * x86-64; elsewhere this is memcpy. */
void bench__copy_nt(void *dst, const void *src, size_t len)
{
#if defined(__x86_64__)
    char *d = dst;
    const char *s = src;
    size_t head = (16 - ((uintptr_t)d & 15)) & 15;
    if (head > len)
        head = len;
    memcpy(d, s, head);
    d += head;
    s += head;
    len -= head;
    size_t n = len / 64;
    for (size_t i = 0; i < n; i++) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + 0));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));
        _mm_stream_si128((__m128i *)(void *)(d + 0), a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
        d += 64;
        s += 64;
    }
    _mm_sfence();
    memcpy(d, s, len - n * 64);
#else
    memcpy(dst, src, len);
#endif
}
