"""Segments: consecutive frame ranges coded by their own networks in one file, run in this process or on Dask."""

from __future__ import annotations

import os
import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

import bitstream as bs
import camcodec
from camcodec.cli import main
from camcodec.engine import DaskEngine, InlineEngine, make_engine
from camcodec.errors import InputError
from camcodec.media import read_video, write_video
from camcodec.media.pattern import moving_pattern
from camcodec.segments import DEFAULT_SEGMENT_FRAMES, FrameSource, encode_in_segments, segment_ranges
from conftest import tiny_argv, tiny_config, tiny_options


def test_segment_ranges_cover_the_frames_in_order():
    assert segment_ranges(10) == [range(10)]
    assert segment_ranges(10, segment_frames=4) == [range(4), range(4, 8), range(8, 10)]
    assert segment_ranges(10, segments=3) == [range(3), range(3, 7), range(7, 10)]
    assert segment_ranges(2, segments=5) == [range(1), range(1, 2)]
    # a long clip is segmented by itself, into near-equal segments: no short last one
    assert segment_ranges(DEFAULT_SEGMENT_FRAMES + 10) == [range(305), range(305, 610)]
    assert [len(r) for r in segment_ranges(2 * DEFAULT_SEGMENT_FRAMES)] == [DEFAULT_SEGMENT_FRAMES] * 2
    for bad in ({"segment_frames": 0}, {"segments": 2, "segment_frames": 3}, {"segments": True}):
        with pytest.raises(InputError):
            segment_ranges(10, **bad)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("segments") / "source.mkv"
    write_video(path, moving_pattern(12, 24, 32), Fraction(25))
    return path


def test_segmented_file_decodes_across_boundaries(source, tmp_path):
    out = tmp_path / "seg.cam"
    stats = camcodec.encode(source, out, segment_frames=5, **tiny_options(30))
    container = bs.read_file(out)
    assert [(s.first_frame, s.num_frames) for s in container.segments] == [(0, 5), (5, 5), (10, 2)]
    assert stats.segments == 3 and "3 segments" in stats.summary()
    assert stats.bpp == 8 * out.stat().st_size / (32 * 24 * 12)
    frames = camcodec.decode(out, device="cpu")
    assert stats.psnr == pytest.approx(camcodec.metrics.psnr_uint8(read_video(source).frames, frames))
    decoder = camcodec.Decoder(out, device="cpu")
    assert np.array_equal(decoder[3:8], frames[3:8])  # random access across a boundary
    assert not (tmp_path / "seg.cam.parts").exists()  # the work folder is cleared
    assert main(["decode", str(out), "--frames", "4:11", "-o", str(tmp_path / "part.mkv"), "-q"]) == 0
    assert np.array_equal(read_video(tmp_path / "part.mkv").frames, frames[4:11])


def test_dask_in_process_gives_the_bytes_of_an_inline_run(source, tmp_path):
    clip = read_video(source)
    config = tiny_config(20)
    ranges = segment_ranges(12, segments=3)
    where = FrameSource(str(source))
    threads = torch.get_num_threads()
    encode_in_segments(clip, where, tmp_path / "inline.cam", config, ranges, InlineEngine(), threads=1)
    torch.set_num_threads(threads)
    engine = DaskEngine(2, processes=False)
    try:
        encode_in_segments(clip, where, tmp_path / "dask.cam", config, ranges, engine, threads=1)
    finally:
        engine.close()
        torch.set_num_threads(threads)
    assert (tmp_path / "inline.cam").read_bytes() == (tmp_path / "dask.cam").read_bytes()


def test_a_local_cluster_leaves_the_callers_environment_as_it_was():
    """Dask's nannies set OMP_NUM_THREADS=1 for their workers in this process's environment; a later
    subprocess of the caller (an encode, x265) must not inherit it. Dask's configuration and the level of
    its logger are given back too."""
    import logging

    import dask
    import distributed  # noqa: F401 (loads its configuration defaults)

    before = dict(os.environ)
    level = logging.getLogger("distributed").level
    with dask.config.set({"distributed.scheduler.allowed-failures": 7}):  # the application's own setting
        engine = DaskEngine(1)
        try:
            assert dict(os.environ) == before
            assert dask.config.get("distributed.scheduler.allowed-failures") == 3  # camcodec's, while it runs
        finally:
            engine.close()
        assert dict(os.environ) == before
        assert dask.config.get("distributed.scheduler.allowed-failures") == 7
        assert logging.getLogger("distributed").level == level


