"""Argument helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ebmflow.errors import ConfigError

#: Bounds of the commands' numeric options, so that a slip such as ``--n 10**12`` is one
#: clear error instead of a failed allocation or an overflow inside torch. Seeds are what
#: ``torch.Generator.manual_seed`` accepts and step counts follow the Trainer's bound (both
#: from ebmflow.validation); chains, samples and sampler steps are capped where the tensors
#: they allocate would stop fitting in memory.
MAX_SAMPLES = 10**7
MAX_SAMPLER_STEPS = 10**8
#: Grid quadrature: at most this many cells over all dimensions (the default 512² is 2.6e5).
MAX_GRID_CELLS = 10**8
#: The checkpoint folder inside a run folder of `ebmflow train` and `ebmflow demo`.
RUN_CHECKPOINT = "checkpoint"


def check_int_option(option: str, value: int, low: int, high: int) -> int:
    """``value`` if ``low ≤ value ≤ high``, else a :class:`ConfigError` naming ``option`` and
    the accepted range."""
    if value < low:
        raise ConfigError(f"{option} must be ≥ {low}, got {value}")
    if value > high:
        raise ConfigError(f"{option} must be an integer from {low} to {high}, got {value}")
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it looks like JSON (``0.1``, ``true``,
    ``[1, 2]``, ``{"name": "x"}``), else as a string. A VALUE that starts like a JSON list,
    object or quoted string but does not parse is an error naming the position, not a
    string handed on to the component."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError as exc:
        if value.lstrip()[:1] in ("[", "{", '"'):
            raise argparse.ArgumentTypeError(
                f"{key.strip()}={value}: invalid JSON at character {exc.pos + 1} "
                f"(line {exc.lineno}, column {exc.colno}): {exc.msg}"
            ) from None
        return key.strip(), value


def add_component_options(parser: argparse.ArgumentParser, kind: str, default: str) -> None:
    """``--KIND NAME`` and repeated ``--KIND-arg KEY=VALUE`` options."""
    parser.add_argument(
        f"--{kind}",
        default=default,
        metavar="NAME",
        help=f"registered {kind} name or plugin:name (default: {default})",
    )
    parser.add_argument(
        f"--{kind}-arg",
        dest=f"{kind}_args",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help=f"an argument for the {kind}, repeatable; VALUE is JSON or a string (default: none)",
    )


def checkpoint_argument(path: str, command: str) -> str:
    """The checkpoint folder for the CHECKPOINT argument ``path``: ``path`` itself, or the
    ``checkpoint`` folder of a run folder that ``ebmflow train`` or ``ebmflow demo`` wrote
    (said on stderr)."""
    from ebmflow.checkpoint import CONFIG_FILE

    folder = Path(path)
    inner = folder / RUN_CHECKPOINT
    if not (folder / CONFIG_FILE).exists() and (inner / CONFIG_FILE).exists():
        print(
            f"ebmflow {command}: {path} is a run folder; using its checkpoint {inner}",
            file=sys.stderr,
        )
        return str(inner)
    return path


def load_energy(path: str, command: str = "sample") -> Any:
    """Load a checkpoint and check that it holds an energy."""
    import ebmflow
    from ebmflow.checkpoint import CONFIG_FILE

    try:
        obj = ebmflow.load(path)
    except ebmflow.CheckpointError as exc:
        folder = Path(path)
        if folder.is_dir() and not (folder / CONFIG_FILE).exists():
            inner = folder.glob(f"*/{RUN_CHECKPOINT}/{CONFIG_FILE}")
            runs = sorted(p.parent.parent.name for p in inner)
            hint = f"; run folders inside it: {', '.join(runs[:5])}" if runs else ""
            raise ebmflow.CheckpointError(
                f"{exc} (`ebmflow {command}` takes a checkpoint folder, such as "
                f"RUN/{RUN_CHECKPOINT} of a run written by `ebmflow train` or `ebmflow demo`, "
                f"or the run folder RUN itself{hint})"
            ) from None
        raise
    if not isinstance(obj, ebmflow.Energy):
        raise ConfigError(
            f"{path} holds a {type(obj).__name__}, not an energy; `ebmflow sample` and "
            "`ebmflow evaluate` take an energy checkpoint"
        )
    return obj.eval()


def trained_sigma_min(path: str) -> float | None:
    """The smallest noise level of the training run that wrote the checkpoint at ``path``
    (recorded by the Trainer), or ``None``."""
    from ebmflow.checkpoint import read_json
    from ebmflow.errors import CheckpointError

    try:
        training = (read_json(path).get("metadata") or {}).get("training") or {}
        value = training.get("sigma_min")
    except (CheckpointError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def resolve_sigma(energy: Any, sigma: float | None, path: str, command: str) -> float | None:
    """``--sigma``, or for a noise-conditional energy without it the smallest noise level
    its training run used (said on stderr); checked."""
    if sigma is None and energy.noise_conditional:
        sigma = trained_sigma_min(path)
        if sigma is not None:
            print(
                f"ebmflow {command}: no --sigma given; using σ = {sigma:g}, the smallest "
                "noise level the training run used",
                file=sys.stderr,
            )
    check_sigma(energy, sigma, command)
    return sigma


def check_sigma(energy: Any, sigma: float | None, command: str) -> None:
    if energy.noise_conditional and sigma is None:
        raise ConfigError(
            f"{type(energy).__name__} is noise-conditional: `ebmflow {command}` needs "
            "--sigma (the noise level, VE coordinates); the checkpoint records no training "
            "run's noise levels to default to"
        )
    if sigma is not None and not sigma > 0:
        raise ConfigError(f"--sigma must be a number > 0, got {sigma}")
