"""The converter ``diffusers``: a diffusers pipeline (folder or objects) → an ebmflow score
model in VE coordinates (:class:`~ebmflow_diffusers.model.DiffusersScoreModel`).

A pipeline folder is what ``DiffusionPipeline.save_pretrained`` writes::

    model_index.json                      {"unet": [library, class], "scheduler": [...], ...}
    unet/config.json                      the network's config
    unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json

Only JSON and safetensors are read (a pickled ``.bin`` checkpoint is refused), the weights'
keys and shapes are checked one by one against the network the config builds, and nothing is
downloaded. ``ebmflow convert SRC OUT`` runs this and saves the result with ``ebmflow.save``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ebmflow
from ebmflow_diffusers.model import SUPPORTED_NETWORKS, DiffusersScoreModel, plain_config
from ebmflow_diffusers.schedule import (
    PREDICTION_TYPES,
    VE_SCHEDULER_CLASSES,
    VP_SCHEDULER_CLASSES,
    NoiseTable,
)

SUPPORTED_SCHEDULERS = (*VP_SCHEDULER_CLASSES, *VE_SCHEDULER_CLASSES, "EBMScheduler")
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: the largest JSON config read (real ones are a few kB); a bound so that a crafted file
#: cannot make the converter read without limit.
MAX_CONFIG_BYTES = 4 * 2**20
#: dtypes the network's weights may have: the floating-point types a UNet runs in.
WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class ConversionError(ebmflow.ConfigError):
    """A source the converter cannot read: it says what is missing and what is supported."""


def _supported() -> str:
    return (
        f"supported: a pipeline folder with model_index.json, unet/ (class "
        f"{' or '.join(SUPPORTED_NETWORKS)}, config.json and {WEIGHTS}) and scheduler/ "
        f"(scheduler_config.json of {', '.join(SUPPORTED_SCHEDULERS)}); prediction types "
        f"{', '.join(PREDICTION_TYPES['vp'])} (VP) and {', '.join(PREDICTION_TYPES['ve'])} (VE)"
    )


def _regular_file(file: Path, what: str) -> bool:
    """Whether ``file`` exists; anything but a regular file is refused by what it is
    (reading a FIFO blocks and ``/dev/zero`` never ends). A symlink is followed, as in
    Hugging Face's cache."""
    try:
        fd, _ = ebmflow.open_regular_file(file, follow_symlinks=True, error=ConversionError)
    except FileNotFoundError:
        return False
    except ConversionError as exc:
        raise ConversionError(f"diffusers converter: {what}: {exc}") from None
    os.close(fd)
    return True


