"""Writing, reading and describing .cam files (layout: docs/bitstream.md, bitstream.layout).

Reading checks everything before it allocates or decodes: the magic, the version, every section's
length against the bytes that remain and its CRC32, every field against its declared range, and the
consistency of the whole (shapes vs counts, segments tiling the frames, payload lengths, no trailing
bytes). Every problem is a :class:`~bitstream.errors.BitstreamError` subclass with a one-line message
that says what is wrong and where.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from bitstream import freqtable
from bitstream import layout as L
from bitstream.coders import CODERS, coder_id
from bitstream.container import Container, QuantizedTensor, RawTensor, Segment, VideoInfo
from bitstream.errors import (
    BadMagicError,
    BitstreamError,
    ChecksumError,
    HeaderError,
    TruncatedError,
    UnsupportedVersionError,
)
from bitstream.files import write_atomic
from bitstream.rans import build_table, decode_stream, encode_stream, information_bits
from bitstream.records import ByteReader, crc32

log = logging.getLogger(__name__)

VIDEO_FIELDS = ("width", "height", "num_frames", "fps_num", "fps_den", "pix_fmt", "color_matrix")
MAX_CONFIG_DEPTH = 64


# --- writing -------------------------------------------------------------------------------------


def check_video_info(info: VideoInfo) -> None:
    """Raise HeaderError when the format cannot hold this video (checked before a long encode)."""
    head = {name: getattr(info, name) for name in VIDEO_FIELDS}
    L.FILE_HEADER.check({**head, "segment_count": 1}, "video info")


def write_bytes(container: Container, version: int = L.FORMAT_VERSION) -> bytes:
    """The bytes of a .cam file of format ``version`` (``layout.WRITABLE_VERSIONS``) holding ``container``;
    the same container always gives the same bytes. Each quantized tensor is coded with the coder it names
    (``bitstream.coders``): in version 2 one payload per tensor, in version 3 one stream per segment.

    Invalid content (a value out of range, segments that do not tile the frames, a non-JSON config,
    symbols outside their bit range, a coder the format lacks ...) raises HeaderError before anything is
    produced.
    """
    if version not in L.WRITABLE_VERSIONS:
        raise HeaderError(f"cannot write format version {version}; this writer writes {L.WRITABLE_VERSIONS}")
    if not isinstance(container, Container):
        raise HeaderError(f"cannot write a {type(container).__name__}, expected a Container")
    if not isinstance(container.info, VideoInfo):
        raise HeaderError(f"cannot write: info is a {type(container.info).__name__}, expected a VideoInfo")
    segments = list(container.segments)
    if not segments:
        raise HeaderError("cannot write: a container needs at least one segment")
    head = {name: getattr(container.info, name) for name in VIDEO_FIELDS}
    head["segment_count"] = len(segments)
    head = L.FILE_HEADER.check(head, "video info")
    parts = [
        L.MAGIC,
        L.PREAMBLE.pack({"format_version": version}, "preamble"),
        _section(L.TAG_FILE, L.FILE_HEADER.pack(head, "video info")),
    ]
    next_frame = 0
    total_elements = 0
    for index, segment in enumerate(segments):
        where = f"segment {index}"
        if not isinstance(segment, Segment):
            raise HeaderError(f"cannot write {where}: a {type(segment).__name__}, expected a Segment")
        values = L.SEGMENT_HEADER.check(
            {
                "first_frame": segment.first_frame,
                "num_frames": segment.num_frames,
                "tensor_count": len(segment.tensors),
            },
            where,
        )
        if values["first_frame"] != next_frame:
            raise HeaderError(f"cannot write {where}: starts at frame {values['first_frame']}, expected {next_frame}")
        next_frame += values["num_frames"]
        if next_frame > head["num_frames"]:
            raise HeaderError(f"cannot write {where}: ends at frame {next_frame}, the video has {head['num_frames']}")
        config = _config_bytes(segment.model_config, where)
        tensors = [_checked_tensor(tensor, f"{where} tensor {i}") for i, tensor in enumerate(segment.tensors)]
        names: set[str] = set()
        for tensor in tensors:
            if tensor.name in names:
                raise HeaderError(f"cannot write {where}: tensor name {tensor.name!r} appears twice")
            names.add(tensor.name)
            total_elements += tensor.count
            if total_elements > L.MAX_ELEMENTS:
                raise HeaderError(f"cannot write: more than {L.MAX_ELEMENTS} tensor elements in the file")
        table, data = _tables_v3(tensors) if version >= 3 else _tables_v2(tensors)
        data_section = _section(L.TAG_DATA, data)
        if version >= 3:
            table = L.DATA_CRC.pack(L.SECTION_CRC.unpack(data_section[-L.SECTION_CRC.size :])[0], where) + table
        header = L.SEGMENT_HEADER.pack(values, where) + _deflated(config, version, where)
        parts.append(_section(L.TAG_SEGMENT, header))
        parts.append(_section(L.TAG_TENSORS, _deflated(table, version, where)))
        parts.append(data_section)
    if next_frame != head["num_frames"]:
        raise HeaderError(f"cannot write: segments cover {next_frame} frames, the video has {head['num_frames']}")
    return b"".join(parts)


def _deflated(raw: bytes, version: int, where: str) -> bytes:
    """The packing of the model config and the tensor table from version 2 on: the inflated length, then the
    raw deflate stream (preset dictionary ``layout.DEFLATE_DICTIONARIES[version]``)."""
    length = L.INFLATED_LENGTH.pack(len(raw), f"cannot write {where}")
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, L.DEFLATE_DICTIONARIES[version])
    return length + packer.compress(raw) + packer.flush()


def _inflated(reader: ByteReader, what: str, version: int, limit: int = L.MAX_TABLE_SECTION_BYTES) -> bytes:
    """Read what ``_deflated`` wrote, up to the end of ``reader``; never inflates more than declared,
    and refuses a declared length over ``limit`` before inflating anything."""
    length = L.INFLATED_LENGTH.unpack(reader)
    if length > limit:
        raise HeaderError(f"{reader.where}: {what} is {length} bytes, at most {limit}")
    stream = reader.take(reader.remaining, what)
    unpacker = zlib.decompressobj(-15, zdict=L.DEFLATE_DICTIONARIES[version])
    try:
        raw = unpacker.decompress(stream, max(length, 1))
    except zlib.error as exc:
        raise HeaderError(f"{reader.where}: {what} is not a valid deflate stream ({exc})") from None
    if len(raw) != length or not unpacker.eof or unpacker.unconsumed_tail or unpacker.unused_data:
        raise HeaderError(f"{reader.where}: {what} does not inflate to the {length} bytes it announces")
    return raw


def _section(tag: bytes, payload: bytes) -> bytes:
    if len(payload) > L.MAX_SECTION_BYTES:
        raise HeaderError(f"cannot write: section {tag.decode()} would be {len(payload)} bytes")
    head = L.SECTION_HEAD.pack(tag, len(payload))
    return head + payload + L.SECTION_CRC.pack(crc32(head, payload))


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    if depth > MAX_CONFIG_DEPTH:
        raise HeaderError(f"model_config is nested deeper than {MAX_CONFIG_DEPTH} levels at {path}")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HeaderError(f"model_config{path} is {value}, JSON has no non-finite numbers")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise HeaderError(f"model_config{path} has a {type(key).__name__} key {key!r}; JSON keys are str")
            _check_json(item, f"{path}[{key!r}]", depth + 1)
        return
    raise HeaderError(f"model_config{path} is a {type(value).__name__}, which JSON cannot hold")


def _config_bytes(config: Any, where: str) -> bytes:
    if not isinstance(config, dict):
        raise HeaderError(f"cannot write {where}: model_config is a {type(config).__name__}, expected a dict")
    try:
        _check_json(config, "")
    except HeaderError as exc:
        raise HeaderError(f"cannot write {where}: {exc}") from None
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    raw = text.encode("utf-8")
    if len(raw) > L.MAX_CONFIG_BYTES:
        raise HeaderError(
            f"cannot write {where}: model_config is {len(raw)} bytes of JSON, at most {L.MAX_CONFIG_BYTES}"
        )
    return raw


def _checked_shape(array: np.ndarray, where: str) -> tuple[int, ...]:
    if not 1 <= array.ndim <= L.MAX_NDIM:
        raise HeaderError(f"cannot write {where}: {array.ndim} dimensions, allowed 1..{L.MAX_NDIM}")
    for dim in array.shape:
        L.DIMENSION.check(dim, f"cannot write {where}")
    if array.size > L.MAX_ELEMENTS:
        raise HeaderError(f"cannot write {where}: {array.size} elements, at most {L.MAX_ELEMENTS}")
    return tuple(int(d) for d in array.shape)


def _checked_scales(scales: Any, channels: int, where: str) -> np.ndarray:
    array = np.asarray(scales)
    if not np.issubdtype(array.dtype, np.floating):
        raise HeaderError(f"cannot write {where}: scales are {array.dtype}, expected float32")
    if array.shape not in ((1,), (channels,)):
        raise HeaderError(f"cannot write {where}: scales have shape {array.shape}, expected (1,) or ({channels},)")
    if not np.isfinite(array).all():
        raise HeaderError(f"cannot write {where}: scales hold a non-finite value")
    single = array.astype(np.float32)
    if not np.array_equal(single.astype(array.dtype), array):
        raise HeaderError(f"cannot write {where}: scales are not exactly representable as float32")
    return single


@dataclass
class _Checked:
    """A tensor checked for writing: its quantized symbols (flat) or its raw values' bytes."""

    name: str
    kind: int
    coder: int
    bits: int
    shape: tuple[int, ...]
    count: int
    scales: np.ndarray  # float32; empty for a raw tensor
    symbols: np.ndarray | None = None
    raw: bytes = b""


