"""Segment-integral energies of a class-conditional score-only model with one label per
chain: the segment evaluates several points of each chain in one batched call, and the
conditioned model gives row i of that stacked batch chain i mod N's label. Checked against
the exact class-conditional energies of :class:`ClassConditionalGMM`."""

from __future__ import annotations

import pytest
import torch
from ebmflow_diffusers import ClassConditionalGMM, PathEnergy, segment_difference
from ebmflow_diffusers.corrector import build_sampler, run_corrector

import ebmflow

F64 = torch.float64
# one Gaussian per class (so the segment rules are exact), and a class with two modes
GAUSSIANS = dict(means=[[-1.5, 0.0], [1.5, 0.5]], labels=[0, 1], stds=[1.0, 0.5])
MIXTURE = dict(means=[[-1.5, 0.0], [1.5, 0.0], [0.0, 1.0]], labels=[0, 0, 1], stds=[1.0, 0.7, 1.2])


def _pair(config):
    """(score-only model, the same model with its energies)."""
    return ClassConditionalGMM(**config, score_only=True), ClassConditionalGMM(**config)


def _labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 2


@pytest.mark.parametrize("n_points", [3, 5, 9])
def test_per_chain_labels_give_each_chain_its_own_energy_difference(n_points):
    """Simpson's rule on the two-class mixture converges to each chain's exact ΔE under its
    own label (the error falls with the node count, per chain)."""
    score_only, exact = _pair(MIXTURE)
    y = _labels(8)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 2, generator=g, dtype=F64)
    x1 = x0 + 0.3 * torch.randn(8, 2, generator=g, dtype=F64)
    sigma = 0.2
    delta, score1 = segment_difference(
        ebmflow.condition(score_only, y), x0, x1, sigma, n_points=n_points, rule="simpson"
    )
    conditioned = ebmflow.condition(exact, y)
    true = conditioned(x1, sigma) - conditioned(x0, sigma)
    assert delta.shape == (8,)
    assert torch.allclose(score1, conditioned.score(x1, sigma), atol=1e-12)
    assert torch.allclose(delta, true, atol={3: 1e-3, 5: 1e-4, 9: 1e-5}[n_points])
    # under the other label the difference is a different number
    swapped = ebmflow.condition(exact, 1 - y)
    assert not torch.allclose(delta, swapped(x1, sigma) - swapped(x0, sigma), atol=1e-2)


def test_path_energy_with_per_chain_labels_matches_exact_energies_on_gaussians():
    score_only, exact = _pair(GAUSSIANS)
    y = _labels(6)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    reference = torch.randn(2, generator=torch.Generator().manual_seed(2), dtype=F64)
    path = PathEnergy(ebmflow.condition(score_only, y), n_points=3, reference=reference)
    conditioned = ebmflow.condition(exact, y)
    true = conditioned(x, 0.1) - conditioned(reference.expand_as(x), 0.1)
    assert torch.allclose(path(x, 0.1), true, atol=1e-10)


@pytest.mark.parametrize(
    "sampler,args", [("mala", {"step_size": 0.05}), ("hmc", {"step_size": 0.1, "n_leapfrog": 3})]
)
def test_mala_and_hmc_with_per_chain_labels_run_seeded_and_match_exact_energies(sampler, args):
    """With one Gaussian per class Simpson's rule is exact, so the corrector on the
    score-only model (two points of each chain per evaluation, stacked into one call) makes
    the exact model's accept/reject decisions, chain by chain under each chain's label; the
    same seed gives the same chains."""
    score_only, exact = _pair(GAUSSIANS)
    y = _labels(64)
    x = 0.5 * torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    kernel = build_sampler(
        sampler, {k: v for k, v in args.items() if k != "step_size"}, args["step_size"]
    )

    def run(model):
        return run_corrector(
            kernel,
            ebmflow.condition(model, y),
            x,
            0.1,
            10,
            torch.Generator().manual_seed(4),
            n_points=3,
            rule="simpson",
        )

    segment_x, segment_rate = run(score_only)
    again_x, again_rate = run(score_only)
    exact_x, exact_rate = run(exact)
    assert torch.equal(segment_x, again_x) and segment_rate == again_rate
    assert torch.allclose(segment_x, exact_x, atol=1e-10)
    assert abs(segment_rate - exact_rate) < 1e-6
    assert 0.2 < segment_rate < 1.0
    # the chains went towards their own class: class 1's mode is at (1.5, 0.5)
    assert segment_x[y == 1, 0].mean() > segment_x[y == 0, 0].mean()


def test_stacked_batches_repeat_the_labels_and_other_sizes_are_refused():
    score_only, exact = _pair(GAUSSIANS)
    y = torch.tensor([0, 1, 1])
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    conditioned = ebmflow.condition(exact, y)
    stacked = conditioned(torch.cat([x, x]), 0.1)
    assert torch.equal(stacked, conditioned(x, 0.1).repeat(2))
    with pytest.raises(ebmflow.ConfigError, match="3 labels for a batch of 4"):
        conditioned(torch.randn(4, 2, dtype=F64), 0.1)
    with pytest.raises(ebmflow.ConfigError, match="3 labels for a batch of 4"):
        ebmflow.condition(score_only, y).score(torch.randn(4, 2, dtype=F64), 0.1)
