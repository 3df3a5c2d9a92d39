"""The Potts model on a square lattice (or any coupling matrix), over one-hot categories.

States are x ∈ {e₁, …, e_q}^N, one one-hot vector of q categories per site
(``event_space = "categorical"``, event shape (N, q)). The energy is

    E(x) = −½ Σ_ij W_ij ⟨x_i, x_j⟩ − Σ_i ⟨h_i, x_i⟩,     W = sym(J), zero diagonal,

so a bond (i, j) contributes −W_ij when both sites take the same category. With q = 2 it
is an Ising model with couplings W/2 (up to a constant).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

import ebmflow
from ebmflow_discrete.ising import lattice_couplings
from ebmflow_discrete.spaces import check_states


class PottsEnergy(ebmflow.Energy):
    """q-state Potts model over one-hot sites (module docstring).

    Args:
        side: the lattice is side × side (N = side² sites) with nearest-neighbour bonds.
        q: the number of categories, ≥ 2.
        coupling: the bond strength.
        periodic: periodic (torus) or free boundaries.
        couplings: instead of the lattice, any (N, N) coupling matrix.
        fields: per-site, per-category fields h, shape (N, q); default zero.
    """

    event_space = "categorical"

    def __init__(
        self,
        side: int = 3,
        q: int = 3,
        coupling: float = 0.5,
        periodic: bool = True,
        couplings: Sequence[Sequence[float]] | Tensor | None = None,
        fields: Sequence[Sequence[float]] | Tensor | None = None,
    ) -> None:
        super().__init__()
        owner = "potts"
        q = ebmflow.check_positive_int(owner, "q", q, minimum=2)
        if couplings is None:
            j = lattice_couplings(side, float(coupling), periodic=periodic)
        else:
            j = torch.as_tensor(couplings, dtype=torch.float32).clone()
            if j.ndim != 2 or j.shape[0] != j.shape[1] or j.shape[0] < 1:
                raise ebmflow.ConfigError(
                    f"{owner}: couplings must be a square (N, N) matrix, got shape {tuple(j.shape)}"
                )
        n = j.shape[0]
        h = torch.zeros(n, q) if fields is None else torch.as_tensor(fields, dtype=torch.float32)
        if h.shape != (n, q):
            raise ebmflow.ConfigError(
                f"{owner}: fields must have shape (sites, q) = ({n}, {q}), got {tuple(h.shape)}"
            )
        self.coupling_matrix = nn.Parameter(j)
        self.fields = nn.Parameter(h.clone())
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n), persistent=False)
        self.event_shape = (n, q)

    @property
    def couplings(self) -> Tensor:
        """W = ½(J + Jᵀ) with a zero diagonal."""
        j = self.coupling_matrix
        return 0.5 * (j + j.T) * self.off_diagonal

    def forward(self, x: Tensor, sigma: ebmflow.Sigma = None) -> Tensor:
        check_states("potts", "categorical", x)
        neighbours = torch.einsum("ij,bjq->biq", self.couplings, x)
        return -0.5 * (neighbours * x).sum(dim=(1, 2)) - (x * self.fields).sum(dim=(1, 2))
