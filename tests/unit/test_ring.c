/* test_ring.c - rings: write/read_since/latest/views/wait, 1-D and N-D frames, writes
 * larger than the ring, exact overrun counts, generations (readers follow, old memory
 * freed), the writer role (one writer; a dead one's role reclaimed), every error, a
 * writer streaming a ramp at full speed against readers of different speeds that check
 * every frame and every lost count, generations changing under load, and fuzzed
 * generation headers. */
#include "test.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#include "layout.h"

#define MiB (1024ull * 1024ull)
#define MS 1000000ll

struct fixture {
    char name[128];
    shmstore_t *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    t_store_name(f->name, sizeof(f->name));
    f->s = t_open_new(f->name, 256 * MiB);
    T_OK(shmstore_put(f->s, "index", NULL, "x", 1, 0)); /* the index block exists from now */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    t_cleanup(f->s, f->name);
    free(f);
    return 0;
}

static shmstore_ring_config_t cfg_of(const char *dtype, uint32_t ndim, const uint64_t *shape,
                                     uint64_t cap)
{
    shmstore_ring_config_t c;
    memset(&c, 0, sizeof(c));
    T_OK(shmstore_datum_init_array(&c.frame, dtype, ndim, shape));
    c.capacity = cap;
    return c;
}

/* A 1-D ring of uint64 frames (frame p holds p) or of `width` uint64 per frame. */
static shmstore_ring_t *open_u64(shmstore_t *s, const char *name, uint64_t width, uint64_t cap,
                                 unsigned flags)
{
    shmstore_ring_config_t c = cfg_of("<u8", width > 1, &width, cap);
    shmstore_ring_t *r = NULL;
    T_OK(shmstore_ring_open(s, name, SHMSTORE_R_CREATE | flags, &c, &r));
    return r;
}

static void fill_ramp(uint64_t *buf, uint64_t first, uint64_t n, uint64_t width)
{
    for (uint64_t k = 0; k < n; k++)
        for (uint64_t j = 0; j < width; j++)
            buf[k * width + j] = (first + k) * 1000 + j;
}

static bool ramp_ok(const uint64_t *buf, uint64_t first, uint64_t n, uint64_t width)
{
    for (uint64_t k = 0; k < n; k++)
        for (uint64_t j = 0; j < width; j++)
            if (buf[k * width + j] != (first + k) * 1000 + j)
                return false;
    return true;
}

static void write_ramp(shmstore_ring_t *r, uint64_t first, uint64_t n, uint64_t width)
{
    uint64_t *buf = malloc((n ? n : 1) * width * 8);
    assert_non_null(buf);
    fill_ramp(buf, first, n, width);
    T_OK(shmstore_ring_write(r, buf, n));
    free(buf);
}

static uint64_t used_bytes(shmstore_t *s)
{
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    return st.used;
}

static uint64_t total_of(shmstore_ring_t *r)
{
    uint64_t t = ~0ull;
    T_OK(shmstore_ring_total(r, &t));
    return t;
}

/* ---- basics ---------------------------------------------------------------------------- */

static void test_ring_write_read_1d(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *w = open_u64(f->s, "r", 1, 8, 0), *rd = NULL;
    T_OK(shmstore_ring_open(f->s, "r", 0, NULL, &rd));
    uint64_t buf[64], cursor = 0;
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(rd, 0, buf, 64, &sp));
    assert_int_equal(sp.n, 0);
    assert_int_equal(sp.cursor, 0);
    /* chunks of 1, 3, 5, 7 (wrapping the 8-frame storage), read after each */
    uint64_t pos = 0;
    for (int round = 0; round < 6; round++) {
        for (uint64_t chunk = 1; chunk <= 7; chunk += 2) {
            write_ramp(w, pos, chunk, 1);
            pos += chunk;
            T_OK(shmstore_ring_read_since(rd, cursor, buf, 64, &sp));
            assert_int_equal(sp.n, chunk);
            assert_int_equal(sp.first, cursor);
            assert_int_equal(sp.lost, 0);
            assert_true(ramp_ok(buf, cursor, sp.n, 1));
            cursor = sp.cursor;
        }
    }
    assert_int_equal(total_of(rd), pos);
    /* max bounds a read; the oldest come first */
    write_ramp(w, pos, 6, 1);
    T_OK(shmstore_ring_read_since(rd, cursor, buf, 4, &sp));
    assert_int_equal(sp.n, 4);
    assert_true(ramp_ok(buf, cursor, 4, 1));
    T_OK(shmstore_ring_read_since(rd, sp.cursor, buf, 64, &sp));
    assert_int_equal(sp.n, 2);
    /* latest */
    T_OK(shmstore_ring_latest(rd, 3, buf, &sp));
    assert_int_equal(sp.n, 3);
    assert_int_equal(sp.first, pos + 3);
    assert_true(ramp_ok(buf, pos + 3, 3, 1));
    T_OK(shmstore_ring_latest(rd, 100, buf, &sp)); /* fewer are held */
    assert_int_equal(sp.n, 8);
    assert_true(ramp_ok(buf, pos + 6 - 8, 8, 1));
    shmstore_ring_state_t st;
    T_OK(shmstore_ring_state(rd, &st));
    assert_int_equal(st.generation, 1);
    assert_int_equal(st.cfg.capacity, 8);
    assert_int_equal(st.cfg.frame.ndim, 0);
    assert_string_equal(st.cfg.frame.dtype, "<u8");
    assert_int_equal(st.frame_len, 8);
    assert_int_equal(st.total, pos + 6);
    assert_int_equal(st.oldest, pos + 6 - 8);
    assert_true(st.is_current);
    assert_false(st.is_writer);
    assert_int_equal(st.writer_pid, getpid());
    shmstore_obj_info_t info;
    T_OK(shmstore_info(f->s, "r", &info));
    assert_int_equal(info.kind, SHMSTORE_KIND_RING);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.next_index, pos + 6);
    assert_int_equal(info.count, 8);
    assert_int_equal(info.capacity, 8);
    assert_int_equal(info.producers_waiting, 1);
    shmstore_ring_close(rd);
    shmstore_ring_close(w);
}

