"""Encoding: train the network on a clip, quantize and entropy-code it, write the file, verify it."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
import torch

import bitstream
from camcodec.config import EncodeConfig, resolve_config, size_model
from camcodec.decoder import Decoder
from camcodec.device import resolve_device
from camcodec.errors import InputError
from camcodec.media import Clip
from camcodec.metrics import psnr_uint8
from camcodec.model import CAMNeRV, count_parameters
from camcodec.quantize import quantize_model
from camcodec.train import frames_to_tensor, train

log = logging.getLogger(__name__)


@dataclass
class EncodeStats:
    """What an encode produced; ``psnr`` and ``bpp`` are measured on the written file."""

    path: str
    frames: int
    width: int
    height: int
    parameters: int
    file_bytes: int
    bpp: float  # 8 x file bytes / (W x H x frames)
    psnr: float  # RGB PSNR (dB) of the frames the file decodes to, against the source
    float_psnr: float  # PSNR of the unquantized network during its last training pass
    train_steps: int
    encode_seconds: float
    device: str

    def summary(self) -> str:
        return (
            f"{self.frames} frames {self.width}x{self.height}, {self.parameters:,} params, "
            f"{self.file_bytes:,} bytes, {self.bpp:.4f} bpp, PSNR {self.psnr:.2f} dB, {self.encode_seconds:.1f} s"
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EncodeResult:
    stats: EncodeStats
    reconstruction: np.ndarray  # uint8 (T, H, W, 3): the frames the written file decodes to on this device


def clip_from_array(frames: np.ndarray, fps: Fraction = Fraction(25)) -> Clip:
    """Wrap uint8 RGB frames (T, H, W, 3) as a clip."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError("frames must be a uint8 array of shape (T, H, W, 3)")
    if frames.shape[0] < 1:
        raise InputError("frames: the video is empty")
    return Clip(np.ascontiguousarray(frames), Fraction(fps), "rgb24", "rgb", "<array>")


class Encoder:
    """Encodes clips with one configuration.

    >>> Encoder(resolve_config("fast")).encode(clip, "out.cam").stats.bpp   # doctest: +SKIP
    """

    def __init__(self, config: EncodeConfig | None = None, *, progress: bool = False):
        self.config = config or resolve_config()
        self.config.validate()
        self.progress = progress

    def encode(self, clip: Clip, out_path: str | os.PathLike) -> EncodeResult:
        config = self.config
        start = time.perf_counter()
        device = resolve_device(config.device)
        num_frames, height, width = clip.frames.shape[:3]
        model_config = size_model(width, height, num_frames, config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = CAMNeRV(model_config).to(device)
        log.info(
            "%s: %d frames %dx%d, %d params, strides %s, channels %s, cam=%s, device %s",
            clip.source, num_frames, width, height, count_parameters(model),
            model_config.strides, model_config.channels, model_config.cam, device,
        )
        trained = train(model, frames_to_tensor(clip.frames, device), config, progress=self.progress)

        info = bitstream.VideoInfo(
            width=width,
            height=height,
            num_frames=num_frames,
            fps_num=clip.fps.numerator,
            fps_den=clip.fps.denominator,
            pix_fmt=clip.pix_fmt,
            color_matrix=clip.color_matrix,
        )
        segment = bitstream.Segment(0, num_frames, model_config.to_dict(), quantize_model(model, config.bits))
        file_bytes = bitstream.write_file(out_path, bitstream.Container(info, [segment]))

        # Measure what the written file decodes to, so the reported quality is the file's, not the model's.
        reconstruction = Decoder(out_path, device=str(device)).render(range(num_frames))
        stats = EncodeStats(
            path=os.fspath(out_path),
            frames=num_frames,
            width=width,
            height=height,
            parameters=count_parameters(model),
            file_bytes=file_bytes,
            bpp=8 * file_bytes / (width * height * num_frames),
            psnr=psnr_uint8(clip.frames, reconstruction),
            float_psnr=trained.psnr,
            train_steps=trained.steps,
            encode_seconds=time.perf_counter() - start,
            device=str(device),
        )
        log.info("encoded %s", stats.summary())
        return EncodeResult(stats, reconstruction)
