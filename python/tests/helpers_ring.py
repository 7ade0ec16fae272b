"""Ring functions run in child processes (importable by spawn children)."""
import os
import signal
import time

import numpy as np

import shmstore


def ramp(first, n, width):
    """Frames first..first+n of the test ramp: frame p holds p * 1000 + j."""
    p = np.arange(first, first + n, dtype=np.float64)[:, None] * 1000.0
    return (p + np.arange(width, dtype=np.float64)[None, :]) if width else p[:, 0]


def writer(store_name, ring, n, chunk, width):
    with shmstore.Store(store_name, create=False) as s:
        r = s.ring(ring, create=False, writer=True)
        pos = r.total
        end = pos + n
        while pos < end:
            k = min(chunk, end - pos)
            r.write(ramp(pos, k, width))
            pos += k
        r.close()


def reader(store_name, ring, until, width, results):
    """Reads (waiting) up to frame `until`, checks every frame, reports (got, lost)."""
    got = lost = 0
    with shmstore.Store(store_name, create=False) as s:
        r = s.ring(ring, create=False)
        cursor = 0
        while cursor < until:
            r.wait(cursor, timeout=60)
            frames, cursor2, l2 = r.read_since(cursor)
            first = cursor2 - len(frames)
            assert np.array_equal(frames, ramp(first, len(frames), width)), first
            assert first == cursor + l2
            got += len(frames)
            lost += l2
            cursor = cursor2
    results.put((got, lost))


def hold_view_and_wait(store_name, ring, ready):
    s = shmstore.Store(store_name, create=False)
    r = s.ring(ring, create=False)
    held = [r.buffer, r.view_since(r.oldest)[0]]
    ready.set()
    while held:
        time.sleep(1)


def die_as_writer(store_name, ring, ready):
    s = shmstore.Store(store_name, create=False)
    r = s.ring(ring, create=False, writer=True)
    r.write(ramp(r.total, 3, 4))
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


class Axis:
    """An AxisArray-like axis: a linear one (gain/offset) or a coordinate one (data)."""

    def __init__(self, gain=None, offset=0.0, data=None):
        if gain is not None:
            self.gain = gain
            self.offset = offset
        if data is not None:
            self.data = data


class Msg:
    """The smallest AxisArray-like message ShMemCircBuff accepts."""

    def __init__(self, data, dims, axes, key=""):
        self.data = data
        self.dims = dims
        self.axes = axes
        self.key = key


def mirror_reader(name, n_expected, results):
    """A mirror in another process: reads until it got n_expected frames (or lost some),
    checking each is the ramp (frame p = p), then exits (which must remove nothing)."""
    from shmstore.compat.ezmsg_shmem import EZShmMirror
    m = EZShmMirror(name)
    got, overflow, t0 = 0, False, time.time()
    while got < n_expected and time.time() - t0 < 60:
        arr, ov = m.auto_view(timeout=0.5)
        overflow |= ov
        if arr.size:
            assert arr.ndim == 2
            assert np.array_equal(arr[:, 0] - arr[0, 0], np.arange(len(arr)))
            got += len(arr)
    m.disconnect()
    results.put((got, overflow))
