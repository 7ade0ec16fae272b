/* test_arrayset.c - array sets: create/fill/commit/open/view, all-or-nothing visibility,
 * abort and failures leaving nothing behind, bad input, overwrite, lifetimes (persistent,
 * tied to a process that closes, exits or is killed), shared-writable members seen by
 * another process, prefix deletion, views outliving the handle and the set. */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#define MiB (1024ull * 1024ull)

struct fixture {
    char name[128];
    shmstore_t *s;
    uint64_t base_used; /* used bytes after gc, the name index already made */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    t_store_name(f->name, sizeof(f->name));
    f->s = t_open_new(f->name, 64 * MiB);
    uint64_t x = 1;
    T_OK(shmstore_put(f->s, "index-maker", NULL, &x, sizeof(x), 0));
    T_OK(shmstore_delete(f->s, "index-maker"));
    shmstore_stat_t st;
    T_OK(shmstore_gc(f->s, NULL));
    T_OK(shmstore_stat(f->s, &st));
    f->base_used = st.used;
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

/* Nothing of any set left: no object, used bytes back to the baseline after gc. */
static void assert_empty(struct fixture *f)
{
    shmstore_stat_t st;
    T_OK(shmstore_gc(f->s, NULL));
    T_OK(shmstore_stat(f->s, &st));
    assert_int_equal(st.n_objects, 0);
    assert_int_equal(st.used, f->base_used);
    t_assert_clean(f->s);
}

/* Three members: "a" int64[3][3], "b/b1" float32[100] with attrs, "b/s" a string. */
static uint64_t shape_a[2] = {3, 3}, shape_b1[1] = {100};
static char attrs_buf[256];

static void members(shmstore_set_member_t m[3])
{
    memset(m, 0, 3 * sizeof(m[0]));
    m[0].name = "b/b1";
    shmstore_datum_init_array(&m[0].desc, "<f4", 1, shape_b1);
    uint32_t alen = 0;
    int64_t srate = 250;
    T_OK(shmstore_attrs_add(attrs_buf, sizeof(attrs_buf), &alen, "srate", SHMSTORE_T_INT64, &srate, 8));
    T_OK(shmstore_attrs_add(attrs_buf, sizeof(attrs_buf), &alen, "unit", SHMSTORE_T_STR, "V", 1));
    m[0].desc.attrs = attrs_buf;
    m[0].desc.attrs_len = alen;
    m[0].len = 400;
    m[1].name = "a";
    shmstore_datum_init_array(&m[1].desc, "<i8", 2, shape_a);
    m[1].len = 72;
    m[2].name = "b/s";
    shmstore_datum_init(&m[2].desc, SHMSTORE_T_STR);
    m[2].len = 5;
}

static void fill(shmstore_set_t *set)
{
    size_t i;
    T_OK(shmstore_set_find(set, "a", &i));
    int64_t *a = shmstore_set_data(set, i);
    for (int k = 0; k < 9; k++)
        a[k] = k * 10;
    T_OK(shmstore_set_find(set, "b/b1", &i));
    float *b1 = shmstore_set_data(set, i);
    for (int k = 0; k < 100; k++)
        b1[k] = (float)k / 2;
    T_OK(shmstore_set_find(set, "b/s", &i));
    T_ASSERT_RC(shmstore_set_write(set, i, 3, "hello", 5), -ERANGE);
    T_OK(shmstore_set_write(set, i, 0, "hello", 5));
}

static void make_set(shmstore_t *s, const char *prefix, unsigned flags)
{
    shmstore_set_member_t m[3];
    shmstore_set_t *set = NULL;
    members(m);
    T_OK(shmstore_set_create(s, prefix, flags, m, 3, &set));
    fill(set);
    T_OK(shmstore_set_commit(set));
    shmstore_set_close(set);
}

static void check_set(shmstore_t *s, const char *prefix)
{
    shmstore_set_t *set = NULL;
    T_OK(shmstore_set_open(s, prefix, &set));
    assert_int_equal(shmstore_set_count(set), 3);
    shmstore_set_member_t mi;
    const char *order[3] = {"a", "b/b1", "b/s"};
    for (size_t i = 0; i < 3; i++) {
        T_OK(shmstore_set_member(set, i, &mi));
        assert_string_equal(mi.name, order[i]);
    }
    T_ASSERT_RC(shmstore_set_member(set, 3, &mi), -ERANGE);
    size_t i;
    T_ASSERT_RC(shmstore_set_find(set, "b", &i), -ENOENT);
    shmstore_view_t v;
    T_OK(shmstore_set_find(set, "a", &i));
    T_OK(shmstore_set_view(set, i, &v));
    assert_int_equal(v.desc.type, SHMSTORE_T_ARRAY);
    assert_string_equal(v.desc.dtype, "<i8");
    assert_int_equal(v.desc.ndim, 2);
    assert_int_equal(v.desc.shape[1], 3);
    assert_int_equal(((uintptr_t)v.data) % 64, 0);
    for (int k = 0; k < 9; k++)
        assert_int_equal(((const int64_t *)v.data)[k], k * 10);
    shmstore_view_release(&v);
    T_OK(shmstore_set_find(set, "b/b1", &i));
    T_OK(shmstore_set_view(set, i, &v));
    assert_true(((const float *)v.data)[99] == 49.5f);
    shmstore_type_t ty;
    const void *val;
    uint32_t vl;
    T_OK(shmstore_attrs_get(v.desc.attrs, v.desc.attrs_len, "srate", &ty, &val, &vl));
    int64_t srate;
    memcpy(&srate, val, 8); /* attr values are 8-aligned in the map, not in the key */
    assert_int_equal(srate, 250);
    shmstore_view_release(&v);
    T_OK(shmstore_set_find(set, "b/s", &i));
    T_OK(shmstore_set_view(set, i, &v));
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "hello", 5);
    shmstore_view_release(&v);
    assert_null(shmstore_set_data(set, 0)); /* sealed: no writable pointer */
    T_ASSERT_RC(shmstore_set_write(set, 0, 0, "x", 1), -EINVAL);
    shmstore_obj_info_t info;
    T_OK(shmstore_set_info(set, &info));
    assert_int_equal(info.kind, SHMSTORE_KIND_SET);
    assert_int_equal(info.count, 3);
    assert_int_equal(info.size, 477);
    assert_int_equal(info.is_sealed, 1);
    assert_int_equal(info.set_loading, 0);
    shmstore_set_close(set);
}

