"""Small helpers shared by the reader and the writer."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

#: What PyAV raises: its own errors (which also subclass ValueError/OSError builtins), and plain ones.
AV_ERRORS = (av.FFmpegError, ValueError, OSError)


def one_line(exc: BaseException) -> str:
    """An exception as short single-line text (FFmpeg's message without errno and path)."""
    if isinstance(exc, (av.FFmpegError, OSError)) and exc.strerror:
        text = exc.strerror  # without the errno number and the (often temporary) file name
    else:
        text = str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def as_fraction(value: Any) -> Fraction | None:
    """A positive frame rate as a Fraction (floats are limited to a sane denominator), or None."""
    try:
        if isinstance(value, bool):
            return None
        frac = Fraction(value).limit_denominator(1_000_000) if isinstance(value, float) else Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return frac if frac > 0 else None
