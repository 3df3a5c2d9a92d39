"""Gibbs-with-Gradients against Gibbs on the 4×4 Ising model: effective samples per energy
evaluation (an evaluation with its gradient counts once, as in Grathwohl et al. 2021).

ESS is ``ebmflow.evaluate.ess`` of every site over 64 chains after a fifth of the run as
burn-in, divided by the evaluations the kept part cost per chain; the figures are the
minimum and mean over the 16 sites. Both samplers start from the same uniform states.
"""

from __future__ import annotations

import pytest
import torch
from ebmflow_discrete import uniform_states

import ebmflow
from ebmflow.evaluate import ess


def ess_per_evaluation(name, energy, steps, **kwargs):
    sampler = ebmflow.create("sampler", name, **kwargs)
    gen = torch.Generator().manual_seed(0)
    x0 = uniform_states("binary", 64, (16,), gen)
    result = sampler.run(energy, x0, steps, generator=gen, thin=1)
    kept = result.trajectory[steps // 5 :]
    evaluations = result.diagnostics["energy_evaluations"] * kept.shape[0] / steps
    per_eval = ess(kept) / (evaluations * 64)
    return float(per_eval.min()), float(per_eval.mean())


@pytest.mark.slow
@pytest.mark.parametrize("coupling", [0.2, 0.3])
def test_gwg_needs_fewer_energy_evaluations_than_gibbs_for_the_same_ess(coupling):
    energy = ebmflow.create("energy", "ising", side=4, coupling=coupling)
    gibbs = ess_per_evaluation("gibbs", energy, 300)
    gwg = ess_per_evaluation("gwg", energy, 4800)
    print(
        f"coupling {coupling}: ESS per evaluation (min, mean over sites) "
        f"gibbs {gibbs[0]:.4f}, {gibbs[1]:.4f}; gwg {gwg[0]:.4f}, {gwg[1]:.4f}; "
        f"ratio {gwg[0] / gibbs[0]:.2f}"
    )
    assert gwg[0] > 1.5 * gibbs[0]