static void test_arrayset_roundtrip(void **state)
{
    struct fixture *f = *state;
    make_set(f->s, "myproject", 0);
    check_set(f->s, "myproject");
    T_OK(shmstore_delete(f->s, "myproject"));
    T_ASSERT_RC(shmstore_set_open(f->s, "myproject", &(shmstore_set_t *){NULL}), -ENOENT);
    assert_empty(f);
}

/* While loading: invisible to open (here and in another process), listed as loading. */
static int list_loading(const shmstore_obj_info_t *info, void *arg)
{
    if (!info->set_prefix_len) /* the set, not its members (listed as values once visible) */
        *(int *)arg = (int)info->set_loading + 10 * (info->kind == SHMSTORE_KIND_SET);
    return 0;
}

static void child_open_fails(void *arg)
{
    shmstore_t *s;
    shmstore_set_t *set;
    T_CHILD_RC(shmstore_open(arg, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_set_open(s, "p", &set), -ENOENT);
    shmstore_close(s);
}

static void test_arrayset_invisible_until_commit(void **state)
{
    struct fixture *f = *state;
    shmstore_set_member_t m[3];
    shmstore_set_t *set = NULL, *r = NULL;
    members(m);
    T_OK(shmstore_set_create(f->s, "p", 0, m, 3, &set));
    fill(set);
    T_ASSERT_RC(shmstore_set_open(f->s, "p", &r), -ENOENT);
    assert_int_equal(t_wait_child(t_fork(child_open_fails, f->name), 10000), 0);
    int seen = 0;
    T_OK(shmstore_list(f->s, "p", list_loading, &seen));
    assert_int_equal(seen, 11);
    T_OK(shmstore_set_commit(set));
    T_OK(shmstore_list(f->s, "p", list_loading, &seen));
    assert_int_equal(seen, 10);
    shmstore_set_close(set);
    check_set(f->s, "p");
    T_OK(shmstore_delete_prefix(f->s, "p", NULL));
    assert_empty(f);
}

static void test_arrayset_abort_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    shmstore_set_member_t m[3];
    shmstore_set_t *set = NULL;
    members(m);
    T_OK(shmstore_set_create(f->s, "p", 0, m, 3, &set));
    fill(set);
    shmstore_set_abort(set);
    assert_empty(f);
    /* Closing an uncommitted set is an abort too. */
    T_OK(shmstore_set_create(f->s, "p", 0, m, 3, &set));
    shmstore_set_close(set);
    assert_empty(f);
}

