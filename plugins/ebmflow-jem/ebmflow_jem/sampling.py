"""Class-conditional sampling from a classifier energy, and a figure of the samples.

For a classifier energy (:class:`~ebmflow_jem.ClassifierEnergy`) the class-conditional
energy is E(x | y) = −f(x)[y], i.e. p(x | y) ∝ exp(f(x)[y]); ``ebmflow.condition(energy,
y)`` builds it, and any sampler draws from it. :func:`sample_class` runs that from
uniform noise (or given starts) with JEM's SGLD by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_jem.objective import DEFAULT_SAMPLER


def sample_class(
    energy: ebmflow.Energy,
    y: int | Tensor,
    n: int | None = None,
    *,
    sampler: Any = None,
    n_steps: int = 100,
    x0: Tensor | None = None,
    init_low: float = -1.0,
    init_high: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Samples of p(x | y) ∝ exp(f(x)[y]): ``n_steps`` sampler steps on
    ``ebmflow.condition(energy, y)``.

    Args:
        energy: a classifier energy (accepts ``y=`` in forward), with an ``event_shape``.
        y: the class, an int, or ``(n,)`` integer labels (one per chain).
        n: the number of chains (default: ``len(y)`` for a tensor ``y``, else that of
            ``x0``).
        sampler: an ``ebmflow.Sampler``, a registered name or a config dict; default JEM's
            SGLD (``langevin``, ``step_size=1``, ``noise_scale=0.01``).
        n_steps: sampler steps.
        x0: chain starts ``(n, *event_shape)``; default U[init_low, init_high]^d from
            ``generator``.
        generator: the only source of randomness.

    Returns:
        the samples ``(n, *event_shape)``, detached.
    """
    owner = "sample_class"
    labels = torch.as_tensor(y)
    if n is None:
        if labels.ndim == 1:
            n = labels.shape[0]
        elif x0 is not None:
            n = x0.shape[0]
        else:
            raise ebmflow.ConfigError(
                f"{owner}: give n, the number of samples (y is a single class)"
            )
    n = ebmflow.check_positive_int(owner, "n", n)
    n_steps = ebmflow.check_positive_int(owner, "n_steps", n_steps, minimum=0)
    if labels.ndim == 1 and labels.shape[0] != n:
        raise ebmflow.ConfigError(f"{owner}: y has {labels.shape[0]} labels for n = {n} samples")
    if x0 is None:
        if energy.event_shape is None:
            raise ebmflow.ConfigError(
                f"{owner}: {type(energy).__name__} declares no event_shape; "
                "pass x0, the chain starts"
            )
        if not init_low < init_high:
            raise ebmflow.ConfigError(
                f"{owner}: init_low must be < init_high, got {init_low!r}, {init_high!r}"
            )
        device = generator.device if generator is not None else torch.device("cpu")
        x0 = torch.rand((n, *energy.event_shape), generator=generator, device=device)
        x0 = x0.mul_(init_high - init_low).add_(init_low)
        param = next(energy.parameters(), None)
        if param is not None:
            x0 = x0.to(device=param.device, dtype=param.dtype)
    elif x0.shape[0] != n:
        raise ebmflow.ConfigError(f"{owner}: x0 has {x0.shape[0]} rows for n = {n} samples")
    conditional = ebmflow.condition(energy, labels.to(x0.device))
    runner = ebmflow.build_sampler("jem", sampler, DEFAULT_SAMPLER)
    return runner.run(conditional, x0, n_steps, generator=generator).samples.detach()


def class_grid(
    energy: ebmflow.Energy,
    per_class: int = 8,
    *,
    classes: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """``per_class`` samples of every class, ``(n_classes, per_class, *event_shape)``; one
    batched run over all classes. ``classes`` default to ``range(energy.n_classes)``;
    ``kwargs`` go to :func:`sample_class`."""
    if classes is None:
        n_classes = getattr(energy, "n_classes", None)
        if n_classes is None:
            raise ebmflow.ConfigError(
                "class_grid: the energy does not say n_classes; pass classes="
            )
        classes = range(n_classes)
    classes = list(classes)
    per_class = ebmflow.check_positive_int("class_grid", "per_class", per_class)
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(per_class)
    samples = sample_class(energy, labels, generator=generator, **kwargs)
    return samples.reshape(len(classes), per_class, *samples.shape[1:])


def plot_class_grid(
    samples: Tensor,
    path: str | Path,
    *,
    classes: Sequence[Any] | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    title: str = "",
) -> Path:
    """Write a figure with one row per class: ``samples`` is ``(K, m, C, H, W)`` (as
    :func:`class_grid` returns) with C = 1 (grey) or 3; pixels are shown on
    ``value_range`` (values outside are clipped for display only). Needs matplotlib."""
    from ebmflow.extend import require_matplotlib

    if not isinstance(samples, Tensor) or samples.ndim != 5 or samples.shape[2] not in (1, 3):
        got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise ebmflow.ConfigError(
            f"plot_class_grid: samples must be (n_classes, per_class, 1 or 3, H, W), got {got}"
        )
    plt = require_matplotlib()
    n_rows, n_cols = samples.shape[:2]
    classes = list(range(n_rows)) if classes is None else list(classes)
    low, high = value_range
    images = samples.detach().cpu().float().clamp(low, high)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(0.8 * n_cols + 0.4, 0.8 * n_rows + 0.4),
        squeeze=False,
        gridspec_kw={"wspace": 0.05, "hspace": 0.05},
    )
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            image = images[r, c].permute(1, 2, 0).squeeze(-1)
            if image.ndim == 3:
                image = (image - low) / (high - low)
            ax.imshow(image.numpy(), cmap="gray" if image.ndim == 2 else None, vmin=low, vmax=high)
        axes[r][0].set_ylabel(str(classes[r]), rotation=0, labelpad=12, va="center")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


__all__ = ["DEFAULT_SAMPLER", "class_grid", "plot_class_grid", "sample_class"]
