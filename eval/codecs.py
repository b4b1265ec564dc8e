"""The codecs the harness compares, each at several rate points, all fed the same sequence.

Conventional codecs (through PyAV) are given the source's own 8-bit 4:2:0 planes when it has them at the
size measured (a YUV 4:2:0 source not resized: UVG, Y4M, raw I420, most video files), tagged with the
source's matrix and range, as the papers encode UVG; otherwise the RGB frames are converted to 8-bit
4:2:0 (``yuv420p``) with BT.709 in limited range (``camcodec.media.convert.from_rgb``, the writer's
conversion). Either way the stream is encoded at a constant rate factor into a Matroska file tagged with
that colour and read back with ``camcodec.media.iter_source_frames``, the same reader that produced the
reference frames, so the inverse matrix is the same one. camcodec is given the RGB frames.

Rate: ``bytes`` is the coded video, the sum of the encoded packets plus the codec's global headers
(extradata), without the Matroska container around them. The text that x264 and x265 write into the
stream to record their own settings (an SEI message of about 0.7 kB and 2.3 kB) is left out of the
stream itself: x265 with ``info=0``, x264 by dropping SEI NAL units with FFmpeg's ``filter_units``
bitstream filter. On small clips that text alone would be a sizable share of the rate; the frames
decode identically without it.

Names (``--codecs``): ``x264`` and ``x265`` (preset medium; ``x264-veryslow`` etc. for another preset),
``x265ldp`` (x265 without B-frames, as the NeRV-family papers use it),
``svtav1`` (preset 8; ``svtav1-4`` for preset 4), ``vp9`` (libvpx-vp9 good quality, cpu-used 1;
``vp9-4`` for cpu-used 4) and ``camcodec`` (and its variants). Rate points are CRF values for the
conventional codecs and target bits per pixel for camcodec.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import av
import numpy as np
from av.bitstream import BitStreamFilterContext
from av.video.stream import VideoStream

from bitstream.files import atomic_path
from camcodec.errors import InputError, OutputError
from camcodec.media import SourceFrame
from camcodec.media.convert import (
    AVCOL_RANGE_JPEG,
    AVCOL_RANGE_MPEG,
    MATRICES,
    ColorInfo,
    frame_from_planes,
    from_rgb,
)
from camcodec.media.writer import X264_SAME_BYTES

log = logging.getLogger(__name__)

#: The colour a conventional codec's input is converted to when the source has no 4:2:0 planes of its own.
RGB_SOURCE_COLOR = ColorInfo("bt709", full_range=False)
_X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


class Codec(Protocol):
    """What the harness needs of a codec."""

    @property
    def name(self) -> str:
        """As in --codecs and in the results."""

    @property
    def label(self) -> str:
        """For plots and tables."""

    @property
    def default_points(self) -> tuple[Point, ...]: ...

    def check_point(self, value: Point) -> None:
        """InputError unless ``value`` is a rate point of this codec."""

    def point_label(self, value: Point) -> str: ...

    def settings(self, value: Point) -> str: ...

    def stream_suffix(self) -> str: ...

    def facts(self, threads: int | None) -> dict[str, Any]:
        """What besides its settings decides this codec's result here (``eval.provenance``); ``threads``:
        torch threads the point runs with (None: the process's)."""


#: A rate point: a number (CRF, target bpp) or, for camcodec, the name of a rate-ladder rung.
Point = float | str


def format_value(value: Point) -> str:
    """A rate-point value as short text: 27, 0.03, m."""
    return value if isinstance(value, str) else f"{value:g}"


@dataclass(frozen=True)
class Family:
    """A conventional encoder and the knobs the harness sets."""

    encoder: str
    speed_option: str  # the encoder option that takes the preset
    default_speed: str
    speeds: tuple[str, ...]
    default_points: tuple[float, ...]  # CRF values
    options: dict[str, str] = field(default_factory=dict)
    bsf: str | None = None  # bitstream filter applied to every packet before it is counted and stored
    note: str = ""  # what sets it apart from its encoder's defaults, for labels


# Threads are pinned for every encoder: left to FFmpeg and the encoders, their number follows the machine's
# cores, and with it the bytes (x264's default slice threads cut each picture into one slice per core:
# 10 frames of 176x144 at crf 35 took 2,860 bytes on 2 CPUs and 2,508 on one; VP9 3,238 and 3,375).
# ``threads`` is FFmpeg's own option (libx264 and libvpx take it); x265 and SVT-AV1 take their own.
ONE_THREAD = {"threads": "1"}
# x264 also held to its AVX2 code, whose bytes depend on the input alone (camcodec.media.writer).
X264_OPTIONS = {**ONE_THREAD, **X264_SAME_BYTES}

X265_PARAMS = "log-level=error:info=0:frame-threads=1:pools=1"
X265 = Family("libx265", "preset", "medium", _X26X_PRESETS, (22, 27, 32, 37), {"x265-params": X265_PARAMS})

FAMILIES: dict[str, Family] = {
    "x264": Family(
        "libx264",
        "preset",
        "medium",
        _X26X_PRESETS,
        (22, 27, 32, 37),
        options=X264_OPTIONS,
        bsf="filter_units=remove_types=6",  # drop SEI NAL units: x264 writes its settings as text there
    ),
    "x265": X265,
    # x265 without B-frames (bframes=0), the low-delay P configuration the NeRV-family papers compare
    # against; the anchor stays x265 medium, which keeps them.
    "x265ldp": replace(X265, options={"x265-params": f"{X265_PARAMS}:bframes=0"}, note="bframes=0"),
    "svtav1": Family(
        "libsvtav1", "preset", "8", tuple(str(i) for i in range(14)), (27, 35, 43, 51), {"svtav1-params": "lp=1"}
    ),
    "vp9": Family(
        "libvpx-vp9",
        "cpu-used",
        "1",
        tuple(str(i) for i in range(9)),
        (27, 35, 43, 51),
        options={"b": "0", "row-mt": "1", "deadline": "good", **ONE_THREAD},
    ),
}


@dataclass(frozen=True)
class ConventionalCodec:
    """An encoder of ``FAMILIES`` at one preset; rate points are CRF values."""

    family_name: str
    speed: str

    @property
    def family(self) -> Family:
        return FAMILIES[self.family_name]

    @property
    def name(self) -> str:
        default = self.speed == self.family.default_speed
        return self.family_name if default else f"{self.family_name}-{self.speed}"

    @property
    def label(self) -> str:
        note = f", {self.family.note}" if self.family.note else ""
        return f"{self.family_name} ({self.family.speed_option} {self.speed}{note})"

    @property
    def default_points(self) -> tuple[Point, ...]:
        return self.family.default_points

    def check_point(self, value: Point) -> None:
        if isinstance(value, str) or not math.isfinite(value) or value < 0:
            raise InputError(f"{self.name}: rate points are CRF values (numbers >= 0), got {value!r}")

    def point_label(self, value: Point) -> str:
        return f"crf={format_value(value)}"

    def options(self, value: Point) -> dict[str, str]:
        return {**self.family.options, self.family.speed_option: self.speed, "crf": format_value(value)}

    def settings(self, value: Point) -> str:
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options(value).items()))
        return f"{self.family.encoder} yuv420p {opts}"

    def stream_suffix(self) -> str:
        return ".mkv"

    def facts(self, threads: int | None) -> dict[str, Any]:
        return {"encoder": self.family.encoder}  # its threads are pinned (ONE_THREAD), its build is FFmpeg's

    def encode_stream(
        self, frames: Iterator[SourceFrame], size: tuple[int, int], fps: Fraction, value: Point, path: Path
    ) -> tuple[int, float]:
        """Encode the frames of ``size`` (W, H), as they come, into ``path`` (atomically): a frame in memory at
        a time besides the encoder's own. Frames with their own 4:2:0 planes go in as they are (all frames
        are taken the way the first is), others from RGB in ``RGB_SOURCE_COLOR``. (coded bytes, seconds
        spent in the encoder)."""
        width, height = size
        if width % 2 or height % 2:
            raise InputError(
                f"{self.name}: 4:2:0 needs an even frame size, got {width}x{height}; use --scale to pick one"
            )
        first = next(frames)
        native = first.yuv420 is not None
        color = first.color if native else RGB_SOURCE_COLOR

        def to_yuv(frame: SourceFrame) -> av.VideoFrame:
            if native:
                return frame_from_planes(list(frame.yuv420 or ()), "yuv420p", width, height)
            return from_rgb(frame.rgb, "yuv420p", color.matrix, color.full_range)

        with atomic_path(path, path.suffix) as temp:
            return self._encode(map(to_yuv, itertools.chain([first], frames)), size, fps, value, color, temp)

    def _encode(
        self,
        frames: Iterator[av.VideoFrame],
        size: tuple[int, int],
        fps: Fraction,
        value: Point,
        color: ColorInfo,
        path: Path,
    ) -> tuple[int, float]:
        """Encode yuv420p frames in ``color`` to ``path``; (coded bytes, seconds spent in the encoder)."""
        encoder = self.family.encoder
        container = av.open(os.fspath(path), mode="w", format="matroska")
        try:
            try:
                stream = cast(VideoStream, container.add_stream(encoder, rate=fps))
            except (av.FFmpegError, ValueError) as exc:
                raise InputError(f"{self.name}: no encoder {encoder} in this PyAV build ({exc})") from None
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            stream.codec_context.options = self.options(value)
            stream.codec_context.colorspace = MATRICES[color.matrix][1]
            stream.codec_context.color_range = AVCOL_RANGE_JPEG if color.full_range else AVCOL_RANGE_MPEG
            bsf = BitStreamFilterContext(self.family.bsf, in_stream=stream) if self.family.bsf else None
            total = 0
            seconds = 0.0

            def mux(packets: list[Any]) -> None:
                nonlocal total
                if bsf is not None:
                    packets = [out for packet in packets for out in bsf.filter(packet)]
                for packet in packets:
                    packet.stream = stream
                    total += packet.size
                    container.mux(packet)

            for index, frame in enumerate(frames):
                frame.pts = index
                start = time.perf_counter()
                packets = stream.encode(frame)
                seconds += time.perf_counter() - start
                mux(packets)
            start = time.perf_counter()
            packets = stream.encode(None)
            seconds += time.perf_counter() - start
            mux(packets)
            if bsf is not None:
                mux(bsf.filter(None))
            extradata = stream.codec_context.extradata
            total += len(extradata) if extradata else 0
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{path}: {self.name} encoding failed ({exc})") from None
        finally:
            container.close()
        return total, seconds