def _checked_tensor(tensor: Any, where: str) -> _Checked:
    if isinstance(tensor, (QuantizedTensor, RawTensor)):
        L.TENSOR_ENTRY.by_name["name"].check(tensor.name, f"cannot write {where}")
        where = f"{where} {tensor.name!r}"
    if isinstance(tensor, QuantizedTensor):
        symbols = np.asarray(tensor.symbols)
        if not np.issubdtype(symbols.dtype, np.integer):
            raise HeaderError(f"cannot write {where}: symbols are {symbols.dtype}, expected integers")
        shape = _checked_shape(symbols, where)
        bits = L.TENSOR_ENTRY.by_name["bits"].check(tensor.bits, f"cannot write {where}")
        if bits < L.MIN_BITS:
            raise HeaderError(f"cannot write {where}: bits = {bits}, allowed {L.MIN_BITS}..{L.MAX_BITS}")
        limit = 2 ** (bits - 1) - 1
        low, high = int(symbols.min()), int(symbols.max())
        if low < -limit or high > limit:
            raise HeaderError(f"cannot write {where}: symbols span {low}..{high}, {bits} bits allow -{limit}..{limit}")
        scales = _checked_scales(tensor.scales, shape[0], where)
        coder = coder_id(tensor.coder, f"cannot write {where}")
        return _Checked(tensor.name, L.KIND_QUANTIZED, coder, bits, shape, symbols.size, scales, symbols.reshape(-1))
    if isinstance(tensor, RawTensor):
        values = np.asarray(tensor.values)
        kinds = {np.dtype(np.float16): L.KIND_RAW_F16, np.dtype(np.float32): L.KIND_RAW_F32}
        kind = kinds.get(values.dtype.newbyteorder("="))
        if kind is None:
            raise HeaderError(f"cannot write {where}: values are {values.dtype}, expected float16 or float32")
        shape = _checked_shape(values, where)
        raw = np.ascontiguousarray(values).astype(L.RAW_DTYPES[kind]).tobytes()
        return _Checked(tensor.name, kind, 0, 0, shape, values.size, np.zeros(0, np.float32), raw=raw)
    raise HeaderError(f"cannot write {where}: a {type(tensor).__name__}, expected QuantizedTensor or RawTensor")


