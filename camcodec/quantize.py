"""Weight quantization: model parameters <-> the quantized tensors stored in the file.

Per-output-channel symmetric uniform quantization with ``levels`` steps on each side of zero: for a
tensor with output channels along axis 0, ``scale_c = max|w_c| / levels`` and ``q = round(w / scale_c)``,
so ``|q| <= levels``. ``levels`` is the rate knob: ``2^(bits-1) - 1`` fills a bit width (127 for 8 bits),
and any value in between sets the step finer than halving, which lets rate control land a file size
without pruning; the file stores the narrowest bit width that holds the symbols. Each model declares which of
its tensors have output channels on axis 0 (``channel_axes()``; None: no channel axis, e.g. a grid
indexed by time first). Tensors without one, and tensors with few values per channel (biases, CAM
grids, the stem's wide linear layer), use one scale for the whole tensor: a float32 scale costs 32 bits
in the file, more than it saves there. The decoder's weights are
``q * scale`` in float32 (``bitstream.QuantizedTensor.dequantize``); quantization-aware training
evaluates exactly the same values with ``fake_quantize``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bitstream import QuantizedTensor
from bitstream.layout import DEFAULT_CODER
from camcodec.model.common import VideoModel

MIN_VALUES_PER_SCALE = 128


def levels_for_bits(bits: int) -> int:
    """The most levels a bit width holds on each side of zero: 127 for 8 bits."""
    return 2 ** (bits - 1) - 1


def bits_for_levels(levels: int) -> int:
    """The narrowest bit width whose symbols hold ``-levels .. levels``."""
    return levels.bit_length() + 1


ChannelAxis = int | None  # 0: output channels along axis 0; None: one scale for the whole tensor


def per_channel(shape: torch.Size | tuple[int, ...], channel_axis: ChannelAxis = 0) -> bool:
    """Whether a tensor of this shape gets one scale per output channel (axis 0)."""
    return channel_axis == 0 and len(shape) > 1 and math.prod(shape[1:]) >= MIN_VALUES_PER_SCALE


def channel_scales(
    weight: torch.Tensor, levels: int, channel_axis: ChannelAxis = 0, zero_step: float = 1.0
) -> torch.Tensor:
    """float32 step sizes, one per output channel or one for all (see ``per_channel``); the step of an
    all-zero channel is ``zero_step``."""
    w = weight.detach().float()
    if per_channel(w.shape, channel_axis):
        peak = w.abs().flatten(1).max(dim=1).values
    else:
        peak = w.abs().max().reshape(1)
    scales = peak / levels
    return torch.where(scales > 0, scales, torch.full_like(scales, zero_step))


def _broadcast(scales: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return scales.view(-1, *([1] * (weight.dim() - 1))) if scales.numel() > 1 else scales


MAX_LEVELS = levels_for_bits(16)  # the widest symbols the file holds


def symbols_at(
    weight: torch.Tensor, scales: torch.Tensor, levels: int = MAX_LEVELS, deadzone: float = 0.0
) -> torch.Tensor:
    """Integer-valued float32 symbols ``round(w / scale)`` in ``-levels .. levels``. With a ``deadzone``
    d in (0, 1/2], a magnitude whose fraction lies below 1/2 + d rounds down: toward zero, to fewer bits."""
    x = weight.detach().float() / _broadcast(scales, weight)
    symbols = torch.round(x) if deadzone == 0 else torch.sign(x) * torch.floor(x.abs() + (0.5 - deadzone))
    return symbols.clamp(-levels, levels)


def quantization_symbols(
    weight: torch.Tensor, levels: int, channel_axis: ChannelAxis = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer-valued float32 symbols in -levels .. levels, scales) of a tensor."""
    scales = channel_scales(weight, levels, channel_axis)
    return symbols_at(weight, scales, levels), scales


def straight_through(weight: torch.Tensor, symbols: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The dequantized weight in the forward pass, the identity in the backward."""
    dequantized = symbols * _broadcast(scales, weight)
    # d + (w - w) is exactly d in the forward (w + (d - w) would not be), with the gradient of w.
    return dequantized + (weight - weight.detach())


def fake_quantize(weight: torch.Tensor, levels: int, channel_axis: ChannelAxis = 0) -> torch.Tensor:
    """The weight as the decoder will see it at ``levels`` levels (max-abs steps), straight-through."""
    symbols, scales = quantization_symbols(weight, levels, channel_axis)
    return straight_through(weight, symbols, scales)


def fake_quantize_at(weight: torch.Tensor, scales: torch.Tensor, deadzone: float = 0.0) -> torch.Tensor:
    """The weight as the decoder will see it with these steps (and dead zone), straight-through."""
    return straight_through(weight, symbols_at(weight, scales, deadzone=deadzone), scales)


def quantized(
    name: str, symbols: torch.Tensor, scales: torch.Tensor, levels: int | None = None, coder: str = DEFAULT_CODER
) -> QuantizedTensor:
    """The file's tensor: symbols as int32, float32 steps, the bit width of ``levels`` (None: the narrowest
    that holds the symbols) and the coder that writes them (``VideoModel.coders``)."""
    if levels is None:
        levels = max(int(symbols.abs().max().item()), 1)
    return QuantizedTensor(
        name=name,
        symbols=symbols.cpu().numpy().astype(np.int32),
        scales=scales.detach().cpu().numpy().astype(np.float32),
        bits=bits_for_levels(levels),
        coder=coder,
    )


def quantize_tensor(
    name: str, weight: torch.Tensor, levels: int, channel_axis: ChannelAxis = 0, coder: str = DEFAULT_CODER
) -> QuantizedTensor:
    symbols, scales = quantization_symbols(weight, levels, channel_axis)
    return quantized(name, symbols, scales, levels, coder)


def channel_axes(model: VideoModel) -> dict[str, ChannelAxis]:
    """The model's declaration of each parameter's output-channel axis."""
    return model.channel_axes()


def quantize_model(
    model: VideoModel, levels: int, masks: dict[str, torch.Tensor] | None = None
) -> list[QuantizedTensor]:
    """Every parameter of the model, in ``state_dict`` order, as a quantized tensor (pruned where masked)."""
    masks = masks or {}
    axes, coders = channel_axes(model), model.coders()
    return [
        quantize_tensor(name, value * masks[name] if name in masks else value, levels, axes[name], coders[name])
        for name, value in model.state_dict().items()
    ]


def quantize_at(model: VideoModel, steps: dict[str, torch.Tensor], deadzone: float = 0.0) -> list[QuantizedTensor]:
    """Every parameter of the model, in ``state_dict`` order, quantized with the given steps (and dead zone)."""
    coders = model.coders()
    return [
        quantized(name, symbols_at(value, steps[name], deadzone=deadzone), steps[name], coder=coders[name])
        for name, value in model.state_dict().items()
    ]


def load_quantized(model: VideoModel, tensors: list[QuantizedTensor]) -> None:
    """Load dequantized weights into ``model``; names and shapes must match the model exactly."""
    state = {t.name: torch.from_numpy(np.ascontiguousarray(t.dequantize())) for t in tensors}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"tensors do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, value in state.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"tensor {name!r} has shape {tuple(value.shape)}, the model wants {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)
