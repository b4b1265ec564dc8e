"""Which of a network's coded tensors are latent grids and which are weights, by name and without torch:
training gives the grids their own learning rate, ``camcodec info`` shows the two apart.

A latent grid holds feature values over time (and space) that the network reads; a weight is part of the
function that reads them. cam-nerv2 names its grids ``stem.grids.N`` (the grid stem), ``latents.B.grid``
(the latent levels) and ``warps.B.grid`` (the flow levels); no other architecture has any.
"""

from __future__ import annotations

LATENT, WEIGHT = "latent", "weight"


def is_latent(name: str) -> bool:
    """Whether the parameter (or file tensor) ``name`` is a latent grid."""
    parts = name.split(".")
    return len(parts) == 3 and (
        parts[:2] == ["stem", "grids"] or (parts[0] in ("latents", "warps") and parts[2] == "grid")
    )


def tensor_role(name: str) -> str:
    """``LATENT`` or ``WEIGHT``."""
    return LATENT if is_latent(name) else WEIGHT
