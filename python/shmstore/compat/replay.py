"""The replay-buffer recipe of seed 001 ("Granular locking of shared memory buffer") on
shmstore: its ``Transition`` and ``Memory`` with the same API, on a shmstore Table, with
none of its bugs and none of its locks.

Switch by changing one import::

    # from memory import Memory, Transition        # 1,000 mp.Lock stripes over SharedMemory
    from shmstore.compat.replay import Memory, Transition

    memory = Memory(100_000)                        # in the parent, before the workers start
    memory[i] = Transition(actor_id, step, state, action, next_state, reward, done)
    memory[i:i + 100] = transitions                 # a slice wraps modulo the length
    batch = random.choices(memory, k=32)            # or memory.sample(32): one gather
    memory.unlink()                                 # the creator removes it (or `with`)

What stands for what
- A Memory is a Table (``replay/<name>``) in one store (env SHMSTORE_COMPAT_STORE,
  default "replay") whose capacity is the length; every position 0..length-1 is a record
  index (the table is advanced by its length at creation, so any position can be written
  in any order). Each record has its own seqlock in the mapping: no lock, file or mapping
  per record or per stripe, readers never wait for writers, and a reader never sees half
  a transition.
- Fields: actor_id, step_number, action (int64), state and next_state (``state_shape``,
  ``state_dtype``; default the seed's 4 x 84 x 84 uint8 frames), next_state_is_none
  (bool), reward (float64), done (bool). A position never written reads as the seed's
  zeroed memory did: Transition(0, 0, zeros, 0, zeros, 0.0, False).
- A Transition is one row of the table: ``m[i:j] = transitions`` is one
  ``Table.write_rows`` call (the C side converts and copies every item, without the GIL,
  after checking them all), ``m[i]`` one ``read_rows`` and ``sample(k)`` one
  ``sample_rows`` (a gather that builds the Transitions in C): no per-field Python work.
- ``Memory(length)`` creates a new table with a unique name; a Memory pickles as (store,
  name, ...) so that spawn children open the same one; fork children use it as is. A
  second process may also attach by name: ``Memory(length, name=..., create=False)``.

The recipe's bugs, which do not happen here
- ``length`` had to be a multiple of 1,000 (the lock count): any length works.
- ``index > length`` let ``length`` through (and a negative index); here positions are
  ``-length <= i < length`` (negative ones count from the end, as for a list) and
  anything else raises IndexError.
- ``m[0:]`` raised TypeError (``None > length``): slices take the usual defaults.
- ints were stored big-endian unsigned in 4 bytes (negative actor ids raised, large ones
  overflowed) and the reward was truncated to an int: here ints are int64 and the reward
  a float64, read back as they were written.
- ``next_state=None`` was written as nothing and came back as None only when ``done``
  (and as the previous record's bytes otherwise): here None is a flag of its own.
- ``self._offset`` was shared by every call on the object: two threads interleaved their
  reads and writes of different records. Nothing here is shared between calls.
- ``__del__`` unlinked the segment in every process that dropped the object, so the
  first child to exit destroyed the memory of all the others. Here nothing is removed
  by an exit: the creator calls ``unlink()`` (or uses ``with Memory(n) as m:``).
- A process killed inside ``with lock:`` left that stripe locked for ever (and with it
  1/1000 of the memory). Here a writer killed mid-record leaves that record invalid
  (read back as an empty position; ``sample`` skips it) and blocks nobody.

Deliberate differences
- ``state`` (and ``next_state``) must have ``state_shape`` (ValueError / LayoutError):
  the recipe wrote any array's bytes over the next fields.
- Reads return copies (numpy arrays the caller owns), as the recipe's ``tobytes()`` did.
- ``sample(k)`` (not in the recipe) draws k written transitions in one gather;
  ``random.choices(memory, k=k)`` works too, through ``__getitem__``.
"""
import os
import uuid
from collections import namedtuple

import numpy as np

import shmstore

__all__ = ["Transition", "Memory"]

Transition = namedtuple("Transition",
                        ("actor_id", "step_number", "state", "action", "next_state", "reward",
                         "done"))

_INTS = ("actor_id", "step_number", "action")
# A Transition is a row of the table (Table.write_rows / read_rows / sample_rows): its
# items go to the fields of the same names, and next_state=None is the flag field.
_ITEMS = Transition._fields
_FLAGS = {"next_state": "next_state_is_none"}


def _default_store():
    return os.environ.get("SHMSTORE_COMPAT_STORE", "replay")


