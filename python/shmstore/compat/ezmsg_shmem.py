"""shmstore.compat.ezmsg_shmem - a drop-in for ``ezmsg.tools.shmem`` (seed 003) on rings.

ezmsg users change the imports of both halves::

    from shmstore.compat.ezmsg_shmem import ShMemCircBuff, ShMemCircBuffSettings  # sink
    from shmstore.compat.ezmsg_shmem import EZShmMirror                            # reader

and keep their programs: the sink (an ``ez.Unit`` when ``ezmsg`` is importable, a plain
class with the same members otherwise, so that it can be driven without ezmsg) receives
``AxisArray`` messages, or anything shaped like them (``.data``, ``.dims``,
``.axes[axis]`` with ``.gain``/``.offset`` or ``.data``, ``.key``), and appends them to a
circular buffer; the mirror, in any other process, needs no ezmsg and reads what came
since its last read with ``auto_view()``.

The buffer is a shmstore ring named ``shmem_name`` in the store ``ezmsg`` (or
``$SHMSTORE_EZMSG_STORE``): one object instead of a metadata segment plus one data segment
per generation. Everything the seed's header holds is derived from the ring, so nothing
can tear: ``write_index`` and ``wrap_counter`` come from one 64-bit count of frames,
``dtype``/``shape``/``srate``/``key`` from the ring's generation. What the seed gets
wrong does not happen here (each has a test in python/tests/test_compat_ezmsg.py):

- 1-D streams (frames that are scalars) work, and so do chunks longer than the buffer;
- overflow recovery is exact: after an overflow the mirror reads on from the oldest frame
  still held (the seed skipped it: read_index = write_index + 1), and a single new frame
  is returned (the seed waited for two);
- a reader's exit removes nothing (the seed's readers registered the segments with
  ``resource_tracker``, which unlinked the writer's buffer when they exited);
- a re-configuration leaks nothing: the old generation's memory is freed when the last
  mirror lets go of it (the seed left one segment behind per change);
- memory ordering is the ring's (a release store publishes frames; readers check they were
  not overwritten while they read them): no torn index, header or frame;
- a second sink with the same name gets a clear error (OSError EBUSY naming the process)
  instead of unlinking the first one's segments;
- a mirror may wait for new data instead of polling: ``auto_view(n, timeout=seconds)``.

Deliberate differences: ``STATE.meta_shmem`` and ``STATE.buffer_shmem`` are None (there is
no segment to hold); ``STATE.meta_struct`` is a local copy of the header the sink updates
on every message; ``buffer`` is read-only for mirrors (the seed handed out the writable
mapping); the buffer is not reset to index 0 by a reconfiguration in the sense of a new
segment, but each generation's storage starts at index 0 all the same.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import ctypes
import dataclasses
import hashlib
import multiprocessing.connection
import os
import time
import typing
import uuid

import numpy as np

import shmstore
from shmstore._shmstore import _RingMirror, _RingSinkPath

try:  # the sink is an ezmsg Unit when ezmsg is there; the mirror never needs it
    import ezmsg.core as ez
    from ezmsg.util.messages.axisarray import AxisArray
except ImportError:  # pragma: no cover - exercised when ezmsg is installed
    ez = None
    AxisArray = None

__all__ = [
    "ShMemCircBuff", "ShMemCircBuffSettings", "ShMemCircBuffState", "ShmemArrMeta",
    "EZShmMirror", "shorten_shmem_name", "to_bytes", "MAXKEYLEN", "CONNECT_RETRY_INTERVAL",
    "store_name",
]

UINT64_SIZE = 8
BYTEORDER = "little"
MAXKEYLEN = 1024
CONNECT_RETRY_INTERVAL = 0.5
STORE_ENV = "SHMSTORE_EZMSG_STORE"


def store_name() -> str:
    """The store the sink and the mirror share: $SHMSTORE_EZMSG_STORE, or "ezmsg"."""
    return os.environ.get(STORE_ENV) or "ezmsg"


def to_bytes(data: typing.Any) -> bytes:
    if isinstance(data, bool):
        return data.to_bytes(2, byteorder=BYTEORDER, signed=False)
    elif isinstance(data, int):
        # The seed's np.int64(data).to_bytes(...) fails on numpy's int64: the same bytes.
        return (int(data) & 0xFFFFFFFFFFFFFFFF).to_bytes(UINT64_SIZE, BYTEORDER, signed=False)


def shorten_shmem_name(long_name: typing.Optional[str]) -> typing.Optional[str]:
    """A short, deterministic name for a long one, as the seed computes it ("sm_" and 20
    characters of the URL-safe base64 of its SHA-256). Rings need no short names (object
    names may be 255 bytes); this is kept for programs that call it."""
    if long_name is None:
        return None
    digest = hashlib.sha256(long_name.encode("utf-8")).digest()
    return "sm_" + base64.urlsafe_b64encode(digest).decode("ascii")[:20]


class ShmemArrMeta(ctypes.Structure):
    """The seed's header, filled from a ring: a snapshot, consistent in itself."""

    _pack_ = 1
    _fields_ = [
        ("bvalid", ctypes.c_bool),
        ("dtype", ctypes.c_char),
        ("srate", ctypes.c_double),
        ("ndim", ctypes.c_uint32),
        ("shape", ctypes.c_uint32 * 64),
        ("buffer_generation", ctypes.c_uint32),
        ("wrap_counter", ctypes.c_uint64),
        ("_key_bytes", ctypes.c_byte * MAXKEYLEN),
        ("_key_len", ctypes.c_uint32),
        ("write_index", ctypes.c_uint64),
    ]

    @property
    def key(self) -> str:
        return ctypes.string_at(self._key_bytes, self._key_len).decode("utf8")

    @key.setter
    def key(self, value: str) -> None:
        key_bytes = value.encode("utf8")
        self._key_len = min(len(key_bytes), MAXKEYLEN)
        ctypes.memmove(self._key_bytes, key_bytes[: self._key_len], self._key_len)


