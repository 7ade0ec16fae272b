/* arrayset.c - array sets: a name prefix of arrays loaded all-or-nothing.
 *
 * Theory of operation
 * - A set is one OBJ named by its prefix (struct obj_hdr + struct set_body) and one DATA
 *   block that holds everything else (layout.h): a directory (struct set_dir), the
 *   members sorted by name (struct set_member), their names, their attrs and their
 *   payloads. One block per set, not one per member: a reader's view of any member pins
 *   that block, so a set of 10,000 arrays costs one lease slot, and opening a set is one
 *   name lookup and one pin whatever its size (O(members) only to validate the
 *   directory, which is process-local arithmetic).
 * - Life cycle. shmstore_set_create() makes the OBJ in state LOADING under the metadata
 *   mutex and, in the same critical section, makes sure the creator's held[] list has its
 *   one anchor record (tag SET_ANCHOR_TAG, naming one of the sets the slot owns, pinned
 *   by it): from the first instant the object is reachable, recovery of the creator's
 *   slot (its death, or its shmstore_close()) knows to remove it, and every other set
 *   the slot is loading or has tied (it finds them by an index scan: owner slot and
 *   attach time). One record for any number of sets: no limit but the store's memory.
 *   When the anchor's set stops needing removal (committed untied, or deleted by us) the
 *   record moves to another set we own (s->n_sets_owned says whether a scan is needed). Then the
 *   DATA block is allocated (committed with fallocate: ENOSPC here, never SIGBUS later)
 *   and its offset stored in the body under the mutex, so gc always sees it referenced.
 *   The creator writes the directory and the payloads without any lock: nobody else
 *   reads a LOADING set (open refuses it). Commit stores READY under the mutex
 *   (release; the directory and payloads were written before, and opens read the state
 *   under the same mutex), and drops the held[] record unless the set is TIED.
 * - Recovery (set_recover) removes the sets whose owner is the dead slot (slot and attach
 *   time both match: an offset reused by another process's set is left alone) that are
 *   LOADING or TIED. Readers never remove anything.
 * - Overwrite: a set replacing an existing object is loaded under a temporary name
 *   (".shmstore-loading-<pid>-<n>") and renamed at commit, after the old object is
 *   deleted: readers see the old set until the new one is complete, then (for the span
 *   of one deletion) neither, then the new one.
 * - Deletion marks the OBJ deleted, unindexes it and releases both blocks: freed now, or
 *   ORPHAN until the last lease (a handle, a view) is dropped.
 * - Shared-writable sets (SET_F_WRITABLE) hand out writable pointers to every process:
 *   no versions, no seal, no synchronization (the users' own lock).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* held[] tags. SET_REC_TAG: this slot created the set, loading or tied (one record per
 * set, as older versions of this file wrote them; still recovered). SET_ANCHOR_TAG: this
 * slot owns sets being loaded or tied, any number of them; the record names one, which
 * the slot also pins (so its header outlives a deletion by anybody: the record never
 * names a reused block), and recovery removes every set the slot owns. */
#define SET_REC_TAG 0x1ull
#define SET_ANCHOR_TAG 0x2ull

struct shmstore_set {
    shmstore_t *s;
    uint64_t obj_off;   /* OBJ block, pinned by the handle */
    uint64_t gen;
    struct obj_hdr *obj;
    struct set_body *body;
    uint64_t data_off;  /* DATA block, pinned by the handle (0 = none) */
    char *blk;          /* the DATA block's start in our mapping */
    uint64_t blk_len;   /* its whole size */
    const struct set_member *mem;
    size_t n;
    uint64_t pay_off, pay_end; /* the members' payloads: [pay_off, pay_end) of the block */
    unsigned flags;     /* SET_F_* */
    bool is_loading;    /* created by this handle, not yet committed */
    char target[SHMSTORE_NAME_MAX + 1]; /* overwrite: the final name ("" = the same) */
};

static struct set_body *body_of(struct obj_hdr *o)
{
    return (struct set_body *)(o + 1);
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* ---- member names -------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    const shmstore_set_member_t *x = *(const shmstore_set_member_t *const *)a;
    const shmstore_set_member_t *y = *(const shmstore_set_member_t *const *)b;
    return strcmp(x->name, y->name);
}

/* A relative member name: non-empty components separated by single '/', UTF-8. */
static int member_name_check(const char *prefix, size_t prefix_len, const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0)
        return shmstore__seterr(SHMSTORE_ENAME, "set '%s': a member has an empty name", prefix);
    if (prefix_len + 1 + len > SHMSTORE_NAME_MAX)
        return shmstore__seterr(SHMSTORE_ENAME, "set '%s': member '%.255s' makes a name of %zu bytes "
                                "(prefix + '/' + name), more than %d", prefix, name,
                                prefix_len + 1 + len, SHMSTORE_NAME_MAX);
    if (name[0] == '/' || name[len - 1] == '/' || strstr(name, "//"))
        return shmstore__seterr(SHMSTORE_ENAME, "set '%s': member '%s' has an empty path component",
                                prefix, name);
    if (!shmstore__utf8_valid((const unsigned char *)name, len))
        return shmstore__seterr(SHMSTORE_ENAME, "set '%s': member name is not valid UTF-8", prefix);
    return 0;
}

/* Sorted members: no duplicates, and no member that is also another's group ("b" and
 * "b/c"): the set must read back as a tree. */
static int tree_check(const char *prefix, shmstore_set_member_t *const *v, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (strcmp(v[i]->name, v[i + 1]->name) == 0)
            return shmstore__seterr(-EINVAL, "set '%s': member '%s' is given twice", prefix,
                                    v[i]->name);
        /* Names starting with "x/" sort after "x" and before any "x" + c with c > '/',
         * so they follow x after only names x + c with c < '/' (e.g. "x-1", "x.y"). */
        size_t l = strlen(v[i]->name);
        for (size_t j = i + 1; j < n && strncmp(v[j]->name, v[i]->name, l) == 0; j++)
            if (v[j]->name[l] == '/')
                return shmstore__seterr(-EINVAL, "set '%s': '%s' is both a member and the group "
                                        "of '%s'", prefix, v[i]->name, v[j]->name);
    }
    return 0;
}

