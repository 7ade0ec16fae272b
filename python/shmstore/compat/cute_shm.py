"""cute-shm (``pip install cute-shm``) on shmstore (drop-in).

Switch by changing one import; the program stays as it is::

    # import cute_shm as cute
    from shmstore.compat import cute_shm as cute

    cute.arrays_to_shm("myproject", {"a": a, "b": {"b1": b1}}, persistent=True)
    shm_arrays = cute.shm_to_arrays("myproject")      # in any process
    a = shm_arrays["a"]["data"]                       # zero-copy, writable, shared
    cute.unlink("myproject")

What stands for what
- A project is one shmstore array set ``cute-shm/<project>`` in one store (env
  SHMSTORE_CUTE_SHM_STORE, default "cute_shm"; created on first use) instead of one
  ``/dev/shm`` file per array plus a TOML file in /tmp/cute-shm. The set appears whole or
  not at all: a transfer that fails (a bad leaf, a full store, a kill) leaves nothing.
- Arrays are *shared-writable* (one block every process maps writable, no versions), as
  cute-shm's: processes that update them in place use their own lock, as cute-shm's README
  says. ``persistent=False`` ties the project to the process that made it: it is removed
  when that process exits or dies. Readers never remove anything (cute-shm's readers
  registered the segments with the resource tracker, so a reader's exit could delete them);
  ``shm_to_arrays(..., persistent=...)`` accepts the flag and ignores it.
- ``meta["shm"]`` is a small handle (``name``, ``size``, ``buf``, ``close()``); the array
  keeps its own lease, so dropping ``meta`` or ``meta["shm"]`` is harmless (no segfault).
- HDF5 files load with libhdf5 straight into the store: every numeric dtype, bool,
  complex, fixed-length strings, compound datasets (structured arrays), scalar datasets
  (0-d arrays; cute-shm dropped them), chunked/compressed datasets, and attributes of any
  type (integer attributes crashed cute-shm). Unsupported types (variable-length data,
  references) raise ValueError naming the dataset. Arrays of Python objects raise
  TypeError (cute-shm stored their pointers). A full store or /dev/shm is MemoryError
  naming the size (cute-shm died of SIGBUS).
- Command line: ``python -m shmstore.compat.cute_shm hdf5 PROJECT FILE [-o] [-no-progress]
  [-v]``, ``... list [-s]``, ``... unlink PROJECT``; installed, also ``cute-shm-hdf5``,
  ``cute-shm-list`` and ``cute-shm-unlink``. ``list`` shows each project's arrays, size,
  lifetime and an integrity column: "ok" when every member is present, its directory
  valid and its size what the set records.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, TypedDict, Union

import numpy as np

import shmstore

try:  # Python 3.10+
    from typing import TypeAlias
except ImportError:  # pragma: no cover
    TypeAlias = Any  # type: ignore

__all__ = [
    "ArrayDict", "SharedArray", "SharedArrayMeta", "SharedArrayDict", "Project2Toml",
    "arrays_to_shm", "unlinked_arrays_to_shm", "shm_to_arrays", "hdf5_to_shm",
    "unlinked_hdf5_to_shm", "unlink", "hdf5_size", "bytes_to_human",
]

_log = logging.getLogger("cute_shm")
_PREFIX = "cute-shm/"

ArrayDict: TypeAlias = Dict[str, Union["ArrayDict", np.ndarray]]


class SharedArrayMeta(TypedDict, total=False):
    shm_name: str
    shm_private_name: str
    shm: Any
    shape: tuple
    dtype: str
    attrs: Dict[str, Any]


class SharedArray(TypedDict):
    meta: SharedArrayMeta
    data: np.ndarray


SharedArrayDict: TypeAlias = Dict[str, Union[SharedArray, "SharedArrayDict"]]


class Project2Toml:
    """Kept for programs that set ``Project2Toml.root``: shmstore writes no TOML file (the
    set's directory in the store is its metadata), so the attribute is only recorded."""

    root: Path = Path("/tmp/cute-shm")


class _Segment:
    """What meta["shm"] holds: the member's name and bytes. The array does not depend on
    it (it holds its own lease), so it may be dropped or closed at any time."""

    def __init__(self, name: str, data: np.ndarray) -> None:
        self.name = name
        self.size = int(data.nbytes)
        self._data = data

    @property
    def buf(self) -> memoryview:
        return memoryview(self._data.reshape(-1).view(np.uint8)) if self._data.size else memoryview(b"")

    def close(self) -> None:
        self._data = np.empty(0, np.uint8)

    def unlink(self) -> None:
        """Readers never remove data: use cute_shm.unlink(project)."""

    def __repr__(self) -> str:
        return f"<shmstore cute-shm segment {self.name!r} size={self.size}>"


_store: Optional[shmstore.Store] = None
_store_pid = -1


def _store_name() -> str:
    return os.environ.get("SHMSTORE_CUTE_SHM_STORE", "cute_shm")


def _the_store() -> shmstore.Store:
    global _store, _store_pid
    if (_store is None or _store.closed or _store_pid != os.getpid()
            or _store.name != _store_name()):
        _store = shmstore.Store(_store_name())
        _store_pid = os.getpid()
    return _store


def _prefix(project_name: str) -> str:
    if not isinstance(project_name, str) or not project_name or "/" in project_name:
        raise ValueError(f"cute_shm: invalid project name {project_name!r}")
    return _PREFIX + project_name


def _check_leaves(arrays: Any, path: str = "") -> None:
    if not isinstance(arrays, dict):
        raise TypeError(f"cute_shm: expected a dict of numpy arrays, got {type(arrays).__name__}")
    for k, v in arrays.items():
        if isinstance(v, dict):
            _check_leaves(v, f"{path}{k}/")
        elif not isinstance(v, np.ndarray):
            raise TypeError(f"cute_shm: '{path}{k}' is a {type(v).__name__}, not a numpy array")
        elif v.dtype.hasobject:
            raise TypeError(f"cute_shm: '{path}{k}' is an array of Python objects (dtype "
                            f"object): its items are pointers no other process can read")


def arrays_to_shm(project_name: str, arrays: ArrayDict, persistent: bool = False,
                  overwrite: bool = False) -> None:
    """Copy the nested dict of arrays into shared memory as the project (all-or-nothing).
    FileExistsError if the project exists and not overwrite; TypeError for non-arrays and
    object arrays; MemoryError when the store or /dev/shm is full."""
    _check_leaves(arrays)
    _the_store().put_tree(_prefix(project_name), arrays, seal=False, overwrite=overwrite,
                          persistent=persistent)
    _log.debug("cute_shm: project %s created (persistent=%s)", project_name, persistent)


@contextlib.contextmanager
def unlinked_arrays_to_shm(project_name: str, arrays: ArrayDict,
                           overwrite: bool = False) -> Iterator[None]:
    """arrays_to_shm, and the project is removed when the block exits."""
    arrays_to_shm(project_name, arrays, persistent=False, overwrite=overwrite)
    try:
        yield
    finally:
        _unlink_quiet(project_name)


def _tree(d: Dict[str, Any], attrs: Dict[str, Any], path: str) -> SharedArrayDict:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = _tree(v, attrs[k], f"{path}/{k}")
            continue
        a = v if isinstance(v, np.ndarray) else np.asarray(v)
        name = f"{_store_name()}:{path}/{k}"
        meta: SharedArrayMeta = {"shm_name": name, "shm_private_name": name,
                                 "shm": _Segment(name, a), "shape": tuple(a.shape),
                                 "dtype": str(a.dtype),
                                 "attrs": {ak: av for ak, av in attrs[k].items()
                                           if ak != "__dtype__"}}
        out[k] = {"data": a, "meta": meta}
    return out


def _reap_dead(prefix: str) -> None:
    """A project tied to a process that has exited goes now rather than at the next
    attach (what cute-shm's persistent=False promised: gone when its creator exits)."""
    s = _the_store()
    try:
        info = s.info(prefix)
    except FileNotFoundError:
        return
    if info.get("tied"):
        try:
            os.kill(info["owner_pid"], 0)
        except ProcessLookupError:
            s.gc()
        except PermissionError:
            pass


def shm_to_arrays(project_name: str, persistent: bool = True) -> SharedArrayDict:
    """The project as a nested dict of {"data": zero-copy writable array, "meta": {...}}.
    FileNotFoundError if there is no such project (or it is still being transferred).
    `persistent` is accepted for compatibility: a reader never removes anything."""
    del persistent
    prefix = _prefix(project_name)
    s = _the_store()
    _reap_dead(prefix)
    try:
        data = s.get_tree(prefix)
        attrs = s.get_tree(prefix, attrs=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"cute_shm: no project '{project_name}' in shared memory "
                                f"(store '{_store_name()}')") from None
    return _tree(data, attrs, prefix)


def hdf5_to_shm(hdf5_path: Union[str, Path], project_name: str, progress: bool = True,
                persistent: bool = False, overwrite: bool = False) -> None:
    """Load the HDF5 file as the project (all-or-nothing), every dataset read by libhdf5
    straight into shared memory; `progress` draws a bar with bytes, rate and ETA.
    FileNotFoundError (no file), FileExistsError, ValueError (unsupported type, naming the
    dataset), MemoryError (full), OSError (corrupt file)."""
    path = os.fspath(hdf5_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"cute_shm: no HDF5 file {path}")
    n = _the_store().load_hdf5(path, _prefix(project_name), progress=bool(progress),
                               overwrite=overwrite, persistent=persistent, writable=True)
    _log.debug("cute_shm: project %s loaded from %s (%d datasets)", project_name, path, n)


@contextlib.contextmanager
def unlinked_hdf5_to_shm(hdf5_path: Union[str, Path], project_name: str, progress: bool = True,
                         overwrite: bool = False) -> Iterator[None]:
    """hdf5_to_shm, and the project is removed when the block exits."""
    hdf5_to_shm(hdf5_path, project_name, progress=progress, persistent=False,
                overwrite=overwrite)
    try:
        yield
    finally:
        _unlink_quiet(project_name)


def _unlink_quiet(project_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        unlink(project_name)


def unlink(project_name: str) -> None:
    """Remove the project (arrays already mapped by readers stay valid until dropped).
    FileNotFoundError if there is none."""
    if _the_store().delete_tree(_prefix(project_name)) == 0:
        raise FileNotFoundError(f"cute_shm: no project '{project_name}' in shared memory")
    _log.debug("cute_shm: project %s unlinked", project_name)


def hdf5_size(hdf5_path: Union[str, Path]) -> int:
    """Bytes the datasets of the HDF5 file take in memory."""
    import h5py

    total = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset) and obj.shape is not None:
            total += int(np.prod(obj.shape, dtype=np.int64)) * obj.dtype.itemsize

    with h5py.File(os.fspath(hdf5_path), "r") as f:
        f.visititems(visit)
    return total


def bytes_to_human(size: Union[int, float]) -> str:
    """1536 -> '1.50 KB' (powers of 1024)."""
    n = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PB"  # pragma: no cover


# ---- command line ----------------------------------------------------------------------

def _projects() -> Dict[str, Dict[str, Any]]:
    s = _the_store()
    out = {}
    for name in s.names(_PREFIX):
        _reap_dead(name)
        try:
            info = s.info(name)
        except FileNotFoundError:
            continue
        if info.get("kind") != "set" or info.get("loading"):
            continue  # being transferred: not listed (as cute-shm)
        out[name[len(_PREFIX):]] = info
    return out


def _integrity(prefix: str, info: Dict[str, Any]) -> str:
    """'ok' when the set opens (its directory is valid: every member inside its block) and
    its arrays' bytes add up to the payload the set records."""
    try:
        tree = _the_store().get_tree(prefix)
    except (OSError, ValueError) as e:
        return f"BROKEN ({e})"
    size = 0

    def walk(d: Dict[str, Any]) -> None:
        nonlocal size
        for v in d.values():
            if isinstance(v, dict):
                walk(v)
            elif isinstance(v, np.ndarray):
                size += v.nbytes

    walk(tree)
    return "ok" if size == info["size"] else f"BROKEN ({size} of {info['size']} bytes)"


def main_hdf5(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="cute-shm-hdf5",
                                description="Load an HDF5 file into shared memory.")
    p.add_argument("project_name")
    p.add_argument("hdf5_path")
    p.add_argument("-o", action="store_true", help="overwrite an existing project")
    p.add_argument("-no-progress", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bar")
    p.add_argument("-v", action="store_true", help="list the datasets instead of a bar")
    a = p.parse_args(argv)
    if a.v:
        logging.basicConfig(level=logging.DEBUG)
    try:
        path = os.fspath(a.hdf5_path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no HDF5 file {path}")
        prog: Any = (lambda d, done, total: print(f"  {d}", file=sys.stderr) and False) \
            if a.v else (not a.no_progress and sys.stderr.isatty())
        n = _the_store().load_hdf5(path, _prefix(a.project_name), progress=prog,
                                   overwrite=a.o, persistent=True, writable=True)
    except FileExistsError as e:
        print(f"cute-shm-hdf5: {e} (use -o to overwrite)", file=sys.stderr)
        return 73
    except FileNotFoundError as e:
        print(f"cute-shm-hdf5: {e}", file=sys.stderr)
        return 66
    except (ValueError, TypeError) as e:
        print(f"cute-shm-hdf5: {e}", file=sys.stderr)
        return 65
    except MemoryError as e:
        print(f"cute-shm-hdf5: {e}", file=sys.stderr)
        return 73
    except OSError as e:
        print(f"cute-shm-hdf5: {e}", file=sys.stderr)
        return 74
    print(f"project {a.project_name}: {n} datasets in shared memory")
    return 0


def main_list(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="cute-shm-list", description="List shared-memory projects.")
    p.add_argument("-s", action="store_true", help="short: one line per project")
    a = p.parse_args(argv)
    projects = _projects()
    if not projects:
        print("no cute-shm project in shared memory")
        return 0
    for name, info in sorted(projects.items()):
        life = "tied to pid %d" % info["owner_pid"] if info["tied"] else "persistent"
        if a.s:
            print(f"{name}\t{bytes_to_human(info['size'])}")
            continue
        print(f"{name}: {info['members']} arrays, {bytes_to_human(info['size'])}, {life}, "
              f"integrity: {_integrity(_PREFIX + name, info)}")
        tree = _the_store().get_tree(_PREFIX + name)

        def show(d: Dict[str, Any], indent: str) -> None:
            for k, v in sorted(d.items()):
                if isinstance(v, dict):
                    print(f"{indent}{k}/")
                    show(v, indent + "  ")
                else:
                    arr = np.asarray(v)
                    print(f"{indent}{k}: {arr.dtype} {tuple(arr.shape)} "
                          f"{bytes_to_human(arr.nbytes)}")

        show(tree, "  ")
    return 0


def main_unlink(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="cute-shm-unlink", description="Remove a project.")
    p.add_argument("project_name")
    a = p.parse_args(argv)
    try:
        unlink(a.project_name)
    except FileNotFoundError as e:
        print(f"cute-shm-unlink: {e}", file=sys.stderr)
        return 66
    return 0


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmds = {"hdf5": main_hdf5, "list": main_list, "unlink": main_unlink}
    if not argv or argv[0] not in cmds:
        print("usage: python -m shmstore.compat.cute_shm {hdf5 PROJECT FILE [-o] [-no-progress] "
              "[-v] | list [-s] | unlink PROJECT}", file=sys.stderr)
        return 64
    return cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
