"""The bridge's benchmark (issue 11, section 3): `shmstore bridge serve` and `mirror` over
loopback and across a veth pair between two network namespaces, against raw ZeroMQ
PUSH/PULL of the same sizes with the same socket options, in the same run.

    /usr/bin/python3 python/bench/bench_bridge.py [--quick] [--out FILE] [--repeat N]
        [--no-veth] [--profile]

Programs: $SHMSTORE_BIN (default /work/wt11/build/cli/shmstore; use a Release build for
figures) and, from the same build's bench/, shmstore_bridge_probe (the store side of each
case, in C: writers into the source store, readers of the far one; both stores are in this
machine's /dev/shm, so one process holds both and one clock times both ends) and
shmstore_zmq_floor (the floor). Each case gets a fresh pair of stores and a fresh
server + mirror pair (so each case's --stats counters are its own), one warm-up item, then:

- value_8 / value_1m2 (rate): a writer puts versions of 8 B / 1.2 MB as fast as it can for
  a few seconds; the rate of far versions (what the mirror published; the far reader's
  wake-ups are reported too). Values conflate, so this is "how fresh", not a count of
  deliveries. Floor: ZeroMQ messages/s of that size.
- lat_8 / lat_1m2: one put at a time, GAP apart; latency = the far reader's clock when it
  wakes minus the far version's mtime (the source put's, copied by the mirror). Floor:
  ZeroMQ one message at a time, the same GAP, the sender's CLOCK_REALTIME in the message.
- queue_64 / queue_64k: push N entries into the source queue; time until the far side has
  popped all N (every entry checked in order). Floor: ZeroMQ messages/s of that size.
  Also "store_only": the same entries through a relay thread in one store (read, push
  into a second queue, delete: the bridge's store calls without ZeroMQ), for reference.
- ring: 32-channel float32 frames written in chunks of 1024 (128 KiB) by a writer kept at
  most 1/8 of the ring ahead of the far ring (so nothing is lost and the writer does not
  spin on a core the bridge needs); far frames/s. Floor: ZeroMQ messages of 128 KiB/s x 1024.
Each case runs --repeat times (default 3, --quick 1) and the medians are reported.

Targets: >= 0.9x the floor's throughput for large messages (value_1m2, queue_64k, ring),
>= 0.7x for small ones (value_8, queue_64), added latency <= 50 us over the floor at p50.
The veth case needs root (`ip netns`, made and removed here; nothing is added to the
namespace this runs in); without it, it is skipped with a message. --profile attaches
`strace -c -f` to the bridge processes (slow: figures from such a run mean nothing) and
records system calls per case. Writes JSON to --out (default bench-report/bridge.json)
and prints a table.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("SHMSTORE_BIN", "/work/wt11/build/cli/shmstore")
HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(BIN))), "bench")
PROBE = os.path.join(HELPERS, "shmstore_bridge_probe")
FLOOR = os.path.join(HELPERS, "shmstore_zmq_floor")
PID = os.getpid()
NS_PREFIX = "bbn"  # namespaces and interfaces of this benchmark: bbn<pid>a, bbn<pid>b
CASE_TIMEOUT = 60
LARGE, SMALL, ADDED_US = 0.9, 0.7, 50.0
RING_CH, RING_CHUNK = 32, 1024
MB = 1200000

# name -> (kind, size, target kind); parameters per mode below
CASES = ["value_8", "value_1m2", "lat_8", "lat_1m2", "queue_64", "queue_64k", "ring"]


def params(quick):
    """Per case: the probe's arguments and the floor's."""
    sec = 1.0 if quick else 2.0
    k = 5 if quick else 1
    return {
        "value_8": dict(probe=["value", 8, sec], floor=dict(size=8, count=2000000 // k),
                        target="small"),
        "value_1m2": dict(probe=["value", MB, sec], floor=dict(size=MB, count=2000 // k),
                          target="large"),
        "lat_8": dict(probe=["value-latency", 8, 1000 // k, 1000],
                      floor=dict(size=8, count=1000 // k, latency=True, gap_us=1000),
                      target="latency"),
        "lat_1m2": dict(probe=["value-latency", MB, 500 // k, 2000],
                        floor=dict(size=MB, count=500 // k, latency=True, gap_us=2000),
                        target="latency"),
        "queue_64": dict(probe=["queue", 64, 200000 // k, 8192],
                         floor=dict(size=64, count=2000000 // k), target="small"),
        "queue_64k": dict(probe=["queue", 65536, 20000 // k, 1024],
                          floor=dict(size=65536, count=20000 // k), target="large"),
        "ring": dict(probe=["ring", RING_CH, RING_CHUNK, sec],
                     floor=dict(size=RING_CH * 4 * RING_CHUNK, count=20000 // k),
                     target="large"),
    }


def run(*cmd, check=True, timeout=20):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(p, timeout=10):
    """SIGTERM, then wait (SIGKILL after timeout); returns (stdout, stderr)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return out, err


