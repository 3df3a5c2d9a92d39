"""Annealed posterior Langevin with a Metropolis correction at the lowest noise levels.

On a posterior energy E(x | y, σ) = E_prior(x, σ) + E_lik(x | y, σ) (``ebmflow.posterior``):

1. Annealing: the annealed Langevin steps of :mod:`ebmflow.samplers.annealed_langevin`
   (Song & Ermon's rule α_i = ε σ_i²/σ_L², ULA with η_i = α_i/2) down the noise levels
   σ_1 > … > σ_L, ``steps_per_level`` each: annealed posterior Langevin (Jalal et al. 2021).
2. Correction: ``corrector_steps`` Metropolis-adjusted steps at σ_L, so the chains sample
   exp(−E(x | y, σ_L)) itself rather than ULA's biased approximation of it.
   With ``exchange_levels`` = 1 these are MALA steps with step size η_c. With K > 1 the
   chains are joined by replicas at the K − 1 next-higher levels of the schedule and each
   step is MALA at every level (η_c·σ_r²/σ_L²) followed by replica exchange between
   neighbouring levels (:mod:`ebmflow.samplers.level_exchange`): modes that annealing
   weighted wrongly (the annealed likelihood is exact only at σ → 0) are re-weighted.

The samples target exp(−E(x | y, σ_L)); for priors with an exact clean member (analytic
energies) a schedule ending near 0 gives the exact posterior. ``denoise=True`` adds the
Tweedie step x + σ_L² s(x | y, σ_L), the posterior mean of the clean x given the chain
(not a posterior sample, hence off by default).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.samplers.annealed_langevin import AnnealedLangevin
from ebmflow.samplers.base import SampleResult, SamplerState, check_finite
from ebmflow.samplers.level_exchange import mala_rows, swap_levels
from ebmflow.samplers.mala import MALA
from ebmflow.samplers.metropolis import energy_value
from ebmflow.validation import check_positive, check_positive_int

_REPLICAS = ("replica_x", "replica_energy", "replica_score")


class AnnealedPosterior(AnnealedLangevin):
    """Annealed posterior Langevin, then MALA (or MALA + level exchange) at σ_L.

    Args:
        noise_schedule, n_levels, steps_per_level, epsilon: the annealing, as for
            ``annealed-langevin``.
        corrector_steps: Metropolis-adjusted steps at σ_L after the annealing (0: none).
        corrector_step_size: η_c of the MALA steps at σ_L (default: the annealing's
            η_L = ε/2); the levels above take η_c σ_r²/σ_L². Or a list of K step sizes,
            one per level of the correction, lowest σ first.
        exchange_levels: K ≥ 1 levels of the correction (1: MALA at σ_L only).
        denoise: add the Tweedie step at the end (off: the chains are posterior samples).
    """

    def __init__(
        self,
        noise_schedule: Any = "geometric",
        n_levels: int = 10,
        steps_per_level: int = 100,
        epsilon: float = 2e-5,
        corrector_steps: int = 100,
        corrector_step_size: float | list[float] | None = None,
        exchange_levels: int = 1,
        denoise: bool = False,
    ) -> None:
        super().__init__(noise_schedule, n_levels, steps_per_level, epsilon, denoise)
        owner = "annealed-posterior"
        self.corrector_steps = check_positive_int(
            owner, "corrector_steps", corrector_steps, minimum=0
        )
        self.exchange_levels = check_positive_int(owner, "exchange_levels", exchange_levels)
        if self.exchange_levels > self.n_levels:
            raise ConfigError(
                f"{owner}: exchange_levels={exchange_levels} exceeds the {self.n_levels} "
                "noise levels of the schedule"
            )
        self.needs_energy = self.corrector_steps > 0
        self.ladder = list(reversed(self.sigmas[-self.exchange_levels :]))  # σ_L first
        self.corrector_step_sizes = _ladder_step_sizes(
            corrector_step_size, self.step_sizes[-1], self.ladder
        )
        self.corrector_step_size = self.corrector_step_sizes[0]
        self._mala = MALA(self.corrector_step_size)

    @property
    def name(self) -> str:
        return "annealed-posterior"

    @property
    def annealing_steps(self) -> int:
        return self.n_levels * self.steps_per_level

    @property
    def total_steps(self) -> int:
        return self.annealing_steps + self.corrector_steps

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        if state.step < self.annealing_steps:
            return super().step(energy, state, generator)
        return self._correct(energy, state, generator)

    def _correct(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None
    ) -> SamplerState:
        """One corrector step: MALA at σ_L, or MALA at every level of the ladder followed
        by level exchange."""
        if state.energy is None:
            raise ConfigError(
                f"annealed-posterior: the corrector needs energy values, but "
                f"{type(energy).__name__} is score-only; set corrector_steps=0"
            )
        if self.exchange_levels == 1:  # the built-in MALA kernel, its scalar step size
            return self._mala.step(energy, state, generator)
        b = state.x.shape[0]
        extras = dict(state.extras)
        if "replica_x" not in extras:  # entering the correction: the replicas start at x
            rx = state.x.repeat(self.exchange_levels - 1, *(1,) * (state.x.ndim - 1))
            re, rs = energy.energy_and_score(rx, self._sigma_rows(state.x, b)[b:])
            extras.update(replica_x=rx, replica_energy=energy_value(self.name, re))
            extras["replica_score"] = rs
        x = torch.cat([state.x, extras["replica_x"]])
        e = torch.cat([state.energy, extras["replica_energy"]])
        s = torch.cat([state.score, extras["replica_score"]])
        eta = torch.tensor(self.corrector_step_sizes, dtype=x.dtype, device=x.device)
        x, e, s, prob = mala_rows(
            self.name,
            energy,
            x,
            e,
            s,
            self._sigma_rows(x, b),
            eta.repeat_interleave(b),
            state.step,
            generator,
        )
        check_finite(self.name, state.step, e, x)
        ladder = torch.tensor(self.ladder, dtype=x.dtype, device=x.device)
        parity = (state.step - self.annealing_steps) % 2
        x, e, s, swap = swap_levels(
            self.name, energy, x, e, s, ladder, b, parity, state.step, generator
        )
        extras.update(replica_x=x[b:], replica_energy=e[b:], replica_score=s[b:])
        if swap.numel():
            extras["swap_accept"] = swap.mean(dim=1)
        return SamplerState(
            x[:b], e[:b], s[:b], state.sigma, state.step + 1, prob[:b], extras=extras
        )

    def _sigma_rows(self, x: Tensor, b: int) -> Tensor:
        ladder = torch.tensor(self.ladder, dtype=x.dtype, device=x.device)
        return ladder.repeat_interleave(b)

    def continue_run(self, energy, state, n_steps, **kwargs) -> SampleResult:
        start = state.step
        result = super().continue_run(energy, state, n_steps, **kwargs)
        # the base averages acceptance over every step; only corrector steps have one
        corrected = result.state.step - max(start, self.annealing_steps)
        if corrected > 0 and "acceptance_per_chain" in result.diagnostics:
            per_chain = result.diagnostics["acceptance_per_chain"] * (n_steps / corrected)
            result.diagnostics["acceptance_per_chain"] = per_chain
            result.diagnostics["acceptance_rate"] = float(per_chain.mean())
        return result

    def diagnostics(self, state: SamplerState) -> dict:
        out = {
            **super().diagnostics(state),
            "corrector_step_sizes": self.corrector_step_sizes,
            "exchange_sigmas": self.ladder,
        }
        if "swap_accept" in state.extras:
            out["swap_acceptance"] = state.extras["swap_accept"].tolist()
        return out


def _ladder_step_sizes(given: Any, default: float, ladder: list[float]) -> list[float]:
    """MALA step sizes of the correction's levels, lowest σ first: a list as given, or one
    number η_c scaled by the annealing's rule, η_c σ_r² / σ_L²."""
    owner = "annealed-posterior"
    if isinstance(given, (list, tuple)):
        if len(given) != len(ladder):
            raise ConfigError(
                f"{owner}: corrector_step_size has {len(given)} values, but the correction has "
                f"{len(ladder)} levels (exchange_levels); give one number or {len(ladder)}"
            )
        return [check_positive(owner, "corrector_step_size", eta) for eta in given]
    eta = default if given is None else check_positive(owner, "corrector_step_size", given)
    return [eta * (s / ladder[0]) ** 2 for s in ladder]
