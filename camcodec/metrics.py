"""Quality metrics on RGB frames: PSNR and MS-SSIM, shared by training, the encoder summary and eval."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import torch
from pytorch_msssim import ms_ssim

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr_per_frame(reference: np.ndarray, decoded: Iterable[np.ndarray]) -> np.ndarray:
    """Per-frame PSNR (dB) of 8-bit frames: RGB (T, H, W, 3) or planes (T, h, w); identical frames give inf.

    Frame by frame, in integers: the memory it takes is a frame's, not the clip's (a 600-frame 1080p clip in
    float64 would be 30 GB), and the squared error is summed exactly. ``decoded`` may also be any iterable
    of frames, such as a decoder's, so that the decoded clip is never held whole."""
    mse = []
    for ref, dec in itertools.zip_longest(reference, decoded):
        if ref is None or dec is None or ref.shape != dec.shape:
            shapes = (reference.shape, getattr(decoded, "shape", "another number of frames"))
            raise ValueError(f"shapes differ: {shapes[0]} vs {shapes[1]}")
        diff = ref.astype(np.int64) - dec.astype(np.int64)  # a 1080p frame of errors of 255 overflows int32
        mse.append(np.dot(diff.ravel(), diff.ravel()) / diff.size)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / np.array(mse))


def psnr_uint8(reference: np.ndarray, decoded: Iterable[np.ndarray]) -> float:
    """Mean over frames of the per-frame PSNR (dB) of 8-bit RGB frames (T, H, W, 3) (``psnr_per_frame``)."""
    return float(psnr_per_frame(reference, decoded).mean())


def msssim_window(height: int, width: int) -> int:
    """pytorch_msssim needs the short side > (win - 1) * 16; shrink the odd Gaussian window for small frames."""
    win = min(11, (min(height, width) - 1) // 16 + 1)
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"MS-SSIM needs frames of at least 33 pixels a side, got {width}x{height}")
    return win


def msssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size_average: bool = True) -> torch.Tensor:
    """MS-SSIM of (B, 3, H, W) tensors (5 scales, window shrunk for small frames)."""
    win = msssim_window(x.shape[-2], x.shape[-1])
    return ms_ssim(x, y, data_range=data_range, win_size=win, weights=list(MSSSIM_WEIGHTS), size_average=size_average)
