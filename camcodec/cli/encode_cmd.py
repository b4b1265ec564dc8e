"""camcodec encode: compress a video into a .cam file."""

from __future__ import annotations

import argparse
import json
import sys

from camcodec import api
from camcodec.cli.args import fps_arg, positive_int, size_arg
from camcodec.config import DEFAULT_PRESET, LOSSES, PRESETS, RATES, EncodeConfig, parse_options
from camcodec.errors import InputError
from camcodec.model import ARCHITECTURES

HELP = "compress a video (file, Y4M, raw YUV with --size, or PNG folder) into a .cam file"


def setup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="source video; - reads Y4M from standard input")
    parser.add_argument("-o", "--output", required=True, help="the .cam file to write")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS), help="training effort")
    parser.add_argument("--rate", choices=list(RATES), help="rate ladder rung: model size, bits and pruning")
    parser.add_argument("--bpp", type=float, help="target bits per pixel: size, bits and pruning chosen to land it")
    parser.add_argument("--frames", type=positive_int, help="encode at most N frames")
    parser.add_argument("--start", type=int, default=0, help="first source frame to encode (default 0)")
    parser.add_argument("--scale", type=size_arg, metavar="WxH", help="resize frames to WxH before encoding")
    parser.add_argument("--size", type=size_arg, metavar="WxH", help="frame size of a raw .yuv source")
    parser.add_argument("--fps", type=fps_arg, help="frame rate of a raw .yuv or PNG source (default 25)")
    parser.add_argument("--steps", type=positive_int, help="training steps (overrides the preset's epochs)")
    parser.add_argument("--epochs", type=positive_int, help="training passes over all frames")
    parser.add_argument("--batch-size", type=positive_int, help="frames per training step")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--loss", choices=LOSSES, help="training loss")
    parser.add_argument("--params-per-pixel", type=float, help="model size: parameters per pixel x frame")
    parser.add_argument("--bits", type=int, help="quantization bits per weight (2-16, default 8)")
    parser.add_argument("--prune", type=float, help="fraction of conv/linear weights pruned (0-1)")
    parser.add_argument(
        "--rate-weight",
        type=float,
        metavar="KAPPA",
        help="train against the rate with learned quantization steps: minimize "
        "ln(distortion) + KAPPA x estimated bpp / target bpp (0: distortion only)",
    )
    parser.add_argument(
        "--rate-from",
        type=float,
        metavar="FRACTION",
        help="with --rate-weight: train FRACTION of the steps on float weights first (default 0)",
    )
    parser.add_argument("--qat", type=float, help="quantization-aware fine-tuning, fraction of training steps")
    parser.add_argument("--no-cam", action="store_true", help="plain NeRV: no feature normalization or CAM grids")
    parser.add_argument(
        "--arch", choices=list(ARCHITECTURES), help=f"network architecture (default {EncodeConfig.arch})"
    )
    parser.add_argument(
        "--model-params",
        metavar="KEY=VALUE[:KEY=VALUE...]",
        help="fields of the architecture's model config, e.g. upsample=bilinear:kernels=1,3,3,3",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted encode from OUT.ckpt")
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="save OUT.ckpt this often while training (default 60; removed when done)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.output == "-":
        raise InputError("-o -: a .cam file is written to a file, not to standard output; name one")
    model_params = None
    if args.model_params:
        parsed = parse_options([f"arch={args.arch or EncodeConfig.arch}", *args.model_params.split(":")])
        misplaced = sorted(set(parsed) - {"arch", "model_params"})
        if misplaced:
            raise InputError(f"--model-params: {misplaced[0]} is an encode option, not a model field")
        model_params = parsed["model_params"]
    stats = api.encode(
        sys.stdin.buffer if args.input == "-" else args.input,
        args.output,
        preset=args.preset,
        rate=args.rate,
        target_bpp=args.bpp,
        prune=args.prune,
        qat=args.qat,
        rate_weight=args.rate_weight,
        rate_from=args.rate_from,
        max_frames=args.frames,
        start=args.start,
        scale=args.scale,
        size=args.size,
        fps=args.fps,
        progress=not args.quiet,
        checkpoint_interval=args.checkpoint_interval,
        resume=args.resume,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        params_per_pixel=args.params_per_pixel,
        bits=args.bits,
        cam=False if args.no_cam else None,
        arch=args.arch,
        model_params=model_params,
        device=args.device,
        seed=args.seed,
    )
    print(json.dumps(stats.to_dict()) if args.json else f"{stats.path}: {stats.summary()}")
    return 0
