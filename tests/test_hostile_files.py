"""Hostile .cam files, in one place: the parser (``bitstream``) and the decoder (``camcodec.Decoder``)
against damaged, truncated, foreign and forged files.

* The parser: foreign or empty data, other versions, truncation anywhere, flipped bytes, out-of-range
  and inconsistent header fields, huge claims refused before allocating; every error typed, one line.
* Forged headers (CRC recomputed) that claim huge videos or networks: refused at once, in little memory,
  before anything is built.
* Property tests (marked slow): valid files of a tiny model are mutated thousands of times (bytes
  flipped, inserted, deleted, the file truncated, two files spliced); every outcome is the original
  frames or a ``bitstream.BitstreamError``: no other exception, no hang (hypothesis deadlines and an
  alarm), no large allocation (tracemalloc). Sections forged with a recomputed CRC never crash either
  (they may decode to another video: a CRC detects damage, not forgery). The run is derandomized and
  sized for the suite; ``CAMCODEC_FUZZ_EXAMPLES=20000`` runs a longer, randomized variant.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import time
import tracemalloc
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstream as bs
import camcodec
from bitstream import layout
from camcodec import decoder as decoder_module
from camcodec.media.pattern import moving_pattern
from camfile import (
    INFO,
    laplacian,
    quantized,
    section_payload,
    table_bytes,
    with_config,
    with_config_bytes,
    with_data,
    with_frames,
    with_section,
    with_table,
)
from conftest import tiny_options, torch_threads

ERRORS = [bs.BadMagicError, bs.UnsupportedVersionError, bs.TruncatedError, bs.ChecksumError, bs.HeaderError]
HEAVY = int(os.environ.get("CAMCODEC_FUZZ_EXAMPLES", "0"))
#: Decoding a damaged file may take no longer than this, nor allocate more (Python and numpy memory).
DEADLINE_MS = 3000
MAX_ALLOCATION = 16 << 20
TINY = tiny_options(10)


def fuzz_settings(examples: int):
    return settings(
        max_examples=HEAVY or examples,
        deadline=DEADLINE_MS,
        derandomize=not HEAVY,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: float):
    """Interrupt a decode stuck in Python code (hypothesis' deadline only judges an example afterwards)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise Hang(f"decoding took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run much faster on one thread than on cores busy with other work."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> list[tuple[bytes, np.ndarray]]:
    """Two valid files of the same 2-frame 16x16 clip (different seeds) and the frames they decode to."""
    folder = tmp_path_factory.mktemp("fuzz")
    files = []
    for seed in (0, 1):
        path = folder / f"seed{seed}.cam"
        camcodec.encode(moving_pattern(2, 16, 16, seed=seed), path, seed=seed, **TINY)
        data = path.read_bytes()
        files.append((data, camcodec.decode(data, device="cpu")))
    assert not np.array_equal(files[0][1], files[1][1])
    return files


def outcome(data: bytes) -> np.ndarray | bs.BitstreamError:
    """The frames ``data`` decodes to, or the typed error it raises; anything else propagates."""
    with alarm(DEADLINE_MS / 1000 + 2):
        try:
            decoder = camcodec.Decoder(data, device="cpu")
            return decoder.render(range(len(decoder)))
        except bs.BitstreamError as exc:
            error = exc
    assert error.args and "\n" not in str(error)
    return error


def traced_outcome(data: bytes) -> tuple[np.ndarray | bs.BitstreamError, int]:
    """(``outcome(data)``, the peak of Python and numpy memory allocated while it ran)."""
    tracemalloc.start()
    try:
        result = outcome(data)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_original_or_typed_error(data: bytes, *originals: np.ndarray) -> None:
    result, peak = traced_outcome(data)
    assert peak < MAX_ALLOCATION + len(data), f"decoding allocated {peak} bytes"
    if isinstance(result, bs.BitstreamError):
        return
    assert any(result.shape == o.shape and np.array_equal(result, o) for o in originals), "a different video"


# --- mutations -----------------------------------------------------------------------------------------


def flip(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, mask in changes:
        out[position % len(out)] ^= mask
    return bytes(out)


def insert(data: bytes, position: int, extra: bytes) -> bytes:
    position %= len(data) + 1
    return data[:position] + extra + data[position:]


def delete(data: bytes, position: int, length: int) -> bytes:
    position %= len(data)
    return data[:position] + data[position + length :]


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20)),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    kind, *args = mutation
    if kind == "flip":
        return flip(data, args[0])
    if kind == "insert":
        return insert(data, *args)
    if kind == "delete":
        return delete(data, *args)
    return data[: args[0] % len(data)]


