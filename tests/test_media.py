"""camcodec.media: every input kind reads, every output kind writes and reads back, atomic writes, errors."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import camcodec.media.reader as reader_module
from camcodec.errors import InputError, OutputError
from camcodec.media import OUTPUT_KINDS, Clip, VideoWriter, probe_video, read_video, write_video
from camcodec.media.pattern import moving_pattern


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


# ------------------------------------------------- generated inputs (made with PyAV or numpy, not our writer)


def make_y4m(path: Path, rgb: np.ndarray, pix_fmt: str, fps: int = 25) -> Path:
    """A Y4M in any pixel format, written with PyAV directly (BT.709, limited range)."""
    # FFmpeg writes high bit depth Y4M only when told to accept the unofficial extension
    with av.open(os.fspath(path), "w", format="yuv4mpegpipe", options={"strict": "unofficial"}) as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], pix_fmt
        for i, image in enumerate(rgb):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG"
            )
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def make_i420(path: Path, rgb: np.ndarray) -> Path:
    """Raw I420 written by hand (even sizes): the planes of each yuv420p frame, back to back."""
    with open(path, "wb") as fh:
        for image in rgb:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
            )
            fh.write(frame.to_ndarray().tobytes())  # (H * 3 / 2, W): Y, then U, then V
    return path


def make_png_folder(folder: Path, rgb: np.ndarray, fmt: str = "rgb24", start_index: int = 0) -> Path:
    folder.mkdir(exist_ok=True)
    for i, image in enumerate(rgb):
        if fmt == "rgba":
            data = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
        elif fmt == "gray":
            data = image[:, :, 1].copy()
        else:
            data = image
        av.VideoFrame.from_ndarray(data, format=fmt).save(folder / f"img{i + start_index}.png")
    return folder


# ---------------------------------------------------------------- shared real clips

SHARED_CLIPS = [
    # name, read kwargs, (W, H), frames expected, pix_fmt, max_frames for the read
    ("carphone_pristine.mp4", {}, (176, 144), 120, "yuv420p", None),
    ("bigbuckbunny.mp4", {}, (1280, 720), 132, "yuv420p", 3),
    ("bedroom.mp4", {}, (960, 540), 200, "yuv420p", 3),
    ("cockatoo_yuv420.mp4", {}, (1280, 720), 280, "yuv420p", 3),
    ("park_joy_90p_8_420.y4m", {}, (160, 90), 10, "yuv420p", None),
    ("park_joy_90p_8_444.y4m", {}, (160, 90), 10, "yuv444p", None),
    ("park_joy_90p_10_420_20f.y4m", {}, (160, 90), 20, "yuv420p10le", None),
    ("park_joy_420_720p50_frm0to9_480x270.y4m", {}, (480, 270), 10, "yuv420p", None),
    ("bus_352x288_420_f20_b8.yuv", {"size": (352, 288)}, (352, 288), 17, "yuv420p", None),
    ("cars_320x240.i420", {"size": (320, 240)}, (320, 240), 30, "yuv420p", None),
]


@pytest.mark.parametrize("name,kw,size,count,pix_fmt,max_frames", SHARED_CLIPS, ids=[c[0] for c in SHARED_CLIPS])
def test_shared_clip_reads(shared_data, name, kw, size, count, pix_fmt, max_frames):
    path = shared_data / name
    info = probe_video(path, **kw)
    assert (info["width"], info["height"], info["num_frames"], info["pix_fmt"]) == (*size, count, pix_fmt)
    clip = read_video(path, max_frames=max_frames, **kw)
    assert clip.frames.shape == (max_frames or count, size[1], size[0], 3)
    assert clip.frames.dtype == np.uint8 and clip.frames.flags.c_contiguous
    assert clip.pix_fmt == pix_fmt and clip.source == str(path)
    assert 20 < clip.frames.mean() < 235  # a picture, not black/white garbage


def test_bunny_matches_plain_rgb24_decode(shared_data):
    """Untagged H.264: our decode equals PyAV's plain rgb24 decode (the NeRV 'bunny' frames)."""
    path = shared_data / "bigbuckbunny.mp4"
    clip = read_video(path, max_frames=4)
    with av.open(os.fspath(path)) as container:
        plain = [f.to_ndarray(format="rgb24") for _, f in zip(range(4), container.decode(video=0), strict=False)]
    assert clip.color_matrix == "bt601"
    assert np.array_equal(clip.frames, np.stack(plain))


