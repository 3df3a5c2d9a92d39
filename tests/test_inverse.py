"""Measurement operators, likelihood energies and posteriors: adjoints, norms, checkpoints and
the errors bad input gets (each names the value; nothing is clipped)."""

from __future__ import annotations

import pytest
import torch

import ebmflow
from ebmflow.inverse.operators import build_operator, check_linear

IMAGE = (1, 8, 8)


@pytest.mark.parametrize(
    "spec",
    [
        "identity",
        {"name": "mask", "mask": (torch.arange(64).reshape(IMAGE) % 3 > 0).float().tolist()},
        {"name": "blur", "size": 3, "std": 0.8},
        {"name": "downsample", "factor": 2},
    ],
    ids=["identity", "mask", "blur", "downsample"],
)
def test_operator_adjoint_and_norm(spec):
    """⟨A x, v⟩ = ⟨x, Aᵀ v⟩, and ‖A‖ is the largest singular value of the dense matrix."""
    op = build_operator(spec, IMAGE).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, *IMAGE, generator=gen, dtype=torch.float64)
    v = torch.randn(2, *op.measurement_shape(), generator=gen, dtype=torch.float64)
    lhs = (op(x) * v).flatten(1).sum(1)
    rhs = (x * op.adjoint(v)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs)
    dense = torch.func.jacrev(lambda t: op(t.reshape(1, *IMAGE)).flatten())(
        torch.zeros(64, dtype=torch.float64)
    )
    assert op.norm() == pytest.approx(float(torch.linalg.matrix_norm(dense, ord=2)), rel=1e-3)


def test_linear_callable_is_accepted_and_its_norm_found_by_power_iteration():
    weight = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    lik = ebmflow.GaussianMeasurement(
        [1.0, 0.0], 0.1, operator=lambda x: x @ weight.T, event_shape=[2]
    )
    assert lik.operator.norm() == pytest.approx(2.0, rel=1e-4)


def test_nonlinear_operator_is_refused_naming_the_gap():
    with pytest.raises(ebmflow.ConfigError, match=r"not linear: A\(a·x \+ b·z\) differs"):
        ebmflow.GaussianMeasurement([1.0, 0.0], 0.1, operator=lambda x: x**2, event_shape=[2])
    with pytest.raises(ebmflow.ConfigError, match="not linear"):
        check_linear(build_operator(lambda x: x + 1.0, (2,)))


@pytest.mark.parametrize("noise_std", [0.0, -0.5, float("nan"), True])
def test_non_positive_noise_level_is_refused(noise_std):
    with pytest.raises(
        ebmflow.ConfigError, match=f"noise_std must be a number > 0, got {noise_std}"
    ):
        ebmflow.GaussianMeasurement([1.0, 0.0], noise_std)


def test_observation_shape_must_match_the_operator():
    with pytest.raises(ebmflow.ConfigError, match=r"observation has shape \(3,\).*\(1, 4, 4\)"):
        ebmflow.GaussianMeasurement(
            [1.0, 2.0, 3.0], 0.1, operator={"name": "downsample", "factor": 2}, event_shape=IMAGE
        )


def test_measurement_shape_must_match_the_prior_event_shape():
    prior = ebmflow.create("energy", "gaussian", mean=[0.0, 0.0, 0.0])
    lik = ebmflow.GaussianMeasurement([1.0, 2.0], 0.1)
    with pytest.raises(ebmflow.ConfigError, match=r"measures x of shape \(2,\).*\(3,\)"):
        ebmflow.posterior(prior, lik)
    with pytest.raises(ebmflow.ConfigError, match=r"the mask has shape \(2,\).*\(3,\)"):
        ebmflow.posterior(
            prior,
            {
                "name": "gaussian-measurement",
                "observation": [1.0, 2.0],
                "noise_std": 0.1,
                "operator": {"name": "mask", "mask": [1.0, 0.0]},
                "event_shape": [3],
            },
        )


def test_unknown_operator_and_annealing_are_named():
    with pytest.raises(ebmflow.ConfigError, match=r"unknown measurement operator 'fft'.*mask"):
        ebmflow.GaussianMeasurement([1.0], 0.1, operator="fft", event_shape=[1])
    with pytest.raises(ebmflow.ConfigError, match=r"annealing must be one of.*'linear'"):
        ebmflow.GaussianMeasurement([1.0], 0.1, annealing="linear")


