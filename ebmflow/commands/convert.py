"""``ebmflow convert SRC OUT [--converter NAME]``: a foreign checkpoint → an ebmflow checkpoint.

A converter is a registered component of kind ``converter``: a callable taking the source as
``source=`` (plus its own options) and returning an ebmflow component, which this command
saves with ``ebmflow.save`` (config.json + safetensors, no pickle). The core knows no
converter itself; plugins provide them (ebmflow-diffusers provides ``diffusers``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ebmflow.commands.arguments import parse_assignment
from ebmflow.errors import ConfigError


def add_convert(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a foreign checkpoint (e.g. a diffusers pipeline) to an ebmflow checkpoint",
        description="Run a registered converter on SRC and save the component it returns as "
        "an ebmflow checkpoint folder OUT (config.json + model.safetensors), which "
        "ebmflow.load reads back.",
    )
    parser.add_argument("source", metavar="SRC", help="what to convert (e.g. a pipeline folder)")
    parser.add_argument("out", metavar="OUT", help="the ebmflow checkpoint folder to write")
    parser.add_argument(
        "--converter",
        default=None,
        metavar="NAME",
        help="registered converter name or plugin:name (default: the only one installed)",
    )
    parser.add_argument(
        "--converter-arg",
        dest="converter_args",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="an option for the converter, repeatable; VALUE is JSON or a string (default: none)",
    )
    parser.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    host = args.host
    name = args.converter
    if name is None:
        available = host.components("converter")
        if len(available) != 1:
            listed = ", ".join(c.qualified_name for c in available) or "none installed"
            raise ConfigError(
                f"choose a converter with --converter NAME (available: {listed}; "
                "ebmflow-diffusers provides 'diffusers')"
            )
        name = available[0].qualified_name
    options = dict(args.converter_args)
    if "source" in options:
        raise ConfigError("give the source as SRC, not as --converter-arg source=...")
    obj = host.create("converter", name, source=args.source, **options)
    import ebmflow

    folder = ebmflow.save(
        obj,
        Path(args.out),
        host=host,
        metadata={"converted_from": str(args.source), "converter": name},
    )
    print(
        json.dumps(
            {
                "source": str(args.source),
                "converter": name,
                "component": type(obj).__name__,
                "out": str(folder),
            }
        )
    )
    return 0
