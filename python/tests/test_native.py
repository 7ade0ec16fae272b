"""The native API: every public function, type and error, in one process."""
import gc
import os
import pickle
import signal
import sys
import threading
import time

import numpy as np
import pytest

import shmstore
from conftest import unique

SCALARS = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, float("inf"), 1 + 2j, "", "héllo ✓",
           b"", b"\x00\xff" * 10, 2**64, -(2**100)]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_value_scalar_roundtrip(store, value):
    store.put("x", value)
    got = store.get("x")
    assert type(got) is type(value) and got == value
    assert store.view("x") == value or isinstance(store.view("x"), memoryview)


def test_value_float_nan(store):
    store["x"] = float("nan")
    assert np.isnan(store["x"])


DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16",
          "S7", "U5"]
LONG_DOUBLE_16 = np.dtype(np.longdouble).itemsize == 16  # numpy has float128 / complex256
DTYPES += ["f16", "c32"] if LONG_DOUBLE_16 else []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (2, 3, 4)])
def test_value_array_roundtrip(store, dtype, shape):
    a = (np.arange(int(np.prod(shape)), dtype=np.int64) % 7).astype(dtype).reshape(shape)
    store.put("a", a)
    got = store.get("a")
    assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
    assert got.flags.writeable and got.flags.c_contiguous
    v = store.view("a")
    assert v.dtype == a.dtype and v.shape == a.shape and np.array_equal(v, a)
    assert not v.flags.writeable


@pytest.mark.skipif(not LONG_DOUBLE_16, reason="numpy has no float128 here")
def test_value_long_double_arrays_are_native(store):
    """float128 / complex256 are array datums ('<f16' / '<c32'), not pickles: get() owns
    its copy and view() is zero-copy, also inside a dict."""
    for dt, s in ((np.longdouble, "<f16"), (np.clongdouble, "<c32")):
        a = np.arange(6, dtype=dt).reshape(2, 3) / 3
        store["a"] = a
        info = store.info("a")
        assert info["type"] == "array" and info["dtype"] == s
        got = store.get("a")
        assert got.dtype == a.dtype and got.flags.owndata and np.array_equal(got, a)
        v = store.view("a")
        assert v.dtype == a.dtype and not v.flags.owndata and np.array_equal(v, a)
        store["d"] = {"x": a}
        assert np.array_equal(store.view("d")["x"], a) and store.get("d")["x"].flags.owndata


def test_value_array_other_dtypes_are_pickled(store):
    for a in [np.array(["2020-01-01"], dtype="M8[ns]"), np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]),
              np.arange(3, dtype=">i4")]:
        store["a"] = a
        got = store["a"]
        assert got.dtype.newbyteorder("=") == a.dtype.newbyteorder("=") or got.dtype == a.dtype
        assert np.array_equal(got, a)


def test_value_array_object_dtype_is_typeerror(store):
    with pytest.raises(TypeError, match="dtype object"):
        store.put("a", np.array([object()]))
    with pytest.raises(TypeError, match="dtype object"):
        store.put("a", {"x": np.array([1, "a"], dtype=object)})


def test_failed_put_creates_nothing(store):
    """A put the codec refuses leaves no empty value behind (names() would list it and
    get() raise NoValueError instead of NotFoundError); one of an existing value leaves
    it as it was."""
    def refused():
        yield lambda: store.put("x", np.array([1, "a"], dtype=object))
        yield lambda: store.put("x", {"k": np.array([object()])})
        yield lambda: store.put("x", 1, attrs={"a": object()})
        yield lambda: store.__setitem__("x", np.array([object()]))
    for put in refused():
        with pytest.raises(TypeError):
            put()
        assert store.names() == [] and "x" not in store
        with pytest.raises(shmstore.NotFoundError):
            store.get("x")
    store["x"] = 5
    v = store.version("x")
    for put in refused():
        with pytest.raises(TypeError):
            put()
    assert store["x"] == 5 and store.version("x") == v