static void test_ring_nd_frames_and_attrs(void **state)
{
    struct fixture *f = *state;
    char attrs[256];
    uint32_t alen = 0;
    double srate = 30000.0;
    T_OK(shmstore_attrs_add(attrs, sizeof(attrs), &alen, "srate", SHMSTORE_T_FLOAT64, &srate, 8));
    T_OK(shmstore_attrs_add(attrs, sizeof(attrs), &alen, "axis", SHMSTORE_T_STR, "time", 4));
    uint64_t shape[2] = {4, 3};
    shmstore_ring_config_t c = cfg_of("<i2", 2, shape, 10);
    c.frame.attrs = attrs;
    c.frame.attrs_len = alen;
    shmstore_ring_t *r = NULL;
    T_OK(shmstore_ring_open(f->s, "nd", SHMSTORE_R_CREATE | SHMSTORE_R_WRITER, &c, &r));
    int16_t frames[25][12];
    for (int k = 0; k < 25; k++)
        for (int j = 0; j < 12; j++)
            frames[k][j] = (int16_t)(k * 100 + j);
    T_OK(shmstore_ring_write(r, frames, 25));
    int16_t out[10][12];
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(r, 0, out, 10, &sp));
    assert_int_equal(sp.first, 15);
    assert_int_equal(sp.lost, 15);
    assert_int_equal(sp.n, 10);
    assert_memory_equal(out, frames[15], sizeof(out));
    shmstore_ring_state_t st;
    T_OK(shmstore_ring_state(r, &st));
    assert_int_equal(st.cfg.frame.ndim, 2);
    assert_int_equal(st.cfg.frame.shape[0], 4);
    assert_int_equal(st.cfg.frame.shape[1], 3);
    assert_int_equal(st.frame_len, 24);
    assert_true(st.is_writer);
    shmstore_type_t ty;
    const void *val;
    uint32_t vl;
    T_OK(shmstore_attrs_get(st.cfg.frame.attrs, st.cfg.frame.attrs_len, "srate", &ty, &val, &vl));
    assert_int_equal(ty, SHMSTORE_T_FLOAT64);
    assert_memory_equal(val, &srate, 8);
    shmstore_ring_close(r);
}

static void test_ring_write_larger_than_ring(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *r = open_u64(f->s, "big", 3, 8, 0);
    write_ramp(r, 0, 2, 3);
    write_ramp(r, 2, 3 * 8 + 5, 3); /* 29 frames into 8 */
    uint64_t buf[64 * 3];
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(r, 1, buf, 64, &sp));
    assert_int_equal(total_of(r), 31);
    assert_int_equal(sp.first, 23);
    assert_int_equal(sp.lost, 22); /* exactly: frames 1..22 are gone */
    assert_int_equal(sp.n, 8);
    assert_true(ramp_ok(buf, 23, 8, 3));
    /* a write of exactly the capacity, at an offset */
    write_ramp(r, 31, 8, 3);
    T_OK(shmstore_ring_read_since(r, sp.cursor, buf, 64, &sp));
    assert_int_equal(sp.lost, 0);
    assert_int_equal(sp.n, 8);
    assert_true(ramp_ok(buf, 31, 8, 3));
    shmstore_ring_close(r);
}

