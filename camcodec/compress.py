"""From a trained float network to the tensors in the file: pruning, quantization-aware fine-tuning,
and the choice of pruning that lands a target file size."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import torch

import bitstream
from camcodec.model.common import VideoModel
from camcodec.prune import magnitude_masks
from camcodec.quantize import ChannelAxis, fake_quantize, fake_quantize_at, quantize_at, quantize_model
from camcodec.rate import snapped
from camcodec.train import WeightMap

log = logging.getLogger(__name__)

Masks = dict[str, torch.Tensor]
# Builds the file's bytes from the quantized tensors, so sizes include every header and table.
FileBuilder = Callable[[list[bitstream.QuantizedTensor]], bytes]


def masked_weights(masks: Masks) -> WeightMap:
    """Forward with pruned weights held at zero (their gradients are zero too)."""

    def weights(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: p * masks[name] if name in masks else p for name, p in params.items()}

    return weights


def quantized_weights(masks: Masks, levels: int, axes: dict[str, ChannelAxis]) -> WeightMap:
    """Forward with exactly the weights the decoder will use; straight-through gradients.
    ``axes``: each parameter's output-channel axis (``quantize.channel_axes``)."""
    pruned = masked_weights(masks)

    def weights(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: fake_quantize(p, levels, axes[name]) for name, p in pruned(params).items()}

    return weights


def stepped_weights(steps: dict[str, torch.Tensor], deadzone: float = 0.0) -> WeightMap:
    """Forward with the weights the decoder will use at fixed (learned) steps and dead zone;
    straight-through gradients."""

    def weights(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: fake_quantize_at(p, steps[name], deadzone) for name, p in params.items()}

    return weights


def scaled_steps(steps: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    """Every step times ``factor``, on the grid of the file's steps (``rate.snapped``)."""
    return {name: snapped(step * factor) for name, step in steps.items()}


def smallest_fitting(
    size: Callable[[float], int], low: float, high: float, target_bytes: int, iterations: int
) -> tuple[float, int]:
    """The smallest x in [low, high] (0 < low) whose ``size(x)`` fits ``target_bytes``, for a size that falls
    as x grows: (x, size), bisected on log2 x; when even ``high`` codes too large, returns it and its size."""
    best = (high, size(high))
    if best[1] > target_bytes:
        return best
    log_low, log_high = math.log2(low), math.log2(high)
    for _ in range(iterations):
        log_mid = (log_low + log_high) / 2
        mid = 2.0**log_mid
        mid_size = size(mid)
        if mid_size <= target_bytes:
            log_high, best = log_mid, (mid, mid_size)
        else:
            log_low = log_mid
    return best


def factor_for_target(
    model: VideoModel,
    steps: dict[str, torch.Tensor],
    target_bytes: int,
    build: FileBuilder,
    span: float = 16.0,
    iterations: int = 14,
) -> tuple[float, int]:
    """The smallest common factor on ``steps`` (between ``1/span`` and ``span``) whose coded file fits
    ``target_bytes``: (factor, size), bisected in log scale on the real coded size; when even ``span``
    codes too large, returns it and its size."""

    def size(factor: float) -> int:
        return len(build(quantize_at(model, scaled_steps(steps, factor))))

    factor, best = smallest_fitting(size, 1 / span, span, target_bytes, iterations)
    log.info("steps x %.3f code to %d bytes for a target of %d", factor, best, target_bytes)
    return factor, best


# The narrowest dead zone tried: about float32's resolution of a symbol's fraction.
MIN_DEADZONE = 1e-8


def deadzone_for_target(
    model: VideoModel, steps: dict[str, torch.Tensor], target_bytes: int, build: FileBuilder, iterations: int = 16
) -> tuple[float, int]:
    """The narrowest dead zone (``quantize.symbols_at``, ``MIN_DEADZONE`` .. 1/2) at ``steps`` whose coded
    file fits ``target_bytes``: (dead zone, size); when even 1/2 codes too large, returns it and its size.

    Bisected on its logarithm: after fine-tuning many weights sit within 1e-5 of a rounding boundary,
    and every one moved costs quality, so the narrow end needs the finest resolution."""

    def size(deadzone: float) -> int:
        return len(build(quantize_at(model, steps, deadzone)))

    deadzone, best = smallest_fitting(size, MIN_DEADZONE, 0.5, target_bytes, iterations)
    log.info("a dead zone of %.2g codes to %d bytes for a target of %d", deadzone, best, target_bytes)
    return deadzone, best


def coded_size(model: VideoModel, masks: Masks, levels: int, build: FileBuilder) -> int:
    return len(build(quantize_model(model, levels, masks)))


def levels_for_target(model: VideoModel, low: int, high: int, target_bytes: int, build: FileBuilder) -> tuple[int, int]:
    """The finest quantization (most levels, in ``low .. high``) whose coded file fits ``target_bytes``:
    (levels, size). Bisects on the real coded size, which grows with the levels; when even ``low``
    codes too large, returns ``low`` and its size (pruning must then make up the rest)."""
    best = (low, coded_size(model, {}, low, build))
    if best[1] > target_bytes:
        return best
    too_large = high + 1  # the fewest levels known to code too large (high + 1: none known yet)
    while too_large - low > 1:
        mid = (low + too_large) // 2
        size = coded_size(model, {}, mid, build)
        if size <= target_bytes:
            low, best = mid, (mid, size)
        else:
            too_large = mid
    log.info("%d quantization levels code to %d bytes for a target of %d", best[0], best[1], target_bytes)
    return best


def prune_for_target(
    model: VideoModel, levels: int, target_bytes: int, build: FileBuilder, max_ratio: float = 0.9, iterations: int = 12
) -> tuple[float, int]:
    """The pruning ratio whose coded file comes closest to ``target_bytes`` without exceeding it.

    Bisects the global magnitude-pruning ratio on the real coded size of the current weights. When
    even the unpruned network codes smaller than the target, returns 0 and the size it codes to.
    """
    size = coded_size(model, {}, levels, build)
    if size <= target_bytes:
        return 0.0, size
    low, high = 0.0, max_ratio
    best = (max_ratio, coded_size(model, magnitude_masks(model, max_ratio), levels, build))
    for _ in range(iterations):
        mid = (low + high) / 2
        size = coded_size(model, magnitude_masks(model, mid), levels, build)
        if size <= target_bytes:
            high, best = mid, (mid, size)
        else:
            low = mid
    log.info("pruning %.3f codes to %d bytes for a target of %d", best[0], best[1], target_bytes)
    return best
