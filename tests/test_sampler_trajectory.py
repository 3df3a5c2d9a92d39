"""``Sampler.run(thin=...)`` keeps exactly every ``thin``-th state, in one preallocated
tensor (see ``continue_run``: a list of per-step tensors fragmented the heap, 25× the
trajectory's size in resident memory, measured by ``python -m benchmarks --only memory``)."""

from __future__ import annotations

import pytest
import torch

import ebmflow
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA


class Quadratic(ebmflow.Energy):
    def forward(self, x, sigma=None):
        return 0.5 * x.square().sum(1)


@pytest.mark.parametrize("thin, n_steps", [(1, 7), (3, 10), (4, 4), (5, 4)])
@pytest.mark.parametrize("sampler", [Langevin(0.1), MALA(0.3)], ids=["langevin", "mala"])
def test_trajectory_holds_every_thin_th_state_seen_by_the_callback(sampler, thin, n_steps):
    seen = []
    result = sampler.run(
        Quadratic(),
        torch.randn(6, 2, generator=torch.Generator().manual_seed(0)),
        n_steps,
        generator=torch.Generator().manual_seed(1),
        thin=thin,
        callback=lambda state: seen.append(state.x.clone()),
    )
    expected = seen[thin - 1 :: thin]
    if not expected:  # fewer steps than thin: nothing kept
        assert result.trajectory is None
        return
    assert result.trajectory.shape == (len(expected), 6, 2)
    assert torch.equal(result.trajectory, torch.stack(expected))
    if n_steps % thin == 0:
        assert torch.equal(result.trajectory[-1], result.samples)
