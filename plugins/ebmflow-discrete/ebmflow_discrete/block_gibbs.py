"""Block Gibbs sampling for energies whose conditionals factorise in blocks (the RBM).

The energy provides ``block_gibbs(x, generator, cache) -> (x′, E(x′), cache′)``, one exact
block-Gibbs sweep (for :class:`~ebmflow_discrete.rbm.BernoulliRBM`: h ~ p(h | v), then
v′ ~ p(v | h)) that also returns the new states' energies and an opaque tensor the next
sweep reuses (the RBM's hidden input v′W + c, which both F(v′) and p(h | v′) need), so that
reporting energies costs no extra matrix product. The sampler keeps the cache in
``state.extras["block_cache"]``; one step counts as one energy evaluation. The sweep runs
without autograd (the RBM's is decorated with ``torch.no_grad``).
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
                f"{self.name}: {type(energy).__name__} has no block_gibbs(x, generator, cache) "
                "method; block Gibbs needs an energy whose conditionals factorise in blocks "
                "(such as 'rbm'); use 'gibbs', 'gwg' or 'dmala' for other discrete energies"
            )

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        sweep: Any = energy.block_gibbs
        x_new, e_new, cache = sweep(state.x, generator, state.extras.get("block_cache"))
        ebmflow.check_finite(self.name, state.step + 1, e_new, x_new)
        return state.replace(
            x=x_new, energy=e_new, step=state.step + 1, extras={"block_cache": cache}
        )
