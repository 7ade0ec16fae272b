"""shmstore.compat.shared_object: the seed's documented examples as written, its API,
and one test per seed bug showing it does not happen."""
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import helpers
import shmstore
from conftest import unique
from shmstore.compat.shared_object import (Pose, SharedDynamicObject, SharedObject,
                                           SharedObjectDefaultDict, signal_process_ready,
                                           start_and_wait_for_process)


@pytest.fixture
def name():
    n = unique("so")
    yield n
    try:
        SharedObject(n).unlink()
    except Exception:
        pass


# ---- the seed's documented examples, as written ------------------------------------------

def test_seed_examples_as_written(name):
    # Creates SharedObject with data
    so = SharedObject("test", data=np.ones((480, 848, 3)))
    # Mounts existing SharedObject
    so = SharedObject("test")
    # Creates a trigger SharedObject (data is None, can be used for joining processes)
    so = SharedObject("trigger")
    so.trigger()  # trigger the SharedObject
    assert so.triggered  # check if triggered

    so = SharedObject("test")
    so.fetch(lambda x: x.sum())  # Apply operation only
    so.fetch(lambda x: x + 1)  # Apply operation only
    so.fetch()  # If different operations need to be applied on the same data
    so.fetch()[..., 0]  # Slice only
    so.fetch(lambda x: x[..., 0].copy()) + 1  # Slice and apply operation
    assert so.fetch(lambda x: x.sum()) == 480 * 848 * 3
    assert (so.fetch(lambda x: x + 1) == 2).all()
    assert so.fetch()[..., 0].shape == (480, 848)
    assert (so.fetch(lambda x: x[..., 0].copy()) + 1 == 2).all()
    SharedObject("test").unlink()
    SharedObject("trigger").unlink()


# ---- API ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [None, True, 3, 2.5, 1 + 1j, "text", b"by\xfftes",
                                  bytearray(b"ba"), np.arange(6, dtype=np.float32).reshape(2, 3),
                                  {"a": 1, "b": np.zeros(2)}, [1, "x"], (1, 2.0), {1, 2}],
                         ids=lambda d: type(d).__name__)
def test_types_roundtrip(name, data):
    so = SharedObject(name, data=data)
    got = SharedObject(name).fetch()
    assert type(got) is type(data)
    if isinstance(data, np.ndarray):
        assert np.array_equal(got, data) and got.dtype == data.dtype
    elif isinstance(data, dict):
        assert got["a"] == 1 and np.array_equal(got["b"], data["b"])
    else:
        assert got == data
    assert so.assign(data) is so


def test_pose(name):
    pose = Pose([1, 2, 3], [0, 1, 0, 0])
    so = SharedObject(name, data=pose)
    got = SharedObject(name).fetch()
    assert isinstance(got, Pose)
    assert np.allclose(got.p, [1, 2, 3]) and np.allclose(got.q, [0, 1, 0, 0])
    so.assign(Pose([4, 5, 6], [1, 0, 0, 0]))
    with pytest.raises(BufferError):
        so.assign(np.zeros(7, np.float32))


def test_assign_errors(name):
    so = SharedObject(name, data=np.zeros((2, 3), np.uint8))
    with pytest.raises(BufferError):
        so.assign(np.zeros((3, 3), np.uint8))  # shape change
    with pytest.raises(BufferError):
        so.assign(np.zeros((2, 3), np.int8))  # dtype change
    with pytest.raises(BufferError):
        so.assign(5)  # type change
    with pytest.raises(TypeError):
        so.assign(object())
    with pytest.raises(TypeError):
        SharedObject(unique("so"), data=object())
    with pytest.raises(TypeError):
        SharedObject(unique("so"), data={"a": object()})
    i = SharedObject(name + "i", data=1)
    with pytest.raises(BufferError):
        i.assign(1.0)
    with pytest.raises(BufferError):
        i.assign(True)
    i.unlink()


