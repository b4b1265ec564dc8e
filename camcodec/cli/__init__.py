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

from camcodec import STATUS_LOGGER, __version__
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


def _add_global_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, defaults: bool = True) -> None:
    """The options every command takes, before or after its name (``camcodec --threads 1 encode`` and
    ``camcodec encode --threads 1``); ``defaults`` False for a subcommand, so that it keeps what the
    main parser read when the option is not repeated."""
    verbose_default: object = 0 if defaults else argparse.SUPPRESS
    threads_default: object = None if defaults else argparse.SUPPRESS
    parser.add_argument(
        "-v", "--verbose", action="count", default=verbose_default, help="more log output (-vv for debug)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        default=threads_default,
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
        subparser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.setup_args(subparser)
        _add_global_args(subparser.add_argument_group("all commands"), defaults=False)
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


class _OneLineFormatter(logging.Formatter):
    """Log records in the style of the command's errors: ``camcodec encode: warning: ...``; an INFO
    record of the status logger (``camcodec.STATUS_LOGGER``) as ``camcodec encode: ...``; with -v and
    -vv, other records name their logger."""

    def __init__(self, prefix: str, verbose: int) -> None:
        super().__init__()
        self.prefix = prefix
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        message = one_line(record.getMessage())
        if record.levelno >= logging.WARNING:
            text = f"{self.prefix}: {record.levelname.lower()}: {message}"
        elif record.name == STATUS_LOGGER and not self.verbose:
            text = f"{self.prefix}: {message}"
        else:
            text = f"{self.prefix}: {record.levelname.lower()} {record.name}: {message}"
        if record.exc_info and self.verbose >= 2:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _BarSafeHandler(logging.StreamHandler):
    """Writes each record on a line of its own above a running progress bar (``tqdm.write``), not into
    the bar's line."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(prefix: str, verbose: int, *, quiet: bool = False) -> None:
    """Warnings always (one line each, as errors are); the status lines an encode prints before and while
    it trains unless ``quiet``; every INFO record with -v, DEBUG with -vv."""
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(prefix, verbose))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    status = logging.getLogger(STATUS_LOGGER)
    status.setLevel(logging.WARNING if quiet and not verbose else logging.NOTSET if verbose else logging.INFO)
    # Encoders that FFmpeg loads log on their own: SVT-AV1 reads SVT_LOG once, at its first encoder, and
    # says ~20 [info] lines by default (1: errors, 3: info). The user's own setting wins.
    os.environ.setdefault("SVT_LOG", "3" if verbose else "1")


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
    try:  # importing a command loads torch: seconds in which a Ctrl-C must not print a traceback
        commands = subcommands([chosen] if chosen else None)
        args = setup_args(commands).parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"camcodec{' ' + chosen if chosen else ''}: interrupted", file=sys.stderr)
        return 130
    prefix = f"camcodec {args.command}"
    setup_logging(prefix, args.verbose, quiet=getattr(args, "quiet", False))
    try:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        return commands[args.command].run(args)
    except CamcodecError as exc:
        print(f"{prefix}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{prefix}: interrupted{': ' + one_line(exc) if str(exc) else ''}", file=sys.stderr)
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
