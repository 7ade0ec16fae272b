"""shmstore.Queue: the native API, its errors, and many processes (fork, spawn, programs)."""
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import shmstore

import helpers_queue as hq

CLI = os.environ.get("SHMSTORE_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "build", "cli", "shmstore")


# ---- the API --------------------------------------------------------------------------

def test_push_pop_fifo_and_types(store):
    q = store.queue("q", capacity=16)
    items = [None, True, 7, 2.5, 1 + 2j, "text", b"bytes", np.arange(6).reshape(2, 3),
             {"obs": np.zeros((4, 84, 84), np.uint8), "r": 1.0, "done": False},
             [1, "a", np.ones(3)], ("t", 1), {1, 2}]
    idx = [q.push(x) for x in items]
    assert idx == list(range(len(items)))
    assert len(q) == len(items)
    for x in items:
        y = q.pop(timeout=0)
        if isinstance(x, np.ndarray):
            assert y.dtype == x.dtype and (y == x).all()
        elif isinstance(x, dict):
            assert y.keys() == x.keys() and (y["obs"] == x["obs"]).all()
        elif isinstance(x, list):
            assert y[0] == 1 and (y[2] == x[2]).all()
        else:
            assert y == x and type(y) is type(x)
    assert len(q) == 0
    with pytest.raises(TimeoutError):
        q.pop(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        q.pop(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04


def test_zero_copy_pop_keeps_its_entry(store):
    q = store.queue("q", capacity=4)
    q.push(np.arange(1000, dtype=np.int64))
    a = q.pop(copy=False)
    assert not a.flags.writeable
    for i in range(20):  # the cell is reused many times; `a` keeps its own block
        q.push(np.full(1000, i))
        q.pop()
    assert (a == np.arange(1000)).all()
    del a
    gc.collect()


def test_read_read_latest_read_batch_delete_indices(store):
    q = store.queue("q", capacity=8)
    for i in range(6):
        q.push(i * 10)
    assert q.read(2) == 20
    assert q.read_latest() == 50
    assert q.read_batch([0, 3, 5]) == [0, 30, 50]
    with pytest.raises(shmstore.NotFoundError):
        q.read_batch([0, 99])  # all or nothing
    assert 1 in q and 99 not in q and "x" not in q
    q.delete(1)
    assert 1 not in q
    with pytest.raises(shmstore.NotFoundError):
        q.read(1)
    with pytest.raises(shmstore.NotFoundError):
        q.delete(1)
    assert q.indices() == [0, 2, 3, 4, 5]
    assert len(q) == 5
    assert [q.pop() for _ in range(5)] == [0, 20, 30, 40, 50]


def test_delete_held_entry_needs_force(store):
    q = store.queue("q", capacity=4)
    q.push(np.arange(10))
    view = q.read(0, copy=False)
    with pytest.raises(OSError) as e:
        q.delete(0)
    assert e.value.errno == 16  # EBUSY
    q.delete(0, force=True)
    assert (view == np.arange(10)).all()  # still valid
    assert len(q) == 0


def test_full_policies(store):
    e = store.queue("e", capacity=2, full="error")
    e.push(1)
    e.push(2)
    with pytest.raises(shmstore.FullError):
        e.push(3)
    with pytest.raises(shmstore.FullError):
        e.push(3, timeout=5)  # 'error' never waits
    d = store.queue("d", capacity=3, full="drop_oldest")
    for i in range(10):
        d.push(i)
    assert [d.pop() for _ in range(3)] == [7, 8, 9]
    assert d.info()["dropped"] == 7
    b = store.queue("b", capacity=1)
    assert b.full == "block" and b.capacity == 1 and b.slot_size is None
    b.push(0)
    with pytest.raises(shmstore.FullError):
        b.push(1, timeout=0)
    with pytest.raises(TimeoutError):
        b.push(1, timeout=0.02)


def test_blocking_push_and_pop_wake_across_threads(store):
    q = store.queue("q", capacity=1)
    got = []
    t = threading.Thread(target=lambda: got.append(q.pop(timeout=10)))
    t.start()
    time.sleep(0.05)
    q.push("hello")
    t.join(10)
    assert got == ["hello"]
    q.push(1)
    t = threading.Thread(target=lambda: got.append(q.push(2, timeout=10)))
    t.start()
    time.sleep(0.05)
    assert q.pop() == 1
    t.join(10)
    assert got[-1] == 2 and q.pop() == 2  # push returned its index


def test_reserve_zero_copy(store):
    q = store.queue("q", capacity=4)
    with q.reserve(np.uint8, (4, 84, 84)) as arr:
        assert arr.flags.writeable and arr.shape == (4, 84, 84)
        assert len(q) == 0  # invisible until committed
        arr[...] = 3
    assert not arr.flags.writeable
    r = q.reserve("<f4", 5, attrs={"srate": 250.0})
    with r as a:
        a[:] = np.arange(5)
    assert r.index == 1
    with pytest.raises(KeyError):
        with q.reserve(np.float64, (2,)) as bad:
            bad[:] = 1
            raise KeyError("aborted")
    assert len(q) == 2
    x = q.pop()
    assert x.shape == (4, 84, 84) and (x == 3).all()
    assert (q.pop() == np.arange(5, dtype=np.float32)).all()
    del arr, a, bad
    gc.collect()
    assert store.check() == ""
    with pytest.raises(TypeError):
        q.reserve(object, 3).__enter__()


def test_info_and_listing(store):
    q = store.queue("jobs", capacity=8, slot_size=1024, full="drop_oldest")
    q.push(b"x" * 100)
    info = store.info("jobs")
    assert info["kind"] == "queue" and info["count"] == 1 and info["capacity"] == 8
    assert info["slot_size"] == 1024 and info["full"] == "drop_oldest"
    assert info["next_index"] == 1 and info["first_index"] == 0
    assert "jobs" in store.names()
    with pytest.raises(ValueError):
        q.push(b"x" * 1025)  # larger than the slot size
    assert len(q) == 1


def test_cli_shows_queues(store, store_name):
    if not os.path.exists(CLI):
        pytest.skip("the CLI is not built")
    q = store.queue("jobs", capacity=8)
    q.push("one")
    q.push("two")
    out = json.loads(subprocess.check_output([CLI, "ls", "--json", store_name]))
    (o,) = [o for o in out["objects"] if o["name"] == "jobs"]
    assert o["kind"] == "queue" and o["count"] == 2 and o["capacity"] == 8
    assert subprocess.check_output([CLI, "cat", f"{store_name}/jobs"]).strip() == b"two"
    text = subprocess.check_output([CLI, "info", f"{store_name}/jobs"]).decode()
    assert "entries      2 of 8" in text
    subprocess.check_call([CLI, "check", store_name], stdout=subprocess.DEVNULL)


def test_errors(store):
    with pytest.raises(shmstore.NotFoundError):
        store.queue("none", create=False)
    store.queue("q")
    with pytest.raises(FileExistsError):
        store.queue("q", exclusive=True)
    with pytest.raises(ValueError):
        store.queue("x", full="sometimes")
    with pytest.raises(ValueError):
        store.queue("x", capacity=0)
    with pytest.raises(TypeError):
        store.queue(3)
    store.put("val", 1)
    with pytest.raises(TypeError):
        store.queue("val")
    with pytest.raises(TypeError):
        store.value("q").get()
    q = store.queue("q")
    with pytest.raises(TypeError):
        q.push(np.array([object()], dtype=object))
    assert len(q) == 0  # nothing left behind
    with pytest.raises(ValueError):
        q.pop(timeout=-1)
    store.delete("q")
    with pytest.raises(shmstore.StaleError):
        q.push(1)
    with pytest.raises(shmstore.StaleError):
        q.pop(timeout=0)
    q.close()
    q.close()
    with pytest.raises(ValueError):
        q.push(1)


def test_pickled_queue_handle(store):
    import pickle
    q = store.queue("q", capacity=4)
    q2 = pickle.loads(pickle.dumps(q))
    q.push(5)
    assert q2.pop() == 5


# ---- processes ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes_exactly_once(store, store_name, method):
    ctx = mp.get_context(method)
    store.queue("work", capacity=32)
    n_prod, n_cons, per = 4, 4, 300
    results = ctx.Queue()
    procs = [ctx.Process(target=hq.producer, args=(store_name, "work", p, per))
             for p in range(n_prod)]
    procs += [ctx.Process(target=hq.consumer, args=(store_name, "work", results))
              for _ in range(n_cons)]
    for p in procs:
        p.start()
    for p in procs[:n_prod]:
        p.join(60)
        assert p.exitcode == 0
    q = store.queue("work")
    for _ in range(n_cons):
        q.push(None)  # one stop sentinel per consumer
    seen = []
    for _ in range(n_cons):
        seen += results.get(timeout=60)
    for p in procs[n_prod:]:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(seen) == sorted((p, i) for p in range(n_prod) for i in range(per))


def test_sixty_four_processes(store, store_name):
    """SMOS claims 64+ concurrent processes: 32 producers and 32 consumers."""
    ctx = mp.get_context("fork")
    store.queue("many", capacity=64)
    results = ctx.Queue()
    n, per = 32, 50
    procs = [ctx.Process(target=hq.producer, args=(store_name, "many", p, per)) for p in range(n)]
    procs += [ctx.Process(target=hq.consumer, args=(store_name, "many", results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs[:n]:
        p.join(120)
        assert p.exitcode == 0
    q = store.queue("many")
    for _ in range(n):
        q.push(None)
    seen = []
    for _ in range(n):
        seen += results.get(timeout=120)
    for p in procs[n:]:
        p.join(120)
        assert p.exitcode == 0
    assert len(seen) == n * per and len(set(seen)) == n * per


def test_independent_program(store, store_name):
    q = store.queue("inbox", capacity=8)
    code = ("import sys, numpy as np, shmstore\n"
            "s = shmstore.Store(sys.argv[1], create=False)\n"
            "q = s.queue('inbox', create=False)\n"
            "x = q.pop(timeout=10)\n"
            "q.push({'echo': x * 2, 'pid': 1})\n")
    p = subprocess.Popen([sys.executable, "-c", code, store_name])
    q.push(np.arange(4))
    p.wait(30)
    assert p.returncode == 0
    deadline = time.monotonic() + 10
    while len(q) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (q.pop(timeout=10)["echo"] == np.arange(4) * 2).all()


def test_killed_consumer_leaves_nothing_stuck(store, store_name):
    ctx = mp.get_context("fork")
    q = store.queue("q", capacity=8)
    for i in range(4):
        q.push(np.full(1000, i))
    ready = ctx.Event()
    p = ctx.Process(target=hq.hold_views, args=(store_name, "q", ready))
    p.start()
    assert ready.wait(10)
    os.kill(p.pid, 9)
    p.join(10)
    store.gc()
    # The two entries it popped are gone with it; the rest is there and nothing is held.
    assert len(q) == 2 and q.info()["pinned"] == 0
    assert (q.pop(timeout=0) == 2).all()
    assert store.check() == ""


def test_push_pop_read_argument_forms(store):
    """push, pop and read take their arguments without a tuple or dict (METH_FASTCALL):
    every form Python allows still works, and every wrong one is a TypeError."""
    q = store.queue("argforms", capacity=8)
    i = q.push((1, 2.5, "step"))
    j = q.push(obj=np.arange(3.0), timeout=1.0)
    k = q.push(b"x", None, attrs={"a": 1})
    assert q.read(i) == (1, 2.5, "step") and q.read(index=i, copy=True) == (1, 2.5, "step")
    a = q.read(j, copy=False)
    assert not a.flags.writeable and np.array_equal(a, np.arange(3.0))
    del a
    assert q.read(k, copy=0) == b"x"
    assert q.pop() == (1, 2.5, "step")
    assert np.array_equal(q.pop(0, copy=False), np.arange(3.0))
    assert q.pop(timeout=0.5) == b"x"
    with pytest.raises(TimeoutError):
        q.pop(timeout=0)
    for bad in (lambda: q.push(), lambda: q.push(1, None, {}), lambda: q.push(1, attr=1),
                lambda: q.push(1, obj=2), lambda: q.pop(1, True), lambda: q.pop(copyy=True),
                lambda: q.read(), lambda: q.read("0"), lambda: q.read(0, True),
                lambda: q.read(0, index=0)):
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(shmstore.NotFoundError):
        q.read(i)
