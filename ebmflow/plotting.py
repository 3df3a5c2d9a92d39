"""Figures through matplotlib, an optional dependency (``pip install ebmflow[plot]``)."""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

from ebmflow.errors import EbmflowError


def require_matplotlib():
    """``matplotlib.pyplot`` with the file-only Agg backend, or a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EbmflowError(
            "figures need matplotlib: pip install matplotlib (or the extra ebmflow[plot])"
        ) from None
    return plt


def plot_samples(samples: Tensor, path: str | Path, title: str = "") -> Path:
    """A scatter plot of 2-D samples, or a grid of images for ``(N, C, H, W)`` samples."""
    plt = require_matplotlib()
    path = Path(path)
    samples = samples.detach().cpu().float()
    if samples.ndim == 2 and samples.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal")
    elif samples.ndim == 4 and samples.shape[1] in (1, 3):
        n = min(samples.shape[0], 64)
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                image = samples[i].permute(1, 2, 0).squeeze(-1)
                ax.imshow(image, cmap="gray" if samples.shape[1] == 1 else None)
    else:
        raise EbmflowError(
            f"cannot plot samples of shape {tuple(samples.shape)}: figures are made for 2-D "
            "points (N, 2) and images (N, 1 or 3, H, W); write .safetensors instead"
        )
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