def test_put_refused_by_the_store_creates_nothing(store_name):
    """A new value whose put the store refuses (too large) is removed again, as
    shmstore_put() does in C; an existing one keeps its data."""
    with shmstore.Store(store_name, capacity=1 << 22) as s:
        with pytest.raises(MemoryError):
            s.put("big", np.zeros(1 << 23, np.uint8))
        assert s.names() == []
        s["big"] = b"small"
        with pytest.raises(MemoryError):
            s["big"] = np.zeros(1 << 23, np.uint8)
        assert s["big"] == b"small" and s.names() == ["big"]
        assert s.check() == ""


def test_value_noncontiguous_copied_to_c_order(store):
    a = np.arange(24, dtype=np.int32).reshape(4, 6)
    for x in (a[:, ::2], a.T, np.asfortranarray(a)):
        store["a"] = x
        got = store.view("a")
        assert got.flags.c_contiguous and np.array_equal(got, x)


def test_value_tree_roundtrip(store):
    a = np.arange(10, dtype=np.float32)
    tree = {"a": a, "l": [1, "two", (3.0, None, b"x")], "s": {1, 2}, "fs": frozenset({"q"}),
            "ba": bytearray(b"xyz"), 5: "int key", ("t", 1): {"nested": np.eye(3)},
            "big": 2**70, "obj": len}  # a builtin pickles by reference
    store.put("t", tree)
    got = store.get("t")
    assert set(got) == set(tree)
    assert np.array_equal(got["a"], a) and got["a"].flags.writeable
    assert got["l"] == [1, "two", (3.0, None, b"x")]
    assert got["s"] == {1, 2} and type(got["fs"]) is frozenset and type(got["ba"]) is bytearray
    assert got[5] == "int key" and np.array_equal(got[("t", 1)]["nested"], np.eye(3))
    assert got["big"] == 2**70 and got["obj"] is len
    for x in (list(range(5)), (1, 2), [], {}, (), [np.ones(3)]):
        store["t"] = x
        got = store["t"]
        assert type(got) is type(x) and len(got) == len(x)


def test_view_tree_arrays_zero_copy_one_lease(store):
    tree = {"rgb": np.ones((48, 64, 3), np.uint8), "depth": np.zeros((48, 64), np.float32), "k": 3}
    store.put("t", tree)
    v = store.view("t")
    assert v["k"] == 3
    for key in ("rgb", "depth"):
        assert not v[key].flags.writeable
        assert v[key].ctypes.data % 64 == 0, "payloads are 64-byte aligned"
        assert np.array_equal(v[key], tree[key])
    buf_rgb = v["rgb"].base.obj
    assert isinstance(buf_rgb, shmstore.Buffer)


def test_view_arrays_are_64_byte_aligned(store):
    for n in (1, 3, 1000):
        store["a"] = np.arange(n, dtype=np.uint8)
        assert store.view("a").ctypes.data % 64 == 0


def test_view_outlives_store_and_newer_versions(store_name):
    s = shmstore.Store(store_name)
    s["a"] = np.arange(1000, dtype=np.int64)
    v = s.view("a")
    h = s.value("a")
    s.close()
    del s
    gc.collect()
    with shmstore.Store(store_name) as s2:
        for i in range(10):
            s2["a"] = np.full(1000, i, dtype=np.int64)
        s2.delete("a")
    h.close()
    gc.collect()
    assert np.array_equal(v, np.arange(1000)), "a view stays intact until released"
    assert v.sum() == sum(range(1000))


def test_view_bytes_is_readonly_memoryview(store):
    store["b"] = b"hello"
    m = store.view("b")
    assert isinstance(m, memoryview) and m.readonly and bytes(m) == b"hello"
    with pytest.raises(TypeError):
        m[0] = 1


