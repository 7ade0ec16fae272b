"""Stand-in for ezmsg.util.messages.axisarray: an AxisArray (data, dims, axes, key) with
linear axes (gain, offset) and coordinate axes (data). Tests only; not ezmsg."""
import dataclasses
import typing

import numpy as np


@dataclasses.dataclass
class LinearAxis:
    gain: float = 1.0
    offset: float = 0.0
    unit: str = ""


@dataclasses.dataclass
class CoordinateAxis:
    data: np.ndarray
    dims: typing.List[str]
    unit: str = ""


@dataclasses.dataclass
class AxisArray:
    data: np.ndarray
    dims: typing.List[str]
    axes: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    attrs: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    key: str = ""

    LinearAxis = LinearAxis
    CoordinateAxis = CoordinateAxis

    @staticmethod
    def TimeAxis(fs: float, offset: float = 0.0) -> LinearAxis:
        return LinearAxis(gain=1.0 / fs, offset=offset, unit="s")

    def get_axis_idx(self, dim: str) -> int:
        try:
            return self.dims.index(dim)
        except ValueError:
            raise ValueError(f"{dim=} not present in object")
