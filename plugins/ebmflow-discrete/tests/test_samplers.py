"""Every discrete sampler against enumeration: marginals and nearest-neighbour moments of a
4×4 Ising model, a 12-visible RBM and a small Potts model agree with the exact values within
Monte Carlo error (the standard error from each statistic's ESS over the chains)."""

from __future__ import annotations

import pytest
import torch
from ebmflow_discrete import exact_moments, neighbour_pairs, uniform_states

import ebmflow
from ebmflow.evaluate import ess

#: |estimate − exact| / standard error must stay below this for every statistic (48 and
#: more statistics per check: a two-sided 4.5σ bound is exceeded by chance with
#: probability about 3e-4 in all).
Z_MAX = 4.5


def assert_matches_exact(trajectory, exact, pairs, label):
    """``trajectory`` (N, M, K) of flattened states; compares the marginals and the pair
    moments E[x_i x_j] of ``pairs`` with ``exact``."""
    left, right = pairs[:, 0], pairs[:, 1]
    stats = torch.cat([trajectory, trajectory[..., left] * trajectory[..., right]], dim=-1)
    truth = torch.cat([exact.marginals.flatten(), exact.pair_moments[left, right]])
    estimate = stats.double().mean(dim=(0, 1))
    n_eff = ess(stats).clamp(min=1.0)
    stderr = (truth * (1 - truth) / n_eff).sqrt()
    z = (estimate - truth).abs() / stderr
    worst = int(z.argmax())
    assert float(z.max()) < Z_MAX, (
        f"{label}: statistic {worst} is {float(estimate[worst]):.4f}, exact "
        f"{float(truth[worst]):.4f}, {float(z[worst]):.1f} standard errors apart (ESS "
        f"{float(n_eff[worst]):.0f})"
    )
    assert float(n_eff.min()) > 200, f"{label}: too few effective samples to judge"


def run(sampler, energy, n_chains, n_steps, burn_in, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x0 = uniform_states(energy.event_space, n_chains, energy.event_shape, gen)
    result = sampler.run(energy, x0, n_steps, generator=gen, thin=1)
    trajectory = result.trajectory[burn_in:]
    return trajectory.flatten(2), result


SAMPLERS = [
    ("gibbs", {"scan": "random"}, 150),
    ("gibbs", {"scan": "systematic"}, 150),
    ("gwg", {}, 800),
    ("dmala", {"step_size": 0.2}, 600),
]


@pytest.fixture(scope="module")
def ising():
    energy = ebmflow.create("energy", "ising", side=4, coupling=0.25, field=0.1)
    return energy, exact_moments(energy), neighbour_pairs(energy.couplings)


@pytest.mark.parametrize(("name", "kwargs", "steps"), SAMPLERS, ids=lambda v: str(v))
def test_ising_marginals_and_neighbour_moments_match_enumeration(ising, name, kwargs, steps):
    energy, exact, pairs = ising
    assert len(pairs) == 32  # the torus' nearest-neighbour bonds
    sampler = ebmflow.create("sampler", name, **kwargs)
    trajectory, result = run(sampler, energy, 128, steps, steps // 5)
    assert_matches_exact(trajectory, exact, pairs, f"{name} {kwargs} on the Ising model")
    if name != "gibbs":
        assert result.diagnostics["acceptance_rate"] > 0.5


@pytest.fixture(scope="module")
def rbm():
    energy = ebmflow.create("energy", "rbm", n_visible=12, n_hidden=6, weight_std=0.6, seed=3)
    with torch.no_grad():
        energy.visible_bias.copy_(torch.linspace(-0.5, 0.5, 12))
    pairs = torch.stack([torch.arange(11), torch.arange(1, 12)], dim=1)
    return energy, exact_moments(energy), pairs


@pytest.mark.parametrize(
    ("name", "kwargs", "steps"), [*SAMPLERS, ("block-gibbs", {}, 300)], ids=lambda v: str(v)
)
def test_rbm_marginals_and_neighbour_moments_match_enumeration(rbm, name, kwargs, steps):
    energy, exact, pairs = rbm
    sampler = ebmflow.create("sampler", name, **kwargs)
    trajectory, _ = run(sampler, energy, 128, steps, steps // 5)
    assert_matches_exact(trajectory, exact, pairs, f"{name} {kwargs} on the RBM")


@pytest.mark.parametrize(
    ("name", "kwargs", "steps"),
    [
        ("gibbs", {}, 200),
        pytest.param("gwg", {}, 1500, marks=pytest.mark.slow),
        pytest.param("dmala", {"step_size": 0.5}, 1000, marks=pytest.mark.slow),
    ],
    ids=lambda v: str(v),
)
def test_potts_category_marginals_and_pair_moments_match_enumeration(name, kwargs, steps):
    energy = ebmflow.create("energy", "potts", side=2, q=3, coupling=0.6)
    with torch.no_grad():
        energy.fields[:, 0] = 0.3
    exact = exact_moments(energy)
    # every (site, category) pair of two neighbouring sites, flattened as (site·q + c)
    pairs = torch.tensor([(0 * 3 + c, 1 * 3 + c2) for c in range(3) for c2 in range(3)])
    sampler = ebmflow.create("sampler", name, **kwargs)
    trajectory, _ = run(sampler, energy, 128, steps, steps // 5)
    assert_matches_exact(trajectory, exact, pairs, f"{name} on the Potts model")


def test_seeded_runs_are_reproducible_and_the_global_rng_is_untouched(ising):
    energy = ising[0]
    for name in ("gibbs", "gwg", "dmala"):
        sampler = ebmflow.create("sampler", name)
        x0 = torch.zeros(8, 16)
        before = torch.get_rng_state()
        a = sampler.run(energy, x0, 5, generator=torch.Generator().manual_seed(4)).samples
        b = sampler.run(energy, x0, 5, generator=torch.Generator().manual_seed(4)).samples
        assert torch.equal(torch.get_rng_state(), before)
        assert torch.equal(a, b)


def test_energy_evaluations_are_counted_per_chain(ising):
    energy = ising[0]
    x0 = torch.zeros(4, 16)
    gen = torch.Generator().manual_seed(0)
    gibbs = ebmflow.create("sampler", "gibbs").run(energy, x0, 3, generator=gen)
    assert gibbs.diagnostics["energy_evaluations"] == 3 * 16
    gwg = ebmflow.create("sampler", "gwg").run(energy, x0, 3, generator=gen)
    assert gwg.diagnostics["energy_evaluations"] == 3


def test_dula_moves_without_a_metropolis_test(ising):
    energy = ising[0]
    sampler = ebmflow.create("sampler", "dmala", step_size=0.3, adjust=False)
    result = sampler.run(
        energy, torch.zeros(16, 16), 20, generator=torch.Generator().manual_seed(0)
    )
    assert "acceptance_rate" not in result.diagnostics
    assert set(result.samples.unique().tolist()) <= {0.0, 1.0}


def test_discrete_samplers_drive_pcd_through_the_same_interfaces():
    energy = ebmflow.create("energy", "ising", side=3, coupling=0.0)
    objective = ebmflow.create(
        "objective", "pcd", sampler="gibbs", k=1, event_shape=[9], init="bernoulli", capacity=64
    )
    data = ebmflow.create("dataset", "ising", side=3, coupling=0.4).sample(
        32, torch.Generator().manual_seed(0)
    )
    out = objective(energy, data, generator=torch.Generator().manual_seed(1))
    out.loss.backward()
    assert energy.coupling_matrix.grad is not None
    assert set(objective.buffer.samples[objective.buffer.filled].unique().tolist()) <= {0.0, 1.0}
