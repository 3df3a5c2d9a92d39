"""Classifier and detector metrics of ebmflow.evaluate: accuracy, ECE, AUROC."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ebmflow import evaluate


def _pairwise_auroc(s_in: torch.Tensor, s_out: torch.Tensor) -> float:
    """P(s_in > s_out) + ½ P(s_in = s_out) by enumerating every pair."""
    total = 0.0
    for a, b in itertools.product(s_in.tolist(), s_out.tolist()):
        total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(s_in) * len(s_out))


def test_auroc_equals_pairwise_definition_with_ties():
    gen = torch.Generator().manual_seed(0)
    s_in = torch.randint(0, 6, (37,), generator=gen).float() + 0.5  # many ties
    s_out = torch.randint(0, 5, (23,), generator=gen).float()
    s_out[:5] = 2.5  # ties across the two sets
    assert evaluate.auroc(s_in, s_out) == pytest.approx(_pairwise_auroc(s_in, s_out), abs=1e-12)


def test_auroc_extremes_and_symmetry():
    a, b = torch.arange(10.0), torch.arange(10.0) + 100
    assert evaluate.auroc(b, a) == 1.0
    assert evaluate.auroc(a, b) == 0.0
    assert evaluate.auroc(a, a.clone()) == 0.5
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, generator=gen), torch.randn(40, generator=gen)
    assert evaluate.auroc(x, y) + evaluate.auroc(y, x) == pytest.approx(1.0, abs=1e-12)


def test_auroc_of_two_gaussians_matches_closed_form():
    # N(1, 1) vs N(0, 1): AUROC = Φ(1/√2) = 0.7602. With n = m = 4000 the Mann–Whitney
    # standard error is about sqrt(A(1−A)/n · (1 + ...)) ≤ 0.0075; 4 SE = 0.03.
    gen = torch.Generator().manual_seed(2)
    s_in = torch.randn(4000, generator=gen, dtype=torch.float64) + 1.0
    s_out = torch.randn(4000, generator=gen, dtype=torch.float64)
    expected = 0.5 * (1 + math.erf(0.5))
    assert abs(evaluate.auroc(s_in, s_out) - expected) < 0.03


def test_auroc_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        evaluate.auroc(torch.tensor([1.0, math.nan]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="out_scores"):
        evaluate.auroc(torch.tensor([1.0]), torch.tensor([]))


def _loop_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> float:
    conf, pred = probs.max(1)
    total = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if m else (conf <= hi)
        if inside.any():
            acc = (pred[inside] == labels[inside]).double().mean()
            total += inside.double().mean() * abs(acc - conf[inside].double().mean())
    return float(total)


def test_ece_equals_bin_by_bin_definition():
    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(3 * torch.randn(500, 4, generator=gen), dim=1)
    labels = torch.randint(0, 4, (500,), generator=gen)
    for n_bins in (1, 10, 15):
        assert evaluate.expected_calibration_error(probs, labels, n_bins) == pytest.approx(
            _loop_ece(probs, labels, n_bins), abs=1e-12
        )


def test_ece_of_calibrated_and_overconfident_predictions():
    # Two classes; p(class 0) = c ~ U(0.5, 1) and the label is 0 with probability c: a
    # calibrated predictor. With N = 20 000 and 15 bins the ECE is a sum of per-bin
    # |mean of (correct − conf)| terms, each with SE ≈ sqrt(0.2/N_bin); the weighted sum is
    # ≈ sqrt(2/π) Σ (N_b/N) sqrt(0.2/N_b) ≈ 0.004. Threshold 0.015 (> 3 of that).
    gen = torch.Generator().manual_seed(4)
    n = 20_000
    c = 0.5 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64)
    labels = (torch.rand(n, generator=gen, dtype=torch.float64) >= c).long()
    probs = torch.stack([c, 1 - c], dim=1)
    assert evaluate.expected_calibration_error(probs, labels) < 0.015
    # The same labels with confidence pushed to 1: ECE = 1 − accuracy = E[1 − c] = 0.25
    # exactly in expectation; SE of the accuracy sqrt(0.19/N) = 0.003, so ±0.015.
    sharp = torch.stack([torch.ones(n), torch.zeros(n)], dim=1).double()
    assert evaluate.expected_calibration_error(sharp, labels) == pytest.approx(0.25, abs=0.015)


def test_accuracy_of_probabilities_and_indices():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 1, 1])
    assert evaluate.accuracy(probs, labels) == 0.75
    assert evaluate.accuracy(probs.argmax(1), labels) == 0.75
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        evaluate.accuracy(probs, labels.float())
    with pytest.raises(ValueError, match="non-finite"):
        evaluate.expected_calibration_error(torch.tensor([[math.nan, 1.0]]), labels[:1])