/* ---- the directory --------------------------------------------------------------------- */

/* Check that the directory in the DATA block fits it and describes valid members. */
static int dir_validate(shmstore_t *s, const char *name, const char *blk, uint64_t blk_len,
                        uint64_t n_expected)
{
    const struct set_dir *d = (const struct set_dir *)(blk + BLK_HDR_SIZE);
    uint64_t first = BLK_HDR_SIZE + sizeof(*d);
    if (blk_len < first || d->magic != SET_DIR_MAGIC || d->n_members != n_expected ||
        d->n_members > (blk_len - first) / sizeof(struct set_member) || d->end_off > blk_len ||
        d->names_off > blk_len || d->names_len > blk_len - d->names_off)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': set '%.255s' has a directory that "
                                "does not fit its block", s->name, name);
    const struct set_member *m = (const struct set_member *)(d + 1);
    for (uint64_t i = 0; i < d->n_members; i++) {
        shmstore_datum_t dd;
        const struct set_member *e = &m[i];
        bool ok = e->data_off % BLK_ALIGN == 0 && e->data_off <= d->end_off &&
                  e->len <= d->end_off - e->data_off && e->name_off >= d->names_off &&
                  e->name_len > 0 && e->name_len <= SHMSTORE_NAME_MAX &&
                  e->name_off - d->names_off < d->names_len &&
                  e->name_len < d->names_len - (e->name_off - d->names_off) &&
                  blk[e->name_off + e->name_len] == '\0' && e->type < SHMSTORE_T__COUNT &&
                  e->ndim <= SHMSTORE_NDIM_MAX && e->attrs_len <= SHMSTORE_ATTRS_MAX &&
                  (e->attrs_len == 0 ||
                   (e->attrs_off <= blk_len && e->attrs_len <= blk_len - e->attrs_off));
        if (ok) {
            dd.type = e->type;
            dd.ndim = e->ndim;
            memcpy(dd.dtype, e->dtype, sizeof(dd.dtype));
            dd.dtype[SHMSTORE_DTYPE_MAX - 1] = '\0';
            memcpy(dd.shape, e->shape, e->ndim * sizeof(e->shape[0]));
            dd.attrs = e->attrs_len ? blk + e->attrs_off : NULL;
            dd.attrs_len = e->attrs_len;
            ok = shmstore_datum_validate(&dd, e->len) == 0;
        }
        if (!ok)
            return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': set '%.255s': member %" PRIu64
                                    " has a descriptor that does not fit its block", s->name,
                                    name, i);
    }
    return 0;
}

/* Bytes of the DATA block's payload for members v[0..n), and the offsets of each part. */
static int layout(shmstore_set_member_t *const *v, size_t n, uint64_t *names_off,
                  uint64_t *names_len, uint64_t *attrs_off, uint64_t *data_start, uint64_t *end)
{
    uint64_t pos = BLK_HDR_SIZE + sizeof(struct set_dir) + n * sizeof(struct set_member);
    *names_off = pos;
    for (size_t i = 0; i < n; i++)
        pos += strlen(v[i]->name) + 1;
    *names_len = pos - *names_off;
    pos = align_up(pos, 8);
    *attrs_off = pos;
    for (size_t i = 0; i < n; i++)
        pos += align_up(v[i]->desc.attrs_len, 8);
    pos = align_up(pos, BLK_ALIGN);
    *data_start = pos;
    for (size_t i = 0; i < n; i++) {
        if (v[i]->len > UINT64_MAX / 4 - pos)
            return -ENOSPC;
        pos = align_up(pos + v[i]->len, BLK_ALIGN);
    }
    *end = pos;
    return 0;
}

static void write_dir(struct shmstore_set *set, shmstore_set_member_t *const *v, size_t n,
                      uint64_t names_off, uint64_t names_len, uint64_t attrs_off,
                      uint64_t data_start, uint64_t end)
{
    char *blk = set->blk;
    struct set_dir *d = (struct set_dir *)(blk + BLK_HDR_SIZE);
    memset(d, 0, sizeof(*d));
    d->magic = SET_DIR_MAGIC;
    d->n_members = n;
    d->names_off = names_off;
    d->names_len = names_len;
    d->end_off = end;
    struct set_member *m = (struct set_member *)(d + 1);
    uint64_t npos = names_off, apos = attrs_off, dpos = data_start;
    for (size_t i = 0; i < n; i++) {
        const shmstore_set_member_t *src = v[i];
        struct set_member *e = &m[i];
        size_t l = strlen(src->name);
        memset(e, 0, offsetof(struct set_member, shape));
        e->type = src->desc.type;
        e->ndim = src->desc.type == SHMSTORE_T_ARRAY ? src->desc.ndim : 0;
        if (src->desc.type == SHMSTORE_T_ARRAY)
            memcpy(e->dtype, src->desc.dtype, sizeof(e->dtype));
        for (uint32_t k = 0; k < e->ndim; k++)
            e->shape[k] = src->desc.shape[k];
        e->len = src->len;
        e->name_off = npos;
        e->name_len = (uint32_t)l;
        memcpy(blk + npos, src->name, l + 1);
        npos += l + 1;
        if (src->desc.attrs_len) {
            e->attrs_off = apos;
            e->attrs_len = src->desc.attrs_len;
            memcpy(blk + apos, src->desc.attrs, src->desc.attrs_len);
            apos += align_up(src->desc.attrs_len, 8);
        }
        e->data_off = dpos;
        dpos = align_up(dpos + src->len, BLK_ALIGN);
    }
}

/* The span of the members' payloads (validated directory): what shmstore_set_view_all()
 * shows, and nothing of the directory (a writable set's readers must not reach it). */
