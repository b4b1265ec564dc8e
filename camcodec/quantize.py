"""Weight quantization: model parameters <-> the quantized tensors stored in the file.

Per-output-channel symmetric uniform quantization: for a tensor with output channels along axis 0,
``scale_c = max|w_c| / (2^(bits-1) - 1)`` and ``q = round(w / scale_c)``. One-dimensional tensors
(biases) use a single scale. The decoder's weights are ``q * scale`` in float32, computed by
``bitstream.QuantizedTensor.dequantize``; the encoder evaluates the very same values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bitstream import QuantizedTensor


def channel_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """float32 step sizes, one per output channel (one in all for a 1-D tensor); zeros become 1."""
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    peak = w.abs().max().reshape(1) if w.dim() <= 1 else w.abs().flatten(1).max(dim=1).values
    scales = peak / levels
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def quantize_tensor(name: str, weight: torch.Tensor, bits: int) -> QuantizedTensor:
    scales = channel_scales(weight, bits)
    shaped = scales.view(-1, *([1] * (weight.dim() - 1))) if weight.dim() > 1 else scales
    levels = 2 ** (bits - 1) - 1
    symbols = torch.round(weight.detach().float() / shaped).clamp(-levels, levels)
    return QuantizedTensor(
        name=name,
        symbols=symbols.cpu().numpy().astype(np.int32),
        scales=scales.cpu().numpy().astype(np.float32),
        bits=bits,
    )


def quantize_model(model: nn.Module, bits: int) -> list[QuantizedTensor]:
    """Every parameter of the model, in ``state_dict`` order, as a quantized tensor."""
    return [quantize_tensor(name, value, bits) for name, value in model.state_dict().items()]


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