def test_buffer_protocol_exports_and_release(store):
    store["a"] = np.arange(12, dtype=np.float64).reshape(3, 4)
    h = store.value("a")
    b = h.buffer()
    m = memoryview(b)
    assert m.format == "d" and m.shape == (3, 4) and m.strides == (32, 8) and m.readonly
    assert b.exports == 1 and b.version == h.version and b.nbytes == 96
    with pytest.raises(BufferError):
        b.release()
    arr = np.asarray(b)
    assert arr.shape == (3, 4) and arr[2, 3] == 11
    m.release()
    del arr
    gc.collect()
    assert b.exports == 0
    b.release()
    assert b.released
    with pytest.raises(ValueError):
        memoryview(b)
    h.close()


def test_store_get_default_and_errors(store):
    with pytest.raises(shmstore.NotFoundError):
        store.get("missing")
    with pytest.raises(KeyError):
        store["missing"]
    with pytest.raises(FileNotFoundError):
        store.view("missing")
    assert store.get("missing", 42) == 42
    h = store.value("empty")
    with pytest.raises(shmstore.NoValueError):
        h.get()
    with pytest.raises(LookupError):
        store.get("empty")
    assert store.get("empty", None) is None
    with pytest.raises(ValueError):
        store.put("", 1)
    with pytest.raises(ValueError):
        store.put("x" * 300, 1)
    with pytest.raises(ValueError):
        store.put("a\0b", 1)
    with pytest.raises(TypeError):
        store.put(b"bytes-name", 1)


def test_mapping_protocol(store):
    store["a"] = 1
    store["b/c"] = 2
    assert "a" in store and "zz" not in store and 3 not in store and "" not in store
    assert len(store) == 2 and sorted(store) == ["a", "b/c"]
    del store["a"]
    assert "a" not in store
    with pytest.raises(KeyError):
        del store["a"]
    assert store.names() == ["b/c"] and store.names(prefix="b/") == ["b/c"] and store.names("x") == []


def test_version_mtime_trigger(store):
    store["v"] = 1
    v1, t1 = store.version("v"), store.mtime("v")
    assert v1 == 1 and t1 > 0
    assert store.trigger("v") == 2
    assert store.get("v") == 1 and store.mtime("v") >= t1
    assert store.trigger("new") == 1 and store["new"] is None


def test_wait_and_timeout(store):
    store["w"] = 0
    with pytest.raises(TimeoutError):
        store.wait("w", timeout=0.05)
    with pytest.raises(TimeoutError):
        store.wait("w", timeout=0)
    assert store.wait("w", after=0, timeout=0) == 1

    def later():
        time.sleep(0.05)
        store["w"] = 1

    t = threading.Thread(target=later)
    t.start()
    t0 = time.monotonic()
    assert store.wait("w", timeout=5) == 2
    assert time.monotonic() - t0 < 2
    t.join()


def test_wait_creates_missing_value(store):
    t = threading.Thread(target=lambda: (time.sleep(0.05), store.put("late", "x")))
    t.start()
    assert store.wait("late", timeout=5) == 1
    t.join()
    assert store["late"] == "x"


def test_wait_releases_gil(store):
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    with pytest.raises(TimeoutError):
        store.wait("g", timeout=0.3)
    stop.set()
    t.join()
    assert counter[0] > 1000, "another thread ran while we waited"


def test_wait_ctrl_c(store):
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            store.wait("never", timeout=None)
        assert time.monotonic() - t0 < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_delete_and_stale_handle(store):
    store["d"] = np.arange(100)
    h = store.value("d")
    v = store.view("d")
    store.delete("d")
    for i in range(20):  # reuse the freed memory if the view did not keep its lease
        store[f"other{i}"] = np.full(100, -1)
    assert np.array_equal(v, np.arange(100)), "views of a deleted value stay valid"
    with pytest.raises(shmstore.StaleError):
        h.get()
    with pytest.raises(LookupError):
        h.version
    store["d"] = 2  # re-created: by-name ops see the new object, the old handle does not
    assert store["d"] == 2
    with pytest.raises(shmstore.StaleError):
        h.put(3)
    with pytest.raises(shmstore.NotFoundError):
        store.delete("nothing")