def test_shared_10bit_y4m_matches_8bit(shared_data):
    eight = read_video(shared_data / "park_joy_90p_8_420.y4m").frames.astype(np.float64)
    ten = read_video(shared_data / "park_joy_90p_10_420_20f.y4m", max_frames=10).frames.astype(np.float64)
    assert abs(eight.mean() - ten.mean()) < 1.5
    assert np.abs(eight - ten).mean() < 3.0


def test_shared_fps(shared_data):
    assert read_video(shared_data / "carphone_pristine.mp4", max_frames=1).fps == Fraction(30000, 1001)
    assert probe_video(shared_data / "park_joy_90p_8_420.y4m")["fps"] == 50


# ---------------------------------------------------------------- generated inputs of each kind


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv444p", "yuv420p10le"])
def test_generated_y4m(tmp_path, clip, pix_fmt):
    path = make_y4m(tmp_path / f"{pix_fmt}.y4m", clip, pix_fmt)
    info = probe_video(path)
    assert info["kind"] == "y4m" and info["num_frames_exact"]
    assert (info["width"], info["height"], info["num_frames"], info["pix_fmt"]) == (64, 48, 8, pix_fmt)
    got = read_video(path)
    assert got.frames.shape == clip.shape and got.pix_fmt == pix_fmt and got.color_matrix == "bt709"
    # 4:2:0 and 4:2:2 lose chroma detail of this saturated pattern; 4:4:4 keeps nearly everything
    assert psnr(got.frames, clip) > (45 if pix_fmt == "yuv444p" else 28)


def test_generated_10bit_close_to_8bit(tmp_path, clip):
    eight = read_video(make_y4m(tmp_path / "8.y4m", clip, "yuv420p")).frames
    ten = read_video(make_y4m(tmp_path / "10.y4m", clip, "yuv420p10le")).frames
    assert abs(eight.mean() - ten.mean()) < 1.0
    assert psnr(ten, eight) > 35


def test_generated_raw_i420(tmp_path, clip):
    path = make_i420(tmp_path / "clip.yuv", clip)
    info = probe_video(path, size=(64, 48))
    assert (info["num_frames"], info["num_frames_exact"], info["kind"]) == (8, True, "raw")
    got = read_video(path, size=(64, 48), fps=Fraction(30))
    assert got.frames.shape == clip.shape and got.fps == 30 and got.pix_fmt == "yuv420p"
    # same pixels as the same planes in a Y4M
    assert np.array_equal(got.frames, read_video(make_y4m(tmp_path / "same.y4m", clip, "yuv420p")).frames)
    part = read_video(path, size=(64, 48), start=2, max_frames=3)
    assert np.array_equal(part.frames, got.frames[2:5])


def test_raw_extensions(tmp_path, clip):
    for ext in (".i420", ".raw", ".YUV"):
        path = make_i420(tmp_path / f"clip{ext}", clip[:2])
        assert read_video(path, size=(64, 48)).num_frames == 2


@pytest.mark.parametrize("fmt", ["rgb24", "rgba", "gray"])
def test_generated_png_folder(tmp_path, clip, fmt):
    folder = make_png_folder(tmp_path / "frames", clip, fmt, start_index=8)  # img8 .. img15: natural order
    info = probe_video(folder)
    assert (info["width"], info["height"], info["num_frames"], info["kind"]) == (64, 48, 8, "png")
    got = read_video(folder)
    assert got.color_matrix == "rgb" and got.fps == 25
    expected = np.repeat(clip[..., 1:2], 3, axis=3) if fmt == "gray" else clip
    assert np.array_equal(got.frames, expected)
    assert np.array_equal(read_video(folder, start=3, max_frames=2).frames, expected[3:5])


def test_png_16bit(tmp_path, clip):
    folder = tmp_path / "deep"
    folder.mkdir()
    png = av.CodecContext.create("png", "w")
    png.width, png.height, png.pix_fmt = 64, 48, "rgb48be"
    frame = av.VideoFrame.from_ndarray(clip[0].astype(np.uint16) * 257, format="rgb48be")
    (folder / "a.png").write_bytes(b"".join(bytes(p) for p in png.encode(frame) + png.encode(None)))
    got = read_video(folder)
    assert got.pix_fmt == "rgb48be" and np.abs(got.frames[0].astype(int) - clip[0]).max() <= 1


