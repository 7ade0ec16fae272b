"""Python benchmark: shmstore's native API vs its compat SharedObject vs a faithful
reimplementation of the seed's approach (seed_baseline.py: multiprocessing.shared_memory
+ fcntl.flock readers-writer lock + time_ns stamp), and Python vs the C benchmark and
the C demo, run in the same invocation.

    /usr/bin/python3 python/bench/bench_python.py [--quick] [--json FILE]

Cases: small value assign/fetch; the `.modified` check; a 480x848x3 uint8 frame
assign/fetch (with numpy's copy of the same frame as the floor); writer rate with 0/1/3
busy reader processes; frame age at 100 Hz with a waiting reader. Reports medians, p99
and ratios (seed / ours: > 1 means shmstore is faster).

How each figure is measured:
- Sub-microsecond cases (small value, .modified) are timed the way `timeit` does: the
  statement ("h.put(42)", "so.modified", "seed.fetch()") is compiled inline into timeit's
  loop, its objects bound as local variables. A batch runs it N times, N chosen so that a
  batch takes about 2 ms (1 ms with --quick); per call = batch time / N. The cases of one
  table take turns batch by batch, 200 batches each (30 with --quick), so slow drifts of
  the machine hit them alike. The loop's own cost per iteration, measured the same way on
  the statement "pass" in the same turns, is subtracted (its row shows what was taken
  off). Median and p99 are over batches of this net per-call time, so the p99 shows
  batch-to-batch drift, not single-call tails. Ratios use the net medians.
- Frame cases (tens of us) are timed call by call with perf_counter_ns, so the p99 is
  per call; the timer + call overhead (the table's first row, ~0.1 us) is included.
- Writer rate: one process assigns frames as fast as it can while 0, 1 or 3 other
  processes fetch the same object in a loop. This VM's two vCPUs change behaviour from
  one second to the next (a writer with one busy reader runs at 0.1x to 1.0x of solo, in
  C as in Python), so one long run per case would compare different moments. The cases
  take turns in slices of 0.3 s (0.2 s with --quick), round after round (6 rounds, 1
  with --quick); the readers of every implementation stay alive, blocked on an Event
  when not in their slice. Each round starts with the C benchmark's writer_readers
  (--quick: 0.4 s per case). Fractions of solo are compared within each round (median
  over rounds) and between the best rounds of each (what each gets when the VM leaves
  both vCPUs alone: in the slow rounds the guest sees both CPUs 100% busy and no steal
  time, yet the writer runs at a tenth of its rate, so the time goes to the host).
- Frame age at 100 Hz: the writer stamps time.monotonic_ns() (CLOCK_MONOTONIC, the C
  demo's clock) into the frame just before each assign/put; one reader process waits
  (the seed: polls `modified`), notes the time when the wait returns and again when it
  holds a copy of the frame. Ages are measured from the stamp, so they include the put.
  Frames carry a number: "missed" counts frames the reader never saw.
- The C side comes from the same run, with no Python reader process running (the
  writer-rate readers are blocked): `shmstore bench --json small_put small_get
  frame_get` first, `writer_readers --quick` in every writer-rate round, and `shmstore
  demo --readers 1 --json` before and after the frame-age cases, for as many frames at
  100 Hz as each Python reader gets; Python's ages are compared with the lower of the
  two C figures. The binary is build-release/cli/shmstore (build it with
  `cmake --build build-release`) or $SHMSTORE_BIN; if it is missing those rows are
  skipped.
- Percentiles are nearest rank, as in the C benchmark.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
import timeit

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), HERE, os.environ.get("PYTHONPATH", "")])
# Children (spawn) import this module again: they must find the parent's store name.
STORE = os.environ.setdefault("BENCH_PY_STORE", f"bench_py_{os.getpid()}")
os.environ["SHMSTORE_COMPAT_STORE"] = STORE

import shmstore  # noqa: E402
from seed_baseline import SeedSharedObject  # noqa: E402
from shmstore.compat.shared_object import SharedObject  # noqa: E402

FRAME = (480, 848, 3)
ns = time.perf_counter_ns
NAN = float("nan")
LOOP_ROW = "loop overhead per call (subtracted)"
CALL_ROW = "timer + call overhead (included)"


# ---- timing -----------------------------------------------------------------------------------

def pct(samples, p):
    """The p-th percentile, nearest rank (as bench/stats.c): the smallest sample with at
    least p% of the set at or below it."""
    a = np.sort(np.asarray(samples, dtype=np.float64))
    if len(a) == 0:
        return NAN
    return float(a[min(len(a), max(1, math.ceil(p / 100 * len(a)))) - 1])


def stats(samples_ns):
    return {"median_ns": pct(samples_ns, 50), "p99_ns": pct(samples_ns, 99), "n": len(samples_ns)}


def time_calls(fn, n):
    """Per-call times of fn() (frame cases: the ~0.1 us of timer and call is included)."""
    for _ in range(min(n // 10 + 1, 200)):
        fn()
    out = []
    for _ in range(n):
        t = ns()
        fn()
        out.append(ns() - t)
    return stats(out)


def calibrate(timer, batch_s):
    """Iterations per batch so that one batch takes about batch_s. Doubling up to a fifth
    of that warms the statement up; the fastest of 3 trials then sets the size, so a
    one-off stall (a page fault, a preemption) cannot shrink the batches."""
    n = 1
    while timer.timeit(n) < batch_s / 5:
        n *= 2
    per_call = min(timer.timeit(n) for _ in range(3)) / n
    return max(1, round(batch_s / per_call))


def time_batched(stmts, objs, n_batches, batch_s):
    """Net time per call of each statement of `stmts` ({label: statement}), timeit's way
    (see the module docstring). `objs` ({name: object}) become locals of the loop."""
    setup = f"{', '.join(objs)}, = _objs"
    timers = {label: timeit.Timer(stmt, setup, globals={"_objs": tuple(objs.values())})
              for label, stmt in {LOOP_ROW: "pass", **stmts}.items()}
    n_iter = {label: calibrate(t, batch_s) for label, t in timers.items()}
    per_call = {label: [] for label in timers}
    for _ in range(n_batches):
        for label, t in timers.items():
            per_call[label].append(t.timeit(n_iter[label]) * 1e9 / n_iter[label])
    loop_ns = pct(per_call[LOOP_ROW], 50)
    out = {}
    for label, samples in per_call.items():
        net = samples if label == LOOP_ROW else [x - loop_ns for x in samples]
        out[label] = stats(net) | {"raw_median_ns": pct(samples, 50), "calls_per_batch": n_iter[label]}
    return out


# ---- single-process cases ---------------------------------------------------------------------

def make_impls(tag, data):
    store = shmstore.Store(STORE)
    h = store.value(f"{tag}_native")
    h.put(data)
    so = SharedObject(f"{tag}_compat", data=data)
    seed = SeedSharedObject(f"{STORE}_{tag}_seed", data=data)
    return store, h, so, seed


def case_small(n_batches, batch_s):
    store, h, so, seed = make_impls("small", 1)
    r = time_batched({
        "native Value.put": "h.put(42)",
        "native Value.get": "h.get()",
        "native store.put (by name)": "store.put('small_native', 42)",
        "native store[name]": "store['small_native']",
        "compat assign": "so.assign(42)",
        "compat fetch": "so.fetch()",
        "seed assign": "seed.assign(42)",
        "seed fetch": "seed.fetch()",
    }, {"store": store, "h": h, "so": so, "seed": seed}, n_batches, batch_s)
    seed.close(); seed.unlink()
    return r


def case_modified(n_batches, batch_s):
    store, h, so, seed = make_impls("mod", 1)
    r = time_batched({
        "native Value.version": "h.version",
        "compat .modified": "so.modified",
        "seed .modified": "seed.modified",
    }, {"h": h, "so": so, "seed": seed}, n_batches, batch_s)
    seed.close(); seed.unlink()
    return r


def case_frame(n, n_small):
    frame = np.random.randint(0, 255, FRAME, dtype=np.uint8)
    store, h, so, seed = make_impls("frame", frame)
    dst = np.empty_like(frame)

    def view_copy():
        v = h.view()
        np.copyto(dst, v)
        del v

    r = {
        CALL_ROW: time_calls(lambda: None, n_small),
        "floor: numpy copy of the frame": time_calls(lambda: np.copyto(dst, frame), n),
        "native Value.put": time_calls(lambda: h.put(frame), n),
        "native Value.get (copy)": time_calls(h.get, n),
        "native view + np.copyto (prealloc)": time_calls(view_copy, n),
        "native Value.view (zero-copy)": time_calls(h.view, n),
        "compat assign": time_calls(lambda: so.assign(frame), n),
        "compat fetch": time_calls(so.fetch, n),
        "compat fetch(lambda x: x.mean())": time_calls(lambda: so.fetch(lambda x: x[::8, ::8].mean()), n // 2),
        "seed assign": time_calls(lambda: seed.assign(frame), n),
        "seed fetch": time_calls(seed.fetch, n),
        "seed fetch(lambda x: x.mean())": time_calls(lambda: seed.fetch(lambda x: x[::8, ::8].mean()), n // 2),
    }
    seed.close(); seed.unlink()
    return r


# ---- the C benchmark and demo, same run -------------------------------------------------------

REQUIRE_C = False  # --require-c (the smoke test): a C side that cannot run is a failure


def c_skipped(msg):
    print(msg)
    if REQUIRE_C:
        raise SystemExit(f"bench_python: --require-c: {msg.strip()}")


def shmstore_bin():
    """The C CLI's path, or None (and say so)."""
    path = os.environ.get("SHMSTORE_BIN") or os.path.join(ROOT, "build-release", "cli", "shmstore")
    if os.access(path, os.X_OK):
        return path
    c_skipped(f"\nC benchmark and demo: {path} not found (cmake --build build-release): C rows skipped")
    return None


