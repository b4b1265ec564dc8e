"""The CAM-NeRV network: shapes at any size, CAM grids, configs, sizing."""

from __future__ import annotations

import math

import pytest
import torch

from bitstream.layout import CODER_NAMES
from camcodec.config import resolve_config, size_model
from camcodec.model import (
    build_model,
    config_from_dict,
    count_parameters,
    frame_times,
    grid_weights,
    macs_per_frame,
    nerv2,
    parameter_count,
    positional_encoding,
)
from camcodec.model.cam_nerv import CAMNeRV, CamNervConfig, block_channels, choose_strides
from camcodec.quantize import quantize_model


def small_config(width=64, height=48, num_frames=8, cam=True) -> CamNervConfig:
    strides = choose_strides(width, height)
    return CamNervConfig(width, height, num_frames, strides, block_channels(8, len(strides)), 16, cam=cam, cam_points=4)


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

    def conv_shapes(m):
        return [p.shape for n, p in m.named_parameters() if "gamma" not in n and "beta" not in n]

    assert conv_shapes(cam) == conv_shapes(plain)
    assert not any("gamma" in n or "beta" in n for n, _ in plain.named_parameters())


@pytest.mark.parametrize("cam", [True, False])
def test_parameter_count_from_a_meta_build(cam):
    config = small_config(cam=cam)
    assert parameter_count(config) == count_parameters(CAMNeRV(config))


@pytest.mark.parametrize("size, cam", [((176, 144), True), ((64, 48), True), ((33, 17), False), ((480, 270), True)])
def test_cam_nerv_macs_match_the_layer_arithmetic(size, cam):
    """stem: two linear layers; each block's 3x3 conv at its input size with C_out x s^2 outputs; head 3x3."""
    width, height = size
    strides = choose_strides(width, height)
    config = CamNervConfig(width, height, 5, strides, block_channels(12, len(strides)), stem_hidden=24, cam=cam)
    h, w = config.base_size
    expected = 2 * config.pe_levels * 24 + 24 * 12 * h * w
    for c_in, c_out, stride in zip(config.channels[:-1], config.channels[1:], strides, strict=True):
        expected += 9 * c_in * c_out * stride * stride * h * w
        h, w = h * stride, w * stride
    expected += 9 * config.channels[-1] * 3 * h * w
    assert macs_per_frame(config)["total"] == expected


def test_config_round_trips_and_rejects_bad_input():
    config = small_config()
    assert config_from_dict(config.to_dict()) == config
    assert build_model(config_from_dict(config.to_dict())).config == config
    for bad in (
        {"arch": "other"},
        {**config.to_dict(), "extra": 1},
        {**config.to_dict(), "channels": [8]},
        {**config.to_dict(), "width": 0},
        {**config.to_dict(), "strides": "22"},
        {"arch": "cam-nerv"},
        {**config.to_dict(), "cam": 1},
        [],
        None,
    ):
        with pytest.raises(ValueError):
            config_from_dict(bad)


def test_seeded_builds_are_identical_and_leave_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    first, second = build_model(small_config(), seed=3), build_model(small_config(), seed=3)
    assert torch.rand(1) == before
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_presets_scale_parameters_with_the_clip():
    config = resolve_config("fast")
    small = size_model(176, 144, 120, config)
    large = size_model(320, 180, 132, config)
    for model_config, pixels in ((small, 176 * 144 * 120), (large, 320 * 180 * 132)):
        ratio = parameter_count(model_config) / pixels
        assert 0.6 * config.params_per_pixel < ratio <= config.params_per_pixel


def test_cam_grids_get_a_point_every_few_frames_unless_told():
    config = resolve_config("fast")
    points = [size_model(64, 48, n, config).cam_grid_points for n in (2, 30, 61, 121, 600)]
    assert points == [2, 8, 16, 31, 32]  # (frames - 1) / 4 + 1, from 2 to 32
    assert size_model(64, 48, 600, resolve_config("fast", cam_points=64)).cam_grid_points == 64


# ------------------------------------------------------------------------------------------------ cam-nerv2

NERV2_VARIANTS = [
    {},
    {"stem": "mlp"},
    {"stem": "grid", "grid_times": (2, 4, 8)},
    {"upsample": "bilinear"},
    {"kernels": (1, 3, 5)},
    {"head_kernel": 1},
    {"cam": False},
]


@pytest.mark.parametrize("fields", NERV2_VARIANTS)
@pytest.mark.parametrize("size", [(64, 48), (45, 37), (176, 144)])
def test_nerv2_renders_cropped_rgb_at_any_size(size, fields):
    width, height = size
    strides = fields.get("kernels") and nerv2.choose_strides(width, height)[:3]
    if strides and len(strides) < 3:
        strides = (2, 2, 2)
    config = nerv2.sized(width, height, 6, 3000, **({"strides": strides} if strides else {}), **fields)
    out = build_model(config, seed=0)(frame_times(torch.arange(3), 6))
    assert out.shape == (3, 3, height, width)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("budget", [8_000, 20_000, 200_000])
