"""Choosing the compute device (``auto`` takes CUDA when present, else the CPU) and tuning the CPU runtime."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import re
import threading
from collections.abc import Iterator

import torch

from camcodec.errors import DeviceError

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value
_TRIM_THRESHOLD = 512 << 20
_GLIBC_DEFAULT_THRESHOLD = 128 << 10  # both thresholds' defaults


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
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt`` and ``malloc_trim`` exist), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (AttributeError where they do not exist)
    except (OSError, AttributeError):
        return None
    return libc


def _thresholds_at_start() -> tuple[int, int]:
    """The (mmap, trim) thresholds the process started with: its ``MALLOC_*_THRESHOLD_`` environment
    variables, which glibc reads at start-up, else glibc's defaults."""

    def read(name: str) -> int:
        text = os.environ.get(name, "")
        return int(text) if text.isdigit() else _GLIBC_DEFAULT_THRESHOLD

    return read("MALLOC_MMAP_THRESHOLD_"), read("MALLOC_TRIM_THRESHOLD_")


_allocator_lock = threading.Lock()
_allocator_users = 0


@contextlib.contextmanager
def freed_cpu_memory_kept(device: torch.device) -> Iterator[bool]:
    """While in the block, make glibc's malloc keep freed tensor memory for reuse instead of handing it
    back to the system (on a CPU ``device``; nothing for a GPU or without glibc: yields whether it applied).

    Training and decoding allocate and free the same few-megabyte tensors at every step. By default
    glibc serves such blocks with fresh ``mmap`` pages and returns them on free, so every step pays page
    faults over all its activations: 15-20 % of a CPU training step (176x144, 2 cores). Both thresholds
    must be set: a trim threshold alone freezes the mmap threshold at its 128 KiB default, which is
    slower still. Blocks may nest and run in several threads at once; when the last one ends, the
    thresholds go back to the process's own (``_thresholds_at_start``) and the memory kept is returned
    (``malloc_trim``). What cannot be restored: glibc's own raising of the mmap threshold as blocks are
    freed, which any ``mallopt`` call ends for the life of the process.
    """
    global _allocator_users
    libc = _glibc() if device.type == "cpu" else None
    if libc is None:
        yield False
        return
    with _allocator_lock:
        if _allocator_users == 0:
            _set_thresholds(libc, _MMAP_THRESHOLD, _TRIM_THRESHOLD)
        _allocator_users += 1
    try:
        yield True
    finally:
        with _allocator_lock:
            _allocator_users -= 1
            if _allocator_users == 0:
                _set_thresholds(libc, *_thresholds_at_start())
                libc.malloc_trim(0)


def _set_thresholds(libc: ctypes.CDLL, mmap_threshold: int, trim_threshold: int) -> None:
    done = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    done = libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and done
    log.debug("malloc thresholds: mmap %d, trim %d (%s)", mmap_threshold, trim_threshold, "set" if done else "refused")
