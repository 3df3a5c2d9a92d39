"""Argument checks shared by components: errors name the component, the argument, the bad
value and what is accepted. Public so that plugins give the same messages."""

from __future__ import annotations

import math
import operator
from typing import Any

from ebmflow.errors import ConfigError

#: Upper bounds of step counts and seeds wherever they are given (run files, the Trainer,
#: the CLI), so that a slip such as ``steps = 10**30`` is one clear error instead of an
#: overflow deep inside torch. Step counts stop at 2**53, beyond which a float (JSON
#: readers, tqdm, the schedules) no longer holds every integer; a seed is what
#: ``torch.Generator.manual_seed`` accepts.
MAX_STEPS = 2**53
MAX_SEED = 2**64 - 1


#: the largest finite float32: a larger scalar argument overflows the tensors it meets.
FLOAT32_MAX = 3.4028234663852886e38


def check_positive(owner: str, name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Validate a positive finite number for a component argument; a bad value raises
    :class:`~ebmflow.ConfigError` (a ``ValueError``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        accepted = "a number ≥ 0" if allow_zero else "a number > 0"
        raise ConfigError(f"{owner}: {name} must be {accepted}, got {value!r}")
    if value > FLOAT32_MAX:
        # tensors of float32 cannot hold it: it would overflow in the first operation
        raise ConfigError(
            f"{owner}: {name} must be at most {FLOAT32_MAX:.4g} (the largest float32), "
            f"got {value!r}"
        )
    return float(value)


def check_positive_int(owner: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """Validate an integer ≥ ``minimum`` for a component argument; a bad value raises
    :class:`~ebmflow.ConfigError` (a ``ValueError``)."""
    try:
        number = operator.index(value)  # ints and integer-like (numpy, 0-d int tensors)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ConfigError(f"{owner}: {name} must be an integer ≥ {minimum}, got {value!r}")
    return number


def check_interval(owner: str, name: str, value: Any) -> tuple[float, float]:
    """Validate a box ``(low, high)``: two finite numbers with low < high, as a list or
    tuple; a bad value raises :class:`~ebmflow.ConfigError` (a ``ValueError``)."""
    pair = tuple(value) if isinstance(value, (list, tuple)) else None
    ok = (
        pair is not None
        and len(pair) == 2
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in pair
        )
        and pair[0] < pair[1]
    )
    if not ok or pair is None:
        raise ConfigError(
            f"{owner}: {name} must be a pair (low, high) of finite numbers with low < high, "
            f"e.g. (-1.0, 1.0); got {value!r}"
        )
    return float(pair[0]), float(pair[1])
