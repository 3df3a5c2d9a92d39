"""Exact log Z, marginals and pair moments by enumeration, against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from ebmflow_discrete import all_states, exact_moments

import ebmflow


def test_independent_spins_have_the_closed_form():
    """Zero couplings: log Z = Σ_i log(2 cosh h_i), P(x_i = 1) = σ(2h_i)."""
    fields = torch.tensor([0.3, -0.7, 0.0, 1.1])
    energy = ebmflow.create("energy", "ising", couplings=torch.zeros(4, 4), fields=fields)
    exact = exact_moments(energy)
    assert exact.log_z == pytest.approx(float(torch.log(2 * torch.cosh(fields)).sum()), abs=1e-5)
    assert torch.allclose(exact.marginals, torch.sigmoid(2 * fields).double(), atol=1e-6)
    covariance = exact.correlations()
    assert torch.allclose(
        covariance - torch.diag(covariance.diagonal()), torch.zeros(4, 4).double(), atol=1e-6
    )


def test_rbm_free_energy_sums_out_the_hidden_units():
    """log Z of F(v) equals log Σ_{v,h} exp(−E(v, h)) over the joint states."""
    rbm = ebmflow.create("energy", "rbm", n_visible=5, n_hidden=3, weight_std=0.8, seed=1)
    v = all_states("binary", (5,))
    h = all_states("binary", (3,))
    joint = (
        v @ rbm.visible_bias.detach()[:, None]
        + (v @ rbm.weight.detach() @ h.T)
        + (h @ rbm.hidden_bias.detach())
    )
    assert exact_moments(rbm).log_z == pytest.approx(
        float(torch.logsumexp(joint.flatten(), 0)), abs=1e-4
    )


def test_potts_states_and_log_z():
    energy = ebmflow.create("energy", "potts", side=2, q=3, coupling=0.0)
    exact = exact_moments(energy)
    assert exact.states.shape == (81, 4, 3)
    assert exact.log_z == pytest.approx(4 * math.log(3), abs=1e-6)
    assert torch.allclose(exact.marginals, torch.full((4, 3), 1 / 3).double())


def test_two_site_ising_pair_moment():
    """One bond of strength J: P(x₀ = x₁ = 1) = e^J / (2e^J + 2e^−J)."""
    energy = ebmflow.create("energy", "ising", couplings=[[0.0, 0.7], [0.7, 0.0]])
    exact = exact_moments(energy)
    j = 0.7
    assert float(exact.pair_moments[0, 1]) == pytest.approx(
        math.exp(j) / (2 * math.exp(j) + 2 * math.exp(-j)), abs=1e-6
    )


def test_too_many_states_or_a_continuous_energy_are_refused():
    big = ebmflow.create("energy", "ising", side=5)
    with pytest.raises(ebmflow.ConfigError, match="exact_moments: IsingEnergy has 33554432 states"):
        exact_moments(big)
    with pytest.raises(ebmflow.ConfigError, match="enumeration needs a 'binary' or 'categorical'"):
        exact_moments(ebmflow.GaussianEnergy(mean=[0.0], std=1.0))
