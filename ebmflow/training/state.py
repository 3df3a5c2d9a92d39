"""The training state of a checkpoint: what a Trainer adds to an energy's checkpoint folder.

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

Everything read back is checked before it is used (see :func:`open_training_checkpoint` and
:mod:`ebmflow.training.state_checks`): a tampered or mismatched file raises
:class:`~ebmflow.CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmflow.checkpoint import (
    ARGUMENTS_FILE,
    WEIGHTS_FILE,
    PathLike,
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
from ebmflow.errors import CheckpointError, ConfigError, first_line
from ebmflow.registry import PluginHost
from ebmflow.training.arguments import shown
from ebmflow.training.run_config import RunConfig
from ebmflow.training.state_checks import (
    checked_like,
    checked_optimizer_state,
    decode_state,
    load_module,
    set_generator,
)
from ebmflow.validation import MAX_STEPS

if TYPE_CHECKING:
    from ebmflow.training.distributed import Collective

#: Files a training checkpoint adds to the energy's checkpoint folder.
TRAINING_STATE_FILE = "training.json"
TRAINING_TENSORS_FILE = "training.safetensors"
OBJECTIVE_FILE = "objective.safetensors"
METRICS_FILE = "metrics.jsonl"


def rank_local_state(
    objective: nn.Module,
    generator: torch.Generator,
    pending_metrics: list[Mapping[str, Any]],
    collective: Collective | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[list[dict[str, float]]] | None]:
    """This rank's objective buffers and generator, and the objective's metrics of the
    logging interval in progress (averaged over ranks when logged): ``(training tensors,
    objective tensors, metrics by rank)``. With a ``collective`` (several ranks) they are
    gathered to rank 0, keyed by rank; the other ranks get empty ones and ``None``."""
    tensors: dict[str, Tensor] = {}
    objective_state = {k: v.detach() for k, v in objective.state_dict().items()}
    objective_generator = generator.get_state()
    metrics = [{k: float(v) for k, v in m.items()} for m in pending_metrics]
    if collective is None:
        tensors["generator.objective.rank0"] = objective_generator
        return tensors, objective_state, [metrics]
    texts = collective.gather_bytes(json.dumps(metrics).encode())
    metrics_by_rank = None if texts is None else [json.loads(t) for t in texts]
    objective_tensors: dict[str, Tensor] = {}
    for key in sorted(objective_state):
        gathered = collective.gather(objective_state[key])
        if gathered is not None:
            for r, t in enumerate(gathered):
                objective_tensors[f"rank{r}.{key}"] = t
    gathered = collective.gather(objective_generator)
    if gathered is not None:
        for r, t in enumerate(gathered):
            tensors[f"generator.objective.rank{r}"] = t
    return tensors, objective_tensors, metrics_by_rank


def energy_record(energy: nn.Module, host: PluginHost) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The energy's config.json record and its tensor arguments (what ``ebmflow.save``
    writes); an energy the registry cannot rebuild is an error in the Trainer's
    configuration, raised as :class:`~ebmflow.ConfigError`."""
    try:
        component_of(energy, host)
    except CheckpointError as exc:
        raise ConfigError(
            f"Trainer: checkpoints need a registered energy so that ebmflow.load can "
            f"rebuild it: {exc}"
        ) from None
    tensors: dict[str, Tensor] = {}
    return encode_component(energy, host, tensors), tensors


def run_record(
    run_config: Mapping[str, Any] | None,
    host: PluginHost,
    data: Any,
    energy: nn.Module,
    objective: nn.Module,
    train_arguments: Mapping[str, Any],
) -> dict[str, Any]:
    """The run record a checkpoint stores: the run's tables (``run_config``, or else the
    components' configs; tensor data and an unregistered component are ``None``) with
    ``train`` updated by the Trainer's arguments, each made JSON or ``None``."""
    if run_config is not None:
        run = dict(run_config)
    else:
        run = {
            "data": None
            if isinstance(data, (Tensor, tuple, list))
            else component_config(data, host),
            "energy": component_config(energy, host),
            "objective": component_config(objective, host),
        }
    train = {**(run.get("train") or {}), **train_arguments}
    for key, value in train.items():
        try:
            train[key] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            train[key] = None  # e.g. an optimizer factory: pass it to resume yourself
    run["train"] = train
    return run


