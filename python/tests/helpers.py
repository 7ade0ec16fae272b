"""Functions run in child processes (importable by spawn/forkserver children)."""
import os
import sys
import time

import numpy as np

import shmstore


def child_put(store_name, name, value):
    with shmstore.Store(store_name, create=False) as s:
        s.put(name, value)


def child_roundtrip_store(store, name):
    """Receives a pickled Store (spawn) or an inherited one (fork)."""
    v = store.get(name)
    store.put(name + "/reply", {"pid": os.getpid(), "seen": v})


def child_handle(handle):
    """Uses an inherited or pickled Value handle."""
    handle.put(handle.get() + 1)


def child_wait_then_put(store_name, name, out):
    with shmstore.Store(store_name, create=False) as s:
        v = s.wait(name, after=0, timeout=10)
        s.put(out, v)


def child_reader(store_name, name, n, result_name):
    """Busy reader: copies the frame n times and checks it is never torn."""
    with shmstore.Store(store_name, create=False) as s:
        h = s.value(name)
        bad = 0
        for _ in range(n):
            a = h.get()
            if a.min() != a.max():
                bad += 1
        s.put(result_name, bad)


def so_child_assign(name, value):
    from shmstore.compat.shared_object import SharedObject
    SharedObject(name).assign(value)


def so_child_create(name, shape, barrier_name):
    from shmstore.compat.shared_object import SharedObject
    so = SharedObject(name, data=np.ones(shape, dtype=np.float32))
    return so


def so_child_create_then_exit(name):
    from shmstore.compat.shared_object import SharedObject
    SharedObject(name, data=np.full(1000, 7, dtype=np.int32))


def so_child_ready():
    from shmstore.compat.shared_object import signal_process_ready
    time.sleep(0.05)
    signal_process_ready()
    time.sleep(0.05)


def so_child_exit_without_ready():
    sys.exit(3)


def so_race(name, start_at, kind):
    from shmstore.compat.shared_object import SharedObject
    while time.time() < start_at:
        pass
    if kind == "create":
        so = SharedObject(name, data=np.arange(100, dtype=np.int64))
    else:
        # a mounter: attaches once the name exists (maybe before its first version)
        from shmstore.compat.shared_object import _store
        while name not in _store():
            pass
        so = SharedObject(name)
    data = so.fetch()
    assert isinstance(data, np.ndarray) and data.shape == (100,), data
    assert (data == np.arange(100)).all()
