"""Tests of log Z by stepping-stone sampling over a parallel-tempering ladder."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ebmflow_tempering import SteppingStoneResult, stepping_stone_log_z

import ebmflow


class Shifted(ebmflow.Energy):
    """E(x) + c: an unnormalised energy whose log Z is log Z(E) − c."""

    def __init__(self, energy: ebmflow.Energy, shift: float) -> None:
        super().__init__()
        self.inner, self.shift = energy, shift
        self.event_shape = energy.event_shape

    def forward(self, x, sigma=None):
        return self.inner(x, sigma) + self.shift

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        e, s = self.inner.energy_and_score(x, sigma, create_graph=create_graph)
        return e + self.shift, s


def test_stepping_stone_log_z_of_the_shifted_ring_is_within_0_05_nats_of_the_exact_value():
    # the 8-mode ring is normalised (log Z = 0), so E + 2 has log Z = −2 exactly
    energy = Shifted(ebmflow.GMMEnergy.ring(), 2.0)
    result = stepping_stone_log_z(
        energy,
        n_chains=256,
        n_replicas=8,
        beta_min=0.01,
        base_std=3.0,
        n_steps=400,
        burn_in=100,
        local_sampler={"name": "mala", "step_size": 0.1},
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(result, SteppingStoneResult)
    assert result.stderr < 0.0125  # so that 0.05 nats is at least 4 standard errors
    assert abs(result.log_z - (-2.0)) < 0.05, (result.log_z, result.stderr)
    assert result.log_z == pytest.approx(sum(result.log_ratios))
    # thermodynamic integration from the same samples; with 8 rungs its trapezoid error is
    # ≈ 0.1 nats (not in stderr_ti), so only a loose check
    assert abs(result.log_z_ti - (-2.0)) < 0.2, result.log_z_ti
    assert all(0.2 < rate < 1.0 for rate in result.swap_acceptance)
    assert len(result.log_ratios) == 8 and len(result.betas) == 8
    assert result.samples.shape == (256, 2)
    summary = result.to_dict()
    json.dumps(summary)
    assert summary["method"] == "stepping-stone" and "samples" not in summary


def test_stepping_stone_with_an_explicit_ladder_and_adaptation_is_reproducible():
    energy = ebmflow.GaussianEnergy(mean=[1.0, -1.0], std=0.5)  # log Z = 0
    kwargs = dict(
        betas=[1.0, 0.6, 0.3, 0.1, 0.03],
        n_chains=64,
        n_steps=120,
        adapt_steps=40,
        local_sampler={"name": "mala", "step_size": 0.05},
    )
    before = torch.get_rng_state()
    a = stepping_stone_log_z(energy, generator=torch.Generator().manual_seed(1), **kwargs)
    b = stepping_stone_log_z(energy, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(torch.get_rng_state(), before)
    assert a.log_z == b.log_z and a.betas == b.betas
    assert a.betas[0] == 1.0 and a.betas[-1] == 0.03 and a.betas != kwargs["betas"]
    assert a.burn_in == 40  # default max(adapt_steps, n_steps // 4)
    assert abs(a.log_z) < 5 * a.stderr + 0.02  # a small run: only a sanity check


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_chains": 1}, r"n_chains must be an integer ≥ 2, got 1"),
        ({"n_steps": 0}, r"n_steps must be an integer ≥ 1, got 0"),
        (
            {"n_steps": 10, "burn_in": 10},
            r"burn_in must be at least adapt_steps \(0\) and less "
            r"than n_steps \(10\).*got 10",
        ),
        ({"adapt_steps": 50, "burn_in": 20}, r"burn_in must be at least adapt_steps \(50\)"),
        ({"base_std": 0.0}, r"base_std must be positive and finite, got 0.0"),
        (
            {"base_mean": [1.0, 2.0, 3.0]},
            r"base_mean must be a number or a tensor broadcastable "
            r"to the event shape \(2,\)",
        ),
        ({"dim": 3}, r"inconsistent event shapes"),
        ({"n_base_samples": 1}, r"n_base_samples must be an integer ≥ 2, got 1"),
        ({"generator": 0}, r"generator must be a torch.Generator, got 0"),
    ],
)
def test_bad_arguments_raise_errors_naming_the_function_the_value_and_what_is_accepted(
    kwargs, message
):
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0)
    with pytest.raises((ValueError, TypeError), match=f"^stepping_stone_log_z: {message}"):
        stepping_stone_log_z(energy, **kwargs)


def test_a_score_only_model_is_refused():
    class ScoreOnly(ebmflow.ScoreModel):
        def score(self, x, sigma=None):
            return -x

    with pytest.raises(ValueError, match="stepping_stone_log_z needs energy values"):
        stepping_stone_log_z(ScoreOnly(), dim=2)


def test_the_reference_path_is_exact_at_both_ends():
    # with E = E_ref the path is constant: every stone is exactly log 1 = 0
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=2.0)
    result = stepping_stone_log_z(
        energy,
        base_std=2.0,
        n_chains=16,
        n_replicas=3,
        n_steps=4,
        generator=torch.Generator().manual_seed(2),
    )
    assert all(abs(r) < 1e-5 for r in result.log_ratios)
    assert abs(result.log_z) < 1e-5 and abs(result.log_z_ti) < 1e-5
    assert math.isfinite(result.stderr)


def test_stepping_stone_is_reachable_through_ebmflow_evaluate_log_z_beside_ais():
    """The plugin registers its estimator under kind log_z_estimator, so the core's
    ``ebmflow.evaluate.log_z`` finds it by name, with the same options and result."""
    from ebmflow import evaluate

    assert {"grid", "ais", "stepping-stone"} <= set(evaluate.estimators())
    energy = Shifted(ebmflow.GMMEnergy.ring(), 2.0)
    kwargs = dict(
        n_chains=64,
        n_replicas=8,
        beta_min=0.01,
        base_std=3.0,
        n_steps=120,
        local_sampler={"name": "mala", "step_size": 0.1},
    )
    direct = stepping_stone_log_z(energy, generator=torch.Generator().manual_seed(3), **kwargs)
    through = evaluate.log_z(
        energy, "stepping-stone", generator=torch.Generator().manual_seed(3), **kwargs
    )
    assert isinstance(through, SteppingStoneResult)
    assert through.log_z == direct.log_z and through.stderr == direct.stderr
    with pytest.raises(ebmflow.ComponentArgumentError, match="did you mean 'n_replicas'"):
        evaluate.log_z(energy, "stepping-stone", n_replica=4)


def test_cli_evaluate_estimates_the_nll_with_stepping_stone(tmp_path, capsys):
    """``ebmflow evaluate --log-z stepping-stone`` on the normalised ring (log Z = 0): the
    estimate's standard error is ≈ 0.01 nats with these settings, so |log Z| < 0.06 is
    more than 4 standard errors, and the NLL is the data's mean energy plus log Z."""
    from ebmflow.cli import main

    ring = ebmflow.GMMEnergy.ring()
    ebmflow.save(ring, tmp_path / "ring")
    code = main(
        [
            "evaluate",
            str(tmp_path / "ring"),
            "--data",
            "8gaussians",
            "--n",
            "2000",
            "--json",
            "--log-z",
            "stepping-stone",
            "--log-z-arg",
            "n_chains=128",
            "--log-z-arg",
            "n_replicas=8",
            "--log-z-arg",
            "beta_min=0.01",
            "--log-z-arg",
            "base_std=3.0",
            "--log-z-arg",
            "n_steps=300",
            "--log-z-arg",
            'local_sampler={"name": "mala", "step_size": 0.1}',
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "stepping-stone"
    assert abs(report["log_z"]) < 0.06 and 0 < report["log_z_stderr"] < 0.015, report
    assert len(report["swap_acceptance"]) == 7
    x = ebmflow.create("dataset", "8gaussians").sample(2000, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean_energy = float(ring(x).mean())
    assert report["nll"] == pytest.approx(mean_energy + report["log_z"], abs=1e-9)
