"""NUTS: exactness on Gaussians (fast), the warm-up reaching its target, diagnostics, the
batched evaluation modes, and bad input. The long statistical checks (100-D Gaussian with
condition number 100, Neal's funnel) are in test_nuts_slow.py."""

from __future__ import annotations

import ebmflow_dynamics.plugin
import pytest
import torch
from ebmflow_dynamics import NUTS
from ebmflow_dynamics.trajectory import checkpoint_slots

import ebmflow
from ebmflow.testing import (
    check_plugin,
    check_sampler_preserves_gaussian,
    check_seeded_reproducible,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian(dim: int, std=1.0) -> ebmflow.Energy:
    return ebmflow.create("energy", "gaussian", mean=[0.0] * dim, std=std)


def test_plugin_registers_its_samplers():
    host = check_plugin(ebmflow_dynamics.plugin, name="dynamics")
    for name in ("nuts", "underdamped-langevin", "uha"):
        assert isinstance(host.create("sampler", name), ebmflow.Sampler)
    assert isinstance(ebmflow.create("sampler", "dynamics:nuts", step_size=0.3), NUTS)


def test_checkpoint_slots_follow_the_binary_tree():
    # leaf k stores at popcount(k >> 1); an odd leaf checks one slot per trailing 1-bit
    assert [checkpoint_slots(k) for k in range(8)] == [
        (1, 0),
        (0, 0),
        (2, 1),
        (0, 1),
        (2, 1),
        (1, 1),
        (3, 2),
        (0, 2),
    ]


@pytest.mark.parametrize("step_size", [0.3, 1.2])
def test_nuts_preserves_a_gaussian(step_size):
    # from exact N(0, I) draws, 5 transitions keep mean 0 and variance 1 (4 standard errors)
    check_sampler_preserves_gaussian(NUTS(step_size=step_size), n_chains=5000, n_steps=5)


def test_nuts_is_reproducible_and_leaves_the_global_rng_alone():
    check_seeded_reproducible(
        NUTS(step_size=0.5), gaussian(3), torch.randn(16, 3, generator=seeded(0))
    )


def test_evaluating_every_chain_gives_the_same_chains():
    energy, x0 = gaussian(5, std=[0.5, 1.0, 1.0, 2.0, 3.0]), torch.randn(32, 5, generator=seeded(1))
    a = NUTS(step_size=0.4).run(energy, x0, 5, generator=seeded(2))
    b = NUTS(step_size=0.4, evaluate="all").run(energy, x0, 5, generator=seeded(2))
    torch.testing.assert_close(a.samples, b.samples)
    assert torch.equal(a.state.extras["n_leapfrog"], b.state.extras["n_leapfrog"])


def test_diagnostics_report_tree_depth_leapfrog_steps_and_divergences():
    energy = gaussian(4)
    sampler = NUTS(step_size=0.5, max_tree_depth=4)
    result = sampler.run(energy, torch.randn(64, 4, generator=seeded(3)), 10, generator=seeded(4))
    d = result.diagnostics
    assert d["tree_depth"].shape == (64,) and int(d["tree_depth"].max()) <= 4
    assert d["leapfrog_steps"] <= 10 * 64 * (2**4 - 1)
    assert d["divergences"] == 0 and 0.5 < d["acceptance_rate"] <= 1.0
    # a step far beyond the stability limit 2σ of the leapfrog diverges at once
    wild = NUTS(step_size=50.0).run(
        energy, torch.randn(64, 4, generator=seeded(3)), 3, generator=seeded(4)
    )
    assert wild.diagnostics["divergences"] > 0 and int(wild.diagnostics["tree_depth"].max()) == 1


def test_warmup_reaches_the_target_acceptance_within_0_05():
    # 10-D Gaussian with variances from 0.25 to 4: dual averaging + mass matrix over 200
    # steps; the mean acceptance statistic of the fixed kernel afterwards is within 0.05 of δ
    # (its MC error over 32 chains × 100 steps is about 0.01)
    std = torch.linspace(0.5, 2.0, 10).tolist()
    sampler = NUTS(step_size=1.0, adapt_steps=200, target_accept=0.8)
    gen = seeded(5)
    warm = sampler.run(gaussian(10, std), torch.randn(32, 10, generator=gen), 200, generator=gen)
    after = sampler.continue_run(gaussian(10, std), warm.state, 100, generator=gen)
    assert after.diagnostics["step_size"] == warm.diagnostics["step_size"]  # frozen
    assert abs(after.diagnostics["acceptance_rate"] - 0.8) < 0.05
    ratio = after.diagnostics["inverse_mass"] / torch.tensor(std) ** 2
    assert float((ratio - 1).abs().max()) < 0.3


class ScoreOnly(ebmflow.Energy):
    has_energy = False

    def score(self, x, sigma=None):
        return -x


def test_nuts_refuses_a_score_only_model_naming_itself_and_what_it_needs():
    with pytest.raises(
        ebmflow.ConfigError,
        match=r"nuts .* needs energy values, but ScoreOnly is score-only.*'underdamped-langevin'",
    ):
        NUTS().run(ScoreOnly(), torch.zeros(4, 2), 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_size": 0.0}, r"nuts: step_size must be a number > 0, got 0.0"),
        ({"step_size": float("nan")}, r"nuts: step_size must be a number > 0, got nan"),
        ({"max_tree_depth": 0}, r"nuts: max_tree_depth must be an integer ≥ 1, got 0"),
        ({"max_tree_depth": 31}, r"nuts: max_tree_depth must be an integer from 1 to 30"),
        ({"max_tree_depth": 2.5}, r"nuts: max_tree_depth must be an integer ≥ 1, got 2.5"),
        ({"target_accept": 0.0}, r"nuts: target_accept must lie in \(0, 1\), got 0.0"),
        ({"adapt_steps": -3}, r"nuts: adapt_steps must be an integer ≥ 0, got -3"),
        ({"adapt_mass": 1}, r"nuts: adapt_mass must be True or False, got 1"),
        ({"evaluate": "some"}, r"nuts: evaluate must be one of 'active', 'all', got 'some'"),
    ],
)
def test_bad_arguments_name_the_sampler_the_value_and_what_is_accepted(kwargs, match):
    with pytest.raises(ebmflow.ConfigError, match=match):
        NUTS(**kwargs)