static void payload_bounds(struct shmstore_set *set)
{
    const struct set_dir *d = (const struct set_dir *)(set->blk + BLK_HDR_SIZE);
    set->pay_end = d->end_off;
    set->pay_off = d->end_off;
    for (size_t i = 0; i < set->n; i++)
        if (set->mem[i].data_off < set->pay_off)
            set->pay_off = set->mem[i].data_off;
}

/* ---- deletion and recovery ------------------------------------------------------------- */

/* Does the set need removing when its owner goes: being loaded, or tied? */
static bool is_covered(struct obj_hdr *o)
{
    struct set_body *sb = body_of(o);
    return !(atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED) &&
           (atomic_load_explicit(&sb->state, memory_order_acquire) == SET_LOADING ||
            (sb->flags & SET_F_TIED));
}

static bool is_owned(struct obj_hdr *o, uint32_t slot, uint64_t attach_ns)
{
    return o->kind == SHMSTORE_KIND_SET && body_of(o)->owner_slot == slot &&
           body_of(o)->owner_attach_ns == attach_ns;
}

/* The sets a slot owns and must remove when it goes (an index scan): counted, the first
 * in `first`, all of them in offs[] when is_collect. */
struct owned {
    uint32_t slot;
    uint64_t attach_ns, exclude;
    bool is_collect, is_oom;
    uint64_t *offs;
    size_t n, cap;
    uint64_t first;
};

static int owned_one(shmstore_t *s, uint64_t off, void *arg)
{
    struct owned *w = arg;
    struct obj_hdr *o = shmstore__obj(s, off);
    if (!o || off == w->exclude || !is_owned(o, w->slot, w->attach_ns) || !is_covered(o))
        return 0;
    if (!w->n++)
        w->first = off;
    if (w->is_collect && w->n > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        uint64_t *p = realloc(w->offs, cap * sizeof(*p));
        if (!p) {
            w->is_oom = true;
            return 1;
        }
        w->offs = p;
        w->cap = cap;
    }
    if (w->is_collect)
        w->offs[w->n - 1] = off;
    return 0;
}

/* Mutex held: the set our slot's anchor record names, or 0. */
static uint64_t our_anchor(shmstore_t *s)
{
    const struct proc_slot *ps = shmstore__proc_slot(s, s->slot);
    for (unsigned k = 0; k < SLOT_HELD_MAX; k++) {
        uint64_t rec = atomic_load_explicit(&ps->held[k], memory_order_relaxed);
        struct obj_hdr *o = (rec & REC_TAG_MASK) == SET_ANCHOR_TAG
                                ? shmstore__obj(s, rec & ~REC_TAG_MASK) : NULL;
        if (o && is_owned(o, s->slot, s->attach_ns)) /* the tag alone could be another kind's */
            return rec & ~REC_TAG_MASK;
    }
    return 0;
}

/* Mutex held: our set at `off` no longer needs removing with us (committed, or being
 * removed). If the anchor names it, move the anchor to another set we own, or drop it;
 * `*unpin` is then the block whose anchor pin the caller drops after unlocking (unpin
 * may take the mutex). The new record is made before the old goes: a crash in between
 * leaves two, both ours and pinned, which recovery handles alike. */
static void anchor_drop(shmstore_t *s, uint64_t off, uint64_t *unpin)
{
    if (s->n_sets_owned)
        s->n_sets_owned--;
    if (our_anchor(s) != off)
        return;
    struct owned w = {.slot = s->slot, .attach_ns = s->attach_ns, .exclude = off};
    if (s->n_sets_owned) /* a hint: another process may have deleted some since */
        shmstore__index_foreach(s, owned_one, &w);
    s->n_sets_owned = w.n;
    if (w.n && (shmstore__proc_hold(s, w.first | SET_ANCHOR_TAG) < 0 ||
                shmstore__pin(s, w.first, NULL) < 0)) {
        shmstore__proc_unhold(s, w.first | SET_ANCHOR_TAG);
        return; /* no room: the old anchor stays (pinned, so its header stays too) */
    }
    shmstore__proc_unhold(s, off | SET_ANCHOR_TAG);
    *unpin = off;
}

/* Mutex held: remove set `o` at `off` (generation already checked). `unpin` NULL: for
 * recovery (no anchor upkeep: the dead slot's records all go). */
static void set_remove_locked(shmstore_t *s, struct obj_hdr *o, uint64_t off, uint64_t *unpin)
{
    struct set_body *sb = body_of(o);
    if (unpin && is_owned(o, s->slot, s->attach_ns) && is_covered(o)) {
        shmstore__proc_unhold(s, off | SET_REC_TAG);
        anchor_drop(s, off, unpin);
    }
    atomic_fetch_or_explicit(&o->flags, OBJ_F_DELETED, memory_order_seq_cst);
    shmstore__index_remove(s, o->hash, off);
    s->hdr->n_objects--;
    if (sb->data_off)
        shmstore__blk_release_locked(s, sb->data_off);
    shmstore__blk_release_locked(s, off);
}

static int set_delete(shmstore_t *s, uint64_t off, uint64_t gen)
{
    uint64_t unpin = 0;
    int r = shmstore__lock(s);
    if (r < 0)
        return r;
    struct obj_hdr *o = shmstore__obj(s, off);
    if (o && o->gen == gen && !(atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED))
        set_remove_locked(s, o, off, &unpin);
    else
        r = shmstore__seterr(-ENOENT, "set was deleted meanwhile");
    shmstore__unlock(s);
    if (unpin)
        shmstore__unpin(s, unpin);
    return r;
}

