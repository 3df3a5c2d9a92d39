"""MixtureDenoiser: an exact class-conditional diffusers model, sampled by stock schedulers."""

from __future__ import annotations

import pytest
import torch
from ebmflow_diffusers import GaussianDenoiser
from ebmflow_diffusers.conditional_denoiser import MixtureDenoiser
from ebmflow_diffusers.exact_composition import grid_moments, sample_moments

import ebmflow

DATA = dict(
    means=[[-1.5, 0.0], [1.5, 0.0], [-1.5, 0.0], [1.5, 0.0]],
    labels=[0, 0, 1, 1],
    stds=[1.0, 1.0, 0.5, 1.5],
)
CENTRES = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])


@pytest.mark.parametrize(
    ("prediction_type", "schedule"),
    [("epsilon", "vp"), ("sample", "vp"), ("v_prediction", "vp"), ("score", "ve")],
)
def test_one_gaussian_class_is_the_gaussian_denoiser(prediction_type, schedule):
    # one class, one component N(0.3, 0.8² I) on 1×2×2 samples: GaussianDenoiser's law
    kwargs = dict(sample_size=2, in_channels=1, prediction_type=prediction_type, schedule=schedule)
    model = MixtureDenoiser(means=[[0.3] * 4], labels=[0], stds=0.8, **kwargs)
    reference = GaussianDenoiser(mean=0.3, std=0.8, **kwargs)
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    for t in (0, 17, 500.5, 999) if schedule == "vp" else (0.01, 1.0, 30.0):
        expected = reference(x, torch.tensor(t)).sample
        for labels in (None, torch.zeros(5, dtype=torch.long)):
            # float32 scores against float64 closed forms: x̂₀ = x_t/a + … divides by
            # a = √ᾱ ≈ 0.006 at t = 999, which costs about two digits
            torch.testing.assert_close(
                model(x, torch.tensor(t), class_labels=labels).sample,
                expected,
                atol=1e-4,
                rtol=1e-4,
            )


def test_save_and_reload(tmp_path):
    model = MixtureDenoiser(**DATA)
    model.save_pretrained(tmp_path / "denoiser")
    again = MixtureDenoiser.from_pretrained(tmp_path / "denoiser")
    x = torch.randn(3, 2, 1, 1, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 1])
    torch.testing.assert_close(again(x, 400, labels).sample, model(x, 400, labels).sample)


def test_bad_shapes_name_what_is_expected():
    model = MixtureDenoiser(**DATA)
    with pytest.raises(ebmflow.ConfigError, match=r"shape \(B, 2, 1, 1\)"):
        model(torch.zeros(3, 1, 2, 1), 10)
    with pytest.raises(ebmflow.ComponentArgumentError, match=r"shape \(3,\)"):
        model(torch.zeros(3, 2, 1, 1), 10, class_labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ebmflow.ConfigError, match="2 numbers"):
        MixtureDenoiser(means=[[0.0, 0.0, 0.0]], labels=[0])


@pytest.mark.slow
def test_stock_ddpm_loop_with_class_labels_draws_the_class():
    # diffusers' own DDPMScheduler, all 1000 steps, conditioned on class 1: the exact
    # conditional law (mean, covariance, mode weights) within 4 Monte Carlo standard errors
    from diffusers import DDPMScheduler

    model = MixtureDenoiser(**DATA)
    scheduler = DDPMScheduler(clip_sample=False)  # the data reach beyond [−1, 1]
    scheduler.set_timesteps(1000)
    g = torch.Generator().manual_seed(0)
    n = 4000
    x = torch.randn(n, 2, 1, 1, generator=g)
    labels = torch.ones(n, dtype=torch.long)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t, labels).sample, t, x, generator=g).prev_sample
    exact, _ = grid_moments(model.mixture.conditional(1), CENTRES)
    found = sample_moments(x.flatten(1), CENTRES)
    for stat, z in found.z_scores(exact).items():
        assert z < 4.0, (stat, z, found, exact)


@pytest.mark.slow
def test_stock_classifier_free_guidance_misses_the_tilted_density():
    # the usual guided loop, ε_u + w (ε_c − ε_u) in DDPMScheduler, is the reverse process
    # alone on the guided score: at w = 3 its mode weights are more than 5 standard errors
    # from those of p(x|0)³ p(x)⁻² (quadrature), the bias an MCMC corrector removes
    # (tests/test_composition_exact.py)
    from diffusers import DDPMScheduler

    model = MixtureDenoiser(**DATA)
    scheduler = DDPMScheduler(clip_sample=False)
    scheduler.set_timesteps(1000)
    g = torch.Generator().manual_seed(0)
    n, w = 4000, 3.0
    x = torch.randn(n, 2, 1, 1, generator=g)
    labels = torch.zeros(n, dtype=torch.long)
    for t in scheduler.timesteps:
        eps_c, eps_u = model(x, t, labels).sample, model(x, t).sample
        x = scheduler.step(eps_u + w * (eps_c - eps_u), t, x, generator=g).prev_sample
    tilted = ebmflow.guidance(ebmflow.condition(model.mixture, 0), model.mixture, w)
    exact, _ = grid_moments(tilted, CENTRES)
    found = sample_moments(x.flatten(1), CENTRES)
    assert found.z_scores(exact)["mode_weights"] > 5.0, (found, exact)
