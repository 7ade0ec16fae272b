"""SMOS (SharedMemoryObjectStore, ``pip install SMOS_antony``) on shmstore (drop-in).

Switch by changing one import; the program stays as it is::

    # import SMOS
    from shmstore.compat import smos as SMOS

    server = SMOS.Server(SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"k"))
    server.start()                                   # returns at once, as in SMOS
    client = SMOS.Client(SMOS.ConnectionDescriptor(ip="localhost", port=12345, authkey=b"k"))
    client.put(name="test_obj", data="Hello World!")
    msg = client.get(name="test_obj")                # in any process on the machine
    client.remove_object(name="test_obj")

What stands for what
- A ConnectionDescriptor(ip, port, authkey) names one shmstore store, ``<prefix>_<host>_
  <port>`` (prefix: env SHMSTORE_SMOS_STORE, default "smos"; the loopback aliases
  localhost, 127.x.x.x, ::1, 0.0.0.0 and "" are one host, "localhost"). There is no server
  process and nothing listens on the port: ``Server(conn).start()`` creates the store or
  attaches to it and returns; ``Client(conn)`` does the same, so clients work whether the
  Server was started first, later, in another process or not at all. ``Server.stop()``
  deletes every SMOS object of the connection and unlinks the store (as SMOS's stop
  unlinks every segment); a Client of the stopped store then raises SMOSServerDropOut and
  a new ``Client(conn)`` starts afresh. ``Server.start()`` also publishes the value
  ``smos.server`` (pid, start time), which a process may wait on.
- authkey: the first Server or Client of a store records a salted HMAC of its key; every
  later one must present the same key or gets ``multiprocessing.AuthenticationError``
  ("digest received was wrong"), which is what SMOS's manager connection raised. It keeps
  connections apart; it is no barrier against processes of the same user, who can map the
  store file anyway (its file mode is the protection). authkey None means
  ``multiprocessing.current_process().authkey``, as for a manager; a str is UTF-8 encoded.
- A SMOS object is a shmstore Queue (``smos.q/<name>``, capacity max_capacity, full
  policy 'error') plus its layout (``smos.m/<name>``: track count, block sizes, track
  names). An entry is one queue entry; its index is the queue's, which, as SMOS's, starts
  at 0 per object, grows by one per committed entry and is never reused.
- An entry written by push_to_object / put of one numpy track is that array itself (the
  fast path: a read is one zero-copy view). Any other entry is a list: a small uint8 tag
  array (b"S" and one kind byte per track, b"n" numpy, b"p" pickle), then per track the
  numpy array itself or the track's pickle as a uint8 array. An entry written by create_entry is one
  uint8 array (a header with each track's dtype, shape and offset, then the tracks,
  64-byte aligned). Either way every track is read zero-copy and every entry holds at
  least one array, so a handle always keeps its entry leased. Tracks are numpy when
  ``type(x) is np.ndarray`` (SMOS's test) and the dtype holds no objects; anything else is
  pickled (SMOS's ``serialize``), highest protocol. Plain numpy arrays are never pickled.
- Client methods, arguments, defaults, return tuples and statuses are SMOS's:
  ``create_object(name, max_capacity, track_count, block_size, track_name=None)``,
  ``remove_object(name)``, ``put(name, data, as_list=False, redundancy=0)``,
  ``get(name, entry_idx_list=None)`` (the object, or a list of them, None for a missing
  index; arrays copied), ``create_entry(name, dtype, shape, is_numpy)`` ->
  (status, handle), ``open_shm(handle)`` -> (SMOS_SUCCESS, [array / memoryview per
  track]), ``commit_entry(handle)`` -> (status, index), ``open_entry(name, entry_idx)``,
  ``release_entry(handle, token=...)``, ``batch_release_entry(handles)`` -> [status],
  ``delete_entry(name, entry_idx, force_delete=False)``, ``push_to_object(name, data)``
  -> (status, index), ``pop_from_object(name, force_pop=False)``,
  ``read_from_object(name, entry_idx)``, ``read_latest_from_object(name)``,
  ``batch_read_from_object(name, entry_idx_batch, token=...)`` -> (status, handle(s),
  object(s)), ``free_handle(handle)``, ``get_entry_count(name)`` -> (SMOS_SUCCESS, n).
  Statuses SMOS_SUCCESS = 0, SMOS_FAIL = -1, SMOS_PERMISSION_DENIED = 1. Exceptions are
  SMOS's classes (module attribute SMOS_exceptions, also importable as
  ``shmstore.compat.smos.SMOS_exceptions``); SMOS_utils and SMOS_constants likewise.

SMOS's bugs, which do not happen here
- A missing name (SMOSObjectNotFoundError) or a duplicate one (SMOSObjectExistError)
  raised inside SMOS's server lock and left it held: the next call deadlocked. Here the
  exception is raised and nothing is locked: the store keeps working.
- Data larger than its track's block_size overwrote the neighbouring block (numpy) or
  raised after the block was taken, leaking it (pickles). Here push_to_object,
  create_entry and put refuse it with SMOSBlockOverflow before anything is allocated.
- Reading arrays after release_entry / free_handle / remove_object read reused or
  unmapped memory (garbage or a segfault). Here an array keeps its entry's bytes alive and
  unchanged for as long as the array exists.
- A reader or writer that died (or dropped a handle unreleased) left its entry busy or its
  block allocated for ever. Here a handle is released when it is garbage collected, and a
  dead process's leases and reservations are reclaimed by shmstore's recovery (store.gc()).
- SMOS monkey-patched multiprocessing.resource_tracker in every Client process. Nothing is
  patched here; ``SMOS_utils.remove_shm_from_resource_tracker()`` does nothing.
- SMOS served pickled calls over TCP (any peer with the key could make the server
  unpickle): nothing listens here, and no call is pickled.

Deliberate differences (each for one of the fixes above, or for speed)
- Zero-copy arrays of committed entries (pop / read / open_shm of an opened entry) are
  read-only: entries are immutable once committed, so readers never see torn data (SMOS
  let readers write, without integrity). Copy (np.array(x)) to modify; get() copies.
  create_entry's buffers are writable until commit_entry, which makes them read-only
  (arrays you derived from them yourself stay writable: don't write after the commit).
- "Held by a reader" means a live view of the entry: an open handle, or an array from one
  that is still referenced after its release_entry. delete_entry(force_delete=False)
  returns SMOS_PERMISSION_DENIED for such an entry (SMOS counted handles only, and then
  let the block be reused under the arrays). pop_from_object never returns
  SMOS_PERMISSION_DENIED: a popped entry's readers keep valid views, which is what SMOS's
  refusal protected, so there is nothing for force_pop to force (it is accepted).
- max_capacity bounds the entries in the object. A popped entry stops counting when it is
  popped (its bytes live as long as its arrays; SMOS held the block until free_handle),
  and create_entry does not hold a place: if other writers fill the object before
  commit_entry, the commit returns (SMOS_FAIL, None) and the entry is dropped (SMOS's
  commit always succeeded). block_size is a limit, not memory set aside: an entry uses
  what its data needs (SMOS allocated max_capacity x block_size at create_object).
- A deleted entry's bytes are freed at once (unless a view holds them), but its place in
  the object's ring of max_capacity places comes back only when a pop_from_object passes
  it: the ring's oldest end moves only by pops, which skip deleted entries. So an object
  whose entries are deleted by index and never popped fills up after max_capacity
  entries in all, where SMOS's stayed usable (its delete freed the block at once).
  get_entry_count() counts the entries present, as SMOS's does.
- release_entry returns SMOS_FAIL when the entry is no longer in its object (deleted,
  popped, or the object removed: SMOS raised SMOSObjectNotFoundError for the last). A
  second release_entry of one handle raises SMOSReadRefDoubleRelease and a second
  free_handle SMOSBlockDoubleRelease (SMOS noticed those only sometimes). free_handle
  takes any handle: on one from create_entry it drops the uncommitted entry. release_entry
  on a handle from pop_from_object or create_entry returns SMOS_FAIL, as in SMOS.
- ``token`` (release_entry, batch_read_from_object; one SMOS version had it) is accepted
  and ignored. batch_release_entry([]) returns [].
- Big-endian arrays come back in native byte order (equal values). Arrays of dtype object
  are pickled, as is any ndarray subclass (SMOS stored object arrays' pointers).
- put does not change the caller's list (SMOS wrapped its elements in lists in place).
- A process may hold about 768 zero-copy entries (open handles, arrays of read entries)
  of one store at once: the store's lease table (shmstore.LimitError beyond it).
- Client pickles by its ConnectionDescriptor (spawn children) and keeps working after a
  fork. ``client.store`` is the shmstore.Store (SMOS: the server proxy). A Client never
  waits for a server (SMOS's retried once a second, printing "Waiting for server to
  start..."), and nothing prints log lines.
- A buffer track of create_entry (is_numpy False) that was never written fails to
  unpickle when read (its first byte is zeroed), rather than yielding what an older entry
  left in a reused block.
- Server() with no ConnectionDescriptor takes the first port in 5000..5049 whose store
  does not exist yet, with authkey b"antony" (SMOS scanned TCP ports; its default key was
  a str, which its manager refused). Not provided: SMOS_utils.get_local_free_port and the
  serialize_numpy* helpers (no TCP, no entry configs to build).
"""
from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import operator
import os
import pickle
import re
import sys
import time
import types
from typing import List, Optional