static void set_recover(shmstore_t *s, struct obj_hdr *o, uint64_t rec, uint32_t dead)
{
    uint64_t off = rec & ~REC_TAG_MASK, tag = rec & REC_TAG_MASK;
    if (shmstore__lock(s) < 0)
        return;
    const struct proc_slot *ps = shmstore__proc_slot(s, dead);
    /* The object is the record's only while it is a set of the dead slot's attachment:
     * an offset reused by another process's set is left alone. */
    if (is_owned(o, dead, ps->attach_ns) && tag == SET_REC_TAG && is_covered(o)) {
        set_remove_locked(s, o, off, NULL);
    } else if (is_owned(o, dead, ps->attach_ns) && tag == SET_ANCHOR_TAG) {
        /* Every set the slot owns (the anchor too, unless deleted already), collected
         * first: removing unindexes them. */
        struct owned w = {.slot = dead, .attach_ns = ps->attach_ns, .is_collect = true};
        shmstore__index_foreach(s, owned_one, &w);
        for (size_t i = 0; i < w.n && !w.is_oom; i++)
            set_remove_locked(s, shmstore__obj(s, w.offs[i]), w.offs[i], NULL);
        free(w.offs);
        /* Out of process memory: one at a time, a scan each. */
        for (bool more = w.is_oom; more;) {
            struct owned c = {.slot = dead, .attach_ns = ps->attach_ns};
            shmstore__index_foreach(s, owned_one, &c);
            if ((more = c.n > 0))
                set_remove_locked(s, shmstore__obj(s, c.first), c.first, NULL);
        }
    }
    shmstore__unlock(s);
}

/* ---- creating ---------------------------------------------------------------------------- */

struct create_ctx {
    unsigned flags;
    uint64_t off;     /* the object init made */
    bool is_counted;  /* init counted it in s->n_sets_owned */
    bool is_anchor;   /* init made our anchor record name it */
    shmstore_set_member_t *const *v; /* the members, sorted */
    size_t n;
    bool is_clash; /* init failed: a member's full name is taken */
};

/* Mutex held: -EEXIST unless every member's full name "<prefix>/<member>" is free (no
 * object of that name, no other set's member): members are values of their own names. */
static int names_free(shmstore_t *s, const char *prefix, size_t n,
                      const char *(*name_of)(const void *, size_t), const void *arg)
{
    char full[SHMSTORE_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        int l = snprintf(full, sizeof(full), "%s/%s", prefix, name_of(arg, i));
        int r = shmstore__name_free(s, full, (size_t)l);
        if (r < 0)
            return r;
    }
    return 0;
}

static const char *given_name(const void *arg, size_t i)
{
    return ((shmstore_set_member_t *const *)arg)[i]->name;
}

static const char *dir_name(const void *arg, size_t i)
{
    const struct shmstore_set *set = arg;
    return set->blk + set->mem[i].name_off;
}

/* Mutex held, before the object is indexed: the record goes in first, so that from the
 * moment the set is reachable our death removes it. */
static int set_init(shmstore_t *s, struct obj_hdr *o, void *arg)
{
    struct create_ctx *c = arg;
    struct set_body *sb = body_of(o);
    uint64_t off = shmstore__off(s, o) - BLK_HDR_SIZE;
    int r = names_free(s, o->name, c->n, given_name, c->v);
    if (r < 0) {
        c->is_clash = true;
        return r;
    }
    atomic_store_explicit(&sb->state, SET_LOADING, memory_order_relaxed);
    sb->flags = c->flags;
    sb->owner_slot = s->slot;
    sb->owner_pid = (int32_t)getpid();
    sb->owner_attach_ns = s->attach_ns;
    /* One record covers every set we load or tie, however many (recovery scans). */
    if (!our_anchor(s) && (r = shmstore__proc_hold(s, off | SET_ANCHOR_TAG)) < 0)
        return shmstore__seterr(r, "store '%s': this process already holds %u writer locks and "
                                "records (the most one process holds at once); release some",
                                s->name, SLOT_HELD_MAX);
    c->is_anchor = r == 0 && our_anchor(s) == off;
    c->off = off;
    c->is_counted = true;
    s->n_sets_owned++;
    return 0;
}

/* The anchor's own lease, taken once the set is indexed and leased by its handle (before,
 * an insert failing would free a pinned block). On failure the record goes too. */
static int anchor_pin(shmstore_t *s, uint64_t off)
{
    int r = shmstore__pin(s, off, NULL);
    if (r < 0 && shmstore__lock(s) == 0) {
        shmstore__proc_unhold(s, off | SET_ANCHOR_TAG);
        shmstore__unlock(s);
    }
    return r;
}

static _Atomic uint64_t tmp_counter;

