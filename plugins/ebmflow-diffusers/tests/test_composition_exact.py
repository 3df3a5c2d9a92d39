"""Composition of diffusion models measured against exact answers.

The model is an exact class-conditional denoiser (per-class Gaussian mixtures, closed-form
noisy scores at every σ), so the targets of a product p(x|0) p(x|1), a negation
p(x|0) / p(x|2)^½ and classifier-free guidance p(x|0)^w p(x)^(1−w) are known exactly (closed
form, or quadrature on a 2-D grid). The statistical tests compare 4000 independent chains'
mean, covariance and mode weights with them, in units of the Monte Carlo standard error
(SE): the reverse process alone on the summed scores is off by more than 5 SE, the
MCMC-corrected sampler within 4 SE (a 4-SE band is missed by chance with probability
6e-5 per statistic; the seeds are fixed, so the figures are reproducible).
"""

from __future__ import annotations

import pytest
import torch
from ebmflow_diffusers.conditional_mixture import ClassConditionalGMM
from ebmflow_diffusers.exact_composition import (
    grid_moments,
    mixture_moments,
    negation,
    product,
    sample_moments,
    tilted_product,
)
from ebmflow_diffusers.reverse_sampling import geometric_sigmas, reverse_diffusion

import ebmflow

CONFIG = dict(
    # class 0: two unit modes; class 1: the same places, a narrow left and a wide right mode;
    # class 2: one wide Gaussian on the right mode (the one a negation pushes away from)
    means=[[-1.5, 0.0], [1.5, 0.0], [-1.5, 0.0], [1.5, 0.0], [1.5, 0.0]],
    labels=[0, 0, 1, 1, 2],
    stds=[1.0, 1.0, 0.5, 1.5, 1.5],
)
CENTRES = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])
SIGMAS = geometric_sigmas(10.0, 0.01, 60)
CORRECTED_SE = 4.0  # corrected: every statistic within 4 standard errors of the exact value
BIASED_SE = 5.0  # biased: its mode weights at least 5 standard errors away


@pytest.fixture(scope="module")
def model():
    return ClassConditionalGMM(**CONFIG)


def _run(energy, corrector=None, n=4000, steps=(0, 0), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = SIGMAS[0] * torch.randn(n, 2, generator=g)
    result = reverse_diffusion(
        energy,
        x0,
        SIGMAS,
        generator=g,
        corrector=corrector,
        corrector_steps=steps[0],
        final_steps=steps[1],
    )
    return sample_moments(result.samples, CENTRES), result.acceptance_rate


# -- the analytic conditional model -------------------------------------------------------


@pytest.mark.parametrize("sigma", [None, 0.3, 2.0])
def test_condition_fixes_a_label_of_the_exact_model(model, sigma):
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    for y in range(3):
        fixed = ebmflow.condition(model, y)
        exact = model.conditional(y)
        torch.testing.assert_close(fixed(x, sigma), exact(x, sigma))
        torch.testing.assert_close(fixed.score(x, sigma), exact.score(x, sigma))
    marginal = model.marginal()
    torch.testing.assert_close(model(x, sigma), marginal(x, sigma))
    torch.testing.assert_close(model.score(x, sigma), marginal.score(x, sigma))
    # one label per sample, and the closed-form score equals autograd's
    labels = torch.arange(16) % 3
    per_sample = torch.stack(
        [model.conditional(int(c))(x[i : i + 1], sigma)[0] for i, c in enumerate(labels)]
    )
    torch.testing.assert_close(model(x, sigma, y=labels), per_sample)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg, sigma, y=labels).sum(), xg)
    torch.testing.assert_close(model.score(x, sigma, y=labels), -grad)


