/* cases_table.c - tables: appends and samples of the seed's 28,240-byte records with a
 * concurrent sampler or writer, small records appended by one and two writers, and the
 * cost of prioritized sampling.
 *
 * The record: actor_id, step_number, action, reward (4 x 4 bytes) and a 4 x 84 x 84
 * uint8 frame: 28,240 bytes of fields in a 28,288-byte slot. The table holds 2,048 of
 * them (58 MB, more than the last-level cache), prefilled; the floors copy the same bytes
 * within a private buffer of the same size, so caches treat both alike.
 *
 * table_append_1, table_append_100: the bench process (CPU 0) appends one record, or a
 * batch of 100, per operation, while a sampler process (CPU 1) samples batches of 32 in a
 * loop. In turns with those rounds: the floor, a memcpy of the same fields from the same
 * columns into the next slot of the private buffer (which the sampler is not reading),
 * sampler running; and the
 * same appends with the sampler paused, so that writer rate with a busy sampler / alone
 * says whether sampling stalls the writer.
 *
 * table_sample_32, table_sample_256: the bench process samples k records (one gather
 * into one array per field) while a writer process (CPU 1) appends in a loop; the floor,
 * in turns, gathers k random rows of the private buffer into the same arrays with one
 * memcpy per field (the gathered bytes, nothing else).
 *
 * table_small_1w, table_small_2w: 1 or 2 writer processes append 64-byte slots (48
 * bytes of fields) one record per call into a table of 2^20; a round is 20,000 records
 * per writer, from a barrier to the last writer's end. Floor, in turns: the same
 * processes take a ticket from one shared counter (fetch_add) and copy 48 bytes into a
 * private ring, per record: the least an append by many writers can do.
 *
 * table_prio_32: sample(32) by priority against uniform sample(32), in turns, on a
 * prioritized table of 2^20 small records with random priorities: the sum tree's cost.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_internal.h"

#define BIG_CAP 2048u
#define FRAME_BYTES (4u * 84u * 84u)
#define BIG_FIELDS 5u
#define SMALL_CAP (1u << 20)
#define SMALL_DATA 40u
#define SMALL_PER_ROUND 20000
#define K_MAX 256u

/* ---- schemas and columns ---------------------------------------------------------------- */

static void big_schema(shmstore_table_field_t f[BIG_FIELDS])
{
    static const char *const names[BIG_FIELDS] = {"actor_id", "step_number", "state", "action",
                                                  "reward"};
    memset(f, 0, BIG_FIELDS * sizeof(*f));
    for (unsigned i = 0; i < BIG_FIELDS; i++) {
        snprintf(f[i].name, sizeof f[i].name, "%s", names[i]);
        snprintf(f[i].dtype, sizeof f[i].dtype, "%s", i == 4 ? "<f4" : i == 2 ? "|u1" : "<i4");
    }
    f[2].ndim = 3;
    f[2].shape[0] = 4;
    f[2].shape[1] = 84;
    f[2].shape[2] = 84;
}

static void small_schema(shmstore_table_field_t f[2])
{
    memset(f, 0, 2 * sizeof(*f));
    snprintf(f[0].name, sizeof f[0].name, "tag");
    snprintf(f[0].dtype, sizeof f[0].dtype, "<u8");
    snprintf(f[1].name, sizeof f[1].name, "data");
    snprintf(f[1].dtype, sizeof f[1].dtype, "|u1");
    f[1].ndim = 1;
    f[1].shape[0] = SMALL_DATA;
}

/* Columns for n records of a schema (one allocation per field, touched). */
struct cols {
    void *p[BIG_FIELDS];
    uint32_t n_fields;
};

static int cols_new(struct cols *c, const shmstore_table_t *t, size_t n)
{
    const shmstore_table_field_t *f;
    shmstore_table_fields(t, &f, &c->n_fields);
    for (uint32_t i = 0; i < c->n_fields; i++)
        if (!(c->p[i] = bench__buf(f[i].size * n)))
            return -ENOMEM;
    return 0;
}

/* Write record 0 of `src` into every slot of a private buffer laid out as the table:
 * the same first pass the table got when it was prefilled (on this VM the first copies
 * into memory that was only memset run ~7x slower; a floor measured then would flatter
 * the table). */
