"""CAM-NeRV 2: the NeRV-family network with each ingredient behind a config field, so that each can be
measured alone (docs/architecture.md has the measurements).

time t -> stem -> C0 x h0 x w0 -> K upsampling blocks -> head -> RGB, where

* the stem (``stem``) is NeRV's MLP on a positional encoding of t (``"mlp"``), or multi-resolution
  temporal latent grids (``"grid"``, as in FFNeRV): level l holds ``grid_times[l]`` feature maps
  (C0 / levels x h0 x w0) at evenly spaced times, linearly interpolated at t, levels concatenated;
* each block is a k x k convolution (``kernels[k]``) that upsamples by ``strides[k]`` either through
  PixelShuffle (``upsample="shuffle"``: conv to C x s^2, then shuffle) or bilinearly (``"bilinear"``:
  resize, then conv), then instance norm + CAM (``cam``) and GELU;
* latent grids (``latent_blocks``) modulate a block's output over space and time, CAM's modulation
  extended from t to (t, y, x): level l is a (``latent_channels[l]`` x ``latent_times[l]`` x h x w) grid
  at block ``latent_blocks[l]``'s output resolution divided by ``latent_down[l]``, linearly interpolated
  at t and upsampled bilinearly to the block's output, where a 1 x 1 projection turns it into a scale and
  an offset per channel and pixel: ``x + x * gamma + beta``. They start at zero: training begins as the
  plain network;
* flow grids (``warp_blocks``) move a block's output: level l is a (2 x ``warp_times[l]`` x h x w) grid at
  block ``warp_blocks[l]``'s output resolution divided by ``warp_down[l]``, interpolated like the latent
  levels into a displacement per pixel (``warp_scale`` pixels of the block's output per unit) at which the
  block's output is sampled bilinearly: coded motion, which a NeRV's convolutions cannot express (each frame's
  moving objects are otherwise drawn anew). Block ``len(strides)`` is the head's output (RGB before the
  sigmoid): motion at full resolution on three channels. They start at zero: no displacement;
* the head is a ``head_kernel`` convolution to RGB and a sigmoid.

Every tensor keeps its output channels on axis 0 (grids are stored channel-first) for the quantizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

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
    points_spaced,
    positional_encoding,
    stem_size,
)

STEMS = ("mlp", "grid")
LATENT_RANGES = {"latent_times": (2, 100_000), "latent_channels": (1, 64), "latent_down": (1, 64)}
LATENT_FIELDS = ("latent_blocks", *LATENT_RANGES)
WARP_RANGES = {"warp_times": (2, 100_000), "warp_down": (1, 64)}
WARP_FIELDS = ("warp_blocks", *WARP_RANGES, "warp_scale")
UPSAMPLES = ("shuffle", "bilinear")


@dataclass(frozen=True)
class Nerv2Config(ArchConfig):
    """Everything needed to rebuild a ``cam-nerv2`` network; written into the file as JSON."""

    arch: ClassVar[str] = "cam-nerv2"
    width: int
    height: int
    num_frames: int
    strides: tuple[int, ...]
    channels: tuple[int, ...]  # channels[0]: the stem's output C0; channels[k + 1]: block k's output
    kernels: tuple[int, ...]  # each block's convolution kernel size (odd)
    head_kernel: int = 3
    stem: str = "mlp"
    stem_hidden: int = 16  # mlp stem: hidden width
    pe_base: float = 1.25  # mlp stem: positional encoding
    pe_levels: int = 40
    grid_times: tuple[int, ...] = ()  # grid stem: time points of each level (capped at the frame count)
    upsample: str = "shuffle"
    cam: bool = True
    cam_points: int = 32  # time points of each CAM grid (capped at the frame count)
    render_group: int = 8
    latent_blocks: tuple[int, ...] = ()  # latent level l modulates block latent_blocks[l]'s output
    latent_times: tuple[int, ...] = ()  # its time points (capped at the frame count)
    latent_channels: tuple[int, ...] = ()  # its channels
    latent_down: tuple[int, ...] = ()  # its spatial resolution: the block's output divided by this
    warp_blocks: tuple[int, ...] = ()  # flow level l moves block warp_blocks[l]'s output (len(strides): the head's)
    warp_times: tuple[int, ...] = ()  # its time points (capped at the frame count)
    warp_down: tuple[int, ...] = ()  # its spatial resolution: the block's output divided by this
    warp_scale: float = 4.0  # the displacement, in pixels of the block's output, of one unit of a flow grid

    @property
    def base_size(self) -> tuple[int, int]:
        return stem_size(self.height, self.width, self.strides)

    @property
    def cam_grid_points(self) -> int:
        return max(2, min(self.cam_points, self.num_frames))

    def level_points(self) -> tuple[int, ...]:
        return tuple(max(2, min(t, self.num_frames)) for t in self.grid_times)

    def to_dict(self) -> dict[str, Any]:
        """Without latent or flow levels, the config as files written before they existed hold it (their
        absence means none, in every version)."""
        data = super().to_dict()
        for present, keys in ((self.latent_blocks, LATENT_FIELDS), (self.warp_blocks, WARP_FIELDS)):
            if not present:
                for key in keys:
                    del data[key]
        return data

    def block_size(self, block: int) -> tuple[int, int]:
        """(h, w) of block ``block``'s output; block ``len(strides)``, the head, keeps the last block's size."""
        h0, w0 = self.base_size
        scale = math.prod(self.strides[: block + 1])
        return h0 * scale, w0 * scale

    def grid_shape(self, block: int, channels: int, times: int, down: int) -> tuple[int, int, int, int]:
        """(channels, time points, h, w) of a grid at block ``block``'s output resolution divided by ``down``."""
        h, w = self.block_size(block)
        return channels, max(2, min(times, self.num_frames)), math.ceil(h / down), math.ceil(w / down)

    def latent_shapes(self) -> list[tuple[int, int, int, int]]:
        """(channels, time points, h, w) of each latent level."""
        return [
            self.grid_shape(*level)
            for level in zip(self.latent_blocks, self.latent_channels, self.latent_times, self.latent_down, strict=True)
        ]

    def warp_shapes(self) -> list[tuple[int, int, int, int]]:
        """(2, time points, h, w) of each flow level."""
        return [
            self.grid_shape(b, 2, t, d)
            for b, t, d in zip(self.warp_blocks, self.warp_times, self.warp_down, strict=True)
        ]

    def coded_grid_values(self) -> int:
        """Values in the latent and flow levels' grids: coded like weights, sized apart from them."""
        return sum(math.prod(shape) for shape in (*self.latent_shapes(), *self.warp_shapes()))

    def validate(self) -> None:
        super().validate()
        blocks = len(self.strides)
        self.check(
            (1 <= blocks <= 8 and all(is_int(s) and 1 <= s <= 8 for s in self.strides), "strides"),
            (len(self.channels) == blocks + 1 and all(is_int(c) and 1 <= c <= 4096 for c in self.channels), "channels"),
            (len(self.kernels) == blocks and all(is_int(k) and k in (1, 3, 5, 7) for k in self.kernels), "kernels"),
            (is_int(self.head_kernel) and self.head_kernel in (1, 3, 5, 7), "head_kernel"),
            (self.stem in STEMS, "stem"),
            (is_int(self.stem_hidden) and 1 <= self.stem_hidden <= 8192, "stem_hidden"),
            (is_int(self.pe_levels) and 1 <= self.pe_levels <= 128, "pe_levels"),
            (is_number(self.pe_base) and 1.0 < self.pe_base <= 4.0, "pe_base"),
            (
                self.stem != "grid"
                or (
                    1 <= len(self.grid_times) <= 8
                    and all(is_int(t) and 2 <= t <= 100_000 for t in self.grid_times)
                    and self.channels[0] % len(self.grid_times) == 0
                ),
                "grid_times",
            ),
            (self.upsample in UPSAMPLES, "upsample"),
            (isinstance(self.cam, bool), "cam"),
            (is_int(self.cam_points) and 2 <= self.cam_points <= 4096, "cam_points"),
            *self.level_checks("latent_blocks", LATENT_RANGES, blocks),
            *self.level_checks("warp_blocks", WARP_RANGES, blocks + 1),
            (is_number(self.warp_scale) and 0 < self.warp_scale <= 64, "warp_scale"),
        )
        if self.coded_grid_values() > 2**28:
            raise ValueError("model config: latent grids too large")
        h0, w0 = self.base_size
        stem_values = self.channels[0] * h0 * w0 * max([self.stem_hidden, *self.level_points()])
        if stem_values > 2**28:
            raise ValueError("model config: stem too large")

    def level_checks(
        self, blocks_field: str, ranges: dict[str, tuple[int, int]], targets: int
    ) -> list[tuple[bool, str]]:
        """The checks of one kind of level: distinct blocks below ``targets``, and one value in range per
        level in each per-level field."""
        levels = getattr(self, blocks_field)
        return [
            (
                len(levels) <= 8
                and all(is_int(b) and 0 <= b < targets for b in levels)
                and len(set(levels)) == len(levels),
                blocks_field,
            ),
            *(
                (
                    len(values := getattr(self, name)) == len(levels)
                    and all(is_int(v) and low <= v <= high for v in values),
                    name,
                )
                for name, (low, high) in ranges.items()
            ),
        ]


