"""The benchmark's measurements: clocks and peak memory, training speed, time to a PSNR, decoding speed.

Timing follows the benchmark rule: warm up first, synchronize the device inside the timed region,
report medians (and every repeat). The training clocks are ``fit`` callbacks: they note the time after
chosen steps, so that ``fit``'s set-up and its closing PSNR pass stay out of the figure.
"""

from __future__ import annotations

import gc
import math
import os
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

from camcodec.config import EncodeConfig, resolve_config
from camcodec.decoder import Decoder
from camcodec.device import trains_in_bf16
from camcodec.encoder import Encoder, clip_from_array
from camcodec.model import VideoModel
from camcodec.train import FitCallback, Phase, StepEvent, evaluate_psnr, fit, training_phase
from eval.bench.machine import MB

MAX_PROCESS_RUNS = 3  # each fresh-process decode pays torch's import: a few seconds


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
    precision: str = EncodeConfig.precision
    optimizer: str = EncodeConfig.optimizer
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
            "precision": self.precision,
            "bf16": trains_in_bf16(self.precision, self.device),
            "optimizer": self.optimizer,
        }


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


class StepClock(FitCallback):
    """A ``fit`` callback that notes the time after chosen steps (marks).

    Timing between two marks leaves out what ``fit`` does before its first step (optimizer set-up) and
    after its last (the PSNR pass over all frames): the figure is the steady training loop alone.
    """

    def __init__(self, marks: tuple[int, int], device: torch.device):
        self.marks, self.device = marks, device
        self.times: dict[int, tuple[float, float]] = {}  # steps -> (wall clock, this process's CPU time)

    def after_step(self, event: StepEvent) -> bool:
        if event.step in self.marks:
            synchronize(self.device)
            self.times[event.step] = (time.perf_counter(), time.process_time())
        return False

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
            phase = training_phase(config, lead + s.steps)
            fit(model, frames, phase, config, callbacks=[clock])
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


def _finite(value: float) -> float | None:
    """A PSNR for JSON: rounded, or None where it is infinite (frames reproduced exactly)."""
    return round(value, 3) if math.isfinite(value) else None


class PsnrWatch(FitCallback):
    """A ``fit`` callback that checks the network's PSNR once per pass over the frames and after the last
    step, and stops ``fit`` once the target is reached or the time budget is spent.

    The PSNR is that of all frames as the codec measures it (``camcodec.train.evaluate_psnr``: 8-bit
    RGB, mean over frames). Time spent checking is measured and left out of the training time.
    """

    def __init__(
        self, model: VideoModel, frames: torch.Tensor, target: float, every: int, budget: float, device: torch.device
    ):
        self.model, self.frames, self.target = model, frames, target
        self.every, self.budget, self.device = every, budget, device
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.checks: list[tuple[int, float, float]] = []  # (steps, training seconds, PSNR)
        self.out_of_time = False

    def begin(self, phase: Phase, first_step: int) -> None:
        self.start, self.excluded = time.perf_counter(), 0.0

    def after_step(self, event: StepEvent) -> bool:
        if time.perf_counter() - self.start - self.excluded > self.budget:
            self.out_of_time = True
            self.check(event.step)  # where the budget ran out
            return True
        if event.step % self.every == 0 or event.last:
            return self.check(event.step) >= self.target
        return False

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
    fit(model, frames, training_phase(config, total), config, callbacks=[watch])
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
    config = resolve_config(preset, steps=s.steps, qat=0.0, device=str(s.device), optimizer=s.optimizer)
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
