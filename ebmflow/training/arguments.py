"""Checks of the Trainer's arguments, and how a value is shown in an error message.

Every check raises :class:`~ebmflow.ConfigError` naming the argument, the value given and
what is accepted, so a typo in a run file or a script is reported before any training.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_SEED, MAX_STEPS

#: A batch of 2**31 rows or more could not be allocated anyway (step counts and seeds are
#: bounded by ``ebmflow.validation.MAX_STEPS`` and ``MAX_SEED``).
MAX_BATCH_SIZE = 2**31 - 1


@dataclass(frozen=True)
class TrainerArguments:
    """The Trainer's scalar arguments, as :func:`check_trainer_arguments` accepted them."""

    batch_size: int
    steps: int
    seed: int
    grad_clip: float | None
    ema_decay: float | None
    checkpoint_every: int | None
    log_every: int


def check_components(energy: Any, objective: Any) -> None:
    """The Trainer trains an :class:`~ebmflow.Energy` with an :class:`~ebmflow.Objective`."""
    from ebmflow.energy import Energy
    from ebmflow.objective import Objective

    if not isinstance(energy, Energy):
        raise ConfigError(f"Trainer: energy must be an ebmflow.Energy, got {type(energy).__name__}")
    if not isinstance(objective, Objective):
        raise ConfigError(
            f"Trainer: objective must be an ebmflow.Objective, got {type(objective).__name__}"
        )


def check_trainer_arguments(
    *,
    batch_size: Any,
    steps: Any,
    seed: Any,
    grad_clip: Any,
    ema: Any,
    compile: Any,
    checkpoint_every: Any,
    log_every: Any,
    progress: Any,
    checkpoint_dir: Any,
) -> TrainerArguments:
    """Check the Trainer's scalar arguments (see :class:`~ebmflow.Trainer` for each), in
    the order of its signature, and return them as the Trainer keeps them."""
    batch_size = int_arg("batch_size", batch_size, 1, maximum=MAX_BATCH_SIZE)
    steps = int_arg("steps", steps, 0)
    seed = int_arg("seed", seed, 0, maximum=MAX_SEED)
    grad_clip = positive_arg("grad_clip", grad_clip)
    if ema is not None and not (
        isinstance(ema, (int, float)) and not isinstance(ema, bool) and 0.0 < ema < 1.0
    ):
        raise ConfigError(f"Trainer: ema must be a decay in (0, 1) or None, got {ema!r}")
    if not isinstance(compile, bool):
        raise ConfigError(f"Trainer: compile must be true or false, got {compile!r}")
    checkpoint_every = int_arg("checkpoint_every", checkpoint_every, 1, optional=True)
    log_every = int_arg("log_every", log_every, 1)
    if not isinstance(progress, bool):
        raise ConfigError(f"Trainer: progress must be true or false, got {progress!r}")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ConfigError("Trainer: checkpoint_every needs a checkpoint_dir")
    return TrainerArguments(
        batch_size,
        steps,
        seed,
        grad_clip,
        None if ema is None else float(ema),
        checkpoint_every,
        log_every,
    )


def check_divisible(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the ranks."""
    if batch_size % world_size:
        raise ConfigError(
            f"Trainer: batch_size {batch_size} (the global batch) must be divisible "
            f"by the number of ranks, {world_size}"
        )


@overload
def int_arg(
    name: str,
    value: Any,
    minimum: int,
    *,
    optional: Literal[False] = False,
    maximum: int = MAX_STEPS,
) -> int: ...
@overload
def int_arg(
    name: str, value: Any, minimum: int, *, optional: bool, maximum: int = MAX_STEPS
) -> int | None: ...


def int_arg(
    name: str, value: Any, minimum: int, *, optional: bool = False, maximum: int = MAX_STEPS
) -> int | None:
    """``value`` if it is an integer from ``minimum`` to ``maximum`` (or ``None`` when
    ``optional``), else raise."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        accepted = f"an integer ≥ {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"Trainer: {name} must be {accepted}, got {value!r}")
    if value > maximum:
        raise ConfigError(
            f"Trainer: {name} must be an integer from {minimum} to {maximum}, got {value!r}"
        )
    return value


def positive_arg(name: str, value: Any) -> float | None:
    """``value`` as a float if it is a finite number > 0, ``None`` for ``None``, else raise."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"Trainer: {name} must be a number > 0 or None, got {value!r}")
    return float(value)


def check_names(owner: str, given: Mapping[str, Any], accepted: Sequence[str]) -> None:
    """Raise for the first key of ``given`` not in ``accepted``, suggesting a close one."""
    for key in given:
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{owner}: unknown argument {key!r}{hint}; accepted: "
                f"{', '.join(accepted) or 'none'}"
            )


def named_spec(what: str, spec: Any, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **arguments}`` as (name, arguments), the name one of
    ``names``."""
    if isinstance(spec, str):
        name, arguments = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        arguments = dict(spec)
        name = arguments.pop("name")
    else:
        raise ConfigError(
            f"Trainer: {what} must be a name or a dict with a 'name' key (one of "
            f"{', '.join(names)}), got {spec!r}"
        )
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Trainer: unknown {what} {name!r}{hint} Accepted: {', '.join(names)}")
    return name, arguments


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