class Block(nn.Module):
    """Upsample by ``stride`` with a k x k convolution (PixelShuffle or bilinear), [norm -> CAM], GELU."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, upsample: str, cam_points: int | None):
        super().__init__()
        self.stride, self.upsample = stride, upsample
        outputs = c_out * stride * stride if upsample == "shuffle" else c_out
        self.conv = ConvSame(c_in, outputs, kernel)
        self.cam = cam_points is not None
        if cam_points is not None:
            # gamma = 1 + gamma_delta so that the stored (and quantized) values sit around zero.
            self.gamma_delta = nn.Parameter(torch.zeros(c_out, cam_points))
            self.beta = nn.Parameter(torch.zeros(c_out, cam_points))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: the frames' CAM ``grid_weights``, (B, cam points)."""
        if self.upsample == "bilinear" and self.stride > 1:
            x = F.interpolate(x, scale_factor=self.stride, mode="bilinear", align_corners=False)
        x = self.conv(x)
        if self.cam:
            # Normalization, CAM and GELU commute with the shuffle; before it they are cheaper (kernels.py).
            x = norm_modulate_gelu(x, 1 + weights @ self.gamma_delta.t(), weights @ self.beta.t())
        else:
            x = F.gelu(x)
        return pixel_shuffle(x, self.stride) if self.upsample == "shuffle" else x