static void test_ring_errors(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *r = NULL, *r2 = NULL;
    uint64_t one = 1, shape32[31], buf[8];
    for (int i = 0; i < 31; i++)
        shape32[i] = 1;
    shmstore_ring_config_t c = cfg_of("<f4", 0, NULL, 0); /* capacity 0 */
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r), -EINVAL);
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", 0, NULL, &r), -ENOENT); /* nothing created */
    c = cfg_of("<f4", 31, shape32, 4);
    c.frame.ndim = 32; /* the whole storage would have 33 dimensions */
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r), -EINVAL);
    c = cfg_of("<f4", 0, NULL, 4);
    strcpy(c.frame.dtype, "<x9");
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r), SHMSTORE_EDTYPE);
    c = cfg_of("<f4", 1, (uint64_t[]){0}, 4);
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r), -EINVAL);
    c = cfg_of("<f4", 1, &one, 1ull << 60); /* no store holds it */
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r), -ENOSPC);
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", 0, NULL, &r), -ENOENT); /* nothing created */
    /* a full store: the open fails and leaves nothing */
    uint64_t before = used_bytes(f->s);
    c = cfg_of("<f8", 0, NULL, 300 * MiB / 8);
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r), -ENOSPC);
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", 0, NULL, &r), -ENOENT);
    assert_int_equal(used_bytes(f->s), before);
    /* a ring with no generation: reads say nothing, writes say configure first */
    T_OK(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, NULL, &r));
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(r, 0, buf, 8, &sp));
    assert_int_equal(sp.n, 0);
    T_ASSERT_RC(shmstore_ring_read_since(r, 5, buf, 8, &sp), -EINVAL);
    T_ASSERT_RC(shmstore_ring_write(r, buf, 1), SHMSTORE_ENOVALUE);
    T_ASSERT_RC(shmstore_ring_latest(r, 1, buf, &sp), SHMSTORE_ENOVALUE);
    shmstore_ring_view_t v;
    T_ASSERT_RC(shmstore_ring_view_storage(r, &v), SHMSTORE_ENOVALUE);
    T_ASSERT_RC(shmstore_ring_wait(r, 0, 0, NULL), -ETIMEDOUT);
    /* a reader's open with a layout configures a ring that has none */
    c = cfg_of("<u8", 0, NULL, 4);
    T_OK(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE, &c, &r2));
    T_ASSERT_RC(shmstore_ring_read_since(r, 0, buf, 8, &sp), SHMSTORE_EGENERATION);
    T_ASSERT_RC(shmstore_ring_wait(r, 0, 0, NULL), SHMSTORE_EGENERATION);
    assert_int_equal(shmstore_ring_follow(r), 1);
    assert_int_equal(shmstore_ring_follow(r), 0);
    /* one writer: r2's first write takes the role, r's fails while r2 lives */
    T_OK(shmstore_ring_write(r2, (uint64_t[]){7, 8}, 2));
    T_ASSERT_RC(shmstore_ring_write(r, buf, 1), -EBUSY);
    T_ASSERT_RC(shmstore_ring_reconfigure(r, &c), -EBUSY);
    assert_non_null(strstr(shmstore_errmsg(), "another handle of this process"));
    T_ASSERT_RC(shmstore_ring_reconfigure(r2, NULL), -EINVAL);
    /* a cursor from the future */
    T_ASSERT_RC(shmstore_ring_read_since(r, 3, buf, 8, &sp), -EINVAL);
    T_ASSERT_RC(shmstore_ring_view_since(r, 3, 8, &v), -EINVAL);
    T_OK(shmstore_ring_write(r2, NULL, 0)); /* an empty write is nothing */
    T_ASSERT_RC(shmstore_ring_write(r2, NULL, 1), -EINVAL);
    T_ASSERT_RC(shmstore_ring_read_since(r, 0, NULL, 8, &sp), -EINVAL);
    shmstore_ring_close(r2); /* gives the role up */
    T_OK(shmstore_ring_write(r, buf, 1));
    /* kinds and names */
    shmstore_queue_t *q;
    T_ASSERT_RC(shmstore_queue_open(f->s, "e", 0, NULL, &q), SHMSTORE_EKIND);
    T_OK(shmstore_put(f->s, "val", NULL, "x", 1, 0));
    T_ASSERT_RC(shmstore_ring_open(f->s, "val", 0, NULL, &r2), SHMSTORE_EKIND);
    T_ASSERT_RC(shmstore_ring_open(f->s, "", SHMSTORE_R_CREATE, NULL, &r2), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_ring_open(f->s, "e", SHMSTORE_R_CREATE | SHMSTORE_R_EXCL, NULL, &r2), -EEXIST);
    /* deletion: handles go stale */
    T_OK(shmstore_delete(f->s, "e"));
    T_ASSERT_RC(shmstore_ring_write(r, buf, 1), -ESTALE);
    T_ASSERT_RC(shmstore_ring_read_since(r, 0, buf, 8, &sp), -ESTALE);
    T_ASSERT_RC(shmstore_ring_wait(r, 100, 0, NULL), -ESTALE);
    T_ASSERT_RC(shmstore_ring_follow(r), -ESTALE);
    shmstore_ring_close(r);
    shmstore_ring_close(NULL);
    shmstore_ring_view_release(NULL);
    T_OK(shmstore_delete(f->s, "val"));
}

