"""camcodec: a neural video codec. A CAM-NeRV network overfitted to the video is the compressed file.

>>> import camcodec                                                   # doctest: +SKIP
>>> stats = camcodec.encode("clip.mp4", "clip.cam", preset="fast")    # doctest: +SKIP
>>> frames = camcodec.decode("clip.cam")         # uint8 (T, H, W, 3) # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

from camcodec.errors import (
    BadMagicError,
    BitstreamError,
    CamcodecError,
    ChecksumError,
    DeviceError,
    HeaderError,
    InputError,
    OutputError,
    TruncatedError,
    UnsupportedVersionError,
)

#: The logger of the lines an encode says before and while it works (its plan, its time estimate): the
#: command shows them unless -q, as x265 shows its [info] lines; a library caller sees them only when it
#: enables INFO logging.
STATUS_LOGGER = "camcodec.status"

__all__ = [
    "STATUS_LOGGER",
    "BadMagicError",
    "BitstreamError",
    "CamcodecError",
    "ChecksumError",
    "Decoder",
    "DeviceError",
    "EncodeConfig",
    "EncodeResult",
    "EncodeStats",
    "Encoder",
    "HeaderError",
    "InputError",
    "OutputError",
    "TruncatedError",
    "UnsupportedVersionError",
    "__version__",
    "decode",
    "encode",
    "resolve_config",
]

# The codec's classes and functions load torch; they are imported on first use, so that the command
# line and ``camcodec.errors`` stay quick (``camcodec info`` reads a header without torch).
_LAZY = {
    "decode": "camcodec.api",
    "encode": "camcodec.api",
    "EncodeConfig": "camcodec.config",
    "resolve_config": "camcodec.config",
    "Decoder": "camcodec.decoder",
    "Encoder": "camcodec.encoder",
    "EncodeResult": "camcodec.encoder",
    "EncodeStats": "camcodec.encoder",
}

if TYPE_CHECKING:
    from camcodec.api import decode, encode
    from camcodec.config import EncodeConfig, resolve_config
    from camcodec.decoder import Decoder
    from camcodec.encoder import Encoder, EncodeResult, EncodeStats


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'camcodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
