/* test.h - helpers shared by every C test of shmstore (unit, mp, crash, fault, fuzz).
 *
 * Include it after nothing else: it pulls in cmocka with the headers cmocka needs.
 *
 * Conventions:
 * - Store names come from t_store_name(): unique per test binary, process and call, so
 *   tests can run in parallel (ctest -j). Every name handed out is remembered and
 *   unlinked at exit of the process that made it, so a failed assertion (cmocka jumps
 *   out of the test) does not leave files in /dev/shm.
 * - Each test ends with t_cleanup(): the integrity checker must find the store clean.
 * - Skips: a test that cannot run here calls T_SKIP("reason") (prints the reason, then
 *   cmocka's skip()); a whole binary that cannot run exits with T_EXIT_SKIP (77).
 * - Forked children never use cmocka asserts (they would unwind into the parent's test
 *   runner copy); they use T_CHILD_CHECK(), which _exit(3)s with a message on stderr.
 */
#ifndef SHMSTORE_TEST_H
#define SHMSTORE_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <stdbool.h>
#include <sys/types.h>
#include <unistd.h>

#include "shmstore.h"

/* Exit code of a whole test binary that cannot run here (CTest SKIP_RETURN_CODE). */
#define T_EXIT_SKIP 77
/* Exit code of a forked child whose T_CHILD_CHECK failed. */
#define T_CHILD_FAILED 3

/* ---- stores ------------------------------------------------------------------------ */

/* Write a fresh store name "t_<binary>_<pid>_<counter>" into `buf` and return `buf`.
 * The name is remembered (default directory) and unlinked at exit if still present. */
const char *t_store_name(char *buf, size_t n);

/* Remember `name` in `dir` (NULL = default) for unlinking at exit, e.g. for a store made
 * in a temporary directory. `dir` is copied. */
void t_track(const char *name, const char *dir);

/* The path of the store file: "<dir>/shmstore.<name>", where dir NULL means
 * $SHMSTORE_DIR or /dev/shm. Returns `buf`. */
const char *t_store_path(char *buf, size_t n, const char *name, const char *dir);

/* Create `name` with SHMSTORE_O_CREATE|SHMSTORE_O_EXCL in the default directory with
 * `capacity` bytes (0 = default); fails the test (printing the error) otherwise. */
shmstore_t *t_open_new(const char *name, uint64_t capacity);

/* Run shmstore_check() on `s` (printing its report if it is not clean), close `s`,
 * unlink `name` from the default directory, then assert the check returned 0. `s` may
 * be NULL (only unlinks). */
void t_cleanup(shmstore_t *s, const char *name);

/* Assert that shmstore_check() finds `s` clean (prints the report otherwise). */
void t_assert_clean(shmstore_t *s);

/* Make a fresh directory under /dev/shm ("/dev/shm/t_dir_<pid>_<n>"), removed at exit
 * (after the stores tracked in it). Returns `buf`. */
const char *t_mkdtemp(char *buf, size_t n);

/* ---- assertions -------------------------------------------------------------------- */

/* Assert that `expr` (an int return code) equals `expected`; on mismatch prints both as
 * numbers and names plus shmstore_errmsg(). */
#define T_ASSERT_RC(expr, expected) \
    t_assert_rc_impl((int)(expr), (int)(expected), #expr, __FILE__, __LINE__)
#define T_OK(expr) T_ASSERT_RC((expr), 0)
/* Assert that `expr` is one of two acceptable codes (where the header allows either). */
#define T_ASSERT_RC2(expr, exp1, exp2) \
    t_assert_rc2_impl((int)(expr), (int)(exp1), (int)(exp2), #expr, __FILE__, __LINE__)

void t_assert_rc_impl(int got, int expected, const char *expr, const char *file, int line);
void t_assert_rc2_impl(int got, int exp1, int exp2, const char *expr, const char *file,
                       int line);

/* Skip the current cmocka test with a printed reason. */
#define T_SKIP(...)                      \
    do {                                 \
        print_message("[  SKIP    ] "); \
        print_message(__VA_ARGS__);      \
        print_message("\n");             \
        skip();                          \
    } while (0)

/* ---- processes --------------------------------------------------------------------- */

/* In forked children only: on failure print "<file>:<line>: child check failed: <cond>"
 * (and shmstore_errmsg()) on stderr and _exit(T_CHILD_FAILED). */
#define T_CHILD_CHECK(cond)                                                              \
    do {                                                                                 \
        if (!(cond))                                                                     \
            t_child_fail(__FILE__, __LINE__, #cond);                                     \
    } while (0)
/* In forked children: check that `expr` returns `expected`, printing both on failure. */
#define T_CHILD_RC(expr, expected)                                                       \
    t_child_rc_impl((int)(expr), (int)(expected), #expr, __FILE__, __LINE__)
_Noreturn void t_child_fail(const char *file, int line, const char *what);
void t_child_rc_impl(int got, int expected, const char *expr, const char *file, int line);

/* Fork; the child runs fn(arg) and _exit(0)s. Stdio is flushed first. Fails the test if
 * fork fails. Returns the child's pid (in the parent). */
pid_t t_fork(void (*fn)(void *), void *arg);

/* Wait for `pid` up to `timeout_ms` (negative = forever). Returns its exit status
 * (0..255), 128 + signal number if a signal killed it, or -1 on timeout, in which case
 * the child is killed with SIGKILL and reaped. */
int t_wait_child(pid_t pid, int timeout_ms);

/* A barrier for `n` processes (or threads), in a MAP_SHARED|MAP_ANONYMOUS page so that
 * forked children share it. Reusable: each round needs n arrivals. Spins briefly, then
 * sleeps on a shared futex. */
typedef struct t_barrier t_barrier_t;
t_barrier_t *t_barrier_new(unsigned n);
void t_barrier_wait(t_barrier_t *b);
/* As t_barrier_wait with a timeout: returns 0, or -1 if the round did not complete in
 * `timeout_ms`. The arrival cannot be withdrawn, so a timeout leaves the barrier broken:
 * treat it as a test failure. */
int t_barrier_wait_ms(t_barrier_t *b, int timeout_ms);
void t_barrier_free(t_barrier_t *b);

/* Memory shared with forked children (MAP_SHARED|MAP_ANONYMOUS, zeroed). */
void *t_shared_alloc(size_t len);
void t_shared_free(void *p, size_t len);

/* ---- resources --------------------------------------------------------------------- */

/* Number of open file descriptors of this process (entries of /proc/self/fd). */
long t_count_fds(void);
/* Number of mappings of this process (lines of /proc/self/maps). */
long t_count_maps(void);
/* Number of shared mappings (MAP_SHARED: store files, shared anonymous pages). */
long t_count_shared_maps(void);

/* True in builds with AddressSanitizer or ThreadSanitizer, whose runtimes map memory
 * of their own at any time: compare t_count_shared_maps() there, not t_count_maps(). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#ifndef T_SANITIZED
#define T_SANITIZED 0
#endif

/* Assert that the process has exactly the mappings it had when `all`/`shared` were
 * taken (all mappings in plain builds, shared ones under a sanitizer). */
#define T_ASSERT_MAPS(all, shared)                                   \
    do {                                                             \
        if (!T_SANITIZED)                                            \
            assert_int_equal(t_count_maps(), (all));                 \
        assert_int_equal(t_count_shared_maps(), (shared));           \
    } while (0)
/* True when running as root (euid 0). */
bool t_is_root(void);

#endif
