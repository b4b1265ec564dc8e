"""eval: metrics against hand-computed values, BD-rate on constructed curves, sources, and small end-to-end runs."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

import bitstream as bs
from camcodec.errors import InputError
from camcodec.media import SourceFrame, iter_source_frames, read_video, write_video
from camcodec.media.pattern import moving_pattern
from conftest import torch_threads
from eval import cli
from eval.bdrate import bd_quality, bd_rate
from eval.codecs import RGB_SOURCE_COLOR, make_codec
from eval.datasets import file_sequence, parse_uvg_name, resolve_sources, uvg_sequences
from eval.metrics import measure, ms_ssim, psnr_rgb, psnr_yuv, yuv420_planes
from eval.rd import RDConfig, run_rd
from eval.results import RESULTS_CSV, RESULTS_JSON

OUTPUTS = ("results.csv", "results.json", "bdrate.md", "rd_psnr.png", "rd_msssim.png")


def source_frames(frames: np.ndarray):
    """RGB frames as a conventional codec's input (no planes of their own)."""
    return (SourceFrame(frame, None, RGB_SOURCE_COLOR) for frame in frames)


def psnr_db(mse: float) -> float:
    return 10 * math.log10(255**2 / mse)


# ------------------------------------------------------------------------------------------------ metrics


def test_psnr_rgb_is_the_mean_of_per_frame_psnr():
    ref = np.full((2, 48, 64, 3), 100, np.uint8)
    dec = ref.copy()
    dec[0] += 5  # MSE 25
    dec[1] += 10  # MSE 100
    assert psnr_rgb(ref, dec) == pytest.approx((psnr_db(25) + psnr_db(100)) / 2, abs=1e-9)


def test_yuv420_planes_bt709_by_hand():
    gray = np.full((1, 48, 64, 3), 128, np.uint8)
    # Y = 16 + 219 * 128/255 = 125.93 -> 126; Cb = Cr = 128
    y, u, v = yuv420_planes(gray)
    assert (y == 126).all() and (u == 128).all() and (v == 128).all()
    reddish = gray.copy()
    reddish[..., 0] = 138
    # E_Y = 0.2126 * 138/255 + 0.7874 * 128/255 = 0.51030 -> Y = 127.76 -> 128
    # Cb = 128 + 224 * (0.50196 - 0.51030) / 1.8556 = 126.99 -> 127
    # Cr = 128 + 224 * (0.54118 - 0.51030) / 1.5748 = 132.39 -> 132
    y, u, v = yuv420_planes(reddish)
    assert (y == 128).all() and (u == 127).all() and (v == 132).all()


def test_yuv420_planes_average_chroma_over_2x2_blocks():
    frame = np.zeros((1, 48, 64, 3), np.uint8)
    frame[0, :, 0::2] = (0, 0, 255)  # columns alternately blue and black
    y, u, v = yuv420_planes(frame)
    # blue: Y = 16 + 219 * 0.0722 = 31.8 -> 32, Cb = 240, Cr = 128 - 224 * 0.0722 / 1.5748 = 117.73
    assert y[0, :2, :4].tolist() == [[32, 16, 32, 16], [32, 16, 32, 16]]
    assert (u == 184).all()  # (240 + 240 + 128 + 128) / 4
    assert (v == 123).all()  # (117.73 * 2 + 128 * 2) / 4 = 122.87
    odd = np.zeros((2, 35, 37, 3), np.uint8)
    y, u, v = yuv420_planes(odd)
    assert y.shape == (2, 35, 37) and u.shape == v.shape == (2, 18, 19)


def test_psnr_yuv_weights_6_1_1():
    ref = np.full((1, 48, 64, 3), 128, np.uint8)
    dec = ref.copy()
    dec[..., 0] = 138  # Y differs by 2, U by 1, V by 4 (see the test above)
    expected = (6 * psnr_db(4) + psnr_db(1) + psnr_db(16)) / 8
    assert psnr_yuv(ref, dec) == pytest.approx(expected, abs=1e-9)
    planes = [
        np.full((1, 48, 64), 100, np.uint8),
        np.full((1, 24, 32), 100, np.uint8),
        np.full((1, 24, 32), 100, np.uint8),
    ]
    shifted = [planes[0] + 1, planes[1] + 2, planes[2] + 3]  # planes given: used as they are
    expected = (6 * psnr_db(1) + psnr_db(4) + psnr_db(9)) / 8
    assert psnr_yuv(ref, ref, tuple(planes), tuple(shifted)) == pytest.approx(expected, abs=1e-9)


