"""The Dataset interface: a source of samples, with an exact log-density where one exists."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmflow.config import Configurable
from ebmflow.validation import check_positive_int

Bounds = tuple[tuple[float, float], tuple[float, float]]


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device random numbers are drawn on: the generator's own, or the CPU for ``None``
    (torch's default CPU generator)."""
    return generator.device if generator is not None else torch.device("cpu")


class Dataset(Configurable):
    """Base class of datasets: ``sample(n, generator) -> (n, *event_shape)`` float32.

    Randomness comes only from ``generator``; with ``generator=None`` torch's default
    generator is used, exactly as ``torch.rand`` does. Draws happen on the generator's
    device and the result is then moved to ``device``, so a seeded CPU generator gives the
    same samples on every device.

    Attributes:
        event_shape: the shape of one sample.
        has_log_prob: whether :meth:`log_prob` is available (exact, normalised).
        bounds: for 2-D sets, a box ``((x_lo, x_hi), (y_lo, y_hi))`` holding essentially
            all of the mass (under 1e-8 outside), recommended for grid quadrature of
            normalising constants and NLLs; ``None`` otherwise.
    """

    #: registered name, used in error messages
    name: str = "dataset"
    event_shape: tuple[int, ...]
    has_log_prob: bool = False
    bounds: Bounds | None = None

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` samples, float32, shape ``(n, *event_shape)``."""
        n = check_positive_int(f"{self.name} dataset", "n", n, minimum=0)
        x = self._sample(n, generator).to(torch.float32)
        return x if device is None else x.to(device)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density log p(x), shape ``(n,)``, for datasets with ``has_log_prob``."""
        raise NotImplementedError(
            f"{self.name} dataset has no exact log-density (has_log_prob = False); "
            "log_prob is available for the 2-D sets: 8gaussians, checkerboard, rings, moons, "
            "2spirals"
        )

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample(n, generator)")