# ---- where the two sides run -------------------------------------------------------------

class Loopback:
    name = "loopback"

    def __init__(self):
        self.server_host = "127.0.0.1"

    def prefix(self, side):
        return []

    def endpoint(self):
        return f"tcp://127.0.0.1:{free_port()}"

    def public(self):
        return []

    def close(self):
        pass


class Veth:
    """Two namespaces joined by a veth pair made inside them: the server's side a, the
    mirror's side b. Removed by close() (and by a later run if this one was killed)."""
    name = "veth"

    def __init__(self):
        remove_stale()
        self.a, self.b = f"{NS_PREFIX}{PID}a", f"{NS_PREFIX}{PID}b"
        x = 16 + PID % 200
        self.server_host, self.mirror_host = f"10.213.{x}.1", f"10.213.{x}.2"
        self._port = 5800
        run("ip", "netns", "add", self.a)
        try:
            run("ip", "netns", "add", self.b)
            ia, ib = f"{NS_PREFIX}{PID % 100000}x", f"{NS_PREFIX}{PID % 100000}y"
            run("ip", "-n", self.a, "link", "add", ia, "type", "veth", "peer", "name", ib,
                "netns", self.b)
            for ns, i, ip in ((self.a, ia, self.server_host), (self.b, ib, self.mirror_host)):
                run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", i)
                run("ip", "-n", ns, "link", "set", i, "up")
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def prefix(self, side):
        return ["ip", "netns", "exec", self.a if side == "server" else self.b]

    def endpoint(self):
        self._port += 1
        return f"tcp://{self.server_host}:{self._port}"

    def public(self):
        return ["--public"]

    def close(self):
        for ns in (self.a, self.b):
            run("ip", "netns", "del", ns, check=False)


def remove_stale():
    """Namespaces of earlier runs whose process is gone."""
    r = run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        digits = name[len(NS_PREFIX):-1]
        gone = digits.isdigit() and not os.path.exists(f"/proc/{digits}")
        if name.startswith(NS_PREFIX) and gone:
            run("ip", "netns", "del", name, check=False)


def veth_unusable():
    if os.geteuid() != 0:
        return "not root: the veth case needs `ip netns` (run as root)"
    if shutil.which("ip") is None:
        return "no iproute2 `ip`"
    return None


# ---- one case ------------------------------------------------------------------------------

