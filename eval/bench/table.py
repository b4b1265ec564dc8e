"""The benchmark's headline figures as an aligned text table, with the machine above it."""

from __future__ import annotations

from typing import Any

STARVED = 0.75  # CPU seconds per wall second below this x threads: torch's threads did not get their cores


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """A short aligned table of the headline figures, with the machine above it."""
    m = report["machine"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    load = m["load_average"]["start"]
    busy = f", load {load[0]:.1f} before the run" if load else ""
    threads = f"{m['torch_threads']} thread{'s' if m['torch_threads'] != 1 else ''}"
    head = (
        f"{m['cpu']} ({m['cpus_usable']} usable CPUs, torch {m['torch']}, {threads}{gpu}), device {m['device']}{busy}"
    )
    startup = (
        f"a fresh camcodec process starts in {report['startup']['median_seconds']:.1f} s "
        "(inside 'file decode s': camcodec decode FILE -o out.y4m)"
    )
    cuda = m["gpu"] is not None
    columns = [
        "preset",
        "size",
        "params",
        "train f-steps/s",
        f"to {report['settings']['psnr_target_db']:g} dB",
        "decode fps",
        "load s",
        "file decode s",
        "MACs/px",
        "peak RSS MB train/decode",
    ]
    if cuda:
        columns.append("CUDA MB train/dec")
    rows = []
    for r in report["results"]:
        size = f"{r['width']}x{r['height']}"
        if "error" in r:
            rows.append([r["preset"], size, r["error"]] + [""] * (len(columns) - 3))
            continue
        t = r["time_to_psnr"]
        best = "-" if t["best_db"] is None else f"{t['best_db']:.1f}"
        reach = (
            f"{t['seconds']:.1f} s, {t['steps']} st"
            if t["reached"]
            else f"no: {best} dB at {t['last_steps']} st, {t['last_seconds']:.0f} s"
        )
        train_mem, dec_mem = r["train"]["memory"], r["decode"]["memory"]
        dec_rss = r["decode_file"]["rss_peak_mb"]  # a fresh process: the in-process figure holds training's leftovers
        row = [
            r["preset"],
            size,
            f"{r['parameters']:,}",
            _fmt(r["train"]["frame_steps_per_s"]),
            reach,
            _fmt(r["decode"]["fps"]),
            _fmt(r["decode"]["load_seconds"], 2),
            _fmt(r["decode_file"]["median_seconds"], 2),
            f"{r['macs_per_pixel']:,.0f}",
            f"{train_mem['rss_peak_mb']:.0f}/{dec_rss:.0f}",
        ]
        if cuda:
            row.append(f"{_fmt(train_mem['cuda_peak_mb'], 0)}/{_fmt(dec_mem['cuda_peak_mb'], 0)}")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows, strict=True)]
    starved = [
        f"{r['preset']} {r['width']}x{r['height']} {part}"
        for r in report["results"]
        if "error" not in r
        for part in ("train", "decode")
        if r[part]["cpu_per_wall"] < STARVED * m["torch_threads"]
    ]
    lines = [head, startup, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if starved and m["torch_threads"] > 1 and not cuda:
        lines.append(
            f"warning: torch ran on fewer cores than its {m['torch_threads']} threads "
            f"({', '.join(starved)}): other processes held the CPU, and torch's threads wait for each "
            "other; rerun on a quiet machine or with --threads 1"
        )
    return "\n".join(lines)