def test_measurement_noise_is_never_clipped():
    """A tiny noise level is kept as given: the energy grows as 1/s²."""
    lik = ebmflow.GaussianMeasurement([0.0], 1e-6).double()
    x = torch.tensor([[1.0]], dtype=torch.float64)
    assert float(lik(x)) == pytest.approx(0.5e12 + 0.5 * torch.log(torch.tensor(2e-12 * torch.pi)))


def test_posterior_checkpoint_round_trip(tmp_path):
    mask = [[[1.0] * 4 + [0.0] * 4] * 8]
    prior = ebmflow.create(
        "energy", "convnet", channels=1, image_size=8, widths=[8], noise_conditional=True
    )
    post = ebmflow.posterior(
        prior,
        {
            "name": "gaussian-measurement",
            "observation": torch.rand(*IMAGE, generator=torch.Generator().manual_seed(0)),
            "noise_std": 0.05,
            "operator": {"name": "mask", "mask": mask},
        },
    )
    ebmflow.save(post, tmp_path / "post")
    loaded = ebmflow.load(tmp_path / "post")
    x = torch.rand(2, *IMAGE, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded(x, 0.3), post(x, 0.3))


def test_annealed_posterior_refuses_bad_corrector_settings():
    with pytest.raises(ebmflow.ConfigError, match="exchange_levels=20 exceeds the 10"):
        ebmflow.create("sampler", "annealed-posterior", exchange_levels=20)
    with pytest.raises(ebmflow.ConfigError, match=r"corrector_step_size has 2 values.*3 levels"):
        ebmflow.create(
            "sampler", "annealed-posterior", exchange_levels=3, corrector_step_size=[0.1, 0.2]
        )


def test_dps_needs_a_posterior_with_a_noise_conditional_prior():
    dps = ebmflow.create("sampler", "dps", n_levels=5)
    gaussian = ebmflow.create("energy", "gaussian", mean=[0.0], noise_conditional=True)
    with pytest.raises(ebmflow.ComponentArgumentError, match="dps needs a posterior energy"):
        dps.run(gaussian, torch.zeros(2, 1))
    clean = ebmflow.posterior(
        ebmflow.create("energy", "gaussian", mean=[0.0]), ebmflow.GaussianMeasurement([0.0], 0.1)
    )
    with pytest.raises(ebmflow.ConfigError, match="noise-conditional prior"):
        dps.run(clean, torch.zeros(2, 1))


def test_per_chain_observations_repeat_over_stacked_chains():
    lik = ebmflow.GaussianMeasurement([[0.0], [1.0]], 1.0, event_shape=[1])
    x = torch.zeros(4, 1)
    energy = lik(x)
    assert energy[0] == energy[2] and energy[1] == energy[3] and energy[1] > energy[0]


def test_noise_conditional_prior_plus_likelihood_is_the_posterior():
    """``prior + likelihood`` composes with the same noise handling as ``posterior``."""
    prior = ebmflow.create("energy", "gaussian", mean=[0.0, 1.0], noise_conditional=True)
    lik = ebmflow.GaussianMeasurement([0.5, 0.0], 0.3)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    for sigma in (None, 0.4):
        torch.testing.assert_close(
            (prior + lik).energy_and_score(x, sigma),
            ebmflow.posterior(prior, lik).energy_and_score(x, sigma),
        )


def test_exchange_correction_keeps_chain_count_and_reports_swaps():
    prior = ebmflow.GMMEnergy.ring(noise_conditional=True)
    post = ebmflow.posterior(prior, ebmflow.GaussianMeasurement([1.0, 0.0], 0.5))
    sampler = ebmflow.create(
        "sampler",
        "annealed-posterior",
        noise_schedule=[2.0, 1.0, 0.5, 0.25],
        n_levels=4,
        steps_per_level=2,
        corrector_steps=6,
        corrector_step_size=0.05,
        exchange_levels=3,
    )
    gen = torch.Generator().manual_seed(0)
    result = sampler.run(post, torch.randn(7, 2, generator=gen), generator=gen)
    assert result.samples.shape == (7, 2) and result.state.step == 14
    assert result.state.extras["replica_x"].shape == (14, 2)
    assert result.diagnostics["exchange_sigmas"] == [0.25, 0.5, 1.0]
    assert 0.0 <= result.diagnostics["acceptance_rate"] <= 1.0
