"""camcodec info: show what a .cam file holds, without decoding it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import bitstream
from camcodec.errors import InputError

HELP = "show a .cam file's header: video info, model config, tensor table, section sizes"


def setup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a .cam file")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    description = bitstream.describe(path.read_bytes())
    print(json.dumps(description, indent=2) if args.json else bitstream.format_description(description))
    return 0
