"""ebmflow-cd: contrastive-divergence objectives for ebmflow.

ebmflow finds this package through its entry point (group ``ebmflow``, name ``cd``), which
names :mod:`ebmflow_cd.plugin`. Importing the package imports neither torch nor the
objectives; ``ebmflow.create("objective", "cd")`` imports :mod:`ebmflow_cd.cd` on first use.
"""

__version__ = "0.1.0"
