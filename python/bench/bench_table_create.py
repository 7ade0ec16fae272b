"""How long creating a big table blocks other processes: while one process creates a table
of N records of 8 bytes (64-byte slots), another creates and deletes a value in a loop;
its longest create+delete is the metadata mutex held by the creation (plus scheduling
noise, measured the same way with a table of 10 records).

    /usr/bin/python3 python/bench/bench_table_create.py [N ...] [--json FILE]

Defaults: N = 10 (the noise floor), 4,000,000 and 10,000,000 (256 MB and 640 MB).
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shmstore  # noqa: E402

NAME = f"bench_table_create_{os.getpid()}"


def creator(n, go, out):
    with shmstore.Store(NAME, create=False) as s:
        go.wait()
        t0 = time.perf_counter()
        t = s.table("big", fields={"x": "i8"}, capacity=n)
        out.put(("create", time.perf_counter() - t0))
        t.close()


def putter(go, stop, out):
    with shmstore.Store(NAME, create=False) as s:
        go.wait()
        worst, n = 0.0, 0
        while not stop.is_set():
            t0 = time.perf_counter()
            s[f"v{n}"] = n
            del s[f"v{n}"]
            worst = max(worst, time.perf_counter() - t0)
            n += 1
        out.put(("put", (worst, n)))


def one(n):
    s = shmstore.Store(NAME)
    try:
        ctx = mp.get_context("fork")
        go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        ps = [ctx.Process(target=putter, args=(go, stop, out)),
              ctx.Process(target=creator, args=(n, go, out))]
        for p in ps:
            p.start()
        time.sleep(0.3)
        go.set()
        r = dict([out.get(timeout=300)])
        time.sleep(1.0 if n < 1000 else 0.05)   # the floor: a second of the loop alone
        stop.set()
        r.update([out.get(timeout=60)])
        for p in ps:
            p.join(60)
    finally:
        s.close()
        shmstore.unlink(NAME)
    return {"records": n, "create_s": r["create"], "worst_wait_s": r["put"][0],
            "creates": r["put"][1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="*", type=int, default=[10, 4_000_000, 10_000_000])
    ap.add_argument("--json")
    a = ap.parse_args()
    res = []
    for n in a.n:
        r = one(n)
        res.append(r)
        print(f"table of {n:>10} records created in {r['create_s'] * 1e3:7.1f} ms; another "
              f"process's value create+delete waited at most {r['worst_wait_s'] * 1e3:6.1f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
