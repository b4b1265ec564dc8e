"""Training against the rate: the bit estimate, learned steps, and encodes that use them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bitstream
import camcodec
from camcodec.compress import (
    MAX_ROUNDS,
    FlatWeights,
    deadzone_for_target,
    factor_for_target,
    levels_for_target,
    prune_for_target,
    scaled_steps,
    search_coded,
    smallest_fitting,
    stepped_weights,
)
from camcodec.config import resolve_config
from camcodec.encoder import Encoder, clip_from_array
from camcodec.model import frame_times
from camcodec.model.cam_nerv import CAMNeRV, CamNervConfig
from camcodec.prune import magnitude_masks
from camcodec.quantize import channel_axes, channel_scales, load_quantized, quantize_at, quantize_model, symbols_at
from camcodec.rate import STEPS_PER_OCTAVE, ZERO_TENSOR_STEP, LearnedSteps, laplace_bits
from camcodec.train import (
    HOLD_GAIN,
    Phase,
    evaluate_psnr,
    fit,
    frames_to_tensor,
    rate_term,
    reconstruction_loss,
    steer_kappa,
)
from conftest import tiny_config


def tiny_model() -> CAMNeRV:
    torch.manual_seed(0)
    return CAMNeRV(CamNervConfig(64, 48, 8, (4, 2), (12, 8, 8), 24, cam_points=4))


def test_laplace_bits_match_the_entropy_of_rounded_laplace_symbols():
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, 3.0).sample((200_000,))
    symbols = torch.round(x)
    _, counts = torch.unique(symbols, return_counts=True)
    p = counts.double() / counts.sum()
    entropy = float(-(p * p.log2()).sum()) * len(x)
    estimate = float(laplace_bits(x, torch.zeros(len(x), dtype=torch.long), torch.tensor([float(len(x))])))
    assert estimate == pytest.approx(entropy, rel=0.03)


def test_laplace_bits_are_per_tensor_and_fall_as_values_shrink():
    index = torch.tensor([0] * 100 + [1] * 100)
    counts = torch.tensor([100.0, 100.0])
    wide = torch.linspace(-20, 20, 200)
    narrow = wide * torch.cat([torch.ones(100), torch.full((100,), 0.1)])
    assert laplace_bits(narrow, index, counts) < laplace_bits(wide, index, counts)
    zeros = torch.zeros(200)
    assert float(laplace_bits(zeros, index, counts)) < 1.0  # all-zero tensors cost almost nothing


@pytest.mark.parametrize("spread", [0.02, 0.3, 4.0])  # a clamped scale, most values in the centre, wide
def test_laplace_bits_gradient_is_the_derivative_of_the_estimate(spread):
    generator = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(30, generator=generator, dtype=torch.float64) * spread, torch.randn(20).double() * 3])
    index = torch.tensor([0] * 30 + [1] * 20)
    counts = torch.tensor([30.0, 20.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: laplace_bits(v, index, counts), (x.requires_grad_(),))


def test_learned_steps_start_at_max_abs_steps_per_channel_and_fine_for_zero_tensors():
    model = tiny_model()
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen()
    for name, p in model.named_parameters():
        peak = p.detach().abs().flatten(1).max(1).values if steps[name].numel() > 1 else p.detach().abs().max()
        expected = torch.where(peak > 0, peak / 31, torch.full_like(peak, ZERO_TENSOR_STEP)).reshape(-1)
        assert torch.allclose(steps[name], expected, rtol=2 ** (1 / 32) - 1), name  # within half a grid step
        octaves = torch.log2(steps[name].double()) * STEPS_PER_OCTAVE
        assert torch.allclose(octaves, octaves.round(), rtol=0, atol=1e-5), name  # on the grid of steps


@pytest.mark.slow
def test_rate_weight_shrinks_the_coded_size(clip):
    frames = frames_to_tensor(clip, torch.device("cpu"))
    sizes = {}
    for weight in (0.0, 1.0):
        model = tiny_model()
        rate = LearnedSteps(model, 31, channel_axes(model), 1.0, weight)
        fit(model, frames, Phase("train", 60, 1e-2, rate=rate), tiny_config(150))
        sizes[weight] = sum(t.symbols.size and np.count_nonzero(t.symbols) for t in quantize_at(model, rate.frozen()))
    assert sizes[1.0] < sizes[0.0]  # more symbols at zero


def test_log_mse_is_the_mean_of_each_frames_log_mse():
    target = torch.zeros(2, 3, 4, 4)
    pred = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.2)])
    expected = (math.log(0.01) + math.log(0.04)) / 2
    assert reconstruction_loss(pred, target, "log-mse")[0].item() == pytest.approx(expected)
    assert reconstruction_loss(pred, target, "mse")[0].item() == pytest.approx(0.025)


def test_log_mse_of_a_frame_rendered_exactly_is_finite_with_finite_gradients():
    pred = torch.zeros(2, 3, 4, 4, requires_grad=True)
    target = torch.zeros(2, 3, 4, 4)
    target[1] = 0.5
    loss, _ = reconstruction_loss(pred, target, "log-mse")
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("loss", ["mse", "log-mse"])
def test_the_rate_term_has_the_gradient_of_kappa_bpp_over_nominal_in_log_distortion(loss):
    """Whatever the loss, a step follows ln D + kappa x bpp / nominal (for MSE up to the factor D)."""
    pred = torch.tensor([[0.3, 0.5]], requires_grad=True)
    bpp = (pred**2).sum()
    distortion, _ = reconstruction_loss(pred, torch.zeros(1, 2), loss)
    (distortion + rate_term(distortion, bpp, torch.tensor(0.5), 0.1, loss)).backward()
    mse = pred.detach().pow(2).mean()
    expected = 2 * pred.detach() / 2 / mse + 0.5 * 2 * pred.detach() / 0.1
    scale = mse if loss == "mse" else 1.0
    assert torch.allclose(pred.grad, scale * expected)


def test_steering_moves_kappa_by_the_gain_times_the_log_rate_ratio():
    rate = LearnedSteps(tiny_model(), 31, channel_axes(tiny_model()), 0.1, 0.5)
    rate.steer(torch.tensor(0.2), 0.01, 0.1)
    assert rate.kappa.item() == pytest.approx(0.5 * 2**0.01)
    rate.steer(torch.tensor(0.05), 0.01, 0.1)
    assert rate.kappa.item() == pytest.approx(0.5)


def test_fine_tuning_steers_kappa_to_hold_the_rate_of_its_first_step():
    model = tiny_model()
    rate = LearnedSteps(model, 31, channel_axes(model), 0.1, 0.5)
    phase = Phase("qat", 10, 1e-3, rate=rate, fixed_steps=rate.frozen())
    held = steer_kappa(phase, torch.tensor(0.3), 0.005, None)
    assert held == pytest.approx(0.3) and rate.kappa.item() == pytest.approx(0.5)
    assert steer_kappa(phase, torch.tensor(0.6), 0.005, held) == held
    assert rate.kappa.item() == pytest.approx(0.5 * 2**HOLD_GAIN)


@pytest.mark.slow
def test_steering_brings_the_estimated_rate_to_the_nominal_one(clip):
    """With kappa fixed, training settles wherever kappa puts it; steered, at the nominal rate."""
    frames = frames_to_tensor(clip, torch.device("cpu"))
    estimate = {}
    for gain in (0.0, 0.05):
        model = tiny_model()
        rate = LearnedSteps(model, 31, channel_axes(model), 0.4, 0.01)
        fit(model, frames, Phase("train", 200, 1e-2, rate=rate), tiny_config(150, rate_control=gain))
        _, bits = rate.noisy(dict(model.named_parameters()), torch.Generator().manual_seed(0))
        estimate[gain] = bits.item() / frames[:, 0].numel()
    assert abs(math.log(estimate[0.05] / 0.4)) < abs(math.log(estimate[0.0] / 0.4)) / 2


def test_noise_starts_part_way_with_steps_taken_from_the_trained_weights(clip, monkeypatch):
    model = tiny_model()
    rate = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5)
    calls = []
    real_noisy, real_restart = rate.noisy, rate.restart
    monkeypatch.setattr(rate, "noisy", lambda *a: calls.append("noisy") or real_noisy(*a))
    monkeypatch.setattr(rate, "restart", lambda m: calls.append("restart") or real_restart(m))
    config = tiny_config(150, rate_weight=0.5, rate_from=0.75)
    fit(model, frames_to_tensor(clip, torch.device("cpu")), Phase("train", 40, 1e-2, rate=rate), config)
    assert calls == ["restart"] + ["noisy"] * 10


def test_stepped_forward_equals_the_decoder_bit_for_bit(clip):
    model = tiny_model()
    frames = frames_to_tensor(clip, torch.device("cpu"))
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen(1.7)
    fit(model, frames, Phase("qat", 20, 1e-3, 0.0, stepped_weights(steps)), tiny_config(150))
    times = frame_times(torch.arange(8), 8)
    with torch.no_grad():
        trained = torch.func.functional_call(model, stepped_weights(steps)(dict(model.named_parameters())), (times,))
        decoded = tiny_model()
        load_quantized(decoded, quantize_at(model, steps))
        assert torch.equal(trained, decoded.eval()(times))


def file_builder(model):
    info = bitstream.VideoInfo(64, 48, 8, 25, 1, "rgb24", "rgb")

    def build(tensors):  # the real file, so that sizes include every table
        segment = bitstream.Segment(0, 8, model.config.to_dict(), tensors)
        return bitstream.write_bytes(bitstream.Container(info, [segment]))

    return build


def test_factor_for_target_fits_and_is_the_finest_that_fits():
    model = tiny_model()
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen()
    build = file_builder(model)
    full = len(build(quantize_at(model, steps)))
    factor, size = factor_for_target(model, steps, full // 2, build)
    assert size <= full // 2
    assert len(build(quantize_at(model, scaled_steps(steps, factor * 0.9)))) > full // 2


def test_a_dead_zone_rounds_toward_zero_only_below_half_a_step_plus_its_width():
    values = torch.tensor([0.3, 0.55, 0.7, -0.6, 1.6, -1.7, 2.4])
    step = torch.tensor([1.0])
    assert symbols_at(values, step, deadzone=0.15).tolist() == [0, 0, 1, 0, 1, -2, 2]
    assert torch.equal(symbols_at(values, step, deadzone=0.0), torch.round(values))
    assert symbols_at(values, step, deadzone=0.5).tolist() == [0, 0, 0, 0, 1, -1, 2]  # all toward zero


def test_deadzone_for_target_fits_and_is_the_narrowest_that_fits():
    model = tiny_model()
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen(
        8.0
    )  # coarse: symbols near zero, where a dead zone saves bits
    build = file_builder(model)
    target = int(len(build(quantize_at(model, steps))) * 0.97)
    deadzone, size = deadzone_for_target(model, steps, target, build)
    assert 0 < deadzone < 0.5 and size <= target
    assert len(build(quantize_at(model, steps, deadzone * 0.9))) > target


def test_deadzone_for_target_reaches_weights_just_past_a_rounding_boundary():
    # After fine-tuning many weights sit within ~1e-5 of a boundary: a dead zone that moves only
    # them must be found, not one wide enough to move others too.
    model = tiny_model()
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen(8.0)
    weight = model.blocks[0].conv.weight
    with torch.no_grad():
        scale = steps["blocks.0.conv.weight"].view(-1, 1, 1, 1)
        sign = torch.where(torch.rand_like(weight) < 0.5, -1.0, 1.0)
        weight.copy_(sign * (torch.randint_like(weight, 0, 2) + 0.5 + 5e-6) * scale)
    build = file_builder(model)
    target = len(build(quantize_at(model, steps))) - 1
    deadzone, size = deadzone_for_target(model, steps, target, build)
    assert size <= target and deadzone < 2e-5


def test_relanding_a_file_grown_past_its_target_fits_and_keeps_the_better_rendering(clip):
    model = tiny_model()
    frames = frames_to_tensor(clip, torch.device("cpu"))
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen()
    fit(model, frames, Phase("qat", 30, 1e-3, 0.0, stepped_weights(steps)), tiny_config(150))
    build = file_builder(model)
    target = int(len(build(quantize_at(model, steps))) * 0.995)
    chosen, deadzone = Encoder._reland(model, frames, steps, target, build)
    assert len(build(quantize_at(model, chosen, deadzone))) <= target
    coarser = scaled_steps(steps, factor_for_target(model, steps, target, build)[0])
    psnr = evaluate_psnr(model, frames, stepped_weights(chosen, deadzone))
    assert psnr >= evaluate_psnr(model, frames, stepped_weights(coarser))


@pytest.mark.slow
@pytest.mark.parametrize("target", [None, 1.0])
def test_encode_with_rate_weight_decodes_to_its_reconstruction(clip, tmp_path, target):
    config = tiny_config(150, rate_weight=0.01, target_bpp=target)
    result = Encoder(config).encode(clip_from_array(clip), tmp_path / "r.cam")
    assert np.array_equal(camcodec.decode(tmp_path / "r.cam", device="cpu"), result.reconstruction)
    assert [p["phase"] for p in result.stats.phases] == ["train", "qat"]
    if target is None:
        assert result.stats.psnr > 20
    else:
        assert target * 0.85 <= result.stats.bpp <= target


@pytest.mark.slow
def test_a_file_that_fits_after_fine_tuning_keeps_the_fine_tuned_steps(clip, tmp_path):
    """Rounding the fine-tuned weights at any other steps would lose what fine-tuning gained: the file
    decodes to exactly the frames the fine-tuning phase last evaluated."""
    config = tiny_config(150, rate_weight=0.5, target_bpp=1.0)
    result = Encoder(config).encode(clip_from_array(clip), tmp_path / "r.cam")
    assert result.stats.bpp <= 1.0
    assert result.stats.psnr == pytest.approx(result.stats.phases[-1]["psnr"], abs=1e-9)


def test_pruning_and_learned_steps_are_refused_together():
    with pytest.raises(camcodec.InputError, match="prune does not apply"):
        resolve_config("fast", rate_weight=0.5, prune=0.2)


def _entropy_bytes(tensors) -> float:
    """The symbols' entropy in bytes, each tensor under its own histogram, counted tensor by tensor."""
    bits = 0.0
    for tensor in tensors:
        _, counts = np.unique(np.asarray(tensor.symbols), return_counts=True)
        bits -= float((counts * np.log2(counts / counts.sum())).sum())
    return bits / 8


