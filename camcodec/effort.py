"""An encode's effort in time: the step rate measured on this machine, the estimate of how long an encode
takes, and ``--time``: training steps planned from the measured rate, with deadlines that end a phase on
time should the machine slow down.

No NeRV-family codec offers this; x264 and x265 need nothing like it, since their effort per frame is
fixed. Here the effort is the number of training steps, and the time a step takes depends on the
machine, the network's size and the threads: measuring it is the only honest way to plan."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import torch

from camcodec import STATUS_LOGGER
from camcodec.config import EncodeConfig
from camcodec.model import VideoModel
from camcodec.quantize import levels_for_bits
from camcodec.rate import LearnedSteps
from camcodec.train import FitCallback, Phase, StepEvent, fit, training_phase
from camcodec.values import format_duration

log = logging.getLogger(__name__)
status = logging.getLogger(STATUS_LOGGER)

#: Steps not timed at the start of a phase: the first ones allocate memory and warm caches.
SKIPPED_STEPS = 2
#: The time-budget planning's calibration: at least this many timed steps, and this long at most (or
#: ``CALIBRATION_SHARE`` of the budget, whichever is less).
CALIBRATION_STEPS, CALIBRATION_SECONDS, CALIBRATION_SHARE = 4, 10.0, 0.02
#: The share of a time budget that planning keeps for what follows training: choosing the rate, writing
#: the file, decoding it to measure it. The deadlines keep ``WRAP_UP_SHARE`` of it (that work took 1-3 %).
RESERVE_SHARE, WRAP_UP_SHARE = 0.05, 0.02
#: Fine-tuning steps are planned at a training step's cost; a deadline keeps time for them at up to this
#: many times it (QAT ran at 49 steps/s against training's 50 on carphone at one thread, at 30 against 37 on
#: bunny 320x180 at two), so that training, not the fine-tuning that rounds the weights, is cut short.
FINETUNE_MARGIN = 1.3
#: The estimate of an encode's time is said once this much of its training has been timed.
ESTIMATE_AFTER_SECONDS, ESTIMATE_AFTER_STEPS = 5.0, 20
#: An encode shorter than this needs no estimate.
ESTIMATE_FROM_SECONDS = 30.0
#: An estimate this long is a warning, not a status line: people do not expect a codec to take hours.
HOURS = 3600.0


class StepRate(FitCallback):
    """Training steps per second of a phase, timed from its ``SKIPPED_STEPS``-th step on."""

    def __init__(self, synchronize: bool = False) -> None:
        """``synchronize``: wait for a GPU's queued work after each step, so that a short timing (the
        calibration) counts the work and not just its launch; a whole phase's timing does not need it, and
        a wait per training step would cost its speed."""
        self.synchronize = synchronize
        self.timed_steps = 0
        self.seconds = 0.0
        self.now = 0.0  # when the last step ended (time.perf_counter())
        self._since: float | None = None
        self._skipped = 0

    def begin(self, phase: Phase, first_step: int) -> None:
        self._since, self._skipped = None, 0

    def after_step(self, event: StepEvent) -> bool:
        if self.synchronize and event.loss.device.type == "cuda":
            torch.cuda.synchronize(event.loss.device)
        self.now = now = time.perf_counter()
        if self._since is not None:
            self.timed_steps += 1
            self.seconds += now - self._since
            self._since = now
        else:
            self._skipped += 1
            if self._skipped >= SKIPPED_STEPS:
                self._since = now
        return False

    @property
    def per_second(self) -> float | None:
        return self.timed_steps / self.seconds if self.timed_steps and self.seconds > 0 else None


def finetune_fraction(config: EncodeConfig) -> float:
    """The fine-tuning that follows training (QAT; after pruning too), as a fraction of training's steps."""
    if config.rate_weight > 0:
        return config.qat_fraction(None)
    pruning = config.finetune if config.prune > 0 else 0.0
    return pruning + config.qat_fraction(levels_for_bits(config.bits))


