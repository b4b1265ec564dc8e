"""Decoding: rebuild each segment's network from the file and render frames by index."""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import numpy as np
import torch

import bitstream
from camcodec.camfile import read_source
from camcodec.device import freed_cpu_memory_kept, resolve_device
from camcodec.errors import BitstreamError, HeaderError
from camcodec.model import ArchConfig, VideoModel, build_model, config_from_dict, frame_times, parameter_count
from camcodec.quantize import load_quantized

log = logging.getLogger(__name__)

FrameSelection = slice | Iterable[int] | None
GroupKey = tuple[int, int]  # (segment index, render group index): frames rendered together


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> uint8 (B, H, W, 3)."""
    return frames.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_uint16(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> uint16 (B, H, W, 3) in 0..65535: the network's picture at more
    than 8 bits, for outputs of 10 bits."""
    scaled = frames.float().clamp(0, 1).mul(65535).round().to(torch.int32).permute(0, 2, 3, 1).cpu().numpy()
    return scaled.astype(np.uint16)


def build_segment_model(segment: bitstream.Segment, info: bitstream.VideoInfo, device: torch.device) -> VideoModel:
    """The network of one segment with its dequantized weights; a mismatch with the file is a HeaderError.

    ``Decoder`` has already checked the config against the tensor table (``check_segment``) before
    the payloads were decoded; this re-checks what it builds, for callers that come with a container.
    """
    where = f"segment at frame {segment.first_frame}"
    config = checked_model_config(segment.model_config, where)
    if (config.width, config.height, config.num_frames) != (info.width, info.height, segment.num_frames):
        raise HeaderError(f"{where}: model size does not match the video info")
    tensors = [t for t in segment.tensors if isinstance(t, bitstream.QuantizedTensor)]
    if len(tensors) != len(segment.tensors):
        raise HeaderError(f"{where}: holds a raw (unquantized) tensor; camcodec models store quantized tensors only")
    held = sum(int(np.asarray(t.symbols).size) for t in tensors)
    expected = parameter_count(config)
    if held != expected:
        raise HeaderError(f"{where}: the model config has {expected:,} parameters, the file holds {held:,}")
    try:
        model = build_model(config)
        load_quantized(model, tensors)
    except ValueError as exc:
        raise HeaderError(f"{where}: {exc}") from None
    return model.to(device).eval()


def checked_model_config(data: Any, where: str) -> ArchConfig:
    """A file's model config; anything malformed (architecture, type, range, key) is a HeaderError."""
    try:
        return config_from_dict(data)
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
        raise HeaderError(f"{where}: {exc}") from None


def check_segment(segment: dict[str, Any], video: dict[str, Any], where: str) -> None:
    """Check one segment of ``bitstream.describe()`` against the network it describes, before decoding.

    The config must be valid, match the video, and describe exactly the tensors the file holds: the
    same names, shapes and therefore parameter count. So a config claiming a huge network (or a huge
    video) is refused before anything is allocated for it; the network itself is never larger than
    the tensor table, which the format bounds (2**28 elements per file).
    """
    config = checked_model_config(segment["model_config"], where)
    if (config.width, config.height, config.num_frames) != (video["width"], video["height"], segment["num_frames"]):
        raise HeaderError(
            f"{where}: the model renders {config.num_frames} frames of {config.width}x{config.height}, the file"
            f" header says {segment['num_frames']} of {video['width']}x{video['height']}"
        )
    expected = parameter_count(config)
    if expected != segment["elements"]:
        raise HeaderError(
            f"{where}: the model config has {expected:,} parameters, the tensor table holds {segment['elements']:,}"
        )
    with torch.device("meta"):  # shapes only: allocates nothing
        shapes = {name: tuple(value.shape) for name, value in build_model(config).state_dict().items()}
    stored = {t["name"]: tuple(t["shape"]) for t in segment["tensors"]}
    for tensor in segment["tensors"]:
        if tensor["kind"] != "quantized":
            raise HeaderError(
                f"{where}: tensor {tensor['name']!r} is {tensor['kind']}; camcodec stores quantized tensors only"
            )
    if stored != shapes:
        wrong = sorted(set(stored) ^ set(shapes)) or sorted(n for n in stored if stored[n] != shapes[n])
        raise HeaderError(f"{where}: the tensors do not match the model config (first mismatch: {wrong[0]!r})")


