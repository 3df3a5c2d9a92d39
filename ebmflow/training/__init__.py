"""Training: the :class:`Trainer`, run files, and the parts the Trainer is made of.

- :mod:`~ebmflow.training.trainer`: the Trainer (its loop) and :func:`build`, which turns a
  run file into a Trainer;
- :mod:`~ebmflow.training.run_config`: run files (:class:`RunConfig`) and building their
  components;
- :mod:`~ebmflow.training.edits`: which edits of a run a resume honours;
- :mod:`~ebmflow.training.batches`: batches from a Dataset or a tensor, sharded over ranks;
- :mod:`~ebmflow.training.optim`: optimizers and learning-rate schedules;
- :mod:`~ebmflow.training.distributed`: the collective of a torchrun run;
- :mod:`~ebmflow.training.monitor`: NaN/inf checks of data, losses and gradients;
- :mod:`~ebmflow.training.log`: log records and the metrics file;
- :mod:`~ebmflow.training.state`: the training state a checkpoint holds, saved and loaded
  through the public checkpoint API, and :mod:`~ebmflow.training.state_checks`, its checks;
- :mod:`~ebmflow.training.arguments`: checks of the Trainer's arguments;
- :mod:`~ebmflow.training.callbacks`: the callbacks a run calls (on start, step, log,
  checkpoint and end), and :mod:`~ebmflow.training.tensorboard`, a TensorBoard logger on them.
"""

from __future__ import annotations

from ebmflow.training.edits import RESUMABLE_TRAIN_KEYS
from ebmflow.training.optim import LR_SCHEDULES, OPTIMIZERS, LRSchedule
from ebmflow.training.run_config import (
    TRAIN_KEYS,
    RunConfig,
    load_run_config,
    parse_run_config,
)
from ebmflow.training.trainer import Trainer, build

__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "RESUMABLE_TRAIN_KEYS",
    "TRAIN_KEYS",
    "LRSchedule",
    "RunConfig",
    "Trainer",
    "build",
    "load_run_config",
    "parse_run_config",
]
