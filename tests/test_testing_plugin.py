"""`ebmflow.testing`, the pytest plugin for plugin authors, used the way an author would:
in a separate test session (pytester) that enables it with `pytest_plugins`."""

from __future__ import annotations

import pytest
import torch

import ebmflow
from ebmflow import testing

pytest_plugins = ["pytester"]


def test_plugin_author_session_gets_fixtures_and_checks(pytester):
    pytester.makeconftest('pytest_plugins = ["ebmflow.testing"]\n')
    pytester.makepyfile(
        """
        import torch
        import ebmflow
        from ebmflow.testing import check_plugin, check_sampler_preserves_gaussian

        class MyPlugin:
            @ebmflow.hookimpl
            def ebmflow_samplers(self):
                return [ebmflow.Component("my-mala", "ebmflow.samplers.mala:MALA", "MALA again")]

        def test_isolated_hosts(ebmflow_host, ebmflow_bare_host):
            assert ebmflow_host.get("sampler", "mala").plugin == "ebmflow"
            assert ebmflow_bare_host.components() == []

        def test_my_plugin_conforms():
            host = check_plugin(MyPlugin(), name="mine")
            sampler = host.create("sampler", "mine:my-mala", step_size=0.5)
            check_sampler_preserves_gaussian(sampler, n_chains=5000)
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_check_plugin_reports_a_broken_plugin():
    class Broken:
        @ebmflow.hookimpl
        def ebmflow_samplers(self):
            return ["not a component"]

    with pytest.raises(AssertionError, match="failed to load"):
        testing.check_plugin(Broken(), name="broken")


def test_gaussian_check_catches_a_sqrt_eta_noise_bug():
    class HalfNoiseLangevin(ebmflow.Langevin):
        """ULA with √η instead of √(2η) noise: stationary variance about 1/2, not 1."""

        def __init__(self, step_size: float = 0.1) -> None:
            super().__init__(step_size, noise_scale=step_size**0.5)

    with pytest.raises(AssertionError, match="variance"):
        testing.check_sampler_preserves_gaussian(HalfNoiseLangevin(0.1), n_steps=50, n_chains=5000)
    # the correct sampler passes with its known one-step variance 1 + η²
    testing.check_sampler_preserves_gaussian(
        ebmflow.Langevin(0.1), n_steps=1, expected_variance=1.01, n_chains=20000
    )


def test_energy_check_catches_a_wrong_closed_form_score():
    class WrongScore(ebmflow.Energy):
        def forward(self, x, sigma=None):
            return 0.5 * (x**2).sum(1)

        def energy_and_score(self, x, sigma=None, *, create_graph=False):
            return self(x), x  # sign error: the score of ½‖x‖² is −x

    testing.check_energy(ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0), torch.randn(8, 2))
    with pytest.raises(AssertionError, match="score"):
        testing.check_energy(WrongScore(), torch.randn(8, 2))


def test_reproducibility_check_catches_global_rng_use():
    class GlobalNoise(ebmflow.Langevin):
        def step(self, energy, state, generator=None):
            return super().step(energy, state, None)  # ignores the generator

    x0 = torch.zeros(4, 2)
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0)
    testing.check_seeded_reproducible(ebmflow.Langevin(0.1), energy, x0)
    with pytest.raises(AssertionError, match="global RNG"):
        testing.check_seeded_reproducible(GlobalNoise(0.1), energy, x0)