def _dims(shape: tuple[int, ...]) -> bytes:
    return b"".join(L.DIMENSION.pack(d, "cannot write") for d in shape)


def _tables_v2(tensors: list[_Checked]) -> tuple[bytes, bytes]:
    """Version 1 and 2's tensor table (inflated) and DATA: an entry and a payload per tensor."""
    entries, payloads = [], []
    for t in tensors:
        if t.symbols is not None:
            table, payload = CODERS[t.coder].encode(t.symbols)
            extra = t.scales.astype("<f4").tobytes() + bytes(table)
        else:
            table, payload, extra = b"", t.raw, b""
        fields = {
            "name": t.name, "kind": t.kind, "coder": t.coder, "bits": t.bits, "ndim": len(t.shape),
            "count": t.count, "scale_count": t.scales.size, "table_length": len(table),
            "payload_length": len(payload),
        }  # fmt: skip
        entries.append(L.TENSOR_ENTRY.pack(fields, f"cannot write tensor {t.name!r}") + _dims(t.shape) + extra)
        payloads.append(bytes(payload))
    return b"".join(entries), b"".join(payloads)


def _grid_exponents(scales: np.ndarray) -> list[int] | None:
    """The exponents ``e`` with ``scales == 2^(e / 32)`` exactly (``layout.GRID_MANTISSAS``), or None when
    a scale is off that grid or beyond its range."""
    exponents = np.round(np.log2(scales.astype(np.float64)) * L.GRID_STEPS_PER_OCTAVE).astype(np.int64)
    if np.abs(exponents).max() > L.MAX_SCALE_EXPONENT:
        return None
    if not np.array_equal(_grid_scales(exponents), scales):
        return None
    return exponents.tolist()


