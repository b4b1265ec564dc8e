"""Test sequences: any clip ``camcodec.media.read_video`` reads, and the UVG set from a user-given folder.

A source spec is one of:

* a video file (mp4, mkv, webm, ...), a Y4M file, or a folder of PNG frames;
* a raw I420 file (``.yuv`` / ``.i420`` / ``.raw``): its size comes from ``size=`` or from a ``WxH`` in
  its name (``bus_352x288_420_f20_b8.yuv``);
* ``uvg:PATH``: a folder holding the official UVG 1080p 8-bit 4:2:0 files, recognised by their names,
  e.g. ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` (or ``.y4m``). Each file found becomes one sequence
  named after it (``Beauty``); size and frame rate come from the name.

Every sequence is read by the same reader (``read_video``) with the same frame limit and scale, so every
codec sees the same uint8 RGB frames; untagged raw 4:2:0 (UVG) is converted with BT.709.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from camcodec.errors import InputError
from camcodec.media import Clip, read_video
from camcodec.media.reader import RAW_EXTENSIONS

log = logging.getLogger(__name__)

UVG_PREFIX = "uvg:"
#: The seven UVG sequences of the NeRV-family benchmark, with their frame counts at 1080p.
UVG_SEQUENCES: dict[str, int] = {
    "Beauty": 600,
    "Bosphorus": 600,
    "HoneyBee": 600,
    "Jockey": 600,
    "ReadySetGo": 600,
    "ShakeNDry": 300,
    "YachtRide": 600,
}
# The UVG site spells one archive "ReadySetGo" and its page "ReadySteadyGo"; both name the same sequence.
_UVG_ALIASES = {name.lower(): name for name in UVG_SEQUENCES} | {"readysteadygo": "ReadySetGo"}
_UVG_FILE = re.compile(
    r"(?P<name>[A-Za-z]+)_(?P<width>\d+)x(?P<height>\d+)_(?P<fps>\d+)fps_420_(?P<bits>\d+)bit_YUV\.(?P<ext>yuv|y4m)",
    re.IGNORECASE,
)
_SIZE_IN_NAME = re.compile(r"(?<![0-9])(\d{2,5})x(\d{2,5})(?![0-9])")


@dataclass(frozen=True)
class Sequence:
    """One test sequence: where it is and how to read it."""

    name: str
    source: str  # the spec as the user gave it (for uvg: the folder spec plus the file name)
    path: Path
    size: tuple[int, int] | None = None  # raw I420 only
    fps: Fraction | None = None  # raw and PNG sources
    uvg: bool = False

    def read(self, max_frames: int | None = None, scale: tuple[int, int] | None = None) -> Clip:
        """The sequence's frames as uint8 RGB, after the frame limit and the scale."""
        log.info("reading %s (%s)", self.name, self.path)
        return read_video(self.path, max_frames=max_frames, size=self.size, fps=self.fps, scale=scale)


def parse_uvg_name(filename: str) -> tuple[str, tuple[int, int], Fraction, int, str] | None:
    """(sequence name, (W, H), fps, bit depth, extension) of an official UVG file name, or None."""
    match = _UVG_FILE.fullmatch(filename)
    if match is None:
        return None
    name = _UVG_ALIASES.get(match["name"].lower())
    if name is None:
        return None
    size = (int(match["width"]), int(match["height"]))
    return name, size, Fraction(int(match["fps"])), int(match["bits"]), match["ext"].lower()


def uvg_sequences(folder: str | os.PathLike[str], spec: str) -> list[Sequence]:
    """The UVG 1080p 8-bit sequences in ``folder`` (a .yuv is preferred over a .y4m of the same sequence)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{spec}: no such folder")
    found: dict[str, Sequence] = {}
    for file in sorted(path.iterdir()):
        parsed = parse_uvg_name(file.name)
        if parsed is None or not file.is_file():
            continue
        name, size, fps, bits, ext = parsed
        if size != (1920, 1080) or bits != 8:
            log.info("%s: skipped (the benchmark uses the 1920x1080 8-bit files)", file)
            continue
        if name in found and found[name].path.suffix.lower() == ".yuv":
            continue
        raw = ext == "yuv"
        found[name] = Sequence(
            name=name,
            source=f"{spec}/{file.name}",
            path=file,
            size=size if raw else None,
            fps=fps if raw else None,
            uvg=True,
        )
    if not found:
        raise InputError(f"{spec}: no UVG files found (expected names like Beauty_1920x1080_120fps_420_8bit_YUV.yuv)")
    missing = [name for name in UVG_SEQUENCES if name not in found]
    if missing:
        log.warning("%s: UVG sequences not found: %s", spec, ", ".join(missing))
    return [found[name] for name in UVG_SEQUENCES if name in found]


def _size_from_name(path: Path) -> tuple[int, int] | None:
    match = _SIZE_IN_NAME.search(path.name)
    return (int(match[1]), int(match[2])) if match else None


def file_sequence(spec: str, size: tuple[int, int] | None = None, fps: Fraction | None = None) -> Sequence:
    """One sequence from a video file, Y4M, raw I420 or PNG folder."""
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder")
    raw = path.is_file() and path.suffix.lower() in RAW_EXTENSIONS
    if raw:
        size = size or _size_from_name(path)
        if size is None:
            raise InputError(f"{spec}: raw I420 has no header; give --size WxH (or put WxH in the file name)")
    parsed = parse_uvg_name(path.name)
    name = parsed[0] if parsed else (path.name if path.is_dir() else path.stem) or "video"
    return Sequence(
        name=name,
        source=spec,
        path=path,
        size=size if raw else None,
        fps=fps if (raw or path.is_dir()) else None,
    )


def resolve_sources(
    specs: list[str], size: tuple[int, int] | None = None, fps: Fraction | None = None
) -> list[Sequence]:
    """Sequences for the given specs, in order; names made unique (``name``, ``name-2``, ...)."""
    if not specs:
        raise InputError("no sources given")
    sequences: list[Sequence] = []
    for spec in specs:
        if spec.startswith(UVG_PREFIX):
            sequences.extend(uvg_sequences(spec[len(UVG_PREFIX) :], spec))
        else:
            sequences.append(file_sequence(spec, size, fps))
    unique: list[Sequence] = []
    seen: set[str] = set()
    for seq in sequences:
        name, n = seq.name, 1
        while name in seen:
            n += 1
            name = f"{seq.name}-{n}"
        seen.add(name)
        unique.append(seq if name == seq.name else Sequence(name, seq.source, seq.path, seq.size, seq.fps, seq.uvg))
    return unique
