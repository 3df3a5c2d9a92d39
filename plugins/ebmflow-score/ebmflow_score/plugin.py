"""Hook implementations: the objectives ``sm``, ``ssm``, ``dsm`` and ``multiscale-dsm``.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_objectives():
    return [
        ebmflow.Component(
            "sm",
            "ebmflow_score.exact:ScoreMatching",
            "score matching (Hyvärinen 2005) with the exact Jacobian trace; low dimensions",
        ),
        ebmflow.Component(
            "ssm",
            "ebmflow_score.sliced:SlicedScoreMatching",
            "sliced score matching (Song et al. 2019), variance-reduced; one backward per "
            "projection",
        ),
        ebmflow.Component(
            "dsm",
            "ebmflow_score.denoising:DenoisingScoreMatching",
            "denoising score matching (Vincent 2011) at one noise level σ",
        ),
        ebmflow.Component(
            "multiscale-dsm",
            "ebmflow_score.denoising:MultiscaleDSM",
            "denoising score matching over a noise schedule (NCSN; energy-parameterised diffusion)",
        ),
    ]
