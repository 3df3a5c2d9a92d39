"""Reverse diffusion in VE coordinates on any noise-conditional energy, with or without an
MCMC corrector: the two samplers whose difference composition makes visible.

Predictor (the reverse SDE, Euler–Maruyama; VE ancestral sampling), from σᵢ to σᵢ₊₁:

    x ← x + (σᵢ² − σᵢ₊₁²) s(x, σᵢ) + √(σᵢ² − σᵢ₊₁²) z

Alone, on the score of one model, it draws from that model. On a *composition* it is
biased: the sum s₁(x, σ) + s₂(x, σ) of two noisy scores is the score of p₁,σ p₂,σ, not of
the noisy product (p₁ p₂)_σ that the reverse process needs (Du et al. 2023, "Reduce, Reuse,
Recycle"). A corrector — any registered ebmflow sampler, run on the composed *energy* at
each level and at the final level — targets p₁,σ p₂,σ itself; at the final level (σ small)
that is the product. MALA and HMC on a score-only composition get their energy differences
by integrating the score along each step (:mod:`ebmflow_diffusers.segment`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

import ebmflow
from ebmflow_diffusers.corrector import run_corrector


@dataclass
class ReverseResult:
    """Samples at the last noise level and the corrector's mean acceptance rate (``None``
    without a Metropolis corrector)."""

    samples: Tensor
    acceptance_rate: float | None


def reverse_diffusion(
    energy: ebmflow.Energy,
    x: Tensor,
    sigmas: Sequence[float],
    *,
    generator: torch.Generator | None = None,
    corrector: ebmflow.Sampler | None = None,
    corrector_steps: int = 0,
    final_steps: int = 0,
    energy_points: int = 3,
    energy_rule: str = "simpson",
) -> ReverseResult:
    """Sample ``energy`` from ``x`` (drawn at σ₀ = ``sigmas[0]``) down to ``sigmas[-1]``.

    Args:
        energy: a noise-conditional ebmflow energy in VE coordinates (a composition).
        x: the start, ``(B, *event)``, usually σ₀ · N(0, I).
        sigmas: strictly decreasing noise levels σ₀ > … > σ_L > 0.
        corrector: a sampler (e.g. ``ebmflow.create("sampler", "mala", step_size=0.1)``)
            run for ``corrector_steps`` steps at each level before its predictor step and
            for ``final_steps`` steps at σ_L; ``None``: the predictor alone.
        energy_points, energy_rule: the line integral used for score-only energies.
    """
    levels = [float(s) for s in sigmas]
    if (
        len(levels) < 2
        or any(not math.isfinite(s) or s <= 0 for s in levels)
        or any(a <= b for a, b in zip(levels, levels[1:]))
    ):
        raise ebmflow.ConfigError(
            f"reverse_diffusion: sigmas must be at least two positive, strictly decreasing "
            f"noise levels, got {list(sigmas)}"
        )
    if not energy.noise_conditional:
        raise ebmflow.ConfigError(
            f"reverse_diffusion needs a noise-conditional energy (E(x, σ)); "
            f"{type(energy).__name__} has noise_conditional=False"
        )
    for name, value in (("corrector_steps", corrector_steps), ("final_steps", final_steps)):
        ebmflow.check_positive_int("reverse_diffusion", name, value, minimum=0)
    if corrector is None and (corrector_steps or final_steps):
        raise ebmflow.ConfigError(
            f"reverse_diffusion: corrector_steps={corrector_steps} and "
            f"final_steps={final_steps} need a corrector sampler, got corrector=None"
        )
    rates: list[float] = []

    def correct(x: Tensor, sigma: float, n_steps: int) -> Tensor:
        if corrector is None or n_steps == 0:
            return x
        x, rate = run_corrector(
            corrector,
            energy,
            x,
            sigma,
            n_steps,
            generator,
            n_points=energy_points,
            rule=energy_rule,
        )
        if rate is not None:
            rates.append(rate)
        return x

    for level, (hi, lo) in enumerate(zip(levels, levels[1:])):
        x = correct(x, hi, corrector_steps)
        score = energy.score(x, ebmflow.broadcast_sigma(hi, x))
        variance = hi * hi - lo * lo
        noise = ebmflow.gaussian_like(x, generator)
        x = x + variance * score + math.sqrt(variance) * noise
        ebmflow.check_finite("reverse_diffusion", level, None, x)
    x = correct(x, levels[-1], final_steps)
    return ReverseResult(x, sum(rates) / len(rates) if rates else None)


def geometric_sigmas(sigma_max: float, sigma_min: float, n_levels: int) -> list[float]:
    """n levels from σ_max down to σ_min, equally spaced in log σ."""
    ebmflow.check_positive_int("geometric_sigmas", "n_levels", n_levels, minimum=2)
    ratio = sigma_min / sigma_max
    return [sigma_max * ratio ** (i / (n_levels - 1)) for i in range(n_levels)]
