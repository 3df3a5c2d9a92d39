"""``Energy.event_space``: continuous by default, checked by samplers and compositions; the
replay buffer draws binary and one-hot starts for discrete energies."""

from __future__ import annotations

import pytest
import torch

import ebmflow
from ebmflow.extend import EVENT_SPACES


class BinaryField(ebmflow.Energy):
    """E(x) = −Σ x over x ∈ {0, 1}^3."""

    event_space = "binary"
    event_shape = (3,)

    def forward(self, x, sigma=None):
        return -x.sum(dim=1)


class BinaryOnly(ebmflow.Sampler):
    event_spaces = ("binary",)

    def step(self, energy, state, generator=None):
        return state


def test_energies_are_continuous_unless_they_say_otherwise():
    assert EVENT_SPACES == ("continuous", "binary", "categorical")
    assert ebmflow.GaussianEnergy(mean=[0.0], std=1.0).event_space == "continuous"
    assert ebmflow.Sampler.event_spaces == ("continuous",)


def test_samplers_check_the_event_space():
    with pytest.raises(
        ebmflow.ConfigError, match="langevin samples 'continuous' event spaces, but BinaryField"
    ):
        ebmflow.Langevin(0.1).run(BinaryField(), torch.zeros(2, 3), 1)
    with pytest.raises(ebmflow.ConfigError, match="'continuous' event space; use a continuous"):
        BinaryOnly().run(ebmflow.GaussianEnergy(mean=[0.0] * 3, std=1.0), torch.zeros(2, 3), 1)
    assert BinaryOnly().run(BinaryField(), torch.zeros(2, 3), 1).samples.shape == (2, 3)


def test_compositions_keep_the_event_space():
    energy = BinaryField()
    assert (energy + energy).event_space == "binary"
    assert (2.0 * energy).event_space == "binary"
    assert ebmflow.compile_energy(energy).event_space == "binary"
    with pytest.raises(ebmflow.ConfigError, match="different event spaces"):
        energy + ebmflow.GaussianEnergy(mean=[0.0] * 3, std=1.0)


def test_replay_buffer_draws_discrete_starts():
    gen = torch.Generator().manual_seed(0)
    bits = ebmflow.ReplayBuffer(8, (5,), init="bernoulli").initial(400, gen)
    assert set(bits.unique().tolist()) == {0.0, 1.0}
    assert abs(float(bits.mean()) - 0.5) < 0.05
    one_hot = ebmflow.ReplayBuffer(8, (4, 3), init="one-hot").initial(400, gen)
    assert torch.equal(one_hot.sum(dim=-1), torch.ones(400, 4))
    assert set(one_hot.unique().tolist()) == {0.0, 1.0}
