"""shmstore.compat.smos: the SMOS README's examples as written, its Client API with SMOS's
return tuples and statuses, one test per SMOS bug showing it does not happen, and
fork / spawn / independent programs."""
import gc
import multiprocessing as mp
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import helpers_smos as hs
import shmstore
from conftest import unique
from shmstore.compat import smos as SMOS

E = SMOS.SMOS_exceptions
OK, FAIL, DENIED = SMOS.SMOS_SUCCESS, SMOS.SMOS_FAIL, SMOS.SMOS_PERMISSION_DENIED


@pytest.fixture
def prefix(monkeypatch):
    """A store-name prefix of this test's own (children inherit it); every store made
    with it is checked and unlinked afterwards."""
    p = unique("t_smos")
    monkeypatch.setenv("SHMSTORE_SMOS_STORE", p)
    yield p
    gc.collect()
    for name in shmstore.list_stores():
        if name.startswith(p):
            with shmstore.Store(name, create=False) as s:
                s.gc()
                report = s.check()
            shmstore.unlink(name)
            assert report == "", report


@pytest.fixture
def conn(prefix):
    return SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"some_key")


@pytest.fixture
def client(conn):
    return SMOS.Client(conn)


def run_program(code, *args, timeout=60):
    """Runs `code` as an independent program; returns its stdout (it must succeed)."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


# ---- the README's examples, as written (import SMOS -> the compat module) -----------------

README_SERVER = """
    from shmstore.compat import smos as SMOS
    import time

    try:
        server = SMOS.Server(SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"some_key"))
        server.start()
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        server.stop()
"""
README_SEND = """
    from shmstore.compat import smos as SMOS

    client = SMOS.Client(SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"some_key"))
    client.put(name="test_obj", data="Hello World!")
"""
README_READ = """
    from shmstore.compat import smos as SMOS

    client = SMOS.Client(SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"some_key"))
    msg = client.get(name="test_obj")
    print(msg)
"""
README_REMOVE = """
    from shmstore.compat import smos as SMOS

    client = SMOS.Client(SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"some_key"))
    client.remove_object(name="test_obj")
