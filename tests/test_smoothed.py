"""The σ-smoothed 2-D sets (``ebmflow.datasets.smoothed``): exact densities of x + σz.

Each smoothed log-density is checked against the convolution written out,
p_σ(x) = E_z[p(x − σz)], by 2-D Gauss–Hermite quadrature in z (64 nodes per axis: exact to
about 1e-10 for the smooth sets, whose narrowest feature 0.08 is wider than σ/8) or, for the
checkerboard's discontinuous p, by the midpoint rule in z on a 0.01 grid over [−8, 8]²,
whose error comes from the squares' edges: at most about h·φ(0)/32 ≈ 1.2e-4 per edge the
Gaussian straddles, against densities of 1/32 ≈ 0.031. Normalisation and sampling are checked as
elsewhere in the suite: the grid sum within 1e-4, and the Monte Carlo NLL of the samples
within 4 standard errors of the grid entropy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmflow.datasets import Checkerboard, Digits, EightGaussians, Moons, Rings, TwoSpirals
from ebmflow.datasets.smoothed import smoothed
from ebmflow.errors import ConfigError

TOY = [EightGaussians, Checkerboard, Rings, Moons, TwoSpirals]
SIGMA = 0.1


def gauss_hermite_convolution(dataset, x: torch.Tensor, sigma: float, nodes: int) -> torch.Tensor:
    """E_z[p(x − σz)] for z ~ N(0, I) by a tensor Gauss–Hermite rule."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(−t²/2)
    t = torch.as_tensor(t, dtype=torch.float64)
    w = torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64)
    z = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    weights = (w[:, None] * w[None, :]).reshape(-1)
    shifted = (x[:, None, :] - sigma * z).reshape(-1, 2)
    p = dataset.log_prob(shifted).exp().reshape(len(x), -1)
    return (p * weights).sum(1)


def midpoint_convolution(dataset, x: torch.Tensor, sigma: float, h: float) -> torch.Tensor:
    """E_z[p(x − σz)] by the midpoint rule in z on a grid of step h over [−8, 8]²."""
    t = torch.arange(-8 + h / 2, 8, h, dtype=torch.float64)
    w = torch.exp(-t * t / 2) * h / math.sqrt(2 * math.pi)
    z = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    weights = (w[:, None] * w[None, :]).reshape(-1)
    return torch.stack([(dataset.log_prob(row - sigma * z).exp() * weights).sum() for row in x])


@pytest.mark.parametrize("cls", TOY, ids=lambda c: c.name)
def test_smoothed_density_is_the_convolution_written_out(cls):
    dataset = cls()
    gen = torch.Generator().manual_seed(0)
    x = dataset.sample(12, gen).double() + 0.2 * torch.randn(12, 2, generator=gen).double()
    got = smoothed(dataset, SIGMA).log_prob(x).exp()
    if cls is Checkerboard:
        want = midpoint_convolution(dataset, x, SIGMA, 0.01)
        assert torch.allclose(got, want, rtol=0, atol=1.2e-4), (got - want).abs().max()
    else:
        want = gauss_hermite_convolution(dataset, x, SIGMA, 64)
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-12), (got / want - 1).abs().max()


@pytest.mark.parametrize("cls", TOY, ids=lambda c: c.name)
def test_smoothed_density_integrates_to_one_and_its_samples_follow_it(cls):
    dataset = cls()
    blurred = smoothed(dataset, SIGMA)
    (x0, x1), (y0, y1) = dataset.bounds
    h = 0.05
    xs = torch.arange(x0 - 1 + h / 2, x1 + 1, h, dtype=torch.float64)
    ys = torch.arange(y0 - 1 + h / 2, y1 + 1, h, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    log_p = blurred.log_prob(grid)
    p = log_p.exp()
    assert abs(float(p.sum()) * h * h - 1) < 1e-4
    entropy = float(-(p * log_p).sum()) * h * h
    samples = blurred.sample(10_000, torch.Generator().manual_seed(1)).double()
    values = -blurred.log_prob(samples)
    se = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean()) - entropy) < 4 * se + 1e-3, (float(values.mean()), entropy, se)


def test_smoothing_costs_what_the_closed_form_says_on_8gaussians():
    # 8gaussians at σ is the same mixture with variance s² + σ², s = 0.5 / 1.414
    s = 0.5 / 1.414
    x = torch.tensor([[2.0, 0.1], [0.0, 0.0]], dtype=torch.float64)
    got = smoothed(EightGaussians(), 0.3).log_prob(x)
    v = s * s + 0.09
    centres = EightGaussians()._centers()
    d2 = (x[:, None, :] - centres).pow(2).sum(-1)
    want = torch.logsumexp(-d2 / (2 * v), 1) - math.log(8 * 2 * math.pi * v)
    assert torch.allclose(got, want, atol=1e-12)


def test_smoothing_by_zero_is_the_dataset_and_leaves_the_original_untouched():
    rings = Rings()
    assert smoothed(rings, 0) is rings
    blurred = smoothed(rings, 0.2)
    assert rings.noise_std == Rings.noise_std and blurred.noise_std > rings.noise_std
    assert "smoothed" in blurred.name and rings.name == "rings"


@pytest.mark.parametrize("sigma", [-0.1, math.nan, math.inf, "0.1", True])
def test_a_bad_sigma_is_refused_naming_the_value(sigma):
    with pytest.raises(ConfigError, match=r"smoothed: sigma"):
        smoothed(Rings(), sigma)


def test_a_dataset_without_a_known_smoothing_is_refused():
    with pytest.raises(ConfigError, match=r"'digits' is not one of the built-in 2-D sets"):
        smoothed(Digits(), 0.1)
