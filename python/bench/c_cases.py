"""Run C cases of `shmstore bench --json` (build-release or $SHMSTORE_BIN) from a Python
benchmark, so that both sets of figures come from one run; print them with their floors."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cases, quick, width=16):
    exe = os.environ.get("SHMSTORE_BIN") or os.path.join(ROOT, "build-release", "cli", "shmstore")
    if not os.path.exists(exe):
        print(f"\nC cases skipped: {exe} not built (cmake --build build-release)")
        return []
    argv = [exe, "bench", "--json"] + (["--quick"] if quick else []) + list(cases)
    rows = [json.loads(l) for l in subprocess.check_output(argv, text=True).splitlines() if l.strip()]
    print("\nC (shmstore bench, same run)")
    for r in rows:
        if "error" in r:
            print(f"  {r['case']:{width}s} FAILED {r['error']}")
            continue
        print(f"  {r['case']:{width}s} median {r['median_ns']:10.0f} ns  p99 {r['p99_ns']:10.0f} ns  "
              f"floor {r['floor_ns']:10.0f} ns  ratio {r['ratio']:.2f}  ({r['floor']})")
    return rows