static void test_arrayset_bad_input(void **state)
{
    struct fixture *f = *state;
    shmstore_set_member_t m[3];
    shmstore_set_t *set = NULL;
    members(m);
    m[2].name = "a";
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), -EINVAL); /* duplicate */
    members(m);
    m[2].name = "b/b1/x";
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), -EINVAL); /* leaf and group */
    members(m);
    m[2].name = "b//s";
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), SHMSTORE_ENAME);
    m[2].name = "";
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), SHMSTORE_ENAME);
    char longp[251];
    memset(longp, 'x', 250);
    longp[250] = '\0';
    members(m);
    m[2].name = "toolong"; /* 250 + 1 + 7 > 255 */
    T_ASSERT_RC(shmstore_set_create(f->s, longp, 0, m, 3, &set), SHMSTORE_ENAME);
    assert_non_null(strstr(shmstore_errmsg(), "toolong"));
    members(m);
    m[1].len = 71; /* does not match its descriptor */
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), -EINVAL);
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0x100, m, 3, &set), -EINVAL);
    /* Larger than the store: ENOSPC, nothing left. */
    members(m);
    uint64_t big[1] = {128 * MiB};
    shmstore_datum_init_array(&m[1].desc, "|u1", 1, big);
    m[1].len = 128 * MiB;
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), -ENOSPC);
    assert_non_null(strstr(shmstore_errmsg(), "'p'"));
    assert_empty(f);
    /* An existing name, without and with overwrite. */
    make_set(f->s, "p", 0);
    members(m);
    T_ASSERT_RC(shmstore_set_create(f->s, "p", 0, m, 3, &set), -EEXIST);
    T_OK(shmstore_set_create(f->s, "p", SHMSTORE_SET_OVERWRITE, m, 3, &set));
    check_set(f->s, "p"); /* the old set is still there while the new one loads */
    fill(set);
    size_t i;
    T_OK(shmstore_set_find(set, "b/s", &i));
    memcpy(shmstore_set_data(set, i), "world", 5);
    T_OK(shmstore_set_commit(set));
    shmstore_set_close(set);
    shmstore_set_t *r;
    shmstore_view_t v;
    T_OK(shmstore_set_open(f->s, "p", &r));
    T_OK(shmstore_set_view(r, i, &v));
    assert_memory_equal(v.data, "world", 5);
    shmstore_view_release(&v);
    shmstore_set_close(r);
    shmstore_stat_t st;
    T_OK(shmstore_stat(f->s, &st));
    assert_int_equal(st.n_objects, 1);
    T_OK(shmstore_delete(f->s, "p"));
    assert_empty(f);
}

