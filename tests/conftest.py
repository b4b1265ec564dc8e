"""Shared fixtures: small generated clips and the real clips in ../shared/data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camcodec.media.pattern import moving_pattern

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
