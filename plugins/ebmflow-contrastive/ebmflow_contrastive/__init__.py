"""ebmflow-contrastive: noise-contrastive estimation and diffusion recovery likelihood.

- the objective ``nce`` (:class:`NoiseContrastiveEstimation`): logistic regression of data
  against samples of a fixed noise distribution, with log Z learnt as a parameter;
- the objective ``drl`` (:class:`DiffusionRecoveryLikelihood`): a noise-conditional energy
  trained by the likelihood of a sample given its noisier version, with short-run Langevin
  on that conditional.

Both are registered through the entry point ``contrastive``. Importing this package imports
neither torch nor the modules that define these; they load on first attribute access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "NoiseContrastiveEstimation": "ebmflow_contrastive.nce",
    "GaussianNoise": "ebmflow_contrastive.noise",
    "DiffusionRecoveryLikelihood": "ebmflow_contrastive.drl",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
