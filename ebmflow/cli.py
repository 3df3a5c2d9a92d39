"""The ``ebmflow`` command line.

Every user error prints one line, ``ebmflow: error: ...``, to stderr and exits with status
1 (2 for bad command-line syntax); ``--debug`` shows the traceback instead. Plugins add
sub-commands through the ``ebmflow_commands(subparsers)`` hook.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ebmflow import __version__
from ebmflow.errors import EbmflowError, PluginWarning
from ebmflow.registry import KINDS, PluginHost, default_host

#: A function that adds one sub-command to the ``subparsers`` action.
CommandAdder = Callable[[Any], None]


def _add_plugins(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins with their status",
        description="List every plugin ebmflow found: name, distribution, version, status "
        "(ok, failed or disabled), its components and, for failures, the error.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_run_plugins)


def _run_plugins(args: argparse.Namespace) -> int:
    infos = args.host.plugins()
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "COMPONENTS")]
    for info in infos:
        rows.append((
            info.name, info.distribution or "-", info.version or "-", info.status,
            str(len(info.components)) if info.status == "ok" else (info.error or ""),
        ))
    _print_table(rows)
    return 0


def _add_components(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "components",
        help="list the components every plugin provides",
        description="List energies, objectives, samplers, datasets, noise schedules, "
        "converters and schedulers, with the plugin that provides each.",
    )
    # not argparse `choices`: the registry accepts the same spellings as ebmflow.components
    # ("samplers", "noise-schedule") and reports an unknown kind as one line
    parser.add_argument(
        "--kind", metavar="KIND", default=None,
        help=f"only this kind: {', '.join(KINDS)} (default: all kinds)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
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


#: The core's sub-commands, in the order ``--help`` lists them.
CORE_COMMANDS: list[CommandAdder] = [_add_plugins, _add_components]


def build_parser(host: PluginHost) -> argparse.ArgumentParser:
    """The argument parser: core commands, then every plugin's ``ebmflow_commands``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show full tracebacks for errors (default: one line)",
    )
    parser = argparse.ArgumentParser(
        prog="ebmflow",
        description="Energy-based models with a unified diffusion view.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ebmflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    original_add_parser = subparsers.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("parents", []).append(common)
        return original_add_parser(name, **kwargs)

    subparsers.add_parser = add_parser  # every sub-command accepts --debug too
    for add in CORE_COMMANDS:
        add(subparsers)
    for name, plugin in host.plugin_objects().items():
        hook = getattr(plugin, "ebmflow_commands", None)
        if hook is None:
            continue
        try:
            hook(subparsers=subparsers)
        except Exception as exc:  # a broken plugin must not take the CLI down
            host.mark_failed(name, exc)
    return parser


def main(argv: Sequence[str] | None = None, host: PluginHost | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    host = host or default_host()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PluginWarning)
            parser = build_parser(host)
        for warning in caught:  # one line per broken plugin, not a warnings traceback
            print(f"ebmflow: warning: {warning.message}", file=sys.stderr)
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 0
        args.host = host
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ebmflow: interrupted", file=sys.stderr)
        return 130
    except (EbmflowError, OSError, ValueError) as exc:
        if debug:
            raise
        print(f"ebmflow: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(
            f"ebmflow: internal error: {type(exc).__name__}: {exc} "
            f"(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
