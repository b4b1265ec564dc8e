"""The one metric path of the harness: every decoded video is scored here against the same reference frames.

* ``psnr_rgb``: mean over frames of the per-frame PSNR of the 8-bit RGB frames (the NeRV-family
  convention); it is ``camcodec.metrics.psnr_uint8``, applied a few frames at a time to bound memory.
* ``psnr_yuv``: per frame ``(6 PSNR_Y + PSNR_U + PSNR_V) / 8`` on 8-bit 4:2:0 planes, mean over frames.
  The planes are the videos' own where they have them: a YUV 4:2:0 source read at its own size, a
  conventional codec's decoded stream. Planes a video lacks (RGB sources, resized sequences, camcodec's
  RGB output) are made from its RGB frames by ``camcodec.media.convert.from_rgb``, the conversion the
  conventional codecs are given, in the matrix and range of the reference's planes (BT.709 limited range
  when the reference has none of its own).
* ``ms_ssim``: ``camcodec.metrics.msssim`` (pytorch_msssim, 5 scales, window shrunk for small frames)
  per frame, mean over frames.

The RGB arguments are uint8 arrays of shape (T, H, W, 3) with the same shape; planes are ``Planes``, three
uint8 stacks (T, H, W), (T, h, w), (T, h, w). Identical frames give an infinite PSNR (as ``psnr_uint8``
does); ``measure`` returns the three numbers at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from camcodec.errors import InputError
from camcodec.media import SourceFrame
from camcodec.media.convert import ColorInfo, from_rgb, plane_array
from camcodec.metrics import msssim, psnr_per_frame, psnr_uint8
from eval.codecs import RGB_SOURCE_COLOR

#: Frames converted or compared at once; bounds memory on 1080p sequences.
CHUNK_FRAMES = 8

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Quality:
    """The three distortion numbers of one decoded video against its reference."""

    psnr_rgb: float
    psnr_yuv: float
    ms_ssim: float


def _check_pair(reference: np.ndarray, decoded: np.ndarray) -> None:
    for name, array in (("reference", reference), ("decoded", decoded)):
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or len(array) == 0:
            raise InputError(f"{name} frames must be uint8 (T>=1, H, W, 3), got {array.dtype} {array.shape}")
    if reference.shape != decoded.shape:
        raise InputError(f"reference and decoded frames differ in shape: {reference.shape} vs {decoded.shape}")


def _check_planes(reference: Planes, decoded: Planes) -> None:
    shapes = [plane.shape for plane in reference], [plane.shape for plane in decoded]
    if shapes[0] != shapes[1] or any(plane.dtype != np.uint8 for plane in (*reference, *decoded)):
        raise InputError(f"reference and decoded planes differ: {shapes[0]} vs {shapes[1]} (uint8 needed)")


def _chunked_mean(
    reference: np.ndarray, decoded: np.ndarray, per_chunk: Callable[[np.ndarray, np.ndarray], float]
) -> float:
    """Mean over frames of a per-frame score, from ``per_chunk`` (which returns the mean over its chunk)."""
    total = 0.0
    for start in range(0, len(reference), CHUNK_FRAMES):
        ref, dec = reference[start : start + CHUNK_FRAMES], decoded[start : start + CHUNK_FRAMES]
        total += per_chunk(ref, dec) * len(ref)
    return total / len(reference)


def psnr_rgb(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over frames of the per-frame RGB PSNR in dB (``camcodec.metrics.psnr_uint8``)."""
    _check_pair(reference, decoded)
    return _chunked_mean(reference, decoded, psnr_uint8)


def yuv420_planes(frames: np.ndarray, color: ColorInfo = RGB_SOURCE_COLOR) -> Planes:
    """uint8 RGB (T, H, W, 3) -> 8-bit 4:2:0 planes in ``color``'s matrix and range, by ``from_rgb``."""
    converted = [from_rgb(frame, "yuv420p", color.matrix, color.full_range) for frame in frames]
    return _stack([(plane_array(f, 0), plane_array(f, 1), plane_array(f, 2)) for f in converted])


def _stack(planes: Sequence[Planes]) -> Planes:
    return np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes]), np.stack([p[2] for p in planes])


