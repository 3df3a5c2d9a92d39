"""Trainer callbacks: code that watches a run (experiment loggers, early looks at samples).

A callback is any object with some of these methods; the :class:`~ebmflow.Trainer` calls
each one it has, in the order the callbacks were given, on every rank (loggers write on
``trainer.rank == 0`` only):

- ``on_start(trainer)``: ``fit`` begins (after a resume has been loaded);
- ``on_step(trainer, step, output)``: after each optimizer step; ``output`` is the
  objective's :class:`~ebmflow.ObjectiveOutput` of that step (its loss still holds the
  graph; metrics may be tensors: reading them each step synchronises with the device);
- ``on_log(trainer, record)``: each log record, as appended to ``trainer.history`` and
  ``metrics_file``: ``step``, ``loss``, ``grad_norm``, ``lr`` and the objective's metrics
  (means over the logging interval);
- ``on_checkpoint(trainer, path)``: a checkpoint was written to ``path``;
- ``on_end(trainer)``: ``fit`` returns or raises (close files here).

Subclassing :class:`Callback` gives every method as a no-op. A logger for another service
is a few lines, e.g. Weights & Biases::

    class WandbLogger(ebmflow.Callback):
        def on_start(self, trainer):
            import wandb
            self.run = wandb.init(project="ebm", config=trainer.run_config())
        def on_log(self, trainer, record):
            self.run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
        def on_end(self, trainer):
            self.run.finish()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ebmflow.errors import ConfigError

#: The methods a callback may have, in the order of a run.
HOOKS = ("on_start", "on_step", "on_log", "on_checkpoint", "on_end")


class Callback:
    """Base class of Trainer callbacks: every hook is a no-op (see the module docstring)."""

    def on_start(self, trainer: Any) -> None:
        """``fit`` begins."""

    def on_step(self, trainer: Any, step: int, output: Any) -> None:
        """Step ``step`` (1-based) is done; ``output`` is its ObjectiveOutput."""

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        """A log record was made."""

    def on_checkpoint(self, trainer: Any, path: Any) -> None:
        """A checkpoint was written to ``path``."""

    def on_end(self, trainer: Any) -> None:
        """``fit`` returns or raises."""


class Callbacks:
    """The Trainer's callbacks, dispatched by hook; a hook no callback has costs nothing."""

    def __init__(self, callbacks: Iterable[Any] | None) -> None:
        self.callbacks = list(callbacks or ())
        self._bound: dict[str, list[Callable[..., Any]]] = {}
        for hook in HOOKS:
            self._bound[hook] = [
                method
                for c in self.callbacks
                if callable(method := getattr(c, hook, None))
                and getattr(type(c), hook, None) is not getattr(Callback, hook)
            ]
        for callback in self.callbacks:
            if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
                raise ConfigError(
                    f"Trainer: callback {callback!r} has none of the methods "
                    f"{', '.join(HOOKS)}; subclass ebmflow.Callback"
                )
        self.has_step = bool(self._bound["on_step"])

    def __call__(self, hook: str, *args: Any) -> None:
        for method in self._bound[hook]:
            method(*args)