def run_json(argv, what):
    """Run the C CLI; the JSON objects of its stdout, or None (and say why)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        c_skipped(f"\n{what}: {' '.join(argv)} failed ({e}): C rows skipped")
        return None
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not rows or any("error" in r for r in rows):
        c_skipped(f"\n{what}: {' '.join(argv)} exited {p.returncode}: C rows skipped\n"
                  f"{p.stderr.strip()}")
        return None
    return rows


def c_bench(exe, cases, quick):
    """{case: row}, {readers: row} for writer_readers; None without the C CLI."""
    if exe is None:
        return None
    rows = run_json([exe, "bench", "--json"] + (["--quick"] if quick else []) + cases, "C benchmark")
    if rows is None:
        return None
    out = {}
    for r in rows:
        if r["case"] == "writer_readers":
            out.setdefault("writer_readers", {})[r["readers"]] = r
        else:
            out[r["case"]] = r
    return out


def print_c_small(c):
    print("\n## C benchmark, same run (shmstore bench --json; no Python reader process running)")
    if c is None:
        print("(no C benchmark: skipped)")
        return
    print(f"{'case':28s} {'median us':>11s} {'p99 us':>11s} {'extra':>34s}")
    for r in c.values():
        extra = (f"hot {r['hot_ns']:.0f} ns, floor {r['floor_ns']:.0f} ns" if "hot_ns" in r else
                 f"floor {r['floor_ns'] / 1e3:.1f} us")
        print(f"{r['case']:28s} {r['median_ns'] / 1e3:11.3f} {r['p99_ns'] / 1e3:11.3f} {extra:>34s}")


def c_demo(exe, seconds):
    if exe is None:
        return None
    rows = run_json([exe, "demo", "--readers", "1", "--seconds", f"{seconds:g}", "--json"], "C demo")
    return rows[-1] if rows else None


# ---- writer rate with busy readers ------------------------------------------------------------

RATE_IMPLS = {"native": "rate_native", "compat": "rate_compat", "seed": f"{STORE}_rate_seed"}
N_READERS = (0, 1, 3)
PAUSE, RUN, QUIT = 0, 1, 2  # a busy reader's state (a RawArray starts at 0: paused)


def open_writer(impl, name, frame):
    """(assign function, seed object or None) for a fresh object holding `frame`."""
    if impl.startswith("native"):
        h = shmstore.Store(STORE).value(name)
        h.put(frame)
        return h.put, None
    if impl == "compat":
        return SharedObject(name, data=frame).assign, None
    seed = SeedSharedObject(name, data=frame)
    return seed.assign, seed


def busy_reader(impl, name, i, state, go, ready):
    """Fetches `name` in a loop while state[i] is RUN; otherwise blocks on `go` (no CPU)."""
    if impl == "native":
        s = shmstore.Store(STORE)
        fetch = s.value(name).get
    elif impl == "compat":
        fetch = SharedObject(name).fetch
    else:
        fetch = SeedSharedObject(name).fetch
    fetch()
    ready.set()
    while go.wait() and state[i] != QUIT:
        while state[i] == RUN:
            fetch()


class BusyReaders:
    """max(N_READERS) reader processes of one implementation; run(k) sets the first k
    fetching, pause() blocks them all again."""

    def __init__(self, ctx, impl, name):
        n = max(N_READERS)
        self.state = ctx.RawArray("i", n)
        self.go = [ctx.Event() for _ in range(n)]
        ready = [ctx.Event() for _ in range(n)]
        self.procs = [ctx.Process(target=busy_reader, args=(impl, name, i, self.state, self.go[i], ready[i]))
                      for i in range(n)]
        for p in self.procs:
            p.start()
        if not all(e.wait(30) for e in ready):
            self.close()
            raise RuntimeError(f"{impl} busy readers did not start")

    def run(self, k):
        for i in range(k):
            self.state[i] = RUN
            self.go[i].set()

    def pause(self):
        for i, go in enumerate(self.go):
            go.clear()  # first: a reader that leaves its loop then blocks
            self.state[i] = PAUSE

    def close(self):
        for i, go in enumerate(self.go):
            self.state[i] = QUIT
            go.set()
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def writer_slice(assign, frame, seconds):
    """Assign as fast as possible for `seconds` after 50 ms of warm-up: (latencies, seconds)."""
    t_warm = time.perf_counter() + 0.05
    while time.perf_counter() < t_warm:
        assign(frame)
    lat = []
    t_start = time.perf_counter()
    t_end = t_start + seconds
    while time.perf_counter() < t_end:
        t = ns()
        assign(frame)
        lat.append(ns() - t)
    return lat, time.perf_counter() - t_start


def writer_rates(exe, n_rounds, slice_s):
    """Returns ({case: latency stats + rate over all rounds}, [per round: {who: {readers:
    rate / solo rate}}]); "C" is the C benchmark's writer_readers of the same round."""
    ctx = mp.get_context("spawn")
    frame = np.zeros(FRAME, np.uint8)
    writers, readers, rounds = {}, {}, []
    lat = {(impl, k): [] for k in N_READERS for impl in RATE_IMPLS}
    secs = dict.fromkeys(lat, 0.0)
    try:
        for impl, name in RATE_IMPLS.items():
            writers[impl] = open_writer(impl, name, frame)
            readers[impl] = BusyReaders(ctx, impl, name)
        for _ in range(n_rounds):
            c = c_bench(exe, ["writer_readers"], quick=True)  # the Python readers are blocked
            rnd = {"C": {k: c["writer_readers"][k]["ratio"] for k in N_READERS[1:]}} if c else {}
            rate = {}
            for k in N_READERS:
                for impl in RATE_IMPLS:
                    readers[impl].run(k)
                    l, s = writer_slice(writers[impl][0], frame, slice_s)
                    readers[impl].pause()
                    lat[impl, k] += l
                    secs[impl, k] += s
                    rate[impl, k] = len(l) / s
            for impl in RATE_IMPLS:
                rnd[f"Python {impl}"] = {k: rate[impl, k] / rate[impl, 0] for k in N_READERS[1:]}
            rounds.append(rnd)
    finally:
        for r in readers.values():
            r.close()
        for _, seed in writers.values():
            if seed:
                seed.close(); seed.unlink()
    table = {f"{impl}, {k} busy readers": stats(lat[impl, k]) | {"rate_hz": len(lat[impl, k]) / secs[impl, k]}
             for (impl, k) in lat}
    return table, rounds