static void test_arrayset_empty_and_zero_size(void **state)
{
    struct fixture *f = *state;
    shmstore_set_t *set = NULL;
    T_OK(shmstore_set_create(f->s, "empty", 0, NULL, 0, &set));
    T_OK(shmstore_set_commit(set));
    shmstore_set_close(set);
    shmstore_set_member_t m[1] = {{.name = "z", .len = 0}};
    uint64_t zero[2] = {0, 5};
    shmstore_datum_init_array(&m[0].desc, "<f8", 2, zero);
    T_OK(shmstore_set_create(f->s, "zero", 0, m, 1, &set));
    T_OK(shmstore_set_commit(set));
    shmstore_set_close(set);
    T_OK(shmstore_set_open(f->s, "zero", &set));
    shmstore_view_t v;
    T_OK(shmstore_set_view(set, 0, &v));
    assert_int_equal(v.len, 0);
    assert_int_equal(v.desc.shape[1], 5);
    shmstore_view_release(&v);
    shmstore_set_close(set);
    T_OK(shmstore_set_open(f->s, "empty", &set));
    assert_int_equal(shmstore_set_count(set), 0);
    shmstore_set_close(set);
    uint64_t n = 0;
    T_OK(shmstore_delete_prefix(f->s, "empty", &n));
    T_OK(shmstore_delete_prefix(f->s, "zero/", &n));
    assert_int_equal(n, 1);
    assert_empty(f);
}

/* A view outlives its handle, the deletion of its set, and its bytes stay intact. */
static void test_arrayset_view_outlives_set(void **state)
{
    struct fixture *f = *state;
    make_set(f->s, "p", 0);
    shmstore_set_t *set;
    shmstore_view_t v;
    T_OK(shmstore_set_open(f->s, "p", &set));
    T_OK(shmstore_set_view(set, 0, &v));
    shmstore_set_close(set);
    T_OK(shmstore_delete(f->s, "p"));
    make_set(f->s, "q", 0); /* would reuse the blocks if they had been freed */
    for (int k = 0; k < 9; k++)
        assert_int_equal(((const int64_t *)v.data)[k], k * 10);
    shmstore_view_release(&v);
    T_OK(shmstore_delete(f->s, "q"));
    assert_empty(f);
}

/* One view of every member: each member's bytes at its offset, the directory outside it,
 * and valid after the set is deleted. */
static void test_arrayset_view_all(void **state)
{
    struct fixture *f = *state;
    make_set(f->s, "p", 0);
    shmstore_set_t *set;
    shmstore_view_t all, v;
    T_OK(shmstore_set_open(f->s, "p", &set));
    T_OK(shmstore_set_view_all(set, &all));
    assert_int_equal(all.desc.type, SHMSTORE_T_BYTES);
    for (size_t i = 0; i < shmstore_set_count(set); i++) {
        shmstore_set_member_t m;
        T_OK(shmstore_set_member(set, i, &m));
        T_OK(shmstore_set_view(set, i, &v));
        assert_true(m.offset + m.len <= all.len);
        assert_ptr_equal((const char *)all.data + m.offset, v.data);
        shmstore_view_release(&v);
        if (i == 0)
            assert_int_equal(m.offset, 0);
    }
    shmstore_set_close(set);
    T_OK(shmstore_delete(f->s, "p"));
    make_set(f->s, "q", 0);
    assert_int_equal(((const int64_t *)all.data)[8], 80); /* member "a" still there */
    shmstore_view_release(&all);
    T_OK(shmstore_delete(f->s, "q"));
    assert_empty(f);
}

static int count_members(const shmstore_obj_info_t *info, void *arg)
{
    int *n = arg;
    if (info->set_prefix_len) {
        assert_int_equal(info->kind, SHMSTORE_KIND_VALUE);
        assert_int_equal(info->set_prefix_len, 1);
        assert_int_equal(info->footprint, 0);
        n[0]++;
    } else {
        n[1]++;
    }
    return 0;
}

/* Members are values of their full names: described, listed, found and unique in the
 * store; never put, deleted or shadowed one by one; and a set cannot be loaded over
 * names already taken (checked at create and again at commit). */
