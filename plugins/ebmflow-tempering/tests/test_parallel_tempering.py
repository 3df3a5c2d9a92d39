"""Tests of the parallel-tempering sampler, on analytic targets with fixed seeds.

Monte Carlo tolerances are written beside each assertion: for a fraction p estimated from n
independent chains the standard error is sqrt(p(1 − p)/n); for the variance of n independent
N(0, v) values it is v·sqrt(2/n). Assertions allow about 4 standard errors.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import ebmflow_tempering
import pytest
import torch
from ebmflow_tempering import ParallelTempering, plugin

import ebmflow
from ebmflow.testing import check_plugin, check_seeded_reproducible

NAME = "parallel-tempering"


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_mode_mixture() -> ebmflow.Energy:
    """0.8·N((5, 5), I) + 0.2·N((−5, −5), I): the DESIGN target; normalised (E = −log p)."""
    return ebmflow.GMMEnergy(means=[[5.0, 5.0], [-5.0, -5.0]], weights=[0.8, 0.2])


class Stay(ebmflow.Sampler):
    """A local move that keeps every chain where it is: isolates the swaps."""

    needs_energy = True

    def step(self, energy, state, generator=None):
        return state.replace(step=state.step + 1)


class CountingEnergy(ebmflow.Energy):
    """Wraps an energy and records the batch size of every evaluation."""

    def __init__(self, energy: ebmflow.Energy) -> None:
        super().__init__()
        self.inner = energy
        self.event_shape = energy.event_shape
        self.batches: list[int] = []

    def forward(self, x, sigma=None):
        self.batches.append(x.shape[0])
        return self.inner(x, sigma)

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        self.batches.append(x.shape[0])
        return self.inner.energy_and_score(x, sigma, create_graph=create_graph)


# -- the DESIGN target: the 0.8 / 0.2 mixture at ±(5, 5) ---------------------------------------

N_CHAINS, N_REPLICAS, N_STEPS, THIN, KEEP_FROM = 1000, 6, 500, 5, 300


@pytest.fixture(scope="module")
def mixture_run():
    """PT on the mixture from uniform noise on [−8, 8]²: R = 6 replicas (β from 1 to 0.04)
    × 1000 chains × 500 steps of MALA (η = 0.5, rescaled to η/β per replica)."""
    gen = seeded(0)
    x0 = 16 * torch.rand(N_CHAINS, 2, generator=gen) - 8
    sampler = ebmflow.create(
        "sampler",
        NAME,
        n_replicas=N_REPLICAS,
        beta_min=0.04,
        local_sampler={"name": "mala", "step_size": 0.5},
    )
    return sampler.run(two_mode_mixture(), x0, N_STEPS, generator=gen, thin=THIN)


def in_major_mode(x: torch.Tensor) -> torch.Tensor:
    return (x.sum(dim=-1) > 0).double()


@pytest.mark.slow
def test_recovers_the_major_mode_weight_where_langevin_with_the_same_budget_fails(mixture_run):
    # PT: the β = 1 chains' time averages over steps 300–500 (every 5th step), one value per
    # independent ensemble, so the standard error comes from their spread over 1000 chains
    kept = mixture_run.trajectory[KEEP_FROM // THIN :]  # (40, 1000, 2)
    per_chain = in_major_mode(kept).mean(dim=0)
    fraction = float(per_chain.mean())
    stderr = float(per_chain.std()) / math.sqrt(N_CHAINS)
    assert stderr < 0.0075  # so that ±0.03 is at least 4 standard errors
    assert abs(fraction - 0.8) < 0.03, (fraction, stderr)

    # Langevin with the same budget: 6 × 1000 × 500 = 3·10⁶ energy+score evaluations, spent
    # on the same 1000 chains for 6 × 500 = 3000 steps. The chains stay in the basin they
    # start in (the barrier is ≈ 25 nats), so the fraction stays near the starting 0.5.
    gen = seeded(0)
    x0 = 16 * torch.rand(N_CHAINS, 2, generator=gen) - 8
    ula = ebmflow.create("sampler", "langevin", step_size=0.1)
    samples = ula.run(two_mode_mixture(), x0, N_REPLICAS * N_STEPS, generator=gen).samples
    fraction_ula = float(in_major_mode(samples).mean())
    # se = sqrt(0.25 / 1000) ≈ 0.016: 0.5 ± 0.065 is 4 se, and far below 0.8
    assert abs(fraction_ula - 0.5) < 0.065, fraction_ula


@pytest.mark.slow
def test_swap_acceptance_of_every_pair_lies_between_0_2_and_0_9(mixture_run):
    rates = mixture_run.diagnostics["swap_acceptance"]
    assert len(rates) == N_REPLICAS - 1
    # each rate averages ≈ 250 attempts × 1000 chains: its MC error is < 0.01
    assert all(0.2 <= rate <= 0.9 for rate in rates), rates
    assert mixture_run.diagnostics["round_trips"] > 0


# -- stationarity of every replica -------------------------------------------------------------


def test_replicas_targeting_a_gaussian_have_variance_one_over_beta():
    # energy ½‖x‖² (+ a constant): replica k targets N(0, I/β_k)
    dim, n_chains = 3, 2000
    energy = ebmflow.GaussianEnergy(mean=[0.0] * dim, std=1.0)
    sampler = ParallelTempering(
        n_replicas=4,
        beta_min=0.1,
        return_all=True,
        local_sampler={"name": "mala", "step_size": 0.5},
    )
    gen = seeded(1)
    result = sampler.run(energy, torch.randn(n_chains, dim, generator=gen), 150, generator=gen)
    assert result.samples.shape == (4, n_chains, dim)
    n = n_chains * dim  # independent values per replica
    for beta, x in zip(result.diagnostics["betas"], result.samples):
        variance = 1.0 / beta
        assert abs(float(x.var()) - variance) < 4 * variance * math.sqrt(2 / n), (beta, x.var())
        assert abs(float(x.mean())) < 4 * math.sqrt(variance / n)


def test_a_chain_started_in_one_mode_of_the_ring_visits_all_eight_modes():
    ring = ebmflow.GMMEnergy.ring()  # 8 modes of std 0.35 at radius 2.83, ≈ 4 nats apart
    start = ring.means[:1].repeat(4, 1)  # 4 chains, all in mode 0
    sampler = ParallelTempering(
        n_replicas=6, beta_min=0.05, local_sampler={"name": "mala", "step_size": 0.05}
    )
    # all 8 modes take 50–250 steps per chain (seeds 2–6): 500 steps leave a margin of 2
    result = sampler.run(ring, start, 500, generator=seeded(2), thin=1)
    nearest = torch.cdist(result.trajectory.reshape(-1, 2), ring.means).argmin(dim=1)
    visited = [set(modes.tolist()) for modes in nearest.view(500, 4).T]
    assert all(len(modes) == 8 for modes in visited), visited


# -- how a step works ---------------------------------------------------------------------------


def test_one_batched_energy_evaluation_of_all_replicas_per_step():
    energy = CountingEnergy(two_mode_mixture())
    sampler = ParallelTempering(n_replicas=8, local_sampler={"name": "mala", "step_size": 0.1})
    state = sampler.init(energy, torch.randn(16, 2, generator=seeded(3)))
    assert energy.batches == [8 * 16]
    for _ in range(3):
        state = sampler.step(energy, state, seeded(4))
    assert energy.batches == [8 * 16] * 4  # swaps and re-tempering evaluate nothing


@pytest.mark.parametrize("with_reference", [False, True])
def test_the_cache_holds_each_replicas_tempered_energy_and_score_after_swaps(with_reference):
    energy = two_mode_mixture()
    reference = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=4.0) if with_reference else None
    sampler = ParallelTempering(
        n_replicas=5,
        beta_min=0.05,
        reference=reference,
        local_sampler={"name": "mala", "step_size": 0.3},
    )
    gen = seeded(5)
    result = sampler.run(energy, 4 * torch.randn(64, 2, generator=gen), 30, generator=gen)
    state = result.state
    assert sum(result.diagnostics["swap_acceptance"]) > 0  # swaps did happen
    beta = torch.tensor(result.diagnostics["betas"]).repeat_interleave(64).float()
    e, s = energy.energy_and_score(state.x)
    if reference is None:
        e_k, s_k = beta * e, beta[:, None] * s
    else:  # E_k = β E + (1 − β) E_ref
        e_r, s_r = reference.energy_and_score(state.x)
        e_k = beta * e + (1 - beta) * e_r
        s_k = beta[:, None] * s + (1 - beta[:, None]) * s_r
    torch.testing.assert_close(state.energy, e_k, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(state.score, s_k, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        sampler.delta_energy(state).reshape(-1),
        e - (0 if reference is None else e_r),
        rtol=1e-4,
        atol=1e-3,
    )


def test_swaps_are_accepted_with_probability_min_1_exp_dbeta_times_de():
    # two replicas at β = (1, 0.3) holding different configurations; the local move stays
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0)
    sampler = ParallelTempering(betas=[1.0, 0.3], local_sampler=Stay())
    n = 20_000
    gen = seeded(6)
    x_cold, x_hot = torch.randn(n, 2, generator=gen), 2 * torch.randn(n, 2, generator=gen)
    state = sampler.init(energy, x_cold)
    x = torch.cat([x_cold, x_hot])
    e, s = energy.energy_and_score(x)
    beta = torch.tensor([1.0] * n + [0.3] * n)
    state = state.replace(x=x, energy=beta * e, score=beta[:, None] * s)

    new = sampler.step(energy, state, gen)
    # α = min(1, exp((β_0 − β_1)(E(x_0) − E(x_1))))
    alpha = ((1.0 - 0.3) * (e[:n] - e[n:])).exp().clamp(max=1.0)
    rate = sampler.diagnostics(new)["swap_acceptance"][0]
    assert rate == pytest.approx(float(alpha.mean()), rel=1e-5)
    swapped = (new.x[:n] == x_hot).all(dim=1)
    assert torch.equal(swapped, (new.x[n:] == x_cold).all(dim=1))  # pairs exchange
    assert torch.equal(swapped | (new.x[:n] == x_cold).all(dim=1), torch.ones(n, dtype=bool))
    # the empirical swap frequency matches mean α within 4 se (se ≤ sqrt(0.25 / n))
    assert abs(float(swapped.double().mean()) - float(alpha.mean())) < 4 * math.sqrt(0.25 / n)


def test_deo_alternates_even_and_odd_pairs_and_seo_draws_them():
    energy = ebmflow.GaussianEnergy(mean=[0.0], std=1.0)
    x0 = torch.randn(8, 1, generator=seeded(7))
    deo = ParallelTempering(n_replicas=4, local_sampler=Stay())
    state = deo.init(energy, x0)
    attempts = []
    for _ in range(3):
        state = deo.step(energy, state, seeded(8))
        attempts.append(state.swap_stats[1].tolist())
    assert attempts == [[1, 0, 1], [1, 1, 1], [2, 1, 2]]  # pairs (0,1),(2,3) then (1,2)

    seo = ParallelTempering(n_replicas=4, local_sampler=Stay(), swap="seo")
    gen = seeded(9)
    state = seo.init(energy, x0)
    for _ in range(200):
        state = seo.step(energy, state, gen)
    even, odd, _ = state.swap_stats[1].tolist()
    assert even + odd == 200
    assert abs(even - 100) < 4 * math.sqrt(200 * 0.25)  # Binomial(200, ½): sd ≈ 7


def test_non_reversible_deo_makes_more_round_trips_than_reversible_seo():
    # Syed et al. 2021: DEO round trips scale like 1/(2 + 2Λ), SEO's like 1/(2R + …)
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0)
    x0 = torch.randn(300, 2, generator=seeded(10))
    rates = {}
    for swap in ("deo", "seo"):
        sampler = ParallelTempering(
            n_replicas=8, beta_min=0.05, swap=swap, local_sampler={"name": "mala", "step_size": 0.5}
        )
        result = sampler.run(energy, x0, 200, generator=seeded(11))
        rates[swap] = result.diagnostics["round_trip_rate"]
    # thousands of round trips each: the factor ≈ 2 between them is far outside MC error
    assert rates["deo"] > 1.4 * rates["seo"] > 0, rates


def test_adaptation_equalises_swap_rates_then_freezes_the_ladder():
    energy = ebmflow.GaussianEnergy(mean=[0.0] * 5, std=1.0)
    bad_ladder = [1.0, 0.9, 0.8, 0.1, 0.05, 0.01]
    x0 = torch.randn(200, 5, generator=seeded(12))
    mala = {"name": "mala", "step_size": 0.5}
    fixed = ParallelTempering(betas=bad_ladder, local_sampler=mala)
    before = fixed.run(energy, x0, 150, generator=seeded(13)).diagnostics["swap_acceptance"]
    assert max(before) - min(before) > 0.5  # 0.9 beside 0.05

    adaptive = ParallelTempering(betas=bad_ladder, local_sampler=mala, adapt_steps=150)
    warm = adaptive.run(energy, x0, 150, generator=seeded(13)).state
    after = adaptive.continue_run(energy, warm, 150, generator=seeded(14))
    rates = after.diagnostics["swap_acceptance"]  # counted after the warm-up only
    # ≈ 75 attempts × 200 chains per pair: MC error ≈ 0.01 per rate
    assert max(rates) - min(rates) < 0.08, rates
    ladder = after.diagnostics["betas"]
    assert ladder == warm.betas.tolist()  # frozen after adapt_steps
    assert ladder[0] == 1.0 and ladder[-1] == 0.01
    assert all(a > b for a, b in zip(ladder, ladder[1:]))


def test_step_is_a_fixed_kernel_and_the_ladder_moves_only_in_adapt():
    energy = ebmflow.GaussianEnergy(mean=[0.0] * 5, std=1.0)
    sampler = ParallelTempering(
        betas=[1.0, 0.9, 0.8, 0.1, 0.05, 0.01],
        adapt_steps=16,
        local_sampler={"name": "mala", "step_size": 0.5},
    )
    start = sampler.init(energy, torch.randn(50, 5, generator=seeded(15)))
    stepped, adapted = start, start
    gen_a, gen_b = seeded(16), seeded(16)
    for _ in range(16):
        stepped = sampler.step(energy, stepped, gen_a)
        adapted = sampler.step_and_adapt(energy, adapted, gen_b)
    assert torch.equal(stepped.betas, start.betas)  # 16 steps of the kernel alone
    assert not torch.equal(adapted.betas, start.betas)  # rounds ended at steps 8 and 16
    assert float(adapted.swap_stats[1].sum()) == 0  # statistics restart with a new ladder


# -- the Sampler contract ---------------------------------------------------------------------


def test_run_takes_b_chains_and_returns_the_beta_one_replica_or_all_on_request():
    energy = two_mode_mixture()
    x0 = torch.randn(10, 2, generator=seeded(15))
    cold = ParallelTempering(n_replicas=3).run(energy, x0, 6, generator=seeded(16), thin=2)
    assert cold.samples.shape == (10, 2)
    assert cold.trajectory.shape == (3, 10, 2)
    assert cold.diagnostics["acceptance_per_chain"].shape == (10,)
    assert cold.diagnostics["local_acceptance_per_replica"].shape == (3,)
    assert cold.diagnostics["energy_trace"].shape == (6,)
    assert cold.state.x.shape == (30, 2)
    assert torch.equal(cold.samples, cold.state.x[:10])

    every = ParallelTempering(n_replicas=3, return_all=True).run(
        energy, x0, 6, generator=seeded(16), thin=2
    )
    assert every.samples.shape == (3, 10, 2)
    assert every.trajectory.shape == (3, 3, 10, 2)
    assert torch.equal(every.samples[0], cold.samples)


@pytest.mark.parametrize("swap", ["deo", "seo"])
def test_seeded_runs_are_reproducible_and_leave_the_global_rng_alone(swap):
    sampler = ParallelTempering(
        n_replicas=4, swap=swap, adapt_steps=8, local_sampler={"name": "mala", "step_size": 0.1}
    )
    x0 = torch.randn(32, 2, generator=seeded(17))
    check_seeded_reproducible(sampler, two_mode_mixture(), x0, n_steps=12)
    a = sampler.run(two_mode_mixture(), x0, 12, generator=seeded(1)).samples
    b = sampler.run(two_mode_mixture(), x0, 12, generator=seeded(2)).samples
    assert not torch.equal(a, b)


def test_continue_run_continues_exactly_as_one_long_run():
    sampler = ParallelTempering(
        n_replicas=4,
        adapt_steps=10,
        local_sampler={"name": "hmc", "step_size": 0.2, "n_leapfrog": 2, "adapt_steps": 10},
    )
    energy, x0 = two_mode_mixture(), torch.randn(8, 2, generator=seeded(18))
    one = sampler.run(energy, x0, 20, generator=seeded(19))
    gen = seeded(19)
    half = sampler.run(energy, x0, 10, generator=gen)
    two = sampler.continue_run(energy, half.state, 10, generator=gen)
    assert torch.equal(one.state.x, two.state.x)
    assert one.diagnostics["local_step_size"] == two.diagnostics["local_step_size"]


def test_works_through_create_as_the_sampler_of_the_cd_objective():
    sampler_config = {
        "name": NAME,
        "n_replicas": 4,
        "local_sampler": {"name": "mala", "step_size": 0.05},
    }
    sampler = ebmflow.create("sampler", sampler_config)
    assert isinstance(sampler, ParallelTempering)
    assert sampler.local_sampler.step_size == 0.05
    try:
        objective = ebmflow.create("objective", "cd", sampler=sampler_config, k=3)
    except ebmflow.UnknownComponentError:
        pytest.skip("the cd objective (ebmflow-cd) is not installed")
    energy = ebmflow.create("energy", "mlp", dim=2, widths=[16, 16])
    out = objective(energy, torch.randn(32, 2, generator=seeded(20)), generator=seeded(21))
    assert math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    assert 0.0 < out.metrics["acceptance_rate"] <= 1.0
    # the negatives are the β = 1 replica's chains, not the hotter replicas': replaying the
    # sampler with the same generator gives the same mean negative energy
    data = torch.randn(32, 2, generator=seeded(20))
    gen = seeded(21)
    state = sampler.init(energy, data)
    for _ in range(3):
        state = sampler.step(energy, state, gen)
    cold = sampler.target_state(state)
    assert cold.x.shape == (32, 2) and torch.equal(cold.x, state.x[:32])
    with torch.no_grad():
        expected = float(energy(cold.x).mean())
    assert out.metrics["e_neg"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_tempered_pcd_writes_the_target_chains_back_to_its_buffer():
    try:
        objective = ebmflow.create(
            "objective",
            "pcd",
            k=2,
            capacity=64,
            sampler={"name": NAME, "n_replicas": 3},
        )
    except ebmflow.UnknownComponentError:
        pytest.skip("the pcd objective (ebmflow-cd) is not installed")
    energy = ebmflow.create("energy", "mlp", dim=2, widths=[8])
    for i in range(2):
        out = objective(
            energy, torch.randn(16, 2, generator=seeded(30 + i)), generator=seeded(40 + i)
        )
        assert math.isfinite(float(out.loss.detach()))
    assert 1 <= int(objective.buffer.filled.sum()) <= 32
    with pytest.raises(ValueError, match=r"kl_weight=0\.5 .* runs an ensemble"):
        ebmflow.create("objective", "cd", kl_weight=0.5, sampler={"name": NAME})


@pytest.mark.slow
def test_the_cli_samples_with_parallel_tempering(tmp_path: Path):
    if not importlib.metadata.entry_points(group="ebmflow", name="tempering"):
        pytest.skip("ebmflow-tempering is not installed, so the CLI cannot find it")
    ebmflow.save(two_mode_mixture(), tmp_path / "gmm")
    out = tmp_path / "samples.safetensors"
    command = [
        sys.executable,
        "-m",
        "ebmflow",
        "sample",
        str(tmp_path / "gmm"),
        "--sampler",
        NAME,
        "--sampler-arg",
        "n_replicas=4",
        "--sampler-arg",
        'local_sampler={"name": "mala", "step_size": 0.1}',
        "--steps",
        "20",
        "--n",
        "50",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr
    from safetensors.torch import load_file

    assert load_file(out)["samples"].shape == (50, 2)
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == 20


def test_a_checkpointed_sampler_config_round_trips(tmp_path: Path):
    sampler = ebmflow.create(
        "sampler",
        NAME,
        betas=[1.0, 0.5, 0.2],
        swap="seo",
        local_sampler={"name": "hmc", "step_size": 0.1},
    )
    ebmflow.save(sampler, tmp_path / "pt")
    again = ebmflow.load(tmp_path / "pt")
    assert again.betas.tolist() == [1.0, 0.5, 0.2]
    assert again.swap == "seo" and again.local_sampler.name == "hmc"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_replicas": 1}, r"n_replicas must be an integer ≥ 2, got 1"),
        ({"n_replicas": 2.5}, r"n_replicas must be an integer ≥ 2, got 2.5"),
        ({"beta_min": 0.0}, r"beta_min must be a number in \(0, 1\).*got 0.0"),
        ({"beta_min": 1.0}, r"beta_min must be a number in \(0, 1\).*got 1.0"),
        ({"beta_min": "0.1"}, r"beta_min must be a number in \(0, 1\).*got '0.1'"),
        ({"betas": [0.9, 0.5]}, r"betas must be .*starting at 1.*got \[0.9, 0.5\]"),
        ({"betas": [1.0, 0.5, 0.6]}, r"betas must be .*strictly decreasing.*got \[1.0, 0.5, 0.6\]"),
        ({"betas": [1.0]}, r"betas must be .*at least 2 inverse temperatures.*got \[1.0\]"),
        ({"betas": [1.0, 0.5, 0.0]}, r"betas must be .*to a value > 0.*got \[1.0, 0.5, 0.0\]"),
        ({"betas": "hot"}, r"betas must be .*got 'hot'"),
        ({"betas": [1.0, 0.5], "n_replicas": 3}, r"n_replicas=3 but betas has 2 entries"),
        ({"betas": [1.0, 0.5], "beta_min": 0.1}, r"beta_min=0.1 but betas ends at 0.5"),
        ({"swap": "random"}, r"swap must be one of 'deo', 'seo', 'none', got 'random'"),
        ({"adapt_steps": -1}, r"adapt_steps must be an integer ≥ 0, got -1"),
        ({"adapt_steps": 10, "swap": "none"}, r"adapt_steps=10 tunes the ladder.*swap='none'"),
        ({"local_sampler": 42}, r"local_sampler must be a registered sampler name.*got int"),
        ({"local_sampler": ParallelTempering()}, r"local_sampler cannot itself be parallel-temp"),
        ({"reference": "gaussian"}, r"reference must be an ebmflow.Energy or None, got str"),
        (
            {"scale_step_size": True, "reference": ebmflow.GaussianEnergy(mean=[0.0], std=1.0)},
            r"scale_step_size=True",
        ),
        ({"return_all": "yes"}, r"return_all must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments_raise_errors_naming_the_sampler_the_value_and_what_is_accepted(
    kwargs, message
):
    with pytest.raises((ValueError, TypeError), match=f"^{NAME}: {message}"):
        ParallelTempering(**kwargs)


def test_an_unknown_local_sampler_lists_the_registered_ones():
    with pytest.raises(ebmflow.UnknownComponentError, match="mala"):
        ParallelTempering(local_sampler="malla")


def test_a_state_of_the_wrong_size_is_refused():
    sampler = ParallelTempering(n_replicas=3)
    energy = two_mode_mixture()
    state = ebmflow.create("sampler", "mala").init(energy, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=f"{NAME}: expected a state from ParallelTempering"):
        sampler.step(energy, state)


class CliffEnergy(ebmflow.Energy):
    """½‖x‖², but NaN where x₀ > 2: a model that breaks down away from its data."""

    event_shape = (2,)

    def forward(self, x, sigma=None):
        return torch.where(x[:, 0] > 2.0, torch.nan, 0.5 * x.pow(2).sum(dim=1))


@pytest.mark.parametrize("local", ["mala", "langevin"])
def test_non_finite_energies_raise_sampler_diverged_error_with_step_and_chain_count(local):
    sampler = ParallelTempering(
        n_replicas=4, beta_min=0.01, local_sampler={"name": local, "step_size": 0.5}
    )
    with pytest.raises(ebmflow.SamplerDivergedError, match=f"^{NAME}") as info:
        sampler.run(CliffEnergy(), torch.zeros(16, 2), 200, generator=seeded(22))
    assert info.value.step >= 0 and info.value.n_chains >= 1
    assert f"at step {info.value.step}" in str(info.value)

    start = torch.zeros(16, 2)
    start[:3, 0] = 3.0  # three chains start where E is NaN, copied to the 4 replicas
    with pytest.raises(ebmflow.SamplerDivergedError, match="at step 0") as info:
        sampler.run(CliffEnergy(), start, 5, generator=seeded(23))
    assert info.value.n_chains == 3 * 4


# -- the plugin --------------------------------------------------------------------------------


def test_the_plugin_registers_parallel_tempering_and_its_factory_imports():
    host = check_plugin(plugin, name="tempering")
    assert host.get("sampler", "tempering:parallel-tempering").summary
    assert isinstance(host.create("sampler", NAME), ParallelTempering)


def test_importing_the_plugin_module_imports_no_torch():
    root = os.path.dirname(os.path.dirname(ebmflow_tempering.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, ebmflow_tempering, ebmflow_tempering.plugin; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'ebmflow_tempering.parallel_tempering' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_state_is_typed_with_the_local_samplers_state_as_a_field():
    from ebmflow_tempering import TemperingState

    sampler = ParallelTempering(
        n_replicas=3,
        local_sampler={"name": "hmc", "step_size": 0.2, "n_leapfrog": 2, "adapt_steps": 4},
    )
    energy = two_mode_mixture()
    state = sampler.init(energy, torch.randn(5, 2, generator=seeded(30)))
    assert isinstance(state, TemperingState) and state.extras == {}
    assert state.betas.shape == (3,) and state.swap_stats.shape == (2, 2)
    # the local HMC's step size and its warm-up's dual-averaging sums
    assert set(state.local_extras) == {"log_step_size", "da_mu", "da_h_bar", "da_log_avg"}
    # step is a fixed kernel; the local HMC warms up in the ensemble's adapt: its step size
    # moved, in the typed field
    stepped = sampler.step(energy, state, seeded(31))
    assert torch.equal(stepped.local_extras["log_step_size"], state.local_extras["log_step_size"])
    new = sampler.step_and_adapt(energy, state, seeded(31))
    assert not torch.equal(new.local_extras["log_step_size"], state.local_extras["log_step_size"])
    assert sampler.diagnostics(new)["local_step_size"] == pytest.approx(
        math.exp(float(new.local_extras["log_step_size"]))
    )
