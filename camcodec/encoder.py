"""Encoding: train the network on a clip, quantize and entropy-code it, write the file, verify it."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import bitstream
from camcodec import STATUS_LOGGER
from camcodec.checkpoint import EncodeCheckpoint, SaveOnInterrupt, fingerprint
from camcodec.compress import (
    FileBuilder,
    deadzone_for_target,
    factor_for_target,
    levels_for_target,
    masked_weights,
    prune_for_target,
    quantized_weights,
    scaled_steps,
    stepped_weights,
)
from camcodec.config import (
    MAX_TARGET_BITS,
    MIN_TARGET_BITS,
    EncodeConfig,
    coded_bits_per_weight,
    params_for_target,
    resolve_config,
    size_model,
)
from camcodec.decoder import Decoder
from camcodec.device import resolve_device, trains_in_bf16
from camcodec.effort import Deadline, EncodeEstimate, TimePlan, finetune_fraction, measure_step_rate, plan_for_time
from camcodec.errors import EncodeInterrupted, InputError, OutputError
from camcodec.interrupt import DeferredInterrupt
from camcodec.media import Clip, check_output_path
from camcodec.media.writer import refused_overwrite
from camcodec.metrics import psnr_uint8
from camcodec.model import VideoModel, build_model, count_parameters
from camcodec.prune import apply_masks, magnitude_masks
from camcodec.quantize import bits_for_levels, channel_axes, levels_for_bits, quantize_at, quantize_model
from camcodec.rate import LearnedSteps
from camcodec.train import (
    FitCallback,
    FitState,
    Phase,
    ProgressBar,
    evaluate_psnr,
    fit,
    frames_to_tensor,
    measured_frames,
    training_phase,
)
from camcodec.values import format_duration

log = logging.getLogger(__name__)
status = logging.getLogger(STATUS_LOGGER)

# With kappa fixed, fine-tuning at fixed steps grew files by up to 2.2 %; with kappa steered to hold the
# landed rate (--rate-control), it moved them by -0.7 to +0.2 %, and it lands with no room (docs/architecture.md, 4).
FINETUNE_GROWTH = 0.025
#: A file more than this factor over its target rate is said to miss it; a network whose estimate is
#: this far over the rate asked is said, before training, to be unable to land it.
TARGET_MISS, UNREACHABLE = 1.02, 1.25


@dataclass
class EncodeStats:
    """What an encode produced; ``psnr`` and ``bpp`` are measured on the written file."""

    path: str
    frames: int
    width: int
    height: int
    parameters: int
    file_bytes: int
    bpp: float  # 8 x file bytes / (W x H x frames)
    psnr: float  # RGB PSNR (dB) of the frames the file decodes to, against the source
    bits: int  # the widest symbol: the file stores symbols in -levels .. levels
    levels: int  # quantization steps on each side of zero (127: 8 bits)
    prune: float
    target_bpp: float | None
    asked_bpp: float  # the rate aimed at: the target, or the rung's (or --params-per-pixel's) estimate
    phases: list[dict]  # per phase (train, prune, qat): steps, frame_steps, seconds, psnr (train.measured_frames)
    encode_seconds: float
    device: str
    segments: int = 1  # networks in the file, each coding consecutive frames

    def summary(self) -> str:
        target = f" (target {self.target_bpp:g})" if self.target_bpp is not None else f" (asked ~{self.asked_bpp:.2g})"
        return (
            f"{self.frames} frame{'s' if self.frames != 1 else ''} {self.width}x{self.height}, "
            f"{self.parameters:,} params, "
            f"{self.file_bytes:,} bytes, {self.bpp:.4f} bpp{target}, PSNR {self.psnr:.2f} dB, "
            f"{self.encode_seconds:.1f} s" + (f", {self.segments} segments" if self.segments > 1 else "")
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EncodeResult:
    """An encode's figures, and the file it wrote (its bytes) with the device its quality was measured on."""

    stats: EncodeStats
    coded: bytes
    device: str

    @functools.cached_property
    def reconstruction(self) -> np.ndarray:
        """uint8 (T, H, W, 3): the frames the written file decodes to on the encoder's device, decoded when
        first asked for (the encoder itself measured them a group at a time, without holding them)."""
        return Decoder(self.coded, device=self.device).render(range(self.stats.frames))