class Memory:
    """A fixed-length array of Transitions in shared memory, for many processes."""

    def __init__(self, length, *, state_shape=(4, 84, 84), state_dtype="uint8", name=None,
                 store=None, create=True):
        length = int(length)
        if length <= 0:
            raise ValueError("the length of a Memory is a positive int")
        self._length = length
        self._shape = tuple(int(x) for x in state_shape)
        self._dtype = np.dtype(state_dtype)
        self._store_name = store or _default_store()
        self._name = name or uuid.uuid4().hex
        self._creator = None
        self._store = shmstore.Store(self._store_name)
        fields = {"actor_id": "i8", "step_number": "i8", "state": (self._dtype, self._shape),
                  "action": "i8", "next_state": (self._dtype, self._shape),
                  "next_state_is_none": "?", "reward": "f8", "done": "?"}
        if create:
            self._table = self._store.table("replay/" + self._name, fields=fields,
                                            capacity=length, exclusive=True)
            self._table.advance(length)       # every position is an index from now on
            self._creator = os.getpid()
        else:
            self._table = self._store.table("replay/" + self._name)
            if self._table.capacity != length or self._table.fields["state"][1] != self._shape:
                raise ValueError(f"Memory {self._name!r} has length {self._table.capacity} "
                                 f"and states {self._table.fields['state'][1]}")
        self._zero = np.zeros(self._shape, self._dtype)

    # ---- the recipe's API ---------------------------------------------------------------

    def __len__(self):
        return self._length

    def _position(self, index):
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise IndexError(f"a Memory position is an int, not {type(index).__name__}")
        i = int(index)
        if i < -self._length or i >= self._length:
            raise IndexError(f"index {i} out of bounds for a Memory of length {self._length}")
        return i % self._length

    def __getitem__(self, index):
        if type(index) is int and 0 <= index < self._length:
            p = index                     # the common case, checked in one line
        elif isinstance(index, slice):
            return self._get_many(self._slice_positions(index))
        else:
            p = self._position(index)
        try:
            return self._table.read_rows(p, _ITEMS, _FLAGS, Transition)
        except (IndexError, LookupError, BlockingIOError):
            return self._get_one(p)  # never written, lost, or being written

    def __setitem__(self, index, transition):
        if isinstance(index, slice):
            if not isinstance(transition, (list, tuple)) or isinstance(transition, Transition):
                raise TypeError("a slice of a Memory is set from a list of Transitions")
            positions = self._slice_positions(index)
            rows = list(transition[:len(positions)])
            self._write(positions[:len(rows)], rows)
            return
        self._write(self._position(index), [transition])

    def __iter__(self):
        step = 1024
        for start in range(0, self._length, step):
            yield from self._get_many(range(start, min(start + step, self._length)))

    # ---- extensions ---------------------------------------------------------------------

    def sample(self, k):
        """k written transitions drawn at random (with replacement), in one gather."""
        try:
            return self._table.sample_rows(k, _ITEMS, _FLAGS, Transition)
        except (IndexError, BlockingIOError):
            return [self[i] for i in np.random.randint(0, self._length, size=k)]

    @property
    def name(self):
        return self._name

    def unlink(self):
        """Remove the memory (its store entry goes when the last process closes it)."""
        try:
            del self._store["replay/" + self._name]
        except shmstore.NotFoundError:
            pass

    def close(self):
        self._table.close()
        self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._creator == os.getpid():
            self.unlink()
        self.close()
        return False

    def __reduce__(self):
        return (_attach, (self._length, self._shape, self._dtype.str, self._name,
                          self._store_name))

    def __repr__(self):
        return f"<shmstore.compat.replay.Memory {self._name!r} length={self._length}>"

    # ---- conversions --------------------------------------------------------------------

    def _slice_positions(self, sl):
        """The positions of a slice: defaults 0, length, 1; wrapping modulo the length."""
        start = 0 if sl.start is None else int(sl.start)
        stop = self._length if sl.stop is None else int(sl.stop)
        step = 1 if sl.step is None else int(sl.step)
        if step == 0:
            raise ValueError("slice step cannot be zero")
        return [i % self._length for i in range(start, stop, step)]

    def _write(self, positions, rows):
        """Write Transitions at positions (an int: consecutive ones; or a list) in one call:
        the C side converts and copies every item (each checked before any is written).
        Anything it refuses (another type, a state of another dtype, which the recipe
        accepted) takes the per-transition path, which converts or raises."""
        if not rows:
            return
        if all(type(t) is Transition for t in rows):
            if (isinstance(positions, list) and positions[-1] - positions[0] == len(rows) - 1
                    and positions == list(range(positions[0], positions[-1] + 1))):
                positions = positions[0]   # consecutive: no list of indices to convert
            try:
                self._table.write_rows(positions, rows, _ITEMS, _FLAGS)
                return
            except (TypeError, ValueError, OverflowError):
                pass                       # LayoutError is a ValueError
        if isinstance(positions, int):
            positions = range(positions, positions + len(rows))
        for p, item in zip(positions, rows):
            self._table[p] = self._record(item)

    def _record(self, t):
        if not isinstance(t, Transition):
            raise TypeError(f"a Memory holds Transitions, not {type(t).__name__}")
        none = t.next_state is None
        return {"actor_id": int(t.actor_id), "step_number": int(t.step_number),
                "state": self._frame(t.state, "state"), "action": int(t.action),
                "next_state": self._zero if none else self._frame(t.next_state, "next_state"),
                "next_state_is_none": none, "reward": float(t.reward), "done": bool(t.done)}

    def _frame(self, a, what):
        a = np.asarray(a)
        if a.shape != self._shape:
            raise ValueError(f"{what} has shape {a.shape}; this Memory holds {self._shape}")
        return a.astype(self._dtype, copy=False)

    @staticmethod
    def _transition(r):
        return Transition(r["actor_id"], r["step_number"], r["state"], r["action"],
                          None if r["next_state_is_none"] else r["next_state"], r["reward"],
                          r["done"])

    def _empty(self):
        return Transition(0, 0, self._zero.copy(), 0, self._zero.copy(), 0.0, False)

    def _get_many(self, positions):
        positions = list(positions)
        if not positions:
            return []
        try:
            return self._table.read_rows(positions, _ITEMS, _FLAGS, Transition)
        except (IndexError, LookupError, BlockingIOError):
            pass
        return [self._get_one(p) for p in positions]  # some were never written

    def _get_one(self, p):
        for _ in range(1000):
            try:
                return self._transition(self._table[p])
            except (IndexError, LookupError):
                return self._empty()  # never written, or lost by a writer that died
            except BlockingIOError:
                continue              # being written right now: read it again
        raise BlockingIOError(f"Memory position {p} stays being written (a stopped writer?)")


def _attach(length, shape, dtype, name, store):
    return Memory(length, state_shape=shape, state_dtype=dtype, name=name, store=store,
                  create=False)
