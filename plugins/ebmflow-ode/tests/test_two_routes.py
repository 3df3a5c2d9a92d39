"""Two routes to one likelihood: the ODE NLL at σ_min against grid quadrature of
exp(−E(x, σ_min)); their gap is ~0 for a consistent family and measured for a trained one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ebmflow_ode import two_routes

import ebmflow

CONFIG = Path(__file__).resolve().parents[3] / "examples/configs/multiscale_dsm_8gaussians.toml"


@pytest.mark.parametrize("prior", ["grid", "gaussian"])
def test_gap_is_zero_for_the_consistent_smoothed_mixture(prior):
    energy = ebmflow.GMMEnergy.ring(noise_conditional=True).double()
    gen = torch.Generator().manual_seed(0)
    data = ebmflow.create("dataset", "8gaussians").sample(300, gen).double()
    sigma_max = 3.0 if prior == "grid" else 50.0
    result = two_routes(
        energy, data, ((-6.0, 6.0), (-6.0, 6.0)), sigma_min=0.1, sigma_max=sigma_max, prior=prior
    )
    # the same points on both routes: what is left is dopri5's error at rtol = atol = 1e-5
    # and the quadrature's (both ~1e-5), and with the Gaussian prior its mismatch at
    # σ_max = 50, (E|x|² + 2 σ²) / (2 σ_max²) ≈ 2e-3 nats
    assert abs(result.gap) < (1e-3 if prior == "grid" else 5e-3)
    assert result.nll_ode == pytest.approx(result.nll_grid, abs=5e-3)
    assert result.prior == prior


def test_gap_of_an_inconsistent_family_is_seen():
    # E(x, σ) of the mixture at σ_min but a ring of the wrong radius at every other level:
    # the scores are no longer one density path and the ODE route disagrees
    class Patched(ebmflow.Energy):
        noise_conditional = True
        event_shape = (2,)

        def __init__(self):
            super().__init__()
            self.right = ebmflow.GMMEnergy.ring(noise_conditional=True).double()
            self.wrong = ebmflow.GMMEnergy.ring(radius=2.0, noise_conditional=True).double()

        def forward(self, x, sigma=None):
            at_min = (sigma - 0.1).abs() < 1e-9
            return torch.where(at_min, self.right(x, sigma), self.wrong(x, sigma))

    gen = torch.Generator().manual_seed(1)
    data = ebmflow.create("dataset", "8gaussians").sample(100, gen).double()
    bounds = ((-6.0, 6.0), (-6.0, 6.0))
    result = two_routes(
        Patched(), data, bounds, sigma_min=0.1, sigma_max=3.0, solver="rk4", n_steps=20
    )
    assert result.gap > 10 * result.gap_stderr and result.gap > 0.05


def test_score_only_models_are_refused():
    class ScoreOnly(ebmflow.ScoreModel):
        noise_conditional = True

        def score(self, x, sigma=None):
            return -x

    with pytest.raises(ebmflow.ConfigError, match="score-only"):
        two_routes(ScoreOnly(), torch.zeros(2, 2), ((-1, 1), (-1, 1)), sigma_min=0.1, sigma_max=1)


@pytest.mark.slow
def test_trained_multiscale_dsm_gap_is_measured(tmp_path):
    """The shipped run file, shortened to 600 steps: both routes give finite NLLs above the
    σ-smoothed floor, and the gap is reported with its standard error."""
    from ebmflow.cli import main as cli_main

    out = tmp_path / "run"
    argv = ["train", str(CONFIG), "--out", str(out), "--steps", "600", "--no-progress"]
    assert cli_main(argv) == 0
    energy = ebmflow.load(out / "checkpoint").eval()
    data = ebmflow.create("dataset", "8gaussians").sample(500, torch.Generator().manual_seed(0))
    # a box wide enough for a briefly trained energy's tails
    result = two_routes(energy, data, ((-8.0, 8.0), (-8.0, 8.0)), sigma_min=0.1, sigma_max=3.0)
    # the σ-smoothed density at σ = 0.1 is the floor of both routes (2.836 nats), minus
    # three standard errors of a 500-point mean
    assert result.nll_grid > 2.836 - 3 * result.stderr_grid
    assert result.nll_ode > 2.836 - 3 * result.stderr_ode
    assert result.gap_stderr > 0
