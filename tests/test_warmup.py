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


@pytest.mark.parametrize("sampler", ["mala", "hmc", "nuts"])
@pytest.mark.parametrize("start", [1e-4, 10.0])
def test_a_badly_chosen_step_size_still_reaches_the_target_acceptance(sampler, start):
    # from ε = 10⁻⁴ or 10 (the right one is near 1) a 60-step warm-up ends within 0.05 of
    # the target: the initial search moves ε by powers of two before dual averaging starts
    # (the acceptance of 400 chains × 60 steps has a Monte Carlo error near 0.01)
    if sampler == "nuts":
        pytest.importorskip("ebmflow_dynamics")
    energy = ebmflow.create("energy", "gaussian", mean=[0.0] * 5, std=[0.5, 0.7, 1.0, 1.0, 1.2])
    kwargs = {"n_leapfrog": 3} if sampler == "hmc" else {}
    if sampler == "nuts":
        kwargs = {"adapt_mass": False, "max_tree_depth": 6}
    s = ebmflow.create("sampler", sampler, step_size=start, adapt_steps=60, **kwargs)
    gen = seeded(3)
    warm = s.run(energy, torch.randn(400, 5, generator=gen), 60, generator=gen)
    after = s.continue_run(energy, warm.state, 60, generator=gen)
    assert abs(after.diagnostics["acceptance_rate"] - s.target_accept) < 0.05, (
        warm.diagnostics["step_size"],
        after.diagnostics["acceptance_rate"],
    )


def test_the_search_brackets_the_half_acceptance_and_can_be_turned_off():
    from ebmflow.samplers.step_size_search import find_step_size, leapfrog_acceptance

    energy = ebmflow.create("energy", "gaussian", mean=[0.0] * 4, std=1.0)
    state = ebmflow.HMC().init(energy, torch.randn(500, 4, generator=seeded(4)))
    for start in (1e-4, 30.0):
        eps = find_step_size(energy, state, start)
        gen = torch.Generator().manual_seed(5)
        # the search stops at the first power-of-two multiple on the far side of ½
        crossed = leapfrog_acceptance(energy, state, eps, gen)
        before = leapfrog_acceptance(energy, state, eps * (2.0 if start > 1 else 0.5), gen)
        assert (crossed - 0.5) * (before - 0.5) < 0, (start, eps, crossed, before)
        assert math.log2(eps / start) == round(math.log2(eps / start))
    # MALA's η searches over ε = √(2η) and comes back as η = ε²/2
    ratio = math.sqrt(2 * find_step_size(energy, state, 1e-6, "langevin")) / math.sqrt(2e-6)
    assert ratio > 1 and math.isclose(ratio, 2.0 ** round(math.log2(ratio)))
    off = ebmflow.MALA(step_size=1e-4, adapt_steps=10, search_step_size=False)
    on = ebmflow.MALA(step_size=1e-4, adapt_steps=10)
    assert math.isclose(off.adaptation.step_size(off.init(energy, state.x)), 1e-4)
    assert on.adaptation.step_size(on.init(energy, state.x)) > 0.01
    with pytest.raises(ebmflow.ConfigError, match="hmc: search_step_size must be True or False"):
        ebmflow.HMC(search_step_size="yes")
