"""The Trainer: fits any Objective on any Energy; checkpoints, exact resume, EMA, torchrun.

One training step, for the batch ``x`` of step ``i`` (``i`` = 0, 1, …):

    lr_i = lr · f(i)                                   (f: the learning-rate schedule)
    L    = objective(energy, x, generator=g_obj).loss
    g    = ∇_θ L                (averaged over ranks under torchrun)
    g    = g · min(1, c / ‖g‖)   (with ``grad_clip=c``)
    θ    = optimizer step(θ, g, lr_i)
    θ̄    = d · θ̄ + (1 − d) · θ  (with ``ema=d``)

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

Divergence
----------
A NaN or infinite loss or gradient raises :class:`TrainingDivergedError` naming the step.
On the CPU the check runs every step before the update (reading a scalar costs nothing
there), so the bad update is never applied. On accelerators reading a scalar is a device
sync, so the per-step flags are read at the next log step or checkpoint instead: the error
still names the first bad step, and no checkpoint is written after it. A
:class:`~ebmflow.SamplerDivergedError` (or any other ebmflow error) from the objective is
re-raised with the training step added to its message.

Checkpoints (``checkpoint_dir``)
--------------------------------
A training checkpoint is an ordinary ebmflow checkpoint folder (see
:mod:`ebmflow.checkpoint`), written atomically with
:func:`~ebmflow.checkpoint.write_checkpoint_folder`, plus the training state::

    config.json            the energy's component record (what ebmflow.save writes) and
                           metadata.training = {step, steps, weights: "ema" | "raw", ema,
                           world_size}
    model.safetensors      the energy's weights: the EMA weights θ̄ when ema is on
    arguments.safetensors  the energy's tensor constructor arguments (only if it has any)
    training.json          step, the run config (tables as in TOML) and Trainer arguments,
                           the optimizer's state dict without its tensors, the data cursor,
                           the metrics of the current logging interval
    training.safetensors   the optimizer's tensors (optimizer.state.<i>.<name>), generator
                           states (generator.data, generator.objective.rank<r>), the raw
                           weights θ when ema is on (weights.<name>), the epoch's
                           permutation for tensor data (data.permutation)
    objective.safetensors  objective.state_dict() (replay buffers, chains); with several
                           ranks one copy per rank, keys prefixed rank<r>.
    metrics.jsonl          the logged metrics so far, one JSON object per line

So ``ebmflow.load(checkpoint_dir)`` returns the energy — with the EMA weights when EMA is
on, which is what sampling and evaluation want — and ``ebmflow evaluate checkpoint_dir``
works on it. :meth:`Trainer.resume` and ``fit(resume=True)`` read the rest. There is no
pickle: tensors are safetensors, everything else JSON.

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
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.checkpoint import (
    ARGUMENTS_FILE,
    MARKERS,
    WEIGHTS_FILE,
    component_config,
    component_of,
    encode_component,
    encode_value,
    read_bytes,
    read_json,
    read_tensors,
    resolve,
    write_checkpoint_folder,
)
from ebmflow.energy import Energy
from ebmflow.errors import (
    CheckpointError,
    ConfigError,
    EbmflowError,
    SamplerDivergedError,
    TrainingDivergedError,
    first_line,
    is_out_of_memory,
)
from ebmflow.objective import Objective, ObjectiveOutput
from ebmflow.registry import PluginHost, default_host
from ebmflow.seeding import derive_seed
from ebmflow.validation import MAX_SEED, MAX_STEPS

#: Files a training checkpoint adds to the energy's checkpoint folder.
TRAINING_STATE_FILE = "training.json"
TRAINING_TENSORS_FILE = "training.safetensors"
OBJECTIVE_FILE = "objective.safetensors"
METRICS_FILE = "metrics.jsonl"

#: ``optimizer=`` names and the ``torch.optim`` classes they build.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}

#: ``lr_schedule=`` names and the arguments each accepts (with defaults).
LR_SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "linear-warmup": {"warmup": 0},
    "cosine": {"warmup": 0, "min_factor": 0.0, "steps": None},
}

_RECORD_KEYS = ("step", "loss", "grad_norm", "lr")

#: A batch of 2**31 rows or more could not be allocated anyway (step counts and seeds are
#: bounded by ``ebmflow.validation.MAX_STEPS`` and ``MAX_SEED``).
MAX_BATCH_SIZE = 2**31 - 1

#: ``[train]`` keys that a resumed run may change (see :meth:`Trainer.load_checkpoint`):
#: they shape the rest of the run, not the state saved so far, so the checkpoint continues
#: exactly under the new values. The optimizer's ``lr`` may change too (it is applied to the
#: parameter groups). Any other change is refused, naming the keys.
RESUMABLE_TRAIN_KEYS = ("steps", "lr_schedule", "grad_clip", "checkpoint_every", "log_every",
                        "progress", "compile")


# -- argument checks --------------------------------------------------------------------


def _int_arg(name: str, value: Any, minimum: int, *, optional: bool = False,
             maximum: int = MAX_STEPS) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        accepted = f"an integer ≥ {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"Trainer: {name} must be {accepted}, got {value!r}")
    if value > maximum:
        raise ConfigError(f"Trainer: {name} must be an integer from {minimum} to {maximum}, "
                          f"got {value!r}")
    return value


def _positive_arg(name: str, value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"Trainer: {name} must be a number > 0 or None, got {value!r}")
    return float(value)


def _check_names(owner: str, given: Mapping[str, Any], accepted: Sequence[str]) -> None:
    import difflib

    for key in given:
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{owner}: unknown argument {key!r}{hint}; accepted: "
                f"{', '.join(accepted) or 'none'}"
            )


def _spec(what: str, spec: Any, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **arguments}`` as (name, arguments)."""
    if isinstance(spec, str):
        name, arguments = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        arguments = dict(spec)
        name = arguments.pop("name")
    else:
        raise ConfigError(
            f"Trainer: {what} must be a name or a dict with a 'name' key (one of "
            f"{', '.join(names)}), got {spec!r}"
        )
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Trainer: unknown {what} {name!r}{hint} Accepted: {', '.join(names)}"
        )
    return name, arguments


def _make_optimizer(spec: Any, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """``torch.optim`` optimizer from ``"adam"``, ``{"name": "adam", "lr": 1e-3, ...}`` or a
    callable ``params -> Optimizer``."""
    if callable(spec) and not isinstance(spec, (str, Mapping)):
        optimizer = spec(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"Trainer: the optimizer factory returned a {type(optimizer).__name__}, "
                f"not a torch.optim.Optimizer"
            )
        return optimizer
    name, arguments = _spec("optimizer", spec, list(OPTIMIZERS))
    cls = getattr(torch.optim, OPTIMIZERS[name])
    accepted = [p for p in inspect.signature(cls).parameters if p != "params"]
    _check_names(f"Trainer: optimizer {name!r}", arguments, accepted)
    if isinstance(arguments.get("betas"), list):  # TOML and JSON arrays are lists
        arguments["betas"] = tuple(arguments["betas"])
    for key, value in arguments.items():  # torch takes lr = inf and diverges at step 1
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"Trainer: optimizer {name!r}: {key} must be finite, got "
                              f"{value!r}")
    try:
        return cls(params, **arguments)
    except (TypeError, ValueError, IndexError, KeyError) as exc:  # e.g. betas = [0.9]
        raise ConfigError(f"Trainer: optimizer {name!r}: {type(exc).__name__}: "
                          f"{first_line(exc)} (arguments {arguments})") from None


