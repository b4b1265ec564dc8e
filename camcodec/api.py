"""The two front doors: ``encode`` a video to a file, ``decode`` a file to frames."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, BinaryIO

import numpy as np

from camcodec.config import DEFAULT_PRESET, resolve_config
from camcodec.decoder import decode
from camcodec.encoder import Encoder, EncodeStats, clip_from_array
from camcodec.engine import make_engine
from camcodec.media import Clip, read_video
from camcodec.segments import FrameSource, encode_in_segments, segment_ranges

Source = str | os.PathLike | BinaryIO | np.ndarray | Clip


def load_source(
    source: Source,
    *,
    max_frames: int | None = None,
    start: int = 0,
    scale: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
    fps: Fraction | None = None,
) -> Clip:
    """A clip from a path (any input kind), a binary stream (Y4M on standard input), a uint8 (T, H, W, 3)
    array, or a clip as it is."""
    if isinstance(source, Clip):
        return source
    if isinstance(source, np.ndarray):
        frames = source[start : start + max_frames if max_frames else None]
        return clip_from_array(frames, fps or Fraction(25))
    return read_video(source, max_frames=max_frames, start=start, size=size, fps=fps, scale=scale)


def encode(
    source: Source,
    out_path: str | os.PathLike,
    *,
    preset: str = DEFAULT_PRESET,
    rate: str | None = None,
    max_frames: int | None = None,
    start: int = 0,
    scale: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
    fps: Fraction | None = None,
    progress: bool = False,
    checkpoint_interval: float | None = None,
    resume: bool = False,
    segment_frames: int | None = None,
    segments: int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    work_dir: str | os.PathLike | None = None,
    worker_threads: int | None = 1,
    **options: Any,
) -> EncodeStats:
    """Encode ``source`` into the .cam file ``out_path``.

    ``preset`` sets the training effort, ``rate`` a rung of the rate ladder (xs ... xl); ``options``
    are fields of ``EncodeConfig`` (target_bpp, steps, bits, prune, cam, device, seed, ...) applied over
    both; None leaves their value. ``checkpoint_interval`` (seconds) saves ``out_path + ".ckpt"`` while
    training; ``resume`` continues an interrupted encode from it.

    Segments (``camcodec.segments``): ``segment_frames`` or ``segments`` split the frames into
    consecutive segments, each its own network; a clip longer than ``DEFAULT_SEGMENT_FRAMES`` is split
    anyway. ``workers`` runs them on a local Dask cluster of that many processes (``worker_threads``
    torch threads each), ``cluster`` on the Dask scheduler at that address; ``work_dir`` holds their
    files and checkpoints (an interrupted segmented encode continues from it when run again).
    """
    config = resolve_config(preset, rate, **options)
    clip = load_source(source, max_frames=max_frames, start=start, scale=scale, size=size, fps=fps)
    ranges = segment_ranges(clip.num_frames, segment_frames, segments)
    if len(ranges) == 1:
        encoder = Encoder(config, progress=progress, checkpoint_interval=checkpoint_interval, resume=resume)
        return encoder.encode(clip, out_path).stats
    if isinstance(source, (str, os.PathLike)):
        frames_at = FrameSource(os.fspath(source), start, scale, size, fps)
    else:
        frames_at = None  # saved to the work folder for the workers
    engine = make_engine(workers, cluster)
    try:
        result = encode_in_segments(
            clip,
            frames_at,
            out_path,
            config,
            ranges,
            engine,
            work_dir=work_dir,
            progress=progress,
            checkpoint_interval=checkpoint_interval,
            threads=worker_threads if workers is not None or cluster is not None else None,
        )
    finally:
        engine.close()
    return result.stats


__all__ = ["decode", "encode", "load_source"]
