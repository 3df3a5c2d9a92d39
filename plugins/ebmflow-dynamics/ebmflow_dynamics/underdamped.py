"""Underdamped (kinetic) Langevin dynamics, discretised by the BAOAB or the OBABO splitting.

The SDE with friction γ and unit mass,

    dx = p dt,   dp = s(x) dt − γ p dt + √(2γ) dW,   s = −∇ₓE,

has stationary law ∝ exp(−E(x) − ½‖p‖²). Its pieces, for a step of size h: the kick
B(τ): p ← p + τ s(x), the drift A(τ): x ← x + τ p, and the exact Ornstein–Uhlenbeck
refresh O(τ): p ← a p + √(1 − a²) ξ, a = exp(−γτ). Two splittings (Leimkuhler & Matthews
2013, "Rational construction of stochastic numerical methods for molecular sampling";
2015, "Molecular Dynamics", §7):

    BAOAB:  B(h/2) A(h/2) O(h) A(h/2) B(h/2)   one gradient, one noise draw per step
    OBABO:  O(h/2) B(h/2) A(h) B(h/2) O(h/2)   one gradient, two noise draws per step

Both evaluate the score once per step (the state caches s) and make no Metropolis test, so
score-only models work. Both are biased, differently: on N(0, σ²), OBABO's stationary
variance of x is σ² / (1 − h²/(4σ²)) whatever γ (the velocity-Verlet map BAB preserves
½p² + ½x²(1 − h²/(4σ²))/σ² exactly and O preserves any law with p ~ N(0, 1) independent of
x), while BAOAB's is σ² exactly for every h < 2σ and every γ (its error is in the momentum,
whose variance is 1 − h²/(4σ²)). BAOAB is the default: it draws half the noise, and its
configurational averages, what a sampler is for, are the more accurate of the two (second
order, and exact for Gaussians). γ → ∞ gives ULA with η = h²/2 for OBABO and the
Leimkuhler–Matthews method with η = h²/2 for BAOAB; small γ keeps the momentum, so chains
travel further per gradient.
"""

from __future__ import annotations

import math

import torch

import ebmflow
from ebmflow.extend import check_finite, check_positive, gaussian_like
from ebmflow_dynamics.momentum import leapfrog, momentum, refresh

NAME = "underdamped-langevin"
SPLITTINGS = ("baoab", "obabo")


class UnderdampedLangevin(ebmflow.Sampler):
    """Underdamped Langevin, BAOAB or OBABO (module docstring).

    Args:
        step_size: the time step h > 0.
        friction: γ > 0; the momentum keeps a fraction exp(−γh) of itself per step.
        splitting: ``"baoab"`` (one noise draw per step; exact positional variance on
            Gaussians) or ``"obabo"`` (two half refreshes per step).
    """

    def __init__(
        self, step_size: float = 0.1, friction: float = 1.0, splitting: str = "baoab"
    ) -> None:
        self.step_size = check_positive(NAME, "step_size", step_size)
        self.friction = check_positive(NAME, "friction", friction)
        if splitting not in SPLITTINGS:
            raise ebmflow.ConfigError(
                f"{NAME}: splitting must be one of {', '.join(map(repr, SPLITTINGS))}, "
                f"got {splitting!r}"
            )
        self.splitting = splitting
        # the refresh's coefficients, fixed for the sampler's life: BAOAB refreshes once
        # over h, OBABO twice over h/2
        refreshes = 1 if splitting == "baoab" else 2
        self.keep = math.exp(-self.friction * self.step_size / refreshes)
        self._noise = math.sqrt(1.0 - self.keep * self.keep)
        self._half = 0.5 * self.step_size

    @property
    def name(self) -> str:
        return NAME

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        if self.splitting == "obabo":
            p = refresh(momentum(state, generator), self.keep, generator)
            x, e, s, p = leapfrog(self.name, energy, state, p, self.step_size, 1)
            p = refresh(p, self.keep, generator)
        else:
            x, e, s, p = self._baoab(energy, state, generator)
        extras = {**state.extras, "momentum": p}
        return ebmflow.SamplerState(x, e, s, state.sigma, state.step + 1, None, extras)

    def _baoab(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        half, x, s = self._half, state.x, state.score
        p = state.extras.get("momentum")
        # B: a new tensor, so the state passed in keeps its momentum (a fresh state draws
        # p ~ N(0, I), which this step may then update in place)
        if p is None:
            p = gaussian_like(x, generator).add_(s, alpha=half)
        else:
            p = torch.add(p, s, alpha=half)
        x = torch.add(x, p, alpha=half)  # A, into a new tensor; the second A is in place
        p.mul_(self.keep).add_(gaussian_like(p, generator), alpha=self._noise)  # O
        x.add_(p, alpha=half)  # A
        e, s = energy.energy_and_score(x, state.sigma)
        p.add_(s, alpha=half)  # B
        check_finite(self.name, state.step, e, x)
        return x, e, s, p

    def diagnostics(self, state: ebmflow.SamplerState) -> dict:
        return {"step_size": self.step_size, "friction": self.friction, "splitting": self.splitting}
