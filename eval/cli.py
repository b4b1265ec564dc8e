"""``camcodec eval``: the harness's commands (``rd``), plugged into the camcodec CLI by entry point.

The camcodec console script finds this module through the ``camcodec.commands`` entry-point group and
calls ``setup_args(parser)`` and ``run(args)``; ``python -m eval`` goes through the same command
(``main(argv)``). The harness's own heavy parts (PyAV encoders, matplotlib) load when a command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from camcodec.cli.args import fps_arg, positive_int, size_arg
from camcodec.device import DEVICE_NAMES

if TYPE_CHECKING:
    from eval.codecs import Point

HELP = "evaluate camcodec: rate-distortion against x264, x265, SVT-AV1 and VP9, BD-rate, plots"

RD_HELP = "rate-distortion run over sequences and codecs; writes results.csv/json, bdrate.md, rd_*.png"
RD_EPILOG = """\
sources: video files, Y4M, raw I420 (.yuv with --size or WxH in the name), PNG folders, uvg:FOLDER
for the official UVG 1080p 8-bit files (Beauty_1920x1080_120fps_420_8bit_YUV.yuv, ...), or a set file
(.json: {"sequences": [{"path": "a.mp4", "frames": 60, "scale": "320x180"}, ...]}, paths relative to it;
a sequence's own frames, scale, size, fps or name win over the options; eval/sets/dev.json: the dev set).
codecs: x264, x265 (preset medium; x264-veryslow etc. for another preset), x265ldp (x265 without
B-frames, as the NeRV-family papers use it), svtav1 (preset 8; svtav1-N), vp9 (cpu-used 1; vp9-N), camcodec.
points: CRF values for conventional codecs; for camcodec target bits per pixel or rate-ladder rungs
(xs, s, m, l, xl: what camcodec encode --rate gives a user); --points 22,27,32 sets every conventional
codec, --points x265=27,32 one codec, --points camcodec=0.03,0.08 or camcodec=xs,s,m,l camcodec and its
variants (repeat the option).
variants: --variant v1:arch=cam-nerv runs camcodec again as codec "v1" with those options (any encode
option or model field, e.g. bits=6, epochs=300, cam=false); results share one table.
Points already in --out are skipped, so an interrupted run resumes where it stopped.
example: camcodec eval rd bunny.mp4 --codecs camcodec,x264,x265 --scale 320x180 --frames 60 --out rd/
"""


def _codec_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of codecs")
    return names


def parse_points(specs: list[str]) -> dict[str, tuple[Point, ...]]:
    """``["22,27", "camcodec=0.01,m"]`` -> ``{"*": (22, 27), "camcodec": (0.01, "m")}``: numbers, or names
    (camcodec's rate rungs; each codec checks its own points)."""
    points: dict[str, tuple[Point, ...]] = {}
    for spec in specs:
        codec, sep, values = spec.rpartition("=")
        key = codec.strip().lower() if sep else "*"
        parsed = tuple(_point(v.strip()) for v in values.split(",") if v.strip())
        if not parsed or any(p is None for p in parsed):
            raise argparse.ArgumentTypeError(f"expected [CODEC=]V1,V2,..., got {spec!r}")
        points[key] = tuple(p for p in parsed if p is not None)
    return points


def _point(text: str) -> Point | None:
    """A number, or a plain name (a rate rung); None for anything else."""
    try:
        return float(text)
    except ValueError:
        return text.lower() if re.fullmatch(r"[A-Za-z]+", text) else None


def _variant_arg(text: str) -> tuple[str, tuple[str, ...]]:
    from camcodec.errors import InputError
    from eval.codecs import parse_variant

    try:
        return parse_variant(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _points_arg(text: str) -> str:
    parse_points([text])  # validate early, keep the text
    return text


def setup_rd_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="sequences (see below)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; reused to resume)")
    parser.add_argument(
        "--codecs",
        type=_codec_list,
        default=["camcodec", "x264", "x265"],
        metavar="LIST",
        help="comma-separated codecs (default camcodec,x264,x265)",
    )
    parser.add_argument("--anchor", help="BD-rate anchor (default x265 when run, else the first codec)")
    parser.add_argument(
        "--points",
        type=_points_arg,
        action="append",
        default=[],
        metavar="[CODEC=]V,V,...",
        help="rate points (CRFs; target bpp or rate rungs for camcodec); repeatable",
    )
    parser.add_argument("--frames", type=positive_int, metavar="N", help="use the first N frames of each sequence")
    parser.add_argument("--scale", type=size_arg, metavar="WxH", help="resize each sequence to WxH first")
    parser.add_argument(
        "--size", type=size_arg, metavar="WxH", help="frame size of raw .yuv sources without it in the name"
    )
    parser.add_argument("--fps", type=fps_arg, help="frame rate of raw and PNG sources (default 25)")
    parser.add_argument("--camcodec-preset", metavar="NAME", help="camcodec preset (default: camcodec's default)")
    parser.add_argument(
        "--variant",
        type=_variant_arg,
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[:KEY=VALUE...]",
        help="also run camcodec as codec NAME with these encode or model options (repeatable), "
        "e.g. v1:arch=cam-nerv or nocam:cam=false",
    )
    parser.add_argument("--steps", type=positive_int, help="camcodec training steps (overrides the preset)")
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        metavar="N",
        help="run camcodec and each variant with seeds 0..N-1 (codecs NAME, NAME@seed1, ...); bdrate.md gives "
        "the spread of their BD-rates (default 1)",
    )
    parser.add_argument("--device", default="auto", help=f"camcodec's device: {DEVICE_NAMES} (default auto)")
    parser.add_argument("--keep-streams", action="store_true", help="keep the encoded files in DIR/streams/")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="run the points in parallel on a local Dask cluster of N processes (one torch thread each)",
    )
    parser.add_argument(
        "--cluster", metavar="ADDRESS", help="run the points on the Dask scheduler at ADDRESS (DIR on shared storage)"
    )


def setup_args(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` subcommand's parser: one sub-subcommand per harness command."""
    commands = parser.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    rd = commands.add_parser(
        "rd", help=RD_HELP, description=RD_HELP, epilog=RD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    setup_rd_args(rd)


def run_rd_command(args: argparse.Namespace) -> int:
    from eval.rd import RDConfig, run_rd

    config = RDConfig(
        sources=list(args.sources),
        out=args.out,
        codecs=list(args.codecs),
        anchor=args.anchor,
        points=parse_points(args.points),
        frames=args.frames,
        scale=args.scale,
        size=args.size,
        fps=args.fps,
        camcodec_preset=args.camcodec_preset,
        variants=dict(args.variant),
        steps=args.steps,
        seeds=args.seeds,
        device=args.device,
        keep_streams=args.keep_streams,
        progress=not args.quiet,
        workers=args.workers,
        cluster=args.cluster,
    )
    report = run_rd(config)
    print(report.markdown)
    print(f"{report.folder}: {report.measured} points measured, {report.skipped} reused from earlier runs")
    return 0


COMMANDS = {"rd": run_rd_command}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.eval_command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval ARGS``: the same as ``camcodec eval ARGS``."""
    from camcodec.cli import main as camcodec_main

    return camcodec_main(["eval", *(sys.argv[1:] if argv is None else argv)])
