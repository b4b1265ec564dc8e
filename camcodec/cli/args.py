"""Parsers for option values shared by subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from fractions import Fraction
from typing import Any


def size_arg(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 320x180, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def fps_arg(text: str) -> Fraction:
    """'25', '29.97' or '30000/1001' -> Fraction."""
    try:
        fps = Fraction(text).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a frame rate like 25 or 30000/1001, got {text!r}") from None
    if fps <= 0:
        raise argparse.ArgumentTypeError(f"frame rate must be positive, got {text!r}")
    return fps


def range_arg(text: str) -> slice:
    """'A:B', 'A:', ':B' or 'N' (one frame) -> slice of frame indices."""
    try:
        if ":" not in text:
            index = int(text)
            return slice(index, index + 1 if index != -1 else None)
        start, stop = text.split(":")
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame range A:B, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def typed_arg(kind: type) -> Callable[[str], Any]:
    """A parser of int or float values whose error says what was expected ('expected an integer, got ...')."""
    what = {int: "an integer", float: "a number"}.get(kind)
    if what is None:
        return kind

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse
