"""Parsers for option values shared by subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from camcodec.errors import InputError
from camcodec.values import parse_fps, parse_size


def size_arg(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H)."""
    return argument(parse_size, text)


def fps_arg(text: str) -> Fraction:
    """'25', '29.97' or '30000/1001' -> Fraction."""
    return argument(parse_fps, text)


def argument(parse: Callable[[str], Any], text: str) -> Any:
    """``parse(text)``, its InputError as argparse's own error for a bad value."""
    try:
        return parse(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_overwrite_args(parser: argparse.ArgumentParser) -> None:
    """ffmpeg's -y and -n: an existing output is replaced only with -y (``args.overwrite``)."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "-y", "--overwrite", action="store_true", help="overwrite an existing output (without it, it is refused)"
    )
    choice.add_argument(
        "-n", "--no-overwrite", dest="overwrite", action="store_false", help="never overwrite an output (the default)"
    )


def add_frames_args(parser: argparse.ArgumentParser, command: str) -> None:
    """``--frames N|A:B`` and ``--start S``, the same for encode and decode (``camcodec.values.parse_frames``)."""
    parser.add_argument(
        "--frames",
        metavar="N|A:B",
        help=f"{command} N frames (from --start), or frames A to B-1 (A: to the end), which must all exist",
    )
    parser.add_argument("--start", type=int, default=0, metavar="S", help="first frame (default 0)")


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
