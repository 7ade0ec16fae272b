"""shmstore.Ring: the native ring API, its errors, generations, views, waits, processes."""
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import shmstore
from helpers_ring import ramp
import helpers_ring


def test_ring_write_read_latest(store):
    r = store.ring("eeg", dtype="f8", frame_shape=(4,), capacity=10, attrs={"srate": 1000.0})
    assert (r.dtype, r.frame_shape, r.capacity, r.generation, r.total) == (np.float64, (4,), 10, 1, 0)
    assert r.attrs == {"srate": 1000.0}
    assert r.frame_nbytes == 32 and r.base == 0 and not r.writer
    assert r.write(ramp(0, 3, 4)) == 3
    assert r.writer and r.writer_pid == os.getpid()
    assert r.write(ramp(3, 1, 4)[0]) == 4  # one frame
    rd = store.ring("eeg")
    frames, cursor, lost = rd.read_since(0)
    assert np.array_equal(frames, ramp(0, 4, 4)) and (cursor, lost) == (4, 0)
    frames, cursor, lost = rd.read_since(cursor)
    assert frames.shape == (0, 4) and (cursor, lost) == (4, 0)
    r.write(ramp(4, 21, 4))  # 25 written, 10 held
    frames, cursor, lost = rd.read_since(4, max=3)
    assert np.array_equal(frames, ramp(15, 3, 4)) and (cursor, lost) == (18, 11)
    assert np.array_equal(rd.latest(2), ramp(23, 2, 4))
    assert np.array_equal(rd.latest(100), ramp(15, 10, 4))
    assert rd.oldest == 15 and rd.total == 25
    assert frames.flags.writeable  # read_since copies: the caller owns them
    frames[:] = 0  # a copy: the ring is untouched
    assert np.array_equal(rd.latest(1), ramp(24, 1, 4))
    info = store.info("eeg")
    assert info["kind"] == "ring" and info["frames_written"] == 25 and info["held"] == 10
    assert info["has_writer"] and info["capacity"] == 10 and info["frame_shape"] == (4,)
    rd.close()
    r.close()
    assert r.closed


def test_ring_1d_and_write_larger_than_ring(store):
    r = store.ring("s", dtype=np.int32, capacity=8)
    assert r.frame_shape == ()
    r.write(np.arange(5, dtype=np.int32))
    r.write(np.int32(5))  # a scalar frame
    r.write([6, 7])  # a list is converted
    r.write(np.arange(8, 8 + 29, dtype=np.int32))  # longer than the ring
    frames, cursor, lost = r.read_since(0)
    assert np.array_equal(frames, np.arange(29, 37)) and (cursor, lost) == (37, 29)
    assert frames.dtype == np.int32


def test_ring_errors(store):
    r = store.ring("e", dtype="f4", frame_shape=(2, 3), capacity=4)
    with pytest.raises(ValueError, match="dtype"):
        r.write(np.zeros((1, 2, 3), np.float64))  # wrong dtype
    with pytest.raises(ValueError, match="shape"):
        r.write(np.zeros((1, 3, 2), np.float32))  # wrong frame shape
    with pytest.raises(ValueError):
        store.ring("bad", dtype="f4", capacity=0)
    with pytest.raises(ValueError):
        store.ring("bad", dtype="f4", frame_shape=(0,))
    with pytest.raises((ValueError, TypeError)):
        store.ring("bad", dtype=object)
    with pytest.raises(MemoryError):
        store.ring("bad", dtype="f8", frame_shape=(1 << 20,), capacity=1 << 20)
    with pytest.raises(shmstore.NotFoundError):
        store.ring("bad", create=False)  # nothing was created by the failures
    with pytest.raises(shmstore.LayoutError):
        store.ring("e", dtype="f8")  # exists with another layout
    assert store.ring("e", dtype="f4", frame_shape=(2, 3)).capacity == 4  # the same: fine
    with pytest.raises(ValueError, match="future"):
        r.read_since(5)
    with pytest.raises(ValueError):
        r.read_since(-1)
    r.write(np.zeros((2, 2, 3), np.float32))
    other = store.ring("e")
    with pytest.raises(OSError) as ei:  # one writer at a time
        other.write(np.zeros((2, 3), np.float32))
    assert ei.value.errno == 16 and "another handle" in str(ei.value)
    with pytest.raises(OSError):
        other.reconfigure(capacity=8)
    with pytest.raises(OSError):
        store.ring("e", writer=True)
    store["v"] = 1
    with pytest.raises(TypeError):
        store.ring("v")
    with pytest.raises(FileExistsError):
        store.ring("e", exclusive=True)
    with pytest.raises(TimeoutError):
        other.wait(2, timeout=0.01)
    r.close()
    other.write(np.zeros((2, 3), np.float32))  # the role is free again
    store.delete("e")
    with pytest.raises(shmstore.StaleError):
        other.read_since(0)
    other.close()
    with pytest.raises(ValueError):
        other.read_since(0)


