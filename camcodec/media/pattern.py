"""A generated test video (as FFmpeg's ``testsrc``): for tests, and for the benchmark without a clip."""

from __future__ import annotations

import numpy as np


def moving_pattern(num_frames: int = 8, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Drifting colour waves and a sliding red square, uint8 (T, H, W, 3); ``seed`` sets the waves' phases.

    Its features scale with the frame (the 64-pixel side is the unit), so every size shows the same motion.
    """
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=3)
    scale = max(width, height) / 64.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = max(1, int(12 * scale))
    y0 = min(int(10 * scale), max(height - side, 0))
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        shift = 3.0 * t * scale
        for c in range(3):
            wave = np.sin((xx + shift) / ((6.0 + 2 * c) * scale) + phase[c]) * np.cos(
                (yy - shift) / ((9.0 + c) * scale)
            )
            frames[t, :, :, c] = np.clip(127.5 + 100.0 * wave, 0, 255).astype(np.uint8)
        x0 = int((4 + 3 * t) * scale) % max(width - side, 1)
        frames[t, y0 : y0 + side, x0 : x0 + side] = (240, 30, 30)
    return frames
