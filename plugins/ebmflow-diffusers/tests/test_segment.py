"""Segment-integral energies for score-only models: exact on Gaussians (the integrand is
linear), converging at the rules' orders on a Gaussian mixture, and giving MALA and HMC the
same chains as exact energies on a Gaussian."""

from __future__ import annotations

import math

import pytest
import torch
from ebmflow_diffusers import PathEnergy, quadrature_weights, segment_difference
from ebmflow_diffusers.corrector import build_sampler, run_corrector

import ebmflow

F64 = torch.float64


class ScoreOnly(ebmflow.ScoreModel):
    """An analytic energy's score with its energy hidden: what a diffusion ε-model offers."""

    def __init__(self, energy: ebmflow.Energy) -> None:
        super().__init__()
        self.energy = energy
        self.event_shape = energy.event_shape
        self.noise_conditional = energy.noise_conditional

    def score(self, x, sigma=None):
        return self.energy.score(x, sigma)


def gaussian(d=10, noise_conditional=False):
    std = [0.5 + 0.1 * i for i in range(d)]
    return ebmflow.create(
        "energy", "gaussian", mean=[0.3] * d, std=std, noise_conditional=noise_conditional
    ).to(F64)


def ring_gmm():
    means = [[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)]
    return ebmflow.create("energy", "gmm", means=means, stds=0.5).to(F64)


def pairs(energy, n, step, seed=0):
    """x₀ from the target, x₁ = x₀ + step·z: segments of a sampler's proposal size."""
    gen = torch.Generator().manual_seed(seed)
    x0 = energy.sample(n, generator=gen)
    return x0, x0 + step * torch.randn(x0.shape, generator=gen, dtype=F64)


@pytest.mark.parametrize(
    "rule,n", [("trapezoid", 2), ("trapezoid", 5), ("simpson", 3), ("simpson", 9)]
)
def test_weights_integrate_polynomials_of_the_rules_degree(rule, n):
    w = quadrature_weights(n, rule)
    u = torch.linspace(0, 1, n, dtype=F64)
    degree = 1 if rule == "trapezoid" else 3
    for p in range(degree + 1):
        assert abs(float((w * u**p).sum()) - 1 / (p + 1)) < 1e-14


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="odd number of points"):
        quadrature_weights(4, "simpson")
    with pytest.raises(ValueError, match="rule must be one of trapezoid, simpson"):
        quadrature_weights(3, "gauss")
    with pytest.raises(ValueError, match="n_points must be an integer ≥ 2"):
        quadrature_weights(1, "trapezoid")


@pytest.mark.parametrize("rule,n", [("trapezoid", 2), ("simpson", 3)])
def test_energy_differences_are_exact_on_a_gaussian(rule, n):
    target = gaussian()
    x0, x1 = pairs(target, 500, 1.0)
    delta, s1 = segment_difference(ScoreOnly(target), x0, x1, n_points=n, rule=rule)
    exact = target(x1) - target(x0)
    # a linear integrand: only float64 rounding, relative to |ΔE| ~ 10
    assert float((delta - exact).abs().max()) < 1e-11
    assert torch.allclose(s1, target.score(x1))


def test_noise_conditional_differences_use_sigma():
    target = gaussian(d=3, noise_conditional=True)
    x0, x1 = pairs(gaussian(d=3), 100, 0.5)
    delta, _ = segment_difference(ScoreOnly(target), x0, x1, 0.7)
    assert float((delta - (target(x1, 0.7) - target(x0, 0.7))).abs().max()) < 1e-11


def test_errors_on_a_gaussian_mixture_fall_at_the_rules_orders():
    """RMS error of ΔE on the 8-mode ring (σ_k = 0.5), x₀ from the target, steps of size 0.3:
    halving h divides the trapezoid error by 4 (O(h²)) and Simpson's by ≥ 12 (O(h⁴), which
    it approaches from below at these n). Measured (RMS): trapezoid n = 2: 0.11,
    9: 1.5e-3, 17: 3.7e-4; Simpson n = 3: 1.0e-2, 9: 3.6e-5, 17: 1.5e-6."""
    target = ring_gmm()
    model = ScoreOnly(target)
    x0, x1 = pairs(target, 4000, 0.3)
    exact = target(x1) - target(x0)

    def rms(n, rule):
        delta, _ = segment_difference(model, x0, x1, n_points=n, rule=rule)
        return float((delta - exact).pow(2).mean().sqrt())

    assert 3.5 < rms(9, "trapezoid") / rms(17, "trapezoid") < 4.5
    assert rms(9, "simpson") / rms(17, "simpson") > 12
    # the bounds the README states for MALA-sized segments
    assert rms(2, "trapezoid") < 0.2
    assert rms(3, "simpson") < 0.02


