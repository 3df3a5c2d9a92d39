"""Argument helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import json
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


def check_int_option(option: str, value: int, low: int, high: int) -> int:
    """``value`` if ``low ≤ value ≤ high``, else a :class:`ConfigError` naming ``option`` and
    the accepted range."""
    if value < low:
        raise ConfigError(f"{option} must be ≥ {low}, got {value}")
    if value > high:
        raise ConfigError(f"{option} must be an integer from {low} to {high}, got {value}")
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (``0.1``, ``true``, ``[1, 2]``),
    else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
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


def load_energy(path: str) -> Any:
    """Load a checkpoint and check that it holds an energy."""
    import ebmflow

    obj = ebmflow.load(path)
    if not isinstance(obj, ebmflow.Energy):
        raise ConfigError(
            f"{path} holds a {type(obj).__name__}, not an energy; `ebmflow sample` and "
            "`ebmflow evaluate` take an energy checkpoint"
        )
    return obj.eval()


def check_sigma(energy: Any, sigma: float | None, command: str) -> None:
    if energy.noise_conditional and sigma is None:
        raise ConfigError(
            f"{type(energy).__name__} is noise-conditional: `ebmflow {command}` needs "
            "--sigma (the noise level, VE coordinates)"
        )
    if sigma is not None and not sigma > 0:
        raise ConfigError(f"--sigma must be a number > 0, got {sigma}")
