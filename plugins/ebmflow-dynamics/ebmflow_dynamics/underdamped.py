"""Underdamped (kinetic) Langevin dynamics, discretised by the OBABO splitting.

The SDE with friction γ and unit mass,

    dx = p dt,   dp = s(x) dt − γ p dt + √(2γ) dW,   s = −∇ₓE,

has stationary law ∝ exp(−E(x) − ½‖p‖²). One step of size h (Bussi & Parrinello 2007;
Leimkuhler & Matthews 2015, "Molecular Dynamics", §7):

    O: p ← a p + √(1 − a²) ξ,      a = exp(−γh/2)
    B: p ← p + (h/2) s(x)
    A: x ← x + h p
    B: p ← p + (h/2) s(x)
    O: p ← a p + √(1 − a²) ξ'

one score evaluation per step (the state caches s), no Metropolis test, so score-only
models work. The splitting is biased: on N(0, σ²) the stationary variance of x is
σ² / (1 − h²/(4σ²)) whatever γ (the velocity-Verlet map BAB preserves ½p² + ½x²(1 − h²/(4σ²))/σ²
exactly and O preserves any law with p ~ N(0, 1) independent of x). γ → ∞ gives ULA with
η = h²/2; small γ keeps the momentum, so chains travel further per gradient.
"""

from __future__ import annotations

import math

import torch

import ebmflow
from ebmflow.extend import check_positive
from ebmflow_dynamics.momentum import leapfrog, momentum, refresh

NAME = "underdamped-langevin"


class UnderdampedLangevin(ebmflow.Sampler):
    """Underdamped Langevin, OBABO (module docstring).

    Args:
        step_size: the time step h > 0.
        friction: γ > 0; the momentum keeps a fraction exp(−γh) of itself per step.
    """

    def __init__(self, step_size: float = 0.1, friction: float = 1.0) -> None:
        self.step_size = check_positive(NAME, "step_size", step_size)
        self.friction = check_positive(NAME, "friction", friction)
        self.keep = math.exp(-0.5 * self.friction * self.step_size)

    @property
    def name(self) -> str:
        return NAME

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        p = refresh(momentum(state, generator), self.keep, generator)
        x, e, s, p = leapfrog(self.name, energy, state, p, self.step_size, 1)
        p = refresh(p, self.keep, generator)
        extras = {**state.extras, "momentum": p}
        return ebmflow.SamplerState(x, e, s, state.sigma, state.step + 1, None, extras)

    def diagnostics(self, state: ebmflow.SamplerState) -> dict:
        return {"step_size": self.step_size, "friction": self.friction}
