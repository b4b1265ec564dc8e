"""Declared header fields and the byte-level helpers that pack and parse them.

Every fixed header field of the format is declared once, in a :class:`Record` (an ordered list of
:class:`Field`). The same declaration packs the field, parses it, checks its range and names it in
``describe()``: no width, bound or name is spelled anywhere else.

Field formats:

=======  ====================================================================
``B``    u8
``H``    u16 little-endian
``I``    u32 little-endian
``V``    unsigned LEB128 varint (1 to 10 bytes, minimal encoding only)
``Z``    signed integer as a zigzag-mapped ``V`` (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...)
``A``    ASCII text: u8 byte length, then printable ASCII bytes (0x20..0x7E)
``U``    UTF-8 text: u8 byte length, then UTF-8 bytes
=======  ====================================================================

For integers ``lo``/``hi`` bound the value; for text they bound the length in bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bitstream.errors import HeaderError

_STRUCT_FORMATS = {"B": struct.Struct("<B"), "H": struct.Struct("<H"), "I": struct.Struct("<I")}
_TEXT_FORMATS = ("A", "U")
_VARINT_FORMATS = ("V", "Z")
MAX_VARINT_BYTES = 10


@dataclass(frozen=True)
class Field:
    """One header field: its name, byte format, allowed range and meaning."""

    name: str
    fmt: str
    lo: int
    hi: int
    doc: str = ""

    def __post_init__(self) -> None:
        if self.fmt not in _STRUCT_FORMATS and self.fmt not in _TEXT_FORMATS and self.fmt not in _VARINT_FORMATS:
            raise ValueError(f"field {self.name}: unknown format {self.fmt!r}")
        if self.lo > self.hi:
            raise ValueError(f"field {self.name}: empty range")

    @property
    def is_text(self) -> bool:
        return self.fmt in _TEXT_FORMATS

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` normalized (int or str) if it is allowed, else raise HeaderError."""
        if self.is_text:
            if not isinstance(value, str):
                raise HeaderError(f"{where}: {self.name} must be a str, got {type(value).__name__}")
            raw = self._encode_text(value, where)
            if not self.lo <= len(raw) <= self.hi:
                raise HeaderError(f"{where}: {self.name} is {len(raw)} bytes long, allowed {self.lo}..{self.hi}")
            return value
        if isinstance(value, bool):
            raise HeaderError(f"{where}: {self.name} must be an integer, got bool")
        try:
            number = int(value.__index__())
        except (AttributeError, TypeError):
            raise HeaderError(f"{where}: {self.name} must be an integer, got {type(value).__name__}") from None
        if not self.lo <= number <= self.hi:
            raise HeaderError(f"{where}: {self.name} = {number} is out of range {self.lo}..{self.hi}")
        return number

    def _encode_text(self, value: str, where: str) -> bytes:
        if self.fmt == "A":
            if any(not 0x20 <= ord(ch) <= 0x7E for ch in value):
                raise HeaderError(f"{where}: {self.name} {value!r} is not printable ASCII")
            return value.encode("ascii")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise HeaderError(f"{where}: {self.name} {value!r} cannot be encoded as UTF-8") from None

    def pack(self, value: Any, where: str) -> bytes:
        value = self.check(value, where)
        if self.is_text:
            raw = self._encode_text(value, where)
            return bytes([len(raw)]) + raw
        if self.fmt == "V":
            return encode_varint(value)
        if self.fmt == "Z":
            return encode_varint(zigzag(value))
        return _STRUCT_FORMATS[self.fmt].pack(value)

    def unpack(self, reader: ByteReader) -> Any:
        where = reader.where
        if self.is_text:
            length = reader.u8(self.name)
            raw = reader.take(length, self.name)
            if self.fmt == "A":
                if any(not 0x20 <= b <= 0x7E for b in raw):
                    raise HeaderError(f"{where}: {self.name} is not printable ASCII")
                value: Any = raw.decode("ascii")
            else:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise HeaderError(f"{where}: {self.name} is not valid UTF-8") from None
        elif self.fmt == "V":
            value = reader.varint(self.name)
        elif self.fmt == "Z":
            value = reader.zigzag_varint(self.name)
        else:
            layout = _STRUCT_FORMATS[self.fmt]
            (value,) = layout.unpack(reader.take(layout.size, self.name))
        return self.check(value, where)


class Record:
    """An ordered group of fields that are always written together."""

    def __init__(self, name: str, fields: list[Field]):
        self.name = name
        self.fields = tuple(fields)
        self.by_name = {f.name: f for f in self.fields}
        if len(self.by_name) != len(self.fields):
            raise ValueError(f"record {name}: duplicate field names")

    def pack(self, values: Mapping[str, Any], where: str) -> bytes:
        missing = [f.name for f in self.fields if f.name not in values]
        if missing:
            raise HeaderError(f"{where}: {self.name} lacks {', '.join(missing)}")
        return b"".join(f.pack(values[f.name], where) for f in self.fields)

    def unpack(self, reader: ByteReader) -> dict[str, Any]:
        return {f.name: f.unpack(reader) for f in self.fields}

    def check(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        return {f.name: f.check(values[f.name], where) for f in self.fields}


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first, high bit set on all but the last."""
    if value < 0:
        raise ValueError("varint must be >= 0")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def zigzag(value: int) -> int:
    """Signed -> unsigned: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ..."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(value: int) -> int:
    return value >> 1 if value % 2 == 0 else -((value + 1) >> 1)


class ByteReader:
    """A cursor over ``data[start:end]`` that raises typed errors instead of IndexError/struct.error.

    ``where`` names the place being read in error messages. ``overrun`` is the error class used when a
    read runs past ``end``: TruncatedError at file level, HeaderError inside a CRC-checked section
    (where the bytes are all there but the fields claim more).
    """

    def __init__(
        self,
        data: bytes | memoryview,
        start: int = 0,
        end: int | None = None,
        where: str = "file",
        overrun: type[Exception] = HeaderError,
    ):
        self.data = memoryview(data)
        self.pos = start
        self.end = len(self.data) if end is None else end
        self.where = where
        self.overrun = overrun

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or size > self.remaining:
            raise self.overrun(
                f"{self.where}: {what} needs {size} bytes at offset {self.pos}, only {self.remaining} remain"
            )
        chunk = self.data[self.pos : self.pos + size].tobytes()
        self.pos += size
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value = 0
        for i in range(MAX_VARINT_BYTES):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise HeaderError(f"{self.where}: {what} is a non-minimal varint at offset {self.pos - i - 1}")
                return value
        raise HeaderError(f"{self.where}: {what} is a varint longer than {MAX_VARINT_BYTES} bytes")

    def zigzag_varint(self, what: str) -> int:
        return unzigzag(self.varint(what))


def crc32(*chunks: bytes | memoryview) -> int:
    value = 0
    for chunk in chunks:
        value = zlib.crc32(chunk, value)
    return value & 0xFFFFFFFF
