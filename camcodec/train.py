"""Overfitting the network to one clip: the expensive half of encoding."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm.auto import tqdm

from camcodec.config import EncodeConfig
from camcodec.device import freed_cpu_memory_kept, trains_in_bf16
from camcodec.metrics import msssim
from camcodec.model import VideoModel, frame_times
from camcodec.optim import make_optimizer
from camcodec.rate import LearnedSteps

log = logging.getLogger(__name__)


def lr_factor(progress: float, warmup: float) -> float:
    """Learning-rate multiplier at training progress in [0, 1): linear warm-up from 0.1, then cosine to 0."""
    if progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


MSE_FLOOR = 1e-10  # 100 dB: far below what 8-bit output can show
#: A phase's PSNR (and the re-landing's comparison) renders at most this many frames: on a long clip each
#: render of every frame cost minutes (280 frames of 720p: ~10 min at 1.9 M parameters; docs/architecture.md,
#: 13). The file's PSNR is still measured on every frame it decodes to.
MEASURED_FRAMES = 32


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The distortion a step minimizes, and the batch's MSE (detached, for the progress) from the same pass.

    ``log-mse``, the mean of each frame's log MSE, weighs the frames as the mean per-frame PSNR the codec
    reports does (MSE weighs the worst ones most); a frame rendered exactly (a black frame under a
    saturated sigmoid) counts at ``MSE_FLOOR``, not as -inf."""
    if kind == "mse":
        mse = F.mse_loss(pred, target)
        return mse, mse.detach()
    if kind == "log-mse":
        per_frame = (pred - target).pow(2).flatten(1).mean(dim=1)
        return per_frame.clamp_min(MSE_FLOOR).log().mean(), per_frame.detach().mean()
    if kind == "l1-msssim":
        loss = 0.7 * F.l1_loss(pred, target) + 0.3 * (1 - msssim(pred, target))
        return loss, F.mse_loss(pred.detach(), target)
    raise ValueError(f"unknown loss {kind!r}")


def frames_to_tensor(frames_uint8, device: torch.device) -> torch.Tensor:
    """uint8 (T, H, W, 3) numpy -> uint8 (T, 3, H, W) on ``device``; converted to float per batch."""
    return torch.from_numpy(frames_uint8).to(device).permute(0, 3, 1, 2).contiguous()


def parameter_groups(model: VideoModel, grid_lr: float) -> list[dict]:
    """The optimizer's parameter groups, each with its learning-rate ``scale``: the model's latent grids (the
    ``latent_grids()`` it names, if any) learn ``grid_lr`` times faster than its weights; SOAP preconditions
    the weights' matrices (``precondition``), not the grids."""
    grids = set(model.latent_grids())
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if n not in grids], "scale": 1.0, "precondition": True},
        {"params": [p for n, p in named if n in grids], "scale": grid_lr, "precondition": False},
    ]
    return [group for group in groups if group["params"]]


def rate_term(
    distortion: torch.Tensor, bpp: torch.Tensor, kappa: torch.Tensor, nominal_bpp: float, loss: str
) -> torch.Tensor:
    """``kappa x bpp / nominal_bpp`` in the units of the distortion loss: added to a logarithmic one
    (``log-mse``) as it is; to a linear one, times D held constant, whose gradient is then that of
    ``D x (ln D + kappa x bpp / nominal_bpp)``. Either way kappa is the slope -d ln D / d(bpp / nominal_bpp)
    the training settles at, the same for every clip and rate unless it is steered (``steer_kappa``;
    docs/architecture.md)."""
    scale = 1.0 if loss == "log-mse" else distortion.detach()
    return kappa * scale * bpp / nominal_bpp


# Fine-tuning at fixed steps drifts its rate by ~1 % over its steps, without noise, so a hold needs a
# stronger gain than learning does (at --rate-control 0.005 carphone's file shrank 1.4 %; at 0.1, 0.65 %).
HOLD_GAIN = 0.1

