"""The double-well energy E(x) = a(‖x‖² − 1)².

Its minimum is the unit sphere ‖x‖ = 1; ``a`` sets how deep the well is (a barrier of height
``a`` at the origin). The score has a closed form,

    s(x) = −∇ₓE(x) = −4a(‖x‖² − 1)·x,

so :meth:`DoubleWell.energy_and_score` needs no autograd pass.
"""

from __future__ import annotations

import torch

import ebmflow


class DoubleWell(ebmflow.Energy):
    """E(x) = a(‖x‖² − 1)² for x of any event shape (‖·‖ over all event dimensions).

    Args:
        a: depth of the well, > 0.
        dim: if given, the event shape is ``(dim,)`` and samplers check it.
    """

    def __init__(self, a: float = 1.0, dim: int | None = None) -> None:
        super().__init__()
        self.a = ebmflow.check_positive("double-well", "a", a)
        if dim is not None:
            self.event_shape = (ebmflow.check_positive_int("double-well", "dim", dim),)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        self._check_clean(sigma)
        u = ebmflow.sum_squares(x) - 1.0  # ‖x‖² − 1, shape (B,)
        return self.a * u**2

    def energy_and_score(self, x: torch.Tensor, sigma=None, *, create_graph: bool = False):
        self._check_clean(sigma)
        u = ebmflow.sum_squares(x) - 1.0
        energy = self.a * u**2
        score = -4.0 * self.a * u.view((-1,) + (1,) * (x.ndim - 1)) * x
        if not create_graph:
            return energy.detach(), score.detach()
        return energy, score

    def score(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return self.energy_and_score(x, sigma)[1]

    @staticmethod
    def _check_clean(sigma) -> None:
        if sigma is not None:
            raise ValueError(
                "double-well is a clean energy (noise_conditional = False); sigma must be "
                f"None, got {sigma!r}"
            )
