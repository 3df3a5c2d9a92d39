"""OOD scores and pixel shuffling of ebmflow_jem.metrics (the metrics they feed, accuracy,
ECE and AUROC, are ebmflow's and tested in its core tests)."""

from __future__ import annotations

import torch
from ebmflow_jem import metrics

import ebmflow
from ebmflow import evaluate


def test_shuffle_pixels_permutes_each_image_independently():
    gen = torch.Generator().manual_seed(5)
    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 8, 8)
    shuffled = metrics.shuffle_pixels(x, gen)
    assert shuffled.shape == x.shape
    for i in range(2):  # same multiset of values, in another order
        assert torch.equal(shuffled[i].flatten().sort().values, x[i].flatten())
        assert not torch.equal(shuffled[i], x[i])
    again = metrics.shuffle_pixels(x, torch.Generator().manual_seed(5))
    assert torch.equal(again, shuffled)


def test_ood_scores_of_a_gaussian_energy():
    # E(x) = ½‖x‖² + const for N(0, I): log p score −E, gradient score −‖x‖.
    energy = ebmflow.create("energy", "gaussian", mean=[0.0, 0.0, 0.0], std=1.0)
    x = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    scores = metrics.ood_scores(energy, x)
    assert set(scores) == {"log_px", "grad_norm"}  # no predict_proba: no max_prob
    assert torch.allclose(scores["log_px"], -energy(x))
    assert torch.allclose(scores["grad_norm"], torch.tensor([0.0, -5.0]), atol=1e-5)
    # near the mode scores higher than far away: AUROC 1 on these two sets
    far = metrics.ood_scores(
        energy, 5 + torch.randn(20, 3, generator=torch.Generator().manual_seed(6))
    )
    near = metrics.ood_scores(
        energy, 0.1 * torch.randn(20, 3, generator=torch.Generator().manual_seed(7))
    )
    assert evaluate.auroc(near["log_px"], far["log_px"]) == 1.0
