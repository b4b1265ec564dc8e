"""Training against the rate: learned quantization steps and a differentiable estimate of the coded bits.

Every parameter gets step sizes (one per output channel where ``quantize.per_channel`` says so, else one
for the tensor), learned with the network as log-steps. While training, the forward pass sees
``w + s * u`` with ``u ~ U(-1/2, 1/2)``: additive noise stands in for rounding (Ballé et al.; C3 and
Cool-Chic do the same), so the network learns to live with its quantization error. The rate of the
symbols ``x = w / s + u`` is estimated under a zero-mean Laplace distribution per tensor, discretized
to the integers, with the scale that fits the tensor best (the mean ``|x|``): the file codes each tensor
with a frequency table fitted to its own histogram, which for these near-Laplacian weights costs close
to that estimate. Training then minimizes ``ln(distortion) + kappa * bpp / nominal_bpp``
(``train.rate_term``): weights that buy little distortion are pulled towards zero, where they cost least.

After training the steps are frozen on the grid of the file's float32 steps (``snapped``), a common
factor is searched to land the target size, and rounding (straight-through) replaces the noise for the last phase,
so that the decoder's weights are exactly the ones the encoder evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from camcodec.model.common import VideoModel
from camcodec.quantize import ChannelAxis, channel_scales, fake_quantize_at

LOG2 = math.log(2.0)
# A tensor that starts at zero (CAM grid offsets) has no size to take its step from; a step of 1 (what
# the file-side quantizer uses) would drown it in noise, so it starts fine and the rate term coarsens it.
ZERO_TENSOR_STEP = 1e-3
MIN_LAPLACE_SCALE = 0.05  # in steps: below it a tensor is all zeros, and the estimate's gradient explodes
# The file's steps lie on a grid of 2^(1/32) (2.2 % apart): their float32 bytes then repeat and the
# deflated tensor table holds them in ~2 bytes instead of 4 (613 bytes less on a 72k-weight file; a
# 2^(1/16) grid saved 743 but moved all steps in 4.4 % jumps, and the target was landed 2.6 % short).
STEPS_PER_OCTAVE = 32


def laplace_bits(x: torch.Tensor, tensor_index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bits to code the symbols ``x`` (in steps; element i belongs to tensor ``tensor_index[i]``) rounded
    to integers, each tensor under the discretized zero-mean Laplace whose scale is its mean ``|x|``:
    the sum of ``-log2 P(|x| - 1/2 < X < |x| + 1/2)``. Differentiable in ``x``."""
    return _LaplaceBits.apply(x, tensor_index, counts)


