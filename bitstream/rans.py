"""The entropy coder: compressai's rANS behind a two-call interface (``encode_stream`` / ``decode_stream``).

Version 3 codes all quantized tensors of a segment in one stream, each symbol with the CDF of its tensor's
table (compressai's indexed CDFs); versions 1 and 2 code each tensor alone (``RansCoder``, a stream of one
table). Everything below holds per stream, with a symbol's information taken under its own table.

Only compressai's compiled ``ans`` extension module is loaded, on first use (``_extension``): importing
the ``compressai`` package would import torch, torchvision, scipy and all of its models (~5 s), the
largest part of a short decode. Everything about the table is in :mod:`bitstream.freqtable`.

Facts about ``compressai.ans`` (from its C++ source) that this module relies on:

* A CDF of length ``n + 2`` codes ``n`` symbols in model; the last slot (``n``) is the escape that
  switches to bypass coding. Our alphabets give the escape a frequency of 1 and never use it: every
  symbol is in ``[low, low + size)`` by construction, so every decoded value out of ``[0, size)``
  proves a corrupt payload.
* The encoder writes into a buffer of one 32-bit word per symbol, which overflows for very short
  inputs (an empty input crashes the process), so at least ``MIN_CODED`` symbols are coded: shorter
  tensors are padded with rank 0 and the padding is dropped after decoding.
* Its checks are C ``assert``s (compiled out) and its decoder does not bound-check the payload, so
  :meth:`RansCoder.decode` validates the table, the payload's length, its first state and the count
  first, and proves (below) that the decoder stays inside the buffer it is given.

Bounding what the decoder reads (compressai 1.2, ``rans_interface.cpp`` and ``rans64.h``):

* The in-model path reads at most one 32-bit word per symbol (``Rans64DecAdvance`` renormalizes once).
  Only the escape path (the symbol in the CDF's last slot) reads more: a chain of 4-bit bypass
  counts, each continuation longer than the last, that a forged payload can stretch far beyond any
  padding. The decoder is therefore given a CDF with one more, unreachable entry
  (``[..., 65535, 65536, 65537]``, ``cdf_length = size + 3``): the escape slot keeps its frequency of
  1 at the same place, so valid payloads decode exactly as before, but compressai's ``max_value``
  (``cdf_length - 2``) is now the unreachable slot, so the bypass path never runs. Decoding the old
  escape slot yields rank ``size``, which is refused.
* A valid payload starts with the encoder's final state, which is at least ``RANS64_L = 2**31``; a
  smaller one is refused. From a state ``x >= 2**31`` one decoding step leaves ``x >= 2**15`` and
  one renormalization multiplies it by at least ``2**32``, so the state never falls below ``2**31``.
  Each step consumes at most ``info + SLACK`` bits of state, where ``info = log2(2**16 / freq)`` is
  the symbol's information, and each word read adds at least 32: after ``n`` symbols of total
  information ``I`` the decoder has read at most ``(33 + I + n * SLACK) / 32`` words beyond the first
  two. Conversely a valid payload of ``W`` words holds at most
  ``budget = (32 + SLACK) * (W - 2) + 33 + n * SLACK`` bits of information.
* Symbols are decoded in chunks (``set_stream`` / ``decode_stream``); after each chunk the information
  decoded so far is checked against ``budget``. A payload that runs over it is refused, and until then
  the decoder cannot read more than ``padding_words()`` words past the payload: that many zero words
  follow it in the buffer. This also bounds the work a forged payload causes: a symbol of rank ``r``
  costs ``r + 1`` comparisons in compressai's linear CDF search but carries at least ``log2(r + 1)``
  bits, so the search work is at most ``count + 4096 * (budget + 16 * CHUNK)``, proportional to the
  payload. The output grows with the symbols decoded, so a forged count costs no memory either.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import math
import os
import sys
import warnings
from types import ModuleType

import numpy as np

from bitstream import freqtable
from bitstream.errors import HeaderError

#: Largest number of symbols one call codes (the reader's per-tensor element limit).
MAX_COUNT = 2**28
#: Fewest symbols handed to compressai's encoder (see the module docstring).
MIN_CODED = 8
WORD = 4
#: The rANS state after the encoder's flush, hence the decoder's first state, is at least this.
RANS64_L = 2**31
#: Upper bound on the bits of state one decoding step consumes, or one word read adds, beyond the
#: symbol's information (resp. 32): -log2(1 - 2**-15) = 4.4029e-5, rounded up.
SLACK = 4.5e-5
#: Symbols decoded per call between two checks of the information budget.
CHUNK = 1 << 14


@functools.cache
def _extension(name: str) -> ModuleType:
    """``compressai.<name>``, a compiled extension module, loaded from its file without the package.

    Loading registers the module in ``sys.modules``; it is taken out again, so that a later
    ``import compressai`` runs the package's own import and binds ``compressai.<name>`` (the extension's
    types are shared between the two). Falls back to the normal import where the file is not found.
    """
    full_name = f"compressai.{name}"
    if full_name in sys.modules:
        return sys.modules[full_name]
    package = importlib.util.find_spec("compressai")  # locates the package without running its __init__
    for folder in (package.submodule_search_locations or []) if package else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, name + suffix)
            if os.path.isfile(path):
                spec = importlib.util.spec_from_file_location(full_name, path)
                if spec is None or spec.loader is None:
                    continue
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules.pop(full_name, None)
                return module
    with warnings.catch_warnings():
        # compressai's import uses torch.jit.script, which torch >= 2.9 deprecates with a two-line
        # FutureWarning on stderr: noise for the user of a command whose errors are one line.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script", category=FutureWarning)
        return importlib.import_module(full_name)


def _ans() -> ModuleType:
    return _extension("ans")


def _cdf(freqs: np.ndarray) -> list[int]:
    """The 16-bit CDF of the ranked frequencies with the escape slot (frequency 1) appended: their integer
    cumulative sum, which the format defines (docs/bitstream.md, "CDF")."""
    return [0, *np.cumsum(np.append(freqs, 1)).tolist()]


class RansCoder:
    """rANS with one static, compactly stored frequency table per call (16-bit precision): the coder of a
    version 1 or 2 entry, one payload per tensor.

    ``encode(symbols) -> (table, payload)`` and ``decode(table, payload, count) -> symbols`` are exact
    inverses. An alphabet of one symbol needs no payload at all (``b""``).
    """

    name = "rans16"

    def encode(self, symbols: np.ndarray) -> tuple[bytes, bytes]:
        table = build_table(symbols)
        return table.to_bytes(), encode_stream([table], [symbols])

    def decode(self, table: bytes, payload: bytes, count: int) -> np.ndarray:
        (symbols,) = decode_stream([freqtable.parse(bytes(table))], payload, [count])
        return symbols


def build_table(symbols: np.ndarray) -> freqtable.FrequencyTable:
    """The frequency table of one tensor's symbols (a 1-D integer array), checked for what the coder takes."""
    values = np.asarray(symbols)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise HeaderError(f"cannot encode: symbols must be a 1-D integer array, got {values.dtype} {values.shape}")
    if not 1 <= values.size <= MAX_COUNT:
        raise HeaderError(f"cannot encode: {values.size} symbols, allowed 1..{MAX_COUNT}")
    values = values.astype(np.int64)
    if values.min() < -(2**31) or values.max() > 2**31 - 1:
        raise HeaderError("cannot encode: symbols exceed int32")
    return freqtable.build(values)