class LRSchedule:
    """The learning-rate factor f(i) of step ``i`` (0-based): lr_i = lr · f(i).

    - ``constant``: f = 1.
    - ``linear-warmup`` (``warmup`` = W): f = min(1, (i + 1) / W).
    - ``cosine`` (``warmup`` = W, ``min_factor`` = m, ``steps`` = T, default the Trainer's
      ``steps``): the warm-up above, then f = m + (1 − m) · ½ (1 + cos(π (i − W) / (T − W))).
    """

    def __init__(self, spec: Any, steps: int) -> None:
        name, arguments = _spec("lr_schedule", spec, list(LR_SCHEDULES))
        defaults = LR_SCHEDULES[name]
        _check_names(f"Trainer: lr_schedule {name!r}", arguments, list(defaults))
        values = {**defaults, **arguments}
        self.name = name
        self.warmup = _int_arg("lr_schedule warmup", values.get("warmup", 0), 0)
        min_factor = values.get("min_factor", 0.0)
        if not (isinstance(min_factor, (int, float)) and not isinstance(min_factor, bool)
                and 0.0 <= min_factor <= 1.0):
            raise ConfigError(
                f"Trainer: lr_schedule min_factor must be a number in [0, 1], got "
                f"{min_factor!r}"
            )
        self.min_factor = float(min_factor)
        total = values.get("steps")
        self.steps = steps if total is None else _int_arg("lr_schedule steps", total, 1)

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / self.warmup
        if self.name != "cosine":
            return 1.0
        span = max(1, self.steps - self.warmup)
        progress = min(1.0, (i - self.warmup) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_factor + (1.0 - self.min_factor) * cosine


# -- randomness and data ----------------------------------------------------------------


def _check_batch(batch: Any, step: int, total: int) -> None:
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


class _DatasetBatches:
    """Global batches ``data.sample(batch_size, g)`` (with ``labels``:
    ``data.sample_with_labels(batch_size, g)``, an ``(x, y)`` pair); this rank keeps rows
    ``rank::world``."""

    def __init__(self, data: Any, batch_size: int, rank: int, world: int,
                 generator: torch.Generator, device: torch.device, labels: bool = False) -> None:
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world
        self.generator, self.device, self.labels = generator, device, labels

    def next(self) -> Tensor | tuple[Tensor, Tensor]:
        if self.labels:
            x, y = self.data.sample_with_labels(self.batch_size, self.generator)
            if self.world > 1:
                x, y = x[self.rank::self.world].contiguous(), y[self.rank::self.world]
            return x.to(self.device), y.to(self.device)
        x = self.data.sample(self.batch_size, self.generator)
        if self.world > 1:
            x = x[self.rank::self.world].contiguous()
        return x.to(self.device)

    def state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        return {"kind": "dataset"}, {}

    def load_state(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor],
                   where: str) -> None:
        if state.get("kind") != "dataset":
            raise CheckpointError(
                f"{where}: the checkpoint's run drew batches from a "
                f"{state.get('kind')} but this Trainer's data is a dataset"
            )


class _TensorBatches:
    """Batches of a tensor ``(N, …)``: a permutation of the rows per epoch from ``g``, cut
    into consecutive global batches (the last incomplete one is dropped); this rank keeps
    rows ``rank::world`` of each. With ``labels`` (``(N,)``), batches are ``(x, y)`` pairs
    of the same rows."""

    def __init__(self, data: Tensor, batch_size: int, rank: int, world: int,
                 generator: torch.Generator, device: torch.device,
                 labels: Tensor | None = None) -> None:
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world
        self.generator, self.device, self.labels = generator, device, labels
        self.permutation: Tensor | None = None
        self.position = 0

    def next(self) -> Tensor | tuple[Tensor, Tensor]:
        n = self.data.shape[0]
        if self.permutation is None or self.position + self.batch_size > n:
            self.permutation = torch.randperm(n, generator=self.generator).to(self.data.device)
            self.position = 0
        index = self.permutation[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        if self.world > 1:
            index = index[self.rank::self.world]
        if self.labels is not None:
            return (self.data[index].to(self.device),
                    self.labels[index.to(self.labels.device)].to(self.device))
        return self.data[index].to(self.device)

    def state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        tensors = {} if self.permutation is None else {"data.permutation": self.permutation}
        return {"kind": "tensor", "rows": self.data.shape[0], "position": self.position}, tensors

    def load_state(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor],
                   where: str) -> None:
        if state.get("kind") != "tensor":
            raise CheckpointError(
                f"{where}: the checkpoint's run drew batches from a "
                f"{state.get('kind')} but this Trainer's data is a tensor"
            )
        if state.get("rows") != self.data.shape[0]:
            raise CheckpointError(
                f"{where}: the checkpoint's run trained on a tensor of {state.get('rows')} "
                f"rows; this Trainer's data has {self.data.shape[0]}"
            )
        rows = self.data.shape[0]
        permutation = tensors.get("data.permutation")
        if permutation is not None and not (
            permutation.dtype == torch.int64 and permutation.shape == (rows,)
            and torch.equal(permutation.sort().values, torch.arange(rows))
        ):
            raise CheckpointError(
                f"{Path(where).with_name(TRAINING_TENSORS_FILE)}: data.permutation must be a "
                f"permutation of the {rows} row indices (an int64 tensor of shape ({rows},)); "
                f"the {permutation.dtype} tensor of shape {tuple(permutation.shape)} there is "
                f"not"
            )
        position = state.get("position", 0)
        if not isinstance(position, int) or isinstance(position, bool) or not (
                0 <= position <= rows):
            raise CheckpointError(f"{where}: data.position must be an integer from 0 to "
                                  f"{rows}, got {_shown(position)}")
        self.permutation = None if permutation is None else permutation.to(self.data.device)
        self.position = position


def event_shape_mismatch(energy: Any, data: Any) -> tuple[tuple, tuple] | None:
    """``(energy's event shape, data's event shape)`` when both are known and differ (a
    Dataset's ``event_shape``, a tensor's rows), else ``None``."""
    expected = getattr(energy, "event_shape", None)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        data = data[0]
    given = tuple(data.shape[1:]) if isinstance(data, Tensor) else getattr(
        data, "event_shape", None)
    if expected is None or given is None or tuple(expected) == tuple(given):
        return None
    return tuple(expected), tuple(given)


# -- distributed ------------------------------------------------------------------------


def _world() -> tuple[int, int]:
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


# -- the Trainer ------------------------------------------------------------------------


