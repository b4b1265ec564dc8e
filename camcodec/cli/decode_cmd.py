"""camcodec decode: render a .cam file to a video, Y4M, raw YUV or PNG frames."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from camcodec.cli.args import add_frames_args, add_overwrite_args
from camcodec.decoder import Decoder
from camcodec.device import DEVICE_NAMES
from camcodec.errors import OutputError
from camcodec.media import OUTPUT_KINDS, VideoWriter
from camcodec.media.writer import refused_overwrite
from camcodec.values import parse_frames

HELP = "decode a .cam file; the output kind follows OUT's extension"


def setup_args(parser: argparse.ArgumentParser) -> None:
    kinds = ", ".join(f"{ext or 'folder'}: {what}" for ext, what in OUTPUT_KINDS.items())
    parser.add_argument("input", help="a .cam file")
    parser.add_argument("-o", "--output", required=True, help=f"output path ({kinds}); - writes Y4M to standard output")
    add_overwrite_args(parser)
    add_frames_args(parser, "decode")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_NAMES} (default auto)")
    parser.add_argument("--codec", help="PyAV encoder for .mkv/.mp4/.webm outputs (e.g. libx265)")
    parser.add_argument(
        "--depth",
        type=int,
        choices=(8, 10),
        help="bits per sample of .y4m and .yuv outputs (default: 10 for a 10-bit source, else 8)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    to_stdout = args.output == "-"
    if (
        not to_stdout
        and os.path.isfile(args.output)
        and os.path.isfile(args.input)
        and os.path.samefile(args.output, args.input)
    ):
        raise OutputError(f"{args.output}: is the input file; refusing to overwrite it")
    if not to_stdout and not args.overwrite and _exists(args.output):
        raise OutputError(refused_overwrite(args.output))
    chosen = parse_frames(args.frames, args.start)
    decoder = Decoder(args.input, device=args.device)
    chosen.check_within(len(decoder), args.input)
    indices = decoder.select(slice(chosen.start, chosen.stop))
    # Tagged YUV outputs (.mp4, .webm) of an RGB source use BT.709; YUV sources get their own matrix back.
    # Y4M and raw YUV carry no tag: the writer uses the matrix readers assume for them.
    matrix = "bt709" if decoder.info.color_matrix == "rgb" else decoder.info.color_matrix
    depth = args.depth or (10 if _is_10_bit(decoder.info.pix_fmt) and _is_raw(args.output) else 8)
    with VideoWriter(
        sys.stdout.buffer if to_stdout else args.output,
        decoder.width,
        decoder.height,
        decoder.fps,
        codec=args.codec,
        color_matrix=matrix,
        bit_depth=depth,
    ) as writer:
        for frame in tqdm(
            decoder.iter_frames(indices, high_precision=depth > 8),
            total=len(indices),
            desc="decode",
            unit="frame",
            disable=args.quiet,
            dynamic_ncols=True,
        ):
            writer.write(frame[None])
    seconds = time.perf_counter() - start
    summary = f"{args.output}: {len(indices)} frames {decoder.width}x{decoder.height} in {seconds:.1f} s"
    print(summary, file=sys.stderr if to_stdout else sys.stdout)
    return 0


def _exists(output: str) -> bool:
    """An output that is there to lose: a file, or a folder (of PNG frames) with something in it."""
    path = Path(output)
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _is_10_bit(pix_fmt: str) -> bool:
    return "10" in pix_fmt  # yuv420p10le, yuv444p10be, ...


def _is_raw(output: str) -> bool:
    """Standard output or a .y4m/.yuv/.i420 file: the outputs that take 10 bits."""
    return output == "-" or Path(output).suffix.lower() in (".y4m", ".yuv", ".i420")