def check_file(path: str | os.PathLike, clip: Clip, device: str) -> tuple[bytes, float]:
    """(the file's bytes, the RGB PSNR of the frames it decodes to on ``device`` against the clip's), decoded
    a group at a time: the check holds a few frames, not a second copy of the clip."""
    coded = Path(path).read_bytes()
    return coded, psnr_uint8(clip.frames, Decoder(coded, device=device).iter_frames())


def clip_from_array(frames: np.ndarray, fps: Fraction = Fraction(25)) -> Clip:
    """Wrap uint8 RGB frames (T, H, W, 3) as a clip."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError("frames must be a uint8 array of shape (T, H, W, 3)")
    if frames.shape[0] < 1:
        raise InputError("frames: the video is empty")
    return Clip(np.ascontiguousarray(frames), Fraction(fps), "rgb24", "rgb", "<array>")


#: Extensions of the video files ``camcodec decode`` writes: a .cam file named so would fool its reader.
VIDEO_EXTENSIONS = (".mkv", ".mp4", ".webm", ".y4m", ".yuv", ".i420", ".avi", ".mov", ".png")


def checked_output(clip: Clip, out_path: str | os.PathLike, overwrite: bool = True) -> bitstream.VideoInfo:
    """The file's video info, with the output path checked: both refused before any training. A path
    named as a video file is refused too: the output is a .cam file."""
    info = video_info(clip)
    check_output_path(out_path, clip.source if os.path.exists(clip.source) else None)
    label = os.fsdecode(os.fspath(out_path))
    suffix = os.path.splitext(label)[1].lower()
    if suffix in VIDEO_EXTENSIONS:
        raise OutputError(
            f"{label}: encode writes a .cam file, not {suffix}; name it .cam (camcodec decode writes {suffix} from it)"
        )
    if not overwrite and os.path.isfile(label):
        raise OutputError(refused_overwrite(label))
    return info


def video_info(clip: Clip) -> bitstream.VideoInfo:
    """The file's video info; a video the format cannot hold is refused before any training."""
    info = bitstream.VideoInfo(
        width=clip.width,
        height=clip.height,
        num_frames=clip.num_frames,
        fps_num=clip.fps.numerator,
        fps_den=clip.fps.denominator,
        pix_fmt=clip.pix_fmt,
        color_matrix=clip.color_matrix,
    )
    try:
        bitstream.check_video_info(info)
    except bitstream.HeaderError as exc:
        raise InputError(f"{clip.source}: {exc}") from None
    return info


def initial_model(config: EncodeConfig, num_frames: int, height: int, width: int, device: torch.device) -> VideoModel:
    """The untrained network an encode starts from: sized for the clip by ``config``, initialized from its
    seed (the same weights on every run and device)."""
    return build_model(size_model(width, height, num_frames, config), config.seed).to(device)


def plan_line(
    clip: Clip, model: VideoModel, config: EncodeConfig, asked_bpp: float, device: torch.device, plan: TimePlan | None
) -> str:
    """What an encode is about to do, in one line, as x265 says it before it starts."""
    num_frames = clip.num_frames
    steps = config.total_steps(num_frames)
    finetune = config.phase_steps(num_frames, finetune_fraction(config))
    effort = f"{steps:,} steps of {min(config.batch_size, num_frames)} frames"
    if plan is not None:
        effort += f" in --time {format_duration(config.time_budget or 0)} ({plan.line()})"
    elif config.steps is None:
        counted = config.pass_frames(num_frames)
        effort += f" ({config.epochs} passes" + (f" over {counted} frames)" if counted != num_frames else ")")
    target = f"target {config.target_bpp:g} bpp" if config.target_bpp is not None else f"~{asked_bpp:.2g} bpp"
    precision = "bf16" if trains_in_bf16(config.precision, device) else "fp32"
    return (
        f"{num_frames} frame{'s' if num_frames != 1 else ''} {clip.width}x{clip.height} at {float(clip.fps):.6g} fps"
        f" -> {config.arch}, {count_parameters(model):,} params; {effort} + {finetune:,} fine-tuning; {target};"
        f" {device.type} {precision}"
    )