import numpy as np

from .. import FullError, NotFoundError, StaleError, Store, list_stores, unlink

__all__ = [
    "Server", "Client", "ConnectionDescriptor", "ObjectHandle", "EntryConfig", "RWLock",
    "SMOS_SUCCESS", "SMOS_FAIL", "SMOS_PERMISSION_DENIED", "SMOS_MAX", "serialize",
    "deserialize", "SMOS_exceptions", "SMOS_utils", "SMOS_constants", "store_name",
]

# ---- SMOS_constants -------------------------------------------------------------------

SMOS_FAIL = -1
SMOS_SUCCESS = 0
SMOS_PERMISSION_DENIED = 1
SMOS_MAX = sys.maxsize


# ---- SMOS_exceptions (SMOS's names; all plain Exceptions, as there) --------------------

class SMOSPortBusy(Exception):
    """No free port for a Server() without a ConnectionDescriptor."""


class SMOSInputTypeError(Exception):
    """An argument of the wrong kind (e.g. handles of different objects in one batch)."""


class SMOSEntryUnallocated(Exception):
    """commit_entry() of a handle that holds no uncommitted entry (committed already)."""


class SMOSReadRefDoubleRelease(Exception):
    """release_entry() of a handle already released."""


class SMOSBlockDoubleRelease(Exception):
    """free_handle() of a handle already freed."""


class SMOSTrackMismatch(Exception):
    """A handle used with an object it does not belong to."""


class SMOSDimensionMismatch(Exception):
    """Data with another number of tracks than the object (or entries that differ)."""


class SMOSTrackUnaligned(Exception):
    """Tracks of one object out of step (kept for SMOS programs; not raised here)."""


class SMOSMappingError(Exception):
    """An entry mapped outside its track (kept for SMOS programs; not raised here)."""


class SMOSObjectExistError(Exception):
    """create_object() / put() of a name that exists."""


class SMOSObjectNotFoundError(Exception):
    """An operation on a name that does not exist."""


class SMOSServerDropOut(Exception):
    """The store of this connection was stopped (Server.stop()) under this Client."""


class SMOSBlockOverflow(SMOSDimensionMismatch, ValueError):
    """(shmstore) A track's data is larger than its block_size; refused before anything
    was allocated. A SMOSDimensionMismatch and a ValueError."""


# ---- SMOS_utils -----------------------------------------------------------------------

class ConnectionDescriptor:
    """Where a SMOS server would listen: ip, port, authkey. Here it names a store."""

    def __init__(self, ip, port, authkey):
        self.ip = ip
        self.port = port
        self.authkey = authkey

    def __repr__(self):
        return f"ConnectionDescriptor(ip={self.ip!r}, port={self.port!r}, authkey=...)"


class EntryConfig:
    """The layout of one track of one entry, as SMOS describes it: dtype and shape of a
    numpy track (None, None otherwise), is_numpy, track_name ("<object>:<track name>").
    mapped_block_idx is the entry's index once known (-1 before its commit; there are no
    block slots here); pending_readers is always 0 (readers are counted by leases)."""

    def __init__(self, dtype, shape, is_numpy, track_name=None, mapped_block_idx=-1):
        self.dtype = dtype
        self.shape = shape
        self.is_numpy = is_numpy
        self.track_name = track_name
        self.mapped_block_idx = mapped_block_idx
        self.pending_readers = 0

    def __repr__(self):
        return (f"EntryConfig(dtype={self.dtype!r}, shape={self.shape!r}, "
                f"is_numpy={self.is_numpy!r}, track_name={self.track_name!r})")


