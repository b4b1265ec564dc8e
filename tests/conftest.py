"""Shared fixtures: small generated clips and the real clips in ../shared/data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def moving_pattern(num_frames: int = 8, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, moving colour pattern with a sliding square, uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        shift = 3.0 * t
        for c in range(3):
            wave = np.sin((xx + shift) / (6.0 + 2 * c) + phase[c]) * np.cos((yy - shift) / (9.0 + c))
            frames[t, :, :, c] = np.clip(127.5 + 100.0 * wave, 0, 255).astype(np.uint8)
        x0 = (4 + 3 * t) % max(width - 12, 1)
        frames[t, 10:22, x0 : x0 + 12] = (240, 30, 30)
    return frames


@pytest.fixture
def clip() -> np.ndarray:
    """The standard tiny test clip: 8 frames of 64x48."""
    return moving_pattern()


@pytest.fixture
def shared_data() -> Path:
    """Folder of real clips; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real clips not found at {SHARED_DATA}")
    return SHARED_DATA
