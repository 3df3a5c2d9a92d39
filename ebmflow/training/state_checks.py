"""Checks of a training state read back from a checkpoint, before any of it is used.

``training.json`` is decoded with only the tags a Trainer writes (no components); tensors
must have the kind and shape of what they restore (weights, generator states, optimizer
state against this optimizer's parameter groups); the logging interval in progress must be
numbers. A tampered or mismatched file raises :class:`~ebmflow.CheckpointError` naming the
file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.checkpoint import MARKERS
from ebmflow.errors import CheckpointError, first_line
from ebmflow.training.arguments import shown

#: Stands for "no template known" in :func:`check_optimizer_value`.
UNKNOWN = object()


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


def decode_state(
    value: Any,
    tensors: Mapping[str, Tensor],
    where: str,
    tensors_file: str,
    key: str = "",
    depth: int = 0,
) -> Any:
    """``training.json`` with its tensors put back: only the tags the Trainer writes
    (tensors, tuples, tagged dicts, non-finite floats) are accepted. A training state holds
    no components, so a ``__component__`` tag is refused instead of being built."""
    if depth > MAX_STATE_DEPTH:
        raise CheckpointError(
            f"{where}: {key}: nested more than {MAX_STATE_DEPTH} levels "
            f"deep; a training state is not"
        )
    if isinstance(value, list):
        return [
            decode_state(v, tensors, where, tensors_file, f"{key}[{i}]", depth + 1)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in MARKERS:
        return {
            k: decode_state(v, tensors, where, tensors_file, f"{key}.{k}" if key else k, depth + 1)
            for k, v in value.items()
        }
    ((marker, content),) = value.items()
    if marker == "__tensor__":
        if not isinstance(content, str) or content not in tensors:
            raise CheckpointError(
                f"{tensors_file} has no tensor {shown(content)} (which {where} names at {key})"
            )
        return tensors[content]
    if marker in ("__tuple__", "__dict__"):
        if not isinstance(content, list if marker == "__tuple__" else dict):
            raise CheckpointError(f"{where}: {key}: malformed {marker} value {shown(content)}")
        decoded = decode_state(content, tensors, where, tensors_file, key, depth + 1)
        if marker == "__tuple__":
            return tuple(decoded)
        assert isinstance(content, dict)  # checked above for a __dict__ marker
        return {
            k: decode_state(v, tensors, where, tensors_file, f"{key}.{k}", depth + 1)
            for k, v in content.items()
        }
    if marker == "__float__" and content in ("nan", "inf", "-inf"):
        return float(content)
    raise CheckpointError(
        f"{where}: {key}: a training state holds numbers, text and tensors, not a "
        f"{marker} value ({shown(content)})"
    )


def checked_like(value: Any, like: Tensor, file: str, key: str) -> Tensor:
    """``value`` if it is a floating-point tensor of ``like``'s shape, else raise."""
    if (
        not isinstance(value, Tensor)
        or not value.is_floating_point()
        or (value.shape != like.shape)
    ):
        got = (
            f"a {value.dtype} tensor of shape {tuple(value.shape)}"
            if isinstance(value, Tensor)
            else shown(value)
        )
        raise CheckpointError(
            f"{file}: {key} must be a floating-point tensor of shape "
            f"{tuple(like.shape)} (the parameter's), got {got}"
        )
    return value


def set_generator(generator: torch.Generator, state: Any, file: str, key: str) -> None:
    """Restore ``generator`` from ``state`` after checking it is a byte tensor of the size
    this generator's state has (a CPU and a CUDA generator's states differ)."""
    size = generator.get_state().numel()
    if not (
        isinstance(state, Tensor)
        and state.dtype == torch.uint8
        and state.ndim == 1
        and state.numel() == size
    ):
        got = (
            f"a {state.dtype} tensor of shape {tuple(state.shape)}"
            if isinstance(state, Tensor)
            else shown(state)
        )
        raise CheckpointError(
            f"{file}: {key} must be a generator state, a uint8 tensor of {size} bytes for a "
            f"{generator.device.type} generator, got {got}"
        )
    try:
        generator.set_state(state.contiguous())
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{file}: {key} is not a valid generator state ({first_line(exc)})"
        ) from None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def checked_pending(
    pending: Any, world_size: int, where: str
) -> tuple[list[float], list[list[dict[str, float]]]]:
    """The losses and per-rank metrics of the logging interval in progress, checked."""
    if not isinstance(pending, dict):
        raise CheckpointError(f"{where}: pending must be an object, got {shown(pending)}")
    loss = pending.get("loss", [])
    if not isinstance(loss, list) or not all(is_number(v) and math.isfinite(v) for v in loss):
        raise CheckpointError(
            f"{where}: pending.loss must be a list of finite numbers, got {shown(loss)}"
        )
    by_rank = pending.get("metrics_by_rank", [[]] * world_size)
    ok = (
        isinstance(by_rank, list)
        and len(by_rank) == world_size
        and all(
            isinstance(metrics, list)
            and all(
                isinstance(m, dict)
                and all(isinstance(k, str) and is_number(v) for k, v in m.items())
                for m in metrics
            )
            for metrics in by_rank
        )
    )
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
    group = {
        k: v for k, v in optimizer.param_groups[0].items() if k not in ("params", "initial_lr")
    }
    probe_param = nn.Parameter(torch.zeros(2, 3))
    probe_param.grad = torch.zeros(2, 3)
    try:
        probe = type(optimizer)([probe_param], **group)
        probe.step()
    except Exception:  # any optimizer class may be given: the check is then skipped
        return None
    return dict(probe.state[probe_param])