class _Model:
    """One table as the coder uses it: the symbol of each rank, the CDF over ranks, each rank's bits."""

    def __init__(self, table: freqtable.FrequencyTable):
        freqs = table.freqs()
        self.low, self.size = table.low, table.size
        self.order = freqtable.rank_order(freqs)
        self.cdf = _cdf(freqs[self.order])
        # the escape slot's frequency is 1 (rank `size`): its information too, for the budget
        self.info = np.log2(freqtable.TOTAL / np.append(freqs[self.order], 1))

    def ranks(self, symbols: np.ndarray) -> np.ndarray:
        rank_of = np.empty_like(self.order)
        rank_of[self.order] = np.arange(self.size)
        return rank_of[np.asarray(symbols, dtype=np.int64) - self.low]


def information_bits(table: freqtable.FrequencyTable, symbols: np.ndarray) -> float:
    """What ``symbols`` cost coded with ``table``: the sum of ``log2(2^16 / frequency)`` (0 for a single-symbol
    table, which takes no bits)."""
    if table.size == 1:
        return 0.0
    model = _Model(table)
    return float(model.info[model.ranks(np.asarray(symbols).reshape(-1))].sum())


def encode_stream(tables: list[freqtable.FrequencyTable], arrays: list[np.ndarray]) -> bytes:
    """One rANS payload for several tensors' symbols, each with its own table, in order. Tensors whose
    table has a single symbol take no part (they need no bits); with none left the payload is empty."""
    models, ranks = [], []
    for table, symbols in zip(tables, arrays, strict=True):
        if table.size > 1:
            models.append(_Model(table))
            ranks.append(models[-1].ranks(np.asarray(symbols).reshape(-1)))
    if not models:
        return b""
    indexes = np.repeat(np.arange(len(models)), [len(r) for r in ranks])
    coded = np.concatenate(ranks)
    if len(coded) < MIN_CODED:  # padded with the last table's rank 0, dropped again by the decoder
        coded = np.concatenate([coded, np.zeros(MIN_CODED - len(coded), dtype=coded.dtype)])
        indexes = np.concatenate([indexes, np.full(MIN_CODED - len(indexes), len(models) - 1)])
    cdfs = [m.cdf for m in models]
    encoder = _ans().RansEncoder()
    return bytes(
        encoder.encode_with_indexes(coded.tolist(), indexes.tolist(), cdfs, [len(c) for c in cdfs], [0] * len(cdfs))
    )


