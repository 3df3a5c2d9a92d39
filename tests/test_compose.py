"""Composition of energies: the identities each composite promises, and the errors it
raises at composition time."""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow import EnergyUnavailableError, ScoreModel
from ebmflow.compose import Scaled, Sum
from ebmflow.energies.gaussian import GaussianEnergy
from ebmflow.energies.gmm import GMMEnergy
from ebmflow.energies.mlp import MLPEnergy

ATOL = 1e-10  # float64 identities: only rounding separates the two sides


@pytest.fixture(autouse=True)
def _float64_and_seeded_init():
    """Build every energy in float64 (analytic buffers follow the default dtype), with the
    global RNG (network initialisation) fixed per test and restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield
    torch.set_default_dtype(previous)


@pytest.fixture
def x():
    return torch.randn(6, 3, generator=torch.Generator().manual_seed(1))


def _mlp(**kw):
    return MLPEnergy(dim=3, widths=[16, 16], **kw)


def _autograd_score(energy, x, sigma=None):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x, sigma).sum(), x)
    return -grad


def _close(a, b, atol=ATOL):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


# -- sums, scaling, tempering, negation ------------------------------------------------


def test_sum_energy_and_score_are_sums_of_the_parts(x):
    e1, e2 = _mlp(), GaussianEnergy(mean=[1.0, 0.0, -1.0], std=0.7)
    total = e1 + e2
    assert isinstance(total, Sum)
    energy, score = total.energy_and_score(x)
    _close(energy, e1(x) + e2(x))
    _close(score, e1.score(x) + e2.score(x))
    _close(total(x), energy)
    _close(score, _autograd_score(total, x))


def test_nested_sums_flatten_into_one_sum(x):
    a, b, c = _mlp(), _mlp(), _mlp()
    total = (a + b) + c
    assert len(total.parts) == 3
    _close(total(x), a(x) + b(x) + c(x))


@pytest.mark.parametrize("c", [2.5, -0.5, 0.0])
def test_scaling_multiplies_energy_and_score(x, c):
    e = _mlp()
    for scaled in (c * e, e * c):
        energy, score = scaled.energy_and_score(x)
        _close(energy, c * e(x))
        _close(score, c * e.score(x))
        _close(scaled.score(x), score)


def test_division_by_temperature_tempers(x):
    e, temperature = _mlp(), 4.0
    tempered = e / temperature
    energy, score = tempered.energy_and_score(x)
    _close(energy, e(x) / temperature)
    _close(score, e.score(x) / temperature)


@pytest.mark.parametrize("temperature", [0.0, -1.0, "2"])
def test_division_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        _mlp() / temperature


def test_difference_with_coefficient_is_sum_with_negatively_scaled_part(x):
    # compositional diffusion's negation: e1 − c·e2 = Sum([e1, Scaled(e2, −c)])
    e1, e2, c = _mlp(), _mlp(), 0.3
    difference = e1 - c * e2
    reference = Sum([e1, Scaled(e2, -c)])
    e_d, s_d = difference.energy_and_score(x)
    e_r, s_r = reference.energy_and_score(x)
    _close(e_d, e_r)
    _close(s_d, s_r)
    _close(e_d, e1(x) - c * e2(x))
    _close((-e1)(x), -e1(x))


def test_noise_conditional_parts_receive_the_noise_level(x):
    kw = {
        "covariance": [[1.0, 0.2, 0.0], [0.2, 1.0, 0.0], [0.0, 0.0, 2.0]],
        "noise_conditional": True,
    }
    g1 = GaussianEnergy(mean=[0.0, 0.0, 0.0], **kw)
    g2 = GaussianEnergy(mean=[1.0, 2.0, 3.0], **kw)
    sigma = torch.linspace(0.1, 2.0, 6)
    total = g1 + 0.5 * g2
    energy, score = total.energy_and_score(x, sigma)
    _close(energy, g1(x, sigma) + 0.5 * g2(x, sigma))
    _close(score, _autograd_score(total, x, sigma))


def test_scaling_rejects_non_numbers():
    e = _mlp()
    with pytest.raises(ValueError, match=r"scaled by a finite number, got inf"):
        Scaled(e, math.inf)
    with pytest.raises(ValueError, match=r"scaled by a finite number, got 'a'"):
        Scaled(e, "a")
    with pytest.raises(TypeError, match=r"cannot build a sum from a float"):
        e + 1.0


# -- mixtures ---------------------------------------------------------------------------


def test_mixture_energy_is_negative_logsumexp_of_log_weights_minus_energies(x):
    parts, weights = [_mlp(), _mlp(), _mlp()], [0.2, 0.5, 0.3]
    mix = ebmflow.mixture(parts, weights)
    stacked = torch.stack([p(x) for p in parts], dim=-1)
    expected = -torch.logsumexp(torch.tensor(weights).log() - stacked, dim=-1)
    _close(mix(x), expected)
    _close(mix.energy_and_score(x)[0], expected)


def test_mixture_score_equals_autograd_gradient_of_its_energy(x):
    mix = ebmflow.mixture([_mlp(), _mlp()], [0.7, 0.3])
    _close(mix.score(x), _autograd_score(mix, x))


def test_mixture_weights_default_to_uniform(x):
    parts = [_mlp(), _mlp()]
    _close(ebmflow.mixture(parts)(x), ebmflow.mixture(parts, [5.0, 5.0])(x))


def test_mixture_of_normalised_gaussians_is_the_gmm_with_the_same_weights():
    # The energies include their log-normalisers, so exp(−Eᵢ) are densities and the
    # mixture weights are exactly the GMM weights.
    means = [[-1.0, 0.5], [2.0, -1.0]]
    covariances = [[[1.0, 0.3], [0.3, 0.5]], [[0.2, 0.0], [0.0, 2.0]]]
    weights = [0.3, 0.7]
    parts = [GaussianEnergy(mean=m, covariance=c) for m, c in zip(means, covariances)]
    mix = ebmflow.mixture(parts, weights)
    gmm = GMMEnergy(means=means, covariances=covariances, weights=weights)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(2)) * 2
    _close(-mix(x), gmm.log_prob(x), atol=1e-6)
    _close(mix.score(x), gmm.score(x), atol=1e-6)


def test_composites_of_closed_form_parts_take_no_autograd_pass(x, monkeypatch):
    g1 = GaussianEnergy(mean=[0.0, 0.0, 0.0], std=1.0)
    g2 = GaussianEnergy(mean=[1.0, 1.0, 1.0], std=[0.5, 1.0, 2.0])
    expected = [(g1 + g2).score(x), ebmflow.mixture([g1, g2]).score(x)]

    def no_autograd(*args, **kwargs):
        raise AssertionError("autograd.grad was called")

    monkeypatch.setattr(torch.autograd, "grad", no_autograd)
    _close((g1 + g2).score(x), expected[0])
    _close(ebmflow.mixture([g1, g2]).score(x), expected[1])
    _close((2.0 * g1 - 0.5 * g2).score(x), 2.0 * g1.score(x) - 0.5 * g2.score(x))


@pytest.mark.parametrize("weights", [[1.0, -1.0], [1.0], [0.0, 1.0], [1.0, math.nan]])
def test_mixture_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="mixture weights must be 2 positive finite numbers"):
        ebmflow.mixture([_mlp(), _mlp()], weights)


def test_mixture_needs_two_parts():
    with pytest.raises(ValueError, match="at least two energies, got 1"):
        ebmflow.mixture([_mlp()])


# -- conditioning and guidance -------------------------------------------------------------


class _LabelledQuadratic(ebmflow.Energy):
    """E(x | y) = ½‖x − c_y‖², c_y the y-th row of ``centres``."""

    def __init__(self) -> None:
        super().__init__()
        self.event_shape = (3,)
        self.register_buffer("centres", torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 3.0]]))

    def forward(self, x, sigma=None, y=None):
        return 0.5 * (x - self.centres[y]).square().sum(-1)


def test_condition_fixes_the_label(x):
    energy = _LabelledQuadratic()
    conditioned = ebmflow.condition(energy, 1)
    centre = torch.tensor([1.0, -2.0, 3.0])
    _close(conditioned(x), 0.5 * (x - centre).square().sum(-1))
    _close(conditioned.score(x), -(x - centre))
    per_sample = ebmflow.condition(energy, torch.tensor([0, 1, 0, 1, 1, 0]))
    _close(per_sample(x), energy(x, y=torch.tensor([0, 1, 0, 1, 1, 0])))


class _EmbeddedQuadratic(ebmflow.Energy):
    """E(x | y) = ½‖x − mean_L y‖², y an (L, 3) sequence of embeddings per sample."""

    condition_ndim = 2

    def __init__(self) -> None:
        super().__init__()
        self.event_shape = (3,)

    def forward(self, x, sigma=None, y=None):
        assert y.shape == (x.shape[0], 2, 3)
        return 0.5 * (x - y.mean(1)).square().sum(-1)


def test_condition_shares_one_embedding_or_one_with_a_batch_axis_of_one(x):
    energy = _EmbeddedQuadratic()
    y = torch.tensor([[1.0, 0.0, 2.0], [3.0, -2.0, 0.0]])  # (L, D): mean (2, -1, 1)
    want = 0.5 * (x - torch.tensor([2.0, -1.0, 1.0])).square().sum(-1)
    _close(ebmflow.condition(energy, y)(x), want)
    _close(ebmflow.condition(energy, y[None])(x), want)
    per_sample = y.expand(x.shape[0], 2, 3)
    _close(ebmflow.condition(energy, per_sample)(x), want)
    one_label = ebmflow.condition(_LabelledQuadratic(), torch.tensor([1]))
    _close(one_label(x), 0.5 * (x - torch.tensor([1.0, -2.0, 3.0])).square().sum(-1))


def test_guidance_is_unconditional_plus_scaled_difference(x):
    unconditional = _mlp()
    conditional = ebmflow.condition(_LabelledQuadratic(), 1)
    w = 3.0
    guided = ebmflow.guidance(conditional, unconditional, w)
    energy, score = guided.energy_and_score(x)
    e_u, e_c = unconditional(x), conditional(x)
    _close(energy, e_u + w * (e_c - e_u))
    s_u, s_c = unconditional.score(x), conditional.score(x)
    _close(score, s_u + w * (s_c - s_u))


# -- composition-time errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "compose",
    [
        lambda a, b: a + b,
        lambda a, b: a - 2.0 * b,
        lambda a, b: ebmflow.mixture([a, b]),
        lambda a, b: ebmflow.guidance(a, b, 2.0),
    ],
)
def test_composition_rejects_mismatched_event_shapes(compose):
    with pytest.raises(ValueError, match=r"different event shapes: \w+\([23],\), \w+\([23],\)"):
        compose(MLPEnergy(dim=2), MLPEnergy(dim=3))


@pytest.mark.parametrize(
    "compose",
    [
        lambda a, b: a + b,
        lambda a, b: ebmflow.mixture([a, b]),
    ],
)
def test_composition_rejects_mixing_noise_conditional_and_clean(compose):
    with pytest.raises(
        ValueError,
        match=r"noise-conditional and clean energies: "
        r"MLPEnergy \(noise_conditional=True\)",
    ):
        compose(_mlp(noise_conditional=True), _mlp())


# -- score-only models ------------------------------------------------------------------


class _StandardNormalScore(ScoreModel):
    """Score-only model of N(0, I): s(x) = −x."""

    event_shape = (3,)

    def score(self, x, sigma=None):
        return -x


def test_score_only_model_in_a_sum_gives_scores_but_no_energy(x):
    gaussian = GaussianEnergy(mean=[1.0, 2.0, 3.0], std=0.5)
    total = gaussian + _StandardNormalScore()
    assert not total.has_energy
    energy, score = total.energy_and_score(x)
    assert energy is None
    _close(score, gaussian.score(x) - x)
    _close(total.score(x), score)
    with pytest.raises(EnergyUnavailableError, match=r"score-only .* energy parameterisation"):
        total(x)
    with pytest.raises(EnergyUnavailableError, match="line-integral"):
        (2.0 * _StandardNormalScore())(x)


def test_mixture_of_a_score_only_model_raises_at_construction():
    with pytest.raises(
        EnergyUnavailableError,
        match=r"needs energies; parts "
        r"\['_StandardNormalScore'\] are score-only",
    ):
        ebmflow.mixture([GaussianEnergy(mean=[0.0, 0.0, 0.0]), _StandardNormalScore()])
