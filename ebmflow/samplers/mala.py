"""Metropolis-adjusted Langevin algorithm (MALA; Roberts & Tweedie 1996).

Proposal (one ULA step):  x' = x + η s(x) + √(2η) ξ,  s = −∇ₓE,  ξ ~ N(0, I)
Accept with probability   α = min(1, exp(E(x) − E(x') + log q(x | x') − log q(x' | x)))
where                     log q(a | b) = −‖a − b − η s(b)‖² / (4η).

Since x − x' − η s(x') = −√(2η) (ξ + a u) with a = √(η/2) and u = s(x) + s(x'), the
proposal ratio is log q(x | x') − log q(x' | x) = −½‖ξ + a u‖² + ½‖ξ‖² = −a ⟨u, ξ + (a/2) u⟩,
one dot product per chain. The state caches E and s at the current point, so a step costs
one energy+gradient evaluation (at x'), the same as ULA.

With ``adapt_steps`` > 0 the step size η is tuned during the first ``adapt_steps`` steps by
the shared warm-up (:class:`~ebmflow.samplers.adaptation.Warmup`: dual averaging toward
``target_accept``, 0.574 by default, the optimal MALA acceptance of Roberts & Rosenthal
1998), which runs between steps; ``step`` reads η from the state and is a fixed kernel.
"""

from __future__ import annotations

import math

import torch

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.samplers.adaptation import Warmup, check_target_accept
from ebmflow.samplers.base import Sampler, SamplerState, gaussian_like, per_row
from ebmflow.samplers.metropolis import energy_value, metropolis_accept, row_dot, select
from ebmflow.validation import check_positive, check_positive_int


class MALA(Sampler):
    """MALA with step size η > 0; reports the acceptance rate.

    Args:
        step_size: η > 0 (the starting value when adapting).
        adapt_steps: number of initial steps during which η is adapted (0: never).
        target_accept: acceptance rate the adaptation aims for, in (0, 1).
        search_step_size: before the warm-up, double or halve the starting step size until
            one step's acceptance crosses ½ (Stan's initial search; ``False``
            starts dual averaging from ``step_size`` itself).
    """

    needs_energy = True

    def __init__(
        self,
        step_size: float = 0.01,
        adapt_steps: int = 0,
        target_accept: float = 0.574,
        search_step_size: bool = True,
    ) -> None:
        self.step_size = check_positive("mala", "step_size", step_size)
        self.adapt_steps = check_positive_int("mala", "adapt_steps", adapt_steps, minimum=0)
        self.target_accept = check_target_accept("mala", target_accept)
        if not isinstance(search_step_size, bool):
            raise ConfigError(
                f"mala: search_step_size must be True or False, got {search_step_size!r}"
            )
        self.search_step_size = search_step_size
        self.adaptation = Warmup(
            self.adapt_steps,
            self.target_accept,
            search_step_size=self.search_step_size,
            step_kind="langevin",
        )

    @property
    def name(self) -> str:
        return "mala"

    def init(self, energy, x, sigma=None) -> SamplerState:
        state = super().init(energy, x, sigma)
        # without a warm-up η stays the constructor's float (no state entry to read)
        if not self.adapt_steps:
            return state
        return self.adaptation.init(state, self.step_size, energy)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        eta = self._eta(state)
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
            state.extras,
        )

    def adapt(self, state: SamplerState) -> SamplerState:
        """The step-size warm-up after the step that produced ``state`` (module docstring)."""
        return self.adaptation.update(state) if self.adapt_steps else state

    def _eta(self, state: SamplerState) -> float:
        if "log_step_size" in state.extras:
            return self.adaptation.step_size(state)
        return self.step_size

    def diagnostics(self, state: SamplerState) -> dict:
        return {"step_size": self._eta(state)}