@pytest.mark.parametrize("fields", NERV2_VARIANTS[:4])
def test_nerv2_sizing_fills_the_budget(budget, fields):
    config = nerv2.sized(320, 180, 30, budget, **fields)
    count = parameter_count(config) - config.coded_grid_values()  # the budget sizes the weights
    assert count <= budget or config.channels[1:] == (2,) * len(config.strides)
    assert parameter_count(nerv2.sized(320, 180, 30, budget * 1.5, **fields)) > parameter_count(config)


def test_nerv2_without_cam_keeps_the_widths_and_drops_the_grids():
    cam, plain = (build_model(nerv2.sized(64, 48, 8, 5000, cam=flag)) for flag in (True, False))
    assert cam.config.channels == plain.config.channels

    def weights(m):
        return {n: p.shape for n, p in m.named_parameters() if "gamma" not in n and "beta" not in n}

    assert weights(cam) == weights(plain)
    assert not any("gamma" in n or "beta" in n for n, _ in plain.named_parameters())


def test_nerv2_grid_stem_interpolates_its_levels_in_time():
    config = nerv2.sized(64, 48, 9, 5000, stem="grid", grid_times=(3, 9))
    stem = build_model(config, seed=0).stem
    times = frame_times(torch.arange(9), 9)
    with torch.no_grad():
        out = stem(times)
        coarse, fine = stem.grids
        half = coarse.shape[0]
        assert torch.equal(out[4, :half], coarse[:, 1])  # t = 0.5 sits on the coarse level's middle point
        assert torch.allclose(out[2, :half], (coarse[:, 0] + coarse[:, 1]) / 2)
        assert all(torch.equal(out[i, half:], fine[:, i]) for i in range(9))


def test_nerv2_config_round_trips_and_rejects_bad_fields():
    config = nerv2.sized(64, 48, 8, 5000, stem="grid", grid_times=(2, 8))
    assert config_from_dict(config.to_dict()) == config
    for bad in (
        {"stem": "lstm"},
        {"upsample": "nearest"},
        {"kernels": [2, 3, 3]},
        {"grid_times": [1]},
        {"channels": [5, 8, 8, 8]},
        {"head_kernel": 4},
    ):  # C0 = 5 does not split into 2 levels
        with pytest.raises(ValueError):
            config_from_dict({**config.to_dict(), **bad})


LATENTS = {"latent_blocks": (0, 1), "latent_times": (2, 4), "latent_channels": (1, 2), "latent_down": (1, 2)}
NO_FLOW = {"warp_blocks": ()}  # the network without the default flow level


def test_nerv2_latent_levels_start_as_the_plain_network_and_add_detail_in_time():
    plain_config = nerv2.sized(64, 48, 8, 5000, **NO_FLOW)
    config = nerv2.sized(64, 48, 8, 5000, **LATENTS, **NO_FLOW)
    assert config.channels == plain_config.channels  # sizing leaves the latents out of the budget
    model, plain = build_model(config, seed=0), build_model(plain_config, seed=0)
    assert config.latent_shapes() == [(1, 2, 24, 32), (2, 4, 24, 32)]  # block 0: 24 x 32; block 1: 48 x 64 / 2
    assert model.latent_grids() == ["latents.0.grid", "latents.1.grid"]
    plain.load_state_dict({n: p for n, p in model.state_dict().items() if not n.startswith("latents.")})
    times = frame_times(torch.arange(8), 8)
    with torch.no_grad():
        assert torch.equal(model(times), plain(times))  # zero grids add nothing
        model.latents["1"].grid[:, 1].normal_()  # time point 1 of 4 sits at frame 7 / 3
        moved = (model(times) - plain(times)).abs().flatten(1).amax(dim=1)
    assert moved[0] == 0 and moved[7] == 0 and moved[2] > 0 and moved[3] > 0


def test_nerv2_latent_fields_are_checked_and_absent_from_plain_files():
    assert not any(key.startswith("latent_") for key in nerv2.sized(64, 48, 8, 5000, **NO_FLOW).to_dict())
    config = nerv2.sized(64, 48, 8, 5000, **LATENTS)
    assert config_from_dict(config.to_dict()) == config
    for bad in (
        {"latent_blocks": [2, 1]},  # no block 2 (two blocks at 64 x 48)
        {"latent_blocks": [1, 1]},
        {"latent_times": [2]},
        {"latent_channels": [1, 0]},
        {"latent_down": [1, 128]},
    ):
        with pytest.raises(ValueError):
            config_from_dict({**config.to_dict(), **bad})


