/* copy.c - copying payloads into the store.
 *
 * A writer copying into a version block that no reader will touch for a while gains
 * nothing from pulling the destination into its cache: once the value's rotating blocks
 * no longer fit in the last-level cache, non-temporal stores (no read-for-ownership, no
 * eviction of the reader's lines) are much faster. Measured on the 2-core AMD EPYC VM
 * this project runs on (32 MiB L3), copying into 4 rotating blocks of /dev/shm:
 *     1.2 MB: memcpy 43 GB/s, non-temporal 26 GB/s
 *     4 MiB:  memcpy 14 GB/s, non-temporal 26 GB/s
 *     64 MiB: memcpy  9 GB/s, non-temporal 16 GB/s
 * glibc would switch by itself above its own threshold, but derives it from the cache
 * size the VM reports (320 MB here), so it never does. Hence our own threshold. */
#include <string.h>

#include "internal.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#define NT_COPY_MIN (4u << 20)
/* For a destination the caller knows is cold and will not be read back soon (a slot of
 * a ring much larger than the cache), streaming pays from a few pages on. */
#define NT_COLD_MIN (4u << 10)

#if defined(__x86_64__)
/* Non-temporal copy of n bytes into a 16-aligned dst, fenced. */
static void copy_nt(void *dst, const void *src, size_t n)
{
    {
        __m128i *d = dst;
        const __m128i *s = src;
        size_t i, blocks = n / 64;
        for (i = 0; i < blocks; i++, d += 4, s += 4) {
            __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
            __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
            _mm_stream_si128(d, a);
            _mm_stream_si128(d + 1, b);
            _mm_stream_si128(d + 2, c);
            _mm_stream_si128(d + 3, e);
        }
        /* Streaming stores are weakly ordered: fence before the release that publishes. */
        _mm_sfence();
        memcpy(d, s, n - blocks * 64);
    }
}
#endif

/* Stream copies of at least `nt_min` bytes into a 16-aligned dst, memcpy the others. */
static inline void copy_from(void *dst, const void *src, size_t n, size_t nt_min)
{
#if defined(__x86_64__)
    if (n >= nt_min && ((uintptr_t)dst & 15) == 0) {
        copy_nt(dst, src, n);
        return;
    }
#else
    (void)nt_min;
#endif
    memcpy(dst, src, n);
}

void shmstore__copy_in(void *dst, const void *src, size_t n)
{
    copy_from(dst, src, n, NT_COPY_MIN);
}

void shmstore__copy_in_cold(void *dst, const void *src, size_t n)
{
    copy_from(dst, src, n, NT_COLD_MIN);
}

SHMSTORE__RACY void shmstore__seqlock_copy(void *dst, const void *src, size_t n)
{
#ifdef SHMSTORE__TSAN
    /* memcpy would be intercepted (and instrumented) by ThreadSanitizer; a volatile loop
     * is not turned back into memcpy by the compiler. Only in TSan builds. */
    const volatile unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
#else
    memcpy(dst, src, n);
#endif
}
