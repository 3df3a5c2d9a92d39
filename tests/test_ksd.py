"""Kernel Stein discrepancy: the Stein kernel against autograd, calibration of the bootstrap
test on exact samples, power against a shifted sampler, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow.evaluate import ksd
from ebmflow.evaluate.ksd import stein_matrix


def _gaussian(dim: int = 2) -> ebmflow.Energy:
    return ebmflow.create("energy", "gaussian", mean=[0.0] * dim, std=1.0)


def test_stein_kernel_matches_autograd() -> None:
    # u(x, y) = ∇_x·∇_y-form of the Stein operator applied twice to k, by autograd
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    s = torch.randn(5, 3, generator=g, dtype=torch.float64)
    c, beta = 1.3, -0.4
    u = stein_matrix(x, s, c, beta)
    for i in range(5):
        for j in range(5):
            a = x[i].clone().requires_grad_(True)
            b = x[j].clone().requires_grad_(True)
            k = (c * c + (a - b).square().sum()).pow(beta)
            (gx,) = torch.autograd.grad(k, a, create_graph=True)
            (gy,) = torch.autograd.grad(k, b, create_graph=True)
            trace = sum(torch.autograd.grad(gx[m], b, retain_graph=True)[0][m] for m in range(3))
            expect = k * (s[i] @ s[j]) + s[i] @ gy + s[j] @ gx + trace
            assert float(u[i, j]) == pytest.approx(float(expect.detach()), rel=1e-10, abs=1e-12)


def test_energy_callable_and_tensor_agree_and_score_only_works() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 2, generator=g)
    energy = _gaussian()
    a = ksd(x, energy, n_bootstrap=0)
    b = ksd(x, lambda t: -t, n_bootstrap=0)
    c = ksd(x, -x, n_bootstrap=0)

    class Score(ebmflow.ScoreModel):
        def score(self, x, sigma=None):
            return -x

    d = ksd(x, Score(), n_bootstrap=0)
    assert a.ksd2 == pytest.approx(b.ksd2, rel=1e-6)
    assert a.ksd2 == pytest.approx(c.ksd2, rel=1e-6)
    assert a.ksd2 == pytest.approx(d.ksd2, rel=1e-6)
    assert a.p_value is None and a.reject is None


def test_seeded_p_value_is_reproducible_and_detects_a_shift() -> None:
    energy = _gaussian()
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(2))
    first = ksd(x + 0.5, energy, generator=torch.Generator().manual_seed(3))
    again = ksd(x + 0.5, energy, generator=torch.Generator().manual_seed(3))
    assert first == again
    assert first.reject and first.p_value < 0.01
    assert ksd(x, energy, generator=torch.Generator().manual_seed(3)).ksd2 < first.ksd2 / 10


def _rejection_rate(shift: float, reps: int, n: int, seed: int) -> float:
    energy = _gaussian(2)
    g = torch.Generator().manual_seed(seed)
    rejected = 0
    for _ in range(reps):
        x = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x[:, 0] += shift
        rejected += bool(ksd(x, energy, n_bootstrap=300, generator=g).reject)
    return rejected / reps


@pytest.mark.slow
def test_size_is_calibrated_on_exact_samples() -> None:
    # false-positive rate at α = 0.05 within 3 binomial standard errors
    reps = 400
    rate = _rejection_rate(0.0, reps, 200, seed=10)
    se = math.sqrt(0.05 * 0.95 / reps)
    assert abs(rate - 0.05) < 3 * se, rate


@pytest.mark.slow
def test_power_against_a_shifted_sampler() -> None:
    assert _rejection_rate(0.3, 100, 200, seed=11) > 0.8


def test_size_and_power_quick() -> None:
    assert _rejection_rate(0.0, 40, 100, seed=12) <= 0.15
    assert _rejection_rate(0.5, 20, 100, seed=13) >= 0.9


@pytest.mark.parametrize(
    ("samples", "source", "match"),
    [
        (torch.randn(5, 2), lambda t: -t, "got 5 samples; the test needs at least 10"),
        (torch.randn(20), lambda t: -t, "at least 2 dimensions"),
        (torch.randn(20, 2), lambda t: -t[:, :1], r"shape \(20, 1\); expected the samples'"),
        (torch.randn(20, 2), torch.zeros(20, 3), r"shape \(20, 3\)"),
        (torch.randn(20, 3), None, r"event shape \(3,\).*event_shape \(2,\)"),
        (torch.randn(20, 2), "gaussian", "must be an ebmflow.Energy"),
    ],
)
def test_bad_input_is_a_clear_error(samples, source, match) -> None:
    if source is None:
        source = _gaussian(2)
    with pytest.raises(ebmflow.ConfigError, match=match):
        ksd(samples, source)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"beta": 0.5}, "beta"),
        ({"c": 0}, "c must"),
        ({"alpha": 1.0}, "alpha"),
        ({"n_bootstrap": -1}, "n_bootstrap"),
    ],
)
def test_bad_arguments(kw, match) -> None:
    with pytest.raises(ebmflow.ConfigError, match=match):
        ksd(torch.randn(20, 2), lambda t: -t, **kw)
