"""The networks a .cam file can name, behind one seam.

Each architecture is a config class (a frozen dataclass that names itself in the file with ``arch``)
and a module class that maps times t in [0, 1] to RGB frames. Everything else asks through here:
``config_from_dict`` rebuilds whatever config a file names, ``build_model`` the network,
``parameter_count`` and ``macs_per_frame`` measure a config from a build on the meta device, and each
model's ``channel_axes()`` tells the quantizer which axis of each tensor is its output channel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camcodec.model import cam_nerv, nerv2
from camcodec.model.common import (
    ArchConfig,
    VideoModel,
    frame_times,
    grid_weights,
    parameters_of,
    positional_encoding,
)


@dataclass(frozen=True)
class Architecture:
    config: type[ArchConfig]
    model: type[VideoModel]
    # sized(width, height, num_frames, budget, **options): the config of the best network within
    # ``budget`` parameters; options are config fields the encoder sets (cam, cam_points, ...).
    sized: Callable[..., ArchConfig]
    lr: float  # the peak learning rate it trains best with (measured: docs/architecture.md)


_SEEDED_BUILD = threading.Lock()

ARCHITECTURES: dict[str, Architecture] = {
    cam_nerv.CamNervConfig.arch: Architecture(cam_nerv.CamNervConfig, cam_nerv.CAMNeRV, cam_nerv.sized, 2e-3),
    nerv2.Nerv2Config.arch: Architecture(nerv2.Nerv2Config, nerv2.Nerv2, nerv2.sized, 1e-2),
}


def architecture(name: Any) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {str(name)[:40]!r}; this decoder knows {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def config_from_dict(data: Any) -> ArchConfig:
    """The config a file's JSON describes; ValueError when it is malformed or names no known architecture."""
    if not isinstance(data, dict):
        raise ValueError("model config is not a JSON object")
    return architecture(data.get("arch")).config.from_dict(data)


def build_model(config: ArchConfig, seed: int | None = None) -> VideoModel:
    """The untrained network of ``config`` on torch's default device; with ``seed``, initialized from it
    without touching the global RNG (the encoder's build), else from the global RNG."""
    model_class = architecture(config.arch).model
    if seed is None:
        return model_class(config)
    # The seeded build draws from torch's global generator: one build at a time, so that builds on other
    # threads (segments encoded by threads of one process) cannot draw from it in between.
    with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def parameter_count(config: ArchConfig) -> int:
    return parameters_of(architecture(config.arch).model, config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_frame(config: ArchConfig) -> dict[str, int]:
    """Multiply-accumulates of rendering one frame, by layer (convolutions and linear layers), counted by
    running the network on the meta device: interpolation, normalization and activations are left out."""
    with torch.device("meta"):
        model = build_model(config)
    counts: dict[str, int] = {}

    def hook(name: str):
        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            elif isinstance(module, nn.Linear):
                per_output = module.in_features
            counts[name] = counts.get(name, 0) + output[0].numel() * per_output

        return count

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(hook(name))
    with torch.no_grad():
        model(torch.zeros(1, device="meta"))
    return {**counts, "total": sum(counts.values())}


__all__ = [
    "ARCHITECTURES",
    "ArchConfig",
    "Architecture",
    "build_model",
    "config_from_dict",
    "count_parameters",
    "frame_times",
    "grid_weights",
    "macs_per_frame",
    "parameter_count",
    "positional_encoding",
]