def test_avi_input(tmp_path, clip):
    path = tmp_path / "clip.avi"
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i, image in enumerate(clip):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    got = read_video(path)
    assert got.frames.shape == clip.shape and got.color_matrix == "bt601"  # untagged compressed stream
    assert psnr(got.frames, clip) > 25


def test_odd_size_inputs(tmp_path):
    rgb = moving_pattern(4, 143, 175)
    y4m = read_video(make_y4m(tmp_path / "odd.y4m", rgb, "yuv420p"))
    assert y4m.frames.shape == (4, 143, 175, 3) and psnr(y4m.frames, rgb) > 35
    write_video(tmp_path / "odd.yuv", rgb, 25)
    write_video(tmp_path / "odd_too.y4m", rgb, 25)
    raw = read_video(tmp_path / "odd.yuv", size=(175, 143))
    assert os.path.getsize(tmp_path / "odd.yuv") == 4 * (175 * 143 + 2 * 88 * 72)
    # same planes as in a Y4M: ceil(W/2) x ceil(H/2) chroma
    assert np.array_equal(raw.frames, read_video(tmp_path / "odd_too.y4m").frames)
    assert psnr(raw.frames, rgb) > 35
    write_video(tmp_path / "odd.mp4", rgb, 25)
    mp4 = read_video(tmp_path / "odd.mp4")
    assert mp4.frames.shape == (4, 143, 175, 3) and psnr(mp4.frames, rgb) > 35


def test_start_and_max_frames_on_container(tmp_path, clip):
    path = tmp_path / "clip.mkv"
    write_video(path, clip, 25)
    assert np.array_equal(read_video(path, start=5).frames, clip[5:])
    assert np.array_equal(read_video(path, start=1, max_frames=2).frames, clip[1:3])


def test_scale(tmp_path, clip):
    path = make_y4m(tmp_path / "clip.y4m", clip, "yuv420p")
    assert read_video(path, scale=(32, 24)).frames.shape == (8, 24, 32, 3)
    assert read_video(path, scale=(100, 75), max_frames=2).frames.shape == (2, 75, 100, 3)


# ---------------------------------------------------------------- outputs


def test_output_kinds_listed():
    assert {".mkv", ".mp4", ".webm", ".y4m", ".yuv", "/"} <= set(OUTPUT_KINDS)


def test_mkv_is_lossless(tmp_path, clip):
    path = tmp_path / "out.mkv"
    write_video(path, clip, Fraction(30000, 1001))
    got = read_video(path)
    assert np.array_equal(got.frames, clip)
    assert got.fps == Fraction(30000, 1001) and got.color_matrix == "rgb"


@pytest.mark.parametrize("target", ["frames/", "frames"])
def test_png_folder_is_lossless(tmp_path, clip, target):
    path = os.path.join(tmp_path, target)
    write_video(path, clip, 25)
    names = sorted(os.listdir(path))
    assert names[0] == "frame_000000.png" and len(names) == 8
    assert np.array_equal(read_video(path).frames, clip)


