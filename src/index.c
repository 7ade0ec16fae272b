/* index.c - the name index: an open-addressing hash table of (hash, object offset).
 *
 * Theory of operation
 * - The table lives in one INDEX block whose offset and size are in the store header.
 *   Entries hold the 64-bit hash of the name and the offset of the object's OBJ block;
 *   the name itself is compared in the object header. off 0 = empty, INDEX_TOMB =
 *   deleted. Linear probing; the table doubles (a new block, entries re-inserted, the
 *   header switched, the old block freed) when live + tombstones pass 3/4.
 * - Lookups are for opening objects, not for hot paths, so every function here runs with
 *   the metadata mutex held: the index never needs its own concurrency protocol. A
 *   process that dies mid-rehash leaves an unreferenced INDEX block, which the repair
 *   pass frees; the header's table is always complete.
 * - Nothing read from the table is trusted: offsets are validated by shmstore__obj(),
 *   probe sequences are bounded by the table size.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "internal.h"

#define INDEX_MIN_CAP 64u

/* FNV-1a, then a final avalanche so that linear probing gets well-spread low bits. */
uint64_t shmstore__hash(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h | 2; /* never 0 or 1, so a zeroed entry is never a match */
}

bool shmstore__utf8_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        /* Reject overlong forms, surrogates and code points past U+10FFFF. */
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += k + 1;
    }
    return true;
}

int shmstore__name_check(const char *name, size_t *len)
{
    if (!name)
        return shmstore__seterr(SHMSTORE_ENAME, "object name is NULL");
    size_t n = strnlen(name, OBJ_NAME_MAX + 1);
    if (n == 0)
        return shmstore__seterr(SHMSTORE_ENAME, "object name is empty");
    if (n > OBJ_NAME_MAX)
        return shmstore__seterr(SHMSTORE_ENAME, "object name is longer than %u bytes",
                                OBJ_NAME_MAX);
    if (!shmstore__utf8_valid((const unsigned char *)name, n))
        return shmstore__seterr(SHMSTORE_ENAME, "object name is not valid UTF-8");
    *len = n;
    return 0;
}

struct obj_hdr *shmstore__obj(const shmstore_t *s, uint64_t off)
{
    struct blk_hdr *b = shmstore__blk(s, off);
    if (!b || b->tag != BLK_TAG_OBJ || shmstore__blk_payload_cap(b) < sizeof(struct obj_hdr))
        return NULL;
    struct obj_hdr *o = (struct obj_hdr *)((char *)b + BLK_HDR_SIZE);
    const struct shmstore__kind_ops *k;
    if (o->magic != OBJ_MAGIC || o->name_len == 0 || o->name_len > OBJ_NAME_MAX ||
        !(k = shmstore__kind(o->kind)) ||
        shmstore__blk_payload_cap(b) < sizeof(struct obj_hdr) + k->body_len)
        return NULL; /* a known kind, whose fixed body fits the block too */
    return o;
}

/* The table and its size. The size is kept in the INDEX block itself (blk_hdr.owner), so
 * that switching to a rebuilt table is the single store of index_off: a crash can never
 * pair a table with the size of another. (store_hdr.index_cap mirrors it for display.) */
static struct index_ent *table(shmstore_t *s, uint64_t *cap)
{
    struct store_hdr *h = s->hdr;
    *cap = 0;
    if (!h->index_off)
        return NULL;
    struct blk_hdr *b = shmstore__blk(s, h->index_off);
    if (!b || b->tag != BLK_TAG_INDEX)
        return NULL;
    uint64_t n = b->owner;
    if (n == 0 || (n & (n - 1)) || shmstore__blk_payload_cap(b) / sizeof(struct index_ent) < n)
        return NULL;
    *cap = n;
    return (struct index_ent *)((char *)b + BLK_HDR_SIZE);
}

