"""The camcodec command, called through main([...]) as a user would type it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import camcodec
from camcodec.cli import main
from camcodec.media import read_video, write_video

TRAIN = ["--steps", "120", "--params-per-pixel", "1.0", "--lr", "0.01", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    from fractions import Fraction

    from conftest import moving_pattern

    folder = tmp_path_factory.mktemp("cli")
    source = folder / "source.mkv"
    write_video(source, moving_pattern(), Fraction(30000, 1001))
    out = folder / "clip.cam"
    assert main(["encode", str(source), "-o", str(out), "--preset", "fast", *TRAIN]) == 0
    return folder, out


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
    assert description["segments"][0]["model_config"]["arch"] == "cam-nerv2"
    assert main(["info", str(cam)]) == 0
    assert "stem.layers.0.weight" in capsys.readouterr().out


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
