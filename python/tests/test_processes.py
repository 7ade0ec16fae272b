"""Real processes: fork, spawn, forkserver, independent programs, SIGKILL."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import helpers
import shmstore

METHODS = ["fork", "spawn", "forkserver"]


@pytest.mark.parametrize("method", METHODS)
def test_mp_child_puts_parent_gets(store, method):
    ctx = mp.get_context(method)
    p = ctx.Process(target=helpers.child_put, args=(store.name, "from_child", np.arange(10)))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert np.array_equal(store["from_child"], np.arange(10))


@pytest.mark.parametrize("method", METHODS)
def test_mp_store_passed_to_child(store, method):
    """fork: the inherited Store re-attaches in the child; spawn: it pickles by name."""
    store["x"] = {"a": np.ones(3)}
    ctx = mp.get_context(method)
    p = ctx.Process(target=helpers.child_roundtrip_store, args=(store, "x"))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    reply = store["x/reply"]
    assert reply["pid"] != os.getpid() and np.array_equal(reply["seen"]["a"], np.ones(3))
    store["x"] = 2  # the parent's handles still work after the child exited
    assert store["x"] == 2


@pytest.mark.parametrize("method", METHODS)
def test_mp_value_handle_in_child(store, method):
    h = store.value("n")
    h.put(1)
    ctx = mp.get_context(method)
    p = ctx.Process(target=helpers.child_handle, args=(h,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert h.get() == 2 and h.version == 2


def test_fork_raw_child_handles_and_views(store):
    """os.fork(): a view taken before fork stays readable in the child, the Store and a
    Value handle re-open transparently, and the parent's lease/slot are untouched."""
    store["a"] = np.arange(100)
    v = store.view("a")
    h = store.value("a")
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            ok = v.sum() == 4950
            h.put(np.zeros(100, dtype=np.int64))
            store["b"] = 5
            ok = ok and store["b"] == 5 and h.get().sum() == 0
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store["b"] == 5 and h.get().sum() == 0
    assert v.sum() == 4950
    assert store.check() == ""


def test_mp_pool_workers(store):
    store["base"] = 10
    with mp.get_context("fork").Pool(2) as pool:
        pool.starmap(helpers.child_put, [(store.name, f"w{i}", i) for i in range(8)])
    assert [store[f"w{i}"] for i in range(8)] == list(range(8))


def test_independent_program_wait_and_reply(store):
    code = textwrap.dedent(f"""
        import shmstore
        with shmstore.Store({store.name!r}, create=False) as s:
            v = s.wait("ping", after=0, timeout=20)
            s.put("pong", s.get("ping") * 2)
    """)
    p = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.2)
    store["ping"] = 21
    assert p.wait(30) == 0
    assert store["pong"] == 42


def test_waiting_reader_process_sees_versions(store):
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=helpers.child_wait_then_put, args=(store.name, "go", "got"))
    p.start()
    time.sleep(0.3)
    store["go"] = 1
    p.join(30)
    assert p.exitcode == 0 and store["got"] == 1