def _meta_of(ring: "shmstore.Ring", attrs: dict, total: typing.Optional[int] = None) -> ShmemArrMeta:
    """The seed's header for the ring's generation (write index and wrap count from one
    count of frames)."""
    m = ShmemArrMeta()
    gen = ring.generation
    m.bvalid = bool(gen) and bool(attrs.get("bvalid", True))
    m.buffer_generation = int(attrs.get("buffer_generation", max(gen - 1, 0))) & 0xFFFFFFFF
    if not gen:
        m.srate = -1.0
        return m
    m.dtype = ring.dtype.char.encode("ascii")
    m.srate = float(attrs.get("srate", 0.0))
    shape = (ring.capacity,) + tuple(ring.frame_shape)
    m.ndim = len(shape)
    m.shape[: m.ndim] = shape
    n = (ring.total if total is None else total) - ring.base
    m.write_index = n % ring.capacity
    m.wrap_counter = n // ring.capacity
    m.key = str(attrs.get("key", ""))
    return m


# ---- the sink ------------------------------------------------------------------------------

if ez is not None:  # pragma: no cover - exercised when ezmsg is installed
    class ShMemCircBuffSettings(ez.Settings):
        shmem_name: typing.Optional[str]
        buf_dur: float
        conn: typing.Optional[multiprocessing.connection.Connection] = None
        axis: str = "time"

    class ShMemCircBuffState(ez.State):
        meta_shmem: typing.Optional[typing.Any] = None
        meta_struct: typing.Optional[ShmemArrMeta] = None
        buffer_shmem: typing.Optional[typing.Any] = None
        buffer_arr: typing.Optional[np.ndarray] = None
        meta_hash: int = -1
        store: typing.Optional[shmstore.Store] = None
        ring: typing.Optional[shmstore.Ring] = None
        buffer_generation: int = -1
else:
    @dataclasses.dataclass(frozen=True)
    class ShMemCircBuffSettings:
        shmem_name: typing.Optional[str]
        buf_dur: float
        conn: typing.Optional[multiprocessing.connection.Connection] = None
        axis: str = "time"

    @dataclasses.dataclass
    class ShMemCircBuffState:
        meta_shmem: typing.Optional[typing.Any] = None
        meta_struct: typing.Optional[ShmemArrMeta] = None
        buffer_shmem: typing.Optional[typing.Any] = None
        buffer_arr: typing.Optional[np.ndarray] = None
        meta_hash: int = -1
        store: typing.Optional[shmstore.Store] = None
        ring: typing.Optional[shmstore.Ring] = None
        buffer_generation: int = -1