def _read_json(file: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``file``: a regular file of at most ``MAX_CONFIG_BYTES``."""
    try:
        data = ebmflow.read_regular_file(
            file, max_bytes=MAX_CONFIG_BYTES, follow_symlinks=True, error=ConversionError
        )
    except FileNotFoundError:
        raise ConversionError(
            f"diffusers converter: {file} is missing ({what}); {_supported()}"
        ) from None
    except ConversionError as exc:
        raise ConversionError(f"diffusers converter: {what}: {exc}") from None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConversionError(f"diffusers converter: {file} is not valid JSON ({reason})") from None
    if not isinstance(value, dict):
        raise ConversionError(
            f"diffusers converter: {file} ({what}) must hold a JSON object "
            f'({{"key": value, ...}}), got {type(value).__name__} {_short(value)}'
        )
    return value


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert(
    source: str | os.PathLike | Any = None,
    *,
    unet: Any = None,
    scheduler: Any = None,
    prediction_type: str | None = None,
) -> DiffusersScoreModel:
    """Convert a diffusers pipeline into an ebmflow score model in VE coordinates.

    Args:
        source: a pipeline folder, or a pipeline object with ``unet`` and ``scheduler``.
        unet, scheduler: the objects themselves instead of ``source``.
        prediction_type: override the scheduler config's prediction type.

    Returns:
        A :class:`DiffusersScoreModel` (in eval mode): ``model.score(x_ve, sigma)``.

    Raises:
        ConversionError: the source lacks a part, or uses a network class, scheduler or
            prediction type that is not supported (the message lists what is).
    """
    if source is not None and (unet is not None or scheduler is not None):
        raise ConversionError("diffusers converter: pass a source, or unet and scheduler, not both")
    if source is None:
        if unet is None or scheduler is None:
            raise ConversionError(
                "diffusers converter: pass a pipeline folder or object, or "
                f"both unet and scheduler; {_supported()}"
            )
        return _from_objects(unet, scheduler, prediction_type)
    if isinstance(source, (str, os.PathLike)):
        return _from_folder(Path(source), prediction_type)
    missing = [name for name in ("unet", "scheduler") if getattr(source, name, None) is None]
    if missing:
        raise ConversionError(
            f"diffusers converter: the {type(source).__name__} has no {' or '.join(missing)}; "
            f"{_supported()}"
        )
    return _from_objects(source.unet, source.scheduler, prediction_type)


def _check_classes(network_class: str, scheduler_class: str | None, where: str) -> None:
    if network_class not in SUPPORTED_NETWORKS:
        raise ConversionError(
            f"diffusers converter: {where} has a {network_class} network, which is not "
            f"supported (conditional UNets need their conditioning inputs); {_supported()}"
        )
    if scheduler_class not in SUPPORTED_SCHEDULERS:
        raise ConversionError(
            f"diffusers converter: {where} has scheduler {scheduler_class!r}, which is not "
            f"supported; {_supported()}"
        )


def _model(unet_config, scheduler_config, network_class, prediction_type, where):
    """The score model, its scheduler config checked first so that each error names the
    config it comes from (``where``: the scheduler's and the network's)."""
    config = dict(scheduler_config)
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    try:
        NoiseTable(config)
    except ValueError as exc:
        raise ConversionError(f"diffusers converter: {where[0]}: {exc}") from None
    try:
        return DiffusersScoreModel(
            unet_config, scheduler_config, network_class, prediction_type=prediction_type
        )
    except ValueError as exc:
        raise ConversionError(f"diffusers converter: {where[1]}: {exc}") from None


def _from_objects(unet, scheduler, prediction_type) -> DiffusersScoreModel:
    network_class = type(unet).__name__
    scheduler_class = type(scheduler).__name__
    _check_classes(network_class, scheduler_class, "the pipeline")
    _model(
        plain_config(unet.config),
        plain_config(scheduler.config),
        network_class,
        prediction_type,
        ("the pipeline's scheduler", "the pipeline's unet"),
    )  # validates before wrapping
    return DiffusersScoreModel.from_unet(unet, scheduler, prediction_type).eval()


def _from_folder(folder: Path, prediction_type) -> DiffusersScoreModel:
    if not folder.is_dir():
        raise ConversionError(f"diffusers converter: {folder} is not a folder; {_supported()}")
    index = _read_json(folder / "model_index.json", "the pipeline's component list")
    parts = {}
    for name in ("unet", "scheduler"):
        entry = index.get(name)
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
            listed = (
                ", ".join(
                    k
                    for k, v in index.items()
                    if not k.startswith("_") and isinstance(v, list) and v and v[0]
                )
                or "none"
            )
            raise ConversionError(
                f"diffusers converter: {folder / 'model_index.json'} has no {name!r} component "
                f"(it lists: {listed}); {_supported()}"
            )
        parts[name] = entry[1]
    _check_classes(parts["unet"], parts["scheduler"], str(folder))
    unet_file = folder / "unet" / "config.json"
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    unet_config = _read_json(unet_file, "the network's config")
    scheduler_config = _read_json(scheduler_file, "the scheduler's config")
    scheduler_config.setdefault("_class_name", parts["scheduler"])
    weights = folder / "unet" / WEIGHTS
    if not _regular_file(weights, "the network's weights"):
        found = sorted(p.name for p in (folder / "unet").iterdir())
        hint = (
            " (a .bin file is a pickle, which ebmflow never loads: re-save the model with "
            "safe_serialization=True)"
            if any(n.endswith(".bin") for n in found)
            else ""
        )
        raise ConversionError(
            f"diffusers converter: {weights} is missing; unet/ holds {', '.join(found)}{hint}; "
            f"{_supported()}"
        )
    model = _model(
        plain_config(unet_config),
        plain_config(scheduler_config),
        parts["unet"],
        prediction_type,
        (scheduler_file, unet_file),
    )
    state = _read_weights(weights)
    expected = model.unet.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        problems = "; ".join(
            f"{label}: {', '.join(items[:8])}"
            + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatches", shapes),
            )
            if items
        )
        raise ConversionError(
            f"diffusers converter: {weights} does not fit unet/config.json ({problems})"
        )
    model.unet.load_state_dict(state, strict=True)
    # keep the saved dtype (a float16 checkpoint stays float16)
    dtype = next(iter(state.values())).dtype if state else None
    current = next(iter(model.unet.state_dict().values()), None)
    if dtype is not None and current is not None and current.dtype != dtype:
        model.unet.to(dtype)
    return model.eval()


def _read_weights(weights: Path) -> dict[str, Any]:
    """The tensors of the (regular, already checked) safetensors file; every one must be a
    floating-point tensor, since ``load_state_dict`` would silently cast integers (and drop
    the imaginary part of complex numbers) into the network's float weights."""
    import safetensors.torch

    try:
        state = safetensors.torch.load_file(weights)
    except Exception as exc:
        raise ConversionError(
            f"diffusers converter: {weights} is not a readable safetensors "
            f"file ({type(exc).__name__}: {exc})"
        ) from None
    for key in sorted(state):
        dtype = str(state[key].dtype).removeprefix("torch.")
        if dtype not in WEIGHT_DTYPES:
            raise ConversionError(
                f"diffusers converter: {weights}: tensor {key!r} is {dtype}; the network's "
                f"weights must be floating point ({', '.join(WEIGHT_DTYPES)})"
            )
    return state
