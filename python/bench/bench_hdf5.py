"""Array-set / HDF5 benchmark: shmstore's load_hdf5 against h5py reading the same datasets
into numpy and against cute-shm's approach (cute_shm_baseline.py: h5py read, then one
shared_memory segment per array), all in the same run; a new process attaching to a
loaded set; put_tree against a memcpy floor.

    /usr/bin/python3 python/bench/bench_hdf5.py [--quick] [--mib N] [--rounds R] [--json FILE]

Cases (N MiB in 100 float64 datasets; median and spread over R rounds taking turns):
- load_contig / load_gzip: whole file into memory. shmstore: Store.load_hdf5(...,
  overwrite=True) into a set; h5py: dataset[()] for every dataset (new numpy arrays);
  cute-shm: h5py read + copy into new segments. Ratios are other / shmstore times (> 1:
  shmstore is faster). Targets: >= 0.9x h5py (contiguous), >= 1.5x cute-shm.
  Warm-up, the same for both before the timed rounds: h5py reads the file once (page
  cache, and malloc's heap that later reads reuse); shmstore loads it twice (an
  overwrite needs a second block while the old set is still readable: after two loads
  both blocks exist and are reused, as h5py's heap is). Those first loads, into memory
  never touched before (tmpfs pages mapped one by one), are reported as `cold` beside
  h5py's first read.
- attach: a new process (started once per round; the time is measured inside it) opens
  the store and get_tree()s the set of 100 arrays, touching one element of each: O(number
  of arrays), not O(bytes). Target <= 1 ms. cute-shm's reader (TOML + one segment per
  array) beside it.
- put_tree: a nested dict of the same 100 arrays into a set (deleted between rounds), against
  the floor: np.copyto of the same bytes into warm preallocated buffers. Target >= 0.9x.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), HERE,
                                            os.environ.get("PYTHONPATH", "")])
import h5py  # noqa: E402

import cute_shm_baseline as cute  # noqa: E402
import shmstore  # noqa: E402

N_ARRAYS = 100
now = time.perf_counter


def make_file(path, mib, gzip):
    n = mib * (1 << 20) // 8 // N_ARRAYS
    with h5py.File(path, "w") as f:
        for i in range(N_ARRAYS):
            data = np.arange(i * n, (i + 1) * n, dtype=np.float64)
            if gzip:
                f.create_dataset(f"g{i % 10}/d{i}", data=data, chunks=(min(n, 1 << 16),),
                                 compression="gzip", compression_opts=1)
            else:
                f.create_dataset(f"g{i % 10}/d{i}", data=data)


def h5py_read(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def child_ms(code, *args):
    # Measured inside the child, after its imports: what a worker pays to attach.
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[0])


ATTACH_ONLY = r"""
import sys, time
import numpy, shmstore
t0 = time.perf_counter()
s = shmstore.Store(sys.argv[1], create=False)
t = s.get_tree("bench/set")
x = 0.0
for g in t.values():
    for a in g.values():
        x += a[-1]