static void test_arrayset_members_are_values(void **state)
{
    struct fixture *f = *state;
    make_set(f->s, "p", 0);
    shmstore_obj_info_t info;
    T_OK(shmstore_info(f->s, "p/b/b1", &info));
    assert_string_equal(info.name, "p/b/b1");
    assert_int_equal(info.kind, SHMSTORE_KIND_VALUE);
    assert_int_equal(info.size, 400);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.is_sealed, 1);
    assert_string_equal(info.desc.dtype, "<f4");
    assert_int_equal(info.set_prefix_len, 1);
    T_ASSERT_RC(shmstore_info(f->s, "p/b", &info), -ENOENT); /* a group, not a member */
    T_ASSERT_RC(shmstore_info(f->s, "p/zz", &info), -ENOENT);
    int n[2] = {0, 0};
    T_OK(shmstore_list(f->s, NULL, count_members, n));
    assert_int_equal(n[0], 3);
    assert_int_equal(n[1], 1);
    n[0] = n[1] = 0;
    T_OK(shmstore_list(f->s, "p/b/", count_members, n)); /* a prefix inside the set */
    assert_int_equal(n[0], 2);
    assert_int_equal(n[1], 0);
    shmstore_set_t *set;
    size_t i;
    T_OK(shmstore_set_open_member(f->s, "p/b/s", &set, &i));
    shmstore_view_t v;
    T_OK(shmstore_set_view(set, i, &v));
    assert_memory_equal(v.data, "hello", 5);
    shmstore_view_release(&v);
    shmstore_set_close(set);
    T_ASSERT_RC(shmstore_set_open_member(f->s, "p/b", &set, &i), -ENOENT);
    T_ASSERT_RC(shmstore_set_open_member(f->s, "nope/x", &set, &i), -ENOENT);
    /* Immutable: no value of a member's name, no deleting one member. */
    uint64_t x = 7;
    T_ASSERT_RC(shmstore_put(f->s, "p/a", NULL, &x, sizeof(x), 0), -EEXIST);
    assert_non_null(strstr(shmstore_errmsg(), "member of set 'p'"));
    T_ASSERT_RC(shmstore_delete(f->s, "p/a"), -EPERM);
    /* No other set over the same names ("p/b" with "b1" is p's "b/b1"). */
    shmstore_set_member_t m1 = {.name = "b1", .len = 8};
    shmstore_datum_init(&m1.desc, SHMSTORE_T_INT64);
    T_ASSERT_RC(shmstore_set_create(f->s, "p/b", 0, &m1, 1, &set), -EEXIST);
    /* A set over a name a value holds: refused at create ... */
    T_OK(shmstore_put(f->s, "q/b1", NULL, &x, sizeof(x), 0));
    T_ASSERT_RC(shmstore_set_create(f->s, "q", 0, &m1, 1, &set), -EEXIST);
    assert_non_null(strstr(shmstore_errmsg(), "q/b1"));
    /* ... and at commit when the value appeared while the set was loading. */
    T_OK(shmstore_set_create(f->s, "r", 0, &m1, 1, &set));
    T_OK(shmstore_put(f->s, "r/b1", NULL, &x, sizeof(x), 0));
    T_ASSERT_RC(shmstore_set_commit(set), -EEXIST);
    shmstore_set_close(set);
    T_ASSERT_RC(shmstore_set_open(f->s, "r", &set), -ENOENT);
    uint64_t n_del = 0;
    T_OK(shmstore_delete_prefix(f->s, "p", &n_del));
    assert_int_equal(n_del, 1); /* the set; its members went with it */
    T_ASSERT_RC(shmstore_info(f->s, "p/a", &info), -ENOENT);
    T_OK(shmstore_put(f->s, "p/a", NULL, &x, sizeof(x), 0)); /* the name is free again */
    T_OK(shmstore_delete_prefix(f->s, "p", NULL));
    T_OK(shmstore_delete_prefix(f->s, "q", NULL));
    T_OK(shmstore_delete_prefix(f->s, "r", NULL));
    assert_empty(f);
}

