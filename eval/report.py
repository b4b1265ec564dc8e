"""Tables, BD-rate and plots from the rows of a result folder.

Means: every row is already a mean over frames; a codec's point is averaged over sequences, unweighted,
and only where that point exists for every sequence in the folder (so that all curves average the same
sequences). BD-rate is computed per sequence against the anchor and then averaged over the sequences
where it is defined (the two curves share a quality range).
"""

from __future__ import annotations

import io
import logging
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from eval.bdrate import bd_quality, bd_rate
from eval.codecs import seed_base
from eval.metrics import msssim_db
from eval.results import ResultStore, Row, write_atomic

log = logging.getLogger(__name__)

BDRATE_MD = "bdrate.md"
#: Below this many rate points on a curve, its BD-rate interpolates across gaps: the table warns.
MIN_POINTS = 4
RD_PSNR_PNG = "rd_psnr.png"
RD_MSSSIM_PNG = "rd_msssim.png"

#: Published UVG results (bpp, RGB PSNR), means over the 7 sequences at 1920x1080 (DESIGN.md).
UVG_PUBLISHED: dict[str, list[tuple[float, float]]] = {
    "NeRV": [(0.0135, 31.28), (0.0667, 35.57), (0.2497, 37.86)],
    "HNeRV": [(0.0139, 32.77), (0.0498, 35.49)],
    "FFNeRV+CAM (read off a plot)": [(0.014, 32.9), (0.074, 36.7), (0.150, 38.2)],
    "HiNeRV": [(0.0149, 34.53), (0.0580, 37.45), (0.2262, 39.63)],
    "HM-18 RA": [(0.0155, 34.63), (0.073, 38.06)],
    "VTM-17 RA": [(0.0144, 34.87), (0.0488, 37.60)],
}

#: BD-rate columns: (heading, quality of a row on the axis BD-rate interpolates).
QUALITY_AXES: list[tuple[str, Callable[[Row], float]]] = [
    ("PSNR-RGB", lambda r: r.psnr_rgb),
    ("PSNR-YUV", lambda r: r.psnr_yuv),
    ("MS-SSIM", lambda r: msssim_db(r.ms_ssim)),
]


@dataclass(frozen=True)
class MeanPoint:
    """One rate point of one codec, averaged over sequences."""

    codec: str
    point: str
    bpp: float
    psnr_rgb: float
    psnr_yuv: float
    ms_ssim: float
    encode_s: float
    decode_s: float


@dataclass(frozen=True)
class BDResult:
    """BD numbers of one codec against the anchor (fractions; BD-PSNR in dB); NaN where undefined."""

    codec: str
    rate: dict[str, float]  # heading of QUALITY_AXES -> BD-rate
    psnr_db: float  # BD-PSNR (RGB)
    sequences: int = 1  # how many sequences the mean covers
    points: int = 0  # the fewest rate points either curve has (over the sequences of a mean)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def sequence_names(rows: list[Row]) -> list[str]:
    return sorted({r.sequence for r in rows})


def codec_names(rows: list[Row], order: list[str] | None = None) -> list[str]:
    """Codecs in ``order`` first (those with rows), then any others alphabetically."""
    present = {r.codec for r in rows}
    first = [c for c in (order or []) if c in present]
    return first + sorted(present - set(first))


_MEAN_FIELDS = ("bpp", "psnr_rgb", "psnr_yuv", "ms_ssim", "encode_s", "decode_s")


def mean_points(rows: list[Row], order: list[str] | None = None) -> list[MeanPoint]:
    """Each (codec, point) present for every sequence, averaged over sequences; sorted by codec, then bpp."""
    sequences = sequence_names(rows)
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.codec, row.point), []).append(row)
    out = []
    for codec in codec_names(rows, order):
        points = [
            MeanPoint(codec, point, *(_mean(getattr(r, f) for r in group) for f in _MEAN_FIELDS))
            for (c, point), group in groups.items()
            if c == codec and len(group) == len(sequences)
        ]
        out.extend(sorted(points, key=lambda p: p.bpp))
    return out


def _curve(rows: list[Row], sequence: str, codec: str) -> list[Row]:
    return sorted((r for r in rows if r.sequence == sequence and r.codec == codec), key=lambda r: r.bpp)


