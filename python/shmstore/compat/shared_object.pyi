"""Type stubs for shmstore.compat.shared_object (drop-in for real_robot's SharedObject)."""
import multiprocessing as mp
from typing import Any, Callable, Optional

import numpy as np

from .. import Value

class Pose:
    """Position p (xyz) and quaternion q (wxyz), float32 (sapien.Pose when installed)."""
    p: np.ndarray
    q: np.ndarray
    def __init__(self, p: Any = ..., q: Any = ...) -> None: ...

class SharedObject(Value):
    """Shared object: fixed type, numpy meta, capacity and container layout. A
    shmstore.Value, so put/get/view/version/seen are available too."""
    init_size: int
    def __new__(cls, name: str, *, data: Any = None, init_size: int = 100) -> "SharedObject": ...  # type: ignore[override]
    def __init__(self, name: str, *, data: Any = None, init_size: int = 100) -> None: ...
    def assign(self, data: Any) -> "SharedObject": ...
    def fetch(self, fn: Optional[Callable[[Any], Any]] = None) -> Any: ...
    def trigger(self) -> "SharedObject": ...  # type: ignore[override]
    @property
    def object_type(self) -> Optional[type]: ...
    @property
    def nbytes(self) -> int: ...
    def wait(self, timeout: Optional[float] = None) -> bool: ...  # type: ignore[override]
    def unlink(self) -> None: ...

class SharedDynamicObject(SharedObject):
    """SharedObject that reallocates on type / meta / size changes."""
    def assign(self, data: Any, reallocate: bool = False) -> "SharedDynamicObject": ...  # type: ignore[override]

class SharedObjectDefaultDict(dict):
    """dict creating SharedObject(key) for missing keys."""
    def __missing__(self, key: str) -> SharedObject: ...

def signal_process_ready() -> None: ...
def start_and_wait_for_process(process: mp.Process, *, timeout: Optional[float] = None) -> None: ...
