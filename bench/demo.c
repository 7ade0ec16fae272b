/* demo.c - `shmstore demo`: a camera pipeline through one shmstore value.
 *
 * One writer (this process) publishes 480x848x3 uint8 frames as an ARRAY value
 * "camera/rgb" in a fresh store "demo-<pid>"; N reader processes (fork; each opens the
 * store itself) wait for every new version, copy it out with shmstore_value_get(), and
 * verify it. Everything between the processes goes through the store:
 *   - the frame header says which phase the frame belongs to (warm-up, full speed,
 *     100 Hz, stop), so readers need no other channel;
 *   - readers announce they are warmed up with shmstore_value_trigger("demo/ready"),
 *     which the writer waits on;
 *   - readers send their statistics back as a value "demo/stats/<i>".
 *
 * Frame layout (64-bit words): w[0] frame number, w[1] checksum, w[2] CLOCK_MONOTONIC
 * time of the put, w[3] phase, w[4..] pixels from one of N_TEMPLATES patterns. The
 * checksum is mix(w[0]) + sum(w[2..]): it covers every byte, costs one pass, and a frame
 * mixing bytes of two versions (torn) fails it, since consecutive frames use different
 * patterns. The writer precomputes each pattern's sum, so a put costs only the put.
 *
 * Phases: (1) the writer alone, full speed; readers are forked after it; a short
 * warm-up at ~200 Hz lets each reader fault in the version blocks (first touch of a
 * page costs ~15 us on this VM); (2) full speed with the readers; (3) 100 Hz, where
 * frame age is measured; then a stop frame. At 100 Hz the readers alternate between
 * timing a get and timing a plain memcpy out of a view of the same frame: the copy
 * bandwidth of get is compared with memcpy of the same bytes, same run, same reader.
 *
 * With --json the report is one JSON object on one line instead of the tables (for
 * python/bench/bench_python.py, which compares its own frame age with the demo's).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_internal.h"

#define DEMO_MAX_READERS 8
#define N_TEMPLATES 5
#define AGE_MAX 4096
#define N_WORDS (FRAME_LEN / 8)
#define STATS_MAGIC 0x5354415453444d31ull

enum { PH_WARM = 0, PH_FAST = 2, PH_PACED = 3, PH_STOP = 9 };

struct demo_stats {
    uint64_t magic;
    uint64_t seen[2];   /* frames received: full speed, 100 Hz */
    uint64_t missed[2]; /* versions skipped (gaps in the version numbers) */
    uint64_t torn;      /* checksum failures */
    uint64_t mismatched; /* frame number does not follow the version number */
    double get_fast_ns, get_paced_ns, memcpy_paced_ns; /* medians */
    double age_fast_p50, age_fast_p99;
    uint32_t n_age;
    uint32_t age_wake[AGE_MAX]; /* 100 Hz: put -> return from wait, ns */
    uint32_t age_data[AGE_MAX]; /* 100 Hz: put -> frame copied out, ns */
    uint32_t age_pub[AGE_MAX];  /* 100 Hz: publish (mtime_ns) -> return from wait, ns */
};

static volatile sig_atomic_t is_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    is_interrupted = 1;
}

static uint64_t mix(uint64_t x)
{
    return x * 0x9e3779b97f4a7c15ull;
}

static uint64_t frame_sum(const uint64_t *w)
{
    uint64_t a = 0, b = 0; /* two chains: the sum runs at load speed */
    size_t i = 2;
    for (; i + 1 < N_WORDS; i += 2) {
        a += w[i];
        b += w[i + 1];
    }
    for (; i < N_WORDS; i++)
        a += w[i];
    return a + b;
}

/* ---- reader --------------------------------------------------------------------- */

struct reader_arg {
    char store[96];
    int idx;
};

