/* cmd_bridge.c - `shmstore bridge serve|mirror|keygen`: mirror objects between hosts
 * over ZeroMQ (shmstore/bridge.h has the semantics per kind). */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "shmstore/bridge.h"

static int run(int argc, char **argv, struct cli_ctx *ctx);

const struct cli_cmd cli_cmd_bridge = {
    "bridge", run, "mirror values, queues, rings and tables to other hosts (ZeroMQ)",
    "Usage: shmstore bridge serve STORE --bind ENDPOINT [--objects GLOB]... [OPTIONS]\n"
    "       shmstore bridge mirror ENDPOINT[=PREFIX]... STORE [--objects GLOB]... [OPTIONS]\n"
    "       shmstore bridge keygen FILE\n"
    "\n"
    "serve publishes the objects of STORE whose names match a GLOB (default: every value,\n"
    "queue, ring and table, also those created later) on ENDPOINT, e.g.\n"
    "tcp://127.0.0.1:5555. It binds only loopback and ipc:// endpoints unless --public.\n"
    "mirror connects to one or more servers and writes what they publish into STORE\n"
    "(created if missing), each server's objects named PREFIX + the source's name.\n"
    "Values: the latest version (intermediate ones may be skipped). Queues are moved: an\n"
    "entry leaves the source queue once it is in the far one; exactly once while both\n"
    "bridges live, at-least-once across a restart (attr bridge_index says the source\n"
    "index). Rings: frames in order, at the source's positions (losses count as overrun).\n"
    "Tables: appends. Both run until SIGINT or SIGTERM.\n"
    "keygen makes a CURVE key pair: FILE (secret, for --key) and FILE.pub (for the other\n"
    "side's --server-key or --allow).\n"
    "\n"
    "Options:\n"
    "  --bind ENDPOINT      serve: where to listen (tcp://HOST:PORT, ipc://PATH)\n"
    "  --objects GLOB       only objects whose name matches (fnmatch); repeatable\n"
    "  --prefix PREFIX      mirror: the prefix for an ENDPOINT given without =PREFIX\n"
    "  --key FILE           this side's key file: serve encrypts (CURVE); mirror uses it\n"
    "                       as its identity (default: a fresh key)\n"
    "  --server-key FILE    mirror: the server's public key; other servers are refused\n"
    "  --allow FILE         serve: accept only mirrors with this public key; repeatable\n"
    "  --public             serve: allow an endpoint that is not loopback\n"
    "  --hwm N              messages queued per peer before flow control (default 1000)\n"
    "  --window N           serve: queue entries in flight per queue (default 4096)\n"
    "  --for SECONDS        stop after this long\n"
    "  --stats SECONDS      print the counters as a JSON line this often (stdout)\n"
    "  -v, --verbose        log connections and new objects to stderr\n"
    "  --dir DIR            directory of the stores\n"};

static shmstore_bridge_t *running;
static volatile sig_atomic_t stopped;

static void on_signal(int sig)
{
    (void)sig;
    stopped = 1;
    shmstore_bridge_stop(running);
}

static void on_log(void *arg, int level, const char *msg)
{
    int verbose = *(int *)arg;
    if (level == SHMSTORE_BRIDGE_LOG_ERROR || verbose >= level)
        fprintf(stderr, "shmstore bridge: %s\n", msg);
}