static void warm_rows(uint8_t *rows, uint64_t stride, const shmstore_table_field_t *f,
                      uint32_t nf, const struct cols *src)
{
    for (uint64_t k = 0; k < BIG_CAP; k++)
        for (uint32_t i = 0; i < nf; i++)
            memcpy(rows + k * stride + f[i].offset, src->p[i], f[i].size);
}

static void cols_free(struct cols *c)
{
    for (uint32_t i = 0; i < c->n_fields; i++)
        free(c->p[i]);
}

/* A store with table "bench/t" of `cap` records, prefilled (every page touched). */
static int make_table(struct fixture *fx, bool big, uint64_t cap, uint32_t flags,
                      shmstore_table_t **out, struct cols *src, size_t batch)
{
    shmstore_table_field_t f[BIG_FIELDS];
    if (big)
        big_schema(f);
    else
        small_schema(f);
    shmstore_table_options_t o = {.capacity = cap, .n_fields = big ? BIG_FIELDS : 2,
                                  .flags = flags, .fields = f};
    int rc = bench__fixture_open(fx, "bench-table", "bench/unused");
    if (rc == 0 && (rc = shmstore_table_open(fx->s, "bench/t", SHMSTORE_T_CREATE, &o, out)) != 0)
        bench__fail("bench", "create table", rc);
    if (rc == 0)
        rc = cols_new(src, *out, batch);
    for (uint64_t i = 0; i < cap && rc == 0; i += batch)
        rc = shmstore_table_append(*out, (const void *const *)src->p, batch, NULL);
    return rc;
}

/* ---- helper processes ----------------------------------------------------------------- */

struct tb_shared {
    alignas(64) struct barrier bar;
    alignas(64) _Atomic uint32_t stop;
    alignas(64) _Atomic uint32_t pause;  /* the bench asks the helper to pause */
    alignas(64) _Atomic uint32_t paused; /* the helper answers */
    alignas(64) _Atomic uint64_t ops;
    alignas(64) _Atomic uint64_t ticket; /* the small floor's shared counter */
    alignas(64) _Atomic uint64_t elapsed[2];
    char store[96];
    int n_rounds;
    int n_writers;
};

static int open_child(struct tb_shared *sh, int cpu, shmstore_t **s, shmstore_table_t **t)
{
    bench__pin(cpu);
    int rc = shmstore_open(sh->store, 0, NULL, s);
    if (rc == 0)
        rc = shmstore_table_open(*s, "bench/t", 0, NULL, t);
    if (rc != 0)
        bench__fail("bench", "table helper", rc);
    return rc;
}

/* Samples batches of 32 until stopped; honours pause requests. */
static int sampler_main(void *arg)
{
    struct tb_shared *sh = arg;
    shmstore_t *s = NULL;
    shmstore_table_t *t = NULL;
    struct cols c = {0};
    int rc = open_child(sh, 1, &s, &t);
    if (rc == 0)
        rc = cols_new(&c, t, 32);
    uint64_t rng = 17;
    while (rc == 0 && !atomic_load_explicit(&sh->stop, memory_order_acquire)) {
        if (atomic_load_explicit(&sh->pause, memory_order_acquire)) {
            atomic_store_explicit(&sh->paused, 1, memory_order_release);
            while (atomic_load_explicit(&sh->pause, memory_order_acquire) &&
                   !atomic_load_explicit(&sh->stop, memory_order_acquire))
                ;
            atomic_store_explicit(&sh->paused, 0, memory_order_release);
            continue;
        }
        rc = shmstore_table_sample(t, 32, 0, &rng, c.p, NULL, NULL);
        atomic_fetch_add_explicit(&sh->ops, 1, memory_order_relaxed);
    }
    cols_free(&c);
    shmstore_table_close(t);
    shmstore_close(s);
    return rc != 0;
}

/* Appends one big record at a time until stopped. */
static int appender_main(void *arg)
{
    struct tb_shared *sh = arg;
    shmstore_t *s = NULL;
    shmstore_table_t *t = NULL;
    struct cols c = {0};
    int rc = open_child(sh, 1, &s, &t);
    if (rc == 0)
        rc = cols_new(&c, t, 1);
    while (rc == 0 && !atomic_load_explicit(&sh->stop, memory_order_acquire)) {
        rc = shmstore_table_append(t, (const void *const *)c.p, 1, NULL);
        atomic_fetch_add_explicit(&sh->ops, 1, memory_order_relaxed);
    }
    cols_free(&c);
    shmstore_table_close(t);
    shmstore_close(s);
    return rc != 0;
}

