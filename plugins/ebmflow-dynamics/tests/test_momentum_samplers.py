"""Underdamped Langevin (OBABO, BAOAB) and UHA: their stationary variance on a Gaussian
equals the splitting's known formula; score-only models, diffusion correctors, bad input.

Derivation of the bias (both samplers). Target N(0, σ²): E = x²/(2σ²), s(x) = −x/σ². One
velocity-Verlet step "BAB" of size h is the linear map, with c = h/σ,

    p½ = p − (h/2) x/σ²,   x' = x + h p½ = (1 − c²/2) x + h p,
    p' = p½ − (h/2) x'/σ² = −(h/σ²)(1 − c²/4) x + (1 − c²/2) p.

It preserves the quadratic form H̃(x, p) = ½p² + ½(1 − c²/4) x²/σ² exactly: with
A = [[1 − c²/2, h], [−(h/σ²)(1 − c²/4), 1 − c²/2]] and Q = diag((1 − c²/4)/σ², 1),
AᵀQA = Q (expand: the off-diagonal terms cancel and both diagonal ones reduce to Q's since
(1 − c²/2)² + c²(1 − c²/4) = 1). So BAB preserves the Gaussian law ∝ exp(−H̃), whose x-marginal
has variance σ²/(1 − c²/4) and whose momentum is N(0, 1) independent of x. The momentum
refresh "O" (p ← a p + √(1 − a²) ξ) preserves every law with p ~ N(0, 1) independent of x, in
particular this one. Both OBABO (underdamped Langevin) and "O then L × BAB" (UHA) are
compositions of these maps, so their stationary variance of x is

    var(x) = σ² / (1 − h²/(4σ²))      for any friction γ, damping ρ and L,

and var(p) = 1 after a refresh. (γ → ∞ is ULA with η = h²/2, whose variance σ²/(1 − η/(2σ²))
is the same number.) The test takes h = 0.8σ, where the bias is 19%.

BAOAB = B(h/2) A(h/2) O(h) A(h/2) B(h/2) has no such bias in x (Leimkuhler & Matthews
2013, "Rational construction of stochastic numerical methods for molecular sampling"). Let μ
be x ~ N(0, σ²), p ~ N(0, 1 − c²/4) independent. The half steps BA map μ to λ: p₁ = p −
(c/2) x/σ has variance 1, x₁ = x + (h/2) p₁ = (1 − c²/4) x + (h/2) p has variance
σ²(1 − c²/4), and cov(x₁, p₁) = (1 − c²/4)(h/2 − cσ/2) = 0, so under λ x₁ and p₁ ~ N(0, 1)
are independent. O(h) preserves λ. AB is BA's inverse conjugated by the momentum flip
p → −p, which preserves μ and λ, so AB maps λ back to μ. Hence μ is BAOAB's stationary law
for every h < 2σ and γ > 0: var(x) = σ² exactly, and the stored momentum has variance
1 − h²/(4σ²). The test checks both at h = 0.8σ, where OBABO is 19% off, with tolerances
from the Monte Carlo error of the chains (effective sample size of x²).
"""

from __future__ import annotations

import math

import pytest
import torch
from ebmflow_dynamics import UHA, UnderdampedLangevin

import ebmflow
from ebmflow.testing import check_seeded_reproducible

SIGMA, H = 1.5, 1.2  # h = 0.8 σ


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian(dim: int, std: float = SIGMA) -> ebmflow.Energy:
    return ebmflow.create("energy", "gaussian", mean=[0.0] * dim, std=std)


def biased_variance(h: float, sigma: float) -> float:
    return sigma**2 / (1.0 - h**2 / (4.0 * sigma**2))


@pytest.mark.parametrize(
    "sampler",
    [
        UnderdampedLangevin(step_size=H, friction=0.5, splitting="obabo"),
        UnderdampedLangevin(step_size=H, friction=5.0, splitting="obabo"),
        UHA(step_size=H, n_leapfrog=3, damping=0.9),
        UHA(step_size=H, n_leapfrog=1, damping=0.0),
    ],
    ids=["obabo-low-friction", "obabo-high-friction", "uha-L3", "uha-full-refresh"],
)
def test_stationary_variance_matches_the_splittings_bias_formula(sampler):
    # 4000 chains × 5 independent coordinates after 150 steps (the momentum forgets its
    # start within a few 1/γ; the position's autocorrelation decays as fast): N = 20 000
    # independent values, variance standard error v·√(2/N) ≈ 1%; 4 SE separates the
    # biased variance (+19%) from σ² and from the √η-vs-√(2η) slips.
    energy, gen = gaussian(5), seeded(0)
    result = sampler.run(energy, SIGMA * torch.randn(4000, 5, generator=gen), 150, generator=gen)
    expected = biased_variance(H, SIGMA)
    n = result.samples.numel()
    var = float(result.samples.var(dim=0).mean())
    assert abs(var - expected) < 4 * expected * math.sqrt(2 / n), (var, expected)
    assert abs(float(result.samples.mean())) < 4 * math.sqrt(expected / n)
    p = result.state.extras["momentum"]
    assert abs(float(p.var(dim=0).mean()) - 1.0) < 4 * math.sqrt(2 / n)