def test_dynamic_object_reallocates(name):
    so = SharedDynamicObject(name, data=np.zeros(3))
    so.assign(np.ones((4, 4)))
    assert SharedDynamicObject(name).fetch().shape == (4, 4)
    so.assign("now a string of some length" * 10)
    assert SharedObject(name).fetch().startswith("now a string")
    so.assign(7, reallocate=True)
    assert SharedDynamicObject(name).fetch() == 7


def test_modified_and_triggered(name):
    a = SharedObject(name, data=1)
    b = SharedObject(name)
    assert not b.modified and not b.triggered
    a.assign(2)
    assert not a.modified, "own assigns are not modifications"
    assert b.modified and b.modified, "modified does not consume"
    assert b.fetch() == 2 and not b.modified
    a.trigger()
    assert b.triggered and not b.triggered, "triggered fires once per trigger"
    a.trigger()
    a.trigger()
    assert b.triggered and not b.triggered
    assert a.mtime > 0


def test_close_unlink_reduce_repr(name):
    so = SharedObject(name, data=np.zeros(4))
    r = repr(so)
    assert "SharedObject" in r and name in r and "ndarray" in r
    so2 = pickle.loads(pickle.dumps(so))
    assert np.array_equal(so2.fetch(), np.zeros(4))
    so2.close()
    so.unlink()
    with pytest.raises(LookupError):
        so.fetch()
    assert SharedObject(name).fetch() is None  # mount-or-create: a new trigger object


def test_default_dict(name):
    d = SharedObjectDefaultDict()
    so = d[name]
    assert isinstance(so, SharedObject) and d[name] is so


def test_start_and_wait_for_process():
    for method in ("fork", "spawn"):
        ctx = mp.get_context(method)
        p = ctx.Process(target=helpers.so_child_ready, name=unique("proc"))
        t0 = time.monotonic()
        start_and_wait_for_process(p, timeout=30)
        assert time.monotonic() - t0 < 30
        p.join(10)
        assert p.exitcode == 0
    p = mp.get_context("fork").Process(target=helpers.so_child_exit_without_ready, name=unique("proc"))
    with pytest.raises(RuntimeError):
        start_and_wait_for_process(p, timeout=30)
    p.join()


def test_signal_process_ready_in_main_process():
    signal_process_ready()  # harmless outside a child


def test_fetch_fn_result_never_aliases_shared_memory(name):
    so = SharedObject(name, data=np.arange(10))
    part = so.fetch(lambda x: x[2:5])
    assert part.flags.owndata or part.base is not None and not isinstance(part.base, memoryview)
    so.assign(np.zeros(10, dtype=np.int64))
    assert list(part) == [2, 3, 4]


# ---- the seed's bugs, each shown not to happen ------------------------------------------------

def test_bug_no_writer_starvation(name):
    """Seed: flock readers-writer lock starves the writer while readers keep fetching."""
    SharedObject(name, data=np.zeros((480, 848, 3), np.uint8))
    store_name = os.environ["SHMSTORE_COMPAT_STORE"]
    ctx = mp.get_context("spawn")
    readers = [ctx.Process(target=helpers.child_reader, args=(store_name, name, 400, name + f"/bad{i}"))
               for i in range(3)]
    for r in readers:
        r.start()
    so = SharedObject(name)
    time.sleep(0.3)  # readers are busy
    t0 = time.monotonic()
    worst = 0.0
    for i in range(60):
        t = time.monotonic()
        so.assign(np.full((480, 848, 3), i, np.uint8))
        worst = max(worst, time.monotonic() - t)
    assert worst < 0.5, f"an assign waited {worst:.3f} s behind readers"
    for r in readers:
        r.join(60)
    store = shmstore.Store(store_name)
    assert all(store[name + f"/bad{i}"] == 0 for i in range(3))
    for i in range(3):
        store.delete(name + f"/bad{i}")