static int reader_main(void *arg)
{
    const struct reader_arg *a = arg;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    shmstore_t *s = NULL;
    shmstore_value_t *v = NULL, *ready = NULL;
    struct demo_stats *st = calloc(1, sizeof *st);
    uint64_t *buf = bench__buf(FRAME_LEN);
    struct samples get_fast = {0}, get_paced = {0}, mc_paced = {0}, age_fast = {0};
    int rc = (st && buf && !bench__samples_init(&get_fast, 1 << 16) &&
              !bench__samples_init(&get_paced, AGE_MAX) &&
              !bench__samples_init(&mc_paced, AGE_MAX) &&
              !bench__samples_init(&age_fast, 1 << 16))
                 ? 0
                 : -ENOMEM;
    if (rc == 0 && (rc = shmstore_open(a->store, 0, NULL, &s)) != 0)
        bench__fail("demo", "reader: open store", rc);
    if (rc == 0 && (rc = shmstore_value_open(s, "camera/rgb", 0, &v)) != 0)
        bench__fail("demo", "reader: open camera/rgb", rc);
    if (rc == 0 && (rc = shmstore_value_open(s, "demo/ready", 0, &ready)) != 0)
        bench__fail("demo", "reader: open demo/ready", rc);
    uint64_t last = 0, n_warm = 0, n_paced = 0;
    int64_t ver_offset = 0;
    bool has_offset = false;
    int last_phase = PH_WARM;
    while (rc == 0) {
        uint64_t wv;
        rc = shmstore_value_wait(v, last, 5 * (int64_t)NS_PER_S, &wv);
        if (rc == -EINTR) {
            rc = 0;
            continue;
        }
        if (rc != 0) {
            bench__fail("demo", "reader: wait for a frame", rc);
            break;
        }
        uint64_t t_wake = bench__now(), t_wake_real = bench__now_real(), mtime = 0, gv = 0;
        uint64_t t0, t1;
        shmstore_value_mtime(v, &mtime); /* one atomic load: publish time of wv */
        bool is_view = last_phase == PH_PACED && n_paced % 2 == 1;
        t0 = bench__now();
        if (is_view) {
            shmstore_view_t view;
            rc = shmstore_value_view(v, &view);
            if (rc == 0 && view.len != FRAME_LEN)
                rc = -EPROTO;
            if (rc == 0) {
                memcpy(buf, view.data, FRAME_LEN);
                gv = view.version;
            }
            shmstore_view_release(&view);
        } else {
            size_t len;
            rc = shmstore_value_get(v, NULL, buf, FRAME_LEN, &len, &gv);
            if (rc == 0 && len != FRAME_LEN)
                rc = -EPROTO;
        }
        t1 = bench__now();
        if (rc != 0) {
            bench__fail("demo", "reader: get a frame", rc);
            break;
        }
        int phase = (int)buf[3];
        if (mix(buf[0]) + frame_sum(buf) != buf[1]) {
            if (st->torn++ == 0)
                fprintf(stderr, "shmstore demo: reader %d: TORN frame %llu (version %llu)\n",
                        a->idx, (unsigned long long)buf[0], (unsigned long long)gv);
            phase = last_phase; /* the header cannot be trusted */
        } else if (!has_offset) {
            ver_offset = (int64_t)(gv - buf[0]);
            has_offset = true;
        } else if ((int64_t)(gv - buf[0]) != ver_offset) {
            st->mismatched++;
        }
        uint64_t age = t1 - buf[2];
        if (phase == PH_FAST || phase == PH_PACED) {
            int p = phase == PH_FAST ? 0 : 1;
            st->seen[p]++;
            if (last && gv > last + 1)
                st->missed[p] += gv - last - 1;
        }
        if (phase == PH_WARM && ++n_warm == 8)
            rc = shmstore_value_trigger(ready); /* warmed up: tell the writer */
        if (phase == PH_FAST) {
            bench__samples_add(&get_fast, t1 - t0);
            bench__samples_add(&age_fast, age);
        }
        if (phase == PH_PACED && last_phase == PH_PACED) {
            n_paced++;
            bench__samples_add(is_view ? &mc_paced : &get_paced, t1 - t0);
            if (st->n_age < AGE_MAX && gv == wv) {
                st->age_wake[st->n_age] = (uint32_t)(t_wake - buf[2]);
                st->age_pub[st->n_age] = t_wake_real > mtime ? (uint32_t)(t_wake_real - mtime) : 0;
                st->age_data[st->n_age++] = (uint32_t)age;
            }
        } else if (phase == PH_PACED) {
            n_paced++;
        }
        last = gv;
        last_phase = phase;
        if (phase == PH_STOP)
            break;
    }
    if (rc == 0) {
        char name[64];
        st->magic = STATS_MAGIC;
        st->get_fast_ns = bench__pct(&get_fast, 50);
        st->get_paced_ns = bench__pct(&get_paced, 50);
        st->memcpy_paced_ns = bench__pct(&mc_paced, 50);
        st->age_fast_p50 = bench__pct(&age_fast, 50);
        st->age_fast_p99 = bench__pct(&age_fast, 99);
        snprintf(name, sizeof name, "demo/stats/%d", a->idx);
        rc = shmstore_put(s, name, NULL, st, sizeof *st, 0);
        if (rc != 0)
            bench__fail("demo", "reader: put statistics", rc);
    }
    shmstore_value_close(ready);
    shmstore_value_close(v);
    shmstore_close(s);
    bench__samples_free(&get_fast);
    bench__samples_free(&get_paced);
    bench__samples_free(&mc_paced);
    bench__samples_free(&age_fast);
    free(buf);
    free(st);
    return rc;
}

