"""The bytes of a .cam file named by the user, with the one-line errors of camcodec (no torch needed)."""

from __future__ import annotations

import os

import bitstream
from camcodec.errors import InputError


def read_source(source: str | os.PathLike) -> bytes:
    """The bytes of a .cam file; a path that cannot be read is an InputError naming it."""
    label = os.fsdecode(os.fspath(source))
    try:
        return bitstream.read_path(source)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not a .cam file") from None
    except NotADirectoryError:
        raise InputError(f"{label}: no such file (a parent is not a directory)") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    except bitstream.BitstreamError as exc:
        raise InputError(str(exc)) from None