def _grid_scales(exponents: np.ndarray) -> np.ndarray:
    octave, step = np.divmod(np.asarray(exponents, dtype=np.int64), L.GRID_STEPS_PER_OCTAVE)
    return np.ldexp(L.GRID_MANTISSAS[step], octave.astype(np.int32)).astype(np.float32)


def _tables_v3(tensors: list[_Checked]) -> tuple[bytes, bytes]:
    """Version 3's tensor table (inflated: the names, then the entries) and DATA (the segment's rANS stream,
    then the raw values)."""
    names = b"".join(L.TENSOR_ENTRY.by_name["name"].pack(t.name, "cannot write") for t in tensors)
    entries, tables, symbols, raws = [], [], [], []
    for t in tensors:
        where = f"cannot write tensor {t.name!r}"
        scale_code, scale_bytes, table = L.SCALES_F32, b"", b""
        if t.symbols is not None:
            built = build_table(t.symbols)
            tables.append(built)
            symbols.append(t.symbols)
            table = built.to_bytes()
            exponents = _grid_exponents(t.scales)
            if exponents is None:
                scale_bytes = t.scales.astype("<f4").tobytes()
            else:
                scale_code = L.SCALES_EXPONENT
                scale_bytes = b"".join(L.SCALE_EXPONENT.pack(e, where) for e in exponents)
        else:
            raws.append(t.raw)
        fields = {
            "kind": t.kind, "coder": t.coder, "bits": t.bits, "ndim": len(t.shape), "scale_count": t.scales.size,
            "scale_code": scale_code, "table_length": len(table),
        }  # fmt: skip
        entries.append(L.TENSOR_ENTRY_V3.pack(fields, where) + _dims(t.shape) + scale_bytes + table)
    stream = encode_stream(tables, symbols)
    data = L.STREAM_LENGTH.pack(len(stream), "cannot write") + stream + b"".join(raws)
    return names + b"".join(entries), data


# --- parsing (shared by read_bytes and describe) ------------------------------------------------------


@dataclass
class _Entry:
    name: str
    kind: int
    coder: int
    bits: int
    shape: tuple[int, ...]
    count: int
    scales: np.ndarray  # empty for a raw tensor
    table: bytes
    payload_offset: int  # -1: in the segment's stream (version 3)
    payload_length: int  # 0 in the segment's stream


@dataclass
class _ParsedSegment:
    first_frame: int
    num_frames: int
    config: dict[str, Any]
    entries: list[_Entry] = field(default_factory=list)
    stream_offset: int = -1  # version 3: where the segment's rANS stream lies in the file
    stream_length: int = 0


@dataclass
class _Parsed:
    version: int
    head: dict[str, Any]
    sections: list[dict[str, Any]]
    segments: list[_ParsedSegment]
    size: int


def _as_view(data: bytes | bytearray | memoryview) -> memoryview:
    return memoryview(data if isinstance(data, bytes) else bytes(data))


