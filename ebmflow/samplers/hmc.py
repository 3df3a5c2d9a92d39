"""Hamiltonian Monte Carlo with a leapfrog integrator (Duane et al. 1987; Neal 2011).

Momentum p ~ N(0, I); H(x, p) = E(x) + ½‖p‖². With ε the step size and L leapfrog steps:

    p ← p + (ε/2) s(x);  then L times { x ← x + ε p;  p ← p + ε s(x) }, the last kick halved
    accept with probability min(1, exp(H(x, p) − H(x', p')))

The state caches s at the current point, so a step costs L energy+gradient evaluations.
``step`` is a fixed kernel: it reads ε from the state and never changes it. The optional
warm-up is a separate routine (:class:`~ebmflow.samplers.adaptation.StepSizeAdaptation`)
that a run applies between steps (:meth:`~ebmflow.Sampler.step_and_adapt`): after each of
the first ``adapt_steps`` steps, log ε ← log ε + (t+1)^(−0.6) · (mean acceptance − target);
after that ε stays fixed, so the chain is a valid MCMC chain from then on.
"""

from __future__ import annotations

import torch

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.samplers.adaptation import StepSizeAdaptation
from ebmflow.samplers.base import Sampler, SamplerState, gaussian_like, per_row
from ebmflow.samplers.metropolis import energy_value, metropolis_accept, select, sum_squares
from ebmflow.validation import check_positive, check_positive_int


class HMC(Sampler):
    """HMC: ``n_leapfrog`` evaluations per step, optional step-size warm-up.

    Args:
        step_size: leapfrog ε > 0 (the starting value when adapting).
        n_leapfrog: L ≥ 1 leapfrog steps per transition.
        adapt_steps: number of initial steps during which ε is adapted (0: never).
        target_accept: acceptance rate the adaptation aims for, in (0, 1).
    """

    needs_energy = True

    def __init__(
        self,
        step_size: float = 0.1,
        n_leapfrog: int = 10,
        adapt_steps: int = 0,
        target_accept: float = 0.8,
    ) -> None:
        self.step_size = check_positive("hmc", "step_size", step_size)
        self.n_leapfrog = check_positive_int("hmc", "n_leapfrog", n_leapfrog)
        self.adapt_steps = check_positive_int("hmc", "adapt_steps", adapt_steps, minimum=0)
        if not (
            isinstance(target_accept, (int, float))
            and not isinstance(target_accept, bool)
            and 0.0 < target_accept < 1.0
        ):
            raise ConfigError(f"hmc: target_accept must lie in (0, 1), got {target_accept!r}")
        self.target_accept = float(target_accept)
        self.adaptation = StepSizeAdaptation(self.adapt_steps, self.target_accept)

    @property
    def name(self) -> str:
        return "hmc"

    def init(self, energy, x, sigma=None) -> SamplerState:
        return self.adaptation.init(super().init(energy, x, sigma), self.step_size)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        eps = self.adaptation.step_size(state)
        x, s, e = state.x, state.score, energy_value(self.name, state.energy)
        p0 = gaussian_like(x, generator)
        p = torch.add(p0, s, alpha=0.5 * eps)
        for i in range(self.n_leapfrog):
            x = torch.add(x, p, alpha=eps)
            e_leap, s_new = energy.energy_and_score(x, state.sigma)
            p.add_(s_new, alpha=eps if i < self.n_leapfrog - 1 else 0.5 * eps)
        e_new = energy_value(self.name, e_leap)
        h0 = e + 0.5 * sum_squares(p0)
        h1 = e_new + 0.5 * sum_squares(p)
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
        """The step-size warm-up after the step that produced ``state`` (module docstring)."""
        return self.adaptation.update(state)

    def diagnostics(self, state: SamplerState) -> dict:
        return {
            "step_size": self.adaptation.step_size(state),
            "n_leapfrog": self.n_leapfrog,
        }
