"""The symbol coders a quantized tensor's entry can name, by the id in its ``coder`` field.

The writer codes each tensor with the coder its ``QuantizedTensor.coder`` names and stores that coder's id in
the entry; the reader decodes each payload with the coder the entry names, never with a default. Versions 1
and 2 know one coder (docs/bitstream.md, "Frequency table" and "Payload").
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from bitstream import layout as L
from bitstream.errors import HeaderError
from bitstream.rans import RansCoder


class SymbolCoder(Protocol):
    """Codes one tensor's integer symbols: ``decode(*encode(symbols), len(symbols))`` gives them back."""

    def encode(self, symbols: np.ndarray) -> tuple[bytes, bytes]:
        """(table, payload): what the decoder needs besides the count."""
        ...

    def decode(self, table: bytes, payload: bytes, count: int) -> np.ndarray: ...


#: By the id an entry's ``coder`` field holds; ``layout.CODER_NAMES`` names the same ids.
CODERS: dict[int, SymbolCoder] = {L.CODER_TABLE: RansCoder()}


_IDS = {name: coder for coder, name in L.CODER_NAMES.items()}


def coder_id(name: str, where: str) -> int:
    """The id of the coder called ``name`` (``layout.CODER_NAMES``); HeaderError for a name the format lacks."""
    if name not in _IDS:
        raise HeaderError(f"{where}: coder {name!r} is not one of the format's ({', '.join(sorted(_IDS))})")
    return _IDS[name]
