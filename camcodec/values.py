"""Option values written as text, one parser each for the command line and the API alike: a frame size
``"320x180"``, a frame rate ``"30000/1001"``, a duration ``"20m"``, frames ``"60"`` or ``"110:200"``. Each takes its typed form as it is
(a tuple, a number) and raises ``InputError`` naming what it expected."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from camcodec.errors import InputError

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms]?)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_size(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"WxH"`` or ``(W, H)`` -> ``(W, H)``, both positive."""
    if isinstance(value, str):
        try:
            width, height = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise InputError(f"expected WxH, e.g. 320x180, got {value!r}") from None
    else:
        try:
            width, height = (int(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"expected a size WxH or (W, H), got {value!r}") from None
    if width < 1 or height < 1:
        raise InputError(f"size must be positive, got {value!r}")
    return width, height


def parse_fps(value: str | float | Fraction) -> Fraction:
    """``"25"``, ``"29.97"``, ``"30000/1001"`` or a number -> a positive Fraction."""
    try:
        fps = Fraction(value).limit_denominator(1_000_000)
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"expected a frame rate like 25 or 30000/1001, got {value!r}") from None
    if fps <= 0:
        raise InputError(f"frame rate must be positive, got {value!r}")
    return fps


def parse_duration(value: str | float) -> float:
    """Seconds from ``"20m"``, ``"1h30m"``, ``"90s"``, ``"90"`` or a number; positive."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = _DURATION_PART.findall(text)
        if not text or "".join(number + unit for number, unit in parts) != text:
            raise InputError(f"expected a duration like 20m, 1h30m, 90s or 90 (seconds), got {value!r}")
        seconds = sum(float(number) * _SECONDS[unit] for number, unit in parts)
    if not seconds > 0:
        raise InputError(f"a duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"3 h 05 min"``: a time as people read it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(frozen=True)
class FrameRange:
    """The frames ``--frames`` and ``--start`` choose: ``count`` frames from ``start`` (None: to the end).
    ``exact``: a range A:B was given, so every frame in it must exist; a count N takes at most N."""

    start: int = 0
    count: int | None = None
    exact: bool = False

    @property
    def stop(self) -> int | None:
        return None if self.count is None else self.start + self.count

    def text(self) -> str:
        return f"{self.start}:{'' if self.stop is None else self.stop}" if self.exact else f"{self.count}"

    def check_within(self, length: int, what: str) -> None:
        """Refuse a range that reaches past the ``length`` frames there are."""
        if self.start >= length or (self.exact and self.stop is not None and self.stop > length):
            chosen = self.text() if self.exact else f"from {self.start}"
            raise InputError(f"{what}: --frames {chosen} is outside the video: it has {length} (0..{length - 1})")


def parse_frames(value: str | int | slice | None, start: int = 0) -> FrameRange:
    """``--frames``: ``N`` (or an int) takes N frames from ``start``; ``A:B`` (or a slice) frames A to
    B-1, ``A:`` from A to the end, ``:B`` the first B. A range and a ``start`` other than 0 conflict."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InputError(f"--start must be a whole number >= 0, got {start!r}")
    if value is None:
        return FrameRange(start)
    bounds = _frame_bounds(value)
    if isinstance(bounds, int):
        if bounds < 1:
            raise InputError(f"--frames: expected a count >= 1, got {value!r}")
        return FrameRange(start, bounds)
    first, last = bounds
    if first < 0 or (last is not None and last <= first):
        raise InputError(f"--frames: a range A:B needs 0 <= A < B, got {first}:{'' if last is None else last}")
    if start and first:
        raise InputError("--frames A:B and --start both say where to begin: give one of them")
    first = first or start
    return FrameRange(first, None if last is None else last - first, last is not None)


def _frame_bounds(value: str | int | slice) -> int | tuple[int, int | None]:
    """A count, or a range's (first, stop or None), from ``--frames``'s text, an int or a slice."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and ":" not in value:
            return int(value)
        if isinstance(value, str):
            first, last = value.split(":", 1)
            return int(first or 0), int(last) if last else None
        if isinstance(value, slice) and value.step in (None, 1):
            return int(value.start or 0), None if value.stop is None else int(value.stop)
    except (TypeError, ValueError):
        pass
    raise InputError(f"--frames: expected a count N or a range A:B, got {value!r}")
