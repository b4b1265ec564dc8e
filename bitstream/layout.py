"""The declared layout of a .cam file, version 1: magic, section tags, header records and limits.

docs/bitstream.md describes the same layout in prose; this module is the one the code uses.
"""

from __future__ import annotations

import struct

from bitstream.records import Field, Record

MAGIC = b"\x8aCAM\r\n\x1a\n"
FORMAT_VERSION = 1

MAX_DIMENSION = 16384
MAX_FRAMES = 1_000_000
MAX_FPS_TERM = 2**31 - 1
MAX_TEXT = 32
MAX_NAME_BYTES = 255
MAX_NDIM = 6
#: Elements per tensor, and in all tensors of a file together: bounds what reading may allocate.
MAX_ELEMENTS = 2**28
MAX_TENSORS = 65535
MAX_CONFIG_BYTES = 2**20
MAX_TABLE_BYTES = 2**17
MAX_PAYLOAD_BYTES = 2**32 - 1
MAX_SECTION_BYTES = 2**32 - 1

#: Section framing: tag (4 ASCII bytes) and payload length (u32) before the payload, CRC32 after it.
SECTION_HEAD = struct.Struct("<4sI")
SECTION_CRC = struct.Struct("<I")
TAG_FILE = b"HEAD"
TAG_SEGMENT = b"SEGH"
TAG_TENSORS = b"TTAB"
TAG_DATA = b"DATA"

PREAMBLE = Record(
    "preamble",
    [Field("format_version", "H", 0, 2**16 - 1, "format version; this reader knows 1 only")],
)

FILE_HEADER = Record(
    "file header",
    [
        Field("width", "H", 1, MAX_DIMENSION, "frame width in pixels"),
        Field("height", "H", 1, MAX_DIMENSION, "frame height in pixels"),
        Field("num_frames", "I", 1, MAX_FRAMES, "number of frames in the video"),
        Field("fps_num", "I", 1, MAX_FPS_TERM, "frame rate numerator"),
        Field("fps_den", "I", 1, MAX_FPS_TERM, "frame rate denominator"),
        Field("pix_fmt", "A", 1, MAX_TEXT, "source pixel format, ffmpeg name"),
        Field("color_matrix", "A", 1, MAX_TEXT, "source colour matrix"),
        Field("segment_count", "I", 1, MAX_FRAMES, "number of segments that follow"),
    ],
)

SEGMENT_HEADER = Record(
    "segment header",
    [
        Field("first_frame", "I", 0, MAX_FRAMES - 1, "first frame of the segment"),
        Field("num_frames", "I", 1, MAX_FRAMES, "frames in the segment"),
        Field("tensor_count", "H", 0, MAX_TENSORS, "entries in the segment's tensor table"),
    ],
)

KIND_QUANTIZED = 0
KIND_RAW_F16 = 1
KIND_RAW_F32 = 2
KIND_NAMES = {KIND_QUANTIZED: "quantized", KIND_RAW_F16: "raw_f16", KIND_RAW_F32: "raw_f32"}
RAW_DTYPES = {KIND_RAW_F16: "<f2", KIND_RAW_F32: "<f4"}
MIN_BITS = 2
MAX_BITS = 16

TENSOR_ENTRY = Record(
    "tensor entry",
    [
        Field("name", "U", 1, MAX_NAME_BYTES, "tensor name, unique within the segment"),
        Field("kind", "B", 0, 2, "0 quantized, 1 raw float16, 2 raw float32"),
        Field("bits", "B", 0, MAX_BITS, "quantized: 2..16; raw: 0"),
        Field("ndim", "B", 1, MAX_NDIM, "number of dimensions"),
        Field("count", "V", 1, MAX_ELEMENTS, "number of elements, the product of the dimensions"),
        Field("scale_count", "V", 0, MAX_ELEMENTS, "quantized: 1 or dims[0]; raw: 0"),
        Field("table_length", "V", 0, MAX_TABLE_BYTES, "bytes of the coder's frequency table; raw: 0"),
        Field("payload_length", "V", 0, MAX_PAYLOAD_BYTES, "bytes of this tensor in the DATA section"),
    ],
)
DIMENSION = Field("dim", "V", 1, MAX_ELEMENTS, "one dimension of the shape, outermost first")
SCALE = struct.Struct("<f")
