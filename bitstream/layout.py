"""The declared layout of a .cam file, versions 1 and 2: magic, section tags, header records and limits.

docs/bitstream.md describes the same layout in prose; this module is the one the code uses.
"""

from __future__ import annotations

import struct

from bitstream.records import Field, Record

MAGIC = b"\x8aCAM\r\n\x1a\n"
FORMAT_VERSION = 2  # the version written
READABLE_VERSIONS = (1, 2)

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
#: Version 2: the tensor table's bytes once inflated (real files hold a few KiB).
MAX_TABLE_SECTION_BYTES = 2**24
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
    [Field("format_version", "H", 0, 2**16 - 1, "format version; this reader knows 1 and 2")],
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

CODER_TABLE = 0
CODER_NAMES = {CODER_TABLE: "table"}  # version 2: how a quantized tensor's symbols are entropy-coded
DEFAULT_CODER = CODER_NAMES[CODER_TABLE]  # the coder of every tensor that names none (all of versions 1 and 2)

_NAME = Field("name", "U", 1, MAX_NAME_BYTES, "tensor name, unique within the segment")
_KIND = Field("kind", "B", 0, 2, "0 quantized, 1 raw float16, 2 raw float32")
_CODER = Field("coder", "B", 0, max(CODER_NAMES), "quantized: 0 = rANS with a static frequency table; raw: 0")
TENSOR_ENTRY_V1 = Record(
    "tensor entry",
    [
        _NAME,
        _KIND,
        Field("bits", "B", 0, MAX_BITS, "quantized: 2..16; raw: 0"),
        Field("ndim", "B", 1, MAX_NDIM, "number of dimensions"),
        Field("count", "V", 1, MAX_ELEMENTS, "number of elements, the product of the dimensions"),
        Field("scale_count", "V", 0, MAX_ELEMENTS, "quantized: 1 or dims[0]; raw: 0"),
        Field("table_length", "V", 0, MAX_TABLE_BYTES, "bytes of the coder's frequency table; raw: 0"),
        Field("payload_length", "V", 0, MAX_PAYLOAD_BYTES, "bytes of this tensor in the DATA section"),
    ],
)
TENSOR_ENTRY = Record("tensor entry", [_NAME, _KIND, _CODER, *TENSOR_ENTRY_V1.fields[2:]])  # version 2
TENSOR_ENTRIES = {1: TENSOR_ENTRY_V1, 2: TENSOR_ENTRY}

#: Version 2 deflates (raw deflate, RFC 1951) the model config and the tensor table, with this preset
#: dictionary (the strings every cam-nerv2 file repeats). Part of the format: fixed for version 2.
INFLATED_LENGTH = Field("inflated_length", "V", 0, MAX_TABLE_SECTION_BYTES, "bytes once inflated")
DEFLATE_DICTIONARY = (
    b'{"arch":"cam-nerv2","cam":true,"cam_points":32,"channels":[,"grid_times":[],"head_kernel":3,"height":'
    b',"kernels":[3,3,3,3],"num_frames":,"pe_base":1.25,"pe_levels":40,"render_group":8,"stem":"mlp",'
    b'"stem_hidden":,"strides":[4,2,2,2],"upsample":"shuffle","width":'
    b"stem.layers.0.weightstem.layers.0.biasstem.layers.2.weightstem.layers.2.bias"
    + b"".join(
        b"blocks.%d.gamma_deltablocks.%d.betablocks.%d.conv.weightblocks.%d.conv.bias" % (i, i, i, i) for i in range(6)
    )
    + b"head.weighthead.bias"
)
DIMENSION = Field("dim", "V", 1, MAX_ELEMENTS, "one dimension of the shape, outermost first")
SCALE = struct.Struct("<f")
