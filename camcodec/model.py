"""CAM-NeRV: NeRV (Chen et al. 2021) with time-prioritized Coordinate-Aware Modulation (Lee et al. 2024).

A frame index becomes a time ``t`` in [0, 1]; a positional encoding of ``t`` goes through an MLP stem
to a small C0 x h0 x w0 feature map, which K upsampling blocks grow to the frame size. Each block is
conv -> PixelShuffle -> instance norm -> CAM -> GELU, where CAM scales and shifts every channel by values
linearly interpolated from two learnable 1-D grids over time. ``cam=False`` gives plain NeRV with the
same stem and widths (no normalization, no grids), the ablation that shows what CAM buys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from camcodec.kernels import Conv3x3, norm_modulate_gelu, pixel_shuffle

ARCH_NAME = "cam-nerv"
STRIDE_CHOICES = ((5, 3, 2, 2, 2, 2), (4, 2, 2, 2, 2, 2), (3, 2, 2, 2, 2, 2), (2, 2, 2, 2, 2, 2))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; written into the file as JSON."""

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
    # Frames are rendered in fixed groups of consecutive frames: batched arithmetic differs in the last
    # bits with the batch's size, so a fixed grouping makes every frame exact whichever subset is asked.
    render_group: int = 8

    @property
    def base_size(self) -> tuple[int, int]:
        """(h0, w0): the stem's feature map, large enough that the upsampled output covers H x W."""
        total = math.prod(self.strides)
        return math.ceil(self.height / total), math.ceil(self.width / total)

    @property
    def grid_points(self) -> int:
        return max(2, min(self.cam_points, self.num_frames))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["strides"] = list(self.strides)
        data["channels"] = list(self.channels)
        return {"arch": ARCH_NAME, **data}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild from a file's config; raises ValueError on anything missing, unknown or out of range."""
        if not isinstance(data, dict) or data.get("arch") != ARCH_NAME:
            raise ValueError(f"model config is not a {ARCH_NAME} config")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - {"arch"}
        if unknown:
            raise ValueError(f"model config has unknown keys {sorted(unknown)}")
        try:
            config = cls(**{k: v for k, v in data.items() if k != "arch"})
            config = cls(**{**asdict(config), "strides": tuple(config.strides), "channels": tuple(config.channels)})
            config.validate()
        except TypeError as exc:
            raise ValueError(f"model config is malformed: {exc}") from None
        return config

    def validate(self) -> None:
        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        checks = [
            (is_int(self.width) and is_int(self.height) and 1 <= self.width <= 16384 and 1 <= self.height <= 16384,
             "frame size"),
            (is_int(self.num_frames) and 1 <= self.num_frames <= 1_000_000, "frame count"),
            (1 <= len(self.strides) <= 8 and all(is_int(s) and 1 <= s <= 8 for s in self.strides), "strides"),
            (len(self.channels) == len(self.strides) + 1, "channels vs strides"),
            (all(is_int(c) and 1 <= c <= 4096 for c in self.channels), "channels"),
            (is_int(self.stem_hidden) and 1 <= self.stem_hidden <= 8192, "stem_hidden"),
            (is_int(self.pe_levels) and 1 <= self.pe_levels <= 128, "pe_levels"),
            (isinstance(self.pe_base, (int, float)) and not isinstance(self.pe_base, bool)
             and 1.0 < self.pe_base <= 4.0, "pe_base"),
            (isinstance(self.cam, bool), "cam"),
            (is_int(self.cam_points) and 2 <= self.cam_points <= 4096, "cam_points"),
            (is_int(self.render_group) and 1 <= self.render_group <= 1024, "render_group"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"model config: invalid {what}")
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


def positional_encoding(t: torch.Tensor, base: float, levels: int) -> torch.Tensor:
    """[sin(b^k pi t), cos(b^k pi t)] for k < levels: (B,) -> (B, 2 * levels)."""
    freqs = (base ** torch.arange(levels, dtype=torch.float32, device=t.device)) * math.pi
    angles = t[:, None].float() * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def grid_weights(t: torch.Tensor, points: int) -> torch.Tensor:
    """Linear-interpolation weights (align-corners) of times t in [0, 1] over ``points`` grid points: (B, points).

    Each row has two non-zeros; ``weights @ grid.T`` interpolates a (C, points) grid, one product per grid
    for the whole batch (cheaper than gathering, forward and backward).
    """
    position = t.float().clamp(0, 1) * (points - 1)
    left = position.floor().long().clamp(max=points - 2)
    frac = (position - left.float())[:, None]
    weights = torch.zeros(t.shape[0], points, device=t.device)
    weights.scatter_(1, left[:, None], 1 - frac)
    return weights.scatter_add_(1, left[:, None] + 1, frac)


class UpsampleBlock(nn.Module):
    """3x3 conv -> PixelShuffle(s) -> [instance norm -> CAM] -> GELU."""

    def __init__(self, c_in: int, c_out: int, stride: int, cam: bool, grid_points: int):
        super().__init__()
        self.conv = Conv3x3(c_in, c_out * stride * stride)
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


class CAMNeRV(nn.Module):
    """Maps times t (B,) in [0, 1] to RGB frames (B, 3, H, W) in [0, 1]."""

    def __init__(self, config: ModelConfig):
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
            for c_in, c_out, s in zip(config.channels[:-1], config.channels[1:], config.strides)
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


def frame_times(indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame index i of N -> t = i / max(N - 1, 1)."""
    return indices.float() / max(num_frames - 1, 1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_count(config: ModelConfig) -> int:
    """Parameters of ``CAMNeRV(config)`` without building it."""
    h0, w0 = config.base_size
    c0, hidden = config.channels[0], config.stem_hidden
    total = (2 * config.pe_levels + 1) * hidden + (hidden + 1) * c0 * h0 * w0
    for c_in, c_out, s in zip(config.channels[:-1], config.channels[1:], config.strides):
        total += (c_in * 9 + 1) * c_out * s * s
        if config.cam:
            total += 2 * c_out * config.grid_points
    return total + (config.channels[-1] * 9 + 1) * 3