def test_bug_no_torn_data_after_writer_crash(name):
    """Seed: a writer killed mid-assign leaves half-written data (and the lock) behind."""
    SharedObject(name, data=np.zeros(1 << 20, np.uint8))
    code = textwrap.dedent(f"""
        import numpy as np
        from shmstore.compat.shared_object import SharedObject
        so = SharedObject({name!r})
        print("ready", flush=True)
        i = 0
        while True:
            i = (i + 1) % 250
            so.assign(np.full(1 << 20, i, np.uint8))
    """)
    reader = SharedObject(name)
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.05 + np.random.rand() * 0.1)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        a = reader.fetch()
        assert a.min() == a.max(), "torn data after a writer crash"
    t0 = time.monotonic()
    SharedObject(name).assign(np.ones(1 << 20, np.uint8))  # lock not lost with the writer
    assert time.monotonic() - t0 < 5
    assert reader.fetch().min() == 1


def test_bug_no_lock_loss_across_fork(name):
    """Seed: the flock lives on a file description shared with fork children, so a child
    releasing or taking it interferes with the parent. Here a parent mid in-place write
    keeps readers on the old version and other writers waiting, across a fork."""
    so = SharedObject(name, data=np.zeros(8, np.int64))
    store = shmstore.Store(os.environ["SHMSTORE_COMPAT_STORE"])
    with store.write(name) as arr:
        arr[:] = 1
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child = SharedObject(name)
                ok = child.fetch().sum() == 0  # the parent's change is not visible yet
                t0 = time.monotonic()
                child.assign(np.full(8, 2, np.int64))  # waits for the parent's lock
                ok = ok and time.monotonic() - t0 > 0.2
                code = 0 if ok else 2
            finally:
                os._exit(code)
        time.sleep(0.4)
        assert so.fetch().sum() == 0
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (so.fetch() == 2).all(), "both writes happened, serialized: parent, then child"
    store.close()


def test_bug_no_unlink_by_exiting_process(name):
    """Seed: multiprocessing's resource_tracker unlinks shared memory when the creating
    process exits."""
    for method in ("spawn", "fork", "forkserver"):
        n = f"{name}_{method}"
        p = mp.get_context(method).Process(target=helpers.so_child_create_then_exit, args=(n,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        time.sleep(0.1)
        assert (SharedObject(n).fetch() == 7).all()
        SharedObject(n).unlink()


def test_bug_arrays_are_64_byte_aligned(name):
    """Seed: the array data starts after a 9+ byte header, misaligned."""
    so = SharedObject(name, data=np.zeros((3, 5), np.float64))
    assert so.fetch(lambda x: x.ctypes.data % 64) == 0
    d = SharedObject(name + "d", data={"a": np.zeros(3, np.uint8), "b": np.zeros(7, np.float32)})
    assert d.fetch(lambda t: [t["a"].ctypes.data % 64, t["b"].ctypes.data % 64]) == [0, 0]
    d.unlink()


def test_bug_string_uses_whole_capacity(name):
    """Seed: a terminator byte (b'\\xff') costs one byte of capacity and bytes containing
    0xff are cut."""
    so = SharedObject(name, data="", init_size=100)
    so.assign("x" * 100)
    assert SharedObject(name).fetch() == "x" * 100
    with pytest.raises(BufferError):
        so.assign("x" * 101)
    b = SharedObject(name + "b", data=b"\xff" * 50, init_size=50)
    assert SharedObject(name + "b").fetch() == b"\xff" * 50
    b.unlink()


def test_bug_modified_driven_by_version(name):
    """Seed: modified compares time_ns stamps: two assigns in one clock tick, or a clock
    step backwards, are missed. Versions count every change."""
    a = SharedObject(name, data=0)
    b = SharedObject(name)
    seen = 0
    for i in range(1, 2001):
        a.assign(i)
        if b.modified:
            seen += 1
            b.fetch()
    assert seen == 2000
    a.trigger()
    a.trigger()
    assert b.modified and b.triggered and not b.triggered


def test_bug_no_creation_race(name):
    """Seed: two processes creating the same object at once fail or read half-initialized
    data. Here exactly one creates it; the others mount it, and all see the data."""
    start_at = time.time() + 1.0
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=helpers.so_race, args=(name, start_at, "create" if i % 2 == 0 else "mount"))
             for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6


def test_threads_share_objects(name):
    so = SharedObject(name, data=np.zeros(1000))
    errors = []

    def reader():
        try:
            for _ in range(300):
                a = so.fetch()
                assert a.min() == a.max()
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=reader) for _ in range(2)]
    for t in ts:
        t.start()
    for i in range(300):
        so.assign(np.full(1000, float(i)))
    for t in ts:
        t.join()
    assert not errors


