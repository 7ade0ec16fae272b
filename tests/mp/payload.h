/* payload.h - self-checking payloads for the multi-process, crash and fault tests.
 *
 * Every payload says who wrote it and carries a checksum over every one of its bytes, so
 * a reader can tell from the bytes alone whether it got one whole version or a mix:
 *
 *   len >= 24:  [0,8)   tag = writer << 48 | seq (seq < 2^48)
 *               [8,16)  hash of len, the tag and every byte of [16, len)
 *               [16,len) body: 64-bit words derived from (tag, word index), so two
 *                        versions never share body bytes at the same place
 *   8 <= len < 24: [0,4) writer << 24 | seq (24 bits each side), [4,8) 32-bit hash of
 *               len, those 4 bytes and the rest; [8,len) body as above.
 *
 * pl_check() compares every body byte with what the header says it must be and
 * recomputes the hash over all of them: a torn read (bytes from two versions) fails
 * either way.
 * Used by tests/mp, tests/crash and tests/fault (header-only, all static).
 */
#ifndef SHMSTORE_TEST_PAYLOAD_H
#define SHMSTORE_TEST_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PL_MIN 8u
#define PL_SEQ_MASK ((1ull << 48) - 1)

static inline uint64_t pl_mix(uint64_t x)
{
    /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Body word `j` of the payload whose header tag is `tag`. Cheap (a multiply and an xor)
 * so that megabyte payloads are made and checked at close to memory speed. */
static inline uint64_t pl_word(uint64_t seed, uint64_t j)
{
    return seed ^ (j * 0x9e3779b97f4a7c15ull);
}

/* Unaligned, aliasing-safe 64-bit access (a plain load/store even at -O0). */
typedef uint64_t __attribute__((may_alias, aligned(1))) pl_u64;

/* One pass over a body of `n` bytes: writes it (`fill`) or compares it with what it must
 * be, and hashes it either way. Four hash lanes keep the multiply chain short. Returns
 * false (check mode) at the first byte that differs. */
static inline bool pl_body(unsigned char *wp, const unsigned char *rp, size_t n, uint64_t seed,
                           uint64_t h0, uint64_t *hash)
{
    uint64_t h[4] = {h0, h0 ^ 0x1111, h0 ^ 0x2222, h0 ^ 0x3333};
    size_t n_words = n / 8, j = 0;
    for (; j < n_words; j++) {
        uint64_t w = pl_word(seed, j);
        if (wp)
            *(pl_u64 *)(wp + 8 * j) = w;
        else if (*(const pl_u64 *)(rp + 8 * j) != w)
            return false;
        h[j & 3] = (h[j & 3] ^ w) * 0x100000001b3ull;
    }
    if (n % 8) {
        uint64_t w = pl_word(seed, j), got = 0;
        if (wp)
            memcpy(wp + 8 * j, &w, n % 8);
        else {
            memcpy(&got, rp + 8 * j, n % 8);
            if (memcmp(&got, &w, n % 8) != 0)
                return false;
        }
        memcpy(&got, &w, n % 8);
        h[0] = (h[0] ^ got ^ 0xff) * 0x100000001b3ull;
    }
    *hash = pl_mix(h[0] ^ pl_mix(h[1]) ^ pl_mix(h[2] + 1) ^ pl_mix(h[3] + 2));
    return true;
}

/* Fill `len` (>= PL_MIN) bytes at `buf` as version `seq` of writer `writer`. */
static inline void pl_fill(void *buf, size_t len, uint32_t writer, uint64_t seq)
{
    unsigned char *p = buf;
    uint64_t h = 0;
    if (len >= 24) {
        uint64_t tag = (uint64_t)writer << 48 | (seq & PL_SEQ_MASK);
        (void)pl_body(p + 16, NULL, len - 16, pl_mix(tag ^ 0x5eed), pl_mix(len) ^ tag, &h);
        memcpy(p, &tag, 8);
        memcpy(p + 8, &h, 8);
    } else {
        uint32_t tag = (writer & 0xffu) << 24 | (uint32_t)(seq & 0xffffffu);
        (void)pl_body(p + 8, NULL, len - 8, pl_mix(tag ^ 0x5eed), pl_mix(len) ^ tag, &h);
        uint32_t h32 = (uint32_t)h;
        memcpy(p, &tag, 4);
        memcpy(p + 4, &h32, 4);
    }
}

/* Check a payload: the hash in its header covers every byte, and every body byte is what
 * the header's tag says. On success report its writer and sequence number (may be NULL).
 * Short payloads carry only 24 bits of each. */
static inline bool pl_check(const void *buf, size_t len, uint32_t *writer, uint64_t *seq)
{
    const unsigned char *p = buf;
    uint64_t h = 0;
    if (buf == NULL || len < PL_MIN)
        return false;
    if (len >= 24) {
        uint64_t tag, want;
        memcpy(&tag, p, 8);
        memcpy(&want, p + 8, 8);
        if (!pl_body(NULL, p + 16, len - 16, pl_mix(tag ^ 0x5eed), pl_mix(len) ^ tag, &h) ||
            h != want)
            return false;
        if (writer)
            *writer = (uint32_t)(tag >> 48);
        if (seq)
            *seq = tag & PL_SEQ_MASK;
    } else {
        uint32_t tag, want;
        memcpy(&tag, p, 4);
        memcpy(&want, p + 4, 4);
        if (!pl_body(NULL, p + 8, len - 8, pl_mix(tag ^ 0x5eed), pl_mix(len) ^ tag, &h) ||
            (uint32_t)h != want)
            return false;
        if (writer)
            *writer = tag >> 24;
        if (seq)
            *seq = tag & 0xffffffu;
    }
    return true;
}

/* Sanitizer builds run fewer iterations: T_SCALE(n) is n, n/2 under ASan, n/8 under
 * TSan (never below 1). */
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(T_TSAN)
#define T_SCALE(n) ((n) / 8 > 0 ? (n) / 8 : 1)
#elif defined(T_ASAN)
#define T_SCALE(n) ((n) / 2 > 0 ? (n) / 2 : 1)
#else
#define T_SCALE(n) (n)
#endif

/* A small, fast, seedable PRNG for test choices (xorshift64*). */
static inline uint64_t pl_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

#endif