def floor(env, size, count, latency=False, gap_us=0):
    ep = env.endpoint()
    args = ["--size", size, "--count", count, "--timeout-ms", 20000]
    if latency:
        args += ["--latency", "--gap-us", gap_us]
    push = subprocess.Popen([str(a) for a in env.prefix("server") + [FLOOR, "push", ep] + args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = push.stdout.readline()  # {"bound": ...} once it listens
        if not line.startswith("{"):
            raise RuntimeError(f"zmq floor push: {line}{push.stderr.read()}")
        pull = run(*env.prefix("mirror"), FLOOR, "pull", ep, *args, timeout=CASE_TIMEOUT)
        push.stdin.close()  # the pull has everything: the push may close its socket
        push.wait(timeout=30)
        return last_json(pull.stdout)
    finally:
        if push.poll() is None:
            push.kill()
        push.wait()


def strace_start(pid, path):
    return subprocess.Popen(["strace", "-c", "-f", "-qq", "-o", path, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def strace_read(path):
    """{syscall: calls} from strace -c output."""
    calls = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    try:
                        calls[parts[-1]] = int(parts[3])
                    except ValueError:
                        pass
    except OSError:
        pass
    return dict(sorted(calls.items(), key=lambda kv: -kv[1]))


def bridge_case(env, name, p, profile):
    src, far = f"bb_src_{PID}", f"bb_far_{PID}"
    for s in (src, far):
        run(PROBE, "rmstore", s)
    run(PROBE, "mkstore", src, 1024)
    run(PROBE, "mkstore", far, 1024)
    ep = env.endpoint()
    procs, traces = {}, {}
    try:
        procs["server"] = subprocess.Popen(
            env.prefix("server") + [BIN, "bridge", "serve", src, "--bind", ep, "--stats", "3600"]
            + env.public(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs["mirror"] = subprocess.Popen(
            env.prefix("mirror") + [BIN, "bridge", "mirror", ep, far, "--stats", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if profile:
            time.sleep(0.3)  # the CLI is running (ip netns exec has exec'd it)
            for side, pr in procs.items():
                traces[side] = (strace_start(pr.pid, f"/tmp/bb_strace_{PID}_{side}"),
                                f"/tmp/bb_strace_{PID}_{side}")
        obj = f"bb_{name}"
        kind, *rest = p["probe"]
        r = run(PROBE, kind, src, far, obj, *rest, timeout=CASE_TIMEOUT, check=False)
        res = last_json(r.stdout)
        if r.returncode != 0 or res is None:
            raise RuntimeError(f"probe {kind}: exit {r.returncode}: {r.stderr.strip()}")
        if r.stderr.strip():
            res["probe_stderr"] = r.stderr.strip()[-2000:]
        syscalls = {}
        for side, (t, path) in traces.items():
            t.send_signal(signal.SIGINT)
            t.wait(timeout=10)
            syscalls[side] = strace_read(path)
            os.unlink(path)
        stats = {}
        for side, pr in procs.items():
            out, err = stop(pr)
            stats[side] = last_json(out)
            if err.strip():
                res.setdefault("bridge_stderr", {})[side] = err.strip()[-1000:]
        res["stats"] = stats
        if syscalls:
            res["syscalls"] = syscalls
        return res
    finally:
        for t, _ in traces.values():
            if t.poll() is None:
                t.kill()
            t.wait()
        for pr in procs.values():
            if pr.poll() is None:
                pr.kill()
            pr.wait()
        for s in (src, far):
            run(PROBE, "rmstore", s, check=False)


def store_only(p):
    """A queue case's store work without ZeroMQ (the probe's queue-store: a relay thread
    reads, pushes into a second queue and deletes, entry by entry, in lock step where the
    bridge pipelines): a reference for the store's share of the cost on this machine."""
    st = f"bb_st_{PID}"
    run(PROBE, "rmstore", st)
    run(PROBE, "mkstore", st, 1024)
    try:
        _, size, count, cap = p["probe"]
        r = run(PROBE, "queue-store", st, "bb_q", size, count, cap, timeout=CASE_TIMEOUT)
        return last_json(r.stdout)
    finally:
        run(PROBE, "rmstore", st, check=False)


def summarize(name, p, b, f):
    """The figure, the floor's, their ratio (or added latency) and whether it meets the
    target."""
    t = p["target"]
    row = {"case": name, "target": t}
    if t == "latency":
        row.update(bridge_p50_us=b["p50_us"], bridge_p99_us=b["p99_us"], floor_p50_us=f["p50_us"],
                   floor_p99_us=f["p99_us"], added_p50_us=round(b["p50_us"] - f["p50_us"], 1),
                   added_p99_us=round(b["p99_us"] - f["p99_us"], 1))
        row["ok"] = row["added_p50_us"] <= ADDED_US
        return row
    if name.startswith("value"):
        rate, unit, floor_rate = b["far_versions_per_s"], "versions/s", f["msgs_per_s"]
    elif name.startswith("queue"):
        rate, unit, floor_rate = b["entries_per_s"], "entries/s", f["msgs_per_s"]
    else:
        rate, unit, floor_rate = b["frames_per_s"], "frames/s", f["msgs_per_s"] * RING_CHUNK
    row.update(bridge=rate, floor=floor_rate, unit=unit,
               ratio=rate / floor_rate if floor_rate else 0)
    row["ok"] = row["ratio"] >= (LARGE if t == "large" else SMALL)
    # what else says whether the figure is sound: entries lost, frames lost, how stale the
    # far value is while the writer saturates the link
    for k in ("missing", "out_of_order", "frames_lost", "loaded_p50_us", "loaded_p99_us"):
        if k in b:
            row[k] = b[k]
    if b.get("store_only"):
        row["store_only"] = b["store_only"]["entries_per_s"]
    s = (b.get("stats") or {}).get("server") or {}
    if s.get("messages_sent"):
        per = {"value": s.get("values"), "queue": s.get("entries"), "ring": s.get("frames")}
        items = per[name.split("_")[0]]
        row["items_per_message"] = round(items / s["messages_sent"], 1) if items else None
        row["hwm_deferred"] = s.get("hwm_deferred")
    return row


def median(v):
    v = sorted(v)
    n = len(v)
    return (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2) if n else float("nan")


def combine(rows):
    """Several repeats of a case: the median of each figure."""
    if len(rows) == 1:
        return rows[0]
    out = dict(rows[0])
    for k, v in rows[0].items():
        if k in ("missing", "out_of_order", "frames_lost"):  # losses add up, never average
            out[k] = sum(r.get(k) or 0 for r in rows)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = median([r[k] for r in rows if r.get(k) is not None])
    t = out["target"]
    out["ok"] = (out["added_p50_us"] <= ADDED_US if t == "latency"
                 else out["ratio"] >= (LARGE if t == "large" else SMALL))
    out["repeats"] = len(rows)
    return out


def fmt_rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k" if x >= 1e3 else f"{x:.0f}"


def print_table(report):
    print(f"\n{'env':9} {'case':10} {'bridge':>16} {'floor (ZeroMQ)':>16} {'ratio/added':>12} "
          f"{'target':>9}  ok")
    for env, rows in report["envs"].items():
        if isinstance(rows, str):
            print(f"{env:9} skipped: {rows}")
            continue
        for r in rows:
            if "error" in r:
                print(f"{env:9} {r['case']:10} error: {r['error'][:90]}")
            elif r["target"] == "latency":
                print(f"{env:9} {r['case']:10} "
                      f"{r['bridge_p50_us']:7.0f}/{r['bridge_p99_us']:<6.0f}us "
                      f"{r['floor_p50_us']:7.0f}/{r['floor_p99_us']:<6.0f}us "
                      f"{r['added_p50_us']:+9.0f} us {'<=' + str(int(ADDED_US)) + ' us':>9}  "
                      f"{'yes' if r['ok'] else 'NO'}")
            else:
                tgt = LARGE if r["target"] == "large" else SMALL
                print(f"{env:9} {r['case']:10} {fmt_rate(r['bridge']) + r['unit'][:-2]:>16} "
                      f"{fmt_rate(r['floor']) + r['unit'][:-2]:>16} {r['ratio']:11.2f}x "
                      f"{'>=' + str(tgt) + 'x':>9}  {'yes' if r['ok'] else 'NO'}")
    print("latency: p50/p99 us of put -> far reader awake; rates: per second; with repeats, "
          "each figure is the median over the runs and ratio/added the median of the runs' "
          "own (a run's bridge and floor back to back)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short cases (under 30 s in all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-report", "bridge.json"))
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per case, medians reported (default 3; --quick: 1)")
    ap.add_argument("--no-veth", action="store_true", help="loopback only")
    ap.add_argument("--only", nargs="*", choices=CASES, help="these cases only")
    ap.add_argument("--profile", action="store_true",
                    help="strace -c the bridge processes (the figures are then meaningless)")
    a = ap.parse_args()
    for f in (BIN, PROBE, FLOOR):
        if not os.access(f, os.X_OK):
            sys.exit(f"bench_bridge: {f} is missing: build the shmstore_bridge_probe and "
                     "shmstore_zmq_floor targets (and the CLI) of the build SHMSTORE_BIN is in")
    if a.profile and shutil.which("strace") is None:
        sys.exit("bench_bridge: --profile needs strace")
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    ps = params(a.quick)
    cases = a.only or CASES
    t_start = time.time()
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "load_at_start": os.getloadavg(), "bin": BIN, "quick": a.quick,
              "repeat": a.repeat, "profile": a.profile,
              "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
              "targets": {"large": LARGE, "small": SMALL, "added_p50_us": ADDED_US},
              "envs": {}, "raw": {}}
    envs = [Loopback]
    why = veth_unusable()
    if a.no_veth:
        report["envs"]["veth"] = "skipped (--no-veth)"
    elif why:
        print(f"bench_bridge: veth case skipped: {why}", file=sys.stderr)
        report["envs"]["veth"] = f"skipped: {why}"
    else:
        envs.append(Veth)
    order = ["loopback", "veth"]
    for E in envs:
        try:
            env = E()
        except Exception as e:
            print(f"bench_bridge: {E.name}: can't set up: {e}", file=sys.stderr)
            report["envs"][E.name] = f"skipped: can't set up: {e}"
            continue
        try:
            rows, raw = [], []
            for name in cases:
                p, reps = ps[name], []
                for _ in range(a.repeat):
                    try:
                        b = bridge_case(env, name, p, a.profile)
                        f = floor(env, **p["floor"])
                        if name.startswith("queue"):
                            b["store_only"] = store_only(p)
                        raw.append({"case": name, "bridge": b, "floor": f})
                        reps.append(summarize(name, p, b, f))
                        print(f"{env.name}: {name}: {json.dumps(reps[-1])}", file=sys.stderr)
                    except Exception as e:  # one case's failure is reported, the rest run
                        print(f"{env.name}: {name}: error: {e}", file=sys.stderr)
                        reps.append({"case": name, "target": p["target"], "error": str(e)})
                good = [r for r in reps if "error" not in r]
                rows.append(combine(good) if good else reps[-1])
            report["envs"][env.name] = rows
            report["raw"][env.name] = raw
        finally:
            env.close()
    report["envs"] = {k: report["envs"][k] for k in order if k in report["envs"]}
    report["seconds"] = round(time.time() - t_start, 1)
    report["load_at_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print_table(report)
    print(f"{report['seconds']} s; load {report['load_at_start'][0]:.2f} at the start; "
          f"JSON: {a.out}")


if __name__ == "__main__":
    main()
