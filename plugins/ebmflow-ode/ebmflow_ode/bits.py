"""Bits per dimension of image data, with uniform dequantization.

Images with ``n_bins`` levels k ∈ {0, …, n_bins − 1} per pixel, stored in a range
[low, high] (``[0, 1]`` or ``[-1, 1]``) as x = low + (high − low) k / (n_bins − 1), are
dequantized to y = (k + u) / n_bins, u ~ U(0, 1)^D, and mapped back to the model's range,
x̃ = low + (high − low) y. For a density p on x̃, Jensen's inequality bounds the discrete
likelihood (Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative
models"):

    −log P(k) ≤ E_u[−log p(x̃)] − D log(high − low) + D log n_bins,

and bits/dim is that bound over D log 2. Values outside [low, high], or off the grid of
``n_bins`` levels, are errors: nothing is clipped or rounded silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import ebmflow

#: how far (in units of a level) a value may sit from the grid and still be read as a level
GRID_TOLERANCE = 1e-3


def check_range(owner: str, data_range: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in data_range)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ebmflow.ConfigError(
            f"{owner}: data_range must be two finite numbers low < high, e.g. [0, 1] or "
            f"[-1, 1]; got {data_range!r}"
        )
    return low, high


def check_in_range(owner: str, x: Tensor, low: float, high: float) -> None:
    outside = (x < low) | (x > high)
    if bool(outside.any()):
        n_bad = int(outside.flatten(1).any(1).sum())
        raise ebmflow.ConfigError(
            f"{owner}: {n_bad} of {x.shape[0]} data points have values outside the declared "
            f"data_range [{low:g}, {high:g}] (min {float(x.min()):.4g}, max "
            f"{float(x.max()):.4g}); declare the range the data lives in"
        )


def dequantize(
    x: Tensor,
    low: float,
    high: float,
    n_bins: int,
    generator: torch.Generator | None = None,
    owner: str = "dequantize",
) -> Tensor:
    """x̃ = low + (high − low)(k + u) / n_bins for data on the grid of ``n_bins`` levels."""
    check_in_range(owner, x, low, high)
    levels = (x.to(torch.float64) - low) / (high - low) * (n_bins - 1)
    k = levels.round()
    off = (levels - k).abs()
    if bool((off > GRID_TOLERANCE).any()):
        raise ebmflow.ConfigError(
            f"{owner}: the data are not quantised to n_bins={n_bins} levels in "
            f"[{low:g}, {high:g}] (a value lies {float(off.max()):.3g} levels off the grid); "
            "give the data's number of levels (e.g. 17 for the 8×8 digits, 256 for 8-bit "
            "images), or dequantize=False for data that are already continuous"
        )
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    return (low + (high - low) * (k + u) / n_bins).to(x.dtype)


def bits_per_dim(nll: float, dim: int, low: float, high: float, n_bins: int) -> float:
    """(NLL − D log(high − low) + D log n_bins) / (D log 2), NLL in nats per sample."""
    return (nll - dim * math.log(high - low) + dim * math.log(n_bins)) / (dim * math.log(2))