def test_the_flat_size_estimate_counts_the_symbols_the_file_would_hold():
    model = tiny_model()
    flat = FlatWeights(model)
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen(4.0)
    for deadzone in (0.0, 0.2):
        expected = _entropy_bytes(quantize_at(model, steps, deadzone))
        assert flat.entropy_bytes(steps, deadzone) == pytest.approx(expected, rel=1e-9)
    masks = magnitude_masks(model, 0.4)
    pruned = {n: p * masks[n] if n in masks else p for n, p in model.state_dict().items()}
    axes = channel_axes(model)
    levels_steps = {n: channel_scales(p, 7, axes[n]) for n, p in pruned.items()}
    expected = _entropy_bytes(quantize_model(model, 7, masks))
    assert flat.entropy_bytes(levels_steps, levels=7, masks=masks) == pytest.approx(expected, rel=1e-9)


def _counting(build):
    calls = []

    def counted(tensors):
        calls.append(1)
        return build(tensors)

    return counted, calls


@pytest.mark.parametrize("share", [0.5, 0.8, 0.97])
def test_the_rate_search_codes_a_few_files_and_lands_where_coding_every_step_would(share):
    model = tiny_model()
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen()
    build = file_builder(model)
    target = int(len(build(quantize_at(model, steps))) * share)
    counted, calls = _counting(build)
    factor, size = factor_for_target(model, steps, target, counted)
    assert len(calls) <= MAX_ROUNDS and size == len(build(quantize_at(model, scaled_steps(steps, factor))))
    every_step = smallest_fitting(
        lambda f: len(build(quantize_at(model, scaled_steps(steps, f)))), 1 / 16, 16.0, target, 14
    )
    assert (
        size <= target and factor <= every_step[0] * 1.05
    )  # no coarser than the exact search, give or take a grid step


