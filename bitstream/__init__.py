"""camcodec's file format: a versioned, checksummed container of video info, model configs and
entropy-coded quantized tensors. Specified byte by byte in docs/bitstream.md.

Needs only numpy to parse and describe a file; compressai (and torch with it) is imported the first
time a tensor is entropy-coded or decoded.
"""

from bitstream.container import Container, QuantizedTensor, RawTensor, Segment, VideoInfo
from bitstream.errors import (
    BadMagicError,
    BitstreamError,
    CamcodecError,
    ChecksumError,
    HeaderError,
    TruncatedError,
    UnsupportedVersionError,
)
from bitstream.fileformat import (
    check_video_info,
    describe,
    read_bytes,
    read_file,
    read_path,
    write_bytes,
    write_file,
)
from bitstream.layout import FORMAT_VERSION, MAGIC
from bitstream.rans import RansCoder

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "BadMagicError",
    "BitstreamError",
    "CamcodecError",
    "ChecksumError",
    "Container",
    "HeaderError",
    "QuantizedTensor",
    "RansCoder",
    "RawTensor",
    "Segment",
    "TruncatedError",
    "UnsupportedVersionError",
    "VideoInfo",
    "check_video_info",
    "describe",
    "read_bytes",
    "read_file",
    "read_path",
    "write_bytes",
    "write_file",
]
