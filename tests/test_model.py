"""The CAM-NeRV network: shapes at any size, CAM grids, configs, sizing."""

from __future__ import annotations

import math

import pytest
import torch

from camcodec.config import resolve_config, size_model
from camcodec.model import (
    CAMNeRV,
    ModelConfig,
    block_channels,
    choose_strides,
    count_parameters,
    frame_times,
    grid_weights,
    parameter_count,
    positional_encoding,
)


def small_config(width=64, height=48, num_frames=8, cam=True) -> ModelConfig:
    strides = choose_strides(width, height)
    return ModelConfig(width, height, num_frames, strides, block_channels(8, len(strides)), 16, cam=cam, cam_points=4)


@pytest.mark.parametrize("size", [(64, 48), (176, 144), (175, 143), (480, 270), (1920, 1080), (33, 17)])
def test_strides_cover_the_frame(size):
    width, height = size
    strides = choose_strides(width, height)
    h0 = math.ceil(height / math.prod(strides))
    w0 = math.ceil(width / math.prod(strides))
    assert h0 * math.prod(strides) >= height and w0 * math.prod(strides) >= width
    assert list(strides) == sorted(strides, reverse=True)


@pytest.mark.parametrize("size", [(64, 48), (45, 37), (176, 144)])
def test_output_is_cropped_rgb_in_unit_range(size):
    config = small_config(*size)
    out = CAMNeRV(config)(frame_times(torch.arange(3), 8))
    assert out.shape == (3, 3, size[1], size[0])
    assert out.min() >= 0 and out.max() <= 1


def test_frame_times():
    assert frame_times(torch.tensor([0, 4, 8]), 9).tolist() == [0.0, 0.5, 1.0]
    assert frame_times(torch.tensor([0]), 1).tolist() == [0.0]


def test_positional_encoding_dims_and_values():
    pe = positional_encoding(torch.tensor([0.0, 1.0]), 1.25, 40)
    assert pe.shape == (2, 80)
    assert torch.allclose(pe[0, :40], torch.zeros(40)) and torch.allclose(pe[0, 40:], torch.ones(40))
    assert pe[1, 0].item() == pytest.approx(math.sin(math.pi), abs=1e-6)


def test_grid_interpolation_is_linear_align_corners():
    grid = torch.tensor([[0.0, 10.0, 20.0], [1.0, 1.0, 3.0]])  # C=2, M=3
    values = grid_weights(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]), 3) @ grid.t()
    assert values.shape == (5, 2)
    assert values[:, 0].tolist() == pytest.approx([0, 5, 10, 15, 20])
    assert values[:, 1].tolist() == pytest.approx([1, 1, 1, 2, 3])


def test_cam_starts_as_identity_modulation():
    model = CAMNeRV(small_config())
    for block in model.blocks:
        assert torch.all(block.gamma_delta == 0) and torch.all(block.beta == 0)
        assert block.gamma_delta.shape == (block.conv.out_channels // block.stride**2, 4)


def test_cam_modulates_by_time():
    model = CAMNeRV(small_config())
    block = model.blocks[0]
    x = torch.randn(2, block.conv.in_channels, 6, 8)
    t = grid_weights(torch.tensor([0.0, 1.0]), 4)
    base = block(x, t)
    with torch.no_grad():
        block.beta[:, -1] = 5.0  # shifts only where t is near 1
    moved = block(x, t)
    assert torch.equal(moved[0], base[0]) and not torch.equal(moved[1], base[1])


def test_plain_nerv_has_no_grids_and_same_convs():
    cam = CAMNeRV(small_config(cam=True))
    plain = CAMNeRV(small_config(cam=False))
    conv_shapes = lambda m: [p.shape for n, p in m.named_parameters() if "gamma" not in n and "beta" not in n]
    assert conv_shapes(cam) == conv_shapes(plain)
    assert not any("gamma" in n or "beta" in n for n, _ in plain.named_parameters())


@pytest.mark.parametrize("cam", [True, False])
def test_parameter_count_formula(cam):
    config = small_config(cam=cam)
    assert parameter_count(config) == count_parameters(CAMNeRV(config))


def test_config_round_trips_and_rejects_bad_input():
    config = small_config()
    assert ModelConfig.from_dict(config.to_dict()) == config
    for bad in ({"arch": "other"}, {**config.to_dict(), "extra": 1}, {**config.to_dict(), "channels": [8]},
                {**config.to_dict(), "width": 0}, {**config.to_dict(), "strides": "22"}, {"arch": "cam-nerv"}):
        with pytest.raises(ValueError):
            ModelConfig.from_dict(bad)


def test_presets_scale_parameters_with_the_clip():
    config = resolve_config("fast")
    small = size_model(176, 144, 120, config)
    large = size_model(320, 180, 132, config)
    for model_config, pixels in ((small, 176 * 144 * 120), (large, 320 * 180 * 132)):
        ratio = parameter_count(model_config) / pixels
        assert 0.6 * config.params_per_pixel < ratio <= config.params_per_pixel
