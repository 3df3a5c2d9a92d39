"""Training discrete energies: pseudo-likelihood, ratio matching and pcd (with discrete
samplers) recover the coupling matrix of a 4×4 Ising model from exact samples of it, and
the run files train through the Trainer.

Error figures are over the 120 pairs i < j of the learned W against the true one (0.3 on
the 32 bonds of the torus, 0 elsewhere), from 4000 samples; the statistical error of a
consistent estimator with that much data is about 0.02 per pair, so a maximum under 0.15
(half the bond strength) recovers the graph and the bounds leave room for other seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ebmflow_discrete import IsingSamples

import ebmflow

CONFIGS = Path(__file__).resolve().parents[3] / "examples" / "configs"


@pytest.fixture(scope="module")
def ising_data():
    dataset = IsingSamples(side=4, coupling=0.3)
    data = dataset.sample(4000, torch.Generator().manual_seed(0))
    return dataset.energy.couplings.detach(), data


def coupling_errors(model, truth):
    upper = torch.triu_indices(16, 16, 1)
    diff = (model.couplings.detach() - truth)[upper[0], upper[1]]
    return float(diff.abs().max()), float(diff.square().mean().sqrt())


def fit(objective, data, steps, lr, batch_size=None, seed=1):
    model = ebmflow.create("energy", "ising", side=4, coupling=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = data
        if batch_size is not None:
            batch = data[torch.randint(0, data.shape[0], (batch_size,), generator=gen)]
        out = objective(model, batch, generator=gen)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pseudo-likelihood", "ratio-matching"])
def test_consistent_objectives_recover_the_ising_couplings(ising_data, name):
    truth, data = ising_data
    model = fit(ebmflow.create("objective", name), data, steps=300, lr=0.05)
    max_error, rms_error = coupling_errors(model, truth)
    print(f"{name}: max |ΔW| = {max_error:.4f}, RMS = {rms_error:.4f}")
    assert max_error < 0.15
    assert rms_error < 0.05


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "k"), [("gibbs", 1), ("gwg", 16)])
def test_pcd_with_a_discrete_sampler_recovers_the_ising_couplings(ising_data, sampler, k):
    truth, data = ising_data
    objective = ebmflow.create(
        "objective",
        "pcd",
        sampler=sampler,
        k=k,
        event_shape=[16],
        init="bernoulli",
        capacity=512,
        reinit_prob=0.0,
    )
    model = fit(objective, data, steps=600, lr=0.02, batch_size=512)
    max_error, rms_error = coupling_errors(model, truth)
    print(f"pcd ({sampler}, k={k}): max |ΔW| = {max_error:.4f}, RMS = {rms_error:.4f}")
    assert max_error < 0.2
    assert rms_error < 0.07


def test_pseudo_likelihood_is_the_sum_of_exact_conditionals():
    """On a 3-site model, −PL equals Σ_i −log p(x_i | x_−i) computed from the joint."""
    energy = ebmflow.create(
        "energy",
        "ising",
        couplings=[[0, 0.5, -0.3], [0.5, 0, 0.2], [-0.3, 0.2, 0]],
        fields=[0.1, -0.2, 0.3],
    )
    from ebmflow_discrete import exact_moments

    exact = exact_moments(energy)
    x = exact.states[[0, 3, 5, 6]]
    log_p = dict(zip(map(tuple, exact.states.tolist()), exact.log_probs.tolist()))
    expected = 0.0
    for row in x.tolist():
        for i in range(3):
            other = list(row)
            other[i] = 1 - other[i]
            lp, lq = log_p[tuple(row)], log_p[tuple(other)]
            expected -= lp - torch.logaddexp(torch.tensor(lp), torch.tensor(lq)).item()
    out = ebmflow.create("objective", "pseudo-likelihood")(energy, x)
    assert abs(float(out.loss.detach()) - expected / 4) < 1e-5


def test_categorical_pseudo_likelihood_matches_the_binary_one_for_two_categories():
    """A q = 2 Potts model is an Ising model with couplings W/2: their conditionals, so
    their pseudo-likelihoods, agree."""
    potts = ebmflow.create("energy", "potts", side=3, q=2, coupling=0.8)
    ising = ebmflow.create("energy", "ising", side=3, coupling=0.4)
    bits = torch.randint(0, 2, (16, 9), generator=torch.Generator().manual_seed(0)).float()
    one_hot = torch.stack([1 - bits, bits], dim=-1)
    pl = ebmflow.create("objective", "pseudo-likelihood")
    assert torch.allclose(pl(potts, one_hot).loss, pl(ising, bits).loss, atol=1e-5)


def test_the_run_file_trains_through_the_trainer(tmp_path):
    import tomllib

    tables = tomllib.loads((CONFIGS / "pseudo_likelihood_ising.toml").read_text())
    data = ebmflow.create("dataset", tables["data"])
    energy = ebmflow.create("energy", tables["energy"])
    objective = ebmflow.create("objective", tables["objective"])
    train = dict(tables["train"], steps=3, checkpoint_every=3)
    before = energy.couplings.detach().clone()
    trainer = ebmflow.Trainer(
        energy, objective, data, checkpoint_dir=tmp_path / "run", progress=False, **train
    )
    trainer.fit()
    assert not torch.equal(before, energy.couplings.detach())
    ebmflow.save(energy, tmp_path / "ising")
    reloaded = ebmflow.load(tmp_path / "ising")
    assert reloaded.event_space == "binary"
    assert torch.equal(reloaded.couplings, energy.couplings.detach())
