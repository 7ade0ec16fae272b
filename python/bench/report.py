"""Benchmark report: run the C and Python benchmarks and write their JSON results and
PNG charts into one directory, nothing typed by hand.

    /usr/bin/python3 python/bench/report.py [--quick] [--out DIR] [--verify]

(`make bench-report` runs it with the release build into bench-report/.) It runs, in
this order and in the same invocation:
- `shmstore bench --json` (every C case; $SHMSTORE_BIN or build-release/cli/shmstore),
- python/bench/bench_python.py --json (values and the SharedObject drop-in),
- python/bench/bench_queue.py --json (queues and the SMOS drop-in),
- python/bench/bench_table.py --json (tables and compat.replay),
- python/bench/bench_hdf5.py --json (array sets, HDF5 loading, compat.cute_shm),
- python/bench/bench_ring.py --json (rings and the ezmsg mirror),
and writes c_bench.json and python_*.json, the charts
- c_ratios.png: every C case's median as a ratio to its same-run floor, with its
  target where the target is a ratio ("<= 1.25x"),
- latency.png: p50 / p99 / p99.9 of the wake and frame cases, with their floors,
- baselines.png: shmstore against the seeds' approaches and multiprocessing.Queue,
  per kind, with the issues' targets,
and report.md, which lists every figure and embeds the charts. --verify decodes every
PNG afterwards (the test of the report in `make test` uses it with --quick).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

# The issues' targets for the Python-side speedups (shmstore / baseline, higher is
# better), keyed as the benchmarks name their ratios. The C targets come with each C
# result ("target").
SPEEDUP_TARGETS = {
    "small assign: compat": 3.0,
    "small fetch: compat": 3.0,
    ".modified: compat": 10.0,
    "multiprocessing.Queue / shmstore.Queue (small_obj)": 10.0,
    "SMOS-style baseline / shmstore SMOS drop-in (read_release)": 100.0,
    "SMOS-style baseline / shmstore SMOS drop-in (large_8m)": 20.0,
    "table: pushes / striped-lock baseline": 3.0,
    "table: batches / striped-lock baseline": 3.0,
    "compat: pushes / striped-lock baseline": 3.0,
    "compat: batches / striped-lock baseline": 3.0,
    "load_contig: h5py read / load_hdf5": 0.9,
    "load_contig: cute-shm approach / load_hdf5": 1.5,
    "load_gzip: h5py read / load_hdf5": 1.5,
    "load_gzip: cute-shm approach / load_hdf5": 1.5,
    "put_tree: memcpy / put_tree": 0.9,
    "read_10: seed baseline / auto_view": 5.0,
    "read_10: seed baseline / read_since": 5.0,
    "read_1024: seed baseline / read_since": 1.0,
}
LATENCY_CASES = ("notify_spin", "notify_sleep", "queue_wake", "ring_wake", "frame_get",
                 "frame_put_reader")


def cli_path():
    return os.environ.get("SHMSTORE_BIN") or os.path.join(ROOT, "build-release", "cli", "shmstore")


def run_c(quick):
    cmd = [cli_path(), "bench", "--json"] + (["--quick"] if quick else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not rows:
        raise SystemExit(f"report: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return rows


def run_py(script, out, quick, extra=()):
    cmd = [sys.executable, os.path.join(HERE, script), "--json", out] + (["--quick"] if quick else [])
    cmd += list(extra)
    env = dict(os.environ, SHMSTORE_BIN=cli_path())
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"report: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}"
                         f"\n{p.stderr[-3000:]}")
    with open(out) as f:
        return json.load(f), p.stdout


def ratio_target(t):
    """The ratio a C target sets ("<= 1.25x" -> 1.25), or None for other targets."""
    m = re.match(r"\s*<=\s*([0-9.]+)x", t or "")
    return float(m.group(1)) if m else None


def label(r):
    extra = r.get("op") or (f"{r['readers']} readers" if "readers" in r else "")
    if "readers" in r and r.get("target"):
        extra += f", {r['target'].split()[0]}"
    return f"{r['case']}" + (f" ({extra})" if extra else "")


def chart_bars(bars, path, xlabel, title, fontsize=8):
    """Horizontal bars on a log axis: (label, value, target or None, met) each; green
    when the target is met, red when not, grey without one; the target as a black tick."""
    fig, ax = plt.subplots(figsize=(9, 0.34 * len(bars) + 1.5))
    ys = list(range(len(bars)))
    ax.barh(ys, [v for _, v, _, _ in bars],
            color=["#999999" if t is None else "#2a9d4b" if met else "#d1495b"
                   for _, _, t, met in bars])
    for y, (_, _, t, _) in zip(ys, bars):
        if t is not None:
            ax.plot([t, t], [y - 0.4, y + 0.4], color="black", lw=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([name for name, _, _, _ in bars], fontsize=fontsize)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="#555555", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_ratios(rows, path):
    bars = []
    for r in rows:
        if isinstance(r.get("ratio"), (int, float)) and r["ratio"] > 0:
            t = ratio_target(r.get("target"))
            bars.append((label(r), r["ratio"], t, t is not None and r["ratio"] <= t))
    chart_bars(bars, path, "median / same-run floor (log; 1 = the physical limit; black tick = target)",
               "C hot paths against their floors (green: target met, red: not, grey: none)")


def chart_latency(rows, path):
    rows = [r for r in rows if r["case"] in LATENCY_CASES and r.get("p999_ns")]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    w = 0.25
    xs = range(len(rows))
    for k, (key, name) in enumerate((("median_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9"))):
        ax.bar([x + (k - 1) * w for x in xs], [r[key] / 1e3 for r in rows], w, label=name)
    for x, r in zip(xs, rows):
        if isinstance(r.get("floor_ns"), (int, float)) and r["floor_ns"] > 0:
            ax.plot([x - 1.5 * w, x + 1.5 * w], [r["floor_ns"] / 1e3] * 2, color="black", lw=1.5)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["case"] for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("microseconds (log)")
    ax.set_title("Latency distributions (black line: the floor's median, same run)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speedups(values, queue, table=None, sets=None, ring=None):
    """[(kind, name, speedup)] from the Python benchmarks' results."""
    out = []
    for name, x in values.get("ratios", {}).items():
        if isinstance(x, (int, float)) and x > 0:
            out.append(("values vs the SharedObject seed", name, x))
    for case, d in queue.items():
        if case.endswith("_speedup") and isinstance(d, dict):
            for name, x in d.items():
                out.append(("queues", f"{name} ({case[:-len('_speedup')]})", x))
    for kind in ("table", "compat", "compat+sample"):
        d = (table or {}).get(kind) or {}
        for what, key in (("pushes", "speedup_push"), ("batches", "speedup_batch")):
            if isinstance(d.get(key), (int, float)):
                out.append(("tables", f"{kind}: {what} / striped-lock baseline", d[key]))
    for case in ("load_contig", "load_gzip"):
        d = (sets or {}).get(case) or {}
        for base, key in (("h5py read", "ratio_h5py"), ("cute-shm approach", "ratio_cute_shm")):
            if isinstance(d.get(key), (int, float)):
                out.append(("array sets", f"{case}: {base} / load_hdf5", d[key]))
    pt = (sets or {}).get("put_tree") or {}
    if isinstance(pt.get("ratio_to_floor"), (int, float)):
        out.append(("array sets", "put_tree: memcpy / put_tree", pt["ratio_to_floor"]))
    for case in ("read_10", "read_1024"):
        d = (ring or {}).get(case) or {}
        b = (d.get("baseline") or {}).get("median_ns")
        for impl in ("auto_view", "read_since", "view_since"):
            m = (d.get(impl) or {}).get("median_ns")
            if b and m:
                out.append(("rings", f"{case}: seed baseline / {impl}", b / m))
    att = (sets or {}).get("attach_ms") or {}
    cute = (sets or {}).get("attach_cute_shm_ms") or {}
    if att.get("median") and cute.get("median"):
        out.append(("array sets", "attach: cute-shm reader / new process attaching",
                    cute["median"] / att["median"]))
    return out


