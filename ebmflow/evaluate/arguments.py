"""Argument checks shared by the log Z estimators (core and plugins): the event shape to
sample in, the dtype and device to evaluate in, and a Gaussian base's mean and scale.

Public so that a plugin's estimator (e.g. ``stepping-stone`` in ebmflow-tempering) applies
exactly the rules of :func:`ebmflow.evaluate.ais_log_z` and words its errors the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.validation import check_positive_int


def evaluation_dtype_device(
    energy: Energy, dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[torch.dtype, torch.device]:
    """The dtype and device to evaluate ``energy`` in: those given, else those of its first
    floating-point parameter or buffer, else float64 on the CPU."""
    tensors = [t for t in (*energy.parameters(), *energy.buffers()) if t.is_floating_point()]
    if dtype is None:
        dtype = tensors[0].dtype if tensors else torch.float64
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")
    return dtype, torch.device(device)


def check_has_energy(owner: str, energy: Any) -> None:
    """Raise unless ``energy`` is an :class:`~ebmflow.Energy` with energy values."""
    if not isinstance(energy, Energy):
        raise ComponentArgumentError(
            f"{owner}: expected an ebmflow.Energy, got {type(energy).__name__}"
        )
    if not energy.has_energy:
        raise ConfigError(
            f"{owner} needs energy values, but {type(energy).__name__} is score-only "
            "(has_energy = False); give the model an energy parameterisation first"
        )


def resolve_event_shape(
    owner: str, energy: Energy, dim: int | None, event_shape: Sequence[int] | None
) -> tuple[int, ...]:
    """The shape of one sample, from ``dim`` (vectors), ``event_shape`` or the energy's own
    ``event_shape``; those given must agree, and at least one must be."""
    given: list[tuple[int, ...]] = []
    if dim is not None:
        given.append((check_positive_int(owner, "dim", dim),))
    if event_shape is not None:
        try:
            shape = tuple(int(n) for n in event_shape)
        except (TypeError, ValueError):
            shape = ()
        if not shape or any(n < 1 for n in shape):
            raise ConfigError(
                f"{owner}: event_shape must be a non-empty sequence of positive integers, got "
                f"{event_shape!r}"
            )
        given.append(shape)
    if energy.event_shape is not None:
        given.append(tuple(energy.event_shape))
    if not given:
        raise ConfigError(
            f"{owner}: {type(energy).__name__} declares no event_shape; pass dim=... "
            "(vectors) or event_shape=(...)"
        )
    if len(set(given)) > 1:
        raise ConfigError(
            f"{owner}: inconsistent event shapes: dim={dim!r}, event_shape={event_shape!r}, "
            f"{type(energy).__name__}.event_shape={energy.event_shape!r}"
        )
    return given[0]


def base_tensor(
    owner: str,
    name: str,
    value: float | Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """``value`` (a number or a tensor) broadcast to ``shape`` as a new tensor; finite, and
    positive when ``name`` is ``"base_std"``."""
    try:
        t = torch.broadcast_to(torch.as_tensor(value, dtype=torch.float64), shape)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"{owner}: {name} must be a number or a tensor broadcastable to the event shape "
            f"{shape}, got {value!r}"
        ) from None
    if not bool(torch.isfinite(t).all()) or (name == "base_std" and not bool((t > 0).all())):
        accepted = "positive and finite" if name == "base_std" else "finite"
        raise ConfigError(f"{owner}: {name} must be {accepted}, got {value!r}")
    return t.to(device=device, dtype=dtype).clone()