print((time.perf_counter() - t0) * 1e3, x)
"""
ATTACH_CUTE_ONLY = r"""
import sys, time
import numpy
sys.path.insert(0, sys.argv[2])
import cute_shm_baseline as cute
t0 = time.perf_counter()
t = cute.shm_to_arrays("bench")
x = sum(float(v["data"][-1]) for v in t.values())
print((time.perf_counter() - t0) * 1e3, x)
"""


# What a new Python process costs before the attach timings start (interpreter, numpy and
# shmstore imports), measured the same way for the README's split of the figure.
PY_ONLY = r"""
import time
t0 = time.perf_counter()
import numpy, shmstore
print((time.perf_counter() - t0) * 1e3)
"""


def build_attach_c(tmp):
    """attach_set.c against the built library (SHMSTORE_BIN's build, else build/), or None."""
    root = os.path.dirname(os.path.dirname(HERE))
    lib = os.path.join(os.path.dirname(os.path.dirname(os.environ.get(
        "SHMSTORE_BIN", os.path.join(root, "build", "cli", "shmstore")))))
    out = os.path.join(tmp, "attach_set")
    r = subprocess.run(["cc", "-O2", os.path.join(HERE, "attach_set.c"), "-I",
                        os.path.join(root, "include"), "-L", lib, "-lshmstore",
                        f"-Wl,-rpath,{lib}", "-o", out], capture_output=True, text=True)
    return out if r.returncode == 0 else None


def summary(xs):
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="64 MiB, 2 rounds")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    mib, rounds = (64, 2) if a.quick else (a.mib, a.rounds)
    store_name = f"bench_h5_{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="bench_h5_", dir="/var/tmp")
    res = {"mib": mib, "arrays": N_ARRAYS, "rounds": rounds}
    s = shmstore.Store(store_name)
    try:
        for case, gz in (("load_contig", False), ("load_gzip", True)):
            path = os.path.join(tmp, f"{case}.h5")
            make_file(path, mib, gz)
            t0 = now()
            h5py_read(path)  # page cache and heap warm
            cold = {"h5py_first": now() - t0}
            for k in ("shmstore_first", "shmstore_second"):
                t0 = now()
                s.load_hdf5(path, "bench/set", overwrite=True)
                cold[k] = now() - t0
            t = {"shmstore": [], "h5py": [], "cute_shm": []}
            for _ in range(rounds):
                t0 = now()
                s.load_hdf5(path, "bench/set", overwrite=True)
                t["shmstore"].append(now() - t0)
                t0 = now()
                d = h5py_read(path)
                t["h5py"].append(now() - t0)
                del d
                t0 = now()
                cute.hdf5_to_shm(path, "bench")
                t["cute_shm"].append(now() - t0)
                cute.unlink("bench")
            r = {k: summary(v) for k, v in t.items()}
            r["cold"] = cold
            base = r["shmstore"]["median"]
            r["gib_per_s_shmstore"] = mib / 1024 / base
            r["ratio_h5py"] = r["h5py"]["median"] / base
            r["ratio_cute_shm"] = r["cute_shm"]["median"] / base
            res[case] = r
            print(f"{case:12s} shmstore {base * 1e3:8.1f} ms ({r['gib_per_s_shmstore']:.2f} GiB/s)"
                  f"  h5py {r['h5py']['median'] * 1e3:8.1f} ms (x{r['ratio_h5py']:.2f})"
                  f"  cute-shm {r['cute_shm']['median'] * 1e3:8.1f} ms (x{r['ratio_cute_shm']:.2f})"
                  f"  [shmstore min..max {r['shmstore']['min'] * 1e3:.0f}..{r['shmstore']['max'] * 1e3:.0f} ms;"
                  f" cold: shmstore {cold['shmstore_first'] * 1e3:.0f} / {cold['shmstore_second'] * 1e3:.0f} ms,"
                  f" h5py {cold['h5py_first'] * 1e3:.0f} ms]")
            os.unlink(path)
        # attach: the contiguous set stays loaded (load_gzip's values are the same layout)
        cute_path = os.path.join(tmp, "att.h5")
        make_file(cute_path, min(mib, 256), False)
        cute.hdf5_to_shm(cute_path, "bench")
        n_att = max(rounds, 9)
        ms, ms_c, ms_cute, ms_py = [], [], [], []
        c_bin = build_attach_c(tmp)
        for _ in range(n_att):  # taking turns
            ms.append(child_ms(ATTACH_ONLY, store_name))
            ms_py.append(child_ms(PY_ONLY))
            if c_bin:
                ms_c.append(float(subprocess.run([c_bin, store_name, "bench/set"], check=True,
                                                 capture_output=True, text=True).stdout.split()[0]))
            ms_cute.append(child_ms(ATTACH_CUTE_ONLY, store_name, HERE))
        cute.unlink("bench")
        res["attach_ms"] = summary(ms)
        res["attach_c_ms"] = summary(ms_c) if ms_c else None
        res["python_startup_ms"] = summary(ms_py)
        res["attach_cute_shm_ms"] = summary(ms_cute)
        print(f"attach       new process opens the {mib} MiB set of {N_ARRAYS} arrays and reads one "
              f"item of each: {res['attach_ms']['median']:.3f} ms (min {res['attach_ms']['min']:.3f}, "
              f"max {res['attach_ms']['max']:.3f})  C: "
              + (f"{res['attach_c_ms']['median']:.3f} ms (min {res['attach_c_ms']['min']:.3f})"
                 if ms_c else "not built")
              + f"  cute-shm reader: {res['attach_cute_shm_ms']['median']:.3f} ms"
              f"  [Python start-up before t0, not counted: {res['python_startup_ms']['median']:.1f} ms]")
        # put_tree against np.copyto into warm buffers
        n = mib * (1 << 20) // 8 // N_ARRAYS
        tree = {f"g{i % 10}": {} for i in range(N_ARRAYS)}
        for i in range(N_ARRAYS):
            tree[f"g{i % 10}"][f"d{i}"] = np.arange(n, dtype=np.float64) + i
        dst = [np.empty(n) for _ in range(N_ARRAYS)]
        src = [a for g in tree.values() for a in g.values()]
        for d_, s_ in zip(dst, src):
            np.copyto(d_, s_)
        tp, tf = [], []
        s.delete_tree("bench/set")
        s.put_tree("bench/set", tree)  # the blocks exist: later rounds reuse them warm
        for _ in range(rounds):
            s.delete_tree("bench/set")
            t0 = now()
            s.put_tree("bench/set", tree)
            tp.append(now() - t0)
            t0 = now()
            for d_, s_ in zip(dst, src):
                np.copyto(d_, s_)
            tf.append(now() - t0)
        res["put_tree"] = {"shmstore": summary(tp), "memcpy": summary(tf),
                           "ratio_to_floor": statistics.median(tf) / statistics.median(tp)}
        print(f"put_tree     {statistics.median(tp) * 1e3:8.1f} ms   memcpy floor "
              f"{statistics.median(tf) * 1e3:8.1f} ms   ratio {res['put_tree']['ratio_to_floor']:.2f}"
              f" of the floor")
    finally:
        s.close()
        shmstore.unlink(store_name)
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
