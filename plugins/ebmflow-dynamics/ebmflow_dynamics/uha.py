"""Unadjusted Hamiltonian Monte Carlo with partial momentum refresh (UHA; Du et al. 2023,
"Reduce, Reuse, Recycle: Compositional Generation with Energy-Based Diffusion Models and
MCMC", where it samples compositions of diffusion models).

One step: refresh the momentum partially, then L leapfrog steps of size ε, no Metropolis
test:

    p ← ρ p + √(1 − ρ²) ξ,   ξ ~ N(0, I)          (ρ = ``damping``)
    L times { p ← p + (ε/2) s(x);  x ← x + ε p;  p ← p + (ε/2) s(x) }

L score evaluations per step (the state caches s); score-only models work. ρ = 0 is
unadjusted HMC with full refresh; ρ → 1 keeps the momentum across steps. The chain is
biased like every unadjusted leapfrog: on N(0, σ²) the stationary variance of x is
σ² / (1 − ε²/(4σ²)) for any L and ρ (the leapfrog map preserves ½p² + ½x²(1 − ε²/(4σ²))/σ²
exactly, the refresh preserves any law with p ~ N(0, 1) independent of x).
"""

from __future__ import annotations

import torch

import ebmflow
from ebmflow.extend import check_positive, check_positive_int
from ebmflow_dynamics.momentum import leapfrog, momentum, refresh

NAME = "uha"


class UHA(ebmflow.Sampler):
    """Unadjusted HMC with partial momentum refresh (module docstring).

    Args:
        step_size: leapfrog ε > 0.
        n_leapfrog: L ≥ 1 leapfrog steps per transition.
        damping: ρ in [0, 1), the fraction of the momentum kept at each refresh.
    """

    def __init__(self, step_size: float = 0.1, n_leapfrog: int = 1, damping: float = 0.9) -> None:
        self.step_size = check_positive(NAME, "step_size", step_size)
        self.n_leapfrog = check_positive_int(NAME, "n_leapfrog", n_leapfrog)
        ok = isinstance(damping, (int, float)) and not isinstance(damping, bool)
        if not ok or not 0.0 <= damping < 1.0:
            raise ebmflow.ConfigError(
                f"{NAME}: damping must be a number in [0, 1) (the fraction of the momentum "
                f"kept at each refresh; 0 refreshes it fully), got {damping!r}"
            )
        self.damping = float(damping)

    @property
    def name(self) -> str:
        return NAME

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        p = refresh(momentum(state, generator), self.damping, generator)
        x, e, s, p = leapfrog(self.name, energy, state, p, self.step_size, self.n_leapfrog)
        extras = {**state.extras, "momentum": p}
        return ebmflow.SamplerState(x, e, s, state.sigma, state.step + 1, None, extras)

    def diagnostics(self, state: ebmflow.SamplerState) -> dict:
        return {"step_size": self.step_size, "n_leapfrog": self.n_leapfrog, "damping": self.damping}
