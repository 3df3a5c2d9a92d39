"""NUTS against exact answers (slow): a 100-D Gaussian with condition number 100 and Neal's
funnel in 10-D. Tolerances are Monte Carlo standard errors from the chains' effective sample
size (``ebmflow.evaluate.ess``): a mean's SE is sd/√ESS(x); a variance's is
√(Var(x²)/ESS(x²)) = σ²√(2/ESS(x²)) for a centred Gaussian coordinate."""

from __future__ import annotations

import math

import pytest
import torch
from ebmflow_dynamics import NUTS

import ebmflow

pytestmark = pytest.mark.slow


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nuts_on_a_100d_gaussian_with_condition_number_100():
    # standard deviations log-spaced from 0.1 to 1 (covariance eigenvalues 0.01 … 1)
    dim, chains = 100, 32
    std = torch.logspace(-1, 0, dim, dtype=torch.float64)
    energy = ebmflow.create("energy", "gaussian", mean=[0.0] * dim, std=std.tolist()).double()
    sampler = NUTS(step_size=0.1, adapt_steps=300, target_accept=0.8)
    gen = seeded(0)
    x0 = torch.randn(chains, dim, generator=gen, dtype=torch.float64)
    warm = sampler.run(energy, x0, 300, generator=gen)
    run = sampler.continue_run(energy, warm.state, 300, generator=gen, thin=1)
    # warm-up: the fixed kernel accepts at δ ± 0.05
    assert abs(run.diagnostics["acceptance_rate"] - 0.8) < 0.05
    draws = run.trajectory  # (300, 32, 100)
    mean = draws.mean(dim=(0, 1))
    var = draws.pow(2).mean(dim=(0, 1))  # the mean is known to be 0
    ess_x = ebmflow.evaluate.ess(draws)
    ess_x2 = ebmflow.evaluate.ess(draws**2)
    mean_se = std / ess_x.sqrt()
    var_se = std**2 * (2.0 / ess_x2).sqrt()
    # 4.5 SE per coordinate: a false alarm among 200 checks has probability ~1e-3
    assert bool(((mean.abs() / mean_se) < 4.5).all()), float((mean.abs() / mean_se).max())
    assert bool((((var - std**2).abs() / var_se) < 4.5).all())
    assert run.diagnostics["divergences"] == warm.diagnostics["divergences"]  # none after


class Funnel(ebmflow.Energy):
    """Neal's funnel: v ~ N(0, 3²), xᵢ | v ~ N(0, eᵛ), i = 1 … 9."""

    def forward(self, z, sigma=None):
        v, x = z[:, 0], z[:, 1:]
        return v**2 / 18.0 + 0.5 * (x**2).sum(1) * torch.exp(-v) + 0.5 * x.shape[1] * v


def test_nuts_on_neals_funnel():
    # The funnel's neck (v ≪ 0) needs step sizes far below what its mouth allows, so one
    # step size cannot explore both: NUTS diverges there and under-samples v's lower tail
    # (a known property of the centred parameterisation, reported by its divergences).
    # What it does identify is the location: every coordinate's mean is 0 (xᵢ by symmetry,
    # v too), and the xᵢ given v are sampled as the conditional Gaussians they are.
    # The acceptance after the warm-up depends on where the chains are when it ends (0.83 to
    # 0.92 over seeds, with or without the initial step-size search); the search is off so
    # that the run is the one the dynamics results page reports.
    chains = 16
    sampler = NUTS(
        step_size=0.1, adapt_steps=200, target_accept=0.9, max_tree_depth=6, search_step_size=False
    )
    gen = seeded(1)
    energy = Funnel().double()
    x0 = torch.randn(chains, 10, generator=gen, dtype=torch.float64)
    warm = sampler.run(energy, x0, 200, generator=gen)
    run = sampler.continue_run(energy, warm.state, 400, generator=gen, thin=1)
    assert abs(run.diagnostics["acceptance_rate"] - 0.9) < 0.05
    draws = run.trajectory
    ess = ebmflow.evaluate.ess(draws)
    v, x = draws[..., 0], draws[..., 1:]
    # sd of v is 3; of xᵢ, √E[eᵛ] = e^(9/4)
    assert abs(float(v.mean())) < 4 * 3.0 / math.sqrt(float(ess[0]))
    x_se = math.exp(9 / 4) / ess[1:].sqrt()
    assert bool((x.mean(dim=(0, 1)).abs() < 4 * x_se).all())
    # xᵢ e^(−v/2) is N(0, 1) independent of v: its variance is 1 (SE √(2/n), n ≥ min ESS)
    z = x * torch.exp(-0.5 * v).unsqueeze(-1)
    n_eff = float(ebmflow.evaluate.ess(z**2).min())
    assert abs(float(z.pow(2).mean()) - 1.0) < 4 * math.sqrt(2.0 / n_eff)
