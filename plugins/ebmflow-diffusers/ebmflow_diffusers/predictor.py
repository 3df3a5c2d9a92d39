"""The parts of :class:`~ebmflow_diffusers.EBMScheduler`'s predictor step that need no
scheduler state: the ancestral noise scale of each ``variance_type``, and dynamic
thresholding of x̂₀. The update rules themselves are in :mod:`ebmflow_diffusers.scheduler`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow_diffusers.scheduler_arguments import fail


def ancestral_std(
    kind: str, posterior: float, beta: float, predicted: Tensor | None
) -> float | Tensor:
    """The ``ddpm`` predictor's noise scale: √max(posterior, 1e-20) for ``"fixed_small"``
    (and ``"fixed_small_log"``), √β for ``"fixed_large"``, and from the model's variance
    channels ``predicted`` for ``"learned"`` (the variance) and ``"learned_range"`` (an
    interpolation between the two log variances), as DDPMScheduler computes them."""
    small = max(posterior, 1e-20)
    if kind in ("fixed_small", "fixed_small_log"):
        return math.sqrt(small)
    if kind in ("fixed_large", "fixed_large_log"):
        return math.sqrt(beta)
    if predicted is None:
        raise fail(
            f"variance_type {kind!r} needs a model output with twice the sample's "
            f"channels (the second half predicts the variance)"
        )
    if kind == "learned":
        return predicted.sqrt()
    frac = (predicted + 1) / 2  # learned_range: interpolate log variances
    log_var = frac * math.log(beta) + (1 - frac) * math.log(small)
    return torch.exp(0.5 * log_var)


def dynamic_threshold(x0: Tensor, ratio: float, max_value: float) -> Tensor:
    """Dynamic thresholding (Saharia et al. 2022, Imagen): per sample, s = the ``ratio``
    quantile of |x̂₀|, clamped to [1, ``max_value``]; x̂₀ ← clamp(x̂₀, −s, s) / s."""
    flat = x0.flatten(1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work.abs(), ratio, dim=1)
    s = s.clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(work, -s, s) / s).reshape(x0.shape).to(x0.dtype)
