/* attach_set.c - the C side of bench_hdf5.py's attach case: a new process attaches to a
 * store, opens the set, takes one view of all its members and reads one item (the last
 * 8 bytes) of each. Prints the total time and its parts in ms, measured inside the
 * process (after its dynamic loading). Built by bench_hdf5.py against the built library:
 *     cc -O2 attach_set.c -Iinclude -Lbuild -lshmstore
 *     ./attach_set STORE SET */
#include <shmstore.h>

#include <stdio.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: attach_set STORE SET\n");
        return 2;
    }
    double t0 = now_ms();
    shmstore_t *s;
    shmstore_set_t *set;
    shmstore_view_t all;
    if (shmstore_open(argv[1], 0, NULL, &s) < 0) {
        fprintf(stderr, "attach_set: %s\n", shmstore_errmsg());
        return 1;
    }
    double t1 = now_ms();
    if (shmstore_set_open(s, argv[2], &set) < 0 || shmstore_set_view_all(set, &all) < 0) {
        fprintf(stderr, "attach_set: %s\n", shmstore_errmsg());
        return 1;
    }
    double t2 = now_ms();
    double x = 0;
    size_t n = shmstore_set_count(set);
    for (size_t i = 0; i < n; i++) {
        shmstore_set_member_t m;
        shmstore_set_member(set, i, &m);
        if (m.len >= 8)
            x += *(const double *)((const char *)all.data + m.offset + m.len - 8);
    }
    double t3 = now_ms();
    printf("%.4f open %.4f set %.4f touch %.4f members %zu sum %g\n", t3 - t0, t1 - t0, t2 - t1,
           t3 - t2, n, x);
    shmstore_view_release(&all);
    shmstore_set_close(set);
    shmstore_close(s);
    return 0;
}
