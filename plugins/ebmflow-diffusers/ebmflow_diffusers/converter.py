"""The converter ``diffusers``: a diffusers pipeline (folder or objects) → an ebmflow score
model in VE coordinates (:class:`~ebmflow_diffusers.model.DiffusersScoreModel`).

A pipeline folder is what ``DiffusionPipeline.save_pretrained`` writes::

    model_index.json                      {"unet": [library, class], "scheduler": [...], ...}
    unet/config.json                      the denoiser's config ("transformer/" for a DiT)
    unet/diffusion_pytorch_model.safetensors
    vae/config.json, vae/diffusion_pytorch_model.safetensors   (latent pipelines)
    scheduler/scheduler_config.json

The denoiser is a ``UNet2DModel``, a conditional ``UNet2DConditionModel`` (class labels or
``encoder_hidden_states``) or a class-conditional ``DiTTransformer2DModel`` /
``Transformer2DModel``; a pipeline with an ``AutoencoderKL`` ("vae") is a latent pipeline,
whose energy lives in the scaled latent space. Text encoders and tokenizers are not part of
the energy: they make the embeddings a conditional model is then given.

Only JSON and safetensors are read: a pickled ``.bin`` checkpoint is refused, with no opt-in
(ebmflow never unpickles a file: loading a pickle can run code its author chose), and the
message says how to re-save it as safetensors. The weights' keys and shapes are checked one
by one against the network the config builds, and nothing is downloaded.
``ebmflow convert SRC OUT`` runs this and saves the result with ``ebmflow.save``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ebmflow
from ebmflow.extend import AllocationBudget
from ebmflow_diffusers.model import DiffusersScoreModel, plain_config
from ebmflow_diffusers.networks import (
    SUPPORTED_AUTOENCODERS,
    SUPPORTED_NETWORKS,
    skeleton_networks,
)
from ebmflow_diffusers.schedule import (
    PREDICTION_TYPES,
    VE_SCHEDULER_CLASSES,
    VP_SCHEDULER_CLASSES,
    NoiseTable,
)

SUPPORTED_SCHEDULERS = (*VP_SCHEDULER_CLASSES, *VE_SCHEDULER_CLASSES, "EBMScheduler")
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: model_index.json names of the denoiser, in the order they are looked for.
DENOISERS = ("unet", "transformer")
#: the largest JSON config read (real ones are a few kB); a bound so that a crafted file
#: cannot make the converter read without limit.
MAX_CONFIG_BYTES = 4 * 2**20
#: dtypes the network's weights may have: the floating-point types a UNet runs in.
WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class ConversionError(ebmflow.ConfigError):
    """A source the converter cannot read: it says what is missing and what is supported."""


def _supported() -> str:
    return (
        f"supported: a pipeline folder with model_index.json, unet/ or transformer/ (class "
        f"{', '.join(SUPPORTED_NETWORKS)}; config.json and {WEIGHTS}), optionally vae/ "
        f"({', '.join(SUPPORTED_AUTOENCODERS)}) and scheduler/ "
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
    vae: Any = None,
    prediction_type: str | None = None,
) -> DiffusersScoreModel:
    """Convert a diffusers pipeline into an ebmflow score model in VE coordinates.

    Args:
        source: a pipeline folder, or a pipeline object with ``unet`` (or ``transformer``),
            ``scheduler`` and optionally ``vae``.
        unet, scheduler, vae: the objects themselves instead of ``source`` (``unet`` may be
            any supported denoiser, a DiT included; ``vae`` makes a latent model).
        prediction_type: override the scheduler config's prediction type.

    Returns:
        A :class:`DiffusersScoreModel` (in eval mode): ``model.score(x_ve, sigma)``, with
        ``y=`` for a conditional model.

    Raises:
        ConversionError: the source lacks a part, or uses a network class, scheduler or
            prediction type that is not supported (the message lists what is).
    """
    if source is not None and (unet is not None or scheduler is not None or vae is not None):
        raise ConversionError(
            "diffusers converter: pass a source, or unet and scheduler (and vae), not both"
        )
    if source is None:
        if unet is None or scheduler is None:
            raise ConversionError(
                "diffusers converter: pass a pipeline folder or object, or "
                f"both unet and scheduler; {_supported()}"
            )
        return _from_objects(unet, scheduler, vae, prediction_type)
    if isinstance(source, (str, os.PathLike)):
        return _from_folder(Path(source), prediction_type)
    denoiser = next(
        (getattr(source, n) for n in DENOISERS if getattr(source, n, None) is not None), None
    )
    missing = [
        name
        for name, value in (("unet or transformer", denoiser), ("scheduler", None))
        if (value if name != "scheduler" else getattr(source, "scheduler", None)) is None
    ]
    if missing:
        raise ConversionError(
            f"diffusers converter: the {type(source).__name__} has no {' or '.join(missing)}; "
            f"{_supported()}"
        )
    return _from_objects(denoiser, source.scheduler, getattr(source, "vae", None), prediction_type)


def _check_classes(
    network_class: str, scheduler_class: str | None, vae_class: str | None, where: str
) -> None:
    if network_class not in SUPPORTED_NETWORKS:
        raise ConversionError(
            f"diffusers converter: {where} has a {network_class} network, which is not "
            f"supported; {_supported()}"
        )
    if vae_class is not None and vae_class not in SUPPORTED_AUTOENCODERS:
        raise ConversionError(
            f"diffusers converter: {where} has a {vae_class} autoencoder, which is not "
            f"supported; {_supported()}"
        )
    if scheduler_class not in SUPPORTED_SCHEDULERS:
        raise ConversionError(
            f"diffusers converter: {where} has scheduler {scheduler_class!r}, which is not "
            f"supported; {_supported()}"
        )


def _check_prediction_type(unet_config: dict, table_prediction: str, where: str) -> None:
    """A network that records what it predicts (``prediction_type`` in its own config) must
    agree with the scheduler's: a mismatch gives wrong samples, not an error, downstream."""
    declared = unet_config.get("prediction_type")
    if declared is not None and declared != table_prediction:
        raise ConversionError(
            f"diffusers converter: {where}: the network predicts {declared!r} but the "
            f"scheduler (or the prediction_type argument) says {table_prediction!r}; make "
            f"them agree (convert(..., prediction_type={declared!r}))"
        )


