"""Where computations run: torch's CPU threads and the device, one rule for every entry point.

**Threads.** The problems ebmflow's commands, examples and tests run are small (batches of a
few hundred through MLPs and small convnets), so a second CPU thread saves little on an idle
machine, and on a machine shared with other jobs OpenMP's spinning threads compete for the
cores and slow a run down several times over. So the default is one thread, unless the
environment asks otherwise through ``OMP_NUM_THREADS`` (the variable every OpenMP program
reads, and torch too at start-up). :func:`resolve_threads` applies the rule:

- a number ``N``: ``N`` threads;
- ``"auto"``: every core this process may use (torch's own default);
- ``None``: ``OMP_NUM_THREADS`` when it is set, else 1.

``ebmflow COMMAND --threads N`` and the examples' ``--threads`` follow it; scripts call
:func:`set_threads`.

**Devices.** :func:`check_device` turns ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into
a :class:`torch.device` that exists here, or raises a :class:`~ebmflow.ConfigError` that says
what this torch build and this machine offer.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from ebmflow.errors import ConfigError

#: The most threads accepted (beyond this torch's thread pool cannot be made).
MAX_THREADS = 1024
#: How to get a torch build with CUDA, as error messages and the docs say it.
CUDA_INSTALL_HINT = (
    "install a CUDA build of torch, e.g. `pip install torch --index-url "
    "https://download.pytorch.org/whl/cu126`"
)


def available_cores() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int | str | None = None) -> int:
    """The number of torch CPU threads for ``threads`` (see the module docstring)."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if not env:
            return 1
        try:
            threads = int(env)
        except ValueError:
            raise ConfigError(
                f"OMP_NUM_THREADS must be a positive integer, got {env!r}; unset it to use "
                "one thread"
            ) from None
    if threads == "auto":
        return available_cores()
    if isinstance(threads, str):
        try:
            threads = int(threads)
        except ValueError:
            raise ConfigError(
                f"threads must be a positive integer or 'auto', got {threads!r}"
            ) from None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ConfigError(
            f"threads must be an integer from 1 to {MAX_THREADS} or 'auto', got {threads!r}"
        )
    return threads


def set_threads(threads: int | str | None = None) -> int:
    """Set torch's CPU threads by the rule of :func:`resolve_threads` (``None``: one thread
    unless ``OMP_NUM_THREADS`` says otherwise); returns the number."""
    import torch

    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def using_threads(threads: int | str | None = None) -> Iterator[int]:
    """:func:`set_threads` for the duration of a ``with`` block, then the count before it.

    When torch is not imported yet, ``OMP_NUM_THREADS`` is set instead (torch reads it when
    it starts), so that commands which never need torch do not import it.
    """
    n = resolve_threads(threads)
    if "torch" not in sys.modules:
        before_env = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(n)
        try:
            yield n
        finally:
            if before_env is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before_env
        return
    import torch

    before = torch.get_num_threads()
    try:
        yield set_threads(n)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def check_device(device: Any, owner: str = "check_device") -> Any:
    """``device`` as a :class:`torch.device` that exists here, else a :class:`ConfigError`
    naming ``owner``, the value and the devices available."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"{_named(owner, device)} is not a torch device; accepted: {accepted_devices()}"
        ) from None
    problem = _missing(parsed)
    if problem is None:
        try:  # a device this torch or this machine lacks fails here, not inside .to()
            torch.empty(0, device=parsed)
            torch.Generator(device=parsed)  # samplers and objectives draw their noise there
        except (RuntimeError, AssertionError) as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if problem is not None:
        raise ConfigError(
            f"{_named(owner, str(parsed))} is not available here ({problem}); "
            f"accepted: {accepted_devices()}"
        )
    return parsed


def _named(owner: str, device: Any) -> str:
    """``--device 'cuda'`` for a command-line option, ``Trainer: device 'cuda'`` otherwise."""
    return f"{owner} {device!r}" if owner.startswith("--") else f"{owner}: device {device!r}"


def accepted_devices() -> str:
    """The devices this torch build and this machine offer, as text."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names += ["cuda", *(f"cuda:{i}" for i in range(count))]
    if _mps_available():
        names.append("mps")
    return ", ".join(names)


def _missing(device: Any) -> str | None:
    """Why ``device`` does not exist here, or ``None`` when it may."""
    import torch

    if device.type == "cuda":
        if torch.version.cuda is None:
            return f"this torch {torch.__version__} is built without CUDA; {CUDA_INSTALL_HINT}"
        if not torch.cuda.is_available():
            return "torch has CUDA but finds no GPU (check the driver with `nvidia-smi`)"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    elif device.type == "mps" and not _mps_available():
        return "MPS needs an Apple-silicon Mac and a torch built with MPS"
    return None


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
