"""Table benchmark: the question's two workers of seed 001 (a pusher writing slices of
100 transitions, a sampler drawing batches of 32) running at the same time, on the
answer's design (replay_baseline.py: 1,000 multiprocessing.Lock stripes over
SharedMemory), on the drop-in shmstore.compat.replay.Memory and on a native
shmstore.Table, all in the same invocation, plus the C table cases of `shmstore bench`.

    /usr/bin/python3 python/bench/bench_table.py [--quick] [--json FILE]

Each design runs in rounds that take turns with the others (so the machine's drifts hit
all alike): a pusher process and a sampler process start together and run for
`seconds`; pushes/s counts transitions written, batches/s batches of 32 drawn. Then the
same pusher alone, for the writer rate with a busy sampler / alone. Medians over rounds.
- baseline: memory[i:i + 100] = transitions; random.choices(memory, k=32).
- compat:   the same lines on shmstore.compat.replay.Memory (one import changed).
- compat+sample: the same pusher; the sampler calls memory.sample(32) (one gather).
- Table:    t.append(batch of 100 as arrays); t.sample(32) (dict of arrays).
- copies:   the bytes alone, with no synchronization at all: the pusher copies 100 records'
            bytes into a shared anonymous mapping of 10,000 records (numpy slice
            assignment: plain stores), the sampler gathers 32 random ones (np.take into a
            reused array): what two processes doing only numpy's copies reach at once.
Records: the answer's transition (two 4x84x84 uint8 frames and five small fields);
memory of 10,000 transitions (a multiple of 1,000: the baseline's rule).
"""
import argparse
import json
import mmap
import multiprocessing as mp
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
STORE = os.environ.setdefault("SHMSTORE_COMPAT_STORE", f"bench_table_{os.getpid()}")

import shmstore  # noqa: E402
import c_cases  # noqa: E402
import replay_baseline  # noqa: E402
from shmstore.compat import replay  # noqa: E402

LENGTH = 10_000
PUSH = 100
K = 32


def transitions(cls, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = rng.integers(0, 255, (4, 84, 84), dtype=np.uint8)
        out.append(cls(1, i, s, i % 4, s if i % 10 else None, 1, i % 10 == 0))
    return out


def table_batch(n):
    rng = np.random.default_rng(3)
    return {"actor_id": np.ones(n, np.int32), "step_number": np.arange(n, dtype=np.int32),
            "state": rng.integers(0, 255, (n, 4, 84, 84), dtype=np.uint8),
            "action": np.zeros(n, np.int32),
            "next_state": rng.integers(0, 255, (n, 4, 84, 84), dtype=np.uint8),
            "reward": np.ones(n, np.float32), "done": np.zeros(n, bool)}


def floor_memory():
    """LENGTH records of the answer's stride in a shared anonymous mapping."""
    stride = replay_baseline.Memory.stride
    buf = mmap.mmap(-1, LENGTH * stride)
    return np.frombuffer(buf, np.uint8).reshape(LENGTH, stride)


# ---- workers (forked children) ------------------------------------------------------------

def pusher(mem, kind, go, stop, out):
    if kind == "copies":
        batch = np.random.default_rng(1).integers(0, 255, (PUSH, mem.shape[1]), np.uint8)
    elif kind == "table":
        batch = table_batch(PUSH)
    else:
        batch = transitions(replay_baseline.Transition if kind == "baseline" else replay.Transition,
                            PUSH, 1)
    go.wait()
    n, i = 0, 0
    while not stop.is_set():
        if kind == "table":
            mem.append(batch)
        elif kind == "copies":
            index = i % LENGTH
            mem[index: index + PUSH] = batch
        else:
            index = i % LENGTH
            mem[index: index + PUSH] = batch
        i += PUSH
        n += PUSH
    out.put(("push", n))


def sampler(mem, kind, go, stop, out):
    rng = np.random.default_rng()
    dst = np.empty((K, mem.shape[1]), np.uint8) if kind == "copies" else None
    go.wait()
    n = 0
    while not stop.is_set():
        if kind == "copies":
            np.take(mem, rng.integers(0, LENGTH, K), axis=0, out=dst)
        elif kind == "table":
            mem.sample(K)
        elif kind == "compat+sample":
            mem.sample(K)
        else:
            random.choices(mem, k=K)
        n += 1
    out.put(("sample", n))


def run(mem, kind, seconds, with_sampler):
    ctx = mp.get_context("fork")
    go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=pusher, args=(mem, kind, go, stop, out))]
    if with_sampler:
        procs.append(ctx.Process(target=sampler, args=(mem, kind, go, stop, out)))
    for p in procs:
        p.start()
    time.sleep(0.3)                      # children import and build their batches
    go.set()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    res = dict(out.get(timeout=60) for _ in procs)
    dt = time.perf_counter() - t0
    for p in procs:
        p.join(60)
    return res.get("push", 0) / dt, res.get("sample", 0) / dt