def test_ring_not_configured_then_configured(store):
    rd = store.ring("later")  # a reader first: the ring exists, without a layout
    assert rd.generation == 0 and rd.dtype is None and rd.capacity == 0
    frames, cursor, lost = rd.read_since(0)
    assert len(frames) == 0 and cursor == 0
    with pytest.raises(shmstore.NoValueError):
        rd.write(np.zeros(1))
    w = store.ring("later", dtype="u2", frame_shape=(3,), capacity=5)  # configures it
    w.write(np.ones((2, 3), np.uint16))
    frames, cursor, lost = rd.read_since(0)  # follows by itself
    assert rd.generation == 1 and frames.shape == (2, 3) and cursor == 2


def test_ring_generations_follow_and_free(store):
    store["index"] = 0  # the name index exists from now
    used0 = store.stat()["used"]
    w = store.ring("g", dtype="f8", frame_shape=(1,), capacity=16, writer=True)
    rd = store.ring("g")
    w.write(ramp(0, 10, 1))
    frames, cursor, lost = rd.read_since(0, max=4)
    w.reconfigure(frame_shape=(2,), capacity=32, attrs={"srate": 250.0})
    assert w.generation == 2 and w.base == 10 and w.attrs == {"srate": 250.0}
    w.write(ramp(10, 5, 2))
    frames, cursor, lost = rd.read_since(cursor)  # the rest of generation 1 first
    assert np.array_equal(frames, ramp(4, 6, 1)) and rd.generation == 1
    frames, cursor, lost = rd.read_since(cursor)  # then generation 2
    assert np.array_equal(frames, ramp(10, 5, 2)) and rd.generation == 2 and lost == 0
    view = rd.view_since(10)[0][0]  # keeps generation 2 alive
    w.reconfigure(dtype="i2", frame_shape=(), capacity=4)
    w.reconfigure(dtype="i2", frame_shape=(), capacity=8)
    w.write(np.arange(3, dtype=np.int16))
    frames, cursor, lost = rd.read_since(cursor)
    assert rd.generation == 4 and lost == 0 and frames.dtype == np.int16  # gen 3 had none
    assert np.array_equal(view, ramp(10, 5, 2))  # still intact
    del view
    rd.close()
    w.close()
    store.delete("g")
    assert store.stat()["used"] == used0  # every generation's block is back