# ---- regressions found in review ----------------------------------------------------------

def test_fetch_fn_gets_bytes_not_a_memoryview(name):
    """The zero-copy view of a bytes value is a memoryview: fetch(fn) passed it to fn
    (so `lambda b: b.decode()` failed) and could return it, lease and all."""
    so = SharedObject(name, data=b"hello" * 200, init_size=1000)
    assert so.fetch(lambda b: b.decode()[:5]) == "hello"
    out = so.fetch(lambda b: b)
    assert type(out) is bytes and out == b"hello" * 200
    assert SharedObject(name).object_type is bytes


def test_fetch_fn_detaches_views_inside_containers(name):
    so = SharedObject(name, data={"a": np.arange(5), "b": np.ones(3)})
    out = so.fetch(lambda t: (t["a"][1:], [t["b"]], {"k": t["a"]}))
    arrays = [out[0], out[1][0], out[2]["k"]]
    assert all(a.flags.owndata for a in arrays), "results hold no lease"
    assert list(out[0]) == [1, 2, 3, 4] and list(out[2]["k"]) == [0, 1, 2, 3, 4]
    same = so.fetch(lambda t: t["a"].sum())
    assert same == 10


def test_own_trigger_is_seen_by_own_triggered(name):
    """Seed semantics: trigger() changes the shared object only, so the instance that
    triggered sees it in `triggered` once, like every other instance."""
    a = SharedObject(name)
    b = SharedObject(name)
    a.trigger()
    assert a.triggered and not a.triggered
    assert b.triggered and not b.triggered


def test_container_layout_is_fixed_like_the_seeds_buffer(name):
    so = SharedObject(name, data={"rgb": np.zeros((2, 3), np.uint8), "t": 0.0, "ids": [1, 2]})
    so.assign({"rgb": np.ones((2, 3), np.uint8), "t": 1.5, "ids": [3, 4]})  # same layout
    other = SharedObject(name)  # a mounted instance learns the layout from the store
    bad = [
        {"rgb": np.zeros((2, 3), np.uint8), "t": 0.0},  # a key less
        {"rgb": np.zeros((2, 4), np.uint8), "t": 0.0, "ids": [1, 2]},  # shape
        {"rgb": np.zeros((2, 3), np.int8), "t": 0.0, "ids": [1, 2]},  # dtype
        {"rgb": np.zeros((2, 3), np.uint8), "t": 0.0, "ids": [1, 2, 3]},  # inner length
        {"rgb": np.zeros((2, 3), np.uint8), "t": 0, "ids": [1, 2]},  # item type
    ]
    for inst in (so, other):
        for data in bad:
            with pytest.raises(BufferError):
                inst.assign(data)
    assert other.fetch()["t"] == 1.5, "a refused assign changes nothing"
    t = SharedObject(name + "t", data=(1, 2.0))
    with pytest.raises(BufferError):
        t.assign((1, 2.0, 3))
    t.assign((5, 6.0))
    t.unlink()
    dyn = SharedDynamicObject(name)
    dyn.assign({"anything": "goes"})
    assert SharedObject(name).fetch() == {"anything": "goes"}