def fill(mem, kind):
    """Write every position once (the sampler then reads real records everywhere)."""
    if kind == "table":
        b = table_batch(PUSH)
        for _ in range(0, LENGTH, PUSH):
            mem.append(b)
        return
    if kind == "copies":
        mem[:] = 1
        return
    batch = transitions(replay_baseline.Transition if kind == "baseline" else replay.Transition,
                        PUSH, 2)
    for i in range(0, LENGTH, PUSH):
        mem[i:i + PUSH] = batch


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    rounds, seconds = (1, 1.0) if a.quick else (3, 3.0)
    fields = {"actor_id": "i4", "step_number": "i4", "state": ("u1", (4, 84, 84)),
              "action": "i4", "next_state": ("u1", (4, 84, 84)), "reward": "f4", "done": "?"}
    out = {"rounds": rounds, "seconds": seconds}
    store = shmstore.Store(STORE)
    mems = {}
    try:
        mems["baseline"] = replay_baseline.Memory(LENGTH)
        mems["compat"] = replay.Memory(LENGTH)
        mems["compat+sample"] = mems["compat"]
        mems["table"] = store.table("bench/t", fields=fields, capacity=LENGTH)
        mems["copies"] = floor_memory()
        for kind in ("baseline", "compat", "table", "copies"):
            fill(mems[kind], kind)
        res = {k: {"push": [], "batch": [], "push_alone": []} for k in mems}
        for _ in range(rounds):
            for kind, mem in mems.items():
                p, b = run(mem, kind, seconds, True)
                res[kind]["push"].append(p)
                res[kind]["batch"].append(b)
                p, _ = run(mem, kind, seconds, False)
                res[kind]["push_alone"].append(p)
        print(f"the question's two workers at once, {rounds} round(s) of {seconds:.0f} s, "
              f"memory of {LENGTH} transitions of {replay_baseline.Memory.stride} B")
        print(f"  {'design':15s} {'pushes/s':>10s} {'batches/s':>10s} {'push alone/s':>13s} "
              f"{'busy/alone':>10s}")
        for kind, r in res.items():
            p, b, pa = median(r["push"]), median(r["batch"]), median(r["push_alone"])
            out[kind] = {"pushes_per_s": p, "batches_per_s": b, "pushes_alone_per_s": pa}
            print(f"  {kind:15s} {p:10.0f} {b:10.0f} {pa:13.0f} {p / pa:10.2f}")
        base, floor = out["baseline"], out["copies"]
        for kind in ("compat", "compat+sample", "table"):
            sp = out[kind]["pushes_per_s"] / base["pushes_per_s"]
            sb = out[kind]["batches_per_s"] / base["batches_per_s"]
            out[kind]["speedup_push"], out[kind]["speedup_batch"] = sp, sb
            fp = out[kind]["pushes_per_s"] / floor["pushes_per_s"]
            fb = out[kind]["batches_per_s"] / floor["batches_per_s"]
            out[kind]["of_copies_push"], out[kind]["of_copies_batch"] = fp, fb
            print(f"  {kind} / baseline: pushes x{sp:.1f}, batches x{sb:.1f} (target >= 3x both); "
                  f"/ copies: {fp:.2f} / {fb:.2f}")
        fp = floor["pushes_per_s"] / base["pushes_per_s"]
        fb = floor["batches_per_s"] / base["batches_per_s"]
        print(f"  copies / baseline: pushes x{fp:.1f}, batches x{fb:.1f} (numpy's copies of the "
              f"same bytes, nothing else)")
        out["c"] = c_cases.run(["table_append_1", "table_append_100", "table_sample_32",
                                "table_sample_256", "table_small_1w", "table_small_2w",
                                "table_prio_32"], a.quick)
    finally:
        for m in list(mems.values()):
            if isinstance(m, replay.Memory):
                m.unlink()
            elif isinstance(m, shmstore.Table):
                m.close()
        mems.clear()
        store.close()
        try:
            shmstore.unlink(STORE)
        except FileNotFoundError:
            pass
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
