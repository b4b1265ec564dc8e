"""Choosing the compute device (``auto`` takes CUDA when present, else the CPU) and tuning the CPU runtime."""

from __future__ import annotations

import ctypes
import functools
import logging
import re

import torch

from camcodec.errors import DeviceError

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value
_TRIM_THRESHOLD = 512 << 20


#: What a --device option takes: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N.
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def is_device_name(name: object) -> bool:
    return isinstance(name, str) and (name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name) is not None)


def resolve_device(name: str = "auto") -> torch.device:
    if not is_device_name(name):
        raise DeviceError(f"unknown device {name!r}; use {DEVICE_NAMES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return device


def trains_in_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bfloat16 autocast: ``bf16``, or ``auto`` where the device computes
    bfloat16 natively (a CPU with AMX, a GPU that supports it). There it trains to the same quality per step
    as float32 at 1.3-1.4x the steps per second (docs/architecture.md, 6); elsewhere it would be emulated."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.cpu.get_capabilities().get("amx_bf16", False))


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Make glibc's malloc keep freed tensor memory for reuse instead of handing it back to the system.

    Training and decoding allocate and free the same few-megabyte tensors at every step. By default
    glibc serves such blocks with fresh ``mmap`` pages and returns them on free, so every step pays page
    faults over all its activations: 15-20 % of a CPU training step (176x144, 2 cores). Both thresholds
    must be set: a trim threshold alone freezes the mmap threshold at its 128 KiB default, which is
    slower still. Lasts for the process; returns False where there is no glibc (nothing changes).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    done = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    log.debug("malloc keeps freed memory: %s", done)
    return done