# ---- frame age at 100 Hz ----------------------------------------------------------------------

# Words 0..2 of each frame (int64) are the stamp, the frame number and the phase.
AGE_WARM = 20  # frames at 100 Hz before measuring: the reader faults in the version blocks
PH_WARM, PH_MEASURED, PH_STOP = 0, 1, 2
AGE_IMPLS = {  # impl -> (object name, how the reader waits and copies)
    "native get": ("age_native_get", "wait, get (new array)"),
    "native view": ("age_native_view", "wait, view + np.copyto (prealloc)"),
    "compat": ("age_compat", "wait, fetch"),
    "seed": (f"{STORE}_age_seed", "poll modified (0.5 ms sleep), fetch"),
}


def poll_modified(so, timeout):
    """The seed's way to wait: look at `modified` every 0.5 ms. False on timeout."""
    deadline = time.monotonic() + timeout
    while not so.modified:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def age_reader(impl, name, ready, q):
    """Waits for each frame, copies it, and notes when the wait returned and when it held
    the copy; sends back (ages at wake-up, ages with the copy, frames seen)."""
    out = np.empty(FRAME, np.uint8)
    if impl.startswith("native"):
        h = shmstore.Store(STORE).value(name)
        ver = h.version
    else:
        so = SharedObject(name) if impl == "compat" else SeedSharedObject(name)
    ready.set()
    wake, data, n_seen, last = [], [], 0, -1
    while True:
        if impl.startswith("native"):
            try:
                ver = h.wait(after=ver, timeout=5)
            except TimeoutError:
                break
        elif impl == "compat":
            if not so.wait(timeout=5):  # shmstore extension: a futex wait
                break
        elif not poll_modified(so, timeout=5):
            break
        t_wake = time.monotonic_ns()
        if impl == "native get":
            a, ver = h.get_versioned()
        elif impl == "native view":
            v, ver = h.view_versioned()
            np.copyto(out, v)
            del v
            a = out
        else:
            a = so.fetch()
        t_data = time.monotonic_ns()
        stamp, number, phase = (int(x) for x in a.reshape(-1)[:24].view(np.int64))
        if phase == PH_STOP:
            break
        if phase == PH_MEASURED and number > last:
            n_seen += 1
            wake.append(t_wake - stamp)
            data.append(t_data - stamp)
        last = number
    q.put((wake, data, n_seen))