def planes_of(frames: Sequence[SourceFrame], color: ColorInfo) -> Planes:
    """The frames' own 4:2:0 planes, or planes made from their RGB in ``color`` when they have none."""
    own = [frame.yuv420 for frame in frames if frame.yuv420 is not None]
    if len(own) == len(frames):
        return _stack(own)
    return yuv420_planes(np.stack([frame.rgb for frame in frames]), color)


def _psnr_yuv_planes(reference: Planes, decoded: Planes) -> float:
    _check_planes(reference, decoded)
    y, u, v = (psnr_per_frame(ref, dec) for ref, dec in zip(reference, decoded, strict=True))
    return float(((6.0 * y + u + v) / 8.0).mean())


def psnr_yuv(
    reference: np.ndarray, decoded: np.ndarray, reference_yuv: Planes | None = None, decoded_yuv: Planes | None = None
) -> float:
    """Mean over frames of the per-frame PSNR-YUV (6:1:1 weights, 8-bit 4:2:0 planes), in dB; planes not
    given are made from the RGB frames (BT.709, limited range)."""
    _check_pair(reference, decoded)
    reference_yuv = reference_yuv if reference_yuv is not None else yuv420_planes(reference)
    decoded_yuv = decoded_yuv if decoded_yuv is not None else yuv420_planes(decoded)
    return _psnr_yuv_planes(reference_yuv, decoded_yuv)


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


@torch.inference_mode()
def _msssim_chunk(reference: np.ndarray, decoded: np.ndarray) -> float:
    per_frame = msssim(_to_tensor(reference), _to_tensor(decoded), data_range=1.0, size_average=False)
    return float(per_frame.double().mean())


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over frames of the per-frame MS-SSIM (``camcodec.metrics.msssim``); frames need 33+ pixels a side."""
    _check_pair(reference, decoded)
    try:
        return _chunked_mean(reference, decoded, _msssim_chunk)
    except ValueError as exc:  # frames too small for five scales
        raise InputError(str(exc)) from None


def measure(
    reference: np.ndarray, decoded: np.ndarray, reference_yuv: Planes | None = None, decoded_yuv: Planes | None = None
) -> Quality:
    """RGB PSNR, PSNR-YUV and MS-SSIM of ``decoded`` against ``reference`` (planes as in ``psnr_yuv``)."""
    return Quality(
        psnr_rgb(reference, decoded),
        psnr_yuv(reference, decoded, reference_yuv, decoded_yuv),
        ms_ssim(reference, decoded),
    )


class QualityMeter:
    """The three scores of a video given a few frames at a time (``add``), for videos too long to hold
    whole; ``result`` is what ``measure`` gives for the whole video, computed the same way."""

    def __init__(self) -> None:
        self.frames = 0
        self._sums = [0.0, 0.0, 0.0]

    def add(self, reference: Sequence[SourceFrame], decoded: Sequence[SourceFrame]) -> None:
        """Score a chunk of frames; PSNR-YUV on each side's own planes, or planes made in the reference's
        colour (``planes_of``)."""
        reference_rgb, decoded_rgb = np.stack([f.rgb for f in reference]), np.stack([f.rgb for f in decoded])
        _check_pair(reference_rgb, decoded_rgb)
        color = reference[0].color if reference[0].yuv420 is not None else RGB_SOURCE_COLOR
        try:
            scores = (
                psnr_uint8(reference_rgb, decoded_rgb),
                _psnr_yuv_planes(planes_of(reference, color), planes_of(decoded, color)),
                _msssim_chunk(reference_rgb, decoded_rgb),
            )
        except ValueError as exc:  # frames too small for MS-SSIM's five scales
            raise InputError(str(exc)) from None
        for index, score in enumerate(scores):
            self._sums[index] += score * len(reference)
        self.frames += len(reference)

    def result(self) -> Quality:
        if not self.frames:
            raise InputError("no frames were measured")
        return Quality(*(total / self.frames for total in self._sums))


def msssim_db(value: float) -> float:
    """MS-SSIM on a decibel scale, ``-10 log10(1 - value)``: the axis BD-rate interpolates MS-SSIM on."""
    with np.errstate(divide="ignore"):
        return float(-10.0 * np.log10(max(1.0 - value, 0.0)))
