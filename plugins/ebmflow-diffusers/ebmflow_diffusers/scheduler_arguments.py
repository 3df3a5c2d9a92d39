"""The checks of :class:`~ebmflow_diffusers.EBMScheduler`'s arguments: each names the
scheduler, the argument, the value given and what is accepted, and fails when the scheduler
is built, not in the middle of a sampling run."""

from __future__ import annotations

import math
from typing import Any

import ebmflow
from ebmflow_diffusers.corrector import STEP_SIZE_RULES
from ebmflow_diffusers.schedule import PREDICTION_TYPES
from ebmflow_diffusers.segment import RULES, quadrature_weights

PREDICTORS = ("ddpm", "ddim")
VARIANCE_TYPES = (
    "fixed_small",
    "fixed_small_log",
    "fixed_large",
    "fixed_large_log",
    "learned",
    "learned_range",
)
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")
NAME = "EBMScheduler"


def fail(message: str) -> ebmflow.ConfigError:
    """The error for a bad argument or call of the scheduler, naming it."""
    return ebmflow.ConfigError(f"{NAME}: {message}")


def choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    """``value`` of argument ``name`` must be one of ``accepted``."""
    if value not in accepted:
        raise fail(f"{name} must be one of {', '.join(map(repr, accepted))}, got {value!r}")


def check_arguments(
    *,
    schedule: Any,
    prediction_type: Any,
    predictor: Any,
    variance_type: Any,
    timestep_spacing: Any,
    step_size_rule: Any,
    energy_rule: Any,
    energy_points: Any,
    corrector_steps: Any,
    eta: Any,
    snr: Any,
    step_size_scale: Any,
    corrector_args: Any,
) -> None:
    """Check the scheduler's choices and numbers (the schedule's own tables and the
    corrector's sampler are checked where they are built)."""
    choice("schedule", schedule, tuple(PREDICTION_TYPES))
    choice("prediction_type", prediction_type, PREDICTION_TYPES[schedule])
    choice("predictor", predictor, PREDICTORS)
    choice("variance_type", variance_type, VARIANCE_TYPES)
    choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
    choice("step_size_rule", step_size_rule, STEP_SIZE_RULES)
    choice("energy_rule", energy_rule, RULES)
    try:
        quadrature_weights(energy_points, energy_rule)
    except ValueError as exc:
        raise fail(f"energy_points: {exc}") from None
    if not (isinstance(corrector_steps, int) and corrector_steps >= 0):
        raise fail(f"corrector_steps must be an integer ≥ 0, got {corrector_steps!r}")
    for name, value in (("eta", eta), ("snr", snr), ("step_size_scale", step_size_scale)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise fail(f"{name} must be a finite number ≥ 0, got {value!r}")
    if corrector_args is not None and not isinstance(corrector_args, dict):
        raise fail(f"corrector_args must be a dict, got {type(corrector_args).__name__}")