def frame_age(impl, n_frames):
    name = AGE_IMPLS[impl][0]
    frame = np.zeros(FRAME, np.uint8)
    header = frame.reshape(-1)[:24].view(np.int64)
    assign, seed = open_writer(impl, name, frame)
    ctx = mp.get_context("spawn")
    q, ready = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=age_reader, args=(impl, name, ready, q))
    p.start()
    ready.wait(30)
    t_next = time.perf_counter()
    for i in range(AGE_WARM + n_frames + 1):
        t_next += 0.01
        while time.perf_counter() < t_next:  # sleep, then spin the last 0.2 ms
            time.sleep(max(0.0, t_next - time.perf_counter() - 0.0002))
        header[1] = i
        header[2] = PH_WARM if i < AGE_WARM else PH_MEASURED if i < AGE_WARM + n_frames else PH_STOP
        header[0] = time.monotonic_ns()
        assign(frame)
    wake, data, n_seen = q.get(timeout=30)
    p.join()
    if seed:
        seed.close(); seed.unlink()
    return {"wake": stats(wake), "copied": stats(data), "sent": n_frames, "seen": n_seen,
            "missed": n_frames - n_seen}


# ---- report -----------------------------------------------------------------------------------

def ratio(a, b):
    return b["median_ns"] / a["median_ns"] if a["median_ns"] > 0 else NAN


