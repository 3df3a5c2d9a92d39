"""A TensorBoard logger for the Trainer (``pip install 'ebmflow[tensorboard]'``).

:class:`TensorBoardLogger` is a :class:`~ebmflow.training.callbacks.Callback` that writes, on
rank 0, through ``torch.utils.tensorboard``:

- at each log record, the scalars ``train/loss``, ``train/lr``, ``train/grad_norm`` and every
  metric the objective reports: energies (``e_data``, ``e_neg``, ``energy_gap`` and other
  names with ``e_`` or ``energy``) under ``energy/``, acceptance rates under ``sampler/``,
  the rest under ``objective/``;
- every ``sample_every`` steps and at the last step, a look at what the energy has learned:
  for 2-D data the figure ``samples`` (samples over the data, beside exp(−E) on the data's
  box; needs matplotlib), for images the image grid ``samples``; with the scalars
  ``energy/data`` and ``energy/samples`` (mean energies of a data batch and of those
  samples) and ``sampler/figure_acceptance_rate`` for Metropolis samplers;
- the run's tables as the text ``run`` once.

The samples come from their own generator, seeded from the run's seed and the step, so
logging changes nothing about training: a run with the logger is bit-identical to one
without.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch
from torch import Tensor

from ebmflow.errors import ConfigError, EbmflowError
from ebmflow.seeding import derive_seed
from ebmflow.training.callbacks import Callback

#: what to install for the logger, as its error says it.
INSTALL_HINT = "pip install 'ebmflow[tensorboard]'  (or: pip install tensorboard)"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be imported (the tensorboard package)."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of the log-record key ``key``."""
    if key in ("loss", "lr", "grad_norm"):
        return f"train/{key}"
    if "acceptance" in key:
        return f"sampler/{key}"
    if key.startswith("e_") or "energy" in key:
        return f"energy/{key}"
    return f"objective/{key}"


class TensorBoardLogger(Callback):
    """Log a Trainer's run to TensorBoard event files in ``log_dir`` (see the module
    docstring for what is logged); view it with ``tensorboard --logdir log_dir``.

    Args:
        log_dir: the folder of the event files.
        sample_every: steps between sample figures (default: a tenth of the run, at least
            ``log_every``); ``0`` draws none.
        n_samples: chains drawn for a figure (default 512 for 2-D data, 64 for images).
        sampler: the sampler of the figures: a :class:`~ebmflow.Sampler`, a registered name
            or a config dict. Default: the objective's own sampler (contrastive divergence,
            JEM); annealed Langevin down to the objective's ``sigma_min`` for a
            noise-conditional energy; else Langevin with steps of 1% of the data variance.
        sampler_steps: steps of the figure sampler (default 100; annealed Langevin takes its
            own length).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        sample_every: int | None = None,
        n_samples: int | None = None,
        sampler: Any = None,
        sampler_steps: int = 100,
    ) -> None:
        if not tensorboard_available():
            raise EbmflowError(f"TensorBoardLogger needs tensorboard: {INSTALL_HINT}")
        for name, value in (("sample_every", sample_every), ("n_samples", n_samples)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(
                    f"TensorBoardLogger: {name} must be an integer ≥ 0, got {value!r}"
                )
        self.log_dir = str(log_dir)
        self.sample_every = sample_every
        self.n_samples = n_samples
        self.sampler = sampler
        self.sampler_steps = sampler_steps
        self.writer: Any = None

    def on_start(self, trainer: Any) -> None:
        if trainer.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(self.log_dir, flush_secs=10)
        if self.sample_every is None:
            self.sample_every = max(trainer.log_every, trainer.steps // 10)
        run = json.dumps(trainer.run_config(), indent=2, default=str)
        self.writer.add_text("run", f"```\n{run}\n```", trainer.step)

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(scalar_tag(key), value, record["step"])

    def on_step(self, trainer: Any, step: int, output: Any) -> None:
        every = self.sample_every
        if self.writer is None or not every or not (step % every == 0 or step == trainer.steps):
            return
        self.write_samples(trainer, step)

    def on_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # -- the sample figure -------------------------------------------------------------------

    def write_samples(self, trainer: Any, step: int) -> None:
        """Draw samples from the energy now and write the figure and the energy scalars."""
        energy, objective = trainer.energy, trainer.objective
        shape = tuple(getattr(energy, "event_shape", None) or ())
        is_2d, is_image = shape == (2,), len(shape) == 3 and shape[0] in (1, 3)
        if not (is_2d or is_image):
            return
        n = self.n_samples or (512 if is_2d else 64)
        generator = torch.Generator(device=trainer.device).manual_seed(
            derive_seed(trainer.seed, "tensorboard", step)
        )
        data = _data_batch(trainer.data, n, derive_seed(trainer.seed, "tensorboard", step))
        data = data.to(trainer.device)
        sigma = getattr(objective, "sigma_min", None) if energy.noise_conditional else None
        if energy.noise_conditional and sigma is None:
            return  # no noise level to show the energy at
        sampler = self._figure_sampler(trainer.host, energy, objective, data, sigma)
        run_sigma = None if sampler.name == "annealed-langevin" else sigma
        spread = float(getattr(sampler, "sigmas", [data.std()])[0])
        x0 = data.mean(0) + spread * torch.randn(
            data.shape, generator=generator, device=data.device, dtype=data.dtype
        )
        steps = None if hasattr(sampler, "total_steps") else self.sampler_steps
        with torch.enable_grad():
            result = sampler.run(energy, x0, steps, sigma=run_sigma, generator=generator)
        samples = result.samples.detach()
        with torch.no_grad():
            self.writer.add_scalar("energy/data", float(energy(data, sigma).mean()), step)
            self.writer.add_scalar("energy/samples", float(energy(samples, sigma).mean()), step)
        if "acceptance_rate" in result.diagnostics:
            rate = float(result.diagnostics["acceptance_rate"])
            self.writer.add_scalar("sampler/figure_acceptance_rate", rate, step)
        if is_image:
            low, high = float(data.min()), float(data.max())
            grid = ((samples.clamp(low, high) - low) / max(high - low, 1e-12)).cpu()
            self.writer.add_images("samples", grid, step)
        else:
            from ebmflow.plotting import matplotlib_available

            if matplotlib_available():
                self.writer.add_figure("samples", _figure_2d(energy, samples, data, sigma), step)

    def _figure_sampler(
        self, host: Any, energy: Any, objective: Any, data: Tensor, sigma_min: float | None
    ) -> Any:
        """The sampler of the figures (see the class docstring)."""
        from ebmflow.samplers.base import Sampler

        if self.sampler is not None:
            if not isinstance(self.sampler, Sampler):
                self.sampler = host.create("sampler", self.sampler)
            return self.sampler
        own = getattr(objective, "sampler", None)
        if isinstance(own, Sampler) and not energy.noise_conditional:
            return own
        if sigma_min is not None:
            sigma_max = float(getattr(objective, "sigma_max", 0.0) or 0.0)
            sigma_max = max(sigma_max, 2 * sigma_min, float(data.std()))
            annealed = host.create(
                "sampler",
                "annealed-langevin",
                noise_schedule={
                    "name": "geometric",
                    "sigma_max": sigma_max,
                    "sigma_min": sigma_min,
                },
                n_levels=10,
                steps_per_level=max(1, self.sampler_steps // 10),
                epsilon=0.4 * sigma_min**2,  # steps of a fifth of σ² at every level
            )
            return annealed
        return host.create("sampler", "langevin", step_size=0.01 * float(data.var()))


def _data_batch(data: Any, n: int, seed: int) -> Tensor:
    """``n`` data points (fewer when the data has fewer) without touching the run's streams."""
    if hasattr(data, "sample"):
        return data.sample(n, torch.Generator().manual_seed(seed))
    x = data[0] if isinstance(data, (tuple, list)) else data
    return x[:n]


