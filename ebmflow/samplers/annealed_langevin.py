"""Annealed Langevin dynamics (Song & Ermon 2019, "Generative Modeling by Estimating
Gradients of the Data Distribution").

For noise levels σ₁ > … > σ_L and T steps per level, with α_i = ε · σ_i² / σ_L²:

    x ← x + (α_i / 2) s(x, σ_i) + √α_i z,   z ~ N(0, I)

which is ULA (x − η∇E + √(2η) z) with η_i = α_i / 2 on the noise-conditional energy E(·, σ_i).
With ``denoise=True`` the samples get the final denoising step x + σ_L² s(x, σ_L) (Tweedie's
formula, as in Jolicoeur-Martineau et al. 2021).

Each step evaluates the score at the new position at the noise level of the *next* step,
so moving between levels costs no extra evaluation: one evaluation per step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy, broadcast_sigma
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.registry import current_host
from ebmflow.samplers.base import (
    Sampler,
    SampleResult,
    SamplerState,
    check_finite,
    gaussian_like,
)
from ebmflow.validation import check_positive, check_positive_int


def resolve_sigmas(
    noise_schedule: Any, n_levels: int, owner: str = "annealed-langevin"
) -> list[float]:
    """The decreasing noise levels of ``noise_schedule`` (a registered schedule's name or
    config dict, a schedule object, or a sequence of σ); errors name ``owner``."""
    if isinstance(noise_schedule, (str, Mapping)):
        noise_schedule = current_host().create("noise_schedule", noise_schedule)
    if hasattr(noise_schedule, "sigmas"):
        sigmas = noise_schedule.sigmas(n_levels)
    elif isinstance(noise_schedule, (Sequence, Tensor)):
        sigmas = noise_schedule
    else:
        raise ComponentArgumentError(
            f"{owner}: noise_schedule must be a registered schedule name, a config "
            f"dict, a schedule object or a sequence of sigmas; got {type(noise_schedule).__name__}"
        )
    given = sigmas
    try:
        sigmas = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).flatten()]
    except (TypeError, ValueError, RuntimeError):
        sigmas = []  # not numbers: reported below with what was given
    if (
        not sigmas
        or any(not math.isfinite(s) or s <= 0 for s in sigmas)
        or any(a <= b for a, b in zip(sigmas, sigmas[1:]))
    ):
        raise ConfigError(
            f"{owner}: noise_schedule must give noise levels that are positive and "
            f"strictly decreasing, got {sigmas if sigmas else given}"
        )
    return sigmas


class AnnealedLangevin(Sampler):
    """Annealed Langevin over a noise schedule; ``run`` defaults to ``n_levels·steps_per_level``.

    Args:
        noise_schedule: a registered schedule (name or config dict), a schedule object with
            ``sigmas(n)``, or an explicit decreasing sequence of σ.
        n_levels: number of noise levels L drawn from the schedule (ignored for a sequence).
        steps_per_level: T ≥ 1.
        epsilon: ε in α_i = ε σ_i² / σ_L².
        denoise: apply the final denoising step x + σ_L² s(x, σ_L).
    """

    def __init__(
        self,
        noise_schedule: Any = "geometric",
        n_levels: int = 10,
        steps_per_level: int = 100,
        epsilon: float = 2e-5,
        denoise: bool = True,
    ) -> None:
        self.n_levels = check_positive_int("annealed-langevin", "n_levels", n_levels)
        self.sigmas = resolve_sigmas(noise_schedule, self.n_levels)
        self.n_levels = len(self.sigmas)
        self.steps_per_level = check_positive_int(
            "annealed-langevin", "steps_per_level", steps_per_level
        )
        self.epsilon = check_positive("annealed-langevin", "epsilon", epsilon)
        if not isinstance(denoise, bool):
            raise ConfigError(f"annealed-langevin: denoise must be True or False, got {denoise!r}")
        self.denoise = denoise
        sigma_l = self.sigmas[-1]
        self.step_sizes = [0.5 * self.epsilon * (s / sigma_l) ** 2 for s in self.sigmas]

    @property
    def name(self) -> str:
        return "annealed-langevin"

    @property
    def total_steps(self) -> int:
        return self.n_levels * self.steps_per_level

    def level(self, step: int) -> int:
        """Index of the noise level used by step number ``step`` (0-based)."""
        return min(step // self.steps_per_level, self.n_levels - 1)

    def init(self, energy: Energy, x: Tensor, sigma=None) -> SamplerState:
        if sigma is not None:
            raise ConfigError(
                f"{self.name} sets the noise level itself from its schedule; "
                f"do not pass sigma (got {sigma!r})"
            )
        if not energy.noise_conditional:
            raise ConfigError(
                f"{self.name} needs a noise-conditional energy (E(x, σ)); "
                f"{type(energy).__name__} has noise_conditional=False"
            )
        return super().init(energy, x, self.sigmas[0])

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        eta = self.step_sizes[self.level(state.step)]
        noise = gaussian_like(state.x, generator)
        x = torch.add(state.x, state.score, alpha=eta).add_(noise, alpha=math.sqrt(2.0 * eta))
        sigma_next = broadcast_sigma(self.sigmas[self.level(state.step + 1)], x)
        e, s = energy.energy_and_score(x, sigma_next)
        check_finite(self.name, state.step, e, x)
        return SamplerState(x, e, s, sigma_next, state.step + 1)

    def run(self, energy, x0, n_steps=None, **kwargs) -> SampleResult:
        """Run the whole schedule by default (``n_levels × steps_per_level`` steps)."""
        return super().run(energy, x0, self.total_steps if n_steps is None else n_steps, **kwargs)

    def continue_run(self, energy, state, n_steps, **kwargs) -> SampleResult:
        result = super().continue_run(energy, state, n_steps, **kwargs)
        if self.denoise and result.state.step >= self.total_steps:
            sigma_l = self.sigmas[-1]
            result.samples = result.state.x + sigma_l**2 * result.state.score
        return result

    def diagnostics(self, state: SamplerState) -> dict:
        return {"sigmas": self.sigmas, "step_sizes": self.step_sizes}
