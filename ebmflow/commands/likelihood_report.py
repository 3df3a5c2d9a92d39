"""``ebmflow evaluate --log-z METHOD`` for a log-likelihood estimator: one that takes the
data (a ``data`` argument, like ebmflow-ode's ``ode``) and scores it itself, so the NLL is
its own and the energy is never evaluated here (score-only models work)."""

from __future__ import annotations

import inspect
from typing import Any

#: report keys copied from such an estimator's result, where it has them
KEYS = (
    "nll",
    "stderr",
    "log_z",
    "log_z_stderr",
    "bits_per_dim",
    "bits_per_dim_stderr",
    "divergence",
    "n_probes",
    "sigma_min",
    "sigma_max",
    "n_evaluations",
    "dequantized",
)


def scores_data(host: Any, method: str) -> bool:
    """Whether the registered ``log_z_estimator`` ``method`` takes ``data``."""
    factory = host.get("log_z_estimator", method).load()
    return "data" in inspect.signature(factory).parameters


def likelihood_report(estimate: Any) -> dict[str, Any]:
    """The report entries of a log-likelihood estimate (``None`` where it has no value)."""
    return {key: getattr(estimate, key) for key in KEYS if hasattr(estimate, key)}


def summary_line(data: str, report: dict[str, Any]) -> str:
    """The text line of ``ebmflow evaluate`` for a report whose log Z may be unknown."""
    line = f"{data}: NLL {report['nll']:.4f} ± {report['stderr']:.4f} nats ({report['method']}"
    if report.get("log_z") is not None:
        line += f", log Z {report['log_z']:.4f}"
    line += ")"
    if report.get("bits_per_dim") is not None:
        line += f"; {report['bits_per_dim']:.4f} ± {report['bits_per_dim_stderr']:.4f} bits/dim"
    return line