static void test_arrayset_delete_prefix(void **state)
{
    struct fixture *f = *state;
    make_set(f->s, "proj", 0);
    make_set(f->s, "proj/sub", 0);
    uint64_t x = 7, n = 0;
    T_OK(shmstore_put(f->s, "proj/extra", NULL, &x, sizeof(x), 0));
    T_OK(shmstore_put(f->s, "project", NULL, &x, sizeof(x), 0)); /* not under proj/ */
    T_ASSERT_RC(shmstore_delete_prefix(f->s, "", &n), -EINVAL);
    T_ASSERT_RC(shmstore_delete_prefix(f->s, NULL, &n), -EINVAL);
    T_OK(shmstore_delete_prefix(f->s, "proj/", &n));
    assert_int_equal(n, 3);
    shmstore_obj_info_t info;
    T_OK(shmstore_info(f->s, "project", &info));
    T_OK(shmstore_delete_prefix(f->s, "project", &n));
    assert_int_equal(n, 1);
    T_OK(shmstore_delete_prefix(f->s, "nothing", &n));
    assert_int_equal(n, 0);
    assert_empty(f);
}

/* Lifetimes: a child makes a set, then closes, exits without closing, or is killed. */
enum how { H_CLOSE, H_EXIT, H_KILL };
struct life {
    char store[128];
    unsigned flags;
    enum how how;
    _Atomic int ready;
};

/* A child's end as `how` says: closes and exits, exits without closing, or waits for its
 * SIGKILL; `*flag = value` tells the parent it got there. */
static void child_end(shmstore_t *s, enum how how, _Atomic int *flag, int value)
{
    if (how == H_CLOSE)
        shmstore_close(s);
    atomic_store(flag, value);
    if (how == H_KILL)
        for (;;)
            pause();
    _exit(0); /* H_EXIT: no close */
}

static void child_make(void *arg)
{
    struct life *l = arg;
    shmstore_t *s;
    T_CHILD_RC(shmstore_open(l->store, 0, NULL, &s), 0);
    shmstore_set_member_t m[3];
    shmstore_set_t *set;
    members(m);
    T_CHILD_RC(shmstore_set_create(s, "life", l->flags, m, 3, &set), 0);
    fill(set);
    T_CHILD_RC(shmstore_set_commit(set), 0);
    shmstore_set_close(set);
    child_end(s, l->how, &l->ready, 1);
}

static void run_life(struct fixture *f, unsigned flags, enum how how)
{
    struct life *l = t_shared_alloc(sizeof(*l));
    snprintf(l->store, sizeof(l->store), "%s", f->name);
    l->flags = flags;
    l->how = how;
    pid_t pid = t_fork(child_make, l);
    while (!atomic_load(&l->ready))
        usleep(1000);
    if (how == H_KILL)
        kill(pid, SIGKILL);
    int st = t_wait_child(pid, 10000);
    assert_int_equal(st, how == H_KILL ? 128 + SIGKILL : 0);
    T_OK(shmstore_gc(f->s, NULL));
    shmstore_set_t *set;
    if (flags & SHMSTORE_SET_TIED) {
        T_ASSERT_RC(shmstore_set_open(f->s, "life", &set), -ENOENT);
    } else {
        check_set(f->s, "life");
        T_OK(shmstore_delete(f->s, "life"));
    }
    assert_empty(f);
    t_shared_free(l, sizeof(*l));
}

/* Many sets owned at once by one process: N_TIED tied, N_LOADING being loaded, some of
 * them deleted by the owner and some by another process (the anchor among them), more
 * made after that; all of them go with the owner, however it ends. */
#define N_TIED 100
#define N_LOADING 20
struct many {
    char store[128];
    enum how how;
    _Atomic int step; /* 1: the child made its sets; 2: the parent deleted some */
};

static void tied_set(shmstore_t *s, const char *prefix, bool commit)
{
    shmstore_set_member_t m[3];
    shmstore_set_t *set;
    members(m);
    T_CHILD_RC(shmstore_set_create(s, prefix, SHMSTORE_SET_TIED, m, 3, &set), 0);
    fill(set);
    if (commit) {
        T_CHILD_RC(shmstore_set_commit(set), 0);
        shmstore_set_close(set);
    } /* else left loading: the handle (and the set) are the process's until it ends */
}

