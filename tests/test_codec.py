"""End-to-end: encode a tiny clip, decode the file, and check it is exactly what the encoder measured."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import bitstream
import camcodec
from camcodec.cli.info_cmd import with_roles
from camcodec.encoder import Encoder, clip_from_array
from camcodec.metrics import psnr_uint8
from conftest import tiny_config, torch_threads


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> tuple[Path, camcodec.EncodeResult, np.ndarray]:
    from camcodec.media.pattern import moving_pattern

    frames = moving_pattern()
    path = tmp_path_factory.mktemp("enc") / "clip.cam"
    result = Encoder(tiny_config(200)).encode(clip_from_array(frames), path)
    return path, result, frames


@pytest.mark.slow
def test_decode_equals_what_encoder_reported(encoded):
    path, result, frames = encoded
    decoded = camcodec.decode(path, device="cpu")
    assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
    assert np.array_equal(decoded, result.reconstruction)  # decoded from the bytes it wrote, when asked for
    assert result.coded == path.read_bytes()
    assert result.stats.psnr == psnr_uint8(frames, decoded)  # the check, a group at a time, is the same number


def test_decode_is_the_same_with_one_and_two_threads(encoded):
    """Issue 32: a file decodes to the same frames whatever the thread count (intra-op splits of the
    convolutions and of grid sampling must not change a value)."""
    path, result, _ = encoded
    decoded = []
    for count in (1, 2):
        with torch_threads(count):
            decoded.append(camcodec.decode(path, device="cpu"))
    assert np.array_equal(decoded[0], decoded[1])
    assert np.array_equal(decoded[0], result.reconstruction)


def test_bpp_is_the_real_file_size(encoded):
    path, result, frames = encoded
    t, h, w = frames.shape[:3]
    assert result.stats.file_bytes == path.stat().st_size
    assert result.stats.bpp == 8 * path.stat().st_size / (w * h * t)


def test_training_learned_the_clip(encoded):
    _, result, frames = encoded
    flat = np.broadcast_to(frames.mean(axis=(0, 1, 2)).round().astype(np.uint8), frames.shape)
    assert result.stats.psnr > psnr_uint8(frames, flat) + 3


def test_random_access_matches_full_decode(encoded):
    path, result, _ = encoded
    decoder = camcodec.Decoder(path, device="cpu")
    assert len(decoder) == 8
    for index in (7, 0, 5, 3):
        assert np.array_equal(decoder[index], result.reconstruction[index])
    assert np.array_equal(decoder[2:6], result.reconstruction[2:6])
    assert np.array_equal(camcodec.decode(path, frames=[6, 1], device="cpu"), result.reconstruction[[6, 1]])


def test_streamed_frames_render_ahead_and_equal_random_access(tmp_path, monkeypatch):
    from camcodec.media.pattern import moving_pattern

    frames = moving_pattern(num_frames=20, height=32, width=48)  # three render groups of 8, 8 and 4
    path = tmp_path / "clip.cam"
    expected = Encoder(tiny_config(20)).encode(clip_from_array(frames), path).reconstruction
    decoder = camcodec.Decoder(path, device="cpu")
    threads = []
    render_group = camcodec.Decoder._render_group
    monkeypatch.setattr(
        camcodec.Decoder,
        "_render_group",
        lambda self, key, *more: threads.append(threading.current_thread().name) or render_group(self, key, *more),
    )
    assert np.array_equal(np.stack(list(decoder.iter_frames())), expected)
    assert len(threads) == 3 and all(name.startswith("camcodec-render") for name in threads)
    selection = [19, 3, 4, 12, 0, 0, 17]
    assert np.array_equal(np.stack(list(decoder.iter_frames(selection))), expected[selection])
    assert list(decoder.iter_frames([])) == []


@pytest.mark.slow
def test_same_seed_gives_identical_file(encoded, tmp_path):
    path, _, frames = encoded
    again = tmp_path / "again.cam"
    Encoder(tiny_config(200)).encode(clip_from_array(frames), again)
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.slow
def test_plain_nerv_has_same_widths_and_decodes(tmp_path, clip):
    from camcodec.config import size_model

    config = tiny_config(200, cam=False)
    cam_config = size_model(64, 48, 8, tiny_config(200))
    plain_config = size_model(64, 48, 8, config)
    assert plain_config.channels == cam_config.channels and not plain_config.cam
    result = Encoder(config).encode(clip_from_array(clip), tmp_path / "plain.cam")
    assert np.array_equal(camcodec.decode(tmp_path / "plain.cam", device="cpu"), result.reconstruction)


def test_latent_and_flow_levels_are_coded_and_decode_to_what_the_encoder_measured(tmp_path, clip):
    levels = (
        ("latent_blocks", (1,)),
        ("latent_times", (4,)),
        ("latent_channels", (2,)),
        ("latent_down", (2,)),
        ("warp_blocks", (1,)),
        ("warp_times", (4,)),
        ("warp_down", (8,)),
    )
    result = Encoder(tiny_config(40, model_params=levels)).encode(clip_from_array(clip), tmp_path / "levels.cam")
    described = bitstream.describe((tmp_path / "levels.cam").read_bytes())
    tensors = {t["name"]: t for t in described["segments"][0]["tensors"]}
    assert tensors["latents.1.grid"]["shape"] == [2, 4, 24, 32]
    assert tensors["warps.1.grid"]["shape"] == [2, 4, 6, 8]
    roles = with_roles(described)["segments"][0]
    assert {t["name"] for t in roles["tensors"] if t["role"] == "latent"} == {"latents.1.grid", "warps.1.grid"}
    assert roles["roles"]["latent"]["elements"] == 2 * 4 * 24 * 32 + 2 * 4 * 6 * 8
    grids = (
        tensors[name]["payload_bytes"] + tensors[name]["table_bytes"] for name in ("latents.1.grid", "warps.1.grid")
    )
    assert roles["roles"]["latent"]["bytes"] == sum(grids)
    assert np.array_equal(camcodec.decode(tmp_path / "levels.cam", device="cpu"), result.reconstruction)
    assert result.stats.psnr == psnr_uint8(clip, result.reconstruction)


@pytest.mark.slow
def test_bf16_training_changes_the_network_not_the_files_contract(encoded, tmp_path):
    """The fixture trained in float32; bfloat16 trains a different network, and its file too decodes to
    exactly what the encoder measured (rendering and measuring are float32 either way)."""
    path, fp32_result, frames = encoded
    result = Encoder(tiny_config(200, precision="bf16")).encode(clip_from_array(frames), tmp_path / "bf16.cam")
    decoded = camcodec.decode(tmp_path / "bf16.cam", device="cpu")
    assert np.array_equal(decoded, result.reconstruction)
    assert result.stats.psnr == psnr_uint8(frames, decoded)
    assert (tmp_path / "bf16.cam").read_bytes() != path.read_bytes()
    assert abs(result.stats.psnr - fp32_result.stats.psnr) < 1.0


def test_bf16_autocast_is_chosen_where_the_hardware_has_it():
    from camcodec.device import trains_in_bf16

    cpu = torch.device("cpu")
    assert trains_in_bf16("bf16", cpu) and not trains_in_bf16("fp32", cpu)
    assert trains_in_bf16("auto", cpu) == torch.cpu.get_capabilities().get("amx_bf16", False)