/* ---- generations ------------------------------------------------------------------------- */

static void test_ring_generations(void **state)
{
    struct fixture *f = *state;
    uint64_t base_used = used_bytes(f->s);
    shmstore_ring_t *w = open_u64(f->s, "g", 1, 16, SHMSTORE_R_WRITER), *rd = NULL;
    T_OK(shmstore_ring_open(f->s, "g", 0, NULL, &rd));
    uint64_t gen1_used = used_bytes(f->s);
    write_ramp(w, 0, 10, 1);
    uint64_t buf[64], cursor = 0;
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(rd, cursor, buf, 4, &sp));
    cursor = sp.cursor; /* 4: six frames of generation 1 still unread */
    /* reconfigure: 2 channels, capacity 32 */
    uint64_t two = 2;
    shmstore_ring_config_t c = cfg_of("<u8", 1, &two, 32);
    T_OK(shmstore_ring_reconfigure(w, &c));
    write_ramp(w, 10, 5, 2);
    /* the reader drains generation 1 first (no loss across the change) */
    T_OK(shmstore_ring_read_since(rd, cursor, buf, 64, &sp));
    assert_int_equal(sp.n, 6);
    assert_int_equal(sp.lost, 0);
    assert_true(ramp_ok(buf, 4, 6, 1));
    cursor = sp.cursor;
    T_ASSERT_RC(shmstore_ring_read_since(rd, cursor, buf, 64, &sp), SHMSTORE_EGENERATION);
    T_ASSERT_RC(shmstore_ring_wait(rd, cursor, 0, NULL), SHMSTORE_EGENERATION);
    /* the old generation is held only by rd's lease */
    assert_true(used_bytes(f->s) > gen1_used);
    assert_int_equal(shmstore_ring_follow(rd), 1);
    shmstore_ring_state_t st;
    T_OK(shmstore_ring_state(rd, &st));
    assert_int_equal(st.generation, 2);
    assert_int_equal(st.base, 10);
    assert_int_equal(st.frame_len, 16);
    T_OK(shmstore_ring_read_since(rd, cursor, buf, 64, &sp));
    assert_int_equal(sp.first, 10);
    assert_int_equal(sp.n, 5);
    assert_false(sp.is_older_cursor);
    assert_true(ramp_ok(buf, 10, 5, 2));
    /* generation 1's block was freed by the follow: gen 2 is a bigger block */
    uint64_t gen2_used = used_bytes(f->s);
    /* two more generations while the reader looks elsewhere: it skips generation 3 */
    shmstore_ring_view_t v;
    T_OK(shmstore_ring_view_since(rd, 10, 64, &v)); /* a view keeps generation 2 */
    c = cfg_of("<u8", 0, NULL, 4);
    T_OK(shmstore_ring_reconfigure(w, &c));
    write_ramp(w, 15, 3, 1);
    c = cfg_of("<u8", 0, NULL, 8);
    T_OK(shmstore_ring_reconfigure(w, &c));
    write_ramp(w, 18, 2, 1);
    assert_int_equal(shmstore_ring_follow(rd), 1);
    T_OK(shmstore_ring_read_since(rd, 15, buf, 64, &sp)); /* 15: generation 3's start */
    assert_true(sp.is_older_cursor);
    assert_int_equal(sp.first, 18);
    assert_int_equal(sp.lost, 3);
    assert_int_equal(sp.n, 2);
    assert_true(ramp_ok(buf, 18, 2, 1));
    /* the view of generation 2 is intact and frozen */
    uint64_t over = 99;
    T_OK(shmstore_ring_view_check(&v, &over));
    assert_int_equal(over, 0);
    assert_int_equal(v.n[0], 5);
    assert_true(ramp_ok(v.data[0], 10, 5, 2));
    shmstore_ring_view_release(&v);
    shmstore_ring_view_release(&v); /* twice is harmless */
    assert_true(used_bytes(f->s) < gen2_used + 4096);
    shmstore_ring_close(rd);
    shmstore_ring_close(w);
    T_OK(shmstore_delete(f->s, "g"));
    assert_int_equal(used_bytes(f->s), base_used);
}

/* ---- views ------------------------------------------------------------------------------- */

