"""Analytic Gaussian mixture energy E(x) = −log Σₖ wₖ N(x; μₖ, Σₖ), normalised."""

from __future__ import annotations

import math
from typing import Any

import torch

from ebmflow.energies.gaussian import (
    GaussianFamily,
    as_float64,
    diagonal_variances,
    eigen_covariance,
)
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive, check_positive_int


class GMMEnergy(GaussianFamily):
    """Analytic Gaussian mixture: E(x) = −log Σₖ wₖ N(x; μₖ, Σₖ).

    Normalised: exp(−E) is the mixture density, so ``log_z() == 0`` exactly and
    ``log_prob(x) == −E(x)``. The score is closed form through the responsibilities
    rₖ(x) = softmax(log wₖ + log N(x; μₖ, Σₖ)): s(x) = −Σₖ rₖ Σₖ⁻¹ (x − μₖ) (no autograd).
    ``sample`` draws exact samples.

    With ``noise_conditional=True``, E(x, σ) = −log Σₖ wₖ N(x; μₖ, Σₖ + σ²I), the
    σ-smoothed mixture (the law of x + σ·z, VE coordinates); ``sigma=None`` (or 0) is the
    clean mixture.

    Args:
        means: μ, a K×d nested list (K components in d dimensions).
        stds: a number (Σₖ = s²I for all k), a list of K numbers (Σₖ = sₖ²I) or a K×d nested
            list (Σₖ = diag(sₖ²)). With neither ``stds`` nor ``covariances``, Σₖ = I.
        covariances: Σ, a K×d×d nested list of symmetric positive-definite matrices.
        weights: K positive numbers, normalised to sum to one; uniform by default.
        noise_conditional: take σ and use Σₖ + σ²I.
    """

    def __init__(
        self,
        means: list[list[float]],
        stds: float | list[float] | list[list[float]] | None = None,
        covariances: list[list[list[float]]] | None = None,
        weights: list[float] | None = None,
        noise_conditional: bool = False,
    ) -> None:
        super().__init__()
        owner = "GMMEnergy"
        loc = as_float64(owner, "means", means, 2, "a K×d nested list of numbers")
        k, d = loc.shape
        if stds is not None and covariances is not None:
            raise ConfigError(f"{owner}: give stds or covariances, not both (got both)")
        if covariances is not None:
            cov = as_float64(
                owner,
                "covariances",
                covariances,
                3,
                f"a {k}×{d}×{d} nested list (one d×d matrix per component)",
            )
            if cov.shape != (k, d, d):
                raise ConfigError(
                    f"{owner}: covariances must be {k}×{d}×{d} to match means ({k} "
                    f"components in {d} dimensions), got shape {tuple(cov.shape)}"
                )
            eigvals, eigvecs = eigen_covariance(owner, "covariances", cov)
        else:
            eigvals = _component_variances(owner, 1.0 if stds is None else stds, k, d)
            eigvecs = torch.eye(d, dtype=torch.float64).expand(k, d, d).clone()
        if weights is None:
            w = torch.ones(k, dtype=torch.float64)
        else:
            accepted = f"a list of {k} positive numbers (one per component)"
            w = as_float64(owner, "weights", weights, 1, accepted)
            if w.shape != (k,) or not bool((w > 0).all()):
                raise ConfigError(f"{owner}: weights must be {accepted}, got {weights!r}")
        if not isinstance(noise_conditional, bool):
            raise ConfigError(
                f"{owner}: noise_conditional must be True or False, got {noise_conditional!r}"
            )
        self._set_components(loc, eigvals, eigvecs, w, noise_conditional)

    @classmethod
    def ring(
        cls,
        n_modes: int = 8,
        radius: float = 4 / 1.414,
        std: float = 0.5 / 1.414,
        noise_conditional: bool = False,
    ) -> GMMEnergy:
        """``n_modes`` equal-weight isotropic modes on a circle in 2-D, mode k at angle 2πk/n.

        The defaults are the "8gaussians" toy density of FFJORD (Grathwohl et al. 2019):
        centres at radius 4/1.414, standard deviation 0.5/1.414. The returned energy's
        config holds the explicit means, so it round-trips as an ordinary ``gmm``.
        """
        n_modes = check_positive_int("GMMEnergy.ring", "n_modes", n_modes)
        radius = check_positive("GMMEnergy.ring", "radius", radius, allow_zero=True)
        std = check_positive("GMMEnergy.ring", "std", std)
        means = [
            [
                radius * math.cos(2 * math.pi * i / n_modes),
                radius * math.sin(2 * math.pi * i / n_modes),
            ]
            for i in range(n_modes)
        ]
        return cls(means=means, stds=std, noise_conditional=noise_conditional)

    @property
    def means(self) -> torch.Tensor:
        """μ, shape (K, d)."""
        return self.loc

    @property
    def covariances(self) -> torch.Tensor:
        """Σ, shape (K, d, d)."""
        return self._covariances()

    @property
    def weights(self) -> torch.Tensor:
        """w, shape (K,), summing to one."""
        return self.log_weights.exp()


def _component_variances(owner: str, stds: Any, k: int, d: int) -> torch.Tensor:
    """Variances (K, d) from ``stds``: a number, K numbers, or a K×d nested list."""
    accepted = (
        f"a number > 0, a list of {k} numbers > 0 (one per component) or a {k}×{d} "
        "nested list (per-component diagonal)"
    )
    if isinstance(stds, (list, tuple)) and stds and isinstance(stds[0], (list, tuple)):
        values = as_float64(owner, "stds", stds, 2, accepted)
        if values.shape != (k, d) or not bool((values > 0).all()):
            raise ConfigError(f"{owner}: stds must be {accepted}, got {stds!r}")
        return values.square()
    if isinstance(stds, (list, tuple)):
        per_component = diagonal_variances(owner, "stds", stds, k) if len(stds) == k else None
        if per_component is None:
            raise ConfigError(f"{owner}: stds must be {accepted}, got {stds!r}")
        return per_component[:, None].expand(k, d).clone()
    return diagonal_variances(owner, "stds", stds, d)[None].expand(k, d).clone()
