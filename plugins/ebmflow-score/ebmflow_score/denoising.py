"""Denoising score matching: at one noise level (Vincent 2011, "A Connection Between Score
Matching and Denoising Autoencoders") and over a noise schedule (Song & Ermon 2019,
"Generative Modeling by Estimating Gradients of the Data Distribution").

For a noisy sample x̃ = x + σz, z ~ N(0, I), the score of the perturbation kernel
N(x̃; x, σ²I) is −z/σ, and

    ℓ(θ; σ) = ½ E_{x,z} ‖s_θ(x̃, σ) + z/σ‖²

is minimised by the score of the σ-smoothed data density p_σ = p_data ∗ N(0, σ²I) (Vincent
2011). Both objectives weigh it by λ(σ) = σ^p, p = 2 by default (Song & Ermon's choice, which
makes every level contribute O(1)):

    λ(σ) ℓ(θ; σ) = ½ σ^(p−2) E ‖σ s_θ(x̃, σ) + z‖²

which is how the code computes it (r = σ s + z). Normalisation: ‖·‖² sums over the event
dimensions, the batch is averaged, times ½ — Song & Ermon's convention. At the exact score
of p_σ the σ²-weighted loss per dimension is at most ½ (½ for σ much larger than the data's
scale, smaller for small σ), so ``loss / d`` near ½ means the score has learnt little.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_score._common import (
    ScoreObjective,
    check_sigma,
    energy_sigma,
    finish,
    model_score,
    weighting_power,
)


class DenoisingScoreMatching(ScoreObjective):
    """Denoising score matching at one noise level σ, ``dsm``:

        J(θ) = ½ σ^(p−2) E_{x,z} ‖σ s_θ(x̃) + z‖²,   x̃ = x + σz,  z ~ N(0, I) from the generator,

    with p from ``weighting`` (default ``"sigma2"``, p = 2: J = ½ E‖σ s + z‖²; ``"none"``,
    p = 0, is Vincent's ½ E‖s + z/σ‖²). For one σ the weighting is a constant factor, so it
    does not change the minimiser, only the scale of the loss and of its gradients.

    The minimiser is the score of the σ-smoothed data. A *clean* energy
    (``noise_conditional=False``) is evaluated at ``sigma=None`` and learns that density
    itself: E_θ(x) ≈ −log p_σ(x) + const, so evaluate it (``ebmflow evaluate``) without
    ``--sigma``. A *noise-conditional* energy or score model is evaluated at σ and learns
    E_θ(x, σ); evaluate it with ``--sigma σ``.

    Metrics: ``loss``, ``sigma``.

    Args:
        sigma: the noise level σ > 0 (VE coordinates), default 0.1.
        weighting: ``"sigma2"`` (default), ``"none"``, or a number p for λ(σ) = σ^p.
    """

    def __init__(self, sigma: float = 0.1, weighting: str | float = "sigma2") -> None:
        super().__init__()
        self.sigma = check_sigma("dsm", sigma, allow_none=False)
        self.weighting = weighting
        #: ½ σ^(p−2): J = scale · E‖σ s + z‖²
        self._scale = 0.5 * self.sigma ** (weighting_power("dsm", weighting) - 2.0)

    @property
    def sigma_min(self) -> float:
        """The noise level the objective trains at (its only one)."""
        return self.sigma

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        sigma = self.sigma
        z = ebmflow.gaussian_like(batch, generator)
        x_noisy = torch.add(batch, z, alpha=sigma)
        score = model_score("dsm", energy, x_noisy, energy_sigma("dsm", energy, sigma))
        residual = torch.add(z, score, alpha=sigma)  # σ s + z
        loss = self._scale * ebmflow.sum_squares(residual).mean()
        return finish("dsm", loss, {}, {"sigma": sigma})


def resolve_schedule(owner: str, noise_schedule: Any) -> Any:
    """A noise-schedule object from a registered name, a config dict or an object."""
    if isinstance(noise_schedule, (str, Mapping)):
        return ebmflow.current_host().create("noise_schedule", noise_schedule)
    if callable(getattr(noise_schedule, "sigmas", None)) and callable(
        getattr(noise_schedule, "sample", None)
    ):
        return noise_schedule
    raise ebmflow.ComponentArgumentError(
        f"{owner}: noise_schedule must be a registered noise-schedule name (e.g. 'geometric', "
        "'vp-linear', 'vp-cosine', 'karras'), a config dict with a 'name' key, or a schedule "
        f"object with sigmas(n) and sample(batch_size, generator); got "
        f"{type(noise_schedule).__name__} {noise_schedule!r}"
    )


class MultiscaleDSM(ScoreObjective):
    """Denoising score matching over many noise levels, ``multiscale-dsm``:

        J(θ) = ½ E_{σ, x, z} σ^(p−2) ‖σ s_θ(x̃, σ) + z‖²,   x̃ = x + σz,

    with one σ per example, drawn from the noise schedule — continuously by
    ``schedule.sample`` (``n_levels=None``, default; e.g. log-uniform for ``geometric``), or
    uniformly from its ``n_levels`` discrete levels ``schedule.sigmas(n_levels)`` as NCSN
    does — and p from ``weighting`` (default ``"sigma2"``, λ(σ) = σ², Song & Ermon 2019).
    The generator draws σ first, then z.

    The model must take σ: a noise-conditional energy (an energy-parameterised diffusion
    model, score −∇ₓE(x, σ)) or a score-only network (``ebmflow.ScoreModel``; this is NCSN).
    Sample it with ``annealed-langevin`` over the same schedule; the smallest level σ_min
    (:attr:`sigma_min`) is the one to evaluate a density at.

    Metrics: ``loss``, ``sigma_mean`` (mean σ of the batch).

    Args:
        noise_schedule: a registered noise-schedule name, a config dict (``{"name":
            "geometric", "sigma_max": 4.0, "sigma_min": 0.1}``) or a schedule object;
            default ``"geometric"`` (σ from 1 down to 0.01).
        n_levels: ``None`` (continuous σ, default) or the number L ≥ 1 of discrete levels.
        weighting: ``"sigma2"`` (default), ``"none"``, or a number p for λ(σ) = σ^p.
    """

    def __init__(
        self,
        noise_schedule: Any = "geometric",
        n_levels: int | None = None,
        weighting: str | float = "sigma2",
    ) -> None:
        super().__init__()
        owner = "multiscale-dsm"
        self.schedule = resolve_schedule(owner, noise_schedule)
        self.n_levels = (
            None if n_levels is None else ebmflow.check_positive_int(owner, "n_levels", n_levels)
        )
        #: the discrete levels σ₁ > … > σ_L (float64, CPU), or None for continuous σ
        self.levels = None if self.n_levels is None else self.schedule.sigmas(self.n_levels)
        self.weighting = weighting
        self._power = weighting_power(owner, weighting)

    @property
    def sigma_min(self) -> float:
        """The smallest noise level the objective trains at."""
        return float(self.levels[-1]) if self.levels is not None else self.schedule.sigma_min

    @property
    def sigma_max(self) -> float:
        """The largest noise level the objective trains at."""
        return float(self.levels[0]) if self.levels is not None else self.schedule.sigma_max

    def sample_sigmas(
        self, batch_size: int, generator: torch.Generator | None, like: Tensor
    ) -> Tensor:
        """``batch_size`` noise levels, shape ``(batch_size,)``, on ``like``'s device and dtype."""
        if self.levels is None:
            return self.schedule.sample(batch_size, generator, like.device, dtype=like.dtype)
        device = generator.device if generator is not None else torch.device("cpu")
        index = torch.randint(len(self.levels), (batch_size,), generator=generator, device=device)
        return self.levels.to(device)[index].to(device=like.device, dtype=like.dtype)

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        if not getattr(energy, "noise_conditional", False):
            raise ebmflow.ConfigError(
                f"multiscale-dsm: {type(energy).__name__} is a clean energy "
                "(noise_conditional=False), but multiscale-dsm trains one model at many noise "
                "levels σ; build it with noise_conditional=True (or a ScoreModel that takes σ), "
                "or train a single noise level with dsm"
            )
        sigma = self.sample_sigmas(batch.shape[0], generator, batch)
        z = ebmflow.gaussian_like(batch, generator)
        sigma_view = sigma.view(-1, *([1] * (batch.ndim - 1)))
        x_noisy = torch.addcmul(batch, sigma_view, z)
        score = model_score("multiscale-dsm", energy, x_noisy, sigma)
        per_example = ebmflow.sum_squares(torch.addcmul(z, sigma_view, score))  # ‖σ s + z‖²
        if self._power != 2.0:
            per_example = per_example * sigma.pow(self._power - 2.0)
        loss = 0.5 * per_example.mean()
        return finish("multiscale-dsm", loss, {"sigma_mean": sigma.mean()})
