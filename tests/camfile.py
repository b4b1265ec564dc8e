"""Forging .cam files in tests: sections replaced with a correct length and CRC, deflated parts rewritten."""

from __future__ import annotations

import struct
import zlib

from bitstream import layout
from bitstream.records import ByteReader

SEGMENT_HEADER_BYTES = 10  # first_frame, num_frames, tensor_count: before SEGH's model config


def sections(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, tag, payload length) of each section, from the framing alone (no checks, so that a file
    can be forged one section at a time)."""
    found, offset = [], 10
    while offset + 8 <= len(data):
        tag, length = struct.unpack_from("<4sI", data, offset)
        found.append((offset, tag, length))
        offset += 8 + length + 4
    return found


def with_section(data: bytes, index: int, payload: bytes) -> bytes:
    """``data`` with section ``index`` replaced by ``payload``, framed with a correct length and CRC."""
    offset, tag, length = sections(data)[index]
    head = tag + struct.pack("<I", len(payload))
    return data[:offset] + head + payload + struct.pack("<I", zlib.crc32(head + payload)) + data[offset + 12 + length :]


def section_payload(data: bytes, index: int) -> bytearray:
    offset, _, length = sections(data)[index]
    return bytearray(data[offset + 8 : offset + 8 + length])


def deflated(raw: bytes) -> bytes:
    """Version 2's packing of a config or tensor table: inflated length, raw deflate with the dictionary."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=layout.DEFLATE_DICTIONARY)
    return layout.INFLATED_LENGTH.pack(len(raw), "test") + packer.compress(raw) + packer.flush()


def inflated(packed: bytes) -> bytearray:
    reader = ByteReader(packed)
    layout.INFLATED_LENGTH.unpack(reader)
    return bytearray(zlib.decompressobj(-15, zdict=layout.DEFLATE_DICTIONARY).decompress(packed[reader.pos :]))


def table_bytes(data: bytes) -> bytearray:
    """The first segment's tensor table, inflated."""
    return inflated(bytes(section_payload(data, 2)))


def with_table(data: bytes, table: bytes) -> bytes:
    return with_section(data, 2, deflated(table))


def config_bytes(data: bytes) -> bytes:
    """The first segment's model config JSON, inflated."""
    return bytes(inflated(bytes(section_payload(data, 1)[SEGMENT_HEADER_BYTES:])))


def with_config_bytes(data: bytes, config: bytes) -> bytes:
    """The first segment's model config replaced by these JSON bytes (its segment header kept)."""
    head = bytes(section_payload(data, 1)[:SEGMENT_HEADER_BYTES])
    return with_section(data, 1, head + deflated(config))