int shmstore__index_find(shmstore_t *s, const char *name, size_t len, uint64_t *obj_off)
{
    uint64_t cap, hash = shmstore__hash(name, len);
    struct index_ent *t = table(s, &cap);
    if (!t) {
        if (s->hdr->index_off)
            return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': name index is corrupt",
                                    s->name);
        return -ENOENT;
    }
    for (uint64_t i = hash & (cap - 1), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
        uint64_t off = t[i].off;
        if (off == 0)
            return -ENOENT;
        if (off == INDEX_TOMB || t[i].hash != hash)
            continue;
        struct obj_hdr *o = shmstore__obj(s, off);
        if (!o)
            return shmstore__seterr(SHMSTORE_ECORRUPT,
                                    "store '%s': index entry %" PRIu64 " points at no object",
                                    s->name, i);
        if (o->name_len == len && memcmp(o->name, name, len) == 0) {
            *obj_off = off;
            return 0;
        }
    }
    return -ENOENT;
}

/* The first empty or deleted entry on `hash`'s probe sequence, or -1 if none (the table
 * is full: only a corrupt table can be). */
static int64_t free_entry(const struct index_ent *t, uint64_t cap, uint64_t hash)
{
    for (uint64_t i = hash & (cap - 1), n = 0; n < cap; i = (i + 1) & (cap - 1), n++)
        if (t[i].off == 0 || t[i].off == INDEX_TOMB)
            return (int64_t)i;
    return -1;
}

static int rehash(shmstore_t *s, uint64_t new_cap)
{
    struct store_hdr *h = s->hdr;
    uint64_t old_cap, blk;
    struct index_ent *old = table(s, &old_cap);
    if (!old && h->index_off)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': name index is corrupt", s->name);
    int r = shmstore__alloc(s, new_cap * sizeof(struct index_ent), BLK_TAG_INDEX, new_cap, &blk);
    if (r < 0)
        return r;
    struct index_ent *t = (struct index_ent *)((char *)s->hdr + blk + BLK_HDR_SIZE);
    memset(t, 0, new_cap * sizeof(*t));
    for (uint64_t i = 0; old && i < old_cap; i++) {
        int64_t j = old[i].off > INDEX_TOMB ? free_entry(t, new_cap, old[i].hash) : -1;
        if (j >= 0)
            t[j] = old[i];
    }
    uint64_t old_off = h->index_off;
    h->index_off = blk; /* the switch: table and size together (see table()) */
    h->index_cap = new_cap;
    h->index_tombs = 0;
    if (old_off)
        shmstore__free(s, old_off);
    return 0;
}

int shmstore__index_insert(shmstore_t *s, uint64_t hash, uint64_t obj_off)
{
    struct store_hdr *h = s->hdr;
    uint64_t cur_cap;
    if (!table(s, &cur_cap) && h->index_off)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': name index is corrupt", s->name);
    if (h->index_count > cur_cap || h->index_tombs > cur_cap)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': index counters are corrupt",
                                s->name);
    if (!h->index_off || (h->index_count + h->index_tombs + 1) * 4 > cur_cap * 3) {
        uint64_t cap = INDEX_MIN_CAP;
        while (cap * 3 < (h->index_count + 1) * 4 * 2)
            cap *= 2;
        int r = rehash(s, cap);
        if (r < 0)
            return r;
    }
    uint64_t cap;
    struct index_ent *t = table(s, &cap);
    if (!t)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': name index is corrupt", s->name);
    int64_t i = free_entry(t, cap, hash);
    if (i < 0)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': index table is full", s->name);
    if (t[i].off == INDEX_TOMB)
        h->index_tombs--;
    t[i].hash = hash;
    t[i].off = obj_off;
    h->index_count++;
    return 0;
}

int shmstore__index_remove(shmstore_t *s, uint64_t hash, uint64_t obj_off)
{
    uint64_t cap;
    struct index_ent *t = table(s, &cap);
    if (!t)
        return -ENOENT;
    for (uint64_t i = hash & (cap - 1), n = 0; n < cap && t[i].off; i = (i + 1) & (cap - 1), n++) {
        if (t[i].off == obj_off) {
            t[i].off = INDEX_TOMB;
            s->hdr->index_count--;
            s->hdr->index_tombs++;
            return 0;
        }
    }
    return -ENOENT;
}

