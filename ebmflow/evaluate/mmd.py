"""Maximum mean discrepancy between two samples (Gretton, Borgwardt, Rasch, Schölkopf &
Smola 2012, "A kernel two-sample test").

The unbiased estimator of the squared MMD between samples x_1 … x_m and y_1 … y_n:

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j)
             − 2/(mn) Σ_{i,j} k(x_i, y_j)

with the RBF kernel k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)) summed over one or more bandwidths
h. It is zero in expectation when both samples come from the same distribution (and can then
be slightly negative), positive otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ebmflow.errors import ConfigError

KERNELS = ("rbf",)
#: the median heuristic looks at (at most) this many evenly spaced points of the pooled sample.
MEDIAN_SUBSAMPLE = 2000


def _as_matrix(name: str, value: Any) -> Tensor:
    t = torch.as_tensor(value)
    if t.ndim < 1 or t.shape[0] < 2:
        raise ConfigError(
            f"mmd: {name} must be a batch (n, *event_shape) with n ≥ 2 for the unbiased "
            f"estimator, got shape {tuple(t.shape)}"
        )
    t = t.detach().to(torch.float64).reshape(t.shape[0], -1)
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"mmd: {name} holds NaN or ±∞ values")
    return t


def median_bandwidth(z: Tensor) -> float:
    """The median heuristic: h = median of the pairwise distances ‖z_i − z_j‖, i < j, over
    (at most ``MEDIAN_SUBSAMPLE`` evenly spaced) rows of ``z``. Falls back to the mean
    distance when the median is 0 (many repeated points), and to 1 when all points coincide."""
    z = z.reshape(z.shape[0], -1).to(torch.float64)
    if z.shape[0] > MEDIAN_SUBSAMPLE:
        z = z[torch.linspace(0, z.shape[0] - 1, MEDIAN_SUBSAMPLE).round().long()]
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    d = torch.cdist(z, z)[i, j]
    for h in (float(d.median()), float(d.mean())):
        if h > 0:
            return h
    return 1.0


def _kernel_sum(a: Tensor, b: Tensor, bandwidths: Sequence[float], batch_size: int) -> float:
    """Σ_{i,j} k(a_i, b_j) over blocks of ``batch_size`` × ``batch_size`` pairs."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    inv = [1.0 / (2.0 * h * h) for h in bandwidths]
    for i in range(0, a.shape[0], batch_size):
        ai = a[i : i + batch_size]
        for j in range(0, b.shape[0], batch_size):
            d2 = torch.cdist(ai, b[j : j + batch_size]).pow(2)
            for c in inv:
                total = total + torch.exp(-c * d2).sum()
    return float(total)


def mmd(
    x: Tensor,
    y: Tensor,
    kernel: str = "rbf",
    bandwidth: float | Sequence[float] | None = None,
    *,
    median_scales: Sequence[float] = (1.0,),
    batch_size: int = 4096,
) -> float:
    """Unbiased squared MMD between samples ``x`` ``(m, *event)`` and ``y`` ``(n, *event)``.

    Args:
        kernel: ``"rbf"``, k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)).
        bandwidth: h, or several h to sum over; default the median heuristic on the pooled
            sample (:func:`median_bandwidth`) times each of ``median_scales``.
        median_scales: multipliers of the median bandwidth, e.g. ``(0.5, 1, 2)`` for a sum
            of three kernels around it (used only when ``bandwidth`` is None).
        batch_size: rows per block of the kernel matrices (bounds the memory at
            ``batch_size²`` entries).

    Returns:
        MMD²_u as a Python float (float64 arithmetic); its null distribution is centred at 0.
    """
    if kernel not in KERNELS:
        raise ConfigError(
            f"mmd: kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"mmd: batch_size must be an integer ≥ 1, got {batch_size!r}")
    a, b = _as_matrix("x", x), _as_matrix("y", y)
    if torch.as_tensor(x).shape[1:] != torch.as_tensor(y).shape[1:]:
        raise ConfigError(
            f"mmd: x and y must have the same event shape, got {tuple(torch.as_tensor(x).shape)}"
            f" and {tuple(torch.as_tensor(y).shape)}"
        )
    b = b.to(a.device)
    if bandwidth is None:
        h = median_bandwidth(torch.cat([a, b]))
        bandwidths = [h * float(s) for s in median_scales]
        what = "median_scales"
    else:
        bandwidths = [bandwidth] if isinstance(bandwidth, (int, float)) else list(bandwidth)
        what = "bandwidth"
    if not bandwidths or any(
        isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0
        for h in bandwidths
    ):
        raise ConfigError(
            f"mmd: {what} must give one or more positive finite bandwidths, got "
            f"{bandwidth if bandwidth is not None else median_scales!r}"
        )
    m, n, k = a.shape[0], b.shape[0], len(bandwidths)
    # k(a, a) = 1 per bandwidth: remove the diagonal from the within-sample sums
    xx = (_kernel_sum(a, a, bandwidths, batch_size) - m * k) / (m * (m - 1))
    yy = (_kernel_sum(b, b, bandwidths, batch_size) - n * k) / (n * (n - 1))
    xy = _kernel_sum(a, b, bandwidths, batch_size) / (m * n)
    return xx + yy - 2.0 * xy
