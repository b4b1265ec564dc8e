"""Outputs written whole or not at all, under one durability rule for every file the project writes.

A new output is written beside its target under a hidden temporary name, flushed and fsync'ed (a folder:
each of its files), moved over the target with ``os.replace`` and the parent folder fsync'ed, so that
after a crash the path holds either the old output or the whole new one. On any failure the temporary
is removed and an older output at the path is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def reserve_beside(path: str | os.PathLike[str], suffix: str = "", folder: bool = False) -> Path:
    """Create a fresh hidden temporary file (or folder) in the folder of ``path``, named after it."""
    target = Path(os.fspath(path))
    for _ in range(100):
        candidate = target.parent / f".{target.name or 'output'}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            if folder:
                os.mkdir(candidate)
            else:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: cannot create a temporary file next to {target.name}")


def publish(temp: Path, path: str | os.PathLike[str]) -> None:
    """Make ``temp`` durable and move it over ``path`` (a folder replaces a folder)."""
    target = Path(os.fspath(path))
    if temp.is_dir():
        for child in temp.iterdir():
            _fsync(child)
        _fsync_folder(temp)
        _replace_folder(temp, target)
    else:
        _fsync(temp)
        os.replace(temp, target)
    _fsync_folder(target.parent)


def discard(temp: Path) -> None:
    """Remove a temporary file or folder; nothing if it is already gone."""
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temporary path to write the output to; published over ``path`` when the block ends cleanly."""
    temp = reserve_beside(path, suffix)
    try:
        yield temp
        publish(temp, path)
    finally:
        discard(temp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write the output into; published over ``path`` when the block ends cleanly."""
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        yield handle


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def _replace_folder(temp: Path, target: Path) -> None:
    """Swap folders: the old one moves aside, the new one takes its name, then the old one goes."""
    if not target.exists():
        os.rename(temp, target)
        return
    backup = reserve_beside(target, ".old", folder=True)
    os.rmdir(backup)
    os.rename(target, backup)
    try:
        os.rename(temp, target)
    except BaseException:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _fsync(path: Path) -> None:
    """Flush a file's data to the device; a failure is an error (the data may be lost)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    """Make renames in a folder durable where the platform allows it (POSIX); best effort elsewhere."""
    with contextlib.suppress(OSError):
        _fsync(path)