static void test_ring_views(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *r = open_u64(f->s, "v", 2, 10, 0);
    write_ramp(r, 0, 14, 2); /* storage holds 4..13: 10..13 at indices 0..3 */
    shmstore_ring_view_t v;
    T_OK(shmstore_ring_view_since(r, 6, 100, &v));
    assert_int_equal(v.span.first, 6);
    assert_int_equal(v.span.n, 8);
    assert_int_equal(v.n[0], 4); /* 6..9 */
    assert_int_equal(v.n[1], 4); /* 10..13, wrapped */
    assert_int_equal(v.frame_len, 16);
    assert_int_equal(v.generation, 1);
    assert_int_equal((uintptr_t)v.data[1] % 64, 0);
    assert_true(ramp_ok(v.data[0], 6, 4, 2));
    assert_true(ramp_ok(v.data[1], 10, 4, 2));
    uint64_t over = 99;
    T_OK(shmstore_ring_view_check(&v, &over));
    assert_int_equal(over, 0);
    /* the writer does not wait for views: 3 more frames overwrite 4..6 */
    write_ramp(r, 14, 3, 2);
    T_OK(shmstore_ring_view_check(&v, &over));
    assert_int_equal(over, 1); /* frame 6, the view's first */
    write_ramp(r, 17, 20, 2);
    T_OK(shmstore_ring_view_check(&v, &over));
    assert_int_equal(over, 8);
    /* a view outlives the deletion of its ring and the handle's close */
    shmstore_ring_view_t whole;
    T_OK(shmstore_ring_view_storage(r, &whole));
    assert_int_equal(whole.n[0], 10);
    assert_int_equal(whole.n[1], 0);
    T_OK(shmstore_delete(f->s, "v"));
    shmstore_ring_close(r);
    for (uint64_t p = 27; p < 37; p++) /* storage order: frame p at index (p - 0) % 10 */
        assert_true(ramp_ok((const uint64_t *)whole.data[0] + (p % 10) * 2, p, 1, 2));
    t_assert_clean(f->s);
    shmstore_ring_view_release(&v);
    shmstore_ring_view_release(&whole);
    T_ASSERT_RC(shmstore_ring_view_check(&whole, &over), -EINVAL);
}

/* shmstore_ring_since: the span a view would have, for every cursor, without a lease. */
static void test_ring_since(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *r = open_u64(f->s, "sn", 2, 10, 0);
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_since(r, 0, 5, &sp));
    assert_int_equal(sp.n, 0);
    write_ramp(r, 0, 14, 2); /* storage holds 4..13 */
    for (uint64_t cursor = 0; cursor <= 14; cursor++) {
        for (uint64_t max = 1; max <= 12; max += 5) {
            shmstore_ring_view_t v;
            T_OK(shmstore_ring_since(r, cursor, max, &sp));
            T_OK(shmstore_ring_view_since(r, cursor, max, &v));
            assert_int_equal(sp.first, v.span.first);
            assert_int_equal(sp.n, v.span.n);
            assert_int_equal(sp.cursor, v.span.cursor);
            assert_int_equal(sp.lost, v.span.lost);
            shmstore_ring_view_release(&v);
        }
    }
    T_OK(shmstore_ring_since(r, 2, 100, &sp));
    assert_int_equal(sp.first, 4);
    assert_int_equal(sp.lost, 2);
    assert_int_equal(sp.n, 10);
    assert_int_equal(sp.cursor, 14);
    T_ASSERT_RC(shmstore_ring_since(r, 15, 1, &sp), -EINVAL); /* from the future */
    shmstore_ring_close(r);
    T_OK(shmstore_delete(f->s, "sn"));
    t_assert_clean(f->s);
}

/* ---- waits ------------------------------------------------------------------------------- */

struct waiter {
    shmstore_ring_t *r;
    uint64_t cursor, total;
    int rc;
    t_barrier_t *b;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    t_barrier_wait(w->b);
    w->rc = shmstore_ring_wait(w->r, w->cursor, 5000 * MS, &w->total);
    return NULL;
}

static void test_ring_wait(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *w = open_u64(f->s, "w", 1, 8, SHMSTORE_R_WRITER), *rd = NULL;
    T_OK(shmstore_ring_open(f->s, "w", 0, NULL, &rd));
    T_ASSERT_RC(shmstore_ring_wait(rd, 0, 0, NULL), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_ring_wait(rd, 0, 2 * MS, NULL), -ETIMEDOUT);
    struct waiter wt = {rd, 0, 0, 1, t_barrier_new(2)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_thread, &wt), 0);
    t_barrier_wait(wt.b);
    write_ramp(w, 0, 3, 1);
    pthread_join(th, NULL);
    T_OK(wt.rc);
    assert_int_equal(wt.total, 3);
    uint64_t t = 0;
    T_OK(shmstore_ring_wait(rd, 2, 0, &t)); /* already there: no wait */
    assert_int_equal(t, 3);
    /* a reconfiguration wakes a reader waiting past the end of its generation */
    wt.cursor = 3;
    wt.rc = 1;
    assert_int_equal(pthread_create(&th, NULL, wait_thread, &wt), 0);
    t_barrier_wait(wt.b);
    shmstore_ring_config_t c = cfg_of("<u8", 0, NULL, 4);
    T_OK(shmstore_ring_reconfigure(w, &c));
    pthread_join(th, NULL);
    T_ASSERT_RC(wt.rc, SHMSTORE_EGENERATION);
    t_barrier_free(wt.b);
    shmstore_ring_close(rd);
    shmstore_ring_close(w);
}

