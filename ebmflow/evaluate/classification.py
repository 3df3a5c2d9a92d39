"""Metrics of classifiers and detectors: accuracy, calibration and AUROC.

They take plain tensors (class probabilities, labels, scores), so they serve any model that
classifies or scores inputs; ebmflow-jem builds its classification and out-of-distribution
report on them.

- :func:`accuracy`: the fraction of argmax predictions equal to the labels.
- :func:`expected_calibration_error`: with M equal-width confidence bins
  Bₘ = {i : conf_i ∈ ((m−1)/M, m/M]}, conf_i = max_y p(y|xᵢ),

      ECE = Σₘ |Bₘ|/N · |acc(Bₘ) − conf(Bₘ)|

  (Guo et al. 2017, "On Calibration of Modern Neural Networks"; M = 15 as there).
- :func:`auroc`: the area under the ROC curve of a score that should be higher on
  positives (e.g. in-distribution inputs), P(s_in > s_out) + ½ P(s_in = s_out), the
  Mann–Whitney U statistic divided by n_in · n_out (ties get average ranks).

A NaN score or probability raises :class:`~ebmflow.ConfigError` (a ``ValueError``); nothing
is replaced by a constant.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmflow.errors import ConfigError


def _check_labels(owner: str, labels: Tensor, n: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        got = (
            f"{labels.dtype} {tuple(labels.shape)}"
            if isinstance(labels, Tensor)
            else type(labels).__name__
        )
        raise ConfigError(f"{owner}: labels must be an integer tensor of shape ({n},), got {got}")
    return labels


def _check_probs(owner: str, probs: Tensor) -> Tensor:
    if not isinstance(probs, Tensor) or probs.ndim != 2 or not probs.is_floating_point():
        got = (
            f"{probs.dtype} {tuple(probs.shape)}"
            if isinstance(probs, Tensor)
            else type(probs).__name__
        )
        raise ConfigError(
            f"{owner}: probs must be a floating-point tensor (N, n_classes) of class "
            f"probabilities, got {got}"
        )
    if probs.shape[0] == 0:
        raise ConfigError(f"{owner}: probs is empty (N = 0)")
    if not bool(torch.isfinite(probs).all()):
        raise ConfigError(
            f"{owner}: probs holds {int((~torch.isfinite(probs)).sum())} non-finite values"
        )
    return probs


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """The fraction of correct predictions; ``predictions`` are class indices ``(N,)`` or
    class probabilities / logits ``(N, n_classes)`` (argmax taken)."""
    if isinstance(predictions, Tensor) and predictions.ndim == 2:
        predictions = _check_probs("accuracy", predictions).argmax(dim=1)
    if not isinstance(predictions, Tensor) or predictions.ndim != 1 or predictions.numel() == 0:
        raise ConfigError(
            "accuracy: predictions must be (N,) class indices or (N, n_classes) scores with N ≥ 1"
        )
    labels = _check_labels("accuracy", labels, predictions.shape[0])
    return float((predictions.to(labels.device) == labels).double().mean())


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (module docstring); in [0, 1]."""
    from ebmflow.validation import check_positive_int

    n_bins = check_positive_int("expected_calibration_error", "n_bins", n_bins)
    probs = _check_probs("expected_calibration_error", probs).double()
    labels = _check_labels("expected_calibration_error", labels, probs.shape[0])
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels.to(predicted.device)).double()
    # bin m holds ((m−1)/M, m/M]: ceil(conf·M) − 1, with conf = 0 put in the first bin
    bins = (confidence * n_bins).ceil().long().sub_(1).clamp_(0, n_bins - 1)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, correct)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, confidence)
    # Σₘ |Bₘ|/N · |acc(Bₘ) − conf(Bₘ)| = Σₘ |Σ_{i∈Bₘ} (correct_i − conf_i)| / N
    return float((acc_sum - conf_sum).abs().sum() / probs.shape[0])


def auroc(in_scores: Tensor, out_scores: Tensor) -> float:
    """Area under the ROC curve for telling ``in_scores`` (positives, expected higher) from
    ``out_scores``: P(s_in > s_out) + ½ P(s_in = s_out) over all pairs."""
    parts = []
    for name, s in (("in_scores", in_scores), ("out_scores", out_scores)):
        if not isinstance(s, Tensor) or s.ndim != 1 or s.numel() == 0:
            raise ConfigError(f"auroc: {name} must be a non-empty 1-D tensor")
        if bool(torch.isnan(s).any()):
            raise ConfigError(f"auroc: {name} holds {int(torch.isnan(s).sum())} NaN scores")
        parts.append(s.detach().double().cpu())
    n_in, n_out = parts[0].numel(), parts[1].numel()
    scores = torch.cat(parts)
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    # average ranks (1-based) over runs of equal scores
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = counts.cumsum(0).double()
    average_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = average_rank[inverse]
    u = float(ranks[:n_in].sum()) - n_in * (n_in + 1) / 2
    return u / (n_in * n_out)
