"""Pruning, quantization-aware fine-tuning and rate control."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camcodec
from camcodec.compress import quantized_weights
from camcodec.config import resolve_config
from camcodec.encoder import Encoder, clip_from_array
from camcodec.model import frame_times
from camcodec.model.cam_nerv import CAMNeRV, CamNervConfig
from camcodec.prune import apply_masks, magnitude_masks, prunable_names, sparsity
from camcodec.quantize import channel_axes, load_quantized, quantize_model
from camcodec.train import Phase, evaluate_psnr, fit, frames_to_tensor, measured_frames
from conftest import tiny_config


def tiny_model() -> CAMNeRV:
    torch.manual_seed(0)
    return CAMNeRV(CamNervConfig(64, 48, 8, (4, 2), (12, 8, 8), 24, cam_points=4))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6])
def test_pruning_leaves_the_stated_fraction_of_zeros(ratio):
    model = tiny_model()
    masks = magnitude_masks(model, ratio)
    assert set(masks) == set(prunable_names(model))
    apply_masks(model, masks)
    assert sparsity(model) == pytest.approx(ratio, abs=1e-3)
    assert all(torch.all(block.gamma_delta == 0) for block in model.blocks)  # grids are not prunable weights


def test_qat_forward_equals_the_decoder_bit_for_bit(clip):
    model = tiny_model()
    frames = frames_to_tensor(clip, torch.device("cpu"))
    config = tiny_config(150)
    masks = magnitude_masks(model, 0.3)
    weights = quantized_weights(masks, 31, channel_axes(model))
    fit(model, frames, Phase("qat", 20, 1e-3, 0.0, weights), config)
    times = frame_times(torch.arange(8), 8)
    with torch.no_grad():
        qat_out = torch.func.functional_call(model, weights(dict(model.named_parameters())), (times,))
    decoded = tiny_model()
    apply_masks(model, masks)
    load_quantized(decoded, quantize_model(model, 31))
    with torch.no_grad():
        decoder_out = decoded.eval()(times)
    assert torch.equal(qat_out, decoder_out)


def test_a_phase_measures_a_long_clip_on_evenly_spaced_frames(clip):
    assert measured_frames(8) == list(range(8))
    assert measured_frames(280, 32)[:3] == [0, 9, 18] and measured_frames(280, 32)[-1] == 279
    assert len(set(measured_frames(33, 32))) == 32
    model, frames = tiny_model(), frames_to_tensor(clip, torch.device("cpu"))
    per_frame = [evaluate_psnr(model, frames, indices=[i]) for i in range(8)]
    assert evaluate_psnr(model, frames, indices=[1, 4, 7]) == pytest.approx(
        (per_frame[1] + per_frame[4] + per_frame[7]) / 3
    )
    assert evaluate_psnr(model, frames) == pytest.approx(sum(per_frame) / 8)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("prune", [0.0, 0.3])
def test_file_decodes_after_every_bits_and_prune(clip, tmp_path, bits, prune):
    path = tmp_path / "c.cam"
    config = tiny_config(150, bits=bits, prune=prune, rate_weight=0)
    result = Encoder(config).encode(clip_from_array(clip), path)
    assert np.array_equal(camcodec.decode(path, device="cpu"), result.reconstruction)
    expected = ["train"] + (["prune"] if prune else []) + (["qat"] if bits < 8 else [])
    assert [p["phase"] for p in result.stats.phases] == expected
    assert result.stats.psnr > 20


@pytest.mark.slow
def test_lower_bits_and_pruning_make_smaller_files(clip, tmp_path):
    sizes = {}
    for bits, prune in ((8, 0.0), (6, 0.0), (6, 0.5)):
        path = tmp_path / f"{bits}-{prune}.cam"
        Encoder(tiny_config(150, bits=bits, prune=prune, rate_weight=0)).encode(clip_from_array(clip), path)
        sizes[bits, prune] = path.stat().st_size
    assert sizes[8, 0.0] > sizes[6, 0.0] > sizes[6, 0.5]


@pytest.mark.slow
@pytest.mark.parametrize("target", [1.0, 2.0])
def test_target_bpp_lands_within_15_percent(clip, tmp_path, target):
    config = tiny_config(150, target_bpp=target, params_per_pixel=None)
    result = Encoder(config).encode(clip_from_array(clip), tmp_path / "t.cam")
    assert result.stats.target_bpp == target
    assert abs(result.stats.bpp - target) <= 0.15 * target


def test_rate_ladder_rungs_grow_and_override_in_order():
    from camcodec.config import CODED_BITS_PER_WEIGHT, RATES

    estimates = [r["params_per_pixel"] * CODED_BITS_PER_WEIGHT[r["bits"]] for r in RATES.values()]
    assert estimates == sorted(estimates) and estimates[0] < 0.015 and estimates[-1] > 0.25
    assert resolve_config("fast").params_per_pixel == RATES["m"]["params_per_pixel"]  # the default rate
    config = resolve_config("fast", rate="s", bits=8)  # an explicit option beats the rung
    assert config.params_per_pixel == RATES["s"]["params_per_pixel"] and config.bits == 8
    assert config.epochs == resolve_config("fast").epochs  # the rung leaves the preset's effort alone
    with pytest.raises(camcodec.InputError, match="unknown rate"):
        resolve_config("fast", rate="huge")


def test_adams_second_moment_decay_is_the_configs(clip):
    from camcodec.train import FitCallback, StepEvent

    class Betas(FitCallback):
        def after_step(self, event: StepEvent) -> bool:
            self.betas = event.state().optimizer["param_groups"][0]["betas"]
            return True

    seen = Betas()
    fit(
        tiny_model(),
        frames_to_tensor(clip, torch.device("cpu")),
        Phase("train", 3, 1e-3),
        tiny_config(150, beta2=0.95),  # not the default: the option, not a constant, must reach Adam
        callbacks=[seen],
    )
    assert tuple(seen.betas) == (0.9, 0.95)
    with pytest.raises(camcodec.InputError, match="beta2"):
        resolve_config(beta2=1.0).validate()
