"""Noise-contrastive estimation (Gutmann & Hyvärinen 2010, 2012, "Noise-contrastive
estimation of unnormalized statistical models").

The model is log p_θ(u) = −E_θ(u) − c, with the log normaliser c = log Z learnt as an
ordinary parameter (``objective.log_z``). With ν noise samples y from a density q per data
sample x, NCE fits a logistic classifier of data against noise whose logit is the log
density ratio

    G(u) = log p_θ(u) − log q(u) − log ν,

by minimising the logistic loss

    J(θ, c) = mean_x softplus(−G(x)) + ν · mean_y softplus(G(y)).

Its minimiser over (θ, c) is the data density with c its exact log Z, when the model can
express it and q is positive wherever the data is; no sampling from the model is needed.
The noise here is a Gaussian (:class:`~ebmflow_contrastive.noise.GaussianNoise`) with the
mean and covariance of the first training batch, widened by ``noise_scale``, unless fixed
by ``noise_mean`` / ``noise_std``.

Metrics: ``loss``, ``log_z`` (the learnt c), ``accuracy`` (of the classifier on this batch),
``e_data`` and ``e_noise`` (mean energies).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ebmflow
from ebmflow_contrastive.noise import GaussianNoise


class NoiseContrastiveEstimation(ebmflow.Objective):
    """NCE against a Gaussian noise, with a learnt log Z.

    Args:
        noise_ratio: ν, noise samples per data sample, an integer ≥ 1 (default 4).
        noise_scale: factor > 0 on the fitted Gaussian's standard deviations (default 1.2:
            a little wider than the data, so its tails are covered too).
        noise_mean: fix the noise mean (a number or one per coordinate) instead of fitting.
        noise_std: fix the noise standard deviations (diagonal) instead of fitting (not
            multiplied by ``noise_scale``).
        log_z_init: the initial value of the learnt log Z (default 0).
        dim: coordinates per sample (the flattened event size); default: from the first
            batch, then recorded in the objective's config so a saved objective reloads.
    """

    owner = "nce"

    def __init__(
        self,
        noise_ratio: int = 4,
        noise_scale: float = 1.2,
        noise_mean: Any = None,
        noise_std: Any = None,
        log_z_init: float = 0.0,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        self.noise_ratio = ebmflow.check_positive_int(self.owner, "noise_ratio", noise_ratio)
        self.noise = GaussianNoise(self.owner, noise_scale, noise_mean, noise_std, dim)
        if not (
            isinstance(log_z_init, (int, float))
            and not isinstance(log_z_init, bool)
            and math.isfinite(log_z_init)
        ):
            raise ebmflow.ConfigError(
                f"{self.owner}: log_z_init must be a finite number, got {log_z_init!r}"
            )
        self.log_z = nn.Parameter(torch.tensor(float(log_z_init)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if config.get("dim") is None and self.noise.dim is not None:
            config["dim"] = self.noise.dim  # the buffers' size, to rebuild them on load
        return config

    def extra_repr(self) -> str:
        return f"noise_ratio={self.noise_ratio}, noise_scale={self.noise.scale}"

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        if energy.noise_conditional:
            raise ebmflow.ConfigError(
                f"{self.owner}: {type(energy).__name__} is noise-conditional; NCE trains a "
                "clean energy E(x) (for E(x, σ) use 'drl' or 'multiscale-dsm')"
            )
        if not energy.has_energy:
            raise ebmflow.ConfigError(
                f"{self.owner}: {type(energy).__name__} is score-only; NCE needs energy "
                "values (an Energy with has_energy = True, e.g. 'mlp')"
            )
        if not self.noise.fitted:
            self.noise.fit(batch)
        n = batch.shape[0]
        noise = self.noise.sample(self.noise_ratio * n, batch, generator)
        # data and noise through the network in one batched pass
        both = torch.cat([batch, noise])
        e = energy(both)
        g = -e - self.log_z - self.noise.log_prob(both) - math.log(self.noise_ratio)
        g_data, g_noise = g[:n], g[n:]
        loss = F.softplus(-g_data).mean() + self.noise_ratio * F.softplus(g_noise).mean()
        with torch.no_grad():
            correct = (g_data > 0).sum() + (g_noise <= 0).sum()
            values = torch.stack(
                [
                    loss,
                    self.log_z,
                    correct / g.shape[0],
                    e[:n].mean(),
                    e[n:].mean(),
                ]
            ).tolist()
        if not math.isfinite(values[0]):
            raise ebmflow.NonFiniteLossError(
                f"{self.owner}: the loss is not finite ({values[0]}; mean E(data) = "
                f"{values[3]:.4g}, mean E(noise) = {values[4]:.4g}): the energy diverged. "
                "Lower the learning rate"
            )
        metrics = dict(zip(("loss", "log_z", "accuracy", "e_data", "e_noise"), values))
        return ebmflow.ObjectiveOutput(loss, metrics)