def test_reader_killed_while_holding_view(store):
    """A reader SIGKILLed while it holds a view never blocks the writer; its lease is
    reclaimed by gc and the store stays consistent."""
    store["big"] = np.zeros((256, 1024), np.uint8)
    code = textwrap.dedent(f"""
        import sys, time, shmstore
        s = shmstore.Store({store.name!r}, create=False)
        views = [s.view("big") for _ in range(5)]
        print("ready", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    for i in range(50):
        store["big"] = np.full((256, 1024), i, np.uint8)
    assert time.monotonic() - t0 < 5, "the writer is not blocked by a reader's views"
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    g = store.gc()
    assert g["dead_procs"] >= 1 and g["leases_dropped"] >= 1
    for i in range(10):
        store["big"] = np.full((256, 1024), i, np.uint8)
    assert store["big"][0, 0] == 9
    assert store.check() == ""


def test_writer_killed_mid_stream_no_torn_data(store):
    """Kill a writer process at random points while readers copy: no reader ever sees
    a torn frame, and the writer lock of the dead writer is recovered."""
    store["f"] = np.zeros(1 << 18, np.uint8)
    code = textwrap.dedent(f"""
        import numpy as np, shmstore
        s = shmstore.Store({store.name!r}, create=False)
        h = s.value("f")
        i = 0
        print("ready", flush=True)
        while True:
            i = (i + 1) % 250
            h.put(np.full(1 << 18, i, np.uint8))
    """)
    h = store.value("f")
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        t_end = time.monotonic() + 0.3
        while time.monotonic() < t_end:
            a = h.get()
            assert a.min() == a.max(), "torn read"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        a = h.get()
        assert a.min() == a.max()
    store.put("f", np.ones(1 << 18, np.uint8))  # the dead writer's lock was recovered
    assert store["f"].sum() == 1 << 18
    store.gc()
    assert store.check() == ""


def test_nothing_unlinked_by_exiting_processes(store):
    for method in ("spawn", "fork"):
        ctx = mp.get_context(method)
        p = ctx.Process(target=helpers.child_put, args=(store.name, f"keep_{method}", 1))
        p.start()
        p.join(30)
        assert p.exitcode == 0
    assert store.name in shmstore.list_stores()
    assert store["keep_spawn"] == 1 and store["keep_fork"] == 1


def test_busy_readers_do_not_block_writer(store):
    frame = np.zeros((480, 848, 3), np.uint8)
    store["frame"] = frame
    ctx = mp.get_context("spawn")
    readers = [ctx.Process(target=helpers.child_reader, args=(store.name, "frame", 300, f"bad{i}"))
               for i in range(2)]
    for r in readers:
        r.start()
    h = store.value("frame")
    for i in range(100):
        h.put(np.full((480, 848, 3), i % 256, np.uint8))
    for r in readers:
        r.join(60)
        assert r.exitcode == 0
    assert store["bad0"] == 0 and store["bad1"] == 0


def _in_fork(fn):
    """Run fn() in an os.fork() child; return its exit code (0 = fn returned True)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 2
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_fork_of_fork_handle_reopens(store):
    """A child re-attaches the Store (by-name call) but not yet a Value handle, then
    forks: in the grandchild the handle pointed at the grandparent's Core while the Store's
    Core (the child's) was just as invalid; re-opening used to fail with RuntimeError."""
    h = store.value("n")
    h.put(1)

    def child():
        assert store["n"] == 1  # re-attaches the Store in the child; h is not touched
        return _in_fork(lambda: (h.put(h.get() + 1), h.get() == 2)[1]) == 0

    assert _in_fork(child) == 0
    assert store["n"] == 2


def test_fork_child_handle_on_deleted_value_is_stale(store):
    """Re-opening a handle after fork used V_CREATE: a value deleted meanwhile was
    silently re-created (empty) in the child instead of raising StaleError."""
    store["gone"] = 1
    h = store.value("gone")
    store.delete("gone")

    def child():
        try:
            h.get()
        except shmstore.StaleError:
            return "gone" not in store
        return False

    assert _in_fork(child) == 0
    assert "gone" not in store


@pytest.mark.parametrize("depth", [1, 2], ids=["child", "grandchild"])
def test_fork_inherited_view_outlives_the_parents_lease(store, depth):
    """A view taken before fork() is leased by the child too (shmstore_view_adopt, run by
    os.fork's after-in-child hook): the parent letting its view go and writing the value
    over and over does not change the child's bytes. Before, the child's array silently
    showed whatever reused the block. depth 2: a grandchild adopts it from the child."""
    frame = np.full((120, 160, 3), 7, np.uint8)
    store["img"] = frame
    arr = store.view("img")
    h = store.value("img")
    ready, go, result = os.pipe(), os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the process that keeps the view
        try:
            if depth == 2 and os.fork() != 0:  # hand the view down once more
                os._exit(0)
            os.write(ready[1], b"r")
            os.read(go[0], 1)
            ok = arr.shape == frame.shape and (arr == 7).all()
            os.write(result[1], b"1" if ok else b"0")
        finally:
            os._exit(0)
    assert os.read(ready[0], 1) == b"r"
    del arr
    for i in range(40):  # every block of the value is reused unless leased
        h.put(np.full(frame.shape, i, np.uint8))
    os.write(go[1], b"g")
    assert os.read(result[0], 1) == b"1", "the child's view changed under it"
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 30
    while sum(p["alive"] for p in store.procs()) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # the grandchild is not ours to wait for
    store.gc()
    assert store.check() == ""
    for fd in ready + go + result:
        os.close(fd)


def test_fork_adoption_attachment_goes_with_the_last_adopted_view(store):
    """The fork hook attaches the child to lease the views it inherited; that attachment
    (a process-table slot) is held by those views and detached with the last of them.
    The child's Store re-attaches on its own."""
    store["img"] = np.arange(1000)
    arr = store.view("img")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            store["from_child"] = int(arr.sum())  # the Store re-attaches in the child
            mine = lambda: sum(p["pid"] == os.getpid() and p["alive"] for p in store.procs())
            with_view = mine()
            del arr  # the last adopted view: its attachment detaches
            os.write(w, b"%d %d" % (with_view, mine()))
            code = 0
        finally:
            os._exit(code)
    n = os.read(r, 16)
    os.waitpid(pid, 0)
    assert n == b"2 1" and store["from_child"] == 499500
    del arr

    pid = os.fork()  # now without inherited views: one slot
    if pid == 0:
        code = 1
        try:
            store["from_child"] = 1
            os.write(w, b"%d" % sum(p["pid"] == os.getpid() for p in store.procs()))
            code = 0
        finally:
            os._exit(code)
    n = os.read(r, 16)
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    assert n == b"1"


def test_fork_inside_write_block_leaves_the_parents_version_alone(store):
    """A child leaving a write block entered before fork() must not copy into the
    parent's locked block (shared memory) nor touch its lock: RuntimeError, and the
    parent still publishes its own change."""
    store["w"] = np.zeros(8)
    ctx = store.write("w", timeout=1)
    arr = ctx.__enter__()
    arr[:] = 1
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            arr[:] = 99
            try:
                ctx.__exit__(None, None, None)
                code = 2
            except RuntimeError as e:
                code = 0 if "before fork()" in str(e) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ctx.__exit__(None, None, None)
    assert np.array_equal(store["w"], np.ones(8))
    assert store.check() == ""