/* ---- a dead writer ------------------------------------------------------------------------ */

struct child_arg {
    const char *store;
    int mode; /* 0: take the role and exit; 1: take it and hang (killed) */
    int *ready;
};

static void writer_child(void *arg)
{
    struct child_arg *a = arg;
    shmstore_t *s;
    shmstore_ring_t *r;
    T_CHILD_RC(shmstore_open(a->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_ring_open(s, "dw", SHMSTORE_R_WRITER, NULL, &r), 0);
    uint64_t x[4] = {1, 2, 3, 4};
    T_CHILD_RC(shmstore_ring_write(r, x, 4), 0);
    atomic_store((_Atomic int *)a->ready, 1);
    if (a->mode == 1)
        for (;;)
            pause();
    _exit(0); /* no close: the role is left to recovery */
}

static void test_ring_dead_writer(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *r = open_u64(f->s, "dw", 1, 8, 0);
    int *ready = t_shared_alloc(sizeof(int));
    for (int mode = 0; mode < 2; mode++) {
        *ready = 0;
        struct child_arg a = {f->name, mode, ready};
        pid_t pid = t_fork(writer_child, &a);
        while (!atomic_load((_Atomic int *)ready))
            ;
        /* alive: a clear error naming it */
        if (mode == 1) {
            T_ASSERT_RC(shmstore_ring_write(r, (uint64_t[]){0}, 1), -EBUSY);
            assert_non_null(strstr(shmstore_errmsg(), "already has a writer"));
            kill(pid, SIGKILL);
        }
        assert_int_equal(t_wait_child(pid, 10000), mode == 1 ? 128 + SIGKILL : 0);
        /* dead: its role is reclaimed by the next writer */
        T_OK(shmstore_ring_write(r, (uint64_t[]){9}, 1));
        shmstore_ring_close(r); /* give it up for the next round */
        T_OK(shmstore_ring_open(f->s, "dw", 0, NULL, &r));
    }
    assert_int_equal(total_of(r), 10);
    t_shared_free(ready, sizeof(int));
    shmstore_ring_close(r);
}

/* A writer dies in the middle of a write of 3 capacities: the frames it overwrote are lost,
 * and the next writer goes on from where its storage slots are intact again. */
struct midwrite_arg {
    const char *store;
};

static void midwrite_child(void *arg)
{
    struct midwrite_arg *a = arg;
    shmstore_t *s;
    shmstore_ring_t *r;
    shmstore_ring_view_t v;
    T_CHILD_RC(shmstore_open(a->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_ring_open(s, "mw", SHMSTORE_R_WRITER, NULL, &r), 0);
    T_CHILD_RC(shmstore_ring_view_storage(r, &v), 0);
    struct ring_gen *g = (struct ring_gen *)v.lease.data;
    /* as a write of 24 frames that stored its intent and died copying */
    atomic_store(&g->intent, atomic_load(&g->total) + 24);
    _exit(0);
}

static void test_ring_writer_dies_mid_write(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *r = open_u64(f->s, "mw", 1, 8, 0);
    write_ramp(r, 0, 5, 1);
    shmstore_ring_close(r); /* gives the writer role up, for the child */
    T_OK(shmstore_ring_open(f->s, "mw", 0, NULL, &r));
    struct midwrite_arg a = {f->name};
    assert_int_equal(t_wait_child(t_fork(midwrite_child, &a), 10000), 0);
    uint64_t buf[8];
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(r, 0, buf, 8, &sp)); /* the dead write overwrote them all */
    assert_int_equal(sp.n, 0);
    write_ramp(r, 21, 2, 1); /* the role is taken over: total went up to 29 - 8 = 21 */
    assert_int_equal(total_of(r), 23);
    T_OK(shmstore_ring_read_since(r, 0, buf, 8, &sp));
    assert_int_equal(sp.first, 21);
    assert_int_equal(sp.lost, 21);
    assert_int_equal(sp.n, 2);
    assert_true(ramp_ok(buf, 21, 2, 1));
    shmstore_ring_close(r);
}

/* ---- streaming: a writer at full speed, readers at different speeds -------------------- */

#define WIDTH 8
struct stream {
    shmstore_t *s;
    uint64_t n_frames;     /* frames the writer writes at least */
    uint64_t written;      /* frames it wrote */
    int slow;              /* spin this many iterations between writes */
    uint64_t reconf_every; /* frames between reconfigurations (0: never) */
    _Atomic int done;
    t_barrier_t *start;
};

struct reader_res {
    struct stream *st;
    int slow;              /* spin this many iterations between reads */
    int use_views;
    uint64_t got, lost, bad, gens;
};

/* In a generation of width w frame p's items are p * 1000 + j; w changes with it. */
static void *stream_writer(void *arg)
{
    struct stream *st = arg;
    shmstore_ring_t *r = NULL;
    uint64_t width = WIDTH, cap = 257;
    shmstore_ring_config_t c = cfg_of("<u8", 1, &width, cap);
    assert_int_equal(shmstore_ring_open(st->s, "stream", SHMSTORE_R_WRITER, NULL, &r), 0);
    uint64_t buf[600 * (WIDTH + 4)];
    t_barrier_wait(st->start);
    uint64_t pos = 0, chunk = 1, since = 0;
    while (pos < st->n_frames) {
        uint64_t n = chunk;
        fill_ramp(buf, pos, n, width);
        assert_int_equal(shmstore_ring_write(r, buf, n), 0);
        pos += n;
        since += n;
        chunk = chunk * 7 % 599 + 1; /* 1..599: some larger than the capacity */
        if (st->reconf_every && since >= st->reconf_every) {
            since = 0;
            width = width == WIDTH ? WIDTH + 4 : WIDTH;
            cap = cap == 257 ? 100 : 257;
            c = cfg_of("<u8", 1, &width, cap);
            assert_int_equal(shmstore_ring_reconfigure(r, &c), 0);
        }
        for (volatile int i = 0; i < st->slow; i++)
            ;
    }
    st->written = pos;
    atomic_store(&st->done, 1);
    shmstore_ring_close(r);
    return NULL;
}

static void *stream_reader(void *arg)
{
    struct reader_res *res = arg;
    struct stream *st = res->st;
    shmstore_ring_t *r = NULL;
    assert_int_equal(shmstore_ring_open(st->s, "stream", 0, NULL, &r), 0);
    uint64_t *buf = malloc(300 * (WIDTH + 4) * 8);
    assert_non_null(buf);
    t_barrier_wait(st->start);
    uint64_t cursor = 0;
    for (;;) {
        shmstore_ring_state_t rs;
        assert_int_equal(shmstore_ring_state(r, &rs), 0);
        uint64_t width = rs.cfg.frame.shape[0];
        shmstore_ring_span_t sp;
        int rc;
        if (res->use_views) {
            shmstore_ring_view_t v;
            rc = shmstore_ring_view_since(r, cursor, 300, &v);
            if (rc == 0) {
                sp = v.span;
                /* check the frames, then whether they were intact while we read */
                uint64_t bad_first = ~0ull;
                for (int piece = 0, k = 0; piece < 2; piece++)
                    for (uint64_t i = 0; i < v.n[piece]; i++, k++)
                        if (bad_first == ~0ull &&
                            !ramp_ok((const uint64_t *)v.data[piece] + i * width, sp.first + k, 1,
                                     width))
                            bad_first = (uint64_t)k;
                uint64_t over = 0;
                assert_int_equal(shmstore_ring_view_check(&v, &over), 0);
                if (bad_first != ~0ull && bad_first >= over)
                    res->bad++; /* a torn frame the check did not report */
                shmstore_ring_view_release(&v);
                if (sp.first != cursor + sp.lost)
                    res->bad++;
                res->got += sp.n - over; /* the overwritten ones are lost after all */
                res->lost += sp.lost + over;
                cursor = sp.cursor;
            }
        } else {
            rc = shmstore_ring_read_since(r, cursor, buf, 300, &sp);
            if (rc == 0) {
                if (!ramp_ok(buf, sp.first, sp.n, width) || sp.first != cursor + sp.lost)
                    res->bad++;
                res->got += sp.n;
                res->lost += sp.lost;
                cursor = sp.cursor;
            }
        }
        if (rc == SHMSTORE_EGENERATION) {
            assert_int_equal(shmstore_ring_follow(r), 1);
            res->gens++;
            continue;
        }
        assert_int_equal(rc, 0);
        if (sp.n == 0) {
            if (atomic_load(&st->done)) {
                uint64_t t;
                assert_int_equal(shmstore_ring_total(r, &t), 0);
                int cur = shmstore_ring_follow(r);
                if (cur == 0 && t == cursor)
                    break;
                if (cur == 1)
                    res->gens++;
                continue;
            }
            shmstore_ring_wait(r, cursor, 50 * MS, NULL);
        }
        for (volatile int i = 0; i < res->slow; i++)
            ;
    }
    free(buf);
    shmstore_ring_close(r);
    return NULL;
}

static void run_stream(struct fixture *f, uint64_t n_frames, uint64_t reconf_every, int slow)
{
    uint64_t before = used_bytes(f->s);
    shmstore_ring_t *r = open_u64(f->s, "stream", WIDTH, 257, 0);
    struct stream st = {f->s, n_frames, 0, slow, reconf_every, 0, t_barrier_new(4)};
    struct reader_res rr[3] = {{&st, 0, 0, 0, 0, 0, 0}, {&st, 20000, 0, 0, 0, 0, 0},
                               {&st, 3000, 1, 0, 0, 0, 0}};
    pthread_t tw, tr[3];
    assert_int_equal(pthread_create(&tw, NULL, stream_writer, &st), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&tr[i], NULL, stream_reader, &rr[i]), 0);
    pthread_join(tw, NULL);
    for (int i = 0; i < 3; i++) {
        pthread_join(tr[i], NULL);
        print_message("reader %d (slow %d%s): %" PRIu64 " frames, %" PRIu64 " lost, %" PRIu64
                      " generations followed\n", i, rr[i].slow, rr[i].use_views ? ", views" : "",
                      rr[i].got, rr[i].lost, rr[i].gens);
        assert_int_equal(rr[i].bad, 0);
        /* every frame: read, or counted lost */
        assert_int_equal(rr[i].got + rr[i].lost, st.written);
    }
    t_barrier_free(st.start);
    shmstore_ring_close(r);
    T_OK(shmstore_delete(f->s, "stream"));
    assert_int_equal(used_bytes(f->s), before); /* every generation's block freed */
}