def test_shared_object_is_a_value(name):
    so = SharedObject(name, data=np.arange(4))
    assert isinstance(so, shmstore.Value) and so.name == name
    assert np.array_equal(so.get(), np.arange(4))
    v = so.version
    so.trigger()
    assert so.version == v + 1 and so.seen == v
    assert so.wait(timeout=0) and so.seen == v + 1
    assert not so.wait(timeout=0.01)


def test_refused_data_creates_nothing(name):
    with pytest.raises(TypeError):
        SharedObject(name, data=object())
    with pytest.raises(TypeError):
        SharedObject(name, np.zeros(3))  # data is keyword-only, as in the seed
    with pytest.raises(TypeError):
        SharedObject(name, date=np.zeros(3))
    assert name not in shmstore.Store(os.environ["SHMSTORE_COMPAT_STORE"])
    t0 = time.monotonic()
    assert SharedObject(name, data=3).fetch() == 3
    assert time.monotonic() - t0 < 2, "a retry must not wait for a creator that never was"


def test_subclass_with_its_own_arguments(name):
    class Tagged(SharedObject):
        def __init__(self, name, tag, **kw):
            super().__init__(name, **kw)
            self.tag = tag

    t = Tagged(name, "cam0", data=np.zeros(3))
    assert t.tag == "cam0" and np.array_equal(t.fetch(), np.zeros(3))


def test_big_endian_array_layout_is_the_stored_one(name):
    """Arrays are stored in native byte order: the creator's recorded container layout
    and a mounted instance's (learned from the store) must agree."""
    so = SharedObject(name, data={"a": np.arange(4, dtype=">f4")})
    SharedObject(name).assign({"a": np.arange(4, dtype="<f4")})
    so.assign({"a": np.arange(4, dtype=">f4") * 2})
    assert np.array_equal(SharedObject(name).fetch()["a"], np.arange(4) * 2)


# ---- drop-in details the seed's own users rely on (issue 13) --------------------------------

SEED_TYPES = (type(None), bool, int, float, complex, Pose, str, bytes, bytearray, np.ndarray,
              dict)


def test_object_types_and_object_type_idx_as_in_the_seed(name):
    """Seed code indexes SharedObject._object_types with object_type_idx, and uses the
    tuple in annotations when its modules are imported."""
    from typing import Union
    assert SharedObject._object_types == SEED_TYPES
    Union[SharedObject._object_types]  # noqa: B018 - what upstream modules do at import
    samples = [None, True, 7, 1.5, 2j, Pose([1, 2, 3], [1, 0, 0, 0]), "s", b"b",
               bytearray(b"ba"), np.zeros(3), {"k": 1}]
    for i, data in enumerate(samples):
        n = f"{name}_{i}"
        so = SharedObject(n, data=data)
        assert so.object_type_idx == i == SharedObject(n).object_type_idx
        assert SharedObject._object_types[so.object_type_idx] is type(data)
        so.unlink()
    other = SharedObject(name + "_list", data=[1, 2])  # beyond the seed: no index
    assert other.object_type_idx is None and other.object_type is list
    other.unlink()


def test_np_dtypes_are_the_seeds_and_round_trip(name):
    from shmstore.compat.shared_object import NP_DTYPES
    assert NP_DTYPES[:12] == (np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                              np.uint32, np.int64, np.uint64, np.float16, np.float32,
                              np.float64)
    assert SharedObject._np_dtypes is NP_DTYPES
    for i, dt in enumerate(NP_DTYPES):
        a = (np.arange(6) % 2).astype(dt).reshape(2, 3)
        so = SharedObject(f"{name}_{i}", data=a)
        got = SharedObject(so.name).fetch()
        assert got.dtype == a.dtype and np.array_equal(got, a) and got.flags.owndata
        so.unlink()