"""


def test_smos_readme_hello_world_as_written(conn):
    """Steps 1-4 of the README, each its own program; the server stops on Ctrl-C."""
    name = SMOS.store_name(conn)
    watch = shmstore.Store(name)
    started = watch.value("smos.server")  # published by server.start()
    server = subprocess.Popen([sys.executable, "-c", textwrap.dedent(README_SERVER)],
                              stderr=subprocess.PIPE, text=True)
    try:
        started.wait(after=0, timeout=30)
        run_program(README_SEND)
        assert run_program(README_READ) == "Hello World!\n"
        assert run_program(README_READ) == "Hello World!\n"  # read many times
        run_program(README_REMOVE)
        assert not [n for n in watch.names() if n.startswith("smos.q/")]
        server.send_signal(signal.SIGINT)  # Ctrl-C: KeyboardInterrupt -> server.stop()
        assert server.wait(30) == 0, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert name not in shmstore.list_stores()  # stop() left nothing in /dev/shm
    started.close()
    watch.close()


def test_smos_readme_advanced_workflows(client):
    """The README's workflows: create_object -> entry operations -> remove_object, and
    put -> get, with every fine- and coarse-grained entry operation it lists."""
    assert client.create_object(name="obj", max_capacity=8, track_count=2,
                                block_size=[4 * 84 * 84, 256], track_name=["obs", "info"]) == OK
    # create procedure: create_entry -> open_shm -> commit_entry
    st, handle = client.create_entry(name="obj", dtype=[np.uint8, None],
                                     shape=[(4, 84, 84), None], is_numpy=[True, False])
    assert st == OK and handle.track_count == 2
    st, (obs, info) = client.open_shm(object_handle=handle)
    assert st == OK and obs.shape == (4, 84, 84) and obs.flags.writeable
    obs[...] = 3
    stream = SMOS.serialize({"reward": 1.0})
    info[:len(stream)] = stream
    assert client.get_entry_count(name="obj") == (OK, 0)  # invisible until committed
    assert client.commit_entry(object_handle=handle) == (OK, 0)
    assert client.get_entry_count(name="obj") == (OK, 1)
    # r/w procedure: open_entry -> open_shm -> release_entry
    st, handle = client.open_entry(name="obj", entry_idx=0)
    assert st == OK and [c.track_name for c in handle.entry_config_list] == ["obj:obs", "obj:info"]
    st, (obs, info) = client.open_shm(object_handle=handle)
    assert (obs == 3).all() and SMOS.deserialize(info) == {"reward": 1.0}
    assert client.release_entry(object_handle=handle) == OK
    # write process: push_to_object
    for i in range(1, 4):
        assert client.push_to_object(name="obj", data=[np.full((4, 84, 84), i, np.uint8),
                                                       {"reward": float(i)}]) == (OK, i)
    # read_from_object / read_latest_from_object -> release_entry
    st, handle, (frame, meta) = client.read_from_object(name="obj", entry_idx=2)
    assert st == OK and (frame == 2).all() and meta == {"reward": 2.0}
    assert client.release_entry(object_handle=handle) == OK
    st, handle, (frame, meta) = client.read_latest_from_object(name="obj")
    assert st == OK and handle.entry_idx == 3 and meta == {"reward": 3.0}
    assert client.release_entry(object_handle=handle) == OK
    # batch_read_from_object -> batch_release_entry
    st, handles, objs = client.batch_read_from_object(name="obj", entry_idx_batch=[0, 2, 3])
    assert st == OK and [o[1]["reward"] for o in objs] == [1.0, 2.0, 3.0]
    assert client.batch_release_entry(object_handle_batch=handles) == [OK, OK, OK]
    # delete procedure: delete_entry. Arrays still referenced hold their entry (`objs`
    # holds entry 2): drop them first, or the delete is SMOS_PERMISSION_DENIED.
    assert client.delete_entry(name="obj", entry_idx=2) == DENIED
    del objs, frame, meta, obs, info
    assert client.delete_entry(name="obj", entry_idx=2) == OK
    # pop_from_object -> free_handle (oldest first; the deleted entry is skipped)
    popped = []
    while True:
        st, handle, obj = client.pop_from_object(name="obj")
        if st != OK:
            break
        popped.append(obj[1]["reward"])
        assert client.free_handle(object_handle=handle) == OK
    assert st == FAIL and popped == [1.0, 1.0, 3.0]  # entries 0, 1 and 3
    assert client.remove_object(name="obj") == OK
    # workflow 2: put -> (multiple) get
    assert client.put(name="msg", data=np.arange(6).reshape(2, 3)) == OK
    for _ in range(3):
        assert np.array_equal(client.get(name="msg"), np.arange(6).reshape(2, 3))
    assert client.remove_object(name="msg") == OK


def test_smos_pop_order_skips_deleted(client):
    client.create_object("q", 8, 1, 64)
    for i in range(4):
        client.push_to_object("q", i)
    assert client.delete_entry("q", 1) == OK
    got = []
    while True:
        st, handle, obj = client.pop_from_object("q")
        if st != OK:
            break
        got.append(obj)
        client.free_handle(handle)
    assert got == [0, 2, 3]


# ---- API details ----------------------------------------------------------------------------

def test_smos_put_get_as_list_redundancy_multitrack(client):
    # One entry of two tracks (a list without as_list is one entry, one track per element).
    data = [np.ones(3), np.zeros((2, 2), np.int16)]
    assert client.put("a", data) == OK
    got = client.get("a")
    assert isinstance(got, list) and len(got) == 2 and got[1].dtype == np.int16
    assert got[0].flags.writeable and got[0].flags.owndata  # get() copies
    assert len(data) == 2 and isinstance(data[0], np.ndarray)  # the caller's list unchanged
    # as_list: one entry per element, exactly sized (no redundancy: the object is full)
    assert client.put("b", [np.ones(3), "s", 5], as_list=True) == OK
    assert client.get_entry_count("b") == (OK, 3)
    got = client.get("b")
    assert np.array_equal(got[0], np.ones(3)) and got[1:] == ["s", 5]
    assert client.push_to_object("b", "more") == (FAIL, None)
    # multi-track entries with redundancy: room for two more
    assert client.put("c", [[np.ones(2), 1], [np.zeros(2), 2]], as_list=True, redundancy=2) == OK
    assert client.push_to_object("c", [np.ones(2), 3]) == (OK, 2)
    assert client.push_to_object("c", [np.ones(2), 4]) == (OK, 3)
    assert client.push_to_object("c", [np.ones(2), 5]) == (FAIL, None)
    got = client.get("c", entry_idx_list=[1, 99])
    assert got[1] is None and np.array_equal(got[0][0], np.zeros(2)) and got[0][1] == 2
    assert client.get("c", entry_idx_list=[3])[1] == 4  # one entry: the object itself
    with pytest.raises(E.SMOSDimensionMismatch):
        client.put("d", [[1], [1, 2]], as_list=True)
    with pytest.raises(E.SMOSObjectNotFoundError):
        client.get("d")  # nothing was created
    with pytest.raises(E.SMOSDimensionMismatch):
        client.push_to_object("c", [np.ones(2)])
    with pytest.raises(E.SMOSObjectExistError):
        client.put("a", 1)


def test_smos_get_of_many_entries(client):
    """get() copies entry by entry, as SMOS did: more entries than a process may hold
    views of at once (about 768) are fine."""
    data = [np.full(4, i) for i in range(2000)]
    assert client.put("many", data, as_list=True) == OK
    got = client.get("many")
    assert len(got) == 2000 and all(np.array_equal(g, d) for g, d in zip(got, data))


def test_smos_zero_copy_numpy(client):
    client.create_object("z", 4, 2, [8 * 1000, 8 * 1000])
    st, handle = client.create_entry("z", [np.float64, np.int64], [(1000,), (10, 100)],
                                     [True, True])
    _, (a, b) = client.open_shm(handle)
    a[:] = 1.5
    b[:] = 7
    assert client.commit_entry(handle) == (OK, 0)
    assert not a.flags.writeable and not b.flags.writeable  # published: read-only
    st, h1, (x1, y1) = client.read_from_object("z", 0)
    st, h2, (x2, y2) = client.read_from_object("z", 0)
    # the writer's buffer, and every reader's array, are the same shared bytes
    assert np.shares_memory(x1, x2) and np.shares_memory(a, x1) and np.shares_memory(b, y2)
    assert not x1.flags.writeable and (y1 == 7).all() and y1.shape == (10, 100)
    client.push_to_object("z", [np.arange(1000.0), np.arange(1000).reshape(10, 100)])
    st, h3, (p, q) = client.read_from_object("z", 1)
    st, h4, (p2, _) = client.pop_from_object("z")  # the oldest: entry 0
    assert np.shares_memory(p2, x1)
    st, hs, objs = client.batch_read_from_object("z", [1])
    assert np.shares_memory(objs[0][0], p)
    for h in (h1, h2, h3):
        client.release_entry(h)
    client.batch_release_entry(hs)
    client.free_handle(h4)


def test_smos_pickle_for_other_objects(client):
    point = hs.Point(1, 2)
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    objs = np.array([{"a": 1}, None], dtype=object)
    big = np.arange(4, dtype=">i4")
    client.put("p", [point, masked, objs, big, {"nested": np.ones(2)}, "text", None], as_list=True)
    got = client.get("p")
    assert got[0] == point and isinstance(got[1], np.ma.MaskedArray)
    assert got[1].mask.tolist() == [False, True, False]
    assert got[2].dtype == object and got[2][0] == {"a": 1}
    assert np.array_equal(got[3], big)  # native byte order, same values
    assert np.array_equal(got[4]["nested"], np.ones(2)) and got[5:] == ["text", None]
    assert SMOS.deserialize(SMOS.serialize(point)) == point
    assert SMOS.SMOS_utils.deserialize_list(SMOS.SMOS_utils.serialize_list([1, "a"])) == [1, "a"]


def test_smos_statuses(client, conn):
    client.create_object("s", 2, 1, 64)
    assert client.read_from_object("s", 0) == (FAIL, None, None)
    assert client.open_entry("s", 5) == (FAIL, None)
    assert client.read_latest_from_object("s") == (FAIL, None, None)
    assert client.pop_from_object("s") == (FAIL, None, None)
    assert client.delete_entry("s", 0) == FAIL
    assert client.read_from_object("s", -1) == (FAIL, None, None)
    assert client.read_from_object("s", "x") == (FAIL, None, None)
    assert client.push_to_object("s", 0) == (OK, 0)
    assert client.batch_read_from_object("s", [0, 1]) == (FAIL, None, None)  # all or none
    # an open handle makes the entry held: delete is denied unless forced
    st, handle = client.open_entry("s", 0)
    assert client.delete_entry("s", 0) == DENIED
    assert client.release_entry(handle) == OK
    with pytest.raises(E.SMOSReadRefDoubleRelease):
        client.release_entry(handle)
    del handle
    assert client.delete_entry("s", 0) == OK
    assert client.push_to_object("s", 1) == (OK, 1)
    st, handle = client.open_entry("s", 1)
    assert client.delete_entry("s", 1, force_delete=True) == OK
    assert client.release_entry(handle) == FAIL  # its entry was deleted meanwhile
    # full: create_entry and push_to_object fail; a commit finding it full fails too
    client.create_object("f", 2, 1, 64)
    assert client.push_to_object("f", 2) == (OK, 0)
    st, late = client.create_entry("f", None, None, False)
    assert st == OK
    assert client.push_to_object("f", 3) == (OK, 1)
    assert client.push_to_object("f", 4) == (FAIL, None)
    assert client.create_entry("f", None, None, False) == (FAIL, None)
    assert client.commit_entry(late) == (FAIL, None)
    with pytest.raises(E.SMOSEntryUnallocated):
        client.commit_entry(late)
    st, handle, obj = client.pop_from_object("f")
    assert (st, obj) == (OK, 2)
    assert client.release_entry(handle) == FAIL  # a popped handle is freed, not released
    assert client.free_handle(handle) == OK
    with pytest.raises(E.SMOSBlockDoubleRelease):
        client.free_handle(handle)
    # handles of two objects in one batch
    client.create_object("t", 2, 1, 64)
    client.push_to_object("t", 0)
    _, h1, _ = client.read_from_object("f", 1)
    _, h2, _ = client.read_from_object("t", 0)
    with pytest.raises(E.SMOSInputTypeError):
        client.batch_release_entry([h1, h2])
    assert client.batch_release_entry([h1]) == [OK] and client.batch_release_entry([]) == []
    with pytest.raises(E.SMOSDimensionMismatch):
        client.create_object("u", 2, 2, [64])
    with pytest.raises(E.SMOSDimensionMismatch):
        client.create_entry("t", [np.uint8, np.uint8], [(1,), (1,)], [True, True])


def test_smos_deleted_entries_make_room_once_popped_past(client):
    """A deleted entry's place in the ring comes back when a pop passes it (the module
    doc: SMOS gave it back at once)."""
    client.create_object("h", 2, 1, 64)
    assert client.push_to_object("h", 0) == (OK, 0)
    assert client.push_to_object("h", 1) == (OK, 1)
    assert client.delete_entry("h", 0) == OK
    assert client.get_entry_count("h") == (OK, 1)
    st, handle, obj = client.pop_from_object("h")  # skips the hole, takes entry 1
    assert (st, obj) == (OK, 1)
    client.free_handle(handle)
    assert client.push_to_object("h", 2) == (OK, 2)
    assert client.push_to_object("h", 3) == (OK, 3)
    assert client.push_to_object("h", 4) == (FAIL, None)


def test_smos_pop_while_a_reader_holds_the_entry(client):
    """SMOS refused (PERMISSION_DENIED) to pop an entry with readers; here the readers'
    views stay valid, so the pop goes ahead and the reader sees its data unchanged."""
    client.create_object("r", 4, 1, 800)
    client.push_to_object("r", np.arange(100.0))
    st, handle, arr = client.read_from_object("r", 0)
    st, ph, popped = client.pop_from_object("r", force_pop=False)
    assert st == OK and np.shares_memory(arr, popped)
    client.free_handle(ph)
    for i in range(8):  # reuse the memory many times
        client.push_to_object("r", np.full(100, float(i)))
        client.free_handle(client.pop_from_object("r")[1])
    assert np.array_equal(arr, np.arange(100.0))
    assert client.release_entry(handle) == FAIL  # popped: no longer in the object


def test_smos_exceptions_utils_and_constants():
    assert (SMOS.SMOS_SUCCESS, SMOS.SMOS_FAIL, SMOS.SMOS_PERMISSION_DENIED) == (0, -1, 1)
    assert SMOS.SMOS_constants.SMOS_MAX == sys.maxsize
    smos_names = ["SMOSPortBusy", "SMOSInputTypeError", "SMOSEntryUnallocated",
                  "SMOSReadRefDoubleRelease", "SMOSBlockDoubleRelease", "SMOSTrackMismatch",
                  "SMOSDimensionMismatch", "SMOSTrackUnaligned", "SMOSMappingError",
                  "SMOSObjectExistError", "SMOSObjectNotFoundError", "SMOSServerDropOut"]
    for n in smos_names:
        cls = getattr(SMOS.SMOS_exceptions, n)
        assert issubclass(cls, Exception) and cls.__name__ == n
        assert pickle.loads(pickle.dumps(cls("m"))).args == ("m",)
    assert issubclass(E.SMOSBlockOverflow, (E.SMOSDimensionMismatch, ValueError))
    from shmstore.compat.smos.SMOS_exceptions import SMOSObjectNotFoundError
    from shmstore.compat.smos.SMOS_utils import ObjectHandle
    assert SMOSObjectNotFoundError is E.SMOSObjectNotFoundError
    h = ObjectHandle()
    assert (h.name, h.entry_idx, h.track_count, h.entry_config_list, h.shm_list, h.buf_list) \
        == (None, None, None, None, [], [])
    cfg = SMOS.SMOS_utils.EntryConfig(dtype=np.float32, shape=(2,), is_numpy=True)
    assert (cfg.track_name, cfg.mapped_block_idx, cfg.pending_readers) == (None, -1, 0)
    c = SMOS.SMOS_utils.ConnectionDescriptor(ip="localhost", port=1, authkey=b"k")
    assert (c.ip, c.port, c.authkey) == ("localhost", 1, b"k")
    assert SMOS.SMOS_utils.safe_execute(max, (1, 2)) == 2


def test_smos_rw_lock_across_fork():
    ctx = mp.get_context("fork")
    lock = SMOS.SMOS_utils.RWLock()
    flag = ctx.RawValue("i", 0)
    out = ctx.Queue()
    lock.writer_enter()
    p = ctx.Process(target=hs.rw_lock_reader, args=(lock, flag, out))
    p.start()
    flag.value = 1  # the reader cannot get in before the writer leaves
    lock.writer_leave()
    assert out.get(timeout=30) == 1
    p.join(30)
    assert p.exitcode == 0
    lock.reader_enter()
    lock.reader_enter()
    lock.reader_leave()
    lock.reader_leave()


def test_smos_wrong_authkey_refused(conn, client):
    client.put("k", 1)
    bad = SMOS.ConnectionDescriptor(ip=conn.ip, port=conn.port, authkey=b"other")
    with pytest.raises(mp.AuthenticationError):
        SMOS.Client(bad)
    with pytest.raises(mp.AuthenticationError):
        SMOS.Server(bad).start()
    # loopback aliases are the same connection; the right key still works
    same = SMOS.ConnectionDescriptor(ip="127.0.0.1", port=conn.port, authkey=b"some_key")
    assert SMOS.Client(same).get("k") == 1


def test_smos_server_stop_removes_everything(conn, client):
    server = SMOS.Server(conn)
    assert server.start() == OK and server.address() is conn
    client.put("x", np.arange(3))
    _, handle, arr = client.read_from_object("x", 0)
    assert server.stop() == OK
    assert SMOS.store_name(conn) not in shmstore.list_stores()
    assert np.array_equal(arr, np.arange(3))  # handed-out arrays stay valid
    with pytest.raises(E.SMOSServerDropOut):
        client.get("x")
    with pytest.raises(E.SMOSServerDropOut):
        client.create_object("y", 1, 1, 8)
    fresh = SMOS.Client(conn)  # a new client starts a new store
    with pytest.raises(E.SMOSObjectNotFoundError):
        fresh.get("x")
    fresh.put("x", 5)
    assert fresh.get("x") == 5
    del handle, arr
    default = SMOS.Server()  # no descriptor: the first free port from 5000
    assert default.address().port == 5000 and default.address().authkey == b"antony"


def test_smos_client_pickles_by_connection(client):
    client.put("v", [1, 2], as_list=True)
    again = pickle.loads(pickle.dumps(client))
    assert again.get("v") == [1, 2] and again.connection.port == client.connection.port


# ---- SMOS's bugs do not happen -------------------------------------------------------------

def test_smos_missing_or_duplicate_name_does_not_deadlock(conn, client):
    """SMOS raised these inside its server lock and the next call hung for ever."""
    for call in (lambda: client.get("nope"), lambda: client.remove_object("nope"),
                 lambda: client.push_to_object("nope", 1), lambda: client.pop_from_object("nope"),
                 lambda: client.read_from_object("nope", 0), lambda: client.open_entry("nope", 0),
                 lambda: client.read_latest_from_object("nope"),
                 lambda: client.batch_read_from_object("nope", [0]),
                 lambda: client.delete_entry("nope", 0), lambda: client.get_entry_count("nope"),
                 lambda: client.create_entry("nope", None, None, False)):
        with pytest.raises(E.SMOSObjectNotFoundError):
            call()
    client.put("here", "one")
    with pytest.raises(E.SMOSObjectExistError):
        client.put("here", "two")
    with pytest.raises(E.SMOSObjectExistError):
        client.create_object("here", 1, 1, 8)
    assert client.get("here") == "one"  # and the store keeps working, here...
    ctx = mp.get_context("fork")
    done = ctx.Event()
    p = ctx.Process(target=hs.errors_then_work, args=(conn, done))  # ...and for others
    p.start()
    assert done.wait(30), "a call hung after an error"
    p.join(30)
    assert p.exitcode == 0
    assert client.get("dup") == "after the errors"


def test_smos_oversize_refused_before_allocation(client):
    """SMOS wrote past a block (into the next entry) or leaked the block it took."""
    client.create_object("o", 4, 2, [64, 64])
    assert client.push_to_object("o", [np.arange(8, dtype=np.int64), "neighbour"]) == (OK, 0)
    store = client.store
    used = store.stat()["used"]
    with pytest.raises(E.SMOSBlockOverflow):
        client.push_to_object("o", [np.zeros(100), "x"])  # 800 bytes > 64
    with pytest.raises(E.SMOSBlockOverflow):
        client.push_to_object("o", [np.zeros(2), "x" * 1000])  # its pickle > 64
    with pytest.raises(ValueError):  # a SMOSBlockOverflow is a ValueError too
        client.create_entry("o", [np.float64, None], [(100,), None], [True, False])
    gc.collect()
    assert store.stat()["used"] == used  # nothing allocated, nothing leaked
    assert client.get_entry_count("o") == (OK, 1)
    arr, text = client.get("o")
    assert np.array_equal(arr, np.arange(8)) and text == "neighbour"  # neighbour intact
    st, handle = client.create_entry("o", [np.int64, None], [(8,), None], [True, False])
    _, (a, buf) = client.open_shm(handle)
    with pytest.raises((ValueError, IndexError)):
        buf[0:65] = b"x" * 65  # a buffer track is exactly its block: no way past it
    a[:] = 1
    buf[0:4] = SMOS.serialize(1)[:4]
    assert client.commit_entry(handle) == (OK, 1)
    assert store.check() == ""


def test_smos_use_after_release_is_safe(client):
    """SMOS's arrays pointed into blocks that release / free / remove recycled: garbage
    or a segfault. Here an array keeps its entry's bytes alive and unchanged."""
    client.create_object("u", 2, 1, 8 * 10000)
    client.push_to_object("u", np.arange(10000.0))
    client.push_to_object("u", np.arange(10000.0) * 2)
    _, handle, read = client.read_from_object("u", 0)
    assert client.release_entry(handle) == OK
    _, handle, popped = client.pop_from_object("u")
    assert client.free_handle(handle) == OK
    _, handle, latest = client.read_latest_from_object("u")
    assert client.delete_entry("u", 1, force_delete=True) == OK
    assert client.remove_object("u") == OK
    client.create_object("u", 2, 1, 8 * 10000)  # new data in the freed memory
    for i in range(6):
        client.push_to_object("u", np.full(10000, -1.0))
        client.free_handle(client.pop_from_object("u")[1])
    assert np.array_equal(read, np.arange(10000.0)) and np.array_equal(popped, read)
    assert np.array_equal(latest, np.arange(10000.0) * 2)
    assert client.release_entry(handle) == FAIL  # its object was removed
    with pytest.raises(ValueError):
        read[0] = 1  # read-only: committed entries never change
    del read, popped, latest
    gc.collect()
    assert client.store.check() == ""


