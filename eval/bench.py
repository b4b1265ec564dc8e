"""``camcodec bench``: speed and memory of camcodec's encoder (training) and decoder, per preset and size.

What it measures, for each preset and frame size, on T frames of a real clip scaled to the size (or a
generated pattern when no clip is at hand):

* training: the network the encoder would build (``resolve_config`` -> ``size_model`` -> ``build_model``),
  trained by ``camcodec.train.fit``: per repeat one call, a few warm-up steps, then N steps timed
  between fit's per-step hook calls (its set-up and its closing PSNR pass are left out); frame-steps
  per second from the median repeat;
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
import gc
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import camcodec
from camcodec.config import EncodeConfig, resolve_config, size_model
from camcodec.decoder import Decoder
from camcodec.device import resolve_device
from camcodec.encoder import Encoder, clip_from_array
from camcodec.errors import InputError
from camcodec.media import read_video
from camcodec.model import VideoModel, build_model, count_parameters, macs_per_frame
from camcodec.train import FitState, Phase, evaluate_psnr, fit, frames_to_tensor
from eval.results import write_atomic

HELP = "benchmark camcodec: training frame-steps/s, time to a PSNR, decoding frames/s, peak memory, MACs/pixel"

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "carphone_pristine.mp4"
SYNTHETIC = "synthetic"
CPU_SIZES = ((320, 180),)
GPU_SIZES = ((320, 180), (1280, 720), (1920, 1080))
MB = 1024 * 1024
STARVED = 0.75  # CPU seconds per wall second below this x threads: torch's threads did not get their cores
MAX_PROCESS_RUNS = 3  # each fresh-process decode pays torch's import: a few seconds


# ---------------------------------------------------------------------------------------------------
# Command line


def _size_list(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            width, height = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes like 320x180,1280x720, got {text!r}") from None
        if not (1 <= width <= 16384 and 1 <= height <= 16384):
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
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda when present)")
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
    parser.add_argument("--threads", type=_count(1), metavar="N", help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="bench.json", metavar="JSON", help="results file (default bench.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = args.sizes or list(GPU_SIZES if device.type == "cuda" else CPU_SIZES)
    for preset in args.presets:
        resolve_config(preset)  # bad options fail here, before minutes of measuring
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


# ---------------------------------------------------------------------------------------------------
# Measurement helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``fn()``, the device synchronized before the clock
    starts and before it stops."""
    synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return _proc_status_kb("VmHWM") is not None
    except OSError:
        return False


def _max_rss_kb() -> int:
    """``ru_maxrss`` in kB (Linux reports kB, macOS bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


@dataclass
class Memory:
    """Peak memory of one measured stretch; filled in when the ``peak_memory`` block ends."""

    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_method: str = ""
    cuda_peak_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rss_start_mb": round(self.rss_start_mb, 1),
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "rss_method": self.rss_method,
            "cuda_peak_mb": None if self.cuda_peak_mb is None else round(self.cuda_peak_mb, 1),
        }


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Memory]:
    """Peak RSS (and CUDA peak) of the block; RSS at the start is recorded for comparison."""
    gc.collect()
    memory = Memory()
    resettable = _reset_peak_rss()
    current = _proc_status_kb("VmRSS")
    memory.rss_start_mb = (current if current is not None else _max_rss_kb()) / 1024
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield memory
    synchronize(device)
    if resettable:
        memory.rss_peak_mb = (_proc_status_kb("VmHWM") or 0) / 1024
        memory.rss_method = "VmHWM, reset before the measurement"
    else:
        memory.rss_peak_mb = _max_rss_kb() / 1024
        memory.rss_method = "ru_maxrss since the process started"
    if device.type == "cuda":
        memory.cuda_peak_mb = torch.cuda.max_memory_allocated(device) / MB


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------------------------------------------
# Frames and models


def moving_pattern(num_frames: int, height: int, width: int) -> np.ndarray:
    """A generated stand-in for real video: drifting colour waves and a sliding square, uint8 (T, H, W, 3)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    scale = max(width, height) / 64.0
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        shift = 3.0 * t * scale
        for c in range(3):
            wave = np.sin((xx + shift) / ((6.0 + 2 * c) * scale) + c) * np.cos((yy - shift) / ((9.0 + c) * scale))
            frames[t, :, :, c] = np.clip(127.5 + 100.0 * wave, 0, 255).astype(np.uint8)
        side = max(1, int(12 * scale))
        x0 = int((4 + 3 * t) * scale) % max(width - side, 1)
        y0 = min(int(10 * scale), max(height - side, 0))
        frames[t, y0 : y0 + side, x0 : x0 + side] = (240, 30, 30)
    return frames


