"""Weight quantization: per-channel scales, ranges, and loading what the decoder will use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camcodec.model.cam_nerv import CAMNeRV, CamNervConfig
from camcodec.quantize import (
    bits_for_levels,
    channel_scales,
    fake_quantize,
    levels_for_bits,
    load_quantized,
    per_channel,
    quantize_model,
    quantize_tensor,
)


@pytest.mark.parametrize("levels", [7, 20, 31, 127])
def test_per_channel_error_is_at_most_half_a_step(levels):
    weight = torch.randn(6, 16, 3, 3) * torch.linspace(0.01, 2, 6)[:, None, None, None]
    q = quantize_tensor("w", weight, levels)
    assert q.bits == bits_for_levels(levels) and levels <= levels_for_bits(q.bits)
    assert q.symbols.dtype == np.int32 and q.scales.shape == (6,)
    assert np.abs(q.symbols).max() <= levels
    assert np.all(np.abs(q.symbols).reshape(6, -1).max(axis=1) == levels)  # each channel uses its full range
    error = np.abs(q.dequantize() - weight.numpy())
    assert np.all(error <= q.scales[:, None, None, None] / 2 + 1e-7)


def test_small_channels_share_one_scale():
    assert per_channel((6, 16, 3, 3)) and not per_channel((6, 5, 3, 3)) and not per_channel((7,))
    assert quantize_tensor("grid", torch.randn(16, 32), 127).scales.shape == (1,)
    assert quantize_tensor("grid", torch.randn(2, 8, 4, 4), 127, channel_axis=None).scales.shape == (1,)


def test_levels_and_bit_widths():
    assert [levels_for_bits(b) for b in (2, 4, 6, 8)] == [1, 7, 31, 127]
    assert [bits_for_levels(n) for n in (1, 7, 8, 31, 32, 100, 127, 128)] == [2, 4, 5, 6, 7, 8, 8, 9]


def test_fake_quantize_forward_is_the_dequantized_tensor_and_passes_gradients():
    weight = torch.randn(6, 16, 3, 3, requires_grad=True)
    fq = fake_quantize(weight, 31)
    assert np.array_equal(fq.detach().numpy(), quantize_tensor("w", weight, 31).dequantize())
    fq.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))


def test_one_dimensional_and_zero_tensors():
    bias = quantize_tensor("b", torch.tensor([0.5, -1.0, 0.25]), 127)
    assert bias.scales.shape == (1,)
    zeros = quantize_tensor("z", torch.zeros(4, 2), 127)
    assert np.all(zeros.symbols == 0) and np.all(zeros.scales == 1)
    assert np.all(channel_scales(torch.zeros(3), 127).numpy() == 1)


def test_loaded_model_uses_exactly_the_dequantized_values():
    config = CamNervConfig(32, 24, 4, (2, 2), (8, 6, 4), 16, cam_points=4)
    model = CAMNeRV(config)
    tensors = quantize_model(model, 31)
    assert [t.name for t in tensors] == list(model.state_dict())
    decoded = CAMNeRV(config)
    load_quantized(decoded, tensors)
    for t in tensors:
        assert np.array_equal(decoded.state_dict()[t.name].numpy(), t.dequantize())


def test_mismatched_tensors_are_refused():
    config = CamNervConfig(32, 24, 4, (2, 2), (8, 6, 4), 16, cam_points=4)
    tensors = quantize_model(CAMNeRV(config), 127)
    with pytest.raises(ValueError, match="do not match"):
        load_quantized(CAMNeRV(config), tensors[:-1])
    other = CamNervConfig(32, 24, 4, (2, 2), (8, 5, 4), 16, cam_points=4)
    with pytest.raises(ValueError, match="shape"):
        load_quantized(CAMNeRV(other), tensors)