static void child_many(void *arg)
{
    struct many *l = arg;
    shmstore_t *s;
    char name[32];
    T_CHILD_RC(shmstore_open(l->store, 0, NULL, &s), 0);
    for (int i = 0; i < N_TIED; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        tied_set(s, name, true);
        if (i % 10 == 3) { /* an untied one between them: the anchor record stays right */
            snprintf(name, sizeof(name), "keep%d", i);
            shmstore_set_member_t m[3];
            shmstore_set_t *set;
            members(m);
            T_CHILD_RC(shmstore_set_create(s, name, 0, m, 3, &set), 0);
            T_CHILD_RC(shmstore_set_commit(set), 0);
            shmstore_set_close(set);
        }
    }
    T_CHILD_RC(shmstore_delete(s, "t0"), 0); /* the first: the anchor moves */
    T_CHILD_RC(shmstore_delete(s, "t1"), 0);
    for (int i = 0; i < N_LOADING; i++) {
        snprintf(name, sizeof(name), "loading%d", i);
        tied_set(s, name, false);
    }
    atomic_store(&l->step, 1);
    while (atomic_load(&l->step) != 2)
        usleep(1000);
    for (int i = 0; i < 5; i++) { /* after another process deleted our anchor */
        snprintf(name, sizeof(name), "late%d", i);
        tied_set(s, name, true);
    }
    child_end(s, l->how, &l->step, 3);
}

static int count_objects(const shmstore_obj_info_t *info, void *arg)
{
    if (!info->set_prefix_len)
        ++*(int *)arg;
    return 0;
}

static void test_arrayset_many_tied_sets(void **state)
{
    struct fixture *f = *state;
    /* The name index grows for this many objects: grow it first, then take the baseline. */
    for (int i = 0; i < 2 * N_TIED; i++) {
        char name[32];
        uint64_t x = 1;
        snprintf(name, sizeof(name), "grow%d", i);
        T_OK(shmstore_put(f->s, name, NULL, &x, sizeof(x), 0));
    }
    for (int i = 0; i < 2 * N_TIED; i++) {
        char name[32];
        snprintf(name, sizeof(name), "grow%d", i);
        T_OK(shmstore_delete(f->s, name));
    }
    shmstore_stat_t st;
    T_OK(shmstore_gc(f->s, NULL));
    T_OK(shmstore_stat(f->s, &st));
    f->base_used = st.used;
    for (enum how how = H_CLOSE; how <= H_KILL; how++) {
        struct many *l = t_shared_alloc(sizeof(*l));
        snprintf(l->store, sizeof(l->store), "%s", f->name);
        l->how = how;
        pid_t pid = t_fork(child_many, l);
        while (atomic_load(&l->step) != 1)
            usleep(1000);
        int n = 0;
        T_OK(shmstore_list(f->s, NULL, count_objects, &n));
        assert_int_equal(n, N_TIED - 2 + N_LOADING + N_TIED / 10);
        for (int i = 2; i < N_TIED - 10; i++) { /* the anchor among them: not by its owner */
            char name[32];
            snprintf(name, sizeof(name), "t%d", i);
            T_OK(shmstore_delete(f->s, name));
        }
        atomic_store(&l->step, 2);
        while (atomic_load(&l->step) != 3)
            usleep(1000);
        if (how == H_KILL)
            kill(pid, SIGKILL);
        assert_int_equal(t_wait_child(pid, 20000), how == H_KILL ? 128 + SIGKILL : 0);
        T_OK(shmstore_gc(f->s, NULL));
        n = 0;
        T_OK(shmstore_list(f->s, NULL, count_objects, &n));
        assert_int_equal(n, N_TIED / 10); /* only the untied ones */
        for (int i = 3; i < N_TIED; i += 10) {
            char name[32];
            snprintf(name, sizeof(name), "keep%d", i);
            T_OK(shmstore_delete(f->s, name));
        }
        assert_empty(f);
        t_shared_free(l, sizeof(*l));
    }
}

static void test_arrayset_persistent_outlives_creator(void **state)
{
    struct fixture *f = *state;
    run_life(f, 0, H_CLOSE);
    run_life(f, 0, H_EXIT);
    run_life(f, 0, H_KILL);
}

