"""The shared warm-up (``ebmflow.Warmup``): Stan's windows, dual averaging reaching its
target for MALA and HMC, the diagonal mass matrix, and the kernel fixed afterwards."""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow.extend import Warmup, mass_windows


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mass_windows_are_stans_for_1000_and_short_warmups():
    # Stan's 1000-step warm-up: 75 fast, slow windows 25, 50, 100, 200, 500, 50 fast
    assert mass_windows(1000) == ((75, 100), (100, 150), (150, 250), (250, 450), (450, 950))
    # under 150 steps: 15% / 75% / 10%; under 20: no mass adaptation
    assert mass_windows(100) == ((15, 90),)
    assert mass_windows(19) == ()


@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_dual_averaging_reaches_the_target_acceptance(sampler):
    # the warm-up ends at ε̄; a fixed-kernel run afterwards accepts at δ ± 0.05
    # (the acceptance averaged over 1000 chains × 100 steps has an MC error below 0.01)
    energy = ebmflow.create("energy", "gaussian", mean=[0.0] * 10, std=[0.5] * 5 + [1.0] * 5)
    kwargs = {"n_leapfrog": 5} if sampler == "hmc" else {}
    s = ebmflow.create("sampler", sampler, step_size=2.0, adapt_steps=150, **kwargs)
    gen = seeded(0)
    warm = s.run(energy, torch.randn(1000, 10, generator=gen), 150, generator=gen)
    after = s.continue_run(energy, warm.state, 100, generator=gen)
    assert after.diagnostics["step_size"] == warm.diagnostics["step_size"]  # frozen
    assert abs(after.diagnostics["acceptance_rate"] - s.target_accept) < 0.05


def test_hmc_mass_matrix_learns_the_variances():
    # M⁻¹ after the windows estimates the target's variances (pooled over 200 chains and
    # the last window's steps; 20% is many standard errors)
    std = torch.tensor([0.1, 0.3, 1.0, 3.0])
    energy = ebmflow.create("energy", "gaussian", mean=[0.0] * 4, std=std.tolist())
    hmc = ebmflow.HMC(step_size=0.05, n_leapfrog=5, adapt_steps=200, adapt_mass=True)
    gen = seeded(1)
    warm = hmc.run(energy, torch.randn(200, 4, generator=gen), 200, generator=gen)
    inv_mass = hmc.adaptation.inverse_mass(warm.state)
    assert torch.allclose(inv_mass / std**2, torch.ones(4), rtol=0.2)
    after = hmc.continue_run(energy, warm.state, 50, generator=gen)
    assert torch.equal(hmc.adaptation.inverse_mass(after.state), inv_mass)  # fixed after
    assert abs(after.diagnostics["acceptance_rate"] - 0.8) < 0.05


def test_mala_without_warmup_keeps_its_constructor_step_and_no_state_entry():
    energy = ebmflow.create("energy", "gaussian", mean=[0.0, 0.0], std=1.0)
    mala = ebmflow.MALA(step_size=0.3)
    result = mala.run(energy, torch.zeros(8, 2), 3, generator=seeded(2))
    assert "log_step_size" not in result.state.extras
    assert result.diagnostics["step_size"] == 0.3


def test_warmup_update_is_a_no_op_after_its_steps():
    energy = ebmflow.create("energy", "gaussian", mean=[0.0, 0.0], std=1.0)
    mala = ebmflow.MALA(step_size=0.3, adapt_steps=2)
    state = mala.init(energy, torch.zeros(8, 2))
    for _ in range(2):
        state = mala.step_and_adapt(energy, state, seeded(3))
    late = mala.step(energy, state, seeded(4))
    assert mala.adapt(late) is late
    # the last warm-up step left the averaged step size ε̄ in place
    assert state.extras["log_step_size"] is state.extras["da_log_avg"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_accept": 1.0}, r"target_accept must lie in \(0, 1\), got 1.0"),
        ({"adapt_steps": -1}, r"adapt_steps must be an integer ≥ 0, got -1"),
    ],
)
def test_bad_warmup_arguments_name_the_sampler(kwargs, match):
    with pytest.raises(ebmflow.ConfigError, match="mala: " + match):
        ebmflow.MALA(**kwargs)
    with pytest.raises(ebmflow.ConfigError, match="warm-up: target_accept"):
        Warmup(10, 1.5)


def test_hmc_adapt_mass_must_be_a_bool():
    with pytest.raises(ebmflow.ConfigError, match="hmc: adapt_mass must be True or False"):
        ebmflow.HMC(adapt_mass="yes")


def test_dual_averaging_constants_are_stans():
    w = Warmup(100, 0.8)
    assert (w.gamma, w.t0, w.kappa) == (0.05, 10.0, 0.75)
    state = w.init(ebmflow.SamplerState(torch.zeros(4, 1), torch.zeros(4), torch.zeros(4, 1)), 0.5)
    assert float(state.extras["da_mu"]) == pytest.approx(math.log(5.0))
