"""Long videos in segments: consecutive frame ranges, each coded by its own network, all in one .cam file.

Each segment is a task (``encode_segment``) that receives where the frames are and its frame range,
never the frames, so that it can run on any worker of an engine (``camcodec.engine``). A task encodes
its frames into a .cam file of their own in a work folder, with checkpoints beside it: a task whose
worker dies resumes from its checkpoint, and a finished segment is never encoded again. When every
segment is done, the driver joins them into the output file and measures what it decodes to.

The network of each segment is sized from the same rate settings as a one-segment encode (parameters
per pixel x frame, or the target bpp); the same seed gives the same bytes whichever worker ran what,
when the workers use the same number of torch threads on the same kind of device.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import bitstream
from bitstream import files
from camcodec.checkpoint import fingerprint
from camcodec.config import EncodeConfig
from camcodec.device import resolve_device
from camcodec.encoder import Encoder, EncodeResult, EncodeStats, check_file, checked_output
from camcodec.engine import DaskEngine, Engine
from camcodec.errors import InputError
from camcodec.media import Clip, read_video
from camcodec.quantize import bits_for_levels

log = logging.getLogger(__name__)

#: A clip longer than this is encoded in segments of this many frames when no segmentation is asked
#: for: the length of the UVG sequences, which published NeRV results code as one network each.
DEFAULT_SEGMENT_FRAMES = 600
MANIFEST = "manifest.json"


def segment_ranges(num_frames: int, segment_frames: int | None = None, segments: int | None = None) -> list[range]:
    """Consecutive frame ranges covering ``num_frames``: of ``segment_frames`` each (the last may be
    shorter), or ``segments`` of near-equal length; by default one, or as few near-equal ones of at most
    ``DEFAULT_SEGMENT_FRAMES`` as cover the clip (610 frames: 305 + 305, not 600 + a 10-frame segment, whose
    network would have few frames to spread its fixed costs over)."""
    if segment_frames is not None and segments is not None:
        raise InputError("--segment-frames and --segments both set the segments: give one of them")
    for value, name in ((segment_frames, "--segment-frames"), (segments, "--segments")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
    if segment_frames is not None:
        return [range(first, min(first + segment_frames, num_frames)) for first in range(0, num_frames, segment_frames)]
    count = min(segments or -(-num_frames // DEFAULT_SEGMENT_FRAMES), num_frames)
    bounds = [round(i * num_frames / count) for i in range(count + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class FrameSource:
    """Where a task reads its frames: a video file with the read options the whole clip was read with,
    or a .npy file of the frames (for sources that are not files: arrays, standard input)."""

    path: str
    start: int = 0
    scale: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    fps: Fraction | None = None
    # The clip's own description, for a .npy source:
    pix_fmt: str = "rgb24"
    color_matrix: str = "rgb"

    def read(self, frames: range) -> Clip:
        if self.path.endswith(".npy"):
            data = np.load(self.path, mmap_mode="r")[frames.start : frames.stop]
            fps = self.fps or Fraction(25)
            return Clip(np.array(data), fps, self.pix_fmt, self.color_matrix, self.path)
        return read_video(
            self.path,
            start=self.start + frames.start,
            max_frames=len(frames),
            scale=self.scale,
            size=self.size,
            fps=self.fps,
        )


@dataclass(frozen=True)
class SegmentTask:
    """One segment's encode, as a worker receives it."""

    index: int
    frames: range
    source: FrameSource
    config: EncodeConfig
    path: str  # the segment's own .cam file in the work folder
    checkpoint_interval: float | None
    threads: int | None  # torch threads on the worker (None: leave the worker's setting)


def encode_segment(task: SegmentTask) -> dict:
    """Encode one segment into its own file (run on a worker); its stats, also saved beside the file.

    A segment whose stats file exists is finished and is not encoded again; a checkpoint left by a
    worker that died is resumed.
    """
    stats_path = Path(task.path).with_suffix(".json")
    if stats_path.exists():
        return json.loads(stats_path.read_text())
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    config = replace(task.config, device=_worker_device(task.config.device))
    clip = task.source.read(task.frames)
    if clip.num_frames != len(task.frames):
        raise InputError(f"{task.source.path}: frames {task.frames.start}..{task.frames.stop - 1} are not all there")
    encoder = Encoder(config, checkpoint_interval=task.checkpoint_interval)  # a dead worker's checkpoint resumes
    stats = encoder.encode(clip, task.path).stats.to_dict()
    files.write_atomic(stats_path, json.dumps(stats).encode())
    return stats


def _worker_device(device: str) -> str:
    """On a worker of a local Dask cluster on a machine with GPUs, worker i takes GPU i (modulo their
    number): one worker per GPU, each pinned to its own."""
    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    return f"cuda:{name % torch.cuda.device_count()}" if isinstance(name, int) else device


