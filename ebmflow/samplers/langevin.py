"""Unadjusted Langevin algorithm (ULA).

    x' = x − η ∇ₓE(x, σ) + √(2η) ε,   ε ~ N(0, I)

with the drift η and the noise √(2η) of the discretised Langevin SDE, whose stationary
law is p ∝ exp(−E). The discretisation is biased: on N(0, s²) the chain's stationary
variance is s² / (1 − η/(2s²)). ``noise_scale`` replaces √(2η) by a fixed value, as SGLD in
JEM and IGEBM does (step 1, noise 0.01); the chain then targets a tempered density.

``clip=(low, high)`` clamps every coordinate of x' into [low, high] before it is evaluated
(projected ULA), as IGEBM does for images whose pixels live in a box: one step can then
never throw a chain far outside the data's range, however steep E is. The chain targets
the density restricted to the box only approximately (mass piles up on its faces).
"""

from __future__ import annotations

import math

import torch

from ebmflow.energy import Energy
from ebmflow.samplers.base import (
    Sampler,
    SamplerState,
    check_finite,
    gaussian_like,
)
from ebmflow.validation import check_interval, check_positive


class Langevin(Sampler):
    """ULA: one energy+gradient evaluation per step.

    Args:
        step_size: η > 0.
        noise_scale: standard deviation of the injected noise; default √(2η).
        clip: ``(low, high)`` with low < high: clamp every coordinate of each new position
            into [low, high] (default ``None``: no clamping).
    """

    def __init__(
        self,
        step_size: float = 0.01,
        noise_scale: float | None = None,
        clip: tuple[float, float] | None = None,
    ) -> None:
        self.step_size = check_positive("langevin", "step_size", step_size)
        if noise_scale is None:
            self.noise_scale = math.sqrt(2.0 * self.step_size)
        else:
            self.noise_scale = check_positive(
                "langevin", "noise_scale", noise_scale, allow_zero=True
            )
        self.clip = None if clip is None else check_interval("langevin", "clip", clip)

    @property
    def name(self) -> str:
        return "langevin"

    def propose(
        self, state: SamplerState, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The new positions x' = x + η s(x) + noise (clamped with ``clip``), from the
        state's cached score, without evaluating anything at x'. :meth:`step` is this, then
        the energy and score at x' (cached for the next step; ULA itself never reads them
        in the step that makes them)."""
        noise = gaussian_like(state.x, generator)
        x = torch.add(state.x, state.score, alpha=self.step_size)
        x.add_(noise, alpha=self.noise_scale)
        if self.clip is not None:
            x.clamp_(*self.clip)
        return x

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        x = self.propose(state, generator)
        e, s = energy.energy_and_score(x, state.sigma)
        check_finite(self.name, state.step, e, x)
        return SamplerState(x, e, s, state.sigma, state.step + 1)

    def diagnostics(self, state: SamplerState) -> dict:
        return {"step_size": self.step_size, "noise_scale": self.noise_scale, "clip": self.clip}
