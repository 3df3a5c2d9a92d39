"""Run files' former home, kept so that ``from ebmflow.run_config import ...`` still works.

Run files live in :mod:`ebmflow.training.run_config`, and :func:`build` (a run file to a
Trainer) in :mod:`ebmflow.training.trainer`; this module re-exports their public names.
"""

from __future__ import annotations

from ebmflow.training.run_config import (
    BOOLEAN_TRAIN_KEYS,
    MAX_RUN_FILE_BYTES,
    REQUIRED_TABLES,
    TABLES,
    TRAIN_KEYS,
    RunConfig,
    build_components,
    create_from_table,
    load_run_config,
    parse_run_config,
)
from ebmflow.training.trainer import build

__all__ = [
    "BOOLEAN_TRAIN_KEYS",
    "MAX_RUN_FILE_BYTES",
    "REQUIRED_TABLES",
    "TABLES",
    "TRAIN_KEYS",
    "RunConfig",
    "build",
    "build_components",
    "create_from_table",
    "load_run_config",
    "parse_run_config",
]