def checked_optimizer_state(
    saved: Any, optimizer: torch.optim.Optimizer, where: str, tensors_file: str
) -> dict[str, Any]:
    """The saved optimizer state as ``optimizer.load_state_dict`` takes it, after checking
    it against ``optimizer``: the same parameter groups, per-parameter entries for existing
    parameters with the keys this optimizer keeps, tensors of the right kind and shape."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: optimizer must be an object, got {shown(saved)}")
    groups, states = saved.get("param_groups"), saved.get("state")
    current = optimizer.state_dict()["param_groups"]
    if (
        not isinstance(groups, list)
        or len(groups) != len(current)
        or not all(
            isinstance(g, dict) and g.get("params") == c["params"] for g, c in zip(groups, current)
        )
    ):
        raise CheckpointError(
            f"{where}: optimizer.param_groups must be {len(current)} group(s) over the "
            f"parameters {[c['params'] for c in current]} (this Trainer's "
            f"{type(optimizer).__name__}), got {shown(groups)}"
        )
    if not isinstance(states, dict):
        raise CheckpointError(f"{where}: optimizer.state must be an object, got {shown(states)}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    template = optimizer_template(optimizer)
    out: dict[int, dict[str, Any]] = {}
    for index, entry in states.items():
        name = f"optimizer.state.{index}"
        if not (isinstance(index, str) and index.isdigit() and int(index) < len(params)):
            raise CheckpointError(
                f"{where}: optimizer.state: {index!r} is not the index of "
                f"one of the {len(params)} parameters"
            )
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: {name} must be an object, got {shown(entry)}")
        param = params[int(index)]
        if template is not None and entry and set(entry) != set(template):
            raise CheckpointError(
                f"{where}: {name} has the keys {sorted(entry)}; this Trainer's "
                f"{type(optimizer).__name__} keeps {sorted(template)}"
            )
        for key, value in entry.items():
            check_optimizer_value(
                value,
                UNKNOWN if template is None else template[key],
                param,
                f"{name}.{key}",
                where,
                tensors_file,
            )
        out[int(index)] = entry
    return {"state": out, "param_groups": groups}


def check_optimizer_value(
    value: Any, like: Any, param: Tensor, key: str, where: str, tensors_file: str
) -> None:
    """One per-parameter optimizer value against ``like``, what a fresh optimizer keeps
    there (``UNKNOWN`` when unknown: then a real tensor shaped like the parameter or a
    scalar, or a plain number or None)."""
    if isinstance(like, Tensor):
        # the probe parameter is (2, 3): a (2, 3) value is shaped like the parameter
        shape = tuple(param.shape) if tuple(like.shape) == (2, 3) else tuple(like.shape)
        floating = like.is_floating_point()
        ok = (
            isinstance(value, Tensor)
            and value.is_floating_point() == floating
            and not value.is_complex()
            and tuple(value.shape) == shape
        )
        expected = (
            f"{'a floating-point' if floating else f'a {like.dtype}'} tensor of shape {shape}"
        )
    elif like is UNKNOWN:
        ok = (
            (value is None or is_number(value))
            if not isinstance(value, Tensor)
            else (value.is_floating_point() and tuple(value.shape) in (tuple(param.shape), ()))
        )
        expected = f"a floating-point tensor of shape {tuple(param.shape)} or ()"
    else:
        ok = (value is None) if like is None else is_number(value) or isinstance(value, type(like))
        expected = "null" if like is None else f"a {type(like).__name__}"
    if not ok:
        got = (
            f"a {value.dtype} tensor of shape {tuple(value.shape)}"
            if isinstance(value, Tensor)
            else shown(value)
        )
        file = tensors_file if isinstance(value, Tensor) else where
        raise CheckpointError(f"{file}: {key} must be {expected}, got {got}")
