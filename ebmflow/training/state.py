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
the ``checked_*`` functions): a tampered or mismatched file raises
:class:`~ebmflow.CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmflow.checkpoint import (
    ARGUMENTS_FILE,
    MARKERS,
    WEIGHTS_FILE,
    component_of,
    encode_value,
    read_bytes,
    read_json,
    read_tensors,
    resolve,
    write_checkpoint_folder,
)
from ebmflow.errors import CheckpointError, first_line
from ebmflow.registry import PluginHost
from ebmflow.training.arguments import shown
from ebmflow.training.run_config import RunConfig
from ebmflow.validation import MAX_STEPS

if TYPE_CHECKING:
    from ebmflow.training.distributed import Collective

#: Files a training checkpoint adds to the energy's checkpoint folder.
TRAINING_STATE_FILE = "training.json"
TRAINING_TENSORS_FILE = "training.safetensors"
OBJECTIVE_FILE = "objective.safetensors"
METRICS_FILE = "metrics.jsonl"

#: Stands for "no template known" in :func:`check_optimizer_value`.
UNKNOWN = object()


def rank_local_state(objective: nn.Module, generator: torch.Generator,
                     pending_metrics: list[Mapping[str, Any]], collective: Collective | None
                     ) -> tuple[dict[str, Tensor], dict[str, Tensor],
                                list[list[dict[str, float]]] | None]:
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


def encode_training_state(tensors: dict[str, Tensor], host: PluginHost, *, step: int,
                          world_size: int, run: Mapping[str, Any],
                          optimizer: Mapping[str, Any], data: Mapping[str, Any],
                          pending_loss: list[float],
                          metrics_by_rank: list[list[dict[str, float]]] | None
                          ) -> dict[str, Any]:
    """``training.json``'s content: JSON for everything but tensors, which
    :func:`~ebmflow.checkpoint.encode_value` moves to ``tensors`` (``training.safetensors``)
    as ``{"__tensor__": key}``, the same tagging as config.json's arguments."""
    return {
        "step": step,
        "world_size": world_size,
        "run": run,
        "optimizer": encode_value({
            "state": {str(k): v for k, v in optimizer["state"].items()},
            "param_groups": optimizer["param_groups"],
        }, "optimizer", "optimizer", host, tensors, None),
        "data": data,
        "pending": encode_value({
            "loss": pending_loss,
            "metrics_by_rank": metrics_by_rank,
        }, "pending", "metrics", host, tensors, None),
    }


def write_training_checkpoint(target: Path, *, record: dict[str, Any],
                              argument_tensors: Mapping[str, Tensor],
                              weights: Mapping[str, Tensor], state: Mapping[str, Any],
                              tensors: Mapping[str, Tensor],
                              objective_tensors: Mapping[str, Tensor],
                              history: list[dict[str, Any]],
                              training: Mapping[str, Any]) -> Path:
    """Write the training checkpoint folder ``target`` atomically: the energy's
    ``record`` (with ``metadata.training`` = ``training``), its ``weights`` and tensor
    arguments, the JSON ``state`` with its ``tensors``, the objective's tensors and the
    ``history`` of log records."""
    files: dict[str, bytes | Mapping[str, Tensor]] = {WEIGHTS_FILE: weights}
    if argument_tensors:
        files[ARGUMENTS_FILE] = argument_tensors
    files[TRAINING_STATE_FILE] = (json.dumps(state, indent=1, allow_nan=False)
                                  + "\n").encode()
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
            raise CheckpointError(f"{self.folder / file} has no {key!r}: the training "
                                  f"checkpoint is incomplete or from another run")
        return mapping[key]


def open_training_checkpoint(path: str | Path, energy: nn.Module, host: PluginHost,
                             world_size: int) -> TrainingCheckpoint:
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


def read_run_config(checkpoint_dir: str | Path) -> tuple[Path, RunConfig]:
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


def restore_weights(saved: TrainingCheckpoint, model: Mapping[str, Tensor], energy: nn.Module,
                    params: list[nn.Parameter], *, ema: bool) -> list[Tensor] | None:
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
                raw[name] = checked_like(saved.need(tensors, key, TRAINING_TENSORS_FILE),
                                         p, tensors_file, key)
    load_module(energy, raw, folder / WEIGHTS_FILE, "energy")
    if not ema:
        return None
    by_id = {id(p): name for name, p in named.items()}
    source = model if ema_saved else raw
    return [
        checked_like(saved.need(source, by_id[id(p)], WEIGHTS_FILE), p,
                     str(folder / WEIGHTS_FILE), by_id[id(p)]).to(p.device, p.dtype).clone()
        for p in params
    ]


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: Any, where: str,
                      tensors_file: str) -> None:
    """Load the saved optimizer state into ``optimizer`` after checking it against its
    groups, then put back ``optimizer``'s hyperparameters (a new lr included), so the run
    uses what its run record says."""
    checked = checked_optimizer_state(saved, optimizer, where, tensors_file)
    hyperparameters = [{k: v for k, v in group.items() if k != "params"}
                       for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(checked)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where}: optimizer: the state does not fit this Trainer's "
            f"{type(optimizer).__name__} ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    for group, values in zip(optimizer.param_groups, hyperparameters):
        group.update(values)


def floats(values: list[Any]) -> list[float]:
    """Python floats of a list of floats (restored from a checkpoint) followed by 0-d
    tensors, with one device read."""
    floats = [v for v in values if not isinstance(v, Tensor)]
    tensors = [v for v in values if isinstance(v, Tensor)]
    if tensors:
        floats += torch.stack([t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
                               for t in tensors]).tolist()
    return floats


def has_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a checkpoint (or the previous one an interrupted save set aside)."""
    try:
        resolve(path)
    except CheckpointError:
        return False
    return True


def load_module(module: nn.Module, state: Mapping[str, Tensor], file: Path, what: str) -> None:
    expected = module.state_dict()
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and not same_kind_of_dtype(value, want):
            raise CheckpointError(
                f"{file}: tensor {key!r} has dtype {dtype_of(value)}; the {what} "
                f"({type(module).__name__}) holds {want.dtype} there"
            )
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:  # torch's message lists one mismatch per line
        raise CheckpointError(
            f"{file} does not fit the {what} ({type(module).__name__}): "
            f"{' '.join(str(exc).split())}"
        ) from None


def dtype_of(value: Any) -> str:
    return str(value.dtype) if isinstance(value, Tensor) else type(value).__name__


def same_kind_of_dtype(value: Any, like: Tensor) -> bool:
    """Whether ``value`` is a tensor that ``like`` can take without losing its meaning:
    floating point for floating point (any width), the same dtype otherwise."""
    if not isinstance(value, Tensor):
        return False
    if like.is_floating_point():
        return value.is_floating_point()
    return value.dtype == like.dtype


#: How deep a training state's JSON may nest (its optimizer state is three levels deep).
MAX_STATE_DEPTH = 32


def decode_state(value: Any, tensors: Mapping[str, Tensor], where: str, tensors_file: str,
                  key: str = "", depth: int = 0) -> Any:
    """``training.json`` with its tensors put back: only the tags the Trainer writes
    (tensors, tuples, tagged dicts, non-finite floats) are accepted. A training state holds
    no components, so a ``__component__`` tag is refused instead of being built."""
    if depth > MAX_STATE_DEPTH:
        raise CheckpointError(f"{where}: {key}: nested more than {MAX_STATE_DEPTH} levels "
                              f"deep; a training state is not")
    if isinstance(value, list):
        return [decode_state(v, tensors, where, tensors_file, f"{key}[{i}]", depth + 1)
                for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in MARKERS:
        return {k: decode_state(v, tensors, where, tensors_file, f"{key}.{k}" if key else k,
                                 depth + 1) for k, v in value.items()}
    ((marker, content),) = value.items()
    if marker == "__tensor__":
        if not isinstance(content, str) or content not in tensors:
            raise CheckpointError(f"{tensors_file} has no tensor {shown(content)} (which "
                                  f"{where} names at {key})")
        return tensors[content]
    if marker in ("__tuple__", "__dict__"):
        if not isinstance(content, list if marker == "__tuple__" else dict):
            raise CheckpointError(f"{where}: {key}: malformed {marker} value "
                                  f"{shown(content)}")
        decoded = decode_state(content, tensors, where, tensors_file, key, depth + 1)
        if marker == "__tuple__":
            return tuple(decoded)
        return {k: decode_state(v, tensors, where, tensors_file, f"{key}.{k}", depth + 1)
                for k, v in content.items()}
    if marker == "__float__" and content in ("nan", "inf", "-inf"):
        return float(content)
    raise CheckpointError(
        f"{where}: {key}: a training state holds numbers, text and tensors, not a "
        f"{marker} value ({shown(content)})"
    )


def checked_like(value: Any, like: Tensor, file: str, key: str) -> Tensor:
    """``value`` if it is a floating-point tensor of ``like``'s shape, else raise."""
    if not isinstance(value, Tensor) or not value.is_floating_point() or (
            value.shape != like.shape):
        got = (f"a {value.dtype} tensor of shape {tuple(value.shape)}"
               if isinstance(value, Tensor) else shown(value))
        raise CheckpointError(f"{file}: {key} must be a floating-point tensor of shape "
                              f"{tuple(like.shape)} (the parameter's), got {got}")
    return value


def set_generator(generator: torch.Generator, state: Any, file: str, key: str) -> None:
    """Restore ``generator`` from ``state`` after checking it is a byte tensor of the size
    this generator's state has (a CPU and a CUDA generator's states differ)."""
    size = generator.get_state().numel()
    if not (isinstance(state, Tensor) and state.dtype == torch.uint8 and state.ndim == 1
            and state.numel() == size):
        got = (f"a {state.dtype} tensor of shape {tuple(state.shape)}"
               if isinstance(state, Tensor) else shown(state))
        raise CheckpointError(
            f"{file}: {key} must be a generator state, a uint8 tensor of {size} bytes for a "
            f"{generator.device.type} generator, got {got}"
        )
    try:
        generator.set_state(state.contiguous())
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{file}: {key} is not a valid generator state "
                              f"({first_line(exc)})") from None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def checked_pending(pending: Any, world_size: int, where: str
                     ) -> tuple[list[float], list[list[dict[str, float]]]]:
    """The losses and per-rank metrics of the logging interval in progress, checked."""
    if not isinstance(pending, dict):
        raise CheckpointError(f"{where}: pending must be an object, got {shown(pending)}")
    loss = pending.get("loss", [])
    if not isinstance(loss, list) or not all(is_number(v) and math.isfinite(v)
                                             for v in loss):
        raise CheckpointError(f"{where}: pending.loss must be a list of finite numbers, got "
                              f"{shown(loss)}")
    by_rank = pending.get("metrics_by_rank", [[]] * world_size)
    ok = isinstance(by_rank, list) and len(by_rank) == world_size and all(
        isinstance(metrics, list) and all(
            isinstance(m, dict) and all(isinstance(k, str) and is_number(v)
                                        for k, v in m.items())
            for m in metrics)
        for metrics in by_rank)
    if not ok:
        raise CheckpointError(
            f"{where}: pending.metrics_by_rank must be a list of {world_size} list(s) (one "
            f"per rank) of objects mapping metric names to numbers, got {shown(by_rank)}"
        )
    return [float(v) for v in loss], by_rank


def optimizer_template(optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
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


def checked_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer, where: str,
                             tensors_file: str) -> dict[str, Any]:
    """The saved optimizer state as ``optimizer.load_state_dict`` takes it, after checking
    it against ``optimizer``: the same parameter groups, per-parameter entries for existing
    parameters with the keys this optimizer keeps, tensors of the right kind and shape."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: optimizer must be an object, got {shown(saved)}")
    groups, states = saved.get("param_groups"), saved.get("state")
    current = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current) or not all(
            isinstance(g, dict) and g.get("params") == c["params"]
            for g, c in zip(groups, current)):
        raise CheckpointError(
            f"{where}: optimizer.param_groups must be {len(current)} group(s) over the "
            f"parameters {[c['params'] for c in current]} (this Trainer's "
            f"{type(optimizer).__name__}), got {shown(groups)}"
        )
    if not isinstance(states, dict):
        raise CheckpointError(f"{where}: optimizer.state must be an object, got "
                              f"{shown(states)}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    template = optimizer_template(optimizer)
    out: dict[int, dict[str, Any]] = {}
    for index, entry in states.items():
        name = f"optimizer.state.{index}"
        if not (isinstance(index, str) and index.isdigit() and int(index) < len(params)):
            raise CheckpointError(f"{where}: optimizer.state: {index!r} is not the index of "
                                  f"one of the {len(params)} parameters")
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: {name} must be an object, got {shown(entry)}")
        param = params[int(index)]
        if template is not None and entry and set(entry) != set(template):
            raise CheckpointError(
                f"{where}: {name} has the keys {sorted(entry)}; this Trainer's "
                f"{type(optimizer).__name__} keeps {sorted(template)}"
            )
        for key, value in entry.items():
            check_optimizer_value(value, UNKNOWN if template is None else template[key],
                                   param, f"{name}.{key}", where, tensors_file)
        out[int(index)] = entry
    return {"state": out, "param_groups": groups}


def check_optimizer_value(value: Any, like: Any, param: Tensor, key: str, where: str,
                           tensors_file: str) -> None:
    """One per-parameter optimizer value against ``like``, what a fresh optimizer keeps
    there (``UNKNOWN`` when unknown: then a real tensor shaped like the parameter or a
    scalar, or a plain number or None)."""
    if isinstance(like, Tensor):
        # the probe parameter is (2, 3): a (2, 3) value is shaped like the parameter
        shape = tuple(param.shape) if tuple(like.shape) == (2, 3) else tuple(like.shape)
        floating = like.is_floating_point()
        ok = (isinstance(value, Tensor) and value.is_floating_point() == floating
              and not value.is_complex() and tuple(value.shape) == shape)
        expected = (f"{'a floating-point' if floating else f'a {like.dtype}'} tensor of "
                    f"shape {shape}")
    elif like is UNKNOWN:
        ok = (value is None or is_number(value)) if not isinstance(value, Tensor) else (
            value.is_floating_point() and tuple(value.shape) in (tuple(param.shape), ()))
        expected = f"a floating-point tensor of shape {tuple(param.shape)} or ()"
    else:
        ok = (value is None) if like is None else is_number(value) or isinstance(
            value, type(like))
        expected = "null" if like is None else f"a {type(like).__name__}"
    if not ok:
        got = (f"a {value.dtype} tensor of shape {tuple(value.shape)}"
               if isinstance(value, Tensor) else shown(value))
        file = tensors_file if isinstance(value, Tensor) else where
        raise CheckpointError(f"{file}: {key} must be {expected}, got {got}")


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
