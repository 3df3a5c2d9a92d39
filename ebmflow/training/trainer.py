"""The Trainer: fits any Objective on any Energy; checkpoints, exact resume, EMA, torchrun.

One training step, for the batch ``x`` of step ``i`` (``i`` = 0, 1, …):

    lr_i = lr · f(i)                                   (f: the learning-rate schedule)
    L    = objective(energy, x, generator=g_obj).loss
    g    = ∇_θ L                (averaged over ranks under torchrun)
    g    = g · min(1, c / ‖g‖)   (with ``grad_clip=c``)
    θ    = optimizer step(θ, g, lr_i)
    θ̄    = d · θ̄ + (1 − d) · θ  (with ``ema=d``)

The parts (argument checks, batches, optimizers and schedules, torchrun's collectives,
NaN/inf checks, log records, the checkpoint's training state, run files) live in their own
modules of :mod:`ebmflow.training`, listed there. This module holds the loop that ties them
together, and :func:`build`, which turns a run file into a Trainer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ebmflow.checkpoint import WEIGHTS_FILE, load, resolve
from ebmflow.energy import Energy
from ebmflow.errors import CheckpointError, ConfigError, EbmflowError, first_line, is_out_of_memory
from ebmflow.objective import Objective
from ebmflow.registry import PluginHost, default_host
from ebmflow.seeding import derive_seed
from ebmflow.training.arguments import (
    check_components,
    check_divisible,
    check_trainer_arguments,
    int_arg,
)
from ebmflow.training.batches import check_event_shape, make_batches
from ebmflow.training.callbacks import Callbacks
from ebmflow.training.distributed import Collective, resolve_device, world
from ebmflow.training.edits import check_resumable_checkpoint
from ebmflow.training.log import MetricsFile, interval_means, log_record, show_on_bar
from ebmflow.training.monitor import (
    NonFiniteMonitor,
    check_batch,
    check_output,
    grad_norm,
    with_step,
)
from ebmflow.training.optim import LRSchedule, make_optimizer, trainable_parameters
from ebmflow.training.run_config import RunConfig, build_components
from ebmflow.training.state import (
    OBJECTIVE_FILE,
    TrainingCheckpoint,
    encode_training_state,
    energy_record,
    floats,
    has_checkpoint,
    open_training_checkpoint,
    rank_local_state,
    read_history,
    read_run_config,
    restore_optimizer,
    restore_rank_local,
    restore_weights,
    run_record,
    write_training_checkpoint,
)
from ebmflow.training.state_checks import checked_pending


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
            :mod:`ebmflow.training.batches`).
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
        checkpoint_dir: the checkpoint folder (see :mod:`ebmflow.training.state`), written every
            ``checkpoint_every`` steps and when ``fit`` ends. Needs a registered energy.
        checkpoint_every: steps between checkpoints (``None``: only at the end of ``fit``).
        log_every: steps between log records (means over the interval) and progress-bar
            updates of the loss and metrics.
        progress: show a tqdm progress bar (rank 0 only).
        metrics_file: a JSON-lines file that each log record is appended to as it is made
            (rank 0 only; rewritten from the history when ``fit`` starts).
        device: where to train; the energy and objective are moved there. Default: the
            energy's device. Under torchrun ``"cuda"`` means ``cuda:LOCAL_RANK``.
        callbacks: objects whose ``on_start``, ``on_step``, ``on_log``, ``on_checkpoint`` and
            ``on_end`` methods the loop calls (see :mod:`ebmflow.training.callbacks`), e.g. a
            :class:`~ebmflow.TensorBoardLogger`; not recorded in the run config.
        host: the registry for checkpoints and rebuilding components
            (default ``ebmflow.default_host()``).
        run_config: the run's tables (``data``, ``energy``, ``objective``, ``sampler``,
            ``train``) as :func:`ebmflow.training.build` passes them; stored in
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
        callbacks: Sequence[Any] = (),
        host: PluginHost | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        check_components(energy, objective)
        self.host = default_host() if host is None else host
        checked = check_trainer_arguments(
            batch_size=batch_size,
            steps=steps,
            seed=seed,
            grad_clip=grad_clip,
            ema=ema,
            compile=compile,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
        )
        self.batch_size, self.steps, self.seed = checked.batch_size, checked.steps, checked.seed
        self.grad_clip, self.ema_decay = checked.grad_clip, checked.ema_decay
        self.checkpoint_every, self.log_every = checked.checkpoint_every, checked.log_every
        self.progress = progress
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.metrics_file = None if metrics_file is None else Path(metrics_file)
        self.callbacks = Callbacks(callbacks)

        self.rank, self.world_size = world()
        check_divisible(self.batch_size, self.world_size)
        self.device = resolve_device(energy, device, self.world_size)
        self.energy = energy.to(self.device)
        self.objective = objective.to(self.device)
        if compile:
            self.energy.compile()

        self.data = data
        self._data_generator = torch.Generator().manual_seed(derive_seed(self.seed, "data"))
        self._objective_generator = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.seed, "objective", self.rank)
        )
        self._batches = make_batches(
            data,
            self.objective,
            self.batch_size,
            self.rank,
            self.world_size,
            self._data_generator,
            self.device,
        )
        check_event_shape(self.energy, data)

        self._energy_params, self._params = trainable_parameters(self.energy, self.objective)
        self.optimizer = make_optimizer(optimizer, self._params)
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.lr_schedule = None if lr_schedule is None else LRSchedule(lr_schedule, self.steps)

        self._train_arguments = {
            "optimizer": optimizer if isinstance(optimizer, (str, Mapping)) else None,
            "lr_schedule": lr_schedule,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "seed": self.seed,
            "grad_clip": grad_clip,
            "ema": ema,
            "compile": compile,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
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
        self._last_checkpoint: tuple[Path, int] | None = None
        self._monitor = NonFiniteMonitor(
            self.device,
            self.steps,
            f"{type(objective).__name__} on {type(energy).__name__}",
            self._params,
            lambda: self._last_checkpoint,
        )
        self._collective = Collective(self.rank, self.world_size, self.device)
        self._metrics: MetricsFile | None = None
        self._last_norm: Tensor | None = None

    def _energy_checkpoint_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The energy's config.json record and tensor arguments (what ebmflow.save writes)."""
        if self._energy_files is None:
            self._energy_files = energy_record(self.energy, self.host)
        return self._energy_files

    def run_config(self) -> dict[str, Any]:
        """The run's tables (``data``, ``energy``, ``objective``, [``sampler``], ``train``)
        as stored in checkpoints; a component that is not registered, or has arguments JSON
        cannot hold, is ``None`` (pass it to :meth:`resume` yourself)."""
        return run_record(
            self._run_config,
            self.host,
            self.data,
            self.energy,
            self.objective,
            self._train_arguments,
        )

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
        created = self._collective.start()
        bar = None
        try:
            if resume:
                if self.checkpoint_dir is None:
                    raise ConfigError("Trainer.fit(resume=True) needs a checkpoint_dir")
                if has_checkpoint(self.checkpoint_dir):
                    self.load_checkpoint(self.checkpoint_dir)
            if self.world_size > 1:
                self._collective.broadcast_from_first(
                    [
                        *self.energy.parameters(),
                        *self.energy.buffers(),
                        *self.objective.parameters(),
                    ]
                )
            if self.ema_decay is not None and self._ema is None:
                self._ema = [p.clone() for p in self._param_data]
            if self.metrics_file is not None and self.rank == 0:
                self._metrics = MetricsFile(self.metrics_file)
                self._metrics.open(self.history)
            stop = self.steps if until is None else min(self.steps, int_arg("until", until, 0))
            self.callbacks("on_start", self)
            if self.step >= stop:
                return self.history
            if self.progress and self.rank == 0:
                from tqdm import tqdm

                bar = tqdm(
                    total=self.steps,
                    initial=self.step,
                    desc="train",
                    unit="step",
                    dynamic_ncols=True,
                )
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
            self.callbacks("on_end", self)
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
            if created:
                self._collective.stop()

    def _loop(self, bar: Any, stop: int) -> None:
        energy, objective, optimizer = self.energy, self.objective, self.optimizer
        params, monitor, collective = self._params, self._monitor, self._collective
        next_batch, generator = self._batches.next, self._objective_generator
        schedule, groups, base_lrs = self.lr_schedule, optimizer.param_groups, self._base_lrs
        clip, ema = self.grad_clip, self._ema
        ema_weight = None if self.ema_decay is None else 1.0 - self.ema_decay
        distributed, total, start = self.world_size > 1, self.steps, self.step
        for i in range(start, stop):
            if schedule is not None:
                factor = schedule(i)
                for group, base in zip(groups, base_lrs):
                    group["lr"] = base * factor
            batch = next_batch()
            if monitor.check_every_step:
                check_batch(batch, i + 1, total)
            optimizer.zero_grad(set_to_none=True)
            try:
                out = objective(energy, batch, generator=generator)
            except EbmflowError as exc:  # a sampler's divergence, an objective's own error
                monitor.flush()  # an earlier bad gradient is the real cause
                raise with_step(exc, i + 1, total) from exc
            if i == start:
                check_output(out, objective)
            out.loss.backward()
            loss = (
                collective.average_gradients(params, out.loss, i)
                if distributed
                else out.loss.detach()
            )
            # NaN/inf check of the loss and the gradients: with clipping the norm tells;
            # without, a flag set by one fused kernel
            if clip is not None:
                self._last_norm = flag = torch.nn.utils.clip_grad_norm_(params, clip)
            else:
                flag = torch.zeros(1, device=self.device)
                flat = collective.flat if distributed else None  # all gradients, reduced
                monitor.mark(
                    [flat]
                    if flat is not None
                    else [g for p in params if (g := p.grad) is not None],
                    flag,
                )
            monitor.observe(i + 1, flag, loss, is_norm=clip is not None)
            optimizer.step()
            if ema is not None and ema_weight is not None:
                torch._foreach_lerp_(ema, self._param_data, ema_weight)
            self.step = step = i + 1
            self._pending_loss.append(loss)
            self._pending_metrics.append(out.metrics)
            if bar is not None:
                bar.update(1)
            if self.callbacks.has_step:
                self.callbacks("on_step", self, step, out)
            if step % self.log_every == 0 or step == total:
                self._log(bar)
            if (
                self.checkpoint_every is not None
                and step % self.checkpoint_every == 0
                and (step < stop)
            ):
                self.save_checkpoint()

    # -- logging ---------------------------------------------------------------------------

    def _log(self, bar: Any) -> None:
        self._monitor.flush()
        losses = floats(self._pending_loss)
        norm = self._last_norm if self.grad_clip is not None else grad_norm(self._params)
        means = interval_means(self._pending_metrics)
        self._pending_loss.clear()
        self._pending_metrics.clear()
        if self.world_size > 1:
            means = self._collective.average_metrics(means, type(self.objective).__name__)
        record = log_record(self.step, losses, norm, self.optimizer.param_groups[0]["lr"], means)
        self.history.append(record)
        if self._metrics is not None:
            self._metrics.write(record)
        if bar is not None:
            show_on_bar(bar, record)
        self.callbacks("on_log", self, record)

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
        self._monitor.flush()  # never checkpoint a diverged state
        record, argument_tensors = self._energy_checkpoint_record()
        tensors, objective_tensors, metrics_by_rank = rank_local_state(
            self.objective,
            self._objective_generator,
            self._pending_metrics,
            self._collective if self.world_size > 1 else None,
        )

        self._collective.on_first_rank(
            lambda: self._write_checkpoint(
                target, record, argument_tensors, tensors, objective_tensors, metrics_by_rank
            ),
            f"write the checkpoint {target} at step {self.step}",
        )
        self._last_checkpoint = (target, self.step)
        written = resolve(target) if self.rank == 0 else target
        self.callbacks("on_checkpoint", self, written)
        return written

    def _write_checkpoint(
        self,
        target: Path,
        record: dict[str, Any],
        argument_tensors: dict[str, Tensor],
        tensors: dict[str, Tensor],
        objective_tensors: dict[str, Tensor],
        metrics_by_rank: list[list[dict[str, float]]] | None,
    ) -> Path:
        data_state, data_tensors = self._batches.state()
        tensors.update(data_tensors)
        tensors["generator.data"] = self._data_generator.get_state()
        state = encode_training_state(
            tensors,
            self.host,
            step=self.step,
            world_size=self.world_size,
            run=self.run_config(),
            optimizer=self.optimizer.state_dict(),
            data=data_state,
            pending_loss=floats(self._pending_loss),
            metrics_by_rank=metrics_by_rank,
        )
        if self._ema is not None:
            for name, p in self.energy.named_parameters():
                if p.requires_grad:
                    tensors[f"weights.{name}"] = p.detach()
        training = {
            "step": self.step,
            "steps": self.steps,
            "world_size": self.world_size,
            "weights": "ema" if self._ema is not None else "raw",
            "ema": self.ema_decay,
        }
        sigma_min = getattr(self.objective, "sigma_min", None)
        if isinstance(sigma_min, (int, float)) and sigma_min > 0:
            training["sigma_min"] = float(sigma_min)  # the --sigma default of evaluate and sample
        return write_training_checkpoint(
            target,
            record=record,
            argument_tensors=argument_tensors,
            weights=self.ema_state_dict(),
            state=state,
            tensors=tensors,
            objective_tensors=objective_tensors,
            history=self.history,
            training=training,
        )

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> int:
        """Restore the training state saved at ``path`` (default ``checkpoint_dir``): weights,
        EMA, optimizer, generators, objective buffers, data cursor, step and history.
        Returns the step.

        What a resumed run may change is in :mod:`ebmflow.training.edits`: the ``[train]``
        keys in :data:`RESUMABLE_TRAIN_KEYS` (``steps``, ``lr_schedule``, ``grad_clip``,
        ``checkpoint_every``, ``log_every``, ``progress``, ``compile``) and the optimizer's
        ``lr``; the run continues under the new values. Any other change (a component or its
        arguments, the optimizer or its other arguments, ``seed``, ``batch_size``, ``ema``,
        ``device``) raises :class:`~ebmflow.ConfigError` naming each changed key with its old
        and new value; to use it, start a new run from the weights.

        Everything read from ``training.json`` and ``training.safetensors`` is checked
        (types, shapes, dtypes, generator states, the optimizer state against this
        optimizer's parameter groups) before any of it is used: a tampered or mismatched
        file raises :class:`~ebmflow.CheckpointError` naming the file and the key.
        """
        path = self.checkpoint_dir if path is None else Path(path)
        if path is None:
            raise ConfigError("Trainer.load_checkpoint: no path given and no checkpoint_dir")
        saved = open_training_checkpoint(path, self.energy, self.host, self.world_size)
        folder, state, where = saved.folder, saved.state, saved.where
        self._check_unchanged(saved)
        model, objective_tensors = saved.read(WEIGHTS_FILE), saved.read(OBJECTIVE_FILE)
        self._ema = restore_weights(
            saved, model, self.energy, self._energy_params, ema=self.ema_decay is not None
        )
        restore_optimizer(self.optimizer, state.get("optimizer"), where, saved.tensors_file)
        restore_rank_local(
            saved,
            objective_tensors,
            self.objective,
            self._objective_generator,
            self._data_generator,
            self._batches,
            self.rank,
            self.world_size,
        )
        # progress
        loss, metrics = checked_pending(state.get("pending", {}), self.world_size, where)
        self.step = saved.step
        self._pending_loss[:] = loss
        self._pending_metrics[:] = metrics[self.rank]
        self._monitor.pending.clear()
        self.history = read_history(folder, saved.config)
        self._last_checkpoint = (Path(path), self.step)
        return self.step

    def _check_unchanged(self, saved: TrainingCheckpoint) -> None:
        """Raise :class:`ConfigError` listing every change between the checkpoint's run and
        this Trainer's that a resume cannot honour (see :meth:`load_checkpoint`)."""
        try:
            record, _ = self._energy_checkpoint_record()
        except (ConfigError, CheckpointError):  # not registered: nothing to compare
            record = None
        check_resumable_checkpoint(
            saved,
            self.run_config(),
            self.host,
            None if record is None else record["arguments"],
            self.optimizer,
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
        host = default_host() if host is None else host
        folder, run_config = read_run_config(checkpoint_dir)
        if run_config.train.get("optimizer", "adam") is None and "optimizer" not in overrides:
            raise ConfigError(
                f"{folder}: the run was built with an optimizer factory, which the checkpoint "
                f"cannot describe; pass optimizer= (the same factory) to Trainer.resume"
            )
        if energy is None:
            energy = load(folder, host=host)
        trainer = build(
            run_config,
            host=host,
            energy=energy,
            objective=objective,
            data=data,
            checkpoint_dir=checkpoint_dir,
            **overrides,
        )
        trainer.load_checkpoint(checkpoint_dir)
        return trainer


def build(
    run_config: RunConfig,
    *,
    host: PluginHost | None = None,
    energy: Any = None,
    objective: Any = None,
    data: Any = None,
    **overrides: Any,
) -> Trainer:
    """The :class:`Trainer` for ``run_config``.

    Components are built with ``host.create`` (default ``ebmflow.default_host()``) from
    their tables (see :func:`~ebmflow.training.run_config.build_components`); ``energy``,
    ``objective`` and ``data`` replace the corresponding tables with ready objects;
    ``overrides`` are Trainer keyword arguments that replace ``[train]`` keys or add others
    (``checkpoint_dir``, ``metrics_file``, ``progress``).
    """
    host = default_host() if host is None else host
    energy, objective, data, arguments = build_components(
        run_config, host, energy=energy, objective=objective, data=data, **overrides
    )
    try:
        return Trainer(
            energy, objective, data, host=host, run_config=run_config.to_dict(), **arguments
        )
    except ConfigError as exc:
        raise ConfigError(f"{run_config.source} [train]: {exc}") from None
