"""The decoded video that every reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass
class Clip:
    """Frames of one video as uint8 RGB, with what is known about where they came from.

    ``frames`` is C-contiguous, shape (T, H, W, 3). ``pix_fmt`` is the source's pixel format in FFmpeg's
    naming; ``color_matrix`` is the matrix that turned it into RGB (``"bt709"``, ``"bt601"``, ...), or
    ``"rgb"`` when no matrix was applied (RGB, gray or palette sources).
    """

    frames: np.ndarray
    fps: Fraction
    pix_fmt: str
    color_matrix: str
    source: str

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])
