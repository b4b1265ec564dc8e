"""The upsampling block's operations in faster forms: the same function as the plain PyTorch ops, with
fewer memory passes and less fixed cost per call. CPU training is bound by both at NeRV's small widths.

* ``norm_modulate_gelu``: ``F.instance_norm``, a per-frame affine and GELU cost autograd a dozen passes
  over the block's largest tensor. Here they run on the convolution's output *before* the shuffle (they
  commute with it: the statistics of output channel c after the shuffle are those of its s x s input
  channels, which ``group_norm`` with one group per output channel computes), with a hand-written
  backward pass.
* ``pixel_shuffle``: one permuted copy, ~2x faster than ``F.pixel_shuffle`` on CPU.
* ``conv3x3`` / ``Conv3x3``: small CPU feature maps go through im2col + GEMM instead of oneDNN.
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


class _NormModulateGelu(torch.autograd.Function):
    """GELU(gamma * (x - mean) / std + beta) per (frame, group of channels); gamma, beta: (B, groups)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        b, channels, h, w = x.shape
        groups = gamma.shape[1]
        x, gamma, beta = x.contiguous(), gamma.contiguous(), beta.contiguous()
        normalized, _, rstd = torch.ops.aten.native_group_norm(x, None, None, b, channels, h * w, groups, EPS)
        normalized = normalized.view(b, groups, -1)
        modulated = torch.addcmul(beta[..., None], normalized, gamma[..., None])
        ctx.save_for_backward(normalized, modulated, rstd, gamma)
        return F.gelu(modulated).view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        normalized, modulated, rstd, gamma = ctx.saved_tensors
        count = normalized.shape[2]
        grad_modulated = torch.ops.aten.gelu_backward(grad.reshape(modulated.shape), modulated)
        grad_beta = grad_modulated.sum(2)
        grad_gamma = torch.linalg.vecdot(grad_modulated, normalized, dim=2)
        # d/dx of the normalization: rstd * (g - mean(g) - xhat * mean(g * xhat)), g = gamma * grad_modulated.
        scale = (gamma * rstd.view_as(gamma))[..., None]
        grad_x = torch.addcmul((-scale / count) * grad_beta[..., None], grad_modulated, scale)
        grad_x.addcmul_(normalized, (-scale / count) * grad_gamma[..., None])
        return grad_x.view_as(grad), grad_gamma, grad_beta


def norm_modulate_gelu(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Instance norm over each group of ``x.shape[1] / gamma.shape[1]`` channels, CAM's affine, GELU.

    ``x``: (B, C * s * s, h, w), a convolution's output before ``pixel_shuffle(s)``; ``gamma``, ``beta``:
    (B, C). Equal, up to float rounding, to GELU(instance_norm(pixel_shuffle(x)) * gamma + beta) before
    the shuffle.
    """
    return _NormModulateGelu.apply(x, gamma, beta)


SMALL_CONV_PIXELS = 4096  # at or below this many pixels per frame, im2col + GEMM beats oneDNN on CPU


class _Im2colConv3x3(torch.autograd.Function):
    """A 3x3, stride 1, padding 1 convolution by ATen's im2col + GEMM kernels, forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.ops.aten._slow_conv2d_forward(x, weight, [3, 3], bias, [1, 1], [1, 1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        return torch.ops.aten._slow_conv2d_backward(grad.contiguous(), x, weight, [3, 3], [1, 1], [1, 1],
                                                    [True, True, True])


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)``; on small CPU feature maps by im2col, where oneDNN's fixed
    cost per call (layout reorders) outweighs the arithmetic: 2-3x faster at 9x11 to 18x22 pixels.

    The choice depends only on the shape and device, so every run of the same input computes the same bits.
    """
    if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] <= SMALL_CONV_PIXELS and x.is_contiguous():
        return _Im2colConv3x3.apply(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=1)


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(c_in, c_out, 3, padding=1)`` that computes through ``conv3x3``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3x3(x, self.weight, self.bias)
