"""Classification report and out-of-distribution (OOD) scores of classifier energies.

For an energy that is also a classifier (JEM, Grathwohl et al. 2020, "Your Classifier is
Secretly an Energy Based Model": logits f(x), E(x) = −logsumexp_y f(x)[y], and
``predict_proba(x)`` = softmax f(x)):

- :func:`ood_scores`: JEM's three scores, each higher for inputs the model finds typical:
  ``log_px`` = −E(x) = log p(x) + log Z (any energy), ``max_prob`` = max_y p(y|x) (energies
  with ``predict_proba``) and ``grad_norm`` = −‖∇ₓ log p(x)‖₂ = −‖s(x)‖₂ (the paper's
  "approximate mass" score; any energy).
- :func:`shuffle_pixels`: OOD inputs with the data's pixel histogram but no spatial
  structure (every image's entries permuted independently).
- :func:`classification_report`: accuracy, expected calibration error (M = 15 bins as in
  JEM), the NLL of p(y|x) and OOD AUROCs on a labelled set, against uniform noise and
  pixel-shuffled copies of the inputs. The metrics themselves are ebmflow's
  (``ebmflow.evaluate.accuracy``, ``expected_calibration_error``, ``auroc``).

Every random draw takes an explicit ``torch.Generator``. A NaN score or probability raises
:class:`ebmflow.ConfigError`; nothing is replaced by a constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

import ebmflow

#: The OOD scores :func:`ood_scores` computes, each higher on in-distribution inputs.
OOD_SCORES = ("log_px", "max_prob", "grad_norm")


def _energy_chunks(owner: str, x: Tensor, batch_size: int) -> list[Tensor]:
    ebmflow.check_positive_int(owner, "batch_size", batch_size)
    return list(x.split(batch_size)) if x.shape[0] else []


def ood_scores(
    energy: Any, x: Tensor, *, sigma: Any = None, batch_size: int = 1024
) -> dict[str, Tensor]:
    """JEM's OOD scores of ``x`` (module docstring), each ``(N,)``, higher = more typical:
    ``log_px`` (−E), ``grad_norm`` (−‖∇ₓ log p‖₂) and, when ``energy`` has
    ``predict_proba``, ``max_prob``."""
    log_px, grad_norm, max_prob = [], [], []
    has_proba = callable(getattr(energy, "predict_proba", None))
    for chunk in _energy_chunks("ood_scores", x, batch_size):
        e, s = energy.energy_and_score(chunk, sigma)
        if e is None:
            raise ebmflow.ConfigError(
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
        raise ebmflow.ConfigError("shuffle_pixels: x must be a tensor (N, *shape) with N samples")
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
        raise ebmflow.ConfigError(
            f"classification_report: {type(energy).__name__} has no predict_proba(x); it "
            "needs a classifier energy (e.g. ebmflow-jem's classifier energies)"
        )
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
        raise ebmflow.ConfigError("classification_report: x must be a non-empty tensor (N, *shape)")
    chunks = _energy_chunks("classification_report", x, batch_size)
    with torch.no_grad():
        probs = torch.cat([energy.predict_proba(c) for c in chunks])
        # log p(y|x) from predict_log_proba where offered (no underflow), else log p
        log_proba = getattr(energy, "predict_log_proba", None)
        log_probs = (
            torch.cat([log_proba(c) for c in chunks]) if callable(log_proba) else probs.log()
        )
    metrics = ebmflow.evaluate
    # accuracy checks the labels and probabilities before they are used below
    report: dict[str, Any] = {"n": int(x.shape[0]), "accuracy": metrics.accuracy(probs, y)}
    picked = log_probs.double().gather(1, y.to(log_probs.device).view(-1, 1)).squeeze(1)
    report.update(
        ece=metrics.expected_calibration_error(probs, y, n_bins),
        n_bins=n_bins,
        nll=float(-picked.mean()),
    )
    if ood is None:
        low, high = float(x.min()), float(x.max())
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
        ood = {
            "uniform": noise.mul_(high - low).add_(low).to(x.device),
            "shuffled": shuffle_pixels(x, generator),
        }
    scores_in = ood_scores(energy, x, batch_size=batch_size)
    report["auroc"] = {}
    for name, x_out in ood.items():
        scores_out = ood_scores(energy, x_out, batch_size=batch_size)
        report["auroc"][name] = {k: metrics.auroc(scores_in[k], scores_out[k]) for k in scores_in}
    return report
