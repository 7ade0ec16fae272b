"""A faithful reimplementation of the approach of ezmsg.tools.shmem (seed 003), the
baseline of the ring benchmark: what ezmsg users pay today, measured on this machine in
the same run.

As the seed does:
- the writer keeps a metadata segment holding a packed ctypes header (bvalid, dtype char,
  srate, ndim, shape[64], buffer_generation, wrap_counter, key, write_index) and one data
  segment per buffer generation, both multiprocessing.shared_memory, named by hashing
  (sha256, url-safe base64, "sm_" + 20 characters);
- a message is written by moving the buffered axis first and assigning into the numpy
  array over the data segment, in two slices when it wraps; then write_index (and
  wrap_counter, when it wrapped) are stored into the header: plain stores, no barrier;
- the reader opens both segments by name, builds an ndarray over the data segment, and
  polls: every read looks at the header fields through ctypes, works out how many frames
  came since its read index from (write_index, wrap_counter), and returns a slice of the
  buffer (a view) or a concatenation of two (a copy) - including the seed's arithmetic
  (overflow recovery from write_index + 1, nothing returned until two frames are there).
It is not the seed's code, and has none of its failure handling.
"""
import base64
import ctypes
import hashlib
from multiprocessing import resource_tracker, shared_memory

import numpy as np

# Python 3.11 registers every segment a process merely opens with resource_tracker, which
# unlinks it when that process exits (the seed's "a viewer's exit deletes the buffer");
# the benchmark's processes opt out, as careful seed users do.
_register, _unregister = resource_tracker.register, resource_tracker.unregister
resource_tracker.register = lambda name, rtype: None if rtype == "shared_memory" else _register(name, rtype)
resource_tracker.unregister = lambda name, rtype: None if rtype == "shared_memory" else _unregister(name, rtype)

MAXKEYLEN = 1024


def short_name(name):
    return "sm_" + base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()).decode()[:20]


class Header(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("bvalid", ctypes.c_bool), ("dtype", ctypes.c_char), ("srate", ctypes.c_double),
                ("ndim", ctypes.c_uint32), ("shape", ctypes.c_uint32 * 64),
                ("buffer_generation", ctypes.c_uint32), ("wrap_counter", ctypes.c_uint64),
                ("key_bytes", ctypes.c_byte * MAXKEYLEN), ("key_len", ctypes.c_uint32),
                ("write_index", ctypes.c_uint64)]


class Writer:
    def __init__(self, name):
        self.name = name
        self.meta_shm = shared_memory.SharedMemory(short_name(name), create=True,
                                                   size=ctypes.sizeof(Header))
        self.meta = Header.from_buffer(self.meta_shm.buf)
        self.meta.bvalid = False
        self.meta.buffer_generation = 0xFFFFFFFF
        self.buf_shm = None
        self.arr = None
        self.layout = None

    def _reset(self, dtype, frame_shape, n_frames, srate):
        m = self.meta
        m.bvalid = False
        m.dtype = np.dtype(dtype).char.encode()
        m.srate = srate
        m.ndim = 1 + len(frame_shape)
        m.shape[: m.ndim] = (n_frames,) + tuple(frame_shape)
        m.write_index = 0
        m.wrap_counter = 0
        m.buffer_generation = (m.buffer_generation + 1) & 0xFFFFFFFF
        size = int(n_frames * np.prod(frame_shape) * np.dtype(dtype).itemsize)
        self.buf_shm = shared_memory.SharedMemory(
            short_name(f"{self.name}/buffer{m.buffer_generation}"), create=True, size=size)
        self.arr = np.ndarray((n_frames,) + tuple(frame_shape), dtype=dtype, buffer=self.buf_shm.buf)
        m.bvalid = True

    def write(self, data, n_frames, srate):
        """`data`: (n, *frame_shape), the buffered axis first (moved there by the caller)."""
        layout = (data.dtype, data.shape[1:], n_frames, srate)
        if layout != self.layout:
            self.layout = layout
            self._reset(data.dtype, data.shape[1:], n_frames, srate)
        m, arr = self.meta, self.arr
        n = data.shape[0]
        stop = m.write_index + n
        if stop > arr.shape[0]:
            over = stop - arr.shape[0]
            arr[m.write_index:] = data[: n - over]
            arr[:over] = data[n - over:]
            m.write_index = over
            m.wrap_counter += 1
        else:
            arr[m.write_index: stop] = data
            m.write_index = stop

    def close(self):
        self.arr = None
        self.meta = None
        for shm in (self.buf_shm, self.meta_shm):
            if shm is not None:
                shm.close()
                shm.unlink()


