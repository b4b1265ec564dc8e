"""The entropy coder: compressai's rANS behind a two-call interface.

``compressai`` (and with it torch) is imported on first use only, so that parsing a header or
``describe()`` never pays for it. Everything about the table is in :mod:`bitstream.freqtable`.

Facts about ``compressai.ans`` (from its C++ source) that this module relies on:

* A CDF of length ``n + 2`` codes ``n`` symbols in model; the last slot (``n``) is the escape that
  switches to bypass coding. Our alphabets give the escape a frequency of 1 and never use it: every
  symbol is in ``[low, low + size)`` by construction, so every decoded value out of ``[0, size)``
  proves a corrupt payload.
* The encoder writes into a buffer of one 32-bit word per symbol, which overflows for very short
  inputs (an empty input crashes the process), so at least ``MIN_CODED`` symbols are coded: shorter
  tensors are padded with rank 0 and the padding is dropped after decoding.
* Its checks are C ``assert``s (compiled out) and its decoder does not bound-check the payload, so
  :meth:`RansCoder.decode` validates the table, the payload's length and the count first, and hands
  the decoder a zero-padded copy of the payload.
"""

from __future__ import annotations

import numpy as np

from bitstream import freqtable
from bitstream.errors import BitstreamError, HeaderError

#: Largest number of symbols one call codes (the reader's per-tensor element limit).
MAX_COUNT = 2**28
#: Fewest symbols handed to compressai's encoder (see the module docstring).
MIN_CODED = 8
#: Zero bytes appended after a payload for the decoder, beyond 4 per coded symbol.
DECODER_SLACK = 4096
WORD = 4


def _ans():
    from compressai import ans  # noqa: PLC0415 - deliberately lazy: compressai imports torch

    return ans


def _quantized_cdf(freqs: np.ndarray) -> list[int]:
    """The 16-bit CDF (escape slot included) through compressai's own pmf_to_quantized_cdf.

    The frequencies are exact multiples of 2**-16 summing to 1, so compressai's rounding is the
    identity; the result is checked against the integer cumulative sum all the same.
    """
    from compressai._CXX import pmf_to_quantized_cdf  # noqa: PLC0415 - lazy, see _ans

    full = np.append(freqs, 1)
    cdf = pmf_to_quantized_cdf((full / freqtable.TOTAL).tolist(), freqtable.PRECISION)
    expected = np.concatenate([[0], np.cumsum(full)])
    if not np.array_equal(np.asarray(cdf, dtype=np.int64), expected):
        raise BitstreamError("compressai's pmf_to_quantized_cdf changed the frequency table")
    return [int(v) for v in expected]


class RansCoder:
    """rANS with one static, compactly stored frequency table per call (16-bit precision).

    ``encode(symbols) -> (table, payload)`` and ``decode(table, payload, count) -> symbols`` are exact
    inverses. An alphabet of one symbol needs no payload at all (``b""``).
    """

    name = "rans16"

    def encode(self, symbols: np.ndarray) -> tuple[bytes, bytes]:
        values = np.asarray(symbols)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise HeaderError(f"cannot encode: symbols must be a 1-D integer array, got {values.dtype} {values.shape}")
        if not 1 <= values.size <= MAX_COUNT:
            raise HeaderError(f"cannot encode: {values.size} symbols, allowed 1..{MAX_COUNT}")
        values = values.astype(np.int64)
        if values.min() < -(2**31) or values.max() > 2**31 - 1:
            raise HeaderError("cannot encode: symbols exceed int32")
        table = freqtable.build(values)
        table_bytes = table.to_bytes()
        if table.size == 1:
            return table_bytes, b""
        freqs = table.freqs()
        order = freqtable.rank_order(freqs)
        rank_of = np.empty_like(order)
        rank_of[order] = np.arange(table.size)
        ranks = rank_of[values - table.low]
        if len(ranks) < MIN_CODED:
            ranks = np.concatenate([ranks, np.zeros(MIN_CODED - len(ranks), dtype=ranks.dtype)])
        cdf = _quantized_cdf(freqs[order])
        payload = _ans().RansEncoder().encode_with_indexes(ranks.tolist(), [0] * len(ranks), [cdf], [len(cdf)], [0])
        return table_bytes, bytes(payload)

    def decode(self, table: bytes, payload: bytes, count: int) -> np.ndarray:
        if not 1 <= count <= MAX_COUNT:
            raise HeaderError(f"symbol count {count} out of range 1..{MAX_COUNT}")
        parsed = freqtable.parse(bytes(table))
        if parsed.size == 1:
            if payload:
                raise HeaderError(f"a single-symbol table takes no payload, found {len(payload)} bytes")
            return np.full(count, parsed.low, dtype=np.int32)
        coded = max(count, MIN_CODED)
        if len(payload) < 2 * WORD or len(payload) % WORD:
            raise HeaderError(f"rANS payload of {len(payload)} bytes is not a whole number (>= 2) of 32-bit words")
        if len(payload) > WORD * (coded + 2):
            raise HeaderError(f"rANS payload of {len(payload)} bytes is longer than {coded} symbols can produce")
        freqs = parsed.freqs()
        order = freqtable.rank_order(freqs)
        cdf = _quantized_cdf(freqs[order])
        padded = bytes(payload) + bytes(WORD * coded + DECODER_SLACK)
        ranks = np.asarray(
            _ans().RansDecoder().decode_with_indexes(padded, [0] * coded, [cdf], [len(cdf)], [0]), dtype=np.int64
        )
        if ranks.min() < 0 or ranks.max() >= parsed.size or ranks[count:].any():
            raise HeaderError("rANS payload decodes to symbols outside the table's range: corrupt payload")
        return (order[ranks[:count]] + parsed.low).astype(np.int32)
