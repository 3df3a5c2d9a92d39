"""Tests of ``ebmflow.extend.run_chains``, the k-step loop objectives draw negatives with:
acceptance averaging, the chains at an ensemble's target, warm-up through
``step_and_adapt``, and ULA's last step without an evaluation."""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow.extend import Chains, run_chains
from ebmflow.samplers.hmc import HMC
from ebmflow.samplers.langevin import Langevin


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Quadratic(ebmflow.Energy):
    """E(x) = ½‖x‖², counting the rows of every evaluation."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.event_shape = (dim,)
        self.rows: list[int] = []

    def forward(self, x, sigma=None):
        self.rows.append(x.shape[0])
        return 0.5 * x.square().sum(dim=1)


class ScriptedAcceptance(ebmflow.Sampler):
    """Moves every chain by +1 and reports acceptance (t + 1) / 10 · (1 + chain index) / B at
    step t; counts the warm-up calls."""

    def __init__(self) -> None:
        self.adapted = 0

    def step(self, energy, state, generator=None):
        b = state.x.shape[0]
        prob = (state.step + 1) / 10 * torch.arange(1, b + 1, dtype=state.x.dtype) / b
        return state.replace(x=state.x + 1, step=state.step + 1, accept_prob=prob)

    def adapt(self, state):
        self.adapted += 1
        return state


class Doubled(ScriptedAcceptance):
    """An ensemble: its state holds a copy of the chains at +100 that reports acceptance 0;
    the first B rows are the target."""

    def init(self, energy, x, sigma=None):
        return super().init(energy, torch.cat([x, x + 100]), sigma)

    def step(self, energy, state, generator=None):
        new = super().step(energy, state, generator)
        b = state.x.shape[0] // 2
        return new.replace(accept_prob=torch.cat([new.accept_prob[:b] * 0 + 0.5, torch.zeros(b)]))

    def target_state(self, state):
        b = state.x.shape[0] // 2
        return ebmflow.SamplerState(
            state.x[:b],
            state.energy[:b],
            state.score[:b],
            None,
            state.step,
            None if state.accept_prob is None else state.accept_prob[:b],
        )


def test_acceptance_is_the_mean_over_steps_and_chains_and_every_step_is_adapted():
    sampler, b, k = ScriptedAcceptance(), 4, 3
    chains = run_chains(sampler, Quadratic(), torch.zeros(b, 2), k)
    # mean over chains of (1 + i)/B is (B + 1)/(2B); over steps of (t + 1)/10 it is 0.2
    expected = 0.2 * (b + 1) / (2 * b)
    assert isinstance(chains, Chains)
    assert math.isclose(float(chains.acceptance), expected, rel_tol=1e-6)
    assert sampler.adapted == k
    assert torch.equal(chains.x, torch.full((b, 2), float(k)))
    assert torch.equal(chains.previous, torch.full((b, 2), float(k - 1)))


def test_a_sampler_without_acceptance_reports_none():
    chains = run_chains(Langevin(0.1), Quadratic(), torch.zeros(8, 2), 2, generator=seeded(0))
    assert chains.acceptance is None
    assert chains.state.energy is not None and chains.state.score is not None


def test_an_ensemble_gives_its_target_chains_and_their_acceptance_only():
    b, k = 5, 4
    chains = run_chains(Doubled(), Quadratic(), torch.zeros(b, 2), k)
    assert chains.x.shape == (b, 2) and chains.previous.shape == (b, 2)
    assert torch.equal(chains.x, torch.full((b, 2), float(k)))  # not the copies at +100
    assert torch.equal(chains.previous, torch.full((b, 2), float(k - 1)))
    assert math.isclose(float(chains.acceptance), 0.5)  # the other rows report 0


def test_hmc_warm_up_tunes_the_step_size_inside_run_chains():
    hmc = HMC(step_size=2.5, n_leapfrog=3, adapt_steps=20, target_accept=0.8)
    chains = run_chains(
        hmc, Quadratic(), torch.randn(256, 2, generator=seeded(1)), 20, generator=seeded(2)
    )
    # a step of 2.5 on a unit Gaussian is rejected almost always: the warm-up shrinks it
    assert hmc.adaptation.step_size(chains.state) < 2.0
    fixed = HMC(step_size=2.5, n_leapfrog=3)
    kept = run_chains(
        fixed, Quadratic(), torch.randn(256, 2, generator=seeded(1)), 20, generator=seeded(2)
    )
    assert fixed.adaptation.step_size(kept.state) == pytest.approx(2.5)


def test_ula_skips_the_last_evaluation_only_when_asked_and_moves_the_same_chains():
    x0, k = torch.randn(16, 2, generator=seeded(3)), 3
    full, skipped = Quadratic(), Quadratic()
    a = run_chains(Langevin(0.1), full, x0, k, generator=seeded(4))
    b = run_chains(Langevin(0.1), skipped, x0, k, generator=seeded(4), evaluate_last=False)
    assert torch.equal(a.x, b.x) and torch.equal(a.previous, b.previous)
    assert len(full.rows) == k + 1 and len(skipped.rows) == k
    assert b.state.energy is None and b.state.score is None


def test_a_langevin_subclass_and_metropolis_samplers_always_evaluate_the_last_step():
    class MyLangevin(Langevin):
        pass

    for sampler in (MyLangevin(0.1), ebmflow.create("sampler", "mala", step_size=0.1)):
        energy = Quadratic()
        chains = run_chains(
            sampler, energy, torch.zeros(4, 2), 2, generator=seeded(5), evaluate_last=False
        )
        assert len(energy.rows) == 3 and chains.state.score is not None


def test_a_skipped_last_step_still_raises_on_non_finite_chains():
    # E = 10³⁰ · ½‖x‖² is finite at the starts, but a step of 10¹⁰ overflows float32
    steep = 1e30 * Quadratic()
    x0 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ebmflow.SamplerDivergedError, match=r"step 0.*1 of 2 chains"):
        run_chains(Langevin(1e10, noise_scale=0.0), steep, x0, 1, evaluate_last=False)


def test_a_bad_number_of_steps_names_the_sampler_and_what_is_accepted():
    with pytest.raises(ebmflow.ConfigError, match=r"langevin.*n_steps"):
        run_chains(Langevin(0.1), Quadratic(), torch.zeros(2, 2), 0)
