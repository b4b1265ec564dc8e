"""The .cam container: round trips, entropy-coding efficiency, atomic writes, describe(). Hostile files:
test_hostile_files.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bitstream as bs
from bitstream import coders, freqtable, layout
from camfile import (
    CONFIG,
    INFO,
    laplacian,
    quantized,
    sample_container,
)

REPO = Path(__file__).resolve().parents[1]


def assert_same(a: bs.Container, b: bs.Container) -> None:
    assert a.info == b.info
    assert len(a.segments) == len(b.segments)
    for sa, sb in zip(a.segments, b.segments, strict=True):
        assert (sa.first_frame, sa.num_frames, sa.model_config) == (sb.first_frame, sb.num_frames, sb.model_config)
        assert [t.name for t in sa.tensors] == [t.name for t in sb.tensors]
        for ta, tb in zip(sa.tensors, sb.tensors, strict=True):
            assert type(ta) is type(tb)
            if isinstance(ta, bs.QuantizedTensor):
                assert (ta.bits, ta.coder) == (tb.bits, tb.coder)
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
    version = bs.describe(data)["format_version"]
    assert bs.write_bytes(sample_container(), version) == data
    assert bs.write_bytes(bs.read_bytes(data), version) == data


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
    version = bs.describe(data)["format_version"]
    target = tmp_path / "clip.cam"
    assert bs.write_file(target, container, version) == len(data)
    assert target.read_bytes() == data
    assert_same(container, bs.read_file(target))
    assert bs.write_file(str(target), container, version) == len(data)  # overwrite, str path
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
        (single(bs.QuantizedTensor("a", np.zeros(3, int), np.ones(1, np.float32), 8, "cabac")), "coder 'cabac'"),
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


def test_each_payload_is_decoded_by_the_coder_its_entry_names(sample_v2, monkeypatch) -> None:
    container, data = sample_v2
    decoded_by = []

    class Recording:
        """The table coder, recording the tensors it decodes."""

        def encode(self, symbols: np.ndarray) -> tuple[bytes, bytes]:
            return bs.RansCoder().encode(symbols)

        def decode(self, table: bytes, payload: bytes, count: int) -> np.ndarray:
            decoded_by.append(count)
            return bs.RansCoder().decode(table, payload, count)

    monkeypatch.setitem(coders.CODERS, layout.CODER_TABLE, Recording())
    read = bs.read_bytes(data)
    quantized_tensors = [t for s in read.segments for t in s.tensors if isinstance(t, bs.QuantizedTensor)]
    assert decoded_by == [t.symbols.size for t in quantized_tensors]
    assert all(t.coder == "table" for t in quantized_tensors)
    assert_same(container, read)


# --- describe ---------------------------------------------------------------------------------------


def test_describe(sample) -> None:
    _container, data = sample
    info = bs.describe(data)
    json.dumps(info)
    assert info["format_version"] in (2, 3) and info["file_bytes"] == len(data)
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


def test_describe_and_the_info_text_do_not_import_torch(sample_path: Path) -> None:
    code = (
        "import json, sys, bitstream\n"
        f"d = bitstream.describe(open({str(sample_path)!r}, 'rb').read())\n"
        "json.dumps(d)\n"
        "from camcodec.cli.info_cmd import format_description, with_roles\n"
        "assert '176x144' in format_description(with_roles(d))\n"
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
    records = [layout.PREAMBLE, layout.FILE_HEADER, layout.SEGMENT_HEADER, layout.TENSOR_ENTRY, layout.TENSOR_ENTRY_V3]
    records += [freqtable.TABLE_RANGE, freqtable.TABLE_SHAPE, freqtable.TABLE_STRIDE]
    names = [f.name for record in records for f in record.fields] + [layout.DIMENSION.name]
    names += [layout.DATA_CRC.name, layout.STREAM_LENGTH.name, layout.SCALE_EXPONENT.name]
    missing = [name for name in names if f"`{name}`" not in spec]
    assert not missing, f"docs/bitstream.md does not describe {missing}"
    assert layout.MAGIC.hex(" ").upper() in spec
