"""CAM-NeRV: NeRV (Chen et al. 2021) with time-prioritized Coordinate-Aware Modulation (Lee et al. 2024).

A frame index becomes a time ``t`` in [0, 1]; a positional encoding of ``t`` goes through an MLP stem
to a small C0 x h0 x w0 feature map, which K upsampling blocks grow to the frame size. Each block is
conv -> PixelShuffle -> instance norm -> CAM -> GELU, where CAM scales and shifts every channel by values
linearly interpolated from two learnable 1-D grids over time. ``cam=False`` gives plain NeRV with the
same stem and widths (no normalization, no grids), the ablation that shows what CAM buys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from camcodec.kernels import ConvSame, norm_modulate_gelu, pixel_shuffle
from camcodec.model.common import (
    ArchConfig,
    VideoModel,
    grid_weights,
    is_int,
    is_number,
    parameters_of,
    positional_encoding,
    stem_size,
)

STRIDE_CHOICES = ((5, 3, 2, 2, 2, 2), (4, 2, 2, 2, 2, 2), (3, 2, 2, 2, 2, 2), (2, 2, 2, 2, 2, 2))


@dataclass(frozen=True)
class CamNervConfig(ArchConfig):
    """Everything needed to rebuild a ``cam-nerv`` network; written into the file as JSON."""

    arch: ClassVar[str] = "cam-nerv"
    width: int
    height: int
    num_frames: int
    strides: tuple[int, ...]
    channels: tuple[int, ...]  # channels[0] is the stem's C0, channels[k + 1] the output of block k
    stem_hidden: int
    pe_base: float = 1.25
    pe_levels: int = 40
    cam: bool = True
    cam_points: int = 32  # M, the grid points per CAM grid (capped at the frame count)
    render_group: int = 8

    @property
    def base_size(self) -> tuple[int, int]:
        return stem_size(self.height, self.width, self.strides)

    @property
    def grid_points(self) -> int:
        return max(2, min(self.cam_points, self.num_frames))

    def validate(self) -> None:
        super().validate()
        self.check(
            (1 <= len(self.strides) <= 8 and all(is_int(s) and 1 <= s <= 8 for s in self.strides), "strides"),
            (len(self.channels) == len(self.strides) + 1, "channels vs strides"),
            (all(is_int(c) and 1 <= c <= 4096 for c in self.channels), "channels"),
            (is_int(self.stem_hidden) and 1 <= self.stem_hidden <= 8192, "stem_hidden"),
            (is_int(self.pe_levels) and 1 <= self.pe_levels <= 128, "pe_levels"),
            (is_number(self.pe_base) and 1.0 < self.pe_base <= 4.0, "pe_base"),
            (isinstance(self.cam, bool), "cam"),
            (is_int(self.cam_points) and 2 <= self.cam_points <= 4096, "cam_points"),
        )
        h0, w0 = self.base_size
        if self.channels[0] * h0 * w0 > 50_000_000:
            raise ValueError("model config: stem output too large")


def choose_strides(width: int, height: int, base_side: int = 9) -> tuple[int, ...]:
    """Upsampling strides whose product brings a ~base_side feature map up to the frame's short side.

    Picks, among prefixes of NeRV-like stride patterns (largest stride first), the product closest to
    ``min(W, H) / base_side`` in log scale; ties go to more blocks.
    """
    target = max(min(width, height) / base_side, 1.0)
    candidates = {prefix[:k] for prefix in STRIDE_CHOICES for k in range(1, len(prefix) + 1)}
    return min(candidates, key=lambda s: (round(abs(math.log(math.prod(s) / target)), 1), -len(s), s))


def block_channels(c0: int, num_blocks: int, reduce: float = 1.5, c_min: int = 8) -> tuple[int, ...]:
    """Widths that shrink block by block: C_{k+1} = max(C_k / reduce, c_min)."""
    channels = [c0]
    for _ in range(num_blocks):
        channels.append(max(int(channels[-1] / reduce), min(c_min, c0)))
    return tuple(channels)


class UpsampleBlock(nn.Module):
    """3x3 conv -> PixelShuffle(s) -> [instance norm -> CAM] -> GELU."""

    def __init__(self, c_in: int, c_out: int, stride: int, cam: bool, grid_points: int):
        super().__init__()
        self.conv = ConvSame(c_in, c_out * stride * stride)
        self.stride = stride
        self.cam = cam
        if cam:
            # gamma = 1 + gamma_delta so that the stored (and quantized) values sit around zero.
            self.gamma_delta = nn.Parameter(torch.zeros(c_out, grid_points))
            self.beta = nn.Parameter(torch.zeros(c_out, grid_points))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: the frames' ``grid_weights``, (B, grid points)."""
        x = self.conv(x)
        if self.cam:
            # Normalization, CAM and GELU commute with the shuffle; before it they are cheaper (kernels.py).
            x = norm_modulate_gelu(x, 1 + weights @ self.gamma_delta.t(), weights @ self.beta.t())
        else:
            x = F.gelu(x)
        return pixel_shuffle(x, self.stride)


class CAMNeRV(VideoModel):
    """Maps times t (B,) in [0, 1] to RGB frames (B, 3, H, W) in [0, 1]."""

    config: CamNervConfig

    def __init__(self, config: CamNervConfig):
        super().__init__()
        config.validate()
        self.config = config
        h0, w0 = config.base_size
        c0 = config.channels[0]
        self.stem = nn.Sequential(
            nn.Linear(2 * config.pe_levels, config.stem_hidden),
            nn.GELU(),
            nn.Linear(config.stem_hidden, c0 * h0 * w0),
            nn.GELU(),
        )
        self.blocks = nn.ModuleList(
            UpsampleBlock(c_in, c_out, s, config.cam, config.grid_points)
            for c_in, c_out, s in zip(config.channels[:-1], config.channels[1:], config.strides, strict=True)
        )
        self.head = nn.Conv2d(config.channels[-1], 3, kernel_size=3, padding=1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        h0, w0 = cfg.base_size
        x = self.stem(positional_encoding(t, cfg.pe_base, cfg.pe_levels))
        x = x.view(t.shape[0], cfg.channels[0], h0, w0)
        weights = grid_weights(t, cfg.grid_points)
        for block in self.blocks:
            x = block(x, weights)
        # The head's three output channels make oneDNN reorder a contiguous input at a high cost; a
        # channels-last copy is cheaper.
        x = torch.sigmoid(self.head(x.contiguous(memory_format=torch.channels_last)))
        return x[:, :, : cfg.height, : cfg.width].contiguous()


def sized(
    width: int, height: int, num_frames: int, budget: float, *, cam: bool = True, cam_points: int = 32
) -> CamNervConfig:
    """The widest network whose parameter count stays within ``budget``.

    Width grows with C0 (the stem's channels); the stem's hidden size is 2 x C0, later blocks shrink
    by 1.5x per block down to 8 channels. Sizing always counts the CAM grids, so that ``cam=False``
    gives plain NeRV with exactly the same widths.
    """
    strides = choose_strides(width, height)

    def build(c0: int) -> CamNervConfig:
        return CamNervConfig(
            width,
            height,
            num_frames,
            strides,
            block_channels(c0, len(strides)),
            stem_hidden=max(2 * c0, 16),
            cam=True,
            cam_points=cam_points,
        )

    low, high = 4, 1024
    while high - low > 1 and parameters_of(CAMNeRV, build(low)) <= budget:
        mid = (low + high) // 2
        if parameters_of(CAMNeRV, build(mid)) <= budget:
            low = mid
        else:
            high = mid
    return replace(build(low), cam=cam)