def mc_mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean of draws ``(n_steps, n_chains, dim)`` and its Monte Carlo standard error,
    from the draws' variance and their effective sample size (summed over the independent
    coordinates)."""
    n_eff = float(ebmflow.evaluate.ess(values).sum())
    return float(values.mean()), math.sqrt(float(values.var()) / n_eff)


@pytest.mark.parametrize("friction", [0.5, 5.0])
def test_baoab_samples_a_gaussians_position_exactly_at_any_step_size(friction):
    # h = 0.8 σ, where OBABO's variance is 19% too large; BAOAB's is σ² (module docstring).
    # 512 chains × 4 coordinates, 100 steps forgotten, then 300 draws each: the standard
    # error of the variance is about 1% of σ², so 4 SE also tells BAOAB from OBABO.
    energy, gen = gaussian(4), seeded(11)
    sampler = UnderdampedLangevin(step_size=H, friction=friction)
    warm = sampler.run(energy, SIGMA * torch.randn(512, 4, generator=gen), 100, generator=gen)
    run = sampler.continue_run(energy, warm.state, 300, generator=gen, thin=1)
    var, se = mc_mean_and_se(run.trajectory.square())
    assert abs(var - SIGMA**2) < 4 * se, (var, se)
    assert 4 * se < biased_variance(H, SIGMA) - SIGMA**2
    mean, se_mean = mc_mean_and_se(run.trajectory)
    assert abs(mean) < 4 * se_mean
    p = run.state.extras["momentum"]  # 2048 independent values at the last step
    p_var, n = float(p.square().mean()), p.numel()
    expected = 1.0 - H**2 / (4 * SIGMA**2)
    assert abs(p_var - expected) < 4 * expected * math.sqrt(2 / n), (p_var, expected)


def test_baoab_draws_one_noise_per_step_and_obabo_two():
    energy, x0 = gaussian(3), torch.randn(8, 3, generator=seeded(12))
    for splitting, draws_per_step in (("obabo", 2), ("baoab", 1)):
        sampler = UnderdampedLangevin(0.3, friction=2.0, splitting=splitting)
        gen = seeded(13)
        state = sampler.step(energy, sampler.init(energy, x0), gen)  # draws the momentum too
        before = gen.get_state()
        sampler.step(energy, state, gen)
        after_one = torch.Generator().set_state(before)
        for _ in range(draws_per_step):
            torch.randn(8, 3, generator=after_one)
        assert torch.equal(gen.get_state(), after_one.get_state()), splitting


@pytest.mark.parametrize(
    "sampler",
    [UnderdampedLangevin(0.3), UnderdampedLangevin(0.3, splitting="obabo"), UHA(0.3, n_leapfrog=2)],
)
def test_momentum_samplers_are_reproducible_and_work_on_score_only_models(sampler):
    check_seeded_reproducible(sampler, gaussian(3), torch.randn(16, 3, generator=seeded(1)))

    class ScoreOnly(ebmflow.Energy):
        has_energy = False

        def score(self, x, sigma=None):
            return -x

    result = sampler.run(ScoreOnly(), torch.zeros(8, 2), 4, generator=seeded(2))
    assert result.state.energy is None and result.samples.shape == (8, 2)


def test_continue_run_carries_the_momentum():
    sampler, energy, x0 = (
        UHA(0.3, damping=0.95),
        gaussian(2),
        torch.randn(8, 2, generator=seeded(3)),
    )
    one = sampler.run(energy, x0, 6, generator=seeded(4))
    gen = seeded(4)
    half = sampler.run(energy, x0, 3, generator=gen)
    two = sampler.continue_run(energy, half.state, 3, generator=gen)
    assert torch.equal(one.samples, two.samples)


@pytest.mark.parametrize("name", ["underdamped-langevin", "uha"])
def test_momentum_samplers_are_diffusion_correctors(name):
    # the diffusers scheduler's corrector takes any registered sampler by name
    pytest.importorskip("diffusers")
    from ebmflow_diffusers import EBMPipeline, EBMScheduler
    from ebmflow_diffusers.analytic import GaussianDenoiser

    unet = GaussianDenoiser(sample_size=4, mean=0.3, std=0.5)
    pipe = EBMPipeline(unet, EBMScheduler(corrector=name, corrector_steps=2))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=3, generator=seeded(5), num_inference_steps=5, output_type="pt")
    assert out.images.shape == (3, 1, 4, 4) and bool(torch.isfinite(out.images).all())
    assert len(out.step_sizes) == 5 and all(eta > 0 for eta in out.step_sizes)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (
            UnderdampedLangevin,
            {"step_size": -0.1},
            r"underdamped-langevin: step_size must be a number > 0, got -0.1",
        ),
        (
            UnderdampedLangevin,
            {"friction": 0.0},
            r"underdamped-langevin: friction must be a number > 0, got 0.0",
        ),
        (
            UnderdampedLangevin,
            {"friction": float("inf")},
            r"underdamped-langevin: friction must be a number > 0, got inf",
        ),
        (
            UnderdampedLangevin,
            {"splitting": "BAOAB"},
            r"underdamped-langevin: splitting must be one of 'baoab', 'obabo', got 'BAOAB'",
        ),
        (UHA, {"damping": 1.0}, r"uha: damping must be a number in \[0, 1\)"),
        (UHA, {"damping": True}, r"uha: damping must be a number in \[0, 1\)"),
        (UHA, {"n_leapfrog": 0}, r"uha: n_leapfrog must be an integer ≥ 1, got 0"),
        (UHA, {"step_size": "0.1"}, r"uha: step_size must be a number > 0, got '0.1'"),
    ],
)
def test_bad_arguments_name_the_sampler_the_value_and_what_is_accepted(factory, kwargs, match):
    with pytest.raises(ebmflow.ConfigError, match=match):
        factory(**kwargs)


def test_a_diverging_chain_raises_with_the_step():
    with pytest.raises(ebmflow.SamplerDivergedError, match="uha diverged at step"):
        UHA(step_size=5.0, n_leapfrog=40).run(
            gaussian(2, 0.1), torch.ones(4, 2), 50, generator=seeded(7)
        )