int shmstore__index_foreach(shmstore_t *s, int (*fn)(shmstore_t *, uint64_t, void *), void *arg)
{
    uint64_t cap;
    struct index_ent *t = table(s, &cap);
    if (!t)
        return s->hdr->index_off ? SHMSTORE_ECORRUPT : 0;
    for (uint64_t i = 0; i < cap; i++) {
        if (t[i].off <= INDEX_TOMB)
            continue;
        int r = fn(s, t[i].off, arg);
        if (r)
            return r;
    }
    return 0;
}

int shmstore__index_repair(shmstore_t *s)
{
    struct store_hdr *h = s->hdr;
    uint64_t cap, live = 0, tombs = 0;
    struct index_ent *t = table(s, &cap);
    if (!t) {
        if (h->index_off)
            return SHMSTORE_ECORRUPT;
        h->index_count = h->index_tombs = h->n_objects = 0;
        return 0;
    }
    for (uint64_t i = 0; i < cap; i++) {
        if (t[i].off > INDEX_TOMB) {
            struct obj_hdr *o = shmstore__obj(s, t[i].off);
            /* A delete interrupted between flagging and unindexing is finished here. */
            if (!o || o->hash != t[i].hash ||
                (atomic_load_explicit(&o->flags, memory_order_relaxed) & OBJ_F_DELETED))
                t[i].off = INDEX_TOMB;
        }
        live += t[i].off > INDEX_TOMB;
        tombs += t[i].off == INDEX_TOMB;
    }
    h->index_count = h->n_objects = live;
    h->index_tombs = tombs;
    h->index_cap = cap;
    return 0;
}

int shmstore__index_check(shmstore_t *s, char *rep, size_t cap_r, size_t *pos)
{
    struct store_hdr *h = s->hdr;
    uint64_t cap;
    struct index_ent *t = table(s, &cap);
    if (!t) {
        if (!h->index_off && h->index_count == 0)
            return 0;
        shmstore__report(rep, cap_r, pos, "index table at %" PRIu64 " is invalid\n", h->index_off);
        return SHMSTORE_ECORRUPT;
    }
    uint64_t live = 0, tombs = 0;
    int bad = 0;
    if (h->index_cap != cap) {
        shmstore__report(rep, cap_r, pos, "index_cap %" PRIu64 " but the table holds %" PRIu64
                         " entries (gc repairs it)\n", h->index_cap, cap);
        bad = 1;
    }
    for (uint64_t i = 0; i < cap; i++) {
        if (t[i].off == INDEX_TOMB) {
            tombs++;
            continue;
        }
        if (!t[i].off)
            continue;
        live++;
        struct obj_hdr *o = shmstore__obj(s, t[i].off);
        if (!o) {
            shmstore__report(rep, cap_r, pos, "index entry %" PRIu64 ": no object at %" PRIu64 "\n",
                             i, t[i].off);
            bad = 1;
            continue;
        }
        if (o->hash != t[i].hash || shmstore__hash(o->name, o->name_len) != o->hash) {
            shmstore__report(rep, cap_r, pos, "object '%.*s': hash mismatch\n", (int)o->name_len,
                             o->name);
            bad = 1;
        }
        if (atomic_load_explicit(&o->flags, memory_order_relaxed) & OBJ_F_DELETED) {
            shmstore__report(rep, cap_r, pos, "object '%.*s': deleted but indexed\n",
                             (int)o->name_len, o->name);
            bad = 1;
        }
    }
    if (live != h->index_count || tombs != h->index_tombs) {
        shmstore__report(rep, cap_r, pos, "index counts %" PRIu64 "/%" PRIu64 " but table has %" PRIu64
                         "/%" PRIu64 "\n", h->index_count, h->index_tombs, live, tombs);
        bad = 1;
    }
    return bad ? SHMSTORE_ECORRUPT : 0;
}
