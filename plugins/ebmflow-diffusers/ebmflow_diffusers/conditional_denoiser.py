"""MixtureDenoiser: the exact class-conditional denoiser of Gaussian-mixture data, as a
diffusers model (the conditional counterpart of :class:`GaussianDenoiser`).

Data of class y are drawn from p(x | y) = Σ_{k ∈ y} w_k N(μ_k, s_k² I) on samples of shape
(C, H, W) (flattened to D = C·H·W numbers; ``means`` holds D numbers per component). The
model answers a stock diffusion loop the way ``UNet2DConditionModel`` does with class
labels: ``model(sample, timestep, class_labels=y)`` returns the exact ε-, x₀-, v- or score
prediction of the noisy conditional law; ``class_labels=None`` gives the unconditional one
(the branch classifier-free guidance uses). The noisy laws are those of
:class:`~ebmflow_diffusers.conditional_mixture.ClassConditionalGMM`, which the model holds
as ``mixture``, so samples of any pipeline can be checked against exact values.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import Tensor

from ebmflow import ConfigError
from ebmflow_diffusers.analytic import sigma_at
from ebmflow_diffusers.conditional_mixture import ClassConditionalGMM
from ebmflow_diffusers.schedule import NoiseTable, output_from_score


class MixtureDenoiser(ModelMixin, ConfigMixin):
    """The exact class-conditional ε-, x₀-, v- or score-model of Gaussian-mixture data.

    Args:
        means, labels, stds, weights, class_weights: the data, as for
            :class:`~ebmflow_diffusers.conditional_mixture.ClassConditionalGMM`; each mean
            holds ``in_channels · sample_size²`` numbers.
        sample_size, in_channels: the sample shape (C, H, W) = (in_channels, size, size).
        prediction_type: ``"epsilon"``, ``"sample"``, ``"v_prediction"`` (VP) or ``"score"``
            (VE).
        schedule: ``"vp"`` (with the DDPM beta arguments) or ``"ve"``.
    """

    @register_to_config
    def __init__(
        self,
        means: list[list[float]],
        labels: list[int],
        stds: float | list[float] = 1.0,
        weights: list[float] | None = None,
        class_weights: list[float] | None = None,
        sample_size: int = 1,
        in_channels: int = 2,
        prediction_type: str = "epsilon",
        schedule: str = "vp",
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
    ) -> None:
        super().__init__()
        size = in_channels * sample_size * sample_size
        if any(len(m) != size for m in means):
            raise ConfigError(
                f"MixtureDenoiser: every mean must hold in_channels·sample_size² = {size} "
                f"numbers (one sample of shape ({in_channels}, {sample_size}, {sample_size})), "
                f"got lengths {sorted({len(m) for m in means})}"
            )
        self.mixture = ClassConditionalGMM(means, labels, stds, weights, class_weights)
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

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        class_labels: Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[Tensor]:
        shape = tuple(sample.shape[1:])
        expected = (self.config.in_channels, self.config.sample_size, self.config.sample_size)
        if shape != expected:
            raise ConfigError(
                f"MixtureDenoiser: sample must have shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(sample.shape)}"
            )
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        sigma = sigma_at(self.table, t).to(sample.dtype)
        a, v = self.table.scales(sigma)
        view = (-1,) + (1,) * (sample.ndim - 1)
        x_ve = (sample / a.view(view)).flatten(1)
        score = self.mixture.score(x_ve, sigma, y=class_labels).view_as(sample)
        out = output_from_score(
            score, sample, a.view(view), v.view(view), self.config.prediction_type
        )
        return UNet2DOutput(sample=out) if return_dict else (out,)