def _axis_idx(msg: typing.Any, axis: str) -> int:
    get = getattr(msg, "get_axis_idx", None)
    return get(axis) if get is not None else list(msg.dims).index(axis)


class _CircBuffImpl:
    """What the sink does; ShMemCircBuff adds the ezmsg plumbing (or a plain __init__)."""

    _sig = None   # the layout signature of the last message (Python path)
    _fast = None  # shmstore._RingSinkPath of the current buffer layout, or None

    # ---- the seed's hooks ----

    async def initialize(self) -> None:
        # Nothing to clean up first: another sink's buffer is never destroyed (the seed
        # unlinked any segment of the same name here).
        self._cleanup_buffer()
        self._cleanup_meta()
        self._reset_meta()

    def on_settings(self, msg: ShMemCircBuffSettings) -> None:
        b_reset_meta = msg.shmem_name != self.SETTINGS.shmem_name
        b_reset_buff = msg.buf_dur != self.SETTINGS.buf_dur or msg.axis != self.SETTINGS.axis
        if b_reset_buff or b_reset_meta:
            self._cleanup_buffer()
        if b_reset_meta:
            self._cleanup_meta()
        self.apply_settings(msg)
        if b_reset_meta:
            self._reset_meta(reset_generation=False)

    async def shutdown(self) -> None:
        self._cleanup_buffer()
        self._cleanup_meta()
        if self.SETTINGS.conn is not None:
            self.SETTINGS.conn.send("close")
            self.SETTINGS.conn.close()

    async def check_continue(self):
        while True:
            if self.SETTINGS.conn is not None and self.SETTINGS.conn.poll():
                obj = self.SETTINGS.conn.recv()
                if obj == "quit":
                    await self.shutdown()
                    break
                else:
                    print(f"Unhandled object received on connection: {obj}")
            else:
                await asyncio.sleep(0.05)
        if ez is not None:  # pragma: no cover
            raise ez.NormalTermination

    async def on_message(self, msg: typing.Any) -> None:
        self.write_message(msg)

    # ---- the work ----

    def _send(self, what: str) -> None:
        if self.SETTINGS.conn is not None:
            self.SETTINGS.conn.send(what)

    def _reset_meta(self, reset_generation: bool = True) -> None:
        """Open (or create) the ring as its one writer."""
        self._send("meta reset")
        name = self.SETTINGS.shmem_name
        if name is None:  # the seed let SharedMemory pick a name
            name = "psm_" + uuid.uuid4().hex[:16]
            if ez is not None:  # pragma: no cover
                object.__setattr__(self.SETTINGS, "shmem_name", name)
            else:
                self.SETTINGS = dataclasses.replace(self.SETTINGS, shmem_name=name)
        if self.STATE.store is None:
            self.STATE.store = shmstore.Store(store_name())
        # writer=True: a second sink of the same name gets OSError(EBUSY) naming the
        # first one's process, and nothing of the first one's is touched.
        self.STATE.ring = self.STATE.store.ring(name, writer=True)
        self.STATE.meta_struct = _meta_of(self.STATE.ring, {"bvalid": False})
        if reset_generation:
            self.STATE.buffer_generation = -1
        self.STATE.meta_hash = -1
        self._sig = None
        self._fast = None

    def _cleanup_meta(self) -> None:
        """Remove the ring (the sink owns it, as the seed's sink owned its segments).
        Mirrors' views stay valid; their handles see it gone and reconnect."""
        self._send("meta cleanup")
        ring = self.STATE.ring
        self._fast = None
        self.STATE.meta_struct = None
        self.STATE.ring = None
        if ring is not None and not ring.closed:
            is_writer = ring.writer
            name = ring.name
            ring.close()
            if is_writer:
                try:
                    self.STATE.store.delete(name)
                except (KeyError, FileNotFoundError):
                    pass

    def _cleanup_buffer(self) -> None:
        """Mark the buffer invalid: a placeholder generation without frames (bvalid false),
        as the seed's destroyed buffer."""
        self._send("buffer cleanup")
        if self.STATE.meta_struct is not None:
            self.STATE.meta_struct.bvalid = False
        self.STATE.buffer_arr = None
        ring = self.STATE.ring
        if ring is not None and not ring.closed and ring.writer and ring.generation:
            if ring.attrs.get("bvalid", True):
                ring.reconfigure(dtype="<f8", frame_shape=(), capacity=1,
                                 attrs={"bvalid": False})
        self.STATE.meta_hash = -1
        self._sig = None
        self._fast = None

    def _n_frames_for_axis(self, axis: typing.Any) -> int:
        if hasattr(axis, "data"):
            fs = 1 / np.median(np.diff(axis.data)) if len(axis.data) > 1 else 100.0
        else:
            fs = 1 / axis.gain
        return int(np.ceil(self.SETTINGS.buf_dur * fs))

    def _get_msg_meta(self, msg: typing.Any):
        ax_idx = _axis_idx(msg, self.SETTINGS.axis)
        axis = msg.axes[self.SETTINGS.axis]
        n_frames = max(self._n_frames_for_axis(axis), 1)
        frame_shape = tuple(msg.data.shape[:ax_idx] + msg.data.shape[ax_idx + 1:])
        msg_dtype = np.asarray(msg.data).dtype.char.encode("utf8")
        msg_srate = 1 / axis.gain if hasattr(axis, "gain") else 0.0
        return msg_dtype, msg_srate, n_frames, frame_shape

    def _update_meta_if_needed(self, msg: typing.Any) -> bool:
        msg_dtype, msg_srate, n_frames, frame_shape = self._get_msg_meta(msg)
        key = getattr(msg, "key", "") or ""
        new_hash = hash((msg_dtype, msg_srate, n_frames) + frame_shape + (key,))
        b_update = self.STATE.meta_hash != new_hash
        if b_update:
            self._send("begin update")
            self.STATE.meta_hash = new_hash
            self._send("meta updated")
        return b_update

    def _reset_buffer(self, msg: typing.Any) -> None:
        """A new generation of the ring in the message's layout."""
        msg_dtype, msg_srate, n_frames, frame_shape = self._get_msg_meta(msg)
        self.STATE.buffer_generation += 1
        ring = self.STATE.ring
        ring.reconfigure(
            dtype=np.dtype(msg_dtype.decode("utf8")), frame_shape=frame_shape, capacity=n_frames,
            attrs={"bvalid": True, "srate": float(msg_srate), "key": str(getattr(msg, "key", "") or ""),
                   "axis": str(self.SETTINGS.axis),
                   "buffer_generation": int(self.STATE.buffer_generation)})
        self.STATE.buffer_arr = ring.buffer
        self.STATE.meta_struct = _meta_of(ring, ring.attrs)
        self._dtype, self._base, self._cap = ring.dtype, ring.base, ring.capacity
        self._fast = None
        gain = getattr(msg.axes[self.SETTINGS.axis], "gain", None)
        if isinstance(gain, float):  # a linear axis: later messages of this layout go to C
            self._fast = _RingSinkPath(
                ring, self.SETTINGS.axis, ring.dtype, gain, str(getattr(msg, "key", "") or ""),
                self.STATE.meta_struct, ShmemArrMeta.write_index.offset,
                ShmemArrMeta.wrap_counter.offset)
        self._send("buffer reset")

    def write_message(self, msg: typing.Any) -> None:
        """What on_message does, callable without an event loop.

        The common case (the layout of the last buffer set up, a linear axis first) is
        checked and written in C (shmstore._RingSinkPath): a sink woken once per chunk
        runs this code cold, where every Python-level step costs several times its warm
        time (the seed's full metadata check per message takes ~180 us cold here)."""
        fast = self._fast
        if fast is not None and fast.write(msg):
            return
        dims = getattr(msg, "dims", None)
        axis = self.SETTINGS.axis
        if dims is None or axis not in dims:
            return
        if self.STATE.ring is None:
            self._reset_meta()
        ax_idx = _axis_idx(msg, axis)
        data = msg.data
        if type(data) is not np.ndarray:
            data = np.asarray(data)
        if ax_idx:
            data = np.moveaxis(data, ax_idx, 0)
        gain = getattr(msg.axes[axis], "gain", None)
        sig = (data.dtype, data.shape[1:], gain, getattr(msg, "key", ""), ax_idx)
        if gain is None or sig != self._sig:  # a coordinate axis: the seed's check each time
            self._sig = sig
            if self._update_meta_if_needed(msg):
                self._reset_buffer(msg)
        ring = self.STATE.ring
        if data.dtype != self._dtype:  # a byte order of its own: the native one is stored
            data = data.astype(self._dtype)
        n = ring.write(data) - self._base
        meta = self.STATE.meta_struct
        meta.write_index = n % self._cap
        meta.wrap_counter = n // self._cap