def bd_per_sequence(rows: list[Row], anchor: str, order: list[str] | None = None) -> dict[str, list[BDResult]]:
    """sequence -> BD results of every other codec against ``anchor`` on that sequence."""
    out: dict[str, list[BDResult]] = {}
    for sequence in sequence_names(rows):
        base = _curve(rows, sequence, anchor)
        results = []
        for codec in codec_names(rows, order):
            test = _curve(rows, sequence, codec)
            if codec == anchor or not test:
                continue
            rate = {}
            for heading, quality in QUALITY_AXES:
                rate[heading] = (
                    bd_rate(
                        [r.bpp for r in base],
                        [quality(r) for r in base],
                        [r.bpp for r in test],
                        [quality(r) for r in test],
                    )
                    if base
                    else math.nan
                )
            psnr = (
                bd_quality(
                    [r.bpp for r in base], [r.psnr_rgb for r in base], [r.bpp for r in test], [r.psnr_rgb for r in test]
                )
                if base
                else math.nan
            )
            results.append(BDResult(codec, rate, psnr, points=min(len(base), len(test))))
        out[sequence] = results
    return out


def bd_means(per_sequence: dict[str, list[BDResult]]) -> list[BDResult]:
    """Per codec, the mean over sequences of each finite BD value."""
    codecs: dict[str, list[BDResult]] = {}
    for results in per_sequence.values():
        for result in results:
            codecs.setdefault(result.codec, []).append(result)
    out = []
    for codec, results in codecs.items():
        rate = {h: _mean(v for r in results if math.isfinite(v := r.rate[h])) for h, _ in QUALITY_AXES}
        psnr = _mean(v for r in results if math.isfinite(v := r.psnr_db))
        defined = sum(1 for r in results if math.isfinite(r.rate["PSNR-RGB"]))
        out.append(BDResult(codec, rate, psnr, defined, min(r.points for r in results)))
    return out


def _pct(value: float) -> str:
    return f"{100 * value:+.1f} %" if math.isfinite(value) else "n/a"


