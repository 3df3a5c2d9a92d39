"""Random-walk Metropolis (Metropolis et al. 1953).

Proposal:  x' = x + s·ξ,  ξ ~ N(0, I)
Accept with probability  α = min(1, exp(E(x) − E(x')))

The proposal is symmetric, so the Hastings terms cancel. It uses no gradient; the state still
carries the score at the current point (the contract of ``ebmflow.SamplerState``), so a chain
can be handed on to MALA or HMC. That costs one energy+score evaluation per step, like MALA.
"""

from __future__ import annotations

import torch

import ebmflow


class RandomWalkMetropolis(ebmflow.Sampler):
    """Random-walk Metropolis with Gaussian proposals of scale s = ``step_size`` > 0.

    Reports the acceptance rate; about 0.2–0.5 is a good regime in high dimension.
    """

    needs_energy = True

    def __init__(self, step_size: float = 0.5) -> None:
        self.step_size = ebmflow.check_positive("rwm", "step_size", step_size)

    @property
    def name(self) -> str:
        return "rwm"

    def step(self, energy, state, generator: torch.Generator | None = None):
        x, e = state.x, state.energy
        x_prop = x + self.step_size * ebmflow.gaussian_like(x, generator)
        e_prop, s_prop = energy.energy_and_score(x_prop, state.sigma)
        log_alpha = e - e_prop
        accept, prob = ebmflow.metropolis_accept(
            self.name, state.step, log_alpha, e_prop, generator
        )
        return state.replace(
            x=ebmflow.select(accept, x_prop, x),
            energy=torch.where(accept, e_prop, e),
            score=ebmflow.select(accept, s_prop, state.score),
            step=state.step + 1,
            accept_prob=prob,
        )

    def diagnostics(self, state) -> dict:
        return {"step_size": self.step_size}