class _State:
    """The seed's ShMemCircBuffState, as its mirror uses it."""

    def __init__(self):
        self.meta_shmem = None
        self.meta_struct = None
        self.buffer_shmem = None
        self.buffer_arr = None


class Mirror:
    """The seed's EZShmMirror reading path, field access for field access (the header is
    read through self._mirror_state.meta_struct each time, as the seed does)."""

    def __init__(self, name):
        self.name = name
        self._mirror_state = _State()
        self._mirror_state.meta_shmem = shared_memory.SharedMemory(short_name(name))
        self._mirror_state.meta_struct = Header.from_buffer(self._mirror_state.meta_shmem.buf)
        self._last_meta = None
        self._read_index = 0

    def _reset_buffer(self):
        st = self._mirror_state
        st.buffer_arr = None
        if st.buffer_shmem is not None:
            st.buffer_shmem.close()
        if st.meta_struct is None or not st.meta_struct.bvalid:
            return False
        st.buffer_shmem = shared_memory.SharedMemory(
            short_name(self.name + "/buffer" + str(st.meta_struct.buffer_generation)))
        st.buffer_arr = np.ndarray(st.meta_struct.shape[: st.meta_struct.ndim],
                                   dtype=np.dtype(st.meta_struct.dtype), buffer=st.buffer_shmem.buf[:])
        self._last_meta = Header()
        ctypes.pointer(self._last_meta)[0] = st.meta_struct  # the seed deep-copies it
        self._read_index = 0
        return True

    def auto_view(self, n=None):
        if self._mirror_state.meta_struct is None or not self._mirror_state.meta_struct.bvalid:
            return np.array([[]]), False
        b_connected = True
        if (self._last_meta is None
                or self._mirror_state.meta_struct.buffer_generation != self._last_meta.buffer_generation
                or self._mirror_state.buffer_arr is None):
            b_connected = self._reset_buffer()
        if not b_connected:
            return np.array([[]]), False
        wrapped = self._mirror_state.meta_struct.wrap_counter - self._last_meta.wrap_counter
        b_overflow = wrapped > 1 or (wrapped == 1 and self._mirror_state.meta_struct.write_index >= self._read_index)
        if b_overflow:
            self._read_index = (self._mirror_state.meta_struct.write_index + 1) % self._mirror_state.meta_struct.shape[0]
            self._last_meta.wrap_counter = self._mirror_state.meta_struct.wrap_counter
        n_available = 0
        if self._mirror_state.buffer_arr is not None:
            if self._mirror_state.meta_struct.write_index >= self._read_index:
                n_available = self._mirror_state.meta_struct.write_index - self._read_index
            else:
                n_available = (self._mirror_state.meta_struct.shape[0] - self._read_index
                               + self._mirror_state.meta_struct.write_index)
        if n_available <= 1 or (n is not None and n_available < n):
            return self._mirror_state.buffer_arr[:0], b_overflow
        if n is None:
            n = n_available
        if (self._read_index + n) <= self._mirror_state.meta_struct.shape[0]:
            t_slice = np.s_[max(0, self._read_index): self._read_index + n]
            result = self._mirror_state.buffer_arr[t_slice, :]  # the seed's 2-D index
        else:
            n_after_wrap = n - (self._mirror_state.meta_struct.shape[0] - self._read_index)
            result = np.concatenate((self._mirror_state.buffer_arr[self._read_index:],
                                     self._mirror_state.buffer_arr[:n_after_wrap]), axis=0)
        self._read_index = (self._read_index + n) % self._mirror_state.meta_struct.shape[0]
        self._last_meta.wrap_counter = self._mirror_state.meta_struct.wrap_counter
        return result, b_overflow

    def close(self):
        st = self._mirror_state
        st.buffer_arr = None
        st.meta_struct = None
        self._last_meta = None
        for shm in (st.buffer_shmem, st.meta_shmem):
            if shm is not None:
                shm.close()
