/* test_errors.c - shmstore_strerror(), shmstore_err_name() for every code of the
 * SHMSTORE_ERRNO_MAP and for errno values; shmstore_errmsg() after failures, per thread. */
#include "test.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#define MiB (1024ull * 1024ull)

struct code {
    int value;
    const char *name;
    const char *msg;
};

static const struct code codes[] = {
#define T_CODE(name, val, msg) {SHMSTORE_##name, "SHMSTORE_" #name, msg},
    SHMSTORE_ERRNO_MAP(T_CODE)
#undef T_CODE
};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

static void test_errors_map(void **state)
{
    (void)state;
    assert_int_equal(N_CODES, 13);
    for (size_t i = 0; i < N_CODES; i++) {
        assert_true(codes[i].value < -4000);
        for (size_t j = 0; j < i; j++)
            assert_true(codes[i].value != codes[j].value);
        const char *msg = shmstore_strerror(codes[i].value);
        const char *name = shmstore_err_name(codes[i].value);
        assert_non_null(msg);
        assert_non_null(name);
        assert_string_equal(msg, codes[i].msg);
        assert_string_equal(name, codes[i].name);
    }
    /* The enum constants themselves. */
    assert_int_equal(SHMSTORE_ECORRUPT, -4001);
    assert_int_equal(SHMSTORE_ENAME, -4012);
    assert_int_equal(SHMSTORE_EGENERATION, -4013);
}

static void test_errors_errno_values(void **state)
{
    (void)state;
    static const struct {
        int err;
        const char *name;
    } errnos[] = {
        {ENOENT, "ENOENT"},   {EEXIST, "EEXIST"},       {EINVAL, "EINVAL"},
        {ENOSPC, "ENOSPC"},   {ETIMEDOUT, "ETIMEDOUT"}, {ESTALE, "ESTALE"},
        {ENOBUFS, "ENOBUFS"}, {EINTR, "EINTR"},         {EACCES, "EACCES"},
        {ENOMEM, "ENOMEM"},   {EAGAIN, "EAGAIN"},       {EPERM, "EPERM"},
    };
    for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
        const char *msg = shmstore_strerror(-errnos[i].err);
        assert_non_null(msg);
        assert_string_equal(msg, strerror(errnos[i].err));
        assert_string_equal(shmstore_err_name(-errnos[i].err), errnos[i].name);
    }
    /* Anything else still gets a string, never NULL. */
    static const int odd[] = {0, 1, 12345, -3999, -4000, -4013, -5000, INT_MIN, INT_MAX, -9999};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        assert_non_null(shmstore_strerror(odd[i]));
        assert_non_null(shmstore_err_name(odd[i]));
        assert_true(shmstore_strerror(odd[i])[0] != '\0');
        assert_true(shmstore_err_name(odd[i])[0] != '\0');
    }
}

static void test_errors_errmsg_after_failure(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = NULL;
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s), -ENOENT);
    const char *msg = shmstore_errmsg();
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    assert_non_null(strstr(msg, name)); /* names the store */

    s = t_open_new(name, 4 * MiB);
    char buf[4];
    size_t len = 0;
    T_ASSERT_RC(shmstore_get(s, "no/such/object", NULL, buf, sizeof(buf), &len, NULL),
                -ENOENT);
    msg = shmstore_errmsg();
    assert_true(msg[0] != '\0');
    assert_non_null(strstr(msg, "no/such/object")); /* names the object */

    T_OK(shmstore_put(s, "obj", NULL, "0123456789", 10, 0));
    T_ASSERT_RC(shmstore_get(s, "obj", NULL, buf, sizeof(buf), &len, NULL), -ENOBUFS);
    assert_true(shmstore_errmsg()[0] != '\0');

    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    T_ASSERT_RC(shmstore_put(s, "obj", &d, "0123", 4, 0), -EINVAL);
    assert_true(shmstore_errmsg()[0] != '\0');
    t_cleanup(s, name);
}

struct thread_msg {
    char before[256];
    char after[256];
    int rc;
};

static void *errmsg_thread(void *p)
{
    struct thread_msg *t = p;
    snprintf(t->before, sizeof(t->before), "%s", shmstore_errmsg());
    shmstore_datum_t d;
    uint64_t shape[1] = {1};
    t->rc = shmstore_datum_init_array(&d, "<bogus", 1, shape);
    snprintf(t->after, sizeof(t->after), "%s", shmstore_errmsg());
    return NULL;
}

static void test_errors_errmsg_per_thread(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = NULL;
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s), -ENOENT);
    char mine[512];
    snprintf(mine, sizeof(mine), "%s", shmstore_errmsg());
    assert_true(mine[0] != '\0');

    struct thread_msg t;
    memset(&t, 0, sizeof(t));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, errmsg_thread, &t), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_string_equal(t.before, ""); /* a new thread has no message */
    assert_int_equal(t.rc, SHMSTORE_EDTYPE);
    assert_true(t.after[0] != '\0'); /* its own failure has a message */
    /* The other thread's failure did not touch ours. */
    assert_string_equal(shmstore_errmsg(), mine);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_map),
        cmocka_unit_test(test_errors_errno_values),
        cmocka_unit_test(test_errors_errmsg_after_failure),
        cmocka_unit_test(test_errors_errmsg_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
