"""`shmstore watch`: the rates it shows against what writer processes really did, dead
processes shown as dead, --json, and the full-screen view run in tmux and read from the
pane as a person would read it."""
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

import shmstore

CLI = os.environ.get("SHMSTORE_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "build", "cli", "shmstore")

# A paced writer's true rate and what watch reports may differ by the smoothing (2 s
# time constant, started from the first measured interval) and by scheduling on a busy
# 2-core machine; the rates here are steady, so 25% is generous without being vague.
RATE_TOLERANCE = 0.25


@pytest.fixture(autouse=True)
def _cli():
    if not os.path.exists(CLI):
        pytest.skip("the CLI is not built")


def _paced_writer(name, seconds, period, ready, out):
    """Put a value, write 4 ring frames and append a table record every `period` s, and
    push (then pop, in this process) a queue entry every other put, for `seconds`; report
    the true rates measured here."""
    with shmstore.Store(name, create=False) as s:
        v, q = s.value("cam/frame"), s.queue("jobs", capacity=64)
        r = s.ring("eeg", dtype="f4", frame_shape=(8,), capacity=1024)
        t = s.table("replay", fields={"x": "i8"}, capacity=4096)
        frames = np.zeros((4, 8), np.float32)
        ready.set()
        t0 = time.monotonic()
        n = 0
        nxt = t0
        while time.monotonic() - t0 < seconds:
            v.put(np.full(16, n))
            r.write(frames)
            t.append({"x": n})
            if n % 2 == 0:
                q.push(n)
                q.pop()
            n += 1
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
        dt = time.monotonic() - t0
        out.put((n / dt, (n + 1) // 2 / dt))


def _watch_json(name, count, interval=0.5):
    p = subprocess.run([CLI, "watch", "--json", "--count", str(count), "--interval", str(interval),
                        name], capture_output=True, timeout=60, check=True)
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def test_rates_match_the_writers(store_name):
    with shmstore.Store(store_name) as s:
        s.value("idle").put(1)
        ctx = mp.get_context("spawn")
        ready, out = ctx.Event(), ctx.Queue()
        w = ctx.Process(target=_paced_writer, args=(store_name, 6.0, 0.005, ready, out))
        w.start()
        assert ready.wait(30)
        time.sleep(0.5)
        snaps = _watch_json(store_name, 9)
        value_rate, queue_rate = out.get(timeout=30)
        w.join(30)
    last = {o["name"]: o for o in snaps[-1]["objects"]}
    assert snaps[0]["objects"][0]["rate"] is None  # one snapshot tells no rate
    assert [last[n]["kind"] for n in ("cam/frame", "jobs", "eeg", "replay")] == \
        ["value", "queue", "ring", "table"]
    for obj, true in (("cam/frame", value_rate), ("eeg", 4 * value_rate), ("replay", value_rate)):
        assert abs(last[obj]["rate"] - true) <= RATE_TOLERANCE * true, (obj, last[obj]["rate"], true)
    assert abs(last["jobs"]["rate"] - queue_rate) <= RATE_TOLERANCE * queue_rate, \
        (last["jobs"]["rate"], queue_rate)
    assert last["idle"]["rate"] == 0 and last["idle"]["age_s"] > 1
    assert last["cam/frame"]["age_s"] < 1
    for snap in snaps:  # every line is a whole snapshot
        assert snap["store"] == store_name and snap["stat"]["objects"] == 5
        assert any(p["self"] for p in snap["procs"])


def _attach_and_stop(name, ready):
    s = shmstore.Store(name, create=False)
    s.value("held").put(b"x")
    ready.set()
    time.sleep(60)


def _dead_attacher(name):
    """A process that attached to `name`, wrote a value and was SIGKILLed."""
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_attach_and_stop, args=(name, ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    return p


def test_dead_process_and_queue_depth(store_name):
    with shmstore.Store(store_name) as s:
        q = s.queue("backlog", capacity=8)
        for i in range(5):
            q.push(i)
        p = _dead_attacher(store_name)
        snap = _watch_json(store_name, 1)[0]
        procs = {pr["pid"]: pr for pr in snap["procs"]}
        assert procs[p.pid]["alive"] is False
        assert procs[os.getpid()]["alive"] is True
        backlog = next(o for o in snap["objects"] if o["name"] == "backlog")
        assert backlog["count"] == 5 and backlog["capacity"] == 8
        assert backlog["oldest_age_s"] >= 0
        # The plain table (stdout is a pipe here) says the same in words.
        text = subprocess.run([CLI, "watch", "--count", "1", store_name], capture_output=True,
                              timeout=30, check=True).stdout.decode()
        assert "backlog" in text and "5/8 entries" in text and "dead" in text
        s.gc()


def test_bad_arguments_exit_64(store_name):
    for args in (["--interval", "0"], ["--count", "0"], ["--sort", "colour"], []):
        r = subprocess.run([CLI, "watch", *args] + ([store_name] if args else []),
                           capture_output=True, timeout=30)
        assert r.returncode == 64, (args, r)
    r = subprocess.run([CLI, "watch", "--count", "1", store_name], capture_output=True, timeout=30)
    assert r.returncode == 66, r  # the store does not exist


def _pane(session):
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          check=True, timeout=10).stdout.decode()


def _wait_pane(session, pred, timeout=15):
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = _pane(session)
        if pred(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"the pane never showed it; it shows:\n{text}")


def test_full_screen_in_tmux(store_name):
    if not shutil.which("tmux"):
        pytest.fail("tmux is missing: scripts/deps.sh installs it")
    session = f"shmstore_watch_{os.getpid()}"
    with shmstore.Store(store_name) as s:
        s.value("sensors/imu").put(np.zeros(6))
        s.queue("jobs", capacity=4).push("a")
        p = _dead_attacher(store_name)
        env = dict(os.environ, TERM="xterm-256color")
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30",
                        f"{CLI} watch --interval 0.2 {store_name}"], check=True, env=env,
                       timeout=10)
        try:
            text = _wait_pane(session, lambda t: "sensors/imu" in t and "q quit" in t)
            lines = text.splitlines()
            assert len(lines) <= 30 and all(len(line) <= 120 for line in lines)
            assert "jobs" in text and "1/4 entries" in text
            assert "dead" in text and "alive" in text
            assert lines[0].startswith(store_name)
            subprocess.run(["tmux", "send-keys", "-t", session, "s"], check=True, timeout=10)
            _wait_pane(session, lambda t: "sort (kind)" in t)
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True, timeout=10)
            end = time.monotonic() + 10
            while time.monotonic() < end and subprocess.run(
                    ["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
                time.sleep(0.1)
            assert subprocess.run(["tmux", "has-session", "-t", session],
                                  capture_output=True).returncode != 0, "q did not quit"
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        s.gc()
