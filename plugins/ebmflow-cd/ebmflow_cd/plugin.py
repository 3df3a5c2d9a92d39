"""Hook implementations: the objectives ``cd`` and ``pcd``.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_objectives():
    return [
        ebmflow.Component(
            "cd",
            "ebmflow_cd.cd:ContrastiveDivergence",
            "CD-k (Hinton 2002): chains start at the data, k steps of any sampler",
        ),
        ebmflow.Component(
            "pcd",
            "ebmflow_cd.pcd:PersistentContrastiveDivergence",
            "persistent CD (Tieleman 2008): chains kept in a replay buffer between steps",
        ),
    ]
