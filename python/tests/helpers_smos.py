"""shmstore.compat.smos functions run in child processes (importable by spawn children)."""
import signal

import numpy as np

from shmstore.compat import smos as SMOS


class Point:
    """A user-defined class: SMOS pickles such objects."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def producer(conn, name, n):
    """Pushes n two-track entries: a frame and a user object."""
    client = SMOS.Client(conn)
    for i in range(n):
        st, _ = client.push_to_object(name, [np.full((64, 64), i, np.float32), Point(i, -i)])
        assert st == SMOS.SMOS_SUCCESS, st


def consumer(conn, name, n, results):
    """Pops n entries (the parent pushed them first) and reports what it saw."""
    client = SMOS.Client(conn)
    got = []
    for _ in range(n):
        st, handle, (frame, point) = client.pop_from_object(name)
        assert st == SMOS.SMOS_SUCCESS, st
        got.append((float(frame.mean()), point.x))
        client.free_handle(handle)
    results.put(got)


def with_pickled_client(client, name, value):
    """Receives a Client by pickling (spawn) or inheritance (fork)."""
    st, _ = client.push_to_object(name, np.full(8, value, np.int64))
    assert st == SMOS.SMOS_SUCCESS, st


def errors_then_work(conn, done):
    """SMOS deadlocked after these errors; here every call returns."""
    client = SMOS.Client(conn)
    E = SMOS.SMOS_exceptions
    for call in (lambda: client.get("missing"), lambda: client.push_to_object("missing", 1),
                 lambda: client.read_from_object("missing", 0),
                 lambda: client.remove_object("missing")):
        try:
            call()
            raise AssertionError("no SMOSObjectNotFoundError")
        except E.SMOSObjectNotFoundError:
            pass
    client.create_object("dup", 2, 1, 64)
    try:
        client.create_object("dup", 2, 1, 64)
        raise AssertionError("no SMOSObjectExistError")
    except E.SMOSObjectExistError:
        pass
    assert client.push_to_object("dup", "after the errors") == (SMOS.SMOS_SUCCESS, 0)
    assert client.get("dup") == "after the errors"
    done.set()


def hold_entries(conn, name, ready):
    """Opens entries in every way a reader can, then waits to be killed."""
    client = SMOS.Client(conn)
    held = [client.open_entry(name, 0), client.read_from_object(name, 1),
            client.batch_read_from_object(name, [2, 3]), client.pop_from_object(name)]
    assert all(h[0] == SMOS.SMOS_SUCCESS for h in held), [h[0] for h in held]
    ready.set()
    while held:
        signal.pause()


def write_then_wait(conn, name, ready):
    """Creates an entry and fills it, but is killed before commit_entry."""
    client = SMOS.Client(conn)
    st, handle = client.create_entry(name, np.uint8, (1 << 20,), True)
    assert st == SMOS.SMOS_SUCCESS, st
    _, (buf,) = client.open_shm(handle)
    buf[:] = 9
    ready.set()
    while handle:
        signal.pause()


def rw_lock_reader(lock, flag, out):
    """Reads `flag` under the RWLock's reader side."""
    lock.reader_enter()
    out.put(flag.value)
    lock.reader_leave()
