"""The Trainer's former home, kept so that ``from ebmflow.trainer import ...`` still works.

The Trainer and its parts live in :mod:`ebmflow.training`; this module re-exports their
public names.
"""

from __future__ import annotations

from ebmflow.errors import TrainingDivergedError
from ebmflow.training.arguments import MAX_BATCH_SIZE
from ebmflow.training.batches import event_shape_mismatch
from ebmflow.training.edits import RESUMABLE_TRAIN_KEYS
from ebmflow.training.optim import LR_SCHEDULES, OPTIMIZERS, LRSchedule
from ebmflow.training.state import (
    METRICS_FILE,
    OBJECTIVE_FILE,
    TRAINING_STATE_FILE,
    TRAINING_TENSORS_FILE,
)
from ebmflow.training.trainer import Trainer

__all__ = [
    "LR_SCHEDULES",
    "MAX_BATCH_SIZE",
    "METRICS_FILE",
    "OBJECTIVE_FILE",
    "OPTIMIZERS",
    "RESUMABLE_TRAIN_KEYS",
    "TRAINING_STATE_FILE",
    "TRAINING_TENSORS_FILE",
    "LRSchedule",
    "Trainer",
    "TrainingDivergedError",
    "event_shape_mismatch",
]