class ObjectHandle:
    """One entry as a Client hands it out: name, entry_idx, track_count,
    entry_config_list (built on first access), and SMOS's shm_list (always empty) and
    buf_list (the memoryviews open_shm returned). It holds the entry's view (read, pop)
    or its reservation (create_entry) until released, freed, committed or collected."""

    # Slots: a handle is made per read, and its attributes are set on the hot path.
    __slots__ = ("name", "entry_idx", "track_count", "shm_list", "buf_list", "_configs",
                 "_kind", "_datum", "_res", "_bufs", "_track_names", "__weakref__")

    # Every field is an argument so that a read makes its handle in one call (a read
    # and release of a small entry costs ~1 us in all; each statement here counts).
    def __init__(self, name=None, entry_idx=None, track_count=None, kind=None, datum=None,
                 track_names=None, res=None, bufs=None):
        self.name = name
        self.entry_idx = entry_idx
        self.track_count = track_count
        self.shm_list = []
        self.buf_list = []
        self._configs = None
        self._kind = kind      # "read", "pop", "write"; "released" / "freed" / "committed"
        self._datum = datum    # read / pop: the zero-copy entry (its lease)
        self._res = res        # write: the QueueReservation context, entered
        self._bufs = bufs      # write: the per-track arrays / memoryviews
        self._track_names = track_names

    @property
    def entry_config_list(self):
        if self._configs is None and (self._datum is not None or self._bufs is not None):
            tracks = self._bufs if self._bufs is not None else _buffers(self._datum)
            names = self._track_names or list(range(len(tracks)))
            self._configs = [
                EntryConfig(t.dtype, t.shape, True, f"{self.name}:{names[i]}", _idx(self))
                if isinstance(t, np.ndarray) else
                EntryConfig(None, None, False, f"{self.name}:{names[i]}", _idx(self))
                for i, t in enumerate(tracks)]
        return self._configs

    @entry_config_list.setter
    def entry_config_list(self, value):
        self._configs = value

    def __repr__(self):
        return (f"<ObjectHandle name={self.name!r} entry_idx={self.entry_idx!r} "
                f"track_count={self.track_count!r} state={self._kind}>")


def _idx(h):
    return -1 if h.entry_idx is None else h.entry_idx


class RWLock:
    """A fair readers-writer lock between processes (SMOS_utils.RWLock's interface):
    reader_enter / reader_leave, writer_enter / writer_leave. A waiting writer stops new
    readers from entering, so writers are not starved. Share it with fork or spawn
    children by passing it to them (it holds multiprocessing locks)."""

    def __init__(self):
        self._turnstile = multiprocessing.Lock()  # held by a writer from its arrival
        self._room = multiprocessing.Lock()       # held while anyone is inside
        self._count_lock = multiprocessing.Lock()
        self._readers = multiprocessing.RawValue("l", 0)

    def reader_enter(self):
        with self._turnstile:  # passes unless a writer waits or writes
            pass
        with self._count_lock:
            self._readers.value += 1
            if self._readers.value == 1:
                self._room.acquire()  # the first reader locks writers out

    def reader_leave(self):
        with self._count_lock:
            self._readers.value -= 1
            if self._readers.value == 0:
                self._room.release()  # a semaphore: any process may release it

    def writer_enter(self):
        self._turnstile.acquire()
        self._room.acquire()

    def writer_leave(self):
        self._room.release()
        self._turnstile.release()


def serialize(obj, file=None):
    """Pickle `obj` (highest protocol): the bytes, or written to `file` (returns None)."""
    if file is None:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.dump(obj, file, protocol=pickle.HIGHEST_PROTOCOL)
    return None


def deserialize(data_stream):
    """Unpickle `data_stream` (bytes or any buffer, e.g. an open_shm memoryview; bytes
    after the pickle's end are ignored)."""
    return pickle.loads(data_stream)


def serialize_list(obj_list):
    """serialize() of every element of a list."""
    if type(obj_list) is not list:
        raise SMOSInputTypeError("Input not list")
    return [serialize(x) for x in obj_list]


def deserialize_list(data_stream_list):
    """deserialize() of every element of a list."""
    if type(data_stream_list) is not list:
        raise SMOSInputTypeError("Input not list")
    return [deserialize(x) for x in data_stream_list]


def safe_execute(target, args=()):
    """target(*args). (SMOS retried failed proxy calls; there are no proxies here.)"""
    return target(*args)


def log2terminal(info_type, msg, worker_type=""):
    """Print `[(pid=N)worker_type] info_type: msg`, as SMOS's helper does."""
    print(f"[(pid={os.getpid()}){worker_type}] {info_type}: {msg}", flush=True)


def remove_shm_from_resource_tracker():
    """Does nothing: shmstore does not use multiprocessing.shared_memory, so there is
    nothing to untrack, and multiprocessing.resource_tracker is left as it is."""


# ---- stores, names, authentication ----------------------------------------------------

_ENV = "SHMSTORE_SMOS_STORE"
_Q = "smos.q/"            # an object's queue
_M = "smos.m/"            # an object's layout
_AUTH = "smos.auth"       # the connection's key record
_SERVER = "smos.server"   # published by Server.start()
_CREATE_WAIT = 5.0        # s to wait for a creator that has not published yet
_LOOPBACK = {"", "localhost", "localhost.localdomain", "ip6-localhost", "0.0.0.0", "::",
             "::1"}
_SLOT_SLACK = 65536       # bytes beyond the tracks a queue slot allows (tag, header)
_GET_CHUNK = 128          # entries get() holds at once (a process has ~768 leases)


def store_name(connection: ConnectionDescriptor) -> str:
    """The name of the shmstore store that stands for `connection`."""
    host = str(connection.ip).strip().lower()
    if host in _LOOPBACK or host.startswith("127."):
        host = "localhost"
    name = f"{os.environ.get(_ENV) or 'smos'}_{host}_{int(connection.port)}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:200]


def _key_bytes(authkey) -> bytes:
    if authkey is None:
        return bytes(multiprocessing.current_process().authkey)
    if isinstance(authkey, str):
        return authkey.encode("utf-8")
    if isinstance(authkey, (bytes, bytearray, memoryview)):
        return bytes(authkey)
    raise TypeError("authkey should be a byte string")


def _digest(salt: bytes, key: bytes) -> bytes:
    return hmac.new(key, b"shmstore.compat.smos authkey:" + salt, hashlib.sha256).digest()