class _LaplaceBits(torch.autograd.Function):
    """``laplace_bits`` with its gradient computed in the forward pass: one multiply backwards instead of
    autograd's graph of a few dozen passes over all weights (the estimate runs at every training step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tensor_index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        # Per-tensor sums by index_add, per-tensor values spread to the elements by one index_select of a
        # few columns: on the CPU several times faster than indexing with [tensor_index] one at a time.
        a = x.abs()
        mean = torch.zeros_like(counts).index_add_(0, tensor_index, a) / counts
        scale = mean.clamp_min(MIN_LAPLACE_SCALE)
        inv_scale = 1 / scale
        spread = torch.stack([inv_scale, LOG2 - torch.log1p(-torch.exp(-inv_scale)), 1 / torch.expm1(inv_scale)], 1)
        inv, tail_offset, tail_by_scale = spread.index_select(0, tensor_index).unbind(1)
        tail = a >= 0.5
        # |x| >= 1/2: P = exp(-(|x| - 1/2) / b) * (1 - exp(-1/b)) / 2, in logs for tiny tails.
        beyond_half = a - 0.5
        excess = beyond_half.clamp_min(0)
        # |x| < 1/2: P = 1 - (near + far) / 2, near = exp(-(1/2 - |x|) / b), far = exp(-(1/2 + |x|) / b).
        near = torch.exp(beyond_half.clamp_max_(0) * inv)
        far = torch.exp(-(0.5 + a) * inv)
        centre_p = (1 - 0.5 * (near + far)).clamp_min_(1e-9)
        nats = torch.where(tail, excess * inv + tail_offset, -torch.log(centre_p))
        # Derivatives of each symbol's nats in |x| and in its tensor's scale b; the scale (the mean |x|)
        # passes its share back to every value of the tensor.
        by_a = torch.where(tail, inv, 0.5 * inv * (near - far) / centre_p)
        by_scale = (
            inv * inv * torch.where(tail, tail_by_scale - excess, 0.5 * (near * (0.5 - a) + far * (0.5 + a)) / centre_p)
        )
        per_tensor = torch.zeros_like(counts).index_add_(0, tensor_index, by_scale) / counts
        per_tensor = torch.where(mean > MIN_LAPLACE_SCALE, per_tensor, 0.0)  # a clamped scale is constant
        ctx.save_for_backward((by_a + per_tensor.index_select(0, tensor_index)) * torch.sign(x) / LOG2)
        return nats.sum() / LOG2

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


def initial_steps(weight: torch.Tensor, levels: int, axis: ChannelAxis) -> torch.Tensor:
    """max |w| / levels per channel (or tensor), ``ZERO_TENSOR_STEP`` where that is zero."""
    return channel_scales(weight, levels, axis, zero_step=ZERO_TENSOR_STEP)


class LearnedSteps(nn.Module):
    """Log step sizes for every parameter of a model, trained with it (see the module docstring).

    All parameters are handled as one flat vector, so that a training step adds a dozen operations
    whatever the number of tensors.
    """

    step_index: torch.Tensor
    tensor_index: torch.Tensor
    counts: torch.Tensor
    kappa: torch.Tensor

    def __init__(self, model: VideoModel, levels: int, axes: dict[str, ChannelAxis], nominal_bpp: float, kappa: float):
        """Steps start where ``levels`` levels per side would put them today (max |w| / levels);
        ``nominal_bpp`` is the rate the training aims at and ``kappa`` the rate term's weight
        (``train.rate_term``), a buffer so that ``steer`` can move it and checkpoints keep it."""
        super().__init__()
        self.nominal_bpp = nominal_bpp
        self.levels, self.axes = levels, axes
        self._fixed: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None  # (steps, one per element)
        params = dict(model.named_parameters())
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.sizes = [p.numel() for p in params.values()]
        steps = [initial_steps(p, levels, axes[name]) for name, p in params.items()]
        self.step_counts = [s.numel() for s in steps]
        device = steps[0].device
        self.log_steps = nn.Parameter(torch.cat(steps).log())
        # Element i of the flat weights uses step step_index[i] and belongs to tensor tensor_index[i]:
        # a tensor's channels are contiguous runs of its row-major elements.
        first_step = torch.tensor([0, *self.step_counts], device=device).cumsum(0)[:-1]
        self.register_buffer(
            "step_index",
            torch.cat(
                [
                    torch.arange(int(first), int(first) + n, device=device).repeat_interleave(size // n)
                    for first, n, size in zip(first_step, self.step_counts, self.sizes, strict=True)
                ]
            ),
        )
        self.register_buffer(
            "tensor_index", torch.cat([torch.full((size,), i, device=device) for i, size in enumerate(self.sizes)])
        )
        self.register_buffer("counts", torch.tensor(self.sizes, dtype=torch.float32, device=device))
        self.register_buffer("kappa", torch.tensor(kappa, device=device))

    @torch.no_grad()
    def steer(self, bpp: torch.Tensor, gain: float, target_bpp: float) -> None:
        """Integral control of the rate term: ln kappa moves by ``gain`` x ln(``bpp`` / ``target_bpp``), so
        that the estimated rate settles at the target, whatever the clip and the length of training."""
        self.kappa.mul_(torch.exp(gain * torch.log(bpp / target_bpp)))

    @torch.no_grad()
    def restart(self, model: VideoModel) -> None:
        """Steps as the constructor would set them for the model's weights now (training switching from
        float weights to noisy ones part-way)."""
        params = dict(model.named_parameters())
        steps = [initial_steps(params[name], self.levels, self.axes[name]) for name in self.names]
        self.log_steps.copy_(torch.cat(steps).log())

    def noisy(
        self, params: Mapping[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(the weights with quantization noise drawn from ``generator``, the estimated bits of all their
        symbols)."""
        w = torch.cat([params[name].reshape(-1) for name in self.names])
        s = self.log_steps.exp().index_select(0, self.step_index)
        x = w / s + (torch.rand(w.shape, generator=generator, device=w.device) - 0.5)
        noisy = (x * s).split(self.sizes)
        weights = {name: v.view(shape) for name, v, shape in zip(self.names, noisy, self.shapes, strict=True)}
        return weights, laplace_bits(x, self.tensor_index, self.counts)

    def rounded(
        self, params: Mapping[str, torch.Tensor], steps: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(the weights the decoder will use with the fixed ``steps``, straight-through; the estimated bits
        of their symbols, so that fine-tuning keeps paying for the rate instead of letting it grow)."""
        weights = {name: fake_quantize_at(params[name], steps[name]) for name in self.names}
        w = torch.cat([params[name].reshape(-1) for name in self.names])
        if self._fixed is None or self._fixed[0] is not steps:  # expanded once per fine-tuning, not per step
            self._fixed = (steps, torch.cat([steps[name] for name in self.names])[self.step_index])
        return weights, laplace_bits(w / self._fixed[1], self.tensor_index, self.counts)

    @torch.no_grad()
    def frozen(self, factor: float = 1.0) -> dict[str, torch.Tensor]:
        """The steps times ``factor`` as the float32 values the file will store, by parameter name."""
        steps = snapped(self.log_steps.exp() * factor).split(self.step_counts)
        return dict(zip(self.names, steps, strict=True))


def snapped(steps: torch.Tensor) -> torch.Tensor:
    """Steps rounded to the nearest power of 2^(1 / STEPS_PER_OCTAVE), as float32."""
    return torch.exp2(torch.round(torch.log2(steps.double()) * STEPS_PER_OCTAVE) / STEPS_PER_OCTAVE).float()
