"""Ring benchmark: shmstore.Ring and the ezmsg drop-in (EZShmMirror.auto_view) against a
faithful reimplementation of the seed's approach (ezmsg_baseline.py: a ctypes header and
a shared_memory ring, polled), in the same invocation, plus the C ring cases of
`shmstore bench`.

    /usr/bin/python3 python/bench/bench_ring.py [--quick] [--json FILE]

Cases (64-channel float32 frames in a ring of 30,000; medians and p99 over every call,
the implementations taking turns call by call; ratios are baseline / shmstore, > 1 means
shmstore is faster):
- read_10, read_1024: the writer appends a chunk of 10 or 1024 frames (not timed), then
  each reader reads the new frames once: the drop-in's auto_view() (a view when
  contiguous), the native Ring.read_since() (a copy) and view_since(), the baseline's
  auto_view() (a view when contiguous).
  Same-run floors, not subtracted from anything: numpy_slice (a slice of the same
  number of frames of a ring's storage array: the view every zero-copy read returns)
  and timer (two perf_counter_ns calls: inside every timed call).
- age_1khz: a writer process sends chunks of 10 frames every 10 ms (1 kHz), the newest
  frame stamped with CLOCK_MONOTONIC; the reader takes each chunk as it comes and
  measures stamp -> has it. The writer's part (stamp -> its write returned) is reported
  beside it. The drop-in waits (auto_view(timeout=...)); the baseline
  polls, sleeping between polls as the seed's own test does (chunk / rate). Floors from
  the same run: the C ring_wake latency (back-to-back rounds: the target is p99 <= 2x
  this), and ring_wake_1khz, the same C wake paced like this case (one round per 10 ms,
  both processes idle between: what a halted vCPU's wake adds is in it).
- C: `shmstore bench --json ring_write_1 ring_write_32 ring_write_1024 ring_read_32
  ring_read_1024 ring_wake` ($SHMSTORE_BIN, build-release or build).
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), HERE, os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("SHMSTORE_EZMSG_STORE", f"bench_ring_{os.getpid()}")

import shmstore  # noqa: E402
from shmstore.compat import ezmsg_shmem as ezs  # noqa: E402
import ezmsg_baseline as seed  # noqa: E402

ns = time.perf_counter_ns
N_CH = 64
CAP = 30000
SRATE = 30000.0


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))] if v else float("nan")


class Axis:
    def __init__(self, gain):
        self.gain = gain
        self.offset = 0.0


class Msg:
    """An AxisArray-like message (what the drop-in sink accepts)."""

    def __init__(self, data, srate):
        self.data = data
        self.dims = ["time", "ch"]
        self.axes = {"time": Axis(1.0 / srate)}
        self.key = "bench"


# ---- read_10 / read_1024 -----------------------------------------------------------------

def case_read(chunk, n_calls):
    name = f"bench/{uuid.uuid4().hex[:8]}"
    sink = ezs.ShMemCircBuff(name, CAP / SRATE)
    asyncio.run(sink.initialize())
    bw = seed.Writer("bench_" + uuid.uuid4().hex[:8])
    data = np.random.default_rng(1).standard_normal((chunk, N_CH)).astype(np.float32)
    msg = Msg(data, SRATE)
    sink.write_message(msg)
    bw.write(data, CAP, SRATE)
    mirror = ezs.EZShmMirror(name)
    ring = sink.STATE.store.ring(name)
    bm = seed.Mirror(bw.name)
    mirror.auto_view()
    bm.auto_view()
    cursor = ring.total
    vcursor = cursor
    t = {"auto_view": [], "read_since": [], "view_since": [], "baseline": [], "timer": [],
         "numpy_slice": []}
    stor = ring.buffer
    for k in range(n_calls):
        sink.write_message(msg)
        bw.write(data, CAP, SRATE)
        i0 = (k * chunk) % (CAP - chunk)
        t0 = ns()
        a, ov = mirror.auto_view()
        t1 = ns()
        f, cursor, lost = ring.read_since(cursor)
        t2 = ns()
        p, vcursor, vl = ring.view_since(vcursor)
        t3 = ns()
        b, bov = bm.auto_view()
        t4 = ns()
        s_ = stor[i0:i0 + chunk]
        t5 = ns()
        t6 = ns()
        t["numpy_slice"].append(t5 - t4)
        t["timer"].append(t6 - t5)
        del s_
        # (The baseline returns other counts at some wraps: the seed's arithmetic.)
        assert len(a) == chunk and len(f) == chunk, (len(a), len(f))
        t["auto_view"].append(t1 - t0)
        t["read_since"].append(t2 - t1)
        t["view_since"].append(t3 - t2)
        t["baseline"].append(t4 - t3)
        del a, f, p, b
    mirror.disconnect()
    ring.close()
    bm.close()
    bw.close()
    asyncio.run(sink.shutdown())
    return {k: {"median_ns": pct(v, 50), "p99_ns": pct(v, 99)} for k, v in t.items()}


# ---- age_1khz --------------------------------------------------------------------------------

def writer_proc(kind, name, n_chunks, go, durs):
    """Chunks of 10 frames every 10 ms; the newest frame's channel 0 holds its stamp.
    Puts on `durs` how long each took from its stamp to the write's return (the writer's
    part of the sample age)."""
    data = np.zeros((10, N_CH), np.float64)
    if kind == "shmstore":
        sink = ezs.ShMemCircBuff(name, 1.0)
        asyncio.run(sink.initialize())
        write = lambda d: sink.write_message(Msg(d, 1000.0))  # noqa: E731
    else:
        w = seed.Writer(name)
        write = lambda d: w.write(d, 1000, 1000.0)  # noqa: E731
    write(data)  # the layout exists before the reader starts
    go.set()
    next_t = time.monotonic() + 0.2
    took = []
    for k in range(n_chunks):
        next_t += 0.01
        dt = next_t - time.monotonic()
        if dt > 0:
            time.sleep(dt)
        data[:, 1] = k
        stamp = time.monotonic_ns()
        data[-1, 0] = float(stamp)
        write(data)
        took.append(time.monotonic_ns() - stamp)
    durs.put(took)
    time.sleep(0.3)
    if kind == "shmstore":
        asyncio.run(sink.shutdown())
    else:
        w.close()


def case_age(kind, n_chunks):
    name = (f"bench/age/{uuid.uuid4().hex[:8]}" if kind == "shmstore"
            else "bench_age_" + uuid.uuid4().hex[:8])
    ctx = mp.get_context("fork")
    go = ctx.Event()
    durs = ctx.Queue()
    p = ctx.Process(target=writer_proc, args=(kind, name, n_chunks, go, durs))
    p.start()
    assert go.wait(30)
    ages, seen = [], set()
    if kind == "shmstore":
        m = ezs.EZShmMirror(name)
        m.auto_view()
        deadline = time.monotonic() + n_chunks * 0.01 + 10
        while len(seen) < n_chunks and time.monotonic() < deadline:
            arr, ov = m.auto_view(timeout=0.5)
            if arr.size:
                now = time.monotonic_ns()
                seen.add(int(arr[-1, 1]))
                ages.append(now - arr[-1, 0])
        m.disconnect()
    else:
        m = seed.Mirror(name)
        m.auto_view()
        deadline = time.monotonic() + n_chunks * 0.01 + 10
        while len(seen) < n_chunks - 1 and time.monotonic() < deadline:
            arr, ov = m.auto_view()
            if arr.size:
                now = time.monotonic_ns()
                seen.add(int(arr[-1, 1]))
                ages.append(now - arr[-1, 0])
            time.sleep(10 / 1000.0)  # the seed's test: poll every chunk / rate
        m.close()
    took = durs.get(timeout=30)
    p.join(30)
    return {"median_ns": pct(ages, 50), "p90_ns": pct(ages, 90), "p99_ns": pct(ages, 99),
            "max_ns": max(ages) if ages else float("nan"), "chunks": len(seen),
            "missed": n_chunks - len(seen), "writer_median_ns": pct(took, 50),
            "writer_p99_ns": pct(took, 99)}


# ---- C ---------------------------------------------------------------------------------------

def c_cases(quick):
    cands = [os.environ.get("SHMSTORE_BIN"), os.path.join(ROOT, "build-release/cli/shmstore"),
             os.path.join(ROOT, "build/cli/shmstore")]
    exe = next((c for c in cands if c and os.path.exists(c)), None)
    if not exe:
        return {}
    args = [exe, "bench", "--json"] + (["--quick"] if quick else []) + [
        "ring_write_1", "ring_write_32", "ring_write_1024", "ring_read_32", "ring_read_1024",
        "ring_wake", "ring_wake_1khz"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    rows = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows[r.get("case")] = r
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: few calls")
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    n_calls = 300 if a.quick else 3000
    n_chunks = 30 if a.quick else 300
    res = {"read_10": case_read(10, n_calls), "read_1024": case_read(1024, n_calls // 4 or 1)}
    res["age_1khz"] = {"shmstore": case_age("shmstore", n_chunks), "baseline": case_age("seed", n_chunks)}
    res["c"] = c_cases(a.quick)
    print("case          impl          median      p99    baseline/this")
    for case in ("read_10", "read_1024"):
        r = res[case]
        b = r["baseline"]["median_ns"]
        for impl in ("auto_view", "read_since", "view_since", "baseline", "numpy_slice", "timer"):
            m = r[impl]["median_ns"]
            print(f"{case:13s} {impl:11s} {m / 1e3:8.2f} us {r[impl]['p99_ns'] / 1e3:8.2f} us  {b / m:6.2f}x")
    for impl in ("shmstore", "baseline"):
        r = res["age_1khz"][impl]
        extra = ""
        for case in ("ring_wake", "ring_wake_1khz") if impl == "shmstore" else ():
            wake = res["c"].get(case, {})
            if wake.get("p99_ns"):
                extra += (f"; C {case} {wake['median_ns'] / 1e3:.1f} / {wake['p99_ns'] / 1e3:.1f} us: "
                          f"p99 / C p99 {r['p99_ns'] / wake['p99_ns']:.2f}x")
        print(f"age_1khz      {impl:11s} {r['median_ns'] / 1e3:8.1f} us {r['p99_ns'] / 1e3:8.1f} us  "
              f"(p90 {r['p90_ns'] / 1e3:.1f} us, max {r['max_ns'] / 1e3:.1f} us) "
              f"{r['chunks']} chunks, {r['missed']} missed; writer stamp -> written "
              f"{r['writer_median_ns'] / 1e3:.1f} / {r['writer_p99_ns'] / 1e3:.1f} us{extra}")
    for k, r in res["c"].items():
        if "median_ns" in r:
            print(f"C {k:17s} median {r['median_ns']:10.0f} ns  p99 {r['p99_ns']:10.0f} ns  floor "
                  f"{r.get('floor_ns') or 0:10.0f} ns  ratio {r.get('ratio') or 0:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    try:
        shmstore.unlink(os.environ["SHMSTORE_EZMSG_STORE"])
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