def test_ms_ssim_is_the_mean_of_per_frame_values():
    ref = moving_pattern(3)
    dec = np.clip(ref.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    assert ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)
    tensors = [torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in (ref, dec)]
    # 48 pixels on the short side: the Gaussian window shrinks to 3 for five scales
    per_frame = [
        reference_ms_ssim(tensors[0][i : i + 1], tensors[1][i : i + 1], data_range=1.0, win_size=3).item()
        for i in range(len(ref))
    ]
    assert ms_ssim(ref, dec) == pytest.approx(float(np.mean(per_frame)), abs=1e-5)
    quality = measure(ref, dec)
    assert quality.ms_ssim == pytest.approx(ms_ssim(ref, dec)) and quality.psnr_rgb == psnr_rgb(ref, dec)


def test_metrics_refuse_mismatched_frames():
    with pytest.raises(InputError, match="differ in shape"):
        psnr_rgb(moving_pattern(2), moving_pattern(3))
    with pytest.raises(InputError, match="uint8"):
        psnr_yuv(moving_pattern(2).astype(np.float32), moving_pattern(2))


# ------------------------------------------------------------------------------------------------ BD-rate

RATES = [0.02, 0.05, 0.11, 0.26]
PSNR = [30.1, 33.0, 35.6, 38.2]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_identical_curves_is_zero(method):
    assert bd_rate(RATES, PSNR, RATES, PSNR, method) == pytest.approx(0.0, abs=1e-12)
    assert bd_quality(RATES, PSNR, RATES, PSNR, method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_twice_the_bits_is_plus_100_percent(method):
    double = [2 * r for r in RATES]
    assert bd_rate(RATES, PSNR, double, PSNR, method) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(double, PSNR, RATES, PSNR, method) == pytest.approx(-0.5, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_and_psnr_match_an_independent_implementation(method):
    """The ``bjontegaard`` package (FAU Erlangen; scipy's interpolators) on four-point curves that cross."""
    import bjontegaard

    rng = np.random.default_rng(7)
    for _ in range(20):
        anchor_rates = np.sort(rng.uniform(0.01, 0.3, 4))
        anchor_psnr = np.sort(rng.uniform(26, 38, 4))
        test_rates = np.sort(anchor_rates * rng.uniform(0.6, 1.2, 4))
        test_psnr = np.sort(anchor_psnr + rng.uniform(-0.5, 1.0, 4))
        curves = (anchor_rates, anchor_psnr, test_rates, test_psnr)
        expected = bjontegaard.bd_rate(*curves, method=method, min_overlap=0) / 100
        assert bd_rate(*curves, method=method) == pytest.approx(expected)
        gain = bjontegaard.bd_psnr(*curves, method=method, min_overlap=0)
        assert bd_quality(*curves, method=method) == pytest.approx(gain)


def test_psnr_and_ssim_agree_with_scikit_image():
    """PSNR per frame as scikit-image computes it; MS-SSIM's first scale is SSIM, which it also has."""
    from skimage.metrics import peak_signal_noise_ratio

    frames = moving_pattern(4)
    noisy = np.clip(frames.astype(int) + np.random.default_rng(0).integers(-9, 10, frames.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    expected = np.mean([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(frames, noisy, strict=True)])
    assert psnr_rgb(frames, noisy) == pytest.approx(expected)


def test_psnr_of_a_1080p_frame_with_every_error_at_its_largest():
    """Summed in integers frame by frame: 1920 x 1080 x 3 errors of 255 would overflow 32 bits."""
    from camcodec.metrics import psnr_uint8

    black = np.zeros((1, 1080, 1920, 3), np.uint8)
    assert psnr_uint8(black, black + 255) == 0.0


def test_bd_quality_of_a_constant_gain():
    assert bd_quality(RATES, PSNR, RATES, [q + 0.75 for q in PSNR]) == pytest.approx(0.75, abs=1e-9)


def test_bd_rate_is_undefined_without_a_shared_range():
    assert math.isnan(bd_rate(RATES, PSNR, RATES, [q + 20 for q in PSNR]))
    assert math.isnan(bd_rate(RATES, PSNR, RATES[:1], PSNR[:1]))
    assert math.isnan(bd_rate(RATES, PSNR, RATES[:2], [33.0, 33.0]))  # a repeated quality
    with pytest.raises(InputError):
        bd_rate(RATES, PSNR, [0.0, 0.1], [30, 31])


# ------------------------------------------------------------------------------------------------ sources


def test_uvg_folder_recognises_official_names(tmp_path):
    frame_bytes = 1920 * 1080 * 3 // 2
    (tmp_path / "Beauty_1920x1080_120fps_420_8bit_YUV.yuv").write_bytes(bytes(frame_bytes))
    (tmp_path / "Jockey_3840x2160_120fps_420_10bit_YUV.yuv").write_bytes(b"")  # 4K 10-bit: not the benchmark
    (tmp_path / "notes.txt").write_text("copyright")
    (tmp_path / "ShakeNDry_1920x1080_120fps_420_8bit_YUV.y4m").write_bytes(b"")
    found = uvg_sequences(tmp_path, f"uvg:{tmp_path}")
    assert [s.name for s in found] == ["Beauty", "ShakeNDry"]
    beauty = found[0]
    assert beauty.size == (1920, 1080) and beauty.fps == 120 and beauty.uvg
    assert found[1].size is None  # Y4M carries its own size
    clip = resolve_sources([f"uvg:{tmp_path}"], max_frames=1, scale=(64, 36))[0].read()
    assert clip.frames.shape == (1, 36, 64, 3) and clip.color_matrix == "bt709"
    assert parse_uvg_name("ReadySteadyGo_1920x1080_120fps_420_8bit_YUV.yuv")[0] == "ReadySetGo"
    assert parse_uvg_name("Unknown_1920x1080_120fps_420_8bit_YUV.yuv") is None
    with pytest.raises(InputError, match="no such folder"):
        resolve_sources([f"uvg:{tmp_path / 'nothing'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no UVG files"):
        resolve_sources([f"uvg:{tmp_path / 'empty'}"])


def test_raw_size_from_the_file_name_and_unique_names(tmp_path):
    raw = tmp_path / "bus_352x288_420_f20_b8.yuv"
    raw.write_bytes(b"")
    assert file_sequence(str(raw)).size == (352, 288)
    unnamed = tmp_path / "clip.yuv"
    unnamed.write_bytes(b"")
    with pytest.raises(InputError, match="--size"):
        file_sequence(str(unnamed))
    names = [s.name for s in resolve_sources([str(raw), str(raw)])]
    assert names == ["bus_352x288_420_f20_b8", "bus_352x288_420_f20_b8-2"]


def test_set_file_reads_each_sequence_its_own_way(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "bus_352x288.yuv").write_bytes(b"")
    (tmp_path / "clips" / "plain.yuv").write_bytes(b"")
    (tmp_path / "sets").mkdir()
    spec = tmp_path / "sets" / "two.json"
    bus_entry = {"path": "../clips/bus_352x288.yuv", "frames": 30, "scale": "176x144", "note": "CIF"}
    plain_entry = {"path": "../clips/plain.yuv", "size": "64x48", "fps": "30000/1001", "name": "plain-64"}
    spec.write_text(json.dumps({"description": "two clips", "sequences": [bus_entry, plain_entry]}))
    bus, plain, extra = resolve_sources([str(spec), str(tmp_path / "clips" / "bus_352x288.yuv")], max_frames=10)
    assert (bus.name, bus.size, bus.max_frames, bus.scale) == ("bus_352x288", (352, 288), 30, (176, 144))
    assert bus.source == str(tmp_path / "clips" / "bus_352x288.yuv")  # relative to the set file, made absolute
    assert (plain.name, plain.size, plain.fps, plain.max_frames, plain.scale) == (
        "plain-64",
        (64, 48),
        Fraction(30000, 1001),
        10,  # the run's frame limit where the set gives none
        None,
    )
    assert (extra.name, extra.max_frames, extra.scale) == ("bus_352x288-2", 10, None)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], "a set file is"),
        ({"sequences": []}, "a set file is"),
        ({"title": "x", "sequences": [{"path": "a.mp4"}]}, "a set file is"),
        ({"sequences": ["a.mp4"]}, "sequence 1: expected an object"),
        ({"sequences": [{"frames": 3}]}, "sequence 1: needs a path"),
        ({"sequences": [{"path": "a.mp4", "frame": 3}]}, "sequence 1: unknown field.s. frame"),
        ({"sequences": [{"path": "a.mp4", "frames": 0}]}, "sequence 1: frames: expected a positive integer"),
        ({"sequences": [{"path": "a.mp4", "scale": "wide"}]}, "sequence 1: scale: expected WxH"),
        ({"sequences": [{"path": "a.mp4", "frames": True}]}, "is not a text or a number"),
        ({"sequences": [{"path": "a.mp4"}]}, "a.mp4: no such file"),
    ],
)
def test_set_file_errors_are_typed_and_say_where(tmp_path, data, error):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(data))
    with pytest.raises(InputError, match=error):
        resolve_sources([str(spec)])


