/* table_payload.h - checksummed records for the table tests: a record is (tag, data,
 * sum), its data bytes and sum derived from the tag, so a reader can tell a whole record
 * from a torn one (two writers' bytes mixed) without knowing what was written. */
#ifndef SHMSTORE_TEST_TABLE_PAYLOAD_H
#define SHMSTORE_TEST_TABLE_PAYLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "shmstore.h"

static inline uint64_t tp_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The schema: tag <u8, data |u1 (data_len,), sum <u8. */
static inline void tp_schema(shmstore_table_field_t f[3], uint64_t data_len)
{
    memset(f, 0, 3 * sizeof(*f));
    strcpy(f[0].name, "tag");
    strcpy(f[0].dtype, "<u8");
    strcpy(f[1].name, "data");
    strcpy(f[1].dtype, "|u1");
    f[1].ndim = 1;
    f[1].shape[0] = data_len;
    strcpy(f[2].name, "sum");
    strcpy(f[2].dtype, "<u8");
}

/* Fill row j of the columns with the record of `tag`. */
static inline void tp_fill(uint64_t *tags, uint8_t *data, uint64_t *sums, uint64_t data_len,
                           size_t j, uint64_t tag)
{
    uint64_t h = tp_mix(tag);
    uint8_t *d = data + j * data_len;
    for (uint64_t i = 0; i < data_len; i++)
        d[i] = (uint8_t)((h >> (8 * (i % 8))) ^ i);
    tags[j] = tag;
    sums[j] = tp_mix(h);
}

/* Is row j a whole record? */
static inline bool tp_ok(const uint64_t *tags, const uint8_t *data, const uint64_t *sums,
                         uint64_t data_len, size_t j)
{
    uint64_t h = tp_mix(tags[j]);
    const uint8_t *d = data + j * data_len;
    for (uint64_t i = 0; i < data_len; i++)
        if (d[i] != (uint8_t)((h >> (8 * (i % 8))) ^ i))
            return false;
    return sums[j] == tp_mix(h);
}

#endif