def _parse(view: memoryview) -> _Parsed:
    size = len(view)
    prefix = view[: len(L.MAGIC)].tobytes()
    if prefix != L.MAGIC[: len(prefix)]:
        raise BadMagicError(f"not a camcodec file: starts with {prefix[:8]!r}, expected {L.MAGIC!r}")
    if size < len(L.MAGIC):
        raise TruncatedError(f"file is {size} bytes, shorter than the {len(L.MAGIC)}-byte magic")
    reader = ByteReader(view, len(L.MAGIC), where="preamble", overrun=TruncatedError)
    version = L.PREAMBLE.unpack(reader)["format_version"]
    if version not in L.READABLE_VERSIONS:
        *others, last = (str(v) for v in L.READABLE_VERSIONS)
        known = f"{', '.join(others)} and {last}" if others else last
        raise UnsupportedVersionError(f"format version {version}; this reader supports versions {known}")
    sections: list[dict[str, Any]] = []

    def section(tag: bytes, segment: int | None) -> tuple[ByteReader, int]:
        reader.where = "file" if segment is None else f"segment {segment}"
        offset, end = _read_section(reader, tag, sections, segment)
        where = f"{tag.decode()} section at offset {offset}" + ("" if segment is None else f" (segment {segment})")
        return ByteReader(view, offset + L.SECTION_HEAD.size, end, where=where, overrun=HeaderError), offset

    head_reader, _ = section(L.TAG_FILE, None)
    head = L.FILE_HEADER.unpack(head_reader)
    _expect_end(head_reader)
    if head["segment_count"] > head["num_frames"]:
        raise HeaderError(f"{head_reader.where}: {head['segment_count']} segments for {head['num_frames']} frames")
    segments = []
    next_frame = 0
    total_elements = 0
    for index in range(head["segment_count"]):
        seg_reader, _ = section(L.TAG_SEGMENT, index)
        values = L.SEGMENT_HEADER.unpack(seg_reader)
        if values["first_frame"] != next_frame:
            raise HeaderError(f"{seg_reader.where}: starts at frame {values['first_frame']}, expected {next_frame}")
        next_frame += values["num_frames"]
        if next_frame > head["num_frames"]:
            raise HeaderError(f"{seg_reader.where}: ends at frame {next_frame}, the video has {head['num_frames']}")
        config = _parse_config(_config_text(seg_reader, version), seg_reader.where)
        segment = _ParsedSegment(values["first_frame"], values["num_frames"], config)

        table_reader, _ = section(L.TAG_TENSORS, index)
        if version >= 2:
            table_reader = ByteReader(
                _inflated(table_reader, "tensor table", version), where=f"{table_reader.where}, inflated"
            )
        # version 3 writes the DATA section's CRC, the names, then the entries
        data_crc = L.DATA_CRC.unpack(table_reader) if version >= 3 else None
        listed = [_NAME.unpack(table_reader) for _ in range(values["tensor_count"])] if version >= 3 else None
        names: set[str] = set()
        for position in range(values["tensor_count"]):
            entry = _parse_entry(table_reader, version, listed[position] if listed else None)
            if entry.name in names:
                raise HeaderError(f"{table_reader.where}: tensor name {entry.name!r} appears twice")
            names.add(entry.name)
            total_elements += entry.count
            if total_elements > L.MAX_ELEMENTS:
                raise HeaderError(f"{table_reader.where}: more than {L.MAX_ELEMENTS} tensor elements in the file")
            segment.entries.append(entry)
        _expect_end(table_reader)

        data_reader, _ = section(L.TAG_DATA, index)
        if data_crc is not None and f"0x{data_crc:08x}" != sections[-1]["crc32"]:
            raise HeaderError(f"{data_reader.where}: is not the data its tensor table was written with (CRC-32)")
        if version >= 3:
            segment.stream_length = L.STREAM_LENGTH.unpack(data_reader)
            segment.stream_offset = data_reader.pos
            data_reader.take(segment.stream_length, "the rANS stream")
        expected = sum(e.payload_length for e in segment.entries)
        if data_reader.remaining != expected:
            raise HeaderError(
                f"{data_reader.where}: holds {data_reader.remaining} bytes after its stream, the tensor table"
                f" announces {expected}"
                if version >= 3
                else f"{data_reader.where}: holds {data_reader.remaining} bytes, the tensor table announces {expected}"
            )
        offset = data_reader.pos
        for entry in segment.entries:
            if version >= 3 and entry.kind == L.KIND_QUANTIZED:
                continue  # in the stream
            entry.payload_offset = offset
            offset += entry.payload_length
        segments.append(segment)
    if next_frame != head["num_frames"]:
        raise HeaderError(f"segments cover {next_frame} frames, the file header announces {head['num_frames']}")
    if reader.remaining:
        raise HeaderError(f"{reader.remaining} trailing bytes after the last section, at offset {reader.pos}")
    return _Parsed(version, head, sections, segments, size)


def _config_text(reader: ByteReader, version: int) -> bytes:
    """The model config's JSON bytes: the rest of the SEGH section, deflated from version 2 on."""
    if version >= 2:
        return _inflated(reader, "model config", version, L.MAX_CONFIG_BYTES)
    if reader.remaining > L.MAX_CONFIG_BYTES:  # (an empty config is refused as invalid JSON)
        raise HeaderError(f"{reader.where}: model config is {reader.remaining} bytes, at most {L.MAX_CONFIG_BYTES}")
    return reader.take(reader.remaining, "model config")


