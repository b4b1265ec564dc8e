"""What users of x264/x265/ffmpeg expect: an encode that says what it will do and how long it takes, an
effort in time, outputs never replaced without -y, rate targets that are not missed silently, colours kept
through a pipe, one vocabulary for the command and the API."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import camcodec
from camcodec.cli import main
from camcodec.media import VideoWriter, read_video, write_video
from camcodec.media.pattern import moving_pattern
from conftest import tiny_argv, tiny_options

TRAIN = tiny_argv(30)
#: The tiny encode at a rate the command sets (no --params-per-pixel of its own).
AT_RATE = ["--preset", "fast", "--steps", "30", "--device", "cpu", "--precision", "fp32", "-q"]


def _camcodec(*args: str) -> list[str]:
    return [sys.executable, "-m", "camcodec", *args]


@pytest.fixture(scope="module")
def source(pattern_mkv):
    return pattern_mkv


@pytest.fixture(scope="module")
def cam(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("cam") / "clip.cam"
    assert main(["encode", str(source), "-o", str(out), *TRAIN]) == 0
    return out


# --- 1. an encode that says what it will do -------------------------------------------------------------


@pytest.mark.slow
def test_encode_says_its_plan_first(source, tmp_path):
    run = subprocess.run(
        _camcodec("encode", str(source), "-o", str(tmp_path / "a.cam"), *[a for a in TRAIN if a != "-q"]),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    first = run.stderr.splitlines()[0]
    assert first.startswith("camcodec encode: 8 frames 64x48 at 25 fps -> cam-nerv2, ")
    assert "30 steps of 2 frames" in first and "cpu fp32" in first and "bpp" in first


def test_quiet_encode_says_no_plan(source, tmp_path, capsys):
    assert main(["encode", str(source), "-o", str(tmp_path / "a.cam"), *TRAIN]) == 0
    assert capsys.readouterr().err == ""


def test_an_estimate_of_hours_is_a_warning(caplog):
    from camcodec.effort import EncodeEstimate
    from camcodec.train import Phase, StepEvent

    estimate = EncodeEstimate(finetune_steps=1000)
    phase = Phase("train", 100_000, 1e-2)
    estimate.begin(phase, 0)
    clock = iter(np.arange(0.0, 1000.0, 2.0))  # a step every 2 seconds

    def event(step: int) -> StepEvent:
        return StepEvent(phase, step, __import__("torch").zeros(()), None, None)  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO):
        import camcodec.effort as effort

        real = effort.time.perf_counter
        effort.time.perf_counter = lambda: float(next(clock))
        try:
            for step in range(1, 8):
                estimate.after_step(event(step))
        finally:
            effort.time.perf_counter = real
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "0.50 steps/s: about 56 h" in record.getMessage() and "--time 20m" in record.getMessage()


def test_time_budget_plans_steps_and_deadlines():
    from camcodec.config import resolve_config
    from camcodec.effort import RESERVE_SHARE, plan_for_time

    config = resolve_config("fast", time="10m")
    assert config.time_budget == 600
    plan = plan_for_time(
        600, started=__import__("time").perf_counter(), steps_per_second=2.0, config=config, num_frames=60
    )
    work = 600 * (1 - RESERVE_SHARE)
    assert plan.steps == pytest.approx(work * 2 / (1 + 0.1), abs=2)  # and QAT, a tenth of the steps
    assert plan.end > __import__("time").perf_counter() + 0.95 * 600


def test_a_deadline_keeps_time_for_the_fine_tuning_after_it(monkeypatch):
    """At 1 step/s, with 10 fine-tuning steps to come (13 s at the margin), training stops 13 s before the end."""
    import camcodec.effort as effort
    from camcodec.train import Phase, StepEvent

    now = iter(range(1000))
    monkeypatch.setattr(effort.time, "perf_counter", lambda: float(next(now)))
    deadline = effort.Deadline(end=30.0, after_steps=10)
    phase = Phase("train", 100, 1e-2)
    deadline.begin(phase, 0)
    zero = __import__("torch").zeros(())
    stopped = next(s for s in range(1, 100) if deadline.after_step(StepEvent(phase, s, zero, zero, None)))  # type: ignore[arg-type]
    assert stopped == 18  # the clock reads 17 s after 18 steps: 17 + 13 >= 30


@pytest.mark.slow
def test_time_option_keeps_to_its_budget_and_lands_the_rate(source, tmp_path):
    options = {**tiny_options(1), "steps": None, "time": "8s", "bpp": 1.0}
    stats = camcodec.encode(source, tmp_path / "timed.cam", **options)
    train = next(p for p in stats.phases if p["phase"] == "train")
    assert train["steps"] > 5  # planned from the measured rate, not one step (25 on this machine under load)
    assert stats.encode_seconds < 8 * 1.25
    assert stats.bpp <= 1.0


def test_time_with_steps_or_passes_is_a_conflict():
    from camcodec.config import resolve_config

    for clash in ({"steps": 5}, {"epochs": 5}):
        with pytest.raises(camcodec.InputError, match="both set the effort"):
            resolve_config(time="5m", **clash)


def test_a_short_clip_trains_the_steps_of_min_pass_frames():
    """A preset's passes count a short clip as MIN_PASS_FRAMES frames (a network's steps to converge do not
    shrink with the clip); --steps is taken as given, and longer clips keep passes over their own frames."""
    from camcodec.config import MIN_PASS_FRAMES, resolve_config

    fast = resolve_config("fast")
    floor = fast.epochs * -(-MIN_PASS_FRAMES // fast.batch_size)
    assert [fast.total_steps(n) for n in (1, 10, MIN_PASS_FRAMES)] == [floor] * 3
    assert fast.total_steps(4 * MIN_PASS_FRAMES) == 4 * floor
    assert resolve_config("fast", steps=7).total_steps(10) == 7


def test_ctrl_c_while_torch_loads_is_one_line(monkeypatch, capsys):
    import camcodec.cli as cli

    def interrupted(names=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "subcommands", interrupted)
    assert main(["encode", "x.mkv", "-o", "x.cam"]) == 130
    assert capsys.readouterr().err == "camcodec encode: interrupted\n"


# --- 2. outputs and work never lost silently --------------------------------------------------------------


def test_existing_outputs_are_refused_without_y(source, cam, tmp_path, capsys):
    out = tmp_path / "old.cam"
    out.write_bytes(b"keep me")
    assert main(["encode", str(source), "-o", str(out), *TRAIN]) == 2
    assert (
        capsys.readouterr().err == f"camcodec encode: error: {out}: already exists; -y overwrites it (overwrite=True)\n"
    )
    assert main(["encode", str(source), "-o", str(out), "-n", *TRAIN]) == 2
    assert out.read_bytes() == b"keep me"
    video = tmp_path / "old.mkv"
    video.write_bytes(b"keep me too")
    assert main(["decode", str(cam), "-o", str(video), "-q"]) == 2
    assert video.read_bytes() == b"keep me too"
    assert main(["decode", str(cam), "-o", str(video), "-q", "-y", "-n"]) == 2  # one or the other
    assert main(["decode", str(cam), "-o", str(video), "-q", "-y"]) == 0
    assert read_video(video).num_frames == 8
    frames = tmp_path / "frames"
    assert main(["decode", str(cam), "-o", f"{frames}/", "-q"]) == 0
    assert main(["decode", str(cam), "-o", f"{frames}/", "-q"]) == 2  # a folder of frames is an output too


@pytest.mark.slow
def test_encode_with_y_replaces_the_output(source, tmp_path):
    out = tmp_path / "old.cam"
    out.write_bytes(b"old")
    assert main(["encode", str(source), "-o", str(out), "-y", *TRAIN]) == 0
    assert camcodec.decode(out).shape == (8, 48, 64, 3)


def test_encode_refuses_a_video_name_for_its_cam_file(source, tmp_path):
    with pytest.raises(camcodec.OutputError, match=r"encode writes a \.cam file, not \.mp4"):
        camcodec.encode(source, tmp_path / "out.mp4", **tiny_options(1))


# --- 3. rate targets missed only with a word --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rate", ["xs", "s"])
def test_a_rung_the_smallest_network_misses_is_a_warning(tmp_path, capsys, rate):
    clip = tmp_path / "small.mkv"
    write_video(clip, moving_pattern(10, 90, 160), Fraction(25))
    assert main(["encode", str(clip), "-o", str(tmp_path / "a.cam"), "--rate", rate, *AT_RATE]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.splitlines()
    assert warning.startswith("camcodec encode: warning: ") and "the smallest network for 160x90" in warning
    assert "frames or more would land it" in warning
    assert f"(asked ~{camcodec.config.RUNG_BPP[rate]:.2g})" in captured.out


@pytest.mark.slow
def test_a_target_missed_is_a_warning_with_the_landed_rate(tmp_path, capsys):
    clip = tmp_path / "small.mkv"
    write_video(clip, moving_pattern(10, 90, 160), Fraction(25))
    assert main(["encode", str(clip), "-o", str(tmp_path / "a.cam"), "--bpp", "0.01", *AT_RATE]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.splitlines()
    assert "landed 0.0" in warning and "above the target 0.01" in warning
    assert "(target 0.01)" in captured.out


def test_rate_and_bpp_conflict():
    with pytest.raises(camcodec.InputError, match="--rate and --bpp both set the rate"):
        camcodec.resolve_config(rate="s", bpp=0.05)


# --- 4. colours through a pipe ----------------------------------------------------------------------------


@pytest.mark.parametrize("matrix", ["bt601", "bt709", "bt2020"])
def test_y4m_keeps_colours_whatever_the_source_matrix(tmp_path, matrix):
    """Y4M stores no matrix: whatever a file's matrix, Y4M is written in the one the reader assumes."""
    flat = np.zeros((2, 16, 16, 3), np.uint8)
    flat[..., :] = (200, 40, 90)  # saturated: BT.601 and BT.709 tell it apart by far more than rounding
    with VideoWriter(tmp_path / "a.y4m", 16, 16, 25, color_matrix=matrix) as writer:
        writer.write(flat)
    assert np.abs(read_video(tmp_path / "a.y4m").frames.astype(int) - flat).max() <= 2


