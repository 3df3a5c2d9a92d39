"""The ρ-spaced noise schedule of EDM (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", eq. 5 and Table 1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow.errors import ConfigError
from ebmflow.noise_schedules.base import NoiseSchedule, check_sigma_range, normal_draws
from ebmflow.validation import check_positive


class KarrasSchedule(NoiseSchedule):
    """σ_i = (σ_max^(1/ρ) + i / (n − 1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,  i = 0, …, n − 1.

    Evenly spaced in σ^(1/ρ); ρ = 7 (EDM's choice) spends more levels at small σ. ρ = 1 is
    linear spacing in σ; ρ → ∞ tends to the geometric schedule.

    Training distribution (``sample``): EDM's log-normal, log σ ~ N(P_mean, P_std²) with
    P_mean = −1.2 and P_std = 1.2 by default, *clipped* (not truncated) to [σ_min, σ_max].
    With the defaults the clipped mass is below 2e-5, so the clipping only keeps σ in range.

    Args:
        sigma_min: smallest level σ_min (> 0); EDM uses 0.002.
        sigma_max: largest level σ_max (> sigma_min); EDM uses 80.
        rho: ρ > 0; EDM uses 7.
        p_mean, p_std: mean and standard deviation (> 0) of log σ in ``sample``.
    """

    name = "karras"

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
    ) -> None:
        owner = "karras schedule"
        self.sigma_min, self.sigma_max = check_sigma_range(owner, sigma_min, sigma_max)
        self.rho = check_positive(owner, "rho", rho)
        if (
            isinstance(p_mean, bool)
            or not isinstance(p_mean, (int, float))
            or not (math.isfinite(p_mean))
        ):
            raise ConfigError(f"{owner}: p_mean must be a finite number, got {p_mean!r}")
        self.p_mean = float(p_mean)
        self.p_std = check_positive(owner, "p_std", p_std)

    def _sigmas(self, n: int) -> Tensor:
        inv_rho = 1.0 / self.rho
        max_r, min_r = self.sigma_max**inv_rho, self.sigma_min**inv_rho
        ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        return (max_r + ramp * (min_r - max_r)) ** self.rho

    def _sample(self, batch_size, generator, device) -> Tensor:
        z = normal_draws(batch_size, generator, device)
        return torch.exp(self.p_mean + self.p_std * z)
