"""Weight quantization: model parameters <-> the quantized tensors stored in the file.

Per-output-channel symmetric uniform quantization: for a tensor with output channels along axis 0,
``scale_c = max|w_c| / (2^(bits-1) - 1)`` and ``q = round(w / scale_c)``. Tensors with few values per
channel (biases, CAM grids, the stem's wide linear layer) use one scale for the whole tensor: a
float32 scale costs 32 bits in the file, more than it saves there. The decoder's weights are
``q * scale`` in float32 (``bitstream.QuantizedTensor.dequantize``); quantization-aware training
evaluates exactly the same values with ``fake_quantize``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bitstream import QuantizedTensor


MIN_VALUES_PER_SCALE = 128


def per_channel(shape: torch.Size | tuple[int, ...]) -> bool:
    """Whether a tensor of this shape gets one scale per output channel (axis 0)."""
    return len(shape) > 1 and math.prod(shape[1:]) >= MIN_VALUES_PER_SCALE


def channel_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """float32 step sizes, one per output channel or one for all (see ``per_channel``); zeros become 1."""
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    peak = w.abs().flatten(1).max(dim=1).values if per_channel(w.shape) else w.abs().max().reshape(1)
    scales = peak / levels
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def _broadcast(scales: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return scales.view(-1, *([1] * (weight.dim() - 1))) if per_channel(weight.shape) else scales


def quantization_symbols(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer-valued float32 symbols, scales) of a tensor."""
    scales = channel_scales(weight, bits)
    levels = 2 ** (bits - 1) - 1
    symbols = torch.round(weight.detach().float() / _broadcast(scales, weight)).clamp(-levels, levels)
    return symbols, scales


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The dequantized weight in the forward pass, the identity in the backward (straight-through)."""
    symbols, scales = quantization_symbols(weight, bits)
    dequantized = symbols * _broadcast(scales, weight)
    # d + (w - w) is exactly d in the forward (w + (d - w) would not be), with the gradient of w.
    return dequantized + (weight - weight.detach())


def quantize_tensor(name: str, weight: torch.Tensor, bits: int) -> QuantizedTensor:
    symbols, scales = quantization_symbols(weight, bits)
    return QuantizedTensor(
        name=name,
        symbols=symbols.cpu().numpy().astype(np.int32),
        scales=scales.cpu().numpy().astype(np.float32),
        bits=bits,
    )


def quantize_model(model: nn.Module, bits: int, masks: dict[str, torch.Tensor] | None = None) -> list[QuantizedTensor]:
    """Every parameter of the model, in ``state_dict`` order, as a quantized tensor (pruned where masked)."""
    masks = masks or {}
    return [
        quantize_tensor(name, value * masks[name] if name in masks else value, bits)
        for name, value in model.state_dict().items()
    ]


def load_quantized(model: nn.Module, tensors: list[QuantizedTensor]) -> None:
    """Load dequantized weights into ``model``; names and shapes must match the model exactly."""
    state = {t.name: torch.from_numpy(np.ascontiguousarray(t.dequantize())) for t in tensors}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"tensors do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, value in state.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ValueError(f"tensor {name!r} has shape {tuple(value.shape)}, the model wants {tuple(expected[name].shape)}")
    model.load_state_dict(state)
