"""Which of a network's coded tensors are latent grids and which are weights, by name and without torch:
training gives the grids their own learning rate, ``camcodec info`` shows the two apart.

A latent grid holds feature values over time (and space) that the network reads; a weight is part of the
function that reads them. cam-nerv2 names its grids ``stem.grids.N`` (the grid stem) and
``latents.B.grid`` (the latent levels); no other architecture has any.
"""

from __future__ import annotations

LATENT, WEIGHT = "latent", "weight"


def is_latent(name: str) -> bool:
    """Whether the parameter (or file tensor) ``name`` is a latent grid."""
    parts = name.split(".")
    return (parts[:2] == ["stem", "grids"] and len(parts) == 3) or (
        parts[0] == "latents" and parts[-1] == "grid" and len(parts) == 3
    )


def tensor_role(name: str) -> str:
    """``LATENT`` or ``WEIGHT``."""
    return LATENT if is_latent(name) else WEIGHT
