"""Exact targets of composed Gaussian-mixture energies, and the sample statistics to compare.

Products and powers of Gaussians are Gaussians, so for mixtures pᵢ(x) = Σₖ wᵢₖ N(μᵢₖ, Σᵢₖ)

    Π_i pᵢ(x)^{aᵢ}       (aᵢ = 1 for a mixture; any real aᵢ for a single Gaussian)

is again a Gaussian mixture, one component per choice of a component in each factor, with

    Λ = Σ aᵢ Λᵢ,   η = Σ aᵢ Λᵢ μᵢ,   mean Λ⁻¹η,   covariance Λ⁻¹,
    log weight = Σ aᵢ (log wᵢ − ½ μᵢᵀΛᵢμᵢ − ½ log det 2πΣᵢ) + ½ ηᵀΛ⁻¹η + ½ log det 2πΛ⁻¹

(Λᵢ = Σᵢ⁻¹). That covers the product of experts p₁p₂ (``a + b``) and the negation p₁/p₂ʷ
(``a - w * b``, with p₂ a Gaussian), which is normalisable exactly when every Λ is positive
definite. Classifier-free guidance p(x | y)ʷ p(x)^{1−w} with w > 1 raises a mixture to a
negative power, which is no mixture: :func:`grid_moments` gives its moments by quadrature
(2-D), and checks the closed forms above the same way.

Mode weights are the masses of the cells of the nearest given centre (Voronoi cells), so
that samples are scored by :func:`sample_moments` with the same rule.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

import ebmflow


def tilted_product(factors: Sequence[tuple[ebmflow.GMMEnergy, float]]) -> ebmflow.GMMEnergy:
    """Π pᵢ^{aᵢ} of normalised ``gmm`` energies as a normalised ``gmm`` (module docstring).

    A factor with more than one component must have power 1. Raises ``ConfigError`` when the
    result is not normalisable (a precision Λ that is not positive definite).
    """
    owner = "tilted_product"
    if not factors:
        raise ebmflow.ConfigError(f"{owner}: needs at least one (gmm, power) factor, got none")
    parts = []
    for i, (gmm, power) in enumerate(factors):
        if not isinstance(gmm, ebmflow.GMMEnergy):
            raise ebmflow.ComponentArgumentError(
                f"{owner}: factor {i} must be an ebmflow.GMMEnergy, got {type(gmm).__name__}"
            )
        if gmm.means.shape[0] > 1 and power != 1:
            raise ebmflow.ConfigError(
                f"{owner}: factor {i} is a mixture of {gmm.means.shape[0]} components raised to "
                f"the power {power}; only power 1 keeps a mixture a mixture (a single Gaussian "
                f"takes any power)"
            )
        cov = gmm.covariances.to(torch.float64)
        prec = torch.linalg.inv(cov)
        mu = gmm.means.to(torch.float64)
        const = (
            gmm.log_weights.to(torch.float64)
            - 0.5 * torch.einsum("ki,kij,kj->k", mu, prec, mu)
            - 0.5 * torch.logdet(2 * math.pi * cov)
        )
        parts.append((float(power), prec, torch.einsum("kij,kj->ki", prec, mu), const))
    means, covs, log_weights = [], [], []
    for choice in itertools.product(*(range(p[1].shape[0]) for p in parts)):
        lam = sum(a * prec[k] for (a, prec, _, _), k in zip(parts, choice))
        eta = sum(a * lin[k] for (a, _, lin, _), k in zip(parts, choice))
        const = sum(a * c[k] for (a, _, _, c), k in zip(parts, choice))
        eigvals = torch.linalg.eigvalsh(lam)
        if not bool((eigvals > 0).all()):
            raise ebmflow.ConfigError(
                f"{owner}: the product is not normalisable: components {list(choice)} give a "
                f"precision with eigenvalues {[round(v, 6) for v in eigvals.tolist()]}; every "
                f"eigenvalue must be > 0 (use a smaller negative power)"
            )
        cov = torch.linalg.inv(lam)
        cov = 0.5 * (cov + cov.T)
        mean = cov @ eta
        log_weights.append(const + 0.5 * eta @ mean + 0.5 * torch.logdet(2 * math.pi * cov))
        means.append(mean)
        covs.append(cov)
    log_w = torch.stack(log_weights)
    return ebmflow.GMMEnergy(
        means=torch.stack(means).tolist(),
        covariances=torch.stack(covs).tolist(),
        weights=torch.softmax(log_w, 0).tolist(),
    )


def product(a: ebmflow.GMMEnergy, b: ebmflow.GMMEnergy) -> ebmflow.GMMEnergy:
    """The normalised product of experts p_a p_b / Z (what ``a + b`` samples)."""
    return tilted_product([(a, 1.0), (b, 1.0)])


def negation(a: ebmflow.GMMEnergy, b: ebmflow.GMMEnergy, weight: float) -> ebmflow.GMMEnergy:
    """The normalised p_a / p_bʷ (what ``a - weight * b`` samples); ``b`` one Gaussian."""
    return tilted_product([(a, 1.0), (b, -float(weight))])


def mixture_moments(gmm: ebmflow.GMMEnergy) -> tuple[Tensor, Tensor]:
    """Mean (d,) and covariance (d, d) of a ``gmm``, float64."""
    w = gmm.weights.to(torch.float64)
    mu = gmm.means.to(torch.float64)
    mean = w @ mu
    centred = mu - mean
    cov = torch.einsum("k,kij->ij", w, gmm.covariances.to(torch.float64))
    return mean, cov + torch.einsum("k,ki,kj->ij", w, centred, centred)


@dataclass
class Moments:
    """Mean (d,), covariance (d, d) and mode weights (C,) of a law or of samples, float64;
    for samples also their Monte Carlo standard errors (``None`` for exact values)."""

    mean: Tensor
    covariance: Tensor
    mode_weights: Tensor
    mean_se: Tensor | None = None
    covariance_se: Tensor | None = None
    mode_weights_se: Tensor | None = None

    def z_scores(self, exact: Moments) -> dict[str, float]:
        """The largest |sample − exact| / standard error of each statistic (samples only)."""
        if self.mean_se is None or self.covariance_se is None or self.mode_weights_se is None:
            raise ebmflow.ConfigError(
                "z_scores: these moments are exact; call it on the moments of samples"
            )
        return {
            "mean": float(((self.mean - exact.mean) / self.mean_se).abs().max()),
            "covariance": float(
                ((self.covariance - exact.covariance) / self.covariance_se).abs().max()
            ),
            "mode_weights": float(
                ((self.mode_weights - exact.mode_weights) / self.mode_weights_se).abs().max()
            ),
        }


def _nearest(x: Tensor, centres: Tensor) -> Tensor:
    return torch.cdist(x.to(torch.float64), centres.to(torch.float64)).argmin(dim=1)


def sample_moments(samples: Tensor, centres: Tensor) -> Moments:
    """Moments of independent samples (n, d) with standard errors: √(var/n) for the mean,
    √(var((xᵢ − m)(xⱼ − m))/n) for the covariance, √(p(1 − p)/n) for the mode weights."""
    x = samples.detach().to(torch.float64).flatten(1)
    n = x.shape[0]
    mean = x.mean(0)
    centred = x - mean
    products = centred[:, :, None] * centred[:, None, :]
    weights = torch.bincount(_nearest(x, centres), minlength=centres.shape[0]).double() / n
    return Moments(
        mean=mean,
        covariance=products.mean(0) * n / (n - 1),
        mode_weights=weights,
        mean_se=(x.var(0) / n).sqrt(),
        covariance_se=(products.var(0) / n).sqrt(),
        mode_weights_se=(weights * (1 - weights) / n).sqrt().clamp_min(1.0 / n),
    )


def grid_moments(
    energy: ebmflow.Energy,
    centres: Tensor,
    bounds: tuple[float, float] = (-10.0, 10.0),
    resolution: int = 801,
    sigma: float | None = None,
) -> tuple[Moments, float]:
    """Moments of p ∝ exp(−E) of a 2-D energy by the midpoint rule on a square grid, and
    log Z (``energy`` at ``sigma``; the grid must hold all but a negligible mass)."""
    if energy.event_shape != (2,):
        raise ebmflow.ConfigError(
            f"grid_moments: quadrature is over 2-D energies (event_shape (2,)), got "
            f"{type(energy).__name__} with event_shape {energy.event_shape}"
        )
    lo, hi = bounds
    h = (hi - lo) / resolution
    axis = lo + h * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(axis, axis)
    floats = [t.dtype for t in itertools.chain(energy.parameters(), energy.buffers())]
    dtype = next((d for d in floats if d.is_floating_point), torch.get_default_dtype())
    with torch.no_grad():
        log_p = torch.cat(
            [-energy(chunk.to(dtype), sigma).to(torch.float64) for chunk in grid.split(1 << 16)]
        )
    log_z = float(torch.logsumexp(log_p, 0)) + 2 * math.log(h)
    p = torch.softmax(log_p, 0)
    mean = p @ grid
    centred = grid - mean
    cov = torch.einsum("n,ni,nj->ij", p, centred, centred)
    weights = torch.zeros(centres.shape[0], dtype=torch.float64).index_add_(
        0, _nearest(grid, centres), p
    )
    return Moments(mean, cov, weights), log_z
