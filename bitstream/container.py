"""What a .cam file holds, as plain dataclasses: video info, segments, quantized and raw tensors.

These types know nothing about bytes; :mod:`bitstream.fileformat` writes and reads them and checks
every value against the declared ranges (:mod:`bitstream.layout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bitstream.layout import DEFAULT_CODER


@dataclass(frozen=True)
class VideoInfo:
    """The source video: size, length, frame rate as a rational, pixel format and colour matrix.

    ``pix_fmt`` is the source pixel format as ffmpeg names it (``"yuv420p"``, ``"rgb24"`` ...);
    ``color_matrix`` the matrix used to convert it (``"bt709"``, ``"bt601"``, ``"unknown"`` ...).
    Allowed ranges: see ``bitstream.layout.FILE_HEADER``.
    """

    width: int
    height: int
    num_frames: int
    fps_num: int
    fps_den: int
    pix_fmt: str
    color_matrix: str


@dataclass
class QuantizedTensor:
    """Integer symbols and their float32 step sizes: ``value = symbols * scales`` along axis 0.

    ``symbols`` holds integers in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (any integer dtype; read
    back as int32); ``scales`` is float32 of shape ``(symbols.shape[0],)`` (one step per output
    channel) or ``(1,)`` (one for the whole tensor).
    """

    name: str
    symbols: np.ndarray
    scales: np.ndarray
    bits: int
    coder: str = DEFAULT_CODER  # how the file entropy-codes the symbols: a name of bitstream.layout.CODER_NAMES

    def dequantize(self) -> np.ndarray:
        """float32 weights, ``symbols * scales`` with scales broadcast along axis 0 (pure numpy)."""
        symbols = np.asarray(self.symbols)
        scales = np.asarray(self.scales, dtype=np.float32).reshape((-1,) + (1,) * (symbols.ndim - 1))
        return symbols.astype(np.float32) * scales


@dataclass
class RawTensor:
    """A tensor stored bit-exactly as float16 or float32 (for tiny tensors where that codes smaller)."""

    name: str
    values: np.ndarray


Tensor = QuantizedTensor | RawTensor


@dataclass
class Segment:
    """Frames ``[first_frame, first_frame + num_frames)`` of the video, rendered by one network.

    ``model_config`` is a JSON-serializable dict holding everything needed to rebuild the network;
    ``tensors`` are its weights, in order (order is preserved, names are unique within the segment).
    """

    first_frame: int
    num_frames: int
    model_config: dict[str, Any]
    tensors: Sequence[Tensor] = field(default_factory=list)


@dataclass
class Container:
    """A whole file: the video info and at least one segment; segments tile the frames in order."""

    info: VideoInfo
    segments: list[Segment]