def test_fallback_pose_does_what_robot_code_does_with_sapien_poses():
    from shmstore.compat.shared_object import _FallbackPose as P
    c = np.sqrt(0.5)
    a = P(p=[1, 2, 3], q=[c, 0, 0, c])  # 90 degrees about z
    assert a.p.dtype == np.float32 and a.q.dtype == np.float32
    assert np.array_equal(a.p, [1, 2, 3]) and np.allclose(a.q, [c, 0, 0, c])
    a.p[0] = 100  # .p / .q are copies, as sapien's
    assert a.p[0] == 1
    ident = P()
    assert np.array_equal(ident.p, [0, 0, 0]) and np.array_equal(ident.q, [1, 0, 0, 0])

    m = a.to_transformation_matrix()
    assert m.dtype == np.float32 and m.shape == (4, 4)
    assert np.allclose(m @ [1, 0, 0, 1], [1, 3, 3, 1], atol=1e-6)  # x -> y, then + p
    b = P([0.5, 0, 0], [np.cos(0.3), np.sin(0.3), 0, 0])
    ab = a * b  # b first, then a
    assert isinstance(ab, P)
    assert np.allclose(ab.to_transformation_matrix(),
                       m @ b.to_transformation_matrix(), atol=1e-6)
    for pose in (a * a.inv(), a.inv() * a):
        assert np.allclose(pose.p, 0, atol=1e-6) and np.allclose(abs(pose.q[0]), 1)
    assert np.allclose(a.inv().to_transformation_matrix(), np.linalg.inv(m), atol=1e-6)

    a2 = P(a.p, a.q)
    a2.set_p([4, 5, 6])
    a2.set_q([1, 0, 0, 0])
    assert np.array_equal(a2.p, [4, 5, 6]) and np.array_equal(a2.q, [1, 0, 0, 0])
    a2.p = [7, 8, 9]
    assert np.array_equal(a2.p, [7, 8, 9])

    state = a.__getstate__()  # the 7 floats the seed packs into its buffer
    assert type(state) is tuple and len(state) == 7 and state[:3] == (1.0, 2.0, 3.0)
    fresh = P.__new__(P)  # how the seed builds a fetched pose
    fresh.__setstate__(state)
    assert fresh == a and pickle.loads(pickle.dumps(a)) == a

    same = P([1, 2, 3], [c, 0, 0, c])
    assert same == a and hash(same) == hash(a) and same != b and not (same != a)
    assert P([0.0, 0, 0]) == P([-0.0, 0, 0]) and hash(P([0.0, 0, 0])) == hash(P([-0.0, 0, 0]))
    assert len({a, same, b}) == 2 and {a: 1}[same] == 1
    assert repr(P([1, 2, 3])) == "Pose([1, 2, 3], [1, 0, 0, 0])"
    assert (a == "pose") is False


def test_dict_with_renamed_keys_is_accepted_like_the_seed(name):
    """The seed's fixed buffer fits a dict whose keys are renamed (same key types and
    value layouts): assign accepts it, for every instance; other layouts still raise."""
    img = np.zeros((4, 5, 3), np.uint8)
    so = SharedObject(name, data={"timestamp": 1, "image": img, 3: "x", b"k": 2.0})
    mounted = SharedObject(name)
    renamed = {"timestamp": 2, "rgb": img + 1, 4: "longer text", b"other": 3.0}
    so.assign(renamed)
    assert not so.modified and mounted.modified
    got = mounted.fetch()
    assert list(got) == ["timestamp", "rgb", 4, b"other"] and np.array_equal(got["rgb"], img + 1)
    mounted.assign({"t": 3, "depth": img, 5: "", b"": 0.5})  # a mounted instance too
    assert list(so.fetch()) == ["t", "depth", 5, b""]
    for bad in ({"t": 3, "depth": img, "5": "", b"": 0.5},  # a key of another type
                {"t": 3, "depth": img, 5: ""},  # a key less
                {"t": 3, "depth": img.astype(np.int8), 5: "", b"": 0.5},  # value dtype
                {"t": 3.0, "depth": img, 5: "", b"": 0.5}):  # value type
        for inst in (so, mounted):
            with pytest.raises(BufferError):
                inst.assign(bad)
    assert list(SharedObject(name).fetch()) == ["t", "depth", 5, b""], "refused: no change"


