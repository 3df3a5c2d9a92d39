"""``ebmflow plugins`` and ``ebmflow components``: what is installed and what it provides."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ebmflow.registry import KINDS


def add_plugins(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins with their status",
        description="List every plugin ebmflow found: name, distribution, version, status "
        "(ok, failed or disabled), its components and, for failures, the error.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: a table)"
    )
    parser.set_defaults(func=_run_plugins)


def _run_plugins(args: argparse.Namespace) -> int:
    infos = args.host.plugins()
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "COMPONENTS")]
    for info in infos:
        rows.append(
            (
                info.name,
                info.distribution or "-",
                info.version or "-",
                info.status,
                str(len(info.components)) if info.status == "ok" else (info.error or ""),
            )
        )
    _print_table(rows)
    return 0


def add_components(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "components",
        help="list the components every plugin provides",
        description="List energies, objectives, samplers, datasets, noise schedules, "
        "converters and schedulers, with the plugin that provides each.",
    )
    # not argparse `choices`: the registry accepts the same spellings as ebmflow.components
    # ("samplers", "noise-schedule") and reports an unknown kind as one line
    parser.add_argument(
        "--kind",
        metavar="KIND",
        default=None,
        help=f"only this kind: {', '.join(KINDS)} (default: all kinds)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: a table)"
    )
    parser.set_defaults(func=_run_components)


def _run_components(args: argparse.Namespace) -> int:
    found = args.host.components(args.kind)
    if args.json:
        print(json.dumps([c.to_dict() for c in found], indent=2))
        return 0
    rows = [("KIND", "NAME", "PLUGIN", "SUMMARY")]
    rows += [(c.kind or "", c.name, c.plugin or "", c.summary) for c in found]
    _print_table(rows)
    return 0


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[-1]]).rstrip())
