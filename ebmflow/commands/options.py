"""The options every long-running command shares: threads, device and progress bars.

- ``--threads N|auto`` is accepted by every command, the plugins' included (the CLI adds it
  to each sub-parser, as ``--debug``); :func:`ebmflow.cli.main` applies it by the rule of
  :mod:`ebmflow.runtime` (one thread unless ``OMP_NUM_THREADS`` says otherwise).
- ``--device DEVICE`` (:func:`add_device_option`, :func:`device_of`): where a command runs;
  a device that does not exist here is one clear error.
- ``--progress`` / ``--no-progress`` (:func:`add_progress_options`, :func:`progress_of`):
  progress bars are on when stderr is a terminal and off otherwise (as tqdm-based tools
  do), unless one of the two options says so.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ebmflow.errors import ConfigError
from ebmflow.runtime import MAX_THREADS


def parse_threads(text: str) -> int | str:
    """``--threads`` values: an integer (checked by :func:`check_threads`) or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None


def check_threads(value: Any) -> Any:
    """``--threads`` as given, if it is ``auto``, absent or a number of threads torch can
    use; else a :class:`~ebmflow.ConfigError` naming the accepted range."""
    if isinstance(value, int) and value < 1:
        raise ConfigError(f"--threads must be an integer ≥ 1, got {value} (or 'auto': every core)")
    if isinstance(value, int) and value > MAX_THREADS:
        raise ConfigError(f"--threads must be an integer from 1 to {MAX_THREADS}, got {value}")
    return value


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads`` on ``parser`` (absent from the namespace unless given)."""
    parser.add_argument(
        "--threads",
        type=parse_threads,
        default=argparse.SUPPRESS,
        metavar="N|auto",
        help="torch CPU threads; 'auto' for every core (default: OMP_NUM_THREADS when "
        "set, else 1, which suits ebmflow's small tensors and shared machines)",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device`` on ``parser``."""
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="where to compute: cpu, cuda, cuda:N or mps (default: cpu, or for "
        "`ebmflow train` the run file's [train] device)",
    )


def device_of(args: argparse.Namespace, default: str | None = "cpu") -> Any:
    """The checked :class:`torch.device` of ``--device`` (``default`` when not given; ``None``
    stays ``None``)."""
    from ebmflow.runtime import check_device

    device = getattr(args, "device", None) or default
    return None if device is None else check_device(device, "--device")


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    """``--progress`` and ``--no-progress`` on ``parser``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress bars (default: when stderr is a terminal)",
    )
    group.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (default: shown when stderr is a terminal)",
    )


def progress_of(args: argparse.Namespace) -> bool:
    """Whether to show progress bars: ``--progress``/``--no-progress``, else whether stderr
    is a terminal."""
    chosen = getattr(args, "progress", None)
    if chosen is not None:
        return bool(chosen)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())
