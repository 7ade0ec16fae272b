"""A faithful reimplementation of cute-shm 1.1's data path, for the benchmark only.

cute-shm reads each HDF5 dataset with h5py into a numpy array, then creates one
multiprocessing.shared_memory segment per array (name derived from the project and the
array's path), copies the array into it, and writes the metadata of every array (segment
name, shape, dtype, attrs) to a TOML file /tmp/cute-shm/<project>.toml. A reader parses
the TOML file, opens every segment by name and wraps numpy arrays over them, keeping the
SharedMemory objects in the returned meta dicts (dropping them invalidates the arrays).
Only what the benchmark measures is reproduced (load, read, unlink); the TOML is written
by hand with the same content (the toml package is not a dependency here).
"""
import os
from multiprocessing import resource_tracker, shared_memory

import numpy as np

ROOT = "/tmp/cute-shm-bench"


def _toml_path(project):
    return os.path.join(ROOT, f"{project}.toml")


def _flat(prefix, d, out):
    for k, v in d.items():
        if isinstance(v, dict):
            _flat(f"{prefix}{k}.", v, out)
        else:
            out[f"{prefix}{k}"] = v


def arrays_to_shm(project, arrays):
    """One SharedMemory per array, a copy into it, the TOML index last."""
    flat = {}
    _flat("", arrays, flat)
    os.makedirs(ROOT, exist_ok=True)
    lines, keep = [], []
    for path, a in flat.items():
        name = f"cute-shm-{project}-{path.replace('.', '-')}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=max(a.nbytes, 1))
        dst = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
        dst[...] = a
        keep.append(shm)
        lines.append(f'[arrays."{path}"]\nshm_name = "{name}"\nshape = {list(a.shape)}\n'
                     f'dtype = "{a.dtype.str}"\n')
    with open(_toml_path(project), "w") as f:
        f.write("\n".join(lines))
    for shm in keep:
        # persistent=True in cute-shm: the creator's resource tracker must not unlink them
        resource_tracker.unregister(shm._name, "shared_memory")
        shm.close()


def hdf5_to_shm(h5file, project):
    """h5py reads every dataset into numpy, then arrays_to_shm (cute-shm's hdf5_to_shm)."""
    import h5py

    arrays = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            node = arrays
            parts = name.split("/")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = obj[()]

    with h5py.File(h5file, "r") as f:
        f.visititems(visit)
    arrays_to_shm(project, arrays)


def shm_to_arrays(project):
    """Parse the TOML, open each segment, wrap numpy arrays; meta keeps the segments."""
    out = {}
    with open(_toml_path(project)) as f:
        text = f.read()
    for block in text.split("[arrays.")[1:]:
        path = block.split('"')[1]
        fields = dict(line.split(" = ", 1) for line in block.splitlines()[1:] if " = " in line)
        name = fields["shm_name"].strip('"')
        shape = tuple(int(x) for x in fields["shape"].strip("[]").split(",") if x.strip())
        dtype = np.dtype(fields["dtype"].strip('"'))
        shm = shared_memory.SharedMemory(name=name)
        resource_tracker.unregister(shm._name, "shared_memory")
        out[path] = {"data": np.ndarray(shape, dtype=dtype, buffer=shm.buf),
                     "meta": {"shm": shm, "shm_name": name}}
    return out


def unlink(project):
    with open(_toml_path(project)) as f:
        text = f.read()
    for block in text.split("[arrays.")[1:]:
        fields = dict(line.split(" = ", 1) for line in block.splitlines()[1:] if " = " in line)
        try:
            shm = shared_memory.SharedMemory(name=fields["shm_name"].strip('"'))
            shm.close()
            shm.unlink()  # also unregisters it from the tracker
        except FileNotFoundError:
            pass
    os.unlink(_toml_path(project))
