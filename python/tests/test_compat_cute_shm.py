"""shmstore.compat.cute_shm: the cute-shm README's examples as written, its API with
cute-shm's signatures, exceptions and return structure, one test per cute-shm bug showing
it does not happen, readers in spawned and independent processes, and the command line."""
import gc
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shmstore
from conftest import unique

h5py = pytest.importorskip("h5py")
HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_H5 = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "data", "make_h5.py")


@pytest.fixture
def cute(monkeypatch):
    """The module with a store of this test's own (children inherit the name)."""
    name = unique("t_cute")
    monkeypatch.setenv("SHMSTORE_CUTE_SHM_STORE", name)
    from shmstore.compat import cute_shm
    yield cute_shm
    gc.collect()
    try:
        with shmstore.Store(name, create=False) as s:
            s.gc()
            assert s.check() == ""
        shmstore.unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture(scope="module")
def h5file(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("cute") / "file.hdf5")
    subprocess.run([sys.executable, MAKE_H5, p, "all"], check=True)
    return p


def readme_arrays():
    a = np.array([[12, 0, 0], [0, 10, 0], [0, 0, 0]], dtype=np.int64)
    b1 = np.zeros(100, dtype=np.float32)
    b2 = np.zeros(300, dtype=np.float32)
    return {"a": a, "b": {"b1": b1, "b2": b2}}


def test_readme_sharing_numpy_arrays(cute):
    cute_ = cute
    arrays = readme_arrays()
    project_name = "myproject"
    persistent = False
    overwrite = False
    cute_.arrays_to_shm(project_name, arrays, persistent=persistent, overwrite=overwrite)
    shm_arrays = cute_.shm_to_arrays(project_name, persistent=persistent)
    a: np.ndarray = shm_arrays["a"]["data"]
    a_meta = shm_arrays["a"]["meta"]
    assert a_meta["shape"] == a.shape == (3, 3)
    assert a_meta["dtype"] == str(a.dtype) == "int64"
    assert isinstance(a_meta["shm_name"], str) and a_meta["shm_private_name"]
    assert a_meta["shm"].size == a.nbytes
    np.testing.assert_array_equal(a, arrays["a"])
    np.testing.assert_array_equal(shm_arrays["b"]["b2"]["data"], arrays["b"]["b2"])
    cute_.unlink(project_name)
    with pytest.raises(FileNotFoundError):
        cute_.shm_to_arrays(project_name)


def test_readme_context_managers(cute, h5file):
    with cute.unlinked_arrays_to_shm("myproject", readme_arrays()):
        shm_arrays = cute.shm_to_arrays("myproject")
        assert shm_arrays["b"]["b1"]["data"].shape == (100,)
    with pytest.raises(FileNotFoundError):
        cute.shm_to_arrays("myproject")
    hdf5_path = Path(h5file)
    project_name, progress, persistent, overwrite = "myproject", True, False, False
    cute.hdf5_to_shm(hdf5_path, project_name, progress=progress, persistent=persistent,
                     overwrite=overwrite)
    shm_arrays = cute.shm_to_arrays(project_name, persistent=persistent)
    a_meta = shm_arrays["a"]["b"]["c"]["chunked"]["meta"]
    assert a_meta["attrs"]["unit"] == "m/s"
    cute.unlink(project_name)
    with cute.unlinked_hdf5_to_shm(hdf5_path, project_name, progress, overwrite):
        shm_arrays = cute.shm_to_arrays(project_name, persistent=persistent)
        assert shm_arrays["num"]["i4"]["data"][1, 2, 3] == 23
    with pytest.raises(FileNotFoundError):
        cute.shm_to_arrays(project_name)


def test_exists_and_overwrite(cute):
    cute.arrays_to_shm("p", readme_arrays(), persistent=True)
    with pytest.raises(FileExistsError):
        cute.arrays_to_shm("p", readme_arrays())
    cute.arrays_to_shm("p", {"x": np.ones(2)}, overwrite=True, persistent=True)
    assert list(cute.shm_to_arrays("p")) == ["x"]
    cute.unlink("p")
    with pytest.raises(FileNotFoundError):
        cute.unlink("p")


def test_arrays_are_shared_and_writable(cute):
    cute.arrays_to_shm("p", readme_arrays(), persistent=True)
    r1, r2 = cute.shm_to_arrays("p"), cute.shm_to_arrays("p")
    r1["a"]["data"][2, 2] = 99
    assert r2["a"]["data"][2, 2] == 99
    cute.unlink("p")


def test_bug_sigbus_is_an_exception(cute, monkeypatch):
    # A small store stands for a full /dev/shm: the transfer fails with MemoryError naming
    # the size, the process lives on, and nothing of the project is left.
    s = shmstore.Store(os.environ["SHMSTORE_CUTE_SHM_STORE"], capacity=32 << 20)
    with pytest.raises(MemoryError, match="bytes"):
        cute.arrays_to_shm("big", {"ok": np.ones(10), "big": np.zeros(64 << 20, np.uint8)})
    with pytest.raises(FileNotFoundError):
        cute.shm_to_arrays("big")
    s.close()