class EncodeEstimate(StepRate):
    """Says once, early in training, how long the encode will take: a status line, or a warning when it
    is hours (with how to bound it)."""

    def __init__(self, finetune_steps: int) -> None:
        super().__init__()
        self.finetune_steps = finetune_steps
        self.said = False

    def after_step(self, event: StepEvent) -> bool:
        if self.said:  # said once: nothing more to time
            return False
        super().after_step(event)
        rate = self.per_second
        if rate is None:
            return False
        if self.seconds < ESTIMATE_AFTER_SECONDS and self.timed_steps < ESTIMATE_AFTER_STEPS:
            return False
        self.said = True
        left = event.phase.steps - event.step + self.finetune_steps
        seconds = left / rate
        text = f"{rate:.2f} steps/s: about {format_duration(seconds)} to go"
        if seconds >= HOURS:
            log.warning("%s; this encode takes hours (--time 20m or --preset fast bound it)", text)
        elif seconds >= ESTIMATE_FROM_SECONDS:
            status.info("%s", text)
        return False


class Deadline(StepRate):
    """Ends a phase, with a warning, once the ``after_steps`` of fine-tuning that follow it would no longer
    fit before ``end`` (``time.perf_counter()``) at this phase's own measured step rate: the time budget is
    kept even when the machine runs slower than when the plan was made."""

    def __init__(self, end: float, after_steps: int = 0) -> None:
        super().__init__()
        self.at = end
        self.after_steps = after_steps

    def after_step(self, event: StepEvent) -> bool:
        super().after_step(event)
        rate = self.per_second
        after = self.after_steps * FINETUNE_MARGIN / rate if self.after_steps and rate else 0.0
        if event.last or self.now + after < self.at:
            return False
        log.warning(
            "%s: stopped at step %d of %d to keep to --time (the machine runs slower than planned)",
            event.phase.name,
            event.step,
            event.phase.steps,
        )
        return True


@dataclass(frozen=True)
class TimePlan:
    """Training steps that fit a time budget, and when the work they plan must end."""

    steps: int
    steps_per_second: float
    end: float  # time.perf_counter() by which training and fine-tuning end

    def line(self) -> str:
        return f"{self.steps:,} steps planned at the measured {self.steps_per_second:.2f} steps/s"


def measure_step_rate(
    model: VideoModel, frames: torch.Tensor, config: EncodeConfig, rate: LearnedSteps | None, budget: float
) -> float:
    """Steps per second of the encode's training on this machine, timed on a copy of the network (the
    encode itself is left untouched, so that it stays the same whatever the plan)."""
    trial_model, trial_rate = copy.deepcopy((model, rate))
    clock = StepRate(synchronize=True)
    limit = min(CALIBRATION_SECONDS, CALIBRATION_SHARE * budget)

    class _Enough(FitCallback):
        def after_step(self, event: StepEvent) -> bool:
            return clock.timed_steps >= CALIBRATION_STEPS and clock.seconds >= limit

    steps = 10_000  # an upper bound the callback never lets it reach
    phase = training_phase(config, steps, "calibrate", rate=trial_rate, measure=False)
    fit(trial_model, frames, phase, config, callbacks=[clock, _Enough()])
    assert clock.per_second is not None
    return clock.per_second


def plan_for_time(
    budget: float,
    started: float,
    steps_per_second: float,
    config: EncodeConfig,
    num_frames: int,
    steps: int | None = None,
) -> TimePlan:
    """The training steps that fit what is left of ``budget`` seconds since ``started`` (perf_counter),
    with the fine-tuning after them (``finetune_fraction``) and ``RESERVE_SHARE`` kept for the rest;
    ``steps`` given (a plan being continued), only its end."""
    end = started + budget * (1 - WRAP_UP_SHARE)
    if steps is not None:
        return TimePlan(steps, steps_per_second, end)
    left = started + budget * (1 - RESERVE_SHARE) - time.perf_counter()
    steps = max(1, math.floor(left * steps_per_second / (1 + finetune_fraction(config))))
    passes = steps / math.ceil(num_frames / config.batch_size)
    if passes < 1:
        log.warning(
            "--time %s allows %d training steps, less than one pass over the %d frames: expect a poor picture",
            format_duration(budget),
            steps,
            num_frames,
        )
    return TimePlan(steps, steps_per_second, end)