def _authenticate(store: Store, authkey):
    """The connection's key record, created with our key if there is none; raises
    multiprocessing.AuthenticationError if it holds another key."""
    key = _key_bytes(authkey)
    for _ in range(3):
        try:
            rec = store.value(_AUTH, exclusive=True)
        except FileExistsError:
            pass
        else:
            salt = os.urandom(16)
            rec.put({"salt": salt, "digest": _digest(salt, key)})
            return rec
        try:
            rec = store.value(_AUTH, create=False)
        except NotFoundError:  # deleted meanwhile (a stop()): create it afresh
            continue
        if rec.version == 0:  # its creator has not published yet
            try:
                rec.wait(after=0, timeout=_CREATE_WAIT)
            except TimeoutError:  # the creator died before publishing: take over
                salt = os.urandom(16)
                rec.put({"salt": salt, "digest": _digest(salt, key)})
                return rec
        got = rec.get()
        if not hmac.compare_digest(got["digest"], _digest(got["salt"], key)):
            rec.close()
            raise multiprocessing.AuthenticationError("digest received was wrong")
        return rec
    raise SMOSServerDropOut("the store of this connection keeps being stopped")


# ---- entries ----------------------------------------------------------------------------

_NP, _PK = 0x6E, 0x70                       # kind bytes: b"n" numpy, b"p" pickle
_TAGS: dict = {}                             # kind string -> tag array (a few, reused)
_MAGIC = b"SMOSpk1\0"                        # a create_entry entry: one packed array
_ALIGN = 64


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


def _is_numpy(x) -> bool:
    return type(x) is np.ndarray and not x.dtype.hasobject


def _tag(kinds: bytes) -> np.ndarray:
    t = _TAGS.get(kinds)
    if t is None:
        t = np.frombuffer(b"S" + kinds, np.uint8)
        if len(_TAGS) < 256:
            _TAGS[kinds] = t
    return t


def _encode(tracks) -> tuple:
    """(the entry for `tracks`, the byte size of each track). One numpy track is stored
    as the array itself (read back as it is: the fast path of a zero-copy read); other
    entries as a list: a tag array naming each track's kind, then the tracks."""
    if len(tracks) == 1 and _is_numpy(tracks[0]):
        return tracks[0], [tracks[0].nbytes]
    out, sizes, kinds = [None], [], bytearray()
    for x in tracks:
        if _is_numpy(x):
            kinds.append(_NP)
            out.append(x)
            sizes.append(x.nbytes)
        else:
            p = pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL)
            kinds.append(_PK)
            out.append(np.frombuffer(p, np.uint8))
            sizes.append(len(p))
    out[0] = _tag(bytes(kinds))
    return out, sizes


def _packed(raw: np.ndarray) -> tuple:
    """(kinds, tracks) of a create_entry entry: numpy tracks as arrays and buffer tracks
    as uint8 arrays, all views of `raw`."""
    n = int.from_bytes(raw[8:12].tobytes(), "little")
    base = _align(12 + n)
    kinds, tracks = bytearray(), []
    for is_np, dt, shape, off, size in pickle.loads(raw[12:12 + n]):
        seg = raw[base + off:base + off + size]
        if is_np:
            kinds.append(_NP)
            tracks.append(seg.view(np.dtype(dt)).reshape(shape))
        else:
            kinds.append(_PK)
            tracks.append(seg)
    return bytes(kinds), tracks


def _split(datum) -> tuple:
    """(kinds, tracks) of an entry as read from its queue."""
    if type(datum) is list and datum and type(datum[0]) is np.ndarray:
        kinds = datum[0].tobytes()
        if kinds[:1] == b"S":
            return kinds[1:], datum[1:]
    if (type(datum) is np.ndarray and datum.dtype == np.uint8 and datum.ndim == 1
            and datum[:8].tobytes() == _MAGIC):
        return _packed(datum)
    if type(datum) is np.ndarray:
        return bytes((_NP,)), [datum]  # one numpy track, stored as the array itself
    return b"o", [datum]  # not written by this module: one track, as it is


def _reconstruct(datum, copy: bool = False):
    """The object an entry stands for: its track, or the list of its tracks (SMOS's
    rule). copy=True copies numpy tracks (get())."""
    if type(datum) is np.ndarray and not (datum.ndim == 1 and datum.itemsize == 1
                                          and datum.dtype == np.uint8):
        return datum.copy() if copy else datum  # one numpy track: the fast path
    kinds, tracks = _split(datum)
    out = [(t.copy() if copy else t) if k == _NP else pickle.loads(t) if k == _PK else t
           for k, t in zip(kinds, tracks)]
    return out[0] if len(out) == 1 else out


def _buffers(datum) -> list:
    """open_shm() of a committed entry: numpy tracks as (read-only) arrays, the others as
    read-only memoryviews of their pickle."""
    kinds, tracks = _split(datum)
    return [memoryview(t) if k == _PK else t for k, t in zip(kinds, tracks)]


class _Obj:
    """What a Client keeps per object: its queue handle and layout."""

    __slots__ = ("q", "track_count", "block_size", "track_name", "layouts")

    def __init__(self, q, track_count, block_size, track_name):
        self.q = q
        self.track_count = track_count
        self.block_size = block_size
        self.track_name = track_name
        self.layouts = {}  # create_entry's layouts by (dtypes, shapes, kinds)


def _layout(meta) -> tuple:
    return int(meta["track_count"]), list(meta["block_size"]), list(meta["track_name"])


def _as_list(x) -> list:
    return x if type(x) is list else [x]


def _check_sizes(o: _Obj, sizes, name) -> None:
    for t, (n, cap) in enumerate(zip(sizes, o.block_size)):
        if n > cap:
            raise SMOSBlockOverflow(f"track {t} of object {name!r} needs {n} bytes, more "
                                    f"than its block_size of {cap} bytes; nothing was written")


def _entry_index(value) -> Optional[int]:
    try:
        i = operator.index(value)
    except TypeError:
        return None
    return i if 0 <= i < 1 << 64 else None


# ---- Client -------------------------------------------------------------------------------

