"""The 2-D sets smoothed by Gaussian noise: the law of x + σz, z ~ N(0, I), with its exact
log-density.

A noise-conditional energy evaluated at σ models the data smoothed at σ, not the data, so its
NLL on clean data is bounded below by the cross-entropy −E_p[log p_σ], where p_σ = p ∗ N(0, σ²I)
(VE coordinates). :func:`smoothed` gives p_σ for every built-in 2-D set, exactly:

- 8gaussians, rings, moons and 2spirals already add N(0, s²I) noise to a point drawn from
  a mixture, a circle, an arc or a spiral's box, so p_σ is the same set with s replaced by
  √(s² + σ²);
- the checkerboard, uniform on squares, becomes a sum over its dark squares of products of
  normal CDF differences, (1/32) Σ_squares Π_d [Φ((hi_d − x_d)/σ) − Φ((lo_d − x_d)/σ)].
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import torch

from ebmflow.datasets.base import generator_device
from ebmflow.datasets.toy2d import Checkerboard, EightGaussians, Toy2D, log_ndtr_diff
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive


class SmoothedCheckerboard(Checkerboard):
    """The checkerboard smoothed by N(0, σ²I): see the module docstring."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.name = f"checkerboard smoothed at σ = {sigma:g}"

    def _sample(self, n, generator):
        x = super()._sample(n, generator)
        device = generator_device(generator)
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return x + self.sigma * z

    def _log_prob(self, x):
        # the dark squares' lower-left corners: (2i, 2j) for i, j in {−2, …, 1}, i + j even
        corners = [(2 * i, 2 * j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]
        lo = torch.tensor(corners, dtype=x.dtype, device=x.device)  # (8, 2)
        hi = (x[:, None, :] - lo) / self.sigma  # distances above each lower edge, in σ
        low = hi - 2 / self.sigma  # ... above each upper edge
        # Φ(hi) − Φ(low) in log space, the larger tail first so it stays accurate
        log_mass = log_ndtr_diff(hi, low).sum(-1)  # (n, 8)
        return torch.logsumexp(log_mass, 1) - math.log(32.0)


def smoothed(dataset: Toy2D, sigma: float) -> Toy2D:
    """The law of x + σz for x from ``dataset`` (a built-in 2-D set), as a dataset with an
    exact ``log_prob`` and ``sample``; ``sigma = 0`` returns ``dataset`` itself."""
    sigma = check_positive("smoothed", "sigma", sigma, allow_zero=True)
    if sigma == 0:
        return dataset
    if isinstance(dataset, Checkerboard):
        return SmoothedCheckerboard(sigma)
    noise = getattr(type(dataset), "noise_std", None)
    if not isinstance(dataset, Toy2D) or noise is None:
        raise ConfigError(
            f"smoothed: {getattr(dataset, 'name', type(dataset).__name__)!r} is not one of the "
            "built-in 2-D sets (8gaussians, checkerboard, rings, moons, 2spirals), whose "
            "smoothed densities are known exactly"
        )
    out = copy.copy(dataset)
    # 8gaussians divides its noise by `divisor` after drawing it
    divisor = dataset.divisor if isinstance(dataset, EightGaussians) else 1.0
    cast(Any, out).noise_std = divisor * math.hypot(float(noise) / divisor, sigma)
    out.name = f"{dataset.name} smoothed at σ = {sigma:g}"
    return out