def test_the_rate_search_returns_the_coarsest_end_when_nothing_fits():
    model = tiny_model()
    steps = LearnedSteps(model, 31, channel_axes(model), 1.0, 0.5).frozen()
    build = file_builder(model)
    counted, calls = _counting(build)
    factor, size = factor_for_target(model, steps, 10, counted)  # 10 bytes: not even the headers fit
    assert factor == 16.0 and size > 10 and len(calls) <= MAX_ROUNDS


def test_levels_and_pruning_for_a_target_fit_it():
    model = tiny_model()
    build = file_builder(model)
    full = len(build(quantize_model(model, 127)))
    levels, size = levels_for_target(model, 7, 127, int(full * 0.8), build)
    assert 7 < levels < 127 and size <= full * 0.8 < len(build(quantize_model(model, levels + 1)))
    ratio, size = prune_for_target(model, 7, int(len(build(quantize_model(model, 7))) * 0.7), build)
    assert 0 < ratio < 0.9 and size == len(build(quantize_model(model, 7, magnitude_masks(model, ratio))))


def test_a_size_estimate_that_never_settles_falls_back_to_coding_every_step():
    def coded(x: float) -> int:  # a size falling with x: the real file
        return int(10_000 / x)

    drift = iter(range(1_000_000))

    def entropy(x: float) -> float:  # an estimate whose offset from the real size moves on every call
        return coded(x) - 100.0 * next(drift)

    def build(tensors):
        return bytes(tensors)

    def search(size):
        return smallest_fitting(size, 1 / 16, 16.0, 3_000, 14)

    x, size = search_coded(search, entropy, lambda v: coded(v), build, 3_000)
    assert (x, size) == search(coded) and size <= 3_000