@dataclass(frozen=True)
class CamcodecCodec:
    """camcodec; a rate point is a target in bits per pixel (``camcodec encode --bpp``) or a rung of the
    rate ladder by name (``--rate xs|s|m|l|xl``): what a user asks for, at the preset's training.

    A variant is camcodec under its own name with encode or model options set (``--variant
    NAME:key=value:...``), so that ablations of the same codec share one results table.
    """

    preset: str | None = None  # None: camcodec's default preset
    steps: int | None = None
    device: str = "auto"
    progress: bool = False
    name: str = "camcodec"
    options: tuple[str, ...] = ()  # "key=value" texts for camcodec.config.parse_options

    default_points: ClassVar[tuple[Point, ...]] = (0.03, 0.08, 0.2)

    @property
    def label(self) -> str:
        """The name and every setting the curve was made with: preset, --steps, a variant's options."""
        training = self.preset or "default preset"
        if self.steps is not None:
            training += f", {self.steps} steps"
        preset = f"camcodec ({training})"
        return f"{self.name}: {preset} {' '.join(self.options)}" if self.options else preset

    def check_point(self, value: Point) -> None:
        from camcodec.config import RATES

        if isinstance(value, str) and value not in RATES:
            raise InputError(f"{self.name}: unknown rate rung {value!r}; rungs: {', '.join(RATES)}, or a bpp")
        if not isinstance(value, str) and not (math.isfinite(value) and 0 < value <= 24):
            raise InputError(f"{self.name}: a target bpp must be in (0, 24], got {value!r}")

    def point_label(self, value: Point) -> str:
        return f"rate={value}" if isinstance(value, str) else f"bpp={format_value(value)}"

    def settings(self, value: Point) -> str:
        rate = f"rate={value}" if isinstance(value, str) else f"target_bpp={format_value(value)}"
        parts = [f"preset={self.preset or 'default'}", rate, *self.options]
        if self.steps is not None:
            parts.append(f"steps={self.steps}")
        return "camcodec " + " ".join(parts)

    def stream_suffix(self) -> str:
        return ".cam"

    def facts(self, threads: int | None) -> dict[str, Any]:
        from camcodec.config import parse_options
        from eval.provenance import camcodec_facts

        return camcodec_facts(self.device, parse_options(self.options), threads)

    def encode_file(self, frames: np.ndarray, value: Point, path: Path) -> tuple[int, float]:
        """Encode uint8 RGB frames into ``path`` (atomically) at this rate point; (file bytes, seconds)."""
        import camcodec  # the codec under test; imported here so the harness's other parts load without it
        from camcodec.config import parse_options

        options: dict[str, Any] = {**parse_options(self.options), "device": self.device}
        if isinstance(value, str):
            options["rate"] = value
        else:
            options["target_bpp"] = float(value)
        if self.preset is not None:
            options["preset"] = self.preset
        if self.steps is not None:
            options["steps"] = self.steps
        with atomic_path(path, path.suffix) as temp:
            start = time.perf_counter()
            camcodec.encode(frames, temp, progress=self.progress, **options)
            encode_s = time.perf_counter() - start
        return path.stat().st_size, encode_s

    def decoded_frames(self, path: Path) -> Iterator[np.ndarray]:
        """The frames the file decodes to, one at a time (rendered a group at a time)."""
        from camcodec import Decoder

        return Decoder(path, device=self.device).iter_frames()


