/* view.c - leased, zero-copy views of blocks that hold a version descriptor.
 *
 * Value versions and queue entries share one block format (struct ver_hdr, the attrs,
 * the payload; datum.c). A view pins such a block through the caller's lease (proc.c):
 * the kind that hands out the view has checked, after pinning, that the block still
 * holds what it meant; from then on the block is neither refilled nor freed until the
 * view is released. This file fills views, releases them and lets a fork child take
 * over the views it inherited.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

int shmstore__view_fill(shmstore_t *s, struct blk_hdr *b, uint64_t off, uint64_t version,
                        shmstore_view_t *out)
{
    const struct ver_hdr *vh = (const struct ver_hdr *)((char *)b + BLK_HDR_SIZE);
    const void *data;
    int r = shmstore__ver_to_datum(s, b, vh, &out->desc, &data);
    if (r < 0)
        return r;
    out->data = data;
    out->len = vh->len;
    out->version = version;
    out->mtime_ns = vh->mtime_ns;
    shmstore__store_ref(s);
    out->store = s;
    out->block_off = off;
    return 0;
}

/* Rebase a pointer into the parent's mapping onto ours (same file, same offsets). */
static const void *rebase(const shmstore_t *from, const shmstore_t *to, const void *p)
{
    return p ? (const char *)to->hdr + ((const char *)p - (const char *)from->hdr) : NULL;
}

/* After pinning block `off`: does it still hold the version `view` shows? Our pin is
 * set (seq_cst) before we read seq (seq_cst): a writer that starts refilling the block
 * after that sees the pin and leaves it; one that started before has made seq odd, or
 * has finished and left another mtime. A trigger re-publishes the same bytes under a
 * higher version with the same mtime: still ours. */
static bool holds_version(shmstore_t *s, uint64_t off, const shmstore_view_t *view)
{
    struct blk_hdr *b = shmstore__blk(s, off);
    if (!b || b->tag != BLK_TAG_DATA || shmstore__blk_is_freeing(b) ||
        shmstore__blk_payload_cap(b) < sizeof(struct ver_hdr))
        return false;
    uint64_t seq = atomic_load_explicit(&b->seq, memory_order_seq_cst);
    const struct ver_hdr *vh = (const struct ver_hdr *)((char *)b + BLK_HDR_SIZE);
    return !(seq & 1) && seq >= 2 * view->version && vh->mtime_ns == view->mtime_ns &&
           vh->len == view->len;
}

SHMSTORE_API int shmstore_view_adopt(shmstore_t *s, const shmstore_view_t *inherited,
                                     shmstore_view_t *out)
{
    shmstore__clearerr();
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    const shmstore_t *p = inherited ? inherited->store : NULL;
    if (!p || !inherited->block_off)
        return shmstore__seterr(-EINVAL, "no view to adopt (released or zeroed)");
    if (p->fork_gen == s->fork_gen)
        return shmstore__seterr(-EINVAL, "the view was taken in this process, not inherited "
                                "across fork(): nothing to adopt");
    if (strcmp(p->name, s->name) != 0 || strcmp(p->dir, s->dir) != 0 ||
        p->hdr->ctime_ns != s->hdr->ctime_ns)
        return shmstore__seterr(-EINVAL, "the view belongs to another store than '%s'", s->name);
    uint64_t off = inherited->block_off;
    r = p->is_closed ? 1 : shmstore__pin_inherited(s, p, off); /* close dropped its leases */
    if (r == 0 && !holds_version(s, off, inherited)) {
        shmstore__unpin(s, off);
        r = 1;
    }
    if (r > 0)
        return shmstore__seterr(-ESTALE, "the parent process no longer holds this view of store "
                                "'%s': its bytes may have been reused; take a new view", s->name);
    if (r < 0)
        return r;
    *out = *inherited;
    out->data = rebase(p, s, inherited->data);
    out->desc.attrs = rebase(p, s, inherited->desc.attrs);
    shmstore__store_ref(s);
    out->store = s;
    return 0;
}

SHMSTORE_API void shmstore_view_release(shmstore_view_t *view)
{
    if (!view || !view->store || !view->block_off)
        return;
    if (shmstore__check_fork(view->store) == 0)
        shmstore__unpin(view->store, view->block_off); /* no-op after close */
    shmstore__store_unref(view->store);
    view->block_off = 0;
    view->store = NULL;
    view->data = NULL;
}