class Client:
    """Access to the SMOS objects of one connection, from any process on the machine
    (see the module docstring). Attaches to the connection's store, creating it if
    needed; raises multiprocessing.AuthenticationError for a wrong authkey."""

    def __init__(self, connection: ConnectionDescriptor):
        self.connection = connection
        self.store = Store(store_name(connection))
        self._auth = _authenticate(self.store, connection.authkey)
        self._objs: dict = {}

    def __reduce__(self):
        return (self.__class__, (self.connection,))

    # -- objects ------------------------------------------------------------------------
    def _alive(self) -> None:
        try:
            self._auth.version
        except StaleError:
            raise SMOSServerDropOut(f"the SMOS store {self.store.name!r} was stopped; make a "
                                    f"new Client") from None

    def _open(self, name) -> _Obj:
        self._alive()
        try:
            q = self.store.queue(_Q + str(name), create=False)
        except (NotFoundError, TypeError):
            raise SMOSObjectNotFoundError(f"Object with name {name} not found.") from None
        m = self.store.value(_M + str(name))  # created empty if its creator is still at it
        try:
            deadline = time.monotonic() + _CREATE_WAIT
            while m.version == 0:
                try:
                    m.wait(after=0, timeout=0.05)
                except TimeoutError:
                    len(q)  # StaleError if the object went meanwhile
                    if time.monotonic() > deadline:
                        raise SMOSObjectNotFoundError(
                            f"Object with name {name} was half created by a process that "
                            f"died; remove_object() it") from None
            o = _Obj(q, *_layout(m.get()))
        except StaleError:
            q.close()
            raise SMOSObjectNotFoundError(f"Object with name {name} not found.") from None
        finally:
            m.close()
        self._objs[name] = o
        return o

    def _obj(self, name) -> _Obj:
        o = self._objs.get(name)
        return o if o is not None else self._open(name)

    def _on_queue(self, name, o, fn):
        """(object, fn(its queue)), or (object, None) when the entry is not there; a
        handle of an object deleted meanwhile is opened afresh once (the name may have been
        created again)."""
        for _ in range(2):
            try:
                return o, fn(o.q)
            except NotFoundError:
                return o, None
            except StaleError:
                o = self._stale(name)
        return o, None

    def _stale(self, name) -> _Obj:
        """Our handle's object was deleted: forget it and open the name afresh (it may
        have been created again); SMOSObjectNotFoundError if it is not there."""
        o = self._objs.pop(name, None)
        if o is not None:
            o.q.close()
        return self._open(name)

    def create_object(self, name, max_capacity, track_count, block_size, track_name=None):
        """Create object `name` of at most `max_capacity` entries of `track_count` tracks
        of at most `block_size` bytes each (a list: one per track). Returns SMOS_SUCCESS;
        raises SMOSObjectExistError, SMOSDimensionMismatch."""
        block_size = [int(b) for b in _as_list(block_size)]
        track_count = int(track_count)
        if len(block_size) != track_count:
            raise SMOSDimensionMismatch(f"There are {track_count} tracks, but "
                                        f"{len(block_size)} items in block size list.")
        if any(b < 0 for b in block_size):
            raise ValueError("block_size must not be negative")
        names = _as_list(track_name) if track_name is not None else None
        if names is None or len(names) != track_count:
            names = list(range(track_count))
        self._alive()
        slot = sum(_align(b) for b in block_size) + 256 * (track_count + 1) + _SLOT_SLACK
        try:
            q = self.store.queue(_Q + str(name), capacity=int(max_capacity), full="error",
                                 slot_size=slot, exclusive=True)
        except FileExistsError:
            raise SMOSObjectExistError(f"Object with name {name} already exists.") from None
        try:
            self.store.put(_M + str(name), {"track_count": track_count,
                                            "block_size": block_size, "track_name": names,
                                            "max_capacity": int(max_capacity)})
        except BaseException:
            self.store.delete(_Q + str(name))
            q.close()
            raise
        old = self._objs.pop(name, None)
        if old is not None:
            old.q.close()
        self._objs[name] = _Obj(q, track_count, block_size, names)
        return SMOS_SUCCESS

    def remove_object(self, name):
        """Remove object `name` and its entries (arrays already handed out stay valid).
        Returns SMOS_SUCCESS; raises SMOSObjectNotFoundError."""
        self._alive()
        o = self._objs.pop(name, None)
        if o is not None:
            o.q.close()
        try:  # the layout first: a half-removed object is one an opener refuses
            self.store.delete(_M + str(name))
        except NotFoundError:
            pass
        try:
            self.store.delete(_Q + str(name))
        except NotFoundError:
            raise SMOSObjectNotFoundError(f"Object with name {name} not found.") from None
        return SMOS_SUCCESS

    def put(self, name, data, as_list=False, redundancy=0):
        """Create object `name` sized for `data` (plus `redundancy` free entries) and store
        it: one entry, or with as_list=True and a list, one entry per element; a list
        entry is one track per element. Returns SMOS_SUCCESS; raises
        SMOSDimensionMismatch (entries of different track counts), SMOSObjectExistError."""
        entries = data if (as_list and type(data) is list) else [data]
        entries = [_as_list(e) for e in entries]
        if not entries:
            raise SMOSDimensionMismatch("put(as_list=True) of an empty list: no entries")
        counts = {len(e) for e in entries}
        if len(counts) != 1:
            raise SMOSDimensionMismatch("Multiple entries have different number of tracks.")
        track_count = counts.pop()
        encoded = [_encode(e) for e in entries]  # before anything is created
        block = [max(sizes[t] for _, sizes in encoded) for t in range(track_count)]
        self.create_object(name, len(entries) + int(redundancy), track_count, block)
        q = self._objs[name].q
        for datum, _ in encoded:
            q.push(datum, timeout=0)
        return SMOS_SUCCESS

    def get(self, name, entry_idx_list=None):
        """Copies of the entries of `name` (all of them, or those of entry_idx_list; None
        for an index it lacks): the object if there is one, else the list of them.
        Raises SMOSObjectNotFoundError."""
        o = self._obj(name)
        try:
            indices = o.q.indices() if entry_idx_list is None else list(entry_idx_list)
        except StaleError:
            o = self._stale(name)
            indices = o.q.indices() if entry_idx_list is None else list(entry_idx_list)
        out = []
        for k in range(0, len(indices), _GET_CHUNK):  # copied chunk by chunk: few leases
            part = indices[k:k + _GET_CHUNK]
            try:
                datums = self._read_many(o.q, part)
            except StaleError:
                o = self._stale(name)
                datums = self._read_many(o.q, part)
            out += [None if d is None else _reconstruct(d, copy=True) for d in datums]
            del datums
        return out[0] if len(out) == 1 else out

    @staticmethod
    def _read_many(q, indices) -> list:
        good = [_entry_index(i) for i in indices]
        if None not in good:
            try:
                return q.read_batch(good, copy=False)
            except NotFoundError:
                pass
        out = []
        for i in good:
            try:
                out.append(None if i is None else q.read(i, copy=False))
            except NotFoundError:
                out.append(None)
        return out

    # -- fine-grained entry operations (zero copy) ----------------------------------------
    def create_entry(self, name, dtype, shape, is_numpy):
        """A new entry of `name`, invisible until commit_entry(): per track its dtype and
        shape (numpy) or None, None and is_numpy False (a buffer of block_size bytes for a
        pickle). Returns (SMOS_SUCCESS, handle), (SMOS_FAIL, None) when the object is full.
        Raises SMOSDimensionMismatch, SMOSBlockOverflow, SMOSObjectNotFoundError."""
        dtypes, shapes, numpys = _as_list(dtype), _as_list(shape), _as_list(is_numpy)
        o = self._obj(name)
        if not len(dtypes) == len(shapes) == len(numpys) == o.track_count:
            raise SMOSDimensionMismatch(f"There are {o.track_count} tracks, but only "
                                        f"{len(dtypes)} input dtypes and {len(shapes)} input "
                                        f"shapes.")
        key = (tuple(map(str, dtypes)), tuple(map(str, shapes)), tuple(map(bool, numpys)))
        lay = o.layouts.get(key)
        if lay is None:
            lay = self._entry_layout(o, name, dtypes, shapes, numpys)
            if len(o.layouts) < 64:
                o.layouts[key] = lay
        meta, total, prefix, base = lay
        try:
            if len(o.q) >= o.q.capacity:
                return SMOS_FAIL, None
            res = o.q.reserve(np.uint8, (total,))
            raw = res.__enter__()
        except StaleError:  # deleted, maybe created again: start over on the new one
            self._stale(name)
            return self.create_entry(name, dtype, shape, is_numpy)
        except ValueError as e:  # larger than the queue's slot: a layout we got wrong
            raise SMOSBlockOverflow(str(e)) from None
        raw[:len(prefix)] = prefix
        bufs = []
        for is_np, dt, shp, toff, size in meta:
            seg = raw[base + toff:base + toff + size]
            if is_np:
                bufs.append(seg.view(dt).reshape(shp))
            else:  # a reused block may hold an old pickle: unwritten must not unpickle
                seg[:1] = 0
                bufs.append(memoryview(seg))
        return SMOS_SUCCESS, ObjectHandle(name, None, o.track_count, "write", None,
                                          o.track_name, res, bufs)

    @staticmethod
    def _entry_layout(o: _Obj, name, dtypes, shapes, numpys) -> tuple:
        """(per-track (is_numpy, dtype, shape, offset, size), total bytes, the header as
        a uint8 array, where the tracks start) of a create_entry entry. Raises
        SMOSBlockOverflow, before anything is allocated."""
        meta, sizes, off = [], [], 0
        for t in range(o.track_count):
            if numpys[t]:
                dt = np.dtype(dtypes[t])
                if dt.hasobject:
                    raise TypeError("a numpy track cannot hold dtype object; make it a "
                                    "pickled track (is_numpy=False)")
                shp = shapes[t]
                shp = tuple(int(x) for x in shp) if np.ndim(shp) else (int(shp),)
                if any(x < 0 for x in shp):
                    raise ValueError(f"negative extent in the shape {shp} of track {t}")
                size = dt.itemsize * int(np.prod(shp, dtype=np.int64))
                meta.append((True, dt, shp, off, size))
            else:
                size = o.block_size[t]
                meta.append((False, None, None, off, size))
            sizes.append(size)
            off += _align(size)
        _check_sizes(o, sizes, name)
        # readers rebuild each dtype from its str when that is exact (the common case)
        described = tuple((is_np, (dt.str if np.dtype(dt.str) == dt else dt) if is_np else None,
                           shp, toff, size) for is_np, dt, shp, toff, size in meta)
        header = pickle.dumps(described, protocol=pickle.HIGHEST_PROTOCOL)
        prefix = np.frombuffer(_MAGIC + len(header).to_bytes(4, "little") + header, np.uint8)
        base = _align(len(prefix))
        return meta, base + off, prefix, base

    def open_entry(self, name, entry_idx):
        """A handle on entry `entry_idx` of `name` (it counts as held until released).
        Returns (SMOS_SUCCESS, handle) or (SMOS_FAIL, None) if there is no such entry."""
        st, h, _ = self._read_handle(name, entry_idx, decode=False)
        return st, h

    def open_shm(self, object_handle: ObjectHandle):
        """The data of a handle's entry, zero-copy: per track a numpy array, or a
        memoryview of its bytes (a pickle stream: deserialize() it). Writable for a
        handle from create_entry, read-only otherwise. Returns (SMOS_SUCCESS, list)."""
        h = object_handle
        if h._kind == "write":
            bufs = h._bufs
        elif h._datum is not None:
            bufs = _buffers(h._datum)
        else:
            raise SMOSInputTypeError(f"this handle was {h._kind or 'never opened'}")
        h.buf_list.extend(b for b in bufs if isinstance(b, memoryview))
        return SMOS_SUCCESS, list(bufs)

    def commit_entry(self, object_handle: ObjectHandle):
        """Publish a handle's new entry to every process. Returns (SMOS_SUCCESS, index),
        or (SMOS_FAIL, None) if the object filled up meanwhile (the entry is dropped).
        Raises SMOSEntryUnallocated (nothing to commit), SMOSObjectNotFoundError."""
        h = object_handle
        res = h._res
        if h._kind != "write" or res is None:
            raise SMOSEntryUnallocated(f"this handle holds no uncommitted entry "
                                       f"({h._kind or 'not from create_entry'})")
        for b in h._bufs:  # the published entry must not change under its readers
            if isinstance(b, np.ndarray):
                b.flags.writeable = False
            else:
                try:
                    b.release()
                except BufferError:  # exported further by the caller: left as it is
                    pass
        h._res, h._bufs, h._kind = None, None, "committed"
        h.buf_list = []
        try:
            res.__exit__(None, None, None)
        except FullError:
            return SMOS_FAIL, None
        except StaleError:
            self._objs.pop(h.name, None)
            raise SMOSObjectNotFoundError(f"Object with name {h.name} not found.") from None
        h.entry_idx = res.index
        return SMOS_SUCCESS, h.entry_idx

    def release_entry(self, object_handle: ObjectHandle, token="Unknown"):
        """Let go of a handle from open_entry / read_*_from_object. Returns SMOS_SUCCESS,
        or SMOS_FAIL if its entry is no longer in the object (or the handle is not a read
        handle). Raises SMOSReadRefDoubleRelease for a second release."""
        h = object_handle
        if h._kind != "read":
            if h._kind == "released":
                raise SMOSReadRefDoubleRelease(f"Double release of entry {h.entry_idx} of "
                                               f"object {h.name}")
            return SMOS_FAIL
        h._kind, h._datum, h.buf_list = "released", None, []
        return SMOS_SUCCESS if self._has_entry(h.name, h.entry_idx) else SMOS_FAIL

    def _has_entry(self, name, idx) -> bool:
        o = self._objs.get(name)
        if o is None:
            return False
        try:
            return idx in o.q  # a look at the entry's cell: no view, no lease
        except StaleError:
            return False

    def batch_release_entry(self, object_handle_batch: List[ObjectHandle]):
        """release_entry() of handles of one object. Returns a list of statuses; raises
        SMOSInputTypeError if the handles are of different objects."""
        names = {h.name for h in object_handle_batch}
        if len(names) > 1:
            raise SMOSInputTypeError(f"Handles are from {len(names)} different objects")
        o = self._objs.get(names.pop()) if names else None
        if (o is None or any(h._kind != "read" for h in object_handle_batch)
                or len({id(h) for h in object_handle_batch}) != len(object_handle_batch)):
            return [self.release_entry(h) for h in object_handle_batch]
        for h in object_handle_batch:
            h._kind, h._datum, h.buf_list = "released", None, []
        indices = [h.entry_idx for h in object_handle_batch]
        try:  # one look for all: a snapshot of a small object, else one batch read
            if len(o.q) <= 4 * len(indices):
                present = set(o.q.indices())
                return [SMOS_SUCCESS if i in present else SMOS_FAIL for i in indices]
            o.q.read_batch(indices, copy=False)
            return [SMOS_SUCCESS] * len(indices)
        except (NotFoundError, StaleError):
            return [SMOS_SUCCESS if self._has_entry(h.name, h.entry_idx) else SMOS_FAIL
                    for h in object_handle_batch]

    def delete_entry(self, name, entry_idx, force_delete=False):
        """Delete entry `entry_idx` of `name` (arrays handed out stay valid). Returns
        SMOS_SUCCESS, SMOS_FAIL (no such entry) or SMOS_PERMISSION_DENIED (a reader holds
        it and force_delete is False)."""
        i = _entry_index(entry_idx)
        o = self._obj(name)
        if i is None:
            return SMOS_FAIL
        for _ in range(2):
            try:
                o.q.delete(i, force=bool(force_delete))
                return SMOS_SUCCESS
            except NotFoundError:
                return SMOS_FAIL
            except StaleError:
                o = self._stale(name)
            except OSError as e:
                if e.errno == 16:  # EBUSY: a view holds it
                    return SMOS_PERMISSION_DENIED
                raise
        return SMOS_FAIL

    # -- coarse-grained entry operations (queue API) -------------------------------------
    def push_to_object(self, name, data):
        """Append `data` (a list: one element per track) to `name`, copying it once.
        Returns (SMOS_SUCCESS, index) or (SMOS_FAIL, None) when the object is full.
        Raises SMOSDimensionMismatch, SMOSBlockOverflow, SMOSObjectNotFoundError."""
        tracks = _as_list(data)
        o = self._obj(name)
        if len(tracks) != o.track_count:
            raise SMOSDimensionMismatch(f"There are {o.track_count} tracks, but input data "
                                        f"has length {len(tracks)}.")
        datum, sizes = _encode(tracks)
        _check_sizes(o, sizes, name)  # before anything is allocated
        for _ in range(2):
            try:
                return SMOS_SUCCESS, o.q.push(datum, timeout=0)
            except FullError:
                return SMOS_FAIL, None
            except ValueError as e:  # larger than the queue's slot: a layout we got wrong
                raise SMOSBlockOverflow(str(e)) from None
            except StaleError:
                o = self._stale(name)
                if len(tracks) != o.track_count:
                    raise SMOSDimensionMismatch(f"There are {o.track_count} tracks, but "
                                                f"input data has length {len(tracks)}.")
                _check_sizes(o, sizes, name)
        return SMOS_FAIL, None

    def pop_from_object(self, name, force_pop=False):
        """Take the oldest entry of `name`, zero-copy. Returns (SMOS_SUCCESS, handle,
        object) or (SMOS_FAIL, None, None) when empty; free_handle() the handle when done.
        (Never SMOS_PERMISSION_DENIED: readers keep valid views; see the module doc.)"""
        o = self._obj(name)
        for _ in range(2):
            try:
                datum = o.q.pop(timeout=0, copy=False)
                break
            except TimeoutError:
                return SMOS_FAIL, None, None
            except StaleError:
                o = self._stale(name)
        else:
            return SMOS_FAIL, None, None
        return (SMOS_SUCCESS, ObjectHandle(name, None, o.track_count, "pop", datum, o.track_name),
                _reconstruct(datum))

    def _read_handle(self, name, entry_idx, decode=True):
        i = _entry_index(entry_idx)
        o = self._obj(name)
        if i is None:
            return SMOS_FAIL, None, None
        o, datum = self._on_queue(name, o, lambda q: q.read(i, copy=False))
        if datum is None:
            return SMOS_FAIL, None, None
        h = self._handle(name, i, o, datum)
        return SMOS_SUCCESS, h, (_reconstruct(datum) if decode else None)

    @staticmethod
    def _handle(name, i, o, datum) -> ObjectHandle:
        return ObjectHandle(name, i, o.track_count, "read", datum, o.track_name)

    def read_from_object(self, name, entry_idx):
        """Entry `entry_idx` of `name`, left in the object, zero-copy. Returns
        (SMOS_SUCCESS, handle, object) or (SMOS_FAIL, None, None); release_entry() the
        handle when done."""
        # The common case inline (an open object, an int index, the entry there): this
        # is the path SMOS users pay ~1.5 ms for, and every call here is ~60 ns.
        o = self._objs.get(name)
        if o is not None and type(entry_idx) is int and 0 <= entry_idx < 1 << 64:
            try:
                datum = o.q.read(entry_idx, copy=False)
            except (NotFoundError, StaleError):
                pass
            else:
                return (SMOS_SUCCESS,
                        ObjectHandle(name, entry_idx, o.track_count, "read", datum, o.track_name),
                        _reconstruct(datum))
        return self._read_handle(name, entry_idx)

    def read_latest_from_object(self, name):
        """The newest entry of `name`, as read_from_object(). (SMOS_FAIL, None, None) when
        the object is empty."""
        o = self._obj(name)
        for _ in range(4):
            try:
                n = len(o.q)
                if n == 0:
                    return SMOS_FAIL, None, None
                if n <= 256:
                    ids = o.q.indices()
                    if not ids:
                        return SMOS_FAIL, None, None
                    i = ids[-1]
                else:
                    i = o.q.info()["next_index"] - 1
                datum = o.q.read(i, copy=False)
            except NotFoundError:  # popped or deleted meanwhile, or a hole at the end
                try:
                    ids = o.q.indices()
                    if not ids:
                        return SMOS_FAIL, None, None
                    i = ids[-1]
                    datum = o.q.read(i, copy=False)
                except NotFoundError:
                    continue
                except StaleError:
                    o = self._stale(name)
                    continue
            except StaleError:
                o = self._stale(name)
                continue
            return SMOS_SUCCESS, self._handle(name, i, o, datum), _reconstruct(datum)
        return SMOS_FAIL, None, None

    def batch_read_from_object(self, name, entry_idx_batch, token="Unknown"):
        """Entries `entry_idx_batch` of `name`, all or none, zero-copy. Returns
        (SMOS_SUCCESS, handles, objects) or (SMOS_FAIL, None, None) if one is missing;
        batch_release_entry() the handles when done."""
        good = [_entry_index(i) for i in entry_idx_batch]
        o = self._obj(name)
        if None in good:
            return SMOS_FAIL, None, None
        o, datums = self._on_queue(name, o, lambda q: q.read_batch(good, copy=False))
        if datums is None:
            return SMOS_FAIL, None, None
        handles = [self._handle(name, i, o, d) for i, d in zip(good, datums)]
        return SMOS_SUCCESS, handles, [_reconstruct(d) for d in datums]

    def free_handle(self, object_handle: ObjectHandle):
        """Let go of a handle from pop_from_object (any handle: one from create_entry
        drops its uncommitted entry). Arrays of the entry stay valid while they exist.
        Returns SMOS_SUCCESS; raises SMOSBlockDoubleRelease for a second free."""
        h = object_handle
        if h._kind == "freed":
            raise SMOSBlockDoubleRelease(f"handle of object {h.name} freed twice")
        h._kind, h._datum, h._res, h._bufs, h.buf_list = "freed", None, None, None, []
        return SMOS_SUCCESS

    # -- utility --------------------------------------------------------------------------
    def get_entry_count(self, name):
        """(SMOS_SUCCESS, the number of entries of `name`)."""
        o = self._obj(name)
        try:
            return SMOS_SUCCESS, len(o.q)
        except StaleError:
            return SMOS_SUCCESS, len(self._stale(name).q)