def test_png_folder_replaces_old_frames(tmp_path, clip):
    folder = tmp_path / "frames"
    write_video(folder, clip, 25)
    write_video(folder, clip[:3], 25)  # existing folder of our frames: replaced whole, no stale frame_000007
    assert sorted(os.listdir(folder)) == [f"frame_{i:06d}.png" for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == ["frames"]


@pytest.mark.parametrize("ext", [".y4m", ".yuv", ".mp4"])
def test_lossy_outputs_close(tmp_path, clip, ext):
    path = tmp_path / f"out{ext}"
    with VideoWriter(path, 64, 48, 25) as writer:  # streaming: frames in pieces of 1, 3 and 4
        writer.write(clip[:1])
        writer.write(clip[1:4])
        writer.write(clip[4:])
    got = read_video(path, size=(64, 48) if ext == ".yuv" else None)
    assert got.frames.shape == clip.shape
    # This saturated 64x48 pattern cannot survive 4:2:0 above ~31 dB (chroma is halved in both
    # directions), so the 35 dB check is made against the clip after one lossless 4:2:0 round trip.
    reference = read_video(make_y4m(tmp_path / "ref.y4m", clip, "yuv420p")).frames
    assert psnr(got.frames, clip) > 29
    assert psnr(got.frames, reference) > 35


def test_y4m_output_is_standard(tmp_path, clip):
    path = tmp_path / "out.y4m"
    write_video(path, clip, Fraction(50))
    assert path.read_bytes().startswith(b"YUV4MPEG2 W64 H48 F50:1")
    with av.open(os.fspath(path)) as container:  # FFmpeg's own demuxer reads it
        assert sum(1 for _ in container.decode(video=0)) == 8
    size = os.path.getsize(tmp_path / "out.y4m")
    assert size == len(path.read_bytes().split(b"\n", 1)[0]) + 1 + 8 * (6 + 64 * 48 * 3 // 2)


def test_yuv_output_size(tmp_path, clip):
    write_video(tmp_path / "out.yuv", clip, 25)
    assert os.path.getsize(tmp_path / "out.yuv") == 8 * 64 * 48 * 3 // 2


@pytest.mark.parametrize(
    "codec,ext,decoder",
    [("libx265", ".mkv", "hevc"), ("libvpx-vp9", ".webm", "vp9"), ("libx264", ".mkv", "h264")],
)
def test_codec_override(tmp_path, clip, codec, ext, decoder):
    if not has_encoder(codec):
        pytest.skip(f"{codec} not in this PyAV build")
    path = tmp_path / f"out{ext}"
    write_video(path, clip, 25, codec=codec)
    got = read_video(path)
    assert got.frames.shape == clip.shape and psnr(got.frames, clip) > 28
    with av.open(os.fspath(path)) as container:
        assert container.streams.video[0].codec_context.name == decoder


def test_bt601_tag_round_trip(tmp_path, clip):
    path = tmp_path / "out601.mp4"
    write_video(path, clip, 25, color_matrix="bt601")
    got = read_video(path)
    assert got.color_matrix == "bt601" and psnr(got.frames, clip) > 29


# ---------------------------------------------------------------- atomic writes


class Boom(Exception):
    pass


@pytest.mark.parametrize("name", ["out.mkv", "out.mp4", "out.y4m", "out.yuv", "frames"])
def test_exception_leaves_nothing(tmp_path, clip, name):
    with pytest.raises(Boom), VideoWriter(tmp_path / name, 64, 48, 25) as writer:
        writer.write(clip)
        raise Boom
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mkv", "out.y4m", "frames"])
def test_exception_keeps_old_output(tmp_path, clip, name):
    path = tmp_path / name
    write_video(path, clip[:2], 25)
    before = read_video(path).frames
    with pytest.raises(Boom), VideoWriter(path, 64, 48, 25) as writer:
        writer.write(clip[::-1])
        raise Boom
    assert os.listdir(tmp_path) == [name]
    assert np.array_equal(read_video(path).frames, before)
    write_video(path, clip, 25)  # a clean write replaces it
    assert read_video(path).num_frames == 8
    assert os.listdir(tmp_path) == [name]


def test_old_unrelated_file_untouched(tmp_path, clip):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old contents")
    with pytest.raises(Boom), VideoWriter(path, 64, 48, 25) as writer:
        writer.write(clip)
        raise Boom
    assert path.read_bytes() == b"old contents" and os.listdir(tmp_path) == ["out.mp4"]


def test_no_frames_written(tmp_path):
    with pytest.raises(OutputError, match="no frames"), VideoWriter(tmp_path / "out.mkv", 64, 48, 25):
        pass
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- errors


def expect_input_error(path, **kw) -> str:
    with pytest.raises(InputError) as info:
        read_video(path, **kw)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_error_missing(tmp_path):
    expect_input_error(tmp_path / "nope.mp4")


@pytest.mark.parametrize("name,text", [("notes.txt", "hello world\nthis is text\n" * 20), ("fake.mp4", "hello\n" * 50)])
def test_error_text_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    expect_input_error(path)
    with pytest.raises(InputError):
        probe_video(path)


def test_error_no_video_stream(tmp_path):
    path = tmp_path / "audio.wav"
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert "no video stream" in expect_input_error(path)


def test_error_zero_frames(tmp_path):
    path = tmp_path / "header_only.y4m"
    path.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
    assert "no decodable" in expect_input_error(path)


def test_error_truncated_y4m(tmp_path, clip):
    path = make_y4m(tmp_path / "cut.y4m", clip, "yuv420p")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert "cut short" in expect_input_error(path)


def test_error_unconvertible_pixel_format(tmp_path, clip, monkeypatch):
    # Every software format in this FFmpeg converts; simulate swscale refusing one.
    path = make_y4m(tmp_path / "clip.y4m", clip, "yuv420p")

    def refuse(*args, **kw):
        raise av.FFmpegError(95, "Operation not supported")

    monkeypatch.setattr(reader_module, "to_rgb_frame", refuse)
    message = expect_input_error(path)
    assert "yuv420p" in message and "Operation not supported" in message


def test_error_bad_options(tmp_path, clip):
    path = make_y4m(tmp_path / "clip.y4m", clip, "yuv420p")
    assert "max_frames" in expect_input_error(path, max_frames=0)
    expect_input_error(path, start=-1)
    assert "beyond the end" in expect_input_error(path, start=8)
    assert "size=" in expect_input_error(path, size=(64, 48))
    expect_input_error(path, scale=(0, 10))


def test_error_raw(tmp_path, clip):
    path = make_i420(tmp_path / "clip.yuv", clip[:2])
    assert "size" in expect_input_error(path)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 100)
    message = expect_input_error(path, size=(64, 48))
    assert "64x48" in message and str(2 * 4608 + 100) in message
    expect_input_error(path, size=(64, -48))


def test_error_png_folders(tmp_path, clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .png" in expect_input_error(empty)
    mixed = make_png_folder(tmp_path / "mixed", clip[:2])
    av.VideoFrame.from_ndarray(clip[0, :40, :50].copy(), format="rgb24").save(mixed / "img9.png")
    with pytest.raises(InputError, match="img9.png"):
        read_video(mixed)
    bad = make_png_folder(tmp_path / "bad", clip[:1])
    (bad / "img1.png").write_text("not a png")
    with pytest.raises(InputError, match="img1.png"):
        read_video(bad)


def test_writer_errors_before_any_work(tmp_path, clip):
    with pytest.raises(OutputError, match=r"out\.avi.*unknown output extension"):
        VideoWriter(tmp_path / "out.avi", 64, 48, 25)
    with pytest.raises(OutputError, match="no-such-encoder"):
        VideoWriter(tmp_path / "out.mkv", 64, 48, 25, codec="no-such-encoder")
    with pytest.raises(OutputError, match="codec="):
        VideoWriter(tmp_path / "out.y4m", 64, 48, 25, codec="libx264")
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "out.mkv", 64, 48, 25)
    with pytest.raises(OutputError, match="color_matrix"):
        VideoWriter(tmp_path / "out.mp4", 64, 48, 25, color_matrix="xyz")
    assert os.listdir(tmp_path) == []


def test_writer_refuses_foreign_folder(tmp_path, clip):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="notes.txt"):
        write_video(folder, clip, 25)
    assert os.listdir(folder) == ["notes.txt"]


