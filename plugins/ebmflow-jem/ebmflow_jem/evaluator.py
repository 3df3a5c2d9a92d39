"""The evaluator ``classification``: what ``ebmflow evaluate CHECKPOINT --data NAME`` reports
for a classifier energy (one with ``predict_proba``, e.g. JEM's) — accuracy, expected
calibration error, the NLL of p(y|x) and OOD AUROC (log p(x), max p(y|x) and gradient-norm
scores against uniform noise and pixel-shuffled images), by
:func:`ebmflow_jem.metrics.classification_report`, on the held-out split.

ebmflow's ``evaluate`` command finds it through the ``ebmflow_evaluators`` hook;
``ebmflow evaluate --nll`` gives the NLL instead.
"""

from __future__ import annotations

from typing import Any

import ebmflow

_OOD_NAMES = {"uniform": "uniform noise", "shuffled": "pixel-shuffled"}
_SCORE_NAMES = {"log_px": "log p(x)", "max_prob": "max p(y|x)", "grad_norm": "-|grad log p|"}


class ClassificationEvaluator:
    """Reports on the energies with ``predict_proba`` (``claims``)."""

    def claims(self, energy: Any) -> bool:
        return callable(getattr(energy, "predict_proba", None))

    def evaluate(self, energy: Any, request: Any) -> dict[str, Any]:
        """The classification report of ``energy`` on the labelled dataset of ``request``
        (:func:`dataset_arguments`): the whole split where the dataset has ``tensors()``,
        else ``request.n`` labelled samples."""
        import torch

        from ebmflow_jem.metrics import classification_report

        arguments = dataset_arguments(request)
        dataset = request.host.create("dataset", request.data, **arguments)
        gen = torch.Generator().manual_seed(request.seed)
        if callable(getattr(dataset, "tensors", None)):
            x, y = dataset.tensors()  # the whole split
        elif callable(getattr(dataset, "sample_with_labels", None)):
            x, y = dataset.sample_with_labels(request.n, gen)
        else:
            raise ebmflow.ConfigError(
                f"{type(energy).__name__} is a classifier energy, and the dataset "
                f"{request.data!r} has no labels (no sample_with_labels); evaluate it on a "
                f"labelled dataset such as digits, or pass --nll for the negative "
                f"log-likelihood"
            )
        result = classification_report(energy, x, y, generator=gen)
        return {
            "checkpoint": request.checkpoint,
            "data": request.data,
            "data_args": arguments,
            "seed": request.seed,
            **result,
        }

    def format(self, report: dict[str, Any]) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in report["data_args"].items())
        lines = [
            f"{report['data']} ({shown or 'default arguments'}), {report['n']} labelled "
            f"images: accuracy {report['accuracy']:.4f}, ECE {report['ece']:.4f} "
            f"({report['n_bins']} bins), NLL of p(y|x) {report['nll']:.4f} nats",
            "OOD AUROC (in-distribution = the images above):",
        ]
        auroc = report["auroc"]
        scores = [k for k in _SCORE_NAMES if any(k in v for v in auroc.values())]
        lines.append(f"  {'against':<16}" + "".join(f"{_SCORE_NAMES[k]:>15}" for k in scores))
        for name, values in auroc.items():
            lines.append(
                f"  {_OOD_NAMES.get(name, name):<16}"
                + "".join(f"{values[k]:>15.4f}" for k in scores)
            )
        return "\n".join(lines)


def dataset_arguments(request: Any) -> dict[str, Any]:
    """The arguments to build the labelled dataset with: the training run's ``[data]``
    arguments (so the split and scaling match), ``split="test"`` when the dataset takes a
    split, then ``--data-arg`` on top."""
    arguments = dict(request.run_data_args)
    given = dict(request.data_args)
    if "split" not in given:
        probe = request.host.create("dataset", request.data, **{**arguments, **given})
        if "split" in probe.get_config():
            arguments["split"] = "test"
    arguments.update(given)
    return arguments
