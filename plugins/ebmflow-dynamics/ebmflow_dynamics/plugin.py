"""Hook implementations of ebmflow-dynamics: one record per component.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``
(no torch); ``ebmflow.create`` imports a sampler's module on first use.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_samplers():
    return [
        ebmflow.Component(
            "nuts",
            "ebmflow_dynamics.nuts:NUTS",
            "No-U-Turn sampler, multinomial, one tree per chain; Stan's warm-up (dual "
            "averaging, windowed diagonal mass matrix)",
        ),
        ebmflow.Component(
            "underdamped-langevin",
            "ebmflow_dynamics.underdamped:UnderdampedLangevin",
            "underdamped Langevin, BAOAB (default) or OBABO splitting with friction γ; one "
            "gradient per step",
        ),
        ebmflow.Component(
            "uha",
            "ebmflow_dynamics.uha:UHA",
            "unadjusted HMC with partial momentum refresh (Du et al. 2023); L gradients",
        ),
    ]