@pytest.mark.slow
def test_pipe_of_a_bt601_file_keeps_its_colours(tmp_path):
    """``camcodec decode a.cam -o - | camcodec encode -``: the frames the second reads are the first's
    (through 4:2:0: 41 dB here; 26 dB when Y4M was written in the file's BT.601 and read as BT.709)."""
    colours = np.zeros((8, 48, 64, 3), np.uint8)
    colours[..., :32, :], colours[..., 32:, :] = (200, 40, 90), (30, 180, 220)
    with VideoWriter(tmp_path / "src.mp4", 64, 48, 25, color_matrix="bt601", options={"crf": "0"}) as writer:
        writer.write(colours)
    cam = tmp_path / "a.cam"
    camcodec.encode(tmp_path / "src.mp4", cam, **tiny_options(60))
    assert camcodec.Decoder(cam).info.color_matrix == "bt601"
    piped = subprocess.run(_camcodec("decode", str(cam), "-o", "-", "-q"), capture_output=True, check=True)
    through = read_video(io.BytesIO(piped.stdout)).frames.astype(float)
    error = np.mean((through - camcodec.decode(cam).astype(float)) ** 2)
    assert 10 * np.log10(255**2 / error) > 35


# --- 5. one vocabulary ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_takes_the_command_names(source, tmp_path):
    stats = camcodec.encode(
        source, tmp_path / "a.cam", frames=3, bpp=0.5, scale="32x24", **{**tiny_options(10), "preset": "fast"}
    )
    assert (stats.frames, stats.width, stats.height, stats.target_bpp) == (3, 32, 24, 0.5)
    with pytest.raises(camcodec.InputError, match="outside the video"):
        camcodec.encode(source, tmp_path / "b.cam", frames="5:20", **tiny_options(1))