def test_unreadable_set_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        resolve_sources([str(tmp_path / "dev.json")])
    (tmp_path / "cut.json").write_text('{"sequences": [{"path": ')
    with pytest.raises(InputError, match="not a valid set file"):
        resolve_sources([str(tmp_path / "cut.json")])


def test_the_dev_set_lists_four_clips_each_read_its_own_way(shared_data):
    dev = Path(__file__).resolve().parents[1] / "eval" / "sets" / "dev.json"
    found = {s.name: (s.max_frames, s.scale, s.size) for s in resolve_sources([str(dev)])}
    assert found == {
        "bigbuckbunny": (60, (320, 180), None),
        "bedroom": (60, (320, 180), None),
        "carphone_pristine": (120, None, None),
        "cars_320x240": (30, None, (320, 240)),
    }


# ------------------------------------------------------------------------------------------------ runs


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "pattern.y4m"
    write_video(path, moving_pattern(8), 25)
    return path


def test_runs_sharing_a_folder_leave_each_others_streams_alone(source, tmp_path):
    """A run that finishes first must not remove the folder where another run is still encoding."""
    out = tmp_path / "rd"
    out.mkdir()
    other = out / ".streams-other-run"  # another run's private folder, a stream half written
    other.mkdir()
    (other / "camcodec_bpp=0.1.cam.tmp").write_bytes(b"partial")
    assert cli.main(["rd", str(source), "--codecs", "x264", "--points", "36", "--out", str(out), "-q"]) == 0
    assert (other / "camcodec_bpp=0.1.cam.tmp").read_bytes() == b"partial"
    assert [p.name for p in out.glob(".streams-*")] == [other.name]  # its own folder is gone