def test_ring_views_and_overwritten(store):
    r = store.ring("v", dtype="f8", frame_shape=(2,), capacity=10)
    r.write(ramp(0, 14, 2))
    pieces, cursor, lost = r.view_since(6)
    assert [len(p) for p in pieces] == [4, 4] and (cursor, lost) == (14, 0)
    assert np.array_equal(np.concatenate(pieces), ramp(6, 8, 2))
    assert not pieces[0].flags.writeable
    with pytest.raises(ValueError):
        pieces[0][0, 0] = 1.0
    assert r.overwritten(6) == 0
    r.write(ramp(14, 3, 2))
    assert r.overwritten(6) == 1  # frame 6 was written over
    buf = r.buffer
    assert buf.shape == (10, 2) and not buf.flags.writeable
    assert np.array_equal(buf[(16 - 0) % 10], ramp(16, 1, 2)[0])
    pieces, cursor, lost = r.view_since(cursor)
    assert np.array_equal(pieces[0], ramp(14, 3, 2)) and (cursor, lost) == (17, 0)
    pieces, cursor, lost = r.view_since(cursor)
    assert pieces == () and lost == 0
    store.delete("v")
    assert np.array_equal(buf[6], ramp(16, 1, 2)[0])  # still mapped after the deletion


def test_ring_wait_wakes_and_follows(store):
    w = store.ring("w", dtype="f8", capacity=8, writer=True)
    rd = store.ring("w")
    got = []

    def waiter():
        got.append(rd.wait(0, timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    w.write(np.ones(3))
    t.join()
    assert got == [3]
    assert rd.wait(1, timeout=0) == 3
    # A reconfiguration wakes a reader waiting past the end of its generation.
    t = threading.Thread(target=lambda: got.append(rd.wait(3, timeout=10)))
    t.start()
    time.sleep(0.05)
    w.reconfigure(capacity=4)
    t.join()
    assert got[-1] == 3 and rd.generation == 2


def _spawn_ctx():
    return mp.get_context("spawn")


def test_ring_processes_spawn(store_name):
    with shmstore.Store(store_name) as s:
        s.ring("p", dtype="f8", frame_shape=(3,), capacity=257)
        ctx = _spawn_ctx()
        res = ctx.Queue()
        readers = [ctx.Process(target=helpers_ring.reader, args=(store_name, "p", 20000, 3, res))
                   for _ in range(2)]
        for p in readers:
            p.start()
        w = ctx.Process(target=helpers_ring.writer, args=(store_name, "p", 20000, 37, 3))
        w.start()
        w.join(60)
        assert w.exitcode == 0
        for p in readers:
            p.join(60)
            assert p.exitcode == 0
        for _ in readers:
            got, lost = res.get(timeout=10)
            assert got + lost == 20000
        assert s.check() == ""


def test_ring_independent_program(store_name):
    code = r'''
import sys, numpy as np, shmstore
s = shmstore.Store(sys.argv[1], create=False)
r = s.ring("prog", create=False)
cursor = 0
while cursor < 500:
    r.wait(cursor, timeout=30)
    f, cursor2, lost = r.read_since(cursor)
    assert np.array_equal(f, np.arange(cursor2 - len(f), cursor2, dtype=np.int64))
    cursor = cursor2
print("ok", cursor)
'''
    with shmstore.Store(store_name) as s:
        r = s.ring("prog", dtype="i8", capacity=1000)
        p = subprocess.Popen([sys.executable, "-c", code, store_name], stdout=subprocess.PIPE,
                             env=dict(os.environ))
        for k in range(0, 500, 50):
            r.write(np.arange(k, k + 50, dtype=np.int64))
            time.sleep(0.005)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and out.split() == [b"ok", b"500"]


def test_ring_dead_writer_and_dead_view_holder(store_name):
    ctx = _spawn_ctx()
    with shmstore.Store(store_name) as s:
        r = s.ring("d", dtype="f8", frame_shape=(4,), capacity=16)
        used = s.stat()["used"]
        ready = ctx.Event()
        p = ctx.Process(target=helpers_ring.die_as_writer, args=(store_name, "d", ready))
        p.start()
        p.join(30)
        assert p.exitcode == -9
        r.write(ramp(3, 2, 4))  # the dead writer's role is taken over
        assert r.total == 5
        ready = ctx.Event()
        p = ctx.Process(target=helpers_ring.hold_view_and_wait, args=(store_name, "d", ready))
        p.start()
        assert ready.wait(30)
        r.reconfigure(capacity=32)  # the holder keeps generation 1 alive
        p.kill()
        p.join(30)
        s.gc()
        r.reconfigure(capacity=16)
        assert s.stat()["used"] == used  # generation 1 and 2 freed
        assert s.check() == ""


def test_ring_fork_child_reads(store):
    r = store.ring("f", dtype="f8", capacity=8)
    r.write(np.arange(4.0))
    view = r.view_since(0)[0][0]
    pid = os.fork()
    if pid == 0:
        try:
            frames, cursor, lost = r.read_since(0)  # the child re-attaches by itself
            ok = np.array_equal(frames, np.arange(4.0)) and np.array_equal(view, np.arange(4.0))
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


CLI = os.environ.get("SHMSTORE_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "build", "cli", "shmstore")


def test_cli_shows_rings(store, store_name):
    if not os.path.exists(CLI):
        pytest.skip("the CLI is not built")
    import json
    r = store.ring("eeg/raw", dtype="f4", frame_shape=(8,), capacity=100,
                   attrs={"srate": 30000.0, "axis": "time"})
    r.write(np.arange(8 * 130, dtype=np.float32).reshape(130, 8))
    store.ring("empty")
    out = json.loads(subprocess.check_output([CLI, "ls", "--json", store_name]))
    (o,) = [o for o in out["objects"] if o["name"] == "eeg/raw"]
    assert o["kind"] == "ring" and o["generation"] == 1 and o["capacity"] == 100
    assert o["frames_written"] == 130 and o["held"] == 100 and o["shape"] == [8]
    assert o["dtype"] == "<f4" and o["has_writer"]
    ls = subprocess.check_output([CLI, "ls", store_name]).decode()
    assert "frames <f4 (8,) x 100" in ls
    text = subprocess.check_output([CLI, "info", f"{store_name}/eeg/raw"]).decode()
    for want in ("capacity     100 frames", "written      130 frames", "held         30 .. 130",
                 "generation   1", "rate         30000 Hz", f"writer       process {os.getpid()}",
                 'axis         "time"'):
        assert want in text, (want, text)
    assert "not configured" in subprocess.check_output([CLI, "info", f"{store_name}/empty"]).decode()
    cat = subprocess.check_output([CLI, "cat", "-n", "3", f"{store_name}/eeg/raw"]).decode()
    assert "frames 127 .. 130" in cat and "(3, 8)" in cat
    raw = subprocess.check_output([CLI, "cat", "--raw", "-n", "2", f"{store_name}/eeg/raw"])
    assert np.array_equal(np.frombuffer(raw, np.float32), np.arange(8 * 128, 8 * 130, dtype=np.float32))
    assert subprocess.run([CLI, "cat", f"{store_name}/empty"], capture_output=True).returncode != 0
    subprocess.check_call([CLI, "check", store_name], stdout=subprocess.DEVNULL)


def test_ring_write_checks_the_layout_of_the_generation_it_writes(store):
    a = store.ring("lay", dtype="f8", frame_shape=(4,), capacity=8)
    b = store.ring("lay", writer=True)
    b.reconfigure(frame_shape=(8,))  # a is still on generation 1
    b.close()
    with pytest.raises(ValueError, match="shape"):
        a.write(np.zeros((3, 4)))  # checked against generation 2, which a writes to
    assert a.generation == 2 and a.writer
    a.write(np.ones((3, 8)))
    assert np.array_equal(a.latest(3), np.ones((3, 8)))


def test_views_use_numpy_c_api_when_its_headers_exist():
    # setup.py builds npapi.c against numpy's headers when they are there (the fallback,
    # SHMSTORE_NUMPY_API=0, is what test_install.sh builds and checks).
    built = os.path.exists(os.path.join(np.get_include(), "numpy", "arrayobject.h"))
    assert shmstore._shmstore._numpy_api == int(built)