static void test_ring_stream_ramp(void **state)
{
    run_stream(*state, 400000, 0, 0);
}

static void test_ring_stream_generations(void **state)
{
    run_stream(*state, 200000, 5000, 3000);
}

/* ---- fuzzed generation headers ------------------------------------------------------------ */

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_ring_fuzz_headers(void **state)
{
    struct fixture *f = *state;
    shmstore_ring_t *w = open_u64(f->s, "fz", 2, 16, SHMSTORE_R_WRITER);
    write_ramp(w, 0, 20, 2);
    shmstore_obj_info_t info;
    T_OK(shmstore_info(f->s, "fz", &info));
    /* find the generation block through the mapping: it is the ring's `cur` */
    shmstore_ring_view_t whole;
    T_OK(shmstore_ring_view_storage(w, &whole));
    struct ring_gen *g = (struct ring_gen *)whole.lease.data;
    struct ring_gen saved = *g;
    uint64_t x = 88172645463325252ull, buf[64];
    char rep[4096];
    for (int it = 0; it < 3000; it++) {
        *g = saved;
        unsigned char *p = (unsigned char *)g;
        int n = 1 + (int)(rnd(&x) % 4);
        for (int k = 0; k < n; k++) {
            size_t at = rnd(&x) % sizeof(*g);
            p[at] = (unsigned char)rnd(&x);
        }
        if (it % 7 == 0)
            g->capacity = rnd(&x);
        if (it % 11 == 0)
            atomic_store(&g->intent, rnd(&x));
        if (it % 13 == 0)
            atomic_store(&g->total, rnd(&x));
        /* a new handle validates the header: a bad one is ECORRUPT, never a wild read */
        shmstore_ring_t *r = NULL;
        int rc = shmstore_ring_open(f->s, "fz", 0, NULL, &r);
        assert_true(rc == 0 || rc == SHMSTORE_ECORRUPT);
        if (rc == 0) {
            shmstore_ring_span_t sp;
            uint64_t cursor = rnd(&x) % 64;
            rc = shmstore_ring_read_since(r, cursor, buf, 64 / 2, &sp);
            assert_true(rc == 0 || rc == -EINVAL || rc == SHMSTORE_ECORRUPT);
            rc = shmstore_ring_latest(r, 8, buf, &sp);
            assert_true(rc == 0 || rc == SHMSTORE_ECORRUPT);
            shmstore_ring_view_t v;
            if (shmstore_ring_view_since(r, cursor, 4, &v) == 0)
                shmstore_ring_view_release(&v);
            shmstore_ring_close(r);
        }
        shmstore_check(f->s, rep, sizeof(rep)); /* reports, never crashes */
        shmstore_info(f->s, "fz", &info);
    }
    *g = saved;
    shmstore_ring_view_release(&whole);
    shmstore_ring_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ring_write_read_1d, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_nd_frames_and_attrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_write_larger_than_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_dead_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_writer_dies_mid_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_stream_ramp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_stream_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_fuzz_headers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