def test_noisy_model_is_the_law_of_x_plus_sigma_z(model):
    # the σ-smoothed class-1 density integrates to one and has covariance Σ + σ²I
    moments, log_z = grid_moments(ebmflow.condition(model, 1), CENTRES, sigma=0.7)
    exact_mean, exact_cov = mixture_moments(model.conditional(1))
    assert abs(log_z) < 1e-6
    torch.testing.assert_close(moments.mean, exact_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        moments.covariance, exact_cov + 0.49 * torch.eye(2), atol=1e-5, rtol=0
    )


def test_bad_labels_and_arguments_are_named(model):
    x = torch.zeros(4, 2)
    with pytest.raises(ebmflow.ComponentArgumentError, match=r"shape \(4,\)"):
        model(x, 0.5, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ebmflow.ComponentArgumentError, match=r"0 … 2, got \[5\]"):
        model(x, 0.5, y=5)
    with pytest.raises(ebmflow.ComponentArgumentError, match="integer"):
        model(x, 0.5, y=torch.zeros(4))
    with pytest.raises(ebmflow.ConfigError, match=r"classes \[1\] have no component"):
        ClassConditionalGMM(means=[[0.0, 0.0], [1.0, 0.0]], labels=[0, 2])
    with pytest.raises(ebmflow.ConfigError, match="stds must be a number or 2 numbers"):
        ClassConditionalGMM(means=[[0.0, 0.0], [1.0, 0.0]], labels=[0, 1], stds=[1.0])


def test_score_only_model_has_scores_but_no_energy(model):
    score_only = ClassConditionalGMM(**CONFIG, score_only=True)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    composed = ebmflow.condition(score_only, 0) + ebmflow.condition(score_only, 1)
    assert not composed.has_energy
    torch.testing.assert_close(
        composed.score(x, 0.5),
        (ebmflow.condition(model, 0) + ebmflow.condition(model, 1)).score(x, 0.5),
    )
    with pytest.raises(ebmflow.EnergyUnavailableError, match="line-integral"):
        score_only(x, 0.5, y=0)


# -- the exact targets --------------------------------------------------------------------