def test_smos_dropped_handles_release_their_entries(client):
    """A handle nobody released (SMOS: busy for ever) is released when collected; an
    uncommitted create_entry handle that is dropped frees its block."""
    client.create_object("d", 4, 1, 1 << 20)
    client.push_to_object("d", np.zeros(10))
    used = client.store.stat()["used"]
    _, handle = client.open_entry("d", 0)
    assert client.delete_entry("d", 0) == DENIED
    del handle
    gc.collect()
    st, handle = client.create_entry("d", np.uint8, (1 << 20,), True)
    assert client.store.stat()["used"] > used
    del handle
    gc.collect()
    assert client.store.stat()["used"] == used and client.get_entry_count("d") == (OK, 1)
    assert client.delete_entry("d", 0) == OK


def test_smos_killed_reader_leaves_nothing_busy(conn, client):
    client.create_object("k", 8, 1, 8 * 1000)
    for i in range(6):
        client.push_to_object("k", np.full(1000, float(i)))
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=hs.hold_entries, args=(conn, "k", ready))
    p.start()
    assert ready.wait(30)
    assert client.delete_entry("k", 1) == DENIED  # the child holds it
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    client.store.gc()
    for i in (1, 2, 3):  # no reader is left: deleted without force
        assert client.delete_entry("k", i) == OK
    assert client.get_entry_count("k") == (OK, 2)  # entry 0 was popped by the child
    assert client.store.info("smos.q/k")["pinned"] == 0
    assert client.store.check() == ""