def warn_if_rate_unreachable(config: EncodeConfig, parameters: int, clip: Clip) -> float:
    """The rate the encode aims at (the target, or else its network size's estimate); without a target,
    a warning when the network, at its smallest for the clip's picture (the architecture's least
    channels), codes well above it: its bits then spread over too few frames."""
    pixels = clip.width * clip.height * clip.num_frames
    asked = (
        config.target_bpp
        if config.target_bpp is not None
        else config.params_per_pixel * coded_bits_per_weight(config.bits)
    )
    smallest = parameters * coded_bits_per_weight(config.bits) / pixels
    if config.target_bpp is None and smallest > asked * UNREACHABLE:  # a target's miss is measured on its file
        log.warning(
            "%s: the smallest network for %dx%d (%s params) codes %s at about %.3f bpp, above the %.2g asked; %s",
            clip.source,
            clip.width,
            clip.height,
            f"{parameters:,}",
            f"{clip.num_frames} frame{'s' if clip.num_frames != 1 else ''}",
            smallest,
            asked,
            _how_to_land(clip, smallest / asked),
        )
    return asked


def _how_to_land(clip: Clip, excess: float) -> str:
    """What lands a rate that the smallest network misses by ``excess`` times: its size does not shrink
    with the frames, so its bits spread over more of them."""
    return f"about {math.ceil(clip.num_frames * excess):,} frames or more would land it"


class _Phases:
    """Runs an encode's training phases over its explicit state (``progress``: the checkpoint): a phase it
    records as finished (a resumed encode) is skipped, ``state`` continues the running one, ``plan`` ends
    phases on time, and a Ctrl-C during a step (``interrupt``) saves the checkpoint after it and stops."""

    def __init__(
        self,
        model: VideoModel,
        frames: torch.Tensor,
        config: EncodeConfig,
        progress: EncodeCheckpoint,
        state: FitState | None,
        plan: TimePlan | None,
        interrupt: DeferredInterrupt,
        progress_bar: bool,
        checkpoint_interval: float | None,
    ):
        self.model, self.frames, self.config, self.progress = model, frames, config, progress
        self.state, self.plan, self.interrupt = state, plan, interrupt
        self.num_frames = frames.shape[0]
        self.finetune_lr = config.peak_lr * config.finetune_lr
        self.checkpointing = checkpoint_interval is not None
        self.callbacks: list[FitCallback] = [*([ProgressBar()] if progress_bar else [])]
        if self.checkpointing:
            self.callbacks += [progress, SaveOnInterrupt(progress, interrupt)]

    def run(self, phase: Phase) -> None:
        config, progress = self.config, self.progress
        if any(r.phase == phase.name for r in progress.done):
            return
        finetune_steps = config.phase_steps(self.num_frames, finetune_fraction(config)) if phase.name == "train" else 0
        timing: list[FitCallback] = []
        if self.plan is not None:
            timing.append(Deadline(self.plan.end, finetune_steps))
        elif phase.name == "train" and self.state is None:
            timing.append(EncodeEstimate(finetune_steps))
        callbacks = [*self.callbacks, *timing]
        progress.done.append(fit(self.model, self.frames, phase, config, resume=self.state, callbacks=callbacks))
        self.state = None
        if self.checkpointing:
            progress.save()
        if self.interrupt.requested:  # a Ctrl-C after the phase's last step: stop at the checkpoint just saved
            raise KeyboardInterrupt


