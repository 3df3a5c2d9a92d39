"""The built-in energies: shapes, scores, normalisation, sampling, σ handling, configs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import (
    Categorical,
    MixtureSameFamily,
    MultivariateNormal,
)

import ebmflow
from ebmflow.energies import ACTIVATIONS, resolve_sigma
from ebmflow.energies.convnet import ConvNetEnergy
from ebmflow.energies.gaussian import GaussianEnergy
from ebmflow.energies.gmm import GMMEnergy
from ebmflow.energies.mlp import MLPEnergy

COV = [[2.0, 0.6, 0.1], [0.6, 1.0, -0.3], [0.1, -0.3, 0.5]]
GMM_KW = {
    "means": [[-2.0, 0.0], [1.5, 1.0], [0.0, -2.5]],
    "covariances": [[[1.0, 0.4], [0.4, 0.5]], [[0.3, -0.1], [-0.1, 0.6]], [[0.2, 0.0], [0.0, 0.8]]],
    "weights": [0.5, 0.3, 0.2],
}


@pytest.fixture(autouse=True)
def _seeded_init():
    """Network weights are initialised from the global RNG (as for any nn.Module); fix it
    for each test and restore the caller's state afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.fixture
def float64_default():
    """Build analytic energies in float64 (their buffers follow the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# name -> (constructor, a batch of inputs of size b)
ENERGIES = {
    "mlp": (lambda: MLPEnergy(dim=3, widths=[16, 16]), lambda b: torch.randn(b, 3)),
    "mlp-conditional": (
        lambda: MLPEnergy(
            dim=3,
            widths=[16],
            noise_conditional=True,
            sigma_embedding="fourier",
            scale_by_sigma=True,
        ),
        lambda b: torch.randn(b, 3),
    ),
    "convnet": (
        lambda: ConvNetEnergy(channels=1, image_size=8, widths=[4, 8]),
        lambda b: torch.randn(b, 1, 8, 8),
    ),
    "convnet-conditional": (  # eval(): no power iteration, so repeated calls agree
        lambda: ConvNetEnergy(
            channels=2, image_size=8, widths=[4, 8], spectral_norm=True, noise_conditional=True
        ).eval(),
        lambda b: torch.randn(b, 2, 8, 8),
    ),
    "gaussian": (
        lambda: GaussianEnergy(mean=[0.5, -1.0, 2.0], covariance=COV),
        lambda b: torch.randn(b, 3),
    ),
    "gmm": (lambda: GMMEnergy(**GMM_KW), lambda b: torch.randn(b, 2)),
    "gmm-conditional": (
        lambda: GMMEnergy(**GMM_KW, noise_conditional=True),
        lambda b: torch.randn(b, 2),
    ),
}
NETWORKS = ["mlp", "mlp-conditional", "convnet", "convnet-conditional"]


def _sigma_for(energy, b: int):
    return torch.linspace(0.1, 2.0, b) if energy.noise_conditional else None


# -- shapes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENERGIES))
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_energy_returns_one_value_per_sample(name, batch):
    make, data = ENERGIES[name]
    energy = make()
    x = data(batch)
    sigma = _sigma_for(energy, batch)
    assert energy(x, sigma).shape == (batch,)
    e, s = energy.energy_and_score(x, sigma)
    assert e.shape == (batch,)
    assert s.shape == x.shape
    assert energy.score(x, sigma).shape == x.shape
    assert tuple(x.shape[1:]) == energy.event_shape


@pytest.mark.parametrize("size", [8, 16, 32])
def test_convnet_accepts_image_sizes_8_to_32(size):
    energy = ConvNetEnergy(channels=3, image_size=size)
    assert energy.event_shape == (3, size, size)
    assert energy(torch.randn(2, 3, size, size)).shape == (2,)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_listed_activation_builds_a_working_mlp(name):
    energy = MLPEnergy(dim=2, widths=[8], activation=name)
    assert torch.isfinite(energy(torch.randn(4, 2))).all()


# -- scores --------------------------------------------------------------------------


def _autograd_score(energy, x, sigma):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x, sigma).sum(), x)
    return -grad


@pytest.mark.parametrize("name", list(ENERGIES))
def test_score_is_minus_autograd_gradient_of_forward_float64(name):
    make, data = ENERGIES[name]
    energy = make().double()
    x = data(9).double() * 1.5
    sigma = _sigma_for(energy, 9)
    sigma = None if sigma is None else sigma.double()
    e, s = energy.energy_and_score(x, sigma)
    torch.testing.assert_close(e, energy(x, sigma), rtol=0, atol=1e-10)
    torch.testing.assert_close(s, _autograd_score(energy, x, sigma), rtol=0, atol=1e-10)
    torch.testing.assert_close(energy.score(x, sigma), s, rtol=0, atol=1e-10)


def test_gaussian_closed_form_score_is_minus_precision_times_offset(float64_default):
    energy = GaussianEnergy(mean=[0.5, -1.0, 2.0], covariance=COV)
    x = torch.randn(5, 3, generator=_gen())
    expected = -(x - torch.tensor([0.5, -1.0, 2.0])) @ torch.linalg.inv(torch.tensor(COV))
    torch.testing.assert_close(energy.score(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NETWORKS)
def test_energy_and_score_with_create_graph_is_differentiable_in_parameters(name):
    make, data = ENERGIES[name]
    energy = make()
    x = data(4)
    e, s = energy.energy_and_score(x, _sigma_for(energy, 4), create_graph=True)
    (e.sum() + s.square().sum()).backward()
    for pname, p in energy.named_parameters():
        assert p.grad is not None, pname
    assert any(bool(p.grad.abs().sum() > 0) for p in energy.parameters())


@pytest.mark.parametrize("name", list(ENERGIES))
def test_energy_and_score_without_create_graph_is_detached_and_leaves_no_param_grad(name):
    make, data = ENERGIES[name]
    energy = make()
    x = data(4).requires_grad_(True)
    e, s = energy.energy_and_score(x, _sigma_for(energy, 4))
    assert not e.requires_grad and not s.requires_grad
    assert all(p.grad is None for p in energy.parameters())
    assert x.grad is None


def test_closed_form_score_with_create_graph_is_differentiable_in_x(float64_default):
    # ∂s/∂x = −Σ⁻¹ for a Gaussian: a second-order quantity that SSM-type objectives use.
    energy = GaussianEnergy(mean=[0.5, -1.0, 2.0], covariance=COV)
    x = torch.randn(2, 3, generator=_gen()).requires_grad_(True)
    _, s = energy.energy_and_score(x, create_graph=True)
    (jac_row_sums,) = torch.autograd.grad(s.sum(), x)
    expected = -torch.linalg.inv(torch.tensor(COV)).sum(0).expand(2, 3)
    torch.testing.assert_close(jac_row_sums, expected, rtol=0, atol=1e-12)


# -- analytic densities ----------------------------------------------------------------


def test_gaussian_log_prob_matches_torch_multivariate_normal(float64_default):
    mean = [0.5, -1.0, 2.0]
    energy = GaussianEnergy(mean=mean, covariance=COV)
    reference = MultivariateNormal(torch.tensor(mean), torch.tensor(COV))
    x = torch.randn(50, 3, generator=_gen()) * 2
    torch.testing.assert_close(energy.log_prob(x), reference.log_prob(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(energy(x), -reference.log_prob(x), rtol=0, atol=1e-10)
    assert energy.log_z() == 0.0
    torch.testing.assert_close(energy.covariance, torch.tensor(COV), rtol=0, atol=1e-12)


@pytest.mark.parametrize("std", [0.7, [0.5, 2.0, 1.0]])
def test_gaussian_std_gives_diagonal_covariance(float64_default, std):
    energy = GaussianEnergy(mean=[0.0, 1.0, 2.0], std=std)
    variances = torch.tensor(std).expand(3) ** 2
    reference = MultivariateNormal(torch.tensor([0.0, 1.0, 2.0]), torch.diag(variances))
    x = torch.randn(20, 3, generator=_gen())
    torch.testing.assert_close(energy.log_prob(x), reference.log_prob(x), rtol=0, atol=1e-10)


def test_noise_conditional_gaussian_is_smoothed_by_sigma_squared(float64_default):
    energy = GaussianEnergy(mean=[0.5, -1.0, 2.0], covariance=COV, noise_conditional=True)
    x = torch.randn(6, 3, generator=_gen())
    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 10.0])
    for i in range(6):
        cov = torch.tensor(COV) + sigma[i] ** 2 * torch.eye(3)
        reference = MultivariateNormal(torch.tensor([0.5, -1.0, 2.0]), cov)
        torch.testing.assert_close(
            energy.log_prob(x, sigma)[i], reference.log_prob(x[i]), rtol=0, atol=1e-10
        )
    # σ = None and σ = 0 are both the clean density
    torch.testing.assert_close(energy(x), energy(x, 0.0), rtol=0, atol=0)


def test_gmm_log_prob_integrates_to_one_on_a_grid(float64_default):
    # Riemann sum on [-8, 8]², h = 0.04: for a Gaussian of std s the error of this sum is
    # of order exp(−2π²s²/h²) (s ≥ 0.4 here: < 1e-100) and the mass outside the box is
    # below 1e-12, so the error is far below the 1e-4 tolerance.
    energy = GMMEnergy(**GMM_KW)
    grid = torch.linspace(-8, 8, 401)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([gx.flatten(), gy.flatten()], dim=-1)
    mass = energy.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-4
    assert energy.log_z() == 0.0


def test_gmm_log_prob_matches_torch_mixture_same_family(float64_default):
    energy = GMMEnergy(**GMM_KW)
    reference = MixtureSameFamily(
        Categorical(probs=torch.tensor(GMM_KW["weights"])),
        MultivariateNormal(torch.tensor(GMM_KW["means"]), torch.tensor(GMM_KW["covariances"])),
    )
    x = torch.randn(40, 2, generator=_gen()) * 3
    torch.testing.assert_close(energy.log_prob(x), reference.log_prob(x), rtol=0, atol=1e-10)


def test_gmm_sigma_smoothed_density_is_the_convolution_with_gaussian_noise(float64_default):
    # 1-D: p_σ(x) = ∫ p(y) N(x − y; 0, σ²) dy by the trapezoid rule on a fine grid
    # (h = 1e-3 over ±12: error ≪ 1e-8, the tolerance).
    kw = {"means": [[-1.0], [2.0]], "stds": [0.3, 0.8], "weights": [0.25, 0.75]}
    clean = GMMEnergy(**kw)
    smoothed = GMMEnergy(**kw, noise_conditional=True)
    sigma = 0.4
    y = torch.linspace(-12, 12, 24001)
    p_y = clean.log_prob(y[:, None]).exp()
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 2.0, 3.5])
    kernel = torch.exp(-0.5 * ((x[:, None] - y) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    convolved = torch.trapezoid(p_y * kernel, y, dim=-1)
    torch.testing.assert_close(
        smoothed.log_prob(x[:, None], sigma), convolved.log(), rtol=0, atol=1e-8
    )
    # 2-D, full covariances: the mixture of N(μₖ, Σₖ + σ²I)
    energy = GMMEnergy(**GMM_KW, noise_conditional=True)
    reference = MixtureSameFamily(
        Categorical(probs=torch.tensor(GMM_KW["weights"])),
        MultivariateNormal(
            torch.tensor(GMM_KW["means"]),
            torch.tensor(GMM_KW["covariances"]) + 0.7**2 * torch.eye(2),
        ),
    )
    x2 = torch.randn(30, 2, generator=_gen()) * 3
    torch.testing.assert_close(energy.log_prob(x2, 0.7), reference.log_prob(x2), rtol=0, atol=1e-10)


def _analytic_moments(energy: GMMEnergy) -> tuple[torch.Tensor, torch.Tensor]:
    w, mu, cov = energy.weights, energy.means, energy.covariances
    mean = (w[:, None] * mu).sum(0)
    second = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0)
    return mean, second - mean[:, None] * mean[None, :]


def test_gmm_samples_have_the_analytic_mean_and_covariance(float64_default):
    energy = GMMEnergy(**GMM_KW)
    n = 200_000
    x = energy.sample(n, _gen(1))
    mean, cov = _analytic_moments(energy)
    # Monte Carlo standard error of a mean: sqrt(var / n); of a covariance entry
    # (i, j): sqrt((Var(x_i x_j)) / n) ≤ sqrt(E[x_i² x_j²] / n). Allow 5 standard errors.
    centred = x - mean
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 5 * se_mean).all()
    prods = centred[:, :, None] * centred[:, None, :]
    se_cov = (prods.square().mean(0) / n).sqrt()
    assert ((prods.mean(0) - cov).abs() < 5 * se_cov).all()


def test_gaussian_samples_have_the_analytic_mean_and_covariance(float64_default):
    energy = GaussianEnergy(mean=[0.5, -1.0, 2.0], covariance=COV)
    n = 100_000
    x = energy.sample(n, _gen(2))
    cov = torch.tensor(COV)
    centred = x - torch.tensor([0.5, -1.0, 2.0])
    # 5 Monte Carlo standard errors, as above
    assert (centred.mean(0).abs() < 5 * (cov.diagonal() / n).sqrt()).all()
    prods = centred[:, :, None] * centred[:, None, :]
    assert ((prods.mean(0) - cov).abs() < 5 * (prods.square().mean(0) / n).sqrt()).all()


def test_smoothed_gmm_samples_have_variance_increased_by_sigma_squared(float64_default):
    energy = GMMEnergy(means=[[0.0], [3.0]], stds=[0.5, 1.0], noise_conditional=True)
    n, sigma = 100_000, 0.8
    x = energy.sample(n, _gen(3), sigma=sigma)
    _, cov = _analytic_moments(energy)
    expected = float(cov[0, 0]) + sigma**2
    # sample variance SE ≈ sqrt((μ₄ − var²) / n) ≤ sqrt(2 var² · 2 / n) for this mixture
    assert abs(float(x.var()) - expected) < 5 * math.sqrt(4 * expected**2 / n)


def test_sampling_uses_only_the_given_generator():
    energy = GMMEnergy.ring()
    state = torch.get_rng_state()
    a = energy.sample(50, _gen(7))
    b = energy.sample(50, _gen(7))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(a, energy.sample(50, _gen(8)))


def test_ring_places_equal_weight_modes_on_a_circle():
    energy = GMMEnergy.ring(n_modes=6, radius=3.0, std=0.1)
    assert energy.means.shape == (6, 2)
    torch.testing.assert_close(energy.means.norm(dim=-1), torch.full((6,), 3.0))
    torch.testing.assert_close(energy.weights, torch.full((6,), 1 / 6))
    torch.testing.assert_close(energy.covariances, 0.01 * torch.eye(2).expand(6, 2, 2))
    # its config is an ordinary gmm config
    rebuilt = ebmflow.create("energy", "gmm", **json.loads(json.dumps(energy.get_config())))
    x = torch.randn(5, 2)
    torch.testing.assert_close(rebuilt(x), energy(x))


# -- noise levels ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp-conditional", "convnet-conditional", "gmm-conditional"])
def test_noise_conditional_energy_accepts_scalar_0d_and_batch_sigma(name):
    make, data = ENERGIES[name]
    energy = make()
    x = data(5)
    by_number = energy(x, 0.3)
    torch.testing.assert_close(energy(x, torch.tensor(0.3)), by_number)
    torch.testing.assert_close(energy(x, torch.full((5,), 0.3)), by_number)
    per_sample = energy(x, torch.tensor([0.1, 0.3, 1.0, 3.0, 0.3]))
    torch.testing.assert_close(per_sample[1], by_number[1])
    torch.testing.assert_close(per_sample[4], by_number[4])


@pytest.mark.parametrize("name", ["mlp-conditional", "convnet-conditional"])
@pytest.mark.parametrize(
    ("sigma", "error", "match"),
    [
        (None, ValueError, r"noise-conditional.*needs sigma"),
        (-0.5, ValueError, r"sigma must be a finite number > 0, got -0\.5"),
        (0.0, ValueError, r"sigma must be a finite number > 0"),
        (float("nan"), ValueError, r"sigma must be a finite number"),
        ("0.1", TypeError, r"sigma must be a number or a tensor, got str"),
        (torch.ones(4), ValueError, r"sigma has shape \(4,\); expected a scalar or \(5,\)"),
        (torch.ones(5, 1), ValueError, r"sigma has shape \(5, 1\)"),
    ],
)
def test_noise_conditional_network_rejects_bad_sigma(name, sigma, error, match):
    make, data = ENERGIES[name]
    with pytest.raises(error, match=match):
        make()(data(5), sigma)


@pytest.mark.parametrize("name", ["mlp", "convnet", "gaussian", "gmm"])
def test_clean_energy_rejects_a_sigma(name):
    make, data = ENERGIES[name]
    energy = make()
    with pytest.raises(ValueError, match=r"clean energy \(noise_conditional=False\).*sigma=0\.1"):
        energy(data(3), 0.1)
    with pytest.raises(ValueError, match="clean energy"):
        energy.energy_and_score(data(3), torch.full((3,), 0.1))


def test_analytic_noise_conditional_energy_reads_none_as_sigma_zero():
    energy = GMMEnergy(**GMM_KW, noise_conditional=True)
    x = torch.randn(4, 2)
    torch.testing.assert_close(energy(x), GMMEnergy(**GMM_KW)(x), rtol=0, atol=0)
    torch.testing.assert_close(energy(x, 0.0), energy(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="≥ 0"):
        energy(x, -1.0)


def test_scale_by_sigma_without_embedding_is_ncsnv2_one_over_sigma():
    # E(x, σ) = f(x) / σ: doubling σ halves the energy and the score.
    energy = MLPEnergy(
        dim=3, widths=[8], noise_conditional=True, sigma_embedding="none", scale_by_sigma=True
    )
    x = torch.randn(4, 3)
    e1, s1 = energy.energy_and_score(x, 0.5)
    e2, s2 = energy.energy_and_score(x, 1.0)
    torch.testing.assert_close(e2, e1 / 2)
    torch.testing.assert_close(s2, s1 / 2)


def test_resolve_sigma_names_the_energy():
    energy = MLPEnergy(noise_conditional=True)
    with pytest.raises(ValueError, match=r"^MLPEnergy: sigma has shape"):
        resolve_sigma(energy, torch.ones(3), torch.zeros(2, 2))


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (MLPEnergy, {"dim": 0}, r"MLPEnergy: dim must be an integer ≥ 1, got 0"),
        (MLPEnergy, {"widths": [16, -1]}, r"MLPEnergy: widths must be .*got \[16, -1\]"),
        (MLPEnergy, {"widths": 16}, r"widths must be a list of positive integers"),
        (MLPEnergy, {"activation": "swishy"}, r"unknown activation 'swishy'; accepted: .*silu"),
        (
            MLPEnergy,
            {"noise_conditional": True, "sigma_embedding": "sin"},
            r"unknown sigma_embedding 'sin'; accepted: 'log', 'fourier', 'none'",
        ),
        (MLPEnergy, {"scale_by_sigma": True}, r"scale_by_sigma=True .* noise_conditional=True"),
        (
            MLPEnergy,
            {"noise_conditional": True, "sigma_embedding": "none"},
            r"would make a noise-conditional energy that ignores σ",
        ),
        (MLPEnergy, {"noise_conditional": "yes"}, r"noise_conditional must be True or False"),
        (ConvNetEnergy, {"channels": 0}, r"ConvNetEnergy: channels must be an integer ≥ 1"),
        (ConvNetEnergy, {"widths": []}, r"ConvNetEnergy: widths must be a non-empty list"),
        (ConvNetEnergy, {"spectral_norm": 1}, r"spectral_norm must be True or False, got 1"),
        (ConvNetEnergy, {"activation": None}, r"unknown activation None"),
        (GaussianEnergy, {"mean": []}, r"GaussianEnergy: mean must be a non-empty list"),
        (GaussianEnergy, {"mean": [0.0, "a"]}, r"mean must be a non-empty list of numbers"),
        (GaussianEnergy, {"mean": [0.0, float("inf")]}, r"mean must be finite"),
        (GaussianEnergy, {"mean": torch.zeros(2)}, r"got a Tensor, pass mean\.tolist\(\)"),
        (
            GaussianEnergy,
            {"mean": [0.0, 0.0], "covariance": [[1.0, 0.0]]},
            r"covariance must be 2×2 to match the mean of length 2, got shape \(1, 2\)",
        ),
        (
            GaussianEnergy,
            {"mean": [0.0, 0.0], "covariance": [[1.0, 2.0], [2.0, 1.0]]},
            r"covariance must be positive definite .* eigenvalues are \[-1\.0, 3\.0\]",
        ),
        (
            GaussianEnergy,
            {"mean": [0.0, 0.0], "covariance": [[1.0, 0.5], [0.0, 1.0]]},
            r"covariance must be a symmetric matrix",
        ),
        (
            GaussianEnergy,
            {"mean": [0.0, 0.0], "std": 1.0, "covariance": [[1, 0], [0, 1]]},
            r"give covariance or std, not both",
        ),
        (GaussianEnergy, {"mean": [0.0, 0.0], "std": -1.0}, r"std must be a number > 0 .*-1\.0"),
        (
            GaussianEnergy,
            {"mean": [0.0, 0.0], "std": [1.0, 1.0, 1.0]},
            r"std must be a number > 0 or a list of 2 numbers > 0",
        ),
        (GMMEnergy, {"means": [0.0, 1.0]}, r"GMMEnergy: means must be a K×d nested list"),
        (
            GMMEnergy,
            {"means": [[0.0], [1.0]], "weights": [1.0, -1.0]},
            r"weights must be a list of 2 positive numbers .*got \[1\.0, -1\.0\]",
        ),
        (
            GMMEnergy,
            {"means": [[0.0], [1.0]], "weights": [1.0]},
            r"weights must be a list of 2 positive numbers",
        ),
        (
            GMMEnergy,
            {"means": [[0.0], [1.0]], "stds": [1.0, 1.0, 1.0]},
            r"stds must be a number > 0, a list of 2 numbers > 0",
        ),
        (
            GMMEnergy,
            {"means": [[0.0], [1.0]], "stds": [[1.0], [0.0]]},
            r"stds must be .*2×1 nested list",
        ),
        (
            GMMEnergy,
            {"means": [[0.0, 0.0]], "covariances": [[[1.0, 0.0], [0.0, 1.0]]] * 2},
            r"covariances must be 1×2×2 to match means",
        ),
        (
            GMMEnergy,
            {"means": [[0.0], [0.0]], "covariances": [[[1.0]], [[-2.0]]]},
            r"covariances\[1\] must be positive definite",
        ),
        (GMMEnergy.ring, {"n_modes": 0}, r"GMMEnergy.ring: n_modes must be an integer ≥ 1"),
        (GMMEnergy.ring, {"std": 0.0}, r"GMMEnergy.ring: std must be a number > 0"),
    ],
)
def test_constructors_reject_bad_arguments_naming_energy_value_and_accepted(factory, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory(**kwargs)


def test_gmm_accepts_every_documented_std_form(float64_default):
    means = [[0.0, 0.0], [1.0, 2.0]]
    x = torch.randn(5, 2, generator=_gen())
    forms = [
        (0.5, [[0.25, 0.25], [0.25, 0.25]]),
        ([0.5, 2.0], [[0.25, 0.25], [4.0, 4.0]]),
        ([[0.5, 1.0], [2.0, 3.0]], [[0.25, 1.0], [4.0, 9.0]]),
    ]
    for stds, variances in forms:
        covariances = torch.diag_embed(torch.tensor(variances)).tolist()
        reference = GMMEnergy(means=means, covariances=covariances)
        torch.testing.assert_close(
            GMMEnergy(means=means, stds=stds)(x), reference(x), rtol=0, atol=1e-12
        )


# -- registry and configs --------------------------------------------------------------

CONFIGS = {
    "mlp": {
        "dim": 3,
        "widths": [8, 8],
        "activation": "softplus",
        "noise_conditional": True,
        "sigma_embedding": "fourier",
    },
    "convnet": {
        "channels": 3,
        "image_size": 16,
        "widths": [4, 8],
        "spectral_norm": True,
        "noise_conditional": True,
        "scale_by_sigma": True,
    },
    "gaussian": {"mean": [0.0, 1.0, 2.0], "covariance": COV, "noise_conditional": True},
    "gmm": {**GMM_KW, "noise_conditional": True},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_create_and_get_config_round_trip_through_json(name):
    energy = ebmflow.create("energy", name, **CONFIGS[name])
    config = json.loads(json.dumps(energy.get_config()))
    rebuilt = ebmflow.create("energy", name, **config)
    assert type(rebuilt) is type(energy)
    assert rebuilt.get_config() == config
    state = energy.state_dict()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in state.items()
    }
    rebuilt.load_state_dict(state)
    energy.eval()
    rebuilt.eval()
    x = torch.randn(3, *energy.event_shape)
    torch.testing.assert_close(rebuilt(x, 0.5), energy(x, 0.5), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gaussian", "gmm"])
def test_analytic_energies_keep_their_parameters_in_buffers(name):
    energy = ebmflow.create("energy", name, **CONFIGS[name])
    assert set(energy.state_dict()) == {"loc", "eigvals", "eigvecs", "log_weights"}
    as64 = energy.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in as64.buffers())
    x = torch.randn(2, *energy.event_shape, dtype=torch.float64)
    assert as64(x, 0.1).dtype == torch.float64
