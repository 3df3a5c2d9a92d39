"""Pseudo-likelihood (Besag 1975, "Statistical Analysis of Non-Lattice Data").

The log-likelihood is replaced by the sum of the log conditionals of each site given the
others, which need no normalising constant:

    PL(x) = Σ_n log p(x_n | x_{−n}) = Σ_n [−E(x) − logsumexp_{x′ ∈ N_n(x)} (−E(x′))],

where N_n(x) are the states that agree with x except possibly at site n (x itself
included). For binary states this is Σ_i −softplus(E(x) − E(flip_i x)). The loss is
−mean PL over the batch; each sample costs D + 1 (binary) or N·q (categorical) energy
evaluations, batched into one call. Consistent for fully visible models such as the Ising
and Potts models.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

import ebmflow
from ebmflow_discrete.spaces import check_discrete_energy, check_states, single_site_changes


class PseudoLikelihood(ebmflow.Objective):
    """Negative mean pseudo-log-likelihood of a discrete energy (module docstring).

    Metrics: ``pseudo_nll`` (the loss) and ``pseudo_nll_per_site``.
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        owner = "pseudo-likelihood"
        space = check_discrete_energy(owner, energy)
        check_states(f"{owner}: the data for {type(energy).__name__}", space, batch)
        n = batch.shape[0]
        neighbours = single_site_changes(space, batch)
        k = neighbours.shape[1]
        energies = energy(torch.cat([batch, neighbours.reshape(n * k, *batch.shape[1:])]))
        e_data, e_near = energies[:n], energies[n:].view(n, k)
        if space == "binary":
            per_sample = F.softplus(e_data[:, None] - e_near).sum(dim=1)
            sites = k
        else:
            q = batch.shape[-1]
            sites = k // q
            log_norm = torch.logsumexp(-e_near.view(n, sites, q), dim=2)
            per_sample = (e_data[:, None] + log_norm).sum(dim=1)
        loss = per_sample.mean()
        value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            raise ebmflow.NonFiniteLossError(
                f"{owner}: the loss is not finite ({value}); lower the learning rate"
            )
        return ebmflow.ObjectiveOutput(
            loss, {"pseudo_nll": value, "pseudo_nll_per_site": value / sites}
        )