/* ---- writer --------------------------------------------------------------------- */

struct writer {
    shmstore_value_t *v;
    shmstore_datum_t d;
    uint64_t *tpl[N_TEMPLATES];
    uint64_t tpl_sum[N_TEMPLATES]; /* sum of w[4..] of each pattern */
    uint64_t n_frames;
    struct samples lat;
};

static int put_frame(struct writer *w, int phase)
{
    uint64_t *f = w->tpl[w->n_frames % N_TEMPLATES];
    uint64_t t0 = bench__now();
    f[0] = w->n_frames;
    f[2] = t0;
    f[3] = (uint64_t)phase;
    f[1] = mix(f[0]) + f[2] + f[3] + w->tpl_sum[w->n_frames % N_TEMPLATES];
    int rc = shmstore_value_put(w->v, &w->d, f, FRAME_LEN, 0);
    bench__samples_add(&w->lat, bench__now() - t0);
    w->n_frames++;
    return rc;
}

struct phase_result {
    uint64_t frames;
    double secs, rate, p50, p99;
};

/* Put frames for `secs`, as fast as possible (hz = 0) or paced at `hz`. */
static int run_phase(struct writer *w, int phase, double secs, double hz, struct phase_result *r)
{
    w->lat.n = 0;
    uint64_t n0 = w->n_frames, t_start = bench__now();
    uint64_t t_end = t_start + (uint64_t)(secs * 1e9), now = t_start;
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && now < t_end && !is_interrupted; i++) {
        if (hz > 0) { /* pacing a camera, not synchronising: sleep to the next tick */
            uint64_t tick = t_start + (uint64_t)((double)i * 1e9 / hz);
            struct timespec ts = {.tv_sec = (time_t)(tick / NS_PER_S),
                                  .tv_nsec = (long)(tick % NS_PER_S)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
                   !is_interrupted)
                ;
        }
        rc = put_frame(w, phase);
        now = bench__now();
    }
    r->frames = w->n_frames - n0;
    r->secs = (double)(now - t_start) / 1e9;
    r->rate = (double)r->frames / r->secs;
    r->p50 = bench__pct(&w->lat, 50);
    r->p99 = bench__pct(&w->lat, 99);
    if (rc != 0)
        bench__fail("demo", "put a frame", rc);
    return is_interrupted && rc == 0 ? -EINTR : rc;
}

static int usage(FILE *out, int code)
{
    fprintf(out, "usage: shmstore demo [--seconds S] [--readers N] [--json]\n"
                 "\n"
                 "A camera pipeline: one writer process publishes 480x848x3 uint8 frames in a\n"
                 "fresh store, N reader processes (default 3, at most 8) wait for each new\n"
                 "frame, copy it and verify its checksum. Runs S seconds (default 3): the\n"
                 "writer alone, then with the readers at full speed, then at 100 Hz.\n"
                 "\n"
                 "  --json    print the figures as one JSON object on one line instead of\n"
                 "            the tables (times in ns, bandwidths in GB/s)\n"
                 "\n"
                 "Exit status: 0 ok, 1 a torn frame was seen or something failed, 64 usage.\n");
    return code;
}

