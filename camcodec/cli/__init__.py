"""The ``camcodec`` command: one console script, one module per subcommand."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType
from typing import NoReturn

from camcodec import __version__
from camcodec.cli.args import positive_int
from camcodec.errors import CamcodecError

#: Built-in subcommands by module; each is imported only when it runs (``info`` never loads torch).
BUILTIN_COMMANDS: dict[str, str] = {
    "encode": "camcodec.cli.encode_cmd",
    "decode": "camcodec.cli.decode_cmd",
    "info": "camcodec.cli.info_cmd",
}
PLUGIN_GROUP = "camcodec.commands"

log = logging.getLogger(__name__)


def command_modules() -> dict[str, str]:
    """Every subcommand's module name: the built-ins plus those other installed packages register
    (eval's ``eval`` and ``bench``).

    A command module has ``HELP``, ``setup_args(parser)`` and ``run(args) -> int``; discovering plugins
    through entry points keeps imports one way (eval -> camcodec).
    """
    modules = dict(BUILTIN_COMMANDS)
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        modules.setdefault(entry.name, entry.value)
    return modules


def subcommands(names: Sequence[str] | None = None) -> dict[str, ModuleType]:
    """The command modules, imported: those named, or all of them."""
    modules = command_modules()
    return {name: importlib.import_module(modules[name]) for name in (names or modules)}


class UsageError(Exception):
    """A command line argparse refuses; ``main`` prints it as one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: no usage block, a pointer to --help instead (subparsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)")


def _add_global_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for torch (default: all cores; 1 is faster when other work shares them)",
    )


def setup_args(commands: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="camcodec",
        description="Neural video codec: a CAM-NeRV network overfitted to the video is the compressed file.",
    )
    parser.add_argument("--version", action="version", version=f"camcodec {__version__}")
    _add_global_args(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in (commands or subcommands()).items():
        module.setup_args(subparsers.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def chosen_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand the command line names, found without importing any; None when it names none
    (``--help``, a typo): then the full parser, with every command, answers."""
    parser = _Parser(prog="camcodec", add_help=False, allow_abbrev=False)
    _add_global_args(parser)
    parser.add_argument("command", nargs="?")
    try:
        known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    except UsageError:
        return None
    return known.command if known.command in command_modules() else None


def one_line(text: object) -> str:
    """Any message as a single line (embedded newlines, e.g. from torch or FFmpeg, become spaces)."""
    return " ".join(str(text).split())


def _os_message(exc: OSError) -> str:
    """'<file>: <reason>' for an OSError, without errno numbers."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    files = [os.fsdecode(f) for f in (exc.filename, exc.filename2) if f is not None]
    return ": ".join([*files[:1], reason]) if files else reason


def _silence_stdout() -> None:
    """Point standard output at the null device, so that the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; every error becomes one line on stderr, never a traceback.

    Exit codes: 0 success; 2 a bad command line, input, file or option (``CamcodecError``); 1 any other
    failure (the operating system's, or a bug: run with -vv for its traceback); 130 interrupted; 141
    (128 + SIGPIPE, as a shell reports it) quietly when the reader of standard output went away.
    ``--help`` and ``--version`` exit through SystemExit(0), as argparse does.
    """
    chosen = chosen_command(argv)
    commands = subcommands([chosen] if chosen else None)
    try:
        args = setup_args(commands).parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    prefix = f"camcodec {args.command}"
    try:
        return commands[args.command].run(args)
    except CamcodecError as exc:
        print(f"{prefix}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our standard output went away (| head, a closed player)
        _silence_stdout()
        return 141
    except OSError as exc:
        print(f"{prefix}: error: {one_line(_os_message(exc))}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{prefix}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line for the user, the traceback for -vv
        log.debug("traceback of the internal error", exc_info=True)
        hint = "" if args.verbose >= 2 else " (run with -vv for the traceback)"
        print(f"{prefix}: internal error: {type(exc).__name__}: {one_line(exc)}{hint}", file=sys.stderr)
        return 1
