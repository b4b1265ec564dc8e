"""Error classes of the camcodec API; all derive from ``CamcodecError``."""

from __future__ import annotations

from bitstream.errors import (
    BadMagicError,
    BitstreamError,
    CamcodecError,
    ChecksumError,
    HeaderError,
    TruncatedError,
    UnsupportedVersionError,
)


class InputError(CamcodecError, ValueError):
    """A source video or option given by the user cannot be used (missing, unreadable, wrong size)."""


class OutputError(CamcodecError, OSError):
    """An output cannot be written (unknown extension, unwritable path, encoder failure)."""


class DeviceError(CamcodecError, RuntimeError):
    """The requested compute device is not available."""


__all__ = [
    "BadMagicError",
    "BitstreamError",
    "CamcodecError",
    "ChecksumError",
    "DeviceError",
    "HeaderError",
    "InputError",
    "OutputError",
    "TruncatedError",
    "UnsupportedVersionError",
]


class EncodeInterrupted(KeyboardInterrupt):
    """An encode stopped by Ctrl-C after saving its checkpoint; the message says where it is and how to
    continue. A KeyboardInterrupt, so that code which handles those handles this one."""
