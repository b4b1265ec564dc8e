"""Pixel conversions between decoded frames and uint8 RGB arrays, all through swscale.

The colour rule (one rule, used by every reader and, in reverse, by the writer):

* The matrix tagged on the stream wins: BT.709, BT.601 (BT.470BG / SMPTE 170M), BT.2020,
  SMPTE 240M and FCC are honoured.
* An untagged stream of a *compressed* codec (H.264, HEVC, VP9, ...) is converted with BT.601,
  which is FFmpeg's default. This makes ``read_video`` equal ``frame.to_ndarray(format="rgb24")`` and
  ``ffmpeg -i in.mp4 out%d.png``; it is what the NeRV-family papers' frames were made with (checked:
  ``bigbuckbunny.mp4`` decodes pixel-identical to the plain rgb24 decode).
* An untagged *raw* source (raw ``.yuv``/``.i420``, Y4M, rawvideo in any container) is converted with
  BT.709, the evaluation convention for raw 4:2:0 test sequences such as UVG.
* Range: limited ("tv", 16-235) unless the stream says full range (tag or a ``yuvj*`` format).
* RGB, gray and palette sources get no matrix; ``Clip.color_matrix`` is then ``"rgb"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import av
import numpy as np
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Colorspace, Interpolation

log = logging.getLogger(__name__)

#: Matrix names accepted by the writer and reported by the reader, with swscale's constant
#: and the AVColorSpace tag written into encoded streams.
MATRICES: dict[str, tuple[Colorspace, int]] = {
    "bt709": (Colorspace.ITU709, 1),  # AVCOL_SPC_BT709
    "bt601": (Colorspace.ITU601, 6),  # AVCOL_SPC_SMPTE170M
    "bt2020": (Colorspace.BT2020, 9),  # AVCOL_SPC_BT2020_NCL
    "smpte240m": (Colorspace.SMPTE240M, 7),
    "fcc": (Colorspace.FCC, 4),
}

#: swscale's threads for every conversion: one, so that a conversion is the same on any machine (its
#: automatic threads split a picture in slices by the number of cores).
SWS_THREADS = 1

#: The matrix of untagged raw video (raw I420, Y4M, rawvideo): what the reader assumes for it and so what
#: the writer writes it in, whatever the source's matrix was, so that a pipe ``decode -o - | encode -``
#: keeps the colours (BT.709, the convention of raw 4:2:0 test sequences such as UVG).
UNTAGGED_RAW_MATRIX = "bt709"

# AVColorSpace tag -> matrix name (tags not listed here count as untagged).
_TAG_TO_MATRIX = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
#: FFmpeg's AVColorRange values: limited ("tv", MPEG) and full ("pc", JPEG) range.
AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG = 1, 2


@dataclass(frozen=True)
class ColorInfo:
    """How a source's pixels map to RGB: the matrix name (or ``"rgb"``) and the range."""

    matrix: str
    full_range: bool


def is_yuv(pix_fmt: str) -> bool:
    """True for formats with chroma planes that need a YUV->RGB matrix."""
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or fmt.is_bayer or fmt.has_palette or fmt.name.startswith("xyz"):
        return False
    # luma + two chroma components (gray and gray+alpha have fewer)
    return sum(1 for c in fmt.components if not c.is_alpha) >= 3


def color_of_frame(frame: VideoFrame, untagged_matrix: str) -> ColorInfo:
    """Apply the colour rule to one decoded frame; ``untagged_matrix`` is the default for its source kind."""
    pix_fmt = frame.format.name
    if not is_yuv(pix_fmt):
        return ColorInfo("rgb", True)
    tag = int(frame.colorspace)
    matrix = _TAG_TO_MATRIX.get(tag)
    if matrix is None:
        if tag not in (0, 2):  # neither RGB-tagged nor unspecified: a matrix swscale lacks (e.g. YCgCo)
            log.warning("colour matrix tag %d not supported; converting with %s", tag, untagged_matrix)
        matrix = untagged_matrix
    full = pix_fmt.startswith("yuvj") or int(frame.color_range) == AVCOL_RANGE_JPEG
    return ColorInfo(matrix, full)


def interpolation_for(src: tuple[int, int], dst: tuple[int, int]) -> Interpolation | None:
    """swscale flags: the default (bilinear chroma) at the same size, area to shrink, bicubic to grow.

    The same-size default matters: other flags change chroma upsampling and so the RGB values.
    """
    if src == dst:
        return None
    if dst[0] <= src[0] and dst[1] <= src[1]:
        return Interpolation.AREA
    return Interpolation.BICUBIC


def to_rgb_frame(frame: VideoFrame, color: ColorInfo, width: int, height: int) -> VideoFrame:
    """Convert (and resize) one frame to rgb24 with the given colour interpretation."""
    interp = interpolation_for((frame.width, frame.height), (width, height))
    if color.matrix == "rgb":
        return frame.reformat(width=width, height=height, format="rgb24", interpolation=interp, threads=SWS_THREADS)
    return frame.reformat(
        width=width,
        height=height,
        format="rgb24",
        src_colorspace=MATRICES[color.matrix][0],
        src_color_range=ColorRange.JPEG if color.full_range else ColorRange.MPEG,
        interpolation=interp,
        threads=SWS_THREADS,
    )


# RGB -> YUV: chroma computed at full resolution then area-averaged (a 2x2 box for 4:2:0), with accurate
# rounding. Measured against swscale's default (point-sampled chroma): +0.6 dB RGB PSNR after a 4:2:0
# round trip on the test pattern, +1.2 to +2.3 dB on carphone and bunny frames.
_TO_YUV_FLAGS = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP


def from_rgb(rgb: np.ndarray, pix_fmt: str, matrix: str, full_range: bool = False) -> VideoFrame:
    """One uint8 (H, W, 3) RGB array, or uint16 in 0..65535, -> a frame in ``pix_fmt`` (YUV formats in
    limited range unless ``full_range``)."""
    source = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=source)
    if pix_fmt == source:
        return frame
    if not is_yuv(pix_fmt):
        return frame.reformat(format=pix_fmt, threads=SWS_THREADS)
    return frame.reformat(
        format=pix_fmt,
        dst_colorspace=MATRICES[matrix][0],
        dst_color_range=ColorRange.JPEG if full_range else ColorRange.MPEG,
        interpolation=_TO_YUV_FLAGS,
        threads=SWS_THREADS,
    )


def plane_array(frame: VideoFrame, index: int, row_items: int | None = None, dtype: type = np.uint8) -> np.ndarray:
    """A 2-D view of one plane's useful samples (line padding left out); writable for frames we allocated.

    ``row_items`` is the number of samples in a row: the plane width for planar formats (the default),
    ``3 * width`` for rgb24.
    """
    plane = frame.planes[index]
    itemsize = np.dtype(dtype).itemsize
    cols = plane.width if row_items is None else row_items
    stride = plane.line_size
    offset = 0 if stride >= 0 else (plane.height - 1) * -stride
    return np.ndarray(
        (plane.height, cols), dtype=dtype, buffer=memoryview(plane), offset=offset, strides=(stride, itemsize)
    )


def frame_from_planes(planes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> VideoFrame:
    """Build a planar frame from per-plane 2-D arrays (each exactly the plane's useful size)."""
    frame = VideoFrame(width, height, pix_fmt)
    for i, data in enumerate(planes):
        plane_array(frame, i, dtype=data.dtype.type)[...] = data
    return frame
