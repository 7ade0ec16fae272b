from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Dict, List, Optional, TypedDict, Union

import numpy as np

ArrayDict = Dict[str, Union["ArrayDict", np.ndarray]]

class SharedArrayMeta(TypedDict, total=False):
    shm_name: str
    shm_private_name: str
    shm: Any
    shape: tuple
    dtype: str
    attrs: Dict[str, Any]

class SharedArray(TypedDict):
    meta: SharedArrayMeta
    data: np.ndarray

SharedArrayDict = Dict[str, Union[SharedArray, "SharedArrayDict"]]

class Project2Toml:
    root: Path

def arrays_to_shm(project_name: str, arrays: ArrayDict, persistent: bool = ...,
                  overwrite: bool = ...) -> None: ...
def unlinked_arrays_to_shm(project_name: str, arrays: ArrayDict,
                           overwrite: bool = ...) -> AbstractContextManager[None]: ...
def shm_to_arrays(project_name: str, persistent: bool = ...) -> SharedArrayDict: ...
def hdf5_to_shm(hdf5_path: Union[str, Path], project_name: str, progress: bool = ...,
                persistent: bool = ..., overwrite: bool = ...) -> None: ...
def unlinked_hdf5_to_shm(hdf5_path: Union[str, Path], project_name: str, progress: bool = ...,
                         overwrite: bool = ...) -> AbstractContextManager[None]: ...
def unlink(project_name: str) -> None: ...
def hdf5_size(hdf5_path: Union[str, Path]) -> int: ...
def bytes_to_human(size: Union[int, float]) -> str: ...
def main_hdf5(argv: Optional[List[str]] = ...) -> int: ...
def main_list(argv: Optional[List[str]] = ...) -> int: ...
def main_unlink(argv: Optional[List[str]] = ...) -> int: ...
def main(argv: Optional[List[str]] = ...) -> int: ...