if ez is not None:  # pragma: no cover - exercised when ezmsg is installed
    class ShMemCircBuff(_CircBuffImpl, ez.Unit):
        SETTINGS = ShMemCircBuffSettings
        STATE = ShMemCircBuffState

        INPUT_SIGNAL = ez.InputStream(AxisArray)
        INPUT_SETTINGS = ez.InputStream(ShMemCircBuffSettings)

        async def initialize(self) -> None:
            await _CircBuffImpl.initialize(self)

        @ez.subscriber(INPUT_SETTINGS)
        def on_settings(self, msg: ShMemCircBuffSettings) -> None:
            _CircBuffImpl.on_settings(self, msg)

        async def shutdown(self) -> None:
            await _CircBuffImpl.shutdown(self)

        @ez.task
        async def check_continue(self):
            await _CircBuffImpl.check_continue(self)

        @ez.subscriber(INPUT_SIGNAL, zero_copy=True)
        async def on_message(self, msg: AxisArray):
            self.write_message(msg)
else:
    class ShMemCircBuff(_CircBuffImpl):
        """The sink without ezmsg: ShMemCircBuff(settings) or
        ShMemCircBuff(shmem_name, buf_dur, conn=None, axis="time"), then drive it:
        ``await initialize()``, ``await on_message(msg)`` (or ``write_message(msg)``),
        ``on_settings(settings)``, ``await shutdown()``."""

        SETTINGS: ShMemCircBuffSettings
        STATE: ShMemCircBuffState
        INPUT_SIGNAL = "INPUT_SIGNAL"
        INPUT_SETTINGS = "INPUT_SETTINGS"

        def __init__(self, *args, settings: typing.Optional[ShMemCircBuffSettings] = None, **kwargs):
            if settings is None:
                if len(args) == 1 and not kwargs and isinstance(args[0], ShMemCircBuffSettings):
                    settings = args[0]
                else:
                    settings = ShMemCircBuffSettings(*args, **kwargs)
            self.SETTINGS = settings
            self.STATE = ShMemCircBuffState()

        def apply_settings(self, settings: ShMemCircBuffSettings) -> None:
            self.SETTINGS = settings