def load_frames(source: str, width: int, height: int, num_frames: int) -> np.ndarray:
    """uint8 (T, H, W, 3): the source scaled to W x H (its first T frames), or the generated pattern."""
    if source == SYNTHETIC:
        return moving_pattern(num_frames, height, width)
    return read_video(source, scale=(width, height), max_frames=num_frames).frames


# ---------------------------------------------------------------------------------------------------
# The measurements


class StepClock:
    """A ``camcodec.train.Checkpointer`` that never saves: it notes the time after chosen steps.

    ``fit`` asks ``due()`` after every step but its last; timing between two of those calls leaves out
    what ``fit`` does before its first step (optimizer set-up) and after its last (the PSNR pass over
    all frames), so the figure is the steady training loop alone.
    """

    def __init__(self, marks: tuple[int, int], device: torch.device):
        self.marks, self.device = marks, device
        self.steps = 0
        self.times: dict[int, tuple[float, float]] = {}  # steps -> (wall clock, this process's CPU time)

    def due(self) -> bool:
        self.steps += 1
        if self.steps in self.marks:
            synchronize(self.device)
            self.times[self.steps] = (time.perf_counter(), time.process_time())
        return False

    def save(self, state: FitState) -> None:  # never due
        raise AssertionError("StepClock.save called")

    @property
    def seconds(self) -> float:
        first, last = self.marks
        return self.times[last][0] - self.times[first][0]

    @property
    def cpu_seconds(self) -> float:
        """CPU time of all this process's threads between the marks: far below threads x seconds means
        the threads waited for cores other processes held."""
        first, last = self.marks
        return self.times[last][1] - self.times[first][1]


def measure_training(model: VideoModel, frames: torch.Tensor, config: EncodeConfig, s: BenchSettings) -> dict[str, Any]:
    """Frame-steps per second of ``fit``: per repeat one ``fit`` call, warm-up steps, then N timed steps."""
    batch = min(config.batch_size, frames.shape[0])
    lead = s.warmup  # >= 1: a fit call's first step also creates the optimizer's state
    seconds, cpu_seconds = [], []
    with peak_memory(s.device) as memory:
        for _ in range(s.repeats):
            clock = StepClock((lead, lead + s.steps), s.device)
            # One step more than the marks: fit asks its checkpointer after every step but the last.
            phase = Phase("train", lead + s.steps + 1, config.peak_lr, config.warmup)
            fit(model, frames, phase, config, checkpointer=clock)
            seconds.append(clock.seconds)
            cpu_seconds.append(clock.cpu_seconds)
    mid = median(seconds)
    return {
        "batch_size": batch,
        "warmup_steps": lead,
        "steps": s.steps,
        "seconds": [round(v, 4) for v in seconds],
        "cpu_seconds": [round(v, 4) for v in cpu_seconds],
        "cpu_per_wall": round(median([c / w for c, w in zip(cpu_seconds, seconds, strict=True)]), 2),
        "steps_per_s": round(s.steps / mid, 3),
        "frame_steps_per_s": round(s.steps * batch / mid, 3),
        "memory": memory.to_dict(),
    }


class _Stop(Exception):
    """Raised from inside ``fit`` (through its checkpointer hook) to end a run early."""


def _finite(value: float) -> float | None:
    """A PSNR for JSON: rounded, or None where it is infinite (frames reproduced exactly)."""
    return round(value, 3) if math.isfinite(value) else None


