"""The tempered ensemble of parallel tempering: R replicas × B chains as one batch.

Row i of a batch of R·B chains (replica-major) is replica k = ⌊i / B⌋ at inverse
temperature β_k. :class:`ReplicaCoordinates` holds the per-row β and the local sampler's
coordinates y = c ⊙ x (c_k = √β_k with ``scale_step_size``); :class:`TemperedEnsemble` is the
energy the local sampler steps on, E_k = E_ref + β_k (E − E_ref) from one evaluation of E on
the whole batch; :func:`retemper` moves cached tempered energies and scores to other
temperatures without evaluating E.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import per_row

#: events with at most this many numbers get per-row factors materialised at the batch's
#: full shape (``per_row``): a product broadcast over a short inner dimension runs an
#: unvectorised loop per row. Larger events broadcast efficiently, and a full copy would
#: cost a batch of memory.
SMALL_EVENT = 256


def per_element(row: Tensor, event_shape: Sequence[int]) -> Tensor:
    """A per-row factor (N,) shaped to multiply a batch (N, *event_shape)."""
    return per_row(row, event_shape, small_event=SMALL_EVENT)


def retemper(
    r: Tensor, e: Tensor, score: Tensor, ref: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor]:
    """Move cached (E_from, s_from) of R·B chains to new temperatures, with r = β_to / β_from
    per chain, shaped by :func:`per_element` for the scores: E_to = r E_from + (1 − r) E_ref,
    s_to likewise."""
    r_row = r.view(r.shape[0], -1)[:, 0]
    if ref is None:
        return r_row * e, r * score
    return torch.lerp(ref[0], e, r_row), torch.lerp(ref[1], score, r)


class ReplicaCoordinates:
    """The rows of a batch of R·B chains, replica-major (row i is replica k = ⌊i / B⌋): their
    inverse temperatures per row and the local sampler's coordinates y = c ⊙ x, c_k = √β_k
    with ``scale_step_size`` (else y = x). :meth:`to_local` and :meth:`from_local` map a
    cached (x, s_k) there and back (:meth:`moved_from_local` after a step). A batch of any
    other size than R·B is refused.
    """

    def __init__(
        self,
        betas: Tensor,
        n_per_replica: int,
        event_shape: Sequence[int],
        scale_step_size: bool,
        owner: str,
    ) -> None:
        # per-row factors (R·B,) and, for the events, (R·B, *event): every product is one
        # multiplication without reshaping the batch to (R, B, …)
        self.owner = owner
        self.betas = betas
        self.n_replicas = betas.shape[0]
        self.n_per_replica = n_per_replica
        self.n_chains = betas.shape[0] * n_per_replica
        self.beta_row = betas.repeat_interleave(n_per_replica)
        self.beta_event = per_element(self.beta_row, event_shape)
        self.c = self.beta_event.sqrt() if scale_step_size else None
        self.inv_c = None if self.c is None else self.c.reciprocal()

    def check(self, t: Tensor) -> Tensor:
        """``t`` itself, after checking it has one row per chain of the ensemble."""
        if t.shape[0] != self.n_chains:
            raise ebmflow.ConfigError(
                f"{self.owner}: the local sampler evaluated a batch of {t.shape[0]} chains; the "
                f"tempered energy is defined on the {self.n_replicas} replicas × "
                f"{self.n_per_replica} chains = {self.n_chains} chains of the ensemble"
            )
        return t

    @overload
    def to_local(self, x: Tensor, score: Tensor) -> tuple[Tensor, Tensor]: ...
    @overload
    def to_local(self, x: Tensor, score: None = None) -> tuple[Tensor, None]: ...

    def to_local(self, x: Tensor, score: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(y, s_y) = (c x, s_k / c): a cached position and tempered score in the local
        sampler's coordinates."""
        if self.c is None or self.inv_c is None:
            return x, score
        y = self.check(x) * self.c
        return y, None if score is None else score * self.inv_c

    def from_local(self, y: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """(x, s_k) = (y / c, c s_y), the inverse of :meth:`to_local`."""
        if self.c is None or self.inv_c is None:
            return y, score
        return self.check(y) * self.inv_c, score * self.c

    def moved_from_local(
        self, y_new: Tensor, s_y_new: Tensor, x: Tensor, score: Tensor, y: Tensor, s_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Like :meth:`from_local` for the result of a local step from (x, s_k) = (y / c,
        c s_y), by increments x + (y' − y) / c: a chain the step left in place keeps its
        cached x and s_k bit for bit (no rounding through c and 1/c)."""
        if self.c is None or self.inv_c is None:
            return y_new, s_y_new
        return (
            torch.addcmul(x, y_new - y, self.inv_c),
            torch.addcmul(score, s_y_new - s_y, self.c),
        )

    def x_of(self, y: Tensor) -> Tensor:
        """The positions x = y / c of a batch in the local coordinates."""
        return self.check(y) if self.inv_c is None else self.check(y) * self.inv_c


class TemperedEnsemble(ebmflow.Energy):
    """The energy the local sampler sees: row i of a batch of R·B chains is replica
    k = ⌊i / B⌋ and gets E_k = E_ref + β_k (E − E_ref), from *one* evaluation of E (and of
    E_ref) on the whole batch.

    With ``scale_step_size`` the batch is in the coordinates y = c ⊙ x, c_k = √β_k, and
    ``energy_and_score(y)`` returns (E_k(x), s_k(x) / c_k) at x = y / c (see the module
    docstring); :attr:`coordinates` (:class:`ReplicaCoordinates`) maps chains there and back.
    """

    def __init__(
        self,
        energy: ebmflow.Energy,
        reference: ebmflow.Energy | None,
        betas: Tensor,
        n_per_replica: int,
        event_shape: Sequence[int],
        scale_step_size: bool,
        owner: str,
    ) -> None:
        super().__init__()
        self.energy = energy
        self.reference = reference
        # plain (unregistered) attributes: the ensemble is a view, built once per ladder
        self.event_shape = energy.event_shape
        self.noise_conditional = energy.noise_conditional
        self.has_energy = energy.has_energy
        self.coordinates = ReplicaCoordinates(
            betas, n_per_replica, event_shape, scale_step_size, owner
        )

    def forward(self, y: Tensor, sigma=None) -> Tensor:
        coords = self.coordinates
        x = coords.x_of(y)
        e = self.energy(x, sigma)
        if self.reference is None:
            return coords.beta_row * e
        return torch.lerp(self.reference(x), e, coords.beta_row)

    def energy_and_score(self, y, sigma=None, *, create_graph=False):
        coords = self.coordinates
        x = coords.x_of(y)
        e, s = self.energy.energy_and_score(x, sigma, create_graph=create_graph)
        if self.reference is None:
            # s_y = β s / c = c s when scaled (c = √β): one multiplication
            factor = coords.beta_event if coords.c is None else coords.c
            return coords.beta_row * e, factor * s
        e_ref, s_ref = self.reference.energy_and_score(x, create_graph=create_graph)
        e_k = torch.lerp(e_ref, e, coords.beta_row)  # E_ref + β (E − E_ref)
        s_k = torch.lerp(s_ref, s, coords.beta_event)
        if coords.inv_c is not None:
            s_k = s_k * coords.inv_c
        return e_k, s_k

    def score(self, y, sigma=None):
        return self.energy_and_score(y, sigma)[1]
