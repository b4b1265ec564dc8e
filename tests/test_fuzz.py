"""Property tests: damaged .cam files decode to exactly the original video or raise a typed BitstreamError.

Valid files (a tiny model, so that a full decode takes milliseconds) are mutated thousands of times:
bytes flipped, inserted, deleted, the file truncated, two files spliced. Every outcome must be the
original frames or a ``bitstream.BitstreamError``: no other exception, no hang (hypothesis deadlines and
an alarm), no large allocation (tracemalloc). Sections forged with a recomputed CRC must never crash
either (they may decode to another video: a CRC detects damage, not forgery).

The run is derandomized and sized for the test suite; ``CAMCODEC_FUZZ_EXAMPLES=20000`` runs a longer,
randomized variant.
"""

from __future__ import annotations

import os
import signal
import struct
import tracemalloc
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstream as bs
import camcodec
from camcodec.media.pattern import moving_pattern
from conftest import tiny_options

pytestmark = pytest.mark.slow  # every test here trains or decodes hundreds of files

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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def assert_original_or_typed_error(data: bytes, *originals: np.ndarray) -> None:
    tracemalloc.start()
    try:
        result = outcome(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
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


@fuzz_settings(2500)
@given(which=st.integers(0, 1), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_file_decodes_to_the_original_or_a_typed_error(originals, which, mutations) -> None:
    data, frames = originals[which]
    for mutation in mutations:
        data = mutate(data, mutation) or data[:1]
    assert_original_or_typed_error(data, frames)


@fuzz_settings(800)
@given(cut_a=st.integers(0, 2**20), cut_b=st.integers(0, 2**20), first=st.integers(0, 1))
def test_splice_of_two_files_is_one_of_them_or_a_typed_error(originals, cut_a, cut_b, first) -> None:
    (a, frames_a), (b, frames_b) = originals[first], originals[1 - first]
    spliced = a[: cut_a % (len(a) + 1)] + b[cut_b % (len(b) + 1) :]
    assert_original_or_typed_error(spliced, frames_a, frames_b)


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


@fuzz_settings(400)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_version_1_file_decodes_to_the_original_or_a_typed_error(golden_v1, mutations) -> None:
    data, frames = golden_v1
    for mutation in mutations:
        data = mutate(data, mutation) or data[:1]
    assert_original_or_typed_error(data, frames)


@fuzz_settings(1200)
@given(which=st.integers(0, 1), section=st.integers(0, 3), mutation=MUTATION)
def test_forged_section_never_crashes(originals, which, section, mutation) -> None:
    """A forged file may decode to another video, but only a typed error may come out of it, quickly
    and in bounded memory, whatever its bytes."""
    data, frames = originals[which]
    forged = forge(data, section, mutation)
    tracemalloc.start()
    try:
        result = outcome(forged)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_ALLOCATION + len(forged)
    if not isinstance(result, bs.BitstreamError):
        assert result.dtype == np.uint8 and result.shape[1:] == frames.shape[1:]


@pytest.fixture(scope="module")
def laplacian_table() -> tuple[bytes, np.ndarray]:
    symbols = np.clip(np.round(np.random.default_rng(0).laplace(0, 9, 3000)), -127, 127).astype(np.int64)
    return bs.RansCoder().encode(symbols)[0], symbols


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
