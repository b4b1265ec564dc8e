"""The two front doors: ``encode`` a video to a file, ``decode`` a file to frames."""

from __future__ import annotations

import os
from dataclasses import replace
from fractions import Fraction
from typing import Any, BinaryIO

import numpy as np

from camcodec.config import DEFAULT_PRESET, resolve_config
from camcodec.decoder import decode
from camcodec.encoder import Encoder, EncodeStats, clip_from_array
from camcodec.engine import make_engine
from camcodec.errors import InputError
from camcodec.media import Clip, read_video
from camcodec.segments import FrameSource, encode_in_segments, segment_ranges
from camcodec.values import parse_fps, parse_frames, parse_size

Source = str | os.PathLike | BinaryIO | np.ndarray | Clip


def load_source(
    source: Source,
    *,
    max_frames: int | None = None,
    start: int = 0,
    scale: str | tuple[int, int] | None = None,
    size: str | tuple[int, int] | None = None,
    fps: str | float | Fraction | None = None,
) -> Clip:
    """A clip from a path (any input kind), a binary stream (Y4M on standard input), a uint8 (T, H, W, 3)
    array, or a clip as it is."""
    if isinstance(source, Clip):
        return source
    if isinstance(source, np.ndarray):
        if scale is not None or size is not None:
            raise InputError("scale= and size= are for video files; resize an array of frames before encoding it")
        frames = source[start : start + max_frames if max_frames else None]
        return clip_from_array(frames, parse_fps(fps) if fps is not None else Fraction(25))
    return read_video(source, max_frames=max_frames, start=start, size=size, fps=fps, scale=scale)


def encode(
    source: Source,
    out_path: str | os.PathLike,
    *,
    preset: str = DEFAULT_PRESET,
    rate: str | None = None,
    frames: int | str | slice | None = None,
    start: int = 0,
    scale: str | tuple[int, int] | None = None,
    size: str | tuple[int, int] | None = None,
    fps: str | float | Fraction | None = None,
    progress: bool = False,
    checkpoint_interval: float | None = None,
    resume: bool = True,
    overwrite: bool = True,
    segment_frames: int | None = None,
    segments: int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    work_dir: str | os.PathLike | None = None,
    worker_threads: int | None = 1,
    **options: Any,
) -> EncodeStats:
    """Encode ``source`` into the .cam file ``out_path``; the names are the command's (``camcodec encode``).

    ``frames``: N frames from ``start``, or a range ``"A:B"`` (a slice) whose frames must all exist;
    ``scale``/``size``: ``"WxH"`` or ``(W, H)``; ``fps``: ``"30000/1001"`` or a number. ``preset`` sets
    the training effort, ``rate`` a rung of the rate ladder (xs ... xl); ``options`` are fields of
    ``EncodeConfig`` by name or by flag (``bpp=0.05`` or ``target_bpp=0.05``, ``time="20m"``, steps,
    bits, device, seed, ...) applied over both; None leaves their value. ``checkpoint_interval``
    (seconds) saves ``out_path + ".ckpt"`` while training; ``resume``: an interrupted encode's checkpoint
    is continued from (False: started again); ``overwrite`` False refuses an existing ``out_path``.

    Segments (``camcodec.segments``): ``segment_frames`` or ``segments`` split the frames into
    consecutive segments, each its own network; a clip longer than ``DEFAULT_SEGMENT_FRAMES`` is split
    anyway, into near-equal segments no longer than that. ``workers`` runs them on a local Dask cluster of
    that many processes (``worker_threads`` torch threads each), ``cluster`` on the Dask scheduler at that
    address; ``work_dir`` holds their files and checkpoints (an interrupted segmented encode continues from it
    when run again). A ``time`` budget is shared among the segments by the frames each codes and the workers
    that run them.
    """
    if "max_frames" in options:  # the name before frames=, kept for callers written against it
        frames = options.pop("max_frames") if frames is None else frames
    config = resolve_config(preset, rate, **options)
    chosen = parse_frames(frames, start)
    clip = load_source(source, max_frames=chosen.count, start=chosen.start, scale=scale, size=size, fps=fps)
    if chosen.exact and chosen.count is not None and clip.num_frames < chosen.count:
        chosen.check_within(chosen.start + clip.num_frames, clip.source)
    ranges = segment_ranges(clip.num_frames, segment_frames, segments)
    if len(ranges) == 1:
        encoder = Encoder(
            config, progress=progress, checkpoint_interval=checkpoint_interval, resume=resume, overwrite=overwrite
        )
        return encoder.encode(clip, out_path).stats
    if config.time_budget is not None:
        if cluster is not None:
            raise InputError("--time with --cluster: the cluster's workers are unknown here; give --steps instead")
        parallel = min(workers or 1, len(ranges))
        config = replace(config, time_budget=config.time_budget * parallel / len(ranges))
    if isinstance(source, (str, os.PathLike)):
        frames_at = FrameSource(
            os.fspath(source), chosen.start, _size_or_none(scale), _size_or_none(size), _fps_or_none(fps)
        )
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
            overwrite=overwrite,
        )
    finally:
        engine.close()
    return result.stats


def _size_or_none(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    return None if value is None else parse_size(value)


def _fps_or_none(value: str | float | Fraction | None) -> Fraction | None:
    return None if value is None else parse_fps(value)


__all__ = ["decode", "encode", "load_source"]
