"""The bench command: it runs on a tiny case and writes every field. No test here times anything."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from camcodec.cli import main
from camcodec.config import resolve_config
from camcodec.encoder import initial_model
from camcodec.media.pattern import moving_pattern
from camcodec.train import frames_to_tensor
from eval import bench
from eval.bench.measure import time_to_psnr
from eval.bench.table import format_table

TINY = [
    "--device",
    "cpu",
    "--frames",
    "3",
    "--steps",
    "1",
    "--warmup",
    "1",
    "--repeats",
    "1",
    "--budget",
    "1",
    "--source",
    "synthetic",
    "--presets",
    "fast",
    "-q",
]

ROW_FIELDS = {
    "preset",
    "width",
    "height",
    "frames",
    "parameters",
    "model_config",
    "macs_per_frame",
    "macs_per_pixel",
    "train",
    "time_to_psnr",
    "file",
    "decode",
    "decode_file",
}
SECTION_FIELDS = {
    "train": {
        "batch_size",
        "warmup_steps",
        "steps",
        "seconds",
        "cpu_seconds",
        "cpu_per_wall",
        "steps_per_s",
        "frame_steps_per_s",
        "memory",
    },
    "time_to_psnr": {
        "target_db",
        "reached",
        "steps",
        "frame_steps",
        "seconds",
        "best_db",
        "last_steps",
        "last_seconds",
        "budget_steps",
        "budget_s",
        "stopped_by",
        "check_every_steps",
        "checks",
    },
    "file": {"training_steps", "encode_seconds", "file_bytes", "bpp"},
    "decode": {"frames", "render_group", "load_seconds", "seconds", "cpu_seconds", "cpu_per_wall", "fps", "memory"},
    "decode_file": {"command", "seconds", "median_seconds", "output_bytes", "rss_peak_mb"},
}
MEMORY_FIELDS = {"rss_start_mb", "rss_peak_mb", "rss_method", "cuda_peak_mb"}
MACHINE_FIELDS = {
    "cpu",
    "cpu_count",
    "cpus_usable",
    "torch_threads",
    "torch_interop_threads",
    "device",
    "gpu",
    "gpu_memory_mb",
    "cuda",
    "cudnn",
    "torch",
    "av",
    "numpy",
    "python",
    "platform",
    "camcodec",
    "camcodec_commit",
    "load_average",
}


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_bench_command_writes_every_field(tmp_path, capsys, monkeypatch):
    from camcodec.optim import Soap

    out = tmp_path / "bench.json"
    soap_steps, real_step = [], Soap.step
    monkeypatch.setattr(Soap, "step", lambda self: soap_steps.append(1) or real_step(self))
    assert main(["bench", "--sizes", "40x24", *TINY, "--optimizer", "soap", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["optimizer"] == "soap" and soap_steps  # the optimizer asked for trained
    assert report["schema"] == bench.SCHEMA_VERSION
    assert set(report["startup"]) == {"command", "seconds", "median_seconds", "rss_peak_mb"}
    assert set(report["machine"]) == MACHINE_FIELDS and report["machine"]["device"] == "cpu"
    assert report["settings"]["sizes"] == ["40x24"] and report["settings"]["source"] == "synthetic"
    assert [(r["preset"], r["width"], r["height"]) for r in report["results"]] == [("fast", 40, 24)]
    for row in report["results"]:
        assert set(row) == ROW_FIELDS
        for section, names in SECTION_FIELDS.items():
            assert set(row[section]) == names, section
        for section in ("train", "decode"):
            assert set(row[section]["memory"]) == MEMORY_FIELDS
            assert _positive(row[section]["memory"]["rss_peak_mb"]) and row[section]["memory"]["cuda_peak_mb"] is None
        assert row["frames"] == 3 and _positive(row["parameters"]) and _positive(row["macs_per_pixel"])
        assert _positive(row["train"]["frame_steps_per_s"]) and len(row["train"]["seconds"]) == 1
        assert _positive(row["decode"]["fps"]) and _positive(row["decode_file"]["rss_peak_mb"])
        assert row["decode_file"]["output_bytes"] > 0 and row["file"]["file_bytes"] > 0
        ttp = row["time_to_psnr"]
        assert ttp["checks"] and ttp["reached"] == (ttp["steps"] is not None) == (ttp["seconds"] is not None)
    table = capsys.readouterr().out
    assert "train f-steps/s" in table and "40x24" in table and str(out) in table
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left behind


def _parser():
    import argparse

    parser = argparse.ArgumentParser()
    bench.setup_args(parser)
    return parser


def test_sizes_presets_and_defaults_parse():
    args = _parser().parse_args(["--sizes", "320x180, 1920X1080", "--presets", "fast"])
    assert args.sizes == [(320, 180), (1920, 1080)] and args.presets == ["fast"]
    defaults = _parser().parse_args([])
    assert defaults.sizes is None and defaults.presets == ["fast", "medium"] and defaults.out == "bench.json"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--presets", "ultra"], "unknown preset"),
        (["--sizes", "320by180"], "expected sizes"),
        (["--steps", "0"], "whole number"),
        (["--out", "/no/such/folder/bench.json"], "does not exist"),
        (["--source", "/no/such/clip.mp4"], "no such file"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(["bench", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_time_to_psnr_stops_at_the_target_or_the_budget():
    frames = moving_pattern(2, 24, 32)
    config = resolve_config("fast", device="cpu")
    device = torch.device("cpu")
    tensor = frames_to_tensor(frames, device)

    def run(target: float, budget: float) -> dict:
        return time_to_psnr(initial_model(config, 2, 24, 32, device), tensor, config, target, budget, device)

    easy = run(1.0, 60.0)
    assert easy["reached"] and easy["stopped_by"] == "target" and easy["steps"] == easy["check_every_steps"] == 1
    assert easy["frame_steps"] == 2 and len(easy["checks"]) == 1

    hard = run(99.0, 0.2)
    assert not hard["reached"] and hard["stopped_by"] == "time budget" and hard["steps"] is None
    assert hard["budget_steps"] == config.total_steps(2) and hard["best_db"] < 99


def test_frames_come_from_a_real_clip_scaled_to_the_size(shared_data):
    frames = bench.load_frames(str(shared_data / "carphone_pristine.mp4"), 64, 36, 3)
    assert frames.shape == (3, 36, 64, 3) and frames.dtype == np.uint8
    assert bench.load_frames(bench.SYNTHETIC, 64, 36, 3).shape == (3, 36, 64, 3)


def test_table_shows_a_missed_target_and_an_error_row():
    machine = {
        "cpu": "cpu",
        "cpus_usable": 2,
        "torch": "2",
        "torch_threads": 2,
        "gpu": None,
        "device": "cpu",
        "load_average": {"start": None, "end": None},
    }
    row = {
        "preset": "fast",
        "width": 8,
        "height": 8,
        "parameters": 1000,
        "macs_per_pixel": 10.0,
        "train": {
            "frame_steps_per_s": 3.0,
            "cpu_per_wall": 1.0,
            "memory": {"rss_peak_mb": 500.0, "cuda_peak_mb": None},
        },
        "time_to_psnr": {
            "reached": False,
            "best_db": 21.5,
            "last_seconds": 60.0,
            "last_steps": 400,
            "seconds": None,
            "steps": None,
        },
        "decode": {
            "fps": 40.0,
            "load_seconds": 0.1,
            "cpu_per_wall": 2.0,
            "memory": {"rss_peak_mb": 500.0, "cuda_peak_mb": None},
        },
        "decode_file": {"median_seconds": 3.0, "rss_peak_mb": 400.0},
    }
    error = {"preset": "medium", "width": 1920, "height": 1080, "error": "out of GPU memory"}
    report = {
        "machine": machine,
        "settings": {"psnr_target_db": 28.0},
        "startup": {"median_seconds": 2.5},
        "results": [row, error],
    }
    lines = format_table(report).splitlines()
    assert len(lines) == 6 and "2.5 s" in lines[1] and "to 28 dB" in lines[2]
    assert "no: 21.5 dB at 400 st, 60 s" in lines[3] and "500/400" in lines[3]
    assert "out of GPU memory" in lines[4]
    assert lines[5].startswith("warning: torch ran on fewer cores than its 2 threads (fast 8x8 train)")
