"""``ebmflow.evaluate.log_z(energy, method, **options)``: log Z by any registered estimator.

Estimators are components of kind ``log_z_estimator`` (hook ``ebmflow_log_z_estimators``):
functions ``f(energy, **options)`` that return a result with ``log_z`` — and ``stderr`` when
the value is a Monte Carlo estimate — and ``to_dict()``. The core registers

- ``grid``: exact quadrature over a box, 1–3-D (:func:`ebmflow.evaluate.grid_log_z`;
  needs ``bounds=``);
- ``ais``: annealed importance sampling (:func:`ebmflow.evaluate.ais_log_z`);

and plugins add their own, e.g. ``stepping-stone`` from ebmflow-tempering (stepping-stone
sampling over a parallel-tempering ladder). The options are the estimator's keyword
arguments; a misspelt one is reported with the accepted ones, as ``ebmflow.create`` does.
"""

from __future__ import annotations

from typing import Any

from ebmflow.energy import Energy
from ebmflow.registry import PluginHost, current_host

KIND = "log_z_estimator"


def log_z(
    energy: Energy, method: str = "ais", *, host: PluginHost | None = None, **options: Any
) -> Any:
    """log Z of ``energy`` by the registered estimator ``method``.

    Args:
        energy: the energy to normalise.
        method: a registered ``log_z_estimator`` name (``ebmflow components --kind
            log_z_estimator`` lists them): ``"grid"``, ``"ais"``, ``"stepping-stone"`` …
        host: the plugin host to look ``method`` up in (default: :func:`ebmflow.current_host`,
            the host building the calling component, else the process-wide one).
        **options: the estimator's keyword arguments (``n_chains``, ``generator`` …).

    Returns:
        The estimator's result (``GridResult``, ``AISResult``, ``SteppingStoneResult`` …):
        ``result.log_z``, and ``result.stderr`` for Monte Carlo estimates.
    """
    return (host or current_host()).create(KIND, method, energy=energy, **options)


def estimators(host: PluginHost | None = None) -> list[str]:
    """Names of the registered log Z estimators."""
    return [c.name for c in (host or current_host()).components(KIND)]
