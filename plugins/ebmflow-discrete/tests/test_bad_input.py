"""Bad input gives errors that name the component and what it expects."""

from __future__ import annotations

import pytest
import torch

import ebmflow


@pytest.fixture
def ising():
    return ebmflow.create("energy", "ising", side=3, coupling=0.2)


@pytest.mark.parametrize("name", ["gibbs", "gwg", "dmala", "block-gibbs"])
def test_a_discrete_sampler_refuses_a_continuous_energy(name):
    sampler = ebmflow.create("sampler", name)
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0)
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            rf"{name} samples 'binary'.*GaussianEnergy is defined on a "
            rf"'continuous' event space; use a continuous sampler"
        ),
    ):
        sampler.run(energy, torch.zeros(4, 2), 1)


@pytest.mark.parametrize("name", ["langevin", "mala", "hmc"])
def test_a_continuous_sampler_refuses_a_discrete_energy(name, ising):
    sampler = ebmflow.create("sampler", name)
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            r"samples 'continuous' event spaces, but IsingEnergy is "
            r"defined on a 'binary' event space; use a discrete sampler such as 'gibbs'"
        ),
    ):
        sampler.run(ising, torch.zeros(4, 9), 1)


@pytest.mark.parametrize("name", ["gibbs", "gwg", "dmala"])
def test_non_binary_starts_are_refused_by_the_sampler(name, ising):
    sampler = ebmflow.create("sampler", name)
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            rf"{name}: the starts for IsingEnergy: expected binary states "
            rf"\(every number 0 or 1\), but 36 of 36 numbers are not \(e.g. 0.5\)"
        ),
    ):
        sampler.run(ising, torch.full((4, 9), 0.5), 1)


def test_non_one_hot_starts_are_refused_for_a_categorical_energy():
    energy = ebmflow.create("energy", "potts", side=2, q=3)
    with pytest.raises(
        ebmflow.ConfigError, match="gibbs: the starts for PottsEnergy: expected categorical states"
    ):
        ebmflow.create("sampler", "gibbs").run(energy, torch.ones(2, 4, 3), 1)


@pytest.mark.parametrize("name", ["ising", "rbm", "binary-mlp"])
def test_non_binary_data_to_a_binary_energy(name):
    kwargs = {"ising": {"side": 3}, "rbm": {"n_visible": 9}, "binary-mlp": {"dim": 9}}[name]
    energy = ebmflow.create("energy", name, **kwargs)
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            rf"{name}: expected binary states \(every number 0 or 1\), but "
            rf"1 of 18 numbers are not \(e.g. 0.3"
        ),
    ):
        x = torch.zeros(2, 9)
        x[1, 4] = 0.3
        energy(x)


@pytest.mark.parametrize("objective", ["pseudo-likelihood", "ratio-matching"])
def test_non_binary_data_to_an_objective(objective, ising):
    with pytest.raises(
        ebmflow.ConfigError, match=rf"{objective}: the data for IsingEnergy: expected binary states"
    ):
        ebmflow.create("objective", objective)(ising, torch.randn(4, 9))


@pytest.mark.parametrize("objective", ["pseudo-likelihood", "ratio-matching"])
def test_objectives_refuse_continuous_energies(objective):
    energy = ebmflow.create("energy", "mlp", dim=2)
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            rf"{objective} trains energies over discrete states .* "
            rf"MLPEnergy is defined on a 'continuous' event space"
        ),
    ):
        ebmflow.create("objective", objective)(energy, torch.zeros(4, 2))


def test_ratio_matching_is_for_binary_states():
    energy = ebmflow.create("energy", "potts", side=2, q=3)
    x = torch.nn.functional.one_hot(torch.zeros(2, 4, dtype=torch.long), 3).float()
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            "ratio-matching is defined for binary states, but "
            "PottsEnergy is 'categorical'; use 'pseudo-likelihood'"
        ),
    ):
        ebmflow.create("objective", "ratio-matching")(energy, x)


def test_block_gibbs_needs_block_conditionals(ising):
    with pytest.raises(ebmflow.ConfigError, match="block-gibbs: IsingEnergy has no block_gibbs"):
        ebmflow.create("sampler", "block-gibbs").run(ising, torch.zeros(2, 9), 1)


def test_composition_refuses_mixed_event_spaces(ising):
    gaussian = ebmflow.GaussianEnergy(mean=[0.0] * 9, std=1.0)
    with pytest.raises(
        ebmflow.ConfigError,
        match=(
            "different event spaces: IsingEnergy \\('binary'\\), GaussianEnergy \\('continuous'\\)"
        ),
    ):
        ising + gaussian
    assert (ising + ising).event_space == "binary"
    assert (ising / 2.0).event_space == "binary"


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "gibbs",
            {"scan": "sweep"},
            "gibbs: unknown scan 'sweep'; accepted: 'random', 'systematic'",
        ),
        ("dmala", {"step_size": 0}, "dmala: step_size must be a number > 0"),
        ("dmala", {"adjust": "yes"}, "dmala: adjust must be true or false"),
    ],
)
def test_invalid_sampler_arguments(name, kwargs, message):
    with pytest.raises(ebmflow.ConfigError, match=message):
        ebmflow.create("sampler", name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "ising",
            {"couplings": [[0.0, 1.0]]},
            r"ising: couplings must be a square \(D, D\) matrix",
        ),
        (
            "ising",
            {"side": 2, "fields": [0.0]},
            r"ising: fields must have one value per site, shape \(4,\)",
        ),
        ("potts", {"q": 1}, "potts: q must be an integer ≥ 2"),
        ("rbm", {"n_hidden": 0}, "rbm: n_hidden must be an integer ≥ 1"),
    ],
)
def test_invalid_energy_arguments(name, kwargs, message):
    with pytest.raises(ebmflow.ConfigError, match=message):
        ebmflow.create("energy", name, **kwargs)
