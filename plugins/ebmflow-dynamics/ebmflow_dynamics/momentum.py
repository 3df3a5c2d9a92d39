"""What the unadjusted momentum samplers share: the momentum kept in the state, its partial
refresh, and the leapfrog (velocity Verlet) step.

The momentum p (unit mass) lives in ``state.extras["momentum"]``. ``init`` takes no
generator, so a fresh state has none; the first step draws p ~ N(0, I), the stationary law of
the momentum, so a chain starts at equilibrium in p whatever its friction.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import check_finite, gaussian_like


def momentum(state: ebmflow.SamplerState, generator: torch.Generator | None) -> Tensor:
    """The state's momentum, or a fresh draw from N(0, I) for a state that has none."""
    p = state.extras.get("momentum")
    return gaussian_like(state.x, generator) if p is None else p


def refresh(p: Tensor, keep: float, generator: torch.Generator | None) -> Tensor:
    """Partial momentum refresh (the Ornstein–Uhlenbeck step "O"):
    p ← a p + √(1 − a²) ξ, ξ ~ N(0, I), a = ``keep`` in [0, 1]; exact for N(0, I)."""
    noise = gaussian_like(p, generator)
    if keep == 0.0:
        return noise
    return noise.mul_(math.sqrt(1.0 - keep * keep)).add_(p, alpha=keep)


def leapfrog(
    owner: str,
    energy: ebmflow.Energy,
    state: ebmflow.SamplerState,
    p: Tensor,
    step_size: float,
    n_steps: int,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """``n_steps`` velocity-Verlet steps "BAB" of size h from (state.x, p), reusing the
    state's cached score: p ← p + (h/2) s(x); x ← x + h p; p ← p + (h/2) s(x). One score
    evaluation per step; returns (x, energy, score, p) at the end. ``p`` is updated in
    place (callers pass a freshly refreshed momentum), and so is the position after the
    first drift, which makes the one new tensor the state passed in does not own (the
    energy and score come back detached, so no graph holds the position)."""
    x, s, e = state.x, state.score, state.energy
    half = 0.5 * step_size
    for i in range(n_steps):
        p.add_(s, alpha=half)
        x = torch.add(x, p, alpha=step_size) if i == 0 else x.add_(p, alpha=step_size)
        e, s = energy.energy_and_score(x, state.sigma)
        p.add_(s, alpha=half)
    check_finite(owner, state.step, e, x)
    return x, e, s, p
