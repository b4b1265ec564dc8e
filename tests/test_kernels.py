"""The hand-written block kernels equal the plain PyTorch ops they replace, forward and backward."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from camcodec.kernels import SMALL_CONV_PIXELS, conv_same, norm_modulate_gelu, pixel_shuffle
from camcodec.model import grid_weights


def reference_block(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, stride: int) -> torch.Tensor:
    """The block as NeRV/CAM write it: shuffle, instance norm, per-frame affine, GELU."""
    y = F.instance_norm(F.pixel_shuffle(x, stride), eps=1e-5)
    return F.gelu(y * gamma[:, :, None, None] + beta[:, :, None, None])


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_pixel_shuffle_equals_torch(stride):
    x = torch.randn(2, 5 * stride * stride, 4, 7)
    assert torch.equal(pixel_shuffle(x, stride), F.pixel_shuffle(x, stride))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_norm_modulate_gelu_matches_reference_forward_and_backward(stride):
    torch.manual_seed(0)
    x = (3 * torch.randn(2, 4 * stride * stride, 5, 6, dtype=torch.float64) + 1).requires_grad_()
    gamma = (1 + 0.3 * torch.randn(2, 4, dtype=torch.float64)).requires_grad_()
    beta = (0.3 * torch.randn(2, 4, dtype=torch.float64)).requires_grad_()
    grad = torch.randn(2, 4, 5 * stride, 6 * stride, dtype=torch.float64)

    ours = pixel_shuffle(norm_modulate_gelu(x, gamma, beta), stride)
    ours_grads = torch.autograd.grad(ours, (x, gamma, beta), grad)
    ref = reference_block(x, gamma, beta, stride)
    ref_grads = torch.autograd.grad(ref, (x, gamma, beta), grad)

    torch.testing.assert_close(ours, ref)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_norm_modulate_gelu_passes_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    gamma = (1 + 0.2 * torch.randn(2, 2, dtype=torch.float64)).requires_grad_()
    beta = (0.2 * torch.randn(2, 2, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(norm_modulate_gelu, (x, gamma, beta))


def test_norm_modulate_gelu_takes_non_contiguous_modulation():
    x = torch.randn(3, 8, 4, 4)
    gamma, beta = torch.randn(2, 3).t(), torch.randn(2, 3).t()  # (B, C) views, as grid products may give
    torch.testing.assert_close(pixel_shuffle(norm_modulate_gelu(x, gamma, beta), 2), reference_block(x, gamma, beta, 2))


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("size", [(5, 7), (64, 80)])  # the im2col path and the oneDNN path
def test_conv_same_matches_conv2d_forward_and_backward(size, kernel):
    torch.manual_seed(2)
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, kernel, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 4, *size, dtype=torch.float64)
    ours = conv_same(x, weight, bias)
    ref = F.conv2d(x, weight, bias, padding=kernel // 2)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(
        torch.autograd.grad(ours, (x, weight, bias), grad),
        torch.autograd.grad(ref, (x, weight, bias), grad),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    assert (size[0] * size[1] <= SMALL_CONV_PIXELS) == (ours.grad_fn.name() != ref.grad_fn.name())


def test_grid_weights_rows_interpolate_two_neighbours():
    weights = grid_weights(torch.tensor([0.0, 0.1, 0.5, 1.0]), 5)
    assert weights.shape == (4, 5)
    torch.testing.assert_close(weights.sum(1), torch.ones(4))
    assert weights[0].tolist() == [1, 0, 0, 0, 0] and weights[3].tolist() == [0, 0, 0, 0, 1]
    assert weights[1].tolist() == pytest.approx([0.6, 0.4, 0, 0, 0])
    assert (weights > 0).sum(1).max() <= 2


_ALLOCATOR_PROBE = """
import ctypes, torch
from camcodec.device import freed_cpu_memory_kept

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = MallInfo2, ctypes.c_void_p

def mapped():  # whether glibc serves 16 MiB with an mmap of its own rather than from the heap
    before = libc.mallinfo2().hblks
    block = libc.malloc(16 << 20)
    answer = libc.mallinfo2().hblks > before
    libc.free(ctypes.c_void_p(block))
    return answer

cpu = torch.device("cpu")
seen = []
with freed_cpu_memory_kept(cpu) as applied:
    seen += [applied, mapped()]
    with freed_cpu_memory_kept(cpu):  # nested (or another thread's): the first to end changes nothing
        pass
    seen.append(mapped())
seen.append(mapped())
with freed_cpu_memory_kept(torch.device("meta")) as applied:
    seen.append(applied)
print(seen)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_freed_cpu_memory_is_kept_inside_the_block_only():
    """Training and decoding keep freed memory for reuse (no fresh mmap per tensor); when the last block
    ends, glibc's thresholds are the process's again (here its defaults: a fresh process without
    MALLOC_MMAP_THRESHOLD_), so an application embedding camcodec keeps its own. Not a CPU: nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    applied, inside, nested, after, not_cpu = ast.literal_eval(result.stdout)
    assert applied and not inside and not nested and after and not not_cpu
