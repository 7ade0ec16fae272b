"""Array sets from Python: put_tree/get_tree/delete_tree, load_hdf5/save_hdf5 compared
value by value with h5py, zero-copy arrays outliving the store handle and the set,
readers in spawned and independent processes, lifetimes, shared-writable sets, errors,
and the `shmstore load-hdf5` / `save-hdf5` command line with its exit codes."""
import gc
import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

import shmstore

h5py = pytest.importorskip("h5py")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MAKE_H5 = os.path.join(ROOT, "tests", "data", "make_h5.py")
CLI = os.environ.get("SHMSTORE_BIN", os.path.join(ROOT, "build", "cli", "shmstore"))


@pytest.fixture(scope="module")
def h5dir(tmp_path_factory):
    return tmp_path_factory.mktemp("h5")


def make(h5dir, what, *extra):
    path = str(h5dir / f"{what}{'_'.join(extra)}.h5")
    if not os.path.exists(path):
        subprocess.run([sys.executable, MAKE_H5, path, what, *extra], check=True)
    return path


def nested():
    return {"a": np.array([[12, 0, 0], [0, 10, 0], [0, 0, 0]], dtype=np.int64),
            "b": {"b1": np.arange(100, dtype=np.float32), "b2": np.zeros(300, np.float32),
                  "deep": {"s": "text", "n": 7, "x": 2.5, "z": np.zeros((0, 4))}}}


def assert_tree_equal(got, want):
    assert set(got) == set(want)
    for k, v in want.items():
        if isinstance(v, dict):
            assert_tree_equal(got[k], v)
        elif isinstance(v, np.ndarray):
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            np.testing.assert_array_equal(got[k], v)
        else:
            assert got[k] == v


def test_tree_roundtrip_zero_copy_and_read_only(store):
    store.put_tree("proj", nested())
    t = store.get_tree("proj")
    assert_tree_equal(t, nested())
    assert not t["a"].flags.writeable
    with pytest.raises(ValueError):
        t["a"][0, 0] = 1
    assert store.info("proj")["kind"] == "set"


def test_tree_arrays_outlive_everything(store_name):
    s = shmstore.Store(store_name)
    s.put_tree("p", nested())
    a = s.get_tree("p")["b"]["b1"]
    s.delete_tree("p")
    s.put_tree("q", {"junk": np.full(1000, -1.0)})  # would reuse freed blocks
    s.close()
    del s
    gc.collect()
    np.testing.assert_array_equal(a, np.arange(100, dtype=np.float32))


def test_tree_errors_leave_nothing(store):
    store.put_tree("p", nested())
    with pytest.raises(FileExistsError):
        store.put_tree("p", nested())
    store.put_tree("p", {"only": np.ones(3)}, overwrite=True)
    assert list(store.get_tree("p")) == ["only"]
    with pytest.raises(TypeError, match="objects"):
        store.put_tree("bad", {"ok": np.ones(3), "o": np.array([object(), 1])})
    with pytest.raises(ValueError):
        store.put_tree("bad", {"a/b": np.ones(3)})
    with pytest.raises(ValueError):
        store.put_tree("x" * 250, {"toolong": np.ones(3)})
    with pytest.raises(FileNotFoundError):
        store.get_tree("bad")
    assert store.names() == ["p", "p/only"]  # the set and its member, a value of its own
    assert store.delete_tree("p") == 1
    assert store.names() == []


