"""ebmflow-example-plugin: a double-well energy and a random-walk Metropolis sampler.

ebmflow finds this package through its entry point (group ``ebmflow``, name ``example``),
which names :mod:`ebmflow_example.plugin`. Nothing here imports torch; the energy and the
sampler live in their own modules, imported only when ``ebmflow.create`` builds one.
"""

__version__ = "0.1.0"
