"""GaussianDenoiser: the exact denoiser of Gaussian data, as a diffusers model.

For data x₀ ~ N(μ, s² I) and x_t = a x₀ + v ε (VP: a = √ᾱ, v = √(1 − ᾱ)), the posterior
means are, with D = a² s² + v²,

    E[ε | x_t]  = v (x_t − a μ) / D,
    E[x₀ | x_t] = μ + a s² (x_t − a μ) / D,
    v-target    = a E[ε | x_t] − v E[x₀ | x_t],

and for a VE model (x = x₀ + σ ε, timestep σ) the score is −(x − μ) / (s² + σ²). The
marginal at every level is known (N(a μ, D) for VP, N(μ, s² + σ²) for VE), which makes this
model the reference for tests of conversion and sampling: a sampler that is right reproduces
these marginals. Timesteps may be fractional: σ(t) interpolates log σ linearly between the
training levels, the same map the converter inverts.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import Tensor

from ebmflow import ConfigError
from ebmflow_diffusers.schedule import NoiseTable


def sigma_at(table: NoiseTable, timestep: Tensor) -> Tensor:
    """σ (float64) at (possibly fractional) timesteps: log-linear between the training levels
    of a VP ``table``; the timestep itself for VE."""
    t = timestep.to(torch.float64)
    if table.kind == "ve":
        return t
    log_sigmas = table.log_sigmas.to(t.device)
    lo = t.floor().clamp(0, log_sigmas.shape[0] - 1).long()
    hi = (lo + 1).clamp(max=log_sigmas.shape[0] - 1)
    frac = t - lo
    return torch.exp(log_sigmas[lo] + frac * (log_sigmas[hi] - log_sigmas[lo]))


class GaussianDenoiser(ModelMixin, ConfigMixin):
    """The exact ε-, x₀-, v- or score-model of N(``mean``, ``std``² I) data.

    Args:
        sample_size, in_channels: the sample shape (C, H, W) = (in_channels, size, size).
        mean, std: μ (one value for every pixel) and s.
        prediction_type: ``"epsilon"``, ``"sample"``, ``"v_prediction"`` (VP) or ``"score"``
            (VE).
        schedule: ``"vp"`` (with the DDPM beta arguments) or ``"ve"``.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 4,
        in_channels: int = 1,
        mean: float = 0.0,
        std: float = 1.0,
        prediction_type: str = "epsilon",
        schedule: str = "vp",
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
    ) -> None:
        super().__init__()
        if not std > 0:
            raise ConfigError(f"GaussianDenoiser: std must be > 0, got {std!r}")
        self.table = NoiseTable(
            {
                "schedule": schedule,
                "prediction_type": prediction_type,
                "num_train_timesteps": num_train_timesteps,
                "beta_start": beta_start,
                "beta_end": beta_end,
                "beta_schedule": beta_schedule,
                "sigma_min": 1e-3,
                "sigma_max": 1e3,
            }
        )
        # the parameters as a buffer: saved with the model, and what sets its dtype
        self.register_buffer("moments", torch.tensor([mean, std], dtype=torch.float32))

    def sigma_of(self, timestep: Tensor) -> Tensor:
        """σ at (possibly fractional) timesteps (:func:`sigma_at`)."""
        return sigma_at(self.table, timestep)

    def forward(self, sample: Tensor, timestep, return_dict: bool = True):
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=sample.device)
        timestep = timestep.reshape(-1).expand(sample.shape[0])
        view = (-1,) + (1,) * (sample.ndim - 1)
        sigma = self.sigma_of(timestep).view(view)
        mu, s = self.moments.to(torch.float64)
        x = sample.to(torch.float64)
        kind = self.config.prediction_type
        if self.table.kind == "ve":
            out = -(x - mu) / (s * s + sigma * sigma)
        else:
            a = torch.rsqrt(1 + sigma * sigma)
            v = sigma * a
            resid = (x - a * mu) / (a * a * s * s + v * v)
            eps = v * resid
            x0 = mu + a * s * s * resid
            out = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - v * x0}[kind]
        out = out.to(sample.dtype)
        return UNet2DOutput(sample=out) if return_dict else (out,)