def test_tree_members_are_values(store, store_name):
    a, b1 = np.arange(6).reshape(2, 3), np.linspace(0, 1, 5, dtype=np.float32)
    store.put_tree("p", {"a": a, "b": {"b1": b1, "s": "text", "n": 3, "raw": b"xy"}})
    assert sorted(store.names()) == ["p", "p/a", "p/b/b1", "p/b/n", "p/b/raw", "p/b/s"]
    assert sorted(store.names("p/b/")) == ["p/b/b1", "p/b/n", "p/b/raw", "p/b/s"]
    got = store.get("p/a")  # a copy, as Store.get of any value
    np.testing.assert_array_equal(got, a)
    got[0, 0] = 99  # ours to change
    v = store.view("p/b/b1")  # zero-copy, read-only (sealed)
    np.testing.assert_array_equal(v, b1)
    assert not v.flags.writeable
    assert store.get("p/b/s") == "text" and store.get("p/b/n") == 3
    assert store.get("p/b/raw") == b"xy" and bytes(store.view("p/b/raw")) == b"xy"
    info = store.info("p/b/b1")
    assert (info["kind"], info["version"], info["sealed"], info["size"]) == ("value", 1, True, 20)
    with pytest.raises(FileExistsError, match="member of set 'p'"):
        store.put("p/a", 1)  # immutable: members are never put one by one
    with pytest.raises(PermissionError, match="removed whole"):
        store.delete("p/a")
    with pytest.raises(FileExistsError):
        store.put_tree("p/b", {"b1": 1})  # the same name through another set
    assert store.get("p/b", None) is None  # a group is no value
    with pytest.raises(KeyError):
        store.get("p/zz")
    # Another process reads a member by its name, from Python and from the CLI.
    code = ("import sys, shmstore; s = shmstore.Store(sys.argv[1], create=False); "
            "print(s.get('p/b/b1').sum())")
    out = subprocess.run([sys.executable, "-c", code, store_name], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(float(b1.sum()))
    if os.path.exists(CLI):
        out = cli("cat", f"{store_name}/p/b/b1")
        assert out.returncode == 0 and "5 items" in out.stdout
        assert "p/b/b1" in cli("ls", store_name).stdout
    assert store.delete_tree("p") == 1
    assert store.names() == []
    store.put("p/a", 1)  # the name is free again


def test_tree_full_store_is_an_error(store_name):
    s = shmstore.Store(store_name, capacity=32 << 20)
    with pytest.raises(MemoryError) as e:  # the store's ENOSPC, never a SIGBUS
        s.put_tree("big", {"a": np.zeros(64 << 20, np.uint8)})
    assert "big" in str(e.value)
    assert s.names() == []
    s.close()


def test_tree_shared_writable(store):
    store.put_tree("w", {"a": np.zeros(4)}, seal=False)
    t1, t2 = store.get_tree("w"), store.get_tree("w")
    t1["a"][2] = 5.0
    assert t2["a"][2] == 5.0


def _reader(name, q):
    s = shmstore.Store(name, create=False)
    t = s.get_tree("p")
    q.put((float(t["b"]["b1"].sum()), t["b"]["deep"]["s"]))
    s.close()


def test_tree_readers_in_spawned_and_independent_processes(store, store_name):
    store.put_tree("p", nested())
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_reader, args=(store_name, q))
    p.start()
    assert q.get(timeout=60) == (4950.0, "text")
    p.join(30)
    code = ("import shmstore; s = shmstore.Store(%r, create=False); t = s.get_tree('p');"
            "print(int(t['a'].sum()))" % store_name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ))
    assert out.stdout.strip() == "22"
    # The readers exited: the set is still there (readers never remove anything).
    assert store.get_tree("p")["a"][0, 0] == 12


def test_tree_not_persistent_goes_with_its_creator(store, store_name):
    code = ("import shmstore, numpy as np; s = shmstore.Store(%r, create=False);"
            "s.put_tree('tied', {'a': np.ones(3)}, persistent=False); print(s.names())"
            % store_name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ))
    assert "tied" in out.stdout
    store.gc()
    assert store.names() == []


def test_tree_many_not_persistent_sets_in_one_process(store, store_name):
    # No limit on the sets one process ties to its life (cute-shm's persistent=False for
    # every project); all of them go with it, and so does a load it was killed in.
    code = ("import os, shmstore, numpy as np; s = shmstore.Store(%r, create=False)\n"
            "for i in range(40): s.put_tree(f'p{i}', {'a': np.full(3, i)}, persistent=False)\n"
            "print(len([n for n in s.names() if '/' not in n]), flush=True)\n"
            "os.kill(os.getpid(), 9)" % store_name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ))
    assert out.returncode == -9 and out.stdout.split() == ["40"], out.stderr
    store.gc()
    assert store.names() == []


def test_hdf5_load_matches_h5py(store, h5dir):
    path = make(h5dir, "all")
    assert store.load_hdf5(path, "f") == 25
    t = store.get_tree("f")
    attrs = store.get_tree("f", attrs=True)
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            node, tattrs = t, attrs
            for part in name.split("/"):
                node, tattrs = node[part], tattrs[part]
            want = obj[()]
            if isinstance(want, bytes):
                assert bytes(node) == want
            else:
                got = np.asarray(node)
                assert got.dtype == want.dtype, name
                np.testing.assert_array_equal(got, want)
            for k, v in obj.attrs.items():
                np.testing.assert_array_equal(np.asarray(tattrs[k]).astype(np.asarray(v).dtype)
                                              if not isinstance(v, str) else tattrs[k], v)
        f.visititems(visit)
        for k, v in f.attrs.items():
            got = attrs[".attrs"][k]
            if isinstance(v, np.ndarray) and v.dtype.kind == "O":
                assert [x.decode() for x in got] == list(v)
            else:
                np.testing.assert_array_equal(got, v)


