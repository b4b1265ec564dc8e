"""The rate-distortion run: every codec at every rate point on every sequence, then the reports.

>>> run_rd(RDConfig(sources=["clip.mp4"], out="rd", codecs=["x264", "x265"]))   # doctest: +SKIP

For each sequence the frames are read once (its frame limit and scale, the same for every codec); each pending
(codec, point) is encoded, decoded and measured through ``eval.metrics.measure``, and the row is saved
at once, so a later run with the same output folder skips it. Encoded streams are kept in
``OUT/streams/`` with ``keep_streams``; otherwise each run writes them to a folder of its own
(``OUT/.streams-*``), deleted when the sequence is done, so that runs sharing ``OUT`` never remove
each other's files.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from camcodec.engine import Engine, make_engine
from camcodec.errors import InputError, OutputError
from camcodec.media import Clip, SourceFrame, iter_source_frames
from eval.codecs import (
    RGB_SOURCE_COLOR,
    CamcodecCodec,
    Codec,
    ConventionalCodec,
    Point,
    make_codec,
    seed_base,
    with_seeds,
)
from eval.datasets import Sequence, resolve_sources
from eval.metrics import Quality, QualityMeter
from eval.provenance import provenance
from eval.report import write_reports
from eval.results import ResultStore, Row

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CODECS = ("camcodec", "x264", "x265")
DEFAULT_ANCHOR = "x265"
ALL_CONVENTIONAL = "*"  # key of ``points`` for every codec but camcodec
#: Frames measured at once when a sequence is streamed: the metrics' float64 and MS-SSIM temporaries of
#: 8 frames of 1080p took ~3 GB (eval rd --codecs x265 on 120 frames of 1080p peaked at 4.1 GB with 8).
STREAM_CHUNK_FRAMES = 2


@dataclass
class RDConfig:
    """What to run. ``points`` maps a codec name (or ``"*"``: every conventional codec) to its rate points."""

    sources: list[str]
    out: str | os.PathLike[str]
    codecs: list[str] = field(default_factory=lambda: list(DEFAULT_CODECS))
    anchor: str | None = None  # default: x265 when run, else the first codec
    points: dict[str, tuple[Point, ...]] = field(default_factory=dict)
    # How sequences are read, where a set file does not say for its own:
    frames: int | None = None  # the first N frames
    scale: tuple[int, int] | None = None  # resized to (W, H)
    size: tuple[int, int] | None = None  # raw I420 sources without WxH in their name
    fps: Fraction | None = None  # raw and PNG sources
    camcodec_preset: str | None = None
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # camcodec under other options
    steps: int | None = None
    seeds: int = 1  # camcodec and each variant with seeds 0 .. seeds - 1 (``with_seeds``)
    device: str = "auto"
    keep_streams: bool = False
    progress: bool = False
    workers: int | None = None  # points in parallel on a local Dask cluster of this many processes
    cluster: str | None = None  # ... or on the Dask scheduler at this address


@dataclass(frozen=True)
class RDReport:
    """What a run produced."""

    folder: Path
    measured: int  # points measured in this run
    skipped: int  # points found in the folder
    markdown: str  # the text of bdrate.md


def _codecs(config: RDConfig) -> list[Codec]:
    if isinstance(config.seeds, bool) or not isinstance(config.seeds, int) or config.seeds < 1:
        raise InputError(f"--seeds must be a whole number >= 1, got {config.seeds!r}")
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
        codecs.extend(with_seeds(codec, config.seeds) if isinstance(codec, CamcodecCodec) else [codec])
    if not codecs:
        raise InputError("no codecs given")
    return codecs


def _points(codec: Codec, points: dict[str, tuple[Point, ...]]) -> tuple[Point, ...]:
    if seed_base(codec.name) in points:
        values = points[seed_base(codec.name)]  # a seed run takes its codec's points
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


def _setup(sequence: Sequence) -> dict[str, object]:
    return {
        "source": sequence.source,
        "max_frames": sequence.max_frames,
        "scale": list(sequence.scale) if sequence.scale else None,
        "uvg": sequence.uvg,
    }


def run_rd(config: RDConfig) -> RDReport:
    """Run every pending point, then write results.csv/json, bdrate.md, rd_psnr.png and rd_msssim.png."""
    codecs = _codecs(config)
    names = [c.name for c in codecs]
    store = ResultStore(config.out)  # what earlier runs left in the folder, if it exists
    stored = {row.codec for row in store.rows.values()}
    if config.anchor:
        anchor = make_codec(config.anchor, variants=config.variants).name
    else:  # x265 whenever its rows are in the table, whichever codecs this run adds
        anchor = DEFAULT_ANCHOR if DEFAULT_ANCHOR in {*names, *stored} else names[0]
    if anchor not in names and anchor not in stored:
        raise InputError(f"anchor {anchor!r} is neither among the codecs run ({', '.join(names)}) nor in {config.out}")
    unknown = set(config.points) - set(names) - {ALL_CONVENTIONAL, "camcodec"}
    if unknown:
        raise InputError(f"--points names codecs not run: {', '.join(sorted(unknown))}")
    plan = [(codec, _points(codec, config.points)) for codec in codecs]
    sequences = resolve_sources(config.sources, config.size, config.fps, config.frames, config.scale)

    folder = Path(config.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    for sequence in sequences:
        store.check_sequence(sequence.name, _setup(sequence))

    jobs = [(sequence, codec, value) for sequence in sequences for codec, values in plan for value in values]
    threads = _task_threads(config)
    expected = {codec.name: provenance(codec.facts(threads)) for codec, _ in plan}
    pending = [
        (sequence, codec, value)
        for sequence, codec, value in jobs
        if not store.done(
            sequence.name, codec.name, codec.point_label(value), codec.settings(value), expected[codec.name]
        )
    ]
    skipped = len(jobs) - len(pending)
    if skipped:
        log.info("%d of %d points already in %s; skipping them", skipped, len(jobs), folder)

    engine = make_engine(config.workers, config.cluster)
    try:
        _run_pending(pending, config, store, engine)
    finally:
        engine.close()
        _read.cache_clear()  # the last sequence's frames, held for the points that followed it here
    store.save()
    labels = {**{name: _stored_label(name) for name in stored}, **{c.name: c.label for c in codecs}}
    run = {codec.name: codec for codec in codecs}

    def same_code(row: Row) -> bool:
        """A row of a codec this run measures joins its curve only if this run would have made it: the same
        settings at its rate point and the same provenance. Other rows stay in results.csv."""
        codec = run.get(row.codec)
        return codec is None or (row.settings == codec.settings(row.value) and row.provenance == expected[row.codec])

    current = store.only(same_code)
    left_out = len(store.rows) - len(current.rows)
    if left_out:
        log.warning(
            "%d rows in %s were made with other settings or code than this run's; left out of bdrate.md and the "
            "plots (they stay in results.csv)",
            left_out,
            folder,
        )
    markdown = write_reports(current, anchor, order=names, labels=labels)
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


@dataclass(frozen=True)
class PointTask:
    """One (sequence, codec, rate point) to encode, decode and measure, as a worker receives it."""

    sequence: Sequence
    codec: Codec
    value: Point
    stream: str  # where the coded stream goes
    threads: int | None  # torch threads on a worker (None: leave the process's setting)


def _run_pending(
    pending: list[tuple[Sequence, Codec, Point]], config: RDConfig, store: ResultStore, engine: Engine
) -> None:
    """Every pending point as a task on ``engine``; each row is saved as soon as its task is done."""
    streams = {}
    for sequence in dict.fromkeys(job[0] for job in pending):
        if config.keep_streams:
            streams[sequence.name] = Path(config.out) / "streams" / _safe(sequence.name)
            streams[sequence.name].mkdir(parents=True, exist_ok=True)
        else:
            streams[sequence.name] = Path(tempfile.mkdtemp(prefix=".streams-", dir=config.out))
    threads = _task_threads(config)
    tasks = [
        PointTask(
            sequence,
            codec,
            value,
            str(
                streams[sequence.name] / f"{_safe(codec.name)}_{_safe(codec.point_label(value))}{codec.stream_suffix()}"
            ),
            threads,
        )
        for sequence, codec, value in pending
    ]
    bar = tqdm(total=len(tasks), desc="rd", unit="point", disable=not config.progress, dynamic_ncols=True)
    try:
        futures = [engine.submit(run_point, task, key=f"camcodec-rd-{task.stream}") for task in tasks]
        for future in engine.as_completed(futures):
            row, fps = future.result()
            store.note_sequence(row.sequence, frames=row.frames, width=row.width, height=row.height, fps=fps)
            store.add(row)
            bar.set_description(f"{row.sequence} {row.codec} {row.point}")
            bar.update(1)
    finally:
        bar.close()
        if not config.keep_streams:
            for folder in streams.values():
                shutil.rmtree(folder, ignore_errors=True)
    for name in streams:
        _warn_same_size(store, name)


def run_point(task: PointTask) -> tuple[Row, str]:
    """Encode, decode and measure one point (run on a worker); (its row, the sequence's frame rate).

    A conventional codec gets the sequence a frame at a time and is measured a few frames at a time, so
    that its memory does not grow with the sequence (UVG's 600 frames of 1080p are 3.7 GB an array);
    camcodec trains on all the frames at once and gets them whole; its file is measured as it decodes."""
    if task.threads is not None:
        import torch

        torch.set_num_threads(task.threads)
    codec, value = task.codec, task.value
    if isinstance(codec, ConventionalCodec):
        fps = task.sequence.frame_rate()
        measured = _stream_point(task.sequence, codec, value, fps, Path(task.stream))
    else:
        assert isinstance(codec, CamcodecCodec)
        clip = _read(task.sequence)
        fps = clip.fps
        coded_bytes, encode_s = codec.encode_file(clip.frames, value, Path(task.stream))
        clock = _Clock()
        decoded = clock.timed(codec.decoded_frames(Path(task.stream)))
        meter = _measure(
            task.sequence, (SourceFrame(rgb, None, RGB_SOURCE_COLOR) for rgb in decoded), Path(task.stream)
        )
        measured = Measured(clip.frames.shape[:3], coded_bytes, encode_s, clock.seconds, meter.result())
    (num_frames, height, width), quality = measured.shape, measured.quality
    row = Row(
        sequence=task.sequence.name,
        codec=codec.name,
        point=codec.point_label(value),
        value=value,
        frames=num_frames,
        width=width,
        height=height,
        bytes=measured.bytes,
        bpp=8 * measured.bytes / (width * height * num_frames),
        psnr_rgb=quality.psnr_rgb,
        psnr_yuv=quality.psnr_yuv,
        ms_ssim=quality.ms_ssim,
        encode_s=measured.encode_s,
        decode_s=measured.decode_s,
        settings=codec.settings(value),
        provenance=provenance(codec.facts(task.threads)),
    )
    log.info(
        "%s %s %s: %.4f bpp, PSNR %.2f dB (YUV %.2f), MS-SSIM %.4f, encode %.2f s, decode %.2f s",
        row.sequence,
        row.codec,
        row.point,
        row.bpp,
        row.psnr_rgb,
        row.psnr_yuv,
        row.ms_ssim,
        row.encode_s,
        row.decode_s,
    )
    return row, str(fps)


@dataclass
class Measured:
    """A point's shape (frames, height, width), coded bytes, times and quality."""

    shape: tuple[int, ...]
    bytes: int
    encode_s: float
    decode_s: float
    quality: Quality


def _stream_point(sequence: Sequence, codec: ConventionalCodec, value: Point, fps: Fraction, path: Path) -> Measured:
    """Encode the sequence as its frames come, then decode the stream beside a second read of the sequence,
    measuring ``STREAM_CHUNK_FRAMES`` frames at a time."""
    frames = sequence.source_frames()
    first = next(frames)
    height, width = first.rgb.shape[:2]
    coded_bytes, encode_s = codec.encode_stream(itertools.chain([first], frames), (width, height), fps, value, path)
    clock = _Clock()
    meter = _measure(sequence, clock.timed(iter_source_frames(path)), path)
    return Measured((meter.frames, height, width), coded_bytes, encode_s, clock.seconds, meter.result())


def _measure(sequence: Sequence, decoded: Iterator[SourceFrame], path: Path) -> QualityMeter:
    """Score ``decoded`` against a fresh read of the sequence, ``STREAM_CHUNK_FRAMES`` frames at a time."""
    meter = QualityMeter()
    for reference in _chunks(sequence.source_frames(), STREAM_CHUNK_FRAMES):
        chunk = list(itertools.islice(decoded, len(reference)))
        if len(chunk) != len(reference):
            raise OutputError(f"{path}: decoded {meter.frames + len(chunk)} frames of {sequence.name}'s more")
        meter.add(reference, chunk)
    if next(decoded, None) is not None:
        raise OutputError(f"{path}: decoded more frames than {sequence.name} has ({meter.frames})")
    return meter


class _Clock:
    """Seconds spent inside an iterator's ``next`` (the decoder's time of a streamed decode)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, items: Iterator[T]) -> Iterator[T]:
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item


def _chunks(frames: Iterator[SourceFrame], size: int) -> Iterator[list[SourceFrame]]:
    while chunk := list(itertools.islice(frames, size)):
        yield chunk


def _stored_label(name: str) -> str:
    """The label of a codec whose rows an earlier run left: a conventional codec's name says all of its
    settings; camcodec's training and a variant's options are not known here, so they keep their name."""
    try:
        codec = make_codec(name)
    except InputError:
        return name
    return codec.label if isinstance(codec, ConventionalCodec) else name


def _task_threads(config: RDConfig) -> int | None:
    """torch threads of each point: one on Dask workers, the process's own in a serial run."""
    return 1 if config.workers is not None or config.cluster is not None else None


@functools.lru_cache(maxsize=1)
def _read(sequence: Sequence) -> Clip:
    """A sequence's frames, read once for the points that follow one another in a process."""
    return sequence.read()