static void print_stats(shmstore_bridge_t *b, const char *role)
{
    shmstore_bridge_stats_t s;
    shmstore_bridge_stats(b, &s);
    printf("{\"role\": \"%s\", \"messages_sent\": %" PRIu64 ", \"messages_received\": %" PRIu64
           ", \"bytes_sent\": %" PRIu64 ", \"bytes_received\": %" PRIu64 ", \"values\": %" PRIu64
           ", \"entries\": %" PRIu64 ", \"entries_acked\": %" PRIu64
           ", \"entries_duplicate\": %" PRIu64 ", \"frames\": %" PRIu64
           ", \"frames_lost\": %" PRIu64 ", \"records\": %" PRIu64 ", \"records_lost\": %" PRIu64
           ", \"hwm_deferred\": %" PRIu64 ", \"bad_messages\": %" PRIu64 ", \"refused\": %" PRIu64
           ", \"peers\": %" PRIu32 ", \"objects\": %" PRIu32 "}\n",
           role, s.messages_sent, s.messages_received, s.bytes_sent, s.bytes_received, s.values,
           s.entries, s.entries_acked, s.entries_duplicate, s.frames, s.frames_lost, s.records,
           s.records_lost, s.hwm_deferred, s.bad_messages, s.refused, s.peers, s.objects);
    fflush(stdout);
}

enum { OPT_BIND = 1000, OPT_OBJECTS, OPT_PREFIX, OPT_KEY, OPT_SERVER_KEY, OPT_ALLOW, OPT_PUBLIC,
       OPT_HWM, OPT_WINDOW, OPT_FOR, OPT_STATS };

#define MAX_LIST 64

static int keygen(int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error(&cli_cmd_bridge, "keygen takes one FILE");
    int rc = shmstore_bridge_keygen(argv[1]);
    if (rc < 0)
        return cli_error(rc, NULL, "keygen");
    printf("wrote %s (secret: keep it) and %s.pub (give it to the other side)\n", argv[1],
           argv[1]);
    return cli_finish_output(CLI_EX_OK);
}