class Trainer:
    """Fit ``objective`` on ``energy`` with batches from ``data``.

    Args:
        energy: the :class:`~ebmflow.Energy` to train (updated in place).
        objective: any :class:`~ebmflow.Objective`; called as
            ``objective(energy, batch, generator=g)`` once per step. Its trainable
            parameters, if any, are optimised too; its buffers are checkpointed.
        data: a Dataset (``data.sample(batch_size, generator)`` per step) or a tensor
            ``(N, …)`` (a seeded permutation per epoch; the last partial batch is dropped),
            or a pair of tensors ``(x, y)`` with labels ``y`` of shape ``(N,)``. An objective
            with ``needs_labels = True`` gets ``(x, y)`` batches (see "Labelled batches" in
            the module docstring).
        optimizer: ``"adam"`` | ``"adamw"`` | ``"sgd"`` | ``"rmsprop"``, a dict
            ``{"name": "adam", "lr": ..., ...}`` of ``torch.optim`` arguments, or a callable
            ``params -> torch.optim.Optimizer`` (not recorded in the run config).
        lr_schedule: ``None`` (constant), or a name or dict of :class:`LRSchedule`:
            ``{"name": "cosine", "warmup": 100, "min_factor": 0.1}``,
            ``{"name": "linear-warmup", "warmup": 100}``, ``"constant"``.
        batch_size: rows per step, over all ranks together (the global batch).
        steps: the total number of steps; ``fit`` stops when ``step`` reaches it.
        seed: seeds the data generator and the objective generator(s).
        grad_clip: clip the gradient's global 2-norm to this value (``None``: no clipping).
        ema: decay d of an exponential moving average θ̄ = d θ̄ + (1 − d) θ of the energy's
            parameters (``None``: no EMA); checkpoints' ``model.safetensors`` holds θ̄.
        compile: ``energy.compile()`` (``torch.compile`` in place, so the objective's
            calls go through the compiled forward). Score-matching objectives that
            differentiate through the score need double backward, which compiled graphs
            do not support.
        checkpoint_dir: the checkpoint folder (see the module docstring), written every
            ``checkpoint_every`` steps and when ``fit`` ends. Needs a registered energy.
        checkpoint_every: steps between checkpoints (``None``: only at the end of ``fit``).
        log_every: steps between log records (means over the interval) and progress-bar
            updates of the loss and metrics.
        progress: show a tqdm progress bar (rank 0 only).
        metrics_file: a JSON-lines file that each log record is appended to as it is made
            (rank 0 only; rewritten from the history when ``fit`` starts).
        device: where to train; the energy and objective are moved there. Default: the
            energy's device. Under torchrun ``"cuda"`` means ``cuda:LOCAL_RANK``.
        host: the registry for checkpoints and rebuilding components
            (default ``ebmflow.default_host()``).
        run_config: the run's tables (``data``, ``energy``, ``objective``, ``sampler``,
            ``train``) as :func:`ebmflow.run_config.build` passes them; stored in
            checkpoints so that :meth:`resume` can rebuild the components. By default it is
            derived from the components when they are registered.

    Attributes:
        step: the number of steps done.
        history: the log records so far, dicts with ``step``, ``loss`` and the objective's
            metrics (means over the logging interval, and over ranks), ``lr`` (of the last
            step) and ``grad_norm`` (‖g‖₂ of the last step's gradient, before clipping).
        optimizer: the ``torch.optim`` optimizer.
    """

    def __init__(
        self,
        energy: Energy,
        objective: Objective,
        data: Any,
        *,
        optimizer: Any = "adam",
        lr_schedule: Any = None,
        batch_size: int = 256,
        steps: int = 1000,
        seed: int = 0,
        grad_clip: float | None = None,
        ema: float | None = None,
        compile: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        log_every: int = 50,
        progress: bool = True,
        metrics_file: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        host: PluginHost | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(energy, Energy):
            raise ConfigError(f"Trainer: energy must be an ebmflow.Energy, got "
                              f"{type(energy).__name__}")
        if not isinstance(objective, Objective):
            raise ConfigError(f"Trainer: objective must be an ebmflow.Objective, got "
                              f"{type(objective).__name__}")
        self.host = default_host() if host is None else host
        self.batch_size = _int_arg("batch_size", batch_size, 1, maximum=MAX_BATCH_SIZE)
        self.steps = _int_arg("steps", steps, 0)
        self.seed = _int_arg("seed", seed, 0, maximum=MAX_SEED)
        self.grad_clip = _positive_arg("grad_clip", grad_clip)
        if ema is not None and not (isinstance(ema, (int, float)) and not isinstance(ema, bool)
                                    and 0.0 < ema < 1.0):
            raise ConfigError(f"Trainer: ema must be a decay in (0, 1) or None, got {ema!r}")
        self.ema_decay = None if ema is None else float(ema)
        if not isinstance(compile, bool):
            raise ConfigError(f"Trainer: compile must be true or false, got {compile!r}")
        self.checkpoint_every = _int_arg("checkpoint_every", checkpoint_every, 1, optional=True)
        self.log_every = _int_arg("log_every", log_every, 1)
        if not isinstance(progress, bool):
            raise ConfigError(f"Trainer: progress must be true or false, got {progress!r}")
        self.progress = progress
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.metrics_file = None if metrics_file is None else Path(metrics_file)
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ConfigError("Trainer: checkpoint_every needs a checkpoint_dir")

        self.rank, self.world_size = _world()
        if self.batch_size % self.world_size:
            raise ConfigError(
                f"Trainer: batch_size {self.batch_size} (the global batch) must be divisible "
                f"by the number of ranks, {self.world_size}"
            )
        self.device = self._resolve_device(energy, device)
        self.energy = energy.to(self.device)
        self.objective = objective.to(self.device)
        if compile:
            self.energy.compile()

        self.data = data
        self._data_generator = torch.Generator().manual_seed(derive_seed(self.seed, "data"))
        self._objective_generator = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.seed, "objective", self.rank))
        self._batches: Any = self._make_batches(data)
        mismatch = event_shape_mismatch(self.energy, data)
        if mismatch is not None:
            raise ConfigError(
                f"Trainer: {type(energy).__name__} takes samples of shape {mismatch[0]}, but "
                f"the data gives samples of shape {mismatch[1]}; build the energy for the "
                f"data's shape"
            )

        self._energy_params = [p for p in self.energy.parameters() if p.requires_grad]
        seen = {id(p) for p in self._energy_params}
        self._params = self._energy_params + [
            p for p in self.objective.parameters() if p.requires_grad and id(p) not in seen
        ]
        if not self._energy_params:
            raise ConfigError(
                f"Trainer: {type(energy).__name__} has no trainable parameters (analytic "
                f"energies such as gaussian and gmm keep theirs as buffers)"
            )
        self.optimizer = _make_optimizer(optimizer, self._params)
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.lr_schedule = None if lr_schedule is None else LRSchedule(lr_schedule, self.steps)

        self._train_arguments = {
            "optimizer": optimizer if isinstance(optimizer, (str, Mapping)) else None,
            "lr_schedule": lr_schedule, "batch_size": self.batch_size, "steps": self.steps,
            "seed": self.seed, "grad_clip": grad_clip, "ema": ema, "compile": compile,
            "checkpoint_every": self.checkpoint_every, "log_every": self.log_every,
        }
        self._run_config = None if run_config is None else dict(run_config)
        self._energy_files: tuple[dict[str, Any], dict[str, Tensor]] | None = None
        if self.checkpoint_dir is not None:
            self._energy_checkpoint_record()  # fail now, not at the first checkpoint

        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._ema: list[Tensor] | None = None
        self._param_data = [p.detach() for p in self._energy_params]
        self._pending_loss: list[Any] = []
        self._pending_metrics: list[Mapping[str, Any]] = []
        self._pending_checks: list[tuple[int, Tensor, Tensor]] = []  # (step, 0 if ok, loss)
        # the CPU reads a scalar for free: check every step before the update. On
        # accelerators a read is a device sync, so checks are batched at log steps.
        self._check_every_step = self.device.type == "cpu"
        self._last_checkpoint: tuple[Path, int] | None = None
        self._metrics_handle: Any = None
        self._flat: Tensor | None = None
        self._last_norm: Tensor | None = None
        self._one = torch.ones(1, device=self.device)
        self._fused_check = True

    # -- set-up helpers ------------------------------------------------------------------

    def _make_batches(self, data: Any) -> Any:
        """The batch source for ``data``; ``(x, y)`` batches when the objective says
        ``needs_labels``."""
        needs_labels = bool(getattr(self.objective, "needs_labels", False))
        name = type(self.objective).__name__
        args = (self.batch_size, self.rank, self.world_size, self._data_generator, self.device)
        labelled = (isinstance(data, (tuple, list)) and len(data) == 2
                    and all(isinstance(t, Tensor) for t in data))
        if isinstance(data, Tensor) or labelled:
            x, y = (data[0], data[1]) if labelled else (data, None)
            if not x.is_floating_point():
                raise ConfigError(
                    f"Trainer: tensor data of dtype {x.dtype} cannot be fed to an energy; it "
                    f"must be a floating-point tensor (convert it, e.g. data.float())"
                )
            if x.ndim < 1 or x.shape[0] < self.batch_size:
                raise ConfigError(
                    f"Trainer: tensor data needs at least batch_size = {self.batch_size} rows, "
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
            return _TensorBatches(x, *args, labels=y if needs_labels else None)
        if callable(getattr(data, "sample", None)):
            if needs_labels and not callable(getattr(data, "sample_with_labels", None)):
                raise ConfigError(
                    f"Trainer: {name} needs labelled batches (needs_labels = True), but the "
                    f"dataset {getattr(data, 'name', type(data).__name__)!r} has no "
                    f"sample_with_labels(n, generator); use a labelled dataset such as "
                    f"'digits', or pass data=(x, y), a pair of tensors"
                )
            return _DatasetBatches(data, *args, labels=needs_labels)
        raise ConfigError(
            f"Trainer: data must be an ebmflow Dataset (with sample(n, generator)), a tensor "
            f"(N, ...) or a pair of tensors (x, y) with labels y of shape (N,), got "
            f"{type(data).__name__}"
        )

    def _resolve_device(self, energy: Energy, device: Any) -> torch.device:
        if device is None:
            first = next(iter(energy.parameters()), None)
            return first.device if first is not None else torch.device("cpu")
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"Trainer: device {device!r} is not a torch device "
                              f"(e.g. 'cpu', 'cuda', 'cuda:1')") from None
        if device.type == "cuda" and device.index is None and self.world_size > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        try:  # a device this torch or this machine lacks fails here, not inside .to()
            torch.empty(0, device=device)
            torch.Generator(device=device)  # the objective's generator lives there
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(
                f"Trainer: device {str(device)!r} is not available here ({first_line(exc)}); "
                f"use 'cpu', or a device this torch was built for and this machine has"
            ) from None
        return device

    def _energy_checkpoint_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The energy's config.json record and tensor arguments (what ebmflow.save writes)."""
        if self._energy_files is None:
            try:  # an unregistered energy is an error in the Trainer's configuration
                component_of(self.energy, self.host)
            except CheckpointError as exc:
                raise ConfigError(
                    f"Trainer: checkpoints need a registered energy so that ebmflow.load can "
                    f"rebuild it: {exc}"
                ) from None
            tensors: dict[str, Tensor] = {}
            record = encode_component(self.energy, self.host, tensors)
            self._energy_files = (record, tensors)
        return self._energy_files

    def run_config(self) -> dict[str, Any]:
        """The run's tables (``data``, ``energy``, ``objective``, [``sampler``], ``train``)
        as stored in checkpoints; a component that is not registered, or has arguments JSON
        cannot hold, is ``None`` (pass it to :meth:`resume` yourself)."""
        if self._run_config is not None:
            run = dict(self._run_config)
        else:
            run = {
                "data": None if isinstance(self.data, (Tensor, tuple, list))
                else component_config(self.data, self.host),
                "energy": component_config(self.energy, self.host),
                "objective": component_config(self.objective, self.host),
            }
        train = {**(run.get("train") or {}), **self._train_arguments}
        for key, value in train.items():
            try:
                train[key] = json.loads(json.dumps(value, allow_nan=False))
            except (TypeError, ValueError):
                train[key] = None  # e.g. an optimizer factory: pass it to resume yourself
        run["train"] = train
        return run

    # -- the loop --------------------------------------------------------------------------

    def fit(self, *, resume: bool = False, until: int | None = None) -> list[dict[str, Any]]:
        """Train from ``step`` up to ``steps`` (or up to ``until``); return :attr:`history`.

        With ``resume=True`` the training state in ``checkpoint_dir`` is loaded first when
        there is one (otherwise training starts from scratch), so a preempted job can simply
        be restarted with the same call. A Trainer whose arguments differ from the
        checkpoint's run may resume only where :meth:`load_checkpoint` can honour the
        difference (more or fewer steps, a new lr, new intervals, ...); otherwise it raises
        :class:`~ebmflow.ConfigError` naming the changed keys.
        ``until`` stops early at that step without changing the run (the learning-rate
        schedule still spans ``steps``), e.g. to split a run over several jobs; ``fit``
        continues from wherever the previous call stopped.

        Raises:
            TrainingDivergedError: the loss or a gradient is NaN or infinite (named step; the
                last checkpoint written is left as it was).
            SamplerDivergedError: the objective's sampler diverged; the message names the
                training step.
        """
        created = self._init_distributed()
        bar = None
        try:
            if resume:
                if self.checkpoint_dir is None:
                    raise ConfigError("Trainer.fit(resume=True) needs a checkpoint_dir")
                if _exists(self.checkpoint_dir):
                    self.load_checkpoint(self.checkpoint_dir)
            if self.world_size > 1:
                self._broadcast_parameters()
            if self.ema_decay is not None and self._ema is None:
                self._ema = [p.clone() for p in self._param_data]
            self._open_metrics_file()
            stop = self.steps if until is None else min(
                self.steps, _int_arg("until", until, 0))
            if self.step >= stop:
                return self.history
            if self.progress and self.rank == 0:
                from tqdm import tqdm

                bar = tqdm(total=self.steps, initial=self.step, desc="train", unit="step",
                           dynamic_ncols=True)
            try:
                self._loop(bar, stop)
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                raise EbmflowError(
                    f"training step {self.step + 1} of {self.steps}: out of memory "
                    f"({first_line(exc)}); use a smaller batch_size, a smaller energy or "
                    f"fewer sampler chains"
                ) from exc
            if self.checkpoint_dir is not None and (
                self._last_checkpoint is None or self._last_checkpoint[1] != self.step
            ):
                self.save_checkpoint()
            return self.history
        finally:
            if bar is not None:
                bar.close()
            if self._metrics_handle is not None:
                self._metrics_handle.close()
                self._metrics_handle = None
            if created:
                import torch.distributed as dist

                with contextlib.suppress(Exception):
                    dist.destroy_process_group()

    def _loop(self, bar: Any, stop: int) -> None:
        energy, objective, optimizer = self.energy, self.objective, self.optimizer
        params = self._params
        next_batch, generator = self._batches.next, self._objective_generator
        schedule, groups, base_lrs = self.lr_schedule, optimizer.param_groups, self._base_lrs
        clip, ema, ema_weight = self.grad_clip, self._ema, None
        if ema is not None:
            ema_weight = 1.0 - self.ema_decay
        distributed = self.world_size > 1
        check_now, device = self._check_every_step, self.device
        log_every, checkpoint_every, total = self.log_every, self.checkpoint_every, self.steps
        pending_loss, pending_metrics = self._pending_loss, self._pending_metrics
        pending_checks = self._pending_checks
        first = True
        for i in range(self.step, stop):
            if schedule is not None:
                factor = schedule(i)
                for group, base in zip(groups, base_lrs):
                    group["lr"] = base * factor
            batch = next_batch()
            if check_now:
                _check_batch(batch, i + 1, total)
            optimizer.zero_grad(set_to_none=True)
            try:
                out = objective(energy, batch, generator=generator)
            except SamplerDivergedError as exc:
                self._flush_checks()  # an earlier bad gradient is the real cause
                raise SamplerDivergedError(
                    f"training step {i + 1} of {total}: {exc}", step=exc.step,
                    n_chains=exc.n_chains,
                ) from exc
            except EbmflowError as exc:  # e.g. an objective's own non-finite-loss error
                self._flush_checks()
                raise _with_prefix(exc, f"training step {i + 1} of {total}") from exc
            if first:
                self._check_output(out)
                first = False
            loss = out.loss
            loss.backward()
            loss_value = self._all_reduce_gradients(loss, i) if distributed else loss.detach()
            # NaN/inf check of the loss and the gradients: flag = 1 if a gradient is not
            # finite (one fused kernel); with clipping the norm tells the same.
            if clip is not None:
                self._last_norm = flag = torch.nn.utils.clip_grad_norm_(params, clip)
                if check_now:
                    bad = not math.isfinite(flag.item())
            else:
                flag = torch.zeros(1, device=device)
                self._mark_nonfinite(
                    [self._flat] if distributed
                    else [p.grad for p in params if p.grad is not None], flag)
                if check_now:
                    bad = flag.item() != 0
            if check_now:
                if bad or not math.isfinite(loss_value.item()):
                    self._raise_diverged(i + 1, loss_value)
            else:  # 0 when all is finite, else 1 or NaN; read at the next log step
                pending_checks.append((i + 1, (flag * 0 if clip is not None else flag)
                                       .reshape(()) + loss_value * 0, loss_value))
            optimizer.step()
            if ema is not None:
                torch._foreach_lerp_(ema, self._param_data, ema_weight)
            step = i + 1
            self.step = step
            pending_loss.append(loss_value)
            pending_metrics.append(out.metrics)
            if bar is not None:
                bar.update(1)
            if step % log_every == 0 or step == total:
                self._log(bar)
            if checkpoint_every is not None and step % checkpoint_every == 0 and step < stop:
                self.save_checkpoint()

    def _mark_nonfinite(self, tensors: list[Tensor], found: Tensor) -> None:
        """Set ``found`` to 1 if any of ``tensors`` holds a NaN or an infinity.

        One fused kernel (the op ``torch.amp.GradScaler`` uses, scaling by exactly 1);
        where this torch lacks it for the device, a norm per tensor instead.
        """
        if not tensors:
            return
        if self._fused_check:
            try:
                torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, self._one)
                return
            except (AttributeError, RuntimeError, NotImplementedError):
                self._fused_check = False
        norms = torch.stack(torch._foreach_norm(tensors))
        found.copy_((~torch.isfinite(norms)).any().reshape(1).to(found.dtype))

    def _check_output(self, out: Any) -> None:
        name = type(self.objective).__name__
        if not isinstance(out, ObjectiveOutput):
            raise EbmflowError(
                f"{name}.forward returned a {type(out).__name__}; objectives return "
                f"ebmflow.ObjectiveOutput(loss, metrics)"
            )
        loss = out.loss
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise EbmflowError(f"{name} returned a loss of shape {shape}; expected a scalar "
                               f"tensor")
        if not loss.requires_grad:
            raise EbmflowError(
                f"{name} returned a loss that does not depend on any trainable parameter "
                f"(it has no gradient); did the objective detach the energy's output?"
            )

    def _raise_diverged(self, step: int, loss: Tensor) -> None:
        where = (f"; the last checkpoint, {self._last_checkpoint[0]} at step "
                 f"{self._last_checkpoint[1]}, is intact" if self._last_checkpoint else "")
        norm = float(_grad_norm(self._params))
        raise TrainingDivergedError(
            f"training diverged at step {step} of {self.steps}: loss {float(loss):.6g}, "
            f"gradient norm {norm:.6g} ({type(self.objective).__name__} on "
            f"{type(self.energy).__name__}); the update was not applied{where}. Try a smaller "
            f"learning rate, grad_clip, or a smaller sampler step size",
            step=step,
        )

    def _flush_checks(self) -> None:
        """Run the batched NaN/inf checks (accelerators): one device sync."""
        if not self._pending_checks:
            return
        steps, checks, losses = zip(*self._pending_checks)
        self._pending_checks.clear()
        values = torch.stack(list(checks)).tolist()
        for step, value, loss in zip(steps, values, losses):
            if value != 0:
                self._raise_diverged_late(step, loss)

    def _raise_diverged_late(self, step: int, loss: Tensor) -> None:
        where = (f"; the last checkpoint, {self._last_checkpoint[0]} at step "
                 f"{self._last_checkpoint[1]}, is intact" if self._last_checkpoint else "")
        raise TrainingDivergedError(
            f"training diverged at step {step} of {self.steps}: the loss ({float(loss):.6g}) "
            f"or a gradient is NaN or infinite ({type(self.objective).__name__} on "
            f"{type(self.energy).__name__}){where}. Try a smaller learning rate, grad_clip, or "
            f"a smaller sampler step size",
            step=step,
        )

    # -- logging ---------------------------------------------------------------------------

    def _log(self, bar: Any) -> None:
        self._flush_checks()
        losses = _floats(self._pending_loss)
        norm = self._last_norm if self.grad_clip is not None else _grad_norm(self._params)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for metrics in self._pending_metrics:
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
        means = {key: sums[key] / counts[key] for key in sorted(sums)}
        self._pending_loss.clear()
        self._pending_metrics.clear()
        if self.world_size > 1:
            means = self._average_metrics(means)
        record: dict[str, Any] = {
            "step": self.step,
            "loss": sum(losses) / len(losses) if losses else math.nan,
            "grad_norm": math.nan if norm is None else float(norm),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        for key, value in means.items():
            record[f"objective_{key}" if key in _RECORD_KEYS else key] = value
        self.history.append(record)
        if self._metrics_handle is not None:
            self._metrics_handle.write(json.dumps(record) + "\n")
            self._metrics_handle.flush()
        if bar is not None:
            shown = {k: f"{v:.4g}" for k, v in record.items()
                     if k not in ("step", "lr") and isinstance(v, float)}
            bar.set_postfix(shown, refresh=False)

    def _open_metrics_file(self) -> None:
        if self.metrics_file is None or self.rank != 0:
            return
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(record) + "\n" for record in self.history)
        tmp = self.metrics_file.with_name(f".{self.metrics_file.name}.tmp.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.metrics_file)
        self._metrics_handle = open(self.metrics_file, "a", encoding="utf-8")  # noqa: SIM115

    # -- distributed -------------------------------------------------------------------------

    def _init_distributed(self) -> bool:
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
        dist.init_process_group(backend=backend, init_method="env://",
                                rank=self.rank, world_size=self.world_size)
        return True

    def _comm(self, tensor: Tensor) -> Tensor:
        """``tensor`` where the backend can communicate it (CUDA for NCCL)."""
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return tensor.to(self.device)
        return tensor.cpu()

    def _broadcast_parameters(self) -> None:
        import torch.distributed as dist

        with torch.no_grad():
            tensors = [*self.energy.parameters(), *self.energy.buffers(),
                       *(p for p in self.objective.parameters())]
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def _all_reduce_gradients(self, loss: Tensor, i: int) -> Tensor:
        """Average every gradient and the loss over ranks with one all-reduce of a flat
        buffer (gradients, then the loss); return the mean loss."""
        import torch.distributed as dist

        params = self._params
        flat = self._flat
        if flat is None:
            dtype = _promoted_dtype([p.dtype for p in params])
            flat = torch.empty(sum(p.numel() for p in params) + 1, dtype=dtype,
                               device=self.device)
            self._flat = flat
            self._flat_views = list(flat[:-1].split([p.numel() for p in params]))
        with torch.no_grad():
            for p, view in zip(params, self._flat_views):
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
            for p, view in zip(params, self._flat_views):
                if p.grad is None:
                    p.grad = view.view_as(p).to(p.dtype).clone()
                else:
                    p.grad.copy_(view.view_as(p))
            return flat[-1].clone()

    def _average_metrics(self, means: dict[str, float]) -> dict[str, float]:
        import zlib

        import torch.distributed as dist

        keys = sorted(means)
        tag = float(zlib.crc32(",".join(keys).encode()) % (1 << 24))
        check = self._comm(torch.tensor([tag, -tag], dtype=torch.float64))
        dist.all_reduce(check, op=dist.ReduceOp.MAX)
        if check[0].item() != -check[1].item():
            raise EbmflowError(
                f"{type(self.objective).__name__} reported different metrics on different "
                f"ranks (this rank: {', '.join(keys) or 'none'}); objectives must report the "
                f"same metric names on every rank"
            )
        if not keys:
            return means
        values = self._comm(torch.tensor([means[k] for k in keys], dtype=torch.float64))
        dist.all_reduce(values)
        return {k: v / self.world_size for k, v in zip(keys, values.tolist())}

    def _gather(self, tensor: Tensor) -> list[Tensor] | None:
        """``tensor`` of every rank, on rank 0 (CPU copies); ``None`` on the other ranks."""
        import torch.distributed as dist

        local = self._comm(tensor.detach().contiguous())
        out = [torch.empty_like(local) for _ in range(self.world_size)] if self.rank == 0 else None
        dist.gather(local, out, dst=0)
        return None if out is None else [t.cpu() for t in out]

    def _gather_bytes(self, data: bytes) -> list[bytes] | None:
        """``data`` of every rank, on rank 0; ``None`` on the other ranks."""
        import torch.distributed as dist

        length = self._comm(torch.tensor([len(data)]))
        longest = length.clone()
        dist.all_reduce(longest, op=dist.ReduceOp.MAX)
        padded = torch.zeros(int(longest.item()), dtype=torch.uint8)
        if data:
            padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        lengths, parts = self._gather(length), self._gather(padded)
        if lengths is None or parts is None:
            return None
        return [bytes(p[:int(n.item())].tolist()) for n, p in zip(lengths, parts)]

    # -- checkpoints -------------------------------------------------------------------------

    def ema_state_dict(self) -> dict[str, Tensor]:
        """The energy's state dict with the EMA weights θ̄ in place of its parameters (the
        plain state dict when EMA is off) — what ``model.safetensors`` holds."""
        state = self.energy.state_dict(keep_vars=True)
        if self._ema is not None:
            averaged = {id(p): e for p, e in zip(self._energy_params, self._ema)}
            state = {k: averaged.get(id(v), v) for k, v in state.items()}
        return {k: v.detach() for k, v in state.items()}

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Write the checkpoint folder (default ``checkpoint_dir``) atomically; every rank
        must call it (rank 0 writes)."""
        target = self.checkpoint_dir if path is None else Path(path)
        if target is None:
            raise ConfigError("Trainer.save_checkpoint: no path given and no checkpoint_dir")
        self._flush_checks()  # never checkpoint a diverged state
        record, argument_tensors = self._energy_checkpoint_record()
        tensors: dict[str, Tensor] = {}

        # rank-local state: the objective's buffers and generator, and the objective's
        # metrics of the logging interval in progress (averaged over ranks when logged)
        objective_state = {k: v.detach() for k, v in self.objective.state_dict().items()}
        objective_generator = self._objective_generator.get_state()
        metrics = [{k: float(v) for k, v in m.items()} for m in self._pending_metrics]
        if self.world_size > 1:
            texts = self._gather_bytes(json.dumps(metrics).encode())
            metrics_by_rank = None if texts is None else [json.loads(t) for t in texts]
            objective_tensors: dict[str, Tensor] = {}
            for key in sorted(objective_state):
                gathered = self._gather(objective_state[key])
                if gathered is not None:
                    for r, t in enumerate(gathered):
                        objective_tensors[f"rank{r}.{key}"] = t
            gathered = self._gather(objective_generator)
            if gathered is not None:
                for r, t in enumerate(gathered):
                    tensors[f"generator.objective.rank{r}"] = t
        else:
            objective_tensors = objective_state
            tensors["generator.objective.rank0"] = objective_generator
            metrics_by_rank = [metrics]

        failure: BaseException | None = None
        if self.rank == 0:
            try:
                self._write_checkpoint(target, record, argument_tensors, tensors,
                                       objective_tensors, metrics_by_rank)
            except BaseException as exc:  # reported to every rank below, then re-raised
                failure = exc
        if self.world_size > 1:
            import torch.distributed as dist

            status = self._comm(torch.tensor([0 if failure is None else 1]))
            dist.broadcast(status, src=0)
            if failure is None and status.item() != 0:
                raise EbmflowError(f"rank 0 failed to write the checkpoint {target} at step "
                                   f"{self.step} (see its error)")
        if failure is not None:
            raise failure
        self._last_checkpoint = (target, self.step)
        return resolve(target) if self.rank == 0 else target

    def _write_checkpoint(self, target: Path, record: dict[str, Any],
                          argument_tensors: dict[str, Tensor], tensors: dict[str, Tensor],
                          objective_tensors: dict[str, Tensor],
                          metrics_by_rank: list[list[dict[str, float]]]) -> Path:
        optimizer_state = self.optimizer.state_dict()
        data_state, data_tensors = self._batches.state()
        tensors.update(data_tensors)
        tensors["generator.data"] = self._data_generator.get_state()
        # JSON for everything but tensors, which encode_value moves to training.safetensors as
        # {"__tensor__": key} (the same tagging as config.json's arguments)
        state = {
            "step": self.step,
            "world_size": self.world_size,
            "run": self.run_config(),
            "optimizer": encode_value({
                "state": {str(k): v for k, v in optimizer_state["state"].items()},
                "param_groups": optimizer_state["param_groups"],
            }, "optimizer", "optimizer", self.host, tensors, None),
            "data": data_state,
            "pending": encode_value({
                "loss": _floats(self._pending_loss),
                "metrics_by_rank": metrics_by_rank,
            }, "pending", "metrics", self.host, tensors, None),
        }
        if self._ema is not None:
            for name, p in self.energy.named_parameters():
                if p.requires_grad:
                    tensors[f"weights.{name}"] = p.detach()
        files: dict[str, bytes | Mapping[str, Tensor]] = {WEIGHTS_FILE: self.ema_state_dict()}
        if argument_tensors:
            files[ARGUMENTS_FILE] = argument_tensors
        files[TRAINING_STATE_FILE] = (json.dumps(state, indent=1, allow_nan=False)
                                      + "\n").encode()
        files[TRAINING_TENSORS_FILE] = tensors
        files[OBJECTIVE_FILE] = objective_tensors
        files[METRICS_FILE] = "".join(json.dumps(r) + "\n" for r in self.history).encode()
        config = dict(record)
        config["metadata"] = {"training": {
            "step": self.step, "steps": self.steps, "world_size": self.world_size,
            "weights": "ema" if self._ema is not None else "raw", "ema": self.ema_decay,
        }}
        return write_checkpoint_folder(target, files, config)

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> int:
        """Restore the training state saved at ``path`` (default ``checkpoint_dir``): weights,
        EMA, optimizer, generators, objective buffers, data cursor, step and history.
        Returns the step.

        What a resumed run may change: the run record this Trainer would write (its run
        tables and Trainer arguments) is compared with the one in the checkpoint. The
        ``[train]`` keys in :data:`RESUMABLE_TRAIN_KEYS` (``steps``, ``lr_schedule``,
        ``grad_clip``, ``checkpoint_every``, ``log_every``, ``progress``, ``compile``) and
        the optimizer's ``lr`` may change: the run continues under the new values (a new
        ``lr`` is applied to the optimizer's parameter groups) and the next checkpoint
        records them. Any other change (a component or its arguments, the optimizer or its
        other arguments, ``seed``, ``batch_size``, ``ema``, ``device``) cannot be honoured
        by the saved state and raises :class:`~ebmflow.ConfigError` naming each changed key
        with its old and new value; to use it, start a new run from the weights.

        Everything read from ``training.json`` and ``training.safetensors`` is checked
        (types, shapes, dtypes, generator states, the optimizer state against this
        optimizer's parameter groups) before any of it is used: a tampered or mismatched
        file raises :class:`~ebmflow.CheckpointError` naming the file and the key.
        """
        path = self.checkpoint_dir if path is None else Path(path)
        if path is None:
            raise ConfigError("Trainer.load_checkpoint: no path given and no checkpoint_dir")
        folder = resolve(path)
        config = read_json(folder)
        meta = (config.get("metadata") or {}).get("training")
        if not isinstance(meta, dict):
            raise CheckpointError(
                f"{folder} holds no training state (it was written by ebmflow.save, not by a "
                f"Trainer); to start a new run from its weights, ebmflow.load it and pass the "
                f"energy to a new Trainer"
            )
        try:
            component = component_of(self.energy, self.host)
        except CheckpointError:
            component = None
        if component is not None and (config.get("plugin"), config.get("name")) != (
            component.plugin, component.name
        ):
            raise CheckpointError(
                f"{folder} holds a {config.get('plugin')}:{config.get('name')} energy, but this "
                f"Trainer trains a {component.qualified_name} energy"
            )
        if TRAINING_STATE_FILE not in config["files"]:
            raise CheckpointError(f"{folder} has no {TRAINING_STATE_FILE}: the training "
                                  f"checkpoint is incomplete")
        where = str(folder / TRAINING_STATE_FILE)
        tensors_file = str(folder / TRAINING_TENSORS_FILE)
        state = read_json(folder, TRAINING_STATE_FILE, config=config)
        if not isinstance(state, dict):
            raise CheckpointError(f"{where}: not a training state (not a JSON object)")
        step = state.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEPS:
            raise CheckpointError(f"{where}: step must be an integer from 0 to {MAX_STEPS}, "
                                  f"got {step!r}")
        if state.get("world_size") != self.world_size:
            raise CheckpointError(
                f"{folder} was written by a run on {state.get('world_size')} rank(s); this run "
                f"has {self.world_size}. Resume with the same number of processes (sampler "
                f"chains, replay buffers and generators are saved per rank), or start a new "
                f"run from its weights (ebmflow.load)"
            )
        tensors = read_tensors(folder, TRAINING_TENSORS_FILE, config=config)
        state = _decode_state(state, tensors, where, tensors_file)
        self._check_unchanged(folder, config, state, where)
        model = read_tensors(folder, WEIGHTS_FILE, config=config)
        objective_tensors = read_tensors(folder, OBJECTIVE_FILE, config=config)

        def need(mapping: Mapping[str, Any], key: str, file: str) -> Any:
            if key not in mapping:
                raise CheckpointError(f"{folder / file} has no {key!r}: the training "
                                      f"checkpoint is incomplete or from another run")
            return mapping[key]

        # weights θ (raw) and θ̄ (EMA)
        ema_saved = meta.get("weights") == "ema"
        raw = dict(model)
        params = dict(self.energy.named_parameters())
        if ema_saved:
            for name, p in params.items():
                if p.requires_grad:
                    raw[name] = _checked_like(need(tensors, f"weights.{name}",
                                                   TRAINING_TENSORS_FILE),
                                              p, tensors_file, f"weights.{name}")
        _load_module(self.energy, raw, folder / WEIGHTS_FILE, "energy")
        if self.ema_decay is not None:
            by_id = {id(p): name for name, p in params.items()}
            source, file = (model, WEIGHTS_FILE) if ema_saved else (raw, WEIGHTS_FILE)
            self._ema = [
                _checked_like(need(source, by_id[id(p)], file), p, str(folder / file),
                              by_id[id(p)]).to(p.device, p.dtype).clone()
                for p in self._energy_params
            ]
        else:
            self._ema = None
        # optimizer: checked against this optimizer's groups, then its hyperparameters (a
        # new lr included) put back, so the run uses what its run record says
        saved = _checked_optimizer_state(state.get("optimizer"), self.optimizer, where,
                                         tensors_file)
        hyperparameters = [{k: v for k, v in group.items() if k != "params"}
                           for group in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(saved)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{where}: optimizer: the state does not fit this Trainer's "
                f"{type(self.optimizer).__name__} ({type(exc).__name__}: {first_line(exc)})"
            ) from None
        for group, values in zip(self.optimizer.param_groups, hyperparameters):
            group.update(values)
        # generators, objective, data
        _set_generator(self._data_generator, need(tensors, "generator.data",
                                                  TRAINING_TENSORS_FILE),
                       tensors_file, "generator.data")
        key = f"generator.objective.rank{self.rank}"
        _set_generator(self._objective_generator, need(tensors, key, TRAINING_TENSORS_FILE),
                       tensors_file, key)
        prefix = f"rank{self.rank}." if self.world_size > 1 else ""
        objective_state = {k[len(prefix):]: v for k, v in objective_tensors.items()
                           if k.startswith(prefix)}
        _load_module(self.objective, objective_state, folder / OBJECTIVE_FILE, "objective")
        data_state = state.get("data", {})
        if not isinstance(data_state, dict):
            raise CheckpointError(f"{where}: data must be an object (the data cursor), got "
                                  f"{_shown(data_state)}")
        self._batches.load_state(data_state, tensors, where)
        # progress
        loss, metrics = _checked_pending(state.get("pending", {}), self.world_size, where)
        self.step = step
        self._pending_loss[:] = loss
        self._pending_metrics[:] = metrics[self.rank]
        self._pending_checks.clear()
        self.history = _read_history(folder, config)
        self._last_checkpoint = (Path(path), self.step)
        return self.step

    def _check_unchanged(self, folder: Path, config: Mapping[str, Any],
                         state: Mapping[str, Any], where: str) -> None:
        """Raise :class:`ConfigError` listing every change between the checkpoint's run and
        this Trainer's that a resume cannot honour (see :meth:`load_checkpoint`)."""
        saved_run = state.get("run")
        if not isinstance(saved_run, dict):
            raise CheckpointError(f"{where}: run must be an object (the run's tables), got "
                                  f"{_shown(saved_run)}")
        changes = _run_changes(saved_run, self.run_config(), self.host)
        # the energy's own arguments, as config.json records them: compared however the
        # runs were described (a run file, or a Trainer built from objects)
        try:
            record, _ = self._energy_checkpoint_record()
        except (ConfigError, CheckpointError):  # not registered: nothing to compare
            record = None
        if record is not None and isinstance(config.get("arguments"), dict):
            changes.update(_differences("energy", _json_form(config["arguments"]),
                                        _json_form(record["arguments"])))
        saved = state.get("optimizer")
        if not any(k.startswith("train.optimizer") for k in changes) and isinstance(
                saved, dict) and isinstance(saved.get("param_groups"), list):
            changes.update(_group_changes(saved["param_groups"], self.optimizer))
        if changes:
            raise ConfigError(
                f"{folder}: the run was changed in ways a resume cannot honour: "
                f"{'; '.join(changes.values())}. A resume may change [train] "
                f"{', '.join(RESUMABLE_TRAIN_KEYS)} and the optimizer's lr; undo the other "
                f"changes, or start a new run (e.g. a new --out) from the checkpoint's weights"
            )

    @classmethod
    def resume(
        cls,
        checkpoint_dir: str | os.PathLike,
        *,
        energy: Energy | None = None,
        objective: Objective | None = None,
        data: Any = None,
        host: PluginHost | None = None,
        **overrides: Any,
    ) -> Trainer:
        """A Trainer rebuilt from the training checkpoint at ``checkpoint_dir``, with its
        state loaded; call :meth:`fit` to continue.

        The energy is rebuilt with ``ebmflow.load``; the objective, the data and the
        Trainer's arguments from the run config stored in the checkpoint. Pass ``energy``,
        ``objective`` or ``data`` to supply components the run config cannot describe
        (unregistered classes, tensor data); ``overrides`` replace Trainer arguments (e.g.
        ``steps=`` to train longer, ``progress=False``).
        """
        from ebmflow.checkpoint import load
        from ebmflow.run_config import RunConfig, build

        host = default_host() if host is None else host
        folder = resolve(checkpoint_dir)
        config = read_json(folder)
        if TRAINING_STATE_FILE not in config["files"]:
            raise CheckpointError(
                f"{folder} holds no training state ({TRAINING_STATE_FILE} is missing): it was "
                f"written by ebmflow.save, not by a Trainer"
            )
        state = read_json(folder, TRAINING_STATE_FILE, config=config)
        run = state.get("run") if isinstance(state, dict) else None
        if not isinstance(run, dict):
            raise CheckpointError(f"{folder / TRAINING_STATE_FILE} has no run config")
        run_config = RunConfig.from_dict(run, source=str(folder / TRAINING_STATE_FILE))
        if run_config.train.get("optimizer", "adam") is None and "optimizer" not in overrides:
            raise ConfigError(
                f"{folder}: the run was built with an optimizer factory, which the checkpoint "
                f"cannot describe; pass optimizer= (the same factory) to Trainer.resume"
            )
        if energy is None:
            energy = load(folder, host=host)
        trainer = build(run_config, host=host, energy=energy, objective=objective, data=data,
                        checkpoint_dir=checkpoint_dir, **overrides)
        trainer.load_checkpoint(checkpoint_dir)
        return trainer


# -- helpers ------------------------------------------------------------------------------


def _promoted_dtype(dtypes: list[torch.dtype]) -> torch.dtype:
    """The promoted dtype of ``dtypes`` (at least float32)."""
    out = torch.float32
    for dtype in dtypes:
        out = torch.promote_types(out, dtype)
    return out


def _grad_norm(params: list[nn.Parameter]) -> Tensor:
    """‖g‖₂ over every gradient (what ``clip_grad_norm_`` computes), as a 0-d tensor."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _floats(values: list[Any]) -> list[float]:
    """Python floats of a list of floats (restored from a checkpoint) followed by 0-d
    tensors, with one device read."""
    floats = [v for v in values if not isinstance(v, Tensor)]
    tensors = [v for v in values if isinstance(v, Tensor)]
    if tensors:
        floats += torch.stack([t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
                               for t in tensors]).tolist()
    return floats


def _with_prefix(exc: EbmflowError, prefix: str) -> EbmflowError:
    """A copy of ``exc`` whose message starts with ``prefix`` (``exc`` itself if its class
    cannot be rebuilt from a message)."""
    try:
        new = type(exc)(f"{prefix}: {exc}")
    except TypeError:
        return exc
    new.__dict__.update(exc.__dict__)
    return new


def _exists(path: Path) -> bool:
    try:
        resolve(path)
    except CheckpointError:
        return False
    return True


def _load_module(module: nn.Module, state: Mapping[str, Tensor], file: Path, what: str) -> None:
    expected = module.state_dict()
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and not _same_kind_of_dtype(value, want):
            raise CheckpointError(
                f"{file}: tensor {key!r} has dtype {_dtype_of(value)}; the {what} "
                f"({type(module).__name__}) holds {want.dtype} there"
            )
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:  # torch's message lists one mismatch per line
        raise CheckpointError(
            f"{file} does not fit the {what} ({type(module).__name__}): "
            f"{' '.join(str(exc).split())}"
        ) from None


def _dtype_of(value: Any) -> str:
    return str(value.dtype) if isinstance(value, Tensor) else type(value).__name__


def _same_kind_of_dtype(value: Any, like: Tensor) -> bool:
    """Whether ``value`` is a tensor that ``like`` can take without losing its meaning:
    floating point for floating point (any width), the same dtype otherwise."""
    if not isinstance(value, Tensor):
        return False
    if like.is_floating_point():
        return value.is_floating_point()
    return value.dtype == like.dtype


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: How deep a training state's JSON may nest (its optimizer state is three levels deep).
_MAX_STATE_DEPTH = 32


def _decode_state(value: Any, tensors: Mapping[str, Tensor], where: str, tensors_file: str,
                  key: str = "", depth: int = 0) -> Any:
    """``training.json`` with its tensors put back: only the tags the Trainer writes
    (tensors, tuples, tagged dicts, non-finite floats) are accepted. A training state holds
    no components, so a ``__component__`` tag is refused instead of being built."""
    if depth > _MAX_STATE_DEPTH:
        raise CheckpointError(f"{where}: {key}: nested more than {_MAX_STATE_DEPTH} levels "
                              f"deep; a training state is not")
    if isinstance(value, list):
        return [_decode_state(v, tensors, where, tensors_file, f"{key}[{i}]", depth + 1)
                for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in MARKERS:
        return {k: _decode_state(v, tensors, where, tensors_file, f"{key}.{k}" if key else k,
                                 depth + 1) for k, v in value.items()}
    ((marker, content),) = value.items()
    if marker == "__tensor__":
        if not isinstance(content, str) or content not in tensors:
            raise CheckpointError(f"{tensors_file} has no tensor {_shown(content)} (which "
                                  f"{where} names at {key})")
        return tensors[content]
    if marker in ("__tuple__", "__dict__"):
        if not isinstance(content, list if marker == "__tuple__" else dict):
            raise CheckpointError(f"{where}: {key}: malformed {marker} value "
                                  f"{_shown(content)}")
        decoded = _decode_state(content, tensors, where, tensors_file, key, depth + 1)
        if marker == "__tuple__":
            return tuple(decoded)
        return {k: _decode_state(v, tensors, where, tensors_file, f"{key}.{k}", depth + 1)
                for k, v in content.items()}
    if marker == "__float__" and content in ("nan", "inf", "-inf"):
        return float(content)
    raise CheckpointError(
        f"{where}: {key}: a training state holds numbers, text and tensors, not a "
        f"{marker} value ({_shown(content)})"
    )


def _checked_like(value: Any, like: Tensor, file: str, key: str) -> Tensor:
    """``value`` if it is a floating-point tensor of ``like``'s shape, else raise."""
    if not isinstance(value, Tensor) or not value.is_floating_point() or (
            value.shape != like.shape):
        got = (f"a {value.dtype} tensor of shape {tuple(value.shape)}"
               if isinstance(value, Tensor) else _shown(value))
        raise CheckpointError(f"{file}: {key} must be a floating-point tensor of shape "
                              f"{tuple(like.shape)} (the parameter's), got {got}")
    return value


def _set_generator(generator: torch.Generator, state: Any, file: str, key: str) -> None:
    """Restore ``generator`` from ``state`` after checking it is a byte tensor of the size
    this generator's state has (a CPU and a CUDA generator's states differ)."""
    size = generator.get_state().numel()
    if not (isinstance(state, Tensor) and state.dtype == torch.uint8 and state.ndim == 1
            and state.numel() == size):
        got = (f"a {state.dtype} tensor of shape {tuple(state.shape)}"
               if isinstance(state, Tensor) else _shown(state))
        raise CheckpointError(
            f"{file}: {key} must be a generator state, a uint8 tensor of {size} bytes for a "
            f"{generator.device.type} generator, got {got}"
        )
    try:
        generator.set_state(state.contiguous())
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{file}: {key} is not a valid generator state "
                              f"({first_line(exc)})") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_pending(pending: Any, world_size: int, where: str
                     ) -> tuple[list[float], list[list[dict[str, float]]]]:
    """The losses and per-rank metrics of the logging interval in progress, checked."""
    if not isinstance(pending, dict):
        raise CheckpointError(f"{where}: pending must be an object, got {_shown(pending)}")
    loss = pending.get("loss", [])
    if not isinstance(loss, list) or not all(_is_number(v) and math.isfinite(v)
                                             for v in loss):
        raise CheckpointError(f"{where}: pending.loss must be a list of finite numbers, got "
                              f"{_shown(loss)}")
    by_rank = pending.get("metrics_by_rank", [[]] * world_size)
    ok = isinstance(by_rank, list) and len(by_rank) == world_size and all(
        isinstance(metrics, list) and all(
            isinstance(m, dict) and all(isinstance(k, str) and _is_number(v)
                                        for k, v in m.items())
            for m in metrics)
        for metrics in by_rank)
    if not ok:
        raise CheckpointError(
            f"{where}: pending.metrics_by_rank must be a list of {world_size} list(s) (one "
            f"per rank) of objects mapping metric names to numbers, got {_shown(by_rank)}"
        )
    return [float(v) for v in loss], by_rank


def _optimizer_template(optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """The per-parameter state this optimizer keeps, from one step of a copy with the same
    hyperparameters on a throwaway (2, 3) parameter; ``None`` when that copy cannot be made
    (an optimizer class whose groups are not its constructor's arguments)."""
    group = {k: v for k, v in optimizer.param_groups[0].items()
             if k not in ("params", "initial_lr")}
    probe_param = nn.Parameter(torch.zeros(2, 3))
    probe_param.grad = torch.zeros(2, 3)
    try:
        probe = type(optimizer)([probe_param], **group)
        probe.step()
    except Exception:  # any optimizer class may be given: the check is then skipped
        return None
    return dict(probe.state[probe_param])


def _checked_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer, where: str,
                             tensors_file: str) -> dict[str, Any]:
    """The saved optimizer state as ``optimizer.load_state_dict`` takes it, after checking
    it against ``optimizer``: the same parameter groups, per-parameter entries for existing
    parameters with the keys this optimizer keeps, tensors of the right kind and shape."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: optimizer must be an object, got {_shown(saved)}")
    groups, states = saved.get("param_groups"), saved.get("state")
    current = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current) or not all(
            isinstance(g, dict) and g.get("params") == c["params"]
            for g, c in zip(groups, current)):
        raise CheckpointError(
            f"{where}: optimizer.param_groups must be {len(current)} group(s) over the "
            f"parameters {[c['params'] for c in current]} (this Trainer's "
            f"{type(optimizer).__name__}), got {_shown(groups)}"
        )
    if not isinstance(states, dict):
        raise CheckpointError(f"{where}: optimizer.state must be an object, got "
                              f"{_shown(states)}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    template = _optimizer_template(optimizer)
    out: dict[int, dict[str, Any]] = {}
    for index, entry in states.items():
        name = f"optimizer.state.{index}"
        if not (isinstance(index, str) and index.isdigit() and int(index) < len(params)):
            raise CheckpointError(f"{where}: optimizer.state: {index!r} is not the index of "
                                  f"one of the {len(params)} parameters")
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: {name} must be an object, got {_shown(entry)}")
        param = params[int(index)]
        if template is not None and entry and set(entry) != set(template):
            raise CheckpointError(
                f"{where}: {name} has the keys {sorted(entry)}; this Trainer's "
                f"{type(optimizer).__name__} keeps {sorted(template)}"
            )
        for key, value in entry.items():
            _check_optimizer_value(value, _ABSENT if template is None else template[key],
                                   param, f"{name}.{key}", where, tensors_file)
        out[int(index)] = entry
    return {"state": out, "param_groups": groups}


def _check_optimizer_value(value: Any, like: Any, param: Tensor, key: str, where: str,
                           tensors_file: str) -> None:
    """One per-parameter optimizer value against ``like``, what a fresh optimizer keeps
    there (``_ABSENT`` when unknown: then a real tensor shaped like the parameter or a
    scalar, or a plain number or None)."""
    if isinstance(like, Tensor):
        # the probe parameter is (2, 3): a (2, 3) value is shaped like the parameter
        shape = tuple(param.shape) if tuple(like.shape) == (2, 3) else tuple(like.shape)
        floating = like.is_floating_point()
        ok = (isinstance(value, Tensor) and value.is_floating_point() == floating
              and not value.is_complex() and tuple(value.shape) == shape)
        expected = (f"{'a floating-point' if floating else f'a {like.dtype}'} tensor of "
                    f"shape {shape}")
    elif like is _ABSENT:
        ok = (value is None or _is_number(value)) if not isinstance(value, Tensor) else (
            value.is_floating_point() and tuple(value.shape) in (tuple(param.shape), ()))
        expected = f"a floating-point tensor of shape {tuple(param.shape)} or ()"
    else:
        ok = (value is None) if like is None else _is_number(value) or isinstance(
            value, type(like))
        expected = "null" if like is None else f"a {type(like).__name__}"
    if not ok:
        got = (f"a {value.dtype} tensor of shape {tuple(value.shape)}"
               if isinstance(value, Tensor) else _shown(value))
        file = tensors_file if isinstance(value, Tensor) else where
        raise CheckpointError(f"{file}: {key} must be {expected}, got {got}")


def _json_form(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists), for comparisons."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=repr))
    except (TypeError, ValueError):
        return repr(value)


_ABSENT = object()


def _differences(prefix: str, old: Any, new: Any) -> dict[str, str]:
    """``{"a.b": "a.b: OLD → NEW"}`` for each leaf where ``old`` and ``new`` differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, str] = {}
        for key in [*old, *(k for k in new if k not in old)]:
            out.update(_differences(f"{prefix}.{key}", old.get(key, _ABSENT),
                                    new.get(key, _ABSENT)))
        return out
    if old == new and type(old) is type(new):
        return {}

    def show(value: Any) -> str:
        return "(not set)" if value is _ABSENT else _shown(value, 60)

    return {prefix: f"{prefix}: {show(old)} → {show(new)}"}