def encode_training_state(
    tensors: dict[str, Tensor],
    host: PluginHost,
    *,
    step: int,
    world_size: int,
    run: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    data: Mapping[str, Any],
    pending_loss: list[float],
    metrics_by_rank: list[list[dict[str, float]]] | None,
) -> dict[str, Any]:
    """``training.json``'s content: JSON for everything but tensors, which
    :func:`~ebmflow.checkpoint.encode_value` moves to ``tensors`` (``training.safetensors``)
    as ``{"__tensor__": key}``, the same tagging as config.json's arguments."""
    return {
        "step": step,
        "world_size": world_size,
        "run": run,
        "optimizer": encode_value(
            {
                "state": {str(k): v for k, v in optimizer["state"].items()},
                "param_groups": optimizer["param_groups"],
            },
            "optimizer",
            "optimizer",
            host,
            tensors,
            None,
        ),
        "data": data,
        "pending": encode_value(
            {
                "loss": pending_loss,
                "metrics_by_rank": metrics_by_rank,
            },
            "pending",
            "metrics",
            host,
            tensors,
            None,
        ),
    }


def write_training_checkpoint(
    target: Path,
    *,
    record: dict[str, Any],
    argument_tensors: Mapping[str, Tensor],
    weights: Mapping[str, Tensor],
    state: Mapping[str, Any],
    tensors: Mapping[str, Tensor],
    objective_tensors: Mapping[str, Tensor],
    history: list[dict[str, Any]],
    training: Mapping[str, Any],
) -> Path:
    """Write the training checkpoint folder ``target`` atomically: the energy's
    ``record`` (with ``metadata.training`` = ``training``), its ``weights`` and tensor
    arguments, the JSON ``state`` with its ``tensors``, the objective's tensors and the
    ``history`` of log records."""
    files: dict[str, bytes | Mapping[str, Tensor]] = {WEIGHTS_FILE: weights}
    if argument_tensors:
        files[ARGUMENTS_FILE] = argument_tensors
    files[TRAINING_STATE_FILE] = (json.dumps(state, indent=1, allow_nan=False) + "\n").encode()
    files[TRAINING_TENSORS_FILE] = tensors
    files[OBJECTIVE_FILE] = objective_tensors
    files[METRICS_FILE] = "".join(json.dumps(r) + "\n" for r in history).encode()
    config = dict(record)
    config["metadata"] = {"training": dict(training)}
    return write_checkpoint_folder(target, files, config)


@dataclass
class TrainingCheckpoint:
    """A training checkpoint folder whose ``training.json`` has been read and checked
    (step, number of ranks) and decoded with its tensors."""

    folder: Path
    config: dict[str, Any]
    meta: dict[str, Any]
    state: dict[str, Any]
    tensors: dict[str, Tensor]
    step: int

    @property
    def where(self) -> str:
        return str(self.folder / TRAINING_STATE_FILE)

    @property
    def tensors_file(self) -> str:
        return str(self.folder / TRAINING_TENSORS_FILE)

    def read(self, file: str) -> dict[str, Tensor]:
        """The tensors of ``file`` (hash-verified)."""
        return read_tensors(self.folder, file, config=self.config)

    def need(self, mapping: Mapping[str, Any], key: str, file: str) -> Any:
        """``mapping[key]``, read from ``file``; raise if it is missing."""
        if key not in mapping:
            raise CheckpointError(
                f"{self.folder / file} has no {key!r}: the training "
                f"checkpoint is incomplete or from another run"
            )
        return mapping[key]


def open_training_checkpoint(
    path: str | Path, energy: nn.Module, host: PluginHost, world_size: int
) -> TrainingCheckpoint:
    """The training checkpoint at ``path`` for a run of ``energy`` on ``world_size`` ranks;
    raises :class:`~ebmflow.CheckpointError` if it is not one, holds another energy, or was
    written by a run on another number of ranks."""
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
        component = component_of(energy, host)
    except CheckpointError:
        component = None
    if component is not None and (config.get("plugin"), config.get("name")) != (
        component.plugin,
        component.name,
    ):
        raise CheckpointError(
            f"{folder} holds a {config.get('plugin')}:{config.get('name')} energy, but this "
            f"Trainer trains a {component.qualified_name} energy"
        )
    if TRAINING_STATE_FILE not in config["files"]:
        raise CheckpointError(
            f"{folder} has no {TRAINING_STATE_FILE}: the training checkpoint is incomplete"
        )
    where = str(folder / TRAINING_STATE_FILE)
    tensors_file = str(folder / TRAINING_TENSORS_FILE)
    state = read_json(folder, TRAINING_STATE_FILE, config=config)
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: not a training state (not a JSON object)")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEPS:
        raise CheckpointError(
            f"{where}: step must be an integer from 0 to {MAX_STEPS}, got {step!r}"
        )
    if state.get("world_size") != world_size:
        raise CheckpointError(
            f"{folder} was written by a run on {state.get('world_size')} rank(s); this run "
            f"has {world_size}. Resume with the same number of processes (sampler "
            f"chains, replay buffers and generators are saved per rank), or start a new "
            f"run from its weights (ebmflow.load)"
        )
    tensors = read_tensors(folder, TRAINING_TENSORS_FILE, config=config)
    state = decode_state(state, tensors, where, tensors_file)
    return TrainingCheckpoint(folder, config, meta, state, tensors, step)


