"""Loading a rebuilt component's weights, and the dtype rule of loading.

A floating-point tensor of the model loads from float16, bfloat16, float32 or float64
weights (:data:`WEIGHT_FLOAT_DTYPES`) and keeps the saved dtype, so a round trip is
bit-identical and a float64 model stays float64; every other tensor (integer counters,
boolean masks) loads only from exactly its own dtype. Weights that do not fit the rebuilt
component raise :class:`~ebmflow.errors.CheckpointError` listing the missing and
unexpected keys and the shape mismatches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ebmflow.errors import CheckpointError


def load_weights(
    obj: nn.Module, state: dict[str, Tensor], file: Path, what: str, config: dict
) -> None:
    """Load ``state`` (read from ``file``) into ``obj``, the ``what`` that ``config`` (its
    ``config.json``) describes, strictly and under the dtype rule of this module."""
    expected = obj.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                problems.append(f"{label}: {', '.join(items)}")
        raise CheckpointError(
            f"{file} does not fit the {what} built from config.json's arguments "
            f"({'; '.join(problems)}). config.json's arguments or the plugin's version "
            f"(written with {config.get('plugin_version')}) differ from those the weights "
            f"were saved with"
        )
    _check_dtypes(state, expected, file, config["kind"])
    # Keep saved dtypes (a float64 model stays float64): retype the target tensors in place,
    # which keeps tied parameters tied, then copy the values.
    for key, tensor in state.items():
        if tensor.dtype != expected[key].dtype:
            target = _state_tensor(obj, key)
            if target is not None:
                target.data = torch.empty(target.shape, dtype=tensor.dtype, device=target.device)
    try:
        obj.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{file}: loading the weights into the {what} failed: {exc}") from exc


#: The dtypes a floating-point parameter or buffer loads from (keeping the saved one).
WEIGHT_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_dtypes(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], file: Path, kind: str
) -> None:
    """The dtype rule of loading: a floating-point tensor of the model loads from any of
    WEIGHT_FLOAT_DTYPES and keeps the saved one (a float64 model stays float64); every other
    tensor (integer counters, boolean masks) loads only from exactly its own dtype. Integer,
    complex or float8 weights for a float32 layer would fail inside torch or much later."""
    for key, tensor in state.items():
        want = expected[key].dtype
        fits = (
            tensor.dtype in WEIGHT_FLOAT_DTYPES
            if want in WEIGHT_FLOAT_DTYPES
            else tensor.dtype == want
        )
        if not fits:
            raise CheckpointError(
                f"{file}: {key!r} is {dtype_name(tensor.dtype)} but the {kind}'s tensor is "
                f"{dtype_name(want)}; floating-point tensors load from "
                f"{', '.join(map(dtype_name, WEIGHT_FLOAT_DTYPES[:-1]))} or "
                f"{dtype_name(WEIGHT_FLOAT_DTYPES[-1])}, other tensors only from exactly "
                f"their dtype"
            )


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``: how messages name a dtype."""
    return str(dtype).removeprefix("torch.")


def _state_tensor(obj: nn.Module, key: str) -> Tensor | None:
    for getter in (obj.get_parameter, obj.get_buffer):
        with contextlib.suppress(AttributeError):
            return getter(key)
    return None


# -- files ---------------------------------------------------------------------------------