def test_finished_segments_are_reused_and_a_foreign_work_folder_refused(source, tmp_path, monkeypatch):
    clip, where = read_video(source), FrameSource(str(source))
    config, ranges = tiny_config(20), segment_ranges(12, segments=2)
    work = tmp_path / "work"

    class InterruptedAfterTheFirst(InlineEngine):
        def as_completed(self, futures):
            for done, future in enumerate(super().as_completed(futures)):
                if done == 1:
                    raise KeyboardInterrupt
                yield future

    with pytest.raises(KeyboardInterrupt):
        encode_in_segments(clip, where, tmp_path / "a.cam", config, ranges, InterruptedAfterTheFirst(), work_dir=work)
    assert (work / "segment-0000.json").exists() and not (tmp_path / "a.cam").exists()

    encodes = []
    real_encode = camcodec.segments.Encoder.encode
    monkeypatch.setattr(camcodec.segments.Encoder, "encode", lambda *a: encodes.append(a[2]) or real_encode(*a))
    encode_in_segments(clip, where, tmp_path / "a.cam", config, ranges, InlineEngine(), work_dir=work)
    assert [os.path.basename(p) for p in encodes] == ["segment-0001.cam"]  # the finished one was not redone
    assert not work.exists()
    monkeypatch.undo()
    encode_in_segments(clip, where, tmp_path / "fresh.cam", config, ranges, InlineEngine())
    assert (tmp_path / "a.cam").read_bytes() == (tmp_path / "fresh.cam").read_bytes()

    work.mkdir()
    (work / "manifest.json").write_text('{"encode": "another"}')
    with pytest.raises(InputError, match="another encode"):
        encode_in_segments(clip, where, tmp_path / "b.cam", config, ranges, InlineEngine(), work_dir=work)


def test_engine_options_fail_in_one_line(tmp_path):
    with pytest.raises(InputError, match="give one of them"):
        make_engine(2, "tcp://127.0.0.1:1")
    start = time.perf_counter()
    with pytest.raises(InputError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskEngine(address="tcp://127.0.0.1:9", connect_timeout=1)
    assert time.perf_counter() - start < 30


def test_a_gpu_no_worker_has_fails_at_once(source, tmp_path):
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    engine = DaskEngine(address=cluster.scheduler_address)
    try:
        clip = read_video(source)
        config = tiny_config(5, device="cuda")
        start = time.perf_counter()
        with pytest.raises(InputError, match="no worker of the cluster has a GPU"):
            encode_in_segments(
                clip, FrameSource(str(source)), tmp_path / "g.cam", config, [range(6), range(6, 12)], engine
            )
        assert time.perf_counter() - start < 10
    finally:
        engine.close()
        cluster.close()


@pytest.mark.slow
def test_command_line_segments_on_two_worker_processes(source, tmp_path, capsys):
    out = tmp_path / "w.cam"
    assert main(["encode", str(source), "-o", str(out), "--segments", "2", "--workers", "2", *tiny_argv(20)]) == 0
    assert "2 segments" in capsys.readouterr().out
    again = tmp_path / "inline.cam"
    camcodec.encode(source, again, segments=2, workers=1, **tiny_options(20))
    assert out.read_bytes() == again.read_bytes()


@pytest.mark.slow
def test_a_worker_killed_mid_segment_is_retried_and_the_file_is_identical(source, tmp_path):
    """Kill the worker process that trains a segment once it has saved a checkpoint: the task runs again
    on another worker, resumes from the checkpoint, and the file equals an uninterrupted run's."""
    clip = read_video(source)
    config, ranges = tiny_config(300), segment_ranges(12, segments=2)
    where = FrameSource(str(source))
    engine = DaskEngine(2)
    try:
        encode_in_segments(clip, where, tmp_path / "clean.cam", config, ranges, engine, threads=1)
        work = tmp_path / "work"
        killed = []

        def kill_when_a_checkpoint_appears():
            pids = engine.client.run(os.getpid)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                checkpoints = list(work.glob("segment-*.cam.ckpt")) if work.exists() else []
                if checkpoints:
                    busy = {w: keys for w, keys in engine.client.processing().items() if keys}
                    for worker in busy:
                        os.kill(pids[worker], signal.SIGKILL)
                        killed.append(worker)
                        break
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_a_checkpoint_appears)
        killer.start()
        encode_in_segments(
            clip,
            where,
            tmp_path / "killed.cam",
            config,
            ranges,
            engine,
            work_dir=work,
            checkpoint_interval=0.2,
            threads=1,
        )
        killer.join()
    finally:
        engine.close()
    assert killed, "no worker was killed: the segments finished before a checkpoint was seen"
    assert (tmp_path / "killed.cam").read_bytes() == (tmp_path / "clean.cam").read_bytes()