def test_smos_killed_writer_leaves_nothing(conn, client):
    client.create_object("w", 4, 1, 1 << 20)
    client.push_to_object("w", np.zeros(4, np.uint8))
    used = client.store.stat()["used"]
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=hs.write_then_wait, args=(conn, "w", ready))
    p.start()
    assert ready.wait(30)
    assert client.store.stat()["used"] >= used + (1 << 20)  # its block is taken
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    client.store.gc()
    assert client.store.stat()["used"] == used  # ... and freed: no leak
    assert client.get_entry_count("w") == (OK, 1)  # nothing half-visible
    assert client.push_to_object("w", np.ones(4, np.uint8)) == (OK, 1)  # no index used up
    assert client.store.check() == ""


RESOURCE_TRACKER_PROGRAM = """
    import multiprocessing as mp
    from multiprocessing import resource_tracker, shared_memory
    import numpy as np
    before = (resource_tracker.register, resource_tracker.unregister,
              dict(resource_tracker._CLEANUP_FUNCS))
    from shmstore.compat import smos as SMOS
    conn = SMOS.ConnectionDescriptor(ip="localhost", port=4242, authkey=b"k")
    server = SMOS.Server(conn)
    server.start()
    client = SMOS.Client(conn)
    client.put("x", np.arange(3))
    assert np.array_equal(client.get("x"), np.arange(3))
    SMOS.SMOS_utils.remove_shm_from_resource_tracker()
    after = (resource_tracker.register, resource_tracker.unregister,
             dict(resource_tracker._CLEANUP_FUNCS))
    assert after[0] is before[0] and after[1] is before[1] and after[2] == before[2]
    # multiprocessing keeps working: a Lock across fork, SharedMemory with its tracker
    ctx = mp.get_context("fork")
    lock, out = ctx.Lock(), ctx.Queue()
    def child():
        out.put(lock.acquire(block=False))
        out.put(lock.acquire(timeout=30))
        lock.release()
    lock.acquire()
    p = ctx.Process(target=child)
    p.start()
    assert out.get(timeout=30) is False
    lock.release()
    assert out.get(timeout=30) is True
    p.join(30)
    assert p.exitcode == 0
    shm = shared_memory.SharedMemory(create=True, size=4096)
    shm.close()
    shm.unlink()
    server.stop()
    print("ok")
"""


