"""The ODE log-likelihood against closed forms and quadrature, bits/dim, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from ebmflow_ode import ODEConvergenceError, bits_per_dim, dequantize, ode_log_likelihood

import ebmflow

MU, S = (1.5, -0.5), 0.7


def gaussian_data():
    """N(μ, s² I) in 2-D as a σ-smoothed family: p_σ = N(μ, (s² + σ²) I), E = −log p_σ."""
    return ebmflow.create("energy", "gmm", means=[list(MU)], stds=S, noise_conditional=True)


def exact_prior(sigma_max):
    mu = torch.tensor(MU, dtype=torch.float64)
    var = S**2 + sigma_max**2

    def log_prob(x):
        return -0.5 * ((x - mu).square().sum(1) / var + 2 * math.log(2 * math.pi * var))

    return log_prob


@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0, 5.0])
def test_gaussian_ode_nll_matches_the_closed_form_at_every_sigma(sigma):
    energy = gaussian_data()
    gen = torch.Generator().manual_seed(0)
    x = torch.tensor(MU, dtype=torch.float64) + math.hypot(S, sigma) * torch.randn(
        200, 2, generator=gen, dtype=torch.float64
    )
    exact = energy(x, sigma).mean().item()  # normalised: E = −log p_σ
    with_exact_prior = ode_log_likelihood(
        energy, x, sigma_min=sigma, sigma_max=50.0, prior=exact_prior(50.0), rtol=1e-6, atol=1e-6
    )
    # only the solver's error remains: dopri5 at rtol = atol = 1e-6 over ~10 e-folds of σ
    # keeps the integral of the divergence to about 1e-5
    assert with_exact_prior.nll == pytest.approx(exact, abs=1e-4)
    default = ode_log_likelihood(energy, x, sigma_min=sigma, sigma_max=50.0)
    # the default prior N(0, σ_max² I) against p_σmax = N(μ, (s² + σ_max²) I): per point
    # |μ|² / (2 σ_max²) on average (5e-4), plus μ·(x_T − μ) / σ_max², a N(0, |μ|² / σ_max²)
    # term whose mean over N points has standard deviation |μ| / (σ_max √N): 3 of those
    mu = math.hypot(*MU)
    tolerance = mu**2 / (2 * 50.0**2) + 3 * mu / (50.0 * math.sqrt(len(x)))
    assert default.nll == pytest.approx(exact, abs=tolerance)
    assert default.divergence == "exact" and default.bits_per_dim is None


def test_eight_mode_mixture_ode_nll_within_0_01_nats_of_quadrature():
    energy = ebmflow.GMMEnergy.ring(noise_conditional=True).double()
    gen = torch.Generator().manual_seed(1)
    sigma = 0.1
    x = ebmflow.create("dataset", "8gaussians").sample(300, gen).double()
    x = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    exact = ebmflow.evaluate.nll(energy, x, ((-8.0, 8.0), (-8.0, 8.0)), sigma=sigma).nll
    # settings a user would pick: dopri5 with the default rtol = atol = 1e-5, σ_max = 50
    # (prior error ≈ (E|x|² + 2σ²) / (2 σ_max²) ≈ 2e-3 nats)
    ode = ode_log_likelihood(energy, x, sigma_min=sigma, sigma_max=50.0)
    assert abs(ode.nll - exact) < 0.01
    # a consistent family: the implied log Z(σ_min) is the true one, 0, at every point
    assert ode.log_z == pytest.approx(0.0, abs=0.01)
    assert ode.log_z_stderr < 1e-3


def test_hutchinson_estimate_is_unbiased_within_its_standard_error():
    energy = ebmflow.GMMEnergy.ring(noise_conditional=True).double()
    gen = torch.Generator().manual_seed(2)
    x = ebmflow.create("dataset", "8gaussians").sample(400, gen).double()
    exact = ode_log_likelihood(energy, x, sigma_min=0.2, sigma_max=20.0, solver="rk4", n_steps=40)
    probe = ode_log_likelihood(
        energy,
        x,
        sigma_min=0.2,
        sigma_max=20.0,
        solver="rk4",
        n_steps=40,
        divergence="hutchinson",
        n_probes=2,
        generator=gen,
    )
    assert probe.divergence == "hutchinson" and probe.n_probes == 2
    difference = probe.log_likelihood - exact.log_likelihood
    # the same points and solver on both routes: the difference is the probes' noise alone,
    # mean zero; 4 standard errors of its mean
    assert abs(float(difference.mean())) < 4 * float(difference.std()) / math.sqrt(len(x))
    assert float(difference.std()) > 0


def test_auto_switches_to_hutchinson_above_exact_max_dim():
    energy = ebmflow.create(
        "energy", "gmm", means=[[0.0] * 20], stds=1.0, noise_conditional=True
    ).double()
    x = torch.randn(8, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = ode_log_likelihood(energy, x, sigma_min=0.1, sigma_max=10.0, solver="euler")
    assert result.divergence == "hutchinson"
    small = ode_log_likelihood(
        energy, x, sigma_min=0.1, sigma_max=10.0, solver="euler", exact_max_dim=20
    )
    assert small.divergence == "exact"


def test_bits_per_dim_of_uniform_dequantized_data_is_the_formula():
    # a model whose density is N(0.5, s²) on each pixel of [0, 1] data: bits/dim is the
    # NLL bound over D log 2 with the range and the levels accounted for
    d = 4
    energy = ebmflow.create(
        "energy", "gmm", means=[[0.5] * d], stds=0.3, noise_conditional=True
    ).double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 17, (64, d), generator=gen).double() / 16
    result = ode_log_likelihood(
        energy, x, sigma_min=0.01, sigma_max=30.0, data_range=(0, 1), n_bins=17, generator=gen
    )
    assert result.dequantized
    assert result.bits_per_dim == pytest.approx(
        (result.nll + d * math.log(17)) / (d * math.log(2)), rel=1e-12
    )
    assert bits_per_dim(result.nll, d, -1.0, 1.0, 17) == pytest.approx(
        result.bits_per_dim - 1.0, rel=1e-12
    )  # twice the range: one bit per dimension less
    assert result.bits_per_dim_stderr == pytest.approx(result.stderr / (d * math.log(2)))


def test_dequantize_keeps_each_value_in_its_own_level():
    gen = torch.Generator().manual_seed(0)
    k = torch.randint(0, 256, (1000,), generator=gen).double()
    for low, high in ((0.0, 1.0), (-1.0, 1.0)):
        x = low + (high - low) * k / 255
        y = dequantize(x, low, high, 256, gen)
        level = ((y - low) / (high - low) * 256).floor()
        assert torch.equal(level, k)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"sigma_min": 0.0}, ["sigma_min", "> 0", "0.0"]),
        ({"sigma_min": -1.0}, ["sigma_min", "-1.0"]),
        ({"sigma_max": 0.05}, ["sigma_min must be below sigma_max", "0.05"]),
        ({"solver": "rk45"}, ["solver", "'rk45'", "dopri5"]),
        ({"divergence": "trace"}, ["divergence", "'trace'", "hutchinson"]),
        ({"rtol": 0}, ["rtol"]),
        ({"data_range": (0, 1)}, ["outside the declared data_range [0, 1]"]),
        ({"data_range": (1, 0)}, ["data_range", "low < high"]),
    ],
)
def test_bad_arguments_name_the_value(kwargs, words):
    energy = gaussian_data()
    x = torch.tensor([[0.5, 1.5], [2.0, -0.3]], dtype=torch.float64)
    options = {"sigma_min": 0.1, "sigma_max": 10.0, **kwargs}
    with pytest.raises(ebmflow.ConfigError) as info:
        ode_log_likelihood(energy, x, **options)
    for word in words:
        assert word in str(info.value)


def test_data_off_the_level_grid_is_an_error_not_rounded():
    energy = gaussian_data()
    x = torch.tensor([[0.5, 0.25], [0.3, 0.1]], dtype=torch.float64)
    with pytest.raises(ebmflow.ConfigError, match="not quantised to n_bins=17"):
        ode_log_likelihood(energy, x, sigma_min=0.1, sigma_max=10.0, data_range=(0, 1), n_bins=17)


def test_solver_out_of_steps_is_a_clear_error_naming_the_budget():
    energy = gaussian_data()
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ODEConvergenceError, match="max_steps=3") as info:
        ode_log_likelihood(energy, x, sigma_min=0.01, sigma_max=100.0, max_steps=3, rtol=1e-8)
    assert isinstance(info.value, ebmflow.EbmflowError)


def test_clean_energy_and_wrong_event_shape_are_refused():
    clean = ebmflow.create("energy", "gmm", means=[[0.0, 0.0]]).double()
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ebmflow.ConfigError, match="noise_conditional=False"):
        ode_log_likelihood(clean, x, sigma_min=0.1, sigma_max=1.0)
    with pytest.raises(ebmflow.ConfigError, match="event shape"):
        ode_log_likelihood(gaussian_data(), torch.zeros(3, 3), sigma_min=0.1, sigma_max=1.0)
