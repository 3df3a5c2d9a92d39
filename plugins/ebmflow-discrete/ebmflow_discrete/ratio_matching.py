"""Ratio matching (Hyvärinen 2007, "Some extensions of score matching"), for binary states.

Score matching's discrete counterpart matches the ratios p(x)/p(flip_i x), which need no
normalising constant. With g(u) = 1/(1 + u), the objective is

    J(x) = Σ_i g(p(x) / p(flip_i x))² = Σ_i σ(E(x) − E(flip_i x))²,

minimised in expectation over the data (Hyvärinen's eq. for binary data; the cross terms
that do not depend on the model are dropped). The loss is mean J over the batch, D + 1
energy evaluations per sample in one batched call.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.spaces import check_discrete_energy, check_states, single_site_changes


class RatioMatching(ebmflow.Objective):
    """Ratio matching for energies over binary states (module docstring).

    Metrics: ``ratio_matching`` (the loss).
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        owner = "ratio-matching"
        space = check_discrete_energy(owner, energy)
        if space != "binary":
            raise ebmflow.ConfigError(
                f"{owner} is defined for binary states, but {type(energy).__name__} is "
                f"{space!r}; use 'pseudo-likelihood' (or 'pcd' with a discrete sampler) for "
                "categorical energies"
            )
        check_states(f"{owner}: the data for {type(energy).__name__}", space, batch)
        n = batch.shape[0]
        flips = single_site_changes(space, batch)
        d = flips.shape[1]
        energies = energy(torch.cat([batch, flips.reshape(n * d, *batch.shape[1:])]))
        e_data, e_flip = energies[:n], energies[n:].view(n, d)
        loss = torch.sigmoid(e_data[:, None] - e_flip).square().sum(dim=1).mean()
        value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            raise ebmflow.NonFiniteLossError(
                f"{owner}: the loss is not finite ({value}); lower the learning rate"
            )
        return ebmflow.ObjectiveOutput(loss, {"ratio_matching": value})