def _optimizer_table(spec: Any) -> Any:
    """An optimizer spec as a dict without its ``lr`` (which a resume may change)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k != "lr"}
    return spec


def _component_table(table: Any, kind: str, host: PluginHost) -> Any:
    """A run table with its name qualified (``mlp`` → ``ebmflow:mlp``) and a ``kind`` key
    equal to the table's kind dropped, so that spellings of the same run compare equal."""
    if not isinstance(table, dict):
        return table
    table = {k: v for k, v in table.items() if not (k == "kind" and v == kind)}
    name = table.get("name")
    if isinstance(name, str):
        with contextlib.suppress(Exception):  # an unresolvable name is compared as written
            table["name"] = host.get(kind, name).qualified_name
    return table


_TABLE_KINDS = {"data": "dataset", "energy": "energy", "objective": "objective",
                "sampler": "sampler"}


def _run_changes(saved: Mapping[str, Any], current: Mapping[str, Any],
                 host: PluginHost) -> dict[str, str]:
    """The changes from the run record ``saved`` to ``current`` that a resume cannot
    honour: every difference except the keys of :data:`RESUMABLE_TRAIN_KEYS` and the
    optimizer's ``lr``."""
    changes: dict[str, str] = {}
    for table, kind in _TABLE_KINDS.items():
        old, new = saved.get(table), current.get(table)
        if isinstance(old, dict) and isinstance(new, dict) and (
                ("kind" in old) != ("kind" in new)):
            # one run was described by a run file, the other by component records (a
            # Trainer built from objects, which lists every argument): not comparable key by
            # key; the energy's arguments are still compared through config.json
            continue
        changes.update(_differences(table, _json_form(_component_table(old, kind, host)),
                                    _json_form(_component_table(new, kind, host))))
    old_train = dict(saved.get("train") or {}) if isinstance(saved.get("train"), dict) else {}
    new_train = dict(current.get("train") or {})
    for key in RESUMABLE_TRAIN_KEYS:
        old_train.pop(key, None)
        new_train.pop(key, None)
    old_train["optimizer"] = _optimizer_table(old_train.get("optimizer", "adam"))
    new_train["optimizer"] = _optimizer_table(new_train.get("optimizer", "adam"))
    changes.update(_differences("train", _json_form(old_train), _json_form(new_train)))
    return changes


