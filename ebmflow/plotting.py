"""Figures through matplotlib, an optional dependency (``pip install 'ebmflow[plot]'``).

Every function writes one PNG with the file-only Agg backend and returns its path; none
needs a display. matplotlib is imported inside the functions, so ``import ebmflow.plotting``
is cheap and works without it; :func:`matplotlib_available` says whether figures can be
made, and :func:`require_matplotlib` raises an error that says how to install it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ebmflow.errors import EbmflowError

#: what to install for figures, as the messages say it.
INSTALL_HINT = "pip install 'ebmflow[plot]'  (or: pip install matplotlib)"


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (imports it when it can)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib():
    """``matplotlib.pyplot`` with the file-only Agg backend, or a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EbmflowError(f"figures need matplotlib: {INSTALL_HINT}") from None
    return plt


def _save(plt: Any, fig: Any, path: str | Path, title: str = "") -> Path:
    path = Path(path)
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_samples(
    samples: Tensor,
    path: str | Path,
    title: str = "",
    *,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """A scatter plot of 2-D samples, or a grid of images for ``(N, C, H, W)`` samples.

    Images are shown on ``value_range`` (e.g. ``(0, 1)``) when given, else each on its own
    range; at most 64 are drawn.
    """
    plt = require_matplotlib()
    samples = samples.detach().cpu().float()
    if samples.ndim == 2 and samples.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal")
        _label_axes(ax)
    elif samples.ndim == 4 and samples.shape[1] in (1, 3):
        n = min(samples.shape[0], 64)
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        low, high = value_range if value_range is not None else (None, None)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                image = samples[i].permute(1, 2, 0).squeeze(-1)
                if value_range is not None:
                    image = image.clamp(*value_range)
                    if samples.shape[1] == 3:
                        image = (image - value_range[0]) / (value_range[1] - value_range[0])
                ax.imshow(
                    image, cmap="gray" if samples.shape[1] == 1 else None, vmin=low, vmax=high
                )
    else:
        raise EbmflowError(
            f"cannot plot samples of shape {tuple(samples.shape)}: figures are made for 2-D "
            "points (N, 2) and images (N, 1 or 3, H, W); write .safetensors instead"
        )
    return _save(plt, fig, path, title)


def plot_landscape(
    energy: Tensor,
    learned: Tensor,
    true: Tensor | None,
    bounds: Sequence[tuple[float, float]],
    path: str | Path,
    title: str = "",
    *,
    names: Sequence[str] = ("learned energy E(x)", "learned density", "true density"),
    energy_range: float = 12.0,
) -> Path:
    """A learned energy landscape (E − min E, clipped at ``energy_range`` nats, with contour
    lines every 2 nats) beside the learned density exp(−E)/Z and, when given, the true
    density (the two densities share one colour scale and one colour bar); every panel
    has axis labels.

    Grids are ``(n_y, n_x)``, row ``i`` at y_i and column ``j`` at x_j, both increasing, over
    ``bounds = ((x_low, x_high), (y_low, y_high))``.
    """
    plt = require_matplotlib()
    energy = energy.detach().cpu().double()
    densities = [learned] + ([true] if true is not None else [])
    densities = [d.detach().cpu().double() for d in densities]
    vmax = max(float(d.max()) for d in densities)
    (x0, x1), (y0, y1) = bounds
    extent = (x0, x1, y0, y1)
    n = 1 + len(densities)
    fig, axes = plt.subplots(
        1, n, figsize=(4.4 * n + 0.8, 4.4), squeeze=False, layout="constrained"
    )
    relative = (energy - energy.min()).clamp(max=energy_range).numpy()
    ax = axes.flat[0]
    image = ax.imshow(
        relative,
        origin="lower",
        extent=extent,
        cmap="magma_r",
        vmin=0.0,
        vmax=energy_range,
        interpolation="nearest",
    )
    ax.contour(
        relative,
        levels=list(range(1, int(energy_range))),
        extent=extent,
        colors="0.25",
        linewidths=0.4,
        alpha=0.5,
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="E − min E (nats)")
    for ax, density in zip(list(axes.flat)[1:], densities):
        image = ax.imshow(
            density.numpy(),
            origin="lower",
            extent=extent,
            cmap="viridis",
            vmin=0.0,
            vmax=vmax,
            interpolation="nearest",
        )
    # one bar for the densities: they share the colour scale
    fig.colorbar(image, ax=list(axes.flat)[1:], fraction=0.046, pad=0.04, label="density p(x)")
    for ax, name in zip(axes.flat, names):
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")
        _label_axes(ax)
    return _save(plt, fig, path, title)


def _label_axes(ax: Any) -> None:
    """Axis labels of a panel over the plane (x₁, x₂)."""
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")


def plot_samples_over_data(
    panels: Mapping[str, Tensor],
    data: Tensor,
    path: str | Path,
    title: str = "",
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
) -> Path:
    """Scatter plots of 2-D samples (one panel each, in colour) over the data (grey)."""
    plt = require_matplotlib()
    data = data.detach().cpu().float()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (name, samples) in zip(axes.flat, panels.items()):
        samples = samples.detach().cpu().float()
        ax.scatter(data[:, 0], data[:, 1], s=2, c="0.7", alpha=0.5, label="data")
        ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", alpha=0.5, label="samples")
        if bounds is not None:
            ax.set_xlim(*bounds[0])
            ax.set_ylim(*bounds[1])
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")
        _label_axes(ax)
    axes.flat[0].legend(loc="upper right", markerscale=4, fontsize=8)
    return _save(plt, fig, path, title)


def plot_training_curve(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str = "",
    *,
    key: str = "loss",
) -> Path:
    """``key`` (default the loss) against the step, from a Trainer's history records."""
    plt = require_matplotlib()
    points = [(r["step"], r[key]) for r in history if key in r and "step" in r]
    if not points:
        raise EbmflowError(f"plot_training_curve: no record in the history has {key!r}")
    steps, values = zip(*points)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, values, lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path, title)