def test_hdf5_gzip_layouts_match_h5py(store, tmp_path):
    # Chunked + deflate datasets are inflated in parallel (row chunks, with or without
    # shuffle, edge chunks); other layouts go through libhdf5: every value must match.
    path = str(tmp_path / "gz.h5")
    rng = np.random.default_rng(7)
    rec = np.zeros(5000, dtype=[("id", "<i4"), ("x", "<f8")])
    rec["id"], rec["x"] = np.arange(5000), rng.random(5000)
    data = {
        "d1": (np.arange(100003, dtype=np.float64), dict(chunks=(4096,))),
        "d2": (rng.integers(-999, 999, (3001, 7)).astype(np.int16), dict(chunks=(256, 7))),
        "shuf": (rng.random(50001).astype(np.float32), dict(chunks=(1000,), shuffle=True)),
        "tiles": (rng.random((300, 40)), dict(chunks=(64, 16))),  # not whole rows: libhdf5
        "one": (np.arange(10, dtype=np.uint8), dict(chunks=(10,))),  # a single chunk
        "rec": (rec, dict(chunks=(999,))),
    }
    with h5py.File(path, "w") as f:
        for k, (v, kw) in data.items():
            f.create_dataset(k, data=v, compression="gzip", compression_opts=4, **kw)
        f.create_dataset("lvl9", data=np.arange(70000) % 3, chunks=(7000,), compression="gzip",
                         compression_opts=9)
        f.create_dataset("empty_chunks", shape=(50000,), dtype="<f8", chunks=(1000,),
                         compression="gzip")  # never written: fill values, libhdf5
    store.load_hdf5(path, "gz")
    t = store.get_tree("gz")
    with h5py.File(path, "r") as f:
        for k in f:
            assert t[k].dtype == f[k].dtype, k
            np.testing.assert_array_equal(t[k], f[k][()], err_msg=k)


def test_hdf5_save_then_load(store, h5dir, tmp_path):
    store.load_hdf5(make(h5dir, "all"), "f")
    out = str(tmp_path / "out.h5")
    store.save_hdf5("f", out)
    with h5py.File(out, "r") as g, h5py.File(make(h5dir, "all"), "r") as f:
        for name in ["num/i4", "num/f2", "num/c16", "bool", "a/b/c/chunked", "strings"]:
            np.testing.assert_array_equal(g[name][()], f[name][()])
        assert g["a/b/c/chunked"].attrs["unit"] == "m/s"
        assert g.attrs["title"] == "test file"
        # A compound dataset goes back as the same compound type, field by field.
        assert g["records"].dtype == f["records"].dtype
        assert g["records"].dtype.names == ("id", "x", "tag")
        np.testing.assert_array_equal(g["records"][()], f["records"][()])
        assert "__dtype__" not in g["records"].attrs
    store.load_hdf5(out, "g")
    a, b = store.get_tree("f"), store.get_tree("g")
    np.testing.assert_array_equal(a["records"], b["records"])
    np.testing.assert_array_equal(a["num"]["longdouble"], b["num"]["longdouble"])


def test_hdf5_progress_and_errors(store, h5dir, tmp_path):
    calls = []
    store.load_hdf5(make(h5dir, "all"), "f", progress=lambda p, d, t: calls.append((p, d, t)))
    assert calls[-1][1] == calls[-1][2] and len(calls) > 10
    with pytest.raises(FileExistsError):
        store.load_hdf5(make(h5dir, "all"), "f")
    store.load_hdf5(make(h5dir, "all"), "f", overwrite=True)
    with pytest.raises(FileNotFoundError):
        store.load_hdf5(str(tmp_path / "missing.h5"), "m")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage")
    with pytest.raises(OSError, match="not an HDF5"):
        store.load_hdf5(str(bad), "m")
    with pytest.raises(ValueError, match="bad/vlen"):
        store.load_hdf5(make(h5dir, "vlen"), "v")
    assert store.load_hdf5(make(h5dir, "vlen"), "v", skip_unsupported=True) == 1
    with pytest.raises(ZeroDivisionError):  # an exception in the callback cancels the load
        store.load_hdf5(make(h5dir, "all"), "c", progress=lambda p, d, t: 1 / 0)
    names = store.names()  # the two sets and their members (values of their own names)
    assert sorted(n for n in names if "/" not in n) == ["f", "v"]
    assert all(n.split("/")[0] in ("f", "v") for n in names)


def cli(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True)


@pytest.mark.skipif(not os.path.exists(CLI), reason="the CLI is not built")
def test_cli_load_and_save(store_name, h5dir, tmp_path):
    path = make(h5dir, "all")
    r = cli("load-hdf5", "--no-progress", path, f"{store_name}/proj")
    assert r.returncode == 0, r.stderr
    assert cli("load-hdf5", path, f"{store_name}/proj").returncode == 73  # exists
    r = cli("load-hdf5", "-o", "-v", path, f"{store_name}/proj")
    assert r.returncode == 0 and "a/b/c/chunked" in r.stderr
    assert cli("load-hdf5", str(tmp_path / "none.h5"), f"{store_name}/x").returncode == 66
    r = cli("load-hdf5", make(h5dir, "vlen"), f"{store_name}/v")
    assert r.returncode == 65 and "bad/vlen" in r.stderr
    assert cli("load-hdf5", "--skip-unsupported", make(h5dir, "vlen"),
               f"{store_name}/v").returncode == 0
    assert cli("load-hdf5", path).returncode == 64  # usage
    r = cli("info", f"{store_name}/proj")
    assert "chunked" in r.stdout and "25 members" in r.stdout
    assert "hello" in cli("cat", f"{store_name}/proj/scalar_str").stdout
    out = str(tmp_path / "o.h5")
    assert cli("save-hdf5", f"{store_name}/proj", out).returncode == 0
    with h5py.File(out, "r") as f:
        assert f["num/i8"][1, 2, 3] == 23
    assert cli("save-hdf5", f"{store_name}/nothing", out).returncode == 66