SHMSTORE_API int shmstore_set_create(shmstore_t *s, const char *prefix, unsigned flags,
                                     const shmstore_set_member_t *m, size_t n,
                                     shmstore_set_t **out)
{
    shmstore__clearerr();
    size_t prefix_len;
    int r = shmstore__check_fork(s);
    if (r < 0 || (r = shmstore__name_check(prefix, &prefix_len)) < 0)
        return r;
    if (flags & ~(SHMSTORE_SET_TIED | SHMSTORE_SET_WRITABLE | SHMSTORE_SET_OVERWRITE))
        return shmstore__seterr(-EINVAL, "set '%s': unknown flags 0x%x", prefix, flags);
    if (n && !m)
        return shmstore__seterr(-EINVAL, "set '%s': no members given", prefix);
    if (n > (UINT64_MAX / 4) / sizeof(struct set_member))
        return shmstore__seterr(-EINVAL, "set '%s': too many members", prefix);
    shmstore_set_member_t **v = malloc((n ? n : 1) * sizeof(*v));
    struct shmstore_set *set = calloc(1, sizeof(*set));
    if (!v || !set) {
        free(v);
        free(set);
        return shmstore__seterr(-ENOMEM, "out of process memory");
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        v[i] = (shmstore_set_member_t *)&m[i];
        if ((r = member_name_check(prefix, prefix_len, m[i].name)) == 0 &&
            (r = shmstore_datum_validate(&m[i].desc, m[i].len)) < 0)
            shmstore__seterr(r, "set '%s': member '%s': %s", prefix, m[i].name,
                             shmstore_errmsg()[0] ? shmstore_errmsg() : shmstore_strerror(r));
    }
    if (r == 0) {
        qsort(v, n, sizeof(*v), cmp_names);
        r = tree_check(prefix, v, n);
    }
    uint64_t names_off = 0, names_len = 0, attrs_off = 0, data_start = 0, end = 0;
    if (r == 0 && layout(v, n, &names_off, &names_len, &attrs_off, &data_start, &end) < 0)
        r = shmstore__seterr(-ENOSPC, "set '%s' is larger than any store", prefix);
    if (r < 0)
        goto fail_free;

    unsigned kflags = (flags & SHMSTORE_SET_TIED ? SET_F_TIED : 0) |
                      (flags & SHMSTORE_SET_WRITABLE ? SET_F_WRITABLE : 0);
    struct create_ctx c = {kflags, 0, false, false, v, n, false};
    char tmp[64];
    uint64_t off;
    r = shmstore__obj_open(s, prefix, SHMSTORE_KIND_SET, true, true, sizeof(struct set_body),
                           set_init, &c, &off, NULL);
    if (r == -EEXIST && (flags & SHMSTORE_SET_OVERWRITE)) {
        snprintf(tmp, sizeof(tmp), ".shmstore-loading-%d-%" PRIu64, (int)getpid(),
                 atomic_fetch_add_explicit(&tmp_counter, 1, memory_order_relaxed));
        snprintf(set->target, sizeof(set->target), "%s", prefix);
        shmstore__clearerr();
        c.n = 0; /* the members' names are checked at commit, once the old set is gone */
        r = shmstore__obj_open(s, tmp, SHMSTORE_KIND_SET, true, true, sizeof(struct set_body),
                               set_init, &c, &off, NULL);
    }
    if (r < 0 && c.is_counted && shmstore__lock(s) == 0) {
        /* init ran, then the insert failed: the object is gone */
        s->n_sets_owned--;
        if (c.is_anchor)
            shmstore__proc_unhold(s, c.off | SET_ANCHOR_TAG);
        shmstore__unlock(s);
    }
    if (r < 0) {
        if (r == -EEXIST && !c.is_clash)
            shmstore__seterr(r, "store '%s': '%s' already exists (remove it, or overwrite)",
                             s->name, prefix);
        goto fail_free;
    }
    shmstore__store_ref(s);
    set->s = s;
    set->obj_off = off;
    set->obj = shmstore__obj(s, off);
    set->gen = set->obj->gen;
    set->body = body_of(set->obj);
    set->flags = kflags;
    set->is_loading = true;
    set->n = n;

    /* The block, under the mutex so that it is referenced from the instant it exists. */
    uint64_t data_off = 0;
    if (c.is_anchor)
        r = anchor_pin(s, off);
    if (r == 0 && (r = shmstore__lock(s)) == 0) {
        if (shmstore__obj_stale(set->obj, set->gen))
            r = shmstore__seterr(-ESTALE, "set '%s' was deleted while being created", prefix);
        else if ((r = shmstore__alloc(s, end - BLK_HDR_SIZE, BLK_TAG_DATA, set->gen, &data_off)) == 0 &&
                 (r = shmstore__pin(s, data_off, NULL)) == 0) {
            set->body->data_off = data_off;
            set->body->n_members = n;
            uint64_t total = 0;
            for (size_t i = 0; i < n; i++)
                total += m[i].len;
            set->body->payload_len = total;
        } else if (data_off) {
            shmstore__free(s, data_off);
            data_off = 0;
        }
        shmstore__unlock(s);
    }
    if (r < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        if (r == -ENOSPC)
            snprintf(msg, sizeof(msg), "store '%s': no room for set '%s' (%" PRIu64 " bytes): %s",
                     s->name, prefix, end, shmstore_errmsg());
        set_delete(s, off, set->gen);
        set->is_loading = false;
        shmstore_set_close(set);
        free(v);
        shmstore__errmsg_restore(msg);
        return r;
    }
    set->data_off = data_off;
    set->blk = (char *)shmstore__blk(s, data_off);
    set->blk_len = end;
    write_dir(set, v, n, names_off, names_len, attrs_off, data_start, end);
    set->mem = (const struct set_member *)((char *)set->blk + BLK_HDR_SIZE + sizeof(struct set_dir));
    payload_bounds(set);
    free(v);
    *out = set;
    return 0;

fail_free:
    free(v);
    free(set);
    return r;
}

SHMSTORE_API void *shmstore_set_data(shmstore_set_t *set, size_t i)
{
    if (!set || i >= set->n || !set->blk || !(set->is_loading || (set->flags & SET_F_WRITABLE)))
        return NULL;
    return set->blk + set->mem[i].data_off;
}

SHMSTORE_API int shmstore_set_write(shmstore_set_t *set, size_t i, uint64_t offset,
                                    const void *src, size_t len)
{
    char *dst = shmstore_set_data(set, i);
    if (!dst)
        return shmstore__seterr(-EINVAL, "member %zu is not writable here", i);
    const struct set_member *e = &set->mem[i];
    if (offset > e->len || len > e->len - offset)
        return shmstore__seterr(-ERANGE, "write of %zu bytes at %" PRIu64 " past member %zu's "
                                "%" PRIu64 " bytes", len, offset, i, e->len);
    shmstore__copy_in(dst + offset, src, len);
    return 0;
}

/* Mutex held: give the loaded set its final name (overwrite). */
static int rename_locked(shmstore_set_t *set)
{
    shmstore_t *s = set->s;
    struct obj_hdr *o = set->obj;
    size_t len = strlen(set->target);
    uint64_t other;
    if (shmstore__index_find(s, set->target, len, &other) == 0)
        return shmstore__seterr(-EEXIST, "store '%s': '%s' was created again while the new set "
                                "was loading", s->name, set->target);
    shmstore__index_remove(s, o->hash, set->obj_off);
    memset(o->name, 0, sizeof(o->name));
    memcpy(o->name, set->target, len);
    o->name_len = (uint32_t)len;
    o->hash = shmstore__hash(set->target, len);
    return shmstore__index_insert(s, o->hash, set->obj_off);
}

