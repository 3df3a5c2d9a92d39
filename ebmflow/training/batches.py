"""Batches of training data: from a Dataset or from a tensor, sharded over ranks.

Randomness
----------
All of it comes from two ``torch.Generator``\\ s the Trainer owns, seeded from ``seed``: the
*data* generator draws batches (``data.sample(batch_size, g_data)`` for a Dataset, a
permutation per epoch for a tensor) and the *objective* generator is passed to
``objective(energy, batch, generator=g_obj)`` (sampler noise, noise levels, replay-buffer
draws). Both are saved in checkpoints, so a resumed run is bit-identical on the CPU (with
the same number of torch threads: CPU reductions are split by thread). The global RNG is
never read or written (an energy with dropout uses it on its own).

Labelled batches
----------------
An objective whose attribute ``needs_labels`` is true (JEM's, which trains p(y|x)) is
called with ``batch = (x, y)``: ``data.sample_with_labels(batch_size, g_data)`` for a
Dataset (which must have that method, e.g. ``digits``), or the same rows of ``x`` and ``y``
for tensor data given as a pair ``(x, y)``. Batches are drawn exactly as without labels
(the same generator calls), the ranks shard both tensors alike, and resuming works the
same. Other objectives get ``x`` alone, even when the data has labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ebmflow.errors import CheckpointError, ConfigError
from ebmflow.training.arguments import shown


class DatasetBatches:
    """Global batches ``data.sample(batch_size, g)`` (with ``labels``:
    ``data.sample_with_labels(batch_size, g)``, an ``(x, y)`` pair); this rank keeps rows
    ``rank::world``."""

    def __init__(
        self,
        data: Any,
        batch_size: int,
        rank: int,
        world: int,
        generator: torch.Generator,
        device: torch.device,
        labels: bool = False,
    ) -> None:
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world
        self.generator, self.device, self.labels = generator, device, labels

    def next(self) -> Tensor | tuple[Tensor, Tensor]:
        if self.labels:
            x, y = self.data.sample_with_labels(self.batch_size, self.generator)
            if self.world > 1:
                x, y = x[self.rank :: self.world].contiguous(), y[self.rank :: self.world]
            return x.to(self.device), y.to(self.device)
        x = self.data.sample(self.batch_size, self.generator)
        if self.world > 1:
            x = x[self.rank :: self.world].contiguous()
        return x.to(self.device)

    def state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        return {"kind": "dataset"}, {}

    def load_state(
        self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], where: str, tensors_file: str
    ) -> None:
        _check_source_kind(state, "dataset", where)


class TensorBatches:
    """Batches of a tensor ``(N, …)``: a permutation of the rows per epoch from ``g``, cut
    into consecutive global batches (the last incomplete one is dropped); this rank keeps
    rows ``rank::world`` of each. With ``labels`` (``(N,)``), batches are ``(x, y)`` pairs
    of the same rows."""

    def __init__(
        self,
        data: Tensor,
        batch_size: int,
        rank: int,
        world: int,
        generator: torch.Generator,
        device: torch.device,
        labels: Tensor | None = None,
    ) -> None:
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world
        self.generator, self.device, self.labels = generator, device, labels
        self.permutation: Tensor | None = None
        self.position = 0

    def next(self) -> Tensor | tuple[Tensor, Tensor]:
        n = self.data.shape[0]
        if self.permutation is None or self.position + self.batch_size > n:
            self.permutation = torch.randperm(n, generator=self.generator).to(self.data.device)
            self.position = 0
        index = self.permutation[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        if self.world > 1:
            index = index[self.rank :: self.world]
        if self.labels is not None:
            return (
                self.data[index].to(self.device),
                self.labels[index.to(self.labels.device)].to(self.device),
            )
        return self.data[index].to(self.device)

    def state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        tensors = {} if self.permutation is None else {"data.permutation": self.permutation}
        return {"kind": "tensor", "rows": self.data.shape[0], "position": self.position}, tensors

    def load_state(
        self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], where: str, tensors_file: str
    ) -> None:
        _check_source_kind(state, "tensor", where)
        if state.get("rows") != self.data.shape[0]:
            raise CheckpointError(
                f"{where}: the checkpoint's run trained on a tensor of {state.get('rows')} "
                f"rows; this Trainer's data has {self.data.shape[0]}"
            )
        rows = self.data.shape[0]
        permutation = tensors.get("data.permutation")
        if permutation is not None and not (
            permutation.dtype == torch.int64
            and permutation.shape == (rows,)
            and torch.equal(permutation.sort().values, torch.arange(rows))
        ):
            raise CheckpointError(
                f"{tensors_file}: data.permutation must be a "
                f"permutation of the {rows} row indices (an int64 tensor of shape ({rows},)); "
                f"the {permutation.dtype} tensor of shape {tuple(permutation.shape)} there is "
                f"not"
            )
        position = state.get("position", 0)
        if (
            not isinstance(position, int)
            or isinstance(position, bool)
            or not (0 <= position <= rows)
        ):
            raise CheckpointError(
                f"{where}: data.position must be an integer from 0 to {rows}, got {shown(position)}"
            )
        self.permutation = None if permutation is None else permutation.to(self.data.device)
        self.position = position


def make_batches(
    data: Any,
    objective: Any,
    batch_size: int,
    rank: int,
    world: int,
    generator: torch.Generator,
    device: torch.device,
) -> DatasetBatches | TensorBatches:
    """The batch source for ``data``; ``(x, y)`` batches when the objective says
    ``needs_labels``."""
    needs_labels = bool(getattr(objective, "needs_labels", False))
    name = type(objective).__name__
    args = (batch_size, rank, world, generator, device)
    labelled = (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    )
    if isinstance(data, Tensor) or labelled:
        x, y = (data[0], data[1]) if labelled else (data, None)
        if not x.is_floating_point():
            raise ConfigError(
                f"Trainer: tensor data of dtype {x.dtype} cannot be fed to an energy; it "
                f"must be a floating-point tensor (convert it, e.g. data.float())"
            )
        if x.ndim < 1 or x.shape[0] < batch_size:
            raise ConfigError(
                f"Trainer: tensor data needs at least batch_size = {batch_size} rows, "
                f"got shape {tuple(x.shape)}"
            )
        bad_rows = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        if bool(bad_rows.any()):
            rows = torch.nonzero(bad_rows).flatten()
            raise ConfigError(
                f"Trainer: data has non-finite values (NaN or inf) in {len(rows)} of "
                f"{x.shape[0]} rows (first: row {int(rows[0])}); remove or repair those "
                "rows — ebmflow does not replace them"
            )
        if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
            raise ConfigError(
                f"Trainer: labelled tensor data (x, y) needs labels of shape "
                f"({x.shape[0]},), one per row of x; got {tuple(y.shape)}"
            )
        if needs_labels and y is None:
            raise ConfigError(
                f"Trainer: {name} needs labelled batches (needs_labels = True); pass "
                f"data=(x, y), a pair of tensors, or a Dataset with "
                f"sample_with_labels(n, generator) such as 'digits'"
            )
        # labels that the objective does not ask for are not passed to it
        return TensorBatches(x, *args, labels=y if needs_labels else None)
    if callable(getattr(data, "sample", None)):
        if needs_labels and not callable(getattr(data, "sample_with_labels", None)):
            raise ConfigError(
                f"Trainer: {name} needs labelled batches (needs_labels = True), but the "
                f"dataset {getattr(data, 'name', type(data).__name__)!r} has no "
                f"sample_with_labels(n, generator); use a labelled dataset such as "
                f"'digits', or pass data=(x, y), a pair of tensors"
            )
        return DatasetBatches(data, *args, labels=needs_labels)
    raise ConfigError(
        f"Trainer: data must be an ebmflow Dataset (with sample(n, generator)), a tensor "
        f"(N, ...) or a pair of tensors (x, y) with labels y of shape (N,), got "
        f"{type(data).__name__}"
    )


def event_shape_mismatch(energy: Any, data: Any) -> tuple[tuple, tuple] | None:
    """``(energy's event shape, data's event shape)`` when both are known and differ (a
    Dataset's ``event_shape``, a tensor's rows), else ``None``."""
    expected = getattr(energy, "event_shape", None)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        data = data[0]
    given = (
        tuple(data.shape[1:]) if isinstance(data, Tensor) else getattr(data, "event_shape", None)
    )
    if expected is None or given is None or tuple(expected) == tuple(given):
        return None
    return tuple(expected), tuple(given)


def check_event_shape(energy: Any, data: Any) -> None:
    """The Trainer's ``data`` must give samples of the shape its energy takes (where both
    shapes are known)."""
    mismatch = event_shape_mismatch(energy, data)
    if mismatch is not None:
        raise ConfigError(
            f"Trainer: {type(energy).__name__} takes samples of shape {mismatch[0]}, but "
            f"the data gives samples of shape {mismatch[1]}; build the energy for the "
            f"data's shape"
        )


def _check_source_kind(state: Mapping[str, Any], kind: str, where: str) -> None:
    """The saved batch source must be of the same kind as this Trainer's data."""
    if state.get("kind") != kind:
        raise CheckpointError(
            f"{where}: the checkpoint's run drew batches from a "
            f"{state.get('kind')} but this Trainer's data is a {kind}"
        )