static double ratio_or0(double a, double b)
{
    return b > 0 ? a / b : 0;
}

/* The figures of a run over all readers (the per-reader ones stay in demo_stats). */
struct demo_summary {
    double age_wake[2], age_data[2], age_pub[2]; /* 100 Hz: p50, p99, ns */
    double get_gbps, memcpy_gbps, get_fast_gbps;  /* medians, mean of the readers */
    uint64_t seen[2], missed[2];                  /* full speed, 100 Hz; sums */
    uint64_t torn, mismatched;
};

static int summarize(int n_readers, struct demo_stats *const *st, struct demo_summary *sum);
static void print_report(const struct phase_result ph[3], int n_readers,
                         struct demo_stats *const *st, const struct demo_summary *sum,
                         const char *store);
static void print_json(const struct phase_result ph[3], int n_readers,
                       struct demo_stats *const *st, const struct demo_summary *sum);

int shmstore_demo_main(int argc, char **argv)
{
    double seconds = 3;
    int n_readers = 3;
    bool is_json = false;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return usage(stdout, 0);
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], &end);
            if (*end || !(seconds > 0 && seconds <= 3600))
                return usage(stderr, 64);
        } else if (strcmp(argv[i], "--readers") == 0 && i + 1 < argc) {
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > DEMO_MAX_READERS)
                return usage(stderr, 64);
            n_readers = (int)n;
        } else if (strcmp(argv[i], "--json") == 0) {
            is_json = true;
        } else {
            fprintf(stderr, "shmstore demo: unknown argument '%s'\n", argv[i]);
            return usage(stderr, 64);
        }
    }

    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    is_interrupted = 0;

    struct writer w = {0};
    struct kids kids = {0};
    struct reader_arg args[DEMO_MAX_READERS];
    struct demo_stats *st[DEMO_MAX_READERS] = {0};
    struct phase_result ph[3] = {{0}};
    shmstore_t *s = NULL;
    shmstore_value_t *ready = NULL;
    char store[96];
    snprintf(store, sizeof store, "demo-%ld", (long)getpid());
    int rc = bench__samples_init(&w.lat, 1 << 20);
    for (int k = 0; k < N_TEMPLATES && rc == 0; k++) {
        w.tpl[k] = bench__buf(FRAME_LEN);
        if (!w.tpl[k]) {
            rc = -ENOMEM;
            break;
        }
        bench__fill(w.tpl[k], FRAME_LEN, (uint64_t)k + 100);
        w.tpl_sum[k] = frame_sum(w.tpl[k]) - w.tpl[k][2] - w.tpl[k][3];
    }
    bench__frame_datum(&w.d);
    if (rc == 0 && (rc = shmstore_open(store, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s)))
        bench__fail("demo", "create store", rc);
    bool is_created = rc == 0;
    if (rc == 0 && (rc = shmstore_value_open(s, "camera/rgb", SHMSTORE_V_CREATE, &w.v)))
        bench__fail("demo", "create camera/rgb", rc);
    if (rc == 0 && (rc = shmstore_value_open(s, "demo/ready", SHMSTORE_V_CREATE, &ready)))
        bench__fail("demo", "create demo/ready", rc);
    /* Warm-up: allocate and fault in every version block on the writer's side. */
    for (int i = 0; i < 16 && rc == 0; i++)
        rc = put_frame(&w, PH_WARM);
    if (rc == 0)
        rc = run_phase(&w, PH_FAST, seconds / 3, 0, &ph[0]); /* the writer alone */
    for (int i = 0; i < n_readers && rc == 0; i++) {
        snprintf(args[i].store, sizeof args[i].store, "%s", store);
        args[i].idx = i;
        pid_t pid = bench__kid_spawn(&kids, reader_main, &args[i]);
        if (pid < 0)
            rc = bench__fail("demo", "fork a reader", (int)pid);
    }
    /* Warm-up frames at ~200 Hz until every reader has triggered demo/ready; the wait
     * on demo/ready doubles as the pacing. */
    uint64_t deadline = bench__now() + 30 * NS_PER_S, n_ready = 0;
    while (rc == 0 && n_ready < (uint64_t)n_readers && !is_interrupted) {
        rc = put_frame(&w, PH_WARM);
        if (rc == 0) {
            int wrc = shmstore_value_wait(ready, n_ready, 5000000, &n_ready);
            if (wrc != 0 && wrc != -ETIMEDOUT && wrc != -EINTR)
                rc = bench__fail("demo", "wait for the readers", wrc);
        }
        if (rc == 0 && bench__now() > deadline) {
            fprintf(stderr, "shmstore demo: readers not ready after 30 s\n");
            rc = -ETIMEDOUT;
        }
    }
    if (rc == 0)
        rc = run_phase(&w, PH_FAST, seconds / 3, 0, &ph[1]);
    if (rc == 0)
        rc = run_phase(&w, PH_PACED, seconds / 3, 100, &ph[2]);
    if (w.v && kids.n > 0) /* stop frame: also sent on failure, so readers end */
        put_frame(&w, PH_STOP);
    int n_dead = bench__kids_reap(&kids, 15 * (int64_t)NS_PER_S);
    if (n_dead && rc == 0) {
        fprintf(stderr, "shmstore demo: %d reader process%s failed\n", n_dead,
                n_dead == 1 ? "" : "es");
        rc = -ECHILD;
    }
    for (int i = 0; i < n_readers && rc == 0; i++) {
        char name[64];
        size_t len = 0;
        st[i] = malloc(sizeof *st[i]);
        snprintf(name, sizeof name, "demo/stats/%d", i);
        if (!st[i])
            rc = -ENOMEM;
        else if ((rc = shmstore_get(s, name, NULL, st[i], sizeof *st[i], &len, NULL)) != 0)
            bench__fail("demo", "read a reader's statistics", rc);
        else if (len != sizeof *st[i] || st[i]->magic != STATS_MAGIC)
            rc = -EPROTO;
    }
    struct demo_summary sum = {0};
    if (rc == 0 && (rc = summarize(n_readers, st, &sum)) != 0)
        bench__fail("demo", "summarize", rc);
    bool is_torn = false;
    if (rc == 0) {
        if (is_json)
            print_json(ph, n_readers, st, &sum);
        else
            print_report(ph, n_readers, st, &sum, store);
        is_torn = sum.torn > 0 || sum.mismatched > 0;
    } else if (rc == -EINTR) {
        fprintf(stderr, "shmstore demo: interrupted\n");
    }
    shmstore_value_close(ready);
    shmstore_value_close(w.v);
    shmstore_close(s);
    if (is_created)
        shmstore_unlink(store, NULL);
    for (int k = 0; k < N_TEMPLATES; k++)
        free(w.tpl[k]);
    for (int i = 0; i < n_readers; i++)
        free(st[i]);
    bench__samples_free(&w.lat);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (is_torn)
        fprintf(stderr, "shmstore demo: FAILED: torn frames were seen\n");
    return rc != 0 || is_torn ? 1 : 0;
}