#: A camcodec codec run with another seed is named ``NAME@seedK`` (``eval rd --seeds``); seed 0 keeps NAME.
SEED_MARK = "@seed"


def seed_base(name: str) -> str:
    """The codec a seed run belongs to: ``camcodec@seed2`` -> ``camcodec``."""
    return name.split(SEED_MARK, 1)[0]


def with_seeds(codec: CamcodecCodec, seeds: int) -> list[CamcodecCodec]:
    """``codec`` (seed 0, as it is) and the same codec with seeds 1 .. ``seeds`` - 1, each under its own name."""
    return [codec] + [
        replace(codec, name=f"{codec.name}{SEED_MARK}{seed}", options=(*codec.options, f"seed={seed}"))
        for seed in range(1, seeds)
    ]


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME:key=value:key=value`` -> (NAME, ("key=value", ...)); the options are checked at once."""
    from camcodec.config import parse_options

    name, *options = [part.strip() for part in text.split(":")]
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or name.lower() in FAMILIES or not options:
        raise InputError(f"expected a variant NAME:key=value[:key=value...] with a new codec name, got {text!r}")
    parse_options(options)
    return name, tuple(options)


CODEC_HELP = (
    "x264, x265 (x264-veryslow, ...: another preset), x265ldp (x265 with bframes=0), svtav1 (svtav1-N), "
    "vp9 (vp9-N: cpu-used), camcodec"
)


def make_codec(
    name: str,
    *,
    camcodec_preset: str | None = None,
    steps: int | None = None,
    device: str = "auto",
    progress: bool = False,
    variants: dict[str, tuple[str, ...]] | None = None,
) -> Codec:
    """The codec a ``--codecs`` name (or a camcodec variant's name) stands for."""
    text = name.strip().lower()
    if text == "camcodec" or name.strip() in (variants or {}):
        options = (variants or {}).get(name.strip(), ())
        return CamcodecCodec(camcodec_preset, steps, device, progress, name.strip(), options)
    family_name, _, speed = text.partition("-")
    family = FAMILIES.get(family_name)
    if family is None:
        raise InputError(f"unknown codec {name!r}; known: {CODEC_HELP}")
    speed = speed or family.default_speed
    if speed not in family.speeds:
        raise InputError(
            f"unknown {family.speed_option} {speed!r} for {family_name}; choose from {', '.join(family.speeds)}"
        )
    return ConventionalCodec(family_name, speed)