def load_container(source: str | os.PathLike | bytes) -> bitstream.Container:
    """Read, check and decode a .cam file (path or bytes) for decoding.

    Every header is parsed and checked, and each segment's model config is checked against its tensor
    table, before any payload is decoded or any network is built. Errors name the file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label, data = None, bytes(source)
    else:
        label, data = os.fsdecode(os.fspath(source)), read_source(source)
    try:
        description = bitstream.describe(data)
        for index, segment in enumerate(description["segments"]):
            check_segment(segment, description["video"], f"segment {index}")
        return bitstream.read_bytes(data)
    except BitstreamError as exc:
        if label is None:
            raise
        raise type(exc)(f"{label}: {exc}") from None


class Decoder:
    """Random access to the frames of a .cam file.

    >>> dec = Decoder("clip.cam")            # doctest: +SKIP
    >>> dec[0].shape, dec[10:20].shape      # doctest: +SKIP
    ((144, 176, 3), (10, 144, 176, 3))
    """

    def __init__(self, source: str | os.PathLike | bytes, device: str = "auto"):
        self.container = load_container(source)
        self.device = resolve_device(device)
        self.info = self.container.info
        self._models = [build_segment_model(s, self.info, self.device) for s in self.container.segments]
        self._cache: tuple[GroupKey, np.ndarray] | None = None  # the last rendered group

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
        """A frame (H, W, 3) or a slice of frames (N, H, W, 3), as from a sequence: negative indices count
        from the end, a slice's step is honoured, an index out of range is an IndexError and one that is
        not an integer a TypeError."""
        if isinstance(key, slice):
            return self.render(range(*key.indices(len(self))))
        return self.render([_frame_index(key)])[0]

    def render(self, indices: Iterable[int]) -> np.ndarray:
        """uint8 frames (N, H, W, 3) for the given indices (any order, repeats allowed)."""
        indices = self._check_indices(indices)
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        with freed_cpu_memory_kept(self.device):
            for i, index in enumerate(indices):
                out[i] = self._frame(index)
        return out

    def iter_frames(self, indices: FrameSelection = None, *, high_precision: bool = False) -> Iterator[np.ndarray]:
        """Frames one by one (uint8 H x W x 3), rendered a group at a time.

        The next group renders in a background thread while the caller handles (writes, encodes) the
        frames of this one; the frames are the same as ``render``'s. ``high_precision``: uint16 frames in
        0..65535 (``to_uint16``), for outputs of more than 8 bits.
        """
        runs: list[tuple[GroupKey, list[int]]] = []  # consecutive frames of one group, in the asked order
        for index in self.select(indices):
            key, position = self._locate(index)
            if runs and runs[-1][0] == key:
                runs[-1][1].append(position)
            else:
                runs.append((key, [position]))
        if not runs:
            return
        with (
            freed_cpu_memory_kept(self.device),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="camcodec-render") as pool,
        ):
            pending = pool.submit(self._render_group, runs[0][0], high_precision)
            for number, (_, positions) in enumerate(runs):
                frames = pending.result()
                if number + 1 < len(runs):
                    pending = pool.submit(self._render_group, runs[number + 1][0], high_precision)
                for position in positions:
                    yield frames[position]

    def select(self, frames: FrameSelection = None) -> list[int]:
        """Frame indices for None (all), a slice, or an iterable of indices (negative ones count from the end)."""
        if frames is None:
            return list(range(len(self)))
        if isinstance(frames, slice):
            return list(range(*frames.indices(len(self))))
        return self._check_indices(frames)

    def _check_indices(self, indices: Iterable[int]) -> list[int]:
        checked = []
        for index in map(_frame_index, indices):
            if index < 0:
                index += len(self)
            if not 0 <= index < len(self):
                raise IndexError(f"frame {index} out of range: the video has {len(self)} frames")
            checked.append(index)
        return checked

    def _locate(self, index: int) -> tuple[GroupKey, int]:
        """The (segment, render group) that frame ``index`` belongs to, and its position in the group."""
        segment_index = self._segment_of(index)
        local = index - self.container.segments[segment_index].first_frame
        group, position = divmod(local, self._models[segment_index].config.render_group)
        return (segment_index, group), position

    def _frame(self, index: int) -> np.ndarray:
        key, position = self._locate(index)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._render_group(key))
        return self._cache[1][position]

    def _segment_of(self, index: int) -> int:
        for i, segment in enumerate(self.container.segments):
            if segment.first_frame <= index < segment.first_frame + segment.num_frames:
                return i
        raise IndexError(f"frame {index} is in no segment")

    @torch.inference_mode()
    def _render_group(self, key: GroupKey, high_precision: bool = False) -> np.ndarray:
        segment_index, group = key
        model, num_frames = self._models[segment_index], self.container.segments[segment_index].num_frames
        size = model.config.render_group
        local = torch.arange(group * size, min((group + 1) * size, num_frames), device=self.device)
        frames = model(frame_times(local, num_frames))
        return to_uint16(frames) if high_precision else to_uint8(frames)


def _frame_index(key: object) -> int:
    """An integer frame index (Python's or numpy's); anything else (a float, a text) is a TypeError."""
    try:
        return operator.index(key)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"frame indices must be integers or slices, not {type(key).__name__}") from None


def decode(path: str | os.PathLike | bytes, frames: FrameSelection = None, device: str = "auto") -> np.ndarray:
    """Decode a .cam file to uint8 RGB frames (T, H, W, 3); ``frames`` selects a slice or indices."""
    decoder = Decoder(path, device=device)
    return decoder.render(decoder.select(frames))
