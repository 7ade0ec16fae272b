/* bridge_bench.h - what the bridge benchmark's two programs (zmq_floor.c, bridge_probe.c)
 * share: their clocks and how they rank latencies. Header-only: each is one file. */
#ifndef SHMSTORE_BRIDGE_BENCH_H
#define SHMSTORE_BRIDGE_BENCH_H

#include <stdint.h>
#include <time.h>

/* CLOCK_REALTIME: what mtimes and the floor's in-message stamps use (one machine: one
 * clock for both ends). */
static inline uint64_t bb_now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t bb_now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int bb_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The p-quantile (nearest rank) of sorted nanoseconds v[0..n), in microseconds. */
static inline double bb_pct_us(const uint64_t *v, uint64_t n, double p)
{
    return n ? (double)v[(uint64_t)(p * (double)(n - 1) + 0.5)] / 1000.0 : 0.0;
}

#endif
