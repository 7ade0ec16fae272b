"""real_robot.utils.multiprocessing.shared_object, on shmstore (drop-in).

Switch by changing one import::

    # from real_robot.utils.multiprocessing.shared_object import SharedObject
    from shmstore.compat.shared_object import SharedObject

    so = SharedObject("test", data=np.ones((480, 848, 3)))   # creates with data
    so = SharedObject("test")                                # mounts existing
    so = SharedObject("trigger"); so.trigger(); so.triggered # trigger object

Every SharedObject is a value in one store (env SHMSTORE_COMPAT_STORE, default
"shared_object"). What changed under the API, not in it:

- No readers-writer lock: readers copy under a sequence check or pin a version, so a
  writer is never starved and never blocks, and a writer killed mid-assign leaves the
  previous version intact (no torn data).
- ``modified`` / ``triggered`` compare version numbers, not time stamps: two assigns in
  the same clock tick are two changes. A SharedObject *is* a ``shmstore.Value`` (a
  subclass): ``modified`` and ``triggered`` are that type's C getters (one atomic load),
  and ``put``/``get``/``view``/``version``/``seen`` are there too.
- Arrays are 64-byte aligned, float128 / complex256 ones included (stored natively).
- Works after fork (the store is re-attached in the child), with spawn/forkserver
  (pickles by name), and nothing is unlinked when a process exits: only ``unlink()``
  removes an object.
- Creation is race-free: of several processes creating the same name, one creates it and
  the others mount it. A creation that fails (unsupported data) leaves no object behind.

As in the seed: ``SharedObject._object_types`` (None, bool, int, float, complex, Pose,
str, bytes, bytearray, ndarray, dict) and ``object_type_idx``; ``NP_DTYPES``; a
SharedObject fixes its type, an array's dtype and shape and a container's layout (a
dict's key types and value layouts; renamed keys are fine); every array ``fetch()``
returns owns its data; ``Pose`` is sapien.Pose, or a float32 stand-in with the same API
(``p``, ``q``, ``set_p``, ``set_q``, ``inv``, ``*``, ``to_transformation_matrix``,
pickling, ``==`` / ``hash``) when sapien is not installed. Beyond the seed: list, tuple
and set data (``object_type_idx`` None), and arrays of dtypes beyond NP_DTYPES (not object).

The one known difference: a str / bytes / bytearray object may hold up to its whole
capacity, ``init_size`` bytes (or its first data's size, if larger), where the seed
refuses more than half of it (``init_size=100`` holds at most 50 bytes; the seed sizes
its buffer for twice the data, plus a terminator byte). shmstore keeps the length in the
version header, not a terminator, and sizes each version's block for its data: the
capacity is a limit kept for the seed's sake, not a buffer with slack to reserve, and
refusing its second half would only fail assigns that fit. So a test expecting
BufferError just past half of init_size sees the assign succeed.
"""
from __future__ import annotations

import functools
import inspect
import multiprocessing as mp
import os
import time
from typing import Any, Callable, Optional

import numpy as np

from .. import Buffer, LayoutError, NoValueError, NotFoundError, Store, Value

__all__ = [
    "SharedObject", "SharedDynamicObject", "SharedObjectDefaultDict", "Pose", "NP_DTYPES",
    "start_and_wait_for_process", "signal_process_ready",
]

_CAP = "shared_object.capacity"
_TYPE = "shared_object.type"
_CREATE_WAIT = 5.0  # s a mounter waits for a creator that has not published yet


