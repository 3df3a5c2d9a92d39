"""A neural energy over binary vectors: ebmflow's ``mlp`` energy on x ∈ {0, 1}^D."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

import ebmflow
from ebmflow_discrete.spaces import check_states


class BinaryMLPEnergy(ebmflow.Energy):
    """E(x) = f(x) for x ∈ {0, 1}^dim, f the MLP ``dim → widths → 1`` of the ``mlp`` energy.

    Args:
        dim: D, the event is (D,).
        widths: hidden widths.
        activation: one of ``ebmflow.extend.ACTIVATIONS``.
    """

    event_space = "binary"

    def __init__(
        self, dim: int = 16, widths: Sequence[int] = (64, 64), activation: str = "silu"
    ) -> None:
        super().__init__()
        self.net = ebmflow.create(
            "energy", "mlp", dim=dim, widths=list(widths), activation=activation
        )
        self.event_shape = (int(dim),)

    def forward(self, x: Tensor, sigma: ebmflow.Sigma = None) -> Tensor:
        check_states("binary-mlp", "binary", x)
        return self.net(x)
