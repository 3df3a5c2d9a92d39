"""The geometric noise schedule of NCSN (Song & Ermon 2019, "Generative Modeling by
Estimating Gradients of the Data Distribution")."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow.noise_schedules.base import NoiseSchedule, check_sigma_range, uniform_draws


class GeometricSchedule(NoiseSchedule):
    """σ_i = σ_max · (σ_min / σ_max)^(i / (n − 1)),  i = 0, …, n − 1.

    A geometric sequence: log σ is evenly spaced between log σ_max and log σ_min, so every
    level is the previous one times the same ratio (σ_min / σ_max)^(1 / (n − 1)).

    Training distribution (``sample``): log-uniform, log σ ~ U[log σ_min, log σ_max], the
    continuous counterpart of picking one of the levels uniformly at random as NCSN does.

    Args:
        sigma_max: the largest noise level σ_max (> sigma_min).
        sigma_min: the smallest noise level σ_min (> 0).
    """

    name = "geometric"

    def __init__(self, sigma_max: float = 1.0, sigma_min: float = 0.01) -> None:
        self.sigma_min, self.sigma_max = check_sigma_range(
            "geometric schedule", sigma_min, sigma_max
        )

    def _sigmas(self, n: int) -> Tensor:
        log_sigmas = torch.linspace(
            math.log(self.sigma_max), math.log(self.sigma_min), n, dtype=torch.float64
        )
        return log_sigmas.exp()

    def _sample(self, batch_size, generator, device) -> Tensor:
        log_min, log_max = math.log(self.sigma_min), math.log(self.sigma_max)
        u = uniform_draws(batch_size, generator, device)
        return torch.exp(log_min + u * (log_max - log_min))
