"""The camcodec command, called through main([...]) as a user would type it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import camcodec
from camcodec.cli import main
from camcodec.media import read_video, write_video
from conftest import tiny_argv

TRAIN = tiny_argv(120)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    from fractions import Fraction

    from camcodec.media.pattern import moving_pattern

    folder = tmp_path_factory.mktemp("cli")
    source = folder / "source.mkv"
    write_video(source, moving_pattern(), Fraction(30000, 1001))
    out = folder / "clip.cam"
    assert main(["encode", str(source), "-o", str(out), *TRAIN]) == 0
    return folder, out


@pytest.mark.slow
def test_encode_prints_summary_with_file_bpp(encoded, capsys, tmp_path):
    folder, _out = encoded
    again = tmp_path / "again.cam"
    assert main(["encode", str(folder / "source.mkv"), "-o", str(again), "--json", *TRAIN]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["frames"] == 8 and (stats["width"], stats["height"]) == (64, 48)
    assert stats["file_bytes"] == again.stat().st_size
    assert stats["bpp"] == pytest.approx(8 * again.stat().st_size / (64 * 48 * 8))


@pytest.mark.parametrize("name", ["out.mkv", "out.y4m", "out.yuv", "out.mp4", "frames"])
def test_decode_writes_each_output_kind(encoded, tmp_path, name):
    _, cam = encoded
    out = tmp_path / name
    assert main(["decode", str(cam), "-o", str(out), "-q"]) == 0
    reference = camcodec.decode(cam, device="cpu")
    if name.endswith(".yuv"):
        clip = read_video(out, size=(64, 48))
    else:
        clip = read_video(out)
    assert clip.frames.shape == reference.shape
    if name in ("out.mkv", "frames"):
        assert np.array_equal(clip.frames, reference)


def test_decode_frame_range_and_fps(encoded, tmp_path):
    _, cam = encoded
    out = tmp_path / "part.mkv"
    assert main(["decode", str(cam), "-o", str(out), "--frames", "2:5", "-q"]) == 0
    clip = read_video(out)
    assert np.array_equal(clip.frames, camcodec.decode(cam, frames=slice(2, 5), device="cpu"))
    assert clip.fps == pytest.approx(30000 / 1001)


def test_two_decodes_are_identical(encoded, tmp_path):
    _, cam = encoded
    first, second = tmp_path / "a.mkv", tmp_path / "b.mkv"
    for out in (first, second):
        assert main(["decode", str(cam), "-o", str(out), "-q"]) == 0
    assert np.array_equal(read_video(first).frames, read_video(second).frames)


def test_info_shows_header_and_tensors(encoded, capsys):
    _, cam = encoded
    assert main(["info", str(cam), "--json"]) == 0
    description = json.loads(capsys.readouterr().out)
    assert "64" in json.dumps(description) and "stem.layers.0.weight" in json.dumps(description)
    segment = description["segments"][0]
    assert segment["model_config"]["arch"] == "cam-nerv2"
    latents = [t["name"] for t in segment["tensors"] if t["role"] == "latent"]
    assert len(latents) == 1 and latents[0].startswith("warps.")  # the default network's flow level
    roles = segment["roles"]
    assert roles["latent"]["tensors"] == 1
    assert roles["weight"]["elements"] + roles["latent"]["elements"] == segment["elements"]
    assert main(["info", str(cam)]) == 0
    text = capsys.readouterr().out
    assert "stem.layers.0.weight" in text and "latents     1 tensors" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["decode", "{missing}", "-o", "{tmp}/x.mkv"],
        ["info", "{missing}"],
        ["encode", "{missing}", "-o", "{tmp}/x.cam"],
        ["decode", "{garbage}", "-o", "{tmp}/x.mkv"],
        ["info", "{garbage}"],
        ["decode", "{cam}", "-o", "{tmp}/x.unknownext"],
    ],
)
def test_errors_are_one_line_and_exit_2(encoded, tmp_path, capsys, argv):
    _, cam = encoded
    garbage = tmp_path / "garbage.cam"
    garbage.write_bytes(b"not a camcodec file at all" * 4)
    names = {"missing": tmp_path / "nope.cam", "tmp": tmp_path, "garbage": garbage, "cam": cam}
    code = main([arg.format(**names) for arg in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "error" in err
    assert not (tmp_path / "x.mkv").exists() and not (tmp_path / "x.cam").exists()


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("encode", "decode", "info"):
        assert name in out


def test_threads_option_sets_torch_threads(encoded, capsys):
    import torch

    _, cam = encoded
    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "info", str(cam)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_info_reads_a_header_without_torch(tmp_path):
    """``camcodec info`` imports only the command it runs: no torch, so it answers at once."""
    import subprocess
    import sys
    from pathlib import Path

    golden = Path(__file__).parent / "golden" / "cam-nerv2-v2.cam"
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "camcodec", "info", str(golden)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert run.stdout.startswith("camcodec file, format version 2")
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time")}
    assert "camcodec.errors" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "av", "compressai")}


def test_lazy_package_attributes():
    assert camcodec.Decoder.__name__ == "Decoder" and "Encoder" in dir(camcodec)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        camcodec.nothing  # noqa: B018


# --- Y4M through pipes, as x264/x265/ffmpeg users chain them ----------------------------------------------


def _camcodec(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "camcodec", *args]


GOLDEN_V2 = __import__("pathlib").Path(__file__).parent / "golden" / "cam-nerv2-v2.cam"


@pytest.mark.slow
def test_decode_to_stdout_is_the_y4m_file(tmp_path):
    import subprocess

    piped = subprocess.run(_camcodec("decode", str(GOLDEN_V2), "-o", "-", "-q"), capture_output=True, check=True)
    assert main(["decode", str(GOLDEN_V2), "-o", str(tmp_path / "file.y4m"), "-q"]) == 0
    assert piped.stdout == (tmp_path / "file.y4m").read_bytes()
    assert piped.stderr.decode().startswith("-: 8 frames 64x48")  # the summary keeps off the video
    import io

    import av

    def planes(source) -> np.ndarray:  # what an ffmpeg-style consumer gets: the YUV 4:2:0 pictures
        with av.open(source) as container:
            return np.stack([f.to_ndarray() for f in container.decode(video=0)])

    assert np.array_equal(planes(io.BytesIO(piped.stdout)), planes(str(tmp_path / "file.y4m")))
    assert len(planes(io.BytesIO(piped.stdout))) == 8
    from_stream = read_video(io.BytesIO(piped.stdout)).frames  # camcodec's reader takes a stream too
    assert np.array_equal(from_stream, read_video(tmp_path / "file.y4m").frames)


@pytest.mark.slow
def test_pipe_round_trip_decode_into_encode(tmp_path):
    """``camcodec decode a.cam -o - | camcodec encode - -o b.cam``: the second reads Y4M from stdin."""
    import subprocess

    decode = subprocess.Popen(_camcodec("decode", str(GOLDEN_V2), "-o", "-", "-q"), stdout=subprocess.PIPE)
    encode = subprocess.run(
        _camcodec("encode", "-", "-o", str(tmp_path / "b.cam"), *TRAIN),
        stdin=decode.stdout,
        capture_output=True,
        text=True,
    )
    decode.stdout.close()
    assert decode.wait() == 0 and encode.returncode == 0, encode.stderr
    decoded = camcodec.decode(tmp_path / "b.cam")
    assert decoded.shape == (8, 48, 64, 3)
    assert camcodec.Decoder(tmp_path / "b.cam").info.color_matrix == "bt709"  # Y4M's, as from a file


@pytest.mark.slow
def test_broken_pipe_ends_quietly(tmp_path):
    import fcntl
    import subprocess

    decode = subprocess.Popen(
        _camcodec("decode", str(GOLDEN_V2), "-o", "-", "-q"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # The whole output (~37 KB) would fit a default 64 KB pipe: on a busy machine the decoder could finish
    # before the reader leaves. A one-page pipe keeps it writing until then.
    fcntl.fcntl(decode.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    decode.stdout.read(10)  # a reader that takes the start of the header, then leaves
    decode.stdout.close()
    assert decode.wait() == 141
    assert decode.stderr.read() == b""


@pytest.mark.slow
def test_pipe_errors_are_one_line(tmp_path):
    import subprocess

    garbage = subprocess.run(
        _camcodec("encode", "-", "-o", str(tmp_path / "x.cam"), "-q"), input=b"not a video", capture_output=True
    )
    assert garbage.returncode == 2
    assert garbage.stderr.decode().strip().startswith("camcodec encode: error: <stdin>: not a readable video")
    assert len(garbage.stderr.decode().strip().splitlines()) == 1
    assert main(["encode", str(GOLDEN_V2), "-o", "-"]) == 2


def test_every_encode_option_comes_from_its_config_field(monkeypatch):
    """The encode command's options are built from EncodeConfig: each field has a flag that reaches it."""
    import argparse
    from dataclasses import fields

    from camcodec.cli import encode_cmd
    from camcodec.config import EncodeConfig

    parser = argparse.ArgumentParser()
    encode_cmd.setup_args(parser)
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    assert {f.name for f in fields(EncodeConfig)} <= set(flags)
    assert flags["target_bpp"] == "--bpp" and flags["cam"] == "--no-cam"
    unset = parser.parse_args(["in.mkv", "-o", "out.cam"])
    assert all(getattr(unset, f.name) is None for f in fields(EncodeConfig))  # presets and rungs decide

    seen = {}

    def fake_encode(source, out, **options):
        seen.update(options)
        raise camcodec.InputError("stop here")

    monkeypatch.setattr(encode_cmd.api, "encode", fake_encode)
    argv = ["encode", "in.mkv", "-o", "out.cam", "--grid-lr", "3", "--no-cam", "--bpp", "0.05", "--seed", "7"]
    assert main([*argv, "--model-params", "upsample=bilinear"]) == 2
    assert (seen["grid_lr"], seen["cam"], seen["target_bpp"], seen["seed"]) == (3.0, False, 0.05, 7)
    assert seen["model_params"] == (("upsample", "bilinear"),) and seen["epochs"] is None
