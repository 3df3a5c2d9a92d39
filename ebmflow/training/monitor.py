"""Non-finite monitoring: NaN or infinite data, losses and gradients stop the run.

Divergence
----------
A NaN or infinite loss or gradient raises :class:`TrainingDivergedError` naming the step.
On the CPU the check runs every step before the update (reading a scalar costs nothing
there), so the bad update is never applied. On accelerators reading a scalar is a device
sync, so the per-step flags are read at the next log step or checkpoint instead: the error
still names the first bad step, and no checkpoint is written after it. A
:class:`~ebmflow.SamplerDivergedError` (or any other ebmflow error) from the objective is
re-raised with the training step added to its message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.errors import EbmflowError, SamplerDivergedError, TrainingDivergedError
from ebmflow.objective import ObjectiveOutput


def check_batch(batch: Any, step: int, total: int) -> None:
    """Raise if the batch's samples (``x`` of an ``(x, y)`` pair) hold a NaN or an infinity:
    one reduction in the common case."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor) or not x.is_floating_point() or math.isfinite(float(x.sum())):
        return
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    n_bad = int(bad.sum())
    if n_bad:
        raise EbmflowError(
            f"training step {step} of {total}: the data batch holds non-finite values (NaN "
            f"or inf) in {n_bad} of {x.shape[0]} rows; the dataset produced them — check "
            "its preprocessing (ebmflow does not replace them)"
        )


def check_output(out: Any, objective: Any) -> None:
    """Raise unless ``out`` (the objective's first output) is an ObjectiveOutput whose loss
    is a scalar with a gradient."""
    name = type(objective).__name__
    if not isinstance(out, ObjectiveOutput):
        raise EbmflowError(
            f"{name}.forward returned a {type(out).__name__}; objectives return "
            f"ebmflow.ObjectiveOutput(loss, metrics)"
        )
    loss = out.loss
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise EbmflowError(f"{name} returned a loss of shape {shape}; expected a scalar tensor")
    if not loss.requires_grad:
        raise EbmflowError(
            f"{name} returned a loss that does not depend on any trainable parameter "
            f"(it has no gradient); did the objective detach the energy's output?"
        )


def grad_norm(params: list[nn.Parameter]) -> Tensor:
    """‖g‖₂ over every gradient (what ``clip_grad_norm_`` computes), as a 0-d tensor."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def with_step(exc: EbmflowError, step: int, total: int) -> EbmflowError:
    """``exc`` (raised by the objective) with ``training step STEP of TOTAL`` in front of
    its message; a copy of the same class (``exc`` itself if its class cannot be rebuilt
    from a message)."""
    prefix = f"training step {step} of {total}"
    if isinstance(exc, SamplerDivergedError):
        return SamplerDivergedError(f"{prefix}: {exc}", step=exc.step, n_chains=exc.n_chains)
    try:
        new = type(exc)(f"{prefix}: {exc}")
    except TypeError:
        return exc
    new.__dict__.update(exc.__dict__)
    return new


class NonFiniteMonitor:
    """Watches each step's loss and gradients for NaN or infinity; raises
    :class:`~ebmflow.TrainingDivergedError` naming the first bad step, from one place.

    ``check_every_step`` (the CPU) reads each step's flag before the update; otherwise the
    flags are kept on the device and read by :meth:`flush` (at log steps and checkpoints).
    ``last_checkpoint`` gives the last checkpoint written (folder, step) for the message.
    """

    def __init__(
        self,
        device: torch.device,
        steps: int,
        what: str,
        params: list[nn.Parameter],
        last_checkpoint: Callable[[], tuple[Path, int] | None],
    ) -> None:
        # the CPU reads a scalar for free: check every step before the update. On
        # accelerators a read is a device sync, so checks are batched at log steps.
        self.check_every_step = device.type == "cpu"
        self.steps, self.what, self.params = steps, what, params
        self.last_checkpoint = last_checkpoint
        self.pending: list[tuple[int, Tensor, Tensor]] = []  # (step, 0 if ok, loss)
        self._one = torch.ones(1, device=device)
        self._fused = True

    def mark(self, tensors: list[Tensor], found: Tensor) -> None:
        """Set ``found`` to 1 if any of ``tensors`` holds a NaN or an infinity.

        One fused kernel (the op ``torch.amp.GradScaler`` uses, scaling by exactly 1);
        where this torch lacks it for the device, a norm per tensor instead.
        """
        if not tensors:
            return
        if self._fused:
            try:
                torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, self._one)
                return
            except (AttributeError, RuntimeError, NotImplementedError):
                self._fused = False
        norms = torch.stack(torch._foreach_norm(tensors))
        found.copy_((~torch.isfinite(norms)).any().reshape(1).to(found.dtype))

    def observe(self, step: int, flag: Tensor, loss: Tensor, *, is_norm: bool) -> None:
        """Check step ``step``: ``flag`` is the gradient norm (``is_norm``) or a flag set by
        :meth:`mark`; ``loss`` the step's loss. Raises now, or keeps the check for
        :meth:`flush`."""
        if self.check_every_step:
            bad = not math.isfinite(flag.item()) if is_norm else flag.item() != 0
            if bad or not math.isfinite(loss.item()):
                self.diverged(step, loss, float(grad_norm(self.params)))
        else:  # 0 when all is finite, else 1 or NaN; read at the next flush
            self.pending.append(
                (step, (flag * 0 if is_norm else flag).reshape(()) + loss * 0, loss)
            )

    def flush(self) -> None:
        """Run the batched NaN/inf checks (accelerators): one device sync."""
        if not self.pending:
            return
        steps, checks, losses = zip(*self.pending)
        self.pending.clear()
        values = torch.stack(list(checks)).tolist()
        for step, value, loss in zip(steps, values, losses):
            if value != 0:
                self.diverged(step, loss)

    def diverged(self, step: int, loss: Tensor, norm: float | None = None) -> None:
        """Raise :class:`~ebmflow.TrainingDivergedError` for step ``step``: with the
        gradient ``norm`` when the check ran before the update (which was then not
        applied), without when the check was batched."""
        last = self.last_checkpoint()
        where = f"; the last checkpoint, {last[0]} at step {last[1]}, is intact" if last else ""
        if norm is None:
            detail = (
                f"the loss ({float(loss):.6g}) or a gradient is NaN or infinite "
                f"({self.what}){where}"
            )
        else:
            detail = (
                f"loss {float(loss):.6g}, gradient norm {norm:.6g} ({self.what}); the "
                f"update was not applied{where}"
            )
        raise TrainingDivergedError(
            f"training diverged at step {step} of {self.steps}: {detail}. Try a smaller "
            f"learning rate, grad_clip, or a smaller sampler step size",
            step=step,
        )