def _model(unet_config, scheduler_config, network_class, prediction_type, where, vae_config):
    """The score model, its scheduler config checked first so that each error names the
    config it comes from (``where``: the scheduler's, the network's and the autoencoder's)."""
    config = dict(scheduler_config)
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    try:
        table = NoiseTable(config)
    except ValueError as exc:
        raise ConversionError(f"diffusers converter: {where[0]}: {exc}") from None
    _check_prediction_type(unet_config, table.prediction_type, str(where[1]))
    try:
        return DiffusersScoreModel(
            unet_config,
            scheduler_config,
            network_class,
            prediction_type=prediction_type,
            vae_config=vae_config,
        )
    except ValueError as exc:
        vae_class = (vae_config or {}).get("_class_name", "AutoencoderKL")
        from_vae = vae_config is not None and ("autoencoder" in str(exc) or vae_class in str(exc))
        raise ConversionError(
            f"diffusers converter: {where[2 if from_vae else 1]}: {exc}"
        ) from None


def _from_objects(unet, scheduler, vae, prediction_type) -> DiffusersScoreModel:
    network_class = type(unet).__name__
    scheduler_class = type(scheduler).__name__
    vae_class = None if vae is None else type(vae).__name__
    _check_classes(network_class, scheduler_class, vae_class, "the pipeline")
    with skeleton_networks():  # validates the configs before wrapping, allocating nothing
        _model(
            plain_config(unet.config),
            plain_config(scheduler.config),
            network_class,
            prediction_type,
            ("the pipeline's scheduler", "the pipeline's denoiser", "the pipeline's vae"),
            None if vae is None else {**plain_config(vae.config), "_class_name": vae_class},
        )
    return DiffusersScoreModel.from_unet(unet, scheduler, prediction_type, vae=vae).eval()


def _component(index: dict, names: tuple[str, ...], folder: Path, required: bool):
    """(name, class) of the first of ``names`` that model_index.json lists."""
    for name in names:
        entry = index.get(name)
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str):
            return name, entry[1]
    if not required:
        return None, None
    listed = (
        ", ".join(
            k
            for k, v in index.items()
            if not k.startswith("_") and isinstance(v, list) and v and v[0]
        )
        or "none"
    )
    wanted = " or ".join(repr(n) for n in names)
    raise ConversionError(
        f"diffusers converter: {folder / 'model_index.json'} has no {wanted} component "
        f"(it lists: {listed}); {_supported()}"
    )


