"""The upsampling block's operations in faster forms: the same function as the plain PyTorch ops, with
fewer memory passes and less fixed cost per call. CPU training is bound by both at NeRV's small widths.

* ``norm_modulate_gelu``: ``F.instance_norm``, a per-frame affine and GELU cost autograd a dozen passes
  over the block's largest tensor. Here they run on the convolution's output *before* the shuffle (they
  commute with it: the statistics of output channel c after the shuffle are those of its s x s input
  channels, which ``group_norm`` with one group per output channel computes), as one ``group_norm``
  (normalization and affine fused) and one GELU.
* ``pixel_shuffle``: one permuted copy, ~2x faster than ``F.pixel_shuffle`` on CPU.
* ``conv_same`` / ``ConvSame``: small CPU feature maps go through im2col + GEMM (ATen's
  ``_slow_conv2d``) instead of oneDNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5


def pixel_shuffle(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.pixel_shuffle`` as one permuted copy (identical values; ~2x faster on CPU)."""
    if stride == 1:
        return x
    b, cs, h, w = x.shape
    c = cs // (stride * stride)
    return x.view(b, c, stride, stride, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * stride, w * stride)


def norm_modulate_gelu(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Instance norm over each group of ``x.shape[1] / gamma.shape[1]`` channels, CAM's affine, GELU.

    ``x``: (B, C * s * s, h, w), a convolution's output before ``pixel_shuffle(s)``; ``gamma``, ``beta``:
    (B, C). Equal, up to float rounding, to GELU(instance_norm(pixel_shuffle(x)) * gamma + beta) before
    the shuffle. The batch is folded into the channels so that ``group_norm``'s per-channel affine carries
    the per-frame CAM values: normalization and modulation are one fused kernel each way.
    """
    b, channels, h, w = x.shape
    groups = gamma.shape[1]
    per_group = channels // groups
    weight = gamma[..., None].expand(b, groups, per_group).reshape(-1)
    bias = beta[..., None].expand(b, groups, per_group).reshape(-1)
    normalized = F.group_norm(x.reshape(1, b * channels, h, w), b * groups, weight, bias, EPS)
    return F.gelu(normalized).view(b, channels, h, w)


SMALL_CONV_PIXELS = 4096  # at or below this many pixels per frame, im2col + GEMM beats oneDNN on CPU


def conv_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d`` with an odd k x k kernel and k // 2 padding (the output keeps the input's size); on small
    CPU feature maps by im2col, where oneDNN's fixed cost per call (layout reorders) outweighs the
    arithmetic: 2-3x faster at 9x11 to 18x22 pixels for 3x3 kernels.

    The choice depends only on the shape and device, so every run of the same input computes the same bits.
    """
    kernel = weight.shape[-1]
    pad = kernel // 2
    if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] <= SMALL_CONV_PIXELS and x.is_contiguous():
        weight = weight.to(x.dtype)  # under bf16 autocast the input is bfloat16 and the weights float32
        bias = None if bias is None else bias.to(x.dtype)
        # differentiable
        return torch.ops.aten._slow_conv2d_forward(x, weight, [kernel, kernel], bias, [1, 1], [pad, pad])
    return F.conv2d(x, weight, bias, padding=pad)


class ConvSame(nn.Conv2d):
    """``nn.Conv2d(c_in, c_out, k, padding=k // 2)`` (odd k) that computes through ``conv_same``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__(c_in, c_out, kernel_size=kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_same(x, self.weight, self.bias)
