"""Drop-in replacements for the APIs of existing shared-memory tools, on shmstore.

- ``shmstore.compat.shared_object``: real_robot's SharedObject / SharedDynamicObject.
- ``shmstore.compat.smos``: SMOS (SharedMemoryObjectStore): Server, Client and its queue
  of entries, with no server process.
- ``shmstore.compat.replay``: the replay-buffer recipe of seed 001 (``Memory`` of
  ``Transition``s, 1,000 lock stripes over SharedMemory) on a table, with no lock.
- ``shmstore.compat.cute_shm``: cute-shm: nested dicts of arrays and HDF5 files as
  all-or-nothing array sets, shared-writable, persistent or tied to their creator.
- ``shmstore.compat.ezmsg_shmem``: ezmsg.tools.shmem's ShMemCircBuff sink and
  EZShmMirror reader, on a shmstore ring.

They only adapt names and signatures; all data goes through the C extension.
"""
