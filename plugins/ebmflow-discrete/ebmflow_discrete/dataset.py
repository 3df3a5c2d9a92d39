"""Exact samples of a small Ising model, as a dataset (training data with a known answer).

The model is :class:`~ebmflow_discrete.ising.IsingEnergy` with the given arguments; its
2^D states are enumerated once (:func:`~ebmflow_discrete.exact.exact_moments`, D ≤ 16) and
samples are drawn from the exact distribution, so a model trained on them (by
``pseudo-likelihood``, ``ratio-matching`` or ``pcd``) can be compared with the true
couplings.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.exact import exact_moments
from ebmflow_discrete.ising import IsingEnergy


class IsingSamples(ebmflow.Dataset):
    """Exact samples of ``IsingEnergy(side, coupling, field, periodic)``, x ∈ {0, 1}^(side²).

    Args:
        side: the lattice side, side² ≤ 16.
        coupling, field, periodic: as for the ``ising`` energy.
    """

    name = "ising"

    def __init__(
        self, side: int = 4, coupling: float = 0.3, field: float = 0.0, periodic: bool = True
    ) -> None:
        side = ebmflow.check_positive_int("ising dataset", "side", side)
        if side * side > 16:
            raise ebmflow.ConfigError(
                f"ising dataset: side={side} has {side * side} sites; exact sampling "
                "enumerates 2^sites states and accepts side ≤ 4"
            )
        self.energy = IsingEnergy(side, coupling, field, periodic)
        exact = exact_moments(self.energy)
        self._states = exact.states
        self._probs = exact.log_probs.exp()
        self.event_shape = (side * side,)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        if n == 0:
            return self._states[:0].clone()
        index = torch.multinomial(self._probs, n, replacement=True, generator=generator)
        return self._states[index].clone()
