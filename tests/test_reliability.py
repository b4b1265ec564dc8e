"""Reliability (issue 6): bad input gets a one-line error, hostile files are refused cheaply, nothing is lost.

Every bad input the command is tried with is a case in ``CASES``, run through ``main([...])`` as a user
would type it. ``docs/errors.md`` is the table of what the user sees for each, made from these very
runs: ``CAMCODEC_WRITE_ERRORS_DOC=1 python -m pytest tests/test_reliability.py`` rewrites it, and
without that variable the last test checks that it is still true.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import bitstream as bs
import camcodec
from camcodec.cli import main
from camcodec.media import read_video, write_video
from camcodec.media.pattern import moving_pattern
from camfile import with_config
from conftest import SHARED_DATA, tiny_argv, tiny_options

REPO = Path(__file__).resolve().parents[1]
ERRORS_DOC = REPO / "docs" / "errors.md"
BUS = SHARED_DATA / "bus_352x288_420_f20_b8.yuv"
TEN_BIT = SHARED_DATA / "park_joy_90p_10_420_20f.y4m"
TINY = tiny_argv(5)
TINY_API = tiny_options(5)
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --- helpers ------------------------------------------------------------------------------------------


def hidden_temps(folder: Path) -> list[str]:
    """Temporary files or folders a writer left behind (they are hidden and end in .tmp...)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def make_nut(path: Path, pix_fmt: str) -> None:
    """One 16x16 frame of raw video in ``pix_fmt`` in a NUT container."""
    with av.open(str(path), "w", format="nut") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, pix_fmt
        frame = av.VideoFrame(16, 16, pix_fmt)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_cam) -> Path:
    """A folder of bad (and a few good) inputs; the cases run with it as the current folder."""
    w = tmp_path_factory.mktemp("inputs")
    write_video(w / "clip.mkv", moving_pattern(4, 24, 32), Fraction(25))
    write_video(w / "one_frame.mkv", moving_pattern(1, 24, 32), Fraction(25))
    write_video(w / "odd_45x37.mkv", moving_pattern(3, 37, 45), Fraction(25))
    (w / "notes.txt").write_text("this is not a video\n" * 40)
    (w / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (w / "empty.mp4").write_bytes(b"")
    (w / "header_only.y4m").write_bytes(b"YUV4MPEG2 W32 H24 F25:1 Ip A1:1 C420jpeg\n")
    (w / "cut_short.y4m").write_bytes(b"YUV4MPEG2 W32 H24 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(500))
    (w / "strange_colour.y4m").write_bytes(b"YUV4MPEG2 W32 H24 F25:1 Ip A1:1 Cxyz\nFRAME\n" + bytes(32 * 24 * 3))
    make_nut(w / "rgb4.nut", "rgb4")
    (w / "zero.yuv").write_bytes(b"")
    (w / "no_pngs").mkdir()
    (w / "a_folder.cam").mkdir()
    (w / "unreadable.mkv").write_bytes((w / "clip.mkv").read_bytes())
    (w / "unreadable.cam").write_bytes(tiny_cam.read_bytes())
    (w / "read_only").mkdir()
    if hasattr(os, "mkfifo"):
        os.mkfifo(w / "pipe.mp4")
        os.mkfifo(w / "pipe.cam")

    data = tiny_cam.read_bytes()
    (w / "good.cam").write_bytes(data)
    (w / "a_cam_named.mkv").write_bytes(data)
    (w / "empty.cam").write_bytes(b"")
    (w / "notes.cam").write_bytes(b"this is not a camcodec file\n" * 10)
    (w / "truncated.cam").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (w / "flipped.cam").write_bytes(bytes(flipped))
    (w / "future.cam").write_bytes(data[:8] + struct.pack("<H", 4) + data[10:])
    (w / "trailing.cam").write_bytes(data + b"\x00")
    blocks = len(bs.describe(data)["segments"][0]["model_config"]["channels"])
    (w / "huge_network.cam").write_bytes(with_config(data, channels=[4096] * blocks))
    (w / "config_mismatch.cam").write_bytes(with_config(data, width=64))
    return w


# --- the table of bad inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One command line: what is tried, the argv (``{data}`` is ../shared/data), the exit code expected,
    and a text the message must contain (the file it names)."""

    name: str
    what: str
    argv: tuple[str, ...]
    code: int = 2
    names: str = ""
    needs_data: bool = False
    denied: str = ""  # a file or folder made unreadable/unwritable for the case


def case(name: str, what: str, command: str, code: int = 2, names: str = "", **kw) -> Case:
    return Case(name, what, tuple(command.split()), code, names, **kw)


CASES = [
    # encode: the source
    case("missing", "source does not exist", "encode missing.mp4 -o out.cam", names="missing.mp4"),
    case("folder-no-png", "source is a folder without PNG frames", "encode no_pngs -o out.cam", names="no_pngs"),
    case("text", "source is a text file", "encode notes.txt -o out.cam", names="notes.txt"),
    case("random", "source is random bytes named .mp4", "encode random.mp4 -o out.cam", names="random.mp4"),
    case("empty-file", "source is an empty file (0 bytes)", "encode empty.mp4 -o out.cam", names="empty.mp4"),
    case(
        "empty-video",
        "source is a video with no frames (Y4M header only)",
        "encode header_only.y4m -o out.cam",
        names="header_only.y4m",
    ),
    case("cut-y4m", "source is a Y4M cut inside a frame", "encode cut_short.y4m -o out.cam", names="cut_short.y4m"),
    case(
        "y4m-colour",
        "Y4M with an unknown colour space (Cxyz)",
        "encode strange_colour.y4m -o out.cam",
        names="strange_colour.y4m",
    ),
    case(
        "pix-fmt",
        "a pixel format swscale cannot convert (rgb4, 4-bit packed)",
        "encode rgb4.nut -o out.cam",
        names="rgb4.nut",
    ),
    case(
        "unreadable",
        "source without read permission",
        "encode unreadable.mkv -o out.cam",
        names="unreadable.mkv",
        denied="unreadable.mkv",
    ),
    case("fifo", "source is a FIFO (would block FFmpeg)", "encode pipe.mp4 -o out.cam", names="pipe.mp4"),
    case(
        "raw-no-size",
        "raw YUV without --size",
        "encode {data}/bus_352x288_420_f20_b8.yuv -o out.cam",
        names="bus_352x288_420_f20_b8.yuv",
        needs_data=True,
    ),
    case(
        "raw-wrong-size",
        "raw YUV whose length is not a whole number of frames at --size (bus at 350x288)",
        "encode {data}/bus_352x288_420_f20_b8.yuv --size 350x288 -o out.cam",
        names="bus_352x288_420_f20_b8.yuv",
        needs_data=True,
    ),
    case("raw-empty", "raw YUV of 0 bytes", "encode zero.yuv --size 32x24 -o out.cam", names="zero.yuv"),
    case(
        "size-not-raw",
        "--size for a file that has its own size",
        "encode clip.mkv --size 32x24 -o out.cam",
        names="clip.mkv",
    ),
    case("start-beyond", "--start beyond the last frame", "encode clip.mkv --start 10 -o out.cam", names="clip.mkv"),
    case("start-negative", "--start -1", "encode clip.mkv --start -1 -o out.cam", names="--start"),
    case("frames-0", "--frames 0", "encode clip.mkv --frames 0 -o out.cam", names="--frames"),
    case("scale-0", "--scale 0x24", "encode clip.mkv --scale 0x24 -o out.cam", names="--scale"),
    case(
        "scale-huge",
        "--scale beyond what a .cam file holds",
        "encode clip.mkv --scale 20000x20000 -o out.cam",
        names="clip.mkv",
    ),
    case("bad-option", "an option value of the wrong type", "encode clip.mkv --steps many -o out.cam", names="--steps"),
    case("bad-device", "an unknown device", "encode clip.mkv --device tpu -o out.cam", names="device"),
    # encode: the output (refused before training)
    case(
        "out-no-folder",
        "output in a folder that does not exist",
        "encode clip.mkv -o nowhere/out.cam",
        names="nowhere/out.cam",
    ),
    case(
        "out-parent-file",
        "output under a path that is a file",
        "encode clip.mkv -o notes.txt/out.cam",
        names="notes.txt/out.cam",
    ),
    case("out-is-folder", "output path is a folder", "encode clip.mkv -o no_pngs", names="no_pngs"),
    case(
        "out-read-only",
        "output in a folder without write permission",
        "encode clip.mkv -o read_only/out.cam",
        names="read_only/out.cam",
        denied="read_only",
    ),
    case("out-is-input", "output path is the source itself", "encode clip.mkv -o clip.mkv", names="clip.mkv"),
    case("out-exists", "output exists (no -y)", "encode clip.mkv -o good.cam", names="good.cam"),
    case("out-video", "output named as a video file", "encode clip.mkv -o out.mp4", names="out.mp4"),
    case("rate-and-bpp", "--rate and --bpp together", "encode clip.mkv --rate s --bpp 0.05 -o out.cam", names="--bpp"),
    case(
        "time-and-steps",
        "--time and --steps together",
        "encode clip.mkv --time 5m --steps 9 -o out.cam",
        names="--time",
    ),
    case("time-syntax", "--time that is not a duration", "encode clip.mkv --time soon -o out.cam", names="--time"),
    case("encode-range", "--frames A:B past the end", "encode clip.mkv --frames 2:10 -o out.cam", names="clip.mkv"),
    case(
        "range-and-start",
        "--frames A:B with --start",
        "encode clip.mkv --frames 1:3 --start 1 -o out.cam",
        names="--start",
    ),
    # decode and info: the .cam file
    case("cam-missing", "the .cam file does not exist", "decode missing.cam -o out.mkv", names="missing.cam"),
    case("cam-folder", "the .cam path is a folder", "decode a_folder.cam -o out.mkv", names="a_folder.cam"),
    case("cam-fifo", "the .cam path is a FIFO", "decode pipe.cam -o out.mkv", names="pipe.cam"),
    case(
        "cam-unreadable",
        "the .cam file without read permission",
        "decode unreadable.cam -o out.mkv",
        names="unreadable.cam",
        denied="unreadable.cam",
    ),
    case("cam-foreign", "not a .cam file (text)", "decode notes.cam -o out.mkv", names="notes.cam"),
    case("cam-empty", "an empty .cam file", "decode empty.cam -o out.mkv", names="empty.cam"),
    case("cam-truncated", "a .cam file cut in half", "decode truncated.cam -o out.mkv", names="truncated.cam"),
    case("cam-flipped", "a .cam file with one bit flipped", "decode flipped.cam -o out.mkv", names="flipped.cam"),
    case("cam-version", "a .cam file of a future format version", "decode future.cam -o out.mkv", names="future.cam"),
    case("cam-trailing", "a .cam file with a byte appended", "decode trailing.cam -o out.mkv", names="trailing.cam"),
    case(
        "cam-huge-network",
        "a forged model config describing a huge network (4096 channels)",
        "decode huge_network.cam -o out.mkv",
        names="huge_network.cam",
    ),
    case(
        "cam-mismatch",
        "a forged model config for another frame size",
        "decode config_mismatch.cam -o out.mkv",
        names="config_mismatch.cam",
    ),
    case("info-foreign", "info on a file that is not a .cam file", "info notes.cam", names="notes.cam"),
    case("info-folder", "info on a folder", "info a_folder.cam", names="a_folder.cam"),
    # decode: the output and options
    case("out-ext", "an output extension no writer knows", "decode good.cam -o out.xyz", names="out.xyz"),
    case(
        "out-missing-folder",
        "decode into a folder that does not exist",
        "decode good.cam -o nowhere/out.mkv",
        names="nowhere/out.mkv",
    ),
    case(
        "decode-out-is-input",
        "decode over the .cam file itself (named .mkv)",
        "decode a_cam_named.mkv -o a_cam_named.mkv",
        names="a_cam_named.mkv",
    ),
    case("frames-range", "--frames outside the video", "decode good.cam -o out.mkv --frames 10:20", names="good.cam"),
    case("decode-range", "--frames A:B past the end", "decode good.cam -o out.mkv --frames 2:10", names="good.cam"),
    case("decode-exists", "decode onto an existing file (no -y)", "decode good.cam -o clip.mkv", names="clip.mkv"),
    case("frames-syntax", "--frames that is not a range", "decode good.cam -o out.mkv --frames a:b", names="--frames"),
    case("codec", "an encoder FFmpeg does not have", "decode good.cam -o out.mkv --codec nope", names="nope"),
    case("no-command", "no subcommand", "", names="COMMAND"),
    case("unknown-command", "an unknown subcommand", "frobnicate", names="frobnicate"),
    # inputs that must work
    case("one-frame", "a one-frame video", "encode one_frame.mkv -o one.cam " + " ".join(TINY), code=0),
    case("odd-size", "an odd frame size, 45x37", "encode odd_45x37.mkv -o odd.cam " + " ".join(TINY), code=0),
    case(
        "ten-bit",
        "a 10-bit 4:2:0 Y4M source",
        "encode {data}/park_joy_90p_10_420_20f.y4m --frames 2 -o ten.cam " + " ".join(TINY),
        code=0,
        needs_data=True,
    ),
    case(
        "raw-17",
        "raw YUV named f20 that holds 17 frames, at its true size 352x288 (scaled down to train fast)",
        "encode {data}/bus_352x288_420_f20_b8.yuv --size 352x288 --scale 44x36 --json -o bus.cam " + " ".join(TINY),
        code=0,
        needs_data=True,
    ),
]

RESULTS: dict[str, tuple[int, str]] = {}


def deny(monkeypatch, path: Path) -> None:
    """Take away the permission to read ``path`` (a file) or to write in it (a folder). As root, where
    permissions do not bind, the OS calls on it fail with EACCES instead: the message is the same."""
    path.chmod(0o555 if path.is_dir() else 0)
    if not AS_ROOT:
        return
    import builtins

    from bitstream import files

    target = str(path.resolve())

    def guard(function):
        def guarded(name, *args, **kwargs):
            resolved = Path(os.fsdecode(name)).resolve() if isinstance(name, (str, bytes, os.PathLike)) else None
            if resolved is not None and target in (str(resolved), str(resolved.parent)):
                raise PermissionError(13, "Permission denied", os.fsdecode(name))
            return function(name, *args, **kwargs)

        return guarded

    monkeypatch.setattr(os, "open", guard(os.open))
    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(av, "open", guard(av.open))
    monkeypatch.setattr(files, "reserve_beside", guard(files.reserve_beside))


def run_case(c: Case, workspace: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    if c.needs_data and not SHARED_DATA.is_dir():
        pytest.skip(f"real clips not found at {SHARED_DATA}")
    if c.name.endswith("fifo") and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    monkeypatch.chdir(workspace)
    if c.denied:
        deny(monkeypatch, workspace / c.denied)
    capsys.readouterr()
    try:
        code = main([arg.format(data=SHARED_DATA) for arg in c.argv])
    finally:
        if c.denied:
            (workspace / c.denied).chmod(0o755 if (workspace / c.denied).is_dir() else 0o644)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_and_exit_code(c: Case, workspace, monkeypatch, capsys) -> None:
    code, out, err = run_case(c, workspace, monkeypatch, capsys)
    assert "Traceback" not in err
    assert code == c.code, err
    if c.code == 0:  # warnings at most (a tiny clip misses its rate), one line each
        assert all(line.startswith("camcodec encode: warning: ") for line in err.strip().splitlines()), err
        RESULTS[c.name] = (code, out.strip().splitlines()[-1])
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("camcodec") and "error:" in lines[0]
    assert c.names in lines[0]
    assert not (workspace / "out.cam").exists() and not (workspace / "out.mkv").exists()
    assert hidden_temps(workspace) == []
    RESULTS[c.name] = (code, lines[0])


def test_inputs_that_must_work_decode_to_their_size(workspace, monkeypatch, capsys) -> None:
    """The successful cases above wrote files: they decode, at their exact size, to every output kind."""
    monkeypatch.chdir(workspace)
    if not (workspace / "odd.cam").exists():
        pytest.skip("runs after the cases that encode odd.cam and one.cam")
    odd = camcodec.decode("odd.cam", device="cpu")
    assert odd.shape == (3, 37, 45, 3)
    for out in ("odd.y4m", "odd.mkv", "odd.mp4", "odd.yuv"):
        assert main(["decode", "odd.cam", "-o", out, "-q"]) == 0
        size = {"size": (45, 37)} if out.endswith(".yuv") else {}
        back = read_video(out, **size).frames
        assert back.shape == odd.shape
    assert np.array_equal(read_video("odd.mkv").frames, odd)
    assert camcodec.decode("one.cam", device="cpu").shape == (1, 24, 32, 3)
    if SHARED_DATA.is_dir():
        assert camcodec.Decoder("ten.cam", device="cpu").info.pix_fmt == "yuv420p10le"
        stats = json.loads(RESULTS["raw-17"][1]) if "raw-17" in RESULTS else None
        if stats is not None:
            assert stats["frames"] == 17


def test_raw_yuv_frame_count_follows_the_file_not_the_name(shared_data) -> None:
    clip = read_video(shared_data / BUS.name, size=(352, 288))
    assert clip.frames.shape == (17, 288, 352, 3)
    with pytest.raises(camcodec.InputError, match=r"not a whole number of 350x288 .*\(17 frames and 14688 bytes"):
        read_video(shared_data / BUS.name, size=(350, 288))


# --- nothing lost ----------------------------------------------------------------------------------------


class Boom(Exception):
    pass


def failing_os(monkeypatch, call: str, error: type[BaseException], seen: list[int]) -> None:
    """The atomic writes see an ``os`` whose ``call`` (fsync or replace) raises ``error`` after noting the
    size of the temporary file written so far (the encodes here write no checkpoints)."""
    from bitstream import files

    def failing(first, *rest):
        seen.append(os.fstat(first).st_size if call == "fsync" else os.stat(first).st_size)
        raise error()

    proxy = type(os)("os")
    proxy.__dict__.update(os.__dict__)
    setattr(proxy, call, failing)
    monkeypatch.setattr(files, "os", proxy)


@pytest.mark.parametrize("call", ["fsync", "replace"])
@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt], ids=["exception", "ctrl-c"])
def test_cam_write_failure_keeps_the_old_file(tmp_path, monkeypatch, call, error) -> None:
    """An exception or Ctrl-C once the new bytes are written, before they are renamed into place."""
    target = tmp_path / "clip.cam"
    target.write_bytes(b"the previous file")
    seen: list[int] = []
    failing_os(monkeypatch, call, error, seen)
    with pytest.raises(error):
        camcodec.encode(moving_pattern(2, 16, 16), target, **TINY_API)
    assert seen and seen[0] > 100  # the new file was whole in its temporary place
    assert target.read_bytes() == b"the previous file"
    assert hidden_temps(tmp_path) == []


def test_cam_write_failure_through_the_command(workspace, tmp_path, monkeypatch, capsys) -> None:
    target = tmp_path / "clip.cam"
    target.write_bytes(b"the previous file")
    failing_os(monkeypatch, "replace", KeyboardInterrupt, [])
    assert main(["encode", str(workspace / "one_frame.mkv"), "-o", str(target), "-y", *TINY]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "camcodec encode: interrupted"
    assert target.read_bytes() == b"the previous file"
    assert hidden_temps(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mkv", "out.y4m", "out.yuv", "out.mp4", "frames"])
def test_decode_interrupted_midway_keeps_the_old_output(tiny_cam, tmp_path, monkeypatch, capsys, name) -> None:
    target = tmp_path / name
    assert main(["decode", str(tiny_cam), "-o", str(target), "-q"]) == 0
    before = {p.name: p.read_bytes() for p in target.iterdir()} if target.is_dir() else target.read_bytes()
    frames = camcodec.Decoder.iter_frames

    def two_then_interrupt(self, indices=None, **options):
        for count, frame in enumerate(frames(self, indices, **options)):
            if count == 2:
                raise KeyboardInterrupt
            yield 255 - frame  # different frames, so a partial write would show

    monkeypatch.setattr(camcodec.Decoder, "iter_frames", two_then_interrupt)
    assert main(["decode", str(tiny_cam), "-o", str(target), "-q", "-y"]) == 130
    after = {p.name: p.read_bytes() for p in target.iterdir()} if target.is_dir() else target.read_bytes()
    assert after == before
    assert hidden_temps(tmp_path) == []


def test_decoding_twice_gives_identical_frames_and_bytes(tiny_cam, tmp_path) -> None:
    first = camcodec.decode(tiny_cam, device="cpu")
    second = camcodec.Decoder(tiny_cam, device="cpu")[::-1][::-1]
    assert np.array_equal(first, second)
    outputs = [tmp_path / "a.y4m", tmp_path / "b.y4m"]
    for out in outputs:
        assert main(["decode", str(tiny_cam), "-o", str(out), "-q"]) == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_encoding_twice_with_one_seed_gives_identical_bytes(workspace, tmp_path) -> None:
    outputs = [tmp_path / "a.cam", tmp_path / "b.cam"]
    for out in outputs:
        assert main(["encode", str(workspace / "one_frame.mkv"), "-o", str(out), "--seed", "7", *TINY]) == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


# --- docs/errors.md ------------------------------------------------------------------------------------


def render_errors_doc() -> str:
    lines = [
        "# What the user sees for bad input",
        "",
        "Every row was produced by running the command (through `camcodec.cli.main`, as the console script",
        "does) in a folder of prepared inputs; `{data}` is `../shared/data`. Generated by",
        "`CAMCODEC_WRITE_ERRORS_DOC=1 python -m pytest tests/test_reliability.py`; the same test fails when a",
        "message changes without this file. Exit codes: 0 success, 2 a bad command line, input, file or option,",
        "1 an operating-system failure or a bug (one line too, traceback with `-vv`), 130 interrupted, 141 (quietly)",
        "when the reader of standard output went away.",
        "",
        "| what is tried | command | exit | what the user sees (stderr; stdout for successes) |",
        "|---|---|---|---|",
    ]
    for c in CASES:
        if c.name not in RESULTS:
            continue
        code, message = RESULTS[c.name]
        command = " ".join(["camcodec", *[a for a in c.argv if a not in TINY or c.code != 0]])
        if c.code == 0:
            command += " (tiny training options)"
            if message.startswith("{"):
                stats = json.loads(message)
                message = f"(JSON) frames {stats['frames']}, {stats['width']}x{stats['height']}, ..."
            else:  # the summary line up to the frame size: the rest (size, PSNR, time) is the encoder's to change
                message = re.sub(r"^(.*? \d+x\d+),.*$", r"\1, ...", message)
        message = message.replace(str(SHARED_DATA), "{data}").replace("|", "\\|")
        lines.append(f"| {c.what} | `{command}` | {code} | `{message}` |")
    lines += [
        "",
        "## In the API",
        "",
        "The library raises instead of printing: every error derives from `camcodec.CamcodecError`, and the",
        "command prints its message after `camcodec <command>: error:`.",
        "",
        "| error | raised for | also a |",
        "|---|---|---|",
        "| `InputError` | a source or option that cannot be used: missing, unreadable, not a video, empty, wrong"
        " size, a path that cannot be a .cam file | `ValueError` |",
        "| `OutputError` | an output that cannot be written: missing or read-only folder, a folder as target,"
        " the input itself, unknown extension or encoder | `OSError` |",
        "| `BadMagicError`, `UnsupportedVersionError`, `TruncatedError`, `ChecksumError`, `HeaderError` (all"
        " `BitstreamError`) | a .cam file that is foreign, of another version, cut short, corrupted, or"
        " inconsistent (including a model config that does not match its tensors) | `ValueError` |",
        "| `DeviceError` | a device that is not there (`cuda` without a GPU) | `RuntimeError` |",
        "",
        "The .cam reader's own checks (every header field, section and payload, in the order they run) are",
        'listed in `docs/bitstream.md`, "Reading: what is checked, in order".',
        "",
    ]
    return "\n".join(lines)


def test_errors_doc_is_current() -> None:
    """Last in the file: compares (or, with CAMCODEC_WRITE_ERRORS_DOC=1, writes) docs/errors.md."""
    if len(RESULTS) < len(CASES):  # the doc holds every row, the shared-data ones too
        pytest.skip("only part of the cases ran (a selection, or ../shared/data is missing)")
    text = render_errors_doc()
    if os.environ.get("CAMCODEC_WRITE_ERRORS_DOC"):
        ERRORS_DOC.write_text(text)
    assert ERRORS_DOC.read_text() == text, "a message changed: regenerate with CAMCODEC_WRITE_ERRORS_DOC=1"
