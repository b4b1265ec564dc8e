"""camcodec encode: compress a video into a .cam file.

The encode options are ``EncodeConfig``'s fields: each field's flag, help and group come from its
declaration (``camcodec.config.option``), and the defaults shown are the config's, preset's and rung's.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import Field, fields
from functools import partial
from typing import Any

from camcodec import api
from camcodec.cli.args import (
    add_frames_args,
    add_overwrite_args,
    argument,
    fps_arg,
    positive_int,
    size_arg,
    typed_arg,
)
from camcodec.config import DEFAULT_PRESET, DEFAULT_RATE, PRESETS, RATES, RUNG_BPP, EncodeConfig, parse_options
from camcodec.errors import InputError
from camcodec.segments import DEFAULT_SEGMENT_FRAMES

HELP = "compress a video (file, Y4M, raw YUV with --size, PNG folder, or Y4M on stdin) into a .cam file"

GROUPS = {
    "rate": "rate (the ladder's rung, a target, or by hand)",
    "training": "training",
    "model": "network",
    "device": "device",
}


def setup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="source video; - reads Y4M from standard input")
    parser.add_argument("-o", "--output", required=True, help="the .cam file to write")
    add_overwrite_args(parser)
    efforts = ", ".join(f"{name} {values['epochs']} passes" for name, values in PRESETS.items())
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help=f"training effort: {efforts} over the frames (default {DEFAULT_PRESET}); --time sets it in time instead",
    )
    rungs = ", ".join(f"{name} ~{bpp:g}" for name, bpp in RUNG_BPP.items())
    parser.add_argument(
        "--rate", choices=list(RATES), help=f"rate ladder rung, in bpp: {rungs} (default {DEFAULT_RATE})"
    )
    add_frames_args(parser, "encode")
    parser.add_argument("--scale", type=size_arg, metavar="WxH", help="resize frames to WxH before encoding")
    parser.add_argument("--size", type=size_arg, metavar="WxH", help="frame size of a raw .yuv source")
    parser.add_argument("--fps", type=fps_arg, help="frame rate of a raw .yuv or PNG source (default 25)")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from OUT.ckpt when an interrupted encode of the same source and options left one "
        "(the default; --no-resume starts again and replaces it)",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="save OUT.ckpt this often while training (default 60; removed when done)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no status lines (warnings stay)"
    )
    scale_out = parser.add_argument_group("segments and scale-out (Dask)")
    scale_out.add_argument(
        "--segment-frames",
        type=positive_int,
        metavar="N",
        help=f"code consecutive segments of N frames, each its own network (default: one segment, or "
        f"near-equal segments of at most {DEFAULT_SEGMENT_FRAMES} frames for a longer clip)",
    )
    scale_out.add_argument("--segments", type=positive_int, metavar="K", help="code K segments of near-equal length")
    scale_out.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="encode segments in parallel on a local Dask cluster of N processes (one torch thread each, "
        "or camcodec --threads T)",
    )
    scale_out.add_argument(
        "--cluster", metavar="ADDRESS", help="encode segments on the Dask scheduler at ADDRESS (tcp://host:8786)"
    )
    scale_out.add_argument(
        "--work-dir",
        metavar="DIR",
        help="the segments' files and checkpoints (default OUT.parts; shared storage on a cluster); an "
        "interrupted encode continues from it",
    )
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    hints = typing.get_type_hints(EncodeConfig)
    for item in fields(EncodeConfig):
        _add_config_option(groups[item.metadata["group"]], item, hints[item.name])


def _add_config_option(group: argparse._ArgumentGroup, item: Field, hint: Any) -> None:
    """One ``EncodeConfig`` field as a flag whose value, when given, overrides the preset and the rung."""
    meta = item.metadata
    flag = meta["flag"] or "--" + item.name.replace("_", "-")
    default = _default_text(item)
    text = f"{meta['help']} ({default})" if default else meta["help"]
    if hint is bool:
        group.add_argument(flag, dest=item.name, action="store_const", const=not item.default, help=meta["help"])
        return
    kind: Callable[[str], Any]
    if meta["parse"] is not None:
        kind = partial(argument, meta["parse"])
    else:
        kind = str if item.name == "model_params" else typed_arg(_value_type(hint))
    group.add_argument(flag, dest=item.name, type=kind, metavar=meta["metavar"], help=text)


def _value_type(hint: Any) -> type:
    """int for ``int`` and ``int | None``, and so on."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return options[0]


def _default_text(item: Field) -> str | None:
    """'default 6', or the values the presets and rungs set, where they set this field; None for a field
    that is unset by default."""
    by_preset = [f"{name} {values[item.name]}" for name, values in PRESETS.items() if item.name in values]
    by_rate = [f"{name} {values[item.name]}" for name, values in RATES.items() if item.name in values]
    if by_preset:
        return f"default by --preset: {', '.join(by_preset)}"
    if by_rate:
        return f"default by --rate: {', '.join(by_rate)}; without it {item.default}"
    return f"default {item.default}" if item.default not in (None, ()) else None


def run(args: argparse.Namespace) -> int:
    if args.output == "-":
        raise InputError("-o -: a .cam file is written to a file, not to standard output; name one")
    options = {item.name: getattr(args, item.name) for item in fields(EncodeConfig)}
    if options["model_params"]:
        arch = options["arch"] or EncodeConfig.arch
        parsed = parse_options([f"arch={arch}", *options["model_params"].split(":")])
        misplaced = sorted(set(parsed) - {"arch", "model_params"})
        if misplaced:
            raise InputError(f"--model-params: {misplaced[0]} is an encode option, not a model field")
        options["model_params"] = parsed["model_params"]
    stats = api.encode(
        sys.stdin.buffer if args.input == "-" else args.input,
        args.output,
        preset=args.preset,
        rate=args.rate,
        frames=args.frames,
        start=args.start,
        scale=args.scale,
        size=args.size,
        fps=args.fps,
        progress=not args.quiet,
        checkpoint_interval=args.checkpoint_interval,
        resume=args.resume,
        overwrite=args.overwrite,
        segment_frames=args.segment_frames,
        segments=args.segments,
        workers=args.workers,
        cluster=args.cluster,
        work_dir=args.work_dir,
        worker_threads=getattr(args, "threads", None) or 1,
        **options,
    )
    print(json.dumps(stats.to_dict()) if args.json else f"{stats.path}: {stats.summary()}")
    return 0
