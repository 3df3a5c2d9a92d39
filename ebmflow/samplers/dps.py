"""Diffusion posterior sampling (DPS; Chung et al. 2022, "Diffusion Posterior Sampling for
General Noisy Inverse Problems"), in VE coordinates, as a baseline.

DPS approximates the noisy likelihood p(y | x_σ) by p(y | x̂₀(x_σ)) at the Tweedie
denoiser x̂₀ = x + σ² s_prior(x, σ), whose gradient is taken through the prior's score:

    g(x, σ) = −∇ₓ E_lik(x̂₀(x, σ) | y)

and runs the reverse-SDE predictor (ancestral VE step) on s_prior + ζ g down the levels
σ_1 > … > σ_L:

    x ← x + (σ_i² − σ_{i+1}²) (s_prior(x, σ_i) + ζ g(x, σ_i)) + √(σ_i² − σ_{i+1}²) z

and ends with the noise-free step x̂₀ = x + σ_L² (s_prior + ζ g) at σ_L. With
``normalized=True`` the guidance is the paper's step instead, independent of σ:
x ← x' − ζ ∇ₓ‖y − A x̂₀‖² / ‖y − A x̂₀‖ (x' the unguided move), for likelihoods that report
their residual norm (``gaussian-measurement``); it keeps DPS stable where the likelihood's
gradient through the denoiser is large (sharp measurements, rough networks). The approximation
is not exact even for Gaussian priors (its bias is reported beside the corrected sampler
in the tests); it costs one score evaluation and one backward through it per level.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy, broadcast_sigma
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.inverse.posterior import Posterior
from ebmflow.samplers.annealed_langevin import resolve_sigmas
from ebmflow.samplers.base import Sampler, SampleResult, SamplerState, check_finite, gaussian_like
from ebmflow.validation import check_positive, check_positive_int


class DPS(Sampler):
    """DPS over a noise schedule; ``run`` defaults to one step per level.

    Args:
        noise_schedule: a registered schedule (name or config dict), a schedule object or a
            decreasing sequence of σ.
        n_levels: number of levels L drawn from the schedule.
        guidance_scale: ζ, the weight of the likelihood guidance.
        normalized: use the paper's step ζ ∇‖r‖²/‖r‖ (module docstring).
    """

    def __init__(
        self,
        noise_schedule: Any = "geometric",
        n_levels: int = 100,
        guidance_scale: float = 1.0,
        normalized: bool = False,
    ) -> None:
        self.n_levels = check_positive_int("dps", "n_levels", n_levels)
        self.sigmas = resolve_sigmas(noise_schedule, self.n_levels, "dps")
        self.n_levels = len(self.sigmas)
        self.guidance_scale = check_positive("dps", "guidance_scale", guidance_scale)
        if not isinstance(normalized, bool):
            raise ConfigError(f"dps: normalized must be True or False, got {normalized!r}")
        self.normalized = normalized

    @property
    def name(self) -> str:
        return "dps"

    @property
    def total_steps(self) -> int:
        return self.n_levels

    def init(self, energy: Energy, x: Tensor, sigma: Any = None) -> SamplerState:
        if sigma is not None:
            raise ConfigError(f"dps sets the noise level from its schedule; got sigma={sigma!r}")
        if not isinstance(energy, Posterior):
            raise ComponentArgumentError(
                f"dps needs a posterior energy (ebmflow.posterior(prior, likelihood)) to "
                f"guide the prior by the likelihood; got {type(energy).__name__}"
            )
        if not energy.prior.noise_conditional:
            raise ConfigError(
                f"dps needs a noise-conditional prior (E(x, σ)); "
                f"{type(energy.prior).__name__} has noise_conditional=False"
            )
        self.check_compatible(energy, x)
        sigma_t = broadcast_sigma(self.sigmas[0], x)
        return SamplerState(x.detach(), None, torch.zeros_like(x), sigma_t, 0)

    def guidance(self, energy: Posterior, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        """(s_prior(x, σ), −∇ₓ E_lik(x̂₀(x, σ)) or, normalized, −∇ₓ‖y − A x̂₀‖ · 2), with x̂₀
        the Tweedie denoiser and the gradient through the prior's score."""
        sigma_t = broadcast_sigma(sigma, x)
        likelihood = energy.likelihood
        with torch.enable_grad():
            inp = x.detach().requires_grad_(True)
            _, s = energy.prior.energy_and_score(inp, sigma_t, create_graph=True)
            x0 = inp + sigma**2 * s
            if self.normalized:
                norm = getattr(likelihood, "residual_norm", None)
                if norm is None:
                    raise ComponentArgumentError(
                        f"dps: normalized=True needs a likelihood with residual_norm "
                        f"(gaussian-measurement); {type(likelihood).__name__} has none"
                    )
                target = 2.0 * norm(x0)  # ∇‖r‖²/‖r‖ = 2∇‖r‖
            else:
                target = likelihood(x0, None)
            (grad,) = torch.autograd.grad(target.sum(), inp)
        return s.detach(), -grad

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        assert isinstance(energy, Posterior)  # init checked it
        i = min(state.step, self.n_levels - 1)
        sigma = self.sigmas[i]
        score, guide = self.guidance(energy, state.x, sigma)
        last = i + 1 >= self.n_levels  # the last level: the noise-free Tweedie step to σ = 0
        var = sigma**2 if last else sigma**2 - self.sigmas[i + 1] ** 2
        zeta = self.guidance_scale
        if self.normalized:
            x = state.x + var * score + zeta * guide
        else:
            x = state.x + var * (score + zeta * guide)
        if not last:
            x = x + math.sqrt(var) * gaussian_like(state.x, generator)
        sigma_next = state.sigma if last else broadcast_sigma(self.sigmas[i + 1], x)
        check_finite(self.name, state.step, None, x)
        return SamplerState(x.detach(), None, score, sigma_next, state.step + 1)

    def run(self, energy, x0, n_steps=None, **kwargs) -> SampleResult:
        """Run the whole schedule by default (``n_levels`` steps)."""
        return super().run(energy, x0, self.total_steps if n_steps is None else n_steps, **kwargs)

    def diagnostics(self, state: SamplerState) -> dict:
        return {
            "sigmas": self.sigmas,
            "guidance_scale": self.guidance_scale,
            "normalized": self.normalized,
        }
