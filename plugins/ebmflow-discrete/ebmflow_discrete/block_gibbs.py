"""Block Gibbs sampling for energies whose conditionals factorise in blocks (the RBM).

The energy provides ``block_gibbs(x, generator) -> x′``, one exact block-Gibbs sweep (for
:class:`~ebmflow_discrete.rbm.BernoulliRBM`: h ~ p(h | v), then v′ ~ p(v | h)); the sampler
runs it on a batch of chains and keeps the energies of the new states. One energy
evaluation per step (the new states' energies, which the sweep itself does not need).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.discrete_sampler import DiscreteSampler


class BlockGibbs(DiscreteSampler):
    """Block Gibbs sampler for energies with a ``block_gibbs`` method (module docstring)."""

    component = "block-gibbs"
    uses_score = False
    event_spaces = ("binary",)

    def __init__(self) -> None:
        pass

    def check_compatible(self, energy: ebmflow.Energy, x: Tensor) -> None:
        super().check_compatible(energy, x)
        if not callable(getattr(energy, "block_gibbs", None)):
            raise ebmflow.ConfigError(
                f"{self.name}: {type(energy).__name__} has no block_gibbs(x, generator) "
                "method; block Gibbs needs an energy whose conditionals factorise in blocks "
                "(such as 'rbm'); use 'gibbs', 'gwg' or 'dmala' for other discrete energies"
            )

    @torch.no_grad()
    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        sweep: Any = energy.block_gibbs
        x_new = sweep(state.x, generator)
        e_new = energy(x_new)
        ebmflow.check_finite(self.name, state.step + 1, e_new, x_new)
        return state.replace(
            x=x_new, energy=e_new, step=state.step + 1, extras=self.counted(state, 1)
        )