def decode_stream(tables: list[freqtable.FrequencyTable], payload: bytes, counts: list[int]) -> list[np.ndarray]:
    """The symbols ``encode_stream`` coded into ``payload``: ``counts[i]`` of them for ``tables[i]``.

    Checks the payload before and while decoding (module docstring); every malformation is a HeaderError.
    """
    if len(tables) != len(counts):
        raise HeaderError(f"{len(counts)} symbol counts for {len(tables)} tables")
    for count in counts:
        if not 1 <= count <= MAX_COUNT:
            raise HeaderError(f"symbol count {count} out of range 1..{MAX_COUNT}")
    coded_tensors = [i for i, table in enumerate(tables) if table.size > 1]
    if not coded_tensors:
        if payload:
            raise HeaderError(f"single-symbol tables take no payload, found {len(payload)} bytes")
        return [np.full(count, table.low, dtype=np.int32) for table, count in zip(tables, counts, strict=True)]
    models = [_Model(tables[i]) for i in coded_tensors]
    bounds = np.cumsum([counts[i] for i in coded_tensors])
    total = int(bounds[-1])
    if total > MAX_COUNT:
        raise HeaderError(f"{total} symbols in one payload, at most {MAX_COUNT}")
    coded = max(total, MIN_CODED)
    if len(payload) < 2 * WORD or len(payload) % WORD:
        raise HeaderError(f"rANS payload of {len(payload)} bytes is not a whole number (>= 2) of 32-bit words")
    if len(payload) > WORD * (coded + 2):
        raise HeaderError(f"rANS payload of {len(payload)} bytes is longer than {coded} symbols can produce")
    if int.from_bytes(payload[: 2 * WORD], "little") < RANS64_L:
        raise HeaderError("rANS payload starts with a state below 2**31, which no encoder writes: corrupt payload")
    words = len(payload) // WORD
    # The encoder's CDFs plus one unreachable entry each: compressai's escape (bypass) path never runs.
    cdfs = [m.cdf + [freqtable.TOTAL + 1] for m in models]
    lengths, offsets = [len(c) for c in cdfs], [0] * len(cdfs)
    sizes = np.array([m.size for m in models])
    info_start = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]])
    info = np.concatenate([m.info for m in models])
    budget = (32 + SLACK) * (words - 2) + 33 + coded * SLACK + 1.0
    padded = bytes(payload) + bytes(WORD * padding_words(words, coded))
    decoder = _ans().RansDecoder()
    decoder.set_stream(padded)
    # Grown as symbols are decoded (not allocated for the claimed counts): memory follows the payload.
    ranks = np.empty(min(coded, 4 * CHUNK), dtype=np.int32)
    spent = 0.0
    for start in range(0, coded, CHUNK):
        size = min(CHUNK, coded - start)
        # the table of each position; the padding past `total` is the last table's
        which = np.minimum(np.searchsorted(bounds, np.arange(start, start + size), side="right"), len(models) - 1)
        chunk = np.asarray(decoder.decode_stream(which.tolist(), cdfs, lengths, offsets), dtype=np.int64)
        if chunk.min() < 0 or (chunk >= sizes[which]).any():
            raise HeaderError("rANS payload decodes to symbols outside the table's range: corrupt payload")
        spent += float(info[info_start[which] + chunk].sum())
        if spent > budget:
            raise HeaderError(
                f"rANS payload of {len(payload)} bytes is too short for the symbols it decodes to: corrupt payload"
            )
        if start + size > len(ranks):
            grown = np.empty(min(coded, 2 * len(ranks)), dtype=np.int32)
            grown[:start] = ranks[:start]
            ranks = grown
        ranks[start : start + size] = chunk
    if ranks[total:coded].any():
        raise HeaderError("rANS payload decodes to non-zero padding: corrupt payload")
    symbols = [np.full(count, table.low, dtype=np.int32) for table, count in zip(tables, counts, strict=True)]
    begin = 0
    for model, i in zip(models, coded_tensors, strict=True):
        end = begin + counts[i]
        symbols[i] = (model.order[ranks[begin:end]] + model.low).astype(np.int32)
        begin = end
    return symbols


def padding_words(words: int, coded: int) -> int:
    """Zero words after a payload of ``words`` words that cover every read of the decoder (module docstring).

    Until the information check stops it, the decoder reads at most
    ``(33 + budget + 16 * CHUNK + coded * SLACK) / 32`` words past the first two, and never more than
    one per symbol; the difference to the payload's ``words - 2`` is what may lie beyond it.
    """
    beyond = (66 + SLACK * (words - 2) + 2 * coded * SLACK + 16 * CHUNK + 1.0) / 32
    return min(coded + 2, math.ceil(beyond) + 2)