# ---- the mirror ----------------------------------------------------------------------------

class EZShmMirror(_RingMirror):
    """A reader of a ShMemCircBuff's buffer in another process (no ezmsg needed).

    ``auto_view(n=None)`` returns the frames written since the last call (all of them, or
    exactly ``n`` once ``n`` are there) and whether some were lost to overflow since: a
    zero-copy, read-only view of the buffer when they are contiguous in it, a copy when
    they wrap around its end. ``timeout=`` (seconds) makes it wait for them.

    ``auto_view`` is inherited from ``shmstore._shmstore._RingMirror`` (C): it reads the state below
    (``_ring``, ``_cursor``, ``_gen``, ``_valid``, ``_empty`` are its C fields) and does the
    common case itself (new frames in the generation the mirror knows); everything else is
    ``_auto_view_slow``."""

    def __init__(self, shmem_name: typing.Optional[str] = None, *,
                 store: typing.Optional[str] = None):
        self._store_name = store or store_name()
        self._store: typing.Optional[shmstore.Store] = None
        self._ring: typing.Optional[shmstore.Ring] = None
        self._head: typing.Optional[shmstore.Ring] = None  # follows at once, for `meta`
        self._head_gen = -1
        self._head_attrs: dict = {}
        self._shmem_name: typing.Optional[str] = None
        self._change_callback: typing.Optional[typing.Callable] = None
        self._gen = -1
        self._attrs: dict = {}
        self._valid = False
        self._buffer: typing.Optional[np.ndarray] = None
        self._empty: typing.Optional[np.ndarray] = None
        self._cursor = 0
        self._last_connect_try = -np.inf
        self.connect(shmem_name)

    def __del__(self):
        try:
            self.disconnect()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def disconnect(self) -> None:
        """Let go of the ring (never removes anything)."""
        for h in (self._ring, self._head):
            if h is not None:
                h.close()
        self._ring = self._head = None
        self._head_gen = -1
        self._buffer = None
        self._empty = None
        self._gen = -1
        self._valid = False
        self._shmem_name = None

    @property
    def meta(self) -> typing.Optional[ShmemArrMeta]:
        """The header as it is now (the ring's current generation: the reading handle may
        still be finishing an older one). A snapshot: its fields agree with each other."""
        if self._ring is None:
            return None
        try:
            if self._head is None:
                self._head = self._store.ring(self._shmem_name, create=False)
            head = self._head
            head.follow()
            if head.generation != self._head_gen:
                self._head_gen = head.generation
                self._head_attrs = head.attrs if head.generation else {}
            return _meta_of(head, self._head_attrs)
        except (shmstore.StaleError, FileNotFoundError, KeyError):
            self._drop_ring()
            return None

    @property
    def buffer(self) -> typing.Optional[np.ndarray]:
        return self._buffer

    @property
    def write_index(self) -> typing.Optional[int]:
        if self._ring is None or not self._valid:
            return None
        return (self._ring.total - self._ring.base) % self._ring.capacity

    @property
    def connected(self) -> bool:
        return self._buffer is not None

    def register_change_callback(self, callback: typing.Callable) -> None:
        self._change_callback = callback

    def unregister_change_callback(self) -> None:
        self._change_callback = None

    def connect(self, name: typing.Optional[str]) -> None:
        if self._shmem_name is None or self._shmem_name != name:
            self.disconnect()
        self._shmem_name = name
        if name is None or self._ring is not None:
            return
        if (time.time() - self._last_connect_try) <= CONNECT_RETRY_INTERVAL:
            return
        self._last_connect_try = time.time()
        try:
            if self._store is None:
                self._store = shmstore.Store(self._store_name, create=False)
            self._ring = self._store.ring(name, create=False)
        except (FileNotFoundError, KeyError):
            self._ring = None
            return
        self._gen = -1
        self._refresh(first=True)

    def _drop_ring(self) -> None:
        name = self._shmem_name
        self.disconnect()
        self._shmem_name = name
        self._last_connect_try = -np.inf

    def _refresh(self, first: bool = False) -> None:
        """Take note of the handle's generation (after a read may have followed)."""
        ring = self._ring
        gen = ring.generation
        if gen == self._gen:
            return
        self._gen = gen
        self._attrs = ring.attrs if gen else {}
        self._valid = bool(gen) and bool(self._attrs.get("bvalid", True))
        if self._valid:
            self._buffer = ring.buffer
            self._empty = self._buffer[:0]
            # A new mirror starts at the oldest frame held, and a new buffer at its start
            # (as the seed's re-attach): frames before are not an overflow.
            self._cursor = ring.oldest if first else max(self._cursor, ring.base)
            if self._change_callback is not None:
                self._change_callback()
        else:
            self._buffer = None
            self._empty = None

    def _auto_view_slow(self, n: typing.Optional[int] = None, timeout: typing.Optional[float] = None
                        ) -> typing.Tuple[np.ndarray, bool]:
        """auto_view() where the C fast path does not apply: connecting, following a
        reconfiguration, an invalid buffer, a deleted ring."""
        if self._ring is None:
            self.connect(self._shmem_name)
            if self._ring is None:
                return np.array([[]]), False
        ring = self._ring
        before = self._cursor
        try:
            if timeout is not None:
                try:
                    ring.wait(before + (n - 1 if n else 0), timeout)
                except TimeoutError:
                    pass
            if not self._valid:
                if ring.follow() or ring.generation != self._gen:
                    self._refresh()
                if not self._valid:
                    return np.array([[]]), False
                before = self._cursor
            pieces, cursor, lost = ring.view_since(before, n)
        except shmstore.StaleError:  # the sink went away: reconnect later
            self._drop_ring()
            return np.array([[]]), False
        got = cursor - before - lost  # frames in `pieces`
        if ring.generation != self._gen:  # the read followed a reconfiguration
            lost -= max(0, ring.base - before)  # frames of older buffers: not an overflow
            self._refresh()
            if not self._valid:
                self._cursor = cursor
                return np.array([[]]), False
        if got == 0 or (n is not None and got < n):
            # Not enough yet: keep the frames for later; after an overflow go on from the
            # oldest frame held.
            self._cursor = cursor - got
            return self._empty, lost > 0
        self._cursor = cursor
        if len(pieces) == 1:
            return pieces[0], lost > 0
        return np.concatenate(pieces, axis=0), lost > 0