def test_closed_form_product_and_negation_match_quadrature(model):
    a, b, c = (model.conditional(y) for y in range(3))
    for composed, exact in ((a + b, product(a, b)), (a - 0.5 * c, negation(a, c, 0.5))):
        grid, _ = grid_moments(composed, CENTRES)  # unnormalised: moments only
        mean, cov = mixture_moments(exact)
        torch.testing.assert_close(grid.mean, mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(grid.covariance, cov, atol=1e-5, rtol=0)
        assert abs(grid_moments(exact, CENTRES)[1]) < 1e-5  # the closed form is normalised
    # the product: left mode 0.7385 of the mass, mean x₁ −0.6652, var x₁ 2.0160
    exact, _ = grid_moments(product(a, b), CENTRES)
    assert exact.mode_weights[0].item() == pytest.approx(0.73851, abs=1e-4)
    assert exact.mean[0].item() == pytest.approx(-0.66516, abs=1e-4)
    assert exact.covariance[0, 0].item() == pytest.approx(2.01602, abs=1e-4)


def test_a_negation_that_is_not_normalisable_is_refused(model):
    a, c = model.conditional(0), model.conditional(2)
    with pytest.raises(ebmflow.ConfigError, match=r"not normalisable.*eigenvalues"):
        negation(a, c, 3.0)  # 1 − 3/2.25 < 0: p(x|0) / p(x|2)³ grows in the tails
    with pytest.raises(ebmflow.ConfigError, match="only power 1"):
        tilted_product([(a, -1.0)])


def test_sum_of_noisy_scores_is_not_the_score_of_the_noisy_product(model):
    # the reason the reverse process alone is biased: s₀,σ + s₁,σ is the score of p₀,σ p₁,σ,
    # while the reverse process of the product needs the score of (p₀ p₁)_σ
    exact = product(model.conditional(0), model.conditional(1))
    noisy_product = ebmflow.GMMEnergy(**{**exact.get_config(), "noise_conditional": True})
    composed = ebmflow.condition(model, 0) + ebmflow.condition(model, 1)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    gap = {}  # mean ‖s₀,σ + s₁,σ − s_(p₀p₁),σ‖ relative to mean ‖s_(p₀p₁),σ‖
    for s in (1e-3, 1.0, 5.0):
        truth = noisy_product.score(x, s)
        gap[s] = float((composed.score(x, s) - truth).norm(dim=1).mean() / truth.norm(dim=1).mean())
    assert gap[1e-3] < 1e-4  # the same target at the data level
    assert gap[1.0] > 0.3 and gap[5.0] > 0.8  # measured 0.37 and 0.93: not the same target


def test_reverse_diffusion_arguments_are_checked(model):
    energy = ebmflow.condition(model, 0)
    x = torch.zeros(2, 2)
    with pytest.raises(ebmflow.ConfigError, match="strictly decreasing"):
        reverse_diffusion(energy, x, [1.0, 2.0])
    with pytest.raises(ebmflow.ConfigError, match="need a corrector"):
        reverse_diffusion(energy, x, [2.0, 1.0], final_steps=3)
    with pytest.raises(ebmflow.ConfigError, match="noise-conditional"):
        reverse_diffusion(ebmflow.GaussianEnergy(mean=[0.0, 0.0]), x, [2.0, 1.0])


# -- biased vs corrected vs exact (each a few seconds on one thread) ----------------------


def _cases(model):
    a, b, c = (ebmflow.condition(model, y) for y in range(3))
    return {
        "product": (a + b, product(model.conditional(0), model.conditional(1))),
        "negation": (a - 0.5 * c, negation(model.conditional(0), model.conditional(2), 0.5)),
        "cfg": (ebmflow.guidance(a, model, 3.0), None),  # p(x|0)³ p(x)⁻²: quadrature
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["product", "negation", "cfg"])
def test_reverse_process_alone_is_biased_and_mala_corrects_it(model, case):
    energy, closed_form = _cases(model)[case]
    exact, _ = grid_moments(energy if closed_form is None else closed_form, CENTRES)
    biased, _ = _run(energy)
    corrected, rate = _run(energy, ebmflow.create("sampler", "mala", step_size=0.1), steps=(5, 300))
    assert biased.z_scores(exact)["mode_weights"] > BIASED_SE, biased
    for stat, z in corrected.z_scores(exact).items():
        assert z < CORRECTED_SE, (case, stat, z, corrected, exact)
    assert rate is not None and rate > 0.9


@pytest.mark.slow
def test_hmc_corrector_matches_the_product(model):
    energy = model.conditional(0) + model.conditional(1)  # closed-form parts: no autograd
    exact, _ = grid_moments(product(model.conditional(0), model.conditional(1)), CENTRES)
    hmc = ebmflow.create("sampler", "hmc", step_size=0.3, n_leapfrog=4)
    corrected, rate = _run(energy, hmc, steps=(2, 100))
    for stat, z in corrected.z_scores(exact).items():
        assert z < CORRECTED_SE, (stat, z, corrected, exact)
    assert rate is not None and rate > 0.9


@pytest.mark.slow
def test_line_integral_mala_corrects_a_score_only_product(model):
    # only scores exist: MALA's energy differences come from 3-point Simpson line integrals
    score_only = ClassConditionalGMM(**CONFIG, score_only=True)
    energy = ebmflow.condition(score_only, 0) + ebmflow.condition(score_only, 1)
    exact, _ = grid_moments(product(model.conditional(0), model.conditional(1)), CENTRES)
    mala = ebmflow.create("sampler", "mala", step_size=0.1)
    corrected, rate = _run(energy, mala, n=2000, steps=(5, 300))
    for stat, z in corrected.z_scores(exact).items():
        assert z < CORRECTED_SE, (stat, z, corrected, exact)
    assert rate is not None and rate > 0.9
