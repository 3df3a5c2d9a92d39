"""Gibbs-with-Gradients (Grathwohl, Swersky, Hashemi, Duvenaud & Maddison 2021, "Oops I
Took A Gradient: Scalable Sampling for Discrete Distributions").

With f = −E and its gradient (the score s = ∇ₓf, cached in the state), the change of f from
changing one site is estimated to first order:

- binary: d̃_i(x) = (1 − 2x_i) s_i(x), the estimated gain of flipping bit i;
- categorical: d̃_{n,c}(x) = s_{n,c}(x) − ⟨x_n, s_n(x)⟩, the estimated gain of moving site
  n to category c (the current category is excluded).

The proposal picks one change with q(i | x) = softmax(d̃(x)/2)_i, and the move to x′ is
accepted with probability min(1, exp(f(x′) − f(x)) q(i′ | x′) / q(i | x)), where i′ is the
change leading back from x′ to x. One energy evaluation with its gradient per step (at x′;
the values at x are cached), whatever the number of sites.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.discrete_sampler import DiscreteSampler
from ebmflow_discrete.spaces import flat_sites, gumbel_like


def change_logits(space: str, x: Tensor, score: Tensor) -> Tensor:
    """d̃(x)/2 flattened to (B, K): one logit per single-site change (K = D bits, or N·q
    site–category pairs with the current categories at −∞)."""
    if space == "binary":
        return ((1.0 - 2.0 * x) * score).mul_(0.5)
    current = (x * score).sum(dim=-1, keepdim=True)
    logits = (score - current).mul_(0.5).masked_fill_(x > 0, float("-inf"))
    return logits.flatten(1)


class GibbsWithGradients(DiscreteSampler):
    """GWG, one single-site change per step (module docstring). No hyperparameters."""

    component = "gwg"

    def __init__(self) -> None:
        pass

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        space, x, _, score = self.flat_inputs(energy, state)
        rows = torch.arange(x.shape[0], device=x.device)
        logits = change_logits(space, x, score)
        change = torch.argmax(logits + gumbel_like(logits, generator), dim=1)
        proposal = x.clone()
        if space == "binary":
            proposal[rows, change] = 1.0 - proposal[rows, change]
            back = change
        else:
            q = x.shape[2]
            site, category = change // q, change % q
            back = site * q + torch.argmax(x[rows, site], dim=1)
            proposal[rows, site] = 0.0
            proposal[rows, site, category] = 1.0
        x_new = proposal.view_as(state.x)
        e_new, s_new = energy.energy_and_score(x_new)
        assert e_new is not None  # check_compatible refused score-only energies
        logits_back = change_logits(space, proposal, flat_sites(space, s_new))
        # log q(i | x) = logit_i − logsumexp(logits): only the chosen entries are needed,
        # so no full log-softmax is written
        log_q = logits[rows, change] - torch.logsumexp(logits, dim=1)
        log_q_back = logits_back[rows, back] - torch.logsumexp(logits_back, dim=1)
        return self.metropolis_update(state, x_new, e_new, s_new, log_q_back, log_q, generator)