def _from_folder(folder: Path, prediction_type) -> DiffusersScoreModel:
    if not folder.is_dir():
        raise ConversionError(f"diffusers converter: {folder} is not a folder; {_supported()}")
    index = _read_json(folder / "model_index.json", "the pipeline's component list")
    denoiser, network_class = _component(index, DENOISERS, folder, required=True)
    _, scheduler_class = _component(index, ("scheduler",), folder, required=True)
    vae, vae_class = _component(index, ("vae",), folder, required=False)
    _check_classes(network_class, scheduler_class, vae_class, str(folder))
    unet_file = folder / denoiser / "config.json"
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    unet_config = _read_json(unet_file, "the network's config")
    scheduler_config = _read_json(scheduler_file, "the scheduler's config")
    scheduler_config.setdefault("_class_name", scheduler_class)
    vae_config = None
    if vae is not None:
        vae_file = folder / vae / "config.json"
        vae_config = {**plain_config(_read_json(vae_file, "the autoencoder's config"))}
        vae_config["_class_name"] = vae_class
    parts = [folder / denoiser] + ([] if vae is None else [folder / vae])
    weights = [_weights_file(part) for part in parts]
    # the configs are untrusted too: what building the networks may allocate is bounded by
    # the weights that come with them, so a config asking for a huge network fails at once
    budget = AllocationBudget(
        sum(w.stat().st_size for w in weights), "the pipeline's networks", str(folder)
    )
    try:
        with budget:
            model = _model(
                plain_config(unet_config),
                plain_config(scheduler_config),
                network_class,
                prediction_type,
                (scheduler_file, unet_file, None if vae is None else folder / vae / "config.json"),
                vae_config,
            )
    except ebmflow.CheckpointError as exc:
        raise ConversionError(f"diffusers converter: {exc}") from None
    _load_weights(model.unet, weights[0])
    if vae is not None:
        _load_weights(model.vae, weights[1])
    return model.eval()


def _weights_file(part: Path) -> Path:
    """``part``'s safetensors weights file, which must be a regular file."""
    weights = part / WEIGHTS
    if not _regular_file(weights, f"the {part.name} weights"):
        found = sorted(p.name for p in part.iterdir()) if part.is_dir() else []
        hint = (
            " (a .bin file is a pickle, which ebmflow never loads since unpickling can run "
            "code: re-save the model with save_pretrained(..., safe_serialization=True))"
            if any(n.endswith(".bin") for n in found)
            else ""
        )
        raise ConversionError(
            f"diffusers converter: {weights} is missing; {part.name}/ holds "
            f"{', '.join(found) or 'nothing'}{hint}; {_supported()}"
        )
    return weights


def _load_weights(network: Any, weights: Path) -> None:
    """Load the ``weights`` file into ``network``, each key and shape checked first."""
    part = weights.parent
    state = _read_weights(weights)
    expected = network.state_dict()
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
            f"diffusers converter: {weights} does not fit {part.name}/config.json ({problems})"
        )
    network.load_state_dict(state, strict=True)
    # keep the saved dtype (a float16 checkpoint stays float16)
    dtype = next(iter(state.values())).dtype if state else None
    current = next(iter(network.state_dict().values()), None)
    if dtype is not None and current is not None and current.dtype != dtype:
        network.to(dtype)


def _check_dtypes(state: dict[str, Any], weights: Path) -> dict[str, Any]:
    """Every tensor must be floating point, since ``load_state_dict`` would silently cast
    integers (and drop the imaginary part of complex numbers) into the network's weights."""
    for key in sorted(state):
        dtype = str(state[key].dtype).removeprefix("torch.")
        if dtype not in WEIGHT_DTYPES:
            raise ConversionError(
                f"diffusers converter: {weights}: tensor {key!r} is {dtype}; the network's "
                f"weights must be floating point ({', '.join(WEIGHT_DTYPES)})"
            )
    return state


def _read_weights(weights: Path) -> dict[str, Any]:
    """The tensors of the (regular, already checked) safetensors file."""
    import safetensors.torch

    try:
        state = safetensors.torch.load_file(weights)
    except Exception as exc:
        raise ConversionError(
            f"diffusers converter: {weights} is not a readable safetensors "
            f"file ({type(exc).__name__}: {exc})"
        ) from None
    return _check_dtypes(state, weights)
