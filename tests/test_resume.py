"""Interrupted encodes: checkpoints, a killed encode resumed to the same file, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
import torch

import camcodec
from camcodec.api import load_source
from camcodec.cli import main
from conftest import tiny_argv, tiny_config

pytestmark = pytest.mark.slow  # every test here trains an encode

OPTIONS = tiny_argv(400, prune=0.2, rate_weight=0)


@pytest.fixture(scope="module")
def source(pattern_mkv):
    return pattern_mkv


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.cam"
    assert main(["encode", str(source), "-o", str(out), *OPTIONS]) == 0
    assert not os.path.exists(f"{out}.ckpt")
    return out.read_bytes()


def test_killed_encode_resumes_to_the_identical_file(source, uninterrupted, tmp_path):
    out = tmp_path / "clip.cam"
    ckpt = tmp_path / "clip.cam.ckpt"
    command = [
        sys.executable,
        "-m",
        "camcodec",
        "encode",
        str(source),
        "-o",
        str(out),
        *OPTIONS,
        "--checkpoint-interval",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert ckpt.exists() and not out.exists(), "the encode should have been killed mid-training"

    assert main(["encode", str(source), "-o", str(out), *OPTIONS]) == 0  # the same command continues
    assert out.read_bytes() == uninterrupted
    assert not ckpt.exists()
    assert camcodec.decode(out, device="cpu").shape == (8, 48, 64, 3)


def test_ctrl_c_saves_the_checkpoint_and_the_same_command_continues(source, uninterrupted, tmp_path):
    """The first Ctrl-C lets the step finish, saves the checkpoint at it, says where it is, exits 130."""
    out, ckpt = tmp_path / "clip.cam", tmp_path / "clip.cam.ckpt"
    command = [sys.executable, "-m", "camcodec", "encode", str(source), "-o", str(out), *OPTIONS]
    process = subprocess.Popen(
        [*command, "--checkpoint-interval", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # training has begun once the first checkpoint is there
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 5
    assert process.returncode == 130, err
    assert (
        err.strip().splitlines()[-1]
        == f"camcodec encode: interrupted: progress saved in {ckpt}; the same command continues from it"
    )
    assert ckpt.exists() and not out.exists()
    assert main(["encode", str(source), "-o", str(out), *OPTIONS]) == 0
    assert out.read_bytes() == uninterrupted


def test_a_checkpoint_of_another_encode_is_refused_with_the_way_out(source, tmp_path, capsys):
    out = tmp_path / "clip.cam"
    short = [o if o != "400" else "40" for o in OPTIONS]
    from camcodec.checkpoint import EncodeCheckpoint  # write a checkpoint of a different encode

    model = camcodec.encoder.build_model(camcodec.encoder.size_model(64, 48, 8, camcodec.resolve_config("fast")))
    EncodeCheckpoint(out, model, "another-encode").save()
    assert main(["encode", str(source), "-o", str(out), *short]) == 2
    assert "different encode (source or options changed); --no-resume starts again" in capsys.readouterr().err
    (tmp_path / "clip.cam.ckpt").write_bytes(b"garbage")
    assert main(["encode", str(source), "-o", str(out), *short, "--resume"]) == 2
    assert "unreadable checkpoint" in capsys.readouterr().err
    assert not out.exists()
    assert main(["encode", str(source), "-o", str(out), *short, "--no-resume"]) == 0  # starts again
    assert not (tmp_path / "clip.cam.ckpt").exists()


def test_a_checkpoint_of_another_precision_is_refused(source, tmp_path, capsys):
    """``auto`` resolves per machine (bfloat16 on AMX CPUs): a checkpoint that began in another precision or
    on another device is refused in one line, never continued differently."""
    from camcodec.checkpoint import EncodeCheckpoint, fingerprint
    from camcodec.encoder import initial_model

    out = tmp_path / "clip.cam"
    config = tiny_config(40, prune=0.2, rate_weight=0)  # what the command below resolves: fp32 on the CPU
    model = initial_model(config, 8, 48, 64, torch.device("cpu"))
    identity = fingerprint(load_source(source).frames, asdict(config), model.config.to_dict())
    EncodeCheckpoint(out, model, identity, trains_on="cuda bf16").save()
    short = [o if o != "400" else "40" for o in OPTIONS]
    assert main(["encode", str(source), "-o", str(out), *short]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.endswith(
        "this encode began training on cuda bf16, here it would go on in cpu fp32; give --device and --precision "
        "to match, or --no-resume starts again"
    ), err


def test_resume_without_a_checkpoint_just_starts(source, tmp_path):
    out = tmp_path / "clip.cam"
    short = [o if o != "400" else "40" for o in OPTIONS]
    assert main(["encode", str(source), "-o", str(out), *short, "--resume"]) == 0
    assert out.exists()


def test_resume_from_a_phase_boundary_matches(source, uninterrupted, tmp_path):
    """A checkpoint written at the end of a phase (no running state) also resumes exactly."""
    from camcodec.encoder import Encoder

    out = tmp_path / "clip.cam"
    config = tiny_config(400, prune=0.2, rate_weight=0)
    clip = load_source(source)
    # An encode that saves only at phase ends, stopped right after its training phase:
    encoder = Encoder(config, checkpoint_interval=1e9)
    from camcodec import train as train_module

    real_fit, calls = train_module.fit, []

    def fit_then_stop(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real_fit(*args, **kwargs)

    camcodec.encoder.fit = fit_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            encoder.encode(clip, out)
    finally:
        camcodec.encoder.fit = real_fit
    assert not out.exists() and (tmp_path / "clip.cam.ckpt").exists()
    Encoder(config, checkpoint_interval=1e9).encode(clip, out)
    assert np.array_equal(np.frombuffer(out.read_bytes(), np.uint8), np.frombuffer(uninterrupted, np.uint8))


@pytest.mark.parametrize(
    "stop, optimizer", [(40, "adam"), (125, "adam"), (40, "soap")], ids=["training", "fine-tuning", "soap"]
)
def test_encode_with_learned_steps_resumes_mid_phase_to_the_identical_file(
    source, tmp_path, monkeypatch, stop, optimizer
):
    """The learned steps, their steered kappa, the rate fine-tuning holds, the noise generator and the
    optimizer's state (SOAP's bases and factors too) are part of the checkpoint."""
    from camcodec.checkpoint import EncodeCheckpoint
    from camcodec.encoder import Encoder

    config = tiny_config(120, rate_weight=0.01, rate_control=0.05, target_bpp=2.0, optimizer=optimizer)
    clip = load_source(source)
    Encoder(config).encode(clip, tmp_path / "ref.cam")

    real_save, saves = EncodeCheckpoint.save, []

    def save_then_stop(self, state=None):
        real_save(self, state)
        saves.append(state)
        if len(saves) == stop:  # mid-way through training (120 steps) or fine-tuning (12)
            raise KeyboardInterrupt

    monkeypatch.setattr(EncodeCheckpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        Encoder(config, checkpoint_interval=0).encode(clip, tmp_path / "clip.cam")
    assert saves[-1] is not None and saves[-1].step == {40: 40, 125: 5}[stop]
    monkeypatch.setattr(EncodeCheckpoint, "save", real_save)
    Encoder(config, checkpoint_interval=0).encode(clip, tmp_path / "clip.cam")
    assert (tmp_path / "clip.cam").read_bytes() == (tmp_path / "ref.cam").read_bytes()