def _db(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else ("inf" if value > 0 else "n/a")


def _table(headings: list[str], rows: list[list[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(headings))]
    lines = ["| " + " | ".join(headings) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def points_table(points: list[MeanPoint], labels: dict[str, str] | None = None) -> str:
    labels = labels or {}
    body = [
        [
            labels.get(p.codec, p.codec),
            p.point,
            f"{p.bpp:.4f}",
            _db(p.psnr_rgb),
            _db(p.psnr_yuv),
            f"{p.ms_ssim:.4f}",
            f"{p.encode_s:.2f}",
            f"{p.decode_s:.2f}",
        ]
        for p in points
    ]
    headings = ["codec", "point", "bpp", "PSNR-RGB (dB)", "PSNR-YUV (dB)", "MS-SSIM", "encode s", "decode s"]
    return _table(headings, body, right_from=2)


def bd_table(means: list[BDResult], total: int, labels: dict[str, str] | None = None) -> str:
    labels = labels or {}
    body = [
        [labels.get(b.codec, b.codec), *(_pct(b.rate[h]) for h, _ in QUALITY_AXES), _db(b.psnr_db, 3)]
        + [f"{b.sequences}/{total}", str(b.points)]
        for b in means
    ]
    headings = ["codec"] + [f"BD-rate {h}" for h, _ in QUALITY_AXES] + ["BD-PSNR-RGB (dB)", "sequences", "points"]
    return _table(headings, body)


def seeds_table(means: list[BDResult], labels: dict[str, str] | None = None) -> str:
    """Per codec run with several seeds: the mean, standard deviation and range of its BD-rate (PSNR-RGB)
    over the seeds; "" when no codec was."""
    labels = labels or {}
    groups: dict[str, list[float]] = {}
    for result in means:
        if math.isfinite(value := result.rate["PSNR-RGB"]):
            groups.setdefault(seed_base(result.codec), []).append(value)
    body = [
        [
            labels.get(codec, codec),
            str(len(values)),
            _pct(statistics.fmean(values)),
            f"{100 * statistics.stdev(values):.1f} points",
            f"{_pct(min(values))} .. {_pct(max(values))}",
        ]
        for codec, values in groups.items()
        if len(values) > 1
    ]
    headings = ["codec", "seeds", "BD-rate PSNR-RGB, mean", "standard deviation", "range"]
    return _table(headings, body) if body else ""


def render_markdown(
    store: ResultStore, anchor: str, order: list[str] | None = None, labels: dict[str, str] | None = None
) -> str:
    """The text of ``bdrate.md``."""
    labels = labels or {}
    rows = store.sorted_rows()
    sequences = sequence_names(rows)
    anchor_label = labels.get(anchor, anchor)
    described = []
    for name in sequences:
        info = store.sequences.get(name, {})
        size = f"{info.get('width', '?')}x{info.get('height', '?')}"
        described.append(f"{name} ({size}, {info.get('frames', '?')} frames)")
    per_sequence = bd_per_sequence(rows, anchor, order)
    means = bd_means(per_sequence)
    parts = [
        "# Rate-distortion results",
        "",
        f"Sequences ({len(sequences)}): " + ", ".join(described) + ".",
        "",
        f"## BD-rate against {anchor_label}",
        "",
        "Bjontegaard delta rate: the mean difference in bits at equal quality over the quality range both "
        "curves cover (PCHIP interpolation of log-rate). Negative means fewer bits than the anchor. "
        "MS-SSIM is interpolated on a dB scale, -10 log10(1 - MS-SSIM). Each number is a mean over the "
        "sequences where it is defined ('sequences': where the PSNR-RGB curves share a quality range; "
        "'points': the fewest rate points either curve has); BD-PSNR is the mean PSNR gain at equal rate, "
        "over the shared rate range.",
        "",
        bd_table(means, len(sequences), labels) if means else "(no codec besides the anchor)",
        "",
    ]
    few = [labels.get(b.codec, b.codec) for b in means if b.points < MIN_POINTS]
    if few:
        warning = (
            f"fewer than {MIN_POINTS} rate points on a curve of {', '.join(few)} or the anchor (column 'points'): "
            "between so few points the curve is a guess; measure at least 4 (--points)"
        )
        log.warning("%s", warning)
        parts += [f"**Warning**: {warning}.", ""]
    spread = seeds_table(means, labels)
    if spread:
        parts += [
            "## Spread over seeds",
            "",
            "The same codec trained with other seeds (`eval rd --seeds N`): its BD-rate (PSNR-RGB, mean over "
            "sequences) against the anchor, over the seeds. A difference between codecs smaller than this "
            "spread is not a result.",
            "",
            spread,
            "",
        ]
    if len(sequences) > 1 and means:
        parts += ["## BD-rate per sequence", ""]
        for name in sequences:
            parts += [f"### {name}", "", bd_table(per_sequence[name], 1, labels), ""]
    parts += [
        f"## Rate points (mean over {len(sequences)} sequence{'s' if len(sequences) != 1 else ''})",
        "",
        points_table(mean_points(rows, order), labels),
        "",
        "bpp = 8 x coded bytes / (width x height x frames). Conventional codecs: packets plus codec headers, "
        "no container, without the encoder-settings SEI text of x264/x265. camcodec: the whole .cam file. "
        "Times are wall-clock seconds for the whole sequence on this machine.",
        "",
    ]
    return "\n".join(parts)


def plot_rd(
    store: ResultStore,
    path: Path,
    metric: str,
    order: list[str] | None = None,
    labels: dict[str, str] | None = None,
    reference: dict[str, list[tuple[float, float]]] | None = None,
) -> None:
    """An RD plot of the mean curves (``metric``: ``"psnr_rgb"`` or ``"ms_ssim"``), written atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state
    from matplotlib.ticker import FuncFormatter, LogLocator

    labels = labels or {}
    rows = store.sorted_rows()
    points = mean_points(rows, order)
    sequences = sequence_names(rows)
    figure = Figure(figsize=(7, 5), dpi=120)
    ax = figure.add_subplot()
    for codec in codec_names(rows, order):
        curve = [p for p in points if p.codec == codec]
        if curve:
            values = [getattr(p, metric) for p in curve]
            ax.plot([p.bpp for p in curve], values, marker="o", label=labels.get(codec, codec))
    for name, published in (reference or {}).items():
        ax.plot(
            [b for b, _ in published],
            [q for _, q in published],
            linestyle="--",
            marker="x",
            linewidth=1,
            alpha=0.7,
            label=f"{name} (published, UVG 1080p)",
        )
    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel({"psnr_rgb": "RGB PSNR (dB)", "ms_ssim": "MS-SSIM"}[metric])
    sizes = {(store.sequences.get(s, {}).get("width"), store.sequences.get(s, {}).get("height")) for s in sequences}
    where = f"{len(sequences)} sequence{'s' if len(sequences) != 1 else ''}"
    if len(sizes) == 1:
        width, height = next(iter(sizes))
        where += f", {width}x{height}"
    ax.set_title(f"{'RGB PSNR' if metric == 'psnr_rgb' else 'MS-SSIM'} vs rate, mean over {where}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def write_reports(
    store: ResultStore, anchor: str, order: list[str] | None = None, labels: dict[str, str] | None = None
) -> str:
    """Write bdrate.md, rd_psnr.png and rd_msssim.png into the store's folder; the markdown text."""
    text = render_markdown(store, anchor, order, labels)
    write_atomic(store.folder / BDRATE_MD, text)
    names = sequence_names(store.sorted_rows())
    uvg = bool(names) and all(store.sequences.get(n, {}).get("uvg") for n in names)
    plot_rd(store, store.folder / RD_PSNR_PNG, "psnr_rgb", order, labels, UVG_PUBLISHED if uvg else None)
    plot_rd(store, store.folder / RD_MSSSIM_PNG, "ms_ssim", order, labels)
    return text
