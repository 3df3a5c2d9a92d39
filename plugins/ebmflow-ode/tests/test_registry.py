"""The plugin's components are registered under the pinned names and the estimator finds
its noise range or says how to give it."""

from __future__ import annotations

import pytest
import torch

import ebmflow


def test_samplers_and_estimator_are_registered_under_the_pinned_names():
    samplers = {c.name: c.plugin for c in ebmflow.components("sampler")}
    for name in ("ode-euler", "ode-heun", "ode"):
        assert samplers[name] == "ode"
    assert "ode" in ebmflow.evaluate.estimators()


def test_estimator_takes_sigma_as_sigma_min_and_needs_a_sigma_max():
    energy = ebmflow.GMMEnergy.ring(noise_conditional=True).double()
    x = ebmflow.create("dataset", "8gaussians").sample(50, torch.Generator().manual_seed(0))
    result = ebmflow.evaluate.log_z(
        energy, "ode", data=x, sigma=0.2, sigma_max=30.0, solver="rk4", n_steps=20
    )
    assert result.sigma_min == 0.2 and result.sigma_max == 30.0
    assert result.log_z == pytest.approx(0.0, abs=0.01)  # a normalised, consistent family
    with pytest.raises(ebmflow.ConfigError, match="has no sigma_max"):
        ebmflow.evaluate.log_z(energy, "ode", data=x, sigma=0.2)
    with pytest.raises(ebmflow.ConfigError, match="scores data"):
        ebmflow.evaluate.log_z(energy, "ode", sigma=0.2, sigma_max=30.0)


def test_estimator_lists_the_accepted_arguments_for_a_misspelt_one():
    energy = ebmflow.GMMEnergy.ring(noise_conditional=True)
    x = torch.zeros(2, 2)
    with pytest.raises(ebmflow.ComponentArgumentError, match=r"sigmamax.*accepted.*sigma_max"):
        ebmflow.evaluate.log_z(energy, "ode", data=x, sigma=0.1, sigmamax=3.0)
