"""Python benchmark: shmstore's native API vs its compat SharedObject vs a faithful
reimplementation of the seed's approach (seed_baseline.py: multiprocessing.shared_memory
+ fcntl.flock readers-writer lock + time_ns stamp).

    /usr/bin/python3 python/bench/bench_python.py [--quick] [--json FILE]

Cases: small value assign/fetch; the `.modified` check; a 480x848x3 uint8 frame
assign/fetch (with numpy's copy of the same frame as the floor); writer rate with 0/1/3
busy reader processes; frame age at 100 Hz with a waiting reader. Reports medians, p99
and ratios (seed / ours: >1 means shmstore is faster).
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
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


def stats(samples):
    a = np.asarray(samples, dtype=np.float64)
    return {"median_us": float(np.median(a)) / 1e3, "p99_us": float(np.percentile(a, 99)) / 1e3, "n": len(a)}


def timeit(fn, n):
    for _ in range(min(n // 10 + 1, 200)):
        fn()
    out = []
    for _ in range(n):
        t = ns()
        fn()
        out.append(ns() - t)
    return stats(out)


def make_impls(tag, data):
    store = shmstore.Store(STORE)
    h = store.value(f"{tag}_native")
    h.put(data)
    so = SharedObject(f"{tag}_compat", data=data)
    seed = SeedSharedObject(f"{STORE}_{tag}_seed", data=data)
    return store, h, so, seed


def case_small(n):
    store, h, so, seed = make_impls("small", 1)
    r = {
        "native Value.put": timeit(lambda: h.put(42), n),
        "native Value.get": timeit(h.get, n),
        "native store.put (by name)": timeit(lambda: store.put("small_native", 42), n),
        "native store[name]": timeit(lambda: store["small_native"], n),
        "compat assign": timeit(lambda: so.assign(42), n),
        "compat fetch": timeit(so.fetch, n),
        "seed assign": timeit(lambda: seed.assign(42), n),
        "seed fetch": timeit(seed.fetch, n),
    }
    seed.close(); seed.unlink()
    return r


def case_modified(n):
    store, h, so, seed = make_impls("mod", 1)
    r = {
        "native Value.version": timeit(lambda: h.version, n),
        "compat .modified": timeit(lambda: so.modified, n),
        "seed .modified": timeit(lambda: seed.modified, n),
    }
    seed.close(); seed.unlink()
    return r


def case_frame(n):
    frame = np.random.randint(0, 255, FRAME, dtype=np.uint8)
    store, h, so, seed = make_impls("frame", frame)
    dst = np.empty_like(frame)
    r = {
        "floor: numpy copy of the frame": timeit(lambda: np.copyto(dst, frame), n),
        "native Value.put": timeit(lambda: h.put(frame), n),
        "native Value.get (copy)": timeit(h.get, n),
        "native Value.view (zero-copy)": timeit(h.view, n),
        "compat assign": timeit(lambda: so.assign(frame), n),
        "compat fetch": timeit(so.fetch, n),
        "compat fetch(lambda x: x.mean())": timeit(lambda: so.fetch(lambda x: x[::8, ::8].mean()), n // 2),
        "seed assign": timeit(lambda: seed.assign(frame), n),
        "seed fetch": timeit(seed.fetch, n),
        "seed fetch(lambda x: x.mean())": timeit(lambda: seed.fetch(lambda x: x[::8, ::8].mean()), n // 2),
    }
    seed.close(); seed.unlink()
    return r


# ---- multi-process cases ---------------------------------------------------------------------

def reader_proc(impl, name, stop_at, ready):
    if impl == "native":
        s = shmstore.Store(STORE)
        h = s.value(name)
        fetch = h.get
    elif impl == "compat":
        fetch = SharedObject(name).fetch
    else:
        fetch = SeedSharedObject(name).fetch
    ready.set()
    while time.time() < stop_at:
        fetch()


def writer_rate(impl, n_readers, seconds):
    frame = np.zeros(FRAME, np.uint8)
    name = {"native": "rate_native", "compat": "rate_compat", "seed": f"{STORE}_rate_seed"}[impl]
    if impl == "native":
        h = shmstore.Store(STORE).value(name)
        h.put(frame)
        assign = h.put
    elif impl == "compat":
        assign = SharedObject(name, data=frame).assign
    else:
        seed = SeedSharedObject(name, data=frame)
        assign = seed.assign
    ctx = mp.get_context("spawn")
    stop_at = time.time() + seconds + 3.0
    evs = [ctx.Event() for _ in range(n_readers)]
    procs = [ctx.Process(target=reader_proc, args=(impl, name, stop_at, e)) for e in evs]
    for p in procs:
        p.start()
    for e in evs:
        e.wait(30)
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = ns()
        assign(frame)
        lat.append(ns() - t)
    for p in procs:
        p.join()
    if impl == "seed":
        seed.close(); seed.unlink()
    s = stats(lat)
    s["rate_hz"] = len(lat) / seconds
    return s


def age_reader(impl, name, n_frames, q):
    ages = []
    if impl == "native":
        h = shmstore.Store(STORE).value(name)
        ver = h.version
        for _ in range(n_frames):
            try:
                ver = h.wait(after=ver, timeout=2)
            except TimeoutError:
                break
            a = h.get()
            ages.append(time.time_ns() - int(np.frombuffer(a.reshape(-1)[:8].tobytes(), np.int64)[0]))
    else:
        so = SharedObject(name) if impl == "compat" else SeedSharedObject(name)
        deadline = time.time() + n_frames / 100 + 5
        while len(ages) < n_frames and time.time() < deadline:
            if impl == "compat":
                if not so.wait(timeout=2):  # shmstore extension: a futex wait
                    break
            else:
                while not so.modified:  # the seed's way: poll `modified`
                    time.sleep(0.0005)
            a = so.fetch()
            ages.append(time.time_ns() - int(np.frombuffer(a.reshape(-1)[:8].tobytes(), np.int64)[0]))
    q.put(ages)


def frame_age(impl, n_frames):
    name = {"native": "age_native", "compat": "age_compat", "seed": f"{STORE}_age_seed"}[impl]
    frame = np.zeros(FRAME, np.uint8)
    if impl == "native":
        h = shmstore.Store(STORE).value(name)
        h.put(frame)
        assign = h.put
    elif impl == "compat":
        assign = SharedObject(name, data=frame).assign
    else:
        seed = SeedSharedObject(name, data=frame)
        assign = seed.assign
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=age_reader, args=(impl, name, n_frames, q))
    p.start()
    time.sleep(1.0)
    flat = frame.reshape(-1)
    t_next = time.perf_counter()
    for _ in range(n_frames + 20):
        t_next += 0.01
        while time.perf_counter() < t_next:
            time.sleep(max(0.0, t_next - time.perf_counter() - 0.0002))
        flat[:8] = np.frombuffer(np.int64(time.time_ns()).tobytes(), np.uint8)
        assign(frame)
    ages = q.get(timeout=30)
    p.join()
    if impl == "seed":
        seed.close(); seed.unlink()
    return stats(ages) if ages else {"median_us": float("nan"), "p99_us": float("nan"), "n": 0}


# ---- report -----------------------------------------------------------------------------------

def ratio(a, b):
    return b["median_us"] / a["median_us"] if a["median_us"] > 0 else float("nan")


def print_table(title, rows):
    print(f"\n## {title}")
    print(f"{'case':44s} {'median us':>11s} {'p99 us':>11s} {'extra':>14s}")
    for k, v in rows.items():
        extra = f"{v['rate_hz']:.0f} Hz" if "rate_hz" in v else ""
        print(f"{k:44s} {v['median_us']:11.2f} {v['p99_us']:11.2f} {extra:>14s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    n_small, n_frame = (2000, 30) if args.quick else (20000, 300)
    secs = 0.5 if args.quick else 1.5
    n_age = 30 if args.quick else 200
    res = {}
    try:
        res["small"] = case_small(n_small)
        print_table("small value (int) assign/fetch", res["small"])
        res["modified"] = case_modified(n_small)
        print_table(".modified check", res["modified"])
        res["frame"] = case_frame(n_frame)
        print_table("480x848x3 uint8 frame", res["frame"])
        res["writer"] = {}
        for n_readers in (0, 1, 3):
            for impl in ("native", "compat", "seed"):
                res["writer"][f"{impl}, {n_readers} busy readers"] = writer_rate(impl, n_readers, secs)
        print_table("writer: frame assigns with busy readers (latency, rate)", res["writer"])
        res["age"] = {f"{impl} ({'wait' if impl != 'seed' else 'poll modified, 0.5 ms sleep'})":
                      frame_age(impl, n_age) for impl in ("native", "compat", "seed")}
        print_table("frame age at 100 Hz, waiting reader", res["age"])
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
    for k in (0, 1, 3):
        rows.append((f"writer rate, {k} readers: native", w[f"native, {k} busy readers"]["rate_hz"] /
                     w[f"seed, {k} busy readers"]["rate_hz"]))
        rows.append((f"writer rate, {k} readers: compat", w[f"compat, {k} busy readers"]["rate_hz"] /
                     w[f"seed, {k} busy readers"]["rate_hz"]))
    floor = f["floor: numpy copy of the frame"]["median_us"]
    rows.append(("frame put vs memcpy floor (floor/put)", floor / f["native Value.put"]["median_us"]))
    rows.append(("frame get vs memcpy floor (floor/get)", floor / f["native Value.get (copy)"]["median_us"]))
    for k, v in rows:
        print(f"{k:46s} {v:8.2f}x")
    res["ratios"] = dict(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