def test_errors_name_the_flags():
    with pytest.raises(camcodec.InputError, match="^--batch-size must be >= 1$"):
        camcodec.resolve_config(batch_size=0)
    assert main(["encode", "x.mkv", "-o", "x.cam", "--batch-size", "0"]) == 2


def test_threads_after_the_subcommand(cam, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["decode", str(cam), "-o", str(tmp_path / "a.mkv"), "-q", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_frames_mean_the_same_in_decode_and_encode(cam, tmp_path):
    assert main(["decode", str(cam), "-o", str(tmp_path / "five.mkv"), "--frames", "5", "-q"]) == 0
    assert np.array_equal(read_video(tmp_path / "five.mkv").frames, camcodec.decode(cam, frames=slice(0, 5)))
    assert main(["decode", str(cam), "-o", str(tmp_path / "mid.mkv"), "--frames", "2", "--start", "3", "-q"]) == 0
    assert np.array_equal(read_video(tmp_path / "mid.mkv").frames, camcodec.decode(cam, frames=slice(3, 5)))
    assert main(["decode", str(cam), "-o", str(tmp_path / "r.mkv"), "--frames", "6:8", "-q"]) == 0
    assert read_video(tmp_path / "r.mkv").num_frames == 2
    assert main(["decode", str(cam), "-o", str(tmp_path / "x.mkv"), "--frames", "6:9", "-q"]) == 2


# --- 6. smaller things ------------------------------------------------------------------------------------


def test_decoder_indexes_as_a_sequence(cam):
    decoder = camcodec.Decoder(cam)
    frames = camcodec.decode(cam)
    assert np.array_equal(decoder[-1], frames[-1]) and np.array_equal(decoder[np.int64(2)], frames[2])
    assert np.array_equal(decoder[::3], frames[::3]) and np.array_equal(decoder[-3:], frames[-3:])
    for bad in (1.5, "2", None):
        with pytest.raises(TypeError, match="frame indices must be integers or slices"):
            decoder[bad]  # type: ignore[index]
    with pytest.raises(IndexError):
        decoder[8]


def test_warnings_are_one_line_like_errors(capsys):
    from camcodec.cli import setup_logging

    setup_logging("camcodec encode", 0)
    logging.getLogger("camcodec.encoder").warning("the rate\nis missed")
    logging.getLogger("camcodec.encoder").info("not shown")
    logging.getLogger(camcodec.STATUS_LOGGER).info("a plan")
    assert capsys.readouterr().err == "camcodec encode: warning: the rate is missed\ncamcodec encode: a plan\n"
    setup_logging("camcodec encode", 0, quiet=True)
    logging.getLogger(camcodec.STATUS_LOGGER).info("a plan")
    assert capsys.readouterr().err == ""


def test_i420_output_reads_back_as_yuv(cam, tmp_path):
    assert main(["decode", str(cam), "-o", str(tmp_path / "a.i420"), "-q"]) == 0
    assert main(["decode", str(cam), "-o", str(tmp_path / "a.yuv"), "-q"]) == 0
    assert (tmp_path / "a.i420").read_bytes() == (tmp_path / "a.yuv").read_bytes()


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), Fraction(25)])
@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_ntsc_rates_survive_millisecond_timestamps(tmp_path, fps, ext):
    write_video(tmp_path / f"a{ext}", moving_pattern(30, 24, 32), fps)
    assert read_video(tmp_path / f"a{ext}").fps == fps