class PsnrWatch:
    """A ``camcodec.train.Checkpointer`` that checks the network's PSNR once per pass over the frames.

    ``fit`` asks ``due()`` after every step and hands its state to ``save()`` when due; this uses that
    hook to measure the PSNR of all frames as the codec does (``camcodec.train.evaluate_psnr``: 8-bit
    RGB, mean over frames) and to stop ``fit`` (by raising) once the target is reached or the time budget
    is spent. Time spent checking is measured and left out of the training time.
    """

    def __init__(
        self, model: VideoModel, frames: torch.Tensor, target: float, every: int, budget: float, device: torch.device
    ):
        self.model, self.frames, self.target = model, frames, target
        self.every, self.budget, self.device = every, budget, device
        self.steps = 0
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.checks: list[tuple[int, float, float]] = []  # (steps, training seconds, PSNR)
        self.out_of_time = False

    def begin(self) -> None:
        self.start, self.excluded = time.perf_counter(), 0.0

    def due(self) -> bool:
        self.steps += 1
        if time.perf_counter() - self.start - self.excluded > self.budget:
            self.out_of_time = True
            self.check(self.steps)  # where the budget ran out
            raise _Stop
        return self.steps % self.every == 0

    def save(self, state: FitState) -> None:
        if self.check(state.step) >= self.target:
            raise _Stop

    def check(self, steps: int) -> float:
        synchronize(self.device)
        begin = time.perf_counter()
        seconds = begin - self.start - self.excluded
        psnr = evaluate_psnr(self.model, self.frames)
        self.checks.append((steps, seconds, psnr))
        self.excluded += time.perf_counter() - begin
        return psnr


def time_to_psnr(
    model: VideoModel,
    frames: torch.Tensor,
    config: EncodeConfig,
    target: float,
    budget: float,
    device: torch.device,
) -> dict[str, Any]:
    """Train ``model`` as the encoder's main phase does until its frames reach ``target`` dB (or the budget)."""
    num_frames = frames.shape[0]
    batch = min(config.batch_size, num_frames)
    total = config.total_steps(num_frames)
    watch = PsnrWatch(model, frames, target, math.ceil(num_frames / batch), budget, device)
    watch.begin()
    try:
        result = fit(model, frames, Phase("train", total, config.peak_lr, config.warmup), config, checkpointer=watch)
        # fit asks no checkpointer after its last step; its own result holds the PSNR then.
        watch.checks.append((total, result.seconds - watch.excluded, result.psnr))
    except _Stop:
        pass
    reached = next((c for c in watch.checks if c[2] >= target), None)
    last = watch.checks[-1]
    return {
        "target_db": target,
        "reached": reached is not None,
        "steps": reached[0] if reached else None,
        "frame_steps": reached[0] * batch if reached else None,
        "seconds": round(reached[1], 3) if reached else None,
        "best_db": _finite(max(c[2] for c in watch.checks)),
        "last_steps": last[0],
        "last_seconds": round(last[1], 3),
        "budget_steps": total,
        "budget_s": budget,
        "stopped_by": "target" if reached else ("time budget" if watch.out_of_time else "steps"),
        "check_every_steps": watch.every,
        "checks": [[steps, round(seconds, 3), _finite(psnr)] for steps, seconds, psnr in watch.checks],
    }


def encode_file(frames: np.ndarray, preset: str, s: BenchSettings, path: Path) -> dict[str, Any]:
    """A .cam file of the frames, written by ``camcodec.Encoder`` after ``steps`` training steps (no QAT)."""
    config = resolve_config(preset, steps=s.steps, qat=0.0, device=str(s.device))
    start = time.perf_counter()
    stats = Encoder(config).encode(clip_from_array(frames, Fraction(25)), path).stats
    return {
        "training_steps": s.steps,
        "encode_seconds": round(time.perf_counter() - start, 3),
        "file_bytes": stats.file_bytes,
        "bpp": round(stats.bpp, 5),
    }


def _load_decoder(path: Path, device: torch.device, into: list[Decoder]) -> None:
    into.append(Decoder(path, device=str(device)))


def measure_decoding(path: Path, num_frames: int, s: BenchSettings) -> dict[str, Any]:
    """Load time of ``Decoder(path)``, and frames per second of ``Decoder.render`` of all frames to memory.

    Each repeat loads a fresh decoder (timed as the load) and then renders every frame once (timed as
    decoding): a fresh decoder holds no rendered group from an earlier repeat, so nothing is served from
    its cache, and the figure follows whatever the decoder does (batching, precision, threads).
    """
    indices = list(range(num_frames))
    with peak_memory(s.device) as memory:
        Decoder(path, device=str(s.device)).render(indices)  # warm-up
        load, runs = [], []
        for _ in range(s.repeats):
            fresh: list[Decoder] = []
            load.append(timed(partial(_load_decoder, path, s.device, fresh), s.device)[0])
            runs.append(timed(partial(fresh[0].render, indices), s.device))
            render_group = fresh[0].container.segments[0].model_config["render_group"]
            del fresh
    seconds = [run[0] for run in runs]
    return {
        "frames": num_frames,
        "render_group": render_group,
        "load_seconds": round(median(load), 4),
        "seconds": [round(v, 4) for v in seconds],
        "cpu_seconds": [round(run[1], 4) for run in runs],
        "cpu_per_wall": round(median([cpu / wall for wall, cpu in runs]), 2),
        "fps": round(num_frames / median(seconds), 3),
        "memory": memory.to_dict(),
    }