def test_poses_inside_a_dict_round_trip(name):
    """Upstream data puts poses in dicts, as keys too (they must hash)."""
    key, val = Pose([1, 2, 3], [1, 0, 0, 0]), Pose([0, 0, 1], [0, 1, 0, 0])
    so = SharedObject(name, data={key: val, "n": 1})
    got = SharedObject(name).fetch()
    (k, v), = [(k, v) for k, v in got.items() if k != "n"]
    assert isinstance(k, Pose) and np.array_equal(k.__getstate__(), key.__getstate__())
    assert np.array_equal(v.__getstate__(), val.__getstate__())
    so.assign({Pose(): Pose([9, 9, 9]), "m": 2})  # renamed keys, same layout


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize != 16, reason="no float128 in numpy here")
def test_fetch_long_double_arrays_own_their_data(name):
    """float128 / complex256 arrays are stored natively: fetch() returns an owning,
    writable copy like any other array (they used to come back as a view of a pickle)."""
    for dt in (np.float128, np.complex256):
        a = np.arange(12, dtype=dt).reshape(3, 4) / 7
        so = SharedObject(name, data=a)
        assert so.info()["type"] == "array"
        for got in (so.fetch(), SharedObject(name).fetch(), so.fetch(lambda x: x)):
            assert got.dtype == a.dtype and np.array_equal(got, a)
            assert got.flags.owndata and got.flags.writeable
        so.unlink()


def test_fetch_fn_results_always_own_their_data(name):
    """As in the seed: any array a fetch fn returns that does not own its data is copied,
    not only one pointing into shared memory (a boolean-mask index of a slice is a view of
    a temporary; so is a slice of x + 1)."""
    data = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    so = SharedObject(name, data=data)
    mask = data % 3 == 0
    fns = [lambda x: x[..., 0], lambda x: x[..., [True, False, True, False]],
           lambda x: x[mask], lambda x: x.T, lambda x: (x + 1)[..., 0],
           lambda x: np.sort(x)[:, 1:], lambda x: x.reshape(-1)[::2]]
    for fn in fns:
        got = so.fetch(fn)
        assert isinstance(got, np.ndarray) and got.flags.owndata and got.flags.writeable
        assert np.array_equal(got, fn(data))
        got[...] = -1
    assert np.array_equal(so.fetch(), data), "writing a fetched result changes nothing"
    pair = so.fetch(lambda x: ((x + 1)[0], [x[1]]))
    assert pair[0].flags.owndata and pair[1][0].flags.owndata
    assert so.fetch(lambda x: x.sum()) == data.sum()


def test_failed_creation_leaves_no_object(monkeypatch):
    """SharedObject(...) whose first publish fails (here: the store is too small) must
    not leave an empty object for other processes to mount and wait on."""
    from shmstore.compat import shared_object as mod
    small = unique("t_so_small")
    store = shmstore.Store(small, capacity=1 << 22)
    monkeypatch.setenv("SHMSTORE_COMPAT_STORE", small)
    try:
        n = unique("so")
        with pytest.raises(MemoryError):
            SharedObject(n, data=np.zeros(1 << 23, np.uint8))
        assert n not in store and store.names() == []
        assert SharedObject(n, data=3).fetch() == 3  # the name is free again
        assert store.check() == ""
    finally:
        opened = mod._stores.pop(small, None)
        if opened is not None:
            opened.close()
        store.close()
        shmstore.unlink(small)
