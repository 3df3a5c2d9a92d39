"""The ``ebmflow`` command line.

Every user error prints one line, ``ebmflow: error: ...``, to stderr and exits with status
1 (2 for bad command-line syntax); ``--debug`` shows the traceback instead. Plugins add
sub-commands through the ``ebmflow_commands(subparsers)`` hook. Every command takes
``--threads`` (see :mod:`ebmflow.runtime`). A closed output pipe (``ebmflow components
--json | head``) ends the command quietly with status 141, as a process that SIGPIPE ends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from ebmflow import __version__
from ebmflow.commands import CORE_COMMANDS
from ebmflow.commands.options import add_threads_option, check_threads
from ebmflow.errors import EbmflowError, PluginWarning
from ebmflow.registry import PluginHost, default_host
from ebmflow.runtime import using_threads

#: The number of the signal a write to a closed pipe raises (13 on every POSIX system).
SIGPIPE = 13


def build_parser(host: PluginHost) -> argparse.ArgumentParser:
    """The argument parser: core commands, then every plugin's ``ebmflow_commands``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
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

    # every sub-command accepts --debug too (argparse has no hook for common parents)
    subparsers.add_parser = add_parser  # type: ignore[method-assign]
    for add in CORE_COMMANDS:
        add(subparsers)
    for name, plugin in host.plugin_objects().items():
        hook = getattr(plugin, "ebmflow_commands", None)
        if hook is not None:  # a broken plugin (even one calling sys.exit) is marked failed
            host.call_hook(name, hook, subparsers=subparsers)
    for command in subparsers.choices.values():
        # every command, the plugins' too, follows one thread rule; a plugin command that
        # defines its own --threads keeps it
        if "--threads" not in command._option_string_actions:
            add_threads_option(command)
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
        with using_threads(check_threads(getattr(args, "threads", None))):
            status = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe is reported here, not at interpreter exit
        return status
    except KeyboardInterrupt:
        print("ebmflow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ebmflow components --json | head`): stop quietly with the
        # status of a process ended by SIGPIPE, as other command-line tools do
        _discard_stdout()
        return 128 + SIGPIPE
    except (EbmflowError, OSError, ValueError) as exc:
        if debug:
            raise
        print(f"ebmflow: error: {exc}{_notes(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(
            f"ebmflow: internal error: {type(exc).__name__}: {exc}{_notes(exc)} "
            f"(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _discard_stdout() -> None:
    """Point stdout at os.devnull, so that the interpreter's final flush of the text still
    buffered for the closed pipe fails neither loudly nor again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _notes(exc: BaseException) -> str:
    """The exception's notes (e.g. which component was being built), on the same line."""
    notes = [" ".join(str(note).split()) for note in getattr(exc, "__notes__", ())]
    return f" ({'; '.join(notes)})" if notes else ""


if __name__ == "__main__":
    raise SystemExit(main())
