"""Typed errors for reading and writing camcodec files.

``CamcodecError`` is the root of every error the project raises. It lives here, in the lowest
layer, because ``bitstream`` may not import ``camcodec``; ``camcodec.errors`` re-exports it.
"""

from __future__ import annotations


class CamcodecError(Exception):
    """Root of all errors raised by camcodec, bitstream and eval."""


class BitstreamError(CamcodecError, ValueError):
    """A .cam file (or bytes claimed to be one) cannot be read or written."""


class BadMagicError(BitstreamError):
    """The data does not start with the camcodec magic: a foreign file."""


class UnsupportedVersionError(BitstreamError):
    """The file's format version is newer (or older) than this reader supports."""


class TruncatedError(BitstreamError):
    """The data ends before a section, field or payload it announces."""


class ChecksumError(BitstreamError):
    """A section's CRC32 does not match its bytes: the file is corrupted."""


class HeaderError(BitstreamError):
    """A header field is out of its allowed range or inconsistent with the rest of the file."""
