"""The one metric path of the harness: every decoded video is scored here against the same reference frames.

* ``psnr_rgb``: mean over frames of the per-frame PSNR of the 8-bit RGB frames (the NeRV-family
  convention); it is ``camcodec.metrics.psnr_uint8``, applied a few frames at a time to bound memory.
* ``psnr_yuv``: both videos converted to 8-bit YUV 4:2:0 with BT.709 (limited range, chroma averaged over
  2 x 2 blocks, values rounded), then per frame ``(6 PSNR_Y + PSNR_U + PSNR_V) / 8``, mean over frames.
* ``ms_ssim``: ``camcodec.metrics.msssim`` (pytorch_msssim, 5 scales, window shrunk for small frames)
  per frame, mean over frames.

All three take uint8 arrays of shape (T, H, W, 3) with the same shape. Identical frames give an infinite
PSNR (as ``psnr_uint8`` does); ``measure`` returns the three numbers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from camcodec.errors import InputError
from camcodec.metrics import msssim, psnr_uint8

#: BT.709 luma coefficients (Kr, Kb); Kg = 1 - Kr - Kb.
BT709 = (0.2126, 0.0722)
#: Frames converted or compared at once; bounds memory on 1080p sequences.
CHUNK_FRAMES = 8


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


def rgb_to_yuv420(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB (T, H, W, 3) -> 8-bit BT.709 limited-range planes Y (T, H, W), U and V (T, ceil(H/2), ceil(W/2)).

    Chroma is computed at full resolution and averaged over 2 x 2 blocks (an odd last row or column is
    repeated); all planes are rounded to the nearest integer and clipped to 0..255.
    """
    kr, kb = BT709
    rgb = frames.astype(np.float64) / 255.0
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = kr * red + (1.0 - kr - kb) * green + kb * blue
    cb = (blue - luma) / (2.0 * (1.0 - kb))
    cr = (red - luma) / (2.0 * (1.0 - kr))

    def half(plane: np.ndarray) -> np.ndarray:
        height, width = plane.shape[1:]
        padded = np.pad(plane, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
        return 0.25 * (padded[:, 0::2, 0::2] + padded[:, 1::2, 0::2] + padded[:, 0::2, 1::2] + padded[:, 1::2, 1::2])

    def to_uint8(plane: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(plane), 0, 255).astype(np.uint8)

    return to_uint8(16.0 + 219.0 * luma), to_uint8(128.0 + 224.0 * half(cb)), to_uint8(128.0 + 224.0 * half(cr))


def _plane_psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB) of two stacks of 8-bit planes (T, h, w)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = (diff * diff).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / mse)


def _psnr_yuv_chunk(reference: np.ndarray, decoded: np.ndarray) -> float:
    y_ref, u_ref, v_ref = rgb_to_yuv420(reference)
    y_dec, u_dec, v_dec = rgb_to_yuv420(decoded)
    per_frame = (6.0 * _plane_psnr(y_ref, y_dec) + _plane_psnr(u_ref, u_dec) + _plane_psnr(v_ref, v_dec)) / 8.0
    return float(per_frame.mean())


def psnr_yuv(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR-YUV (6:1:1 weights, 8-bit BT.709 4:2:0 planes), in dB."""
    _check_pair(reference, decoded)
    return _chunked_mean(reference, decoded, _psnr_yuv_chunk)


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


def measure(reference: np.ndarray, decoded: np.ndarray) -> Quality:
    """RGB PSNR, PSNR-YUV and MS-SSIM of ``decoded`` against ``reference``."""
    return Quality(psnr_rgb(reference, decoded), psnr_yuv(reference, decoded), ms_ssim(reference, decoded))


class QualityMeter:
    """The three scores of a video given a few frames at a time (``add``), for videos too long to hold
    whole; ``result`` is what ``measure`` gives for the whole video, computed the same way."""

    def __init__(self) -> None:
        self.frames = 0
        self._sums = [0.0, 0.0, 0.0]

    def add(self, reference: np.ndarray, decoded: np.ndarray) -> None:
        _check_pair(reference, decoded)
        count = len(reference)
        try:
            scores = (
                psnr_uint8(reference, decoded),
                _psnr_yuv_chunk(reference, decoded),
                _msssim_chunk(reference, decoded),
            )
        except ValueError as exc:  # frames too small for MS-SSIM's five scales
            raise InputError(str(exc)) from None
        for index, score in enumerate(scores):
            self._sums[index] += score * count
        self.frames += count

    def result(self) -> Quality:
        if not self.frames:
            raise InputError("no frames were measured")
        return Quality(*(total / self.frames for total in self._sums))


def msssim_db(value: float) -> float:
    """MS-SSIM on a decibel scale, ``-10 log10(1 - value)``: the axis BD-rate interpolates MS-SSIM on."""
    with np.errstate(divide="ignore"):
        return float(-10.0 * np.log10(max(1.0 - value, 0.0)))