def print_table(title, rows, unit="us"):
    scale = {"ns": 1.0, "us": 1e3}[unit]
    print(f"\n## {title}")
    print(f"{'case':44s} {'median ' + unit:>11s} {'p99 ' + unit:>11s} {'extra':>20s}")
    for k, v in rows.items():
        extra = (f"{v['rate_hz']:.0f} Hz" if "rate_hz" in v else
                 f"{v['calls_per_batch']} calls/batch" if "calls_per_batch" in v else "")
        print(f"{k:44s} {v['median_ns'] / scale:11.2f} {v['p99_ns'] / scale:11.2f} {extra:>20s}")


def report_vs_c(res, c):
    """Python against the same operations in the C benchmark of this run."""
    print("\n## Python over the same operation in the C benchmark (same run)")
    if c is None:
        print("(no C benchmark: skipped)")
        return None
    s, f = res["small"], res["frame"]
    out = {}
    print(f"{'operation':40s} {'Python':>10s} {'C':>10s} {'Python-C':>10s} {'Python/C':>9s}")
    rows = [
        ("small put: Value.put(42) vs C hot put", s["native Value.put"]["median_ns"], c["small_put"]["hot_ns"]),
        ("small put: vs C put after a hand-off", s["native Value.put"]["median_ns"], c["small_put"]["median_ns"]),
        ("small get: Value.get() vs C hot get", s["native Value.get"]["median_ns"], c["small_get"]["hot_ns"]),
        ("small get: vs C get after a hand-off", s["native Value.get"]["median_ns"], c["small_get"]["median_ns"]),
        ("frame get: Value.get() vs C frame_get", f["native Value.get (copy)"]["median_ns"],
         c["frame_get"]["median_ns"]),
        ("frame get: view+np.copyto vs C frame_get", f["native view + np.copyto (prealloc)"]["median_ns"],
         c["frame_get"]["median_ns"]),
    ]
    for label, py, cv in rows:
        out[label] = {"python_ns": py, "c_ns": cv, "ratio": py / cv}
        unit, scale = ("ns", 1) if cv < 1e4 else ("us", 1e3)
        print(f"{label:40s} {py / scale:7.1f} {unit} {cv / scale:7.1f} {unit} {(py - cv) / scale:7.1f} {unit}"
              f" {py / cv:8.2f}x")
    print("  Python: the statement back to back in one process (net of loop overhead), value hot in\n"
          "    this CPU's cache; frame: per call, the frame last written by this process.\n"
          "  C hot: the same call back to back in one process (the C bench's hot_ns).\n"
          "  C after a hand-off: the C bench's headline figure: another process touched the value\n"
          "    between two timed calls, so each starts with a cross-CPU cache-line transfer\n"
          f"    (its floor, a bare round trip: {c['small_put']['floor_ns']:.0f} ns).\n"
          "  C frame_get: copy into a reused buffer of a frame another process just put (cross-CPU);\n"
          "    Value.get() also allocates a new 1.2 MB array per call, view + np.copyto does not.")
    return out


