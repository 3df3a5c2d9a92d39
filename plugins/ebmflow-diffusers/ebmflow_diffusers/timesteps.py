"""The timesteps of an :class:`~ebmflow_diffusers.EBMScheduler` run: DDPMScheduler's
spacings of N steps over the training timesteps, and the checks of custom timesteps (VP) or
noise levels (VE)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ebmflow_diffusers.scheduler_arguments import fail


def spaced_timesteps(n: Any, total: int, spacing: str, steps_offset: int) -> np.ndarray:
    """N descending timesteps out of ``total`` training timesteps, spaced ``"linspace"``,
    ``"leading"`` (plus ``steps_offset``) or ``"trailing"`` as DDPMScheduler spaces them."""
    if not isinstance(n, int) or n < 1 or n > total:
        raise fail(
            f"num_inference_steps must be an integer in [1, {total}] "
            f"(num_train_timesteps), got {n!r}"
        )
    if spacing == "linspace":
        return np.linspace(0, total - 1, n).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        stride = total // n
        steps = (np.arange(0, n) * stride).round()[::-1].copy().astype(np.int64)
        return steps + steps_offset
    ratio = total / n
    return np.round(np.arange(total, 0, -ratio)).astype(np.int64) - 1


def custom_vp_timesteps(timesteps: Any, num_train_timesteps: int) -> Tensor:
    """Custom VP timesteps, checked: descending, and starting before ``num_train_timesteps``."""
    timesteps = list(timesteps)
    if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
        raise fail("custom timesteps must be in descending order")
    if timesteps[0] >= num_train_timesteps:
        raise fail(
            f"timesteps must start before num_train_timesteps = "
            f"{num_train_timesteps}, got {timesteps[0]}"
        )
    return torch.from_numpy(np.array(timesteps, dtype=np.int64))


def custom_ve_levels(timesteps: Any) -> Tensor:
    """Custom VE noise levels, checked: positive and strictly decreasing σ (float64)."""
    levels = torch.as_tensor(timesteps, dtype=torch.float64)
    if levels.ndim != 1 or not bool((levels > 0).all()) or bool((levels[1:] >= levels[:-1]).any()):
        raise fail("custom VE timesteps must be positive, strictly decreasing σ")
    return levels
