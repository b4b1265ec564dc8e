"""The results of a run: one row per sequence x codec x rate point, kept in ``results.json`` and ``results.csv``.

The output folder is the record of an experiment and can be filled over several runs: a row is reused
(the point skipped) when the same sequence, codec and rate point was measured with the same settings and
the same provenance (commit, libraries, machine, camcodec's precision, device, threads and seed:
``eval.provenance``); any other row (say, another ``--steps`` for camcodec, or another commit) is measured
again and replaced.
A sequence must be read the same way in every run that writes to a folder (same source, frame limit and
scale); otherwise the run is refused, so that one folder never mixes incomparable numbers.

Both files are rewritten atomically (temporary file, then ``os.replace``) after every point, so an
interrupted run leaves every finished point on disk. Several runs may write into one folder at the same
time (say, one per CPU core, each with other codecs): each save takes a lock on the folder and merges
the rows the others saved since.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import fcntl
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bitstream import files
from camcodec.errors import InputError, OutputError

log = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
LOCK = ".results.lock"
FORMAT_VERSION = 2  # 2: rows carry their provenance
READABLE_VERSIONS = (1, 2)
#: The fields of a sequence's setup that must not change between runs into one folder.
SETUP_KEYS = ("source", "max_frames", "scale")


@dataclass(frozen=True)
class Row:
    """One measured rate point. ``bpp = 8 * bytes / (width * height * frames)``."""

    sequence: str
    codec: str
    point: str  # e.g. "crf=27", "ppp=0.03"
    value: float | str  # the rate knob: a CRF, a target bpp, or a camcodec rate rung's name
    frames: int
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float
    psnr_yuv: float
    ms_ssim: float
    encode_s: float
    decode_s: float
    settings: str  # everything that determines the coded result besides the frames
    provenance: str = ""  # the code, libraries and machine that made it (``eval.provenance``; "": unknown)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.sequence, self.codec, self.point)

    def to_json(self) -> dict[str, Any]:
        # JSON has no infinity: a lossless point's PSNR is stored as null.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        values = {}
        for f in fields(cls):
            value = data.get(f.name, "") if f.name == "provenance" else data[f.name]  # rows of version 1 lack it
            if f.name.startswith("psnr") and value is None:
                value = math.inf
            values[f.name] = value
        return cls(**values)


COLUMNS = [f.name for f in fields(Row)]


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file atomically (``bitstream.files``); OutputError naming it when it cannot be written."""
    try:
        files.write_atomic(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


class ResultStore:
    """Rows and sequence setups of one output folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.sequences: dict[str, dict[str, Any]] = {}
        self.rows: dict[tuple[str, str, str], Row] = {}
        self.added: set[tuple[str, str, str]] = set()  # rows measured by this run
        path = self.folder / RESULTS_JSON
        if path.is_file():
            self._load(path)

    def _load(self, path: Path) -> None:
        """Take in the rows and sequences saved at ``path``; rows this store added itself win."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") not in READABLE_VERSIONS:
                raise ValueError(f"format version {data.get('version')!r}, expected {FORMAT_VERSION}")
            for name, setup in dict(data["sequences"]).items():
                self.sequences[name] = {**setup, **self.sequences.get(name, {})}
            for item in data["rows"]:
                row = Row.from_json(item)
                if row.key not in self.added:
                    self.rows[row.key] = row
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: not a results file of this harness ({exc}); use another --out") from None
        log.info("%s: %d rows from earlier runs", path, len(self.rows))

    def check_sequence(self, name: str, setup: dict[str, Any]) -> None:
        """Record how a sequence is read; refuse a folder where it was read another way."""
        old = self.sequences.get(name)
        if old is not None:
            changed = [k for k in SETUP_KEYS if old.get(k) != setup.get(k)]
            if changed:
                was = ", ".join(f"{k}={old.get(k)}" for k in changed)
                now = ", ".join(f"{k}={setup.get(k)}" for k in changed)
                raise InputError(
                    f"{self.folder}: sequence {name!r} was measured there with {was}; this run asks for "
                    f"{now}; use another --out"
                )
        self.sequences[name] = {**(old or {}), **setup}

    def note_sequence(self, name: str, **info: Any) -> None:
        """Add what reading the sequence revealed (frames, width, height)."""
        self.sequences.setdefault(name, {}).update(info)

    def done(self, sequence: str, codec: str, point: str, settings: str, provenance: str) -> bool:
        """Whether the point is stored with these settings and this provenance: only then is it reused."""
        row = self.rows.get((sequence, codec, point))
        return row is not None and row.settings == settings and row.provenance == provenance

    def add(self, row: Row) -> None:
        """Record a row (replacing one with the same key) and save both files."""
        self.rows[row.key] = row
        self.added.add(row.key)
        self.save()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def sorted_rows(self) -> list[Row]:
        return sorted(self.rows.values(), key=lambda r: (r.sequence, r.codec, r.bpp))

    def only(self, keep: Callable[[Row], bool]) -> ResultStore:
        """A copy holding the rows ``keep`` accepts, for reports (never saved: the folder keeps every row)."""
        view = copy.copy(self)
        view.rows = {key: row for key, row in self.rows.items() if keep(row)}
        return view

    def save(self) -> None:
        """Write both files, first merging what other runs saved into the folder meanwhile."""
        with self._locked():
            path = self.folder / RESULTS_JSON
            if path.is_file():
                self._load(path)
            self._write()

    def _write(self) -> None:
        rows = self.sorted_rows()
        data = {"version": FORMAT_VERSION, "sequences": self.sequences, "rows": [r.to_json() for r in rows]}
        write_atomic(self.folder / RESULTS_JSON, json.dumps(data, indent=1) + "\n")
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, c) for c in COLUMNS])
        write_atomic(self.folder / RESULTS_CSV, text.getvalue())
