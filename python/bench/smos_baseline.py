"""A faithful reimplementation of SMOS's design (seed 004), the baseline of the queue
benchmark: what SMOS users pay today, measured on this machine in the same run.

As SMOS does:
- a server process (multiprocessing.managers.BaseManager over TCP on localhost, pickled
  RPC) holds all the metadata: per object, its entries (the name of a
  multiprocessing.shared_memory block each, its size, and its state: write, idle, busy
  with a reader count, zombie), and hands zombie blocks to writers for reuse;
- every client operation is one or more RPCs, and the client opens the entry's shared
  memory block by name for every operation (SharedMemory(name)) and closes it after;
- numpy arrays travel zero-copy on the read side (an ndarray over the block, kept open
  until release), copied in on the write side.
It is not SMOS's code, and has none of SMOS's failure handling (there is none to copy:
a client that dies holding an entry leaves it busy for ever, as in SMOS).
"""
import threading
from multiprocessing import managers, resource_tracker, shared_memory

import numpy as np

# SMOS switches off resource_tracker's registration of shared memory blocks (in Python
# 3.11 every process that merely opens a block registers it, and the tracker unlinks it
# when that process exits); the baseline does the same, in its own processes only.
_register, _unregister = resource_tracker.register, resource_tracker.unregister
resource_tracker.register = lambda name, rtype: None if rtype == "shared_memory" else _register(name, rtype)
resource_tracker.unregister = lambda name, rtype: None if rtype == "shared_memory" else _unregister(name, rtype)

WRITE, IDLE, BUSY, ZOMBIE = range(4)


class _Store:
    """The server's state (lives in the server process; every call is an RPC)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.objects = {}   # name -> {entry id: entry dict}, in FIFO order
        self.next_id = 0
        self.zombies = []   # (shm name, size) ready for reuse
        self.blocks = []    # every block the server made (to unlink at shutdown)

    def create_object(self, name):
        with self.lock:
            if name in self.objects:
                return False
            self.objects[name] = {}
            return True

    def create_entry(self, name, size, meta):
        with self.lock:
            for k, (shm_name, cap) in enumerate(self.zombies):
                if cap >= size:
                    del self.zombies[k]
                    break
            else:
                shm = shared_memory.SharedMemory(create=True, size=max(size, 1))
                shm_name, cap = shm.name, shm.size
                shm.close()
                self.blocks.append(shm_name)
            e = {"shm": shm_name, "cap": cap, "size": size, "meta": meta, "state": WRITE,
                 "readers": 0}
            self.next_id += 1
            self.objects[name][self.next_id] = e
            return self.next_id, shm_name

    def commit_entry(self, name, idx):
        with self.lock:
            self.objects[name][idx]["state"] = IDLE

    def pop_entry(self, name):
        with self.lock:
            for k, e in self.objects[name].items():
                if e["state"] == IDLE:
                    e["state"] = BUSY
                    e["readers"] += 1
                    del self.objects[name][k]
                    return e["shm"], e["size"], e["meta"], e["cap"]
            return None

    def read_entry(self, name, idx):
        with self.lock:
            e = self.objects[name][idx]
            if e["state"] not in (IDLE, BUSY):
                return None
            e["state"] = BUSY
            e["readers"] += 1
            return e["shm"], e["size"], e["meta"]

    def release_entry(self, name, idx):
        with self.lock:
            e = self.objects[name][idx]
            e["readers"] -= 1
            if e["readers"] == 0:
                e["state"] = IDLE

    def free_block(self, shm_name, cap):
        with self.lock:
            self.zombies.append((shm_name, cap))

    def shutdown_blocks(self):
        with self.lock:
            for n in self.blocks:
                try:
                    shm = shared_memory.SharedMemory(name=n)
                    shm.close()
                    shm.unlink()
                except FileNotFoundError:
                    pass
            self.blocks = []


class _Manager(managers.BaseManager):
    pass


_STORE = None


def _get_store():
    global _STORE
    if _STORE is None:
        _STORE = _Store()
    return _STORE


_Manager.register("store", callable=_get_store)


class Server:
    def __init__(self, port, authkey=b"smos-baseline"):
        self.manager = _Manager(address=("127.0.0.1", port), authkey=authkey)

    def start(self):
        self.manager.start()
        return self

    def stop(self):
        try:
            c = _Manager(address=self.manager.address, authkey=self.manager._authkey)
            c.connect()
            c.store().shutdown_blocks()
        finally:
            self.manager.shutdown()


class Handle:
    def __init__(self, shm, arr, release):
        self.shm, self.arr, self._release = shm, arr, release

    def release(self):
        self.arr = None
        self.shm.close()
        self._release()


class Client:
    def __init__(self, port, authkey=b"smos-baseline"):
        m = _Manager(address=("127.0.0.1", port), authkey=authkey)
        m.connect()
        self.store = m.store()

    def create_object(self, name):
        return self.store.create_object(name)

    def push(self, name, arr):
        """create entry (RPC), open the block by name, copy in, commit (RPC)."""
        arr = np.ascontiguousarray(arr)
        idx, shm_name = self.store.create_entry(name, arr.nbytes, (arr.dtype.str, arr.shape))
        shm = shared_memory.SharedMemory(name=shm_name)
        np.ndarray(arr.shape, arr.dtype, buffer=shm.buf)[...] = arr
        shm.close()
        self.store.commit_entry(name, idx)
        return idx

    def pop(self, name):
        """pop (RPC), open the block by name, an array over it; free_handle releases."""
        r = self.store.pop_entry(name)
        if r is None:
            return None
        shm_name, size, (dt, shape), cap = r
        shm = shared_memory.SharedMemory(name=shm_name)
        arr = np.ndarray(shape, np.dtype(dt), buffer=shm.buf)
        return Handle(shm, arr, lambda: self.store.free_block(shm_name, cap))

    def read(self, name, idx):
        """read (RPC), open the block by name, an array over it; release (RPC)."""
        r = self.store.read_entry(name, idx)
        if r is None:
            return None
        shm_name, size, (dt, shape) = r
        shm = shared_memory.SharedMemory(name=shm_name)
        arr = np.ndarray(shape, np.dtype(dt), buffer=shm.buf)
        return Handle(shm, arr, lambda: self.store.release_entry(name, idx))