def _group_changes(saved_groups: list[Any], optimizer: torch.optim.Optimizer
                   ) -> dict[str, str]:
    """Differences in the optimizer's hyperparameters (other than ``lr``) between the saved
    parameter groups and ``optimizer``'s: catches a changed optimizer that the run record
    cannot describe (an optimizer factory). Keys only one side has (another torch version)
    are not compared, but a different set of keys means another optimizer class."""
    changes: dict[str, str] = {}
    for i, (old, new) in enumerate(zip(saved_groups, optimizer.param_groups)):
        if not isinstance(old, dict):
            continue
        skip = ("params", "lr", "initial_lr")
        old_keys = {k for k in old if k not in skip}
        new_keys = {k for k in new if k not in skip}
        if old_keys and not (old_keys <= new_keys or new_keys <= old_keys):
            changes["optimizer"] = (
                f"optimizer: the saved state is for an optimizer with the hyperparameters "
                f"{sorted(old_keys)}, this Trainer's {type(optimizer).__name__} has "
                f"{sorted(new_keys)}")
            return changes
        for key in sorted(old_keys & new_keys):
            changes.update(_differences(f"optimizer.param_groups[{i}].{key}",
                                        _json_form(old[key]), _json_form(new[key])))
    return changes


def _read_history(folder: Path, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    if METRICS_FILE not in config["files"]:
        return []
    text = read_bytes(folder, METRICS_FILE, config=config).decode("utf-8")
    history = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{folder / METRICS_FILE} line {number}: {exc}") from None
    return history
