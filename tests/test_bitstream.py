"""The .cam container: round trips, entropy-coding efficiency, typed errors, atomic writes, describe()."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bitstream as bs
from bitstream import freqtable, layout
from camfile import section_payload, table_bytes, with_config_bytes, with_section, with_table

REPO = Path(__file__).resolve().parents[1]
ERRORS = [bs.BadMagicError, bs.UnsupportedVersionError, bs.TruncatedError, bs.ChecksumError, bs.HeaderError]


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


@pytest.fixture(scope="module")
def sample() -> tuple[bs.Container, bytes]:
    container = sample_container()
    return container, bs.write_bytes(container)


def assert_same(a: bs.Container, b: bs.Container) -> None:
    assert a.info == b.info
    assert len(a.segments) == len(b.segments)
    for sa, sb in zip(a.segments, b.segments, strict=True):
        assert (sa.first_frame, sa.num_frames, sa.model_config) == (sb.first_frame, sb.num_frames, sb.model_config)
        assert [t.name for t in sa.tensors] == [t.name for t in sb.tensors]
        for ta, tb in zip(sa.tensors, sb.tensors, strict=True):
            assert type(ta) is type(tb)
            if isinstance(ta, bs.QuantizedTensor):
                assert ta.bits == tb.bits
                assert tb.symbols.dtype == np.int32 and tb.symbols.shape == ta.symbols.shape
                assert np.array_equal(ta.symbols, tb.symbols)
                assert tb.scales.dtype == np.float32 and np.array_equal(ta.scales, tb.scales)
            else:
                assert tb.values.dtype == ta.values.dtype and tb.values.shape == ta.values.shape
                assert ta.values.tobytes() == tb.values.tobytes()


# --- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 12, 16])
@pytest.mark.parametrize("pattern", ["uniform", "laplacian", "zeros", "single", "tiny"])
def test_quantized_round_trip(bits: int, pattern: str) -> None:
    rng = np.random.default_rng(bits)
    limit = 2 ** (bits - 1) - 1
    if pattern == "uniform":
        symbols = rng.integers(-limit, limit + 1, size=(12, 5, 3) if bits < 16 else (300,))
    elif pattern == "laplacian":
        symbols = laplacian(rng, (24, 3, 3, 3), bits, spread=max(limit / 20, 0.7))
    elif pattern == "zeros":
        symbols = np.zeros((7, 9), dtype=np.int8)
    elif pattern == "single":
        symbols = np.array([-limit])
    else:
        symbols = np.array([[limit, -limit, 0]], dtype=np.int16)
    tensor = quantized("t", symbols, bits)
    container = bs.Container(INFO, [bs.Segment(0, INFO.num_frames, {"bits": bits}, [tensor])])
    back = bs.read_bytes(bs.write_bytes(container))
    assert_same(container, back)
    got = back.segments[0].tensors[0]
    assert np.array_equal(got.dequantize(), tensor.dequantize())


def test_raw_tensors_are_bit_exact() -> None:
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 65504.0, 6e-8, 1.0], dtype=np.float16)
    special_bits = special.view(np.uint16).copy()
    special_bits[0] = 0x7E01  # a NaN with a payload
    f32 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(">f4")  # big-endian input
    tensors = [bs.RawTensor("f16", special_bits.view(np.float16)), bs.RawTensor("f32", f32)]
    back = bs.read_bytes(bs.write_bytes(bs.Container(INFO, [bs.Segment(0, 30, {}, tensors)])))
    got16, got32 = back.segments[0].tensors
    assert got16.values.dtype == np.float16 and np.array_equal(got16.values.view(np.uint16), special_bits)
    assert got32.values.dtype == np.float32 and got32.values.shape == (2, 3, 4)
    assert np.array_equal(got32.values.view(np.uint32), f32.astype(np.float32).view(np.uint32))


def test_multi_segment_round_trip(sample) -> None:
    container, data = sample
    assert_same(container, bs.read_bytes(data))


def test_deterministic_bytes(sample) -> None:
    _container, data = sample
    assert bs.write_bytes(sample_container()) == data
    assert bs.write_bytes(bs.read_bytes(data)) == data


def test_dequantize_broadcasts_along_axis_0() -> None:
    symbols = np.arange(-6, 6, dtype=np.int32).reshape(2, 3, 2)
    per_channel = bs.QuantizedTensor("a", symbols, np.array([0.5, 2.0], dtype=np.float32), 4)
    out = per_channel.dequantize()
    assert out.dtype == np.float32
    assert np.array_equal(out[0], symbols[0] * np.float32(0.5)) and np.array_equal(out[1], symbols[1] * np.float32(2))
    per_tensor = bs.QuantizedTensor("b", symbols[0, 0], np.array([0.25], dtype=np.float32), 4)
    assert np.array_equal(per_tensor.dequantize(), symbols[0, 0].astype(np.float32) * np.float32(0.25))


def test_file_round_trip_is_atomic(tmp_path: Path, sample) -> None:
    container, data = sample
    target = tmp_path / "clip.cam"
    assert bs.write_file(target, container) == len(data)
    assert target.read_bytes() == data
    assert_same(container, bs.read_file(target))
    assert bs.write_file(str(target), container) == len(data)  # overwrite, str path
    assert os.listdir(tmp_path) == ["clip.cam"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_old_file(tmp_path: Path, sample, monkeypatch, failing: str) -> None:
    container, _ = sample
    target = tmp_path / "clip.cam"
    target.write_bytes(b"old contents")

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk on fire"):
        bs.write_file(target, container)
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["clip.cam"]


def test_invalid_container_never_touches_the_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.cam"
    target.write_bytes(b"old contents")
    bad = bs.Container(INFO, [bs.Segment(0, 29, {}, [])])  # one frame short
    with pytest.raises(bs.HeaderError, match="29 frames"):
        bs.write_file(target, bad)
    assert target.read_bytes() == b"old contents" and os.listdir(tmp_path) == ["clip.cam"]


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        bs.read_file(tmp_path / "absent.cam")


# --- entropy coding ---------------------------------------------------------------------------------


def test_rans_near_entropy_on_laplacian() -> None:
    rng = np.random.default_rng(7)
    symbols = laplacian(rng, 100_000, 8, 10.0)
    table, payload = bs.RansCoder().encode(symbols)
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    entropy_bytes = -(counts * np.log2(p)).sum() / 8
    coded = len(table) + len(payload)
    assert entropy_bytes <= coded <= 1.01 * entropy_bytes
    assert len(table) < 64
    assert coded < 0.8 * symbols.size  # fixed-length 8 bits would be symbols.size bytes
    assert np.array_equal(bs.RansCoder().decode(table, payload, symbols.size), symbols)


def test_rans_small_and_odd_inputs() -> None:
    coder = bs.RansCoder()
    rng = np.random.default_rng(3)
    for count in (1, 2, 3, 4, 5, 7, 8, 9, 16, 31):
        for low, span in [(0, 2), (-5, 11), (-32767, 65535), (1000, 3), (-7, 1)]:
            symbols = rng.integers(low, low + span, count)
            table, payload = coder.encode(symbols)
            decoded = coder.decode(table, payload, count)
            assert decoded.dtype == np.int32 and np.array_equal(decoded, symbols)
            if span == 1:
                assert payload == b""


def test_constant_tensor_costs_a_few_bytes() -> None:
    table, payload = bs.RansCoder().encode(np.zeros(1_000_000, dtype=np.int64))
    assert payload == b"" and len(table) == 2


def test_corrupt_payload_never_crashes() -> None:
    """With a forged CRC, garbage rANS data decodes to some in-range symbols or raises HeaderError."""
    coder = bs.RansCoder()
    rng = np.random.default_rng(11)
    symbols = laplacian(rng, 2000, 8, 6.0)
    table, payload = coder.encode(symbols)
    for trial in range(300):
        garbage = bytes(rng.integers(0, 256, len(payload) if trial % 2 else 8 * (1 + trial % 7), dtype=np.uint8))
        try:
            out = coder.decode(table, garbage, symbols.size)
        except bs.HeaderError:
            continue
        assert out.shape == symbols.shape and out.min() >= symbols.min() and out.max() <= symbols.max()


# --- errors -----------------------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    for error in ERRORS:
        assert issubclass(error, bs.BitstreamError) and issubclass(error, ValueError)
        assert issubclass(error, bs.CamcodecError)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", bs.TruncatedError),
        (layout.MAGIC[:5], bs.TruncatedError),
        (b"GIF89a\x01\x00\x01\x00", bs.BadMagicError),
        (b"\x00" * 100, bs.BadMagicError),
        (layout.MAGIC, bs.TruncatedError),
        (layout.MAGIC + b"\x01", bs.TruncatedError),
    ],
)
def test_foreign_or_empty_data(data: bytes, error) -> None:
    with pytest.raises(error):
        bs.read_bytes(data)


@pytest.mark.parametrize("version", [0, 3, 256, 65535])
def test_other_versions_are_refused(sample, version: int) -> None:
    _, data = sample
    bumped = data[:8] + struct.pack("<H", version) + data[10:]
    with pytest.raises(bs.UnsupportedVersionError, match=f"version {version}"):
        bs.describe(bumped)


def test_a_version_2_file_read_as_version_1_is_a_typed_error(sample) -> None:
    _, data = sample
    assert bs.describe(data)["format_version"] == 2
    with pytest.raises(bs.HeaderError):
        bs.read_bytes(data[:8] + struct.pack("<H", 1) + data[10:])


def test_truncation_anywhere_is_detected(sample) -> None:
    _, data = sample
    for cut in range(len(data)):
        with pytest.raises(bs.TruncatedError):
            bs.describe(data[:cut])
    for cut in (len(data) - 1, len(data) // 2, 200):
        with pytest.raises(bs.TruncatedError):
            bs.read_bytes(data[:cut])


def test_flipped_byte_in_each_section_is_a_checksum_error(sample) -> None:
    _, data = sample
    sections = bs.describe(data)["sections"]
    assert [s["tag"] for s in sections] == ["HEAD"] + ["SEGH", "TTAB", "DATA"] * 2
    for section in sections:
        start, length = section["offset"], section["length"]
        places = [start, start + 3]  # the tag
        places += [start + 8 + i for i in range(0, length, max(length // 7, 1))]  # the payload
        places += [start + 8 + length, start + 11 + length]  # the CRC itself
        for place in places:
            corrupted = bytearray(data)
            corrupted[place] ^= 0x10
            with pytest.raises(bs.ChecksumError, match=f"offset {start}"):
                bs.read_bytes(bytes(corrupted))


def test_flipped_length_is_refused(sample) -> None:
    _, data = sample
    for section in bs.describe(data)["sections"]:
        for byte in range(4):
            corrupted = bytearray(data)
            corrupted[section["offset"] + 4 + byte] ^= 0x01
            with pytest.raises((bs.ChecksumError, bs.TruncatedError)):
                bs.read_bytes(bytes(corrupted))


def test_trailing_garbage_is_refused(sample) -> None:
    _, data = sample
    with pytest.raises(bs.HeaderError, match="trailing"):
        bs.read_bytes(data + b"\x00")


def head_with(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    payload = section_payload(data, 0)
    struct.pack_into(fmt, payload, offset, value)
    return with_section(data, 0, bytes(payload))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0, "<H", 0, "width = 0"),
        (0, "<H", 16385, "width = 16385"),
        (0, "<H", 65535, "width = 65535"),
        (2, "<H", 50000, "height = 50000"),
        (4, "<I", 10**9, "num_frames = 1000000000"),
        (4, "<I", 31, "cover 30 frames"),
        (4, "<I", 29, "ends at frame 30"),
        (8, "<I", 0, "fps_num = 0"),
        (12, "<I", 2**31, "fps_den = 2147483648"),
        (17, "<B", 0x07, "pix_fmt is not printable ASCII"),
    ],
)
def test_out_of_range_header_field(sample, offset: int, fmt: str, value: int, message: str) -> None:
    _, data = sample
    with pytest.raises(bs.HeaderError, match=message):
        bs.read_bytes(head_with(data, offset, fmt, value))


def test_segment_count_out_of_range(sample) -> None:
    _, data = sample
    head = section_payload(data, 0)
    count_at = len(head) - 4
    for value, message in [(0, "segment_count = 0"), (3, "segment 2"), (31, "31 segments")]:
        payload = bytearray(head)
        struct.pack_into("<I", payload, count_at, value)
        with pytest.raises((bs.HeaderError, bs.TruncatedError), match=message):
            bs.read_bytes(with_section(data, 0, bytes(payload)))


def test_inconsistent_segments(sample) -> None:
    _, data = sample
    seg = section_payload(data, 1)
    cases = [(0, 5, "starts at frame 5, expected 0"), (4, 40, "ends at frame 40"), (4, 0, "num_frames = 0")]
    for offset, value, message in cases:
        payload = bytearray(seg)
        struct.pack_into("<I", payload, offset, value)
        with pytest.raises(bs.HeaderError, match=message):
            bs.read_bytes(with_section(data, 1, bytes(payload)))
    payload = bytearray(seg)
    struct.pack_into("<H", payload, 8, 7)
    with pytest.raises(bs.HeaderError, match="TTAB"):
        bs.read_bytes(with_section(data, 1, bytes(payload)))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"[1, 2]", "expected an object"),
        (b"{not json", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b"", "not valid JSON"),
    ],
)
def test_bad_model_config(sample, config: bytes, message: str) -> None:
    _, data = sample
    with pytest.raises(bs.HeaderError, match=message):
        bs.read_bytes(with_config_bytes(data, config))


def rewrite_first_entry(data: bytes, **changes: int) -> bytes:
    """The sample file with fields of the first tensor entry (segment 0) changed, CRC fixed."""
    table = table_bytes(data)
    name_length = table[0]
    fixed = 1 + name_length  # kind, coder, bits, ndim are single bytes after the name
    for name, value in changes.items():
        position = {"kind": fixed, "coder": fixed + 1, "bits": fixed + 2, "ndim": fixed + 3, "count": fixed + 4}[name]
        table[position] = value
    return with_table(data, bytes(table))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": 3}, "kind = 3"),
        ({"kind": 1}, "raw tensor"),
        ({"coder": 1}, "coder = 1"),
        ({"bits": 17}, "bits = 17"),
        ({"bits": 1}, "bits = 1"),
        ({"bits": 4}, "4 bits allow -7..7"),
        ({"ndim": 0}, "ndim = 0"),
        ({"ndim": 7}, "ndim = 7"),
        ({"ndim": 1}, "elements"),
    ],
)
def test_bad_tensor_entry(sample, changes: dict, message: str) -> None:
    _, data = sample
    with pytest.raises(bs.HeaderError, match=message):
        bs.read_bytes(rewrite_first_entry(data, **changes))


def test_tensor_table_consistency(sample) -> None:
    _, data = sample
    table = table_bytes(data)
    with pytest.raises(bs.HeaderError, match="unexpected bytes"):
        bs.read_bytes(with_table(data, bytes(table) + b"\x00"))
    with pytest.raises(bs.HeaderError, match="TTAB"):
        bs.read_bytes(with_table(data, bytes(table[:-3])))
    packed = section_payload(data, 2)
    with pytest.raises(bs.HeaderError, match="does not inflate to|not a valid deflate"):
        bs.read_bytes(with_section(data, 2, bytes(packed[:-2])))  # the deflate stream cut short
    with pytest.raises(bs.HeaderError, match="does not inflate to"):
        bs.read_bytes(with_section(data, 2, bytes(packed) + b"\x00"))  # bytes after the stream
    reader = bs.records.ByteReader(bytes(packed))
    layout.INFLATED_LENGTH.unpack(reader)
    with pytest.raises(bs.HeaderError, match="does not inflate to"):  # a stream longer than announced
        bs.read_bytes(with_section(data, 2, layout.INFLATED_LENGTH.pack(10, "test") + bytes(packed[reader.pos :])))
    data_section = section_payload(data, 3)
    with pytest.raises(bs.HeaderError, match="announces"):
        bs.read_bytes(with_section(data, 3, bytes(data_section) + b"\x00\x00\x00\x00"))


def test_duplicate_names_in_file_are_refused() -> None:
    rng = np.random.default_rng(0)
    container = bs.Container(
        INFO,
        [
            bs.Segment(
                0,
                30,
                {},
                [quantized("aa", laplacian(rng, (4,), 8, 3.0), 8), quantized("ab", laplacian(rng, (4,), 8, 3.0), 8)],
            )
        ],
    )
    data = bs.write_bytes(container)
    table = table_bytes(data)
    second = table.index(b"\x02ab")
    table[second + 2] = ord("a")
    with pytest.raises(bs.HeaderError, match="'aa' appears twice"):
        bs.read_bytes(with_table(data, bytes(table)))


def test_huge_claims_are_refused_before_allocating(sample) -> None:
    _, data = sample
    table = table_bytes(data)
    name_length = table[0]
    count_at = 1 + name_length + 4
    # count as a 5-byte varint of 2**32, then the rest of the entry unchanged
    huge = bytes(table[:count_at]) + bytes([0x80, 0x80, 0x80, 0x80, 0x10]) + bytes(table[count_at + 2 :])
    with pytest.raises(bs.HeaderError, match="count = 4294967296"):
        bs.read_bytes(with_table(data, huge))
    claims = bytes(section_payload(data, 2))  # an inflated length past the limit, refused before inflating
    too_long = layout.INFLATED_LENGTH.pack(layout.MAX_TABLE_SECTION_BYTES, "test")[:-1] + b"\x7f"
    with pytest.raises(bs.HeaderError, match="inflated_length"):
        bs.read_bytes(with_section(data, 2, too_long + claims[3:]))


def test_mutated_headers_only_raise_bitstream_errors(sample) -> None:
    """Random byte changes with a recomputed CRC: a typed error or a clean parse, nothing else."""
    _, data = sample
    rng = np.random.default_rng(5)
    for trial in range(600):
        index = trial % 3  # HEAD, SEGH, TTAB of segment 0
        payload = section_payload(data, index)
        for _ in range(1 + trial % 3):
            payload[int(rng.integers(len(payload)))] = int(rng.integers(256))
        with contextlib.suppress(bs.BitstreamError):
            bs.read_bytes(with_section(data, index, bytes(payload)))


def test_messages_are_one_line(sample) -> None:
    _, data = sample
    for bad in [data[:100], data + b"x", b"nope", rewrite_first_entry(data, bits=4)]:
        with pytest.raises(bs.BitstreamError) as info:
            bs.read_bytes(bad)
        assert "\n" not in str(info.value) and str(info.value)


# --- writing invalid content -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["width", "height", "num_frames", "fps_num", "fps_den", "pix_fmt", "color_matrix"])
def test_video_info_ranges_are_enforced_on_write(name: str) -> None:
    field = layout.FILE_HEADER.by_name[name]
    bad = "x" * (field.hi + 1) if field.is_text else field.hi + 1
    info = bs.VideoInfo(**{**INFO.__dict__, name: bad})
    with pytest.raises(bs.HeaderError, match=name):
        bs.write_bytes(bs.Container(info, [bs.Segment(0, info.num_frames if name != "num_frames" else 1, {}, [])]))


def single(tensor, config=None) -> bs.Container:
    return bs.Container(INFO, [bs.Segment(0, 30, {} if config is None else config, [tensor])])


@pytest.mark.parametrize(
    ("container", "message"),
    [
        (single(bs.QuantizedTensor("a", np.array([8]), np.ones(1, np.float32), 4)), "symbols span 8..8"),
        (single(bs.QuantizedTensor("a", np.array([0.5]), np.ones(1, np.float32), 4)), "expected integers"),
        (single(bs.QuantizedTensor("a", np.zeros((3, 2), int), np.ones(2, np.float32), 4)), "scales have shape"),
        (single(bs.QuantizedTensor("a", np.zeros(3, int), np.array([0.1]), 4)), "not exactly representable"),
        (single(bs.QuantizedTensor("a", np.zeros(3, int), np.array([np.nan], np.float32), 4)), "non-finite"),
        (single(bs.QuantizedTensor("a", np.zeros(3, int), np.ones(1, np.float32), 17)), "bits = 17"),
        (single(bs.QuantizedTensor("a", np.zeros(3, int), np.ones(1, np.float32), 1)), "bits = 1"),
        (single(bs.QuantizedTensor("a", np.zeros((0,), int), np.ones(1, np.float32), 8)), "dim = 0"),
        (single(bs.QuantizedTensor("a", np.zeros((1,) * 7, int), np.ones(1, np.float32), 8)), "7 dimensions"),
        (single(bs.QuantizedTensor("", np.zeros(3, int), np.ones(1, np.float32), 8)), "name is 0 bytes"),
        (single(bs.QuantizedTensor("n" * 256, np.zeros(3, int), np.ones(1, np.float32), 8)), "256 bytes"),
        (single(bs.RawTensor("a", np.zeros(3, np.float64))), "float16 or float32"),
        (single("not a tensor"), "expected QuantizedTensor or RawTensor"),
        (single(bs.RawTensor("a", np.zeros(3, np.float32)), {1: 2}), "JSON keys are str"),
        (single(bs.RawTensor("a", np.zeros(3, np.float32)), {"x": float("inf")}), "non-finite"),
        (single(bs.RawTensor("a", np.zeros(3, np.float32)), {"x": np.int64(3)}), "JSON cannot hold"),
        (single(bs.RawTensor("a", np.zeros(3, np.float32)), [1]), "expected a dict"),
        (bs.Container(INFO, []), "at least one segment"),
        (bs.Container(INFO, [bs.Segment(1, 29, {}, [])]), "starts at frame 1"),
        (bs.Container(INFO, [bs.Segment(0, 20, {}, []), bs.Segment(20, 20, {}, [])]), "ends at frame 40"),
        (bs.Container(INFO, [bs.Segment(0, 30, {}, [bs.RawTensor("a", np.zeros(1, np.float16))] * 2)]), "twice"),
    ],
)
def test_invalid_content_is_refused_on_write(container: bs.Container, message: str) -> None:
    with pytest.raises(bs.HeaderError, match=message):
        bs.write_bytes(container)


# --- describe ---------------------------------------------------------------------------------------


def test_describe(sample) -> None:
    _container, data = sample
    info = bs.describe(data)
    json.dumps(info)
    assert info["format_version"] == 2 and info["file_bytes"] == len(data)
    assert info["video"] == INFO.__dict__
    first = info["segments"][0]
    assert first["model_config"] == CONFIG and (first["first_frame"], first["num_frames"]) == (0, 20)
    stem = first["tensors"][0]
    assert stem["name"] == "stem.0.weight" and stem["shape"] == [32, 80] and stem["bits"] == 8
    assert stem["kind"] == "quantized" and stem["scales"] == 32 and stem["table_bytes"] > 0
    assert stem["coder"] == "table" and 0 < stem["share"] < 1
    assert sum(t["share"] for t in first["tensors"]) < 1  # headers take the rest
    assert [t["kind"] for t in first["tensors"]][-2:] == ["raw_f16", "raw_f32"]
    pruned = first["tensors"][3]
    assert pruned["payload_bytes"] == 0 and pruned["table_bytes"] == 2
    last = info["sections"][-1]
    assert last["offset"] + 8 + last["length"] + 4 == len(data)
    text = bs.format_description(info)
    assert "stem.0.weight" in text and "176x144" in text


def run_fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (its own ``sys.modules``); its stripped stdout, after exit status 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def sample_path(tmp_path: Path, sample) -> Path:
    """The sample container written to a file, for code that runs in another interpreter."""
    path = tmp_path / "clip.cam"
    path.write_bytes(sample[1])
    return path


def test_describe_does_not_import_torch(sample_path: Path) -> None:
    code = (
        "import json, sys, bitstream\n"
        f"d = bitstream.describe(open({str(sample_path)!r}, 'rb').read())\n"
        "json.dumps(d)\n"
        "bitstream.format_description(d)\n"
        "assert 'torch' not in sys.modules and 'compressai' not in sys.modules, sorted(sys.modules)\n"
        "print(d['segments'][0]['tensors'][0]['name'])\n"
    )
    assert run_fresh_python(code) == "stem.0.weight"


@pytest.mark.slow
def test_decoding_symbols_loads_only_compressais_extensions(sample_path: Path) -> None:
    """Reading a whole file needs compressai's rANS extension, not its package (torch, models: seconds)."""
    code = (
        "import sys, bitstream\n"
        f"container = bitstream.read_bytes(open({str(sample_path)!r}, 'rb').read())\n"
        "assert 'torch' not in sys.modules and 'compressai' not in sys.modules, sorted(sys.modules)\n"
        "import compressai\n"  # the full package still imports afterwards, and codes the same bytes
        "symbols, cdf = [1, 2, 3] * 100, [0, 1000, 40000, 65536]\n"
        "coded = [a.RansEncoder().encode_with_indexes(symbols, [0] * 300, [cdf], [4], [0])\n"
        "         for a in (compressai.ans, bitstream.rans._ans())]\n"
        "assert coded[0] == coded[1]\n"
        "print(len(container.segments))\n"
    )
    assert run_fresh_python(code) == str(len(bs.read_bytes(sample_path.read_bytes()).segments))


def test_spec_documents_every_declared_field() -> None:
    spec = (REPO / "docs" / "bitstream.md").read_text(encoding="utf-8")
    records = [layout.PREAMBLE, layout.FILE_HEADER, layout.SEGMENT_HEADER, layout.TENSOR_ENTRY]
    records += [freqtable.TABLE_RANGE, freqtable.TABLE_SHAPE, freqtable.TABLE_STRIDE]
    names = [f.name for record in records for f in record.fields] + [layout.DIMENSION.name]
    missing = [name for name in names if f"`{name}`" not in spec]
    assert not missing, f"docs/bitstream.md does not describe {missing}"
    assert layout.MAGIC.hex(" ").upper() in spec