/* ---- report --------------------------------------------------------------------- */

static int summarize(int n_readers, struct demo_stats *const *st, struct demo_summary *sum)
{
    struct samples wake = {0}, data = {0}, pub = {0};
    size_t cap = (size_t)n_readers * AGE_MAX;
    int rc = bench__samples_init(&wake, cap);
    if (rc == 0)
        rc = bench__samples_init(&data, cap);
    if (rc == 0)
        rc = bench__samples_init(&pub, cap);
    *sum = (struct demo_summary){0};
    double get_sum = 0, mc_sum = 0, get_fast_sum = 0;
    for (int i = 0; i < n_readers && rc == 0; i++) {
        const struct demo_stats *r = st[i];
        for (int p = 0; p < 2; p++) {
            sum->seen[p] += r->seen[p];
            sum->missed[p] += r->missed[p];
        }
        sum->torn += r->torn;
        sum->mismatched += r->mismatched;
        for (uint32_t j = 0; j < r->n_age; j++) {
            bench__samples_add(&wake, r->age_wake[j]);
            bench__samples_add(&data, r->age_data[j]);
            bench__samples_add(&pub, r->age_pub[j]);
        }
        get_sum += ratio_or0(FRAME_LEN, r->get_paced_ns);
        mc_sum += ratio_or0(FRAME_LEN, r->memcpy_paced_ns);
        get_fast_sum += ratio_or0(FRAME_LEN, r->get_fast_ns);
    }
    if (rc == 0) {
        sum->age_wake[0] = bench__pct(&wake, 50);
        sum->age_wake[1] = bench__pct(&wake, 99);
        sum->age_data[0] = bench__pct(&data, 50);
        sum->age_data[1] = bench__pct(&data, 99);
        sum->age_pub[0] = bench__pct(&pub, 50);
        sum->age_pub[1] = bench__pct(&pub, 99);
        sum->get_gbps = get_sum / n_readers;
        sum->memcpy_gbps = mc_sum / n_readers;
        sum->get_fast_gbps = get_fast_sum / n_readers;
    }
    bench__samples_free(&wake);
    bench__samples_free(&data);
    bench__samples_free(&pub);
    return rc;
}

