"""Containment of plugin code: importing a plugin, calling its hooks and importing a lazy
factory run someone else's code inside the caller's process, so the registry runs it inside
a :class:`PluginCall`, which keeps what it can of the caller's state.

- **Exits and interrupts are failures.** ``SystemExit`` (``sys.exit``), ``KeyboardInterrupt``
  and every other ``BaseException`` raised by plugin code make that plugin ``failed``, like
  an ``Exception`` does; a plugin cannot end the process or make ``ebmflow train`` exit 0
  without training. The one exception is a real Ctrl-C: when SIGINT arrives while plugin
  code runs (watched in the main thread), the ``KeyboardInterrupt`` is the user's and is
  re-raised, and a half-finished load is started again on the next lookup. A
  ``KeyboardInterrupt`` that plugin code raises itself, with no signal, is the plugin's.
- **Standard output belongs to the caller.** While plugin code runs, ``sys.stdout`` is
  redirected to ``sys.stderr``, so a plugin's ``print`` cannot corrupt the JSON that
  ``ebmflow sample``, ``convert`` or ``components --json`` write (output written straight to
  file descriptor 1 is not caught).
- **The global torch RNG is restored.** If torch is already imported when plugin code
  runs, the CPU generator's state (and the CUDA generators', where CUDA is initialised) is
  saved before and restored after, so a plugin's ``torch.manual_seed`` at import cannot
  change a seeded ``ebmflow.create``. If torch was not imported yet, the caller cannot have
  seeded it, and nothing is restored.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any


def describe(exc: BaseException) -> str:
    """``Type: message`` (or the type alone), the way a plugin's failure is recorded."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PluginCall:
    """A context in which plugin code (an import, a hook, a factory import) runs contained:
    standard output goes to standard error, the global torch RNG state is restored, and
    SIGINT is watched so that :meth:`failed_by` can tell a user's Ctrl-C from a
    ``KeyboardInterrupt`` the plugin raised itself. See the module docstring for why."""

    def __init__(self) -> None:
        self.interrupted = False
        self._raised: BaseException | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> PluginCall:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            stack.enter_context(torch_rng_kept())
            stack.enter_context(self._watching_sigint())
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._raised = exc_info[1]
        self._stack.__exit__(*exc_info)

    def failed_by(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a failure to record rather than something to propagate: any
        ``Exception``, and any other ``BaseException`` (``SystemExit`` included) that came out
        of the plugin code run in this call, except a ``KeyboardInterrupt`` that a real
        SIGINT caused (the user's Ctrl-C)."""
        if isinstance(exc, Exception):
            return True
        if exc is not self._raised:
            return False
        return not (isinstance(exc, KeyboardInterrupt) and self.interrupted)

    @contextlib.contextmanager
    def _watching_sigint(self) -> Iterator[None]:
        # Only the main thread receives signals; elsewhere, and where Python's handler is
        # not in charge (SIG_IGN, SIG_DFL), a KeyboardInterrupt can only come from code.
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            yield
            return

        def handler(signum: int, frame: types.FrameType | None) -> Any:
            self.interrupted = True
            return previous(signum, frame)

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main interpreter
            yield
            return
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGINT) is handler:  # unless the plugin set its own
                signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def torch_rng_kept() -> Iterator[None]:
    """Restore torch's global generator states afterwards, if torch is already imported
    (if it is not, the caller cannot have seeded it)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_rng_state"):
        yield
        return
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
