"""A faithful reimplementation of seed 000's approach, as the benchmark's baseline.

real_robot's SharedObject: one multiprocessing.shared_memory segment per object laid out
as [8 B mtime (time.time_ns) | 1 B type index | data], a readers-writer lock made of
fcntl.flock() on the segment's file (LOCK_SH for fetch, LOCK_EX for assign), `modified`
comparing the stored time stamp with the instance's, and ndarray data stored as
[1 B dtype index | 8 B ndim | ndim x 8 B shape | data]. Only the types the benchmark
uses are implemented (None, int, float, ndarray). Its bugs are kept on purpose.
"""
import fcntl
import os
import struct
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

_DTYPES = [np.dtype(t) for t in ("?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8",
                                 "c8", "c16")]
_T_NONE, _T_INT, _T_FLOAT, _T_ARRAY = 0, 2, 3, 9


class ReadersLock:
    def __init__(self, fd):
        self.fd = fd

    def acquire(self):
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def release(self):
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class WriterLock(ReadersLock):
    def acquire(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)


def _nbytes(data):
    if data is None:
        return 9
    if isinstance(data, (int, float)):
        return 9 + 8
    if isinstance(data, np.ndarray):
        return 9 + 1 + 8 + 8 * data.ndim + data.nbytes
    raise TypeError(type(data))


class SeedSharedObject:
    def __init__(self, name, *, data=None):
        try:
            self.shm = SharedMemory(name)
            # The seed's processes did not own the segment: avoid the tracker's unlink.
            resource_tracker.unregister(self.shm._name, "shared_memory")
            creating = False
        except FileNotFoundError:
            self.shm = SharedMemory(name, create=True, size=_nbytes(data))
            creating = True
        self.name = name
        self._fd = os.open(f"/dev/shm/{name}", os.O_RDWR)  # own open file description
        self.readers_lock = ReadersLock(self._fd)
        self.writer_lock = WriterLock(self._fd)
        self.mtime = 0
        if creating:
            self.assign(data)
        else:
            self.mtime = self._mtime()

    def _mtime(self):
        return struct.unpack_from("Q", self.shm.buf, 0)[0]

    def assign(self, data):
        buf = self.shm.buf
        self.writer_lock.acquire()
        if data is None:
            buf[8] = _T_NONE
        elif isinstance(data, int):
            buf[8] = _T_INT
            struct.pack_into("q", buf, 9, data)
        elif isinstance(data, float):
            buf[8] = _T_FLOAT
            struct.pack_into("d", buf, 9, data)
        else:
            buf[8] = _T_ARRAY
            buf[9] = _DTYPES.index(data.dtype)
            struct.pack_into("Q", buf, 10, data.ndim)
            struct.pack_into(f"{data.ndim}Q", buf, 18, *data.shape)
            off = 18 + 8 * data.ndim
            np.ndarray(data.shape, data.dtype, buffer=buf, offset=off)[...] = data
        self.mtime = time.time_ns()
        struct.pack_into("Q", buf, 0, self.mtime)
        self.writer_lock.release()
        return self

    def fetch(self, fn=None):
        buf = self.shm.buf
        self.readers_lock.acquire()
        self.mtime = struct.unpack_from("Q", buf, 0)[0]
        t = buf[8]
        if t == _T_NONE:
            data = None
        elif t == _T_INT:
            data = struct.unpack_from("q", buf, 9)[0]
        elif t == _T_FLOAT:
            data = struct.unpack_from("d", buf, 9)[0]
        else:
            dtype = _DTYPES[buf[9]]
            ndim = struct.unpack_from("Q", buf, 10)[0]
            shape = struct.unpack_from(f"{ndim}Q", buf, 18)
            arr = np.ndarray(shape, dtype, buffer=buf, offset=18 + 8 * ndim)
            data = fn(arr) if fn is not None else arr
            if isinstance(data, np.ndarray) and np.shares_memory(data, arr):
                data = data.copy()
            del arr
        self.readers_lock.release()
        return data

    @property
    def modified(self):
        return self._mtime() != self.mtime

    @property
    def triggered(self):
        m = self._mtime()
        if m != self.mtime:
            self.mtime = m
            return True
        return False

    def trigger(self):
        self.writer_lock.acquire()
        self.mtime = time.time_ns()
        struct.pack_into("Q", self.shm.buf, 0, self.mtime)
        self.writer_lock.release()
        return self

    def close(self):
        os.close(self._fd)
        self.shm.close()

    def unlink(self):
        try:
            resource_tracker.register(self.shm._name, "shared_memory")
        except Exception:
            pass
        self.shm.unlink()