def test_a_set_file_runs_sequences_read_in_different_ways(source, tmp_path, capsys):
    spec = tmp_path / "set.json"
    short = {"path": source.name, "name": "short", "frames": 4}
    small = {"path": source.name, "name": "small", "scale": "48x36"}
    spec.write_text(json.dumps({"sequences": [short, small]}))
    out = tmp_path / "rd"
    argv = ["rd", str(spec), "--codecs", "x264", "--points", "36", "--out", str(out), "-q"]
    assert cli.main(argv) == 0
    data = json.loads((out / RESULTS_JSON).read_text())
    rows = {r["sequence"]: (r["frames"], r["width"], r["height"]) for r in data["rows"]}
    assert rows == {"short": (4, 64, 48), "small": (8, 48, 36)}
    setups = {name: (seq["max_frames"], seq["scale"]) for name, seq in data["sequences"].items()}
    assert setups == {"short": (4, None), "small": (None, [48, 36])}
    # --frames fills in where the set gives none: "small" would be read another way, so the run is refused.
    assert cli.main(argv + ["--frames", "2"]) == 2
    assert "small" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_x264_writes_every_output_and_resumes(source, tmp_path, capsys):
    out = tmp_path / "rd"
    argv = ["rd", str(source), "--codecs", "x264", "--points", "20,36", "--out", str(out), "-q"]
    assert cli.main(argv) == 0
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert (out / "rd_psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "streams").exists()  # encoded files are removed unless --keep-streams

    data = json.loads((out / RESULTS_JSON).read_text())
    rows = data["rows"]
    assert [r["point"] for r in rows] == ["crf=36", "crf=20"]
    for row in rows:
        assert (row["frames"], row["width"], row["height"]) == (8, 64, 48)
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (64 * 48 * 8))
        assert 20 < row["psnr_rgb"] < 60 and 0 < row["ms_ssim"] <= 1 and row["encode_s"] >= 0
    assert rows[1]["bpp"] > rows[0]["bpp"] and rows[1]["psnr_rgb"] > rows[0]["psnr_rgb"]
    csv_lines = (out / RESULTS_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("sequence,codec,point,value,frames,width,height,bytes,bpp,psnr_rgb,psnr_yuv,ms_ssim")
    assert len(csv_lines) == 3
    assert "crf=20" in (out / "bdrate.md").read_text()
    assert "2 points measured" in capsys.readouterr().out

    # The same command again measures nothing; a new point is added beside the old ones.
    before = (out / RESULTS_JSON).read_text()
    assert cli.main(argv) == 0
    assert "0 points measured, 2 reused" in capsys.readouterr().out
    assert (out / RESULTS_JSON).read_text() == before
    report = run_rd(RDConfig([str(source)], out, codecs=["x264"], points={"*": (20, 28, 36)}))
    assert (report.measured, report.skipped) == (1, 2)
    assert len(json.loads((out / RESULTS_JSON).read_text())["rows"]) == 3

    # Another frame limit into the same folder is refused: one line, exit code 2.
    assert cli.main(argv + ["--frames", "4"]) == 2
    assert "use another --out" in capsys.readouterr().err


def test_a_conventional_point_is_measured_a_few_frames_at_a_time_as_if_whole(tmp_path):
    """The harness streams a conventional codec's sequence (memory for a few frames, not the clip): its row
    is the one that encoding and measuring the whole array gives."""
    from eval.rd import PointTask, run_point

    write_video(tmp_path / "eleven.y4m", moving_pattern(11), 25)  # an odd number: the last chunk is short
    (sequence,) = resolve_sources([str(tmp_path / "eleven.y4m")])
    codec = make_codec("x264")
    row, fps = run_point(PointTask(sequence, codec, 30, str(tmp_path / "streamed.mkv"), None))
    source, stream = list(sequence.source_frames()), list(iter_source_frames(tmp_path / "streamed.mkv"))

    def planes(frames):
        return tuple(np.stack([frame.yuv420[index] for frame in frames]) for index in range(3))

    # the same file, whole: PSNR-YUV on the Y4M's own planes and the stream's
    whole = measure(
        sequence.read().frames, read_video(tmp_path / "streamed.mkv").frames, planes(source), planes(stream)
    )
    assert (row.frames, row.width, row.height, fps) == (11, 64, 48, "25")
    assert (row.psnr_rgb, row.psnr_yuv, row.ms_ssim) == pytest.approx((whole.psnr_rgb, whole.psnr_yuv, whole.ms_ssim))
    assert row.bpp == 8 * row.bytes / (64 * 48 * 11) and row.decode_s > 0


def test_a_yuv_source_reaches_a_conventional_codec_and_psnr_yuv_as_its_own_planes(tmp_path):
    """A YUV 4:2:0 source is encoded from its planes, not from RGB made of them, and PSNR-YUV compares them
    with the stream's: lossless x264 (crf 0) gives an infinite PSNR-YUV on chroma noise that a round trip
    through RGB would change. Resized, the same source goes through RGB and is measured that way."""
    from eval.rd import PointTask, run_point

    rng = np.random.default_rng(0)
    path = tmp_path / "noise_96x72.yuv"
    path.write_bytes(rng.integers(16, 236, 3 * 96 * 72 * 3 // 2, dtype=np.uint8).tobytes())  # three frames
    (sequence,) = resolve_sources([str(path)])
    row, _ = run_point(PointTask(sequence, make_codec("x264"), 0, str(tmp_path / "own.mkv"), None))
    assert row.psnr_yuv == row.psnr_rgb == np.inf
    (resized,) = resolve_sources([str(path)], scale=(64, 48))
    row, _ = run_point(PointTask(resized, make_codec("x264"), 0, str(tmp_path / "rgb.mkv"), None))
    # x264 was given BT.709 planes made from the RGB frames, and PSNR-YUV is measured against those planes;
    # its RGB, through 4:2:0 and back, is not the reference's
    assert row.psnr_yuv == np.inf and row.psnr_rgb < 60


def test_x265ldp_codes_no_b_frames(tmp_path):
    import av

    codec = make_codec("x265ldp")
    assert codec.label == "x265ldp (preset medium, bframes=0)"
    codec.encode_stream(source_frames(moving_pattern(10, 48, 64)), (64, 48), Fraction(25), 30, tmp_path / "ldp.mkv")
    with av.open(str(tmp_path / "ldp.mkv")) as container:
        kinds = [int(frame.pict_type) for frame in container.decode(video=0)]
    assert kinds[0] == int(av.video.frame.PictureType.I)
    assert set(kinds[1:]) == {int(av.video.frame.PictureType.P)}


def test_the_anchor_stays_x265_while_its_rows_are_in_the_folder(source, tmp_path):
    from eval.rd import _read

    out = tmp_path / "rd"
    run_rd(RDConfig([str(source)], out, codecs=["x264", "x265"], points={"*": (28, 36)}))
    assert _read.cache_info().currsize == 0  # a run keeps no sequence in memory after it
    again = run_rd(RDConfig([str(source)], out, codecs=["x264"], points={"*": (28, 32, 36)}))  # x265 not run
    assert "## BD-rate against x265 (preset medium)" in again.markdown


def test_bd_rate_between_two_presets_in_a_run(source, tmp_path):
    config = RDConfig(
        [str(source)], tmp_path / "rd", codecs=["x264-veryfast", "x264"], anchor="x264", points={"*": (20, 28, 36)}
    )
    report = run_rd(config)
    assert "BD-rate against x264 (preset medium)" in report.markdown
    assert "| x264 (preset veryfast) |" in report.markdown
    assert "n/a" not in report.markdown.split("## Rate points")[0]
    assert "**Warning**: fewer than 4 rate points on a curve of x264 (preset veryfast)" in report.markdown
    assert report.markdown.split("## Rate points")[0].count("| 1/1 | 3 |") == 1  # the column says 3 points
    four = run_rd(replace(config, points={"*": (20, 24, 28, 36)}))
    assert "| 1/1 | 4 |" in four.markdown and "Warning" not in four.markdown


@pytest.mark.slow
def test_camcodec_point_and_a_variant(source, tmp_path):
    config = RDConfig(
        [str(source)],
        tmp_path / "rd",
        codecs=["camcodec"],
        points={"camcodec": (2.0,)},
        camcodec_preset="fast",
        steps=4,
        device="cpu",
        keep_streams=True,
        variants={"v1-nocam": ("arch=cam-nerv", "cam=false")},
    )
    report = run_rd(config)
    assert report.measured == 2
    rows = {r["codec"]: r for r in json.loads((tmp_path / "rd" / RESULTS_JSON).read_text())["rows"]}
    cam = tmp_path / "rd" / "streams" / "pattern" / "camcodec_bpp=2.cam"
    row = rows["camcodec"]
    assert row["point"] == "bpp=2" and row["bytes"] == cam.stat().st_size
    assert row["settings"] == "camcodec preset=fast target_bpp=2 steps=4"
    assert row["psnr_rgb"] > 5 and row["decode_s"] > 0
    variant = rows["v1-nocam"]
    assert variant["settings"] == "camcodec preset=fast target_bpp=2 arch=cam-nerv cam=false steps=4"
    model = bs.describe((tmp_path / "rd" / "streams" / "pattern" / "v1-nocam_bpp=2.cam").read_bytes())
    assert model["segments"][0]["model_config"]["cam"] is False
    assert "| v1-nocam: camcodec (fast, 4 steps) arch=cam-nerv cam=false |" in report.markdown


@pytest.mark.slow
def test_rows_of_other_settings_never_join_a_curve(source, tmp_path):
    """A point measured with --steps 3 stays in results.csv, but a later run with --steps 4 draws its curve
    from its own rows only."""
    base = RDConfig([str(source)], tmp_path / "rd", codecs=["camcodec"], camcodec_preset="fast", device="cpu")
    run_rd(replace(base, points={"camcodec": (2.0,)}, steps=3))
    report = run_rd(replace(base, points={"camcodec": (1.0,)}, steps=4))
    rows = json.loads((tmp_path / "rd" / RESULTS_JSON).read_text())["rows"]
    assert sorted(r["point"] for r in rows) == ["bpp=1", "bpp=2"]
    table = report.markdown.split("## Rate points")[1]
    assert "| bpp=1 |" in table and "bpp=2" not in table


@pytest.mark.slow
def test_seeds_run_as_codecs_of_their_own_and_report_their_spread(source, tmp_path, capsys):
    config = RDConfig(
        [str(source)],
        tmp_path / "rd",
        codecs=["camcodec"],
        points={"camcodec": (1.0, 2.0)},
        camcodec_preset="fast",
        steps=20,
        seeds=3,
        device="cpu",
    )
    report = run_rd(config)
    rows = json.loads((tmp_path / "rd" / RESULTS_JSON).read_text())["rows"]
    assert sorted({r["codec"] for r in rows}) == ["camcodec", "camcodec@seed1", "camcodec@seed2"]
    seeds = {r["codec"]: json.loads(r["provenance"])["seed"] for r in rows}
    assert seeds == {"camcodec": 0, "camcodec@seed1": 1, "camcodec@seed2": 2}
    assert "seed=2" in next(r["settings"] for r in rows if r["codec"] == "camcodec@seed2")
    spread = report.markdown.split("## Spread over seeds")[1].split("##")[0]
    assert "| camcodec (fast, 20 steps) | 2 |" in spread  # seeds 1 and 2 against seed 0, the anchor
    assert cli.main(["rd", str(source), "--out", str(tmp_path / "x"), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_camcodec_rate_rung_point_encodes_what_the_rung_gives_a_user(source, tmp_path):
    """``--points camcodec=xs``: the ladder's rung as ``camcodec encode --rate xs`` sets it."""
    config = RDConfig(
        [str(source)],
        tmp_path / "rd",
        codecs=["camcodec"],
        points={"camcodec": ("xs",)},
        camcodec_preset="fast",
        steps=4,
        device="cpu",
    )
    assert run_rd(config).measured == 1
    (row,) = json.loads((tmp_path / "rd" / RESULTS_JSON).read_text())["rows"]
    assert (row["point"], row["value"]) == ("rate=xs", "xs")
    assert row["settings"] == "camcodec preset=fast rate=xs steps=4"
    csv_row = (tmp_path / "rd" / "results.csv").read_text().splitlines()[1]
    assert ",rate=xs,xs," in csv_row


def test_rate_points_are_checked_by_their_codec(source, tmp_path):
    for codecs, points, message in (
        (["camcodec"], {"camcodec": ("huge",)}, "unknown rate rung 'huge'"),
        (["camcodec"], {"camcodec": (30.0,)}, "target bpp must be in"),
        (["x264"], {"x264": ("m",)}, "CRF values"),
    ):
        with pytest.raises(InputError, match=message):
            run_rd(RDConfig([str(source)], tmp_path / "o", codecs=codecs, points=points))


@pytest.mark.slow
def test_points_on_two_dask_workers_give_the_rows_of_a_serial_run(source, tmp_path):
    """Every (sequence, codec, point) is a task; the results match a serial run's except for the clocks."""
    common = {"codecs": ["x264", "camcodec"], "points": {"*": (24, 36), "camcodec": (2.0,)}, "steps": 4}
    with torch_threads(1):  # what each worker process uses
        run_rd(RDConfig([str(source)], tmp_path / "serial", device="cpu", **common))
    report = run_rd(RDConfig([str(source)], tmp_path / "dask", device="cpu", workers=2, **common))
    assert report.measured == 3

    def rows(folder):
        text = (folder / "results.csv").read_text().splitlines()
        columns = text[0].split(",")
        clocks = [columns.index("encode_s"), columns.index("decode_s")]
        return [[v for i, v in enumerate(line.split(",")) if i not in clocks] for line in text]

    assert rows(tmp_path / "dask") == rows(tmp_path / "serial")


def test_variant_option():
    assert cli._variant_arg("v1:arch=cam-nerv:bits=6") == ("v1", ("arch=cam-nerv", "bits=6"))
    for bad in ("x265:bits=6", "v1", "v1:colour=red", "v1:bits=six", "bad name:bits=6"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._variant_arg(bad)


def test_errors_are_one_line(source, tmp_path, capsys):
    odd = tmp_path / "odd.y4m"
    write_video(odd, moving_pattern(2, height=47), 25)
    assert cli.main(["rd", str(odd), "--codecs", "x264", "--points", "30", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "even frame size" in capsys.readouterr().err
    assert cli.main(["rd", str(source), "--codecs", "x266", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "unknown codec" in capsys.readouterr().err
    bad_set = tmp_path / "set.json"
    bad_set.write_text(json.dumps({"sequences": [{"path": source.name, "frames": -1}]}))
    assert cli.main(["rd", str(bad_set), "--codecs", "x264", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set.json: sequence 1: frames: expected a positive integer" in err
    with pytest.raises(InputError, match="anchor"):
        run_rd(RDConfig([str(source)], tmp_path / "o", codecs=["x264"], anchor="vp9"))
    with pytest.raises(InputError, match="preset"):
        make_codec("x265-turbo")


def test_points_option():
    assert cli.parse_points(["22,27", "camcodec=0.01,0.03"]) == {"*": (22, 27), "camcodec": (0.01, 0.03)}
    assert cli.parse_points(["camcodec=xs,S,0.2"]) == {"camcodec": ("xs", "s", 0.2)}
    for bad in ("x264=", "camcodec=m-2", "camcodec=0.1,2x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_points([bad])


def test_plugs_into_a_parent_parser_like_the_camcodec_command():
    parser = argparse.ArgumentParser(prog="camcodec")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    commands = parser.add_subparsers(dest="command", required=True)
    cli.setup_args(commands.add_parser("eval", help=cli.HELP))
    args = parser.parse_args(["eval", "rd", "a.mp4", "--out", "d", "--scale", "320x180", "--frames", "60"])
    assert (args.command, args.eval_command, args.scale, args.frames) == ("eval", "rd", (320, 180), 60)
    assert args.codecs == ["camcodec", "x264", "x265"] and callable(cli.run)


def test_two_runs_share_one_folder(tmp_path):
    from eval.results import ResultStore, Row

    def row(codec: str, psnr: float) -> Row:
        return Row("clip", codec, "crf=27", 27.0, 2, 64, 48, 100, 0.13, psnr, psnr, 0.9, 1.0, 0.1, codec)

    first, second = ResultStore(tmp_path), ResultStore(tmp_path)  # both opened before either saves
    first.add(row("x264", 30.0))
    second.add(row("x265", 31.0))
    first.add(row("x264", 30.5))  # re-measured by the first run: its own row wins
    assert {(r.codec, r.psnr_rgb) for r in ResultStore(tmp_path).sorted_rows()} == {("x264", 30.5), ("x265", 31.0)}


def test_a_row_of_another_commit_or_precision_is_measured_again(source, tmp_path, monkeypatch):
    """Rows record what made them (commit, libraries, machine; for camcodec its precision, device, threads and
    seed); a row is reused only when all of it matches."""
    import eval.provenance as provenance_module
    from camcodec.device import trains_in_bf16
    from eval.provenance import camcodec_facts, provenance

    config = RDConfig([str(source)], tmp_path / "rd", codecs=["x264"], points={"*": (36,)})
    assert run_rd(config).measured == 1
    assert run_rd(config).skipped == 1  # the same code on the same machine: reused

    def stored() -> dict:
        return json.loads(json.loads((tmp_path / "rd" / RESULTS_JSON).read_text())["rows"][0]["provenance"])

    assert {"commit", "camcodec", "pyav", "ffmpeg", "cpu", "encoder"} <= set(stored())
    monkeypatch.setattr(provenance_module, "git_commit", lambda: "another-commit")
    assert run_rd(config).measured == 1  # another commit: measured again, and recorded
    assert stored()["commit"] == "another-commit"

    facts = camcodec_facts("cpu", {"precision": "fp32", "seed": 3}, threads=1)
    assert (facts["device"], facts["precision"], facts["threads"], facts["seed"]) == ("cpu", "fp32", 1, 3)
    auto = camcodec_facts("cpu", {}, threads=None)["precision"]  # what auto resolves to on this machine
    assert auto == ("bf16" if trains_in_bf16("auto", torch.device("cpu")) else "fp32")
    assert camcodec_facts("cpu", {"precision": "bf16"}, threads=1)["precision"] == "bf16"  # another precision,
    assert provenance(camcodec_facts("cpu", {"precision": "bf16"}, 1)) != provenance(facts)  # another provenance


_ANCHOR_RUN = """
import hashlib, sys
from fractions import Fraction
from pathlib import Path
import numpy as np
from camcodec.media import SourceFrame
from eval.codecs import RGB_SOURCE_COLOR, make_codec
frames = np.load(sys.argv[1])
rgb = (SourceFrame(frame, None, RGB_SOURCE_COLOR) for frame in frames)
coded_bytes, _ = make_codec(sys.argv[2]).encode_stream(rgb, (176, 144), Fraction(25), 35, Path(sys.argv[3]))
import av
with av.open(sys.argv[3]) as container:  # the coded stream, not the container (Matroska's segment UID is random)
    stream = b"".join(bytes(packet) for packet in container.demux(video=0))
print(coded_bytes, hashlib.sha256(stream).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("name", ["x264", "x265", "svtav1", "vp9"])
def test_anchor_bytes_do_not_depend_on_the_cpus_allowed(tmp_path, name):
    """The same frames give the same file in separate processes, on one CPU and on all of them, whatever the
    memory allocator hands out: every encoder's and every conversion's threads are pinned, not taken from the
    machine, and no encoder reads memory it did not write (glibc's MALLOC_PERTURB_ fills fresh allocations
    with a byte of its choosing; x264's AVX-512 code changed its output with it)."""
    import os
    import subprocess
    import sys

    frames = tmp_path / "frames.npy"
    np.save(frames, moving_pattern(10, 144, 176))
    cpus = sorted(os.sched_getaffinity(0))

    def run(allowed: list[int], out: str, perturb: str = "") -> str:
        return subprocess.run(
            [sys.executable, "-c", _ANCHOR_RUN, str(frames), name, str(tmp_path / out)],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: os.sched_setaffinity(0, allowed),
            env={**os.environ, "MALLOC_PERTURB_": perturb},
        ).stdout

    one, every = run(cpus[:1], "one.mkv"), run(cpus, "all.mkv")
    perturbed = [run(cpus, f"perturbed{value}.mkv", value) for value in ("1", "170")]
    assert one == every == perturbed[0] == perturbed[1]
