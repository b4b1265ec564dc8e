"""camcodec info: show what a .cam file holds, without decoding it."""

from __future__ import annotations

import argparse
import json

import bitstream
from camcodec.camfile import read_source

HELP = "show a .cam file's header: video info, model config, tensor table, section sizes"


def setup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a .cam file")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    data = read_source(args.input)
    try:
        description = bitstream.describe(data)
    except bitstream.BitstreamError as exc:
        raise type(exc)(f"{args.input}: {exc}") from None
    print(json.dumps(description, indent=2) if args.json else bitstream.format_description(description))
    return 0
