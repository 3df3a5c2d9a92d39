"""``ebmflow sample --observation FILE --measurement SPEC``: sample the posterior of the
checkpoint's energy given an observation.

FILE is a safetensors file holding the observation y as tensor ``observation`` (or as its
only tensor), plus any tensors the spec names. SPEC configures the likelihood energy
(``gaussian-measurement`` unless it names another registered energy) in one of three forms:

- JSON: ``'{"operator": {"name": "blur", "size": 3, "std": 1.0}, "noise_std": 0.05}'``;
- ``KEY=VALUE`` pairs separated by commas, VALUE read as JSON when it parses:
  ``operator=mask,noise_std=0.05``;
- a ``.json`` or ``.toml`` file holding the same table.

A string value ``"@NAME"`` anywhere in the spec is the tensor NAME of FILE (``mask=@mask``);
with ``operator=mask`` and no mask given, FILE's tensor ``mask`` is the mask.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from ebmflow.commands.arguments import parse_assignment
from ebmflow.errors import ConfigError

#: the largest observation file read (a 1024×1024×3 float64 image is 25 MB).
MAX_OBSERVATION_BYTES = 2**30

MEASUREMENT_HELP = (
    "the likelihood of --observation: JSON, KEY=VALUE pairs separated by commas, or a "
    ".json/.toml file; keys noise_std, operator (identity, mask, blur, downsample, matrix, "
    "or a table with name and arguments), annealing; '@NAME' is tensor NAME of the "
    "observation file (default: none)"
)


def add_posterior_options(parser: argparse.ArgumentParser) -> None:
    """``--observation FILE`` and ``--measurement SPEC`` (module docstring)."""
    parser.add_argument(
        "--observation",
        default=None,
        metavar="FILE",
        help="a .safetensors file with the observation y (tensor 'observation'): sample the "
        "posterior given y instead of the energy itself (default: none)",
    )
    parser.add_argument("--measurement", default=None, metavar="SPEC", help=MEASUREMENT_HELP)


def posterior_from_args(energy: Any, args: argparse.Namespace) -> Any:
    """``energy`` itself, or its posterior given ``--observation`` and ``--measurement``."""
    observation = getattr(args, "observation", None)
    measurement = getattr(args, "measurement", None)
    if observation is None and measurement is None:
        return energy
    if observation is None or measurement is None:
        given, missing = (
            ("--observation", "--measurement")
            if measurement is None
            else ("--measurement", "--observation")
        )
        raise ConfigError(
            f"{given} needs {missing} too (the observation and its measurement model)"
        )
    import ebmflow

    tensors = read_tensors(observation)
    config = resolve_references(parse_spec(measurement), tensors, observation)
    if "observation" in tensors:
        y = tensors["observation"]
    elif len(tensors) == 1:
        y = next(iter(tensors.values()))
    else:
        raise ConfigError(
            f"--observation {observation}: holds tensors {sorted(tensors)}; name the "
            "observation 'observation'"
        )
    config.setdefault("name", "gaussian-measurement")
    operator = config.get("operator")
    if operator == "mask" or (isinstance(operator, dict) and operator.get("name") == "mask"):
        table = {"name": "mask"} if operator == "mask" else dict(operator)
        if "mask" not in table:
            if "mask" not in tensors:
                raise ConfigError(
                    f"--measurement: operator mask needs a mask; put tensor 'mask' in "
                    f"{observation} or give mask=@NAME"
                )
            table["mask"] = tensors["mask"]
        config["operator"] = table
    config["observation"] = y.to(_dtype_of(energy))
    return ebmflow.posterior(energy, config)


def parse_spec(spec: str) -> dict[str, Any]:
    """The measurement table from JSON, ``KEY=VALUE,...`` or a .json/.toml file."""
    text = spec.strip()
    path = Path(text)
    if path.suffix in (".json", ".toml") and path.is_file():
        raw = path.read_text(encoding="utf-8")
        try:
            table = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--measurement {spec}: not valid {path.suffix[1:]}: {exc}") from None
    elif text.startswith("{"):
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--measurement: not valid JSON ({exc}): {spec!r}") from None
    else:
        table = {}
        for part in filter(None, (p.strip() for p in _split_top_level(text))):
            try:
                key, value = parse_assignment(part)
            except argparse.ArgumentTypeError:
                raise ConfigError(
                    f"--measurement: expected JSON, KEY=VALUE pairs separated by commas or a "
                    f".json/.toml file; {part!r} in {spec!r} is none of these"
                ) from None
            table[key] = value
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"--measurement: expected a table of settings, got {spec!r}")
    return table


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and braces (``matrix=[[1, 0]],noise_std=0.1``)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def read_tensors(path: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    from ebmflow.files import read_regular_file

    try:
        return dict(
            load(read_regular_file(path, max_bytes=MAX_OBSERVATION_BYTES, error=ConfigError))
        )
    except (SafetensorError, ValueError) as exc:
        raise ConfigError(
            f"--observation {path}: not a readable safetensors file ({exc})"
        ) from None


def resolve_references(value: Any, tensors: dict[str, Any], path: str) -> Any:
    """``value`` with every ``"@NAME"`` string replaced by tensor NAME of the file."""
    if isinstance(value, dict):
        return {k: resolve_references(v, tensors, path) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v, tensors, path) for v in value]
    if isinstance(value, str) and value.startswith("@"):
        if value[1:] not in tensors:
            raise ConfigError(
                f"--measurement names tensor {value!r}, but {path} holds {sorted(tensors)}"
            )
        return tensors[value[1:]]
    return value


def _dtype_of(energy: Any) -> Any:
    import torch

    return next(
        (t.dtype for t in (*energy.parameters(), *energy.buffers()) if t.is_floating_point()),
        torch.get_default_dtype(),
    )