def encode_in_segments(
    clip: Clip,
    source: FrameSource | None,
    out_path: str | os.PathLike,
    config: EncodeConfig,
    ranges: list[range],
    engine: Engine,
    *,
    work_dir: str | os.PathLike | None = None,
    progress: bool = False,
    checkpoint_interval: float | None = None,
    threads: int | None = None,
    overwrite: bool = True,
) -> EncodeResult:
    """Encode ``clip`` as one segment per range on ``engine`` and join them into ``out_path``.

    ``source`` says where workers read the frames (None: the frames are saved to the work folder for
    them); ``work_dir`` (default ``OUT.parts``, shared storage on a cluster) holds the segments'
    files and checkpoints until the output is written. ``overwrite`` False refuses an existing output.
    """
    start = time.perf_counter()
    info = checked_output(clip, out_path, overwrite)
    if not _remote(engine):
        resolve_device(config.device)  # a GPU asked of a machine without one fails here, before any work
    resources = _resources(engine, config)
    work = Path(work_dir) if work_dir is not None else Path(f"{os.fspath(out_path)}.parts")
    _claim(work, fingerprint(clip.frames, asdict(config), {"ranges": [[r.start, r.stop] for r in ranges]}))
    if source is None:
        source = _spill(clip, work)
    tasks = [
        SegmentTask(i, frames, source, config, str(work / f"segment-{i:04d}.cam"), checkpoint_interval, threads)
        for i, frames in enumerate(ranges)
    ]
    key = work.resolve().as_posix()
    futures = [
        engine.submit(encode_segment, task, key=f"camcodec-segment-{key}-{task.index}", resources=resources)
        for task in tasks
    ]
    results: dict[str, dict] = {}
    with tqdm(total=len(tasks), desc="segments", unit="segment", disable=not progress, dynamic_ncols=True) as bar:
        for future in engine.as_completed(futures):
            stats = future.result()
            results[stats["path"]] = stats
            bar.update(1)
    container = join_segments(info, [(task.frames, task.path) for task in tasks])
    file_bytes = bitstream.write_file(out_path, container)
    # Measured here on the driver's device (on a cluster the workers' device may not be this machine's).
    decoding_device = "auto" if _remote(engine) else config.device
    coded, psnr = check_file(out_path, clip, decoding_device)
    segment_stats = [results[task.path] for task in tasks]
    levels = max(s["levels"] for s in segment_stats)
    stats = EncodeStats(
        path=os.fspath(out_path),
        frames=clip.num_frames,
        width=clip.width,
        height=clip.height,
        parameters=sum(s["parameters"] for s in segment_stats),
        file_bytes=file_bytes,
        bpp=8 * file_bytes / (clip.width * clip.height * clip.num_frames),
        psnr=psnr,
        bits=bits_for_levels(levels),
        levels=levels,
        prune=max(s["prune"] for s in segment_stats),
        target_bpp=config.target_bpp,
        asked_bpp=sum(s["asked_bpp"] * s["frames"] for s in segment_stats) / clip.num_frames,
        phases=[{"segment": i, **phase} for i, s in enumerate(segment_stats) for phase in s["phases"]],
        encode_seconds=time.perf_counter() - start,
        device=",".join(sorted({s["device"] for s in segment_stats})),
        segments=len(ranges),
    )
    _release(work, tasks)
    log.info("encoded %s", stats.summary())
    return EncodeResult(stats, coded, decoding_device)


def join_segments(info: bitstream.VideoInfo, parts: list[tuple[range, str]]) -> bitstream.Container:
    """One container of the segments' own files, each placed at its frames."""
    segments = []
    for frames, path in parts:
        (segment,) = bitstream.read_file(path).segments
        segments.append(bitstream.Segment(frames.start, len(frames), segment.model_config, segment.tensors))
    return bitstream.Container(info, segments)


def _resources(engine: Engine, config: EncodeConfig) -> dict[str, float] | None:
    """What each task asks of a cluster's worker: a GPU when the encode asks for CUDA; refused at once
    when no worker has one, instead of waiting for one forever."""
    if not _remote(engine) or not config.device.startswith("cuda"):
        return None
    assert isinstance(engine, DaskEngine)
    if not any(r.get("GPU", 0) >= 1 for r in engine.worker_resources()):
        raise InputError(
            f"device {config.device!r}: no worker of the cluster has a GPU (start them with dask worker --resources GPU=1)"
        )
    return {"GPU": 1}


def _remote(engine: Engine) -> bool:
    """Tasks run on a cluster's workers, not on this machine."""
    return isinstance(engine, DaskEngine) and engine.cluster is None


def _claim(work: Path, identity: str) -> None:
    """Create the work folder, or take up the one an interrupted run of this same encode left; a folder
    of another encode (other frames or options) is refused, so that none of its segments is reused."""
    manifest = work / MANIFEST
    if manifest.exists():
        if json.loads(manifest.read_text()).get("encode") != identity:
            raise InputError(f"{work}: holds the segments of another encode; remove it or name another --work-dir")
        log.info("%s: continuing the segments found there", work)
        return
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{work}: cannot create the work folder ({exc.strerror or exc})") from None
    files.write_atomic(manifest, json.dumps({"encode": identity}).encode())


def _spill(clip: Clip, work: Path) -> FrameSource:
    """Frames that are not in a file (an array, standard input) saved for the workers to read."""
    path = work / "frames.npy"
    if not path.exists():
        with files.atomic_open(path) as handle:
            np.save(handle, clip.frames)
    return FrameSource(str(path), fps=clip.fps, pix_fmt=clip.pix_fmt, color_matrix=clip.color_matrix)


def _release(work: Path, tasks: list[SegmentTask]) -> None:
    """Remove what the segments left in the work folder, and the folder when nothing else is in it."""
    for task in tasks:
        for path in (Path(task.path), Path(task.path).with_suffix(".json")):
            path.unlink(missing_ok=True)
    for name in (MANIFEST, "frames.npy"):
        (work / name).unlink(missing_ok=True)
    try:
        work.rmdir()
    except OSError:
        log.info("%s: left in place (it holds other files)", work)
