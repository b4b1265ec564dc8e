"""camcodec: a neural video codec. A CAM-NeRV network overfitted to the video is the compressed file.

>>> import camcodec                                                   # doctest: +SKIP
>>> stats = camcodec.encode("clip.mp4", "clip.cam", preset="fast")    # doctest: +SKIP
>>> frames = camcodec.decode("clip.cam")         # uint8 (T, H, W, 3) # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from camcodec.api import decode, encode
from camcodec.config import EncodeConfig, resolve_config
from camcodec.decoder import Decoder
from camcodec.encoder import Encoder, EncodeResult, EncodeStats
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

__all__ = [
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