static void print_report(const struct phase_result ph[3], int n_readers,
                         struct demo_stats *const *st, const struct demo_summary *sum,
                         const char *store)
{
    printf("shmstore demo: camera pipeline, %ux%ux%u uint8 frames (%.2f MB) in value "
           "\"camera/rgb\" of store \"%s\"\n",
           FRAME_H, FRAME_W, FRAME_C, (double)FRAME_LEN / 1e6, store);
    printf("1 writer process, %d reader process%s (each: wait -> get -> verify checksum)\n\n",
           n_readers, n_readers == 1 ? "" : "es");
    printf("writer                      %14s %16s %14s\n", "alone", "with readers",
           "100 Hz paced");
    printf("  frames written            %14llu %16llu %14llu\n",
           (unsigned long long)ph[0].frames, (unsigned long long)ph[1].frames,
           (unsigned long long)ph[2].frames);
    printf("  rate (frames/s)           %14.0f %9.0f (%3.0f%%) %14.1f\n", ph[0].rate,
           ph[1].rate, 100 * ratio_or0(ph[1].rate, ph[0].rate), ph[2].rate);
    printf("  put p50 / p99 (us)        %6.0f / %-6.0f %7.0f / %-7.0f %6.0f / %-6.0f\n",
           ph[0].p50 / 1e3, ph[0].p99 / 1e3, ph[1].p50 / 1e3, ph[1].p99 / 1e3,
           ph[2].p50 / 1e3, ph[2].p99 / 1e3);
    printf("  put bandwidth (GB/s)      %14.2f %16.2f\n\n", ratio_or0(FRAME_LEN, ph[0].p50),
           ratio_or0(FRAME_LEN, ph[1].p50));

    printf("reader   full speed: seen missed  age p50/p99 (us)  get GB/s | 100 Hz: seen "
           "missed | torn\n");
    for (int i = 0; i < n_readers; i++) {
        const struct demo_stats *r = st[i];
        printf("  %-4d %17llu %6llu %8.0f / %-8.0f %8.2f | %12llu %6llu | %4llu\n", i,
               (unsigned long long)r->seen[0], (unsigned long long)r->missed[0],
               r->age_fast_p50 / 1e3, r->age_fast_p99 / 1e3,
               ratio_or0(FRAME_LEN, r->get_fast_ns), (unsigned long long)r->seen[1],
               (unsigned long long)r->missed[1], (unsigned long long)r->torn);
    }
    printf("\nframe age at 100 Hz, all readers                        p50          p99\n");
    printf("  writer starts put -> reader returns from wait  %8.1f us  %8.1f us\n",
           sum->age_wake[0] / 1e3, sum->age_wake[1] / 1e3);
    printf("  writer starts put -> reader has copied frame   %8.1f us  %8.1f us\n",
           sum->age_data[0] / 1e3, sum->age_data[1] / 1e3);
    printf("  version published -> reader returns from wait  %8.1f us  %8.1f us\n",
           sum->age_pub[0] / 1e3, sum->age_pub[1] / 1e3);
    printf("  (ages from the start of the put include the put itself, see the writer table;\n"
           "   at 100 Hz every put starts with caches cooled by 10 ms of idling)\n");
    printf("\ncopy bandwidth per reader at 100 Hz (median, mean of readers):\n"
           "  shmstore_value_get  %6.2f GB/s\n"
           "  memcpy from a view  %6.2f GB/s   (same frames, same readers)\n"
           "  get / memcpy        %6.2f\n",
           sum->get_gbps, sum->memcpy_gbps, ratio_or0(sum->get_gbps, sum->memcpy_gbps));
    printf("  (at full speed, %d reader%s and the writer sharing the CPUs: get %.2f GB/s)\n",
           n_readers, n_readers == 1 ? "" : "s", sum->get_fast_gbps);
    printf("\ntorn frames: %llu, frame/version mismatches: %llu  -> %s\n",
           (unsigned long long)sum->torn, (unsigned long long)sum->mismatched,
           sum->torn || sum->mismatched ? "FAILED" : "OK (every frame verified)");
}

