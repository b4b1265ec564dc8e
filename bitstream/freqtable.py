"""Compact frequency tables for the rANS coder: pure numpy, no compressai, no torch.

A table describes the distribution of one tensor's symbols with a few bytes (docs/bitstream.md,
"Frequency table"). Only the range ``[low, low + size)`` of symbols actually present is covered. The
shape of the distribution is a piecewise-linear curve in a logarithmic "level" domain, given by a level
at a few knots; the encoder picks the knot spacing and level precision that minimize table bytes plus
the expected payload bytes. Both sides then rebuild the very same 16-bit integer frequencies from the
stored bytes with integer arithmetic only, so the decoder's CDF is bit-identical to the encoder's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitstream.errors import HeaderError
from bitstream.records import ByteReader, Field, Record

PRECISION = 16
TOTAL = 1 << PRECISION
#: Largest alphabet: every symbol and the coder's escape slot need a frequency of at least 1.
MAX_SIZE = TOTAL - 1
MAX_MANTISSA_BITS = 3
#: Level width ``w`` may not exceed ``mantissa_bits + MAX_EXTRA_LEVEL_BITS`` (weights stay below 2**35).
MAX_EXTRA_LEVEL_BITS = 5

TABLE_RANGE = Record(
    "frequency table",
    [
        Field("low", "Z", -(2**31), 2**31 - 1, "smallest symbol present"),
        Field("size_minus_1", "V", 0, MAX_SIZE - 1, "number of symbols in [low, high], minus 1"),
    ],
)
TABLE_SHAPE = Record(
    "frequency table",
    [
        Field("shape", "B", 0, 0x3F, "bits 0-3: level width w (0 = uniform); bits 4-5: mantissa bits m"),
    ],
)
TABLE_STRIDE = Record(
    "frequency table",
    [Field("stride", "V", 1, MAX_SIZE, "distance between regular knots")],
)


@dataclass(frozen=True)
class FrequencyTable:
    """A parsed table: the alphabet ``[low, low + size)`` and its integer frequencies.

    ``freqs[i]`` is the frequency of symbol ``low + i`` out of ``2**16``; the coder's escape slot has
    frequency 1 and is not listed. ``order`` lists symbol indices by decreasing frequency (ties: lower
    index first): the coder works on ranks in that order, so its linear CDF search stops early.
    """

    low: int
    size: int
    level_bits: int = 0
    mantissa_bits: int = 0
    stride: int = 0
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def freqs(self) -> np.ndarray:
        if self.size == 1:
            return np.array([TOTAL - 1], dtype=np.int64)
        if self.level_bits == 0:
            weights = np.ones(self.size, dtype=np.int64)
        else:
            positions = knot_positions(self.size, anchor(self.low, self.size), self.stride)
            curve = interpolate(positions, self.levels, self.size)
            weights = level_weights(curve, self.mantissa_bits)
        return normalize(weights)

    def to_bytes(self) -> bytes:
        where = "frequency table"
        out = [TABLE_RANGE.pack({"low": self.low, "size_minus_1": self.size - 1}, where)]
        if self.size > 1:
            shape = self.level_bits | (self.mantissa_bits << 4)
            out.append(TABLE_SHAPE.pack({"shape": shape}, where))
            if self.level_bits:
                out.append(TABLE_STRIDE.pack({"stride": self.stride}, where))
                out.append(pack_bits(self.levels, self.level_bits))
        return b"".join(out)


def rank_order(freqs: np.ndarray) -> np.ndarray:
    """Symbol indices by decreasing frequency, ties by lower index: rank r codes symbol ``order[r]``."""
    return np.argsort(-freqs, kind="stable")


def anchor(low: int, size: int) -> int:
    """Index of symbol 0 in the alphabet, clamped into it: the centre of the knot grid."""
    return min(max(-low, 0), size - 1)


def knot_positions(size: int, centre: int, stride: int) -> np.ndarray:
    """Sorted, distinct knot indices: ``centre + j * stride`` within the alphabet, both ends, and
    ``centre - 1``, ``centre + 1`` (so the level of symbol 0, often a spike of pruned weights, is free)."""
    grid = np.concatenate([np.arange(centre, -1, -stride), np.arange(centre, size, stride)])
    extra = np.array([0, size - 1, centre - 1, centre + 1])
    extra = extra[(extra >= 0) & (extra < size)]
    return np.unique(np.concatenate([grid, extra]).astype(np.int64))


def interpolate(positions: np.ndarray, levels: np.ndarray, size: int) -> np.ndarray:
    """Level of every symbol: linear between neighbouring knots, rounded half up, integers only."""
    index = np.arange(size, dtype=np.int64)
    seg = np.clip(np.searchsorted(positions, index, side="right") - 1, 0, len(positions) - 2)
    a, b = positions[seg], positions[seg + 1]
    va, vb = levels[seg].astype(np.int64), levels[seg + 1].astype(np.int64)
    return va + (2 * (vb - va) * (index - a) + (b - a)) // (2 * (b - a))


def level_weights(levels: np.ndarray, mantissa_bits: int) -> np.ndarray:
    """Level -> integer weight: 0 for level 0, else a tiny float with ``mantissa_bits`` of mantissa,
    ``(2**m + (v-1) mod 2**m) << ((v-1) >> m)``, so each level is ``2**(1/2**m)`` times the previous."""
    v = levels.astype(np.int64)
    u = np.maximum(v - 1, 0)
    mantissa = (1 << mantissa_bits) + (u & ((1 << mantissa_bits) - 1))
    return np.where(v > 0, mantissa << (u >> mantissa_bits), 0)


def normalize(weights: np.ndarray) -> np.ndarray:
    """Integer weights -> frequencies, each >= 1, summing to ``2**16 - 1`` (the escape slot takes 1).

    Each symbol gets 1 plus its floor share of the ``2**16 - 1 - size`` spare counts; the counts left
    over go, one each, to the largest remainders (ties: lower index first). All-zero weights count as
    all-equal.
    """
    weights = weights.astype(np.int64)
    size = len(weights)
    spare = TOTAL - 1 - size
    total = int(weights.sum())
    if total == 0:
        weights = np.ones(size, dtype=np.int64)
        total = size
    scaled = weights * spare
    freqs = 1 + scaled // total
    left = spare - int(freqs.sum() - size)
    if left:
        winners = np.argsort(-(scaled % total), kind="stable")[:left]
        freqs[winners] += 1
    return freqs


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """``width`` bits per value, least significant bit first, values in order; zero padding to a byte."""
    values = np.asarray(values, dtype=np.int64)
    bits = ((values[:, None] >> np.arange(width)) & 1).astype(np.uint8).ravel()
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_bits(data: bytes, count: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits[count * width :].any():
        raise HeaderError("frequency table: padding bits after the levels are not zero")
    return (bits[: count * width].reshape(count, width).astype(np.int64) << np.arange(width)).sum(axis=1)


def parse(table: bytes) -> FrequencyTable:
    """Parse and validate a table; every malformation is a HeaderError."""
    reader = ByteReader(table, where="frequency table")
    head = TABLE_RANGE.unpack(reader)
    low, size = head["low"], head["size_minus_1"] + 1
    if low + size - 1 > 2**31 - 1:
        raise HeaderError(f"frequency table: symbols {low}..{low + size - 1} exceed int32")
    if size == 1:
        result = FrequencyTable(low, size)
    else:
        shape = TABLE_SHAPE.unpack(reader)["shape"]
        width, mantissa = shape & 0x0F, shape >> 4
        if width > mantissa + MAX_EXTRA_LEVEL_BITS:
            raise HeaderError(
                f"frequency table: level width {width} exceeds {mantissa + MAX_EXTRA_LEVEL_BITS}"
                f" for {mantissa} mantissa bits"
            )
        if width == 0:
            result = FrequencyTable(low, size, 0, mantissa)
        else:
            stride = TABLE_STRIDE.unpack(reader)["stride"]
            count = len(knot_positions(size, anchor(low, size), stride))
            packed = reader.take((count * width + 7) // 8, "levels")
            result = FrequencyTable(low, size, width, mantissa, stride, unpack_bits(packed, count, width))
    if reader.remaining:
        raise HeaderError(f"frequency table: {reader.remaining} unexpected bytes after the levels")
    return result


# --- encoder side: choose the cheapest table for a histogram ---------------------------------------


def _payload_bits(counts: np.ndarray, freqs: np.ndarray) -> float:
    used = counts > 0
    return float(-(counts[used] * np.log2(freqs[used] / TOTAL)).sum())


def _knot_targets(counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Mean count over each knot's Voronoi cell (the symbols nearer to it than to its neighbours)."""
    cum = np.concatenate([[0], np.cumsum(counts)])
    right = np.concatenate([(positions[:-1] + positions[1:]) // 2, [len(counts) - 1]])
    left = np.concatenate([[-1], right[:-1]])
    return (cum[right + 1] - cum[left + 1]) / (right - left)


#: Knot spacings the encoder tries, skipping those that give more than ``size // MAX_SEARCH_KNOTS`` knots.
_STRIDES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
MAX_SEARCH_KNOTS = 1024
#: Above this alphabet size (only 13- to 16-bit tensors get there) the search is cut down to stay fast.
LARGE_ALPHABET = 4096
MAX_SEARCH_KNOTS_LARGE = 64


def build(symbols: np.ndarray) -> FrequencyTable:
    """The table minimizing (table bits + estimated payload bits) for these symbols (int64, 1-D).

    The search is the encoder's business (any table parses): it tries every knot spacing in
    ``_STRIDES``, every mantissa width and every level width, and keeps the cheapest. Knot levels
    come from the mean count around each knot, the largest mapped to the top level.
    """
    low = int(symbols.min())
    size = int(symbols.max()) - low + 1
    if size > MAX_SIZE:
        raise HeaderError(f"cannot code symbols spanning {size} values (at most {MAX_SIZE})")
    if size == 1:
        return FrequencyTable(low, 1)
    counts = np.bincount(symbols - low, minlength=size)
    used = counts > 0
    used_counts = counts[used].astype(np.float64)
    header_bits = 8 * len(FrequencyTable(low, size, 0, 0).to_bytes())
    best = FrequencyTable(low, size, 0, 0)
    best_cost = header_bits + _payload_bits(counts, best.freqs())
    spare = TOTAL - 1 - size
    centre = anchor(low, size)
    index = np.arange(size)
    large = size > LARGE_ALPHABET
    max_knots = MAX_SEARCH_KNOTS_LARGE if large else MAX_SEARCH_KNOTS
    mantissas = (0, 2) if large else tuple(range(MAX_MANTISSA_BITS + 1))
    strides = [s for s in _STRIDES if s < size - 1 and size // s <= max_knots] + [size - 1]
    for stride in strides:
        positions = knot_positions(size, centre, stride)
        seg = np.clip(np.searchsorted(positions, index, side="right") - 1, 0, len(positions) - 2)
        offset, span = index - positions[seg], positions[seg + 1] - positions[seg]
        targets = _knot_targets(counts, positions)
        present = targets > 0
        log_targets = np.log2(np.where(present, targets, 1.0))
        stride_bits = header_bits + 8 * len(TABLE_STRIDE.pack({"stride": stride}, "encoder"))
        for mantissa in mantissas:
            scaled = log_targets * (1 << mantissa)
            scaled = scaled - scaled[present].max()
            widths = np.arange(1, mantissa + MAX_EXTRA_LEVEL_BITS + 1)
            tops = ((1 << widths) - 1)[:, None]
            levels = np.where(present, np.clip(np.rint(scaled + tops), 1, tops), 0).astype(np.int64)
            va, vb = levels[:, seg], levels[:, seg + 1]
            curve = va + (2 * (vb - va) * offset + span) // (2 * span)
            weights = level_weights(curve, mantissa)
            shares = weights[:, used] * (spare / weights.sum(axis=1, keepdims=True))
            payload_bits = -(np.log2((1.0 + shares) / TOTAL) * used_counts).sum(axis=1)
            costs = stride_bits + 8 * ((len(positions) * widths + 7) // 8) + payload_bits
            pick = int(np.argmin(costs))
            if costs[pick] < best_cost:
                best_cost = float(costs[pick])
                best = FrequencyTable(low, size, int(widths[pick]), mantissa, stride, levels[pick])
    return best