static void test_arrayset_tied_goes_with_creator(void **state)
{
    struct fixture *f = *state;
    run_life(f, SHMSTORE_SET_TIED, H_CLOSE);
    run_life(f, SHMSTORE_SET_TIED, H_EXIT);
    run_life(f, SHMSTORE_SET_TIED, H_KILL);
    /* A reader of a tied set removes nothing when it closes; the set goes when its
     * creator closes. */
    shmstore_t *s2;
    T_OK(shmstore_open(f->name, 0, NULL, &s2));
    make_set(s2, "tied", SHMSTORE_SET_TIED);
    check_set(f->s, "tied");
    check_set(f->s, "tied");
    shmstore_close(s2);
    shmstore_set_t *set;
    T_ASSERT_RC(shmstore_set_open(f->s, "tied", &set), -ENOENT);
    assert_empty(f);
}

/* Shared-writable: another process writes a member in place; we see it. */
static void child_write(void *arg)
{
    shmstore_t *s;
    shmstore_set_t *set;
    size_t i;
    T_CHILD_RC(shmstore_open(arg, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_set_open(s, "w", &set), 0);
    T_CHILD_RC(shmstore_set_find(set, "a", &i), 0);
    int64_t *a = shmstore_set_data(set, i);
    T_CHILD_CHECK(a != NULL);
    a[4] = -42;
    shmstore_set_close(set);
    shmstore_close(s);
}

static void test_arrayset_shared_writable(void **state)
{
    struct fixture *f = *state;
    make_set(f->s, "w", SHMSTORE_SET_WRITABLE);
    shmstore_set_t *set;
    shmstore_view_t v;
    size_t i;
    T_OK(shmstore_set_open(f->s, "w", &set));
    T_OK(shmstore_set_find(set, "a", &i));
    T_OK(shmstore_set_view(set, i, &v));
    assert_int_equal(t_wait_child(t_fork(child_write, f->name), 10000), 0);
    assert_int_equal(((const int64_t *)v.data)[4], -42);
    shmstore_obj_info_t info;
    T_OK(shmstore_set_info(set, &info));
    assert_int_equal(info.is_sealed, 0);
    assert_int_equal(info.set_flags, SHMSTORE_SET_WRITABLE);
    shmstore_view_release(&v);
    shmstore_set_close(set);
    T_OK(shmstore_delete(f->s, "w"));
    assert_empty(f);
}

/* A kill while loading (parked between create and commit): nothing visible, nothing
 * leaked after recovery. The random-timing soak is tests/crash/test_crash_arrayset.c. */
static void child_park(void *arg)
{
    struct life *l = arg;
    shmstore_t *s;
    T_CHILD_RC(shmstore_open(l->store, 0, NULL, &s), 0);
    shmstore_set_member_t m[3];
    shmstore_set_t *set;
    members(m);
    T_CHILD_RC(shmstore_set_create(s, "life", l->flags, m, 3, &set), 0);
    fill(set);
    atomic_store(&l->ready, 1);
    for (;;)
        pause();
}

static void test_arrayset_killed_while_loading(void **state)
{
    struct fixture *f = *state;
    struct life *l = t_shared_alloc(sizeof(*l));
    snprintf(l->store, sizeof(l->store), "%s", f->name);
    pid_t pid = t_fork(child_park, l);
    while (!atomic_load(&l->ready))
        usleep(1000);
    shmstore_set_t *set;
    T_ASSERT_RC(shmstore_set_open(f->s, "life", &set), -ENOENT);
    kill(pid, SIGKILL);
    assert_int_equal(t_wait_child(pid, 10000), 128 + SIGKILL);
    shmstore_gc_stats_t gs;
    T_OK(shmstore_gc(f->s, &gs));
    assert_int_equal(gs.dead_procs, 1);
    assert_empty(f);
    t_shared_free(l, sizeof(*l));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arrayset_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_invisible_until_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_empty_and_zero_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_view_outlives_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_view_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_members_are_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_delete_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_persistent_outlives_creator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_tied_goes_with_creator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_many_tied_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_shared_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrayset_killed_while_loading, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