def test_bug_gc_segfault_examples_run(cute):
    cute.arrays_to_shm("myproject", readme_arrays(), persistent=True)
    shm_arrays = cute.shm_to_arrays("myproject")
    shm_array = shm_arrays["a"]
    data: np.ndarray = shm_array["data"]
    meta = shm_array["meta"]
    del meta["shm"]
    gc.collect()
    assert data[0][0] == 12  # cute-shm: segmentation fault

    def get_np(project_name):
        shm_arrays = cute.shm_to_arrays(project_name)
        shm_array = shm_arrays["a"]
        data = shm_array["data"]
        return data

    a = get_np("myproject")
    gc.collect()
    assert a[0][0] == 12
    cute.unlink("myproject")
    gc.collect()
    assert a[1][1] == 10  # even after the project is removed


def test_bug_attrs_scalars_zero_size(cute, h5file):
    cute.hdf5_to_shm(h5file, "f", progress=False, persistent=True)
    t = cute.shm_to_arrays("f")
    assert t["scalar_int"]["data"] == 42 and t["scalar_int"]["data"].shape == ()
    assert t["scalar_str"]["data"] == b"hello"
    assert t["empty"]["data"].shape == (0, 3)
    attrs = t["a"]["b"]["c"]["chunked"]["meta"]["attrs"]
    assert attrs["rate"] == 100.0 and attrs["shape_hint"].shape == (2, 3)
    assert t["records"]["data"]["x"][1] == 1.5
    cute.arrays_to_shm("z", {"empty": np.zeros(0), "e2": np.zeros((3, 0), np.int8)},
                       persistent=True)
    assert cute.shm_to_arrays("z")["e2"]["data"].shape == (3, 0)


def test_bug_object_arrays_refused_and_nothing_partial(cute, tmp_path):
    with pytest.raises(TypeError, match="object"):
        cute.arrays_to_shm("p", {"a": np.ones(3), "o": np.array([{"x": 1}, None])})
    with pytest.raises(FileNotFoundError):
        cute.shm_to_arrays("p")
    vlen = str(tmp_path / "v.h5")
    subprocess.run([sys.executable, MAKE_H5, vlen, "vlen"], check=True)
    with pytest.raises(ValueError, match="bad/vlen"):
        cute.hdf5_to_shm(vlen, "v", progress=False)
    with pytest.raises(FileNotFoundError):
        cute.shm_to_arrays("v")
    with pytest.raises(FileNotFoundError):
        cute.hdf5_to_shm(str(tmp_path / "nothing.h5"), "v")


def _read_and_exit(q):
    from shmstore.compat import cute_shm
    t = cute_shm.shm_to_arrays("p", persistent=False)  # cute-shm: this reader's exit
    q.put(int(t["a"]["data"].sum()))                    # removed the segments


def test_bug_readers_never_remove(cute):
    cute.arrays_to_shm("p", readme_arrays(), persistent=True)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_read_and_exit, args=(q,))
    p.start()
    assert q.get(timeout=60) == 22
    p.join(30)
    code = ("from shmstore.compat import cute_shm as c; "
            "print(c.shm_to_arrays('p')['b']['b1']['data'].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(100,)"
    assert cute.shm_to_arrays("p")["a"]["data"][0, 0] == 12


def test_not_persistent_goes_with_its_creator(cute):
    code = ("import numpy as np; from shmstore.compat import cute_shm as c; "
            "c.arrays_to_shm('gone', {'a': np.ones(3)}, persistent=False); "
            "print(c.shm_to_arrays('gone')['a']['data'].sum())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3.0"
    with pytest.raises(FileNotFoundError):
        cute.shm_to_arrays("gone")


def test_helpers(cute, h5file):
    assert cute.bytes_to_human(1536) == "1.50 KB"
    assert cute.bytes_to_human(10) == "10 B"
    with h5py.File(h5file, "r") as f:
        want = sum(d.size * d.dtype.itemsize for d in _datasets(f))
    assert cute.hdf5_size(h5file) == want
    arrays: cute.ArrayDict = {"a": np.zeros(2)}
    assert cute.SharedArrayMeta.__total__ is False and arrays
    assert set(cute.SharedArray.__annotations__) == {"meta", "data"}


def _datasets(f):
    out = []
    f.visititems(lambda n, o: out.append(o) if isinstance(o, h5py.Dataset) else None)
    return out


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "shmstore.compat.cute_shm", *args],
                          capture_output=True, text=True)


def test_command_line(cute, h5file):
    r = run_cli("hdf5", "myproject", h5file)
    assert r.returncode == 0, r.stderr
    assert run_cli("hdf5", "myproject", h5file).returncode == 73
    r = run_cli("hdf5", "myproject", h5file, "-o", "-no-progress")
    assert r.returncode == 0, r.stderr
    r = run_cli("hdf5", "myproject", h5file, "-o", "-v")
    assert r.returncode == 0 and "num/i4" in r.stderr
    assert run_cli("hdf5", "other", "/nonexistent.h5").returncode == 66
    r = run_cli("list")
    assert r.returncode == 0 and "myproject" in r.stdout and "integrity: ok" in r.stdout
    assert "chunked" in r.stdout
    r = run_cli("list", "-s")
    assert r.stdout.strip().startswith("myproject\t")
    assert cute.shm_to_arrays("myproject")["num"]["u8"]["data"][1, 2, 3] == 23
    assert run_cli("unlink", "myproject").returncode == 0
    assert run_cli("unlink", "myproject").returncode == 66
    assert "no cute-shm project" in run_cli("list").stdout
    assert run_cli().returncode == 64
