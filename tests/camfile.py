"""Forging .cam files in tests: sections replaced with a correct length and CRC, deflated parts rewritten."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

import bitstream as bs
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


def version_of(data: bytes) -> int:
    return struct.unpack_from("<H", data, 8)[0]


def deflated(raw: bytes, version: int = 2) -> bytes:
    """Version 2 and 3's packing of a config or tensor table: inflated length, raw deflate with the dictionary."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=layout.DEFLATE_DICTIONARIES[version])
    return layout.INFLATED_LENGTH.pack(len(raw), "test") + packer.compress(raw) + packer.flush()


def inflated(packed: bytes, version: int = 2) -> bytearray:
    reader = ByteReader(packed)
    layout.INFLATED_LENGTH.unpack(reader)
    unpacker = zlib.decompressobj(-15, zdict=layout.DEFLATE_DICTIONARIES[version])
    return bytearray(unpacker.decompress(packed[reader.pos :]))


def table_bytes(data: bytes) -> bytearray:
    """The first segment's tensor table, inflated."""
    return inflated(bytes(section_payload(data, 2)), version_of(data))


def with_table(data: bytes, table: bytes) -> bytes:
    return with_section(data, 2, deflated(table, version_of(data)))


def with_data(data: bytes, payload: bytes) -> bytes:
    """The first segment's DATA section replaced by ``payload``; in version 3 its tensor table's CRC of the
    DATA section follows (a forgery of both)."""
    forged = with_section(data, 3, payload)
    if version_of(data) < 3:
        return forged
    offset, _, length = sections(forged)[3]
    (crc,) = struct.unpack_from("<I", forged, offset + 8 + length)
    table = table_bytes(forged)
    struct.pack_into("<I", table, 0, crc)
    return with_table(forged, bytes(table))


def config_bytes(data: bytes) -> bytes:
    """The first segment's model config JSON, inflated."""
    return bytes(inflated(bytes(section_payload(data, 1)[SEGMENT_HEADER_BYTES:]), version_of(data)))


def with_config_bytes(data: bytes, config: bytes) -> bytes:
    """The first segment's model config replaced by these JSON bytes (its segment header kept)."""
    head = bytes(section_payload(data, 1)[:SEGMENT_HEADER_BYTES])
    return with_section(data, 1, head + deflated(config, version_of(data)))


def with_config(data: bytes, **changes) -> bytes:
    """The file with keys of segment 0's model config changed (CRC recomputed: a forged file)."""
    config = {**json.loads(config_bytes(data)), **changes}
    return with_config_bytes(data, json.dumps(config).encode())


def with_frames(data: bytes, frames: int) -> bytes:
    """The file claiming ``frames`` frames everywhere: file header, segment header and model config
    (with as many CAM grid points as before, so that the network keeps its parameter count)."""
    config = bs.describe(data)["segments"][0]["model_config"]
    points = max(2, min(config["cam_points"], config["num_frames"]))
    head = bytearray(section_payload(data, 0))
    struct.pack_into("<I", head, 4, frames)
    segment = bytearray(section_payload(data, 1))
    struct.pack_into("<I", segment, 4, frames)
    data = with_section(data, 0, bytes(head))
    data = with_section(data, 1, bytes(segment))
    return with_config(data, num_frames=frames, cam_points=points)


# --- a sample container: every kind of tensor, two segments ----------------------------------------


def laplacian(rng: np.random.Generator, shape, bits: int, spread: float) -> np.ndarray:
    limit = 2 ** (bits - 1) - 1
    return np.clip(np.round(rng.laplace(0.0, spread, shape)), -limit, limit).astype(np.int32)


def quantized(name: str, symbols: np.ndarray, bits: int, per_channel: bool = True, seed: int = 0) -> bs.QuantizedTensor:
    rng = np.random.default_rng(seed)
    channels = symbols.shape[0] if per_channel else 1
    scales = rng.uniform(1e-4, 1e-1, channels).astype(np.float32)
    return bs.QuantizedTensor(name, symbols, scales, bits)


INFO = bs.VideoInfo(176, 144, 30, 30000, 1001, "yuv420p", "bt601")
CONFIG = {"channels": [64, 32, 16], "cam": True, "grid": 40, "strides": [4, 2, 2], "name": "cam-nerv ü", "lr": 5e-4}


def sample_container() -> bs.Container:
    rng = np.random.default_rng(1)
    tensors = [
        quantized("stem.0.weight", laplacian(rng, (32, 80), 8, 12.0), 8),
        quantized("blocks.0.conv.weight", laplacian(rng, (16, 8, 3, 3), 6, 5.0), 6),
        quantized("blocks.0.cam.gamma", laplacian(rng, (30, 16), 4, 2.0), 4, per_channel=False),
        quantized("pruned", np.zeros((4, 4), dtype=np.int16), 8),
        bs.RawTensor("head.bias", rng.standard_normal(3).astype(np.float16)),
        bs.RawTensor("stem.0.bias", rng.standard_normal((2, 4)).astype(np.float32)),
    ]
    second = [quantized("stem.0.weight", laplacian(rng, (8, 5), 8, 30.0), 8)]
    return bs.Container(INFO, [bs.Segment(0, 20, CONFIG, tensors), bs.Segment(20, 10, {"segment": 2}, second)])
