"""The devices and collective of a distributed run: broadcast, all-reduce, metric averaging.

Distributed training (torchrun)
-------------------------------
Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) ``fit`` initialises
``torch.distributed`` from the environment variables torchrun sets (gloo on the CPU, NCCL
on CUDA; a process group that already exists is used as it is) and:

- broadcasts rank 0's parameters at the start, so every rank starts from the same θ;
- shards the data: every rank draws the same *global* batch of ``batch_size`` rows from the
  shared data generator and keeps rows ``rank::world_size``, so 2 ranks × B/2 rows see
  exactly the batch 1 rank × B rows sees;
- gives each rank its own objective generator (seeded from ``seed`` and the rank), so
  sampler chains and replay buffers are rank-local;
- averages gradients after ``backward()`` with one all-reduce of a flat buffer holding every
  gradient and the loss. With losses that are means over the batch, the averaged gradient is
  the gradient of the global-batch loss, so the run matches a single process up to float
  rounding. This is done by hand rather than with ``DistributedDataParallel`` because
  objectives call the energy many times per step (sampler steps, the data term, the
  negative term) and differentiate through scores with ``torch.autograd.grad(...,
  create_graph=True)``: DDP's reducer fires on the parameters' gradient hooks and expects one
  forward and one backward per step, so it breaks on double backward and needs
  ``no_sync``/``find_unused_parameters`` workarounds around sampling. Reducing after
  ``backward()`` is independent of how the objective computes its loss, at the price of not
  overlapping communication with the backward pass. As with DDP, a parameter no rank
  differentiated gets a zero gradient rather than none;
- checks the loss and gradients for NaN/inf after the reduction, so every rank stops at the
  same step;
- writes checkpoints and ``metrics_file`` on rank 0 only: the per-rank objective states and
  generators are gathered to rank 0, which writes the folder while the others wait for its
  result (a write error is raised on every rank). Metrics are averaged over ranks;
- destroys the process group it created when ``fit`` returns or raises. When one rank fails,
  the others' next collective fails too (gloo) or torchrun stops them.
Every rank reads the same checkpoint folder to resume, so it must be on a shared file system
for multi-node runs; resuming needs the same number of ranks (the rank-local state is saved
per rank).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.errors import ConfigError, EbmflowError
from ebmflow.runtime import check_device


def world() -> tuple[int, int]:
    """(rank, world size): from an initialised process group, else torchrun's variables."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(
            f"Trainer: RANK={os.environ.get('RANK')!r} and WORLD_SIZE="
            f"{os.environ.get('WORLD_SIZE')!r} must be integers (torchrun sets them)"
        ) from None


def resolve_device(energy: nn.Module, device: Any, world_size: int) -> torch.device:
    """The device to train on: ``device``, checked to exist here (default: the energy's);
    under torchrun ``"cuda"`` is this rank's ``cuda:LOCAL_RANK``."""
    if device is None:
        first = next(iter(energy.parameters()), None)
        return first.device if first is not None else torch.device("cpu")
    device = check_device(device, "Trainer")
    if device.type == "cuda" and device.index is None and world_size > 1:
        device = check_device(
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))), "Trainer"
        )
    return device


def promoted_dtype(dtypes: list[torch.dtype]) -> torch.dtype:
    """The promoted dtype of ``dtypes`` (at least float32)."""
    out = torch.float32
    for dtype in dtypes:
        out = torch.promote_types(out, dtype)
    return out