static void stop_kids(struct tb_shared *sh, struct kids *kids, int *rc)
{
    if (sh)
        atomic_store_explicit(&sh->stop, 1, memory_order_release);
    if (bench__kids_reap(kids, 20 * (int64_t)NS_PER_S) != 0 && *rc == 0)
        *rc = -ECHILD;
}

static void emit(struct bench_ctx *c, const char *name, uint64_t bytes, struct samples *lib,
                 struct samples *floor, const char *floor_what, const char *target,
                 const char *text)
{
    struct bench_row r;
    bench__row_init(&r, name, bytes);
    r.median_ns = bench__pct(lib, 50);
    r.p99_ns = bench__pct(lib, 99);
    r.floor_ns = bench__pct(floor, 50);
    r.ratio = r.median_ns / r.floor_ns;
    r.floor_what = floor_what;
    r.target = target;
    snprintf(r.extra_text, sizeof r.extra_text, "%s", text);
    snprintf(r.extra_json, sizeof r.extra_json, ",\"floor_p99_ns\":%.0f", bench__pct(floor, 99));
    bench__emit(c, &r);
}

/* ---- appends of big records with a sampler ---------------------------------------------- */

/* Rounds in turns: append (sampler busy), the memcpy floor (sampler busy), append with
 * the sampler paused. */
enum { AR_APPEND, AR_FLOOR, AR_ALONE };

int bench__case_table_append(struct bench_ctx *c, const char *name)
{
    size_t batch = strstr(name, "100") ? 100 : 1;
    int n_rounds = c->is_quick ? 30 : 150, per_round = batch == 1 ? 32 : 4, n_warm = 3;
    struct fixture fx = {0};
    struct kids kids = {0};
    struct samples s[3] = {{0}};
    struct cols src = {0};
    shmstore_table_t *t = NULL;
    struct tb_shared *sh = bench__shared_alloc(sizeof *sh);
    uint64_t t_over = bench__timer_overhead();
    int rc = sh ? 0 : -ENOMEM;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = bench__samples_init(&s[i], (size_t)(n_rounds * per_round));
    if (rc == 0)
        rc = make_table(&fx, true, BIG_CAP, 0, &t, &src, batch);
    const shmstore_table_field_t *f = NULL;
    uint32_t nf = 0;
    uint64_t stride = 0, rec_bytes = 0;
    if (rc == 0) {
        shmstore_table_fields(t, &f, &nf);
        for (uint32_t i = 0; i < nf; i++)
            rec_bytes += f[i].size;
        stride = (f[nf - 1].offset + f[nf - 1].size + 63) & ~63ull;
    }
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", fx.store);
        pid_t p = bench__kid_spawn(&kids, sampler_main, sh);
        if (p < 0)
            rc = (int)p;
    }
    /* The floor's slots: a private buffer of the table's size and layout, made after the
     * fork (memory made before it is copy-on-write: every first write would fault). */
    uint8_t *fl = rc == 0 ? bench__buf(BIG_CAP * stride) : NULL;
    if (rc == 0 && !fl)
        rc = -ENOMEM;
    if (rc == 0)
        warm_rows(fl, stride, f, nf, &src);
    bench__pin(0);
    uint64_t slot = 0, deadline = bench__now() + 600 * NS_PER_S;
    for (int k = 0; k < 3 * (n_rounds + n_warm) && rc == 0; k++) {
        int kind = k % 3;
        if (kind == AR_ALONE) {
            atomic_store_explicit(&sh->pause, 1, memory_order_release);
            while (!atomic_load_explicit(&sh->paused, memory_order_acquire) && bench__now() < deadline)
                ;
        }
        for (int j = 0; j < per_round && rc == 0; j++) {
            uint64_t t0 = bench__now();
            if (kind == AR_FLOOR) { /* the same fields from the same columns */
                for (size_t b = 0; b < batch; b++, slot++)
                    for (uint32_t i = 0; i < nf; i++)
                        memcpy(fl + (slot % BIG_CAP) * stride + f[i].offset,
                               (const uint8_t *)src.p[i] + b * f[i].size, f[i].size);
            } else {
                rc = shmstore_table_append(t, (const void *const *)src.p, batch, NULL);
            }
            uint64_t t1 = bench__now();
            if (k / 3 >= n_warm)
                bench__samples_add(&s[kind], t1 - t0 > t_over ? t1 - t0 - t_over : 0);
        }
        if (kind == AR_ALONE) {
            atomic_store_explicit(&sh->pause, 0, memory_order_release);
            while (atomic_load_explicit(&sh->paused, memory_order_acquire) && bench__now() < deadline)
                ;
        }
    }
    bench__unpin();
    uint64_t sampled = sh ? atomic_load(&sh->ops) : 0;
    stop_kids(sh, &kids, &rc);
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        char text[256];
        double with = bench__pct(&s[AR_APPEND], 50), alone = bench__pct(&s[AR_ALONE], 50);
        snprintf(text, sizeof text, "append of %zu x 28,240 B, a sampler busy (%llu batches of "
                 "32 meanwhile); alone %.1f us: rate busy/alone %.2f (target >= 0.9)", batch,
                 (unsigned long long)sampled, alone / 1e3, alone / with);
        emit(c, name, rec_bytes * batch, &s[AR_APPEND], &s[AR_FLOOR],
             "memcpy into a slot not being read", "<= 1.25x (>= 0.8x memcpy)", text);
    }
    shmstore_table_close(t);
    bench__fixture_close(&fx);
    for (int i = 0; i < 3; i++)
        bench__samples_free(&s[i]);
    cols_free(&src);
    free(fl);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}

