"""Shared fixtures: small generated clips and the real clips in ../shared/data when present."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from camcodec.media.pattern import moving_pattern

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: The tiny encode of every training test: a network large for its few pixels, a high learning rate, the CPU,
#: float32 (the files and messages the tests hold do not then depend on whether the CPU has AMX).
TINY_ENCODE = {"preset": "fast", "params_per_pixel": 1.0, "lr": 1e-2, "device": "cpu", "precision": "fp32"}


def tiny_options(steps: int, **more: object) -> dict:
    """The tiny encode for ``camcodec.encode`` (``preset`` included), trained for ``steps`` steps."""
    return {**TINY_ENCODE, "steps": steps, **more}


def tiny_config(steps: int, **more: object):
    """The tiny encode as an ``EncodeConfig``."""
    from camcodec.config import resolve_config

    return resolve_config(**tiny_options(steps, **more))


def tiny_argv(steps: int, **more: object) -> list[str]:
    """The tiny encode as ``camcodec encode`` flags, quiet."""
    argv = []
    for key, value in tiny_options(steps, **more).items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return [*argv, "-q"]


@pytest.fixture
def clip() -> np.ndarray:
    """The standard tiny test clip: 8 frames of 64x48."""
    return moving_pattern()


@pytest.fixture(scope="module")
def pattern_mkv(tmp_path_factory) -> Path:
    """The standard tiny clip as a lossless .mkv at 25 fps, written once per test module."""
    from fractions import Fraction

    from camcodec.media import write_video

    path = tmp_path_factory.mktemp("pattern") / "source.mkv"
    write_video(path, moving_pattern(), Fraction(25))
    return path


@pytest.fixture
def shared_data() -> Path:
    """Folder of real clips; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real clips not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_cam(tmp_path_factory) -> Path:
    """A small valid .cam file (4 frames of 32x24), for the tests that read, forge or decode one."""
    import camcodec

    path = tmp_path_factory.mktemp("cam") / "tiny.cam"
    with torch_threads(1):  # its bytes are in docs/errors.md: the same whichever test makes it first
        camcodec.encode(moving_pattern(4, 24, 32), path, **tiny_options(5))
    return path


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch on ``count`` threads, then back to what it had. An encode's bytes depend on its thread count
    (the kernels' sums split differently, and SOAP's eigenbases amplify the difference)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", params=[2, 3], ids=["v2", "v3"])
def sample(request):
    """(the sample container, its bytes): ``camfile.sample_container``, written in format version 2 and 3."""
    import bitstream as bs
    from camfile import sample_container

    container = sample_container()
    return container, bs.write_bytes(container, version=request.param)


@pytest.fixture(scope="module")
def sample_v2():
    """``sample`` in format version 2 only: for the tests that forge its tensor entries."""
    import bitstream as bs
    from camfile import sample_container

    container = sample_container()
    return container, bs.write_bytes(container, version=2)


@pytest.fixture(scope="module")
def sample_v3():
    """``sample`` in format version 3 only: for the tests that forge its stream."""
    import bitstream as bs
    from camfile import sample_container

    container = sample_container()
    return container, bs.write_bytes(container, version=3)
