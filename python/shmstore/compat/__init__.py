"""Drop-in replacements for the APIs of existing shared-memory tools, on shmstore.

- ``shmstore.compat.shared_object``: real_robot's SharedObject / SharedDynamicObject.

They only adapt names and signatures; all data goes through the C extension.
"""