def test_writer_bad_frames(tmp_path, clip):
    with pytest.raises(InputError), VideoWriter(tmp_path / "out.mkv", 64, 48, 25) as writer:
        writer.write(clip[:, :, :32])
    with pytest.raises(InputError), VideoWriter(tmp_path / "out.mkv", 64, 48, 25) as writer:
        writer.write(clip.astype(np.float32))
    assert os.listdir(tmp_path) == []


def test_clip_properties(clip):
    c = Clip(clip, Fraction(25), "rgb24", "rgb", "x")
    assert (c.num_frames, c.height, c.width) == (8, 48, 64)


_WRITE_MP4 = """
import sys
import av
from camcodec.media import write_video
from camcodec.media.pattern import moving_pattern
write_video(sys.argv[1], moving_pattern(10, 144, 176), 25)
with av.open(sys.argv[1]) as container:
    print(b"".join(bytes(packet) for packet in container.demux(video=0)).hex())
"""


@pytest.mark.slow
def test_an_mp4_output_does_not_depend_on_what_the_allocator_hands_out(tmp_path):
    """libx264 held to code that reads only memory it wrote: the same frames give the same stream whatever
    glibc's MALLOC_PERTURB_ fills fresh allocations with (x264's AVX-512 code changed its output with it)."""
    import subprocess
    import sys

    def stream(perturb: str) -> str:
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        args = [sys.executable, "-c", _WRITE_MP4, str(tmp_path / f"p{perturb}.mp4")]
        return subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout

    assert stream("") == stream("1") == stream("170")