def run_camcodec(arguments: list[str], s: BenchSettings) -> tuple[float, float]:
    """Run ``camcodec ARGUMENTS`` in a fresh process: (wall seconds, that process's peak RSS in MB)."""
    env = dict(os.environ)
    if s.threads is not None:
        env["OMP_NUM_THREADS"] = str(s.threads)
    command = [sys.executable, "-m", "camcodec", *arguments]
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage, unlike RUSAGE_CHILDREN
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = " ".join(errors.read().decode(errors="replace").split())
            raise RuntimeError(f"camcodec {arguments[0]} failed with exit code {process.returncode}: {message}")
    return seconds, usage.ru_maxrss / (MB if sys.platform == "darwin" else 1024)


def decode_file_process(path: Path, s: BenchSettings) -> dict[str, Any]:
    """``camcodec decode FILE -o out.y4m`` in a fresh process: wall time and the process's peak RSS."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="camcodec-bench-") as folder:
        out = Path(folder) / "out.y4m"
        for _ in range(min(s.repeats, MAX_PROCESS_RUNS)):
            out.unlink(missing_ok=True)
            runs.append(run_camcodec(["decode", str(path), "-o", str(out), "--device", str(s.device), "-q"], s))
        output_bytes = out.stat().st_size
    seconds = [run[0] for run in runs]
    return {
        "command": "camcodec decode FILE -o out.y4m",
        "seconds": [round(v, 3) for v in seconds],
        "median_seconds": round(median(seconds), 3),
        "output_bytes": output_bytes,
        "rss_peak_mb": round(max(run[1] for run in runs), 1),
    }


def startup_process(s: BenchSettings) -> dict[str, Any]:
    """``camcodec --version`` in a fresh process: the start-up (imports) inside every file decode's time."""
    runs = [run_camcodec(["--version"], s) for _ in range(min(s.repeats, MAX_PROCESS_RUNS))]
    seconds = [run[0] for run in runs]
    return {
        "command": "camcodec --version",
        "seconds": [round(v, 3) for v in seconds],
        "median_seconds": round(median(seconds), 3),
        "rss_peak_mb": round(max(run[1] for run in runs), 1),
    }


# ---------------------------------------------------------------------------------------------------
# The run


@dataclass
class BenchSettings:
    device: torch.device
    sizes: list[tuple[int, int]]
    presets: list[str]
    source: str
    frames: int = 16
    steps: int = 20
    warmup: int = 5
    repeats: int = 5
    psnr: float = 28.0
    budget: float = 60.0
    threads: int | None = None
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "sizes": [f"{w}x{h}" for w, h in self.sizes],
            "presets": self.presets,
            "source": self.source,
            "frames": self.frames,
            "steps": self.steps,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "psnr_target_db": self.psnr,
            "psnr_budget_s": self.budget,
            "threads": self.threads,
        }


