"""Checkpoints of an encode in progress, so that an interrupted encode can be resumed.

The checkpoint sits next to the output as ``OUT.ckpt``, is replaced atomically, and is removed once
the .cam file is written. It is tied to one encode by a fingerprint of the source frames, the options
and the model config: resuming with anything changed is refused rather than mixing two encodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bitstream.files import atomic_open
from camcodec.errors import InputError
from camcodec.interrupt import DeferredInterrupt
from camcodec.rate import LearnedSteps
from camcodec.train import FitCallback, FitState, Phase, StepEvent, TrainResult

log = logging.getLogger(__name__)


def fingerprint(frames: np.ndarray, options: dict, model_config: dict) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(
        json.dumps(
            {"options": options, "model": model_config, "shape": frames.shape}, sort_keys=True, default=str
        ).encode()
    )
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


class EncodeCheckpoint(FitCallback):
    """Saves the model, the finished phases and the running phase's state at most every ``interval`` s
    (as a ``fit`` callback: after a step, when due; None: never while training)."""

    def __init__(
        self,
        out_path: str | os.PathLike,
        model: nn.Module,
        fingerprint: str,
        interval: float | None = 60.0,
        trains_on: str = "cpu fp32",
    ):
        """``trains_on``: the device type and precision the training resolved to here (``auto`` resolves
        per machine); a checkpoint of another is refused, since its continuation would differ."""
        self.path = Path(f"{os.fspath(out_path)}.ckpt")
        self.model = model
        self.fingerprint = fingerprint
        self.trains_on = trains_on
        self.interval = interval
        self.done: list[TrainResult] = []  # phases finished
        self.levels: int | None = None  # quantization levels, set once training is done and the rate is decided
        self.ratio = 0.0
        self.masks: dict[str, torch.Tensor] = {}
        self.rate: LearnedSteps | None = None  # steps learned with the network (rate in the loss), if any
        self.steps: dict[str, torch.Tensor] | None = None  # the file's steps, once decided from ``rate``
        self.deadzone = 0.0  # the file's dead zone at ``steps`` (not saved: decided after the last phase)
        self.plan: tuple[int, float] | None = None  # with a time budget: (training steps, steps/s measured)
        self._last = time.monotonic()

    def due(self) -> bool:
        return self.interval is not None and time.monotonic() - self._last >= self.interval

    def after_step(self, event: StepEvent) -> bool:
        if not event.last and self.due():
            self.save(event.state())
        return False

    def save(self, state: FitState | None = None) -> None:
        """Write the checkpoint atomically; ``state`` is the running phase's, None at a phase boundary."""
        payload = {
            "fingerprint": self.fingerprint,
            "trains_on": self.trains_on,
            "model": self.model.state_dict(),
            "done": [asdict(r) for r in self.done],
            "levels": self.levels,
            "ratio": self.ratio,
            "masks": self.masks,
            "rate": self.rate.state_dict() if self.rate is not None else None,
            "steps": self.steps,
            "plan": self.plan,
            "fit": asdict(state) if state is not None else None,
        }
        with atomic_open(self.path) as handle:
            torch.save(payload, handle)
        self._last = time.monotonic()
        log.debug("checkpoint saved: %d phases done, step %s", len(self.done), state.step if state else "-")

    def load(self) -> FitState | None:
        """Restore a saved encode into this one; returns the running phase's state (None at a boundary).

        Raises InputError when there is no checkpoint to resume, it is unreadable, or it belongs to
        another encode.
        """
        if not self.path.is_file():
            raise InputError(f"{self.path}: no checkpoint to resume")
        try:
            payload: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=True)
            if payload["fingerprint"] != self.fingerprint:
                raise InputError(
                    f"{self.path}: checkpoint of a different encode (source or options changed); "
                    "--no-resume starts again and replaces it (resume=False)"
                )
            began = payload.get("trains_on", self.trains_on)
            if began != self.trains_on:
                raise InputError(
                    f"{self.path}: this encode began training on {began}, here it would go on in "
                    f"{self.trains_on}; give --device and --precision to match, or --no-resume starts again"
                )
            self.model.load_state_dict(payload["model"])
            self.done = [TrainResult(**r) for r in payload["done"]]
            self.levels, self.ratio, self.masks = payload["levels"], payload["ratio"], payload["masks"]
            if self.rate is not None:
                self.rate.load_state_dict(payload["rate"])
            self.steps = payload["steps"]
            self.plan = payload.get("plan")
            state = FitState(**payload["fit"]) if payload["fit"] is not None else None
        except InputError:
            raise
        except Exception as exc:  # a damaged checkpoint: any unpickling or key error
            raise InputError(
                f"{self.path}: unreadable checkpoint ({type(exc).__name__}); --no-resume starts again and replaces it"
            ) from None
        device = next(self.model.parameters()).device
        self.masks = {name: mask.to(device) for name, mask in self.masks.items()}
        if self.steps is not None:
            self.steps = {name: step.to(device) for name, step in self.steps.items()}
        log.info("resuming after %d finished phases%s", len(self.done), f", step {state.step}" if state else "")
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class SaveOnInterrupt(FitCallback):
    """Makes a Ctrl-C during training wait for the step to end (``DeferredInterrupt``), then saves the
    checkpoint at that step and stops the encode with KeyboardInterrupt."""

    def __init__(self, checkpoint: EncodeCheckpoint, interrupt: DeferredInterrupt) -> None:
        self.checkpoint = checkpoint
        self.interrupt = interrupt

    def begin(self, phase: Phase, first_step: int) -> None:
        self.interrupt.deferring = True

    def after_step(self, event: StepEvent) -> bool:
        if self.interrupt.requested:
            self.interrupt.deferring = False
            self.checkpoint.save(event.state())
            raise KeyboardInterrupt
        return False

    def end(self) -> None:
        self.interrupt.deferring = False
