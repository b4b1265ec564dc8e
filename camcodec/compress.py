"""From a trained float network to the tensors in the file: pruning, quantization-aware fine-tuning,
and the searches (steps factor, dead zone, levels, pruning) that land a target file size on an estimate
of it checked against a few coded files (``search_coded``)."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np
import torch

import bitstream
from camcodec.model.common import VideoModel
from camcodec.prune import magnitude_masks
from camcodec.quantize import (
    MAX_LEVELS,
    ChannelAxis,
    channel_axes,
    channel_scales,
    fake_quantize,
    fake_quantize_at,
    quantize_at,
    quantize_model,
    symbols_at,
)
from camcodec.rate import snapped
from camcodec.train import WeightMap

log = logging.getLogger(__name__)

Masks = dict[str, torch.Tensor]
# Builds the file's bytes from the quantized tensors, so sizes include every header and table.
FileBuilder = Callable[[list[bitstream.QuantizedTensor]], bytes]
T = TypeVar("T", int, float)


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


class FlatWeights:
    """A model's weights laid end to end, each element with the index of its tensor, so that the size
    estimate of a candidate quantization is a few operations over one vector: on the CPU, a few small
    operations per tensor cost more in dispatch than in arithmetic."""

    def __init__(self, model: VideoModel):
        state = model.state_dict()
        self.names = list(state)
        # on the CPU whatever the model's device: an estimate, and numpy counts the symbols
        self.values = torch.cat([v.detach().float().reshape(-1).cpu() for v in state.values()])
        self.sizes = [v.numel() for v in state.values()]
        self.tensor_index = np.repeat(np.arange(len(self.sizes)), self.sizes)

    def expanded(self, per_tensor: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Values given per tensor (one per output channel or one for all: steps) as one per element;
        a tensor that ``per_tensor`` does not name gets ones (masks)."""
        parts = []
        for name, size in zip(self.names, self.sizes, strict=True):
            value = per_tensor.get(name)
            value = torch.ones(1) if value is None else value.detach().reshape(-1).float().cpu()
            parts.append(value.repeat_interleave(size // value.numel()))
        return torch.cat(parts)

    def entropy_bytes(
        self,
        steps: Mapping[str, torch.Tensor],
        deadzone: float = 0.0,
        levels: int = MAX_LEVELS,
        masks: Masks | None = None,
    ) -> float:
        """The entropy in bytes of the symbols the file would hold at ``steps`` (``quantize.symbols_at``,
        pruned by ``masks``), each tensor under its own histogram: what its payloads cost, less what the
        frequency tables, headers and the coder's flush add (``search_coded``)."""
        values = self.values * self.expanded(masks) if masks else self.values
        symbols = symbols_at(values, self.expanded(steps), levels, deadzone).numpy().astype(np.int64)
        low = int(symbols.min())
        span = int(symbols.max()) - low + 1
        counts = np.bincount(self.tensor_index * span + (symbols - low))
        held = np.flatnonzero(counts)
        share = counts[held] / np.asarray(self.sizes)[held // span]
        return float(-(counts[held] * np.log2(share)).sum()) / 8


#: Rounds of ``search_coded``: searches on the estimate, each followed by one file coded.
MAX_ROUNDS = 5


def search_coded(
    search: Callable[[Callable[[T], int]], tuple[T, int]],
    entropy: Callable[[T], float],
    quantize: Callable[[T], list[bitstream.QuantizedTensor]],
    build: FileBuilder,
    target_bytes: int,
) -> tuple[T, int]:
    """What ``search`` (a bisection for ``target_bytes``, given a size function) finds on the coded file
    sizes of ``quantize(x)``, coding a few files instead of one per bisection step: (x, coded size).

    Each round bisects on an estimate, the symbols' entropy (``entropy(x)``: ``FlatWeights.entropy_bytes``)
    plus an offset for the frequency tables, headers and the coder's flush, codes the file it lands on,
    and measures the offset there. The offset moves little with the quantization (a few bytes up or down
    from one candidate to the next, 4 % of itself over a factor 2 in steps: docs/architecture.md, section
    16), so once it holds within ``settled_bytes`` between two rounds, the file found fits or misses by
    those few bytes, and the next round aims that much lower; a round that lands where the last one did
    codes nothing. Two to five files; a search that does not settle in ``MAX_ROUNDS`` returns the finest
    file it coded that fits, and one that coded none that fits runs on coded sizes, as it would without the estimate."""
    offset = 0.0  # coded size less the entropy, on the last file coded
    margin = 0  # how far under the target the estimate aims: what settled rounds missed by
    fitting: tuple[T, int] | None = None
    last = None

    def estimated(x: T, shift: float) -> int:
        return math.ceil(entropy(x) + shift)

    for _ in range(MAX_ROUNDS):
        x, _ = search(functools.partial(estimated, shift=offset + margin))
        if x == last:  # where the last round landed, with the offset measured there: its file is known
            if fitting is not None:
                return fitting
            break  # nothing coded fits: the search's end, which coding every step finds with one file
        estimate = entropy(x)
        size = len(build(quantize(x)))
        log.debug("at %g: estimated %d bytes, coded %d, target %d", x, math.ceil(estimate + offset), size, target_bytes)
        if size <= target_bytes and (fitting is None or size > fitting[1]):
            fitting = (x, size)
        if abs(size - estimate - offset) <= settled_bytes(target_bytes):
            if size <= target_bytes:
                return fitting or (x, size)
            margin += size - target_bytes
        offset, last = size - estimate, x
    if fitting is not None:
        log.debug("the size estimate did not settle in %d rounds: the finest file coded that fits", MAX_ROUNDS)
        return fitting
    log.debug("no file coded on the size estimate fits: coding every step of the search")
    return search(lambda v: len(build(quantize(v))))


def settled_bytes(target_bytes: int) -> int:
    """How far the size estimate's offset may move between two rounds of ``search_coded`` for its answer
    to stand: 0.1 % of the target (a few bytes on small files)."""
    return max(2, target_bytes // 1000)


def smallest_fitting(
    size: Callable[[float], int], low: float, high: float, target_bytes: int, iterations: int
) -> tuple[float, int]:
    """The smallest x in [low, high] (0 < low) whose ``size(x)`` fits ``target_bytes``, for a size that falls
    as x grows: (x, size), bisected on log2 x; when even ``high`` codes too large, returns it and its size."""
    best = (high, size(high))
    if best[1] > target_bytes:
        return best
    return bisected(size, math.log2(low), math.log2(high), best, target_bytes, iterations, lambda v: 2.0**v)


def bisected(
    size: Callable[[float], int],
    low: float,
    high: float,
    best: tuple[float, int],
    target_bytes: int,
    iterations: int,
    x_at: Callable[[float], float] = lambda v: v,
) -> tuple[float, int]:
    """Bisection of v in [low, high] towards the smallest x = ``x_at(v)`` whose ``size(x)`` fits ``target_bytes``,
    for a size that falls as v grows: (x, size) of the last fitting midpoint, ``best`` if none fits."""
    for _ in range(iterations):
        mid = (low + high) / 2
        mid_size = size(x_at(mid))
        if mid_size <= target_bytes:
            high, best = mid, (x_at(mid), mid_size)
        else:
            low = mid
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
    ``target_bytes``: (factor, size), bisected in log scale (``search_coded``); when even ``span`` codes
    too large, returns it and its size."""
    flat = FlatWeights(model)
    factor, best = search_coded(
        lambda size: smallest_fitting(size, 1 / span, span, target_bytes, iterations),
        lambda factor: flat.entropy_bytes(scaled_steps(steps, factor)),
        lambda factor: quantize_at(model, scaled_steps(steps, factor)),
        build,
        target_bytes,
    )
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
    flat = FlatWeights(model)
    deadzone, best = search_coded(
        lambda size: smallest_fitting(size, MIN_DEADZONE, 0.5, target_bytes, iterations),
        lambda deadzone: flat.entropy_bytes(steps, deadzone),
        lambda deadzone: quantize_at(model, steps, deadzone),
        build,
        target_bytes,
    )
    log.info("a dead zone of %.2g codes to %d bytes for a target of %d", deadzone, best, target_bytes)
    return deadzone, best


def max_abs_steps(
    params: Mapping[str, torch.Tensor], levels: int, axes: dict[str, ChannelAxis]
) -> dict[str, torch.Tensor]:
    """The steps ``quantize.quantize_model`` quantizes each tensor with at ``levels``: max |w| / levels."""
    return {name: channel_scales(p, levels, axes[name]) for name, p in params.items()}


def most_levels_fitting(size: Callable[[int], int], low: int, high: int, target_bytes: int) -> tuple[int, int]:
    """The most levels in ``low .. high`` whose ``size`` fits ``target_bytes``, for a size that grows with
    the levels: (levels, size); when even ``low`` codes too large, returns it and its size."""
    best = (low, size(low))
    if best[1] > target_bytes:
        return best
    too_large = high + 1  # the fewest levels known to code too large (high + 1: none known yet)
    while too_large - low > 1:
        mid = (low + too_large) // 2
        mid_size = size(mid)
        if mid_size <= target_bytes:
            low, best = mid, (mid, mid_size)
        else:
            too_large = mid
    return best


def levels_for_target(model: VideoModel, low: int, high: int, target_bytes: int, build: FileBuilder) -> tuple[int, int]:
    """The finest quantization (most levels, in ``low .. high``) whose coded file fits ``target_bytes``:
    (levels, size) (``search_coded``); when even ``low`` codes too large, returns ``low`` and its size
    (pruning must then make up the rest)."""
    flat, axes = FlatWeights(model), channel_axes(model)
    params = dict(model.state_dict())
    best = search_coded(
        lambda size: most_levels_fitting(size, low, high, target_bytes),
        lambda levels: flat.entropy_bytes(max_abs_steps(params, levels, axes), levels=levels),
        lambda levels: quantize_model(model, levels),
        build,
        target_bytes,
    )
    log.info("%d quantization levels code to %d bytes for a target of %d", best[0], best[1], target_bytes)
    return best


def least_pruning_fitting(
    size: Callable[[float], int], max_ratio: float, target_bytes: int, iterations: int
) -> tuple[float, int]:
    """The smallest pruning ratio in 0 .. ``max_ratio`` whose ``size`` fits ``target_bytes``, bisected, for a
    size that falls as the ratio grows: (ratio, size); when even ``max_ratio`` codes too large, returns it
    and its size."""
    unpruned = size(0.0)
    if unpruned <= target_bytes:
        return 0.0, unpruned
    return bisected(size, 0.0, max_ratio, (max_ratio, size(max_ratio)), target_bytes, iterations)


def prune_for_target(
    model: VideoModel, levels: int, target_bytes: int, build: FileBuilder, max_ratio: float = 0.9, iterations: int = 12
) -> tuple[float, int]:
    """The global magnitude-pruning ratio whose coded file comes closest to ``target_bytes`` without
    exceeding it, at ``levels`` (``search_coded``). When even the unpruned network codes smaller than the
    target, returns 0 and the size it codes to."""
    flat, axes = FlatWeights(model), channel_axes(model)
    params = dict(model.state_dict())

    def masks(ratio: float) -> Masks:
        return magnitude_masks(model, ratio) if ratio > 0 else {}

    def entropy(ratio: float) -> float:
        kept = masks(ratio)
        pruned = {name: p * kept[name] if name in kept else p for name, p in params.items()}
        return flat.entropy_bytes(max_abs_steps(pruned, levels, axes), levels=levels, masks=kept)

    best = search_coded(
        lambda size: least_pruning_fitting(size, max_ratio, target_bytes, iterations),
        entropy,
        lambda ratio: quantize_model(model, levels, masks(ratio)),
        build,
        target_bytes,
    )
    log.info("pruning %.3f codes to %d bytes for a target of %d", best[0], best[1], target_bytes)
    return best