def report_writer_rounds(rounds):
    """Fractions of solo per round, C next to Python; Python / C within each round (its
    median) and of the best rounds (what each gets when this VM leaves both CPUs alone)."""
    print("\n## writer rate with 1 / 3 busy readers as a fraction of solo, per round"
          " (C and Python seconds apart)")
    who = [w for w in rounds[0] if all(w in r for r in rounds)]  # C: only if every round has it
    heads = [f"round {i + 1}" for i in range(len(rounds))] + ["median", "best"]
    print(f"{'':22s}" + "".join(f" {h:>10s}" for h in heads))
    out = {}

    def row(label, f1, f3, best1, best3):
        cells = zip(f1 + [pct(f1, 50), best1], f3 + [pct(f3, 50), best3])
        print(f"{label:22s}" + "".join(f" {f'{a:.2f}/{b:.2f}':>10s}" for a, b in cells))
        out[label] = {"1": f1, "3": f3, "best": [best1, best3]}

    for w in who:
        f1, f3 = [r[w][1] for r in rounds], [r[w][3] for r in rounds]
        row(w, f1, f3, max(f1), max(f3))
    if "C" not in who:
        print("(no C benchmark: no comparison)")
        return out
    for impl in ("native", "compat"):
        py, c = out[f"Python {impl}"], out["C"]
        p1 = [a / b for a, b in zip(py["1"], c["1"])]
        p3 = [a / b for a, b in zip(py["3"], c["3"])]
        row(f"Python {impl} / C", p1, p3, py["best"][0] / c["best"][0], py["best"][1] / c["best"][1])
    print("  (each cell: 1 reader / 3 readers. C readers loop on get + view, Python readers on get /\n"
          "   fetch. Python / C near 1: Python loses nothing beyond what this VM takes from C. A round\n"
          "   far below the others is this VM stalling a vCPU, in C as in Python.)")
    return out