@pytest.mark.parametrize(
    "sampler,args", [("mala", {"step_size": 0.05}), ("hmc", {"step_size": 0.2, "n_leapfrog": 4})]
)
def test_mala_and_hmc_on_score_only_gaussian_match_exact_energies(sampler, args):
    """On a Gaussian the two-point trapezoid is exact, so MALA and HMC with segment energies
    make the same accept/reject decisions as with the true energy: the same chains."""
    target = gaussian()
    x = torch.zeros(200, 10, dtype=F64)
    kernel = build_sampler(
        sampler, {k: v for k, v in args.items() if k != "step_size"}, args["step_size"]
    )
    segment_x, segment_rate = run_corrector(
        kernel, ScoreOnly(target), x, None, 30, torch.Generator().manual_seed(3)
    )
    exact_x, exact_rate = run_corrector(
        kernel, target, x, None, 30, torch.Generator().manual_seed(3)
    )
    assert torch.allclose(segment_x, exact_x, atol=1e-10)
    assert abs(segment_rate - exact_rate) < 1e-6  # the samplers sum acceptances in float32
    assert 0.2 < segment_rate < 1.0


def test_mala_on_score_only_mixture_accepts_like_exact_mala():
    """On the ring mixture (η = 0.1) the estimate is approximate. With the same random
    numbers (paired runs, so the Monte Carlo error of the difference is far below that of a
    rate, ~0.003) the rates measured are exact 0.911, 2-point trapezoid 0.945 (for MALA it
    reduces to log α = η/4 (‖s(x)‖² − ‖s(x′)‖²), which overestimates here), 3-point Simpson
    0.910, 5-point Simpson 0.911."""
    target = ring_gmm()
    x = target.sample(4000, generator=torch.Generator().manual_seed(4))
    kernel = build_sampler("mala", {}, 0.1)
    _, exact = run_corrector(kernel, target, x, None, 20, torch.Generator().manual_seed(5))
    for rule, n, bound in (("trapezoid", 2, 0.05), ("simpson", 3, 0.005), ("simpson", 5, 0.001)):
        _, rate = run_corrector(
            kernel,
            ScoreOnly(target),
            x,
            None,
            20,
            torch.Generator().manual_seed(5),
            n_points=n,
            rule=rule,
        )
        assert abs(rate - exact) < bound, (rule, n, rate, exact)


def test_path_energy_is_the_energy_relative_to_its_reference():
    target = gaussian(d=4)
    reference = torch.full((4,), 0.2, dtype=F64)
    path = PathEnergy(ScoreOnly(target), n_points=3, rule="simpson", reference=reference)
    x = target.sample(50, generator=torch.Generator().manual_seed(6))
    e, s = path.energy_and_score(x)
    assert torch.allclose(e, target(x) - target(reference[None]), atol=1e-11)
    assert torch.allclose(s, target.score(x))
    with pytest.raises(ebmflow.EnergyUnavailableError, match="not differentiable"):
        path.energy_and_score(x, create_graph=True)


def test_path_energy_references_repeat_over_replica_batches():
    target = gaussian(d=2)
    refs = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=F64)
    path = PathEnergy(ScoreOnly(target), n_points=2, rule="trapezoid", reference=refs)
    x = target.sample(6, generator=torch.Generator().manual_seed(7))  # 3 replicas × 2 chains
    want = target(x) - target(refs.repeat(3, 1))
    assert torch.allclose(path(x), want, atol=1e-11)
    with pytest.raises(ValueError, match="does not fit a batch"):
        path(x[:5])


def test_parallel_tempering_corrector_on_a_score_only_mixture_runs():
    target = ring_gmm()
    x = target.sample(64, generator=torch.Generator().manual_seed(8))
    kernel = build_sampler("parallel-tempering", {"n_replicas": 4, "beta_min": 0.2}, 0.05)
    out, rate = run_corrector(
        kernel,
        ScoreOnly(target),
        x,
        None,
        10,
        torch.Generator().manual_seed(9),
        n_points=3,
        rule="simpson",
    )
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert 0.3 < rate <= 1.0


def test_path_energy_saves_and_loads(tmp_path):
    target = ebmflow.create("energy", "gaussian", mean=[0.0, 1.0], std=0.5)
    path = PathEnergy(target, n_points=3, rule="simpson", reference=torch.tensor([0.1, 0.2]))
    ebmflow.save(path, tmp_path / "path")
    loaded = ebmflow.load(tmp_path / "path")
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(10))
    assert torch.equal(loaded(x), path(x))