def test_value_handle(store):
    h = store.value("h")
    assert h.name == "h" and h.version == 0 and h.mtime == 0 and not h.closed
    h.put(np.arange(5))
    assert h.version == 1 and np.array_equal(h.get(), np.arange(5))
    val, ver = h.get_versioned()
    assert ver == 1 and np.array_equal(val, np.arange(5))
    val, ver = h.view_versioned()
    assert ver == 1 and not val.flags.writeable
    assert h.info()["shape"] == (5,) and h.info()["dtype"] == "<i8" and h.info()["type"] == "array"
    assert h.wait(after=0, timeout=0) == 1
    h.trigger()
    assert h.version == 2
    with store.value("h", create=False) as h2:
        assert h2.get()[4] == 4
    assert h2.closed
    with pytest.raises(ValueError):
        h2.get()
    with pytest.raises(shmstore.NotFoundError):
        store.value("nope", create=False)
    with pytest.raises(FileExistsError):
        store.value("h", exclusive=True)
    assert "h" in repr(h)
    h.close()
    h.close()


def test_same_layout_and_seal(store):
    store.put("l", np.zeros(4, np.float32))
    store.put("l", np.ones(4, np.float32), same_layout=True)
    with pytest.raises(shmstore.LayoutError):
        store.put("l", np.ones(5, np.float32), same_layout=True)
    with pytest.raises(ValueError):
        store.put("l", 1.0, same_layout=True)
    store.seal("l")
    with pytest.raises(shmstore.SealedError):
        store.put("l", np.ones(4, np.float32))
    with pytest.raises(PermissionError):
        store.put("l", 1)
    assert store.info("l")["sealed"]


def test_attrs(store):
    store.put("a", np.zeros(3), attrs={"srate": 100.0, "axis": "time", "n": 3, "ok": True,
                                       "none": None, "raw": b"\x01", "c": 1j})
    assert store.attrs("a") == {"srate": 100.0, "axis": "time", "n": 3, "ok": True, "none": None,
                                "raw": b"\x01", "c": 1j}
    store.put("a", 1)
    assert store.attrs("a") == {}
    with pytest.raises(TypeError):
        store.put("a", 1, attrs={"x": [1]})
    with pytest.raises(TypeError):
        store.put("a", 1, attrs={1: 1})


def test_write_in_place(store):
    store["f"] = np.zeros((4, 4), np.uint8)
    reader = store.value("f")
    with store.write("f") as arr:
        arr[1:3] = 7
        assert arr.flags.writeable
        assert reader.get().sum() == 0, "readers see the previous version meanwhile"
    assert not arr.flags.writeable
    assert store["f"].sum() == 7 * 8 and store.version("f") == 2
    with pytest.raises(RuntimeError):
        with store.write("f") as arr:
            arr[:] = 9
            raise RuntimeError("discard")
    assert store["f"].sum() == 7 * 8 and store.version("f") == 2
    store["b"] = b"abc"
    with store.write("b") as m:
        m[0:1] = b"X"
    assert store["b"] == b"Xbc"
    store["n"] = 1
    with pytest.raises(TypeError):
        with store.write("n"):
            pass
    with reader.write() as arr:
        arr[0, 0] = 1
    assert store["f"][0, 0] == 1


def test_write_lock_timeout_between_threads(store):
    store["f"] = np.zeros(3)
    entered = threading.Event()
    release = threading.Event()

    def holder():
        with store.write("f") as arr:
            arr[0] = 1
            entered.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(5)
    with pytest.raises(TimeoutError):
        with store.write("f", timeout=0.1):
            pass
    # A put from another thread must not deadlock on the GIL while the lock is held.
    done = threading.Event()
    t2 = threading.Thread(target=lambda: (store.put("f", np.ones(3)), done.set()))
    t2.start()
    time.sleep(0.05)
    assert not done.is_set()
    release.set()
    t.join(5)
    t2.join(5)
    assert done.is_set() and np.array_equal(store["f"], np.ones(3))