def report_age(ages, demos):
    """`demos`: the C demo's figures before and after the Python readers (None: failed)."""
    print("\n## frame age at 100 Hz, 1 waiting reader process (from the writer's stamp just before put)")
    print(f"{'':46s} {'-> wait returns, us':>19s} {'-> has the frame, us':>20s}")
    print(f"{'reader':46s} {'p50':>9s} {'p99':>9s} {'p50':>9s} {'p99':>10s} {'seen':>6s} {'missed':>6s}")
    rows = {}
    for when, d in zip(("before", "after"), demos):
        if d:
            a = d["age_100hz"]
            rows[f"C demo {when}: wait, get | view + memcpy"] = (
                a["put_to_wake_p50_ns"], a["put_to_wake_p99_ns"], a["put_to_copied_p50_ns"],
                a["put_to_copied_p99_ns"], d["seen_100hz"], d["missed_100hz"])
    for impl, r in ages.items():
        rows[f"{impl.split()[0]}: {AGE_IMPLS[impl][1]}"] = (
            r["wake"]["median_ns"], r["wake"]["p99_ns"], r["copied"]["median_ns"],
            r["copied"]["p99_ns"], r["seen"], r["missed"])
    for label, (w50, w99, c50, c99, seen, missed) in rows.items():
        print(f"{label:46s} {w50 / 1e3:9.1f} {w99 / 1e3:9.1f} {c50 / 1e3:9.1f} {c99 / 1e3:10.1f}"
              f" {seen:6d} {missed:6d}")
    print("  (the C demo's reader alternates get and memcpy from a view; it runs before and after the\n"
          "   Python readers, with as many frames at 100 Hz as each of them)")
    demos = [d for d in demos if d]
    if not demos:
        print("(no C demo: no comparison)")
        return None
    c50 = min(d["age_100hz"]["put_to_copied_p50_ns"] for d in demos)
    c99 = min(d["age_100hz"]["put_to_copied_p99_ns"] for d in demos)
    print("\nPython / C demo, writer starts put -> reader has the frame, against the lower of the C\n"
          "runs (the stricter comparison). Target: every frame seen, p99 <= 2x")
    out = {}
    for impl, r in ages.items():
        p50 = r["copied"]["median_ns"] / c50
        p99 = r["copied"]["p99_ns"] / c99
        verdict = "ok" if p99 <= 2 and r["missed"] == 0 else "NOT MET"
        out[impl] = {"p50_ratio": p50, "p99_ratio": p99, "missed": r["missed"], "target_met": verdict == "ok"}
        print(f"  {impl:14s} p50 {p50:5.2f}x   p99 {p99:5.2f}x   missed {r['missed']:3d}   {verdict}")
    for d in demos:
        if d["torn"] or d["mismatched"]:
            print(f"  C demo: {d['torn']} torn frames, {d['mismatched']} mismatches")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--require-c", action="store_true",
                    help="fail (exit 1) instead of skipping the C rows when the C CLI cannot run")
    args = ap.parse_args()
    global REQUIRE_C
    REQUIRE_C = args.require_c
    n_batches, batch_s = (30, 0.001) if args.quick else (200, 0.002)
    n_small, n_frame = (2000, 30) if args.quick else (20000, 300)
    n_rounds, slice_s = (1, 0.2) if args.quick else (6, 0.3)
    # The C demo spends a third of its time at 100 Hz: as many frames as each Python reader.
    demo_secs = 1.5 if args.quick else 6.0
    n_age = round(demo_secs / 3 * 100)
    res = {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    print(f"bench_python{' --quick' if args.quick else ''}: {res['cpus']} CPUs, load average "
          f"{res['load_avg_1min']:.2f} at the start (figures need a quiet machine)")
    exe = shmstore_bin()
    try:
        res["c_bench"] = c = c_bench(exe, ["small_put", "small_get", "frame_get"], args.quick)
        print_c_small(c)
        res["small"] = case_small(n_batches, batch_s)
        print_table("small value (int) assign/fetch: net per call, timeit-style batches", res["small"], "ns")
        res["modified"] = case_modified(n_batches, batch_s)
        print_table(".modified check: net per call, timeit-style batches", res["modified"], "ns")
        res["frame"] = case_frame(n_frame, n_small)
        print_table("480x848x3 uint8 frame: per call", res["frame"])
        res["writer"], rounds = writer_rates(exe, n_rounds, slice_s)
        print_table(f"writer: frame assigns with busy readers (latency, rate; {n_rounds} x {slice_s} s)",
                    res["writer"])
        res["vs_c"] = report_vs_c(res, c)
        res["writer_rounds"] = report_writer_rounds(rounds)
        demos = [c_demo(exe, demo_secs)]  # no Python reader process exists now
        res["age"] = {impl: frame_age(impl, n_age) for impl in AGE_IMPLS}
        demos.append(c_demo(exe, demo_secs))
        res["c_demo"] = dict(zip(("before", "after"), demos))
        res["age_vs_c"] = report_age(res["age"], demos)
    finally:
        try:
            shmstore.unlink(STORE)
        except FileNotFoundError:
            pass
    s, f, m, w = res["small"], res["frame"], res["modified"], res["writer"]
    print("\n## ratios (seed median / shmstore median; > 1 = shmstore faster)")
    rows = [
        ("small assign: native Value.put", ratio(s["native Value.put"], s["seed assign"])),
        ("small assign: compat", ratio(s["compat assign"], s["seed assign"])),
        ("small fetch: native Value.get", ratio(s["native Value.get"], s["seed fetch"])),
        ("small fetch: compat", ratio(s["compat fetch"], s["seed fetch"])),
        (".modified: native Value.version", ratio(m["native Value.version"], m["seed .modified"])),
        (".modified: compat", ratio(m["compat .modified"], m["seed .modified"])),
        ("frame assign: native", ratio(f["native Value.put"], f["seed assign"])),
        ("frame assign: compat", ratio(f["compat assign"], f["seed assign"])),
        ("frame fetch: native get", ratio(f["native Value.get (copy)"], f["seed fetch"])),
        ("frame fetch: compat", ratio(f["compat fetch"], f["seed fetch"])),
        ("frame fetch(fn): compat", ratio(f["compat fetch(lambda x: x.mean())"], f["seed fetch(lambda x: x.mean())"])),
    ]
    for k in N_READERS:
        rows.append((f"writer rate, {k} readers: native", w[f"native, {k} busy readers"]["rate_hz"] /
                     w[f"seed, {k} busy readers"]["rate_hz"]))
        rows.append((f"writer rate, {k} readers: compat", w[f"compat, {k} busy readers"]["rate_hz"] /
                     w[f"seed, {k} busy readers"]["rate_hz"]))
    floor = f["floor: numpy copy of the frame"]["median_ns"]
    rows.append(("frame put vs memcpy floor (floor/put)", floor / f["native Value.put"]["median_ns"]))
    rows.append(("frame get vs memcpy floor (floor/get)", floor / f["native Value.get (copy)"]["median_ns"]))
    for k, v in rows:
        print(f"{k:46s} {v:8.2f}x")
    res["ratios"] = dict(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
