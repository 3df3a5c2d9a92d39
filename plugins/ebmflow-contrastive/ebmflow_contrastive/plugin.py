"""Hook implementations: the objectives ``nce`` and ``drl``.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_objectives():
    return [
        ebmflow.Component(
            "nce",
            "ebmflow_contrastive.nce:NoiseContrastiveEstimation",
            "noise-contrastive estimation (Gutmann & Hyvärinen 2010): data against a fitted "
            "Gaussian noise, log Z learnt as a parameter",
        ),
        ebmflow.Component(
            "drl",
            "ebmflow_contrastive.drl:DiffusionRecoveryLikelihood",
            "diffusion recovery likelihood (Gao et al. 2021): a noise-conditional energy "
            "trained on p(x | x + noise) with short-run Langevin",
        ),
    ]
