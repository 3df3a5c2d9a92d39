"""Metropolis-adjusted Langevin algorithm (MALA; Roberts & Tweedie 1996).

Proposal (one ULA step):  x' = x + η s(x) + √(2η) ξ,  s = −∇ₓE,  ξ ~ N(0, I)
Accept with probability   α = min(1, exp(E(x) − E(x') + log q(x | x') − log q(x' | x)))
where                     log q(a | b) = −‖a − b − η s(b)‖² / (4η).

Since x − x' − η s(x') = −√(2η) (ξ + a u) with a = √(η/2) and u = s(x) + s(x'), the
proposal ratio is log q(x | x') − log q(x' | x) = −½‖ξ + a u‖² + ½‖ξ‖² = −a ⟨u, ξ + (a/2) u⟩,
one dot product per chain. The state caches E and s at the current point, so a step costs
one energy+gradient evaluation (at x'), the same as ULA.
"""

from __future__ import annotations

import math

import torch

from ebmflow.energy import Energy
from ebmflow.samplers.base import Sampler, SamplerState, gaussian_like, per_row
from ebmflow.samplers.metropolis import energy_value, metropolis_accept, row_dot, select
from ebmflow.validation import check_positive


class MALA(Sampler):
    """MALA with step size η > 0; reports the acceptance rate."""

    needs_energy = True

    def __init__(self, step_size: float = 0.01) -> None:
        self.step_size = check_positive("mala", "step_size", step_size)

    @property
    def name(self) -> str:
        return "mala"

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        eta = self.step_size
        x, e, s = state.x, energy_value(self.name, state.energy), state.score
        xi = gaussian_like(x, generator)
        x_prop = torch.add(x, s, alpha=eta).add_(xi, alpha=math.sqrt(2.0 * eta))
        e_prop_or_none, s_prop = energy.energy_and_score(x_prop, state.sigma)
        e_prop = energy_value(self.name, e_prop_or_none)
        a = math.sqrt(eta / 2.0)
        u = s + s_prop
        log_ratio = row_dot(u, torch.add(xi, u, alpha=a / 2))
        log_alpha = torch.sub(e, e_prop).add_(log_ratio, alpha=-a)
        accept, prob = metropolis_accept(self.name, state.step, log_alpha, e_prop, generator)
        mask = per_row(accept, x.shape[1:])
        return SamplerState(
            select(mask, x_prop, x),
            torch.where(accept, e_prop, e),
            select(mask, s_prop, s),
            state.sigma,
            state.step + 1,
            prob,
        )

    def diagnostics(self, state: SamplerState) -> dict:
        return {"step_size": self.step_size}
