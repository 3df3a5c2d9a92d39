"""Hook implementations of ebmflow-ode: one record per component.

The factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``
(neither torch nor torchdiffeq); ``ebmflow.create`` imports a component's module on first use.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_samplers():
    return [
        ebmflow.Component(
            "ode-euler",
            "ebmflow_ode.samplers:EulerODE",
            "probability-flow ODE, Euler steps on a noise schedule (deterministic)",
        ),
        ebmflow.Component(
            "ode-heun",
            "ebmflow_ode.samplers:HeunODE",
            "probability-flow ODE, EDM's second-order Heun steps on a noise schedule",
        ),
        ebmflow.Component(
            "ode",
            "ebmflow_ode.samplers:AdaptiveODE",
            "probability-flow ODE by an adaptive torchdiffeq solver (dopri5, rtol/atol)",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_log_z_estimators():
    return [
        ebmflow.Component(
            "ode",
            "ebmflow_ode.estimator:ode_estimator",
            "NLL (and bits/dim) of data by the probability-flow ODE, exact or Hutchinson "
            "divergence; any noise-conditional energy or score model",
        ),
    ]