WeightMap = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Phase:
    """One stretch of optimization: plain training, fine-tuning after pruning, or quantization-aware.

    ``weights`` maps the model's parameters to the tensors the forward pass uses (masked, fake-quantized);
    None uses the parameters as they are. With ``rate``, training sees the weights with quantization
    noise at its learned steps and pays for their estimated bits (``camcodec.rate``, ``rate_term``), from
    ``config.rate_from`` of its steps on; with ``fixed_steps`` too, it sees the weights rounded at those
    fixed steps (straight-through) and still pays for the bits. ``weights`` then only gives what the
    phase's PSNR is measured with.
    """

    name: str
    steps: int
    lr: float
    warmup: float = 0.0
    weights: WeightMap | None = None
    rate: LearnedSteps | None = None
    fixed_steps: dict[str, torch.Tensor] | None = None  # with rate: rounding at these, straight-through
    measure: bool = True  # end by measuring the PSNR (of ``measured_frames``; False: a trial that only times steps)
    optimizer: str = "adam"  # ``camcodec.optim.OPTIMIZERS``


def training_phase(config: EncodeConfig, steps: int, name: str = "train", **more: Any) -> Phase:
    """The main training phase as ``config`` sets it (peak learning rate, warm-up, optimizer), or a trial
    of it (``name``); ``more``: the other ``Phase`` fields."""
    return Phase(name, steps, config.peak_lr, config.warmup, optimizer=config.optimizer, **more)


@dataclass
class TrainResult:
    phase: str
    steps: int
    frame_steps: int
    seconds: float
    psnr: float  # RGB PSNR of ``measured_frames``, rounded to 8 bits, with the weights it trained (nan: unmeasured)


@dataclass
class FitState:
    """Everything besides the model's weights that a phase needs to continue exactly where it stopped."""

    step: int  # steps done
    optimizer: dict
    generator: torch.Tensor
    noise: torch.Tensor  # state of the quantization-noise generator (rate in the loss)
    held_bpp: float | None  # fixed steps with rate control: the estimated rate kappa is steered to hold
    order: torch.Tensor  # frames still to visit in the current pass
    recent: torch.Tensor  # per-step MSE of the last pass
    seconds: float


@dataclass
class StepEvent:
    """What a callback sees after a training step."""

    phase: Phase
    step: int  # steps done in the phase, this one included
    loss: torch.Tensor  # this step's loss, on the device (``.item()`` waits for it)
    recent_mse: torch.Tensor  # per-step MSE over the last pass of steps, on the device
    state: Callable[[], FitState]  # the state a resumed ``fit`` would continue from after this step

    @property
    def last(self) -> bool:
        return self.step == self.phase.steps


class FitCallback:
    """A hook into ``fit``: ``begin`` before the first step, ``after_step`` after each (a true return
    ends the phase there), ``end`` when the phase ends, by finishing, stopping or an exception."""

    def begin(self, phase: Phase, first_step: int) -> None:
        pass

    def after_step(self, event: StepEvent) -> bool:
        return False

    def end(self) -> None:
        pass


