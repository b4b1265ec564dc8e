"""The training optimizers: SOAP's step, its state, and the choice between it and Adam."""

from __future__ import annotations

import copy

import pytest
import torch

import camcodec
from camcodec.config import resolve_config
from camcodec.optim import Soap, make_optimizer


def least_squares(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A badly conditioned problem: find W (6 x 12) with W X = Y, X's directions scaled over two decades in a
    basis that is not the coordinates' (Adam's diagonal scaling cannot undo it, a Kronecker factor can)."""
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, generator=generator))
    inputs = rotation @ (torch.randn(12, 64, generator=generator) * torch.logspace(0, 2, 12).unsqueeze(1))
    target = torch.randn(6, 12, generator=generator) @ inputs
    return inputs, target


def train(optimizer: torch.optim.Optimizer, weight: torch.Tensor, steps: int) -> float:
    inputs, target = least_squares()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (weight @ inputs - target).pow(2).mean()
        loss.backward()
        optimizer.step()
    return (weight @ inputs - target).pow(2).mean().item()


def test_soap_preconditions_a_badly_conditioned_matrix_better_than_adam():
    losses = {}
    for kind in ("adam", "soap"):
        weight = torch.zeros(6, 12, requires_grad=True)
        optimizer = make_optimizer(kind, [{"params": [weight], "precondition": True}], 0.05, (0.9, 0.99))
        losses[kind] = train(optimizer, weight, 150)
    start = least_squares()[1].pow(2).mean().item()
    assert losses["soap"] < 1e-4 * start  # 3e-6 x
    assert losses["soap"] < 0.01 * losses["adam"]  # Adam: 3e-3 x


def test_soap_keeps_orthonormal_bases_ordered_by_eigenvalue():
    weight = torch.zeros(6, 12, requires_grad=True)
    optimizer = Soap([weight], lr=0.05, refresh_every=3)
    train(optimizer, weight, 31)
    state = optimizer.state[weight]
    for side in ("left", "right"):
        basis, factor = state[side + "_basis"], state[side]
        assert torch.allclose(basis.T @ basis, torch.eye(basis.shape[0]), atol=1e-5)
        estimates = torch.diag(basis.T @ factor @ basis)
        assert estimates[0] >= estimates[-1]  # re-sorted at each refresh, one power iteration behind


def test_tensors_not_preconditioned_take_adams_step():
    vector, grid = torch.randn(5, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)
    twins = [tensor.detach().clone().requires_grad_() for tensor in (vector, grid)]
    soap = Soap([{"params": [vector]}, {"params": [grid], "precondition": False}], lr=0.01)
    adam = torch.optim.Adam(twins, lr=0.01, betas=(0.9, 0.99), foreach=False)
    for step in range(5):
        for optimizer, params in ((soap, (vector, grid)), (adam, twins)):
            optimizer.zero_grad()
            sum(
                (p * torch.linspace(-1, 1, p.numel()).reshape(p.shape) * (step + 1)).pow(2).sum() for p in params
            ).backward()
            optimizer.step()
    assert torch.allclose(vector, twins[0], rtol=1e-5, atol=1e-7)
    assert torch.allclose(grid, twins[1], rtol=1e-5, atol=1e-7)


def test_soap_resumes_from_its_state_dict_to_the_same_weights():
    """A checkpoint holds the optimizer's state_dict: a resumed run must continue exactly."""
    weight = torch.zeros(6, 12, requires_grad=True)
    optimizer = Soap([weight], lr=0.05, refresh_every=4)
    train(optimizer, weight, 9)
    saved_weight, saved_state = weight.detach().clone(), copy.deepcopy(optimizer.state_dict())
    train(optimizer, weight, 10)
    resumed_weight = saved_weight.clone().requires_grad_()
    resumed = Soap([resumed_weight], lr=0.05, refresh_every=4)
    resumed.load_state_dict(saved_state)
    train(resumed, resumed_weight, 10)
    assert torch.equal(resumed_weight, weight)


def test_the_optimizer_is_an_encode_option():
    assert resolve_config(optimizer="soap").optimizer == "soap"
    with pytest.raises(camcodec.InputError, match="--optimizer"):
        resolve_config(optimizer="sgd").validate()
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgd", [{"params": [torch.zeros(2, requires_grad=True)]}], 0.1, (0.9, 0.99))
