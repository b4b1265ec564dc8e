"""``camcodec bench``: speed and memory of camcodec's encoder (training) and decoder, per preset and size.

What it measures, for each preset and frame size, on T frames of a real clip scaled to the size (or a
generated pattern when no clip is at hand):

* training: the network the encoder would start from (``camcodec.encoder.initial_model``),
  trained by ``camcodec.train.fit``: per repeat one call, a few warm-up steps, then N steps timed
  by a ``fit`` callback (fit's set-up and its closing PSNR pass are left out); frame-steps per second
  from the median repeat;
* time to a PSNR: a fresh network trained with the preset's own schedule (``total_steps``) until the
  PSNR of all T frames (``camcodec.train.evaluate_psnr``: 8-bit RGB, as the decoder renders them)
  reaches the target, checked once per pass over the frames; the checks' own time is not counted;
  bounded by a time budget;
* decoding: a file written by ``camcodec.Encoder`` (N training steps; a dense network renders as fast
  whatever its weights), its load time (``Decoder(path)``), frames per second of ``Decoder.render``
  to memory with the network already loaded, and the end-to-end time of
  ``camcodec decode FILE -o out.y4m`` in a fresh process (imports included: what a user waits for);
* peak memory: resident set size (VmHWM, reset before each measurement through /proc/self/clear_refs;
  the process-wide ``ru_maxrss`` where that is impossible) and the CUDA allocator's peak on a GPU;
* MACs per output pixel of the decoder network, counted from the model config (convolutions and
  linear layers; normalization, CAM and activations are element-wise and not counted);
* the machine: CPU model, cores, torch threads, GPU, library versions, camcodec's git commit.

Timing follows the benchmark rule: warm up first, synchronize the device inside the timed region,
report medians (and every repeat in the JSON). No unit test times anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitstream.layout import MAX_DIMENSION
from camcodec.config import PRECISIONS, EncodeConfig, resolve_config
from camcodec.device import DEVICE_NAMES, resolve_device
from camcodec.encoder import initial_model
from camcodec.errors import InputError
from camcodec.media import read_video
from camcodec.media.pattern import moving_pattern
from camcodec.model import count_parameters, macs_per_frame
from camcodec.optim import OPTIMIZERS
from camcodec.train import frames_to_tensor
from eval.bench.machine import load_average, machine_info
from eval.bench.measure import (
    MAX_PROCESS_RUNS,
    BenchSettings,
    decode_file_process,
    encode_file,
    measure_decoding,
    measure_training,
    startup_process,
    time_to_psnr,
)
from eval.bench.table import format_table
from eval.results import write_atomic

HELP = "benchmark camcodec: training frame-steps/s, time to a PSNR, decoding frames/s, peak memory, MACs/pixel"

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SHARED_CLIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "carphone_pristine.mp4"
SYNTHETIC = "synthetic"
CPU_SIZES = ((320, 180),)
GPU_SIZES = ((320, 180), (1280, 720), (1920, 1080))


def _size_list(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            width, height = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes like 320x180,1280x720, got {text!r}") from None
        if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
            raise argparse.ArgumentTypeError(f"frame size out of range: {item.strip()!r}")
        sizes.append((width, height))
    return sizes


def _name_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of presets")
    return names


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def setup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=f"{DEVICE_NAMES} (default auto: cuda when present)")
    parser.add_argument(
        "--sizes",
        type=_size_list,
        metavar="WxH,...",
        help="frame sizes (default 320x180 on the CPU; 320x180,1280x720,1920x1080 on a GPU)",
    )
    parser.add_argument(
        "--presets",
        type=_name_list,
        default=["fast", "medium"],
        metavar="LIST",
        help="encoder presets (default fast,medium)",
    )
    parser.add_argument(
        "--source",
        metavar="CLIP",
        help=f"clip scaled to each size (default {SHARED_CLIP.name} from the shared data when present, "
        f"else '{SYNTHETIC}': a generated moving pattern)",
    )
    parser.add_argument(
        "--frames", type=_count(1), default=16, metavar="T", help="frames of the clip used (default 16)"
    )
    parser.add_argument(
        "--steps", type=_count(1), default=20, metavar="N", help="timed training steps per repeat (default 20)"
    )
    parser.add_argument(
        "--warmup",
        type=_count(1),
        default=5,
        metavar="N",
        help="untimed warm-up steps before each repeat's timed steps (default 5)",
    )
    parser.add_argument(
        "--repeats",
        type=_count(1),
        default=5,
        metavar="R",
        help="timed repeats, medians reported (default 5); the file decode in a fresh "
        f"process runs min(R, {MAX_PROCESS_RUNS}) times",
    )
    parser.add_argument("--psnr", type=_positive_float, default=28.0, metavar="DB", help="PSNR to reach (default 28)")
    parser.add_argument(
        "--budget",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="seconds of training allowed to reach the PSNR, per preset and size (default 60)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=EncodeConfig.precision,
        help=f"training arithmetic, as camcodec encode --precision (default {EncodeConfig.precision})",
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=EncodeConfig.optimizer,
        help=f"the training phase's optimizer, as camcodec encode --optimizer (default {EncodeConfig.optimizer})",
    )
    parser.add_argument("--out", default="bench.json", metavar="JSON", help="results file (default bench.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:  # --threads is camcodec's own: set before this runs
    device = resolve_device(args.device)
    sizes = args.sizes or list(GPU_SIZES if device.type == "cuda" else CPU_SIZES)
    for preset in args.presets:
        # bad options fail here, before minutes of measuring
        resolve_config(preset, precision=args.precision, optimizer=args.optimizer)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    if args.source not in (None, SYNTHETIC) and not Path(args.source).exists():
        raise InputError(f"{args.source}: no such file")
    settings = BenchSettings(
        device=device,
        sizes=sizes,
        presets=list(args.presets),
        source=args.source or (str(SHARED_CLIP) if SHARED_CLIP.is_file() else SYNTHETIC),
        frames=args.frames,
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        psnr=args.psnr,
        budget=args.budget,
        threads=args.threads,
        precision=args.precision,
        optimizer=args.optimizer,
        progress=not args.quiet,
    )
    report = run_bench(settings)
    write_atomic(out, json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(format_table(report))
    print(f"{out}: {len(report['results'])} results")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval.bench ARGS``: the same as ``camcodec bench ARGS``."""
    from camcodec.cli import main as camcodec_main

    return camcodec_main(["bench", *(sys.argv[1:] if argv is None else argv)])