/* ---- samples of big records with a writer ----------------------------------------------- */

int bench__case_table_sample(struct bench_ctx *c, const char *name)
{
    size_t k = strstr(name, "256") ? 256 : 32;
    int n = c->is_quick ? 60 : 400, n_warm = 10;
    struct fixture fx = {0};
    struct kids kids = {0};
    struct samples slib = {0}, sfloor = {0};
    struct cols src = {0}, out = {0};
    shmstore_table_t *t = NULL;
    struct tb_shared *sh = bench__shared_alloc(sizeof *sh);
    uint64_t t_over = bench__timer_overhead();
    int rc = (sh && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sfloor, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = make_table(&fx, true, BIG_CAP, 0, &t, &src, 1);
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", fx.store);
        pid_t p = bench__kid_spawn(&kids, appender_main, sh);
        if (p < 0)
            rc = (int)p;
    }
    if (rc == 0) /* after the fork: not copy-on-write */
        rc = cols_new(&out, t, k);
    const shmstore_table_field_t *f = NULL;
    uint32_t nf = 0;
    uint64_t stride = 0, bytes = 0;
    if (rc == 0) {
        shmstore_table_fields(t, &f, &nf);
        for (uint32_t i = 0; i < nf; i++)
            bytes += f[i].size * k;
        stride = (f[nf - 1].offset + f[nf - 1].size + 63) & ~63ull;
    }
    uint8_t *rows = rc == 0 ? bench__buf(BIG_CAP * stride) : NULL;
    if (rc == 0 && !rows)
        rc = -ENOMEM;
    if (rc == 0)
        warm_rows(rows, stride, f, nf, &src);
    bench__pin(0);
    uint64_t rng = 99, frng = 7;
    for (int r = 0; r < 2 * (n + n_warm) && rc == 0; r++) {
        uint64_t t0 = bench__now();
        if (r % 2 == 0) {
            rc = shmstore_table_sample(t, k, 0, &rng, out.p, NULL, NULL);
        } else {
            for (size_t j = 0; j < k; j++) {
                frng = frng * 6364136223846793005ull + 1442695040888963407ull;
                const uint8_t *row = rows + ((frng >> 33) % BIG_CAP) * stride;
                for (uint32_t i = 0; i < nf; i++)
                    memcpy((uint8_t *)out.p[i] + j * f[i].size, row + f[i].offset, f[i].size);
            }
        }
        uint64_t t1 = bench__now();
        if (r / 2 >= n_warm)
            bench__samples_add(r % 2 ? &sfloor : &slib, t1 - t0 > t_over ? t1 - t0 - t_over : 0);
    }
    bench__unpin();
    uint64_t appended = sh ? atomic_load(&sh->ops) : 0;
    stop_kids(sh, &kids, &rc);
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        char text[256];
        snprintf(text, sizeof text, "sample(%zu) of 28,240 B records into one array per field; "
                 "a writer appended %llu records meanwhile", k, (unsigned long long)appended);
        emit(c, name, bytes, &slib, &sfloor, "memcpy gather of the same bytes",
             "<= 1.25x (>= 0.8x memcpy)", text);
    }
    shmstore_table_close(t);
    bench__fixture_close(&fx);
    bench__samples_free(&slib);
    bench__samples_free(&sfloor);
    cols_free(&src);
    cols_free(&out);
    free(rows);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}

