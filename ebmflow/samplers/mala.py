"""Metropolis-adjusted Langevin algorithm (MALA; Roberts & Tweedie 1996).

Proposal (one ULA step):  x' = x + η s(x) + √(2η) ξ,  s = −∇ₓE,  ξ ~ N(0, I)
Accept with probability   α = min(1, exp(E(x) − E(x') + log q(x | x') − log q(x' | x)))
where                     log q(a | b) = −‖a − b − η s(b)‖² / (4η).

The state caches E and s at the current point, so a step costs one energy+gradient
evaluation (at x'), the same as ULA.
"""

from __future__ import annotations

import math

import torch

from ebmflow.energy import Energy
from ebmflow.samplers.base import Sampler, SamplerState, gaussian_like
from ebmflow.samplers.metropolis import metropolis_accept, select, sum_squares
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
        x, e, s = state.x, state.energy, state.score
        xi = gaussian_like(x, generator)
        x_prop = x + eta * s + math.sqrt(2.0 * eta) * xi
        e_prop, s_prop = energy.energy_and_score(x_prop, state.sigma)
        # log q(x' | x) = −‖√(2η) ξ‖²/(4η) = −‖ξ‖²/2
        log_q_forward = -0.5 * sum_squares(xi)
        log_q_backward = -sum_squares(x - x_prop - eta * s_prop) / (4.0 * eta)
        log_alpha = e - e_prop + log_q_backward - log_q_forward
        accept, prob = metropolis_accept(self.name, state.step, log_alpha, e_prop, generator)
        return SamplerState(
            select(accept, x_prop, x),
            torch.where(accept, e_prop, e),
            select(accept, s_prop, s),
            state.sigma,
            state.step + 1,
            prob,
        )

    def diagnostics(self, state: SamplerState) -> dict:
        return {"step_size": self.step_size}