def chart_baselines(sp, path):
    bars = [(f"{kind}: {name}", x, SPEEDUP_TARGETS.get(name),
             name in SPEEDUP_TARGETS and x >= SPEEDUP_TARGETS[name]) for kind, name, x in sp]
    chart_bars(bars, path, "speedup: baseline time / shmstore time (log; black tick = target)",
               "shmstore against today's approaches (same run)", fontsize=7)


def fmt(x, digits=3):
    if not isinstance(x, (int, float)) or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def write_md(path, meta, c_rows, sp):
    lines = ["# Benchmark report", "",
             f"Generated by `{meta['command']}` on {meta['date']} ({meta['cpus']} CPUs, load "
             f"{meta['load']:.2f} at the start). Every figure below comes from this run.", "",
             "![C ratios](c_ratios.png)", "", "![latency](latency.png)", "",
             "![baselines](baselines.png)", "", "## C cases", "",
             "| case | bytes | median ns | p99 ns | p99.9 ns | floor ns | ratio | target | floor |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in c_rows:
        lines.append(f"| {label(r)} | {r['bytes']} | {fmt(r['median_ns'])} | {fmt(r['p99_ns'])} | "
                     f"{fmt(r.get('p999_ns'))} | {fmt(r.get('floor_ns'))} | {fmt(r.get('ratio'))} | "
                     f"{r.get('target') or ''} | {r.get('floor', '')} |")
    lines += ["", "## Speedups over the baselines", "", "| kind | ratio | speedup | target |",
              "|---|---|---|---|"]
    for kind, name, x in sp:
        t = SPEEDUP_TARGETS.get(name)
        lines.append(f"| {kind} | {name} | {x:.1f}x | {'>= %gx' % t if t else ''} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def verify_png(path):
    img = matplotlib.image.imread(path)  # decodes the whole file
    if img.ndim != 3 or img.shape[0] < 100 or img.shape[1] < 100:
        raise SystemExit(f"report: {path} decodes to an unexpected shape {img.shape}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (for the test)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-report"))
    ap.add_argument("--verify", action="store_true", help="decode every PNG afterwards")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    meta = {"command": "make bench-report" if not a.quick else "report.py --quick",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    c_rows = run_c(a.quick)
    with open(os.path.join(a.out, "c_bench.json"), "w") as f:
        json.dump(c_rows, f, indent=1)
    values, _ = run_py("bench_python.py", os.path.join(a.out, "python_values.json"), a.quick,
                       ["--require-c"])
    queue, _ = run_py("bench_queue.py", os.path.join(a.out, "python_queue.json"), a.quick)
    table, _ = run_py("bench_table.py", os.path.join(a.out, "python_table.json"), a.quick)
    sets, _ = run_py("bench_hdf5.py", os.path.join(a.out, "python_sets.json"), a.quick)
    ring, _ = run_py("bench_ring.py", os.path.join(a.out, "python_ring.json"), a.quick)
    sp = speedups(values, queue, table, sets, ring)
    pngs = [os.path.join(a.out, n) for n in ("c_ratios.png", "latency.png", "baselines.png")]
    chart_ratios(c_rows, pngs[0])
    chart_latency(c_rows, pngs[1])
    chart_baselines(sp, pngs[2])
    write_md(os.path.join(a.out, "report.md"), meta, c_rows, sp)
    if a.verify:
        for p in pngs:
            verify_png(p)
    print(f"report: wrote {a.out}/report.md, {len(pngs)} charts, "
          f"{len(c_rows)} C results, {len(sp)} speedups")


if __name__ == "__main__":
    main()