@pytest.mark.slow
def test_svt_av1_says_nothing_unless_asked(cam, tmp_path):
    run = subprocess.run(
        _camcodec("decode", str(cam), "-o", str(tmp_path / "a.mkv"), "--codec", "libsvtav1", "-q"),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "Svt[" not in run.stderr


@pytest.mark.slow
def test_a_10_bit_source_decodes_to_10_bit_y4m(tmp_path):
    source = moving_pattern().astype(np.uint16) * 257
    with VideoWriter(tmp_path / "ten.y4m", 64, 48, 25, bit_depth=10) as writer:
        writer.write(source)
    cam = tmp_path / "ten.cam"
    camcodec.encode(tmp_path / "ten.y4m", cam, **tiny_options(30))
    assert camcodec.Decoder(cam).info.pix_fmt == "yuv420p10le"
    assert main(["decode", str(cam), "-o", str(tmp_path / "out.y4m"), "-q"]) == 0
    with open(tmp_path / "out.y4m", "rb") as file:
        assert b" C420p10 " in file.readline()
    import av

    with av.open(str(tmp_path / "out.y4m")) as container:
        luma = np.stack([frame.to_ndarray() for frame in container.decode(video=0)])
    assert luma.dtype == np.uint16 and luma.min() >= 64 and luma.max() <= 940  # limited range, 10 bits
    assert main(["decode", str(cam), "-o", str(tmp_path / "eight.y4m"), "--depth", "8", "-q"]) == 0
    decoded = camcodec.decode(cam).astype(int)
    ten, eight = (np.abs(read_video(tmp_path / name).frames - decoded).mean() for name in ("out.y4m", "eight.y4m"))
    assert ten <= eight + 0.1  # 4:2:0 costs both the same; 10 bits lose nothing more
    assert main(["decode", str(cam), "-o", str(tmp_path / "out.mkv"), "--depth", "10", "-q"]) == 2
