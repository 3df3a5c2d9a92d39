"""The Ising model on a square lattice (or any coupling matrix), over binary states.

States are x ∈ {0, 1}^D (``event_space = "binary"``); the spins are s = 2x − 1 ∈ {−1, +1}.
The energy is

    E(x) = −½ sᵀ W s − hᵀ s,      W = sym(J) with a zero diagonal,

so each lattice bond (i, j) contributes −W_ij s_i s_j once. The coupling matrix J and the
field h are parameters (trainable by ``pseudo-likelihood``, ``ratio-matching`` or ``pcd``);
only J's symmetric, off-diagonal part enters the energy (:attr:`IsingEnergy.couplings`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

import ebmflow
from ebmflow_discrete.spaces import check_states


def lattice_couplings(
    side: int, coupling: float = 1.0, *, periodic: bool = True, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The (side², side²) coupling matrix of nearest-neighbour bonds of strength
    ``coupling`` on a side × side square lattice (sites numbered row by row), with periodic
    boundaries (a torus) or free ones. A side of 2 with periodic boundaries would count each
    bond twice; it keeps one."""
    side = ebmflow.check_positive_int("lattice_couplings", "side", side)
    n = side * side
    w = torch.zeros(n, n, dtype=dtype)
    for r in range(side):
        for c in range(side):
            i = r * side + c
            for dr, dc in ((0, 1), (1, 0)):
                rr, cc = r + dr, c + dc
                if periodic:
                    rr, cc = rr % side, cc % side
                elif rr >= side or cc >= side:
                    continue
                j = rr * side + cc
                if j != i:
                    w[i, j] = w[j, i] = coupling
    return w


def neighbour_pairs(couplings: Tensor) -> Tensor:
    """The (P, 2) index pairs i < j with a non-zero coupling (the lattice bonds)."""
    return torch.nonzero(torch.triu(couplings, diagonal=1) != 0)


class IsingEnergy(ebmflow.Energy):
    """Ising model E(x) = −½ sᵀ W s − hᵀ s over x ∈ {0, 1}^D, s = 2x − 1 (module docstring).

    Args:
        side: the lattice is side × side (D = side²) with nearest-neighbour bonds.
        coupling: the bond strength (> 0 ferromagnetic); 0 starts a model to be learned.
        field: a uniform external field h.
        periodic: periodic (torus) or free boundaries.
        couplings: instead of the lattice, any (D, D) coupling matrix (its symmetric,
            off-diagonal part is used); ``side`` is then ignored.
        fields: instead of the uniform field, one per site, length D.
    """

    event_space = "binary"

    def __init__(
        self,
        side: int = 4,
        coupling: float = 0.2,
        field: float = 0.0,
        periodic: bool = True,
        couplings: Sequence[Sequence[float]] | Tensor | None = None,
        fields: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        owner = "ising"
        if couplings is None:
            j = lattice_couplings(side, float(coupling), periodic=periodic)
        else:
            j = torch.as_tensor(couplings, dtype=torch.float32).clone()
            if j.ndim != 2 or j.shape[0] != j.shape[1] or j.shape[0] < 1:
                raise ebmflow.ConfigError(
                    f"{owner}: couplings must be a square (D, D) matrix, got shape {tuple(j.shape)}"
                )
        d = j.shape[0]
        if fields is None:
            h = torch.full((d,), float(field))
        else:
            h = torch.as_tensor(fields, dtype=torch.float32).clone()
            if h.shape != (d,):
                raise ebmflow.ConfigError(
                    f"{owner}: fields must have one value per site, shape ({d},), got "
                    f"{tuple(h.shape)}"
                )
        if not (torch.isfinite(j).all() and torch.isfinite(h).all()):
            raise ebmflow.ConfigError(f"{owner}: couplings and fields must be finite")
        self.coupling_matrix = nn.Parameter(j)
        self.field = nn.Parameter(h)
        self.register_buffer("off_diagonal", 1.0 - torch.eye(d), persistent=False)
        self.event_shape = (d,)

    @property
    def couplings(self) -> Tensor:
        """W = ½(J + Jᵀ) with a zero diagonal, the matrix the energy uses."""
        j = self.coupling_matrix
        return 0.5 * (j + j.T) * self.off_diagonal

    def forward(self, x: Tensor, sigma: ebmflow.Sigma = None) -> Tensor:
        check_states("ising", "binary", x)
        s = 2.0 * x - 1.0
        # sᵀ J s sees only J's symmetric part, so masking the diagonal is all W needs here
        w = self.coupling_matrix * self.off_diagonal
        return -0.5 * ((s @ w) * s).sum(dim=1) - s @ self.field
