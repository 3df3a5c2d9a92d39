"""Hook implementations of ebmflow-tempering: one record per component.

The factory is a ``"module:attr"`` string, so loading the plugin imports only ``ebmflow``
(no torch); ``ebmflow.create`` imports the sampler's module on first use.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_samplers():
    return [
        ebmflow.Component(
            "parallel-tempering",
            "ebmflow_tempering.parallel_tempering:ParallelTempering",
            "replica exchange over a β ladder, any local sampler, non-reversible even-odd "
            "swaps; one batched energy call per step",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_log_z_estimators():
    return [
        ebmflow.Component(
            "stepping-stone",
            "ebmflow_tempering.log_z:stepping_stone_log_z",
            "stepping-stone log Z (and thermodynamic integration) over a tempering ladder",
        ),
    ]