/* One line, keys in the order of the tables; every key is our own literal. */
static void print_json(const struct phase_result ph[3], int n_readers,
                       struct demo_stats *const *st, const struct demo_summary *sum)
{
    static const char *const phase_key[3] = {"alone", "with_readers", "paced_100hz"};
    printf("{\"frame_bytes\":%u,\"readers\":%d,\"writer\":{", (unsigned)FRAME_LEN, n_readers);
    for (int p = 0; p < 3; p++)
        printf("%s\"%s\":{\"frames\":%llu,\"rate_hz\":%.1f,\"put_p50_ns\":%.0f,"
               "\"put_p99_ns\":%.0f}",
               p ? "," : "", phase_key[p], (unsigned long long)ph[p].frames, ph[p].rate,
               ph[p].p50, ph[p].p99);
    printf("},\"reader\":[");
    for (int i = 0; i < n_readers; i++) {
        const struct demo_stats *r = st[i];
        printf("%s{\"seen_fast\":%llu,\"missed_fast\":%llu,\"age_fast_p50_ns\":%.0f,"
               "\"age_fast_p99_ns\":%.0f,\"get_fast_gbps\":%.2f,\"seen_100hz\":%llu,"
               "\"missed_100hz\":%llu,\"torn\":%llu}",
               i ? "," : "", (unsigned long long)r->seen[0], (unsigned long long)r->missed[0],
               r->age_fast_p50, r->age_fast_p99, ratio_or0(FRAME_LEN, r->get_fast_ns),
               (unsigned long long)r->seen[1], (unsigned long long)r->missed[1],
               (unsigned long long)r->torn);
    }
    printf("],\"age_100hz\":{"
           "\"put_to_wake_p50_ns\":%.0f,\"put_to_wake_p99_ns\":%.0f,"
           "\"put_to_copied_p50_ns\":%.0f,\"put_to_copied_p99_ns\":%.0f,"
           "\"published_to_wake_p50_ns\":%.0f,\"published_to_wake_p99_ns\":%.0f},"
           "\"seen_100hz\":%llu,\"missed_100hz\":%llu,\"seen_fast\":%llu,\"missed_fast\":%llu,"
           "\"get_gbps_100hz\":%.2f,\"memcpy_gbps_100hz\":%.2f,\"get_gbps_fast\":%.2f,"
           "\"torn\":%llu,\"mismatched\":%llu}\n",
           sum->age_wake[0], sum->age_wake[1], sum->age_data[0], sum->age_data[1],
           sum->age_pub[0], sum->age_pub[1], (unsigned long long)sum->seen[1],
           (unsigned long long)sum->missed[1], (unsigned long long)sum->seen[0],
           (unsigned long long)sum->missed[0], sum->get_gbps, sum->memcpy_gbps,
           sum->get_fast_gbps, (unsigned long long)sum->torn,
           (unsigned long long)sum->mismatched);
}