SHMSTORE_API int shmstore_set_commit(shmstore_set_t *set)
{
    shmstore__clearerr();
    if (!set || !set->is_loading)
        return shmstore__seterr(-EINVAL, "not a set being loaded");
    shmstore_t *s = set->s;
    uint64_t unpin = 0;
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    if (set->target[0]) {
        r = shmstore_delete(s, set->target);
        if (r == -ENOENT)
            r = 0;
    }
    if (r == 0 && (r = shmstore__lock(s)) == 0) {
        if (shmstore__obj_stale(set->obj, set->gen))
            r = shmstore__seterr(-ESTALE, "set was deleted while being loaded; nothing published");
        else if (set->target[0])
            r = rename_locked(set);
        if (r == 0)
            r = names_free(s, set->obj->name, set->n, dir_name, set);
        if (r == 0) {
            if (!(set->flags & SET_F_WRITABLE))
                atomic_fetch_or_explicit(&set->obj->flags, OBJ_F_SEALED, memory_order_relaxed);
            /* release: the directory and payloads before the state; pairs with the
             * acquire in shmstore_set_open() (under the same mutex, too) */
            atomic_store_explicit(&set->body->state, SET_READY, memory_order_release);
            if (!(set->flags & SET_F_TIED))
                anchor_drop(s, set->obj_off, &unpin);
        }
        shmstore__unlock(s);
    }
    if (unpin)
        shmstore__unpin(s, unpin);
    if (r < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        set_delete(s, set->obj_off, set->gen);
        shmstore__errmsg_restore(msg);
    }
    set->is_loading = false;
    set->target[0] = '\0';
    return r;
}

SHMSTORE_API void shmstore_set_abort(shmstore_set_t *set)
{
    if (!set)
        return;
    if (set->is_loading && shmstore__check_fork(set->s) == 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        set_delete(set->s, set->obj_off, set->gen);
        shmstore__errmsg_restore(msg);
    }
    set->is_loading = false;
    shmstore_set_close(set);
}

/* ---- reading ------------------------------------------------------------------------------ */

SHMSTORE_API int shmstore_set_open(shmstore_t *s, const char *prefix, shmstore_set_t **out)
{
    shmstore__clearerr();
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    struct shmstore_set *set = calloc(1, sizeof(*set));
    if (!set)
        return shmstore__seterr(-ENOMEM, "out of process memory");
    uint64_t off, data_off = 0;
    r = shmstore__obj_open(s, prefix, SHMSTORE_KIND_SET, false, false, sizeof(struct set_body),
                           NULL, NULL, &off, NULL);
    if (r < 0) {
        free(set);
        return r;
    }
    shmstore__store_ref(s);
    set->s = s;
    set->obj_off = off;
    set->obj = shmstore__obj(s, off);
    set->gen = set->obj->gen;
    set->body = body_of(set->obj);
    if ((r = shmstore__lock(s)) == 0) {
        struct set_body *sb = set->body;
        if (shmstore__obj_stale(set->obj, set->gen) ||
            atomic_load_explicit(&sb->state, memory_order_acquire) != SET_READY)
            r = shmstore__seterr(-ENOENT, "set '%s' in store '%s' is being loaded (by pid %d)",
                                 prefix, s->name, (int)sb->owner_pid);
        else if (!(data_off = sb->data_off) || !shmstore__blk(s, data_off) ||
                 shmstore__blk(s, data_off)->tag != BLK_TAG_DATA ||
                 shmstore__blk(s, data_off)->owner != set->gen)
            r = shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': set '%s' has no valid block",
                                 s->name, prefix);
        else
            r = shmstore__pin(s, data_off, NULL);
        if (r == 0) {
            set->flags = sb->flags;
            set->n = sb->n_members;
        }
        shmstore__unlock(s);
    }
    if (r == 0) {
        set->data_off = data_off;
        set->blk = (char *)shmstore__blk(s, data_off);
        set->blk_len = shmstore__blk_footprint(s, data_off);
        set->mem = (const struct set_member *)(set->blk + BLK_HDR_SIZE + sizeof(struct set_dir));
        r = dir_validate(s, prefix, set->blk, set->blk_len, set->n);
    }
    if (r == 0)
        payload_bounds(set);
    if (r < 0) {
        shmstore_set_close(set);
        return r;
    }
    *out = set;
    return 0;
}

SHMSTORE_API int shmstore_set_open_member(shmstore_t *s, const char *name, shmstore_set_t **out,
                                          size_t *i)
{
    size_t len;
    int r = shmstore__name_check(name, &len);
    if (r < 0)
        return r;
    char buf[SHMSTORE_NAME_MAX + 1];
    memcpy(buf, name, len + 1);
    /* Member names are unique in the store (names_free): the nearest set that has one
     * is the one. */
    for (char *slash = strrchr(buf, '/'); slash; slash = strrchr(buf, '/')) {
        *slash = '\0';
        shmstore_set_t *set;
        if ((r = shmstore_set_open(s, buf, &set)) == -ENOENT || r == SHMSTORE_EKIND)
            continue;
        if (r < 0)
            return r;
        if ((r = shmstore_set_find(set, name + (slash - buf) + 1, i)) == 0) {
            *out = set;
            return 0;
        }
        shmstore_set_close(set);
    }
    shmstore__clearerr();
    return shmstore__seterr(-ENOENT, "no value or set member '%s' in store '%s'", name, s->name);
}

SHMSTORE_API void shmstore_set_close(shmstore_set_t *set)
{
    if (!set)
        return;
    if (set->is_loading) {
        shmstore_set_abort(set);
        return;
    }
    shmstore_t *s = set->s;
    pthread_mutex_lock(&s->lease_mu);
    bool is_closed = s->is_closed;
    pthread_mutex_unlock(&s->lease_mu);
    if (!is_closed && shmstore__check_fork(s) == 0) {
        if (set->data_off)
            shmstore__unpin(s, set->data_off);
        shmstore__unpin(s, set->obj_off);
    }
    free(set);
    shmstore__store_unref(s);
}

