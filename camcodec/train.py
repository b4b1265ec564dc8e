"""Overfitting the network to one clip: the expensive half of encoding."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from camcodec.config import EncodeConfig
from camcodec.metrics import msssim
from camcodec.model import frame_times

log = logging.getLogger(__name__)


def lr_factor(progress: float, warmup: float) -> float:
    """Learning-rate multiplier at training progress in [0, 1): linear warm-up from 0.1, then cosine to 0."""
    if progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1-msssim":
        return 0.7 * F.l1_loss(pred, target) + 0.3 * (1 - msssim(pred, target))
    raise ValueError(f"unknown loss {kind!r}")


def frames_to_tensor(frames_uint8, device: torch.device) -> torch.Tensor:
    """uint8 (T, H, W, 3) numpy -> uint8 (T, 3, H, W) on ``device``; converted to float per batch."""
    return torch.from_numpy(frames_uint8).to(device).permute(0, 3, 1, 2).contiguous()


@dataclass
class TrainResult:
    steps: int
    frame_steps: int
    seconds: float
    psnr: float  # of the float model over the last pass, from the training MSE


def train(model: nn.Module, frames: torch.Tensor, config: EncodeConfig, *, progress: bool = False) -> TrainResult:
    """Fit ``model`` to ``frames`` (uint8, T x 3 x H x W, on the model's device) with Adam.

    Each step takes a batch of frames from a seeded permutation of all frames, so that every frame is
    seen once per pass; the learning rate follows ``lr_factor`` of the progress in [0, 1).
    """
    num_frames = frames.shape[0]
    device = frames.device
    total = config.total_steps(num_frames)
    batch = min(config.batch_size, num_frames)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.empty(0, dtype=torch.long)
    recent: list[float] = []  # per-step MSE over the last pass, for the PSNR shown and returned
    window = math.ceil(num_frames / batch)
    start = time.perf_counter()
    model.train()
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    for step in range(total):
        if len(order) < batch:
            order = torch.cat([order, torch.randperm(num_frames, generator=generator)])
        indices, order = order[:batch], order[batch:]
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step / total, config.warmup)
        target = frames[indices.to(device)].float().div_(255)
        pred = model(frame_times(indices.to(device), num_frames))
        loss = reconstruction_loss(pred, target, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        mse = loss.item() if config.loss == "mse" else F.mse_loss(pred.detach(), target).item()
        recent = (recent + [mse])[-window:]
        bar.update(1)
        if step % 10 == 0 or step == total - 1:
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{mse_to_psnr(sum(recent) / len(recent)):.2f}")
    bar.close()
    model.eval()
    seconds = time.perf_counter() - start
    psnr = mse_to_psnr(sum(recent) / max(len(recent), 1))
    log.info("trained %d steps (%d frame-steps) in %.1f s, float PSNR %.2f dB", total, total * batch, seconds, psnr)
    return TrainResult(steps=total, frame_steps=total * batch, seconds=seconds, psnr=psnr)


def mse_to_psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