# ---- Server -----------------------------------------------------------------------------

class Server:
    """The store of a connection (there is no server process; see the module doc)."""

    def __init__(self, connection: Optional[ConnectionDescriptor] = None):
        if connection is None:
            existing = set(list_stores())
            for port in range(5000, 5050):
                c = ConnectionDescriptor(ip="localhost", port=port, authkey=b"antony")
                if store_name(c) not in existing:
                    connection = c
                    break
            else:
                raise SMOSPortBusy("Out of free ports (required 1, available 0).")
        self.connection = connection
        self.server_process = None  # SMOS's attribute: there is no process
        self.object_store = None    # the shmstore.Store, once started
        self._auth = None

    def address(self) -> ConnectionDescriptor:
        """The connection this server stands for."""
        return self.connection

    def start(self):
        """Create the connection's store (or attach to it) and publish ``smos.server``.
        Non-blocking. Returns SMOS_SUCCESS; raises multiprocessing.AuthenticationError if
        the store holds another authkey."""
        store = Store(store_name(self.connection))
        try:
            self._auth = _authenticate(store, self.connection.authkey)
            store.put(_SERVER, {"pid": os.getpid(), "start_ns": time.time_ns()})
        except BaseException:
            store.close()
            raise
        self.object_store = store
        return SMOS_SUCCESS

    def stop(self):
        """Delete every SMOS object of the connection and unlink its store (Clients of it
        then raise SMOSServerDropOut). Returns SMOS_SUCCESS."""
        name = store_name(self.connection)
        store = self.object_store
        self.object_store = None
        if store is None or store.closed:
            try:
                store = Store(name, create=False)
            except FileNotFoundError:
                return SMOS_SUCCESS
        try:
            for n in [_AUTH, _SERVER] + store.names(prefix="smos."):
                try:
                    store.delete(n)
                except NotFoundError:
                    pass
        finally:
            if self._auth is not None:
                self._auth.close()
                self._auth = None
            store.close()
        try:
            unlink(name)
        except FileNotFoundError:
            pass
        return SMOS_SUCCESS


