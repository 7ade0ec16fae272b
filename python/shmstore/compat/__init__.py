"""Drop-in replacements for the APIs of existing shared-memory tools, on shmstore.

- ``shmstore.compat.shared_object``: real_robot's SharedObject / SharedDynamicObject.
- ``shmstore.compat.smos``: SMOS (SharedMemoryObjectStore): Server, Client and its queue
  of entries, with no server process.
- ``shmstore.compat.ezmsg_shmem``: ezmsg.tools.shmem's ShMemCircBuff sink and
  EZShmMirror reader, on a shmstore ring.

They only adapt names and signatures; all data goes through the C extension.
"""
