"""Optimizers and learning-rate schedules, built from a name or a dict of arguments, and the
parameters they train (:func:`trainable_parameters`).

``optimizer=`` is ``"adam"``, ``{"name": "adam", "lr": 1e-3, ...}`` (any argument of the
``torch.optim`` class, checked by name and for finite values) or a callable
``params -> torch.optim.Optimizer``; ``lr_schedule=`` a name or dict of :class:`LRSchedule`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ebmflow.errors import ConfigError, first_line
from ebmflow.training.arguments import check_names, int_arg, named_spec

#: ``optimizer=`` names and the ``torch.optim`` classes they build.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}

#: ``lr_schedule=`` names and the arguments each accepts (with defaults).
LR_SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "linear-warmup": {"warmup": 0},
    "cosine": {"warmup": 0, "min_factor": 0.0, "steps": None},
}


def trainable_parameters(
    energy: nn.Module, objective: nn.Module
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(the energy's trainable parameters, those and the objective's)``, each parameter
    once; an energy with none cannot be trained."""
    energy_params = [p for p in energy.parameters() if p.requires_grad]
    seen = {id(p) for p in energy_params}
    params = energy_params + [
        p for p in objective.parameters() if p.requires_grad and id(p) not in seen
    ]
    if not energy_params:
        raise ConfigError(
            f"Trainer: {type(energy).__name__} has no trainable parameters (analytic "
            f"energies such as gaussian and gmm keep theirs as buffers)"
        )
    return energy_params, params


def make_optimizer(spec: Any, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """``torch.optim`` optimizer from ``"adam"``, ``{"name": "adam", "lr": 1e-3, ...}`` or a
    callable ``params -> Optimizer``."""
    if callable(spec) and not isinstance(spec, (str, Mapping)):
        optimizer = spec(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"Trainer: the optimizer factory returned a {type(optimizer).__name__}, "
                f"not a torch.optim.Optimizer"
            )
        return optimizer
    name, arguments = named_spec("optimizer", spec, list(OPTIMIZERS))
    cls = getattr(torch.optim, OPTIMIZERS[name])
    accepted = [p for p in inspect.signature(cls).parameters if p != "params"]
    check_names(f"Trainer: optimizer {name!r}", arguments, accepted)
    if isinstance(arguments.get("betas"), list):  # TOML and JSON arrays are lists
        arguments["betas"] = tuple(arguments["betas"])
    for key, value in arguments.items():  # torch takes lr = inf and diverges at step 1
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"Trainer: optimizer {name!r}: {key} must be finite, got {value!r}")
    try:
        return cls(params, **arguments)
    except (TypeError, ValueError, IndexError, KeyError) as exc:  # e.g. betas = [0.9]
        raise ConfigError(
            f"Trainer: optimizer {name!r}: {type(exc).__name__}: "
            f"{first_line(exc)} (arguments {arguments})"
        ) from None


class LRSchedule:
    """The learning-rate factor f(i) of step ``i`` (0-based): lr_i = lr · f(i).

    - ``constant``: f = 1.
    - ``linear-warmup`` (``warmup`` = W): f = min(1, (i + 1) / W).
    - ``cosine`` (``warmup`` = W, ``min_factor`` = m, ``steps`` = T, default the Trainer's
      ``steps``): the warm-up above, then f = m + (1 − m) · ½ (1 + cos(π (i − W) / (T − W))).
    """

    def __init__(self, spec: Any, steps: int) -> None:
        name, arguments = named_spec("lr_schedule", spec, list(LR_SCHEDULES))
        defaults = LR_SCHEDULES[name]
        check_names(f"Trainer: lr_schedule {name!r}", arguments, list(defaults))
        values = {**defaults, **arguments}
        self.name = name
        self.warmup = int_arg("lr_schedule warmup", values.get("warmup", 0), 0)
        min_factor = values.get("min_factor", 0.0)
        if not (
            isinstance(min_factor, (int, float))
            and not isinstance(min_factor, bool)
            and 0.0 <= min_factor <= 1.0
        ):
            raise ConfigError(
                f"Trainer: lr_schedule min_factor must be a number in [0, 1], got {min_factor!r}"
            )
        self.min_factor = float(min_factor)
        total = values.get("steps")
        self.steps = steps if total is None else int_arg("lr_schedule steps", total, 1)

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / self.warmup
        if self.name != "cosine":
            return 1.0
        span = max(1, self.steps - self.warmup)
        progress = min(1.0, (i - self.warmup) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_factor + (1.0 - self.min_factor) * cosine