/* ---- small records, one and two writers -------------------------------------------------- */

struct small_writer {
    struct tb_shared *sh;
    int idx;
};

static int small_writer_main(void *arg)
{
    struct small_writer *a = arg;
    struct tb_shared *sh = a->sh;
    shmstore_t *s = NULL;
    shmstore_table_t *t = NULL;
    struct cols c = {0};
    int rc = open_child(sh, a->idx, &s, &t);
    if (rc == 0)
        rc = cols_new(&c, t, 1);
    uint8_t *ring = bench__buf((size_t)SMALL_CAP * 64);
    if (rc == 0 && !ring)
        rc = -ENOMEM;
    for (int k = 0; k < sh->n_rounds && rc == 0; k++) {
        if ((rc = bench__barrier_wait(&sh->bar, 60 * (int64_t)NS_PER_S)) != 0)
            break;
        uint64_t t0 = bench__now();
        if (k % 2 == 0) {
            for (int i = 0; i < SMALL_PER_ROUND && rc == 0; i++)
                rc = shmstore_table_append(t, (const void *const *)c.p, 1, NULL);
        } else {
            for (int i = 0; i < SMALL_PER_ROUND; i++) {
                uint64_t tk = atomic_fetch_add_explicit(&sh->ticket, 1, memory_order_relaxed);
                uint8_t *slot = ring + (tk % SMALL_CAP) * 64;
                memcpy(slot + 16, c.p[0], 8);
                memcpy(slot + 24, c.p[1], SMALL_DATA);
            }
        }
        atomic_store_explicit(&sh->elapsed[a->idx], bench__now() - t0, memory_order_release);
        if ((rc = rc ? rc : bench__barrier_wait(&sh->bar, 60 * (int64_t)NS_PER_S)) != 0)
            break;
    }
    free(ring);
    cols_free(&c);
    shmstore_table_close(t);
    shmstore_close(s);
    return rc != 0;
}

