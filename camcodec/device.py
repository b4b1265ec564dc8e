"""Choosing the compute device: ``auto`` takes CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from camcodec.errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
        return device
    raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda")