def load_frames(source: str, width: int, height: int, num_frames: int) -> np.ndarray:
    """uint8 (T, H, W, 3): the source scaled to W x H (its first T frames), or the generated pattern."""
    if source == SYNTHETIC:
        return moving_pattern(num_frames, height, width)
    return read_video(source, scale=(width, height), max_frames=num_frames).frames


def bench_one(
    preset: str, width: int, height: int, source_frames: np.ndarray, s: BenchSettings, folder: Path
) -> dict[str, Any]:
    """Every measurement for one preset and size."""
    config = resolve_config(preset, device=str(s.device), precision=s.precision, optimizer=s.optimizer)
    num_frames = len(source_frames)
    model = initial_model(config, num_frames, height, width, s.device)
    model_config = model.config
    macs = macs_per_frame(model_config)
    row: dict[str, Any] = {
        "preset": preset,
        "width": width,
        "height": height,
        "frames": num_frames,
        "parameters": count_parameters(model),
        "model_config": model_config.to_dict(),
        "macs_per_frame": macs,
        "macs_per_pixel": round(macs["total"] / (width * height), 2),
    }
    frames = frames_to_tensor(source_frames, s.device)

    _progress(s, f"{preset} {width}x{height}: training speed")
    row["train"] = measure_training(model, frames, config, s)
    del model
    _progress(s, f"{preset} {width}x{height}: time to {s.psnr:g} dB (budget {s.budget:g} s)")
    model = initial_model(config, num_frames, height, width, s.device)
    row["time_to_psnr"] = time_to_psnr(model, frames, config, s.psnr, s.budget, s.device)
    del model, frames

    _progress(s, f"{preset} {width}x{height}: decoding")
    path = folder / f"{preset}_{width}x{height}.cam"
    row["file"] = encode_file(source_frames, preset, s, path)
    row["decode"] = measure_decoding(path, num_frames, s)
    row["decode_file"] = decode_file_process(path, s)
    path.unlink(missing_ok=True)
    return row


def run_bench(s: BenchSettings) -> dict[str, Any]:
    load_before = load_average()
    _progress(s, "start-up time of a fresh camcodec process")
    startup = startup_process(s)
    results = []
    with tempfile.TemporaryDirectory(prefix="camcodec-bench-") as folder:
        for width, height in s.sizes:
            frames = load_frames(s.source, width, height, s.frames)
            for preset in s.presets:
                try:
                    results.append(bench_one(preset, width, height, frames, s, Path(folder)))
                except torch.cuda.OutOfMemoryError as exc:
                    torch.cuda.empty_cache()
                    message = " ".join(str(exc).split())[:200]
                    log.warning("%s %dx%d: out of GPU memory: %s", preset, width, height, message)
                    results.append(
                        {"preset": preset, "width": width, "height": height, "error": f"out of GPU memory: {message}"}
                    )
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "machine": {**machine_info(s.device), "load_average": {"start": load_before, "end": load_average()}},
        "settings": s.to_dict(),
        "startup": startup,
        "results": results,
    }


def _progress(s: BenchSettings, message: str) -> None:
    if s.progress:
        print(f"bench: {message}", file=sys.stderr, flush=True)