def test_threads_hammer(store):
    store["c"] = np.zeros(1000, np.int64)
    errors = []

    def writer(k):
        try:
            for i in range(200):
                store.put("c", np.full(1000, k * 1000 + i, np.int64))
                store.put(f"t{k}", {"i": i, "a": np.full(10, i)})
        except Exception as e:  # pragma: no cover
            errors.append(e)

    def reader():
        try:
            h = store.value("c")
            for _ in range(500):
                a = h.get()
                assert a.min() == a.max()
                v = store.view("c")
                assert v.min() == v.max()
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(2)] + \
         [threading.Thread(target=reader) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_large_value_get_view(store):
    frame = np.random.randint(0, 255, (480, 848, 3), dtype=np.uint8)
    store["frame"] = frame
    assert np.array_equal(store["frame"], frame)
    assert np.array_equal(store.view("frame"), frame)
    store["blob"] = bytes(1 << 20)
    assert len(store["blob"]) == 1 << 20


def test_store_open_modes(store_name, tmp_path):
    with pytest.raises(FileNotFoundError):
        shmstore.Store(store_name, create=False)
    with shmstore.Store(store_name, exclusive=True, capacity=64 << 20) as s:
        assert s.name == store_name and s.dir == "/dev/shm" and not s.closed
        assert s.stat()["capacity"] == 64 << 20
    assert s.closed and "closed" in repr(s)
    with pytest.raises(ValueError):
        s.put("x", 1)
    with pytest.raises(FileExistsError):
        shmstore.Store(store_name, exclusive=True)
    with pytest.raises(ValueError):
        shmstore.Store(store_name, create=False, exclusive=True)
    with pytest.raises(ValueError):
        shmstore.Store("a/b")
    d = str(tmp_path)
    gid = os.getgid() or 1  # group 0 means "no group" in the C API
    with shmstore.Store("indir", dir=d, group=gid) as s:
        s["x"] = 1
        assert s.dir == d
    assert "indir" in shmstore.list_stores(dir=d)
    assert oct(os.stat(os.path.join(d, "shmstore.indir")).st_mode & 0o777) == "0o660"
    shmstore.unlink("indir", dir=d)
    with pytest.raises(FileNotFoundError):
        shmstore.unlink("indir", dir=d)
    assert store_name in shmstore.list_stores(), "closing a Store never unlinks it"


def test_store_admin(store):
    store["a"] = np.zeros(100)
    st = store.stat()
    assert st["n_objects"] == 1 and st["n_procs"] >= 1 and st["used"] > 0
    assert store.check() == ""
    g = store.gc()
    assert set(g) == {"dead_procs", "leases_dropped", "locks_released", "blocks_freed", "bytes_freed"}
    procs = store.procs()
    assert any(p["self"] and p["pid"] == os.getpid() and p["alive"] for p in procs)
    info = store.info("a")
    assert info["version"] == 1 and info["size"] == 800 and info["kind"] == "value"
    assert store.name in shmstore.list_stores()
    assert shmstore.strerror(-2)


def test_pickle_store_and_handle(store):
    store["p"] = 1
    s2 = pickle.loads(pickle.dumps(store))
    assert s2["p"] == 1 and s2.name == store.name
    h = pickle.loads(pickle.dumps(store.value("p")))
    assert h.get() == 1
    s2.close()


def test_exceptions_hierarchy():
    assert issubclass(shmstore.NotFoundError, FileNotFoundError)
    assert issubclass(shmstore.NotFoundError, KeyError)
    assert issubclass(shmstore.StaleError, LookupError)
    assert issubclass(shmstore.NoValueError, LookupError)
    assert issubclass(shmstore.LayoutError, ValueError)
    assert issubclass(shmstore.SealedError, PermissionError)
    assert issubclass(shmstore.CorruptError, OSError)
    assert issubclass(shmstore.LimitError, OSError)


def test_public_names_have_docstrings():
    for name in shmstore.__all__:
        obj = getattr(shmstore, name)
        assert obj.__doc__, name
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert member.__doc__, f"{name}.{attr}"


def test_many_views_released(store):
    """Leases are given back: more views than the lease table holds, one at a time."""
    store["a"] = np.zeros(10)
    for _ in range(3000):
        v = store.view("a")
        del v
    store.put("t", {"a": np.zeros(3), "b": np.ones(3)})
    for _ in range(3000):
        v = store.view("t")
        del v
    assert all(p["n_leases"] < 200 for p in store.procs() if p["self"])


def test_corrupt_record_is_an_error_not_a_crash(store):
    """Hostile RECORD payloads raise CorruptError (or a clean Python error), never crash."""
    import random
    import struct
    from shmstore._shmstore import _decode_record
    tree = {"a": np.arange(4), "l": [1, "x", (2.0, b"y")], "s": {1, 2}}
    store.put("r", tree)
    raw = bytes(store.value("r").buffer())
    assert np.array_equal(_decode_record(raw)["a"], np.arange(4))
    with pytest.raises(shmstore.CorruptError):
        _decode_record(b"\0" * 16)
    hdr = struct.pack("<IIIIQQ", 0x31435253, 1, 0, 0, 1 << 40, 96)
    with pytest.raises(shmstore.CorruptError):
        _decode_record(hdr + bytes(64))
    rnd = random.Random(1)
    for _ in range(3000):
        b = bytearray(raw)
        for _ in range(rnd.randint(1, 8)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        try:
            _decode_record(bytes(b))
        except (shmstore.CorruptError, ValueError, TypeError, UnicodeDecodeError, OverflowError,
                pickle.UnpicklingError, EOFError, MemoryError):
            pass


# ---- regressions found in review ---------------------------------------------------------

class _Boom:
    """Pickles fine; unpickling raises."""

    def __init__(self, pad=b""):
        self.pad = pad

    def __reduce__(self):
        return (_boom, (self.pad,))


def _boom(pad):
    raise ZeroDivisionError("boom on load")


@pytest.mark.parametrize("size", [10, 5000], ids=["small", "leased"])
def test_failed_decode_raises_its_own_error(store, size):
    """A failing unpickle used to surface as SystemError ("returned NULL without setting an
    exception"): Buffer's tp_dealloc cleared the error, and memoryview.release() was called
    with the error set."""
    store.put("p", _Boom(b"x" * size))
    for f in (store.get, store.view, store.value("p").get, store.value("p").view):
        with pytest.raises(ZeroDivisionError, match="boom on load"):
            f("p") if f in (store.get, store.view) else f()


def test_write_views_cannot_touch_published_versions(store):
    """Arrays and memoryviews from Store.write() used to point into the block that __exit__
    published: slices stayed writable (changing a published version under readers), and
    after newer versions the block was freed and reused while they still pointed at it."""
    store["a"] = np.zeros(1000, np.int64)
    with store.write("a") as arr:
        arr[:] = 1
        part = arr[10:20]
        flat = arr.reshape(10, 100)
    assert not arr.flags.writeable
    part[:] = 7
    flat[5] = 9
    assert np.array_equal(store["a"], np.ones(1000)), "writes after the block are private"
    for i in range(20):
        store["a"] = np.full(1000, 100 + i, np.int64)
        store[f"filler{i}"] = np.full(1000, -5, np.int64)
    assert arr[0] == 1 and arr[-1] == 1 and (part == 7).all(), "never aliases store memory"
    store["b"] = b"abcdef"
    with store.write("b") as m:
        m[0:1] = b"X"
    assert store["b"] == b"Xbcdef"
    m[1:2] = b"Y"
    assert store["b"] == b"Xbcdef", "the memoryview does not write into the store after exit"
    assert store.check() == ""


def test_write_size_change_is_refused(store):
    store["b"] = b"abc"
    with pytest.raises(BufferError):
        with store.write("b") as m:
            ba = m.obj
            m.release()
            ba.extend(b"more")
    assert store["b"] == b"abc" and store.version("b") == 1
    with store.write("b") as m:  # the lock was given back
        m[:] = b"xyz"
    assert store["b"] == b"xyz"


def test_value_pickle_does_not_leak(store):
    h = store.value("p")
    pickle.dumps(h)
    before = sys.getrefcount(store)
    for _ in range(100):
        pickle.dumps(h)
    assert sys.getrefcount(store) - before < 5, "Value.__reduce__ leaked a bound method"


def test_close_handle_in_signal_handler_during_wait(store):
    """A signal handler (or another thread) closing the handle between two wait slices
    used to make the next slice call the library with a NULL handle (segfault)."""
    h = store.value("sig")
    old = signal.signal(signal.SIGALRM, lambda *a: h.close())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(ValueError, match="closed"):
            h.wait(timeout=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _record(dims, dtype=b"|b1", nbytes=0):
    """A RECORD payload with one array node (see codec.c for the layout)."""
    import struct
    head = 32 + 40 + 8 * len(dims)
    data_off = (head + 63) // 64 * 64
    total = data_off + 64
    hdr = struct.pack("<IIIIQQ", 0x31435253, 1, len(dims), 0, data_off, total)
    node = struct.pack("<BBHIQQ8sII", 7, len(dims), 0, 0, data_off, nbytes, dtype, 0, 0)
    body = hdr + node + b"".join(struct.pack("<Q", d) for d in dims)
    return body + bytes(total - len(body))


@pytest.mark.parametrize("dims", [[2**63, 0], [0, 2**64 - 1], [0, 2**40, 2**40], [2**62, 0, 4]])
def test_hostile_record_extents(dims):
    """A zero extent makes any other extent describe 0 bytes: those must be refused before
    they become Py_ssize_t shapes and strides."""
    from shmstore._shmstore import _decode_record
    with pytest.raises(shmstore.CorruptError):
        _decode_record(_record(dims))
    ok = _decode_record(_record([3, 0]))
    assert ok.shape == (3, 0)


def test_hostile_record_in_store_view(store):
    """The zero-copy path (view) validates a record patched in shared memory too."""
    import mmap
    marker = np.frombuffer(b"MARKER!!" * 2, np.uint8).copy()
    store.put("r", [np.zeros((0, 5), np.bool_), marker])
    path = os.path.join(store.dir, "shmstore." + store.name)
    raw = bytes(store.value("r").buffer())
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        at = m.find(raw[:72 + 16])
        assert at > 0
        dims_at = at + 32 + 40 * 3  # after the header and three nodes: list, array, array
        old = m[dims_at + 8:dims_at + 16]
        assert old == (5).to_bytes(8, "little")
        m[dims_at + 8:dims_at + 16] = (2**63).to_bytes(8, "little")
        try:
            with pytest.raises(shmstore.CorruptError):
                store.view("r")
            with pytest.raises(shmstore.CorruptError):
                store.get("r")
        finally:
            m[dims_at + 8:dims_at + 16] = old
    assert store.view("r")[0].shape == (0, 5)


# ---- Value(store, name), subclasses, seen / modified / triggered, GC ------------------------

def test_value_constructor_is_store_value(store):
    h = shmstore.Value(store, "c")
    assert isinstance(h, shmstore.Value) and h.name == "c" and h.version == 0
    with pytest.raises(shmstore.NotFoundError):
        shmstore.Value(store, "missing", create=False)
    with pytest.raises(FileExistsError):
        shmstore.Value(store, "c", exclusive=True)
    with pytest.raises(ValueError):
        shmstore.Value(store, "c", create=False, exclusive=True)
    with pytest.raises(TypeError, match="must be a shmstore.Store"):
        shmstore.Value("not a store", "c")
    with pytest.raises(TypeError):
        shmstore.Value(store)


def test_value_subclass_keeps_its_state(store):
    class Tagged(shmstore.Value):
        def __new__(cls, store, name, tag):
            return super().__new__(cls, store, name)

        def __init__(self, store, name, tag):
            self.tag = tag

    t = Tagged(store, "sub", "mine")
    t.put(np.arange(3))
    assert t.tag == "mine" and type(t) is Tagged
    assert np.array_equal(store.get("sub"), np.arange(3))
    t.close()
    assert t.closed


def test_seen_modified_triggered(store):
    a, b = store.value("s"), store.value("s")
    assert (a.seen, a.modified, a.triggered) == (0, False, False)
    a.put(1)
    assert a.seen == a.version == 1 and not a.modified, "a put is seen by its writer"
    assert b.modified and b.modified and b.seen == 0, "modified does not consume"
    assert b.get() == 1 and b.seen == 1 and not b.modified, "get sees"
    a.trigger()
    assert a.triggered and not a.triggered, "an own trigger is seen once, like any other"
    assert b.triggered and not b.triggered
    a.put(np.zeros(1000))
    b.view()
    assert b.seen == a.seen == 3, "view sees"
    store.put("s", 4)
    assert a.wait(after=a.seen, timeout=1) == 4 and a.seen == 4, "wait sees"
    a.seen = 0
    assert a.modified
    with pytest.raises(OverflowError):
        a.seen = -1
    with pytest.raises(AttributeError):
        del a.seen


def test_put_seen_is_its_own_version_despite_other_writers(store):
    """`seen` after a put is the version that put published, even when another process
    published newer ones meanwhile (what a writer tells readers "my data is version N")."""
    h = store.value("race")
    h.put(0)
    ctx = __import__("multiprocessing").get_context("fork")
    stop = ctx.Event()
    p = ctx.Process(target=_put_until, args=(store.name, "race", stop))
    p.start()
    try:
        deadline = time.monotonic() + 10
        while store.value("race").version < 100 and time.monotonic() < deadline:
            time.sleep(0.001)
        for i in range(2000):
            h.put(-1 - i)
            v = h.seen
            data, ver = h.get_versioned()
            # either our version is still current (then it holds our data) or it is older
            assert ver > v or (ver == v and data == -1 - i)
    finally:
        stop.set()
        p.join(10)
    assert p.exitcode == 0


def _put_until(store_name, name, stop):
    h = shmstore.Store(store_name).value(name)
    i = 0
    while not stop.is_set():
        h.put(i)
        i += 1


def test_cycles_through_values_and_write_contexts_are_collected(store_name):
    import weakref

    class MyStore(shmstore.Store):
        pass

    s = MyStore(store_name)
    s.h = s.value("cyc")  # Store -> Value -> Store
    s.h.put(np.zeros(4))
    s.w = s.write("cyc")  # Store -> WriteContext -> Value -> Store
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is None
    s2 = shmstore.Store(store_name)
    with s2.write("cyc", timeout=1) as arr:  # nothing left locked by the collected objects
        arr[:] = 1
    assert np.array_equal(s2.get("cyc"), np.ones(4))


@pytest.mark.parametrize("bad", [1, [1], "a\x00b"], ids=["int", "list", "nul"])
def test_every_by_name_call_refuses_a_bad_name(store, bad):
    calls = [store.view, store.version, store.mtime, store.trigger, store.seal, store.attrs,
             store.info, store.delete, store.value, store.write, store.get,
             lambda n: store[n], lambda n: store.__setitem__(n, 1),
             lambda n: store.__delitem__(n), lambda n: store.wait(n, timeout=0)]
    for call in calls:
        with pytest.raises(TypeError if not isinstance(bad, str) else ValueError,
                           match="str" if not isinstance(bad, str) else "NUL"):
            call(bad)
    assert bad not in store
    assert store.names() == []
