"""Decoding: rebuild each segment's network from the file and render frames by index."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np
import torch

import bitstream
from camcodec.device import resolve_device
from camcodec.errors import HeaderError, InputError
from camcodec.model import CAMNeRV, ModelConfig, frame_times
from camcodec.quantize import load_quantized

log = logging.getLogger(__name__)

FrameSelection = slice | Iterable[int] | None


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> uint8 (B, H, W, 3)."""
    return frames.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def build_segment_model(segment: bitstream.Segment, info: bitstream.VideoInfo, device: torch.device) -> CAMNeRV:
    """The network of one segment with its dequantized weights; a mismatch with the file is a HeaderError."""
    try:
        config = ModelConfig.from_dict(segment.model_config)
        if (config.width, config.height, config.num_frames) != (info.width, info.height, segment.num_frames):
            raise ValueError("model size does not match the video info")
        model = CAMNeRV(config)
        load_quantized(model, segment.tensors)
    except ValueError as exc:
        raise HeaderError(f"segment at frame {segment.first_frame}: {exc}") from None
    return model.to(device).eval()


class Decoder:
    """Random access to the frames of a .cam file.

    >>> dec = Decoder("clip.cam")            # doctest: +SKIP
    >>> dec[0].shape, dec[10:20].shape      # doctest: +SKIP
    ((144, 176, 3), (10, 144, 176, 3))
    """

    def __init__(self, source: str | os.PathLike | bytes, device: str = "auto"):
        if isinstance(source, bytes):
            self.container = bitstream.read_bytes(source)
        else:
            try:
                self.container = bitstream.read_file(source)
            except FileNotFoundError:
                raise InputError(f"{os.fspath(source)}: no such file") from None
            except IsADirectoryError:
                raise InputError(f"{os.fspath(source)}: is a directory, not a .cam file") from None
        self.device = resolve_device(device)
        self.info = self.container.info
        self._models = [build_segment_model(s, self.info, self.device) for s in self.container.segments]
        self._cache: tuple[int, int, np.ndarray] | None = None  # (segment index, group index, frames)

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def fps(self) -> Fraction:
        return Fraction(self.info.fps_num, self.info.fps_den)

    def __len__(self) -> int:
        return self.info.num_frames

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if isinstance(key, slice):
            return self.render(range(*key.indices(len(self))))
        return self.render([key])[0]

    def render(self, indices: Iterable[int]) -> np.ndarray:
        """uint8 frames (N, H, W, 3) for the given indices (any order, repeats allowed)."""
        indices = self._check_indices(indices)
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        for i, index in enumerate(indices):
            out[i] = self._frame(index)
        return out

    def iter_frames(self, indices: FrameSelection = None) -> Iterator[np.ndarray]:
        """Frames one by one (uint8 H x W x 3), rendered a group at a time."""
        for index in self.select(indices):
            yield self._frame(index)

    def select(self, frames: FrameSelection = None) -> list[int]:
        """Frame indices for None (all), a slice, or an iterable of indices (negative ones count from the end)."""
        if frames is None:
            return list(range(len(self)))
        if isinstance(frames, slice):
            return list(range(*frames.indices(len(self))))
        return self._check_indices(frames)

    def _check_indices(self, indices: Iterable[int]) -> list[int]:
        checked = []
        for index in indices:
            index = int(index)
            if index < 0:
                index += len(self)
            if not 0 <= index < len(self):
                raise IndexError(f"frame {index} out of range: the video has {len(self)} frames")
            checked.append(index)
        return checked

    def _frame(self, index: int) -> np.ndarray:
        segment_index = self._segment_of(index)
        segment = self.container.segments[segment_index]
        model = self._models[segment_index]
        local = index - segment.first_frame
        group = local // model.config.render_group
        if self._cache is None or self._cache[:2] != (segment_index, group):
            self._cache = (segment_index, group, self._render_group(model, segment.num_frames, group))
        return self._cache[2][local - group * model.config.render_group]

    def _segment_of(self, index: int) -> int:
        for i, segment in enumerate(self.container.segments):
            if segment.first_frame <= index < segment.first_frame + segment.num_frames:
                return i
        raise IndexError(f"frame {index} is in no segment")

    @torch.inference_mode()
    def _render_group(self, model: CAMNeRV, num_frames: int, group: int) -> np.ndarray:
        size = model.config.render_group
        local = torch.arange(group * size, min((group + 1) * size, num_frames), device=self.device)
        return to_uint8(model(frame_times(local, num_frames)))


def decode(path: str | os.PathLike | bytes, frames: FrameSelection = None, device: str = "auto") -> np.ndarray:
    """Decode a .cam file to uint8 RGB frames (T, H, W, 3); ``frames`` selects a slice or indices."""
    decoder = Decoder(path, device=device)
    return decoder.render(decoder.select(frames))
