"""The ``camcodec`` command: one console script, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

from camcodec import __version__
from camcodec.cli import decode_cmd, encode_cmd, info_cmd
from camcodec.errors import CamcodecError

BUILTIN_COMMANDS: dict[str, ModuleType] = {"encode": encode_cmd, "decode": decode_cmd, "info": info_cmd}
PLUGIN_GROUP = "camcodec.commands"


def subcommands() -> dict[str, ModuleType]:
    """Built-in subcommands plus those other installed packages register (eval's ``eval`` and ``bench``).

    A plugin is a module with ``HELP``, ``setup_args(parser)`` and ``run(args) -> int``; discovering
    them through entry points keeps imports one way (eval -> camcodec).
    """
    commands = dict(BUILTIN_COMMANDS)
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        if entry.name not in commands:
            commands[entry.name] = importlib.import_module(entry.value)
    return commands


def setup_args(commands: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camcodec",
        description="Neural video codec: a CAM-NeRV network overfitted to the video is the compressed file.",
    )
    parser.add_argument("--version", action="version", version=f"camcodec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in (commands or subcommands()).items():
        module.setup_args(subparsers.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; errors become one line on stderr and exit code 2 (1 for other failures)."""
    commands = subcommands()
    args = setup_args(commands).parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return commands[args.command].run(args)
    except CamcodecError as exc:
        print(f"camcodec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"camcodec {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"camcodec {args.command}: error: {exc}", file=sys.stderr)
        return 1
