"""shmstore: share data between processes on one machine through shared memory.

    import shmstore
    with shmstore.Store("robot") as store:
        store["camera/rgb"] = frame              # numpy array, zero-copy for readers
        arr = store.view("camera/rgb")           # read-only view, leased
        v = store.wait("camera/rgb", timeout=1)  # next version
        q = store.queue("batches", capacity=64)  # a FIFO of entries for many processes
        q.push(batch); batch = q.pop(timeout=1)
        t = store.table("replay", fields={"obs": ("u1", (84, 84)), "reward": "f8"},
                        capacity=100_000)            # fixed records, a replay buffer
        t.append({"obs": obs, "reward": 1.0}); batch = t.sample(32)
        r = store.ring("eeg", dtype="f4", frame_shape=(64,), capacity=30000)
        r.write(chunk); frames, cursor, lost = r.read_since(cursor)

Everything is implemented in the C extension ``shmstore._shmstore``; this package only
re-exports it. Compatibility modules for existing tools live in ``shmstore.compat``.
"""
from ._shmstore import (  # noqa: F401
    Buffer,
    CorruptError,
    Error,
    FullError,
    LayoutError,
    LimitError,
    NoValueError,
    NotFoundError,
    Queue,
    QueueReservation,
    Ring,
    SealedError,
    StaleError,
    Store,
    Table,
    Value,
    WriteContext,
    list_stores,
    strerror,
    unlink,
    __c_version__,
)

__version__ = "0.1.0"

__all__ = [
    "Store", "Value", "Queue", "QueueReservation", "Ring", "Buffer", "WriteContext", "unlink",
    "list_stores", "strerror", "Error", "NotFoundError", "StaleError", "NoValueError",
    "LayoutError", "SealedError", "CorruptError", "LimitError", "FullError", "Table",
]