SHMSTORE_API size_t shmstore_set_count(const shmstore_set_t *set)
{
    return set ? set->n : 0;
}

static void member_datum(const shmstore_set_t *set, const struct set_member *e, shmstore_datum_t *d)
{
    d->type = e->type;
    d->ndim = e->ndim;
    memcpy(d->dtype, e->dtype, sizeof(d->dtype));
    d->dtype[SHMSTORE_DTYPE_MAX - 1] = '\0';
    memcpy(d->shape, e->shape, e->ndim * sizeof(e->shape[0]));
    d->attrs = e->attrs_len ? set->blk + e->attrs_off : NULL;
    d->attrs_len = e->attrs_len;
}

SHMSTORE_API int shmstore_set_member(const shmstore_set_t *set, size_t i, shmstore_set_member_t *out)
{
    if (!set || i >= set->n)
        return shmstore__seterr(-ERANGE, "member %zu of a set of %zu", i, set ? set->n : 0);
    const struct set_member *e = &set->mem[i];
    out->name = set->blk + e->name_off;
    out->len = e->len;
    out->offset = e->data_off - set->pay_off;
    member_datum(set, e, &out->desc);
    return 0;
}

SHMSTORE_API int shmstore_set_find(const shmstore_set_t *set, const char *name, size_t *i)
{
    size_t lo = 0, hi = set ? set->n : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(set->blk + set->mem[mid].name_off, name);
        if (c == 0) {
            *i = mid;
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return shmstore__seterr(-ENOENT, "no member '%s' in the set", name ? name : "");
}

/* Pin the set's block once more (we hold a lease on it already: this only counts one
 * more) and describe `len` bytes at `data` in it. */
static int view_pinned(shmstore_set_t *set, const char *data, uint64_t len, shmstore_view_t *out)
{
    shmstore_t *s = set->s;
    int r = shmstore__check_fork(s);
    if (r < 0 || (r = shmstore__pin(s, set->data_off, NULL)) < 0)
        return r;
    out->data = data;
    out->len = len;
    out->version = 1;
    out->mtime_ns = set->obj->ctime_ns;
    shmstore__store_ref(s);
    out->store = s;
    out->block_off = set->data_off;
    return 0;
}

SHMSTORE_API int shmstore_set_view(shmstore_set_t *set, size_t i, shmstore_view_t *out)
{
    if (!set || i >= set->n || !set->blk)
        return shmstore__seterr(-ERANGE, "member %zu of a set of %zu", i, set ? set->n : 0);
    const struct set_member *e = &set->mem[i];
    int r = view_pinned(set, set->blk + e->data_off, e->len, out);
    if (r == 0)
        member_datum(set, e, &out->desc);
    return r;
}

SHMSTORE_API int shmstore_set_view_all(shmstore_set_t *set, shmstore_view_t *out)
{
    if (!set || !set->blk)
        return shmstore__seterr(-EINVAL, "not an open set");
    int r = view_pinned(set, set->blk + set->pay_off, set->pay_end - set->pay_off, out);
    if (r == 0)
        shmstore_datum_init(&out->desc, SHMSTORE_T_BYTES);
    return r;
}

SHMSTORE_API int shmstore_set_info(shmstore_set_t *set, shmstore_obj_info_t *out)
{
    int r = shmstore__check_fork(set->s);
    if (r < 0)
        return r;
    if (shmstore__obj_stale(set->obj, set->gen))
        return shmstore__seterr(-ESTALE, "set was deleted");
    shmstore__obj_info(set->s, set->obj, out);
    return 0;
}

/* ---- prefix deletion -------------------------------------------------------------------- */

struct name_list {
    const char *prefix;
    size_t prefix_len;
    char (*names)[SHMSTORE_NAME_MAX + 1];
    size_t n, cap;
    int err;
};

static int collect(const shmstore_obj_info_t *info, void *arg)
{
    struct name_list *l = arg;
    size_t len = strlen(info->name);
    if ((len > l->prefix_len && info->name[l->prefix_len] != '/') || info->set_prefix_len)
        return 0; /* a member goes with its set, and only with it */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void *p = realloc(l->names, cap * sizeof(*l->names));
        if (!p) {
            l->err = -ENOMEM;
            return 1;
        }
        l->names = p;
        l->cap = cap;
    }
    memcpy(l->names[l->n++], info->name, len + 1);
    return 0;
}

SHMSTORE_API int shmstore_delete_prefix(shmstore_t *s, const char *prefix, uint64_t *n_deleted)
{
    shmstore__clearerr();
    char p[SHMSTORE_NAME_MAX + 1];
    size_t len = prefix ? strlen(prefix) : 0;
    while (len && prefix[len - 1] == '/')
        len--;
    if (len == 0)
        return shmstore__seterr(-EINVAL, "refusing to delete an empty prefix (every object)");
    if (len > SHMSTORE_NAME_MAX)
        return shmstore__seterr(SHMSTORE_ENAME, "prefix longer than %d bytes", SHMSTORE_NAME_MAX);
    memcpy(p, prefix, len);
    p[len] = '\0';
    struct name_list l = {p, len, NULL, 0, 0, 0};
    int r = shmstore_list(s, p, collect, &l);
    if (r == 1 || (r == 0 && l.err))
        r = shmstore__seterr(l.err, "out of process memory");
    uint64_t n = 0;
    for (size_t i = 0; i < l.n && r >= 0; i++) {
        int d = shmstore_delete(s, l.names[i]);
        if (d == 0)
            n++;
        else if (d != -ENOENT) /* deleted meanwhile by someone else: fine */
            r = d;
    }
    free(l.names);
    if (n_deleted)
        *n_deleted = n;
    return r < 0 ? r : 0;
}

/* ---- kind operations --------------------------------------------------------------------- */

