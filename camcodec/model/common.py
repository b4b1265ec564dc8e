"""What every architecture shares: time from frame index, interpolation over time grids, and the config
contract (a frozen dataclass that round-trips through the file's JSON with its types checked)."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from bitstream.layout import DEFAULT_CODER, MAX_FRAMES
from bitstream.layout import MAX_DIMENSION as MAX_SIDE
from camcodec.roles import is_latent


def frame_times(indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame index i of N -> t = i / max(N - 1, 1)."""
    return indices.float() / max(num_frames - 1, 1)


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


def points_spaced(num_frames: int, frames_apart: float) -> int:
    """Grid points along time spaced about ``frames_apart`` frames apart over a clip of ``num_frames`` (the grids
    interpolate between its first and last frame, as ``grid_weights`` does)."""
    return round((num_frames - 1) / frames_apart) + 1


def stem_size(height: int, width: int, strides: tuple[int, ...]) -> tuple[int, int]:
    """(h0, w0): the stem's feature map, large enough that upsampling by ``strides`` covers H x W."""
    total = math.prod(strides)
    return math.ceil(height / total), math.ceil(width / total)


def parameters_of(model_class: type[nn.Module], config: Any) -> int:
    """Parameters of ``model_class(config)``, built on the meta device: shapes only, nothing allocated."""
    with torch.device("meta"):
        return sum(p.numel() for p in model_class(config).parameters())


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type a config field declares (bools are not numbers here)."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        items = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not items or all(_type_ok(v, items[0]) for v in value)
    return True  # a type this check does not know: the config's validate() decides


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        items = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"list of {items[0].__name__}" if items else "list"
    return getattr(hint, "__name__", str(hint))


C = TypeVar("C", bound="ArchConfig")


class ArchConfig:
    """Base of every architecture's config: a frozen dataclass with ``width``, ``height``, ``num_frames``
    and ``render_group`` fields, written into the file as JSON with its ``arch`` name.

    Frames are rendered in fixed groups of ``render_group`` consecutive frames: batched arithmetic differs
    in the last bits with the batch's size, so a fixed grouping makes every frame exact whichever subset
    is asked for.
    """

    arch: ClassVar[str]
    width: int
    height: int
    num_frames: int
    render_group: int

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"arch": self.arch, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}

    @classmethod
    def from_dict(cls: type[C], data: Any) -> C:
        """Rebuild from a file's config; ValueError on anything missing, unknown, mistyped or out of range."""
        if not isinstance(data, dict) or data.get("arch") != cls.arch:
            raise ValueError(f"model config is not a {cls.arch} config")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names - {"arch"}
        if unknown:
            raise ValueError(f"model config has unknown keys {sorted(unknown)}")
        values = {}
        for key, value in data.items():
            if key == "arch":
                continue
            if not _type_ok(value, hints[key]):
                raise ValueError(f"model config {key} = {str(value)[:40]} is not a {_type_name(hints[key])}")
            values[key] = tuple(value) if isinstance(value, list) else value
        try:
            config = cls(**values)
        except TypeError as exc:
            raise ValueError(f"model config is malformed: {exc}") from None
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the first field out of range."""
        self.check(
            (
                is_int(self.width)
                and is_int(self.height)
                and 1 <= self.width <= MAX_SIDE
                and 1 <= self.height <= MAX_SIDE,
                "frame size",
            ),
            (is_int(self.num_frames) and 1 <= self.num_frames <= MAX_FRAMES, "frame count"),
            (is_int(self.render_group) and 1 <= self.render_group <= 1024, "render_group"),
        )

    @staticmethod
    def check(*checks: tuple[bool, str]) -> None:
        for ok, what in checks:
            if not ok:
                raise ValueError(f"model config: invalid {what}")


class VideoModel(nn.Module):
    """Base of every architecture's network: maps times t (B,) in [0, 1] to RGB frames (B, 3, H, W)."""

    config: ArchConfig

    def channel_axes(self) -> dict[str, int | None]:
        """Which axis of each parameter is its output channel (the quantizer's per-channel scales); None for
        a tensor quantized with one scale. Every tensor's output channels lie along axis 0 by default."""
        return {name: 0 for name, _ in self.named_parameters()}

    def latent_grids(self) -> list[str]:
        """Parameters that are feature values rather than weights (they train at a higher learning rate)."""
        return [name for name, _ in self.named_parameters() if is_latent(name)]

    def coders(self) -> dict[str, str]:
        """The coder the file writes each parameter's symbols with (a name of ``bitstream.layout.CODER_NAMES``;
        the reader decodes each with the coder its entry names). Every tensor under its own static frequency
        table by default, the only coder of format versions 1 and 2."""
        return {name: DEFAULT_CODER for name, _ in self.named_parameters()}