def bench_one(
    preset: str, width: int, height: int, source_frames: np.ndarray, s: BenchSettings, folder: Path
) -> dict[str, Any]:
    """Every measurement for one preset and size."""
    config = resolve_config(preset, device=str(s.device))
    num_frames = len(source_frames)
    model_config = size_model(width, height, num_frames, config)
    macs = macs_per_frame(model_config)
    row: dict[str, Any] = {
        "preset": preset,
        "width": width,
        "height": height,
        "frames": num_frames,
        "parameters": None,
        "model_config": model_config.to_dict(),
        "macs_per_frame": macs,
        "macs_per_pixel": round(macs["total"] / (width * height), 2),
    }
    frames = frames_to_tensor(source_frames, s.device)

    _progress(s, f"{preset} {width}x{height}: training speed")
    model = build_model(model_config, config.seed).to(s.device)
    row["parameters"] = count_parameters(model)
    row["train"] = measure_training(model, frames, config, s)
    del model
    _progress(s, f"{preset} {width}x{height}: time to {s.psnr:g} dB (budget {s.budget:g} s)")
    model = build_model(model_config, config.seed).to(s.device)
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
    load_before = _load_average()
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
        "machine": {**machine_info(s.device), "load_average": {"start": load_before, "end": _load_average()}},
        "settings": s.to_dict(),
        "startup": startup,
        "results": results,
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: on a shared machine, a high load explains noisy figures."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _progress(s: BenchSettings, message: str) -> None:
    if s.progress:
        print(f"bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# The machine and the table


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """camcodec's checkout as ``git describe --always --dirty``, when it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(camcodec.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def machine_info(device: torch.device) -> dict[str, Any]:
    import av

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cuda = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if cuda else None
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "gpu": props.name if props else None,
        "gpu_memory_mb": round(props.total_memory / MB) if props else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch": torch.__version__,
        "av": av.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "camcodec": camcodec.__version__,
        "camcodec_commit": git_commit(),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """A short aligned table of the headline figures, with the machine above it."""
    m = report["machine"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    load = m["load_average"]["start"]
    busy = f", load {load[0]:.1f} before the run" if load else ""
    threads = f"{m['torch_threads']} thread{'s' if m['torch_threads'] != 1 else ''}"
    head = (
        f"{m['cpu']} ({m['cpus_usable']} usable CPUs, torch {m['torch']}, {threads}{gpu}), device {m['device']}{busy}"
    )
    startup = (
        f"a fresh camcodec process starts in {report['startup']['median_seconds']:.1f} s "
        "(inside 'file decode s': camcodec decode FILE -o out.y4m)"
    )
    cuda = m["gpu"] is not None
    columns = [
        "preset",
        "size",
        "params",
        "train f-steps/s",
        f"to {report['settings']['psnr_target_db']:g} dB",
        "decode fps",
        "load s",
        "file decode s",
        "MACs/px",
        "peak RSS MB train/decode",
    ]
    if cuda:
        columns.append("CUDA MB train/dec")
    rows = []
    for r in report["results"]:
        size = f"{r['width']}x{r['height']}"
        if "error" in r:
            rows.append([r["preset"], size, r["error"]] + [""] * (len(columns) - 3))
            continue
        t = r["time_to_psnr"]
        best = "-" if t["best_db"] is None else f"{t['best_db']:.1f}"
        reach = (
            f"{t['seconds']:.1f} s, {t['steps']} st"
            if t["reached"]
            else f"no: {best} dB at {t['last_steps']} st, {t['last_seconds']:.0f} s"
        )
        train_mem, dec_mem = r["train"]["memory"], r["decode"]["memory"]
        dec_rss = r["decode_file"]["rss_peak_mb"]  # a fresh process: the in-process figure holds training's leftovers
        row = [
            r["preset"],
            size,
            f"{r['parameters']:,}",
            _fmt(r["train"]["frame_steps_per_s"]),
            reach,
            _fmt(r["decode"]["fps"]),
            _fmt(r["decode"]["load_seconds"], 2),
            _fmt(r["decode_file"]["median_seconds"], 2),
            f"{r['macs_per_pixel']:,.0f}",
            f"{train_mem['rss_peak_mb']:.0f}/{dec_rss:.0f}",
        ]
        if cuda:
            row.append(f"{_fmt(train_mem['cuda_peak_mb'], 0)}/{_fmt(dec_mem['cuda_peak_mb'], 0)}")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows, strict=True)]
    starved = [
        f"{r['preset']} {r['width']}x{r['height']} {part}"
        for r in report["results"]
        if "error" not in r
        for part in ("train", "decode")
        if r[part]["cpu_per_wall"] < STARVED * m["torch_threads"]
    ]
    lines = [head, startup, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if starved and m["torch_threads"] > 1 and not cuda:
        lines.append(
            f"warning: torch ran on fewer cores than its {m['torch_threads']} threads "
            f"({', '.join(starved)}): other processes held the CPU, and torch's threads wait for each "
            "other; rerun on a quiet machine or with --threads 1"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