static void set_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out)
{
    struct set_body *sb = body_of(o);
    uint32_t state = atomic_load_explicit(&sb->state, memory_order_acquire);
    out->count = sb->n_members;
    out->size = sb->payload_len;
    out->version = state == SET_READY;
    out->mtime_ns = o->ctime_ns;
    out->footprint += shmstore__blk_footprint(s, sb->data_off);
    out->set_flags = (sb->flags & SET_F_TIED ? SHMSTORE_SET_TIED : 0) |
                     (sb->flags & SET_F_WRITABLE ? SHMSTORE_SET_WRITABLE : 0);
    out->set_loading = state != SET_READY;
    out->set_owner_pid = sb->owner_pid;
}

static int set_check(shmstore_t *s, struct obj_hdr *o, char *rep, size_t cap, size_t *pos)
{
    struct set_body *sb = body_of(o);
    uint32_t state = atomic_load_explicit(&sb->state, memory_order_acquire);
    struct blk_hdr *b = sb->data_off ? shmstore__blk(s, sb->data_off) : NULL;
    const char *why = NULL;
    if (state != SET_LOADING && state != SET_READY)
        why = "has an invalid state";
    else if (sb->data_off && (!b || b->tag != BLK_TAG_DATA || b->owner != o->gen))
        why = "names a block that is not its data block";
    else if (state == SET_READY && !b)
        why = "is published without a data block";
    else if (state == SET_READY &&
             dir_validate(s, o->name, (const char *)b, shmstore__blk_footprint(s, sb->data_off),
                          sb->n_members) < 0)
        why = "has a directory that does not fit its block";
    if (!why)
        return 0;
    shmstore__report(rep, cap, pos, "set '%.*s' %s\n", (int)o->name_len, o->name, why);
    return SHMSTORE_ECORRUPT;
}

static int set_refs(shmstore_t *s, struct obj_hdr *o, int (*add)(void *, uint64_t), void *arg)
{
    (void)s;
    return add(arg, body_of(o)->data_off);
}

/* Mutex held: the validated directory of READY set `o` (block start in *blk), or NULL. */
static const struct set_member *ready_members(shmstore_t *s, struct obj_hdr *o, const char **blk)
{
    struct set_body *sb = body_of(o);
    struct blk_hdr *b = sb->data_off ? shmstore__blk(s, sb->data_off) : NULL;
    if (atomic_load_explicit(&sb->state, memory_order_acquire) != SET_READY || !b ||
        b->tag != BLK_TAG_DATA || b->owner != o->gen)
        return NULL;
    *blk = (const char *)b;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
    int r = dir_validate(s, o->name, *blk, shmstore__blk_footprint(s, sb->data_off), sb->n_members);
    shmstore__errmsg_restore(msg); /* a corrupt set owns no names; `check` reports it */
    return r < 0 ? NULL : (const struct set_member *)(*blk + BLK_HDR_SIZE + sizeof(struct set_dir));
}

/* A member described as a value of its full name (shmstore_obj_info_t.set_prefix_len). */
static void member_info(struct obj_hdr *o, const char *blk, const struct set_member *e,
                        shmstore_obj_info_t *out)
{
    struct set_body *sb = body_of(o);
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%.*s/%s", (int)o->name_len, o->name, blk + e->name_off);
    out->kind = SHMSTORE_KIND_VALUE;
    out->is_sealed = !(sb->flags & SET_F_WRITABLE);
    out->version = 1;
    out->mtime_ns = o->ctime_ns;
    out->size = e->len;
    out->desc.type = e->type;
    out->desc.ndim = e->ndim;
    memcpy(out->desc.dtype, e->dtype, sizeof(out->desc.dtype));
    out->desc.dtype[SHMSTORE_DTYPE_MAX - 1] = '\0';
    memcpy(out->desc.shape, e->shape, e->ndim * sizeof(e->shape[0]));
    out->set_flags = (sb->flags & SET_F_TIED ? SHMSTORE_SET_TIED : 0) |
                     (sb->flags & SET_F_WRITABLE ? SHMSTORE_SET_WRITABLE : 0);
    out->set_owner_pid = sb->owner_pid;
    out->set_prefix_len = o->name_len;
}

static int set_sub_info(shmstore_t *s, struct obj_hdr *o, const char *rest, shmstore_obj_info_t *out)
{
    const char *blk;
    const struct set_member *m = ready_members(s, o, &blk);
    size_t lo = 0, hi = m ? body_of(o)->n_members : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(blk + m[mid].name_off, rest);
        if (c == 0) {
            member_info(o, blk, &m[mid], out);
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

static int set_sub_list(shmstore_t *s, struct obj_hdr *o, const char *prefix, size_t prefix_len,
                        int (*fn)(const shmstore_obj_info_t *, void *), void *arg)
{
    const char *blk;
    const struct set_member *m = ready_members(s, o, &blk);
    uint64_t n = m ? body_of(o)->n_members : 0;
    shmstore_obj_info_t info;
    for (uint64_t i = 0; i < n; i++) {
        const char *leaf = strrchr(blk + m[i].name_off, '/');
        if (m[i].type == SHMSTORE_T_NONE && strcmp(leaf ? leaf + 1 : blk + m[i].name_off, ".attrs") == 0)
            continue; /* a group's attributes, not a value of the tree */
        member_info(o, blk, &m[i], &info);
        if (strncmp(info.name, prefix, prefix_len) != 0)
            continue;
        int r = fn(&info, arg);
        if (r)
            return r;
    }
    return 0;
}

static _Atomic uint64_t *set_waiters(struct obj_hdr *o, unsigned which)
{
    (void)o;
    (void)which;
    return NULL;
}

const struct shmstore__kind_ops shmstore__set_ops = {
    .name = "set",
    .body_len = sizeof(struct set_body),
    .info = set_info,
    .check = set_check,
    .refs = set_refs,
    .recover = set_recover,
    .waiters = set_waiters,
    .del = set_delete,
    .sub_info = set_sub_info,
    .sub_list = set_sub_list,
};