class Collective:
    """This rank's side of the run's collectives (no-ops are never called with one rank).

    ``flat`` is the buffer of the last gradient all-reduce (every gradient, then the loss):
    the non-finite check reads it instead of the gradients.
    """

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device
        self.flat: Tensor | None = None
        self._views: list[Tensor] = []

    def start(self) -> bool:
        """Initialise torch.distributed from torchrun's variables; True if created here."""
        if self.world_size == 1:
            return False
        import torch.distributed as dist

        if not dist.is_available():
            raise ConfigError("Trainer: WORLD_SIZE > 1 but this torch has no torch.distributed")
        if dist.is_initialized():
            return False
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init_process_group(
            backend=backend, init_method="env://", rank=self.rank, world_size=self.world_size
        )
        return True

    @staticmethod
    def stop() -> None:
        """Destroy the process group (the one :meth:`start` created)."""
        import torch.distributed as dist

        with contextlib.suppress(Exception):
            dist.destroy_process_group()

    def comm(self, tensor: Tensor) -> Tensor:
        """``tensor`` where the backend can communicate it (CUDA for NCCL)."""
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return tensor.to(self.device)
        return tensor.cpu()

    def broadcast_from_first(self, tensors: list[Tensor]) -> None:
        """Rank 0's values of ``tensors`` on every rank."""
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, params: list[nn.Parameter], loss: Tensor, i: int) -> Tensor:
        """Average every gradient and the loss over ranks with one all-reduce of a flat
        buffer (gradients, then the loss); return the mean loss."""
        import torch.distributed as dist

        flat = self.flat
        if flat is None:
            dtype = promoted_dtype([p.dtype for p in params])
            flat = torch.empty(sum(p.numel() for p in params) + 1, dtype=dtype, device=self.device)
            self.flat = flat
            self._views = list(flat[:-1].split([p.numel() for p in params]))
        with torch.no_grad():
            for p, view in zip(params, self._views):
                if p.grad is None:
                    view.zero_()
                else:
                    view.copy_(p.grad.reshape(-1))
            flat[-1].copy_(loss.detach())
            try:
                dist.all_reduce(flat)
            except RuntimeError as exc:
                raise EbmflowError(
                    f"training step {i + 1}: averaging gradients over {self.world_size} ranks "
                    f"failed; another rank has probably stopped with an error (see its "
                    f"output): {exc}"
                ) from exc
            flat.div_(self.world_size)
            for p, view in zip(params, self._views):
                if p.grad is None:
                    p.grad = view.view_as(p).to(p.dtype).clone()
                else:
                    p.grad.copy_(view.view_as(p))
            return flat[-1].clone()

    def average_metrics(self, means: dict[str, float], owner: str) -> dict[str, float]:
        """The mean over ranks of each metric; raises if ``owner`` (the objective) reported
        different metric names on different ranks."""
        import torch.distributed as dist

        keys = sorted(means)
        tag = float(zlib.crc32(",".join(keys).encode()) % (1 << 24))
        check = self.comm(torch.tensor([tag, -tag], dtype=torch.float64))
        dist.all_reduce(check, op=dist.ReduceOp.MAX)
        if check[0].item() != -check[1].item():
            raise EbmflowError(
                f"{owner} reported different metrics on different "
                f"ranks (this rank: {', '.join(keys) or 'none'}); objectives must report the "
                f"same metric names on every rank"
            )
        if not keys:
            return means
        values = self.comm(torch.tensor([means[k] for k in keys], dtype=torch.float64))
        dist.all_reduce(values)
        return {k: v / self.world_size for k, v in zip(keys, values.tolist())}

    def gather(self, tensor: Tensor) -> list[Tensor] | None:
        """``tensor`` of every rank, on rank 0 (CPU copies); ``None`` on the other ranks."""
        import torch.distributed as dist

        local = self.comm(tensor.detach().contiguous())
        out = [torch.empty_like(local) for _ in range(self.world_size)] if self.rank == 0 else None
        dist.gather(local, out, dst=0)
        return None if out is None else [t.cpu() for t in out]

    def gather_bytes(self, data: bytes) -> list[bytes] | None:
        """``data`` of every rank, on rank 0; ``None`` on the other ranks."""
        import torch.distributed as dist

        length = self.comm(torch.tensor([len(data)]))
        longest = length.clone()
        dist.all_reduce(longest, op=dist.ReduceOp.MAX)
        padded = torch.zeros(int(longest.item()), dtype=torch.uint8)
        if data:
            padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        lengths, parts = self.gather(length), self.gather(padded)
        if lengths is None or parts is None:
            return None
        return [bytes(p[: int(n.item())].tolist()) for n, p in zip(lengths, parts)]

    def first_failed(self, failed: bool) -> bool:
        """Whether rank 0 reports ``failed`` (``failed`` is rank 0's own outcome)."""
        import torch.distributed as dist

        status = self.comm(torch.tensor([1 if failed else 0]))
        dist.broadcast(status, src=0)
        return status.item() != 0

    def on_first_rank(self, work: Callable[[], Any], what: str) -> None:
        """Run ``work`` on rank 0 only (e.g. writing a checkpoint) and let every rank know
        how it went: rank 0 re-raises its own error, the others raise an
        :class:`~ebmflow.EbmflowError` saying that rank 0 failed to ``what``, so no rank
        goes on as if it had succeeded."""
        failure: BaseException | None = None
        if self.rank == 0:
            try:
                work()
            except BaseException as exc:  # reported to every rank below, then re-raised
                failure = exc
        if self.world_size > 1:
            first_failed = self.first_failed(failure is not None)
            if failure is None and first_failed:
                raise EbmflowError(f"rank 0 failed to {what} (see its error)")
        if failure is not None:
            raise failure
