"""The optimizers a training phase can run: Adam, or SOAP for the weight matrices (docs/architecture.md, 24-25)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

OPTIMIZERS = ("adam", "soap")


def make_optimizer(
    kind: str, groups: list[dict[str, Any]], lr: float, betas: tuple[float, float]
) -> torch.optim.Optimizer:
    """The optimizer ``kind`` over ``groups``; with ``soap``, the matrices of the groups marked ``precondition``
    are preconditioned and every other tensor takes Adam's step."""
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, fused=True)
    if kind == "soap":
        return Soap(groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {kind!r}")


class Soap(torch.optim.Optimizer):
    """SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"): Adam run in the
    eigenbasis of Shampoo's Kronecker factors.

    A matrix (a convolution's weight read as out x in·k·k) of a group with ``precondition`` keeps the factors
    L = E[G Gᵀ] and R = E[Gᵀ G] (decay ``betas[1]``) and both of Adam's moments in their eigenbasis; the bases
    start from an eigendecomposition of the first gradient's factors (that step moves nothing) and follow the
    factors by one power iteration and a QR every ``refresh_every`` steps. A side longer than ``max_side`` is
    left in its own basis. Every other tensor takes Adam's step. A NeRV trains further per step than with Adam:
    at equal encode time (`fast`), -17 % bits at equal PSNR on the dev set and -12 % on the held-out clips
    (docs/architecture.md, section 25)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        refresh_every: int = 10,
        max_side: int = 512,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "refresh_every": refresh_every,
            "max_side": max_side,
            "precondition": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One step of every tensor with a gradient; the elementwise work runs as ``torch._foreach`` ops over
        all of a group's tensors at once (at a NeRV's sizes a step is mostly the cost of launching ops)."""
        assert closure is None, "Soap takes no closure"
        for group in self.param_groups:
            params, moment_grads, matrix_grads = [], [], []
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if group["precondition"] and param.dim() >= 2:
                    matrix = param.grad.reshape(param.shape[0], -1)
                    if not state:
                        self._start(matrix, state, group["max_side"])
                        continue
                    grad = _rotate(state, matrix)
                else:
                    matrix, grad = None, param.grad
                    if not state:
                        state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
                state["step"] += 1
                params.append(param)
                moment_grads.append(grad)
                matrix_grads.append(matrix)
            if params:
                self._adam_update(params, moment_grads, matrix_grads, group)
                self._precondition_update(params, matrix_grads, group)

    def _adam_update(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        matrix_grads: list[torch.Tensor | None],
        group: dict[str, Any],
    ) -> None:
        """Adam's step computed on ``grads`` (rotated ones for the preconditioned matrices, those with a
        ``matrix_grads`` entry), taken back to each parameter's basis."""
        beta1, beta2 = group["betas"]
        states = [self.state[param] for param in params]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        directions = list(torch._foreach_div(exp_avgs, [1 - beta1 ** s["step"] for s in states]))
        scales = torch._foreach_div(exp_avg_sqs, [1 - beta2 ** s["step"] for s in states])
        torch._foreach_sqrt_(scales)
        torch._foreach_add_(scales, group["eps"])
        torch._foreach_div_(directions, scales)
        for index, matrix in enumerate(matrix_grads):
            if matrix is not None:
                directions[index] = _unrotate(states[index], directions[index]).reshape(params[index].shape)
        torch._foreach_add_(params, directions, alpha=-group["lr"])

    def _precondition_update(
        self, params: list[torch.Tensor], matrix_grads: list[torch.Tensor | None], group: dict[str, Any]
    ) -> None:
        """The preconditioned matrices' factors take in their gradients; their bases follow every
        ``refresh_every`` steps."""
        for param, matrix in zip(params, matrix_grads, strict=True):
            if matrix is None:
                continue
            state = self.state[param]
            _accumulate(state, matrix, group["betas"][1])
            if state["step"] % group["refresh_every"] == 0:
                _refresh_bases(state)

    @staticmethod
    def _start(grad: torch.Tensor, state: dict[str, Any], max_side: int) -> None:
        rows, cols = grad.shape
        state.update(
            step=0,
            exp_avg=torch.zeros_like(grad),
            exp_avg_sq=torch.zeros_like(grad),
            left=grad.new_zeros(rows, rows) if rows <= max_side else None,
            right=grad.new_zeros(cols, cols) if cols <= max_side else None,
        )
        _accumulate(state, grad, 0.0)
        state["left_basis"] = _eigenbasis(state["left"])
        state["right_basis"] = _eigenbasis(state["right"])


def _accumulate(state: dict[str, Any], grad: torch.Tensor, beta: float) -> None:
    """The Kronecker factors' running averages, ``beta`` of the old (0: the first gradient's alone)."""
    if state["left"] is not None:
        state["left"].addmm_(grad, grad.T, beta=beta, alpha=1 - beta)
    if state["right"] is not None:
        state["right"].addmm_(grad.T, grad, beta=beta, alpha=1 - beta)


def _eigenbasis(factor: torch.Tensor | None) -> torch.Tensor | None:
    """Eigenvectors of ``factor``, largest eigenvalue first (in float64: the first factor has rank 1 or 2)."""
    if factor is None:
        return None
    eye = torch.eye(factor.shape[0], dtype=torch.float64, device=factor.device)
    _, vectors = torch.linalg.eigh(factor.double() + 1e-30 * eye)
    return vectors.flip(1).to(factor.dtype)


def _rotate(state: dict[str, Any], matrix: torch.Tensor) -> torch.Tensor:
    if state["left_basis"] is not None:
        matrix = state["left_basis"].T @ matrix
    if state["right_basis"] is not None:
        matrix = matrix @ state["right_basis"]
    return matrix


def _unrotate(state: dict[str, Any], matrix: torch.Tensor) -> torch.Tensor:
    if state["left_basis"] is not None:
        matrix = state["left_basis"] @ matrix
    if state["right_basis"] is not None:
        matrix = matrix @ state["right_basis"].T
    return matrix


def _refresh_bases(state: dict[str, Any]) -> None:
    """One power iteration and a QR per side. The second moment's rows (left) and columns (right) follow
    their basis vectors, re-sorted by the factor's current estimate of their eigenvalue; the first moment
    is carried into the new bases."""
    exp_avg, exp_avg_sq = _unrotate(state, state["exp_avg"]), state["exp_avg_sq"]
    for side in ("left", "right"):
        factor, basis = state[side], state[side + "_basis"]
        if factor is None:
            continue
        order = torch.argsort(torch.diag(basis.T @ factor @ basis), descending=True)
        exp_avg_sq = exp_avg_sq[order, :] if side == "left" else exp_avg_sq[:, order]
        state[side + "_basis"], _ = torch.linalg.qr(factor @ basis[:, order])
    state["exp_avg"], state["exp_avg_sq"] = _rotate(state, exp_avg), exp_avg_sq
