"""The rate-distortion run: every codec at every rate point on every sequence, then the reports.

>>> run_rd(RDConfig(sources=["clip.mp4"], out="rd", codecs=["x264", "x265"]))   # doctest: +SKIP

For each sequence the frames are read once (same frame limit and scale for every codec); each pending
(codec, point) is encoded, decoded and measured through ``eval.metrics.measure``, and the row is saved
at once, so a later run with the same output folder skips it. Encoded streams are kept in
``OUT/streams/`` with ``keep_streams``; otherwise each run writes them to a folder of its own
(``OUT/.streams-*``), deleted when the sequence is done, so that runs sharing ``OUT`` never remove
each other's files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from camcodec.errors import InputError, OutputError
from eval.codecs import CamcodecCodec, Codec, Point, make_codec
from eval.datasets import Sequence, resolve_sources
from eval.metrics import measure
from eval.report import write_reports
from eval.results import ResultStore, Row

log = logging.getLogger(__name__)

DEFAULT_CODECS = ("camcodec", "x264", "x265")
DEFAULT_ANCHOR = "x265"
ALL_CONVENTIONAL = "*"  # key of ``points`` for every codec but camcodec


@dataclass
class RDConfig:
    """What to run. ``points`` maps a codec name (or ``"*"``: every conventional codec) to its rate points."""

    sources: list[str]
    out: str | os.PathLike[str]
    codecs: list[str] = field(default_factory=lambda: list(DEFAULT_CODECS))
    anchor: str | None = None  # default: x265 when run, else the first codec
    points: dict[str, tuple[Point, ...]] = field(default_factory=dict)
    frames: int | None = None
    scale: tuple[int, int] | None = None
    size: tuple[int, int] | None = None  # raw I420 sources without WxH in their name
    fps: Fraction | None = None  # raw and PNG sources
    camcodec_preset: str | None = None
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # camcodec under other options
    steps: int | None = None
    device: str = "auto"
    keep_streams: bool = False
    progress: bool = False


@dataclass(frozen=True)
class RDReport:
    """What a run produced."""

    folder: Path
    measured: int  # points measured in this run
    skipped: int  # points found in the folder
    markdown: str  # the text of bdrate.md


def _codecs(config: RDConfig) -> list[Codec]:
    codecs: list[Codec] = []
    names = list(config.codecs) + [name for name in config.variants if name not in config.codecs]
    for name in names:
        codec = make_codec(
            name,
            camcodec_preset=config.camcodec_preset,
            steps=config.steps,
            device=config.device,
            progress=config.progress,
            variants=config.variants,
        )
        if any(c.name == codec.name for c in codecs):
            raise InputError(f"codec {codec.name!r} is listed twice")
        codecs.append(codec)
    if not codecs:
        raise InputError("no codecs given")
    return codecs


def _points(codec: Codec, points: dict[str, tuple[Point, ...]]) -> tuple[Point, ...]:
    if codec.name in points:
        values = points[codec.name]
    elif isinstance(codec, CamcodecCodec) and "camcodec" in points:
        values = points["camcodec"]  # a variant takes camcodec's points unless it has its own
    elif not isinstance(codec, CamcodecCodec) and ALL_CONVENTIONAL in points:
        values = points[ALL_CONVENTIONAL]
    else:
        values = codec.default_points
    if not values:
        raise InputError(f"{codec.name}: no rate points")
    for value in values:
        codec.check_point(value)
    return tuple(dict.fromkeys(values))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def _setup(sequence: Sequence, config: RDConfig) -> dict[str, object]:
    return {
        "source": sequence.source,
        "max_frames": config.frames,
        "scale": list(config.scale) if config.scale else None,
        "uvg": sequence.uvg,
    }


def run_rd(config: RDConfig) -> RDReport:
    """Run every pending point, then write results.csv/json, bdrate.md, rd_psnr.png and rd_msssim.png."""
    codecs = _codecs(config)
    names = [c.name for c in codecs]
    if config.anchor:
        anchor = make_codec(config.anchor, variants=config.variants).name
    else:
        anchor = DEFAULT_ANCHOR if DEFAULT_ANCHOR in names else names[0]
    if anchor not in names:
        raise InputError(f"anchor {anchor!r} is not among the codecs run ({', '.join(names)})")
    unknown = set(config.points) - set(names) - {ALL_CONVENTIONAL, "camcodec"}
    if unknown:
        raise InputError(f"--points names codecs not run: {', '.join(sorted(unknown))}")
    plan = [(codec, _points(codec, config.points)) for codec in codecs]
    sequences = resolve_sources(config.sources, config.size, config.fps)

    folder = Path(config.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    store = ResultStore(folder)
    for sequence in sequences:
        store.check_sequence(sequence.name, _setup(sequence, config))

    jobs = [(sequence, codec, value) for sequence in sequences for codec, values in plan for value in values]
    pending = [
        job
        for job in jobs
        if not store.done(job[0].name, job[1].name, job[1].point_label(job[2]), job[1].settings(job[2]))
    ]
    skipped = len(jobs) - len(pending)
    if skipped:
        log.info("%d of %d points already in %s; skipping them", skipped, len(jobs), folder)

    bar = tqdm(total=len(pending), desc="rd", unit="point", disable=not config.progress, dynamic_ncols=True)
    try:
        for sequence in sequences:
            todo = [(codec, value) for seq, codec, value in pending if seq is sequence]
            if todo:
                _run_sequence(sequence, todo, config, store, bar)
    finally:
        bar.close()
    store.save()
    labels = {c.name: c.label for c in codecs}
    markdown = write_reports(store, anchor, order=names, labels=labels)
    return RDReport(folder, len(pending), skipped, markdown)


def _warn_same_size(store: ResultStore, sequence: str) -> None:
    """Warn when two rate points of a codec coded to the same size (say, camcodec's smallest model)."""
    seen: dict[tuple[str, int], str] = {}
    for row in store.sorted_rows():
        if row.sequence != sequence:
            continue
        other = seen.setdefault((row.codec, row.bytes), row.point)
        if other != row.point:
            log.warning(
                "%s: %s %s and %s coded to the same size (%d bytes); this clip is too small to tell them apart",
                sequence,
                row.codec,
                other,
                row.point,
                row.bytes,
            )


def _run_sequence(
    sequence: Sequence, todo: list[tuple[Codec, Point]], config: RDConfig, store: ResultStore, bar: tqdm
) -> None:
    clip = sequence.read(config.frames, config.scale)
    frames = clip.frames
    num_frames, height, width = frames.shape[:3]
    store.note_sequence(sequence.name, frames=num_frames, width=width, height=height, fps=str(clip.fps))
    if config.keep_streams:
        streams = Path(config.out) / "streams" / _safe(sequence.name)
        streams.mkdir(parents=True, exist_ok=True)
    else:
        streams = Path(tempfile.mkdtemp(prefix=".streams-", dir=config.out))
    try:
        _run_points(sequence.name, frames, clip.fps, todo, streams, store, bar)
    finally:
        if not config.keep_streams:
            shutil.rmtree(streams, ignore_errors=True)
    _warn_same_size(store, sequence.name)


def _run_points(
    sequence: str,
    frames: np.ndarray,
    fps: Fraction,
    todo: list[tuple[Codec, Point]],
    streams: Path,
    store: ResultStore,
    bar: tqdm,
) -> None:
    """Encode, decode and measure each pending (codec, point) of one sequence, saving each row at once."""
    num_frames, height, width = frames.shape[:3]
    pixels = width * height * num_frames
    for codec, value in todo:
        point = codec.point_label(value)
        bar.set_description(f"{sequence} {codec.name} {point}")
        path = streams / f"{_safe(codec.name)}_{_safe(point)}{codec.stream_suffix()}"
        coded = codec.run(frames, fps, value, path)
        quality = measure(frames, coded.decoded)
        row = Row(
            sequence=sequence,
            codec=codec.name,
            point=point,
            value=value,
            frames=num_frames,
            width=width,
            height=height,
            bytes=coded.bytes,
            bpp=8 * coded.bytes / pixels,
            psnr_rgb=quality.psnr_rgb,
            psnr_yuv=quality.psnr_yuv,
            ms_ssim=quality.ms_ssim,
            encode_s=coded.encode_s,
            decode_s=coded.decode_s,
            settings=codec.settings(value),
        )
        store.add(row)
        log.info(
            "%s %s %s: %.4f bpp, PSNR %.2f dB (YUV %.2f), MS-SSIM %.4f, encode %.2f s, decode %.2f s",
            sequence,
            codec.name,
            point,
            row.bpp,
            row.psnr_rgb,
            row.psnr_yuv,
            row.ms_ssim,
            row.encode_s,
            row.decode_s,
        )
        bar.update(1)
