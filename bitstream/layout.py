"""The declared layout of a .cam file, versions 1 to 3: magic, section tags, header records and limits.

docs/bitstream.md describes the same layout in prose; this module is the one the code uses.
"""

from __future__ import annotations

import struct

import numpy as np

from bitstream.records import Field, Record

MAGIC = b"\x8aCAM\r\n\x1a\n"
FORMAT_VERSION = 3  # the version written unless another is asked for
READABLE_VERSIONS = (1, 2, 3)
WRITABLE_VERSIONS = (2, 3)

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
    [Field("format_version", "H", 0, 2**16 - 1, "format version; this reader knows 1, 2 and 3")],
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
# how a quantized tensor's symbols are entropy-coded (versions 2 and 3; version 3 codes them in the segment's stream)
CODER_NAMES = {CODER_TABLE: "table"}
DEFAULT_CODER = CODER_NAMES[CODER_TABLE]  # the coder of every tensor that names none (all of versions 1 to 3)

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

#: Version 3: the names come first (``tensor_count`` of them, ``_NAME`` each), then an entry per tensor; the
#: element count follows from the shape, and a quantized tensor's symbols lie in the segment's one rANS stream.
SCALES_F32, SCALES_EXPONENT = 0, 1
TENSOR_ENTRY_V3 = Record(
    "tensor entry",
    [
        _KIND,
        _CODER,
        TENSOR_ENTRY.by_name["bits"],
        TENSOR_ENTRY.by_name["ndim"],
        TENSOR_ENTRY.by_name["scale_count"],
        Field("scale_code", "B", 0, 1, "0: each scale an f32; 1: each scale 2^(exponent / 32), a svarint exponent"),
        TENSOR_ENTRY.by_name["table_length"],
    ],
)
#: Version 3's scales on the grid of 2^(1/32) (the steps camcodec learns): ``2^(e / 32)`` is
#: ``GRID_MANTISSAS[e mod 32] x 2^floor(e / 32)``, the float32 mantissas below, exact on every machine.
GRID_STEPS_PER_OCTAVE = 32
MAX_SCALE_EXPONENT = GRID_STEPS_PER_OCTAVE * 100  # 2^-100 .. 2^100: normal float32 numbers
SCALE_EXPONENT = Field("exponent", "Z", -MAX_SCALE_EXPONENT, MAX_SCALE_EXPONENT, "scale = 2^(exponent / 32)")
GRID_MANTISSAS = np.array(
    [
        0x3F800000, 0x3F82CD87, 0x3F85AAC3, 0x3F88980F, 0x3F8B95C2, 0x3F8EA43A, 0x3F91C3D3, 0x3F94F4F0,
        0x3F9837F0, 0x3F9B8D3A, 0x3F9EF532, 0x3FA27043, 0x3FA5FED7, 0x3FA9A15B, 0x3FAD583F, 0x3FB123F6,
        0x3FB504F3, 0x3FB8FBAF, 0x3FBD08A4, 0x3FC12C4D, 0x3FC5672A, 0x3FC9B9BE, 0x3FCE248C, 0x3FD2A81E,
        0x3FD744FD, 0x3FDBFBB8, 0x3FE0CCDF, 0x3FE5B907, 0x3FEAC0C7, 0x3FEFE4BA, 0x3FF5257D, 0x3FFA83B3,
    ],
    dtype="<u4",
).view("<f4")  # fmt: skip
#: Version 3's tensor table starts with the CRC-32 of its segment's DATA section (the one in the DATA section's
#: framing): it ties the table to its data, as version 2's payload lengths did, so a DATA section from another
#: file or segment is refused instead of decoding to another video.
DATA_CRC = Field("data_crc32", "I", 0, 2**32 - 1, "the CRC-32 stored in the framing of the segment's DATA section")
#: Version 3's DATA: the length of the segment's rANS stream, the stream, then the raw tensors' values.
STREAM_LENGTH = Field("stream_length", "V", 0, MAX_PAYLOAD_BYTES, "bytes of the segment's rANS stream")

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
_V3_NAMES = (
    [b"stem.layers.0.weight", b"stem.layers.0.bias", b"stem.layers.2.weight", b"stem.layers.2.bias"]
    + [
        b"blocks.%d.%s" % (i, part)
        for i in range(4)
        for part in (b"gamma_delta", b"beta", b"conv.weight", b"conv.bias")
    ]
    + [b"warps.2.grid", b"head.weight", b"head.bias"]
)
#: Version 3's preset dictionary: the config's keys with the default flow level's, and the default network's
#: tensor names as its names block writes them (a length byte before each), in the order it writes them.
DEFLATE_DICTIONARY_V3 = (
    b'{"arch":"cam-nerv2","cam":true,"cam_points":,"channels":[,"grid_times":[],"head_kernel":3,"height":'
    b',"kernels":[3,3,3,3],"num_frames":,"pe_base":1.25,"pe_levels":40,"render_group":8,"stem":"mlp",'
    b'"stem_hidden":,"strides":[4,2,2,2],"upsample":"shuffle","warp_blocks":[2],"warp_down":[16],'
    b'"warp_scale":4.0,"warp_times":[8],"width":' + b"".join(bytes([len(name)]) + name for name in _V3_NAMES)
)
DEFLATE_DICTIONARIES = {2: DEFLATE_DICTIONARY, 3: DEFLATE_DICTIONARY_V3}
DIMENSION = Field("dim", "V", 1, MAX_ELEMENTS, "one dimension of the shape, outermost first")
SCALE = struct.Struct("<f")