class Pose:
    """A rigid-body pose, used when sapien is not installed: position ``p`` (xyz) and
    rotation quaternion ``q`` (wxyz), float32, with what robot code does with a
    sapien.Pose: ``Pose(p=, q=)``, ``p`` / ``q`` (copies) and ``set_p`` / ``set_q``,
    ``inv()``, ``a * b`` (apply b, then a), ``to_transformation_matrix()`` (4x4 float32),
    ``__getstate__`` / ``__setstate__`` (the 7 floats ``p + q``, pickling), ``==`` and
    ``hash`` on those 7 values (so a pose used as a dict key must not be changed
    afterwards). When sapien is installed, the module's ``Pose`` is sapien.Pose."""

    __slots__ = ("_p", "_q")

    def __init__(self, p=(0.0, 0.0, 0.0), q=(1.0, 0.0, 0.0, 0.0)):
        self.set_p(p)
        self.set_q(q)

    p = property(lambda self: self._p.copy(), lambda self, p: self.set_p(p),
                 doc="Position xyz, float32 (a copy; assign or set_p() to change it).")
    q = property(lambda self: self._q.copy(), lambda self, q: self.set_q(q),
                 doc="Rotation quaternion wxyz, float32 (a copy; assign or set_q()).")

    def set_p(self, p) -> None:
        self._p = np.array(p, dtype=np.float32).reshape(3)

    def set_q(self, q) -> None:
        self._q = np.array(q, dtype=np.float32).reshape(4)

    def inv(self) -> "Pose":
        q_inv = self._q * np.float32([1, -1, -1, -1])
        return _FallbackPose(-_rotate(q_inv, self._p), q_inv)

    def __mul__(self, other):
        if not isinstance(other, _FallbackPose):
            return NotImplemented
        return _FallbackPose(_rotate(self._q, other._p) + self._p, _qmul(self._q, other._q))

    def to_transformation_matrix(self) -> np.ndarray:
        w, x, y, z = self._q.astype(np.float64)
        m = np.eye(4)
        m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
        m[:3, 3] = self._p
        return m.astype(np.float32)

    def __getstate__(self) -> tuple:
        return tuple(float(v) for v in np.concatenate([self._p, self._q]))

    def __setstate__(self, state) -> None:
        self.set_p(state[:3])
        self.set_q(state[3:])

    def __eq__(self, other):
        if not isinstance(other, _FallbackPose):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()

    def __hash__(self):
        return hash(self.__getstate__())  # equal poses have equal states: equal hashes

    def __repr__(self):
        return (f"Pose([{', '.join(f'{x:g}' for x in self._p)}], "
                f"[{', '.join(f'{x:g}' for x in self._q)}])")


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions, in float64, rounded to float32."""
    aw, ax, ay, az = a.astype(np.float64)
    bw, bx, by, bz = b.astype(np.float64)
    return np.float32([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                       aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw])


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """v rotated by the unit quaternion q (wxyz), in float64, rounded to float32."""
    u, w = q[1:].astype(np.float64), float(q[0])
    v = v.astype(np.float64)
    t = 2.0 * np.cross(u, v)
    return (v + w * t + np.cross(u, t)).astype(np.float32)


_FallbackPose = Pose
try:  # sapien.Pose if available, as in the original
    from sapien import Pose  # type: ignore  # noqa: F811
except Exception:  # pragma: no cover - sapien is optional
    pass
_POSE_TYPES = tuple({Pose, _FallbackPose})

# The seed's numpy dtypes (shared_object_metas.NP_DTYPES), float128 / complex256 where
# numpy has them. Arrays of other dtypes are accepted too (shmstore stores them).
NP_DTYPES = tuple(t for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                              np.uint32, np.int64, np.uint64, np.float16, np.float32,
                              np.float64, getattr(np, "float128", None), np.complex64,
                              np.complex128, getattr(np, "complex256", None))
                  if t is not None)

_SCALARS = (type(None), bool, int, float, complex)
_BUFFERS = (str, bytes, bytearray)
_CONTAINERS = (dict, list, tuple, set)

_stores: dict = {}


def _store() -> Store:
    name = os.environ.get("SHMSTORE_COMPAT_STORE", "shared_object")
    s = _stores.get(name)
    if s is None or s.closed:
        s = _stores[name] = Store(name)
    return s


def _check_supported(data, depth=0):
    t = type(data)
    if t in _SCALARS or t in _BUFFERS or t is np.ndarray or isinstance(data, _POSE_TYPES):
        if t is np.ndarray and data.dtype.hasobject:
            raise TypeError("SharedObject does not support numpy arrays of dtype object")
        return
    if t in _CONTAINERS and depth < 64:
        items = list(data.keys()) + list(data.values()) if t is dict else data
        for x in items:
            _check_supported(x, depth + 1)
        return
    raise TypeError(f"SharedObject does not support data of type {t.__name__}")


def _pose_array(pose) -> np.ndarray:
    return np.concatenate([np.asarray(pose.p, np.float32).reshape(3),
                           np.asarray(pose.q, np.float32).reshape(4)])


def _layout(data, depth=0):
    """What a SharedObject fixes when it is created, for a container: its type, length
    and its items' layouts (a dict: the layouts of its keys and values, in order); an
    array's dtype and shape; the type of anything else. Assigning a container of another
    layout raises BufferError, as the seed's fixed-size buffer did. A dict's key values
    are not fixed: the seed accepts renamed keys of the same types (they fit its buffer)."""
    t = type(data)
    if t is np.ndarray:  # in native byte order, as stored
        return (t, data.dtype.newbyteorder("=").str, data.shape)
    if depth > 64:
        return t
    if t is list or t is tuple:
        return (t, tuple(_layout(x, depth + 1) for x in data))
    if t is dict:
        return (t, tuple((_layout(k, depth + 1), _layout(v, depth + 1))
                         for k, v in data.items()))
    if t is set:
        return (t, len(data))
    return Pose if isinstance(data, _POSE_TYPES) else t


@functools.lru_cache(maxsize=None)
def _init_signature(cls) -> inspect.Signature:
    return inspect.signature(cls.__init__)


def _nbytes(data) -> int:
    if isinstance(data, str):
        return len(data.encode("utf-8", "surrogatepass"))
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    return 0


class SharedObject(Value):
    """Shared object in shared memory (shmstore value). Reallocation, changing the object
    type and changing numpy metas (dtype, shape) are not allowed: use SharedDynamicObject.

    :param name: name of the object (unique in the compat store).
    :param data: data to assign (creates the object if needed); None mounts an existing
        object, or creates a trigger object holding None.
    :param init_size: capacity in bytes of a str / bytes / bytearray object.
    """

    _fetch_fn_type = Optional[Callable[[Any], Any]]
    # The seed's supported types, in its order: object_type_idx indexes this tuple
    # (upstream code uses it in annotations, Union[SharedObject._object_types]).
    _object_types = (type(None), bool, int, float, complex, Pose, str, bytes, bytearray,
                     np.ndarray, dict)
    _np_dtypes = NP_DTYPES  # the name an older seed line used

    def __new__(cls, name: str, *args, data: Any = None, **kwargs):
        # Mount or create, race-free: of several processes creating `name` at once,
        # exactly one gets it with exclusive=True and the others mount it. Data is checked
        # first: a refused type must not leave an empty object for others to wait on.
        # (*args, **kwargs: a subclass's own constructor arguments go to its __init__.)
        if data is not None:
            _check_supported(data)
        if args or kwargs:  # bad arguments must fail before anything is created, too
            try:
                _init_signature(cls).bind(None, name, *args, data=data, **kwargs)
            except TypeError as e:
                raise TypeError(f"{cls.__name__}(): {e}") from None
        store = _store()
        try:
            self = super().__new__(cls, store, name, create=False)
            self._created = False
        except NotFoundError:
            try:
                self = super().__new__(cls, store, name, exclusive=True)
                self._created = True
            except FileExistsError:
                self = super().__new__(cls, store, name, create=False)
                self._created = False
        return self

    def __init__(self, name: str, *, data: Any = None, init_size: int = 100):
        self.init_size = init_size
        self._kind = None  # Python type of the data; None = not known yet
        self._cap = 0
        self._layout = None  # a container's _layout(); None = not a container / not known
        if self._created:
            try:
                self._publish(data, initial=True)
            except BaseException:  # a failed creation leaves nothing behind
                self._discard_unpublished()
                raise
        else:
            if self.version == 0:  # the creator has not published yet: wait for it
                try:
                    Value.wait(self, after=0, timeout=_CREATE_WAIT)
                except TimeoutError:  # the creator died: take over
                    self._publish(data, initial=True)
            if self._kind is None:
                self._load_meta()
            if data is not None:
                self.assign(data)
        self.seen = self.version

    def _discard_unpublished(self):
        """Delete the object this instance created if nothing was ever published in it:
        a mounter must not find (and wait on) an empty object nobody will fill."""
        try:
            if self.version == 0:
                _store().delete(self.name)
        except LookupError:  # NotFoundError / StaleError: already gone
            pass

    # -- metadata ------------------------------------------------------------------------
    def _load_meta(self):
        seen = self.seen  # learning the type is not "seeing" a change
        try:  # a view: learning the type of a big array must not copy it
            data = self.view()
        except NoValueError:
            self._kind, self._cap = None, 0
            return
        finally:
            self.seen = seen
        if isinstance(data, memoryview):  # bytes are viewed as a read-only memoryview
            self._kind, n = bytes, data.nbytes
            data.release()
        else:
            data = self._decode(data)
            self._kind, n = type(data), _nbytes(data)
            self._layout = _layout(data) if self._kind in _CONTAINERS else None
        if self._kind in _BUFFERS:
            cap = self.attrs().get(_CAP)
            self._cap = cap if isinstance(cap, int) else max(self.init_size, n)

    def _decode(self, data):
        if (type(data) is np.ndarray and data.shape == (7,) and data.dtype == np.float32
                and (self._kind in _POSE_TYPES or self.attrs().get(_TYPE) == "Pose")):
            return Pose(data[:3].copy(), data[3:].copy())
        return data

    def _publish(self, data, *, initial=False, same_layout=False):
        t = type(data)
        if isinstance(data, _POSE_TYPES):
            self.put(_pose_array(data), attrs={_TYPE: "Pose"}, same_layout=same_layout)
            t = Pose
        elif t in _BUFFERS:
            n = _nbytes(data)
            if initial or self._kind is not t:
                self._cap = max(self.init_size, n)
            self.put(data, attrs={_CAP: self._cap})
        else:
            self.put(data, same_layout=same_layout)
        self._kind = t
        self._layout = _layout(data) if t in _CONTAINERS else None

    # -- API -----------------------------------------------------------------------------
    def assign(self, data) -> "SharedObject":
        """Assign data to the object: publishes a new version (readers are never blocked).
        Raises BufferError if the type, the numpy dtype/shape or a str/bytes size beyond
        the capacity differ from the object's; TypeError for unsupported types."""
        t = type(data)
        kind = self._kind
        if t is kind and t in _SCALARS:
            # Hot path (a robot's state at kHz): same scalar type, so same layout unless an
            # int no longer fits 64 bits (then the put refuses and we raise like the seed).
            try:
                self.put(data, same_layout=True)
            except LayoutError as e:
                raise BufferError(f"SharedObject {self.name!r}: {e}; changing dtype or shape "
                                  f"needs SharedDynamicObject") from None
            return self
        if kind is None:
            self._load_meta()
            kind = self._kind
        if isinstance(data, _POSE_TYPES):
            t = Pose
        if kind is not None and t is not kind:
            _check_supported(data)
            raise BufferError(f"SharedObject {self.name!r} holds {kind.__name__}, cannot assign "
                              f"{type(data).__name__} (use SharedDynamicObject to reallocate)")
        if t in _BUFFERS:
            n = _nbytes(data)
            if n > self._cap:
                raise BufferError(f"SharedObject {self.name!r}: {n} bytes exceed its capacity of "
                                  f"{self._cap} bytes (init_size); use SharedDynamicObject")
            self.put(data, attrs={_CAP: self._cap})
        elif t in _SCALARS or t is np.ndarray or t is Pose:
            try:
                self._publish(data, same_layout=True)
            except LayoutError as e:
                raise BufferError(f"SharedObject {self.name!r}: {e}; changing dtype or shape "
                                  f"needs SharedDynamicObject") from None
        else:  # a container
            _check_supported(data)
            if self._layout is not None and _layout(data) != self._layout:
                raise BufferError(f"SharedObject {self.name!r}: a {t.__name__} of another length, "
                                  f"keys, dtypes or shapes than the one it was created with "
                                  f"(use SharedDynamicObject to reallocate)")
            self.put(data)
            self._layout = _layout(data)
        self._kind = t
        return self

    def fetch(self, fn: "SharedObject._fetch_fn_type" = None) -> Any:
        """A copy of the data. With `fn`, returns fn(data) where numpy data is a read-only
        zero-copy view: fn that makes a new array (x + 1, x.sum()) costs one pass and no
        extra copy. As in the seed, every array returned owns its data: one that does
        not (a slice of the view, a boolean-mask index of a slice) is copied."""
        if fn is None:
            data = self.get()
            if type(data) is np.ndarray and data.shape == (7,):
                data = self._decode(data)
            return _owned(data)
        data = self.view()
        if isinstance(data, memoryview):  # a bytes object is viewed as a memoryview
            mv, data = data, data.tobytes()
            mv.release()
        elif type(data) is np.ndarray and data.shape == (7,):
            data = self._decode(data)
        return _owned(fn(data))

    def trigger(self) -> "SharedObject":
        """Publish a new version with the same data (a start/stop signal). As in the seed,
        it does not change this instance's record of what it has seen: its own
        `triggered` sees it (once), like any other process's."""
        Value.trigger(self)
        return self

    # `modified` (does the object have a change this instance has not fetched, assigned or
    # seen through `triggered`? does not consume it) and `triggered` (the same, consuming
    # it: True once per change) are inherited from shmstore.Value: C getters comparing the
    # value's version with `seen`.

    @property
    def object_type(self):
        if self._kind is None:
            self._load_meta()
        return self._kind

    @property
    def object_type_idx(self) -> Optional[int]:
        """The index of object_type in _object_types, as in the seed (None for the types
        shmstore adds: list, tuple, set)."""
        try:
            return self._object_types.index(self.object_type)
        except ValueError:
            return None

    @property
    def nbytes(self) -> int:
        return self.info()["size"]

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the object changes (shmstore extension). False on timeout."""
        try:
            Value.wait(self, after=self.seen, timeout=timeout)
            return True
        except TimeoutError:
            return False

    def unlink(self):
        """Remove the object from shared memory (other instances then fail with StaleError)."""
        _store().delete(self.name)

    def __reduce__(self):
        return (self.__class__, (self.name,), {"init_size": self.init_size})

    def __setstate__(self, state):
        self.init_size = state.get("init_size", self.init_size)

    def __repr__(self):
        try:
            size = self.info()["size"]
        except Exception:
            size = "?"
        kind = self._kind.__name__ if self._kind is not None else "?"
        return f"<{self.__class__.__name__}: name={self.name}, data_type={kind}, nbytes={size}>"


def _owned(out, depth=0):
    """`out` with every numpy array that does not own its data replaced by a copy, also
    inside the dict / list / tuple a fetch fn may return (`lambda t: t["rgb"]`,
    `lambda t: (t["a"], t["b"])`): no fetched result holds a lease or aliases anything.
    A bytes view of the store becomes bytes."""
    t = type(out)
    if isinstance(out, np.ndarray):
        return out if out.flags.owndata else out.copy()
    if t is memoryview:
        return out.tobytes() if isinstance(out.obj, Buffer) else out
    if depth > 64 or (t is not list and t is not tuple and t is not dict):
        return out
    if t is dict:
        items = {k: _owned(v, depth + 1) for k, v in out.items()}
        return out if all(items[k] is out[k] for k in out) else items
    items = [_owned(x, depth + 1) for x in out]
    return out if all(a is b for a, b in zip(items, out)) else t(items)


class SharedDynamicObject(SharedObject):
    """SharedObject whose type, numpy meta and size may change: assign reallocates when
    needed (or always with reallocate=True); other instances see the new data at once."""

    def assign(self, data, reallocate: bool = False) -> "SharedDynamicObject":
        """Publish `data` whatever its type, shape or size. `reallocate` is the seed's
        parameter: every assign here already lays the data out afresh."""
        _check_supported(data)
        self._publish(data, initial=True)
        return self


class SharedObjectDefaultDict(dict):
    """dict that mounts (or creates) SharedObject(key) on first access of a key."""

    def __missing__(self, key):
        so = self[key] = SharedObject(key)
        return so


def _ready_name(proc_name: str) -> str:
    return f"__proc_ready__/{proc_name}"


def signal_process_ready() -> None:
    """Called in a child process: wakes start_and_wait_for_process() in the parent."""
    SharedObject(_ready_name(mp.current_process().name)).trigger()


def start_and_wait_for_process(process: mp.Process, *, timeout: Optional[float] = None) -> None:
    """Start `process` and block (no polling: a futex wait) until it calls
    signal_process_ready(). Raises TimeoutError, or RuntimeError if it exits first."""
    so = SharedObject(_ready_name(process.name))
    base = so.version
    process.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
        try:
            Value.wait(so, after=base, timeout=max(left, 0.0))
            return
        except TimeoutError:
            if not process.is_alive():
                raise RuntimeError(f"process {process.name} exited (code {process.exitcode}) "
                                   f"before signal_process_ready()") from None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"process {process.name} not ready within {timeout} s") from None
