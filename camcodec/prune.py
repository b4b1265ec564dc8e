"""Global magnitude pruning of the network's conv and linear weights.

A pruned weight is simply zero: it is quantized to the symbol 0 and entropy-coded like any other
symbol, so the file needs no mask. Biases and CAM grids are never pruned.
"""

from __future__ import annotations

import torch
from torch import nn


def prunable_names(model: nn.Module) -> list[str]:
    """Parameter names of every Conv2d and Linear weight."""
    return [
        f"{module_name}.weight" if module_name else "weight"
        for module_name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]


def magnitude_masks(model: nn.Module, ratio: float) -> dict[str, torch.Tensor]:
    """Boolean keep-masks that zero the ``ratio`` smallest-magnitude prunable weights, counted globally."""
    if not 0 <= ratio < 1:
        raise ValueError(f"prune ratio must be in [0, 1), got {ratio}")
    params = dict(model.named_parameters())
    names = prunable_names(model)
    magnitudes = torch.cat([params[n].detach().abs().flatten() for n in names])
    count = round(ratio * magnitudes.numel())
    if count == 0:
        return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
    threshold = magnitudes.kthvalue(count).values
    masks = {n: params[n].detach().abs() > threshold for n in names}
    # Ties at the threshold could prune a few more than asked; that is at most a handful of weights.
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


def sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros among the prunable weights."""
    params = dict(model.named_parameters())
    names = prunable_names(model)
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    return zeros / sum(params[n].numel() for n in names)
