"""Reading video into uint8 RGB.

Sources, chosen from the path:

* a folder: PNG frames, taken in natural name order (``f2.png`` before ``f10.png``; the same as plain
  sorting for zero-padded names), decoded by PyAV's PNG decoder; RGB, RGBA (alpha dropped), gray,
  palette and 16-bit PNGs all convert;
* ``.yuv`` / ``.i420`` / ``.raw``: headerless 8-bit planar 4:2:0 (I420), ``size=(W, H)`` required, read
  through a numpy memory map; odd sizes have chroma planes of ceil(W/2) x ceil(H/2);
* anything else: whatever FFmpeg demuxes through PyAV (mp4, mkv, webm, avi, Y4M of any bit depth and
  chroma subsampling, ...).

Every source ends in the same swscale conversion (see ``camcodec.media.convert`` for the colour rule).
Every failure is an ``InputError`` whose one-line message starts with the path.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
from av.video.frame import VideoFrame

from bitstream.layout import MAX_DIMENSION
from camcodec.errors import InputError
from camcodec.media._common import AV_ERRORS, as_fraction, one_line
from camcodec.media.clip import Clip
from camcodec.media.convert import (
    UNTAGGED_RAW_MATRIX,
    ColorInfo,
    color_of_frame,
    frame_from_planes,
    plane_array,
    to_rgb_frame,
)
from camcodec.values import parse_size

log = logging.getLogger(__name__)

RAW_EXTENSIONS = (".yuv", ".i420", ".raw")
DEFAULT_FPS = Fraction(25)

# FFmpeg turns text files into "video" with these demuxers/decoders (ANSI art); refuse them.
_TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}
# Estimated frame counts from container metadata are trusted for preallocation up to this many bytes.
_MAX_ESTIMATE_BYTES = 8 << 30
#: Largest side ``scale=`` may ask for: what a .cam file holds.
MAX_SCALE_SIDE = MAX_DIMENSION
# Y4M colour spaces FFmpeg's demuxer knows (the C tag of the stream header).
_Y4M_COLORSPACES = {
    "420jpeg", "420mpeg2", "420paldv", "420", "411", "422", "444", "444alpha", "mono",
    *(f"{c}p{b}" for c in ("420", "422", "444") for b in (9, 10, 12, 14, 16)),
    *(f"mono{b}" for b in (9, 10, 12, 16)),
}  # fmt: skip


def _av_url(path: Path) -> str:
    """A path for av.open that FFmpeg cannot mistake for a protocol URL (``a:b.mp4``)."""
    text = os.fspath(path)
    return f"file:{text}" if ":" in text else text


def _snapped_rate(rate: Fraction, time_base: Fraction | None) -> Fraction:
    """A frame rate read from coarse timestamps (Matroska's milliseconds turn 60000/1001 into 19001/317)
    as the whole or NTSC-style (N x 1000/1001) rate it is within their precision of."""
    if time_base is None or time_base < Fraction(1, 10_000) or rate.denominator in (1, 1001):
        return rate
    candidates = [Fraction(round(rate)), Fraction(round(rate * 1001 / 1000) * 1000, 1001)]
    nearest = min(candidates, key=lambda candidate: abs(candidate - rate))
    # within a fifth of the 0.1 % that tells N from N x 1000/1001 apart
    return nearest if nearest > 0 and abs(nearest - rate) <= rate * Fraction(2, 10_000) else rate


def _as_fraction(value: Any, what: str, label: str) -> Fraction:
    frac = as_fraction(value)
    if frac is None:
        raise InputError(f"{label}: {what} must be a positive number, got {value!r}")
    return frac


def _is_count(value: Any, least: int) -> bool:
    """A whole number (not a bool) >= least."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= least)


def _as_size(value: Any, what: str, label: str) -> tuple[int, int]:
    """(W, H) from a pair of positive integers or a ``"WxH"`` text."""
    if isinstance(value, str):
        try:
            return parse_size(value)
        except InputError as exc:
            raise InputError(f"{label}: {what}: {exc}") from None
    try:
        width, height = value
        ok = _is_count(width, 1) and _is_count(height, 1)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{label}: {what} must be (width, height) as two positive integers, got {value!r}")
    return int(width), int(height)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _frame_bytes(pix_fmt: str, width: int, height: int) -> int:
    """Bytes of one frame of a planar format as stored in Y4M/raw files (no padding)."""
    fmt = av.VideoFormat(pix_fmt, width, height)
    planes: dict[int, int] = {}
    for comp in fmt.components:
        planes.setdefault(comp.plane, comp.width * comp.height * ((comp.bits + 7) // 8))
    return sum(planes.values())


class _Source(ABC):
    """What every source offers to read_video and probe_video."""

    kind: str
    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    num_frames: int | None
    exact: bool
    untagged_matrix: str = UNTAGGED_RAW_MATRIX
    frames_seen: int = 0

    @abstractmethod
    def frames(self, start: int) -> Generator[VideoFrame, None, None]:
        """Decoded frames from index ``start`` on."""

    def close(self) -> None:  # noqa: B027 (a source without resources has nothing to close)
        pass


class _ContainerSource(_Source):
    """Any file FFmpeg demuxes; the first video stream."""

    def __init__(self, path: Path | BinaryIO, label: str) -> None:
        """``path``: a file, or a binary stream (standard input: Y4M, or whatever FFmpeg demuxes without
        seeking), read as it comes."""
        self.label = label
        file = path if isinstance(path, Path) else None
        try:
            self.container = av.open(_av_url(file) if file is not None else path, mode="r")
        except AV_ERRORS as exc:
            tag = None if file is None else _y4m_colorspace(file)
            if tag is not None and tag not in _Y4M_COLORSPACES:
                raise InputError(f"{label}: unsupported Y4M colour space C{tag}") from None
            raise InputError(f"{label}: not a readable video ({one_line(exc)})") from None
        try:
            self._setup(file)
        except BaseException:
            self.container.close()
            raise

    def _setup(self, path: Path | None) -> None:
        label, container = self.label, self.container
        if not container.streams.video:
            raise InputError(f"{label}: no video stream (format {container.format.name})")
        stream = self.stream = container.streams.video[0]
        ctx = stream.codec_context
        if container.format.name in _TEXT_FORMATS or ctx.name in _TEXT_CODECS:
            raise InputError(f"{label}: not a video (FFmpeg reads it as text)")
        stream.thread_type = "AUTO"
        self.kind = "y4m" if container.format.name == "yuv4mpegpipe" else "container"
        self.width, self.height = ctx.width, ctx.height
        self.pix_fmt = ctx.pix_fmt or ""
        # Untagged compressed streams follow FFmpeg (BT.601); untagged raw video is BT.709.
        self.untagged_matrix = UNTAGGED_RAW_MATRIX if ctx.name == "rawvideo" else "bt601"
        self.fps = DEFAULT_FPS
        for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
            if rate:
                self.fps = _snapped_rate(Fraction(rate), stream.time_base)
                break
        self.exact = False
        self.num_frames = None
        if self.kind == "y4m" and self.pix_fmt and self.width > 0 and path is not None:
            self.num_frames = _y4m_frame_count(path, label, self.pix_fmt, self.width, self.height)
            self.exact = True
        elif stream.frames > 0:
            self.num_frames = stream.frames
        elif stream.duration and stream.time_base:
            self.num_frames = round(stream.duration * stream.time_base * self.fps)
        elif container.duration:
            self.num_frames = round(Fraction(container.duration, av.time_base) * self.fps)

    def frames(self, start: int) -> Generator[VideoFrame, None, None]:
        self.frames_seen = 0
        try:
            for frame in self.container.decode(self.stream):
                self.frames_seen += 1
                if self.frames_seen > start:
                    yield frame
        except AV_ERRORS as exc:
            raise InputError(
                f"{self.label}: decoding failed after {self.frames_seen} frames ({one_line(exc)})"
            ) from None

    def close(self) -> None:
        self.container.close()


def _y4m_colorspace(path: Path) -> str | None:
    """The C tag of a Y4M stream header ("420" when absent), or None for anything that is not Y4M."""
    try:
        with open(path, "rb") as fh:
            line = fh.readline(4096)
    except OSError:
        return None
    if not line.startswith(b"YUV4MPEG2 "):
        return None
    tags = [t for t in line.split() if t.startswith(b"C")]
    return tags[0][1:].decode("ascii", "replace") if tags else "420"


def _y4m_frame_count(path: Path, label: str, pix_fmt: str, width: int, height: int) -> int:
    """Exact number of whole frames in a Y4M file, by walking its FRAME headers."""
    frame_bytes = _frame_bytes(pix_fmt, width, height)
    size = path.stat().st_size
    count = 0
    with open(path, "rb") as fh:
        pos = len(fh.readline(4096))
        while pos < size:
            fh.seek(pos)
            line = fh.readline(4096)
            if not (line.startswith(b"FRAME") and line.endswith(b"\n")):
                log.warning("%s: no FRAME header at byte %d; counting %d frames", label, pos, count)
                break
            pos += len(line) + frame_bytes
            if pos > size:
                raise InputError(
                    f"{label}: Y4M is cut short: frame {count} has {size - pos + frame_bytes} of its "
                    f"{frame_bytes} bytes"
                )
            count += 1
    return count


class _RawSource(_Source):
    """Headerless I420 (8-bit planar 4:2:0)."""

    kind = "raw"
    pix_fmt = "yuv420p"
    exact = True

    def __init__(self, path: Path, label: str, size: tuple[int, int], fps: Fraction) -> None:
        self.path = path
        self.width, self.height = size
        self.fps = fps
        cw, ch = (self.width + 1) // 2, (self.height + 1) // 2
        self.plane_shapes = [(self.height, self.width), (ch, cw), (ch, cw)]
        self.frame_bytes = self.width * self.height + 2 * cw * ch
        nbytes = path.stat().st_size
        whole, rest = divmod(nbytes, self.frame_bytes)
        if rest:
            raise InputError(
                f"{label}: {nbytes} bytes is not a whole number of {self.width}x{self.height} I420 frames "
                f"of {self.frame_bytes} bytes ({whole} frames and {rest} bytes left over): is the frame size right?"
            )
        self.num_frames = whole

    def frames(self, start: int) -> Generator[VideoFrame, None, None]:
        """Read a frame at a time (not mapped: a mapped file's pages count in the process's memory until the
        end, 1.9 GB for 600 frames of 1080p)."""
        self.frames_seen = self.num_frames or 0
        if start >= self.frames_seen:
            return
        try:
            file = open(self.path, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read ({one_line(exc)})") from None
        with file:
            file.seek(start * self.frame_bytes)
            for _ in range(start, self.frames_seen):
                data = np.frombuffer(file.read(self.frame_bytes), dtype=np.uint8)
                if data.size != self.frame_bytes:
                    raise InputError(f"{self.path}: the file got shorter while it was read")
                planes, offset = [], 0
                for h, w in self.plane_shapes:
                    planes.append(data[offset : offset + h * w].reshape(h, w))
                    offset += h * w
                yield frame_from_planes(planes, "yuv420p", self.width, self.height)


class _PngSource(_Source):
    """A folder of PNG frames, all the same size."""

    kind = "png"
    exact = True

    def __init__(self, path: Path, label: str, fps: Fraction) -> None:
        self.label = label
        self.files = sorted((p for p in path.iterdir() if p.suffix.lower() == ".png" and p.is_file()), key=_natural_key)
        if not self.files:
            raise InputError(f"{label}: folder holds no .png frames")
        first = self._decode(self.files[0])
        self.width, self.height, self.pix_fmt = first.width, first.height, first.format.name
        self.num_frames = len(self.files)
        self.fps = fps

    @staticmethod
    def _decode(file: Path) -> VideoFrame:
        try:
            with av.open(_av_url(file), mode="r") as container:
                for frame in container.decode(video=0):
                    return frame
        except AV_ERRORS as exc:
            raise InputError(f"{file}: not a readable PNG ({one_line(exc)})") from None
        raise InputError(f"{file}: no image in the file")

    def frames(self, start: int) -> Generator[VideoFrame, None, None]:
        self.frames_seen = len(self.files)
        for file in self.files[start:]:
            frame = self._decode(file)
            if (frame.width, frame.height) != (self.width, self.height):
                raise InputError(
                    f"{file}: frame is {frame.width}x{frame.height} but {self.files[0].name} in "
                    f"{self.label} is {self.width}x{self.height}"
                )
            yield frame


def _label(source: str | os.PathLike[str] | BinaryIO) -> str:
    """The path as given (a stream: its name, e.g. ``<stdin>``), as text for messages."""
    if isinstance(source, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(source))
    return str(getattr(source, "name", "<stream>"))


def _open_source(source: str | os.PathLike[str] | BinaryIO, size: Any, fps: Any) -> tuple[_Source, str]:
    label = _label(source)
    if not isinstance(source, (str, bytes, os.PathLike)):
        if size is not None:
            raise InputError(
                f"{label}: a stream is read as Y4M (or another format with a header); --size is for raw files"
            )
        return _ContainerSource(source, label), label
    path = Path(label)
    if not path.exists():
        raise InputError(f"{label}: no such file or folder")
    if not path.is_dir() and not path.is_file():  # a FIFO or device: FFmpeg would block or read forever
        raise InputError(f"{label}: not a regular file or folder")
    raw = path.suffix.lower() in RAW_EXTENSIONS and not path.is_dir()
    if raw and size is None:
        raise InputError(f"{label}: raw I420 has no header; give its frame size (--size WxH, or size=(W, H))")
    if not raw and size is not None:
        raise InputError(
            f"{label}: a frame size (--size, size=) is only for raw .yuv/.i420/.raw files; this one has its own"
        )
    rate = DEFAULT_FPS if fps is None else _as_fraction(fps, "fps", label)
    try:
        if path.is_dir():
            return _PngSource(path, label, rate), label
        if raw:
            return _RawSource(path, label, _as_size(size, "size", label), rate), label
        src = _ContainerSource(path, label)
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    if fps is not None and rate != src.fps:
        log.warning("%s: fps=%s ignored; the file says %s", label, rate, src.fps)
    return src, label


class _FrameBuffer:
    """A growing (T, H, W, 3) uint8 array, preallocated from the expected frame count."""

    def __init__(self, height: int, width: int, capacity: int) -> None:
        self.data = np.empty((max(capacity, 1), height, width, 3), dtype=np.uint8)
        self.count = 0

    def append(self, rows: np.ndarray) -> None:
        if self.count == len(self.data):
            grown = np.empty((2 * len(self.data),) + self.data.shape[1:], dtype=np.uint8)
            grown[: self.count] = self.data
            self.data = grown
        self.data[self.count] = rows.reshape(self.data.shape[1:])
        self.count += 1

    def result(self) -> np.ndarray:
        if self.count == len(self.data):
            return self.data
        # A slice of the leading frames is still C-contiguous; copy only to give back a large unused tail.
        head = self.data[: self.count]
        return head.copy() if len(self.data) > self.count + self.count // 4 + 8 else head


def _checked_open(
    source: str | os.PathLike[str] | BinaryIO,
    max_frames: int | None,
    start: int,
    size: str | tuple[int, int] | None,
    fps: str | float | Fraction | None,
    scale: str | tuple[int, int] | None,
) -> tuple[_Source, str, tuple[int, int] | None]:
    """The options checked and the source opened: (source, label, output size or None)."""
    label = _label(source)
    if max_frames is not None and not _is_count(max_frames, 1):
        raise InputError(f"{label}: max_frames must be a whole number >= 1, got {max_frames!r}")
    if not _is_count(start, 0):
        raise InputError(f"{label}: start must be a whole number >= 0, got {start!r}")
    out_size = None if scale is None else _as_size(scale, "scale", label)
    if out_size is not None and max(out_size) > MAX_SCALE_SIDE:
        raise InputError(f"{label}: scale {out_size[0]}x{out_size[1]} is larger than {MAX_SCALE_SIDE} on a side")
    src, label = _open_source(source, size, fps)
    return src, label, out_size


def read_video(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    max_frames: int | None = None,
    start: int = 0,
    size: str | tuple[int, int] | None = None,
    fps: str | float | Fraction | None = None,
    scale: str | tuple[int, int] | None = None,
) -> Clip:
    """Decode ``source`` (a path, or a binary stream such as ``sys.stdin.buffer``) to uint8 RGB frames.

    ``start``: index of the first frame kept; ``max_frames``: at most this many frames;
    ``size=(W, H)`` (or ``"WxH"``): required for raw I420, refused for anything else; ``fps``: frame rate of raw
    and PNG sources (default 25), ignored for files that carry their own; ``scale=(W, H)`` (or ``"WxH"``): resize
    every frame with swscale (area averaging to shrink, bicubic to grow).
    """
    src, label, out_size = _checked_open(source, max_frames, start, size, fps, scale)
    try:
        return _read(src, label, max_frames, int(start), out_size)
    finally:
        src.close()


def iter_video(
    source: str | os.PathLike[str],
    *,
    max_frames: int | None = None,
    start: int = 0,
    size: str | tuple[int, int] | None = None,
    fps: str | float | Fraction | None = None,
    scale: str | tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """The frames ``read_video`` would give, one uint8 (H, W, 3) array at a time: memory for a frame, not
    for the clip (a 600-frame 1080p sequence is 3.7 GB as one array)."""
    frames = iter_source_frames(
        source, planes=False, max_frames=max_frames, start=start, size=size, fps=fps, scale=scale
    )
    return (frame.rgb for frame in frames)


#: Pixel formats whose planes are 8-bit 4:2:0 (``SourceFrame.yuv420``); the ``j`` one is full range.
YUV420_FORMATS = ("yuv420p", "yuvj420p")


@dataclass(frozen=True)
class SourceFrame:
    """One frame as ``iter_video`` gives it (``rgb``), with the source's own 8-bit 4:2:0 planes (Y, U, V)
    when it has them at the size read (``None`` for other formats, or when ``scale`` resized it) and the
    colour rule that made ``rgb`` from them."""

    rgb: np.ndarray
    yuv420: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    color: ColorInfo


def iter_source_frames(
    source: str | os.PathLike[str],
    *,
    planes: bool = True,
    max_frames: int | None = None,
    start: int = 0,
    size: str | tuple[int, int] | None = None,
    fps: str | float | Fraction | None = None,
    scale: str | tuple[int, int] | None = None,
) -> Iterator[SourceFrame]:
    """``iter_video``'s frames with the source's own 4:2:0 planes (copies; ``planes=False`` skips them):
    what a YUV-native measurement (PSNR-YUV) and a YUV encoder take, without a round trip through RGB."""
    src, label, out_size = _checked_open(source, max_frames, start, size, fps, scale)
    try:
        first, color, frames = _first_frame(src, label, int(start))
        width, height = out_size or (first.width, first.height)
        native = planes and first.format.name in YUV420_FORMATS and (width, height) == (first.width, first.height)
        for count, frame in enumerate(itertools.chain([first], frames), 1):
            rgb = plane_array(_to_rgb(frame, color, width, height, label), 0, 3 * width).reshape(height, width, 3)
            yield SourceFrame(rgb, _own_planes(frame) if native else None, color)
            if max_frames is not None and count >= max_frames:
                break
        frames.close()
    finally:
        src.close()


def _own_planes(frame: VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies of a planar YUV frame's three planes (the decoder reuses its buffers)."""
    return plane_array(frame, 0).copy(), plane_array(frame, 1).copy(), plane_array(frame, 2).copy()


def _first_frame(
    src: _Source, label: str, start: int
) -> tuple[VideoFrame, ColorInfo, Generator[VideoFrame, None, None]]:
    """(the first frame kept, its colour rule, the frames after it); a source without it is an InputError."""
    frames = src.frames(start)
    first = next(frames, None)
    if first is None:
        if src.frames_seen == 0:
            if src.kind == "raw":
                raise InputError(f"{label}: is empty (0 bytes): no decodable video frames")
            raise InputError(f"{label}: no decodable video frames")
        raise InputError(f"{label}: start={start} is beyond the end of the video ({src.frames_seen} frames)")
    return first, color_of_frame(first, src.untagged_matrix), frames


def _to_rgb(frame: VideoFrame, color: ColorInfo, width: int, height: int, label: str) -> VideoFrame:
    try:
        return to_rgb_frame(frame, color, width, height)
    except AV_ERRORS as exc:
        raise InputError(f"{label}: cannot convert pixel format {frame.format.name} to RGB ({one_line(exc)})") from None


def _read(src: _Source, label: str, max_frames: int | None, start: int, out_size: tuple[int, int] | None) -> Clip:
    first, color, frames = _first_frame(src, label, start)
    width, height = out_size or (first.width, first.height)

    expected = None if src.num_frames is None else max(src.num_frames - start, 1)
    if max_frames is not None:
        expected = max_frames if expected is None else min(expected, max_frames)
    if expected is not None and not (src.exact and src.num_frames is not None):
        # A guess (container metadata, or only max_frames): preallocate a bounded amount; the buffer grows.
        expected = min(expected, max(1, _MAX_ESTIMATE_BYTES // (width * height * 3)))
    buffer = _FrameBuffer(height, width, expected or 64)

    frame: VideoFrame | None = first
    while frame is not None:
        buffer.append(plane_array(_to_rgb(frame, color, width, height, label), 0, 3 * width))
        if max_frames is not None and buffer.count >= max_frames:
            break
        frame = next(frames, None)
    frames.close()
    return Clip(buffer.result(), src.fps, first.format.name, color.matrix, label)


def probe_video(
    source: str | os.PathLike[str], *, size: tuple[int, int] | None = None, fps: Fraction | None = None
) -> dict[str, Any]:
    """Describe ``source`` without decoding it.

    Keys: ``width``, ``height``, ``num_frames`` (None when the container does not say),
    ``num_frames_exact`` (True for raw, Y4M and PNG folders, where the count is computed; False where it
    comes from container metadata), ``fps``, ``pix_fmt``, ``kind`` (``"container"``, ``"y4m"``,
    ``"raw"`` or ``"png"``).
    """
    src, _ = _open_source(source, size, fps)
    try:
        return {
            "width": src.width,
            "height": src.height,
            "num_frames": src.num_frames,
            "num_frames_exact": src.exact,
            "fps": src.fps,
            "pix_fmt": src.pix_fmt,
            "kind": src.kind,
        }
    finally:
        src.close()