class ProgressBar(FitCallback):
    """A tqdm bar over the phase's steps, with the loss and the PSNR of the last pass of steps."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def begin(self, phase: Phase, first_step: int) -> None:
        self.bar = tqdm(total=phase.steps, initial=first_step, desc=phase.name, unit="step", dynamic_ncols=True)

    def after_step(self, event: StepEvent) -> bool:
        assert self.bar is not None
        self.bar.update(1)
        if event.step % 25 == 1 or event.last:
            psnr = mse_to_psnr(event.recent_mse.mean().item())
            self.bar.set_postfix(loss=f"{event.loss.item():.4f}", psnr=f"{psnr:.2f}")
        return False

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(
    model: VideoModel,
    frames: torch.Tensor,
    phase: Phase,
    config: EncodeConfig,
    *,
    resume: FitState | None = None,
    callbacks: Sequence[FitCallback] = (),
) -> TrainResult:
    """Fit ``model`` to ``frames`` (uint8, T x 3 x H x W, on the model's device) with ``phase.optimizer``.

    Each step takes a batch of frames from a seeded permutation of all frames, so that every frame is
    seen once per pass; the learning rate follows ``lr_factor`` of the progress in [0, 1). ``callbacks``
    observe every step and may end the phase early (progress bars, checkpoints, the benchmark's clocks);
    ``resume`` continues from a saved state, and then gives the same weights as an uninterrupted run.
    """
    with freed_cpu_memory_kept(frames.device):
        return _fit(model, frames, phase, config, resume, callbacks)


def _fit(
    model: VideoModel,
    frames: torch.Tensor,
    phase: Phase,
    config: EncodeConfig,
    resume: FitState | None,
    callbacks: Sequence[FitCallback],
) -> TrainResult:
    num_frames = frames.shape[0]
    device = frames.device
    batch = min(config.batch_size, num_frames)
    bf16 = trains_in_bf16(config.precision, device)
    groups = parameter_groups(model, config.grid_lr)
    if phase.rate is not None and phase.fixed_steps is None:
        groups.append({"params": list(phase.rate.parameters()), "scale": 1.0, "precondition": False})
    optimizer = make_optimizer(phase.optimizer, groups, phase.lr, (0.9, config.beta2))
    generator = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)
    pixels = frames[0].numel() // 3 * num_frames
    rate_from = round(config.rate_from * phase.steps)  # training sees noise and pays for bits from here
    order = torch.empty(0, dtype=torch.long)
    window = math.ceil(num_frames / batch)
    recent = torch.zeros(window, device=device)  # per-step MSE of the last pass, kept on the device
    first, earlier_seconds, held_bpp = 0, 0.0, None
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        generator.set_state(resume.generator)
        noise.set_state(resume.noise)
        order, recent = resume.order.clone(), resume.recent.to(device)
        first, earlier_seconds, held_bpp = resume.step, resume.seconds, resume.held_bpp
    start = time.perf_counter() - earlier_seconds

    def state_after(step: int) -> FitState:
        return FitState(
            step,
            optimizer.state_dict(),
            generator.get_state(),
            noise.get_state(),
            held_bpp,
            order.clone(),
            recent.cpu(),
            time.perf_counter() - start,
        )

    model.train()
    for callback in callbacks:
        callback.begin(phase, first)
    done, bits = first, None
    try:
        for step in range(first, phase.steps):
            if len(order) < batch:
                order = torch.cat([order, torch.randperm(num_frames, generator=generator)])
            indices, order = order[:batch].to(device), order[batch:]
            for group in optimizer.param_groups:
                group["lr"] = phase.lr * group["scale"] * lr_factor(step / phase.steps, phase.warmup)
            target = frames[indices].float().div_(255)
            times = frame_times(indices, num_frames)
            if phase.rate is not None and phase.fixed_steps is None and step == rate_from > 0:
                phase.rate.restart(model)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                pred, bits = phase_forward(model, phase, times, step >= rate_from, noise)
            pred = pred.float()
            distortion, mse = reconstruction_loss(pred, target, config.loss)
            loss, bpp = distortion, None
            if bits is not None and phase.rate is not None:
                estimated_bpp = bits / pixels
                kappa, nominal = phase.rate.kappa, phase.rate.nominal_bpp
                loss = distortion + rate_term(distortion, estimated_bpp, kappa, nominal, config.loss)
                bpp = estimated_bpp.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if bpp is not None and config.rate_control > 0:
                held_bpp = steer_kappa(phase, bpp, config.rate_control, held_bpp)
            recent[step % window] = mse
            done = step + 1
            event = StepEvent(phase, done, loss.detach(), recent[: min(done, window)], partial(state_after, done))
            stops = [callback.after_step(event) for callback in callbacks]  # every callback sees the step
            if any(stops):
                break
    finally:
        for callback in callbacks:
            callback.end()
    model.eval()
    seconds = time.perf_counter() - start
    measured = measured_frames(num_frames)
    psnr = evaluate_psnr(model, frames, phase.weights, indices=measured) if phase.measure else math.nan
    log.info(
        "%s: %d steps (%d frame-steps, %s) in %.1f s, PSNR %.2f dB%s",
        phase.name,
        done,
        done * batch,
        "bf16" if bf16 else "fp32",
        seconds,
        psnr,
        "" if len(measured) == num_frames else f" ({len(measured)} of {num_frames} frames)",
    )
    if bits is not None and phase.rate is not None:
        log.info(
            "%s: %.4f bpp estimated (nominal %.4f), kappa %.3f",
            phase.name,
            bits.item() / pixels,
            phase.rate.nominal_bpp,
            phase.rate.kappa.item(),
        )
    return TrainResult(phase.name, done, done * batch, seconds, psnr)


def steer_kappa(phase: Phase, bpp: torch.Tensor, gain: float, held_bpp: float | None) -> float | None:
    """Steer the rate term's kappa (``LearnedSteps.steer``) after a step that estimated ``bpp``: by
    ``gain`` towards the nominal rate while the steps are learned; with fixed steps, by ``HOLD_GAIN``
    towards holding the rate of the first step, so that fine-tuning neither grows the file past its landed
    size nor leaves its bits unused. Returns the rate held (for the next step)."""
    assert phase.rate is not None
    if phase.fixed_steps is None:
        phase.rate.steer(bpp, gain, phase.rate.nominal_bpp)
        return None
    if held_bpp is None:
        held_bpp = bpp.item()
    phase.rate.steer(bpp, HOLD_GAIN, held_bpp)
    return held_bpp


def phase_forward(
    model: VideoModel, phase: Phase, times: torch.Tensor, noisy: bool, noise: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The phase's prediction for ``times`` and, when the phase pays for the rate, the estimated bits
    (``noisy``: the rate phase has started to see quantization noise)."""
    params = dict(model.named_parameters())
    if phase.rate is not None and phase.fixed_steps is not None:
        weights, bits = phase.rate.rounded(params, phase.fixed_steps)
    elif phase.rate is not None and noisy:
        weights, bits = phase.rate.noisy(params, noise)
    elif phase.weights is not None:
        weights, bits = phase.weights(params), None
    else:
        return model(times), None
    return functional_call(model, weights, (times,)), bits


def measured_frames(num_frames: int, most: int = MEASURED_FRAMES) -> list[int]:
    """The frames a phase's PSNR is measured on: all of a clip of up to ``most`` frames, else ``most`` evenly
    spaced ones, first and last included."""
    if num_frames <= most:
        return list(range(num_frames))
    return [round(k * (num_frames - 1) / (most - 1)) for k in range(most)]


@torch.no_grad()
def evaluate_psnr(
    model: VideoModel,
    frames: torch.Tensor,
    weights: WeightMap | None = None,
    batch: int = 8,
    indices: Sequence[int] | None = None,
) -> float:
    """Mean per-frame RGB PSNR of the model's 8-bit output (the codec's metric) over the frames at
    ``indices`` (all frames by default)."""
    num_frames = frames.shape[0]
    chosen = torch.arange(num_frames) if indices is None else torch.as_tensor(list(indices), dtype=torch.long)
    params = weights(dict(model.named_parameters())) if weights is not None else None
    total = 0.0
    for group in chosen.to(frames.device).split(batch):
        times = frame_times(group, num_frames)
        pred = model(times) if params is None else functional_call(model, params, (times,))
        diff = pred.clamp(0, 1).mul(255).round() - frames[group].float()
        mse = diff.double().pow(2).flatten(1).mean(dim=1)
        total += (10 * torch.log10(255.0**2 / mse)).sum().item()
    return total / len(chosen)


def mse_to_psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
