"""Writing uint8 RGB frames to video files, atomically.

The output kind follows the path (``OUTPUT_KINDS``). Frames are streamed: ``VideoWriter.write`` takes
any number of frames at a time and encodes them at once. Everything goes to a temporary file (or
folder) beside the target; only a clean exit publishes it (``bitstream.files``: fsync, ``os.replace``),
so a failed or interrupted write leaves no partial output and leaves an older file at the path untouched.

RGB -> YUV uses ``color_matrix`` (BT.709 by default) in limited range, the reverse of the reader's rule;
encoded streams (.mkv/.mp4/.webm) are tagged with that matrix so that reading back inverts it exactly.
Y4M and raw YUV carry no matrix: they are always written in the one the reader assumes for them
(``UNTAGGED_RAW_MATRIX``), so that ``decode -o - | encode -`` keeps the colours.

Odd sizes: 4:2:0 cannot hold an odd width or height in H.264/H.265, so .mp4/.mkv/.webm outputs of an
odd size use 4:4:4 (yuv444p; H.264 High 4:4:4) when the encoder supports it; the picture keeps its exact
size, never padded or cropped. Y4M and raw I420 store odd sizes with ceil(W/2) x ceil(H/2) chroma.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from bitstream import files
from camcodec.errors import InputError, OutputError
from camcodec.media._common import AV_ERRORS, as_fraction, one_line
from camcodec.media.convert import AVCOL_RANGE_MPEG, MATRICES, UNTAGGED_RAW_MATRIX, from_rgb, is_yuv, plane_array

log = logging.getLogger(__name__)

#: Output kinds by extension ("/" stands for a folder of PNG frames), for the CLI's help.
OUTPUT_KINDS: dict[str, str] = {
    ".mkv": "Matroska, lossless FFV1 in RGB (bgr0): reads back bit-exact; codec= picks another encoder",
    ".mp4": "MP4, H.264 (libx264 CRF 18, yuv420p; yuv444p for odd sizes); codec= picks another encoder",
    ".webm": "WebM, VP9 (libvpx-vp9 CRF 24); codec= picks another encoder",
    ".y4m": "YUV4MPEG2, 8-bit 4:2:0 (yuv420p), limited range",
    ".yuv": "raw I420 (8-bit planar 4:2:0), no header: the reader needs size=(W, H)",
    ".i420": "raw I420, as .yuv",
    "/": "folder of lossless PNG frames frame_000000.png, ... (a path ending in '/', with no extension, "
    "or an existing folder)",
}

_DEPTH_FORMATS = {8: "yuv420p", 10: "yuv420p10le"}  # Y4M and raw YUV by bit depth
_SAME_KIND = {".i420": ".yuv"}  # extensions written as another's kind
_UNTAGGED_KINDS = (".y4m", ".yuv")
_CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".webm": "webm", ".y4m": "yuv4mpegpipe"}
_DEFAULT_CODECS = {".mkv": "ffv1", ".mp4": "libx264", ".webm": "libvpx-vp9"}


def _has_avx2() -> bool:
    """Whether this CPU reports AVX2 (Linux x86; elsewhere not known, so False)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return any(line.startswith("flags") and "avx2" in line.split() for line in info)
    except OSError:
        return False


#: libx264 options that make its bytes depend on its input alone. x264's AVX-512 code reads memory it never
#: wrote, so its output followed whatever the allocator left there (10 frames of a 176x144 test pattern at
#: crf 36 took 3,130, 3,301 or 3,202 bytes with glibc's MALLOC_PERTURB_ unset, 1 and 170; 8 frames of 64x48
#: in one process 703 or 710 bytes depending on what ran before). Held to AVX2 it gives the same bytes every
#: time, those of its SSE4 code too, so that machines with and without AVX-512 agree; a CPU without AVX2
#: keeps x264's choice.
X264_SAME_BYTES = {"x264-params": "asm=avx2"} if _has_avx2() else {}

_DEFAULT_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "18", **X264_SAME_BYTES},
    "libx265": {"crf": "18", "x265-params": "log-level=error"},
    "libvpx-vp9": {"crf": "24", "b": "0", "row-mt": "1"},
    "libsvtav1": {"crf": "24"},
}
_PNG_NAME = re.compile(r"frame_\d{6,}\.png")


