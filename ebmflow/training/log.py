"""Log records: the means over each logging interval, kept in the Trainer's history and
appended to ``metrics_file`` as JSON lines as they are made."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Log-record keys the Trainer writes; an objective's metric of the same name is renamed
#: ``objective_<name>``.
RECORD_KEYS = ("step", "loss", "grad_norm", "lr")


def interval_means(pending_metrics: list[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of each metric over the steps that reported it, by sorted name."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metrics in pending_metrics:
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value)
            counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sorted(sums)}


def log_record(
    step: int, losses: list[float], norm: Any, lr: float, means: Mapping[str, float]
) -> dict[str, Any]:
    """The record of the interval ending at ``step``: the mean loss, the last gradient norm
    and lr, and the objective's metric means."""
    record: dict[str, Any] = {
        "step": step,
        "loss": sum(losses) / len(losses) if losses else math.nan,
        "grad_norm": math.nan if norm is None else float(norm),
        "lr": lr,
    }
    for key, value in means.items():
        record[f"objective_{key}" if key in RECORD_KEYS else key] = value
    return record


def show_on_bar(bar: Any, record: Mapping[str, Any]) -> None:
    """The record's floats (but step and lr) as the progress bar's postfix."""
    shown = {
        k: f"{v:.4g}" for k, v in record.items() if k not in ("step", "lr") and isinstance(v, float)
    }
    bar.set_postfix(shown, refresh=False)


class MetricsFile:
    """A JSON-lines file of log records: rewritten from the history when opened (atomically,
    so a resumed run's file matches its checkpoint), then appended to record by record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def open(self, history: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(record) + "\n" for record in history)
        tmp = self.path.with_name(f".{self.path.name}.tmp.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Mapping[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