def interpolate_in_time(grid: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A (C, T, h, w) grid linearly interpolated at times t (B,): (B, C, h, w), one product for the batch."""
    c, points, h, w = grid.shape
    mixed = grid_weights(t, points) @ grid.transpose(0, 1).reshape(points, c * h * w)
    return mixed.view(-1, c, h, w)


def linear_upsampling(points: int, size: int) -> torch.Tensor:
    """(size, points): the weights of linear interpolation from ``points`` samples to ``size``, as
    ``F.interpolate(..., align_corners=False)`` and bilinear upsampling along one axis compute them."""
    return F.interpolate(torch.eye(points).unsqueeze(0), size=size, mode="linear", align_corners=False)[0].t()


class GridLevel(nn.Module):
    """What the latent and flow levels share: a zero-started (C, T, h, w) grid, interpolated in t by
    ``interpolate_in_time`` and upsampled bilinearly to its block's output size by ``upsampled``."""

    rows: torch.Tensor
    columns: torch.Tensor

    def __init__(self, shape: tuple[int, int, int, int], size: tuple[int, int]):
        super().__init__()
        self.grid = nn.Parameter(torch.zeros(shape))
        # Bilinear upsampling to the block's size as two matrix products (rows, then columns): on the CPU
        # several times faster than F.interpolate both ways. Not saved: the config rebuilds them.
        self.register_buffer("rows", linear_upsampling(shape[2], size[0]), persistent=False)
        self.register_buffer("columns", linear_upsampling(shape[3], size[1]).t(), persistent=False)

    def upsampled(self, values: torch.Tensor) -> torch.Tensor:
        """(B, C', h, w) at the grid's resolution -> (B, C', H, W) at the block's."""
        return self.rows @ values @ self.columns


class LatentLevel(GridLevel):
    """One latent grid modulating a block's output: interpolated at t, upsampled, projected to a scale and
    an offset of each of the block's channels at each pixel."""

    def __init__(self, shape: tuple[int, int, int, int], size: tuple[int, int], channels: int):
        super().__init__(shape, size)
        self.project = nn.Conv2d(shape[0], 2 * channels, 1, bias=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # Projection and bilinear upsampling are both linear, so the projection runs at the grid's
        # resolution (a 1 x 1 convolution at the block's would cost more than the block's own).
        film = self.upsampled(self.project(interpolate_in_time(self.grid, t)))
        b, c = x.shape[:2]
        film = film.to(x.dtype).view(b, 2, c, *x.shape[2:])
        return x * (film[:, 0] + 1) + film[:, 1]


class FlowLevel(GridLevel):
    """One flow grid moving a block's output: interpolated at t and upsampled to a displacement per pixel,
    at which the output is sampled bilinearly (each pixel takes its value from where the flow points)."""

    centres: torch.Tensor
    unit: torch.Tensor

    def __init__(self, shape: tuple[int, int, int, int], size: tuple[int, int], scale: float):
        super().__init__(shape, size)
        h, w = size
        # Pixel centres in grid_sample's coordinates (align_corners=False): zero flow samples each pixel itself.
        xs = (2 * torch.arange(w, dtype=torch.float32) + 1) / w - 1
        ys = (2 * torch.arange(h, dtype=torch.float32) + 1) / h - 1
        self.register_buffer("centres", torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1), persistent=False)
        # one unit of the grid: ``scale`` pixels, in those coordinates (x first, as grid_sample reads them)
        self.register_buffer("unit", torch.tensor([2 * scale / w, 2 * scale / h]), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flow = self.upsampled(interpolate_in_time(self.grid, t))  # (B, 2, H, W)
        where = self.centres + flow.float().permute(0, 2, 3, 1) * self.unit
        # Sampled in float32 whatever the autocast: on CPU bfloat16's grid_sample takes twice the time, and
        # its coordinates would round to ~0.1 pixel of a 90-pixel-wide map, which the flow's gradient sees.
        moved = F.grid_sample(x.float(), where, mode="bilinear", padding_mode="border", align_corners=False)
        return moved.to(x.dtype)


class GridStem(nn.Module):
    """Multi-resolution temporal latent grids: level l is (C0 / L, T_l, h0, w0), interpolated linearly in t."""

    def __init__(self, config: Nerv2Config):
        super().__init__()
        h0, w0 = config.base_size
        per_level = config.channels[0] // len(config.grid_times)
        self.grids = nn.ParameterList(
            nn.Parameter(torch.empty(per_level, points, h0, w0).uniform_(-0.1, 0.1)) for points in config.level_points()
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([interpolate_in_time(grid, t) for grid in self.grids], dim=1)


class MlpStem(nn.Module):
    """NeRV's stem: positional encoding of t -> linear -> GELU -> linear -> GELU -> C0 x h0 x w0."""

    def __init__(self, config: Nerv2Config):
        super().__init__()
        self.config = config
        h0, w0 = config.base_size
        self.layers = nn.Sequential(
            nn.Linear(2 * config.pe_levels, config.stem_hidden),
            nn.GELU(),
            nn.Linear(config.stem_hidden, config.channels[0] * h0 * w0),
            nn.GELU(),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return self.layers(positional_encoding(t, cfg.pe_base, cfg.pe_levels)).view(
            t.shape[0], cfg.channels[0], *cfg.base_size
        )


class Nerv2(VideoModel):
    """Maps times t (B,) in [0, 1] to RGB frames (B, 3, H, W) in [0, 1]."""

    config: Nerv2Config

    def __init__(self, config: Nerv2Config):
        super().__init__()
        config.validate()
        self.config = config
        self.stem = GridStem(config) if config.stem == "grid" else MlpStem(config)
        cam_points = config.cam_grid_points if config.cam else None
        self.blocks = nn.ModuleList(
            Block(c_in, c_out, s, k, config.upsample, cam_points)
            for c_in, c_out, s, k in zip(
                config.channels[:-1], config.channels[1:], config.strides, config.kernels, strict=True
            )
        )
        self.latents = nn.ModuleDict(
            {
                str(block): LatentLevel(shape, config.block_size(block), config.channels[block + 1])
                for block, shape in zip(config.latent_blocks, config.latent_shapes(), strict=True)
            }
        )
        self.warps = nn.ModuleDict(
            {
                str(block): FlowLevel(shape, config.block_size(block), config.warp_scale)
                for block, shape in zip(config.warp_blocks, config.warp_shapes(), strict=True)
            }
        )
        self.head = nn.Conv2d(config.channels[-1], 3, config.head_kernel, padding=config.head_kernel // 2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = self.stem(t)
        weights = grid_weights(t, cfg.cam_grid_points)
        for index, block in enumerate(self.blocks):
            x = block(x, weights)
            if str(index) in self.warps:
                x = self.warps[str(index)](x, t)
            if str(index) in self.latents:
                x = self.latents[str(index)](x, t)
        # The head's three output channels make oneDNN reorder a contiguous input at a high cost; a
        # channels-last copy is cheaper.
        x = self.head(x.contiguous(memory_format=torch.channels_last))
        if str(len(self.blocks)) in self.warps:
            x = self.warps[str(len(self.blocks))](x, t)
        x = torch.sigmoid(x)
        return x[:, :, : cfg.height, : cfg.width].contiguous()


# Sizing: the default shape of the network, scaled in width to a parameter budget.
BASE_SIDE = 6  # the stem's map: about this many pixels on the frame's short side
WIDTH_REDUCE = 1.25  # each block is this much narrower than the one before
# The first block makes the big jump (cheap at the stem's size), then doublings.
STRIDE_PATTERNS = ((5, 2, 2, 2, 2, 2), (4, 2, 2, 2, 2, 2), (3, 2, 2, 2, 2, 2), (2, 2, 2, 2, 2, 2))
DEFAULTS: dict[str, Any] = {"stem": "mlp"}
# The default flow level: on the block before the last (half the frame's resolution), a field point every
# FLOW_DOWN of its pixels, a time point about every FRAMES_PER_FLOW_POINT frames and at least MIN_FLOW_TIMES
# (docs/architecture.md sections 12 and 14: more points than 8 lost a little on 60-120 frames at one every 4
# frames; one every 8 gained on 120 and 200 frames and was level on 132).
MIN_FLOW_TIMES = 8
FRAMES_PER_FLOW_POINT = 8
FLOW_DOWN = 16


def flow_times_for(num_frames: int) -> int:
    """Time points of the default flow level for a clip of ``num_frames``."""
    return max(MIN_FLOW_TIMES, points_spaced(num_frames, FRAMES_PER_FLOW_POINT))


def default_flow(strides: tuple[int, ...], num_frames: int) -> dict[str, Any]:
    """The flow level of the default shape: none for a network of fewer than two blocks."""
    if len(strides) < 2:
        return {}
    return {"warp_blocks": (len(strides) - 2,), "warp_times": (flow_times_for(num_frames),), "warp_down": (FLOW_DOWN,)}


def choose_strides(width: int, height: int, base_side: float = BASE_SIDE) -> tuple[int, ...]:
    """Upsampling strides (largest first) whose product brings a ~base_side map up to the frame's short side:
    the prefix of a stride pattern closest to ``min(W, H) / base_side`` in log scale; ties go to the larger
    first stride (fewer blocks at high resolution)."""
    target = max(min(width, height) / base_side, 1.0)
    candidates = {pattern[:k] for pattern in STRIDE_PATTERNS for k in range(1, len(pattern) + 1)}
    return min(candidates, key=lambda s: (round(abs(math.log(math.prod(s) / target)), 1), -s[0], len(s)))


def sized(width: int, height: int, num_frames: int, budget: float, **fields: Any) -> Nerv2Config:
    """The widest network of the default shape (``fields`` override any config field; the shape includes
    ``default_flow``'s level unless ``warp_blocks`` says otherwise) within ``budget`` parameters. Widths shrink
    by ``WIDTH_REDUCE`` per block; a grid stem's C0 is a multiple of its levels.
    Sizing counts CAM's grids whether or not ``cam`` is on, so that ``cam=False`` keeps the same widths,
    and leaves the latent and flow levels' grids out: they come on top of the network the budget sizes.
    With ``channels`` given, the budget is not used."""
    fields = {**DEFAULTS, **fields}
    if fields["stem"] == "grid":  # two levels: a point every 16 frames and every 4
        fields.setdefault("grid_times", (max(2, num_frames // 16), max(2, num_frames // 4)))
    strides = tuple(fields.pop("strides", None) or choose_strides(width, height))
    if fields.get("warp_blocks", True):  # absent: the default flow level; given: its other fields default
        fields = {**default_flow(strides, num_frames), **fields}
    fields.setdefault("kernels", (3,) * len(strides))
    cam = fields.pop("cam", True)

    def build(scale: float) -> Nerv2Config:
        levels = len(fields.get("grid_times", ())) if fields.get("stem") == "grid" else 1
        widths = [max(2, round(scale / WIDTH_REDUCE**k)) for k in range(len(strides))]
        c0 = max(levels, round(scale / levels) * levels)
        return Nerv2Config(width, height, num_frames, strides, channels=(c0, *widths), **fields)

    if "channels" in fields:
        return replace(Nerv2Config(width, height, num_frames, strides, **fields), cam=cam)
    low, high = 1.0, 4096.0
    for _ in range(40):
        mid = (low + high) / 2
        config = build(mid)
        weights = parameters_of(Nerv2, config) - config.coded_grid_values()
        low, high = (mid, high) if weights <= budget else (low, mid)
    return replace(build(low), cam=cam)