def _output_kind(text: str, path: Path) -> str:
    if text.endswith(("/", os.sep)) or path.is_dir() or path.suffix == "":
        return "/"
    ext = path.suffix.lower()
    if ext not in OUTPUT_KINDS:
        known = ", ".join(k for k in OUTPUT_KINDS if k != "/")
        raise OutputError(f"{text}: unknown output extension {path.suffix!r} (known: {known}, or a folder)")
    return _SAME_KIND.get(ext, ext)


def _choose_pix_fmt(codec: av.codec.Codec, width: int, height: int) -> str:
    """The encoder's pixel format: RGB for FFV1, 4:2:0 when the size allows, else 4:4:4."""
    formats = [f.name for f in (codec.video_formats or [])]
    if codec.name == "ffv1":
        return "bgr0"
    if not formats:
        return "yuv420p"
    even = width % 2 == 0 and height % 2 == 0
    for name in ["yuv420p", "yuv444p"] if even else ["yuv444p", "yuv420p"]:
        if name in formats:
            return name
    return formats[0]


def refused_overwrite(label: str) -> str:
    """The message for an output that exists, as ffmpeg's ``-n`` refuses it."""
    return f"{label}: already exists; -y overwrites it (overwrite=True)"


def check_output_path(path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> None:
    """Refuse, with an OutputError naming it, an output file path that cannot be written.

    For a check before long work (an encode trains for minutes before it writes): the folder must
    exist and take a new file (one is created and removed), the path must not be a folder, nor the
    ``source`` file the output is made from (writing would destroy it).
    """
    label = os.fsdecode(os.fspath(path))
    target = Path(label)
    source_path = None if source is None else Path(os.fspath(source))
    if source_path is not None and target.exists() and source_path.exists() and os.path.samefile(target, source_path):
        raise OutputError(f"{label}: is the input file; refusing to overwrite it")
    parent = target.parent
    if not parent.exists():
        raise OutputError(f"{label}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{label}: {parent} is not a folder")
    if target.is_dir():
        raise OutputError(f"{label}: is a folder, not a file")
    try:
        os.unlink(files.reserve_beside(target))
    except OSError as exc:
        raise OutputError(f"{label}: cannot write in folder {parent} ({one_line(exc)})") from None


class VideoWriter:
    """Streaming, atomic video writer; use as a context manager.

    ``VideoWriter(path, width, height, fps, codec=None, color_matrix="bt709", options=None, bit_depth=8)``:
    ``codec`` names any PyAV video encoder (for .mkv/.mp4/.webm); ``options`` are encoder options
    (strings), merged over the defaults (e.g. ``{"crf": "23"}``); ``bit_depth`` 10 writes Y4M or raw YUV
    as 10-bit 4:2:0 (yuv420p10le), best from uint16 frames (``Decoder.iter_frames(high_precision=True)``).
    Leaving the ``with`` block normally publishes the file; an exception discards it.
    Without ``with``, call ``close()`` to publish or ``abort()`` to discard.

    ``path`` may be a binary stream instead (``sys.stdout.buffer``, a pipe): Y4M is written to it as
    frames come, the way ``ffmpeg -f yuv4mpegpipe -`` does; a stream cannot be written atomically.
    A closed reader on the other end (``BrokenPipeError``) propagates as it is.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        width: int,
        height: int,
        fps: Fraction | int | float | str,
        *,
        codec: str | None = None,
        color_matrix: str = "bt709",
        options: dict[str, str] | None = None,
        bit_depth: int = 8,
    ) -> None:
        self._sink: BinaryIO | None = None
        self.path: Path | None
        if isinstance(path, (str, bytes, os.PathLike)):
            self.label = os.fsdecode(os.fspath(path))
            self.path = Path(self.label)
            self.kind = _output_kind(self.label, self.path)
        else:
            self._sink, self.label, self.path, self.kind = path, getattr(path, "name", "<stream>"), None, ".y4m"
        for value, what in ((width, "width"), (height, "height")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{self.label}: {what} must be a positive integer, got {value!r}")
        self.width, self.height = int(width), int(height)
        rate = as_fraction(fps)
        if rate is None:
            raise InputError(f"{self.label}: fps must be a positive number, got {fps!r}")
        self.fps = rate
        if color_matrix not in MATRICES:
            known = ", ".join(MATRICES)
            raise OutputError(f"{self.label}: unknown color_matrix {color_matrix!r} (known: {known})")
        # Y4M and raw YUV store no matrix: they are written in the one their reader assumes.
        self.color_matrix = UNTAGGED_RAW_MATRIX if self.kind in _UNTAGGED_KINDS else color_matrix
        if codec is not None and self.kind not in _DEFAULT_CODECS:
            raise OutputError(f"{self.label}: codec= applies only to .mkv, .mp4 and .webm outputs")

        if self.path is not None:
            self._check_target(self.path)

        self._codec: av.codec.Codec | None = None
        self.pix_fmt = "rgb24"
        self._options: dict[str, str] = {}
        if self.kind in _DEFAULT_CODECS:
            name = codec or _DEFAULT_CODECS[self.kind]
            try:
                self._codec = av.codec.Codec(name, "w")
            except AV_ERRORS:
                raise OutputError(f"{self.label}: no encoder named {name!r} in this FFmpeg build") from None
            if self._codec.type != "video":
                raise OutputError(f"{self.label}: {name!r} is not a video encoder")
            self.pix_fmt = _choose_pix_fmt(self._codec, self.width, self.height)
            self._options = {**_DEFAULT_OPTIONS.get(self._codec.name, {}), **(options or {})}
        elif self.kind in _UNTAGGED_KINDS:
            self.pix_fmt = _DEPTH_FORMATS.get(bit_depth, "")
        elif options:
            raise OutputError(f"{self.label}: options= applies only to .mkv, .mp4 and .webm outputs")
        if bit_depth != 8 and not (self.kind in _UNTAGGED_KINDS and self.pix_fmt):
            raise OutputError(f"{self.label}: bit depth {bit_depth}: outputs are 8-bit, or 10-bit .y4m and .yuv")

        self.frames_written = 0
        self._png_count = 0
        self._done = True  # until the temporary output exists
        self._container: Any = None
        self._stream: Any = None
        self._raw: BinaryIO | None = None
        self._png: Any = None
        self._temp: Path | None = None
        if self.path is not None:
            folder = self.kind == "/"
            try:
                name, suffix = self.path.name or "video", "" if folder else self.kind
                self._temp = files.reserve_beside(self.path.parent / name, suffix, folder=folder)
            except OSError as exc:
                raise OutputError(f"{self.label}: cannot create a temporary file ({one_line(exc)})") from None
        self._done = False
        try:
            self._open()
        except BaseException as exc:
            self._done = True
            self._discard()
            if isinstance(exc, AV_ERRORS):
                raise OutputError(f"{self.label}: cannot open the output ({one_line(exc)})") from None
            raise

    def _check_target(self, path: Path) -> None:
        parent = path.parent
        if not parent.exists():
            raise OutputError(f"{self.label}: folder {parent} does not exist")
        if not parent.is_dir():
            raise OutputError(f"{self.label}: {parent} is not a folder")
        if self.kind == "/":
            self._check_png_target(path)
        elif path.is_dir():
            raise OutputError(f"{self.label}: is a folder, cannot write a {self.kind} file there")

    def _check_png_target(self, path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{self.label}: exists and is not a folder; cannot write PNG frames there")
        if path.is_dir():
            others = [p.name for p in path.iterdir() if not (_PNG_NAME.fullmatch(p.name) and p.is_file())]
            if others:
                raise OutputError(
                    f"{self.label}: folder holds files other than frame_NNNNNN.png (e.g. {others[0]!r}); "
                    "refusing to replace it"
                )

    def _open(self) -> None:
        if self.kind in _CONTAINERS:
            target = self._sink if self._sink is not None else os.fspath(self._output_temp)
            # FFmpeg's Y4M muxer calls C420p10 "unofficial" (every Y4M reader we know takes it)
            unofficial = {"strict": "unofficial"} if self.pix_fmt == _DEPTH_FORMATS[10] else {}
            self._container = av.open(target, mode="w", format=_CONTAINERS[self.kind], options=unofficial)
            codec_name = self._codec.name if self._codec is not None else "rawvideo"
            stream = self._container.add_stream(codec_name, rate=self.fps)
            if self._options:
                stream.codec_context.options = dict(self._options)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.pix_fmt
            stream.codec_context.time_base = 1 / self.fps
            if is_yuv(self.pix_fmt):
                stream.codec_context.colorspace = MATRICES[self.color_matrix][1]
                stream.codec_context.color_range = AVCOL_RANGE_MPEG
            stream.thread_type = "AUTO"
            self._stream = stream
        elif self.kind == ".yuv":
            self._raw = open(self._output_temp, "wb")  # noqa: SIM115 (held open across writes, closed by finish/_discard)
        else:
            self._png = av.CodecContext.create("png", "w")
            self._png.width, self._png.height, self._png.pix_fmt = self.width, self.height, "rgb24"
            self._png.time_base = 1 / self.fps

    @property
    def _output_temp(self) -> Path:
        """The temporary file or folder a path output is written to."""
        assert self._temp is not None, "a stream output has no temporary file"
        return self._temp

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frames: np.ndarray) -> None:
        """Encode uint8 RGB frames, shape (N, H, W, 3) with N >= 1 (one (H, W, 3) frame is accepted too)."""
        if self._done:
            raise OutputError(f"{self.label}: writer is already closed")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        shape_ok = frames.ndim == 4 and frames.shape[1:] == (self.height, self.width, 3) and len(frames) > 0
        if frames.dtype not in (np.uint8, np.uint16) or not shape_ok:
            raise InputError(
                f"{self.label}: frames must be uint8, or uint16 in 0..65535, (N>=1, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        try:
            for rgb in frames:
                self._write_one(rgb)
        except BrokenPipeError:
            self.abort()
            raise
        except AV_ERRORS as exc:
            self.abort()
            raise OutputError(f"{self.label}: writing frame {self.frames_written} failed ({one_line(exc)})") from None

    def _write_one(self, rgb: np.ndarray) -> None:
        frame = from_rgb(rgb, self.pix_fmt, self.color_matrix)
        if self._stream is not None:
            frame.pts = self.frames_written
            self._container.mux(self._stream.encode(frame))
        elif self._raw is not None:
            sample = np.uint16 if self.pix_fmt.endswith("10le") else np.uint8
            for index in range(3):
                self._raw.write(np.ascontiguousarray(plane_array(frame, index, dtype=sample)).data)
        else:
            frame.pts = self.frames_written
            self._save_pngs(self._png.encode(frame))
        self.frames_written += 1

    def _save_pngs(self, packets: list[Any]) -> None:
        # PNG packets come out in frame order (possibly delayed by threading): name them in that order.
        for packet in packets:
            name = f"frame_{self._png_count:06d}.png"
            (self._output_temp / name).write_bytes(bytes(packet))
            self._png_count += 1

    def close(self) -> None:
        """Flush the encoder and publish the output at its path (replacing any older one)."""
        if self._done:
            return
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.label}: no frames were written")
        try:
            self._finish()
        except BrokenPipeError:
            self.abort()
            raise
        except AV_ERRORS as exc:
            self.abort()
            raise OutputError(f"{self.label}: finishing the output failed ({one_line(exc)})") from None
        except BaseException:
            self.abort()
            raise
        self._done = True

    def _finish(self) -> None:
        if self._stream is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
        elif self._raw is not None:
            self._raw.close()
            self._raw = None
        else:
            self._save_pngs(self._png.encode(None))
            self._png = None
        if self._sink is not None:
            self._sink.flush()
        elif self.path is not None:
            files.publish(self._output_temp, self.path)

    def abort(self) -> None:
        """Discard everything written; any older file at the path stays as it was."""
        if self._done:
            return
        self._done = True
        self._discard()

    def _discard(self) -> None:
        if self._container is not None:
            with contextlib.suppress(*AV_ERRORS):
                self._container.close()
            self._container = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self._png = None
        if getattr(self, "_temp", None) is not None:
            files.discard(self._output_temp)

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            log.warning("%s: VideoWriter dropped without close(); output discarded", self.label)
            self.abort()


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: Fraction | int | float | str, **kw: Any) -> None:
    """Write uint8 RGB frames (N, H, W, 3) to ``path`` in one call; keywords as for ``VideoWriter``."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        label = os.fsdecode(os.fspath(path))
        raise InputError(f"{label}: frames must have shape (N, H, W, 3), got {frames.shape}")
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, **kw) as writer:
        writer.write(frames)
