"""Type stubs for shmstore.compat.ezmsg_shmem (drop-in for ezmsg.tools.shmem)."""
import ctypes
import multiprocessing.connection
from typing import Any, Callable, Optional, Tuple

import numpy as np

from .. import Ring, Store

UINT64_SIZE: int
BYTEORDER: str
MAXKEYLEN: int
CONNECT_RETRY_INTERVAL: float
STORE_ENV: str

def store_name() -> str: ...
def to_bytes(data: Any) -> Optional[bytes]: ...
def shorten_shmem_name(long_name: Optional[str]) -> Optional[str]: ...

class ShmemArrMeta(ctypes.Structure):
    bvalid: bool
    dtype: bytes
    srate: float
    ndim: int
    shape: Any
    buffer_generation: int
    wrap_counter: int
    write_index: int
    key: str

class ShMemCircBuffSettings:
    shmem_name: Optional[str]
    buf_dur: float
    conn: Optional[multiprocessing.connection.Connection]
    axis: str
    def __init__(self, shmem_name: Optional[str], buf_dur: float,
                 conn: Optional[multiprocessing.connection.Connection] = None,
                 axis: str = "time") -> None: ...

class ShMemCircBuffState:
    meta_shmem: Any
    meta_struct: Optional[ShmemArrMeta]
    buffer_shmem: Any
    buffer_arr: Optional[np.ndarray]
    meta_hash: int
    store: Optional[Store]
    ring: Optional[Ring]
    buffer_generation: int

class ShMemCircBuff:
    SETTINGS: ShMemCircBuffSettings
    STATE: ShMemCircBuffState
    INPUT_SIGNAL: Any
    INPUT_SETTINGS: Any
    def __init__(self, *args: Any, settings: Optional[ShMemCircBuffSettings] = None,
                 **kwargs: Any) -> None: ...
    async def initialize(self) -> None: ...
    def on_settings(self, msg: ShMemCircBuffSettings) -> None: ...
    async def shutdown(self) -> None: ...
    async def check_continue(self) -> None: ...
    async def on_message(self, msg: Any) -> None: ...
    def write_message(self, msg: Any) -> None: ...
    def apply_settings(self, settings: ShMemCircBuffSettings) -> None: ...

class EZShmMirror:
    def __init__(self, shmem_name: Optional[str] = None, *, store: Optional[str] = None) -> None: ...
    def connect(self, name: Optional[str]) -> None: ...
    def disconnect(self) -> None: ...
    @property
    def connected(self) -> bool: ...
    @property
    def meta(self) -> Optional[ShmemArrMeta]: ...
    @property
    def buffer(self) -> Optional[np.ndarray]: ...
    @property
    def write_index(self) -> Optional[int]: ...
    def register_change_callback(self, callback: Callable[[], Any]) -> None: ...
    def unregister_change_callback(self) -> None: ...
    def auto_view(self, n: Optional[int] = None,
                  timeout: Optional[float] = None) -> Tuple[np.ndarray, bool]: ...