def _read_section(
    reader: ByteReader, tag: bytes, sections: list[dict[str, Any]], segment: int | None
) -> tuple[int, int]:
    """Check one section's framing and CRC; return (offset of the section, end of its payload)."""
    offset = reader.pos
    head = reader.take(L.SECTION_HEAD.size, f"header of section {tag.decode()}")
    found, length = L.SECTION_HEAD.unpack(head)
    name = found.decode("ascii", "backslashreplace")
    if length + L.SECTION_CRC.size > reader.remaining:
        raise TruncatedError(
            f"{reader.where}: section {name!r} at offset {offset} announces {length} bytes,"
            f" only {max(reader.remaining - L.SECTION_CRC.size, 0)} remain"
        )
    start = reader.pos
    payload = reader.data[start : start + length]
    reader.pos += length
    (stored,) = L.SECTION_CRC.unpack(reader.take(L.SECTION_CRC.size, "section CRC"))
    computed = crc32(head, payload)
    if stored != computed:
        raise ChecksumError(
            f"{reader.where}: section {name!r} at offset {offset} is corrupted"
            f" (CRC32 0x{computed:08x}, stored 0x{stored:08x})"
        )
    if found != tag:
        raise HeaderError(f"{reader.where}: expected section {tag.decode()!r} at offset {offset}, found {name!r}")
    sections.append({"tag": name, "offset": offset, "length": length, "crc32": f"0x{stored:08x}", "segment": segment})
    return offset, start + length