WARPS = {"warp_blocks": (1,), "warp_times": (4,), "warp_down": (4,), "warp_scale": 2.0}


def test_nerv2_default_shape_has_one_flow_level_on_the_block_before_the_last():
    config = nerv2.sized(320, 180, 60, 100_000)
    assert len(config.strides) == 4
    assert config.warp_shapes() == [
        (2, nerv2.MIN_FLOW_TIMES, *(math.ceil(side / nerv2.FLOW_DOWN) for side in config.block_size(2)))
    ]
    # a time point about every 8 frames, at least 8: longer clips get more
    assert [nerv2.flow_times_for(n) for n in (2, 30, 60, 120, 200, 600)] == [8, 8, 8, 16, 26, 76]
    assert nerv2.sized(320, 180, 200, 100_000).warp_shapes()[0][1] == 26
    assert nerv2.sized(320, 180, 60, 100_000, warp_times=(4,)).warp_shapes()[0][1] == 4  # the other fields default
    assert nerv2.sized(320, 180, 60, 100_000, **NO_FLOW).warp_shapes() == []
    assert nerv2.sized(48, 32, 4, 2000, strides=(5,)).warp_shapes() == []  # one block: no flow level


def test_nerv2_flow_levels_move_a_blocks_output_by_their_displacement():
    plain_config = nerv2.sized(64, 48, 8, 5000, **NO_FLOW)
    config = nerv2.sized(64, 48, 8, 5000, **WARPS)
    assert config.channels == plain_config.channels  # sizing leaves the flow grids out of the budget
    assert config.warp_shapes() == [(2, 4, 12, 16)]  # block 1: 48 x 64, / 4
    model = build_model(config, seed=0)
    assert model.latent_grids() == ["warps.1.grid"]
    level = model.warps["1"]
    x = torch.arange(2 * 3 * 48 * 64, dtype=torch.float32).view(2, 3, 48, 64)
    t = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        assert torch.allclose(level(x, t), x, atol=1e-3)  # zero flow samples each pixel itself
        level.grid[0] = 1.5  # x displacement: 1.5 units of 2 pixels = 3 pixels, at every time point
        moved = level(x, t)
    assert torch.allclose(moved[..., :-3], x[..., 3:], atol=1e-3)  # each pixel takes the value 3 to its right
    assert torch.allclose(moved[..., -3:], x[..., -1:].expand(-1, -1, -1, 3), atol=1e-3)  # the border beyond
    assert config_from_dict(config.to_dict()) == config
    assert not any(key.startswith("warp_") for key in plain_config.to_dict())  # plain files keep their bytes
    for bad in ({"warp_blocks": [3]}, {"warp_times": [1]}, {"warp_down": [0]}, {"warp_scale": 0}, {"warp_times": []}):
        with pytest.raises(ValueError):
            config_from_dict({**config.to_dict(), **bad})


def test_nerv2_flow_level_on_the_head_moves_the_rgb_frames():
    plain_config = nerv2.sized(64, 48, 8, 5000, **NO_FLOW)
    head = len(plain_config.strides)
    config = nerv2.sized(64, 48, 8, 5000, warp_blocks=(head,), warp_times=(4,), warp_down=(8,), warp_scale=2.0)
    assert config.channels == plain_config.channels
    assert config.warp_shapes() == [(2, 4, *(math.ceil(side / 8) for side in config.block_size(head - 1)))]
    model, plain = build_model(config, seed=0), build_model(plain_config, seed=0)
    plain.load_state_dict({n: p for n, p in model.state_dict().items() if not n.startswith("warps.")})
    times = frame_times(torch.arange(8), 8)
    with torch.no_grad():
        assert torch.allclose(model(times), plain(times), atol=1e-5)  # zero flow
        model.warps[str(head)].grid[0] = 1.5  # 3 pixels to the right, at every time point
        assert torch.allclose(model(times)[..., :-3], plain(times)[..., 3:], atol=1e-4)
    for bad in (
        {"warp_blocks": [head + 1]},
        {"latent_blocks": [head], "latent_times": [2], "latent_channels": [1], "latent_down": [1]},
    ):
        with pytest.raises(ValueError):
            config_from_dict({**config.to_dict(), **bad})


def test_every_architecture_declares_each_tensors_channel_axis_and_coder():
    for config in (small_config(), nerv2.sized(64, 48, 8, 5000), nerv2.sized(64, 48, 8, 5000, **LATENTS, **WARPS)):
        model = build_model(config)
        names = {name for name, _ in model.named_parameters()}
        assert set(model.channel_axes()) == names and set(model.coders()) == names
        assert set(model.coders().values()) <= set(CODER_NAMES.values())
        assert {t.coder for t in quantize_model(model, 7)} == set(model.coders().values())
