"""Hamiltonian Monte Carlo with a leapfrog integrator (Duane et al. 1987; Neal 2011).

Momentum p ~ N(0, M) with a diagonal mass matrix M (M = I unless adapted);
H(x, p) = E(x) + ½ pᵀM⁻¹p. With ε the step size and L leapfrog steps:

    p ← p + (ε/2) s(x);  then L times { x ← x + ε M⁻¹p;  p ← p + ε s(x) }, the last kick halved
    accept with probability min(1, exp(H(x, p) − H(x', p')))

The state caches s at the current point, so a step costs L energy+gradient evaluations.
``step`` is a fixed kernel: it reads ε (and M⁻¹) from the state and never changes them. The
optional warm-up is the shared routine :class:`~ebmflow.samplers.adaptation.Warmup` that a
run applies between steps (:meth:`~ebmflow.Sampler.step_and_adapt`): during the first
``adapt_steps`` steps, dual averaging of ε toward ``target_accept`` and, with
``adapt_mass``, Stan's windowed estimate of a diagonal M⁻¹; after that both stay fixed, so
the chain is a valid MCMC chain from then on.
"""

from __future__ import annotations

import torch

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.samplers.adaptation import Warmup, check_target_accept
from ebmflow.samplers.base import Sampler, SamplerState, gaussian_like, per_row
from ebmflow.samplers.metropolis import (
    energy_value,
    metropolis_accept,
    row_dot,
    select,
    sum_squares,
)
from ebmflow.validation import check_positive, check_positive_int


class HMC(Sampler):
    """HMC: ``n_leapfrog`` evaluations per step, optional warm-up.

    Args:
        step_size: leapfrog ε > 0 (the starting value when adapting).
        n_leapfrog: L ≥ 1 leapfrog steps per transition.
        adapt_steps: number of initial steps during which ε is adapted (0: never).
        target_accept: acceptance rate the adaptation aims for, in (0, 1).
        adapt_mass: during the warm-up, also estimate a diagonal mass matrix from Stan's
            windowed variances (warm-ups of 20 steps or more).
        search_step_size: before the warm-up, double or halve the starting step size until
            one leapfrog step's acceptance crosses ½ (Stan's initial search; ``False``
            starts dual averaging from ``step_size`` itself).
    """

    needs_energy = True

    def __init__(
        self,
        step_size: float = 0.1,
        n_leapfrog: int = 10,
        adapt_steps: int = 0,
        target_accept: float = 0.8,
        adapt_mass: bool = False,
        search_step_size: bool = True,
    ) -> None:
        self.step_size = check_positive("hmc", "step_size", step_size)
        self.n_leapfrog = check_positive_int("hmc", "n_leapfrog", n_leapfrog)
        self.adapt_steps = check_positive_int("hmc", "adapt_steps", adapt_steps, minimum=0)
        self.target_accept = check_target_accept("hmc", target_accept)
        if not isinstance(adapt_mass, bool):
            raise ConfigError(f"hmc: adapt_mass must be True or False, got {adapt_mass!r}")
        self.adapt_mass = adapt_mass
        if not isinstance(search_step_size, bool):
            raise ConfigError(
                f"hmc: search_step_size must be True or False, got {search_step_size!r}"
            )
        self.search_step_size = search_step_size
        self.adaptation = Warmup(
            self.adapt_steps,
            self.target_accept,
            self.adapt_mass,
            search_step_size=self.search_step_size,
        )

    @property
    def name(self) -> str:
        return "hmc"

    def init(self, energy, x, sigma=None) -> SamplerState:
        return self.adaptation.init(super().init(energy, x, sigma), self.step_size, energy)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        eps = self.adaptation.step_size(state)
        inv_mass = self.adaptation.inverse_mass(state)
        x, s, e = state.x, state.score, energy_value(self.name, state.energy)
        p0 = gaussian_like(x, generator)
        if inv_mass is not None:
            p0 = p0 / inv_mass.sqrt()  # p ~ N(0, M)
        p = torch.add(p0, s, alpha=0.5 * eps)
        for i in range(self.n_leapfrog):
            x = torch.add(x, p if inv_mass is None else inv_mass * p, alpha=eps)
            e_leap, s_new = energy.energy_and_score(x, state.sigma)
            p.add_(s_new, alpha=eps if i < self.n_leapfrog - 1 else 0.5 * eps)
        e_new = energy_value(self.name, e_leap)
        h0 = e + 0.5 * _kinetic(p0, inv_mass)
        h1 = e_new + 0.5 * _kinetic(p, inv_mass)
        accept, prob = metropolis_accept(self.name, state.step, h0 - h1, e_new, generator)
        mask = per_row(accept, x.shape[1:])
        return SamplerState(
            select(mask, x, state.x),
            torch.where(accept, e_new, e),
            select(mask, s_new, state.score),
            state.sigma,
            state.step + 1,
            prob,
            state.extras,
        )

    def adapt(self, state: SamplerState) -> SamplerState:
        """The warm-up after the step that produced ``state`` (module docstring)."""
        return self.adaptation.update(state)

    def diagnostics(self, state: SamplerState) -> dict:
        return {
            "step_size": self.adaptation.step_size(state),
            "n_leapfrog": self.n_leapfrog,
        }


def _kinetic(p: torch.Tensor, inv_mass: torch.Tensor | None) -> torch.Tensor:
    """pᵀM⁻¹p per chain (M = I when ``inv_mass`` is ``None``)."""
    return sum_squares(p) if inv_mass is None else row_dot(p, inv_mass * p)