def _figure_2d(energy: Any, samples: Tensor, data: Tensor, sigma: Any) -> Any:
    """Samples over the data, beside the density exp(−E) normalised on the shown box."""
    from ebmflow.plotting import require_matplotlib

    plt = require_matplotlib()
    # the data's box with a margin: a few stray samples must not shrink the data to a dot
    shown = data.detach().cpu().float()
    low, high = shown.min(0).values, shown.max(0).values
    pad = 0.25 * (high - low).clamp(min=1e-3)
    low, high = low - pad, high + pad
    n = 100
    xs = torch.linspace(float(low[0]), float(high[0]), n)
    ys = torch.linspace(float(low[1]), float(high[1]), n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    param = next(iter(energy.parameters()), None)
    if param is not None:
        grid = grid.to(device=param.device, dtype=param.dtype)
    with torch.no_grad():
        e = energy(grid, sigma).double().cpu().reshape(n, n)
    density = torch.softmax(-e.flatten(), 0).reshape(n, n).numpy()
    data_cpu, samples_cpu = data.detach().cpu().float(), samples.detach().cpu().float()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.2), layout="constrained")
    left.scatter(data_cpu[:, 0], data_cpu[:, 1], s=2, c="0.7", alpha=0.5, label="data")
    left.scatter(samples_cpu[:, 0], samples_cpu[:, 1], s=2, c="tab:red", alpha=0.5, label="samples")
    left.legend(loc="upper right", markerscale=4, fontsize=8)
    extent = (float(low[0]), float(high[0]), float(low[1]), float(high[1]))
    image = right.imshow(density, origin="lower", extent=extent, cmap="viridis")
    fig.colorbar(image, ax=right, label="exp(−E), normalised on the box")
    for ax, title in ((left, "samples over data"), (right, "learned density")):
        ax.set(xlabel="x₁", ylabel="x₂", title=title, xlim=extent[:2], ylim=extent[2:])
    return fig
