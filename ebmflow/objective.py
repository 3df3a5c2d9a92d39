"""The Objective interface: a training loss for an energy.

``forward(energy, batch, *, generator=None) -> ObjectiveOutput(loss, metrics)``. Objectives
are ``nn.Module`` so that state they keep (replay buffers, running statistics) is saved with
them as buffers. Objectives that need samples take a :class:`~ebmflow.Sampler` in their
constructor. All their randomness (sampler noise, noise levels, buffer draws) comes from
``generator``, which the Trainer owns and checkpoints, so a resumed run is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ebmflow.config import Configurable
from ebmflow.energy import Energy


@dataclass
class ObjectiveOutput:
    """``loss``: a scalar tensor to minimise; ``metrics``: floats for logging."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(nn.Module, Configurable):
    """Base class of objectives.

    ``forward(energy, batch, *, generator)`` returns an :class:`ObjectiveOutput`. An
    objective that sets ``needs_labels = True`` (JEM) gets ``(x, y)`` batches from the
    :class:`~ebmflow.Trainer` (from a dataset's ``sample_with_labels`` or ``data=(x, y)``);
    otherwise batches are the samples ``x`` alone.
    """

    #: whether the Trainer passes ``(x, y)`` batches instead of ``x``.
    needs_labels: bool = False
    #: the smallest noise level σ the objective trains a noise-conditional energy at, or
    #: ``None``; the Trainer records it in its checkpoints, and ``ebmflow evaluate`` and
    #: ``ebmflow sample`` use it when ``--sigma`` is not given.
    sigma_min: float | None = None

    def forward(
        self, energy: Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ObjectiveOutput:
        raise NotImplementedError(
            f"{type(self).__name__} must implement forward(energy, batch, *, generator=None)"
        )