@pytest.mark.slow
@fuzz_settings(2500)
@given(which=st.integers(0, 1), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_file_decodes_to_the_original_or_a_typed_error(originals, which, mutations) -> None:
    data, frames = originals[which]
    for mutation in mutations:
        data = mutate(data, mutation) or data[:1]
    assert_original_or_typed_error(data, frames)


@pytest.mark.slow
@fuzz_settings(800)
@given(cut_a=st.integers(0, 2**20), cut_b=st.integers(0, 2**20), first=st.integers(0, 1))
def test_splice_of_two_files_is_one_of_them_or_a_typed_error(originals, cut_a, cut_b, first) -> None:
    (a, frames_a), (b, frames_b) = originals[first], originals[1 - first]
    spliced = a[: cut_a % (len(a) + 1)] + b[cut_b % (len(b) + 1) :]
    assert_original_or_typed_error(spliced, frames_a, frames_b)


@pytest.mark.slow
def test_splices_at_section_boundaries(originals) -> None:
    """Cuts at every pair of section boundaries: framing and CRCs hold, so only the checks between
    sections (segments tiling the frames, the config against the tensor table, payload lengths and
    the payloads' own rules) stand between the splice and a wrong video."""
    (a, frames_a), (b, frames_b) = originals
    bounds_a = [s["offset"] for s in bs.describe(a)["sections"]] + [len(a)]
    bounds_b = [s["offset"] for s in bs.describe(b)["sections"]] + [len(b)]
    for cut_a in bounds_a:
        for cut_b in bounds_b:
            assert_original_or_typed_error(a[:cut_a] + b[cut_b:], frames_a, frames_b)


@pytest.mark.slow
def test_every_truncation_is_a_typed_error(originals) -> None:
    data, _ = originals[0]
    for length in range(len(data)):
        with pytest.raises((bs.TruncatedError, bs.HeaderError)):
            bs.describe(data[:length])


# --- forged sections: CRC recomputed ---------------------------------------------------------------------


def forge(data: bytes, section: int, mutation: tuple) -> bytes:
    """``mutation`` applied to one section's payload, with the section's length and CRC made right."""
    sections = bs.describe(data)["sections"]
    s = sections[section % len(sections)]
    start = s["offset"] + 8
    payload = mutate(data[start : start + s["length"]] or b"\x00", mutation)
    head = s["tag"].encode() + struct.pack("<I", len(payload))
    crc = struct.pack("<I", zlib.crc32(head + payload))
    return data[: s["offset"]] + head + payload + crc + data[start + s["length"] + 4 :]


@pytest.fixture(scope="module")
def golden_v1() -> tuple[bytes, np.ndarray]:
    """A file of format version 1 (tests/golden) and the frames it decodes to: the older parser's path."""
    data = (Path(__file__).parent / "golden" / "cam-nerv-v1.cam").read_bytes()
    return data, camcodec.decode(data, device="cpu")


@pytest.mark.slow
@fuzz_settings(400)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_version_1_file_decodes_to_the_original_or_a_typed_error(golden_v1, mutations) -> None:
    data, frames = golden_v1
    for mutation in mutations:
        data = mutate(data, mutation) or data[:1]
    assert_original_or_typed_error(data, frames)


@pytest.mark.slow
@fuzz_settings(1200)
@given(which=st.integers(0, 1), section=st.integers(0, 3), mutation=MUTATION)
def test_forged_section_never_crashes(originals, which, section, mutation) -> None:
    """A forged file may decode to another video, but only a typed error may come out of it, quickly
    and in bounded memory, whatever its bytes."""
    data, frames = originals[which]
    forged = forge(data, section, mutation)
    result, peak = traced_outcome(forged)
    assert peak < MAX_ALLOCATION + len(forged)
    if not isinstance(result, bs.BitstreamError):
        assert result.dtype == np.uint8 and result.shape[1:] == frames.shape[1:]


@pytest.fixture(scope="module")
def laplacian_table() -> tuple[bytes, np.ndarray]:
    symbols = np.clip(np.round(np.random.default_rng(0).laplace(0, 9, 3000)), -127, 127).astype(np.int64)
    return bs.RansCoder().encode(symbols)[0], symbols


@pytest.mark.slow
@fuzz_settings(1200)
@given(
    payload=st.one_of(
        st.binary(min_size=0, max_size=512).map(lambda b: b[: len(b) // 4 * 4]),
        st.integers(2, 300).map(lambda n: b"\xff" * (4 * n)),  # the escape slot, again and again
    ),
    count=st.one_of(st.integers(1, 4096), st.just(2**28)),
)
def test_forged_rans_payload_is_refused_or_in_range(laplacian_table, payload, count) -> None:
    """compressai's decoder does not bound-check its input: any payload, for any claimed count (up to
    the format's 2**28), must give in-range symbols or HeaderError, quickly and in bounded memory."""
    table, symbols = laplacian_table
    tracemalloc.start()
    try:
        with alarm(DEADLINE_MS / 1000 + 2):
            out = bs.RansCoder().decode(table, payload, count)
    except bs.HeaderError:
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert out.shape == (count,) and out.min() >= symbols.min() and out.max() <= symbols.max()
    assert peak < MAX_ALLOCATION


# --- hostile headers: refused at once, in little memory -------------------------------------------------


def file_header(data: bytes, **fields: int) -> bytes:
    head = bytearray(section_payload(data, 0))
    offsets = {"width": ("<H", 0), "height": ("<H", 2), "num_frames": ("<I", 4)}
    for name, value in fields.items():
        fmt, offset = offsets[name]
        struct.pack_into(fmt, head, offset, value)
    return with_section(data, 0, bytes(head))


@pytest.mark.parametrize(
    "fields",
    [{"num_frames": 10**9}, {"num_frames": 2**32 - 1}, {"width": 65535, "height": 65535}, {"width": 0}],
    ids=["1e9-frames", "4e9-frames", "65535x65535", "width-0"],
)
def test_header_claims_are_refused_in_little_memory(tiny_cam, fields) -> None:
    forged = file_header(tiny_cam.read_bytes(), **fields)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        for call in (bs.describe, bs.read_bytes, lambda d: camcodec.Decoder(d, device="cpu")):
            with pytest.raises(bs.HeaderError, match="out of range"):
                call(forged)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 and elapsed < 1.0


def test_consistent_claim_of_a_million_frames_allocates_nothing_for_them(tiny_cam) -> None:
    """A file may hold 10**6 frames (the format's limit): opening it costs nothing per frame."""
    forged = with_frames(tiny_cam.read_bytes(), 10**6)
    tracemalloc.start()
    try:
        decoder = camcodec.Decoder(forged, device="cpu")
        last = decoder[10**6 - 1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(decoder) == 10**6 and last.shape == (24, 32, 3)
    assert peak < 20_000_000


def test_huge_network_in_the_config_is_refused_before_building_it(tiny_cam, monkeypatch) -> None:
    data = tiny_cam.read_bytes()
    channels = len(bs.describe(data)["segments"][0]["model_config"]["channels"])
    built = []
    original = decoder_module.build_model

    def recording(config):
        import torch

        built.append(torch.empty(0).device.type)
        return original(config)

    monkeypatch.setattr(decoder_module, "build_model", recording)
    for changes in ({"channels": [4096] * channels}, {"stem_hidden": 8192}, {"num_frames": 10**6}):
        start = time.perf_counter()
        with pytest.raises(bs.HeaderError, match="parameters|frames"):
            camcodec.Decoder(with_config(data, **changes), device="cpu")
        assert time.perf_counter() - start < 1.0
    assert "cpu" not in built  # only shape-only (meta) models were made


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": "wide"}, "is not a int"),
        ({"channels": [True, True]}, "list of int"),
        ({"render_group": 0}, "invalid render_group"),
        ({"colour": "red"}, "unknown keys"),
        ({"arch": "nerv"}, "unknown architecture .nerv."),
    ],
)
def test_malformed_model_config_is_a_header_error(tiny_cam, changes, message) -> None:
    with pytest.raises(bs.HeaderError, match=message):
        camcodec.Decoder(with_config(tiny_cam.read_bytes(), **changes), device="cpu")


def test_errors_name_the_file(tiny_cam, tmp_path) -> None:
    bad = tmp_path / "bad.cam"
    bad.write_bytes(tiny_cam.read_bytes()[:-1])
    with pytest.raises(bs.TruncatedError, match=re.escape(str(bad))):
        camcodec.Decoder(bad, device="cpu")


# --- the parser (bitstream) against hostile bytes -----------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("version", [0, 4, 256, 65535])
def test_other_versions_are_refused(sample, version: int) -> None:
    _, data = sample
    bumped = data[:8] + struct.pack("<H", version) + data[10:]
    with pytest.raises(bs.UnsupportedVersionError, match=f"version {version}"):
        bs.describe(bumped)


def test_a_version_2_file_read_as_version_1_is_a_typed_error(sample_v2) -> None:
    _, data = sample_v2
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
def test_bad_tensor_entry(sample_v2, changes: dict, message: str) -> None:
    _, data = sample_v2
    with pytest.raises(bs.HeaderError, match=message):
        bs.read_bytes(rewrite_first_entry(data, **changes))


def test_tensor_table_consistency(sample_v2) -> None:
    _, data = sample_v2
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


def test_huge_claims_are_refused_before_allocating(sample_v2) -> None:
    _, data = sample_v2
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


def test_messages_are_one_line(sample_v2) -> None:
    _, data = sample_v2
    for bad in [data[:100], data + b"x", b"nope", rewrite_first_entry(data, bits=4)]:
        with pytest.raises(bs.BitstreamError) as info:
            bs.read_bytes(bad)
        assert "\n" not in str(info.value) and str(info.value)


# --- version 3: the segment's stream, its length, the table's CRC of it, steps as exponents -----------------


def test_version_3_data_from_elsewhere_is_refused(sample_v3) -> None:
    _, data = sample_v3
    payload = bytes(section_payload(data, 3))
    with pytest.raises(bs.HeaderError, match="not the data its tensor table was written with"):
        bs.read_bytes(with_section(data, 3, payload[:-1] + bytes([payload[-1] ^ 1])))  # framing CRC recomputed


@pytest.mark.parametrize(
    ("forge_stream", "message"),
    [
        (lambda stream, raw: layout.STREAM_LENGTH.pack(len(stream) + 1, "t") + stream + raw, "bytes after its stream"),
        (lambda stream, raw: layout.STREAM_LENGTH.pack(len(stream) - 4, "t") + stream + raw, "bytes after its stream"),
        (lambda stream, raw: layout.STREAM_LENGTH.pack(len(stream) + len(raw) + 1, "t") + stream + raw, "stream"),
        (lambda stream, raw: layout.STREAM_LENGTH.pack(len(stream) - 4, "t") + stream[:-4] + raw, "rANS"),
        (lambda stream, raw: layout.STREAM_LENGTH.pack(8, "t") + b"\xff" * 8 + raw, "rANS"),
        (lambda stream, raw: layout.STREAM_LENGTH.pack(0, "t") + raw, "rANS"),
    ],
)
def test_forged_version_3_stream_is_a_header_error(sample_v3, forge_stream, message: str) -> None:
    _, data = sample_v3
    reader = bs.records.ByteReader(bytes(section_payload(data, 3)))
    length = layout.STREAM_LENGTH.unpack(reader)
    stream = reader.take(length, "stream")
    raw = reader.take(reader.remaining, "raw values")
    with pytest.raises(bs.HeaderError, match=message):
        bs.read_bytes(with_data(data, forge_stream(stream, raw)))


@pytest.mark.parametrize(("exponent", "message"), [(-3201, "exponent = -3201"), (3201, "exponent = 3201")])
def test_scale_exponents_out_of_range_are_refused(exponent: int, message: str) -> None:
    step = np.float32(2.0**-5)  # on the grid: written as the exponent -160
    tensor = bs.QuantizedTensor("w", np.arange(-3, 5, dtype=np.int32), np.array([step]), 4)
    data = bs.write_bytes(bs.Container(INFO, [bs.Segment(0, 30, {}, [tensor])]), version=3)
    table = table_bytes(data)
    written = layout.SCALE_EXPONENT.pack(-160, "t")
    assert table.count(written) == 1
    forged = bytes(table).replace(written, _svarint(exponent))
    with pytest.raises(bs.HeaderError, match=message):
        bs.read_bytes(with_table(data, forged))
    assert np.array_equal(bs.read_bytes(data).segments[0].tensors[0].scales, [step])


def _svarint(value: int) -> bytes:
    return bs.records.encode_varint(bs.records.zigzag(value))


@pytest.mark.slow
@fuzz_settings(600)
@given(payload=st.binary(min_size=0, max_size=512).map(lambda b: b[: len(b) // 4 * 4]), count=st.integers(1, 4096))
def test_forged_stream_of_several_tables_is_refused_or_in_range(laplacian_table, payload, count) -> None:
    """Version 3's stream: several tables in one payload, any bytes, give in-range symbols or HeaderError."""
    table, symbols = laplacian_table
    narrow = bs.rans.build_table(np.array([-1, 0, 0, 1, 2]))
    tables = [bs.freqtable.parse(table), narrow, bs.freqtable.parse(table)]
    try:
        with alarm(DEADLINE_MS / 1000 + 2):
            out = bs.rans.decode_stream(tables, payload, [count, 5, 3])
    except bs.HeaderError:
        return
    assert [len(o) for o in out] == [count, 5, 3]
    assert out[1].min() >= -1 and out[1].max() <= 2 and out[0].min() >= symbols.min() and out[2].max() <= symbols.max()
