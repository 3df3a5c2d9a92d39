"""Classifier metrics and out-of-distribution (OOD) scores of energies.

For an energy that is also a classifier (JEM, Grathwohl et al. 2020, "Your Classifier is
Secretly an Energy Based Model": logits f(x), E(x) = −logsumexp_y f(x)[y], and
``predict_proba(x)`` = softmax f(x)):

- :func:`accuracy`: the fraction of argmax predictions equal to the labels.
- :func:`expected_calibration_error`: with M equal-width confidence bins
  Bₘ = {i : conf_i ∈ ((m−1)/M, m/M]}, conf_i = max_y p(y|xᵢ),

      ECE = Σₘ |Bₘ|/N · |acc(Bₘ) − conf(Bₘ)|

  (Guo et al. 2017, "On Calibration of Modern Neural Networks"; M = 15 as there and in JEM).
- :func:`auroc`: the area under the ROC curve of a score that should be higher on
  in-distribution inputs, P(s_in > s_out) + ½ P(s_in = s_out), the Mann–Whitney U statistic
  divided by n_in · n_out (ties get average ranks).
- :func:`ood_scores`: JEM's three scores, each higher for inputs the model finds typical:
  ``log_px`` = −E(x) = log p(x) + log Z (any energy), ``max_prob`` = max_y p(y|x) (energies
  with ``predict_proba``) and ``grad_norm`` = −‖∇ₓ log p(x)‖₂ = −‖s(x)‖₂ (the paper's
  "approximate mass" score; any energy).
- :func:`shuffle_pixels`: OOD inputs with the data's pixel histogram but no spatial
  structure (every image's entries permuted independently).
- :func:`classification_report`: all of the above on a labelled set, against uniform noise
  and pixel-shuffled copies of the inputs.

Every random draw takes an explicit ``torch.Generator``. A NaN score or probability raises
``ValueError``; nothing is replaced by a constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ebmflow.errors import ConfigError

#: The OOD scores :func:`ood_scores` computes, each higher on in-distribution inputs.
OOD_SCORES = ("log_px", "max_prob", "grad_norm")


def _check_labels(owner: str, labels: Tensor, n: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        got = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor)
               else type(labels).__name__)
        raise ConfigError(f"{owner}: labels must be an integer tensor of shape ({n},), got {got}")
    return labels


def _check_probs(owner: str, probs: Tensor) -> Tensor:
    if not isinstance(probs, Tensor) or probs.ndim != 2 or not probs.is_floating_point():
        got = (f"{probs.dtype} {tuple(probs.shape)}" if isinstance(probs, Tensor)
               else type(probs).__name__)
        raise ConfigError(
            f"{owner}: probs must be a floating-point tensor (N, n_classes) of class "
            f"probabilities, got {got}"
        )
    if probs.shape[0] == 0:
        raise ConfigError(f"{owner}: probs is empty (N = 0)")
    if not bool(torch.isfinite(probs).all()):
        raise ConfigError(f"{owner}: probs holds {int((~torch.isfinite(probs)).sum())} "
                          f"non-finite values")
    return probs


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """The fraction of correct predictions; ``predictions`` are class indices ``(N,)`` or
    class probabilities / logits ``(N, n_classes)`` (argmax taken)."""
    if isinstance(predictions, Tensor) and predictions.ndim == 2:
        predictions = _check_probs("accuracy", predictions).argmax(dim=1)
    if not isinstance(predictions, Tensor) or predictions.ndim != 1 or predictions.numel() == 0:
        raise ConfigError("accuracy: predictions must be (N,) class indices or (N, n_classes) "
                          "scores with N ≥ 1")
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
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True,
                                                  return_counts=True)
    ends = counts.cumsum(0).double()
    average_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = average_rank[inverse]
    u = float(ranks[:n_in].sum()) - n_in * (n_in + 1) / 2
    return u / (n_in * n_out)


def _energy_chunks(x: Tensor, batch_size: int) -> list[Tensor]:
    from ebmflow.validation import check_positive_int

    check_positive_int("ood_scores", "batch_size", batch_size)
    return list(x.split(batch_size)) if x.shape[0] else []


def ood_scores(energy: Any, x: Tensor, *, sigma: Any = None,
               batch_size: int = 1024) -> dict[str, Tensor]:
    """JEM's OOD scores of ``x`` (module docstring), each ``(N,)``, higher = more typical:
    ``log_px`` (−E), ``grad_norm`` (−‖∇ₓ log p‖₂) and, when ``energy`` has
    ``predict_proba``, ``max_prob``."""
    log_px, grad_norm, max_prob = [], [], []
    has_proba = callable(getattr(energy, "predict_proba", None))
    for chunk in _energy_chunks(x, batch_size):
        e, s = energy.energy_and_score(chunk, sigma)
        if e is None:
            raise ConfigError(
                f"ood_scores: {type(energy).__name__} is score-only; the log p(x) score "
                "needs an energy"
            )
        log_px.append(-e.detach())
        grad_norm.append(-torch.linalg.vector_norm(s.detach().flatten(1), dim=1))
        if has_proba:
            with torch.no_grad():
                max_prob.append(energy.predict_proba(chunk).max(dim=1).values)
    out = {"log_px": torch.cat(log_px), "grad_norm": torch.cat(grad_norm)}
    if has_proba:
        out["max_prob"] = torch.cat(max_prob)
    return {k: out[k] for k in OOD_SCORES if k in out}


def shuffle_pixels(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A copy of ``x`` ``(N, *shape)`` with the entries of every sample permuted by its own
    uniformly random permutation (from ``generator``)."""
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ConfigError("shuffle_pixels: x must be a tensor (N, *shape) with N samples")
    flat = x.flatten(1)
    device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.rand(flat.shape, generator=generator, device=device)
    permutation = keys.argsort(dim=1).to(flat.device)
    return flat.gather(1, permutation).reshape(x.shape)


