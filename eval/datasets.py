"""Test sequences: any clip ``camcodec.media.read_video`` reads, the UVG set from a user-given folder, and
set files that list sequences with how each is read.

A source spec is one of:

* a video file (mp4, mkv, webm, ...), a Y4M file, or a folder of PNG frames;
* a raw I420 file (``.yuv`` / ``.i420`` / ``.raw``): its size comes from ``size=`` or from a ``WxH`` in
  its name (``bus_352x288_420_f20_b8.yuv``);
* ``uvg:PATH``: a folder holding the official UVG 1080p 8-bit 4:2:0 files, recognised by their names,
  e.g. ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` (or ``.y4m``). Each file found becomes one sequence
  named after it (``Beauty``); size and frame rate come from the name;
* a set file (``.json``): ``{"sequences": [...]}``, one object per sequence, each with its ``path``
  (relative to the set file, or a ``uvg:`` folder) and, where it needs them, its own ``frames``, ``scale``,
  ``size``, ``fps`` and ``name``, so that clips read in different ways (``eval/sets/dev.json``: the dev
  set) go in one run. ``description`` (of the set) and ``note`` (of a sequence) are free text.

Every sequence is read by the same reader (``read_video``) with its frame limit and scale (a set file's own,
else the run's), so every codec sees the same uint8 RGB frames; untagged raw 4:2:0 (UVG) is converted with
BT.709.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from camcodec.cli.args import fps_arg, positive_int, size_arg
from camcodec.errors import InputError
from camcodec.media import Clip, SourceFrame, iter_source_frames, probe_video, read_video
from camcodec.media.reader import RAW_EXTENSIONS

log = logging.getLogger(__name__)

UVG_PREFIX = "uvg:"
SET_SUFFIX = ".json"


def _text(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


#: What a set file's sequence may hold, each with its parser (``path`` is required; ``note`` is free text).
_SET_FIELDS: dict[str, Callable[[str], Any]] = {
    "path": _text,
    "name": _text,
    "frames": positive_int,
    "scale": size_arg,
    "size": size_arg,
    "fps": fps_arg,
    "note": str,
}

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
    max_frames: int | None = None  # the first N frames only
    scale: tuple[int, int] | None = None  # resized to (W, H)

    def read(self) -> Clip:
        """The sequence's frames as uint8 RGB, after the frame limit and the scale."""
        log.info("reading %s (%s)", self.name, self.path)
        return read_video(self.path, max_frames=self.max_frames, size=self.size, fps=self.fps, scale=self.scale)

    def source_frames(self) -> Iterator[SourceFrame]:
        """The frames ``read`` gives, one at a time (a frame's memory, not the sequence's), with the
        source's own 4:2:0 planes where it has them at this size."""
        return iter_source_frames(self.path, max_frames=self.max_frames, size=self.size, fps=self.fps, scale=self.scale)

    def frame_rate(self) -> Fraction:
        return Fraction(probe_video(self.path, size=self.size, fps=self.fps)["fps"])


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
            raise InputError(
                f'{spec}: raw I420 has no header; give --size WxH ("size" in a set file) or put WxH in the file name'
            )
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
    specs: list[str],
    size: tuple[int, int] | None = None,
    fps: Fraction | None = None,
    max_frames: int | None = None,
    scale: tuple[int, int] | None = None,
) -> list[Sequence]:
    """Sequences for the given specs, in order; names made unique (``name``, ``name-2``, ...).

    ``size``, ``fps``, ``max_frames`` and ``scale`` apply to every sequence but where a set file gives its own.
    """
    if not specs:
        raise InputError("no sources given")
    sequences: list[Sequence] = []
    for spec in specs:
        if spec.lower().endswith(SET_SUFFIX):
            sequences.extend(set_sequences(spec, size, fps, max_frames, scale))
        else:
            sequences.extend(_spec_sequences(spec, size, fps, max_frames, scale))
    unique: list[Sequence] = []
    seen: set[str] = set()
    for seq in sequences:
        name, n = seq.name, 1
        while name in seen:
            n += 1
            name = f"{seq.name}-{n}"
        seen.add(name)
        unique.append(seq if name == seq.name else replace(seq, name=name))
    return unique


def _spec_sequences(
    spec: str,
    size: tuple[int, int] | None,
    fps: Fraction | None,
    max_frames: int | None,
    scale: tuple[int, int] | None,
) -> list[Sequence]:
    """The sequences of one file or ``uvg:`` spec, read with this frame limit and scale."""
    if spec.startswith(UVG_PREFIX):
        found = uvg_sequences(spec[len(UVG_PREFIX) :], spec)
    else:
        found = [file_sequence(spec, size, fps)]
    return [replace(seq, max_frames=max_frames, scale=scale) for seq in found]


def set_sequences(
    spec: str,
    size: tuple[int, int] | None = None,
    fps: Fraction | None = None,
    max_frames: int | None = None,
    scale: tuple[int, int] | None = None,
) -> list[Sequence]:
    """The sequences a set file lists; an entry's own fields win over the ones given here."""
    try:
        data = json.loads(Path(spec).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{spec}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{spec}: cannot read the set file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{spec}: not a valid set file ({exc})") from None
    entries = data.get("sequences") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries or not set(data) <= {"sequences", "description"}:
        raise InputError(
            f'{spec}: a set file is {{"sequences": [...]}} (and a "description"), with one sequence or more'
        )
    folder = os.path.dirname(os.path.abspath(spec))
    sequences: list[Sequence] = []
    for number, entry in enumerate(entries, 1):
        fields = _set_entry(entry, f"{spec}: sequence {number}")
        prefix = UVG_PREFIX if fields["path"].startswith(UVG_PREFIX) else ""
        path = os.path.expanduser(fields["path"][len(prefix) :])
        found = _spec_sequences(
            prefix + os.path.normpath(os.path.join(folder, path)),
            fields.get("size", size),
            fields.get("fps", fps),
            fields.get("frames", max_frames),
            fields.get("scale", scale),
        )
        if "name" in fields:
            if len(found) > 1:
                raise InputError(f"{spec}: sequence {number}: a name for a folder of several sequences")
            found = [replace(found[0], name=fields["name"])]
        sequences.extend(found)
    return sequences


def _set_entry(entry: object, where: str) -> dict[str, Any]:
    """A set file's sequence, each value parsed; an unknown or malformed field is an error."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object")
    unknown = sorted(set(entry) - set(_SET_FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(_SET_FIELDS)})")
    if not isinstance(entry.get("path"), str):
        raise InputError(f"{where}: needs a path (a string)")
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"{where}: {key} = {value!r} is not a text or a number")
        try:
            fields[key] = _SET_FIELDS[key](str(value))
        except argparse.ArgumentTypeError as exc:
            raise InputError(f"{where}: {key}: {exc}") from None
    return fields
