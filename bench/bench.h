/* bench.h - the two entry points of bench/, called by the `shmstore` command line tool.
 * Both take the arguments of their sub-command (argv[0] is "bench" or "demo"), print
 * to stdout/stderr, and return a process exit code: 0 success, 1 a failure was found
 * (a case could not run, a torn frame was seen), 64 bad usage (sysexits EX_USAGE).
 * They fork helper processes and always reap them and remove the stores they created,
 * on error too. Not thread-safe: call them from the main thread of a process. */
#ifndef SHMSTORE_BENCH_H
#define SHMSTORE_BENCH_H

/* `shmstore bench [--json] [--quick] [CASE...]`: measure every hot path (or the CASEs
 * named) and print its median and p99 cost next to a physical floor measured in the
 * same run. With --json, one JSON object per line per result. */
int shmstore_bench_main(int argc, char **argv);

/* `shmstore demo [--seconds S] [--readers N]`: a camera pipeline, one writer process
 * publishing 480x848x3 frames to N reader processes; prints rates, losses, torn frames,
 * frame age and copy bandwidth. */
int shmstore_demo_main(int argc, char **argv);

#endif
