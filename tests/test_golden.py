"""Files written by earlier versions keep decoding to the same frames (bit for bit, on the CPU).

Each golden file in tests/golden/ was written by the commit named beside it; the hash is that of the
uint8 RGB frames (T, H, W, 3) it decoded to then. A change that moves a single pixel value fails here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import bitstream
import camcodec

GOLDEN = Path(__file__).parent / "golden"
FRAMES_SHA256 = {
    # 57f717e (cam-nerv, before the model seam): moving_pattern(8, 48, 64), preset fast, 300 steps,
    # 6 bits, 20 % pruned
    "cam-nerv-v1.cam": ("cam-nerv", "f23f910b0ca7a406de456817fca4d025e6ed78a9f09b78310866ab8f48871709"),
    # format version 2 (deflated config and tensor table, a coder per tensor), cam-nerv2 with learned
    # steps: moving_pattern(8, 48, 64), preset fast, 300 steps, rate_weight 0.5
    "cam-nerv2-v2.cam": ("cam-nerv2", "97bc3a198d91fb4a7d7581fce9a8eb0cc1b89c7182af59d736ace7df6e858201"),
    # b69d0f3, format version 3 (one rANS stream per segment, steps as exponents), cam-nerv2 with its flow level:
    # camcodec.encode(moving_pattern(8, 48, 64), preset="fast", steps=300, device="cpu", precision="fp32")
    "cam-nerv2-v3.cam": ("cam-nerv2", "8ff298dc7faacf4f612601bb9b7eb7b3d26608839892a9e8733fa3e1ad6c01ac"),
}
VERSIONS = {"cam-nerv-v1.cam": 1, "cam-nerv2-v2.cam": 2, "cam-nerv2-v3.cam": 3}


@pytest.mark.parametrize("name", sorted(FRAMES_SHA256))
def test_golden_file_decodes_to_the_same_frames(name):
    arch, expected = FRAMES_SHA256[name]
    data = (GOLDEN / name).read_bytes()
    description = bitstream.describe(data)
    assert description["format_version"] == VERSIONS[name]
    assert description["segments"][0]["model_config"]["arch"] == arch
    frames = camcodec.decode(GOLDEN / name, device="cpu")
    assert hashlib.sha256(frames.tobytes()).hexdigest() == expected
