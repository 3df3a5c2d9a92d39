"""Inverse problems: measurement operators, likelihood energies and posteriors.

- :mod:`ebmflow.inverse.operators`: linear operators A (mask, blur, downsample, matrix,
  any linear callable).
- :mod:`ebmflow.inverse.measurement`: ``gaussian-measurement``, E(x | y, σ) for
  y = A x + n, annealed across noise levels.
- :mod:`ebmflow.inverse.posterior`: ``ebmflow.posterior(prior, likelihood)``.

The samplers are ``annealed-posterior`` (:mod:`ebmflow.samplers.annealed_posterior`) and
the ``dps`` baseline (:mod:`ebmflow.samplers.dps`).
"""
