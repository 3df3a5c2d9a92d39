"""ebmflow-jem: joint energy-based models (Grathwohl et al. 2020, "Your Classifier is
Secretly an Energy Based Model") for ebmflow.

- :class:`ClassifierEnergy`: any classifier network f as an energy, E(x) = −logsumexp f(x)
  and E(x, y) = −f(x)[y] (``ebmflow.condition(energy, y)``), with ``predict`` and
  ``predict_proba``; :class:`ConvClassifierEnergy` and :class:`MLPClassifierEnergy` are
  registered ready-made networks (energies ``classifier-convnet``, ``classifier-mlp``);
- :class:`JEM`: the objective ``jem``, cross-entropy for p(y|x) plus the SGLD
  contrastive term for p(x) with a replay buffer;
- :func:`sample_class`: class-conditional samples; :func:`plot_class_grid`: a grid of them;
- :func:`ood_scores`, :func:`shuffle_pixels`, :func:`classification_report`
  (:mod:`ebmflow_jem.metrics`): accuracy, calibration and out-of-distribution scores, which
  ``ebmflow evaluate`` reports for a classifier energy (evaluator ``classification``).

ebmflow finds the package through its entry point (group ``ebmflow``, name ``jem``), which
names :mod:`ebmflow_jem.plugin`. Importing the package imports no torch; the names above
load on first attribute access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "ClassifierEnergy": "ebmflow_jem.classifier",
    "ConvClassifierEnergy": "ebmflow_jem.classifier",
    "MLPClassifierEnergy": "ebmflow_jem.classifier",
    "JEM": "ebmflow_jem.objective",
    "MODES": "ebmflow_jem.objective",
    "sample_class": "ebmflow_jem.sampling",
    "class_grid": "ebmflow_jem.sampling",
    "plot_class_grid": "ebmflow_jem.sampling",
    "OOD_SCORES": "ebmflow_jem.metrics",
    "ood_scores": "ebmflow_jem.metrics",
    "shuffle_pixels": "ebmflow_jem.metrics",
    "classification_report": "ebmflow_jem.metrics",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