def classification_report(
    energy: Any,
    x: Tensor,
    y: Tensor,
    *,
    ood: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    n_bins: int = 15,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Accuracy, ECE, test NLL and OOD AUROCs of a classifier energy on ``(x, y)``.

    ``energy`` needs ``predict_proba(x) -> (N, n_classes)``. ``ood`` maps a name to a batch
    of out-of-distribution inputs; by default ``"uniform"`` (uniform noise on
    [min x, max x], as many as ``x``) and ``"shuffled"`` (:func:`shuffle_pixels` of ``x``),
    drawn from ``generator`` in that order. Returns a JSON-friendly dict: ``n``,
    ``accuracy``, ``ece``, ``nll`` (mean −log p(y|x)), ``n_bins`` and ``auroc`` =
    ``{ood name: {score name: AUROC}}`` for the scores of :func:`ood_scores`.
    """
    if not callable(getattr(energy, "predict_proba", None)):
        raise ConfigError(
            f"classification_report: {type(energy).__name__} has no predict_proba(x); it "
            "needs a classifier energy (e.g. ebmflow-jem's classifier energies)"
        )
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
        raise ConfigError("classification_report: x must be a non-empty tensor (N, *shape)")
    y = _check_labels("classification_report", y, x.shape[0])
    chunks = _energy_chunks(x, batch_size)
    with torch.no_grad():
        probs = torch.cat([energy.predict_proba(c) for c in chunks])
        # log p(y|x) from predict_log_proba where offered (no underflow), else log p
        log_proba = getattr(energy, "predict_log_proba", None)
        log_probs = (torch.cat([log_proba(c) for c in chunks]) if callable(log_proba)
                     else probs.log())
    probs = _check_probs("classification_report", probs)
    picked = log_probs.double().gather(1, y.to(log_probs.device).view(-1, 1)).squeeze(1)
    report: dict[str, Any] = {
        "n": int(x.shape[0]),
        "accuracy": accuracy(probs, y),
        "ece": expected_calibration_error(probs, y, n_bins),
        "n_bins": n_bins,
        "nll": float(-picked.mean()),
    }
    if ood is None:
        low, high = float(x.min()), float(x.max())
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
        ood = {"uniform": noise.mul_(high - low).add_(low).to(x.device),
               "shuffled": shuffle_pixels(x, generator)}
    scores_in = ood_scores(energy, x, batch_size=batch_size)
    report["auroc"] = {}
    for name, x_out in ood.items():
        scores_out = ood_scores(energy, x_out, batch_size=batch_size)
        report["auroc"][name] = {k: auroc(scores_in[k], scores_out[k]) for k in scores_in}
    return report