class Encoder:
    """Encodes clips with one configuration.

    >>> Encoder(resolve_config("fast")).encode(clip, "out.cam").stats.bpp   # doctest: +SKIP
    """

    def __init__(
        self,
        config: EncodeConfig | None = None,
        *,
        progress: bool = False,
        checkpoint_interval: float | None = None,
        resume: bool = True,
        overwrite: bool = True,
    ):
        """``checkpoint_interval``: seconds between checkpoints (``OUT.ckpt``; None: no checkpoints);
        ``resume``: continue from the checkpoint an interrupted encode of the same source and options left,
        when there is one (False: start again and replace it); ``overwrite``: replace a file at the output
        path (False: refuse it, before any work)."""
        self.config = config or resolve_config()
        self.config.validate()
        self.progress = progress
        self.checkpoint_interval = checkpoint_interval
        self.resume = resume
        self.overwrite = overwrite

    def encode(self, clip: Clip, out_path: str | os.PathLike) -> EncodeResult:
        start = time.perf_counter()
        config = self.config
        device = resolve_device(config.device)
        num_frames, height, width = clip.frames.shape[:3]
        pixels = width * height * num_frames
        info = checked_output(clip, out_path, self.overwrite)
        target_bytes = None
        if config.target_bpp is not None:
            target_bytes = int(config.target_bpp * pixels / 8)
            config = replace(config, params_per_pixel=params_for_target(config.target_bpp, config.bits))
        model = initial_model(config, num_frames, height, width, device)
        asked_bpp = warn_if_rate_unreachable(config, count_parameters(model), clip)
        log.debug("%s: model %s", clip.source, model.config.to_dict())

        def build(tensors: list[bitstream.QuantizedTensor]) -> bitstream.Container:
            return bitstream.Container(info, [bitstream.Segment(0, num_frames, model.config.to_dict(), tensors)])

        def write(tensors: list[bitstream.QuantizedTensor]) -> bytes:
            return bitstream.write_bytes(build(tensors))

        progress = EncodeCheckpoint(
            out_path,
            model,
            fingerprint(clip.frames, asdict(config), model.config.to_dict()),
            self.checkpoint_interval,
            trains_on=f"{device.type} {'bf16' if trains_in_bf16(config.precision, device) else 'fp32'}",
        )
        if config.rate_weight > 0:
            # Learned steps have no natural size of their own: without a target, they land the nominal rate.
            nominal_bpp = config.nominal_bpp(count_parameters(model), pixels)
            progress.rate = LearnedSteps(
                model, levels_for_bits(config.bits), channel_axes(model), nominal_bpp, config.rate_weight
            )
            target_bytes = int(nominal_bpp * pixels / 8)
        frames = frames_to_tensor(clip.frames, device)
        interrupt = DeferredInterrupt()
        try:
            with interrupt if self.checkpoint_interval is not None else contextlib.nullcontext():
                state = progress.load() if self.resume and progress.path.is_file() else None
                plan = self._plan(model, frames, config, progress, state, start)
                if plan is not None:
                    config = replace(config, steps=plan.steps)
                status.info("%s", plan_line(clip, model, config, asked_bpp, device, plan))
                self._optimize(model, frames, config, progress, target_bytes, write, state, plan, interrupt)
        except KeyboardInterrupt:
            if self.checkpoint_interval is not None and progress.path.is_file():
                raise EncodeInterrupted(
                    f"progress saved in {progress.path}; the same command continues from it"
                ) from None
            raise
        if progress.steps is None:
            assert progress.levels is not None, "the encoder finished without deciding the quantization"
            tensors = quantize_model(model, progress.levels)
        else:
            tensors = quantize_at(model, progress.steps, progress.deadzone)
        file_bytes = bitstream.write_file(out_path, build(tensors))
        levels = max(int(np.abs(t.symbols).max()) for t in tensors)

        # Measure what the written file decodes to, so the reported quality is the file's, not the model's.
        coded, psnr = check_file(out_path, clip, str(device))
        stats = EncodeStats(
            path=os.fspath(out_path),
            frames=num_frames,
            width=width,
            height=height,
            parameters=count_parameters(model),
            file_bytes=file_bytes,
            bpp=8 * file_bytes / pixels,
            psnr=psnr,
            bits=bits_for_levels(levels),
            levels=levels,
            prune=progress.ratio,
            target_bpp=config.target_bpp,
            asked_bpp=asked_bpp,
            phases=[asdict(p) for p in progress.done],
            encode_seconds=time.perf_counter() - start,
            device=str(device),
        )
        progress.remove()
        if config.target_bpp is not None and stats.bpp > config.target_bpp * TARGET_MISS:
            log.warning(
                "%s: landed %.4f bpp, above the target %g: the network cannot code smaller (%s)",
                clip.source,
                stats.bpp,
                config.target_bpp,
                _how_to_land(clip, stats.bpp / config.target_bpp),
            )
        log.info("encoded %s", stats.summary())
        return EncodeResult(stats, coded, str(device))

    @staticmethod
    def _plan(
        model: VideoModel,
        frames: torch.Tensor,
        config: EncodeConfig,
        progress: EncodeCheckpoint,
        state: FitState | None,
        started: float,
    ) -> TimePlan | None:
        """With a time budget, the training steps that fit it: planned from the step rate measured here,
        or the plan of the interrupted encode being continued (its clock counting the time it spent)."""
        budget = config.time_budget
        if budget is None:
            return None
        num_frames = frames.shape[0]
        if progress.plan is not None:
            steps, rate = progress.plan
            spent = sum(r.seconds for r in progress.done) + (state.seconds if state is not None else 0.0)
            return plan_for_time(budget, started - spent, rate, config, num_frames, steps=steps)
        rate = measure_step_rate(model, frames, config, progress.rate, budget)
        plan = plan_for_time(budget, started, rate, config, num_frames)
        progress.plan = (plan.steps, plan.steps_per_second)
        return plan

    def _optimize(
        self,
        model: VideoModel,
        frames: torch.Tensor,
        config: EncodeConfig,
        progress: EncodeCheckpoint,
        target_bytes: int | None,
        build: FileBuilder,
        state: FitState | None,
        plan: TimePlan | None,
        interrupt: DeferredInterrupt,
    ) -> None:
        """Train, then land the rate in one of two regimes: learned steps (``progress.rate``: the rate was in
        the loss) or max-abs steps with pruning. The weights left in ``model`` then quantize to the file's
        tensors at ``progress.steps`` (and dead zone) or ``progress.levels`` (pruned weights zeroed).

        ``progress`` is the encode's state: finished phases and rate decisions; resumed (``state``: the
        running phase's, None at a phase boundary), finished phases are skipped."""
        phases = _Phases(
            model, frames, config, progress, state, plan, interrupt, self.progress, self.checkpoint_interval
        )
        rate = progress.rate
        measured = None if rate is None else (lambda params: stepped_weights(rate.frozen())(params))
        phases.run(training_phase(config, config.total_steps(phases.num_frames), weights=measured, rate=rate))
        if rate is None:
            self._land_max_abs(phases, target_bytes, build)
        else:
            self._land_learned_steps(phases, rate, target_bytes, build)

    def _land_learned_steps(
        self, phases: _Phases, rate: LearnedSteps, target_bytes: int | None, build: FileBuilder
    ) -> None:
        """Learned steps: scale them to land the target once, fine-tune at them (QAT, paying for the bits),
        and land the target again when fine-tuning grew the file (``_reland``)."""
        model, config, progress = phases.model, phases.config, phases.progress
        if progress.steps is None:  # decide the rate once, on the trained network and its steps
            # with room for the fine-tuning's growth: a file that grows past the target is landed
            # again, which costs more than the room does (docs/architecture.md, 4)
            growth = FINETUNE_GROWTH if config.rate_control == 0 else 0.0
            room = None if target_bytes is None else int(target_bytes * (1 - growth))
            progress.steps = self._steps_for_target(model, rate.frozen(), room, build)
        if config.qat_fraction(None) > 0:
            steps = config.phase_steps(phases.num_frames, config.qat_fraction(None))
            phases.run(
                Phase("qat", steps, phases.finetune_lr, 0.0, stepped_weights(progress.steps), rate, progress.steps)
            )
            if target_bytes is not None:
                progress.steps, progress.deadzone = self._reland(
                    model, phases.frames, progress.steps, target_bytes, build
                )

    def _land_max_abs(self, phases: _Phases, target_bytes: int | None, build: FileBuilder) -> None:
        """Max-abs steps: the finest levels that land the target (pruning only when the coarsest does not),
        fine-tuning after pruning, then quantization-aware fine-tuning at those levels."""
        model, config, progress = phases.model, phases.config, phases.progress
        if progress.levels is None:  # decide the rate once, on the trained network
            progress.levels, progress.ratio = levels_for_bits(config.bits), config.prune
            if target_bytes is not None:
                progress.levels, progress.ratio = self._rate_for_target(model, target_bytes, build)
            progress.masks = magnitude_masks(model, progress.ratio) if progress.ratio > 0 else {}
        masks = progress.masks
        if masks and config.finetune > 0:
            steps = config.phase_steps(phases.num_frames, config.finetune)
            phases.run(Phase("prune", steps, phases.finetune_lr, 0.0, masked_weights(masks)))
        if config.qat_fraction(progress.levels) > 0:
            steps = config.phase_steps(phases.num_frames, config.qat_fraction(progress.levels))
            weights = quantized_weights(masks, progress.levels, channel_axes(model))
            phases.run(Phase("qat", steps, phases.finetune_lr, 0.0, weights))
        apply_masks(model, masks)

    @staticmethod
    def _steps_for_target(
        model: VideoModel, steps: dict[str, torch.Tensor], target_bytes: int | None, build: FileBuilder
    ) -> dict[str, torch.Tensor]:
        """``steps`` scaled by the common factor that lands the target (unchanged without one)."""
        if target_bytes is None:
            return steps
        return scaled_steps(steps, factor_for_target(model, steps, target_bytes, build)[0])

    @classmethod
    def _reland(
        cls,
        model: VideoModel,
        frames: torch.Tensor,
        steps: dict[str, torch.Tensor],
        target_bytes: int,
        build: FileBuilder,
    ) -> tuple[dict[str, torch.Tensor], float]:
        """(steps, dead zone) for the file after fine-tuning at ``steps``, which can grow it past the target.

        A file that fits keeps its steps: any other steps round the fine-tuned weights anew and lose what
        fine-tuning gained. A file past the target is brought back under it by the one of two ways whose
        weights render the higher PSNR: coarser steps, which round every weight anew, or a dead zone at the
        same steps, which takes a level off only the symbols nearest a rounding boundary. 0.5 % past the
        target, the dead zone lost 0.07-0.09 dB and coarser steps 0.3-0.4 (docs/architecture.md, 4)."""
        grown = len(build(quantize_at(model, steps)))
        if grown <= target_bytes:
            return steps, 0.0
        log.info("fine-tuning grew the file to %d bytes, past the target of %d", grown, target_bytes)
        deadzone, size = deadzone_for_target(model, steps, target_bytes, build)
        coarser = (cls._steps_for_target(model, steps, target_bytes, build), 0.0)
        if size > target_bytes:
            return coarser
        candidates = {"coarser steps": coarser, "a dead zone": (steps, deadzone)}
        sample = measured_frames(frames.shape[0])
        psnr = {way: evaluate_psnr(model, frames, stepped_weights(*c), indices=sample) for way, c in candidates.items()}
        best = max(psnr, key=lambda way: psnr[way])
        log.info("re-landed the target with %s (PSNR %s)", best, ", ".join(f"{w} {p:.2f}" for w, p in psnr.items()))
        return candidates[best]

    @staticmethod
    def _rate_for_target(model: VideoModel, target_bytes: int, build: FileBuilder) -> tuple[int, float]:
        """(levels, pruning ratio) that land the coded size at the target: the finest quantization step
        between ``MIN_TARGET_BITS`` and ``MAX_TARGET_BITS`` wide that fits; pruning only when even the
        coarsest does not."""
        levels, size = levels_for_target(
            model, levels_for_bits(MIN_TARGET_BITS), levels_for_bits(MAX_TARGET_BITS), target_bytes, build
        )
        if size <= target_bytes:
            return levels, 0.0
        ratio, _ = prune_for_target(model, levels, target_bytes, build)
        return levels, ratio