def read_run_config(checkpoint_dir: PathLike) -> tuple[Path, RunConfig]:
    """The folder of the training checkpoint at ``checkpoint_dir`` and the run config stored
    in its ``training.json`` (what :meth:`~ebmflow.Trainer.resume` rebuilds the run from)."""
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
    return folder, RunConfig.from_dict(run, source=str(folder / TRAINING_STATE_FILE))


def restore_weights(
    saved: TrainingCheckpoint,
    model: Mapping[str, Tensor],
    energy: nn.Module,
    params: list[nn.Parameter],
    *,
    ema: bool,
) -> list[Tensor] | None:
    """Load the raw weights θ into ``energy`` (``model`` is ``model.safetensors``: θ̄ when
    the run kept an EMA, else θ) and return the EMA weights θ̄ of its trainable ``params``
    (``None`` without ``ema``); a checkpoint without EMA gives θ̄ = θ."""
    folder, tensors, tensors_file = saved.folder, saved.tensors, saved.tensors_file
    ema_saved = saved.meta.get("weights") == "ema"
    raw = dict(model)
    named = dict(energy.named_parameters())
    if ema_saved:
        for name, p in named.items():
            if p.requires_grad:
                key = f"weights.{name}"
                raw[name] = checked_like(
                    saved.need(tensors, key, TRAINING_TENSORS_FILE), p, tensors_file, key
                )
    load_module(energy, raw, folder / WEIGHTS_FILE, "energy")
    if not ema:
        return None
    by_id = {id(p): name for name, p in named.items()}
    source = model if ema_saved else raw
    return [
        checked_like(
            saved.need(source, by_id[id(p)], WEIGHTS_FILE),
            p,
            str(folder / WEIGHTS_FILE),
            by_id[id(p)],
        )
        .to(p.device, p.dtype)
        .clone()
        for p in params
    ]


def restore_optimizer(
    optimizer: torch.optim.Optimizer, saved: Any, where: str, tensors_file: str
) -> None:
    """Load the saved optimizer state into ``optimizer`` after checking it against its
    groups, then put back ``optimizer``'s hyperparameters (a new lr included), so the run
    uses what its run record says."""
    checked = checked_optimizer_state(saved, optimizer, where, tensors_file)
    hyperparameters = [
        {k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups
    ]
    try:
        optimizer.load_state_dict(checked)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where}: optimizer: the state does not fit this Trainer's "
            f"{type(optimizer).__name__} ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    for group, values in zip(optimizer.param_groups, hyperparameters):
        group.update(values)


def restore_rank_local(
    saved: TrainingCheckpoint,
    objective_tensors: Mapping[str, Tensor],
    objective: nn.Module,
    objective_generator: torch.Generator,
    data_generator: torch.Generator,
    batches: Any,
    rank: int,
    world_size: int,
) -> None:
    """Put back what :func:`rank_local_state` and the batch source saved: the data
    generator, this rank's objective generator and objective buffers (``objective_tensors``
    is ``objective.safetensors``), and the data cursor."""
    tensors, tensors_file, where = saved.tensors, saved.tensors_file, saved.where
    set_generator(
        data_generator,
        saved.need(tensors, "generator.data", TRAINING_TENSORS_FILE),
        tensors_file,
        "generator.data",
    )
    key = f"generator.objective.rank{rank}"
    set_generator(
        objective_generator, saved.need(tensors, key, TRAINING_TENSORS_FILE), tensors_file, key
    )
    prefix = f"rank{rank}." if world_size > 1 else ""
    objective_state = {
        k[len(prefix) :]: v for k, v in objective_tensors.items() if k.startswith(prefix)
    }
    load_module(objective, objective_state, saved.folder / OBJECTIVE_FILE, "objective")
    data_state = saved.state.get("data", {})
    if not isinstance(data_state, dict):
        raise CheckpointError(
            f"{where}: data must be an object (the data cursor), got {shown(data_state)}"
        )
    batches.load_state(data_state, tensors, where, tensors_file)


def floats(values: list[Any]) -> list[float]:
    """Python floats of a list of floats (restored from a checkpoint) followed by 0-d
    tensors, with one device read."""
    floats = [v for v in values if not isinstance(v, Tensor)]
    tensors = [v for v in values if isinstance(v, Tensor)]
    if tensors:
        floats += torch.stack(
            [t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors]
        ).tolist()
    return floats


def has_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a checkpoint (or the previous one an interrupted save set aside)."""
    try:
        resolve(path)
    except CheckpointError:
        return False
    return True


def read_history(folder: Path, config: Mapping[str, Any]) -> list[dict[str, Any]]:
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