static int run(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTS,
        {"bind", required_argument, NULL, OPT_BIND},
        {"objects", required_argument, NULL, OPT_OBJECTS},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"key", required_argument, NULL, OPT_KEY},
        {"server-key", required_argument, NULL, OPT_SERVER_KEY},
        {"allow", required_argument, NULL, OPT_ALLOW},
        {"public", no_argument, NULL, OPT_PUBLIC},
        {"hwm", required_argument, NULL, OPT_HWM},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"for", required_argument, NULL, OPT_FOR},
        {"stats", required_argument, NULL, OPT_STATS},
        {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0}};
    const char *globs[MAX_LIST], *allow[MAX_LIST], *bind = NULL, *prefix = NULL;
    shmstore_bridge_options_t o = {0};
    int64_t for_ns = -1, stats_ns = -1;
    int c, rc, verbose = 0;
    uint64_t u;

    if (argc >= 2 && !strcmp(argv[1], "keygen"))
        return keygen(argc - 1, argv + 1);
    CLI_GETOPT_INIT();
    while ((c = getopt_long(argc, argv, ":hv", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BIND:
            bind = optarg;
            break;
        case OPT_OBJECTS:
            if (o.n_objects == MAX_LIST)
                return cli_usage_error(&cli_cmd_bridge, "at most %d --objects", MAX_LIST);
            globs[o.n_objects++] = optarg;
            break;
        case OPT_PREFIX:
            prefix = optarg;
            break;
        case OPT_KEY:
            o.key_file = optarg;
            break;
        case OPT_SERVER_KEY:
            o.server_key_file = optarg;
            break;
        case OPT_ALLOW:
            if (o.n_allow == MAX_LIST)
                return cli_usage_error(&cli_cmd_bridge, "at most %d --allow", MAX_LIST);
            allow[o.n_allow++] = optarg;
            break;
        case OPT_PUBLIC:
            o.public_bind = 1;
            break;
        case OPT_HWM:
        case OPT_WINDOW:
            if (cli_parse_u64(optarg, &u) != 0 || u == 0 || u > (1u << 30))
                return cli_usage_error(&cli_cmd_bridge, "bad count '%s'", optarg);
            *(c == OPT_HWM ? &o.hwm : &o.queue_window) = (uint32_t)u;
            break;
        case OPT_FOR:
        case OPT_STATS:
            if (cli_parse_seconds(optarg, c == OPT_FOR ? &for_ns : &stats_ns) != 0)
                return cli_usage_error(&cli_cmd_bridge, "bad duration '%s'", optarg);
            break;
        case 'v':
            verbose++;
            break;
        default:
            if ((rc = cli_common_opt(c, argv, &cli_cmd_bridge, ctx)) >= 0)
                return rc;
        }
    }
    o.objects = globs;
    o.allow = allow;
    o.log = on_log;
    o.log_arg = &verbose;
    if (optind >= argc)
        return cli_usage_error(&cli_cmd_bridge, "expected serve, mirror or keygen");
    const char *mode = argv[optind++];
    bool serve = !strcmp(mode, "serve");
    if (!serve && strcmp(mode, "mirror"))
        return cli_usage_error(&cli_cmd_bridge, "'%s' is not serve, mirror or keygen", mode);
    if (serve && (argc - optind != 1 || !bind))
        return cli_usage_error(&cli_cmd_bridge, "serve takes one STORE and --bind ENDPOINT");
    if (!serve && (argc - optind < 2 || bind))
        return cli_usage_error(&cli_cmd_bridge, "mirror takes ENDPOINT... STORE (no --bind)");
    const char *store = argv[argc - 1];
    if (strchr(store, '/'))
        return cli_usage_error(&cli_cmd_bridge, "'%s': a STORE, not STORE/NAME", store);

    shmstore_options_t so = {.dir = ctx->dir};
    shmstore_t *s;
    rc = shmstore_open(store, serve ? 0 : SHMSTORE_O_CREATE, &so, &s);
    if (rc < 0)
        return cli_open_error(ctx, store, rc);
    shmstore_bridge_t *b = NULL;
    if (serve) {
        rc = shmstore_bridge_serve(s, bind, &o, &b);
    } else {
        size_t n = (size_t)(argc - 1 - optind);
        const char *eps[MAX_LIST], *pre[MAX_LIST];
        char *copies[MAX_LIST] = {NULL};
        if (n > MAX_LIST) {
            shmstore_close(s);
            return cli_usage_error(&cli_cmd_bridge, "at most %d servers", MAX_LIST);
        }
        for (size_t i = 0; i < n; i++) {
            char *eq = strchr(argv[optind + i], '=');
            copies[i] = strdup(argv[optind + i]);
            if (copies[i] && eq) {
                copies[i][eq - argv[optind + i]] = 0;
                pre[i] = eq + 1;
            } else {
                pre[i] = prefix;
            }
            eps[i] = copies[i] ? copies[i] : argv[optind + i];
        }
        rc = shmstore_bridge_mirror(s, eps, pre, n, &o, &b);
        for (size_t i = 0; i < n; i++)
            free(copies[i]);
    }
    if (rc < 0) {
        rc = cli_error(rc, store, "bridge %s", mode);
        shmstore_close(s);
        return rc;
    }
    if (verbose) {
        char ep[256];
        shmstore_bridge_endpoint(b, ep, sizeof(ep));
        fprintf(stderr, "shmstore bridge: %s %s %s\n", mode, store, ep);
    }
    running = b;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int64_t slice = stats_ns > 0 ? stats_ns : -1, spent;
        if (for_ns >= 0) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            spent = (t.tv_sec - t0.tv_sec) * 1000000000ll + (t.tv_nsec - t0.tv_nsec);
            if (spent >= for_ns)
                break;
            if (slice < 0 || slice > for_ns - spent)
                slice = for_ns - spent;
        }
        rc = shmstore_bridge_run(b, slice);
        if (rc < 0 || stopped || slice < 0)
            break;
        if (stats_ns > 0)
            print_stats(b, mode);
    }
    running = NULL;
    if (rc < 0)
        rc = cli_error(rc, store, "bridge %s", mode);
    else
        rc = CLI_EX_OK;
    if (stats_ns > 0)
        print_stats(b, mode);
    shmstore_bridge_close(b);
    shmstore_close(s);
    return rc == CLI_EX_OK ? cli_finish_output(rc) : rc;
}