def test_smos_resource_tracker_untouched(prefix):
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(RESOURCE_TRACKER_PROGRAM)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    assert "resource_tracker" not in p.stderr and "leaked" not in p.stderr, p.stderr


def test_smos_nothing_listens(prefix):
    """SMOS served pickled calls over TCP; here there is no server process or socket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = threading.active_count()
    conn = SMOS.ConnectionDescriptor(ip="localhost", port=port, authkey=b"k")
    server = SMOS.Server(conn)
    server.start()
    SMOS.Client(conn).put("x", 1)
    assert mp.active_children() == [] and threading.active_count() == threads
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # refused: nothing listens
    assert SMOS.Client(conn).get("x") == 1
    server.stop()


# ---- processes --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_smos_processes(conn, client, method):
    ctx = mp.get_context(method)
    client.create_object("work", 64, 2, [64 * 64 * 4, 256])
    # a child produces, the parent consumes
    p = ctx.Process(target=hs.producer, args=(conn, "work", 20))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    got = []
    while True:
        st, handle, obj = client.pop_from_object("work")
        if st != OK:
            break
        got.append((float(obj[0].mean()), obj[1].x))
        client.free_handle(handle)
    assert got == [(float(i), i) for i in range(20)]
    # the parent produces, a child consumes
    for i in range(10):
        client.push_to_object("work", [np.full((64, 64), i, np.float32), hs.Point(i, 0)])
    results = ctx.Queue()
    p = ctx.Process(target=hs.consumer, args=(conn, "work", 10, results))
    p.start()
    assert results.get(timeout=60) == [(float(i), i) for i in range(10)]
    p.join(60)
    assert p.exitcode == 0
    # a Client handed to the child (inherited with fork, pickled with spawn)
    client.create_object("vals", 4, 1, 64)
    p = ctx.Process(target=hs.with_pickled_client, args=(client, "vals", 7))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert np.array_equal(client.get("vals"), np.full(8, 7))


def test_smos_independent_programs_zero_copy(client):
    """An unrelated program writes with create_entry (zero copy); another reads."""
    client.create_object("frames", 4, 2, [4 * 84 * 84, 128])
    run_program("""
        import numpy as np
        from shmstore.compat import smos as SMOS
        client = SMOS.Client(SMOS.ConnectionDescriptor(ip="localhost", port=12345,
                                                       authkey=b"some_key"))
        for i in range(3):
            st, h = client.create_entry("frames", [np.uint8, None], [(4, 84, 84), None],
                                        [True, False])
            assert st == SMOS.SMOS_SUCCESS
            _, (frame, info) = client.open_shm(h)
            frame[...] = i
            s = SMOS.serialize({"step": i})
            info[:len(s)] = s
            assert client.commit_entry(h) == (SMOS.SMOS_SUCCESS, i)
    """)
    out = run_program("""
        from shmstore.compat import smos as SMOS
        client = SMOS.Client(SMOS.ConnectionDescriptor(ip="localhost", port=12345,
                                                       authkey=b"some_key"))
        st, handles, objs = client.batch_read_from_object("frames", [0, 1, 2])
        print([(int(f.mean()), info["step"]) for f, info in objs])
        client.batch_release_entry(handles)
    """)
    assert out == "[(0, 0), (1, 1), (2, 2)]\n"
    st, handle, (frame, info) = client.read_latest_from_object("frames")
    assert st == OK and (frame == 2).all() and info == {"step": 2}
    client.release_entry(handle)