def _expect_end(reader: ByteReader) -> None:
    if reader.remaining:
        raise HeaderError(f"{reader.where}: {reader.remaining} unexpected bytes at offset {reader.pos}")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf: refused like a literal Infinity
        raise ValueError(f"number {text[:20]} is out of the float range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return result


def _parse_config(raw: bytes, where: str) -> dict[str, Any]:
    try:
        config = json.loads(
            raw.decode("utf-8"), parse_constant=_no_constants, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError:
        raise HeaderError(f"{where}: model config is not UTF-8") from None
    except RecursionError:
        raise HeaderError(f"{where}: model config is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise HeaderError(f"{where}: model config is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise HeaderError(f"{where}: model config is a JSON {type(config).__name__}, expected an object")
    return config


_NAME = L.TENSOR_ENTRY.by_name["name"]


def _parse_entry(reader: ByteReader, version: int, name: str | None = None) -> _Entry:
    """One tensor entry; in version 3 its ``name`` comes from the names before the entries."""
    if version >= 3:
        fields = {"name": name, **L.TENSOR_ENTRY_V3.unpack(reader)}
    else:
        fields = L.TENSOR_ENTRIES[version].unpack(reader)
    name = fields["name"]
    where = f"{reader.where}: tensor {name!r}"
    shape = tuple(L.DIMENSION.unpack(reader) for _ in range(fields["ndim"]))
    count = 1
    for dim in shape:
        count *= dim
        if count > L.MAX_ELEMENTS:
            raise HeaderError(f"{where}: shape {shape} has more than {L.MAX_ELEMENTS} elements")
    if "count" in fields and count != fields["count"]:
        raise HeaderError(f"{where}: shape {shape} has {count} elements, the entry says {fields['count']}")
    kind, bits, scale_count = fields["kind"], fields["bits"], fields["scale_count"]
    scales = np.zeros(0, dtype=np.float32)
    if kind == L.KIND_QUANTIZED:
        if bits < L.MIN_BITS:
            raise HeaderError(f"{where}: bits = {bits}, a quantized tensor needs {L.MIN_BITS}..{L.MAX_BITS}")
        if scale_count not in (1, shape[0]):
            raise HeaderError(f"{where}: {scale_count} scales, expected 1 or {shape[0]}")
        if fields["table_length"] == 0:
            raise HeaderError(f"{where}: a quantized tensor needs a frequency table")
        scales = _parse_scales(reader, scale_count, fields.get("scale_code", L.SCALES_F32), where)
        payload_length = fields.get("payload_length", 0)  # version 3: in the segment's stream
    else:
        itemsize = np.dtype(L.RAW_DTYPES[kind]).itemsize
        if bits or scale_count or fields["table_length"] or fields.get("coder", 0) or fields.get("scale_code", 0):
            raise HeaderError(f"{where}: a raw tensor must have coder, bits, scale_count and table_length 0")
        payload_length = fields.get("payload_length", count * itemsize)
        if payload_length != count * itemsize:
            raise HeaderError(f"{where}: {payload_length} payload bytes for {count} values of {itemsize} bytes")
    table = reader.take(fields["table_length"], "frequency table")
    coder = fields.get("coder", L.CODER_TABLE)  # version 1 knows the static table only
    return _Entry(name, kind, coder, bits, shape, count, scales, table, -1, payload_length)


def _parse_scales(reader: ByteReader, count: int, code: int, where: str) -> np.ndarray:
    if code == L.SCALES_EXPONENT:
        return _grid_scales(np.array([L.SCALE_EXPONENT.unpack(reader) for _ in range(count)], dtype=np.int64))
    scales = np.frombuffer(reader.take(L.SCALE.size * count, "scales"), dtype="<f4").astype(np.float32)
    if not np.isfinite(scales).all():
        raise HeaderError(f"{where}: a scale is not finite")
    return scales


# --- reading --------------------------------------------------------------------------------------


def read_bytes(data: bytes) -> Container:
    """Parse, check and decode a whole file held in memory; each payload with the coder its entry names."""
    view = _as_view(data)
    parsed = _parse(view)
    info = VideoInfo(**{name: parsed.head[name] for name in VIDEO_FIELDS})
    segments = []
    for index, seg in enumerate(parsed.segments):
        decoded = _segment_symbols(view, seg, f"segment {index}")
        tensors: list[QuantizedTensor | RawTensor] = []
        for entry in seg.entries:
            if entry.kind == L.KIND_QUANTIZED:
                symbols = decoded[entry.name].reshape(entry.shape)
                tensors.append(
                    QuantizedTensor(entry.name, symbols, entry.scales, entry.bits, L.CODER_NAMES[entry.coder])
                )
            else:
                payload = view[entry.payload_offset : entry.payload_offset + entry.payload_length].tobytes()
                dtype = np.dtype(L.RAW_DTYPES[entry.kind])
                values = np.frombuffer(payload, dtype=dtype).astype(dtype.newbyteorder("="))
                tensors.append(RawTensor(entry.name, values.reshape(entry.shape)))
        segments.append(Segment(seg.first_frame, seg.num_frames, seg.config, tensors))
    return Container(info, segments)


def _segment_symbols(view: memoryview, seg: _ParsedSegment, where: str) -> dict[str, np.ndarray]:
    """Each quantized tensor's symbols (flat int32) by name: decoded from its own payload with the coder its
    entry names (versions 1 and 2) or from the segment's one stream (version 3), checked against its bits."""
    quantized = [e for e in seg.entries if e.kind == L.KIND_QUANTIZED]
    if seg.stream_offset >= 0:
        stream = view[seg.stream_offset : seg.stream_offset + seg.stream_length].tobytes()

        def decode_all() -> list[np.ndarray]:
            tables = [freqtable.parse(e.table) for e in quantized]
            return decode_stream(tables, stream, [e.count for e in quantized])

        arrays = _decoded(decode_all, f"{where} stream")
    else:
        arrays = [
            _decoded(partial(CODERS[e.coder].decode, e.table, _payload(view, e), e.count), f"{where} tensor {e.name!r}")
            for e in quantized
        ]
    symbols = {}
    for entry, array in zip(quantized, arrays, strict=True):
        array = np.asarray(array)
        tensor = f"{where} tensor {entry.name!r}"
        if array.shape != (entry.count,) or not np.issubdtype(array.dtype, np.integer):
            raise HeaderError(
                f"{tensor}: the entropy coder returned {array.dtype} {array.shape}, expected {entry.count} ints"
            )
        limit = 2 ** (entry.bits - 1) - 1
        if array.min() < -limit or array.max() > limit:
            raise HeaderError(
                f"{tensor}: decoded symbols span {array.min()}..{array.max()}, {entry.bits} bits allow -{limit}..{limit}"
            )
        symbols[entry.name] = array.astype(np.int32, copy=False)
    return symbols


def _attribute_stream(view: memoryview, seg: _ParsedSegment, where: str) -> None:
    """Version 3: each quantized entry's ``payload_length`` set to the bytes of its symbols' information under
    its own table, rounded (``rans.information_bits``)."""
    decoded = _segment_symbols(view, seg, where)
    for entry in seg.entries:
        if entry.kind == L.KIND_QUANTIZED:
            table = freqtable.parse(entry.table)
            entry.payload_length = round(information_bits(table, decoded[entry.name]) / 8)


def _payload(view: memoryview, entry: _Entry) -> bytes:
    return view[entry.payload_offset : entry.payload_offset + entry.payload_length].tobytes()


def _decoded(decode: Any, where: str) -> Any:
    """``decode()``, its errors typed and named by ``where``."""
    try:
        return decode()
    except BitstreamError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except (ValueError, RuntimeError, OverflowError, IndexError, TypeError) as exc:
        raise HeaderError(f"{where}: the entropy coder failed ({type(exc).__name__}: {exc})") from None


def describe(data: bytes) -> dict[str, Any]:
    """What a file holds, as a JSON-able dict (without torch).

    The file is parsed and every section's CRC is checked, so a corrupted file raises just as
    :func:`read_bytes` would; versions 1 and 2 decode no payload, so errors only decoding reveals pass. In
    version 3 a segment's quantized tensors share one stream: it is decoded, and each tensor is given the
    bytes of its symbols' information under its table (the stream's bytes, but for the coder's final state and
    rounding, are their sum).
    """
    view = _as_view(data)
    parsed = _parse(view)
    video = {name: parsed.head[name] for name in VIDEO_FIELDS}
    segments = []
    for index, seg in enumerate(parsed.segments):
        if seg.stream_offset >= 0:
            _attribute_stream(view, seg, f"segment {index}")
        tensors: list[dict[str, Any]] = [
            {
                "name": e.name,
                "kind": L.KIND_NAMES[e.kind],
                "coder": L.CODER_NAMES[e.coder] if e.kind == L.KIND_QUANTIZED else "raw",
                "shape": list(e.shape),
                "bits": e.bits,
                "elements": e.count,
                "scales": len(e.scales),
                "table_bytes": len(e.table),
                "payload_bytes": e.payload_length,
                "payload_offset": e.payload_offset,  # -1: in the segment's stream
                # its payload and frequency table (counted inflated) against the whole file
                "share": (len(e.table) + e.payload_length) / parsed.size,
            }
            for e in seg.entries
        ]
        segments.append(
            {
                "index": index,
                "first_frame": seg.first_frame,
                "num_frames": seg.num_frames,
                "model_config": seg.config,
                "tensors": tensors,
                "elements": sum(t["elements"] for t in tensors),
                "table_bytes": sum(t["table_bytes"] for t in tensors),
                # the DATA section's bytes (version 3: less the stream's length field)
                "payload_bytes": seg.stream_length
                + sum(e.payload_length for e in seg.entries if seg.stream_offset < 0 or e.kind != L.KIND_QUANTIZED),
                "stream_bytes": seg.stream_length,  # version 3: the quantized tensors' one rANS stream
            }
        )
    pixels = video["width"] * video["height"] * video["num_frames"]
    return {
        "magic": L.MAGIC.hex(),
        "format_version": parsed.version,
        "file_bytes": parsed.size,
        "bpp": 8 * parsed.size / pixels,
        "video": video,
        "sections": parsed.sections,
        "segments": segments,
    }


# --- files ----------------------------------------------------------------------------------------


def write_file(path: str | os.PathLike[str], container: Container, version: int = L.FORMAT_VERSION) -> int:
    """Write ``container`` to ``path`` atomically (``bitstream.files``) in format ``version``; return the number
    of bytes written."""
    data = write_bytes(container, version)
    write_atomic(path, data)
    log.debug("wrote %s: %d bytes", os.fspath(path), len(data))
    return len(data)


def read_file(path: str | os.PathLike[str]) -> Container:
    """Read and decode a .cam file.

    A missing file raises FileNotFoundError, a folder IsADirectoryError (OSErrors, as ``open`` would);
    anything else that is not a regular file (a FIFO, a device such as /dev/zero) raises BitstreamError
    without blocking or reading from it.
    """
    return read_bytes(read_path(path))


def read_path(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file at ``path``: never blocks on a FIFO nor reads an endless device."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(info.st_mode):
            raise BitstreamError(f"{os.fsdecode(os.fspath(path))}: not a regular file, cannot be a .cam file")
        chunks, size = [], 0
        while size < info.st_size:
            chunk = os.read(fd, info.st_size - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