int bench__case_table_small(struct bench_ctx *c, const char *name)
{
    int n_writers = strstr(name, "2w") ? 2 : 1;
    int n = c->is_quick ? 10 : 60, n_warm = 2;
    struct fixture fx = {0};
    struct kids kids = {0};
    struct samples slib = {0}, sfloor = {0};
    struct cols src = {0};
    shmstore_table_t *t = NULL;
    struct tb_shared *sh = bench__shared_alloc(sizeof *sh);
    struct small_writer args[2];
    int rc = (sh && bench__samples_init(&slib, (size_t)n) == 0 &&
              bench__samples_init(&sfloor, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = make_table(&fx, false, SMALL_CAP, 0, &t, &src, 1024);
    if (rc == 0) {
        snprintf(sh->store, sizeof sh->store, "%s", fx.store);
        sh->n_rounds = 2 * (n + n_warm);
        sh->n_writers = n_writers;
        bench__barrier_init(&sh->bar, (uint32_t)n_writers + 1);
        for (int i = 0; i < n_writers && rc == 0; i++) {
            args[i] = (struct small_writer){sh, i};
            pid_t p = bench__kid_spawn(&kids, small_writer_main, &args[i]);
            if (p < 0)
                rc = (int)p;
        }
    }
    for (int k = 0; k < 2 * (n + n_warm) && rc == 0; k++) {
        if ((rc = bench__barrier_wait(&sh->bar, 60 * (int64_t)NS_PER_S)) != 0 ||
            (rc = bench__barrier_wait(&sh->bar, 60 * (int64_t)NS_PER_S)) != 0)
            break;
        uint64_t worst = 0;
        for (int i = 0; i < n_writers; i++) {
            uint64_t e = atomic_load_explicit(&sh->elapsed[i], memory_order_acquire);
            worst = e > worst ? e : worst;
        }
        if (k / 2 >= n_warm) /* ns per record, all writers together */
            bench__samples_add(k % 2 ? &sfloor : &slib,
                               worst * 1000 / ((uint64_t)SMALL_PER_ROUND * n_writers));
    }
    stop_kids(NULL, &kids, &rc);
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        /* Samples are in ps per record (integer samples; sub-ns resolution). */
        struct bench_row r;
        bench__row_init(&r, name, 64);
        r.median_ns = bench__pct(&slib, 50) / 1000;
        r.p99_ns = bench__pct(&slib, 99) / 1000;
        r.floor_ns = bench__pct(&sfloor, 50) / 1000;
        r.ratio = r.median_ns / r.floor_ns;
        r.floor_what = "fetch_add ticket + 48 B memcpy";
        r.target = ">= 5 M records/s";
        snprintf(r.extra_text, sizeof r.extra_text, "%d writer process%s, one record per "
                 "append: %.2f M records/s (p99 round %.2f M/s)", n_writers,
                 n_writers > 1 ? "es" : "", 1e3 / r.median_ns,
                 1e3 / r.p99_ns);
        snprintf(r.extra_json, sizeof r.extra_json, ",\"records_per_s\":%.0f,\"writers\":%d",
                 1e9 / r.median_ns, n_writers);
        bench__emit(c, &r);
    }
    shmstore_table_close(t);
    bench__fixture_close(&fx);
    bench__samples_free(&slib);
    bench__samples_free(&sfloor);
    cols_free(&src);
    bench__shared_free(sh, sizeof *sh);
    return rc;
}

/* ---- prioritized against uniform ------------------------------------------------------- */

int bench__case_table_prio(struct bench_ctx *c, const char *name)
{
    int n = c->is_quick ? 200 : 2000, n_warm = 20;
    struct fixture fx = {0};
    struct samples sprio = {0}, suni = {0};
    struct cols src = {0}, out = {0};
    shmstore_table_t *t = NULL;
    uint64_t *idx = calloc(4096, sizeof *idx);
    double *pr = calloc(4096, sizeof *pr);
    uint64_t t_over = bench__timer_overhead();
    int rc = (idx && pr && bench__samples_init(&sprio, (size_t)n) == 0 &&
              bench__samples_init(&suni, (size_t)n) == 0)
                 ? 0
                 : -ENOMEM;
    if (rc == 0)
        rc = make_table(&fx, false, SMALL_CAP, SHMSTORE_TABLE_PRIORITIZED, &t, &src, 1024);
    uint64_t x = 3;
    for (uint64_t i = 0; i < SMALL_CAP && rc == 0; i += 4096) {
        for (int j = 0; j < 4096; j++) {
            idx[j] = i + (uint64_t)j;
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            pr[j] = (double)(x >> 40) / (double)(1u << 24) * 10.0;
        }
        rc = shmstore_table_set_priorities(t, idx, pr, 4096);
    }
    if (rc == 0)
        rc = cols_new(&out, t, 32);
    uint64_t rng = 5;
    for (int r = 0; r < 2 * (n + n_warm) && rc == 0; r++) {
        uint64_t t0 = bench__now();
        rc = shmstore_table_sample(t, 32, r % 2 ? SHMSTORE_SAMPLE_PRIORITIZED : 0, &rng, out.p,
                                   idx, pr);
        uint64_t t1 = bench__now();
        if (r / 2 >= n_warm)
            bench__samples_add(r % 2 ? &sprio : &suni, t1 - t0 > t_over ? t1 - t0 - t_over : 0);
    }
    if (rc != 0) {
        bench__fail("bench", name, rc);
    } else {
        emit(c, name, 32 * 64, &sprio, &suni, "uniform sample(32), same table", "info",
             "sample(32) by priority (sum tree of 2^20 leaves) over uniform, 64 B slots");
    }
    shmstore_table_close(t);
    bench__fixture_close(&fx);
    bench__samples_free(&sprio);
    bench__samples_free(&suni);
    cols_free(&src);
    cols_free(&out);
    free(idx);
    free(pr);
    return rc;
}