# ---- SMOS's module layout ------------------------------------------------------------------

def _submodule(short: str, doc: str, names) -> types.ModuleType:
    """A module object holding `names` of this module, also importable by its dotted
    name (``from shmstore.compat.smos.SMOS_exceptions import SMOSObjectNotFoundError``)."""
    m = types.ModuleType(f"{__name__}.{short}", doc)
    g = globals()
    for n in names:
        setattr(m, n, g[n])
    m.__all__ = list(names)
    sys.modules[m.__name__] = m
    return m


SMOS_constants = _submodule("SMOS_constants", "SMOS's status values.",
                            ["SMOS_FAIL", "SMOS_SUCCESS", "SMOS_PERMISSION_DENIED", "SMOS_MAX"])
SMOS_exceptions = _submodule("SMOS_exceptions", "SMOS's exception classes.", [
    "SMOSPortBusy", "SMOSInputTypeError", "SMOSEntryUnallocated", "SMOSReadRefDoubleRelease",
    "SMOSBlockDoubleRelease", "SMOSTrackMismatch", "SMOSDimensionMismatch",
    "SMOSTrackUnaligned", "SMOSMappingError", "SMOSObjectExistError",
    "SMOSObjectNotFoundError", "SMOSServerDropOut", "SMOSBlockOverflow"])
SMOS_utils = _submodule("SMOS_utils", "SMOS's utilities.", [
    "EntryConfig", "RWLock", "ConnectionDescriptor", "ObjectHandle", "safe_execute",
    "remove_shm_from_resource_tracker", "log2terminal", "serialize", "serialize_list",
    "deserialize", "deserialize_list"])
