"""The plugin module: hook implementations that hand ebmflow one record per component.

ebmflow imports this module when it first looks a component up, and calls each hook once.
The factories are ``"module:attr"`` strings, so loading the plugin imports neither torch nor
the modules that define the components; ``ebmflow.create`` imports them on first use.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_energies():
    return [
        ebmflow.Component(
            "double-well",
            "ebmflow_example.energy:DoubleWell",
            "double well E(x) = a(‖x‖² − 1)² with a closed-form score",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_samplers():
    return [
        ebmflow.Component(
            "rwm",
            "ebmflow_example.sampler:RandomWalkMetropolis",
            "random-walk Metropolis x' = x + s·ξ; gradient-free proposal",
        ),
    ]
