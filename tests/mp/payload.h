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
 * pl_check() recomputes the hash and also compares every body byte with what the header
 * says it must be: a torn read (bytes from two versions) fails either way.
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

static inline uint64_t pl_hash(uint64_t h, const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return pl_mix(h);
}

static inline void pl_body_fill(unsigned char *p, size_t n, uint64_t seed)
{
    size_t i = 0;
    uint64_t j = 0;
    for (; i + 8 <= n; i += 8, j++) {
        uint64_t w = pl_word(seed, j);
        memcpy(p + i, &w, 8);
    }
    if (i < n) {
        uint64_t w = pl_word(seed, j);
        size_t rest = n - i < 8 ? n - i : 8; /* always < 8; said so for gcc -O3 */
        memcpy(p + i, &w, rest);
    }
}

static inline bool pl_body_ok(const unsigned char *p, size_t n, uint64_t seed)
{
    size_t i = 0;
    uint64_t j = 0;
    for (; i + 8 <= n; i += 8, j++) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != pl_word(seed, j))
            return false;
    }
    if (i < n) {
        uint64_t w = pl_word(seed, j), got = 0;
        memcpy(&got, p + i, n - i);
        if (memcmp(&got, &w, n - i) != 0)
            return false;
    }
    return true;
}

/* Fill `len` (>= PL_MIN) bytes at `buf` as version `seq` of writer `writer`. */
static inline void pl_fill(void *buf, size_t len, uint32_t writer, uint64_t seq)
{
    unsigned char *p = buf;
    if (len >= 24) {
        uint64_t tag = (uint64_t)writer << 48 | (seq & PL_SEQ_MASK);
        uint64_t seed = pl_mix(tag ^ 0x5eed);
        pl_body_fill(p + 16, len - 16, seed);
        uint64_t h = pl_hash(pl_mix(len) ^ tag, p + 16, len - 16);
        memcpy(p, &tag, 8);
        memcpy(p + 8, &h, 8);
    } else {
        uint32_t tag = (writer & 0xffu) << 24 | (uint32_t)(seq & 0xffffffu);
        uint64_t seed = pl_mix(tag ^ 0x5eed);
        pl_body_fill(p + 8, len - 8, seed);
        uint32_t h = (uint32_t)pl_hash(pl_mix(len) ^ tag, p + 8, len - 8);
        memcpy(p, &tag, 4);
        memcpy(p + 4, &h, 4);
    }
}

/* Check a payload; on success report its writer and sequence number (may be NULL).
 * Short payloads carry only 24 bits of each. */
static inline bool pl_check(const void *buf, size_t len, uint32_t *writer, uint64_t *seq)
{
    const unsigned char *p = buf;
    if (buf == NULL || len < PL_MIN)
        return false;
    if (len >= 24) {
        uint64_t tag, h;
        memcpy(&tag, p, 8);
        memcpy(&h, p + 8, 8);
        if (pl_hash(pl_mix(len) ^ tag, p + 16, len - 16) != h)
            return false;
        if (!pl_body_ok(p + 16, len - 16, pl_mix(tag ^ 0x5eed)))
            return false;
        if (writer)
            *writer = (uint32_t)(tag >> 48);
        if (seq)
            *seq = tag & PL_SEQ_MASK;
    } else {
        uint32_t tag, h;
        memcpy(&tag, p, 4);
        memcpy(&h, p + 4, 4);
        if ((uint32_t)pl_hash(pl_mix(len) ^ tag, p + 8, len - 8) != h)
            return false;
        if (!pl_body_ok(p + 8, len - 8, pl_mix(tag ^ 0x5eed)))
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
